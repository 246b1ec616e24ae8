/*
 * kyc.c — typed calls into KYC plugins (see kyc.h). The loader has made
 * sure that a KYC plugin's table covers start and parse_webhook; query is
 * read only when the table covers it.
 */
#include "plugins/kyc.h"

#include <apr_strings.h>
#include <string.h>

#include "plugins/call.h"

static dm_str str_of(const char *s)
{
    dm_str out = {s ? s : "", s ? strlen(s) : 0};
    return out;
}

static const dm_kyc_ops *ops_of(const dm_loaded_plugin *pl)
{
    return pl->desc->ops;
}

/* What a plugin's event must be; need_id: an empty event id is refused. */
static dm_status check_event(const dm_loaded_plugin *pl, const char *fn, dm_kyc_event *out,
                             int need_id, dm_message *msg)
{
    if (!dm_call_str_ok(out->event_id) || !dm_call_str_ok(out->member_id) ||
        !dm_call_str_ok(out->reason) || !dm_call_str_ok(out->provider_ref) ||
        out->status < DM_KYC_APPROVED || out->status > DM_KYC_IGNORED || out->occurred_at_ms < 0 ||
        dm_call_has_crlf(out->event_id.ptr, out->event_id.len) ||
        dm_call_has_crlf(out->provider_ref.ptr, out->provider_ref.len)) {
        dm_call_msg(msg, "plugin %s: %s returned a malformed event", pl->name, fn);
        return DM_ERR_INTERNAL;
    }
    if (need_id && out->event_id.len == 0) {
        dm_call_msg(msg, "plugin %s: %s returned an event without an id", pl->name, fn);
        return DM_ERR_INTERNAL;
    }
    if (out->status != DM_KYC_IGNORED && out->member_id.len == 0) {
        dm_call_msg(msg, "plugin %s: %s returned an event without a member", pl->name, fn);
        return DM_ERR_INTERNAL;
    }
    return DM_OK;
}

dm_status dm_kyc_parse_webhook(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                               dm_str raw_body, const dm_header *headers, size_t n_headers,
                               dm_kyc_event *out, dm_message *msg)
{
    dm_call *call;
    dm_status st;

    memset(out, 0, sizeof(*out));
    st = dm_call_begin(h, pl, p, DM_PLUGIN_KYC, "KYC plugin", &call, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!raw_body.ptr) {
        raw_body = str_of("");
    }
    out->size = sizeof(*out);
    st = ops_of(pl)->parse_webhook(call, raw_body, headers, headers ? n_headers : 0, out, msg);
    st = dm_call_end(pl, "parse_webhook", st, msg);
    if (st != DM_OK) {
        return st;
    }
    return check_event(pl, "parse_webhook", out, 1, msg);
}

int dm_kyc_can_query(const dm_loaded_plugin *pl)
{
    const dm_kyc_ops *o;

    if (!pl || pl->kind != DM_PLUGIN_KYC || !pl->desc) {
        return 0;
    }
    o = ops_of(pl);
    return DM_HAS_FIELD(o, dm_kyc_ops, query) && o->query != NULL;
}

dm_status dm_kyc_query(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                       const char *member_id, const char *provider_ref, dm_kyc_event *out,
                       dm_message *msg)
{
    dm_call *call;
    dm_status st;

    memset(out, 0, sizeof(*out));
    st = dm_call_begin(h, pl, p, DM_PLUGIN_KYC, "KYC plugin", &call, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!dm_kyc_can_query(pl)) {
        dm_call_msg(msg, "plugin %s cannot query a verification", pl->name);
        return DM_ERR_UNSUPPORTED;
    }
    out->size = sizeof(*out);
    st = dm_call_end(pl, "query",
                     ops_of(pl)->query(call, str_of(member_id), str_of(provider_ref), out, msg),
                     msg);
    if (st != DM_OK) {
        return st;
    }
    return check_event(pl, "query", out, 0, msg);
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
