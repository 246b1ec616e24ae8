/*
 * routes/commissions.c — commissions and VIP levels over HTTP: a member's
 * credits (GET /api/referrals/commissions), the plan for the owner
 * (GET/PUT /api/admin/vip-levels), a member's level set by hand
 * (PATCH /api/admin/users/{id}/vip), and fraud flags for staff
 * (GET /api/admin/flags, POST /api/admin/flags/{id}/clear|confirm). Roles
 * are in routes_admin.c's table; the rules are in core (commission.c,
 * vip.c, flags.c).
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "referral/commission.h"
#include "referral/flags.h"
#include "base/json.h"
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
    dm_err *e = dm_http_page_begin(r, m, DM_HTTP_MEMBER, &pg);

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
    dm_err *e = dm_http_page_begin(r, m, DM_HTTP_STAFF, &pg);

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

const dm_route_def dm_routes_commissions[] = {
    {"GET", "/api/referrals/commissions", my_commissions},
    {"GET", "/api/admin/vip-levels", vip_levels_get},
    {"PUT", "/api/admin/vip-levels", vip_levels_put},
    {"PATCH", "/api/admin/users/{id}/vip", user_vip_patch},
    {"GET", "/api/admin/flags", flags_list},
    {"POST", "/api/admin/flags/{id}/clear", flag_clear},
    {"POST", "/api/admin/flags/{id}/confirm", flag_confirm},
    {NULL, NULL, NULL},
};
