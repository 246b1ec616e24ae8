/*
 * mailq.c — see mailq.h.
 */
#include "mail/mailq.h"

#include <apr_strings.h>
#include <apr_tables.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"

dm_err *dm_mail_enqueue(dm_db *db, apr_pool_t *p, const char *recipient, const char *tmpl,
                        const json_t *vars, const char *idempotency_key)
{
    dm_stmt *st;
    size_t vlen;
    const char *vtext = dm_json_dump(p, vars, &vlen);
    int64_t now = dm_now();
    int row;
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO mail_queue (recipient, template, variables, "
                              "idempotency_key, status, attempts, next_attempt_at, created_at, "
                              "updated_at) VALUES (?, ?, ?, ?, 'queued', 0, ?, ?, ?) "
                              "ON CONFLICT (idempotency_key) DO NOTHING",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_text(st, 1, recipient, strlen(recipient));
    dm_stmt_bind_text(st, 2, tmpl, strlen(tmpl));
    dm_stmt_bind_text(st, 3, vtext, vlen);
    dm_stmt_bind_text(st, 4, idempotency_key, strlen(idempotency_key));
    dm_stmt_bind_int64(st, 5, now);
    dm_stmt_bind_int64(st, 6, now);
    dm_stmt_bind_int64(st, 7, now);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

dm_err *dm_mail_staff_alert(dm_db *db, apr_pool_t *p, int with_finance, const json_t *vars,
                            const char *key)
{
    return dm_mail_staff_notice(db, p, with_finance, "staff_alert", vars, key);
}

dm_err *dm_mail_staff_notice(dm_db *db, apr_pool_t *p, int with_finance, const char *tmpl,
                             const json_t *vars, const char *key)
{
    dm_stmt *st;
    int row = 0;
    apr_array_header_t *to = apr_array_make(p, 4, sizeof(const char *));
    dm_err *e =
        dm_db_prepare(db, p,
                      with_finance ? "SELECT email FROM staff WHERE role IN ('owner', 'finance') "
                                     "AND status = 'active' ORDER BY id"
                                   : "SELECT email FROM staff WHERE role = 'owner' AND "
                                     "status = 'active' ORDER BY id",
                      &st);

    if (e) {
        return e;
    }
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        APR_ARRAY_PUSH(to, const char *) = apr_pstrdup(p, dm_stmt_text(st, 0, NULL));
    }
    dm_stmt_done(st);
    for (int i = 0; !e && i < to->nelts; i++) {
        const char *addr = APR_ARRAY_IDX(to, i, const char *);
        e = dm_mail_enqueue(db, p, addr, tmpl, vars, apr_psprintf(p, "%s:%s:%s", tmpl, key, addr));
    }
    return e;
}
