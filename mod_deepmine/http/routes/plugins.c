/*
 * routes/plugins.c — the two ways the outside world reaches a plugin:
 *
 *   GET|POST /api/plugins/{name}/…   pages a plugin serves itself (ABI 1.2
 *                                    handle_request): a sandbox checkout, a
 *                                    gateway's return URL;
 *   POST /api/webhooks/{name}        a provider's webhook: the raw body and
 *                                    every header go to the plugin's
 *                                    parse_webhook, and only an event it
 *                                    verified reaches the core: a payment
 *                                    plugin's core/payments.c, a mailer's
 *                                    delivery report core/mail.c, a KYC
 *                                    provider's verdict core/kyc/kyc_events.c.
 *
 * Neither needs a member session or a CSRF token: the callers are
 * providers and buyers' browsers, and the plugin checks what proves their
 * right (a signature, a signed token in the path). The per-address
 * `webhook` rate limit is applied by dm_handler before routing.
 *
 * The router matches one segment per placeholder, so the plugin pages are
 * registered at each depth from none to four segments below the plugin's
 * name (deeper paths are 404); the plugin sees the whole path below
 * /api/plugins/<name>.
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "base/clock.h"
#include "kyc/kyc_events.h"
#include "mail/mail.h"
#include "plugins/inbound.h"
#include "plugins/mailer.h"
#include "plugins/payment.h"
#include "shop/payments.h"

#define PLUGINS_PREFIX "/api/plugins/"

/* A plugin page is no API document: it may style itself inline and hold
 * forms that post back to this origin, nothing more — no script, no
 * external resource, no framing. (The API's own answers keep
 * "default-src 'none'".) */
#define PLUGIN_PAGE_CSP                                                                            \
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "           \
    "frame-ancestors 'none'; base-uri 'none'"

/* ---- shared helpers ---- */

/* A loaded, initialised plugin of that name, or NULL. */
static const dm_loaded_plugin *plugin_named(const char *name)
{
    const dm_loaded_plugin *pl = dm_plugins_get(dm_g.plugins, name);
    return pl && pl->initialised ? pl : NULL;
}

/* Every request header, as dm_header records pointing into r->headers_in. */
static const dm_header *request_headers(request_rec *r, size_t *n)
{
    const apr_array_header_t *arr = apr_table_elts(r->headers_in);
    const apr_table_entry_t *ent = (const apr_table_entry_t *)arr->elts;
    dm_header *hs = apr_pcalloc(r->pool, sizeof(dm_header) * (apr_size_t)(arr->nelts + 1));
    size_t k = 0;

    for (int i = 0; i < arr->nelts; i++) {
        if (!ent[i].key || !ent[i].val) {
            continue;
        }
        hs[k].name.ptr = ent[i].key;
        hs[k].name.len = strlen(ent[i].key);
        hs[k].value.ptr = ent[i].val;
        hs[k].value.len = strlen(ent[i].val);
        k++;
    }
    *n = k;
    return hs;
}

/* ---- GET|POST /api/plugins/{name}/… ---- */

static int send_plugin_page(request_rec *r, const dm_plugin_response *resp)
{
    apr_table_t *h = r->headers_out;
    const dm_conf *c = dm_conf_get(r->server);

    apr_table_setn(h, "X-Content-Type-Options", "nosniff");
    apr_table_setn(h, "Content-Security-Policy", PLUGIN_PAGE_CSP);
    /* Plugin URLs carry capabilities (a checkout token): never in a Referer. */
    apr_table_setn(h, "Referrer-Policy", "no-referrer");
    if (c->public_url && strncmp(c->public_url, "https://", 8) == 0) {
        apr_table_setn(h, "Strict-Transport-Security", "max-age=31536000; includeSubDomains");
    }
    for (size_t i = 0; i < resp->n_headers; i++) {
        const dm_header *x = &resp->headers[i];
        apr_table_addn(h, apr_pstrmemdup(r->pool, x->name.ptr, x->name.len),
                       apr_pstrmemdup(r->pool, x->value.ptr ? x->value.ptr : "", x->value.len));
    }
    if (!apr_table_get(h, "Cache-Control")) {
        apr_table_setn(h, "Cache-Control", "no-store");
    }
    r->status = resp->status;
    ap_set_content_type(r, resp->content_type.len ? apr_pstrmemdup(r->pool, resp->content_type.ptr,
                                                                   resp->content_type.len)
                                                  : "text/plain; charset=utf-8");
    if (resp->status == HTTP_NO_CONTENT || resp->status == HTTP_NOT_MODIFIED) {
        return OK;
    }
    ap_set_content_length(r, (apr_off_t)resp->body.len);
    if (!r->header_only && resp->body.len) {
        ap_rwrite(resp->body.ptr, (int)resp->body.len, r);
    }
    return OK;
}

static int plugin_request(request_rec *r, const dm_route_match *m)
{
    const char *name = apr_table_get(m->params, "name");
    const dm_loaded_plugin *pl = plugin_named(name);
    size_t prefix = sizeof(PLUGINS_PREFIX) - 1 + strlen(name);
    dm_plugin_request req;
    dm_plugin_response resp;
    dm_message msg;
    const char *body, *path, *answer;
    apr_size_t body_len;
    dm_status st;
    dm_err *e;

    if (!pl || !dm_plugins_offers_requests(pl) ||
        strncmp(r->uri, PLUGINS_PREFIX, sizeof(PLUGINS_PREFIX) - 1) != 0 ||
        strlen(r->uri) < prefix) {
        return dm_http_fail(r, DM_E_NOT_FOUND, NULL,
                            apr_psprintf(r->pool, "no plugin named %s serves pages", name));
    }
    e = dm_http_read_body(r, &body, &body_len);
    if (e) {
        return dm_http_error(r, e);
    }
    path = r->uri[prefix] ? r->uri + prefix : "/";
    memset(&req, 0, sizeof(req));
    req.size = sizeof(req);
    req.method = r->header_only ? "HEAD" : r->method;
    req.path.ptr = path;
    req.path.len = strlen(path);
    req.query.ptr = r->args ? r->args : "";
    req.query.len = strlen(req.query.ptr);
    req.headers = request_headers(r, &req.n_headers);
    req.body.ptr = body;
    req.body.len = body_len;

    st = dm_plugins_handle_request(dm_g.plugins, pl, r->pool, &req, &resp, &msg);
    switch (st) {
    case DM_OK:
        return send_plugin_page(r, &resp);
    case DM_ERR_INVALID:
        return dm_http_fail(r, DM_E_INVALID, NULL, msg.text[0] ? msg.text : "invalid request");
    case DM_ERR_UNSUPPORTED:
        return dm_http_fail(r, DM_E_NOT_FOUND, NULL, msg.text[0] ? msg.text : "no such page");
    case DM_ERR_TEMPORARY:
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "DM00652: plugin %s could not answer %s %s for now: %s", name, r->method,
                      r->uri, msg.text);
        return dm_http_fail(r, DM_E_UNAVAILABLE, NULL, "the plugin cannot answer now; try again");
    default:
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "DM00653: plugin %s failed on %s %s: %s", name,
                      r->method, r->uri, msg.text[0] ? msg.text : "no reason given");
        /* dm_http_error would log the same failure again: answer directly. */
        apr_table_setn(r->headers_out, "Cache-Control", "no-store");
        answer =
            dm_err_to_json(r->pool, dm_err_make(r->pool, DM_E_INTERNAL, NULL, "the plugin failed"));
        return dm_http_json(r, HTTP_INTERNAL_SERVER_ERROR, answer, strlen(answer));
    }
}

/* ---- /api/webhooks/{name} ---- */

/* A payment plugin's webhook endpoint, a KYC plugin's, or a mailer's that
 * has delivery reports. */
static const dm_loaded_plugin *webhook_receiver(const char *name)
{
    const dm_loaded_plugin *pl = plugin_named(name);

    if (!pl) {
        return NULL;
    }
    return pl->kind == DM_PLUGIN_PAYMENT || pl->kind == DM_PLUGIN_KYC || dm_mailer_has_webhooks(pl)
               ? pl
               : NULL;
}

/* A verified KYC verdict: applied to the member once, in the provider's
 * time order (a replay or an older event is a 200 that changes nothing). */
static int kyc_event(request_rec *r, const dm_loaded_plugin *pl, const dm_kyc_event *ev)
{
    dm_kyc_applied res;
    dm_db *db;
    const char *answer;
    dm_err *e = dm_db_pool_acquire(dm_g.db, r->pool, &db);

    if (!e) {
        e = dm_kyc_event_apply(db, r->pool, pl->name, ev, "webhook", dm_now(), &res);
    }
    if (e) {
        if (e->code == DM_E_INVALID) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          "DM01302: webhook for KYC plugin %s: verified event refused: %s",
                          pl->name, e->message);
        }
        return dm_http_error(r, e);
    }
    answer = apr_psprintf(r->pool, "{\"received\":true,\"duplicate\":%s,\"outcome\":\"%s\"}",
                          res.duplicate ? "true" : "false", res.outcome);
    return dm_http_json(r, HTTP_OK, answer, strlen(answer));
}

/* A verified delivery report: recorded once (a replay is a 200 no-op). */
static int mail_event(request_rec *r, const dm_loaded_plugin *pl, const dm_mail_event *ev)
{
    dm_mail_event_result res;
    dm_db *db;
    const char *answer;
    dm_err *e = dm_db_pool_acquire(dm_g.db, r->pool, &db);

    if (!e) {
        e = dm_mail_event_record(db, r->pool, pl->name, ev, &res);
    }
    if (e) {
        if (e->code == DM_E_INVALID) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          "DM01010: webhook for mailer %s: verified event refused: %s", pl->name,
                          e->message);
        }
        return dm_http_error(r, e);
    }
    answer = res.duplicate ? "{\"received\":true,\"duplicate\":true}"
                           : "{\"received\":true,\"duplicate\":false}";
    return dm_http_json(r, HTTP_OK, answer, strlen(answer));
}

/* GET exists only so that an unknown name is 404 whatever the method (and
 * a known one 405, pointing at POST). */
static int webhook_get(request_rec *r, const dm_route_match *m)
{
    const char *name = apr_table_get(m->params, "name");

    if (!webhook_receiver(name)) {
        return dm_http_fail(r, DM_E_NOT_FOUND, NULL,
                            apr_psprintf(r->pool, "no webhook receiver named %s", name));
    }
    apr_table_setn(r->err_headers_out, "Allow", "POST");
    return dm_http_fail(r, DM_E_METHOD_NOT_ALLOWED, NULL, "webhooks are delivered with POST");
}

static int webhook_post(request_rec *r, const dm_route_match *m)
{
    const char *name = apr_table_get(m->params, "name");
    const dm_loaded_plugin *pl = webhook_receiver(name);
    const dm_header *headers;
    size_t n_headers = 0;
    const char *body, *answer;
    apr_size_t body_len;
    dm_plugin_event ev;
    dm_message msg;
    dm_payment_recorded rec;
    dm_status st;
    dm_err *e;
    dm_str raw;

    if (!pl) {
        return dm_http_fail(r, DM_E_NOT_FOUND, NULL,
                            apr_psprintf(r->pool, "no webhook receiver named %s", name));
    }
    e = dm_http_read_body(r, &body, &body_len);
    if (e) {
        return dm_http_error(r, e);
    }
    headers = request_headers(r, &n_headers);
    raw.ptr = body;
    raw.len = body_len;
    st = dm_plugins_webhook(dm_g.plugins, pl, r->pool, raw, headers, n_headers, &ev, &msg);
    switch (st) {
    case DM_OK:
        break;
    case DM_ERR_INVALID:
        /* Not a warning: anyone can post here. Notice, so a wrong secret
         * (every delivery refused) still shows in a default log. */
        ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r, "DM00650: webhook for plugin %s refused: %s",
                      name, msg.text[0] ? msg.text : "not verified");
        return dm_http_fail(r, DM_E_INVALID, NULL,
                            msg.text[0] ? msg.text : "the webhook could not be verified");
    case DM_ERR_UNSUPPORTED:
        return dm_http_fail(r, DM_E_NOT_FOUND, NULL,
                            apr_psprintf(r->pool, "no webhook receiver named %s", name));
    case DM_ERR_TEMPORARY:
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "DM00654: webhook for plugin %s cannot be verified now: %s", name, msg.text);
        return dm_http_fail(r, DM_E_UNAVAILABLE, NULL, "the webhook cannot be handled now");
    default:
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "DM00651: webhook for plugin %s failed: %s",
                      name, msg.text[0] ? msg.text : "no reason given");
        apr_table_setn(r->headers_out, "Cache-Control", "no-store");
        answer = dm_err_to_json(
            r->pool, dm_err_make(r->pool, DM_E_INTERNAL, NULL, "the webhook could not be handled"));
        return dm_http_json(r, HTTP_INTERNAL_SERVER_ERROR, answer, strlen(answer));
    }

    if (pl->kind == DM_PLUGIN_MAILER) {
        return mail_event(r, pl, &ev.mail);
    }
    if (pl->kind == DM_PLUGIN_KYC) {
        return kyc_event(r, pl, &ev.kyc);
    }
    /* No connection held while the event waits for its commit: more
     * webhooks than the pool's connections can share one. */
    e = dm_payment_event_record_pooled(dm_g.db, r->pool, pl->name, &ev.payment, body, body_len,
                                       &rec);
    if (e) {
        if (e->code == DM_E_INVALID) {
            /* Verified but unusable: the plugin's parsing is at fault. */
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          "DM00655: webhook for plugin %s: verified event refused: %s", name,
                          e->message);
        }
        return dm_http_error(r, e);
    }
    /* core/payments.c logs the event (info), recorded or seen again. A
     * provider that expects an answer of its own (Binance Pay) gets it;
     * else the outcome lets a gateway's own page say what happened (the
     * sandbox's "already paid"). */
    answer = dm_payment_webhook_ack_body(pl);
    if (answer) {
        return dm_http_json(r, HTTP_OK, answer, strlen(answer));
    }
    answer = apr_psprintf(r->pool, "{\"received\":true,\"duplicate\":%s,\"outcome\":%s%s%s}",
                          rec.duplicate ? "true" : "false", rec.outcome ? "\"" : "",
                          rec.outcome ? rec.outcome : "null", rec.outcome ? "\"" : "");
    return dm_http_json(r, HTTP_OK, answer, strlen(answer));
}

/* ---- the table ---- */

const dm_route_def dm_routes_plugins[] = {
    {"GET", "/api/plugins/{name}", plugin_request},
    {"POST", "/api/plugins/{name}", plugin_request},
    {"GET", "/api/plugins/{name}/{p1}", plugin_request},
    {"POST", "/api/plugins/{name}/{p1}", plugin_request},
    {"GET", "/api/plugins/{name}/{p1}/{p2}", plugin_request},
    {"POST", "/api/plugins/{name}/{p1}/{p2}", plugin_request},
    {"GET", "/api/plugins/{name}/{p1}/{p2}/{p3}", plugin_request},
    {"POST", "/api/plugins/{name}/{p1}/{p2}/{p3}", plugin_request},
    {"GET", "/api/plugins/{name}/{p1}/{p2}/{p3}/{p4}", plugin_request},
    {"POST", "/api/plugins/{name}/{p1}/{p2}/{p3}/{p4}", plugin_request},
    {"GET", "/api/webhooks/{name}", webhook_get},
    {"POST", "/api/webhooks/{name}", webhook_post},
    {NULL, NULL, NULL},
};
