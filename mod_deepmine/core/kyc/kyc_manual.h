/*
 * kyc_manual.h — staff set a member's KYC status by hand (PATCH
 * /api/admin/users/{id}/kyc). A stop-gap until the KYC issue brings
 * document review and provider plugins: it keeps the same column
 * (users.kyc_status) that withdrawals check.
 */
#ifndef DM_KYC_MANUAL_H
#define DM_KYC_MANUAL_H

#include <apr_pools.h>
#include <stdint.h>

#include "store/db.h"
#include "base/err.h"
#include "members/members.h"

/* Sets users.kyc_status to `status` ("none", "pending", "approved" or
 * "rejected"; else DM_E_INVALID naming "status") for staff `staff_id` (0:
 * the console) from `ip`, with an audit row "user.kyc" (before/after), in
 * one transaction. The same status again changes and records nothing.
 * "approved" and "rejected" queue the member's kyc_approved / kyc_rejected
 * e-mail in the same transaction.
 * *out gets the member afterwards. */
dm_err *dm_kyc_set_status(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                          int64_t user_id, const char *status, dm_member *out);

#endif
