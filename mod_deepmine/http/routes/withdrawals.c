/*
 * routes/withdrawals.c — withdrawals over HTTP: a member's request and
 * list (/api/withdrawals), finance's queue and decisions, one by one or in
 * bulk (/api/admin/withdrawals…), and staff setting a member's KYC status
 * by hand until the KYC issue lands (/api/admin/users/{id}/kyc). Roles are
 * in routes_admin.c's table; the rules are core/withdrawals.c's.
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "base/confparse.h"
#include "base/json.h"
#include "kyc/kyc_manual.h"
#include "withdrawals/addresses.h"
#include "withdrawals/withdrawals.h"

#define MAX_FIELD 64
#define MAX_BULK 200

static json_t *wd_row(apr_pool_t *p, const void *row, int staff_view)
{
    return dm_wd_json(p, row, staff_view);
}

/* ---- member ---- */

/* {amount_micros, address_id | destination (+ network), code?}: only to a
 * confirmed, matured address-book entry, with the current 2FA code when
 * 2FA is on (withdrawals/addresses.h). A code counts against
 * login-2fa-member, as at login. */
static int wd_create(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member mem = {0};
    json_t *b;
    dm_wd_protected_req req;
    dm_wd_limits lim;
    dm_withdrawal w;
    dm_err *e = dm_db_pool_acquire(dm_g.db, r->pool, &db);

    memset(&req, 0, sizeof(req));
    dm_conf_wd_limits(dm_conf_get(r->server), &lim);
    if (!e) {
        e = dm_http_member(r, db, &mem);
    }
    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_int64(r->pool, b, "amount_micros", 1, 1, INT64_MAX, &req.amount_micros,
                              NULL);
    }
    if (!e) {
        e = dm_json_get_int64(r->pool, b, "address_id", 0, 1, INT64_MAX, &req.address_id, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "destination", !req.address_id, DM_WD_DESTINATION_MAX,
                               &req.destination, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "network", 0, MAX_FIELD, &req.network, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "code", 0, MAX_FIELD, &req.code, NULL);
    }
    if (!e && req.code) {
        e = dm_http_rate_limit(
            r, "login-2fa-member",
            apr_psprintf(r->pool, "member:%" APR_INT64_T_FMT, (apr_int64_t)mem.id));
    }
    if (!e) {
        e = dm_wd_request_protected(db, r->pool, &dm_g.svc, &lim, mem.id, &req, &w);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_CREATED,
                                 json_pack("{s:o}", "withdrawal", dm_wd_json(r->pool, &w, 0)));
}

static int wd_mine(request_rec *r, const dm_route_match *m)
{
    dm_http_page pg;
    dm_err *e = dm_http_page_begin(r, m, DM_HTTP_MEMBER, NULL, &pg);

    if (!e) {
        e = dm_wd_list(pg.db, r->pool, pg.member.id, NULL, pg.cursor, pg.limit, &pg.rows, &pg.next);
    }
    return dm_http_page_send(r, e, &pg, "withdrawals", wd_row);
}

static int wd_admin_list(request_rec *r, const dm_route_match *m)
{
    dm_http_page pg;
    const char *status = dm_http_arg(r, "status"), *user = NULL;
    long long user_id = 0;
    dm_err *e = dm_http_page_begin(r, m, DM_HTTP_STAFF, "status user_id", &pg);

    if (!e) {
        e = dm_http_arg_max(r, "user_id", 32, &user);
    }
    if (!e && user && dm_parse_int(r->pool, user, 1, INT64_MAX, &user_id)) {
        e = dm_err_make(r->pool, DM_E_INVALID, "user_id",
                        "user_id must be a member id (a positive number)");
    }
    if (!e) {
        e = dm_wd_list(pg.db, r->pool, (int64_t)user_id, (status && *status) ? status : NULL,
                       pg.cursor, pg.limit, &pg.rows, &pg.next);
    }
    return dm_http_page_send(r, e, &pg, "withdrawals", wd_row);
}

/* One withdrawal with what staff weigh before paying (member_checks). */
static int wd_admin_get(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    int64_t id = 0;
    dm_withdrawal w;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_id_param(r, m, NULL, &id);
    }
    if (!e) {
        e = dm_wd_get(db, r->pool, id, &w);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK,
                                 json_pack("{s:o}", "withdrawal", dm_wd_json(r->pool, &w, 1)));
}

static int decide_one(request_rec *r, const dm_route_match *m, int approve)
{
    dm_db *db;
    dm_staff st;
    int64_t id = 0;
    json_t *b;
    const char *text = NULL;
    dm_withdrawal w;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_id_param(r, m, NULL, &id);
    }
    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, approve ? "txid" : "reason", 1,
                               approve ? DM_WD_TXID_MAX : 4 * DM_WD_REASON_MAX, &text, NULL);
    }
    if (!e) {
        e = dm_wd_decide(db, r->pool, st.id, r->useragent_ip, id, approve, approve ? text : NULL,
                         approve ? NULL : text, &w);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK,
                                 json_pack("{s:o}", "withdrawal", dm_wd_json(r->pool, &w, 1)));
}

static int wd_approve(request_rec *r, const dm_route_match *m)
{
    return decide_one(r, m, 1);
}

static int wd_reject(request_rec *r, const dm_route_match *m)
{
    return decide_one(r, m, 0);
}

/* {ids:[…], decision:"approve"|"reject", txids:[…] (approve: one per id),
 * reason (reject)}. Each withdrawal is decided in its own transaction;
 * the answer lists each outcome, so one already decided does not undo
 * the others. */
static int wd_bulk(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    json_t *b, *ids, *txids, *results;
    const char *decision = NULL, *reason = NULL;
    int approve = 0;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "decision", 1, MAX_FIELD, &decision, NULL);
    }
    if (!e && strcmp(decision, "approve") != 0 && strcmp(decision, "reject") != 0) {
        e = dm_err_make(r->pool, DM_E_INVALID, "decision",
                        "decision must be \"approve\" or \"reject\"");
    }
    if (e) {
        return dm_http_error(r, e);
    }
    approve = strcmp(decision, "approve") == 0;
    ids = json_object_get(b, "ids");
    txids = json_object_get(b, "txids");
    if (!json_is_array(ids) || json_array_size(ids) < 1 || json_array_size(ids) > MAX_BULK) {
        return dm_http_fail(r, DM_E_INVALID, "ids", "ids must be a list of 1 to 200 ids");
    }
    if (approve && (!json_is_array(txids) || json_array_size(txids) != json_array_size(ids))) {
        return dm_http_fail(r, DM_E_INVALID, "txids", "txids must list one txid per id");
    }
    if (!approve) {
        e = dm_json_get_string(r->pool, b, "reason", 1, 4 * DM_WD_REASON_MAX, &reason, NULL);
        if (e) {
            return dm_http_error(r, e);
        }
    }
    for (size_t i = 0; i < json_array_size(ids); i++) {
        json_t *txid = approve ? json_array_get(txids, i) : NULL;
        if (!json_is_integer(json_array_get(ids, i)) ||
            json_integer_value(json_array_get(ids, i)) < 1) {
            return dm_http_fail(r, DM_E_INVALID, "ids", "every id must be a positive integer");
        }
        if (approve && !json_is_string(txid)) {
            return dm_http_fail(r, DM_E_INVALID, "txids", "every txid must be a string");
        }
    }
    results = json_array();
    for (size_t i = 0; i < json_array_size(ids); i++) {
        int64_t id = (int64_t)json_integer_value(json_array_get(ids, i));
        dm_withdrawal w;
        json_t *one;

        e = dm_wd_decide(db, r->pool, st.id, r->useragent_ip, id, approve,
                         approve ? json_string_value(json_array_get(txids, i)) : NULL, reason, &w);
        if (e) {
            one = json_pack("{s:I,s:b,s:{s:s,s:s}}", "id", (json_int_t)id, "ok", 0, "error", "code",
                            dm_err_code_name(e->code), "message", e->message);
        } else {
            one = json_pack("{s:I,s:b,s:o}", "id", (json_int_t)id, "ok", 1, "withdrawal",
                            dm_wd_json(r->pool, &w, 1));
        }
        json_array_append_new(results, one);
    }
    return dm_http_send_json(r, HTTP_OK, json_pack("{s:o}", "results", results));
}

static int kyc_set(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    int64_t id = 0;
    json_t *b;
    const char *status = NULL;
    dm_member mem = {0};
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_id_param(r, m, NULL, &id);
    }
    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "status", 1, MAX_FIELD, &status, NULL);
    }
    if (!e) {
        e = dm_kyc_set_status(db, r->pool, st.id, r->useragent_ip, id, status, &mem);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(
                   r, HTTP_OK,
                   json_pack("{s:o}", "user", dm_member_json(r->pool, &dm_g.svc, &mem)));
}

const dm_route_def dm_routes_withdrawals[] = {
    {"POST", "/api/withdrawals", wd_create},
    {"GET", "/api/withdrawals", wd_mine},
    {"GET", "/api/admin/withdrawals", wd_admin_list},
    {"GET", "/api/admin/withdrawals/{id}", wd_admin_get},
    {"POST", "/api/admin/withdrawals/decisions", wd_bulk},
    {"POST", "/api/admin/withdrawals/{id}/approve", wd_approve},
    {"POST", "/api/admin/withdrawals/{id}/reject", wd_reject},
    {"PATCH", "/api/admin/users/{id}/kyc", kyc_set},
    {NULL, NULL, NULL},
};
