/*
 * flags.h — fraud flags on pairs of members. A flag is raised by the code
 * that sees the signal (a referrer and its new member registering from the
 * same IP within 24 h, here; a shared withdrawal destination, in the
 * withdrawals code) and resolved by staff (cleared or confirmed, audited).
 * While a flag is open or confirmed, commissions between the two members
 * stay held (commission.c); nothing else is blocked.
 */
#ifndef DM_FLAGS_H
#define DM_FLAGS_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "store/db.h"
#include "base/err.h"

#define DM_FLAG_SAME_REGISTRATION_IP "same_registration_ip"
#define DM_FLAG_REGISTRATION_WINDOW (24 * 3600)

/* Raises an open flag on user_id (related_user_id: the other member, 0 for
 * none) with `reason` (1-100 bytes of text). An open flag with the same
 * pair and reason already there is not raised twice. In the caller's open
 * transaction. */
dm_err *dm_flags_raise(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t related_user_id,
                       const char *reason);

/* Called at the end of registration (same transaction): flags the new
 * member and its referrer when both registered (accepted the terms) from
 * the same IP within DM_FLAG_REGISTRATION_WINDOW. */
dm_err *dm_flags_check_registration(dm_db *db, apr_pool_t *p, int64_t user_id);

typedef struct dm_flag {
    int64_t id;
    int64_t user_id;
    int64_t related_user_id; /* 0: none */
    const char *reason;
    const char *status; /* open | cleared | confirmed */
    int64_t created_at;
    int64_t resolved_by; /* 0: not resolved */
    int64_t resolved_at;
} dm_flag;

/* Flags newest first, optionally of one status (NULL: all), keyset
 * paginated on id. */
dm_err *dm_flags_list(dm_db *db, apr_pool_t *p, const char *status, int64_t cursor, int limit,
                      apr_array_header_t **rows, int64_t *next_cursor);

/* Resolves an open flag as "cleared" or "confirmed" in its own
 * transaction, audited "flag.clear" / "flag.confirm". DM_E_NOT_FOUND,
 * DM_E_CONFLICT when it is not open. */
dm_err *dm_flags_resolve(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                         int64_t flag_id, const char *status, dm_flag *out);

json_t *dm_flag_json(apr_pool_t *p, const dm_flag *f);

#endif
