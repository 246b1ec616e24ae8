/*
 * routes/staff.c — the staff API under /api/admin: staff login and logout
 * (the dm_admin cookie), member search, detail and suspension, and the
 * audit log; and dm_http_staff, the one place where staff sessions and
 * roles are checked.
 *
 * Who may do what is the table `staff_access` below: one row per admin
 * route (method + pattern), the roles allowed. The owner may use every
 * admin route; a route missing from the table is refused to everyone
 * (and logged: it is a bug). Login and logout need no session and are not
 * in it.
 *
 *   route                          owner finance support kyc
 *   GET   /api/admin/users           x      x       x     x
 *   GET   /api/admin/users/{id}      x      x       x     x
 *   PATCH /api/admin/users/{id}      x              x
 *   GET   /api/admin/audit           x
 *   GET   /api/admin/transfers       x      x
 *   GET   /api/admin/withdrawals[/{id}] x   x
 *   POST  …/withdrawals/{id}/approve x      x
 *   POST  …/withdrawals/{id}/reject  x      x
 *   POST  …/withdrawals/decisions    x      x
 *   PATCH /api/admin/users/{id}/kyc  x                    x
 *   GET   /api/admin/kyc             x                    x
 *   GET   …/kyc/{user}/documents/{doc} x                  x  (audited)
 *   POST  /api/admin/kyc/decisions   x                    x
 *   GET   /api/admin/capacity        x      x
 *   PUT   /api/admin/capacity        x
 *   GET   /api/admin/packages        x      x       x
 *   POST  /api/admin/packages        x
 *   PATCH /api/admin/packages/{id}   x
 *   GET   /api/admin/vip-levels      x
 *   PUT   /api/admin/vip-levels      x
 *   PATCH /api/admin/users/{id}/vip  x
 *   GET   /api/admin/flags           x              x
 *   POST  /api/admin/flags/{id}/clear, /confirm  x  x (support)
 *   GET   /api/admin/commissions     x      x       x
 *   POST  …/commissions/{id}/forfeit x      x
 *   POST  …/users/{id}/commissions/forfeit x x
 *   GET   /api/admin/orders          x      x       x
 *   GET   /api/admin/contracts       x      x       x
 *   POST  /api/admin/orders/{id}/refund x   x
 *   GET   /api/admin/pool-payouts    x      x
 *   POST  /api/admin/pool-payouts    x      x
 *   GET   /api/admin/yield-commission-rates x
 *   PUT   /api/admin/yield-commission-rates x
 *   GET   /api/admin/jobs            x
 *   POST  /api/admin/jobs/{job}/run  x
 *   GET   /api/admin/health          x      x       x     x
 *   GET   /api/admin/metrics         x   (or DeepMineMetricsToken: routes/ops.c)
 *   GET   /api/admin/plugins         x
 *   GET   /api/admin/email           x              x
 *   POST  /api/admin/email/{id}/resend x            x
 *   GET   /api/admin/email-templates[/{key}]  x     x
 *   POST  …/email-templates/{key}/preview     x     x
 *   PUT   /api/admin/email-templates/{key}    x         (templates reach
 *   POST  …/email-templates/{key}/restore     x          every member: owner)
 *   GET   /api/admin/email-suppressions       x     x
 *   DELETE /api/admin/email-suppressions/{email} x  x
 *   GET   /api/admin/stats           x      x
 *   GET   /api/admin/export/users.csv        x  x  x
 *   GET   /api/admin/export/orders.csv       x  x  x
 *   GET   /api/admin/export/contracts.csv    x  x  x
 *   GET   /api/admin/export/commissions.csv  x  x  x
 *   GET   /api/admin/export/withdrawals.csv  x  x
 *   GET   /api/admin/export/transfers.csv    x  x
 *   GET/POST /api/admin/me/2fa[/setup|/enable|/disable]  every role (its own)
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "staff/member_admin.h"
#include "store/audit.h"
#include "base/json.h"
#include "base/metrics.h"
#include "mail/mail.h"
#include "store/migrate.h"
#include "shop/contracts.h"
#include "shop/orders.h"
#include "members/twofa.h"

#define MAX_EMAIL_FIELD 320
#define MAX_PASSWORD_FIELD 1024
#define MAX_FILTER_FIELD 64
/* The member detail's newest contracts and orders (the rest: the lists'
 * ?user_id= filter from *_next_cursor). */
#define DETAIL_ROWS 50

static const struct staff_access {
    const char *method;
    const char *pattern;
    unsigned roles; /* DM_ROLE_* bits; the owner is always allowed */
} staff_access[] = {
    {"GET", "/api/admin/users", DM_ROLE_FINANCE | DM_ROLE_SUPPORT | DM_ROLE_KYC},
    {"GET", "/api/admin/users/{id}", DM_ROLE_FINANCE | DM_ROLE_SUPPORT | DM_ROLE_KYC},
    {"PATCH", "/api/admin/users/{id}", DM_ROLE_SUPPORT},
    {"GET", "/api/admin/audit", 0},
    {"GET", "/api/admin/transfers", DM_ROLE_FINANCE}, /* routes_ledger.c */
    /* routes_withdrawals.c */
    {"GET", "/api/admin/withdrawals", DM_ROLE_FINANCE},
    {"GET", "/api/admin/withdrawals/{id}", DM_ROLE_FINANCE},
    {"POST", "/api/admin/withdrawals/{id}/approve", DM_ROLE_FINANCE},
    {"POST", "/api/admin/withdrawals/{id}/reject", DM_ROLE_FINANCE},
    {"POST", "/api/admin/withdrawals/decisions", DM_ROLE_FINANCE},
    {"PATCH", "/api/admin/users/{id}/kyc", DM_ROLE_KYC},
    /* routes/kyc.c */
    {"GET", "/api/admin/kyc", DM_ROLE_KYC},
    {"GET", "/api/admin/kyc/{user}/documents/{doc}", DM_ROLE_KYC},
    {"POST", "/api/admin/kyc/decisions", DM_ROLE_KYC},
    /* routes_catalogue_admin.c */
    {"GET", "/api/admin/capacity", DM_ROLE_FINANCE},
    {"PUT", "/api/admin/capacity", 0},
    {"GET", "/api/admin/packages", DM_ROLE_FINANCE | DM_ROLE_SUPPORT},
    {"POST", "/api/admin/packages", 0},
    {"PATCH", "/api/admin/packages/{id}", 0},
    {"GET", "/api/admin/vip-levels", 0},                                /* routes_commissions.c */
    {"PUT", "/api/admin/vip-levels", 0},                                /* routes_commissions.c */
    {"PATCH", "/api/admin/users/{id}/vip", 0},                          /* routes_commissions.c */
    {"GET", "/api/admin/flags", DM_ROLE_SUPPORT},                       /* routes_commissions.c */
    {"POST", "/api/admin/flags/{id}/clear", DM_ROLE_SUPPORT},           /* routes_commissions.c */
    {"POST", "/api/admin/flags/{id}/confirm", DM_ROLE_SUPPORT},         /* routes_commissions.c */
    {"GET", "/api/admin/orders", DM_ROLE_FINANCE | DM_ROLE_SUPPORT},    /* routes_orders.c */
    {"GET", "/api/admin/contracts", DM_ROLE_FINANCE | DM_ROLE_SUPPORT}, /* routes_orders.c */
    {"POST", "/api/admin/orders/{id}/refund", DM_ROLE_FINANCE},         /* routes_orders.c */
    {"GET", "/api/admin/pool-payouts", DM_ROLE_FINANCE},                /* routes_accrual.c */
    {"POST", "/api/admin/pool-payouts", DM_ROLE_FINANCE},               /* routes_accrual.c */
    {"GET", "/api/admin/yield-commission-rates", 0},                    /* routes_accrual.c */
    {"PUT", "/api/admin/yield-commission-rates", 0},                    /* routes_accrual.c */
    {"GET", "/api/admin/jobs", 0},                                      /* routes_jobs.c */
    {"POST", "/api/admin/jobs/{job}/run", 0},                           /* routes_jobs.c */
    {"GET", "/api/admin/health", DM_ROLE_FINANCE | DM_ROLE_SUPPORT | DM_ROLE_KYC},
    {"GET", "/api/admin/metrics", 0}, /* routes/ops.c */
    {"GET", "/api/admin/plugins", 0}, /* routes/ops.c */
    /* routes_email.c */
    {"GET", "/api/admin/email", DM_ROLE_SUPPORT},
    {"POST", "/api/admin/email/{id}/resend", DM_ROLE_SUPPORT},
    {"GET", "/api/admin/email-templates", DM_ROLE_SUPPORT},
    {"GET", "/api/admin/email-templates/{key}", DM_ROLE_SUPPORT},
    {"PUT", "/api/admin/email-templates/{key}", 0},
    {"POST", "/api/admin/email-templates/{key}/preview", DM_ROLE_SUPPORT},
    {"POST", "/api/admin/email-templates/{key}/restore", 0},
    {"GET", "/api/admin/email-suppressions", DM_ROLE_SUPPORT},
    {"DELETE", "/api/admin/email-suppressions/{email}", DM_ROLE_SUPPORT},
    /* routes_commissions.c: every member's commissions, forfeits */
    {"GET", "/api/admin/commissions", DM_ROLE_FINANCE | DM_ROLE_SUPPORT},
    {"POST", "/api/admin/commissions/{id}/forfeit", DM_ROLE_FINANCE},
    {"POST", "/api/admin/users/{id}/commissions/forfeit", DM_ROLE_FINANCE},
    /* routes/stats.c: statistics and CSV exports (an export shows what its
     * list shows, to the same roles) */
    {"GET", "/api/admin/stats", DM_ROLE_FINANCE},
    {"GET", "/api/admin/export/users.csv", DM_ROLE_FINANCE | DM_ROLE_SUPPORT},
    {"GET", "/api/admin/export/orders.csv", DM_ROLE_FINANCE | DM_ROLE_SUPPORT},
    {"GET", "/api/admin/export/contracts.csv", DM_ROLE_FINANCE | DM_ROLE_SUPPORT},
    {"GET", "/api/admin/export/commissions.csv", DM_ROLE_FINANCE | DM_ROLE_SUPPORT},
    {"GET", "/api/admin/export/withdrawals.csv", DM_ROLE_FINANCE},
    {"GET", "/api/admin/export/transfers.csv", DM_ROLE_FINANCE},
    /* routes/twofa.c: every account's own enrolment */
    {"GET", "/api/admin/me/2fa", DM_ROLE_ANY},
    {"POST", "/api/admin/me/2fa/setup", DM_ROLE_ANY},
    {"POST", "/api/admin/me/2fa/enable", DM_ROLE_ANY},
    {"POST", "/api/admin/me/2fa/disable", DM_ROLE_ANY},
};

/* What a session that may only enrol (DeepMineStaff2FA required, owner or
 * finance not enrolled yet) may use; everything else is
 * two_factor_enrolment_required. */
static int enrol_route(const char *method, const char *pattern)
{
    return (strcmp(method, "GET") == 0 && strcmp(pattern, "/api/admin/me/2fa") == 0) ||
           (strcmp(method, "POST") == 0 && (strcmp(pattern, "/api/admin/me/2fa/setup") == 0 ||
                                            strcmp(pattern, "/api/admin/me/2fa/enable") == 0));
}

/* The roles allowed on a route; *known 0 when the table has no row. */
static unsigned route_roles(const char *method, const char *pattern, int *known)
{
    *known = 0;
    for (size_t i = 0; i < sizeof(staff_access) / sizeof(staff_access[0]); i++) {
        if (strcmp(staff_access[i].method, method) == 0 &&
            strcmp(staff_access[i].pattern, pattern) == 0) {
            *known = 1;
            return staff_access[i].roles | DM_ROLE_OWNER;
        }
    }
    return 0;
}

/* The calling staff member on db (see dm_http_staff_db in dm_http.h). */
static dm_err *dm_http_staff(request_rec *r, dm_db *db, const dm_route_match *m, dm_staff *out)
{
    const dm_route_def *d = m->data;
    /* Only the dm_admin cookie: a member's dm_session or Bearer token is
     * never a staff credential. */
    const char *token = dm_http_cookie(r, "dm_admin");
    int known = 0;
    unsigned allowed = route_roles(d->method, m->pattern, &known);
    dm_err *e;

    if (!token) {
        return dm_err_make(r->pool, DM_E_UNAUTHORIZED, NULL, "log in as staff first");
    }
    e = dm_http_check_csrf(r);
    if (!e) {
        e = dm_staff_authenticate(db, r->pool, &dm_g.svc, token, out);
    }
    if (e) {
        return e;
    }
    apr_table_setn(r->notes, "dm-staff",
                   apr_psprintf(r->pool, "%" APR_INT64_T_FMT, (apr_int64_t)out->id));
    if (!known) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "DM00500: %s %s has no row in the staff role table; refused (a bug)",
                      d->method, m->pattern);
    }
    if (out->enrol_only && !enrol_route(d->method, m->pattern)) {
        return dm_err_make(r->pool, DM_E_ENROL_REQUIRED, NULL,
                           "the %s role signs in with two-factor codes: enrol first (POST "
                           "/api/admin/me/2fa/setup, then /api/admin/me/2fa/enable)",
                           out->role);
    }
    if (!(allowed & dm_staff_role_bit(out->role))) {
        return dm_err_make(r->pool, DM_E_FORBIDDEN, NULL, "the %s role may not %s %s", out->role,
                           d->method, m->pattern);
    }
    return dm_http_rate_limit(
        r, "api", apr_pstrcat(r->pool, "staff:", apr_table_get(r->notes, "dm-staff"), NULL));
}

dm_err *dm_http_staff_db(request_rec *r, const dm_route_match *m, dm_db **db, dm_staff *out)
{
    dm_err *e = dm_db_pool_acquire(dm_g.db, r->pool, db);
    return e ? e : dm_http_staff(r, *db, m, out);
}

/* ---- session ---- */

/* The staff session cookies and the answer of a login that opened one. */
static int answer_staff_session(request_rec *r, const dm_staff *st, const dm_staff_session *sess)
{
    const char *csrf = dm_token_new(r->pool);
    json_t *o;

    dm_http_set_cookie(r, "dm_admin", sess->token, "/api/admin", DM_STAFF_SESSION_TTL, 1, "Strict");
    /* The member side's double-submit cookie, with the member side's
     * lifetime, so a staff login never cuts short a member session in the
     * same browser (see docs/decisions.md). */
    dm_http_set_cookie(r, "dm_csrf", csrf, "/", DM_REFRESH_TTL, 0, "Lax");
    o = json_pack("{s:o,s:s}", "staff", dm_staff_json(st), "csrf_token", csrf);
    if (st->enrol_only) {
        /* DeepMineStaff2FA required and not enrolled yet: this session may
         * only enrol (docs/security.md) */
        json_object_set_new(o, "enrol_2fa_required", json_true());
    }
    return dm_http_send_json(r, HTTP_OK, o);
}

static int admin_login(request_rec *r, const dm_route_match *m)
{
    json_t *b;
    dm_db *db;
    const char *email = NULL, *password = NULL, *challenge = NULL;
    dm_staff st;
    dm_staff_session sess;
    int enrol_only = 0;
    dm_err *e = dm_http_check_origin(r);

    if (!e) {
        e = dm_http_rate_limit(r, "login", r->useragent_ip);
    }
    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "email", 1, MAX_EMAIL_FIELD, &email, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "password", 1, MAX_PASSWORD_FIELD, &password, NULL);
    }
    if (!e) {
        e = dm_db_pool_acquire(dm_g.db, r->pool, &db);
    }
    if (!e) {
        e = dm_staff_login_begin(db, r->pool, &dm_g.svc, email, password, r->useragent_ip,
                                 dm_conf_staff_2fa(dm_conf_get(r->server)), &st, &sess, &challenge,
                                 &enrol_only);
        if (e && (e->code == DM_E_UNAUTHORIZED || e->code == DM_E_FORBIDDEN)) {
            dm_metrics_inc(DM_M_LOGIN_FAILURES, "realm", "staff", DM_ML_END);
        }
    }
    if (e) {
        return dm_http_error(r, e);
    }
    if (challenge) {
        return dm_http_send_json(r, HTTP_OK,
                                 json_pack("{s:b,s:s,s:I}", "two_factor_required", 1, "challenge",
                                           challenge, "expires_in",
                                           (json_int_t)DM_2FA_CHALLENGE_TTL));
    }
    return answer_staff_session(r, &st, &sess);
}

/* {challenge, code}: the second step of a staff login with 2FA on. */
static int admin_login_2fa(request_rec *r, const dm_route_match *m)
{
    json_t *b;
    dm_db *db;
    const char *challenge = NULL, *code = NULL;
    dm_staff st;
    dm_staff_session sess;
    int64_t owner = 0;
    dm_err *e = dm_http_check_origin(r);

    if (!e) {
        e = dm_http_rate_limit(r, "login-2fa", r->useragent_ip);
    }
    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "challenge", 1, 256, &challenge, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "code", 1, 64, &code, NULL);
    }
    if (!e) {
        e = dm_db_pool_acquire(dm_g.db, r->pool, &db);
    }
    if (!e) {
        e = dm_2fa_challenge_owner(db, r->pool, dm_g.svc.keys, DM_2FA_STAFF, challenge, &owner);
    }
    if (!e) {
        e = dm_http_rate_limit(
            r, "login-2fa-member",
            apr_psprintf(r->pool, "staff:%" APR_INT64_T_FMT, (apr_int64_t)owner));
    }
    if (!e) {
        e = dm_staff_login_2fa(db, r->pool, &dm_g.svc, challenge, code, r->useragent_ip, &st,
                               &sess);
    }
    return e ? dm_http_error(r, e) : answer_staff_session(r, &st, &sess);
}

static int admin_logout(request_rec *r, const dm_route_match *m)
{
    static const char body[] = "{\"logged_out\":true}";
    const char *token = dm_http_cookie(r, "dm_admin");
    dm_db *db;
    dm_err *e = dm_http_check_origin(r);

    if (!e && token) {
        e = dm_http_check_csrf(r);
    }
    if (!e && token) {
        e = dm_db_pool_acquire(dm_g.db, r->pool, &db);
        if (!e) {
            e = dm_staff_logout(db, r->pool, &dm_g.svc, token, r->useragent_ip);
        }
    }
    if (e) {
        return dm_http_error(r, e);
    }
    /* dm_csrf stays: a member session in the same browser still uses it. */
    dm_http_set_cookie(r, "dm_admin", "", "/api/admin", 0, 1, "Strict");
    return dm_http_json(r, HTTP_OK, body, sizeof(body) - 1);
}

/* ---- members ---- */

static json_t *user_row(apr_pool_t *p, const void *row, int staff_view)
{
    return dm_admin_user_row_json(p, row);
}

static int users_list(request_rec *r, const dm_route_match *m)
{
    dm_http_page pg;
    const char *q = NULL, *status = NULL;
    dm_err *e = dm_http_page_begin(r, m, DM_HTTP_STAFF, "q status", &pg);

    if (!e) {
        e = dm_http_arg_max(r, "q", 4 * DM_ADMIN_Q_MAX_CHARS, &q);
    }
    if (!e) {
        e = dm_http_arg_max(r, "status", MAX_FILTER_FIELD, &status);
    }
    if (!e) {
        e = dm_admin_users_search(pg.db, r->pool, q, status, pg.cursor, pg.limit, &pg.rows,
                                  &pg.next);
    }
    return dm_http_page_send(r, e, &pg, "users", user_row);
}

static int users_get(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    int64_t id = 0;
    dm_admin_user_detail d;
    apr_array_header_t *contracts = NULL, *orders = NULL;
    int64_t contracts_next = 0, orders_next = 0;
    json_t *out, *arr;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_check_args(r, NULL);
    }
    if (!e) {
        e = dm_http_id_param(r, m, "member", &id);
    }
    if (!e) {
        e = dm_admin_user_get(db, r->pool, id, &d);
    }
    if (!e) {
        e = dm_contracts_list(db, r->pool, id, NULL, 0, DETAIL_ROWS, &contracts, &contracts_next);
    }
    if (!e) {
        e = dm_orders_list(db, r->pool, id, NULL, 0, DETAIL_ROWS, &orders, &orders_next);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    out = dm_admin_user_detail_json(r->pool, &dm_g.svc, &d);
    arr = json_array();
    for (int i = 0; i < contracts->nelts; i++) {
        json_array_append_new(
            arr, dm_contract_json(r->pool, &APR_ARRAY_IDX(contracts, i, dm_contract), 1));
    }
    json_object_set_new(out, "contracts", arr);
    json_object_set_new(out, "contracts_next_cursor", dm_http_cursor_json(r->pool, contracts_next));
    arr = json_array();
    for (int i = 0; i < orders->nelts; i++) {
        json_array_append_new(arr, dm_order_json(r->pool, &APR_ARRAY_IDX(orders, i, dm_order), 1));
    }
    json_object_set_new(out, "orders", arr);
    json_object_set_new(out, "orders_next_cursor", dm_http_cursor_json(r->pool, orders_next));
    return dm_http_send_json(r, HTTP_OK, out);
}

static int users_patch(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    int64_t id = 0;
    json_t *b, *user;
    const char *status = NULL;
    dm_member mem = {0};
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_id_param(r, m, "member", &id);
    }
    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "status", 1, MAX_FILTER_FIELD, &status, NULL);
    }
    if (!e) {
        e = dm_admin_user_set_status(db, r->pool, st.id, r->useragent_ip, id, status, &mem);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    user = dm_member_json(r->pool, &dm_g.svc, &mem);
    json_object_set_new(user, "referrer_id",
                        mem.referrer_id ? json_integer(mem.referrer_id) : json_null());
    return dm_http_send_json(r, HTTP_OK, json_pack("{s:o}", "user", user));
}

/* ---- audit ---- */

static json_t *audit_row(apr_pool_t *p, const void *row, int staff_view)
{
    return dm_audit_entry_json(p, row);
}

static int audit_list(request_rec *r, const dm_route_match *m)
{
    dm_http_page pg;
    dm_audit_filter f = {NULL, NULL, NULL};
    dm_err *e = dm_http_page_begin(r, m, DM_HTTP_STAFF, "action target_type target_id", &pg);

    if (!e) {
        e = dm_http_arg_max(r, "action", MAX_FILTER_FIELD, &f.action);
    }
    if (!e) {
        e = dm_http_arg_max(r, "target_type", MAX_FILTER_FIELD, &f.target_type);
    }
    if (!e) {
        e = dm_http_arg_max(r, "target_id", MAX_FILTER_FIELD, &f.target_id);
    }
    if (!e) {
        e = dm_audit_list(pg.db, r->pool, &f, pg.cursor, pg.limit, &pg.rows, &pg.next);
    }
    return dm_http_page_send(r, e, &pg, "entries", audit_row);
}

/* ---- health, the staff's view ---- */

/* GET /api/health for staff: the same database check, plus what only staff
 * may see (mail delivery over the last 24 hours). Always 200 when the
 * caller is staff: the body says what is unwell. */
static int admin_health(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    dm_mail_stats mail;
    int schema = 0;
    json_t *o;
    dm_err *e = dm_http_staff_db(r, m, &db, &st), *unwell = NULL;

    if (e) {
        return dm_http_error(r, e);
    }
    unwell = dm_migrate_version(db, r->pool, &schema);
    if (!unwell && schema != dm_migrate_latest()) {
        unwell = dm_err_make(r->pool, DM_E_UNAVAILABLE, NULL,
                             "database schema is %d, this server is built for %d", schema,
                             dm_migrate_latest());
    }
    if (!unwell) {
        unwell = dm_mail_stats_get(db, r->pool, 86400, &mail);
    }
    o = json_object();
    json_object_set_new(o, "status", json_string(unwell ? "degraded" : "ok"));
    json_object_set_new(o, "version", json_string(DM_VERSION));
    json_object_set_new(o, "schema", json_integer(schema));
    json_object_set_new(o, "database", json_string(unwell ? unwell->message : "ok"));
    json_object_set_new(o, "mail", unwell ? json_null() : dm_mail_stats_json(r->pool, &mail));
    return dm_http_send_json(r, HTTP_OK, o);
}

const dm_route_def dm_routes_admin[] = {
    {"POST", "/api/admin/auth/login", admin_login},
    {"POST", "/api/admin/auth/logout", admin_logout},
    {"POST", "/api/admin/auth/login/2fa", admin_login_2fa},
    {"GET", "/api/admin/users", users_list},
    {"GET", "/api/admin/users/{id}", users_get},
    {"PATCH", "/api/admin/users/{id}", users_patch},
    {"GET", "/api/admin/audit", audit_list},
    {"GET", "/api/admin/health", admin_health},
    {NULL, NULL, NULL},
};
