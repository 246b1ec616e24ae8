/*
 * payment-stripe — card payments through Stripe Checkout (hosted page).
 * The wire facts it relies on, with their sources, are in README.md;
 * tests/standins/stripe_standin.py speaks them.
 *
 * Invariants:
 * - Every call to Stripe is form-encoded (bracket notation for nested
 *   parameters), authenticated with `Authorization: Bearer <secret_key>`,
 *   and every POST carries an Idempotency-Key: a checkout's is derived from
 *   the site, the plugin instance and the order (so a retried create returns
 *   the same session), a refund's from the host's refund key.
 * - Amounts cross as Stripe's minor units (minor_units.h): an amount that
 *   is not a whole number of what Stripe can charge is refused before any
 *   request is made, never rounded.
 * - A webhook is believed only when one of its v1 signatures is the hex
 *   HMAC-SHA-256, keyed with the whole whsec_… string, of "<t>.<raw body>"
 *   (compared in constant time) and t is within 300 s of now.
 * - checkout.session.completed is paid only when payment_status is "paid";
 *   the payment's identity (payment_id) is the payment intent, so a paid
 *   session, its async success and the janitor's query credit once.
 * - Neither secret ever appears in a message or a log line.
 * - Per-instance state lives in the settings, read on every call; the only
 *   static is the host table (the .so may be declared twice).
 */
#include <deepmine/plugin.h>
#include <deepmine/plugin_util.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "minor_units.h"

#define STRIPE_VERSION "1.0.0"
#define API_BASE_DEFAULT "https://api.stripe.com"
#define TIMEOUT_DEFAULT_MS 10000L
#define TIMEOUT_MAX_MS 120000L
#define TOLERANCE_S 300
#define URL_MAX 2048
#define REF_MAX 255
#define V1_MAX 8
/* Stripe's idempotency keys are at most 255 characters. */
#define IDEM_MAX 255
/* A Checkout Session can live from 30 minutes to 24 hours; ours lives 31
 * minutes (a minute over Stripe's minimum, for clock skew). */
#define LIFETIME_S 1860
#define SIG_HEADER "Stripe-Signature"
#define ITEM_NAME_DEFAULT "Order"

static const dm_host *host;

/* ---- small helpers ---- */

/* The clock of the webhook tolerance and of expires_at. */
static int64_t now_sec(void)
{
    return (int64_t)time(NULL);
}

/* A growable buffer owned by this plugin (freed by the caller). */
typedef struct buf {
    char *p;
    size_t len, cap;
    int oom;
} buf;

static void buf_add(buf *b, const char *s, size_t n)
{
    if (b->oom || n == 0) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        char *p;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* One form parameter: key as given (brackets and all, as Stripe's own
 * libraries send them), the value percent-encoded (RFC 3986 unreserved
 * characters kept). */
static void form_add(buf *b, const char *key, const char *v, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";

    if (b->len) {
        buf_add(b, "&", 1);
    }
    buf_str(b, key);
    buf_add(b, "=", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            buf_add(b, (const char *)&c, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_add(b, e, 3);
        }
    }
}

static void form_str(buf *b, const char *key, const char *v)
{
    form_add(b, key, v, strlen(v));
}

static void form_int(buf *b, const char *key, int64_t v)
{
    char t[24];
    snprintf(t, sizeof(t), "%lld", (long long)v);
    form_str(b, key, t);
}

/* A decimal integer, the whole text, '-' allowed, no overflow. */
static int parse_int64(const char *s, size_t n, int64_t *out)
{
    int neg = 0;
    int64_t v = 0;
    size_t i = 0;

    if (!s || n == 0) {
        return 0;
    }
    if (s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == n || n - i > 18) {
        return 0;
    }
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return 1;
}

static int parse_long(const char *s, long min, long max, long *out)
{
    int64_t v;

    if (!parse_int64(s, strlen(s), &v) || v < min || v > max) {
        return 0;
    }
    *out = (long)v;
    return 1;
}

/* A JSON value at path as text; empty (ptr NULL) when absent or null. */
static dm_str field(dm_call *call, dm_str json, const char *path)
{
    dm_str s = {NULL, 0};

    s.ptr = host->json_get(call, json, path, &s.len);
    if (!s.ptr || memchr(s.ptr, '\0', s.len) || dm_str_eq(s, "null")) {
        s.ptr = NULL;
        s.len = 0;
    }
    return s;
}

/* An id or reference we pass on: 1..REF_MAX bytes, no control bytes. */
static int ref_ok(dm_str s)
{
    return s.ptr && s.len > 0 && s.len <= REF_MAX && !dm_has_ctl(s.ptr, s.len);
}

/* Stripe's lower-case currency as ISO 4217 upper case, in call memory. */
static dm_str upper_currency(dm_call *call, dm_str cur)
{
    dm_str out = {NULL, 0};
    char *u;

    if (!cur.ptr || cur.len != 3) {
        return out;
    }
    u = host->alloc(call, 4);
    if (!u) {
        return out;
    }
    for (size_t i = 0; i < 3; i++) {
        char c = cur.ptr[i];
        u[i] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
    }
    u[3] = '\0';
    if (!stripe_currency_ok(u, 3)) {
        return out;
    }
    out.ptr = u;
    out.len = 3;
    return out;
}

static int is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

/* ---- settings ---- */

typedef struct conf {
    const char *secret_key;
    const char *webhook_secret;
    size_t webhook_secret_len;
    char api_base[URL_MAX];
    long timeout_ms;
    const char *item_name;
    const char *name;
    const char *public_url;
} conf;

/* http:// only for a stand-in on this machine: the key is a secret. */
static int url_allowed(const char *u)
{
    static const char *const local[] = {"http://127.0.0.1:", "http://127.0.0.1/",
                                        "http://localhost:", "http://localhost/", NULL};

    if (!strncmp(u, "https://", 8) && u[8]) {
        return 1;
    }
    for (const char *const *l = local; *l; l++) {
        if (!strncmp(u, *l, strlen(*l))) {
            return 1;
        }
    }
    return !strcmp(u, "http://127.0.0.1") || !strcmp(u, "http://localhost");
}

static int key_ok(const char *k)
{
    if (!k || dm_has_ctl(k, strlen(k)) || strchr(k, ' ')) {
        return 0;
    }
    return (!strncmp(k, "sk_test_", 8) || !strncmp(k, "sk_live_", 8) ||
            !strncmp(k, "rk_test_", 8) || !strncmp(k, "rk_live_", 8)) &&
           strlen(k) > 8;
}

static dm_status read_conf(dm_call *call, conf *c, dm_message *msg)
{
    const char *base = host->setting(call, "api_base");
    const char *v;
    size_t n;

    memset(c, 0, sizeof(*c));
    c->name = host->setting(call, "_name");
    c->public_url = host->setting(call, "_public_url");
    c->secret_key = host->setting(call, "secret_key");
    if (!key_ok(c->secret_key)) {
        dm_msg_set(msg,
                   "secret_key must be a Stripe secret key (sk_test_…, sk_live_…) or restricted "
                   "key (rk_…), without spaces; give it as env:VAR or file:/path");
        return DM_ERR_CONFIG;
    }
    c->webhook_secret = host->setting(call, "webhook_secret");
    if (!c->webhook_secret || strncmp(c->webhook_secret, "whsec_", 6) != 0 ||
        strlen(c->webhook_secret) < 7 || dm_has_ctl(c->webhook_secret, strlen(c->webhook_secret))) {
        dm_msg_set(msg,
                   "webhook_secret must be the endpoint's signing secret, whsec_…, from "
                   "Stripe's dashboard (Developers, Webhooks); give it as env:VAR or file:/path");
        return DM_ERR_CONFIG;
    }
    c->webhook_secret_len = strlen(c->webhook_secret);
    if (!base || !*base) {
        base = API_BASE_DEFAULT;
    }
    n = strlen(base);
    while (n > 0 && base[n - 1] == '/') {
        n--;
    }
    if (n == 0 || n + 64 > sizeof(c->api_base) || dm_has_ctl(base, n) || memchr(base, ' ', n) ||
        memchr(base, '?', n) || memchr(base, '#', n)) {
        dm_msg_set(msg, "api_base must be a plain URL, like " API_BASE_DEFAULT);
        return DM_ERR_CONFIG;
    }
    snprintf(c->api_base, sizeof(c->api_base), "%.*s", (int)n, base);
    if (!url_allowed(c->api_base)) {
        dm_msg_set(msg,
                   "api_base must start with https:// (http:// only to 127.0.0.1 or localhost, "
                   "for a stand-in)");
        return DM_ERR_CONFIG;
    }
    c->timeout_ms = TIMEOUT_DEFAULT_MS;
    v = host->setting(call, "timeout_ms");
    if (v && !parse_long(v, 100, TIMEOUT_MAX_MS, &c->timeout_ms)) {
        dm_msg_set(msg, "timeout_ms must be a whole number of milliseconds from 100 to %ld",
                   TIMEOUT_MAX_MS);
        return DM_ERR_CONFIG;
    }
    c->item_name = host->setting(call, "item_name");
    if (!c->item_name || !*c->item_name) {
        c->item_name = ITEM_NAME_DEFAULT;
    }
    if (strlen(c->item_name) > 200 || dm_has_ctl(c->item_name, strlen(c->item_name))) {
        dm_msg_set(msg, "item_name must be at most 200 characters without control characters");
        return DM_ERR_CONFIG;
    }
    return DM_OK;
}

/* ---- calls to Stripe ---- */

/* Text from Stripe for a message: control characters blanked, cut short. */
static const char *clean(dm_call *call, dm_str s)
{
    size_t n = s.len > 150 ? 150 : s.len;
    char *out;

    if (!s.ptr) {
        return "";
    }
    out = host->alloc(call, n + 1);
    if (!out) {
        return "";
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = ((unsigned char)s.ptr[i] < 0x20 || s.ptr[i] == 0x7f) ? ' ' : s.ptr[i];
    }
    out[n] = '\0';
    return out;
}

/* One request to {api_base}{path}: DM_OK with *resp on a 2xx answer; else
 * DM_ERR_TEMPORARY (no answer, 409, 429, 5xx) or DM_ERR_PERMANENT (other
 * 4xx), msg saying what Stripe said (its error.type and error.message). */
static dm_status api(dm_call *call, const conf *c, const char *method, const char *path,
                     const buf *form, const char *idem_key, dm_http_response *resp,
                     const char *what, dm_message *msg)
{
    size_t ulen = strlen(c->api_base) + strlen(path) + 1;
    size_t alen = strlen(c->secret_key) + 8;
    char *url = host->alloc(call, ulen), *auth = host->alloc(call, alen);
    dm_header hs[3];
    dm_http_request req;
    size_t nh = 0;
    dm_status st;

    if (!url || !auth || (form && form->oom)) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(url, ulen, "%s%s", c->api_base, path);
    snprintf(auth, alen, "Bearer %s", c->secret_key);
    hs[nh].name.ptr = "Authorization";
    hs[nh].name.len = 13;
    hs[nh].value.ptr = auth;
    hs[nh].value.len = strlen(auth);
    nh++;
    if (form) {
        hs[nh].name.ptr = "Content-Type";
        hs[nh].name.len = 12;
        hs[nh].value.ptr = "application/x-www-form-urlencoded";
        hs[nh].value.len = 33;
        nh++;
    }
    if (idem_key) {
        hs[nh].name.ptr = "Idempotency-Key";
        hs[nh].name.len = 15;
        hs[nh].value.ptr = idem_key;
        hs[nh].value.len = strlen(idem_key);
        nh++;
    }
    memset(&req, 0, sizeof(req));
    req.size = sizeof(req);
    req.method = method;
    req.url = url;
    req.headers = hs;
    req.n_headers = nh;
    if (form && form->len) {
        req.body.ptr = form->p;
        req.body.len = form->len;
    }
    req.timeout_ms = (uint32_t)c->timeout_ms;
    memset(resp, 0, sizeof(*resp));
    resp->size = sizeof(*resp);
    st = host->http(call, &req, resp, msg);
    if (st != DM_OK) {
        /* the host's message names the URL and the network error only */
        char why[sizeof(msg->text)];
        snprintf(why, sizeof(why), "%s", msg->text[0] ? msg->text : "network error or timeout");
        dm_msg_set(msg, "Stripe did not answer %s (%s)", what, why);
        return DM_ERR_TEMPORARY;
    }
    if (resp->status >= 200 && resp->status <= 299) {
        return DM_OK;
    }
    {
        dm_str type = field(call, resp->body, "error.type");
        dm_str text = field(call, resp->body, "error.message");
        int temporary =
            resp->status == 409 || resp->status == 429 || resp->status >= 500 || resp->status < 400;
        dm_msg_set(msg, "Stripe answered %s with %d %s: %s%s", what, resp->status,
                   type.ptr ? clean(call, type) : "(no error type)",
                   text.ptr ? clean(call, text) : "(no message)",
                   resp->status == 401 || resp->status == 403 ? " (check secret_key)" : "");
        return temporary ? DM_ERR_TEMPORARY : DM_ERR_PERMANENT;
    }
}

/* Hex SHA-256 of the parts joined by '\n', in call memory. */
static char *digest_hex(dm_call *call, const char *const *parts, size_t n)
{
    buf b = {0};
    unsigned char d[32];
    char *out;

    for (size_t i = 0; i < n; i++) {
        if (i) {
            buf_add(&b, "\n", 1);
        }
        buf_str(&b, parts[i] ? parts[i] : "");
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    host->sha256(b.p ? b.p : "", b.len, d);
    free(b.p);
    out = host->hex_encode(call, d, sizeof(d));
    return out;
}

/* A copy of s in call memory, NUL-terminated. */
static char *dup_str(dm_call *call, dm_str s)
{
    char *out = host->alloc(call, s.len + 1);

    if (out) {
        if (s.len) {
            memcpy(out, s.ptr, s.len);
        }
        out[s.len] = '\0';
    }
    return out;
}

static const char *minor_why(stripe_minor_result r, dm_str cur)
{
    switch (r) {
    case STRIPE_MINOR_BAD_CURRENCY:
        return "the currency is not an ISO 4217 code in capitals";
    case STRIPE_MINOR_NOT_POSITIVE:
        return "the amount must be positive";
    case STRIPE_MINOR_FRACTION:
        return "the amount is not a whole number of the currency's smallest unit Stripe can "
               "charge";
    case STRIPE_MINOR_OK:
        break;
    }
    (void)cur;
    return "";
}

/* NULL, or not an http(s) URL: 0. */
static int is_http_url(const char *u)
{
    return u && (strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0);
}

/* ---- create_checkout ---- */

static dm_status stripe_create_checkout(dm_call *call, const dm_payment_checkout *in_raw,
                                        dm_payment_checkout_result *out, dm_message *msg)
{
    dm_payment_checkout in;
    conf c;
    int64_t minor = 0;
    stripe_minor_result mr;
    char lower[4], amount_s[24], *order, *idem, *name;
    const char *ok_url, *cancel_url, *parts[5];
    buf form = {0};
    dm_http_response resp;
    dm_str id, url;
    size_t nlen;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    if (!DM_HAS_FIELD(out, dm_payment_checkout_result, provider_ref)) {
        dm_msg_set(msg, "the host's checkout result has no room for the provider reference");
        return DM_ERR_INTERNAL;
    }
    memset(&in, 0, sizeof(in));
    memcpy(&in, in_raw, in_raw->size < sizeof(in) ? in_raw->size : sizeof(in));
    if (!ref_ok(in.order_id) || in.order_id.len > 200) {
        dm_msg_set(msg, "the order id must be 1 to 200 characters without control characters");
        return DM_ERR_INVALID;
    }
    mr = stripe_to_minor(in.currency.ptr, in.currency.len, in.amount_micros, &minor);
    if (mr != STRIPE_MINOR_OK) {
        dm_msg_set(msg, "Stripe cannot charge %lld micro-units of %.*s: %s",
                   (long long)in.amount_micros, (int)(in.currency.len <= 3 ? in.currency.len : 3),
                   in.currency.ptr ? in.currency.ptr : "", minor_why(mr, in.currency));
        return DM_ERR_INVALID;
    }
    ok_url = in.success_url.len ? dup_str(call, in.success_url) : NULL;
    cancel_url = in.cancel_url.len ? dup_str(call, in.cancel_url) : NULL;
    if (!ok_url && c.public_url) {
        ok_url = c.public_url;
    }
    if (!cancel_url) {
        cancel_url = ok_url;
    }
    if (!ok_url || !cancel_url || strlen(ok_url) > URL_MAX || strlen(cancel_url) > URL_MAX ||
        dm_has_ctl(ok_url, strlen(ok_url)) || dm_has_ctl(cancel_url, strlen(cancel_url)) ||
        !is_http_url(ok_url) || !is_http_url(cancel_url)) {
        dm_msg_set(msg, "Stripe Checkout needs http(s) success and cancel URLs (set "
                        "DeepMinePublicURL)");
        return DM_ERR_INVALID;
    }
    for (size_t i = 0; i < 3; i++) {
        lower[i] = (char)(in.currency.ptr[i] - 'A' + 'a');
    }
    lower[3] = '\0';
    order = dup_str(call, in.order_id);
    nlen = strlen(c.item_name) + in.order_id.len + 2;
    name = host->alloc(call, nlen);
    snprintf(amount_s, sizeof(amount_s), "%lld", (long long)minor);
    parts[0] = c.public_url;
    parts[1] = c.name;
    parts[2] = order;
    parts[3] = amount_s;
    parts[4] = lower;
    idem = digest_hex(call, parts, 5);
    if (!order || !name || !idem) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(name, nlen, "%s %s", c.item_name, order);

    form_str(&form, "mode", "payment");
    form_str(&form, "line_items[0][price_data][currency]", lower);
    form_int(&form, "line_items[0][price_data][unit_amount]", minor);
    form_str(&form, "line_items[0][price_data][product_data][name]", name);
    form_int(&form, "line_items[0][quantity]", 1);
    form_str(&form, "client_reference_id", order);
    form_str(&form, "metadata[order_id]", order);
    form_str(&form, "payment_intent_data[metadata][order_id]", order);
    form_str(&form, "success_url", ok_url);
    form_str(&form, "cancel_url", cancel_url);
    form_int(&form, "expires_at", now_sec() + LIFETIME_S);
    if (in.customer_email.len && in.customer_email.len <= 254 &&
        !dm_has_ctl(in.customer_email.ptr, in.customer_email.len) &&
        memchr(in.customer_email.ptr, '@', in.customer_email.len)) {
        form_add(&form, "customer_email", in.customer_email.ptr, in.customer_email.len);
    }
    {
        /* "dm-co-" + 64 hex digits: 70 characters, within Stripe's 255 */
        char *key = host->alloc(call, 80);
        if (!key) {
            free(form.p);
            dm_msg_set(msg, "out of memory");
            return DM_ERR_INTERNAL;
        }
        snprintf(key, 80, "dm-co-%s", idem);
        st = api(call, &c, "POST", "/v1/checkout/sessions", &form, key, &resp,
                 "the checkout session", msg);
    }
    free(form.p);
    if (st != DM_OK) {
        return st;
    }
    id = field(call, resp.body, "id");
    url = field(call, resp.body, "url");
    if (!ref_ok(id) || id.len < 4 || memcmp(id.ptr, "cs_", 3) != 0 || !url.ptr ||
        url.len > URL_MAX || dm_has_ctl(url.ptr, url.len) || !is_http_url(dup_str(call, url))) {
        dm_msg_set(msg, "Stripe answered the checkout session with %d but no session id and url",
                   resp.status);
        return DM_ERR_TEMPORARY;
    }
    out->provider_ref = id;
    out->redirect_url = url;
    return DM_OK;
}

/* ---- events ---- */

/* Writes only what the host's structure has room for. */
static void put_event(dm_payment_event *out, const dm_payment_event *ev)
{
    uint32_t size = out->size;

    memcpy(out, ev, size < sizeof(*ev) ? size : sizeof(*ev));
    out->size = size;
}

/* The amount and currency of a Stripe object (amount_path in minor units,
 * "currency" in lower case) into ev. */
static dm_status object_amount(dm_call *call, dm_str obj, const char *amount_path,
                               dm_payment_event *ev, dm_message *msg)
{
    dm_str a = field(call, obj, amount_path);
    dm_str cur = upper_currency(call, field(call, obj, "currency"));
    int64_t minor;

    if (!a.ptr || !parse_int64(a.ptr, a.len, &minor) || minor < 0 || !cur.ptr ||
        !stripe_from_minor(cur.ptr, cur.len, minor, &ev->amount_micros)) {
        dm_msg_set(msg, "the event's %s and currency are not an amount Stripe would send",
                   amount_path);
        return DM_ERR_INVALID;
    }
    ev->currency = cur;
    return DM_OK;
}

/* Our order id from a Checkout Session object: client_reference_id, else
 * metadata.order_id. */
static dm_str session_order(dm_call *call, dm_str session)
{
    dm_str o = field(call, session, "client_reference_id");
    if (!o.ptr) {
        o = field(call, session, "metadata.order_id");
    }
    return o;
}

/* A Checkout Session (its JSON) as an event: paid, pending, expired. */
static dm_status session_event(dm_call *call, dm_str s, dm_payment_event_status status,
                               dm_payment_event *ev, dm_message *msg)
{
    ev->provider_ref = field(call, s, "id");
    ev->order_id = session_order(call, s);
    ev->payment_id = field(call, s, "payment_intent");
    ev->status = status;
    if (!ref_ok(ev->provider_ref)) {
        dm_msg_set(msg, "the checkout session has no id");
        return DM_ERR_INVALID;
    }
    if (status == DM_PAY_PAID || status == DM_PAY_PENDING) {
        return object_amount(call, s, "amount_total", ev, msg);
    }
    return DM_OK;
}

/* The Checkout Session that made payment intent pi: its id and our order
 * (GET /v1/checkout/sessions?payment_intent=…). Both empty when none. */
static dm_status session_of_payment(dm_call *call, const conf *c, dm_str pi, dm_payment_event *ev,
                                    dm_message *msg)
{
    char *path;
    size_t n;
    dm_http_response resp;
    dm_str first;
    dm_status st;

    if (!ref_ok(pi) || pi.len > 128) {
        return DM_OK;
    }
    for (size_t i = 0; i < pi.len; i++) {
        char ch = pi.ptr[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_')) {
            return DM_OK; /* not an id Stripe makes: no lookup */
        }
    }
    n = pi.len + 64;
    path = host->alloc(call, n);
    if (!path) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(path, n, "/v1/checkout/sessions?payment_intent=%.*s&limit=1", (int)pi.len, pi.ptr);
    st = api(call, c, "GET", path, NULL, NULL, &resp, "the session of a payment", msg);
    if (st != DM_OK) {
        /* a refund or dispute must not be lost: Stripe retries on 503 */
        return DM_ERR_TEMPORARY;
    }
    first = field(call, resp.body, "data.0");
    if (first.ptr) {
        ev->provider_ref = field(call, first, "id");
        if (!ev->order_id.ptr) {
            ev->order_id = session_order(call, first);
        }
    }
    return DM_OK;
}

static dm_status charge_refunded(dm_call *call, const conf *c, dm_str body, dm_str ch,
                                 dm_payment_event *ev, dm_message *msg)
{
    dm_str now_s = field(call, ch, "amount_refunded");
    dm_str before_s = field(call, body, "data.previous_attributes.amount_refunded");
    dm_str amount_s = field(call, ch, "amount");
    int64_t now_r, before_r = 0, amount;
    dm_status st;

    ev->payment_id = field(call, ch, "payment_intent");
    ev->order_id = field(call, ch, "metadata.order_id");
    st = object_amount(call, ch, "amount_refunded", ev, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!parse_int64(now_s.ptr, now_s.len, &now_r) ||
        !parse_int64(amount_s.ptr, amount_s.len, &amount) || now_r > amount ||
        (before_s.ptr && (!parse_int64(before_s.ptr, before_s.len, &before_r) || before_r < 0))) {
        dm_msg_set(msg, "the charge's amounts are malformed");
        return DM_ERR_INVALID;
    }
    if (!ev->order_id.ptr) {
        /* Stripe copies nothing of the session to the charge: the session
         * of the payment intent names our order */
        st = session_of_payment(call, c, ev->payment_id, ev, msg);
        if (st != DM_OK) {
            return st;
        }
    }
    if (before_s.ptr) {
        /* amount_refunded is the charge's running total: this event
         * refunded the difference */
        if (now_r <= before_r) {
            ev->status = DM_PAY_IGNORED;
            return DM_OK;
        }
        ev->status = DM_PAY_REFUNDED;
        return stripe_from_minor(ev->currency.ptr, ev->currency.len, now_r - before_r,
                                 &ev->amount_micros)
                   ? DM_OK
                   : DM_ERR_INVALID;
    }
    /* No previous total: how much of the running total is new is unknown. */
    ev->status = DM_PAY_NEEDS_REVIEW;
    ev->review_reason = DM_REVIEW_OTHER;
    {
        char *d = host->alloc(call, 160);
        if (d) {
            snprintf(d, 160,
                     "charge.refunded without previous_attributes: %lld of %lld (minor units) "
                     "refunded in total; refund the difference by hand",
                     (long long)now_r, (long long)amount);
            ev->detail.ptr = d;
            ev->detail.len = strlen(d);
        }
    }
    return DM_OK;
}

static dm_status dispute_event(dm_call *call, const conf *c, dm_str dp, int closed,
                               dm_payment_event *ev, dm_message *msg)
{
    dm_str status = field(call, dp, "status");
    dm_str reason = field(call, dp, "reason");
    dm_str id = field(call, dp, "id");
    dm_status st;

    ev->payment_id = field(call, dp, "payment_intent");
    st = object_amount(call, dp, "amount", ev, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!closed) {
        ev->status = DM_PAY_DISPUTE_OPENED;
    } else if (dm_str_eq(status, "won") || dm_str_eq(status, "warning_closed")) {
        ev->status = DM_PAY_DISPUTE_WON;
    } else if (dm_str_eq(status, "lost")) {
        ev->status = DM_PAY_DISPUTE_LOST;
    } else {
        ev->status = DM_PAY_IGNORED;
        return DM_OK;
    }
    {
        char *d = host->alloc(call, 200);
        if (d) {
            snprintf(d, 200, "dispute %.*s (%.*s), status %.*s", (int)(id.len > 64 ? 64 : id.len),
                     id.ptr ? id.ptr : "", (int)(reason.len > 40 ? 40 : reason.len),
                     reason.ptr ? reason.ptr : "no reason",
                     (int)(status.len > 30 ? 30 : status.len), status.ptr ? status.ptr : "unknown");
            if (dm_has_ctl(d, strlen(d))) {
                snprintf(d, 200, "dispute");
            }
            ev->detail.ptr = d;
            ev->detail.len = strlen(d);
        }
    }
    return session_of_payment(call, c, ev->payment_id, ev, msg);
}

/* Verifies the Stripe-Signature header against the raw body. */
static dm_status verify_signature(dm_call *call, const conf *c, dm_str body, const dm_header *hs,
                                  size_t n, dm_message *msg)
{
    const dm_header *h = dm_header_find(hs, n, SIG_HEADER);
    const char *p, *end, *t = NULL, *v1[V1_MAX];
    size_t t_len = 0, n_v1 = 0;
    int64_t ts;
    unsigned char mac[32];
    char *signed_text, *expected;
    int ok = 0;

    if (!h || !h->value.ptr || h->value.len == 0) {
        dm_msg_set(msg, "no " SIG_HEADER " header");
        return DM_ERR_INVALID;
    }
    /* "t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]": elements split on ',', each
     * on its first '='; other schemes are ignored, as Stripe's libraries
     * do. */
    p = h->value.ptr;
    end = p + h->value.len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        while (p < e && *p == ' ') {
            p++;
        }
        if (eq && eq - p == 1 && *p == 't') {
            if (t) {
                dm_msg_set(msg, SIG_HEADER " has more than one timestamp");
                return DM_ERR_INVALID;
            }
            t = eq + 1;
            t_len = (size_t)(e - t);
        } else if (eq && eq - p == 2 && p[0] == 'v' && p[1] == '1' && e - (eq + 1) == 64 &&
                   is_lower_hex(eq + 1, 64) && n_v1 < V1_MAX) {
            v1[n_v1++] = eq + 1;
        }
        p = comma ? comma + 1 : end;
    }
    if (!t || t_len == 0 || t_len > 12 || !parse_int64(t, t_len, &ts) || ts <= 0) {
        dm_msg_set(msg, SIG_HEADER " has no valid timestamp t=");
        return DM_ERR_INVALID;
    }
    if (n_v1 == 0) {
        dm_msg_set(msg, SIG_HEADER " has no v1 signature");
        return DM_ERR_INVALID;
    }
    signed_text = malloc(t_len + 1 + body.len);
    if (!signed_text) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    memcpy(signed_text, t, t_len);
    signed_text[t_len] = '.';
    if (body.len) {
        memcpy(signed_text + t_len + 1, body.ptr, body.len);
    }
    host->hmac_sha256(c->webhook_secret, c->webhook_secret_len, signed_text, t_len + 1 + body.len,
                      mac);
    free(signed_text);
    expected = host->hex_encode(call, mac, sizeof(mac));
    if (!expected) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    for (size_t i = 0; i < n_v1; i++) {
        ok |= host->equal_ct(expected, v1[i], 64); /* no early exit */
    }
    if (!ok) {
        dm_msg_set(msg, "the " SIG_HEADER " does not match the body (wrong webhook_secret, or the "
                        "body was altered)");
        return DM_ERR_INVALID;
    }
    if (ts < now_sec() - TOLERANCE_S) {
        dm_msg_set(msg, "the " SIG_HEADER " timestamp is more than %d s old", TOLERANCE_S);
        return DM_ERR_INVALID;
    }
    if (ts > now_sec() + TOLERANCE_S) {
        dm_msg_set(msg, "the " SIG_HEADER " timestamp is more than %d s in the future",
                   TOLERANCE_S);
        return DM_ERR_INVALID;
    }
    return DM_OK;
}

static dm_status stripe_parse_webhook(dm_call *call, dm_str raw_body, const dm_header *headers,
                                      size_t n_headers, dm_payment_event *out, dm_message *msg)
{
    conf c;
    dm_payment_event ev;
    dm_str type, obj;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    if (!DM_HAS_FIELD(out, dm_payment_event, detail)) {
        dm_msg_set(msg, "this host's payment events are older than ABI 1.4; payment-stripe needs "
                        "payment_id");
        return DM_ERR_INTERNAL;
    }
    st = verify_signature(call, &c, raw_body, headers, n_headers, msg);
    if (st != DM_OK) {
        return st;
    }
    memset(&ev, 0, sizeof(ev));
    ev.size = sizeof(ev);
    ev.event_id = field(call, raw_body, "id");
    type = field(call, raw_body, "type");
    obj = field(call, raw_body, "data.object");
    if (!ref_ok(ev.event_id) || !type.ptr || !obj.ptr) {
        dm_msg_set(msg, "the event has no id, type or data.object");
        return DM_ERR_INVALID;
    }
    ev.status = DM_PAY_IGNORED;
    if (dm_str_eq(type, "checkout.session.completed")) {
        /* paid only when the money is there; a delayed method says
         * "unpaid" and its async_payment_* event follows */
        st = session_event(call, obj,
                           dm_str_eq(field(call, obj, "payment_status"), "paid") ? DM_PAY_PAID
                                                                                 : DM_PAY_PENDING,
                           &ev, msg);
    } else if (dm_str_eq(type, "checkout.session.async_payment_succeeded")) {
        st = session_event(call, obj, DM_PAY_PAID, &ev, msg);
    } else if (dm_str_eq(type, "checkout.session.async_payment_failed")) {
        st = session_event(call, obj, DM_PAY_FAILED, &ev, msg);
    } else if (dm_str_eq(type, "checkout.session.expired")) {
        st = session_event(call, obj, DM_PAY_EXPIRED, &ev, msg);
    } else if (dm_str_eq(type, "charge.refunded")) {
        st = charge_refunded(call, &c, raw_body, obj, &ev, msg);
    } else if (dm_str_eq(type, "charge.dispute.created")) {
        st = dispute_event(call, &c, obj, 0, &ev, msg);
    } else if (dm_str_eq(type, "charge.dispute.closed")) {
        st = dispute_event(call, &c, obj, 1, &ev, msg);
    }
    if (st != DM_OK) {
        return st;
    }
    if ((ev.payment_id.ptr && !ref_ok(ev.payment_id)) ||
        (ev.order_id.ptr && !ref_ok(ev.order_id)) ||
        (ev.provider_ref.ptr && !ref_ok(ev.provider_ref))) {
        dm_msg_set(msg, "the event carries a malformed id");
        return DM_ERR_INVALID;
    }
    put_event(out, &ev);
    return DM_OK;
}

/* ---- query: the session as it stands ---- */

static int safe_id(dm_str s)
{
    if (!ref_ok(s) || s.len > 200) {
        return 0;
    }
    for (size_t i = 0; i < s.len; i++) {
        char ch = s.ptr[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_')) {
            return 0;
        }
    }
    return 1;
}

static dm_status get_session(dm_call *call, const conf *c, dm_str ref, dm_http_response *resp,
                             dm_message *msg)
{
    size_t n = ref.len + 32;
    char *path;

    if (!safe_id(ref)) {
        dm_msg_set(msg, "the provider reference is not a Checkout Session id");
        return DM_ERR_INVALID;
    }
    path = host->alloc(call, n);
    if (!path) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(path, n, "/v1/checkout/sessions/%.*s", (int)ref.len, ref.ptr);
    return api(call, c, "GET", path, NULL, NULL, resp, "the checkout session query", msg);
}

static dm_status stripe_query(dm_call *call, dm_str provider_ref, dm_payment_event *out,
                              dm_message *msg)
{
    conf c;
    dm_http_response resp;
    dm_payment_event ev;
    dm_str status, pay;
    dm_payment_event_status s;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    if (!DM_HAS_FIELD(out, dm_payment_event, detail)) {
        dm_msg_set(msg, "this host's payment events are older than ABI 1.4");
        return DM_ERR_INTERNAL;
    }
    st = get_session(call, &c, provider_ref, &resp, msg);
    if (st != DM_OK) {
        return st;
    }
    status = field(call, resp.body, "status");
    pay = field(call, resp.body, "payment_status");
    if (dm_str_eq(status, "complete") && dm_str_eq(pay, "paid")) {
        s = DM_PAY_PAID;
    } else if (dm_str_eq(status, "expired")) {
        s = DM_PAY_EXPIRED;
    } else if (dm_str_eq(status, "open") || dm_str_eq(status, "complete")) {
        s = DM_PAY_PENDING;
    } else {
        dm_msg_set(msg, "Stripe answered the checkout session query with no status we know");
        return DM_ERR_TEMPORARY;
    }
    memset(&ev, 0, sizeof(ev));
    ev.size = sizeof(ev);
    st = session_event(call, resp.body, s, &ev, msg);
    if (st != DM_OK) {
        return st == DM_ERR_INVALID ? DM_ERR_TEMPORARY : st;
    }
    put_event(out, &ev);
    return DM_OK;
}

/* ---- refunds ---- */

static dm_status do_refund(dm_call *call, const conf *c, dm_str provider_ref, dm_str payment_id,
                           int64_t amount_micros, dm_str currency, const char *idem, dm_str reason,
                           dm_str *refund_id, dm_message *msg)
{
    dm_http_response resp;
    dm_str pi = payment_id, id, status;
    int64_t minor = 0;
    stripe_minor_result mr;
    buf form = {0};
    dm_status st;

    if (amount_micros < 0) {
        dm_msg_set(msg, "a refund amount cannot be negative");
        return DM_ERR_INVALID;
    }
    if (amount_micros > 0) {
        mr = stripe_to_minor(currency.ptr, currency.len, amount_micros, &minor);
        if (mr != STRIPE_MINOR_OK) {
            dm_msg_set(msg, "Stripe cannot refund %lld micro-units of %.*s: %s",
                       (long long)amount_micros, (int)(currency.len <= 3 ? currency.len : 3),
                       currency.ptr ? currency.ptr : "", minor_why(mr, currency));
            return DM_ERR_INVALID;
        }
    }
    if (!safe_id(pi)) {
        /* the payment intent of the session */
        st = get_session(call, c, provider_ref, &resp, msg);
        if (st != DM_OK) {
            return st;
        }
        pi = field(call, resp.body, "payment_intent");
        if (!safe_id(pi)) {
            dm_msg_set(msg, "checkout session %.*s has no payment to refund",
                       (int)(provider_ref.len > 100 ? 100 : provider_ref.len), provider_ref.ptr);
            return DM_ERR_PERMANENT;
        }
    }
    form_add(&form, "payment_intent", pi.ptr, pi.len);
    if (minor > 0) {
        form_int(&form, "amount", minor);
    }
    if (reason.len && reason.ptr) {
        form_add(&form, "metadata[reason]", reason.ptr, reason.len > 500 ? 500 : reason.len);
    }
    st = api(call, c, "POST", "/v1/refunds", &form, idem, &resp, "the refund", msg);
    free(form.p);
    if (st != DM_OK) {
        return st;
    }
    id = field(call, resp.body, "id");
    status = field(call, resp.body, "status");
    if (!ref_ok(id)) {
        dm_msg_set(msg, "Stripe answered the refund with %d but no refund id", resp.status);
        return DM_ERR_TEMPORARY;
    }
    if (dm_str_eq(status, "failed") || dm_str_eq(status, "canceled")) {
        dm_msg_set(msg, "Stripe refused refund %.*s: status %.*s", (int)(id.len > 64 ? 64 : id.len),
                   id.ptr, (int)(status.len > 20 ? 20 : status.len), status.ptr);
        return DM_ERR_PERMANENT;
    }
    if (refund_id) {
        *refund_id = id;
    }
    return DM_OK;
}

/* Stripe's Idempotency-Key for a refund key: "dm-rf-" + the key when it is
 * visible ASCII and fits, else + its SHA-256. */
static char *refund_key(dm_call *call, dm_str key)
{
    int plain = key.ptr && key.len > 0 && key.len <= IDEM_MAX - 6;
    unsigned char d[32];
    char *hex, *out;

    for (size_t i = 0; plain && i < key.len; i++) {
        if ((unsigned char)key.ptr[i] < 0x21 || (unsigned char)key.ptr[i] > 0x7e) {
            plain = 0;
        }
    }
    if (plain) {
        out = host->alloc(call, key.len + 7);
        if (out) {
            memcpy(out, "dm-rf-", 6);
            memcpy(out + 6, key.ptr, key.len);
            out[key.len + 6] = '\0';
        }
        return out;
    }
    if (key.ptr && key.len) {
        host->sha256(key.ptr, key.len, d);
    } else {
        host->random_bytes(d, sizeof(d));
    }
    hex = host->hex_encode(call, d, sizeof(d));
    out = host->alloc(call, 80);
    if (!hex || !out) {
        return NULL;
    }
    snprintf(out, 80, "dm-rf-%s", hex);
    return out;
}

static dm_status stripe_refund_ex(dm_call *call, const dm_payment_refund_request *req_raw,
                                  dm_str *refund_id, dm_message *msg)
{
    dm_payment_refund_request r;
    conf c;
    char *key;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    memset(&r, 0, sizeof(r));
    memcpy(&r, req_raw, req_raw->size < sizeof(r) ? req_raw->size : sizeof(r));
    key = refund_key(call, r.idempotency_key);
    if (!key) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    return do_refund(call, &c, r.provider_ref, r.payment_id, r.amount_micros, r.currency, key,
                     r.reason, refund_id, msg);
}

/* The ABI 1.0 refund: no key from the host, so a fresh one per call (as
 * Stripe's own libraries do for a request without one). */
static dm_status stripe_refund(dm_call *call, dm_str provider_ref, int64_t amount_micros,
                               dm_str currency, dm_message *msg)
{
    conf c;
    dm_str none = {NULL, 0};
    char *key;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    key = refund_key(call, none);
    if (!key) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    return do_refund(call, &c, provider_ref, none, amount_micros, currency, key, none, NULL, msg);
}

/* ---- life cycle ---- */

static dm_status stripe_init(const dm_host *h, dm_call *call, dm_message *msg)
{
    conf c;
    dm_status st;

    host = h;
    st = read_conf(call, &c, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!c.public_url) {
        dm_msg_set(msg, "DeepMinePublicURL is not set: Stripe Checkout needs the URLs to send the "
                        "buyer back to");
        return DM_ERR_CONFIG;
    }
    if (!strncmp(c.secret_key, "sk_test_", 8) || !strncmp(c.secret_key, "rk_test_", 8)) {
        h->log(call, DM_LOG_NOTICE, "Stripe is in test mode (a test key): no real card is charged");
    }
    return DM_OK;
}

static dm_status stripe_health(dm_call *call, dm_message *msg)
{
    conf c;
    return read_conf(call, &c, msg);
}

static const dm_payment_ops ops = {
    .size = sizeof(dm_payment_ops),
    .create_checkout = stripe_create_checkout,
    .parse_webhook = stripe_parse_webhook,
    .refund = stripe_refund,
    .query = stripe_query,
    .refund_ex = stripe_refund_ex,
    .display_name = "Card (Stripe)",
    .method_kind = "card",
    .currencies = "*",
    .checkout_lifetime_s = LIFETIME_S,
};

static const char *const required[] = {"secret_key", "webhook_secret", NULL};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_PAYMENT,
    .name = "payment-stripe",
    .version = STRIPE_VERSION,
    .required_settings = required,
    .init = stripe_init,
    .fini = NULL,
    .ops = &ops,
    .health = stripe_health,
    .handle_request = NULL,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *h)
{
    /* Everything used of the host table is in ABI 1.0 (json_quote is its
     * last field); the 1.4 event fields are checked on every event. */
    if (!DM_HAS_FIELD(h, dm_host, json_quote)) {
        return NULL;
    }
    return &desc;
}
