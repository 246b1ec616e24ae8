/*
 * payment-btcpay — BTCPay Server (self-hosted, open-source crypto payments)
 * through its Greenfield API, as a payment plugin (ABI 1.4). The wire
 * facts it relies on, with their sources, are in README.md.
 *
 * Invariants:
 * - Every call to BTCPay goes through btcpay_call (one place: base URL,
 *   `Authorization: token <api_key>`, JSON, timeout, the mapping of HTTP
 *   answers to dm_status); the API key never appears in a message.
 * - A webhook is verified (BTCPay-Sig: sha256=<hex HMAC-SHA-256 of the raw
 *   body, keyed with the webhook secret>) before anything in it is read. Its
 *   body names the invoice but carries no amount, currency or order, so the
 *   plugin then reads the invoice (GET …/invoices/{id}) and reports what
 *   BTCPay says now: a replayed or reordered delivery cannot report money
 *   that BTCPay does not hold.
 * - One delivery is one event id: a redelivery (isRedelivery true) is
 *   named by its originalDeliveryId, so the host records it once.
 * - The invoice id is the payment identity (payment_id): one invoice
 *   credits an order once, whichever of webhook and query reports it.
 * - BTCPay sends no webhook for a refund (a refund is a pull payment the
 *   buyer claims), so after BTCPay accepted one the plugin posts its own
 *   event, type DeepMineRefundCreated, signed like BTCPay's, to this site's
 *   webhook: the refund reaches the ledger by the path every refund takes,
 *   once (its event id is the pull payment's id).
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

#define BTCPAY_VERSION "1.0.0"
#define SIG_HEADER "BTCPay-Sig"
#define SIG_PREFIX "sha256="
#define REFUND_TYPE "DeepMineRefundCreated"
#define SECRET_MIN 16
#define ID_MAX 128
#define REF_MAX 255
#define URL_MAX 2048
#define TIMEOUT_DEFAULT 10000
#define TIMEOUT_MIN 1000
#define TIMEOUT_MAX 60000
#define MAX_AGE_DEFAULT (7 * 86400)
#define FUTURE_SKEW_S 300
/* The invoice lifetime the plugin asks for, and tells the host (minutes). */
#define EXPIRATION_MINUTES 15
#define AMOUNT_MAX ((int64_t)1000000000 * 1000000)
#define ERRTEXT_MAX 160

static const dm_host *host;

/* ---- small helpers ---- */

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
        size_t cap = b->cap ? b->cap : 512;
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
    if (s) {
        buf_add(b, s, strlen(s));
    } else {
        b->oom = 1; /* a piece that could not be made (json_quote) */
    }
}

/* A copy of b's contents in call memory (NULL when out of memory). */
static char *to_call(dm_call *call, const buf *b)
{
    char *out;

    if (b->oom) {
        return NULL;
    }
    out = host->alloc(call, b->len + 1);
    if (out) {
        if (b->len) {
            memcpy(out, b->p, b->len);
        }
        out[b->len] = '\0';
    }
    return out;
}

static int is_currency(const char *s, size_t n)
{
    if (!s || n != 3) {
        return 0;
    }
    for (size_t i = 0; i < 3; i++) {
        if (s[i] < 'A' || s[i] > 'Z') {
            return 0;
        }
    }
    return 1;
}

static int is_http_url(const char *s, size_t n)
{
    return s && n <= URL_MAX && !dm_has_ctl(s, n) &&
           ((n > 7 && strncmp(s, "http://", 7) == 0) || (n > 8 && strncmp(s, "https://", 8) == 0));
}

/* A BTCPay id (store, invoice, pull payment, delivery) that is safe in a
 * URL path: 1..ID_MAX of [A-Za-z0-9._~-]. */
static int is_id(const char *s, size_t n)
{
    if (!s || n == 0 || n > ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '~' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

/* A decimal integer, the whole text, at most 18 digits. */
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

/* Micro-units as the decimal string BTCPay takes: at least two decimals,
 * up to six: 12500000 → "12.50", 1 → "0.000001". */
static void format_amount(int64_t micros, char *out, size_t outsz)
{
    int64_t units = micros / 1000000, frac = micros % 1000000;
    char f[8];
    size_t n;

    snprintf(f, sizeof(f), "%06lld", (long long)frac);
    n = 6;
    while (n > 2 && f[n - 1] == '0') {
        n--;
    }
    f[n] = '\0';
    snprintf(out, outsz, "%lld.%s", (long long)units, f);
}

/* BTCPay's decimal string ("12.5", "12.50", "100") as micro-units. Refused:
 * a sign, an exponent, more than six significant decimals (an amount the
 * ledger cannot hold exactly), more than AMOUNT_MAX. */
static int parse_amount(const char *s, size_t n, int64_t *out)
{
    int64_t units = 0, frac = 0;
    size_t i = 0, nd = 0, nf = 0;

    if (!s || n == 0) {
        return 0;
    }
    for (; i < n && s[i] != '.'; i++) {
        if (s[i] < '0' || s[i] > '9' || ++nd > 12) {
            return 0;
        }
        units = units * 10 + (s[i] - '0');
    }
    if (nd == 0) {
        return 0;
    }
    if (i < n) {
        i++; /* the point */
        if (i == n) {
            return 0;
        }
        for (; i < n; i++) {
            if (s[i] < '0' || s[i] > '9') {
                return 0;
            }
            if (nf < 6) {
                frac = frac * 10 + (s[i] - '0');
            } else if (s[i] != '0') {
                return 0;
            }
            nf++;
        }
    }
    for (; nf < 6; nf++) {
        frac *= 10;
    }
    *out = units * 1000000 + frac;
    return *out <= AMOUNT_MAX;
}

/* A JSON value as text; ptr NULL when absent or holding a NUL. */
static dm_str field(dm_call *call, dm_str json, const char *path)
{
    dm_str s = {NULL, 0};
    s.ptr = host->json_get(call, json, path, &s.len);
    if (s.ptr && !memchr(s.ptr, '\0', s.len)) {
        return s;
    }
    s.ptr = NULL;
    s.len = 0;
    return s;
}

/* ---- settings ---- */

typedef struct conf {
    const char *server_url; /* no trailing slash */
    size_t server_url_len;
    const char *store_id;
    const char *api_key;
    const char *secret;
    size_t secret_len;
    const char *refund_method;
    const char *name;
    const char *public_url;
    uint32_t timeout_ms;
    int refunds_api;
    int64_t max_age;
} conf;

static dm_status read_conf(dm_call *call, conf *c, dm_message *msg)
{
    const char *v;
    int64_t n;

    memset(c, 0, sizeof(*c));
    c->name = host->setting(call, "_name");
    c->public_url = host->setting(call, "_public_url");
    c->server_url = host->setting(call, "server_url");
    if (!c->server_url || !is_http_url(c->server_url, strlen(c->server_url))) {
        dm_msg_set(msg, "server_url must be the http(s) URL of the BTCPay Server, like "
                        "https://btcpay.example.com");
        return DM_ERR_CONFIG;
    }
    c->server_url_len = strlen(c->server_url);
    while (c->server_url_len > 8 && c->server_url[c->server_url_len - 1] == '/') {
        c->server_url_len--;
    }
    c->store_id = host->setting(call, "store_id");
    if (!c->store_id || !is_id(c->store_id, strlen(c->store_id))) {
        dm_msg_set(msg, "store_id must be the BTCPay store's id (letters, digits, - and _)");
        return DM_ERR_CONFIG;
    }
    c->api_key = host->setting(call, "api_key");
    if (!c->api_key || !*c->api_key || dm_has_ctl(c->api_key, strlen(c->api_key)) ||
        strchr(c->api_key, ' ')) {
        dm_msg_set(msg, "api_key is missing or malformed; give it as env:VAR or file:/path");
        return DM_ERR_CONFIG;
    }
    c->secret = host->setting(call, "webhook_secret");
    c->secret_len = c->secret ? strlen(c->secret) : 0;
    if (c->secret_len < SECRET_MIN) {
        dm_msg_set(msg,
                   "webhook_secret must be the secret of the store's webhook at BTCPay, at least "
                   "%d characters; give it as env:VAR or file:/path",
                   SECRET_MIN);
        return DM_ERR_CONFIG;
    }
    c->timeout_ms = TIMEOUT_DEFAULT;
    v = host->setting(call, "timeout_ms");
    if (v) {
        if (!parse_int64(v, strlen(v), &n) || n < TIMEOUT_MIN || n > TIMEOUT_MAX) {
            dm_msg_set(msg, "timeout_ms must be a number of milliseconds from %d to %d",
                       TIMEOUT_MIN, TIMEOUT_MAX);
            return DM_ERR_CONFIG;
        }
        c->timeout_ms = (uint32_t)n;
    }
    v = host->setting(call, "refunds");
    if (v && strcmp(v, "api") != 0 && strcmp(v, "manual") != 0) {
        dm_msg_set(msg, "refunds must be api or manual");
        return DM_ERR_CONFIG;
    }
    c->refunds_api = !v || strcmp(v, "api") == 0;
    c->refund_method = host->setting(call, "refund_payment_method");
    if (!c->refund_method) {
        c->refund_method = "BTC-CHAIN";
    }
    if (!is_id(c->refund_method, strlen(c->refund_method))) {
        dm_msg_set(msg, "refund_payment_method must be a BTCPay payment method id, like BTC-CHAIN");
        return DM_ERR_CONFIG;
    }
    c->max_age = MAX_AGE_DEFAULT;
    v = host->setting(call, "webhook_max_age");
    if (v &&
        (!parse_int64(v, strlen(v), &c->max_age) || c->max_age < 0 || c->max_age > 365 * 86400)) {
        dm_msg_set(msg,
                   "webhook_max_age must be a number of seconds from 0 (no limit) to 31536000");
        return DM_ERR_CONFIG;
    }
    return DM_OK;
}

/* ---- the one place that talks to BTCPay ---- */

/* What BTCPay said when it refused: its ProblemDetails "message", or the
 * first validation error's, cut short and without control bytes; empty
 * when there is none. Never the request (the key is in its headers). */
static const char *btcpay_error(dm_call *call, dm_str body)
{
    static const char *const paths[] = {"message", "0.message", "detail", "title"};
    char *out;

    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        dm_str m = field(call, body, paths[i]);
        if (m.ptr && m.len) {
            size_t n = m.len < ERRTEXT_MAX ? m.len : ERRTEXT_MAX;
            out = host->alloc(call, n + 1);
            if (!out) {
                return "";
            }
            for (size_t j = 0; j < n; j++) {
                unsigned char ch = (unsigned char)m.ptr[j];
                out[j] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
            }
            out[n] = '\0';
            return out;
        }
    }
    return "";
}

/* method path (below server_url) with a JSON body (may be empty). DM_OK
 * with *status 2xx and *resp the body; otherwise the status the caller
 * should return, msg set:
 *   no answer, 429, 5xx       DM_ERR_TEMPORARY
 *   401, 403                   DM_ERR_CONFIG (refund_ex turns it into
 *                              DM_ERR_UNSUPPORTED)
 *   404 and other 4xx          DM_ERR_PERMANENT */
static dm_status btcpay_call(dm_call *call, const conf *c, const char *method, const char *path,
                             const char *body, size_t body_len, int *status, dm_str *resp,
                             dm_message *msg)
{
    dm_http_request req;
    dm_http_response res;
    dm_header hs[3];
    size_t nh = 0, plen = strlen(path), klen = strlen(c->api_key);
    char *url = host->alloc(call, c->server_url_len + plen + 1);
    char *auth = host->alloc(call, klen + 7);
    const char *why;
    dm_status st;

    *status = 0;
    resp->ptr = NULL;
    resp->len = 0;
    if (!url || !auth) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(url, c->server_url_len + plen + 1, "%.*s%s", (int)c->server_url_len, c->server_url,
             path);
    snprintf(auth, klen + 7, "token %s", c->api_key);
    hs[nh].name.ptr = "Authorization";
    hs[nh].name.len = 13;
    hs[nh].value.ptr = auth;
    hs[nh++].value.len = klen + 6;
    hs[nh].name.ptr = "Accept";
    hs[nh].name.len = 6;
    hs[nh].value.ptr = "application/json";
    hs[nh++].value.len = 16;
    if (body) {
        hs[nh].name.ptr = "Content-Type";
        hs[nh].name.len = 12;
        hs[nh].value.ptr = "application/json";
        hs[nh++].value.len = 16;
    }
    memset(&req, 0, sizeof(req));
    memset(&res, 0, sizeof(res));
    req.size = sizeof(req);
    req.method = method;
    req.url = url;
    req.headers = hs;
    req.n_headers = nh;
    req.body.ptr = body;
    req.body.len = body ? body_len : 0;
    req.timeout_ms = c->timeout_ms;
    res.size = sizeof(res);
    st = host->http(call, &req, &res, msg);
    memset(auth, 0, klen + 6);
    if (st != DM_OK) {
        if (!msg->text[0]) {
            dm_msg_set(msg, "BTCPay Server did not answer");
        }
        return DM_ERR_TEMPORARY;
    }
    *status = res.status;
    *resp = res.body;
    if (res.status >= 200 && res.status <= 299) {
        return DM_OK;
    }
    why = btcpay_error(call, res.body);
    dm_msg_set(msg, "BTCPay Server answered %s %s with HTTP %d%s%s", method, path, res.status,
               *why ? ": " : "", why);
    if (res.status == 429 || res.status >= 500 || res.status < 200) {
        return DM_ERR_TEMPORARY;
    }
    if (res.status == 401 || res.status == 403) {
        dm_msg_set(msg,
                   "BTCPay Server refused the API key for %s %s (HTTP %d): check the key and its "
                   "permissions",
                   method, path, res.status);
        return DM_ERR_CONFIG;
    }
    return DM_ERR_PERMANENT;
}

/* ---- invoices ---- */

typedef struct invoice {
    dm_str id;
    dm_str status;            /* New, Processing, Expired, Invalid, Settled */
    dm_str additional_status; /* None, PaidLate, PaidPartial, Marked, Invalid, PaidOver */
    dm_str currency;
    dm_str order_id; /* metadata.orderId */
    dm_str checkout_link;
    int64_t amount_micros;
    int amount_ok;
} invoice;

/* GET /api/v1/stores/{store}/invoices/{id}. A 404 is DM_ERR_PERMANENT. */
static dm_status get_invoice(dm_call *call, const conf *c, dm_str id, invoice *inv, dm_message *msg)
{
    char path[64 + 2 * ID_MAX];
    int status;
    dm_str body, amount;
    dm_status st;

    memset(inv, 0, sizeof(*inv));
    if (!is_id(id.ptr, id.len)) {
        dm_msg_set(msg, "the invoice id is malformed");
        return DM_ERR_INVALID;
    }
    snprintf(path, sizeof(path), "/api/v1/stores/%s/invoices/%.*s", c->store_id, (int)id.len,
             id.ptr);
    st = btcpay_call(call, c, "GET", path, NULL, 0, &status, &body, msg);
    if (st != DM_OK) {
        return st;
    }
    inv->id = field(call, body, "id");
    inv->status = field(call, body, "status");
    inv->additional_status = field(call, body, "additionalStatus");
    inv->currency = field(call, body, "currency");
    inv->order_id = field(call, body, "metadata.orderId");
    inv->checkout_link = field(call, body, "checkoutLink");
    amount = field(call, body, "amount");
    inv->amount_ok = parse_amount(amount.ptr, amount.len, &inv->amount_micros);
    if (!inv->id.ptr || inv->id.len != id.len || memcmp(inv->id.ptr, id.ptr, id.len) != 0 ||
        !inv->status.ptr) {
        dm_msg_set(msg, "BTCPay Server answered GET %s with something that is not that invoice",
                   path);
        return DM_ERR_TEMPORARY;
    }
    if (inv->order_id.ptr &&
        (inv->order_id.len > REF_MAX || dm_has_ctl(inv->order_id.ptr, inv->order_id.len))) {
        inv->order_id.ptr = NULL;
        inv->order_id.len = 0;
    }
    return DM_OK;
}

/* The parts of an event every invoice event shares. */
static void event_from_invoice(const invoice *inv, dm_payment_event *ev)
{
    ev->provider_ref = inv->id;
    ev->payment_id = inv->id;
    ev->order_id = inv->order_id;
    if (inv->amount_ok) {
        ev->amount_micros = inv->amount_micros;
    }
    if (is_currency(inv->currency.ptr, inv->currency.len)) {
        ev->currency = inv->currency;
    }
}

static void review(dm_payment_event *ev, dm_payment_review_reason why, const char *detail)
{
    ev->status = DM_PAY_NEEDS_REVIEW;
    ev->review_reason = why;
    ev->detail.ptr = detail;
    ev->detail.len = strlen(detail);
}

static void note(dm_payment_event *ev, const char *detail)
{
    ev->detail.ptr = detail;
    ev->detail.len = strlen(detail);
}

/* A settled invoice: paid, unless BTCPay says it was paid over, late or in
 * part (over = the webhook's overPaid flag). */
static void settled(const invoice *inv, int over, int marked, dm_payment_event *ev)
{
    if (over || dm_str_eq(inv->additional_status, "PaidOver")) {
        review(ev, DM_REVIEW_OVERPAID, "BTCPay settled the invoice with more than was asked");
    } else if (dm_str_eq(inv->additional_status, "PaidLate")) {
        review(ev, DM_REVIEW_PAID_AFTER_EXPIRY, "BTCPay settled the invoice after it expired");
    } else if (dm_str_eq(inv->additional_status, "PaidPartial")) {
        review(ev, DM_REVIEW_UNDERPAID, "BTCPay settled the invoice with less than was asked");
    } else if (!ev->currency.len) {
        review(ev, DM_REVIEW_UNKNOWN_CURRENCY, "the invoice's currency is not an ISO 4217 code");
    } else if (!inv->amount_ok) {
        review(ev, DM_REVIEW_OTHER, "the invoice's amount is not one the ledger can hold");
    } else {
        ev->status = DM_PAY_PAID;
        if (marked || dm_str_eq(inv->additional_status, "Marked")) {
            note(ev, "marked settled by hand at BTCPay");
        }
    }
}

/* An expired invoice: expired, unless money came (partly, or late). */
static void expired(const invoice *inv, int partly, dm_payment_event *ev)
{
    if (partly || dm_str_eq(inv->additional_status, "PaidPartial")) {
        review(ev, DM_REVIEW_UNDERPAID, "the invoice expired paid in part");
    } else if (dm_str_eq(inv->additional_status, "PaidLate")) {
        review(ev, DM_REVIEW_PAID_AFTER_EXPIRY, "the invoice was paid after it expired");
    } else {
        ev->status = DM_PAY_EXPIRED;
    }
}

/* The invoice's state as it is now (query). */
static dm_status state_of(const invoice *inv, dm_payment_event *ev, dm_message *msg)
{
    event_from_invoice(inv, ev);
    if (dm_str_eq(inv->status, "Settled")) {
        settled(inv, 0, 0, ev);
    } else if (dm_str_eq(inv->status, "Expired")) {
        expired(inv, 0, ev);
    } else if (dm_str_eq(inv->status, "Invalid")) {
        ev->status = DM_PAY_FAILED;
    } else if (dm_str_eq(inv->status, "New") || dm_str_eq(inv->status, "Processing")) {
        ev->status = DM_PAY_PENDING;
        if (dm_str_eq(inv->additional_status, "PaidPartial")) {
            note(ev, "paid in part so far");
        } else if (dm_str_eq(inv->status, "Processing")) {
            note(ev, "paid, waiting for confirmations");
        }
    } else {
        dm_msg_set(msg, "BTCPay Server reports the invoice in a status this plugin does not know");
        return DM_ERR_PERMANENT;
    }
    return DM_OK;
}

/* Writes ev into the host's structure as far as its size goes. */
static void give(dm_payment_event *out, const dm_payment_event *ev)
{
    uint32_t size = out->size;

    memcpy(out, ev, size < sizeof(*ev) ? size : sizeof(*ev));
    out->size = size;
}

/* ---- create_checkout ---- */

static dm_status btcpay_create_checkout(dm_call *call, const dm_payment_checkout *in,
                                        dm_payment_checkout_result *out, dm_message *msg)
{
    conf c;
    char amount[40], path[64 + ID_MAX];
    buf b = {0};
    const char *body;
    size_t body_len;
    int status;
    dm_str resp, id, link;
    char *rid, *rlink;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    if (in->amount_micros <= 0 || in->amount_micros > AMOUNT_MAX) {
        dm_msg_set(msg, "the amount must be positive and at most 10^9 units");
        return DM_ERR_INVALID;
    }
    if (!is_currency(in->currency.ptr, in->currency.len)) {
        dm_msg_set(msg, "the currency must be an ISO 4217 code in capitals");
        return DM_ERR_INVALID;
    }
    if (!in->order_id.ptr || in->order_id.len == 0 || in->order_id.len > REF_MAX ||
        dm_has_ctl(in->order_id.ptr, in->order_id.len)) {
        dm_msg_set(msg, "the order id must be 1 to %d characters", REF_MAX);
        return DM_ERR_INVALID;
    }
    if (in->success_url.len && !is_http_url(in->success_url.ptr, in->success_url.len)) {
        dm_msg_set(msg, "the return URL must be an http(s) URL");
        return DM_ERR_INVALID;
    }
    format_amount(in->amount_micros, amount, sizeof(amount));
    buf_str(&b, "{\"amount\":\"");
    buf_str(&b, amount);
    buf_str(&b, "\",\"currency\":\"");
    buf_add(&b, in->currency.ptr, 3);
    buf_str(&b, "\",\"metadata\":{\"orderId\":");
    buf_str(&b, host->json_quote(call, in->order_id));
    buf_str(&b, "},\"checkout\":{\"expirationMinutes\":");
    snprintf(amount, sizeof(amount), "%d", EXPIRATION_MINUTES);
    buf_str(&b, amount);
    if (in->success_url.len) {
        buf_str(&b, ",\"redirectURL\":");
        buf_str(&b, host->json_quote(call, in->success_url));
    }
    buf_str(&b, "}}");
    body = to_call(call, &b);
    body_len = b.len;
    free(b.p);
    if (!body) {
        dm_msg_set(msg, "the order id or return URL is not UTF-8");
        return DM_ERR_INVALID;
    }
    snprintf(path, sizeof(path), "/api/v1/stores/%s/invoices", c.store_id);
    st = btcpay_call(call, &c, "POST", path, body, body_len, &status, &resp, msg);
    if (st != DM_OK) {
        return st;
    }
    id = field(call, resp, "id");
    link = field(call, resp, "checkoutLink");
    if (!id.ptr || !link.ptr || !is_id(id.ptr, id.len) || !is_http_url(link.ptr, link.len)) {
        /* garbage with a 2xx: nothing usable was made, try again later */
        dm_msg_set(msg, "BTCPay Server answered the new invoice without a usable id and "
                        "checkoutLink");
        return DM_ERR_TEMPORARY;
    }
    rid = host->alloc(call, id.len + 1);
    rlink = host->alloc(call, link.len + 1);
    if (!rid || !rlink) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    memcpy(rid, id.ptr, id.len);
    rid[id.len] = '\0';
    memcpy(rlink, link.ptr, link.len);
    rlink[link.len] = '\0';
    out->provider_ref.ptr = rid;
    out->provider_ref.len = id.len;
    out->redirect_url.ptr = rlink;
    out->redirect_url.len = link.len;
    return DM_OK;
}

/* ---- the webhook ---- */

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

/* BTCPay-Sig: sha256=<hex of HMAC-SHA-256(secret, raw body)>. */
static dm_status verify_signature(dm_call *call, const conf *c, dm_str body, const dm_header *hs,
                                  size_t n, dm_message *msg)
{
    const dm_header *h = dm_header_find(hs, n, SIG_HEADER);
    size_t plen = sizeof(SIG_PREFIX) - 1;
    unsigned char mac[32];
    char got[65];
    char *expected;

    if (!h || !h->value.ptr || h->value.len == 0) {
        dm_msg_set(msg, "no " SIG_HEADER " header");
        return DM_ERR_INVALID;
    }
    if (h->value.len != plen + 64 || strncasecmp(h->value.ptr, SIG_PREFIX, plen) != 0 ||
        !is_hex(h->value.ptr + plen, 64)) {
        dm_msg_set(msg, SIG_HEADER " is not sha256=<64 hex digits>");
        return DM_ERR_INVALID;
    }
    for (size_t i = 0; i < 64; i++) {
        char ch = h->value.ptr[plen + i];
        got[i] = ch >= 'A' && ch <= 'F' ? (char)(ch - 'A' + 'a') : ch;
    }
    got[64] = '\0';
    host->hmac_sha256(c->secret, c->secret_len, body.ptr ? body.ptr : "", body.len, mac);
    expected = host->hex_encode(call, mac, sizeof(mac));
    memset(mac, 0, sizeof(mac));
    if (!expected) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    if (!host->equal_ct(expected, got, 64)) {
        dm_msg_set(msg, "the " SIG_HEADER " does not match the body (wrong secret, or the body was "
                        "altered)");
        return DM_ERR_INVALID;
    }
    return DM_OK;
}

static int is_true(dm_str s)
{
    return dm_str_eq(s, "true");
}

/* Our own refund note (see the file comment): a refunded event for the
 * order whose invoice it names. */
static dm_status refund_note(dm_call *call, dm_str body, dm_payment_event *ev, dm_message *msg)
{
    dm_str amount = field(call, body, "amount");

    ev->provider_ref = field(call, body, "invoiceId");
    ev->payment_id = ev->provider_ref;
    ev->currency = field(call, body, "currency");
    if (!is_id(ev->provider_ref.ptr, ev->provider_ref.len) ||
        !is_currency(ev->currency.ptr, ev->currency.len) ||
        !parse_amount(amount.ptr, amount.len, &ev->amount_micros) || ev->amount_micros <= 0) {
        dm_msg_set(msg, "the refund event needs invoiceId, a positive amount and a currency");
        return DM_ERR_INVALID;
    }
    ev->status = DM_PAY_REFUNDED;
    return DM_OK;
}

static dm_status btcpay_parse_webhook(dm_call *call, dm_str raw_body, const dm_header *headers,
                                      size_t n_headers, dm_payment_event *out, dm_message *msg)
{
    conf c;
    dm_payment_event ev;
    invoice inv;
    dm_str type, delivery, original, store, invoice_id, ts;
    int64_t t = 0, now = (int64_t)time(NULL);
    int needs_invoice;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    st = verify_signature(call, &c, raw_body, headers, n_headers, msg);
    if (st != DM_OK) {
        return st;
    }
    memset(&ev, 0, sizeof(ev));
    type = field(call, raw_body, "type");
    delivery = field(call, raw_body, "deliveryId");
    original = field(call, raw_body, "originalDeliveryId");
    store = field(call, raw_body, "storeId");
    invoice_id = field(call, raw_body, "invoiceId");
    ts = field(call, raw_body, "timestamp");
    if (!type.ptr || !is_id(delivery.ptr, delivery.len)) {
        dm_msg_set(msg, "the event has no type or deliveryId");
        return DM_ERR_INVALID;
    }
    if (!dm_str_eq(store, c.store_id)) {
        dm_msg_set(msg, "the event is for another BTCPay store");
        return DM_ERR_INVALID;
    }
    if (ts.ptr && (!parse_int64(ts.ptr, ts.len, &t) || t <= 0)) {
        dm_msg_set(msg, "the event's timestamp is not a Unix time");
        return DM_ERR_INVALID;
    }
    if (t && c.max_age > 0 && t < now - c.max_age) {
        dm_msg_set(msg, "the event is older than webhook_max_age (%lld s)", (long long)c.max_age);
        return DM_ERR_INVALID;
    }
    if (t > now + FUTURE_SKEW_S) {
        dm_msg_set(msg, "the event's timestamp is in the future");
        return DM_ERR_INVALID;
    }
    /* A redelivery is the same event as the delivery it repeats. */
    ev.event_id = delivery;
    if (is_true(field(call, raw_body, "isRedelivery"))) {
        if (!is_id(original.ptr, original.len)) {
            dm_msg_set(msg, "a redelivery without an originalDeliveryId");
            return DM_ERR_INVALID;
        }
        ev.event_id = original;
    }

    if (dm_str_eq(type, REFUND_TYPE)) {
        st = refund_note(call, raw_body, &ev, msg);
        if (st == DM_OK) {
            give(out, &ev);
        }
        return st;
    }
    needs_invoice = dm_str_eq(type, "InvoiceSettled") || dm_str_eq(type, "InvoiceExpired") ||
                    dm_str_eq(type, "InvoiceInvalid") || dm_str_eq(type, "InvoiceProcessing") ||
                    dm_str_eq(type, "InvoiceReceivedPayment") ||
                    dm_str_eq(type, "InvoicePaymentSettled");
    if (!needs_invoice) {
        /* InvoiceCreated and whatever BTCPay adds: verified, not acted on */
        ev.status = DM_PAY_IGNORED;
        if (is_id(invoice_id.ptr, invoice_id.len)) {
            ev.provider_ref = invoice_id;
        }
        give(out, &ev);
        return DM_OK;
    }
    if (!is_id(invoice_id.ptr, invoice_id.len)) {
        dm_msg_set(msg, "the event names no invoiceId");
        return DM_ERR_INVALID;
    }
    st = get_invoice(call, &c, invoice_id, &inv, msg);
    if (st == DM_ERR_PERMANENT) {
        dm_msg_set(msg, "BTCPay Server does not know the event's invoice");
        return DM_ERR_INVALID;
    }
    if (st != DM_OK) {
        /* 503 to BTCPay, which delivers again later */
        return st == DM_ERR_CONFIG ? DM_ERR_TEMPORARY : st;
    }
    event_from_invoice(&inv, &ev);
    if (dm_str_eq(type, "InvoiceSettled")) {
        settled(&inv, is_true(field(call, raw_body, "overPaid")),
                is_true(field(call, raw_body, "manuallyMarked")), &ev);
    } else if (dm_str_eq(type, "InvoiceExpired")) {
        expired(&inv, is_true(field(call, raw_body, "partiallyPaid")), &ev);
    } else if (dm_str_eq(type, "InvoiceInvalid")) {
        ev.status = DM_PAY_FAILED;
        if (is_true(field(call, raw_body, "manuallyMarked"))) {
            note(&ev, "marked invalid by hand at BTCPay");
        }
    } else if (is_true(field(call, raw_body, "afterExpiration"))) {
        /* InvoiceReceivedPayment / InvoicePaymentSettled for a dead invoice */
        review(&ev, DM_REVIEW_PAID_AFTER_EXPIRY, "a payment arrived after the invoice expired");
    } else {
        ev.status = DM_PAY_PENDING;
        note(&ev, dm_str_eq(type, "InvoiceProcessing") ? "paid, waiting for confirmations"
                                                       : "a payment was received");
    }
    give(out, &ev);
    return DM_OK;
}

/* ---- query ---- */

static dm_status btcpay_query(dm_call *call, dm_str provider_ref, dm_payment_event *out,
                              dm_message *msg)
{
    conf c;
    invoice inv;
    dm_payment_event ev;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    st = get_invoice(call, &c, provider_ref, &inv, msg);
    if (st != DM_OK) {
        return st;
    }
    memset(&ev, 0, sizeof(ev));
    st = state_of(&inv, &ev, msg);
    if (st == DM_OK) {
        give(out, &ev);
    }
    return st;
}

/* ---- refunds ---- */

/* Posts the signed refund note to this site's own webhook. */
static dm_status post_refund_note(dm_call *call, const conf *c, dm_str invoice_id, dm_str pp_id,
                                  const char *amount, dm_str currency, dm_message *msg)
{
    buf b = {0};
    char tbuf[24], *url, *body, *sig;
    unsigned char mac[32];
    dm_header hs[2];
    dm_http_request req;
    dm_http_response res;
    dm_status st;

    snprintf(tbuf, sizeof(tbuf), "%lld", (long long)time(NULL));
    buf_str(&b, "{\"deliveryId\":\"refund-");
    buf_add(&b, pp_id.ptr, pp_id.len);
    buf_str(&b, "\",\"type\":\"" REFUND_TYPE "\",\"timestamp\":");
    buf_str(&b, tbuf);
    buf_str(&b, ",\"storeId\":\"");
    buf_str(&b, c->store_id);
    buf_str(&b, "\",\"invoiceId\":\"");
    buf_add(&b, invoice_id.ptr, invoice_id.len);
    buf_str(&b, "\",\"pullPaymentId\":\"");
    buf_add(&b, pp_id.ptr, pp_id.len);
    buf_str(&b, "\",\"amount\":\"");
    buf_str(&b, amount);
    buf_str(&b, "\",\"currency\":\"");
    buf_add(&b, currency.ptr, currency.len);
    buf_str(&b, "\"}");
    body = to_call(call, &b);
    free(b.p);
    url = host->alloc(call, strlen(c->public_url) + strlen(c->name) + 16);
    if (!body || !url) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    sprintf(url, "%s/api/webhooks/%s", c->public_url, c->name);
    host->hmac_sha256(c->secret, c->secret_len, body, strlen(body), mac);
    sig = host->hex_encode(call, mac, sizeof(mac));
    memset(mac, 0, sizeof(mac));
    if (!sig) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    {
        char *v = host->alloc(call, strlen(sig) + 8);
        if (!v) {
            dm_msg_set(msg, "out of memory");
            return DM_ERR_INTERNAL;
        }
        sprintf(v, SIG_PREFIX "%s", sig);
        hs[0].name.ptr = SIG_HEADER;
        hs[0].name.len = sizeof(SIG_HEADER) - 1;
        hs[0].value.ptr = v;
        hs[0].value.len = strlen(v);
    }
    hs[1].name.ptr = "Content-Type";
    hs[1].name.len = 12;
    hs[1].value.ptr = "application/json";
    hs[1].value.len = 16;
    memset(&req, 0, sizeof(req));
    memset(&res, 0, sizeof(res));
    req.size = sizeof(req);
    req.method = "POST";
    req.url = url;
    req.headers = hs;
    req.n_headers = 2;
    req.body.ptr = body;
    req.body.len = strlen(body);
    req.timeout_ms = c->timeout_ms;
    res.size = sizeof(res);
    st = host->http(call, &req, &res, msg);
    if (st != DM_OK || res.status < 200 || res.status > 299) {
        if (st == DM_OK) {
            dm_msg_set(msg, "this site's webhook answered HTTP %d", res.status);
        }
        return DM_ERR_TEMPORARY;
    }
    return DM_OK;
}

static dm_status btcpay_refund_ex(dm_call *call, const dm_payment_refund_request *req_raw,
                                  dm_str *refund_id, dm_message *msg)
{
    dm_payment_refund_request rq;
    conf c;
    char amount[40], path[96 + 2 * ID_MAX];
    buf b = {0};
    const char *body;
    size_t body_len;
    int status;
    dm_str resp, pp_id, link;
    dm_message why;
    dm_status st;

    memset(&rq, 0, sizeof(rq));
    memcpy(&rq, req_raw, req_raw->size < sizeof(rq) ? req_raw->size : sizeof(rq));
    st = read_conf(call, &c, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!c.refunds_api) {
        dm_msg_set(msg, "refunds are set to manual for BTCPay: refund at BTCPay Server and record "
                        "it as a manual refund");
        return DM_ERR_UNSUPPORTED;
    }
    if (!c.name || !c.public_url) {
        dm_msg_set(msg, "BTCPay refunds need DeepMinePublicURL (the refund is recorded through "
                        "this site's webhook); record a manual refund instead");
        return DM_ERR_UNSUPPORTED;
    }
    if (!is_id(rq.provider_ref.ptr, rq.provider_ref.len)) {
        dm_msg_set(msg, "the provider reference is not a BTCPay invoice id");
        return DM_ERR_INVALID;
    }
    if (rq.amount_micros <= 0 || rq.amount_micros > AMOUNT_MAX ||
        !is_currency(rq.currency.ptr, rq.currency.len)) {
        dm_msg_set(msg, "a refund needs a positive amount and an ISO 4217 currency");
        return DM_ERR_INVALID;
    }
    format_amount(rq.amount_micros, amount, sizeof(amount));
    buf_str(&b, "{\"name\":\"Refund ");
    buf_add(&b, rq.provider_ref.ptr, rq.provider_ref.len);
    buf_str(&b, "\",\"description\":");
    if (rq.reason.len || rq.idempotency_key.len) {
        buf_str(&b, host->json_quote(call, rq.reason.len ? rq.reason : rq.idempotency_key));
    } else {
        buf_str(&b, "\"Refund\"");
    }
    buf_str(&b, ",\"paymentMethod\":\"");
    buf_str(&b, c.refund_method);
    buf_str(&b, "\",\"refundVariant\":\"Custom\",\"customAmount\":\"");
    buf_str(&b, amount);
    buf_str(&b, "\",\"customCurrency\":\"");
    buf_add(&b, rq.currency.ptr, 3);
    buf_str(&b, "\"}");
    body = to_call(call, &b);
    body_len = b.len;
    free(b.p);
    if (!body) {
        dm_msg_set(msg, "the refund's reason is not UTF-8");
        return DM_ERR_INVALID;
    }
    snprintf(path, sizeof(path), "/api/v1/stores/%s/invoices/%.*s/refund", c.store_id,
             (int)rq.provider_ref.len, rq.provider_ref.ptr);
    st = btcpay_call(call, &c, "POST", path, body, body_len, &status, &resp, msg);
    if (st == DM_ERR_CONFIG) {
        /* the key may not refund (btcpay.store.canmodifystoresettings) */
        dm_msg_set(msg,
                   "BTCPay Server does not let this API key refund (HTTP %d): refund at BTCPay "
                   "Server and record it as a manual refund",
                   status);
        return DM_ERR_UNSUPPORTED;
    }
    if (st != DM_OK) {
        return st;
    }
    pp_id = field(call, resp, "id");
    link = field(call, resp, "viewLink");
    if (!is_id(pp_id.ptr, pp_id.len)) {
        dm_msg_set(msg, "BTCPay Server answered the refund without a pull payment id");
        return DM_ERR_TEMPORARY;
    }
    memset(&why, 0, sizeof(why));
    st = post_refund_note(call, &c, rq.provider_ref, pp_id, amount, rq.currency, &why);
    if (refund_id) {
        refund_id->ptr = pp_id.ptr;
        refund_id->len = pp_id.len;
    }
    if (st != DM_OK) {
        /* BTCPay holds the refund: it must not be asked twice. */
        host->log(call, DM_LOG_WARN, "a BTCPay refund was made but could not be recorded here");
        dm_msg_set(msg, "BTCPay pull payment %.*s was made but this site could not record it (%s)",
                   (int)pp_id.len, pp_id.ptr, why.text);
        return DM_OK;
    }
    if (link.ptr && is_http_url(link.ptr, link.len)) {
        dm_msg_set(msg, "BTCPay pull payment %.*s: send the buyer %.*s", (int)pp_id.len, pp_id.ptr,
                   (int)link.len, link.ptr);
    } else {
        dm_msg_set(msg, "BTCPay pull payment %.*s", (int)pp_id.len, pp_id.ptr);
    }
    return DM_OK;
}

static dm_status btcpay_refund(dm_call *call, dm_str provider_ref, int64_t amount_micros,
                               dm_str currency, dm_message *msg)
{
    dm_payment_refund_request rq;

    memset(&rq, 0, sizeof(rq));
    rq.size = sizeof(rq);
    rq.provider_ref = provider_ref;
    rq.amount_micros = amount_micros;
    rq.currency = currency;
    return btcpay_refund_ex(call, &rq, NULL, msg);
}

/* ---- life cycle ---- */

static dm_status btcpay_init(const dm_host *h, dm_call *call, dm_message *msg)
{
    conf c;

    host = h;
    return read_conf(call, &c, msg);
}

static dm_status btcpay_health(dm_call *call, dm_message *msg)
{
    conf c;
    return read_conf(call, &c, msg);
}

static const char *const required[] = {"server_url", "store_id", "api_key", "webhook_secret", NULL};

static const dm_payment_ops ops = {
    .size = sizeof(dm_payment_ops),
    .create_checkout = btcpay_create_checkout,
    .parse_webhook = btcpay_parse_webhook,
    .refund = btcpay_refund,
    .query = btcpay_query,
    .refund_ex = btcpay_refund_ex,
    .display_name = "Bitcoin (BTCPay Server)",
    .method_kind = "crypto",
    .currencies = "*",
    .checkout_lifetime_s = EXPIRATION_MINUTES * 60,
};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_PAYMENT,
    .name = "payment-btcpay",
    .version = BTCPAY_VERSION,
    .required_settings = required,
    .init = btcpay_init,
    .fini = NULL,
    .ops = &ops,
    .health = btcpay_health,
    .handle_request = NULL,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *h)
{
    /* Everything used of the host table is in ABI 1.0 (http, hmac_sha256,
     * json_get, json_quote); the reserved settings of 1.2 only for refunds. */
    if (!DM_HAS_FIELD(h, dm_host, json_quote)) {
        return NULL;
    }
    return &desc;
}
