/*
 * member_bulk.h — many members at once, for test and bench populations
 * (dm-benchgen members). Each member gets exactly the rows registration's
 * dm_member_insert writes — users, user_ancestors, referral_counts, the
 * terms acceptance — written faster: users rows many to a statement, the
 * tree through dm_referral_bulk, the downline counters recomputed once at
 * the end (dm_member_bulk_finish). tests/unit/test_bulk.c proves the rows
 * equal those of dm_member_insert called member by member.
 *
 * Use: begin once; in each transaction add members, then flush before the
 * commit; after the last commit, finish in a transaction of its own (also
 * after a failure: the committed batches need their counters). Ids are
 * MAX(id) + 1 onwards, read under the transaction's write lock — what
 * SQLite would have picked.
 */
#ifndef DM_MEMBER_BULK_H
#define DM_MEMBER_BULK_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <stdint.h>

#include "base/err.h"
#include "members/legal.h"
#include "store/db.h"

/* What every member of one load shares. */
typedef struct dm_member_bulk_spec {
    const char *email_prefix; /* e-mail <prefix><id>@<domain> */
    const char *email_domain;
    const char *password_hash; /* one hash for everyone */
    const dm_legal_doc *terms; /* the document accepted */
    const char *ip;            /* recorded with the acceptance */
    int per_row;               /* dm_member_insert per member instead (to compare) */
} dm_member_bulk_spec;

typedef struct dm_member_bulk dm_member_bulk;

dm_err *dm_member_bulk_begin(dm_db *db, apr_pool_t *p, const dm_member_bulk_spec *spec,
                             dm_member_bulk **out);

/* A member under `referrer_id` (0: a root), which exists or was added
 * before; its id in *id. In the caller's transaction. */
dm_err *dm_member_bulk_add(dm_member_bulk *b, int64_t referrer_id, int64_t *id);

/* Writes what add has buffered. Before each commit. */
dm_err *dm_member_bulk_flush(dm_member_bulk *b);

/* The counters the bulk path left stale (dm_referral_rebuild_counts):
 * *changed rows rewritten (0 in per-row mode, which keeps them). In the
 * caller's transaction. */
dm_err *dm_member_bulk_finish(dm_member_bulk *b, int64_t *changed);

/* Every member's id, ascending (active_only: those whose status is
 * active), as an array of int64_t. */
dm_err *dm_member_ids(dm_db *db, apr_pool_t *p, int active_only, apr_array_header_t **ids);

#endif
