/*
 * kyc.c — typed calls into KYC plugins (see kyc.h). The loader has made
 * sure that a KYC plugin's table covers start and parse_webhook.
 */
#include "plugins/kyc.h"

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
