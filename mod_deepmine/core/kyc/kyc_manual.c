/*
 * kyc_manual.c — see kyc_manual.h: the staff PATCH goes through the one
 * status function (kyc.h).
 */
#include "kyc/kyc_manual.h"

#include "kyc/kyc.h"

dm_err *dm_kyc_set_status(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                          int64_t user_id, const char *status, dm_member *out)
{
    dm_kyc_actor who = {staff_id, NULL, ip};

    return dm_kyc_change_status(db, p, &who, user_id, status, NULL, out);
}
