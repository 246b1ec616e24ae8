/*
 * kyc.c — typed calls into KYC plugins (see kyc.h). The loader has made
 * sure that a KYC plugin's table covers start and parse_webhook.
 */
#include "plugins/kyc.h"

#include <apr_strings.h>
#include <string.h>

#include "plugins/call.h"

dm_status dm_kyc_parse_webhook(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                               dm_str raw_body, const dm_header *headers, size_t n_headers,
                               dm_kyc_event *out, dm_message *msg)
{
    const dm_kyc_ops *o;
    dm_call *call;
    dm_status st;

    memset(out, 0, sizeof(*out));
    st = dm_call_begin(h, pl, p, DM_PLUGIN_KYC, "KYC plugin", &call, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!raw_body.ptr) {
        raw_body.ptr = "";
        raw_body.len = 0;
    }
    o = pl->desc->ops;
    out->size = sizeof(*out);
    st = o->parse_webhook(call, raw_body, headers, headers ? n_headers : 0, out, msg);
    st = dm_call_end(pl, "parse_webhook", st, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!dm_call_str_ok(out->event_id) || !dm_call_str_ok(out->member_id) ||
        !dm_call_str_ok(out->reason) || out->status < DM_KYC_APPROVED ||
        out->status > DM_KYC_PENDING) {
        dm_call_msg(msg, "plugin %s: parse_webhook returned a malformed event", pl->name);
        return DM_ERR_INTERNAL;
    }
    if (out->event_id.len == 0) {
        dm_call_msg(msg, "plugin %s: parse_webhook returned an event without an id", pl->name);
        return DM_ERR_INTERNAL;
    }
    return DM_OK;
}

const dm_loaded_plugin *dm_kyc_plugin(const dm_plugin_host *h, const char *name)
{
    const apr_array_header_t *all;
    const dm_loaded_plugin *found = NULL;

    if (!h || (name && strcmp(name, "manual") == 0)) {
        return NULL;
    }
    if (name) {
        const dm_loaded_plugin *pl = dm_plugins_get(h, name);
        return pl && pl->initialised && pl->kind == DM_PLUGIN_KYC && pl->desc && pl->desc->ops
                   ? pl
                   : NULL;
    }
    all = dm_plugins_all(h);
    for (int i = 0; all && i < all->nelts; i++) {
        const dm_loaded_plugin *pl = APR_ARRAY_IDX(all, i, const dm_loaded_plugin *);
        if (pl->kind == DM_PLUGIN_KYC && pl->initialised && pl->desc && pl->desc->ops) {
            if (found) {
                return NULL; /* several: the operator must name one */
            }
            found = pl;
        }
    }
    return found;
}

static const char *dup_str(apr_pool_t *p, dm_str s)
{
    return s.ptr && s.len ? apr_pstrmemdup(p, s.ptr, s.len) : NULL;
}

dm_status dm_kyc_start(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                       const char *member_id, const char *email, const char **url,
                       const char **token, const char **provider_ref, dm_message *msg)
{
    const dm_kyc_ops *o;
    dm_kyc_start_result res;
    dm_call *call;
    dm_status st;
    dm_str mid = {member_id, strlen(member_id)}, em = {email, strlen(email)};

    *url = *token = *provider_ref = NULL;
    st = dm_call_begin(h, pl, p, DM_PLUGIN_KYC, "KYC plugin", &call, msg);
    if (st != DM_OK) {
        return st;
    }
    o = pl->desc->ops;
    memset(&res, 0, sizeof(res));
    res.size = sizeof(res);
    st = o->start(call, mid, em, &res, msg);
    st = dm_call_end(pl, "start", st, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!dm_call_str_ok(res.url) || !dm_call_str_ok(res.token) ||
        !dm_call_str_ok(res.provider_ref) || (res.url.len > 0) == (res.token.len > 0)) {
        dm_call_msg(msg, "plugin %s: start returned neither or both of url and token", pl->name);
        return DM_ERR_INTERNAL;
    }
    *url = dup_str(p, res.url);
    *token = dup_str(p, res.token);
    *provider_ref = dup_str(p, res.provider_ref);
    return DM_OK;
}
