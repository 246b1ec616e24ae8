/*
 * inbound.c — a plugin's pages and webhooks (see inbound.h).
 *
 * A page is the plugin's answer sent almost as it is, so the checks here
 * are what keeps the site's own headers (security policy, framing, cookies)
 * in the host's hands.
 */
#include "plugins/inbound.h"

#include <string.h>
#include <strings.h>

#include "plugins/call.h"
#include "plugins/kyc.h"
#include "plugins/mailer.h"
#include "plugins/payment.h"

/* Headers the host sets on a plugin's page itself: a plugin may not replace
 * them (the security policy, the framing of the body) nor set cookies on
 * the site's origin. */
static const char *const host_owned_headers[] = {
    "Content-Type",
    "Content-Length",
    "Content-Encoding",
    "Transfer-Encoding",
    "Connection",
    "Keep-Alive",
    "Upgrade",
    "Trailer",
    "Set-Cookie",
    "Set-Cookie2",
    "Content-Security-Policy",
    "Content-Security-Policy-Report-Only",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "Referrer-Policy",
    "Strict-Transport-Security",
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Credentials",
    NULL,
};

/* A header name is an RFC 9110 token. */
static int is_token(dm_str s)
{
    static const char *const extra = "!#$%&'*+-.^_`|~";

    if (!s.ptr || s.len == 0 || s.len > 256) {
        return 0;
    }
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c != '\0' && strchr(extra, c)))) {
            return 0;
        }
    }
    return 1;
}

static int host_owns_header(dm_str name)
{
    for (const char *const *o = host_owned_headers; *o; o++) {
        if (strlen(*o) == name.len && strncasecmp(*o, name.ptr, name.len) == 0) {
            return 1;
        }
    }
    return 0;
}

int dm_plugins_offers_requests(const dm_loaded_plugin *pl)
{
    return pl && DM_HAS_FIELD(pl->desc, dm_plugin, handle_request) &&
           pl->desc->handle_request != NULL;
}

dm_status dm_plugins_handle_request(const dm_plugin_host *h, const dm_loaded_plugin *pl,
                                    apr_pool_t *p, const dm_plugin_request *req,
                                    dm_plugin_response *resp, dm_message *msg)
{
    dm_plugin_request in;
    dm_call *call;
    dm_status st;

    memset(msg, 0, sizeof(*msg));
    memset(resp, 0, sizeof(*resp));
    resp->size = sizeof(*resp);
    resp->status = 200;
    if (!pl || !pl->initialised || !dm_plugins_offers_requests(pl)) {
        dm_call_msg(msg, "plugin %s serves no pages", pl ? pl->name : "(none)");
        return DM_ERR_UNSUPPORTED;
    }
    st = dm_call_begin(h, pl, p, 0, "plugin", &call, msg);
    if (st != DM_OK) {
        return st;
    }
    in = *req;
    in.size = sizeof(in);
    st = dm_call_end(pl, "handle_request", pl->desc->handle_request(call, &in, resp, msg), msg);
    if (st != DM_OK) {
        return st;
    }
    if (resp->status < 200 || resp->status > 599) {
        dm_call_msg(msg, "plugin %s: handle_request answered the HTTP status %d", pl->name,
                    resp->status);
        return DM_ERR_INTERNAL;
    }
    if (!dm_call_str_ok(resp->content_type) || !dm_call_str_ok(resp->body) ||
        dm_call_has_crlf(resp->content_type.ptr, resp->content_type.len) ||
        (resp->n_headers && !resp->headers)) {
        dm_call_msg(msg, "plugin %s: handle_request answered a malformed body or content type",
                    pl->name);
        return DM_ERR_INTERNAL;
    }
    if (!resp->headers) {
        resp->n_headers = 0;
    }
    for (size_t i = 0; i < resp->n_headers; i++) {
        const dm_header *hd = &resp->headers[i];
        if (!is_token(hd->name) || !dm_call_str_ok(hd->value) ||
            dm_call_has_crlf(hd->value.ptr, hd->value.len)) {
            dm_call_msg(msg,
                        "plugin %s: handle_request answered a malformed header %" APR_SIZE_T_FMT,
                        pl->name, (apr_size_t)i);
            return DM_ERR_INTERNAL;
        }
        if (host_owns_header(hd->name)) {
            dm_call_msg(msg, "plugin %s: handle_request may not set the header %.*s", pl->name,
                        (int)hd->name.len, hd->name.ptr);
            return DM_ERR_INTERNAL;
        }
    }
    return DM_OK;
}

dm_status dm_plugins_webhook(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                             dm_str raw_body, const dm_header *headers, size_t n_headers,
                             dm_plugin_event *out, dm_message *msg)
{
    memset(msg, 0, sizeof(*msg));
    memset(out, 0, sizeof(*out));
    if (!pl || !pl->initialised) {
        dm_call_msg(msg, "plugin %s is not loaded", pl ? pl->name : "(none)");
        return DM_ERR_UNSUPPORTED;
    }
    switch (pl->kind) {
    case DM_PLUGIN_PAYMENT:
        return dm_payment_parse_webhook(h, pl, p, raw_body, headers, n_headers, &out->payment, msg);
    case DM_PLUGIN_KYC:
        return dm_kyc_parse_webhook(h, pl, p, raw_body, headers, n_headers, &out->kyc, msg);
    case DM_PLUGIN_MAILER:
        return dm_mailer_parse_webhook(h, pl, p, raw_body, headers, n_headers, &out->mail, msg);
    case DM_PLUGIN_STORAGE:
    case DM_PLUGIN_MONITOR:
        dm_call_msg(msg, "plugin %s (%s) receives no webhooks", pl->name,
                    dm_plugin_kind_name(pl->kind));
        return DM_ERR_UNSUPPORTED;
    }
    dm_call_msg(msg, "plugin %s is of an unknown kind", pl->name);
    return DM_ERR_INTERNAL;
}
