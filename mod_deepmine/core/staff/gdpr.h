/*
 * gdpr.h — members' data (issue 15): the export of everything the platform
 * holds about a member, and the erasure (a request confirmed through an
 * e-mailed single-use link, carried out after DeepMineErasureDelay by the
 * "erasure" job or by an owner). docs/operations.md "Members' data".
 *
 * It lives in staff/ because the export and the erasure read every domain
 * below (shop, withdrawals, kyc).
 */
#ifndef DM_GDPR_H
#define DM_GDPR_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "base/err.h"
#include "kyc/kyc_docs.h"
#include "members/members.h"
#include "store/db.h"

#define DM_ERASURE_DEFAULT_DELAY (14 * 86400)
#define DM_ERASURE_LINK_TTL (24 * 3600)

/* The whole export of member `user_id`, as one JSON object (owned by p). */
dm_err *dm_gdpr_export(dm_db *db, apr_pool_t *p, int64_t user_id, json_t **out);

/* What must happen before member `user_id` can be erased, one sentence per
 * item (money in a wallet or held, pending withdrawals, active contracts);
 * an empty array when nothing. */
dm_err *dm_gdpr_blockers(dm_db *db, apr_pool_t *p, int64_t user_id, apr_array_header_t **out);

typedef struct dm_erasure {
    int64_t id;
    int64_t user_id;
    const char *email; /* the member's current address (a tombstone once done) */
    const char *status;
    int64_t requested_at, confirmed_at, due_at, finished_at;
    const char *finished_by;
} dm_erasure;

json_t *dm_erasure_json(apr_pool_t *p, const dm_erasure *x);

/* POST /api/me/delete: 409 listing the blockers, 409 when a request is
 * already scheduled; else a new unconfirmed request (an older unconfirmed
 * one is cancelled) and the sealed erasure_confirm e-mail. */
dm_err *dm_gdpr_request(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_member *m,
                        int64_t delay, dm_erasure *out);

/* The link: consumes the token (single use, unexpired, request still
 * unconfirmed) and schedules the erasure at now + delay. Anything else is
 * a 400 that changes nothing. */
dm_err *dm_gdpr_confirm(dm_db *db, apr_pool_t *p, const dm_services *s, const char *token,
                        int64_t delay, dm_erasure *out);

/* Cancels the member's open (unconfirmed or scheduled) request; 404 when
 * there is none. by: "member" or "staff:<id>". */
dm_err *dm_gdpr_cancel(dm_db *db, apr_pool_t *p, int64_t request_id, int64_t user_id,
                       const char *by, int64_t staff_id, const char *ip, dm_erasure *out);

/* The member's newest request (found 0 when none). */
dm_err *dm_gdpr_current(dm_db *db, apr_pool_t *p, int64_t user_id, dm_erasure *out, int *found);

dm_err *dm_gdpr_get(dm_db *db, apr_pool_t *p, int64_t id, dm_erasure *out);

/* Staff list, newest first, keyset paginated; status NULL: all. Rows are
 * dm_erasure. */
dm_err *dm_gdpr_list(dm_db *db, apr_pool_t *p, const char *status, int64_t cursor, int limit,
                     apr_array_header_t **rows, int64_t *next);

/* Carries out request `id` now (scheduled, or unconfirmed only when
 * force): refuses (409) while blockers remain; tombstones the member in one
 * transaction (audited as "member.erased", staff_id 0 for the job), then
 * removes the KYC objects through store (NULL: documents not held by the
 * AML retention are kept for the kyc-retention job, which the report says). */
dm_err *dm_gdpr_erase(dm_db *db, apr_pool_t *p, const dm_kyc_store *store, int64_t id,
                      const char *by, int64_t staff_id, const char *ip, dm_erasure *out);

/* The erasure job: every scheduled request due at `now`; a request still
 * blocked is left scheduled (logged) and tried again on the next run. */
dm_err *dm_gdpr_erase_due(dm_db *db, apr_pool_t *p, const dm_kyc_store *store, int64_t now,
                          int64_t *done);

/* The staff digest of the UTC day before `now`: one e-mail per active
 * owner, idempotent per day. */
dm_err *dm_gdpr_staff_digest(dm_db *db, apr_pool_t *p, int64_t now, int64_t *sent);

#endif
