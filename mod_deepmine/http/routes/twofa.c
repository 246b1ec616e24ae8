/*
 * routes/twofa.c — two-factor enrolment (members under /api/me/2fa, staff
 * under /api/admin/me/2fa), the member's logins (/api/me/sessions) and
 * withdrawal address book (/api/me/addresses, confirmed through
 * /api/auth/confirm-address). The rules are core's: members/twofa.h,
 * members/members.h, staff/staff.h, withdrawals/addresses.h.
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "base/clock.h"
#include "base/json.h"
#include "members/twofa.h"
#include "withdrawals/addresses.h"

#define MAX_CODE_FIELD 64
#define MAX_FIELD 128

static json_t *state_json(const dm_2fa_state *st, apr_pool_t *p)
{
    return json_pack("{s:b,s:o,s:b,s:i}", "enabled", st->enabled, "enabled_at",
                     dm_json_time_or_null(p, st->enabled_at), "pending", st->pending,
                     "recovery_codes_left", st->recovery_left);
}

static json_t *codes_json(const apr_array_header_t *codes)
{
    json_t *a = json_array();

    for (int i = 0; i < codes->nelts; i++) {
        json_array_append_new(a, json_string(APR_ARRAY_IDX(codes, i, const char *)));
    }
    return a;
}

/* A {code} body, the attempt counted against login-2fa-member (key: who). */
static dm_err *read_code(request_rec *r, const char *who, int64_t id, const char **code)
{
    json_t *b;
    dm_err *e = dm_http_rate_limit(
        r, "login-2fa-member", apr_psprintf(r->pool, "%s:%" APR_INT64_T_FMT, who, (apr_int64_t)id));

    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "code", 1, MAX_CODE_FIELD, code, NULL);
    }
    return e;
}

/* ---- members ---- */

static int me_2fa(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member mem;
    dm_2fa_state st;
    dm_err *e = dm_http_member_db(r, &db, &mem);

    if (!e) {
        e = dm_2fa_state_get(db, r->pool, DM_2FA_MEMBER, mem.id, &st);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK,
                                 json_pack("{s:o}", "two_factor", state_json(&st, r->pool)));
}

static int me_2fa_setup(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member mem;
    const char *secret = NULL, *uri = NULL;
    dm_err *e = dm_http_member_db(r, &db, &mem);

    if (!e) {
        e = dm_member_2fa_setup(db, r->pool, &dm_g.svc, &mem, &secret, &uri);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    return dm_http_send_json(r, HTTP_OK,
                             json_pack("{s:s,s:s,s:i,s:i,s:s}", "secret", secret, "otpauth_uri",
                                       uri, "digits", 6, "period", 30, "algorithm", "SHA1"));
}

static int me_2fa_enable(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member mem;
    const char *code = NULL;
    apr_array_header_t *codes = NULL;
    dm_err *e = dm_http_member_db(r, &db, &mem);

    if (!e) {
        e = read_code(r, "member", mem.id, &code);
    }
    if (!e) {
        e = dm_member_2fa_enable(db, r->pool, &dm_g.svc, &mem, code, &codes);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    return dm_http_send_json(r, HTTP_OK,
                             json_pack("{s:{s:b},s:o}", "two_factor", "enabled", 1,
                                       "recovery_codes", codes_json(codes)));
}

static int me_2fa_disable(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member mem;
    const char *code = NULL;
    dm_err *e = dm_http_member_db(r, &db, &mem);

    if (!e) {
        e = read_code(r, "member", mem.id, &code);
    }
    if (!e) {
        e = dm_member_2fa_disable(db, r->pool, &dm_g.svc, &mem, code);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK, json_pack("{s:{s:b}}", "two_factor", "enabled", 0));
}

/* The refresh family of the caller's access token, for "current". Access
 * tokens do not carry their family yet (branch secfix adds the "fam"
 * claim); until then no login is marked current. */
static const char *current_family(request_rec *r)
{
    (void)r;
    return NULL;
}

static int me_sessions(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member mem;
    apr_array_header_t *rows = NULL;
    json_t *arr;
    const char *fam;
    dm_err *e = dm_http_member_db(r, &db, &mem);

    if (!e) {
        e = dm_member_sessions(db, r->pool, mem.id, &rows);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    fam = current_family(r);
    arr = json_array();
    for (int i = 0; i < rows->nelts; i++) {
        json_array_append_new(
            arr, dm_login_session_json(r->pool, &APR_ARRAY_IDX(rows, i, dm_login_session), fam));
    }
    return dm_http_send_json(r, HTTP_OK, json_pack("{s:o,s:n}", "sessions", arr, "next_cursor"));
}

static int me_session_end(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member mem;
    int64_t id = 0;
    dm_err *e = dm_http_member_db(r, &db, &mem);

    if (!e) {
        e = dm_http_id_param(r, m, "session", &id);
    }
    if (!e) {
        e = dm_member_session_end(db, r->pool, mem.id, id);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK,
                                 json_pack("{s:I,s:b}", "id", (json_int_t)id, "ended", 1));
}

static int me_addresses(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member mem;
    apr_array_header_t *rows = NULL;
    json_t *arr;
    int64_t now = dm_now();
    dm_err *e = dm_http_member_db(r, &db, &mem);

    if (!e) {
        e = dm_wd_address_list(db, r->pool, mem.id, &rows);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    arr = json_array();
    for (int i = 0; i < rows->nelts; i++) {
        json_array_append_new(
            arr, dm_wd_address_json(r->pool, &APR_ARRAY_IDX(rows, i, dm_wd_address), now));
    }
    return dm_http_send_json(r, HTTP_OK, json_pack("{s:o,s:n}", "addresses", arr, "next_cursor"));
}

static int me_address_add(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member mem;
    json_t *b;
    const char *network = NULL, *address = NULL, *label = NULL;
    dm_wd_address a;
    dm_err *e = dm_http_member_db(r, &db, &mem);

    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "address", 1, DM_WD_DESTINATION_MAX, &address, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "network", 0, MAX_FIELD, &network, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "label", 0, 4 * DM_WD_LABEL_MAX, &label, NULL);
    }
    if (!e) {
        e = dm_wd_address_add(db, r->pool, &dm_g.svc, &mem, network, address, label, &a);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(
                   r, HTTP_CREATED,
                   json_pack("{s:o}", "address", dm_wd_address_json(r->pool, &a, dm_now())));
}

static int me_address_remove(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member mem;
    int64_t id = 0;
    dm_err *e = dm_http_member_db(r, &db, &mem);

    if (!e) {
        e = dm_http_id_param(r, m, "address", &id);
    }
    if (!e) {
        e = dm_wd_address_remove(db, r->pool, mem.id, id);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK,
                                 json_pack("{s:I,s:b}", "id", (json_int_t)id, "removed", 1));
}

/* {token}: the e-mailed link, with or without a session (the link may be
 * opened in another browser), like verify-email. */
static int confirm_address(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    json_t *b;
    const char *token = NULL;
    dm_wd_address a;
    dm_err *e = dm_http_check_origin(r);

    if (!e) {
        e = dm_http_rate_limit(r, "confirm-address", r->useragent_ip);
    }
    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "token", 1, 256, &token, NULL);
    }
    if (!e) {
        e = dm_db_pool_acquire(dm_g.db, r->pool, &db);
    }
    if (!e) {
        e = dm_wd_address_confirm(db, r->pool, &dm_g.svc, token, &a);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(
                   r, HTTP_OK,
                   json_pack("{s:o}", "address", dm_wd_address_json(r->pool, &a, dm_now())));
}

/* ---- staff ---- */

static int admin_2fa(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    dm_2fa_state tf;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_2fa_state_get(db, r->pool, DM_2FA_STAFF, st.id, &tf);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    {
        json_t *o = state_json(&tf, r->pool);
        json_object_set_new(o, "required",
                            json_boolean(dm_conf_staff_2fa(dm_conf_get(r->server)) &&
                                         dm_staff_role_needs_2fa(st.role)));
        return dm_http_send_json(r, HTTP_OK, json_pack("{s:o}", "two_factor", o));
    }
}

static int admin_2fa_setup(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    const char *secret = NULL, *uri = NULL;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_staff_2fa_setup(db, r->pool, &dm_g.svc, &st, &secret, &uri);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    return dm_http_send_json(r, HTTP_OK,
                             json_pack("{s:s,s:s,s:i,s:i,s:s}", "secret", secret, "otpauth_uri",
                                       uri, "digits", 6, "period", 30, "algorithm", "SHA1"));
}

static int admin_2fa_enable(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    const char *code = NULL;
    apr_array_header_t *codes = NULL;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = read_code(r, "staff", st.id, &code);
    }
    if (!e) {
        e = dm_staff_2fa_enable(db, r->pool, &dm_g.svc, &st, code, r->useragent_ip, &codes);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    return dm_http_send_json(r, HTTP_OK,
                             json_pack("{s:{s:b},s:o}", "two_factor", "enabled", 1,
                                       "recovery_codes", codes_json(codes)));
}

static int admin_2fa_disable(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    const char *code = NULL;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = read_code(r, "staff", st.id, &code);
    }
    if (!e) {
        e = dm_staff_2fa_disable(db, r->pool, &dm_g.svc, &st, code, r->useragent_ip,
                                 dm_conf_staff_2fa(dm_conf_get(r->server)));
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK, json_pack("{s:{s:b}}", "two_factor", "enabled", 0));
}

const dm_route_def dm_routes_twofa[] = {
    {"GET", "/api/me/2fa", me_2fa},
    {"POST", "/api/me/2fa/setup", me_2fa_setup},
    {"POST", "/api/me/2fa/enable", me_2fa_enable},
    {"POST", "/api/me/2fa/disable", me_2fa_disable},
    {"GET", "/api/me/sessions", me_sessions},
    {"DELETE", "/api/me/sessions/{id}", me_session_end},
    {"GET", "/api/me/addresses", me_addresses},
    {"POST", "/api/me/addresses", me_address_add},
    {"DELETE", "/api/me/addresses/{id}", me_address_remove},
    {"POST", "/api/auth/confirm-address", confirm_address},
    {"GET", "/api/admin/me/2fa", admin_2fa},
    {"POST", "/api/admin/me/2fa/setup", admin_2fa_setup},
    {"POST", "/api/admin/me/2fa/enable", admin_2fa_enable},
    {"POST", "/api/admin/me/2fa/disable", admin_2fa_disable},
    {NULL, NULL, NULL},
};
