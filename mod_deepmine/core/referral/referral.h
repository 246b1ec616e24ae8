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

#include "store/db.h"
#include "base/err.h"
#include "base/json.h"

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

/* The same counters as columns of a read of the member's users row (the
 * member authentication's, so GET /api/referrals/network is one statement):
 * DM_REFERRAL_NETWORK_COLUMNS after that read's own columns,
 * DM_REFERRAL_NETWORK_JOIN after its "FROM users" (a member without a
 * counts row reads NULLs), and dm_referral_network_read from the first of
 * those columns, `col`. */
#define DM_REFERRAL_NETWORK_COLUMNS                                                                \
    ", referral_counts.l1, referral_counts.l2, referral_counts.l3, referral_counts.l4, "           \
    "referral_counts.l5, referral_counts.l6, referral_counts.l7, referral_counts.l8, "             \
    "referral_counts.l9, referral_counts.l10, referral_counts.total"
#define DM_REFERRAL_NETWORK_JOIN " LEFT JOIN referral_counts ON referral_counts.user_id = users.id"
void dm_referral_network_read(dm_stmt *st, int col, dm_network *out);

/* GET /api/referrals/network's answer:
 * {"direct":n,"total":n,"levels":[n,...]} (levels 1..10). */
void dm_referral_network_write(dm_jbuf *b, const dm_network *n);

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
dm_err *dm_referral_list_level(dm_db *db, apr_pool_t *p, int64_t user_id, int level, int64_t cursor,
                               int limit, apr_array_header_t **rows, int64_t *next_cursor);

/* "john@example.com" -> "j***@example.com": the first character of the
 * local part, "***", the domain. A one-character local part gives
 * "***@example.com"; no '@' gives "***". */
const char *dm_mask_email(apr_pool_t *p, const char *email);

/* Bulk loading (members/member_bulk.c, for dm-benchgen): the rows dm_referral_attach
 * writes, written faster.
 *
 * dm_referral_bulk_add buffers a member (its users row must exist, its
 * referrer must exist or have been added before it, and ids must increase
 * from one call to the next); dm_referral_bulk_flush writes the buffered
 * members' depth, user_ancestors rows (in index order) and zero
 * referral_counts rows. add flushes by itself every 10,000 members; call
 * flush before each commit. Both in the caller's transaction; after an
 * error, roll back and drop the bulk. The bulk remembers every member
 * added (~24 bytes each, in p) so that members placed under them read no
 * rows.
 *
 * The ancestors' counters are left alone: they are stale until
 * dm_referral_rebuild_counts, which recomputes every member's l1..l10 and
 * total from users.referrer_id in one pass in memory (~70 bytes a member)
 * and writes only the rows that differ (*changed of them), in the caller's
 * transaction. The result is row for row what dm_referral_attach per
 * member would have written (tests/unit/test_referral.c checks it). */
typedef struct dm_referral_bulk dm_referral_bulk;

dm_err *dm_referral_bulk_begin(dm_db *db, apr_pool_t *p, dm_referral_bulk **out);
dm_err *dm_referral_bulk_add(dm_referral_bulk *b, int64_t user_id, int64_t referrer_id);
dm_err *dm_referral_bulk_flush(dm_referral_bulk *b);
dm_err *dm_referral_rebuild_counts(dm_db *db, apr_pool_t *p, int64_t *changed);

#endif
