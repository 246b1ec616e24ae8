/*
 * routes/kyc.c — identity checks: the member's side (/api/kyc: status,
 * documents, details, hand-in, a provider's flow) and the staff's
 * (/api/admin/kyc: the queue, a document, bulk decisions). Thin: each
 * handler reads its input and calls one function of core/kyc.
 *
 * A document upload is the one body larger than DeepMineMaxBody: it has
 * its own cap, DeepMineKycMaxDocument, checked on Content-Length before a
 * byte is read (the dispatcher leaves this path to us) and counted while
 * reading a chunked body. A staff view is decrypted whole and checked
 * before the first byte is sent (documents are at most 10 MiB by
 * default): a document that fails its check is a 500 with a DM number,
 * never a 200 with part of it (docs/security.md).
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "base/clock.h"
#include "base/confparse.h"
#include "base/json.h"
#include "kyc/kyc.h"
#include "kyc/kyc_events.h"
#include "kyc/kyc_docs.h"
#include "kyc/kyc_store.h"
#include "plugins/kyc.h"
#include "plugins/storage.h"

#define MAX_FIELD 256
#define MAX_BULK 200

/* What the document functions need, from the configuration. */
typedef struct kyc_ctx {
    dm_kyc_env env;
    dm_kyc_master master;
    dm_kyc_plugin_store store;
    int64_t retention, abandoned;
} kyc_ctx;

static void kyc_env(request_rec *r, kyc_ctx *k)
{
    const dm_conf *c = dm_conf_get(r->server);
    const char *why = NULL;
    const dm_loaded_plugin *pl = dm_storage_plugin(dm_g.plugins, c->storage, &why);

    memset(k, 0, sizeof(*k));
    dm_conf_kyc(c, &k->env, &k->retention, &k->abandoned);
    if (c->secret_key) {
        dm_kyc_master_derive(c->secret_key, &k->master);
        k->env.master = &k->master;
    }
    if (pl) {
        dm_kyc_store_plugin(&k->store, dm_g.plugins, pl);
        k->env.store = &k->store.store;
    }
}

static dm_kyc_actor actor(request_rec *r, int64_t staff_id, const char *source)
{
    dm_kyc_actor a = {staff_id, source, r->useragent_ip};
    return a;
}

/* ---- member ---- */

static int kyc_get(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member me = {0};
    kyc_ctx k;
    dm_kyc_overview o;
    dm_err *e = dm_http_member_db(r, &db, &me);
    const dm_loaded_plugin *prov;

    if (e) {
        return dm_http_error(r, e);
    }
    kyc_env(r, &k);
    e = dm_kyc_overview_get(db, r->pool, &k.env, me.id, &o);
    if (e) {
        return dm_http_error(r, e);
    }
    if (!o.provider) {
        prov = dm_kyc_plugin(dm_g.plugins, dm_conf_get(r->server)->kyc_provider);
        o.provider = prov ? prov->name : NULL;
    }
    return dm_http_send_json(r, HTTP_OK, dm_kyc_overview_json(r->pool, &o));
}

/* The upload's body, at most max bytes: 413 on the declared length before
 * reading, else counted while reading (chunked). */
static dm_err *read_document(request_rec *r, int64_t max, const char **out, apr_size_t *out_len)
{
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_size_t cap = 65536, used = 0;
    char *buf;
    long got;
    apr_off_t n = 0;
    char *end;

    *out = "";
    *out_len = 0;
    if (cl && (apr_strtoff(&n, cl, &end, 10) != APR_SUCCESS || *end || n < 0)) {
        return dm_err_make(r->pool, DM_E_INVALID, NULL, "the Content-Length is not a number");
    }
    if (cl && n > max) {
        return dm_err_make(r->pool, DM_E_TOO_LARGE, NULL,
                           "a document may have at most %" APR_INT64_T_FMT " bytes",
                           (apr_int64_t)max);
    }
    if (cl && n > 0) {
        cap = (apr_size_t)n + 1;
    }
    if (ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK) != OK) {
        return dm_err_make(r->pool, DM_E_INVALID, NULL, "the request body could not be read");
    }
    if (!ap_should_client_block(r)) {
        apr_table_setn(r->notes, "dm-body-read", "1");
        return NULL;
    }
    buf = apr_palloc(r->pool, cap + 1);
    for (;;) {
        if (used == cap) {
            apr_size_t ncap = cap * 2 > (apr_size_t)max + 1 ? (apr_size_t)max + 1 : cap * 2;
            char *nbuf;
            if (ncap <= cap) {
                return dm_err_make(r->pool, DM_E_TOO_LARGE, NULL,
                                   "a document may have at most %" APR_INT64_T_FMT " bytes",
                                   (apr_int64_t)max);
            }
            nbuf = apr_palloc(r->pool, ncap + 1);
            memcpy(nbuf, buf, used);
            buf = nbuf;
            cap = ncap;
        }
        got = ap_get_client_block(r, buf + used, cap - used);
        if (got == 0) {
            break;
        }
        if (got < 0) {
            return dm_err_make(r->pool, DM_E_INVALID, NULL, "the request body could not be read");
        }
        used += (apr_size_t)got;
        if ((int64_t)used > max) {
            return dm_err_make(r->pool, DM_E_TOO_LARGE, NULL,
                               "a document may have at most %" APR_INT64_T_FMT " bytes",
                               (apr_int64_t)max);
        }
    }
    apr_table_setn(r->notes, "dm-body-read", "1");
    *out = buf;
    *out_len = used;
    return NULL;
}

static int kyc_document_put(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member me = {0};
    kyc_ctx k;
    dm_kyc_doc d;
    const char *kind = apr_table_get(m->params, "doc"), *body = NULL;
    apr_size_t len = 0;
    dm_err *e = NULL;

    kyc_env(r, &k);
    /* the name and the size first: neither needs the body */
    if (dm_kyc_kind_of(kind) < 0) {
        e = dm_err_make(r->pool, DM_E_NOT_FOUND, NULL,
                        "no such document: use id_front, id_back, selfie or proof_of_address");
    }
    if (!e) {
        e = dm_http_member_db(r, &db, &me);
    }
    /* The document (up to DeepMineKycMaxDocument) arrives without a
     * database connection held: a slow upload holds only its thread. */
    if (!e) {
        dm_db_pool_release(dm_g.db, r->pool, db);
        e = read_document(r, k.env.max_document, &body, &len);
        if (!e) {
            e = dm_db_pool_acquire(dm_g.db, r->pool, &db);
        }
    }
    if (!e) {
        e = dm_kyc_document_put(db, r->pool, &k.env, me.id, kind,
                                apr_table_get(r->headers_in, "Content-Type"), body, len, &d);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK,
                                 json_pack("{s:o}", "document", dm_kyc_doc_json(r->pool, &d)));
}

static dm_err *opt_string(apr_pool_t *p, json_t *b, const char *field, const char **out)
{
    *out = NULL;
    return dm_json_get_string(p, b, field, 0, 4 * 200, out, NULL);
}

static int kyc_details_put(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member me = {0};
    json_t *b;
    kyc_ctx k;
    dm_kyc_details in = {0};
    dm_kyc_overview o;
    dm_err *e = dm_http_member_db(r, &db, &me);

    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = opt_string(r->pool, b, "legal_name", &in.legal_name);
    }
    if (!e) {
        e = opt_string(r->pool, b, "date_of_birth", &in.date_of_birth);
    }
    if (!e) {
        e = opt_string(r->pool, b, "country", &in.country);
    }
    if (!e) {
        e = opt_string(r->pool, b, "address_line1", &in.address_line1);
    }
    if (!e) {
        e = opt_string(r->pool, b, "address_line2", &in.address_line2);
    }
    if (!e) {
        e = opt_string(r->pool, b, "city", &in.city);
    }
    if (!e) {
        e = opt_string(r->pool, b, "postal_code", &in.postal_code);
    }
    if (!e) {
        e = dm_kyc_details_put(db, r->pool, me.id, &in);
    }
    if (!e) {
        kyc_env(r, &k);
        e = dm_kyc_overview_get(db, r->pool, &k.env, me.id, &o);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK, dm_kyc_overview_json(r->pool, &o));
}

static int kyc_submit(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member me = {0}, after;
    kyc_ctx k;
    dm_kyc_overview o;
    dm_kyc_actor who = actor(r, 0, "member");
    dm_err *e = dm_http_member_db(r, &db, &me);

    kyc_env(r, &k);
    if (!e) {
        e = dm_kyc_submit(db, r->pool, &k.env, &who, me.id, &after);
    }
    if (!e) {
        e = dm_kyc_overview_get(db, r->pool, &k.env, me.id, &o);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK, dm_kyc_overview_json(r->pool, &o));
}

static int kyc_start(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member me = {0};
    const dm_loaded_plugin *pl;
    const char *url = NULL, *token = NULL, *ref = NULL;
    dm_message msg = {{0}};
    dm_status st;
    json_t *o;
    dm_err *e = dm_http_member_db(r, &db, &me);

    if (e) {
        return dm_http_error(r, e);
    }
    pl = dm_kyc_plugin(dm_g.plugins, dm_conf_get(r->server)->kyc_provider);
    if (!pl) {
        return dm_http_fail(r, DM_E_CONFLICT, NULL,
                            "identity checks are reviewed by staff here: upload your documents "
                            "(PUT /api/kyc/documents/…) and submit them (POST /api/kyc/submit)");
    }
    if (strcmp(me.kyc_status, DM_KYC_S_APPROVED) == 0 ||
        strcmp(me.kyc_status, DM_KYC_S_REJECTED) == 0) {
        return dm_http_fail(
            r, DM_E_CONFLICT, NULL,
            apr_psprintf(r->pool, "your identity check is already %s", me.kyc_status));
    }
    st = dm_kyc_start(dm_g.plugins, pl, r->pool,
                      apr_psprintf(r->pool, "%" APR_INT64_T_FMT, (apr_int64_t)me.id), me.email,
                      &url, &token, &ref, &msg);
    if (st != DM_OK) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "DM01256: kyc start through %s failed for member %" APR_INT64_T_FMT
                      " (%d): %s",
                      pl->name, (apr_int64_t)me.id, (int)st, msg.text);
        return dm_http_fail(r, DM_E_UNAVAILABLE, NULL,
                            "the identity provider could not start a verification; try again "
                            "later");
    }
    e = dm_kyc_set_provider(db, r->pool, me.id, pl->name, ref);
    if (!e) {
        /* the case the polling job asks about (kyc_events.h); the member
         * is pending from now on */
        e = dm_kyc_provider_started(db, r->pool, pl->name, me.id, ref, dm_now());
    }
    if (e) {
        return dm_http_error(r, e);
    }
    o = json_object();
    json_object_set_new(o, "provider", json_string(pl->name));
    if (url) {
        json_object_set_new(o, "url", json_string(url));
    } else {
        json_object_set_new(o, "token", json_string(token));
    }
    return dm_http_send_json(r, HTTP_OK, o);
}

/* ---- staff ---- */

static json_t *queue_row(apr_pool_t *p, const void *row, int staff_view)
{
    return dm_kyc_queue_row_json(p, row);
}

static int admin_queue(request_rec *r, const dm_route_match *m)
{
    dm_http_page pg;
    const char *status = NULL;
    dm_err *e = dm_http_page_begin(r, m, DM_HTTP_STAFF, "status", &pg);

    if (!e) {
        e = dm_http_arg_max(r, "status", MAX_FIELD, &status);
    }
    if (!e) {
        e = dm_kyc_queue(pg.db, r->pool, status, dm_now(), pg.cursor, pg.limit, &pg.rows, &pg.next);
    }
    return dm_http_page_send(r, e, &pg, "cases", queue_row);
}

static const char *ext_of(const char *ct)
{
    return strcmp(ct, "image/png") == 0 ? "png" : strcmp(ct, "image/jpeg") == 0 ? "jpg" : "pdf";
}

static int admin_document(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    kyc_ctx k;
    dm_kyc_doc d;
    long long uid = 0;
    unsigned char *plain = NULL;
    size_t len = 0;
    dm_kyc_actor who;
    const char *kind = apr_table_get(m->params, "doc");
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e && dm_parse_int(r->pool, apr_table_get(m->params, "user"), 1, INT64_MAX, &uid)) {
        e = dm_err_make(r->pool, DM_E_INVALID, "user", "the member id must be a positive number");
    }
    if (!e && dm_kyc_kind_of(kind) < 0) {
        e = dm_err_make(r->pool, DM_E_NOT_FOUND, NULL, "no such document");
    }
    if (!e) {
        kyc_env(r, &k);
        who = actor(r, st.id, "staff");
        e = dm_kyc_document_view(db, r->pool, &k.env, &who, (int64_t)uid, kind, &d, &plain, &len);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    apr_table_setn(r->headers_out, "Content-Security-Policy", "default-src 'none'; sandbox");
    apr_table_setn(r->headers_out, "Referrer-Policy", "no-referrer");
    apr_table_setn(r->headers_out, "Content-Disposition",
                   apr_psprintf(r->pool,
                                "attachment; filename=\"member-%" APR_INT64_T_FMT "-%s.%s\"",
                                (apr_int64_t)uid, kind, ext_of(d.content_type)));
    ap_set_content_type(r, d.content_type);
    ap_set_content_length(r, (apr_off_t)len);
    r->status = HTTP_OK;
    if (!r->header_only) {
        ap_rwrite(plain, (int)len, r);
    }
    return OK;
}

static int admin_decisions(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    json_t *b, *ids, *results;
    const char *decision = NULL, *reason = NULL;
    dm_kyc_actor who;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "decision", 1, MAX_FIELD, &decision, NULL);
    }
    if (!e && strcmp(decision, "approve") != 0 && strcmp(decision, "reject") != 0 &&
        strcmp(decision, "request_resubmission") != 0) {
        e = dm_err_make(r->pool, DM_E_INVALID, "decision",
                        "decision must be approve, reject or request_resubmission");
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "reason", 0, 4 * DM_KYC_REASON_MAX, &reason, NULL);
    }
    if (!e && strcmp(decision, "approve") != 0 && (!reason || !*reason)) {
        e = dm_err_make(r->pool, DM_E_INVALID, "reason",
                        "give the member a reason (it is e-mailed and shown to them)");
    }
    if (e) {
        return dm_http_error(r, e);
    }
    ids = json_object_get(b, "ids");
    if (!json_is_array(ids) || json_array_size(ids) < 1 || json_array_size(ids) > MAX_BULK) {
        return dm_http_fail(r, DM_E_INVALID, "ids", "ids must be a list of 1 to 200 member ids");
    }
    for (size_t i = 0; i < json_array_size(ids); i++) {
        if (!json_is_integer(json_array_get(ids, i)) ||
            json_integer_value(json_array_get(ids, i)) < 1) {
            return dm_http_fail(r, DM_E_INVALID, "ids", "every id must be a positive integer");
        }
    }
    who = actor(r, st.id, "staff");
    results = json_array();
    for (size_t i = 0; i < json_array_size(ids); i++) {
        int64_t id = (int64_t)json_integer_value(json_array_get(ids, i));
        dm_member mem;
        json_t *one;

        e = dm_kyc_decide(db, r->pool, &who, id, decision, reason, &mem);
        if (e) {
            one = json_pack("{s:I,s:b,s:{s:s,s:s}}", "id", (json_int_t)id, "ok", 0, "error", "code",
                            dm_err_code_name(e->code), "message", e->message);
        } else {
            one = json_pack("{s:I,s:b,s:s}", "id", (json_int_t)id, "ok", 1, "kyc_status",
                            mem.kyc_status);
        }
        json_array_append_new(results, one);
    }
    return dm_http_send_json(r, HTTP_OK, json_pack("{s:o}", "results", results));
}

const dm_route_def dm_routes_kyc[] = {
    {"GET", "/api/kyc", kyc_get},
    {"PUT", "/api/kyc/documents/{doc}", kyc_document_put},
    {"PUT", "/api/kyc/details", kyc_details_put},
    {"POST", "/api/kyc/submit", kyc_submit},
    {"POST", "/api/kyc/start", kyc_start},
    {"GET", "/api/admin/kyc", admin_queue},
    {"GET", "/api/admin/kyc/{user}/documents/{doc}", admin_document},
    {"POST", "/api/admin/kyc/decisions", admin_decisions},
    {NULL, NULL, NULL},
};
