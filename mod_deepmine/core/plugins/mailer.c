/*
 * mailer.c — typed calls into mailer plugins (see mailer.h).
 *
 * The loader (check_ops in plugin_host.c) has made sure that a mailer's
 * table covers send and that send is set; parse_webhook is optional and
 * read only when the table covers it. What a send leaves in its dm_call
 * (retry_after, the MIME builder's refusal) is read back here.
 */
#include "plugins/mailer.h"

#include <apr_strings.h>
#include <string.h>

#include "plugins/call.h"

/* RFC 5322's longest line: no Message-ID is longer. */
#define MESSAGE_ID_MAX 998

static const dm_mailer_ops *ops_of(const dm_loaded_plugin *pl)
{
    return pl->desc->ops;
}

int dm_mailer_has_webhooks(const dm_loaded_plugin *pl)
{
    const dm_mailer_ops *o;

    if (!pl || !pl->initialised || pl->kind != DM_PLUGIN_MAILER) {
        return 0;
    }
    o = ops_of(pl);
    return DM_HAS_FIELD(o, dm_mailer_ops, parse_webhook) && o->parse_webhook != NULL;
}

dm_status dm_mailer_send(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                         const dm_mail *mail, const char **message_id, uint32_t *retry_after_s,
                         dm_message *msg)
{
    dm_call *call;
    dm_mail m;
    dm_str id = {NULL, 0};
    dm_status st;

    *message_id = NULL;
    *retry_after_s = 0;
    st = dm_call_begin(h, pl, p, DM_PLUGIN_MAILER, "mailer", &call, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!mail) {
        dm_call_msg(msg, "no message to send");
        return DM_ERR_INVALID;
    }
    m = *mail;
    m.size = sizeof(m);
    if (!m.headers) {
        m.n_headers = 0;
    }
    st = dm_call_end(pl, "send", ops_of(pl)->send(call, &m, &id, msg), msg);
    if (st == DM_ERR_TEMPORARY && call->retry_after_set) {
        *retry_after_s = call->retry_after_s;
    }
    if (st != DM_OK) {
        /* The builder's reason is more precise than any plugin's summary. */
        if (st == DM_ERR_INVALID && call->mime_refusal) {
            dm_call_msg(msg, "%s", call->mime_refusal);
        }
        if (!msg->text[0]) {
            dm_call_msg(msg, "plugin %s: send failed (%s) without saying why", pl->name,
                        dm_call_status_name(st));
        }
        return st;
    }
    if (!dm_call_str_ok(id) || id.len == 0 || id.len > MESSAGE_ID_MAX ||
        dm_call_has_crlf(id.ptr, id.len)) {
        dm_call_msg(msg, "plugin %s: send returned no usable message id", pl->name);
        return DM_ERR_INTERNAL;
    }
    *message_id = apr_pstrmemdup(p, id.ptr, id.len);
    return DM_OK;
}

dm_status dm_mailer_parse_webhook(const dm_plugin_host *h, const dm_loaded_plugin *pl,
                                  apr_pool_t *p, dm_str raw_body, const dm_header *headers,
                                  size_t n_headers, dm_mail_event *out, dm_message *msg)
{
    dm_call *call;
    dm_status st;

    memset(out, 0, sizeof(*out));
    st = dm_call_begin(h, pl, p, DM_PLUGIN_MAILER, "mailer", &call, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!dm_mailer_has_webhooks(pl)) {
        dm_call_msg(msg, "plugin %s receives no webhooks", pl->name);
        return DM_ERR_UNSUPPORTED;
    }
    if (!raw_body.ptr) {
        raw_body.ptr = "";
        raw_body.len = 0;
    }
    out->size = sizeof(*out);
    st = ops_of(pl)->parse_webhook(call, raw_body, headers, headers ? n_headers : 0, out, msg);
    st = dm_call_end(pl, "parse_webhook", st, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!dm_call_str_ok(out->event_id) || !dm_call_str_ok(out->message_id) ||
        !dm_call_str_ok(out->recipient) || out->type < DM_MAIL_DELIVERED ||
        out->type > DM_MAIL_OTHER) {
        dm_call_msg(msg, "plugin %s: parse_webhook returned a malformed event", pl->name);
        return DM_ERR_INTERNAL;
    }
    if (out->event_id.len == 0) {
        dm_call_msg(msg, "plugin %s: parse_webhook returned an event without an id", pl->name);
        return DM_ERR_INTERNAL;
    }
    return DM_OK;
}
