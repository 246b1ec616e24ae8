/*
 * kyc_manual.c — see kyc_manual.h.
 */
#include "kyc/kyc_manual.h"

#include <apr_strings.h>
#include <apr_time.h>
#include <string.h>

#include "base/clock.h"
#include "store/audit.h"
#include "base/json.h"
#include "mail/mailq.h"

static int status_ok(const char *s)
{
    return s && (strcmp(s, "none") == 0 || strcmp(s, "pending") == 0 ||
                 strcmp(s, "approved") == 0 || strcmp(s, "rejected") == 0);
}

static dm_err *set_txn(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip, int64_t user_id,
                       const char *status, dm_member *out)
{
    dm_member before;
    dm_stmt *st;
    int row = 0;
    json_t *b, *a;
    dm_err *e = dm_member_get(db, p, user_id, &before);

    if (e || strcmp(before.kyc_status, status) == 0) {
        if (!e) {
            *out = before;
        }
        return e;
    }
    e = dm_db_prepare(db, p, "UPDATE users SET kyc_status = ?, updated_at = ? WHERE id = ?", &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_text(st, 1, status, strlen(status));
    dm_stmt_bind_int64(st, 2, dm_now());
    dm_stmt_bind_int64(st, 3, user_id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    b = dm_json_own(p, json_pack("{s:s}", "kyc_status", before.kyc_status));
    a = dm_json_own(p, json_pack("{s:s}", "kyc_status", status));
    e = dm_audit_write(db, p, staff_id, "user.kyc", "user",
                       apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)user_id), b, a, ip);
    if (!e && (strcmp(status, "approved") == 0 || strcmp(status, "rejected") == 0)) {
        /* one message per decision: the audit row's id tells decisions apart */
        int64_t decision = dm_db_last_insert_id(db);
        json_t *vars = dm_json_own(p, json_pack("{s:s,s:n}", "email", before.email, "reason"));
        e = dm_mail_enqueue(db, p, before.email, apr_pstrcat(p, "kyc_", status, NULL), vars,
                            apr_psprintf(p, "kyc_%s:%" APR_INT64_T_FMT ":%" APR_INT64_T_FMT, status,
                                         (apr_int64_t)user_id, (apr_int64_t)decision));
    }
    return e ? e : dm_member_get(db, p, user_id, out);
}

dm_err *dm_kyc_set_status(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                          int64_t user_id, const char *status, dm_member *out)
{
    dm_err *e;

    if (!status_ok(status)) {
        return dm_err_make(p, DM_E_INVALID, "status",
                           "status must be \"none\", \"pending\", \"approved\" or \"rejected\"");
    }
    e = dm_db_begin(db, p);
    if (e) {
        return e;
    }
    e = set_txn(db, p, staff_id, ip, user_id, status, out);
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}
