/*
 * routes/commissions.c — commissions and VIP levels over HTTP: a member's
 * credits (GET /api/referrals/commissions), the plan for the owner
 * (GET/PUT /api/admin/vip-levels), a member's level set by hand
 * (PATCH /api/admin/users/{id}/vip), and fraud flags for staff
 * (GET /api/admin/flags, POST /api/admin/flags/{id}/clear|confirm), and
 * every member's commissions for staff with forfeits (GET
 * /api/admin/commissions, POST /api/admin/commissions/{id}/forfeit, POST
 * /api/admin/users/{id}/commissions/forfeit). Roles are in
 * routes_admin.c's table; the rules are in core (commission.c, vip.c,
 * flags.c).
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "referral/commission.h"
#include "referral/flags.h"
#include "base/confparse.h"
#include "base/json.h"
#include "ledger/ledger.h"
#include "referral/vip.h"
#include "staff/member_admin.h"

/* ---- the member's credits ---- */

static json_t *commission_row(apr_pool_t *p, const void *row, int staff_view)
{
    return dm_commission_row_json(p, row);
}

static int my_commissions(request_rec *r, const dm_route_match *m)
{
    dm_http_page pg;
    dm_err *e = dm_http_page_begin(r, m, DM_HTTP_MEMBER, NULL, &pg);

    if (!e) {
        e = dm_commission_list(pg.db, r->pool, pg.member.id, pg.cursor, pg.limit, &pg.rows,
                               &pg.next);
    }
    return dm_http_page_send(r, e, &pg, "commissions", commission_row);
}

/* ---- the plan ---- */

static int vip_levels_get(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    dm_vip_plan plan;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_vip_plan_load(db, r->pool, &plan);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(
                   r, HTTP_OK,
                   dm_vip_plan_json(r->pool, &plan,
                                    dm_conf_commission_cap_bp(dm_conf_get(r->server))));
}

static int vip_levels_put(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    dm_vip_plan plan;
    json_t *b;
    int cap = dm_conf_commission_cap_bp(dm_conf_get(r->server));
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_vip_plan_parse(r->pool, b, &plan);
    }
    if (!e) {
        e = dm_vip_plan_replace(db, r->pool, st.id, r->useragent_ip, &plan, cap);
    }
    if (!e) {
        e = dm_vip_plan_load(db, r->pool, &plan);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK, dm_vip_plan_json(r->pool, &plan, cap));
}

static int user_vip_patch(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    dm_member mem = {0};
    json_t *b;
    int64_t id = 0, level = 0;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_id_param(r, m, "member", &id);
    }
    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_int64(r->pool, b, "vip_level", 1, 1, DM_VIP_LEVELS, &level, NULL);
    }
    if (!e) {
        e = dm_admin_user_set_vip(db, r->pool, st.id, r->useragent_ip, id, (int)level, &mem);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(
                   r, HTTP_OK,
                   json_pack("{s:o}", "user", dm_member_json(r->pool, &dm_g.svc, &mem)));
}

/* ---- fraud flags ---- */

static json_t *flag_row(apr_pool_t *p, const void *row, int staff_view)
{
    return dm_flag_json(p, row);
}

static int flags_list(request_rec *r, const dm_route_match *m)
{
    dm_http_page pg;
    const char *status = dm_http_arg(r, "status");
    dm_err *e = dm_http_page_begin(r, m, DM_HTTP_STAFF, "status", &pg);

    if (status && !*status) {
        status = NULL; /* ?status= : every flag; a bad one is refused by core */
    }
    if (!e) {
        e = dm_flags_list(pg.db, r->pool, status, pg.cursor, pg.limit, &pg.rows, &pg.next);
    }
    return dm_http_page_send(r, e, &pg, "flags", flag_row);
}

static int flag_resolve(request_rec *r, const dm_route_match *m, const char *status)
{
    dm_db *db;
    dm_staff st;
    dm_flag f;
    int64_t id = 0;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_id_param(r, m, "flag", &id);
    }
    if (!e) {
        e = dm_flags_resolve(db, r->pool, st.id, r->useragent_ip, id, status, &f);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK, json_pack("{s:o}", "flag", dm_flag_json(r->pool, &f)));
}

static int flag_clear(request_rec *r, const dm_route_match *m)
{
    return flag_resolve(r, m, "cleared");
}

static int flag_confirm(request_rec *r, const dm_route_match *m)
{
    return flag_resolve(r, m, "confirmed");
}

/* ---- staff: every member's commissions, forfeits ---- */

#define MAX_FILTER_FIELD 32
#define MAX_REASON_FIELD 2000 /* bytes; core counts 500 characters */

static dm_err *id_arg(request_rec *r, const char *name, int64_t *out)
{
    const char *s = NULL;
    long long v = 0;
    dm_err *e = dm_http_arg_max(r, name, MAX_FILTER_FIELD, &s);

    if (e || !s || !*s) {
        return e;
    }
    if (dm_parse_int(r->pool, s, 1, INT64_MAX, &v)) {
        return dm_err_make(r->pool, DM_E_INVALID, name,
                           "%s must be a member id (a positive number)", name);
    }
    *out = (int64_t)v;
    return NULL;
}

static json_t *commission_staff_row(apr_pool_t *p, const void *row, int staff_view)
{
    return dm_commission_staff_json(p, row);
}

static int admin_commissions(request_rec *r, const dm_route_match *m)
{
    dm_http_page pg;
    dm_commission_filter f;
    dm_err *e = dm_http_page_begin(r, m, DM_HTTP_STAFF, "beneficiary_id buyer_id status", &pg);

    memset(&f, 0, sizeof(f));
    if (!e) {
        e = id_arg(r, "beneficiary_id", &f.beneficiary_id);
    }
    if (!e) {
        e = id_arg(r, "buyer_id", &f.buyer_id);
    }
    if (!e) {
        e = dm_http_arg_max(r, "status", MAX_FILTER_FIELD, &f.status);
    }
    if (!e && f.status && !*f.status) {
        f.status = NULL;
    }
    if (!e) {
        e = dm_commission_admin_list(pg.db, r->pool, &f, pg.cursor, pg.limit, &pg.rows, &pg.next);
    }
    return dm_http_page_send(r, e, &pg, "commissions", commission_staff_row);
}

static dm_err *reason_of(request_rec *r, const char **reason)
{
    json_t *b;
    dm_err *e = dm_http_read_json(r, &b);

    return e ? e : dm_json_get_string(r->pool, b, "reason", 1, MAX_REASON_FIELD, reason, NULL);
}

static int commission_forfeit(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    dm_commission_row c;
    int64_t id = 0;
    const char *reason = NULL;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_id_param(r, m, "commission", &id);
    }
    if (!e) {
        e = reason_of(r, &reason);
    }
    if (!e) {
        e = dm_commission_forfeit(db, r->pool, st.id, r->useragent_ip, id, reason, &c);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(
                   r, HTTP_OK,
                   json_pack("{s:o}", "commission", dm_commission_staff_json(r->pool, &c)));
}

static int member_commissions_forfeit(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    int64_t id = 0, count = 0, amount = 0;
    const char *reason = NULL;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_id_param(r, m, "member", &id);
    }
    if (!e) {
        e = reason_of(r, &reason);
    }
    if (!e) {
        e = dm_commission_forfeit_member(db, r->pool, st.id, r->useragent_ip, id, reason, &count,
                                         &amount);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK,
                                 json_pack("{s:I,s:I,s:I,s:s}", "user_id", (json_int_t)id,
                                           "forfeited", (json_int_t)count, "amount_micros",
                                           (json_int_t)amount, "currency", DM_LEDGER_CURRENCY));
}

const dm_route_def dm_routes_commissions[] = {
    {"GET", "/api/referrals/commissions", my_commissions},
    {"GET", "/api/admin/vip-levels", vip_levels_get},
    {"PUT", "/api/admin/vip-levels", vip_levels_put},
    {"PATCH", "/api/admin/users/{id}/vip", user_vip_patch},
    {"GET", "/api/admin/flags", flags_list},
    {"POST", "/api/admin/flags/{id}/clear", flag_clear},
    {"POST", "/api/admin/flags/{id}/confirm", flag_confirm},
    {"GET", "/api/admin/commissions", admin_commissions},
    {"POST", "/api/admin/commissions/{id}/forfeit", commission_forfeit},
    {"POST", "/api/admin/users/{id}/commissions/forfeit", member_commissions_forfeit},
    {NULL, NULL, NULL},
};
