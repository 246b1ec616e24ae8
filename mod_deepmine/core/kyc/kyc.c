/*
 * kyc.c — the one place a member's KYC status changes (see kyc.h).
 */
#include "kyc/kyc.h"

#include <apr_strings.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/validate.h"
#include "mail/mailq.h"
#include "store/audit.h"

static const char *const statuses[] = {DM_KYC_S_NONE,     DM_KYC_S_PENDING,  DM_KYC_S_REVIEW,
                                       DM_KYC_S_APPROVED, DM_KYC_S_REJECTED, DM_KYC_S_RESUBMISSION};

int dm_kyc_status_known(const char *s)
{
    for (size_t i = 0; s && i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        if (strcmp(s, statuses[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

static int is_decision(const char *s)
{
    return strcmp(s, DM_KYC_S_APPROVED) == 0 || strcmp(s, DM_KYC_S_REJECTED) == 0 ||
           strcmp(s, DM_KYC_S_RESUBMISSION) == 0;
}

static const char *actor_source(const dm_kyc_actor *who)
{
    if (who && who->source) {
        return who->source;
    }
    return who && who->staff_id ? "staff" : "console";
}

/* The case row exists once anything is recorded for a member. */
static dm_err *case_touch(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t now)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO kyc_cases (user_id, updated_at) VALUES (?, ?) "
                              "ON CONFLICT (user_id) DO NOTHING",
                              &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_int64(st, 2, now);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

static dm_err *case_record(dm_db *db, apr_pool_t *p, int64_t user_id, const char *status,
                           const char *reason, int64_t now)
{
    dm_stmt *st;
    int row = 0;
    int pending = strcmp(status, DM_KYC_S_PENDING) == 0;
    int decision = is_decision(status);
    dm_err *e = case_touch(db, p, user_id, now);

    if (!e) {
        e = dm_db_prepare(db, p,
                          "UPDATE kyc_cases SET reason = ?, updated_at = ?2, "
                          "submitted_at = CASE WHEN ?3 THEN ?2 ELSE submitted_at END, "
                          "decided_at = CASE WHEN ?4 THEN ?2 ELSE decided_at END "
                          "WHERE user_id = ?5",
                          &st);
    }
    if (e) {
        return e;
    }
    if (reason && *reason) {
        dm_stmt_bind_text(st, 1, reason, strlen(reason));
    } else {
        dm_stmt_bind_null(st, 1);
    }
    dm_stmt_bind_int64(st, 2, now);
    dm_stmt_bind_int64(st, 3, pending);
    dm_stmt_bind_int64(st, 4, decision);
    dm_stmt_bind_int64(st, 5, user_id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

dm_err *dm_kyc_apply_status(dm_db *db, apr_pool_t *p, const dm_kyc_actor *who, int64_t user_id,
                            const char *status, const char *reason, dm_member *out, int *changed)
{
    dm_member before;
    dm_stmt *st;
    int row = 0;
    int64_t now = dm_now();
    json_t *b, *a;
    dm_err *e;

    if (changed) {
        *changed = 0;
    }
    if (!dm_kyc_status_known(status)) {
        return dm_err_make(p, DM_E_INVALID, "status",
                           "status must be one of none, pending, review, approved, rejected, "
                           "resubmission");
    }
    if (reason && *reason) {
        e = dm_validate_text(p, "reason", reason, DM_KYC_REASON_MAX, 0);
        if (e) {
            return e;
        }
    }
    e = dm_member_get(db, p, user_id, &before);
    if (e) {
        return e;
    }
    if (strcmp(before.kyc_status, status) == 0) {
        if (out) {
            *out = before;
        }
        return NULL;
    }
    e = dm_db_prepare(db, p, "UPDATE users SET kyc_status = ?, updated_at = ? WHERE id = ?", &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_text(st, 1, status, strlen(status));
    dm_stmt_bind_int64(st, 2, now);
    dm_stmt_bind_int64(st, 3, user_id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e) {
        e = case_record(db, p, user_id, status, reason, now);
    }
    if (e) {
        return e;
    }
    b = dm_json_own(p, json_pack("{s:s}", "kyc_status", before.kyc_status));
    a = dm_json_own(p, json_pack("{s:s,s:s?,s:s}", "kyc_status", status, "reason",
                                 reason && *reason ? reason : NULL, "by", actor_source(who)));
    e = dm_audit_write(db, p, who ? who->staff_id : 0, "user.kyc", "user",
                       apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)user_id), b, a,
                       who ? who->ip : NULL);
    if (!e && is_decision(status)) {
        /* one message per decision: the audit row's id tells decisions apart */
        int64_t decision = dm_db_last_insert_id(db);
        json_t *vars = dm_json_own(p, json_pack("{s:s,s:s?}", "email", before.email, "reason",
                                                reason && *reason ? reason : NULL));
        e = dm_mail_enqueue(db, p, before.email, apr_pstrcat(p, "kyc_", status, NULL), vars,
                            apr_psprintf(p, "kyc_%s:%" APR_INT64_T_FMT ":%" APR_INT64_T_FMT, status,
                                         (apr_int64_t)user_id, (apr_int64_t)decision));
    }
    if (!e && changed) {
        *changed = 1;
    }
    return e || !out ? e : dm_member_get(db, p, user_id, out);
}

dm_err *dm_kyc_change_status(dm_db *db, apr_pool_t *p, const dm_kyc_actor *who, int64_t user_id,
                             const char *status, const char *reason, dm_member *out)
{
    dm_err *e = dm_db_begin(db, p);

    if (e) {
        return e;
    }
    e = dm_kyc_apply_status(db, p, who, user_id, status, reason, out, NULL);
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

dm_err *dm_kyc_set_provider(dm_db *db, apr_pool_t *p, int64_t user_id, const char *provider,
                            const char *provider_ref)
{
    dm_stmt *st;
    int row = 0;
    int64_t now = dm_now();
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO kyc_cases (user_id, provider, provider_ref, updated_at) "
                              "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (user_id) DO UPDATE SET "
                              "provider = ?2, provider_ref = ?3, updated_at = ?4",
                              &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_text(st, 2, provider, strlen(provider));
    if (provider_ref) {
        dm_stmt_bind_text(st, 3, provider_ref, strlen(provider_ref));
    } else {
        dm_stmt_bind_null(st, 3);
    }
    dm_stmt_bind_int64(st, 4, now);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}
