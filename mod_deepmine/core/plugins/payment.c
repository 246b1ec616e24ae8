/*
 * payment.c — typed calls into payment plugins (see payment.h).
 *
 * The loader (check_ops in plugin_host.c) has made sure that a payment
 * plugin's table covers create_checkout and parse_webhook and that both are
 * set; refund is read only when the table covers it.
 */
#include "plugins/payment.h"

#include <apr_strings.h>
#include <string.h>

#include "plugins/call.h"
#include "base/validate.h"

static const dm_payment_ops *ops_of(const dm_loaded_plugin *pl)
{
    return pl->desc->ops;
}

/* A C string as the plugin sees it (NULL: no bytes at all). */
static dm_str str_of(const char *s)
{
    dm_str out = {s, s ? strlen(s) : 0};
    return out;
}

const dm_loaded_plugin *dm_payment_plugin(const dm_plugin_host *h, const char *name)
{
    const dm_loaded_plugin *pl = h && name ? dm_plugins_get(h, name) : NULL;

    return pl && pl->initialised && pl->kind == DM_PLUGIN_PAYMENT && pl->desc && pl->desc->ops
               ? pl
               : NULL;
}

int dm_payment_can_checkout(const dm_loaded_plugin *pl)
{
    const dm_payment_ops *o;

    if (!pl || !pl->initialised || pl->kind != DM_PLUGIN_PAYMENT) {
        return 0;
    }
    o = ops_of(pl);
    return DM_HAS_FIELD(o, dm_payment_ops, create_checkout) && o->create_checkout != NULL;
}

int dm_payment_can_refund(const dm_loaded_plugin *pl)
{
    const dm_payment_ops *o;

    if (!pl || !pl->initialised || pl->kind != DM_PLUGIN_PAYMENT) {
        return 0;
    }
    o = ops_of(pl);
    return DM_HAS_FIELD(o, dm_payment_ops, refund) && o->refund != NULL;
}

/* 1..DM_PAYMENT_REF_MAX bytes without control characters. */
static int plain_ref(dm_str s)
{
    if (!s.ptr || s.len == 0 || s.len > DM_PAYMENT_REF_MAX) {
        return 0;
    }
    return !dm_has_control_bytes(s.ptr, s.len);
}

dm_status dm_payment_create_checkout(const dm_plugin_host *h, const dm_loaded_plugin *pl,
                                     apr_pool_t *p, const dm_payment_checkout_in *in,
                                     dm_payment_checkout_out *out, dm_message *msg)
{
    dm_payment_checkout c;
    dm_payment_checkout_result res;
    dm_call *call;
    dm_status st;

    memset(out, 0, sizeof(*out));
    st = dm_call_begin(h, pl, p, DM_PLUGIN_PAYMENT, "payment plugin", &call, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!dm_payment_can_checkout(pl)) {
        dm_call_msg(msg, "plugin %s cannot take payments", pl->name);
        return DM_ERR_UNSUPPORTED;
    }
    memset(&c, 0, sizeof(c));
    memset(&res, 0, sizeof(res));
    c.size = sizeof(c);
    c.order_id = str_of(in->order_id);
    c.amount_micros = in->amount_micros;
    c.currency = str_of(in->currency);
    c.success_url = str_of(in->success_url);
    c.cancel_url = str_of(in->cancel_url);
    c.customer_email = str_of(in->customer_email);
    res.size = sizeof(res);
    st = dm_call_end(pl, "create_checkout", ops_of(pl)->create_checkout(call, &c, &res, msg), msg);
    if (st != DM_OK) {
        return st;
    }
    if (!plain_ref(res.provider_ref) || !res.redirect_url.ptr || res.redirect_url.len == 0 ||
        res.redirect_url.len > DM_PAYMENT_URL_MAX) {
        dm_call_msg(msg, "create_checkout returned a malformed result");
        return DM_ERR_INTERNAL;
    }
    out->redirect_url = apr_pstrmemdup(p, res.redirect_url.ptr, res.redirect_url.len);
    out->provider_ref = apr_pstrmemdup(p, res.provider_ref.ptr, res.provider_ref.len);
    return DM_OK;
}

dm_status dm_payment_refund(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                            const char *provider_ref, int64_t amount_micros, const char *currency,
                            dm_message *msg)
{
    dm_call *call;
    dm_status st = dm_call_begin(h, pl, p, DM_PLUGIN_PAYMENT, "payment plugin", &call, msg);

    if (st != DM_OK) {
        return st;
    }
    if (!dm_payment_can_refund(pl)) {
        dm_call_msg(msg, "plugin %s cannot refund", pl->name);
        return DM_ERR_UNSUPPORTED;
    }
    st = ops_of(pl)->refund(call, str_of(provider_ref), amount_micros, str_of(currency), msg);
    return dm_call_end(pl, "refund", st, msg);
}

dm_status dm_payment_parse_webhook(const dm_plugin_host *h, const dm_loaded_plugin *pl,
                                   apr_pool_t *p, dm_str raw_body, const dm_header *headers,
                                   size_t n_headers, dm_payment_event *out, dm_message *msg)
{
    dm_call *call;
    dm_status st;

    memset(out, 0, sizeof(*out));
    st = dm_call_begin(h, pl, p, DM_PLUGIN_PAYMENT, "payment plugin", &call, msg);
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
    if (!dm_call_str_ok(out->event_id) || !dm_call_str_ok(out->provider_ref) ||
        !dm_call_str_ok(out->order_id) || !dm_call_str_ok(out->currency) ||
        out->status < DM_PAY_PAID || out->status > DM_PAY_IGNORED) {
        dm_call_msg(msg, "plugin %s: parse_webhook returned a malformed event", pl->name);
        return DM_ERR_INTERNAL;
    }
    if (out->event_id.len == 0) {
        dm_call_msg(msg, "plugin %s: parse_webhook returned an event without an id", pl->name);
        return DM_ERR_INTERNAL;
    }
    return DM_OK;
}
