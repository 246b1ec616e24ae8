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

/* The plugin's refund_ex, when its table covers it and it is set. */
static dm_status (*refund_ex_of(const dm_payment_ops *o))(dm_call *,
                                                          const dm_payment_refund_request *,
                                                          dm_str *, dm_message *)
{
    return DM_HAS_FIELD(o, dm_payment_ops, refund_ex) ? o->refund_ex : NULL;
}

int dm_payment_can_refund(const dm_loaded_plugin *pl)
{
    const dm_payment_ops *o;

    if (!pl || !pl->initialised || pl->kind != DM_PLUGIN_PAYMENT) {
        return 0;
    }
    o = ops_of(pl);
    return (DM_HAS_FIELD(o, dm_payment_ops, refund) && o->refund != NULL) ||
           refund_ex_of(o) != NULL;
}

int dm_payment_can_query(const dm_loaded_plugin *pl)
{
    const dm_payment_ops *o;

    if (!pl || !pl->initialised || pl->kind != DM_PLUGIN_PAYMENT) {
        return 0;
    }
    o = ops_of(pl);
    return DM_HAS_FIELD(o, dm_payment_ops, query) && o->query != NULL;
}

/* A static string the plugin offers, if it is a short printable one. */
static const char *plain_static(const char *s, size_t max)
{
    size_t n = s ? strnlen(s, max + 1) : 0;
    return n > 0 && n <= max && !dm_has_control_bytes(s, n) ? s : NULL;
}

int dm_payment_method_info(const dm_loaded_plugin *pl, apr_pool_t *p, dm_payment_method *out)
{
    const dm_payment_ops *o;
    const char *v;

    memset(out, 0, sizeof(*out));
    if (!pl || !pl->initialised || pl->kind != DM_PLUGIN_PAYMENT || !pl->desc || !pl->desc->ops) {
        return 0;
    }
    o = ops_of(pl);
    out->name = pl->name;
    out->display_name = pl->name;
    out->kind = "card";
    out->currencies = "*";
    if (DM_HAS_FIELD(o, dm_payment_ops, display_name) && (v = plain_static(o->display_name, 80))) {
        out->display_name = apr_pstrdup(p, v);
    }
    if (DM_HAS_FIELD(o, dm_payment_ops, method_kind) && (v = plain_static(o->method_kind, 16)) &&
        (!strcmp(v, "card") || !strcmp(v, "crypto") || !strcmp(v, "wallet"))) {
        out->kind = apr_pstrdup(p, v);
    }
    if (DM_HAS_FIELD(o, dm_payment_ops, currencies) && (v = plain_static(o->currencies, 512))) {
        out->currencies = apr_pstrdup(p, v);
    }
    if (DM_HAS_FIELD(o, dm_payment_ops, checkout_lifetime_s)) {
        out->checkout_lifetime_s = o->checkout_lifetime_s;
    }
    return 1;
}

int dm_payment_method_takes(const dm_payment_method *m, const char *currency)
{
    const char *s = m->currencies;
    size_t n = currency ? strlen(currency) : 0;

    if (!s || strcmp(s, "*") == 0) {
        return 1;
    }
    while (n == 3 && *s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        while (len && *s == ' ') {
            s++;
            len--;
        }
        if (len >= 3 && memcmp(s, currency, 3) == 0 && (len == 3 || s[3] == ' ')) {
            return 1;
        }
        if (!comma) {
            break;
        }
        s = comma + 1;
    }
    return 0;
}

#define ACK_BODY_MAX 4096

const char *dm_payment_webhook_ack_body(const dm_loaded_plugin *pl)
{
    const dm_payment_ops *o;

    if (!pl || !pl->initialised || pl->kind != DM_PLUGIN_PAYMENT || !pl->desc || !pl->desc->ops) {
        return NULL;
    }
    o = ops_of(pl);
    return DM_HAS_FIELD(o, dm_payment_ops, webhook_ack_body)
               ? plain_static(o->webhook_ack_body, ACK_BODY_MAX)
               : NULL;
}

int dm_payment_is_sandbox(const dm_loaded_plugin *pl)
{
    return pl && pl->kind == DM_PLUGIN_PAYMENT && pl->desc && pl->desc->name &&
           strcmp(pl->desc->name, "payment-sandbox") == 0;
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
                            const dm_payment_refund_in *in, const char **refund_id, dm_message *msg)
{
    dm_call *call;
    dm_status st = dm_call_begin(h, pl, p, DM_PLUGIN_PAYMENT, "payment plugin", &call, msg);
    dm_status (*ex)(dm_call *, const dm_payment_refund_request *, dm_str *, dm_message *);

    if (refund_id) {
        *refund_id = NULL;
    }
    if (st != DM_OK) {
        return st;
    }
    if (!dm_payment_can_refund(pl)) {
        dm_call_msg(msg, "plugin %s cannot refund", pl->name);
        return DM_ERR_UNSUPPORTED;
    }
    ex = refund_ex_of(ops_of(pl));
    if (ex) {
        dm_payment_refund_request r;
        dm_str id = {NULL, 0};
        memset(&r, 0, sizeof(r));
        r.size = sizeof(r);
        r.provider_ref = str_of(in->provider_ref);
        r.payment_id = str_of(in->payment_id);
        r.amount_micros = in->amount_micros;
        r.currency = str_of(in->currency);
        r.idempotency_key = str_of(in->idempotency_key);
        r.reason = str_of(in->reason);
        st = dm_call_end(pl, "refund_ex", ex(call, &r, &id, msg), msg);
        if (st == DM_OK && refund_id && id.len && plain_ref(id)) {
            *refund_id = apr_pstrmemdup(p, id.ptr, id.len);
        }
        return st;
    }
    st = ops_of(pl)->refund(call, str_of(in->provider_ref), in->amount_micros, str_of(in->currency),
                            msg);
    return dm_call_end(pl, "refund", st, msg);
}

/* 1 when the plugin was built for ABI 1.4 or later (the event's new
 * statuses and fields are its to use). */
static int speaks_1_4(const dm_loaded_plugin *pl)
{
    return pl->desc->abi_major > 1 || pl->desc->abi_minor >= 4;
}

/* What the plugin handed back is a sound event (see payment.h); strings
 * copied into p. need_id: the event id must not be empty. */
static dm_status check_event(const dm_loaded_plugin *pl, apr_pool_t *p, const char *fn,
                             dm_payment_event *out, int need_id, dm_message *msg)
{
    dm_payment_event_status last = speaks_1_4(pl) ? DM_PAY_PENDING : DM_PAY_IGNORED;

    if (!speaks_1_4(pl)) {
        memset(&out->payment_id, 0, sizeof(out->payment_id));
        out->review_reason = DM_REVIEW_NONE;
        memset(&out->detail, 0, sizeof(out->detail));
    }
    if (!dm_call_str_ok(out->event_id) || !dm_call_str_ok(out->provider_ref) ||
        !dm_call_str_ok(out->order_id) || !dm_call_str_ok(out->currency) ||
        !dm_call_str_ok(out->payment_id) || !dm_call_str_ok(out->detail) ||
        out->status < DM_PAY_PAID || out->status > last || out->review_reason < DM_REVIEW_NONE ||
        out->review_reason > DM_REVIEW_OTHER ||
        (out->payment_id.len && !plain_ref(out->payment_id))) {
        dm_call_msg(msg, "plugin %s: %s returned a malformed event", pl->name, fn);
        return DM_ERR_INTERNAL;
    }
    if (need_id && out->event_id.len == 0) {
        dm_call_msg(msg, "plugin %s: %s returned an event without an id", pl->name, fn);
        return DM_ERR_INTERNAL;
    }
    /* Event strings are call memory, in p. detail is for staff: at most
     * 500 bytes, its control bytes become spaces. */
    if (out->detail.len > 500) {
        out->detail.len = 500;
    }
    {
        char *d = apr_pstrmemdup(p, out->detail.ptr ? out->detail.ptr : "", out->detail.len);
        for (size_t i = 0; i < out->detail.len; i++) {
            if ((unsigned char)d[i] < 0x20 || d[i] == 0x7f) {
                d[i] = ' ';
            }
        }
        out->detail.ptr = d;
    }
    return DM_OK;
}

dm_status dm_payment_query(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                           const char *provider_ref, dm_payment_event *out, dm_message *msg)
{
    dm_call *call;
    dm_status st;

    memset(out, 0, sizeof(*out));
    st = dm_call_begin(h, pl, p, DM_PLUGIN_PAYMENT, "payment plugin", &call, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!dm_payment_can_query(pl)) {
        dm_call_msg(msg, "plugin %s cannot query a payment", pl->name);
        return DM_ERR_UNSUPPORTED;
    }
    out->size = sizeof(*out);
    st = dm_call_end(pl, "query", ops_of(pl)->query(call, str_of(provider_ref), out, msg), msg);
    if (st != DM_OK) {
        return st;
    }
    return check_event(pl, p, "query", out, 0, msg);
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
    return check_event(pl, p, "parse_webhook", out, 1, msg);
}
