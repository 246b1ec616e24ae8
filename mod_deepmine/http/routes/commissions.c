/*
 * routes_commissions.c — commissions and VIP levels over HTTP: a member's
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

static int my_commissions(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member mem = {0};
    apr_array_header_t *rows = NULL;
    int64_t cursor = 0, next = 0;
    int limit = 50;
    json_t *arr;
    dm_err *e = dm_db_pool_acquire(dm_g.db, r->pool, &db);

    memset(&mem, 0, sizeof(mem));
    if (!e) {
        e = dm_http_member(r, db, &mem);
    }
    if (!e) {
        e = dm_http_paging(r, &limit, &cursor);
    }
    if (!e) {
        e = dm_commission_list(db, r->pool, mem.id, cursor, limit, &rows, &next);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    arr = json_array();
    for (int i = 0; i < rows->nelts; i++) {
        json_array_append_new(
            arr, dm_commission_row_json(r->pool, &APR_ARRAY_IDX(rows, i, dm_commission_row)));
    }
    return dm_http_send_page(r, "commissions", arr, next);
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

static int flags_list(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    apr_array_header_t *rows = NULL;
    int64_t cursor = 0, next = 0;
    int limit = 50;
    const char *status = dm_http_arg(r, "status");
    json_t *arr;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (status && !*status) {
        status = NULL; /* ?status= : every flag; a bad one is refused by core */
    }
    if (!e) {
        e = dm_http_paging(r, &limit, &cursor);
    }
    if (!e) {
        e = dm_flags_list(db, r->pool, status, cursor, limit, &rows, &next);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    arr = json_array();
    for (int i = 0; i < rows->nelts; i++) {
        json_array_append_new(arr, dm_flag_json(r->pool, &APR_ARRAY_IDX(rows, i, dm_flag)));
    }
    return dm_http_send_page(r, "flags", arr, next);
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
