/*
 * routes/gdpr.c — members' data (issue 15): the member's export
 * (/api/me/export), the erasure request, its e-mailed confirmation and its
 * cancellation (/api/me/delete*), and the owners' view of the requests
 * (/api/admin/erasures*). Thin: each handler calls one function of
 * core/staff/gdpr.c.
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "base/json.h"
#include "kyc/kyc_store.h"
#include "plugins/storage.h"
#include "staff/gdpr.h"

#define MAX_TOKEN_FIELD 256

static int me_export(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member me;
    json_t *o = NULL;
    size_t len;
    const char *body;
    dm_err *e = dm_http_member_db(r, &db, &me);

    if (!e) {
        e = dm_http_check_args(r, NULL);
    }
    if (!e) {
        e = dm_http_rate_limit(r, "export",
                               apr_psprintf(r->pool, "%" APR_INT64_T_FMT, (apr_int64_t)me.id));
    }
    if (!e) {
        e = dm_gdpr_export(db, r->pool, me.id, &o);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    body = dm_json_dump(r->pool, o, &len);
    apr_table_setn(
        r->headers_out, "Content-Disposition",
        apr_psprintf(r->pool, "attachment; filename=\"deepmine-export-%" APR_INT64_T_FMT ".json\"",
                     (apr_int64_t)me.id));
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    return dm_http_json(r, HTTP_OK, body, len);
}

static int send_erasure(request_rec *r, int status, const dm_erasure *x)
{
    return dm_http_send_json(
        r, status, json_pack("{s:o}", "erasure", x ? dm_erasure_json(r->pool, x) : json_null()));
}

static int me_delete_get(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member me;
    dm_erasure x = {0};
    int found = 0;
    apr_array_header_t *blockers = NULL;
    json_t *o, *arr;
    dm_err *e = dm_http_member_db(r, &db, &me);

    if (!e) {
        e = dm_gdpr_current(db, r->pool, me.id, &x, &found);
    }
    if (!e) {
        e = dm_gdpr_blockers(db, r->pool, me.id, &blockers);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    arr = json_array();
    for (int i = 0; i < blockers->nelts; i++) {
        json_array_append_new(arr, json_string(APR_ARRAY_IDX(blockers, i, const char *)));
    }
    o = json_pack("{s:o,s:o}", "erasure", found ? dm_erasure_json(r->pool, &x) : json_null(),
                  "blockers", arr);
    return dm_http_send_json(r, HTTP_OK, o);
}

static int me_delete(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member me;
    dm_erasure x = {0};
    json_t *b;
    dm_err *e = dm_http_member_db(r, &db, &me);

    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e && json_object_size(b)) {
        e = dm_err_make(r->pool, DM_E_INVALID, json_object_iter_key(json_object_iter(b)),
                        "this request takes no fields");
    }
    if (!e) {
        e = dm_http_rate_limit(r, "erasure",
                               apr_psprintf(r->pool, "%" APR_INT64_T_FMT, (apr_int64_t)me.id));
    }
    if (!e) {
        e = dm_gdpr_request(db, r->pool, &dm_g.svc, &me,
                            dm_conf_erasure_delay(dm_conf_get(r->server)), &x);
    }
    return e ? dm_http_error(r, e) : send_erasure(r, HTTP_ACCEPTED, &x);
}

static int me_delete_confirm(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    json_t *b;
    const char *token = NULL;
    dm_erasure x = {0};
    dm_err *e = dm_http_check_origin(r);

    if (!e) {
        e = dm_http_rate_limit(r, "verify-email", r->useragent_ip);
    }
    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "token", 1, MAX_TOKEN_FIELD, &token, NULL);
    }
    if (!e) {
        e = dm_db_pool_acquire(dm_g.db, r->pool, &db);
    }
    if (!e) {
        e = dm_gdpr_confirm(db, r->pool, &dm_g.svc, token,
                            dm_conf_erasure_delay(dm_conf_get(r->server)), &x);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    /* the link is anonymous: no address in the answer */
    x.email = NULL;
    return send_erasure(r, HTTP_OK, &x);
}

static int me_delete_cancel(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member me;
    dm_erasure x = {0};
    dm_err *e = dm_http_member_db(r, &db, &me);

    if (!e) {
        e = dm_gdpr_cancel(db, r->pool, 0, me.id, "member", 0, r->useragent_ip, &x);
    }
    return e ? dm_http_error(r, e) : send_erasure(r, HTTP_OK, &x);
}

/* ---- staff (owner) ---- */

static json_t *erasure_row(apr_pool_t *p, const void *row, int staff_view)
{
    return dm_erasure_json(p, row);
}

static int admin_list(request_rec *r, const dm_route_match *m)
{
    dm_http_page pg;
    const char *status = dm_http_arg(r, "status");
    dm_err *e = dm_http_page_begin(r, m, DM_HTTP_STAFF, "status", &pg);

    if (!e && status && strcmp(status, "unconfirmed") != 0 && strcmp(status, "scheduled") != 0 &&
        strcmp(status, "done") != 0 && strcmp(status, "cancelled") != 0) {
        e = dm_err_make(r->pool, DM_E_INVALID, "status",
                        "status is one of unconfirmed, scheduled, done, cancelled");
    }
    if (!e) {
        e = dm_gdpr_list(pg.db, r->pool, status, pg.cursor, pg.limit, &pg.rows, &pg.next);
    }
    return dm_http_page_send(r, e, &pg, "erasures", erasure_row);
}

static int admin_process(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    int64_t id = 0;
    json_t *b;
    dm_erasure x = {0};
    const dm_conf *c = dm_conf_get(r->server);
    const char *why = NULL;
    const dm_loaded_plugin *pl = dm_storage_plugin(dm_g.plugins, c->storage, &why);
    dm_kyc_plugin_store store;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_id_param(r, m, NULL, &id);
    }
    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (pl) {
        dm_kyc_store_plugin(&store, dm_g.plugins, pl);
    }
    if (!e) {
        e = dm_gdpr_erase(db, r->pool, pl ? &store.store : NULL, id,
                          apr_psprintf(r->pool, "staff:%" APR_INT64_T_FMT, (apr_int64_t)st.id),
                          st.id, r->useragent_ip, &x);
    }
    return e ? dm_http_error(r, e) : send_erasure(r, HTTP_OK, &x);
}

static int admin_cancel(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    int64_t id = 0;
    json_t *b;
    dm_erasure x = {0};
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_id_param(r, m, NULL, &id);
    }
    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_gdpr_get(db, r->pool, id, &x);
    }
    if (!e) {
        e = dm_gdpr_cancel(db, r->pool, id, 0,
                           apr_psprintf(r->pool, "staff:%" APR_INT64_T_FMT, (apr_int64_t)st.id),
                           st.id, r->useragent_ip, &x);
    }
    if (e && e->code == DM_E_NOT_FOUND && x.status) {
        e = dm_err_make(r->pool, DM_E_CONFLICT, NULL,
                        "erasure request %" APR_INT64_T_FMT " is %s: it cannot be cancelled",
                        (apr_int64_t)id, x.status);
    }
    return e ? dm_http_error(r, e) : send_erasure(r, HTTP_OK, &x);
}

const dm_route_def dm_routes_gdpr[] = {
    {"GET", "/api/me/export", me_export},
    {"GET", "/api/me/delete", me_delete_get},
    {"POST", "/api/me/delete", me_delete},
    {"DELETE", "/api/me/delete", me_delete_cancel},
    {"POST", "/api/me/delete/confirm", me_delete_confirm},
    {"GET", "/api/admin/erasures", admin_list},
    {"POST", "/api/admin/erasures/{id}/process", admin_process},
    {"POST", "/api/admin/erasures/{id}/cancel", admin_cancel},
    {NULL, NULL, NULL},
};
