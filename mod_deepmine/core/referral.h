/*
 * referral.h — the referral tree. `users.referrer_id` is the tree; reads
 * never walk it. Each member's upline to 10 levels (user_ancestors) and
 * downline counters (referral_counts: l1..l10 and total) are written in the
 * registration transaction, so the network view and a commission split are
 * O(1) indexed reads. A referrer always exists before the member it refers,
 * so cycles and self-referral cannot happen.
 */
#ifndef DM_REFERRAL_H
#define DM_REFERRAL_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <stdint.h>

#include "db.h"
#include "err.h"

#define DM_REFERRAL_LEVELS 10
#define DM_REFERRAL_CODE_LEN 8

/* A new random referral code (DM_REFERRAL_CODE_LEN characters from an
 * unambiguous alphabet: no 0/O/1/I/L). Uniqueness is the caller's (retry on
 * DM_E_CONFLICT from the UNIQUE column). */
const char *dm_referral_code_new(apr_pool_t *p);

/* 1 when `code` has the shape of a referral code (case-insensitive); the
 * canonical (upper-case) form in *canon. */
int dm_referral_code_parse(apr_pool_t *p, const char *code, const char **canon);

/* Places `user_id` (a users row just inserted, in the caller's open
 * transaction) under `referrer_id` (0: a root): sets users.depth, writes its
 * user_ancestors rows, creates its referral_counts row, and bumps the level
 * counters of its 10 ancestors and the total of every ancestor. */
dm_err *dm_referral_attach(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t referrer_id);

typedef struct dm_network {
    int64_t levels[DM_REFERRAL_LEVELS]; /* members at depth 1..10 below */
    int64_t total;                      /* the whole downline */
} dm_network;

/* Counters of one member (zeros for a member without a counts row). */
dm_err *dm_referral_network(dm_db *db, apr_pool_t *p, int64_t user_id, dm_network *out);

/* The upline, nearest first: ids[0] is the referrer. *n gets how many
 * (0..10). */
dm_err *dm_referral_upline(dm_db *db, apr_pool_t *p, int64_t user_id,
                           int64_t ids[DM_REFERRAL_LEVELS], int *n);

typedef struct dm_referral_row {
    int64_t id;
    const char *masked_email; /* "j***@example.com" */
    int64_t joined_at;        /* Unix seconds */
    int vip_level;
} dm_referral_row;

/* Members exactly `level` (1..10) below `user_id`, newest first, keyset
 * paginated: `cursor` 0 for the first page, else the next_cursor of the
 * previous page; *next_cursor 0 when there is no more. Rows are
 * dm_referral_row. */
dm_err *dm_referral_list_level(dm_db *db, apr_pool_t *p, int64_t user_id, int level,
                               int64_t cursor, int limit, apr_array_header_t **rows,
                               int64_t *next_cursor);

/* "john@example.com" -> "j***@example.com": the first character of the
 * local part, "***", the domain. A one-character local part gives
 * "***@example.com"; no '@' gives "***". */
const char *dm_mask_email(apr_pool_t *p, const char *email);

/* Bulk loading (deepminectl gen-members). dm_referral_bulk_add writes what
 * dm_referral_attach writes for the member itself (users.depth, its
 * user_ancestors rows, a zero referral_counts row) but leaves the
 * ancestors' counters alone, so it costs the same at any depth. Counters
 * are stale until dm_referral_rebuild_counts, which recomputes every
 * member's counters from users.referrer_id in one pass in memory (~70 bytes
 * a member) and writes only the rows that differ (*changed of them). Both
 * run in the caller's transaction; the rows end up exactly those that
 * per-member dm_referral_attach would have written. */
dm_err *dm_referral_bulk_add(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t referrer_id);
dm_err *dm_referral_rebuild_counts(dm_db *db, apr_pool_t *p, int64_t *changed);

#endif
