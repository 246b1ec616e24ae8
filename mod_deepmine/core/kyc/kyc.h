/*
 * kyc.h — a member's identity-check status: the one function that changes
 * it (users.kyc_status, which withdrawals check), whoever decides — staff
 * in the review queue or through PATCH /api/admin/users/{id}/kyc, the
 * console, a provider's event (core/kyc/kyc_events.c), the member
 * submitting documents, the retention job. Every change writes one audit
 * row and, for a decision, queues the member's e-mail, in the same
 * transaction.
 *
 * Statuses (users.kyc_status):
 *   none          nothing handed in yet (also: a provider's flow expired)
 *   pending       handed in (documents submitted, or a provider flow
 *                 started and not decided); in the staff queue
 *   review        a provider asked for a person to decide (iDenfy
 *                 SUSPECTED); in the staff queue
 *   approved      may withdraw
 *   rejected      final: the member may not try again
 *   resubmission  rejected for now: the member may upload and submit again
 */
#ifndef DM_KYC_H
#define DM_KYC_H

#include <apr_pools.h>
#include <stdint.h>

#include "base/err.h"
#include "members/members.h"
#include "store/db.h"

#define DM_KYC_S_NONE "none"
#define DM_KYC_S_PENDING "pending"
#define DM_KYC_S_REVIEW "review"
#define DM_KYC_S_APPROVED "approved"
#define DM_KYC_S_REJECTED "rejected"
#define DM_KYC_S_RESUBMISSION "resubmission"

/* Longest reason kept (code points); a longer one, or one with control
 * characters, is refused (DM_E_INVALID, field "reason"). */
#define DM_KYC_REASON_MAX 500

/* Who changes a status, for the audit row. */
typedef struct dm_kyc_actor {
    int64_t staff_id;   /* the staff member; 0 when not staff */
    const char *source; /* "staff", "console", "member", "provider:<plugin>",
                           "job:<name>"; NULL: "staff" when staff_id, else
                           "console" */
    const char *ip;     /* NULL: the console */
} dm_kyc_actor;

/* 1 when s is one of the statuses above. */
int dm_kyc_status_known(const char *s);

/* Sets user_id's status to `status` with `reason` (words safe to show the
 * member, kept on the case and shown by GET /api/kyc; NULL or "" for
 * none), inside the CALLER'S OPEN TRANSACTION (so a provider event's
 * dedup row and the change commit together). Writes the audit row
 * "user.kyc" (before {kyc_status}, after {kyc_status, reason, by}) and,
 * for approved / rejected / resubmission, queues kyc_approved /
 * kyc_rejected / kyc_resubmission to the member (variables email,
 * reason). The same status again changes and records nothing
 * (*changed 0). DM_E_INVALID "status" for an unknown status,
 * DM_E_NOT_FOUND for no such member. out (may be NULL) gets the member
 * afterwards; changed may be NULL. */
dm_err *dm_kyc_apply_status(dm_db *db, apr_pool_t *p, const dm_kyc_actor *who, int64_t user_id,
                            const char *status, const char *reason, dm_member *out, int *changed);

/* dm_kyc_apply_status in a transaction of its own. */
dm_err *dm_kyc_change_status(dm_db *db, apr_pool_t *p, const dm_kyc_actor *who, int64_t user_id,
                             const char *status, const char *reason, dm_member *out);

/* Records which provider (plugin name) and which provider reference a
 * member's verification runs under (shown by GET /api/kyc; used by the
 * polling job). Inside the caller's transaction or on its own (one
 * statement). provider_ref may be NULL. */
dm_err *dm_kyc_set_provider(dm_db *db, apr_pool_t *p, int64_t user_id, const char *provider,
                            const char *provider_ref);

#endif
