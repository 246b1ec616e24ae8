/*
 * payment-paypal — PayPal Checkout through its REST API: OAuth2 client
 * credentials, Orders v2, Payments v2 refunds and Webhooks v1, with the
 * webhook signature checked by PayPal's own verify-webhook-signature
 * postback (README.md lists every setting and the wire facts, with their
 * sources).
 *
 * The flow:
 * - create_checkout: POST /v2/checkout/orders (intent CAPTURE, custom_id =
 *   our order id, PayPal-Request-Id derived from the site and the order);
 *   the buyer goes to the order's payer-action (or approve) link.
 * - The buyer comes back to /api/plugins/<name>/return?token=<PayPal
 *   order>&order=<ours>: the plugin captures there and then (server side),
 *   posts the completed capture to the site's own webhook endpoint signed
 *   with a key derived from the client secret (header
 *   DeepMine-PayPal-Return), and redirects to the order page /orders/<id>.
 * - CHECKOUT.ORDER.APPROVED captures too (the same PayPal-Request-Id, so
 *   PayPal answers the first capture again); PAYMENT.CAPTURE.COMPLETED is
 *   paid; PAYMENT.CAPTURE.REFUNDED / REVERSED refunded; CUSTOMER.DISPUTE.*
 *   disputes.
 *
 * Invariants:
 * - One capture is one paid event whoever reports it: the return page, the
 *   approval webhook, the capture webhook or query all name it
 *   "CAPTURE-<capture id>-COMPLETED", and its payment_id is the capture id.
 * - Nothing from a webhook is believed before PayPal has said SUCCESS for
 *   it (the postback), or before its DeepMine-PayPal-Return signature has
 *   been checked; the transmission time must be within webhook_max_age_s.
 * - Secrets (client secret, access tokens) never appear in a message or a
 *   log line: messages carry PayPal's error names and HTTP statuses only.
 * - The only state is the access-token cache (per process, keyed by a hash
 *   of the API base, the client id and the secret, under a mutex); settings
 *   are read on every call, so the .so may be declared twice.
 * - Money: micro-units in, PayPal's decimal strings out, in the currency's
 *   own number of decimals (none for JPY, HUF, TWD); an amount that is not a
 *   whole number of minor units is refused before any request.
 */
#include <deepmine/plugin.h>
#include <deepmine/plugin_util.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define PAYPAL_VERSION "1.0.0"
#define API_BASE_DEFAULT "https://api-m.paypal.com"
#define TIMEOUT_DEFAULT 10000
#define TIMEOUT_MIN 500
#define TIMEOUT_MAX 60000
/* PayPal retries a webhook for 3 days; a day more for clocks and queues. */
#define MAX_AGE_DEFAULT (4 * 86400)
#define MAX_AGE_MIN 300
#define MAX_AGE_MAX (30 * 86400)
#define FUTURE_SKEW_S 300
#define RETURN_TOLERANCE_S 300
#define SETTING_MAX 512
#define ID_MAX 64     /* PayPal order, capture, refund, dispute ids */
#define ORDER_MAX 127 /* custom_id's limit */
#define BEARER_MAX 4096
#define URL_MAX 2048
/* A payer has 3 hours to approve an order (PROVIDERS.md §2). */
#define CHECKOUT_LIFETIME_S 10800
#define RETURN_HEADER "DeepMine-PayPal-Return"
#define RETURN_KEY_CONTEXT "deepmine-paypal-return-event:v1:"
#define AMOUNT_MAX ((int64_t)1000000000 * 1000000)

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

static void buf_fmt(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_fmt(buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        b->oom = 1; /* only used for short, bounded pieces */
        return;
    }
    buf_add(b, tmp, (size_t)n);
}

static void buf_html(buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '&':
            buf_str(b, "&amp;");
            break;
        case '<':
            buf_str(b, "&lt;");
            break;
        case '>':
            buf_str(b, "&gt;");
            break;
        case '"':
            buf_str(b, "&quot;");
            break;
        case '\'':
            buf_str(b, "&#39;");
            break;
        default:
            buf_add(b, s + i, 1);
        }
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

static char *dup_call(dm_call *call, const char *s, size_t n)
{
    char *out = host->alloc(call, n + 1);

    if (out) {
        if (n) {
            memcpy(out, s, n);
        }
        out[n] = '\0';
    }
    return out;
}

static dm_str mkstr(const char *s)
{
    dm_str out = {s, s ? strlen(s) : 0};
    return out;
}

/* PayPal's ids (orders, captures, refunds, disputes "PP-D-…", webhook ids)
 * are letters, digits and '-': nothing that could change a URL path. */
static int is_paypal_id(dm_str s)
{
    if (!s.ptr || s.len == 0 || s.len > ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_')) {
            return 0;
        }
    }
    return 1;
}

/* Our order ids are decimal numbers. */
static int is_order_id(dm_str s)
{
    if (!s.ptr || s.len == 0 || s.len > 18) {
        return 0;
    }
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9') {
            return 0;
        }
    }
    return 1;
}

static int is_http_url(const char *s, size_t n)
{
    return n <= URL_MAX && !dm_has_ctl(s, n) && !memchr(s, ' ', n) &&
           ((n > 7 && strncmp(s, "http://", 7) == 0) || (n > 8 && strncmp(s, "https://", 8) == 0));
}

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

/* A JSON value by dotted path (see dm_host.json_get); empty when absent. */
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

static dm_header hdr(const char *name, const char *value)
{
    dm_header h;
    h.name = mkstr(name);
    h.value = mkstr(value);
    return h;
}

/* ---- money: micro-units and PayPal's decimal strings ---- */

typedef struct currency_info {
    const char *code;
    int decimals;
    int paypal; /* PayPal takes payments in it */
} currency_info;

/* PayPal's currency codes with its own decimals (HUF, JPY and TWD take no
 * decimals at PayPal: https://developer.paypal.com/api/rest/reference/
 * currency-codes/), and a few ISO 4217 three-decimal currencies PayPal does
 * not take, so the conversion is right for them too. */
static const currency_info currencies[] = {
    {"AUD", 2, 1}, {"BRL", 2, 1}, {"CAD", 2, 1}, {"CNY", 2, 1}, {"CZK", 2, 1}, {"DKK", 2, 1},
    {"EUR", 2, 1}, {"HKD", 2, 1}, {"HUF", 0, 1}, {"ILS", 2, 1}, {"JPY", 0, 1}, {"MYR", 2, 1},
    {"MXN", 2, 1}, {"TWD", 0, 1}, {"NZD", 2, 1}, {"NOK", 2, 1}, {"PHP", 2, 1}, {"PLN", 2, 1},
    {"GBP", 2, 1}, {"SGD", 2, 1}, {"SEK", 2, 1}, {"CHF", 2, 1}, {"THB", 2, 1}, {"USD", 2, 1},
    {"BHD", 3, 0}, {"JOD", 3, 0}, {"KWD", 3, 0}, {"OMR", 3, 0}, {"TND", 3, 0},
};

#define PAYPAL_CURRENCIES                                                                          \
    "AUD,BRL,CAD,CNY,CZK,DKK,EUR,HKD,HUF,ILS,JPY,MYR,MXN,TWD,NZD,NOK,PHP,PLN,GBP,SGD,SEK,CHF,"     \
    "THB,USD"

static const currency_info *currency_of(dm_str code)
{
    for (size_t i = 0; i < sizeof(currencies) / sizeof(currencies[0]); i++) {
        if (dm_str_eq(code, currencies[i].code)) {
            return &currencies[i];
        }
    }
    return NULL;
}

static const int64_t pow10s[] = {1, 10, 100, 1000, 10000, 100000, 1000000};

/* micros as a decimal string with exactly `decimals` decimals ("12.50",
 * "1250" for JPY, "1.250" for BHD). 0 when micros is negative, too large,
 * or not a whole number of minor units. */
static int micros_to_decimal(int64_t micros, int decimals, char *out, size_t outsz)
{
    int64_t unit, minor, whole, frac;
    int n;

    if (micros < 0 || micros > AMOUNT_MAX || decimals < 0 || decimals > 6) {
        return 0;
    }
    unit = pow10s[6 - decimals];
    if (micros % unit != 0) {
        return 0;
    }
    minor = micros / unit;
    whole = minor / pow10s[decimals];
    frac = minor % pow10s[decimals];
    if (decimals == 0) {
        n = snprintf(out, outsz, "%lld", (long long)whole);
    } else {
        n = snprintf(out, outsz, "%lld.%0*lld", (long long)whole, decimals, (long long)frac);
    }
    return n > 0 && (size_t)n < outsz;
}

/* A PayPal amount ("12.50", "1250", "-0.01") as micros; at most `decimals`
 * decimals, an optional leading '-' (reversals). 0 on anything else. */
static int decimal_to_micros(dm_str s, int decimals, int64_t *out)
{
    size_t i = 0, digits = 0, fdigits = 0;
    int neg = 0, dot = 0;
    int64_t whole = 0, frac = 0;

    if (!s.ptr || s.len == 0 || s.len > 24 || decimals < 0 || decimals > 6) {
        return 0;
    }
    if (s.ptr[0] == '-') {
        neg = 1;
        i = 1;
    }
    for (; i < s.len; i++) {
        char c = s.ptr[i];
        if (c == '.' && !dot) {
            dot = 1;
            continue;
        }
        if (c < '0' || c > '9') {
            return 0;
        }
        if (dot) {
            if (++fdigits > (size_t)decimals) {
                return 0;
            }
            frac = frac * 10 + (c - '0');
        } else {
            if (++digits > 12) {
                return 0; /* a thousand billion units: not an amount */
            }
            whole = whole * 10 + (c - '0');
        }
    }
    if (digits == 0 || (dot && fdigits == 0)) {
        return 0;
    }
    frac *= pow10s[6 - fdigits];
    *out = whole * 1000000 + frac;
    if (neg) {
        *out = -*out;
    }
    return 1;
}

/* An {"currency_code","value"} object at `path` as micros and code. */
static int money_at(dm_call *call, dm_str json, const char *path, int64_t *micros, dm_str *currency,
                    int *known)
{
    char p[128];
    dm_str value;
    const currency_info *ci;

    snprintf(p, sizeof(p), "%s.currency_code", path);
    *currency = field(call, json, p);
    snprintf(p, sizeof(p), "%s.value", path);
    value = field(call, json, p);
    *known = 0;
    *micros = 0;
    if (!currency->ptr || currency->len != 3 || !value.ptr) {
        return 0;
    }
    for (size_t i = 0; i < 3; i++) {
        if (currency->ptr[i] < 'A' || currency->ptr[i] > 'Z') {
            return 0;
        }
    }
    ci = currency_of(*currency);
    *known = ci != NULL;
    /* An unknown currency is still read, at two decimals, for the staff's
     * words; the event then needs review. */
    return decimal_to_micros(value, ci ? ci->decimals : 2, micros);
}

/* ---- settings ---- */

typedef struct conf {
    const char *name;
    const char *public_url;
    const char *client_id;
    const char *secret;
    const char *webhook_id;
    const char *api_base; /* no trailing '/' */
    const char *brand_name;
    uint32_t timeout_ms;
    int64_t max_age_s;
} conf;

static dm_status read_conf(dm_call *call, conf *c, dm_message *msg)
{
    const char *v;
    int64_t n;
    size_t len;

    memset(c, 0, sizeof(*c));
    c->name = host->setting(call, "_name");
    c->public_url = host->setting(call, "_public_url");
    if (!c->name) {
        dm_msg_set(msg,
                   "this server gives plugins no _name setting; payment-paypal needs a host of "
                   "plugin ABI 1.2 or later");
        return DM_ERR_CONFIG;
    }
    if (!c->public_url || !is_http_url(c->public_url, strlen(c->public_url))) {
        dm_msg_set(msg,
                   "DeepMinePublicURL is not set: PayPal sends the buyer back to "
                   "<public URL>/api/plugins/%s/return",
                   c->name);
        return DM_ERR_CONFIG;
    }
    c->client_id = host->setting(call, "client_id");
    if (!c->client_id || !*c->client_id || strlen(c->client_id) > SETTING_MAX ||
        dm_has_ctl(c->client_id, strlen(c->client_id))) {
        dm_msg_set(msg,
                   "client_id is missing or malformed; add DeepMinePluginSet %s client_id "
                   "<the REST app's client ID>",
                   c->name);
        return DM_ERR_CONFIG;
    }
    c->secret = host->setting(call, "client_secret");
    if (!c->secret || !*c->secret || strlen(c->secret) > SETTING_MAX ||
        dm_has_ctl(c->secret, strlen(c->secret))) {
        dm_msg_set(msg,
                   "client_secret is missing or malformed; add DeepMinePluginSet %s "
                   "client_secret file:/path/to/secret (or env:VAR)",
                   c->name);
        return DM_ERR_CONFIG;
    }
    c->webhook_id = host->setting(call, "webhook_id");
    if (!c->webhook_id || !is_paypal_id(mkstr(c->webhook_id))) {
        dm_msg_set(msg,
                   "webhook_id is missing or malformed; add DeepMinePluginSet %s webhook_id "
                   "<the id PayPal shows for this site's webhook>",
                   c->name);
        return DM_ERR_CONFIG;
    }
    v = host->setting(call, "api_base");
    if (!v) {
        v = API_BASE_DEFAULT;
    }
    len = strlen(v);
    while (len > 0 && v[len - 1] == '/') {
        len--;
    }
    if (len > SETTING_MAX || !is_http_url(v, len) || memchr(v, '?', len) || memchr(v, '#', len)) {
        dm_msg_set(msg, "api_base must be an http(s) URL such as %s", API_BASE_DEFAULT);
        return DM_ERR_CONFIG;
    }
    c->api_base = dup_call(call, v, len);
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
    c->max_age_s = MAX_AGE_DEFAULT;
    v = host->setting(call, "webhook_max_age_s");
    if (v && (!parse_int64(v, strlen(v), &c->max_age_s) || c->max_age_s < MAX_AGE_MIN ||
              c->max_age_s > MAX_AGE_MAX)) {
        dm_msg_set(msg, "webhook_max_age_s must be a number of seconds from %d to %d", MAX_AGE_MIN,
                   MAX_AGE_MAX);
        return DM_ERR_CONFIG;
    }
    c->brand_name = host->setting(call, "brand_name");
    if (c->brand_name &&
        (strlen(c->brand_name) > 127 || dm_has_ctl(c->brand_name, strlen(c->brand_name)))) {
        dm_msg_set(msg, "brand_name must be at most 127 characters");
        return DM_ERR_CONFIG;
    }
    if (!c->api_base) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    return DM_OK;
}

/* ---- the access-token cache (per process) ---- */

#define TOKEN_SLOTS 4

typedef struct token_slot {
    time_t until;
    int used;
    unsigned char key[32];
    char token[BEARER_MAX + 1];
} token_slot;

static token_slot token_slots[TOKEN_SLOTS];
static pthread_mutex_t token_mu = PTHREAD_MUTEX_INITIALIZER;

static void cache_key(const conf *c, unsigned char key[32])
{
    buf b = {0};

    buf_str(&b, c->api_base);
    buf_add(&b, "\n", 1);
    buf_str(&b, c->client_id);
    buf_add(&b, "\n", 1);
    buf_str(&b, c->secret);
    host->sha256(b.p ? b.p : "", b.len, key);
    if (b.p) {
        memset(b.p, 0, b.len);
    }
    free(b.p);
}

/* The cached token for c in call memory, or NULL. */
static char *cache_get(dm_call *call, const conf *c)
{
    unsigned char key[32];
    char *out = NULL;
    time_t now = time(NULL);

    cache_key(c, key);
    pthread_mutex_lock(&token_mu);
    for (size_t i = 0; i < TOKEN_SLOTS; i++) {
        token_slot *s = &token_slots[i];
        if (s->used && memcmp(s->key, key, 32) == 0 && s->until > now) {
            out = dup_call(call, s->token, strlen(s->token));
            break;
        }
    }
    pthread_mutex_unlock(&token_mu);
    return out;
}

static void cache_put(const conf *c, const char *token, int64_t expires_in)
{
    unsigned char key[32];
    token_slot *slot = NULL;
    time_t now = time(NULL);
    /* Renew a minute early, so a token never expires between our check and
     * PayPal's; a very short life is halved instead. */
    int64_t margin = expires_in >= 120 ? 60 : expires_in / 2;

    if (expires_in - margin <= 0 || strlen(token) > BEARER_MAX) {
        return;
    }
    cache_key(c, key);
    pthread_mutex_lock(&token_mu);
    for (size_t i = 0; i < TOKEN_SLOTS && !slot; i++) {
        if (token_slots[i].used && memcmp(token_slots[i].key, key, 32) == 0) {
            slot = &token_slots[i];
        }
    }
    for (size_t i = 0; i < TOKEN_SLOTS && !slot; i++) {
        if (!token_slots[i].used) {
            slot = &token_slots[i];
        }
    }
    if (!slot) {
        slot = &token_slots[0];
        for (size_t i = 1; i < TOKEN_SLOTS; i++) {
            if (token_slots[i].until < slot->until) {
                slot = &token_slots[i];
            }
        }
    }
    memcpy(slot->key, key, 32);
    snprintf(slot->token, sizeof(slot->token), "%s", token);
    slot->until = now + (time_t)(expires_in - margin);
    slot->used = 1;
    pthread_mutex_unlock(&token_mu);
}

/* Forgets `token` (PayPal refused it), unless another call already put a
 * fresher one in its place. */
static void cache_drop(const conf *c, const char *token)
{
    unsigned char key[32];

    cache_key(c, key);
    pthread_mutex_lock(&token_mu);
    for (size_t i = 0; i < TOKEN_SLOTS; i++) {
        token_slot *s = &token_slots[i];
        if (s->used && memcmp(s->key, key, 32) == 0 && strcmp(s->token, token) == 0) {
            memset(s, 0, sizeof(*s));
        }
    }
    pthread_mutex_unlock(&token_mu);
}

/* ---- HTTP ---- */

static char *url_of(dm_call *call, const conf *c, const char *path)
{
    size_t n = strlen(c->api_base) + strlen(path) + 1;
    char *u = host->alloc(call, n);

    if (u) {
        snprintf(u, n, "%s%s", c->api_base, path);
    }
    return u;
}

/* PayPal's reason for an error answer, for a message: its error name (and
 * the first detail's issue), or OAuth's "error"; never the request. */
static void paypal_reason(dm_call *call, dm_str body, char *out, size_t outsz)
{
    dm_str name = field(call, body, "name"), issue = field(call, body, "details.0.issue");
    dm_str oauth = field(call, body, "error");

    out[0] = '\0';
    if (name.ptr && name.len < 64 && !dm_has_ctl(name.ptr, name.len)) {
        if (issue.ptr && issue.len < 64 && !dm_has_ctl(issue.ptr, issue.len)) {
            snprintf(out, outsz, "%.*s: %.*s", (int)name.len, name.ptr, (int)issue.len, issue.ptr);
        } else {
            snprintf(out, outsz, "%.*s", (int)name.len, name.ptr);
        }
    } else if (oauth.ptr && oauth.len < 64 && !dm_has_ctl(oauth.ptr, oauth.len)) {
        snprintf(out, outsz, "%.*s", (int)oauth.len, oauth.ptr);
    }
}

static dm_status http_send(dm_call *call, const conf *c, const char *method, const char *url,
                           const dm_header *hs, size_t nh, const char *body, size_t body_len,
                           dm_http_response *resp, dm_message *msg)
{
    dm_http_request req;
    dm_message why;
    dm_status st;

    memset(&req, 0, sizeof(req));
    memset(&why, 0, sizeof(why));
    req.size = sizeof(req);
    req.method = method;
    req.url = url;
    req.headers = hs;
    req.n_headers = nh;
    req.body.ptr = body;
    req.body.len = body_len;
    req.timeout_ms = c->timeout_ms;
    memset(resp, 0, sizeof(*resp));
    resp->size = sizeof(*resp);
    st = host->http(call, &req, resp, &why);
    if (st != DM_OK) {
        dm_msg_set(msg, "PayPal did not answer %s %s: %s", method, url + strlen(c->api_base),
                   why.text[0] ? why.text : "no response");
        return DM_ERR_TEMPORARY;
    }
    return DM_OK;
}

/* A fresh access token (POST /v1/oauth2/token, HTTP Basic client_id:secret,
 * grant_type=client_credentials), cached for its life. */
static dm_status fetch_token(dm_call *call, const conf *c, char **token, dm_message *msg)
{
    static const char form[] = "grant_type=client_credentials";
    dm_http_response resp;
    dm_header hs[3];
    buf cred = {0};
    char *b64, *basic, *url = url_of(call, c, "/v1/oauth2/token");
    char reason[160];
    dm_str tok, type, exp;
    int64_t expires_in = 0;
    dm_status st;

    buf_str(&cred, c->client_id);
    buf_add(&cred, ":", 1);
    buf_str(&cred, c->secret);
    b64 = cred.oom ? NULL : host->base64_encode(call, cred.p, cred.len);
    if (cred.p) {
        memset(cred.p, 0, cred.len);
    }
    free(cred.p);
    basic = b64 ? host->alloc(call, strlen(b64) + 7) : NULL;
    if (!basic || !url) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(basic, strlen(b64) + 7, "Basic %s", b64);
    hs[0] = hdr("Authorization", basic);
    hs[1] = hdr("Content-Type", "application/x-www-form-urlencoded");
    hs[2] = hdr("Accept", "application/json");
    st = http_send(call, c, "POST", url, hs, 3, form, sizeof(form) - 1, &resp, msg);
    memset(b64, 0, strlen(b64));
    memset(basic, 0, strlen(basic));
    if (st != DM_OK) {
        return st;
    }
    if (resp.status == 429 || resp.status >= 500) {
        dm_msg_set(msg, "PayPal's token endpoint answered HTTP %d", resp.status);
        return DM_ERR_TEMPORARY;
    }
    if (resp.status != 200) {
        paypal_reason(call, resp.body, reason, sizeof(reason));
        dm_msg_set(msg,
                   "PayPal refused the client credentials (HTTP %d%s%s): check client_id, "
                   "client_secret and api_base",
                   resp.status, reason[0] ? ", " : "", reason);
        return DM_ERR_PERMANENT;
    }
    tok = field(call, resp.body, "access_token");
    type = field(call, resp.body, "token_type");
    exp = field(call, resp.body, "expires_in");
    if (!tok.ptr || tok.len == 0 || tok.len > BEARER_MAX || dm_has_ctl(tok.ptr, tok.len) ||
        (type.ptr && strncasecmp(type.ptr, "Bearer", type.len) != 0) ||
        (exp.ptr && !parse_int64(exp.ptr, exp.len, &expires_in))) {
        dm_msg_set(msg, "PayPal's token endpoint answered something that is not a token");
        return DM_ERR_TEMPORARY;
    }
    *token = dup_call(call, tok.ptr, tok.len);
    if (!*token) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    cache_put(c, *token, expires_in);
    return DM_OK;
}

/* One call of PayPal's REST API with a Bearer token: the cached one, else a
 * fresh one; on 401 the token is dropped and the call made once more with a
 * fresh one. DM_OK with any status but 401, 429 and 5xx (those are
 * DM_ERR_TEMPORARY; a 401 twice is DM_ERR_PERMANENT). */
static dm_status api(dm_call *call, const conf *c, const char *method, const char *path,
                     const char *body, const char *request_id, dm_http_response *resp,
                     dm_message *msg)
{
    char *token = cache_get(call, c), *bearer, *url = url_of(call, c, path);
    dm_header hs[5];
    size_t nh;
    dm_status st;

    if (!url) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!token) {
            st = fetch_token(call, c, &token, msg);
            if (st != DM_OK) {
                return st;
            }
        }
        bearer = host->alloc(call, strlen(token) + 8);
        if (!bearer) {
            dm_msg_set(msg, "out of memory");
            return DM_ERR_INTERNAL;
        }
        snprintf(bearer, strlen(token) + 8, "Bearer %s", token);
        nh = 0;
        hs[nh++] = hdr("Authorization", bearer);
        hs[nh++] = hdr("Accept", "application/json");
        if (body) {
            hs[nh++] = hdr("Content-Type", "application/json");
            hs[nh++] = hdr("Prefer", "return=representation");
        }
        if (request_id) {
            hs[nh++] = hdr("PayPal-Request-Id", request_id);
        }
        st = http_send(call, c, method, url, hs, nh, body, body ? strlen(body) : 0, resp, msg);
        if (st != DM_OK) {
            return st;
        }
        if (resp->status != 401) {
            break;
        }
        cache_drop(c, token);
        token = NULL;
    }
    if (resp->status == 401) {
        dm_msg_set(msg, "PayPal refused a fresh access token on %s %s (HTTP 401)", method, path);
        return DM_ERR_PERMANENT;
    }
    if (resp->status == 429 || resp->status >= 500) {
        char reason[160];
        paypal_reason(call, resp->body, reason, sizeof(reason));
        dm_msg_set(msg, "PayPal answered HTTP %d on %s %s%s%s", resp->status, method, path,
                   reason[0] ? ": " : "", reason);
        return DM_ERR_TEMPORARY;
    }
    return DM_OK;
}

/* ---- orders and captures ---- */

/* What PayPal says of one order and its (first) capture. */
typedef struct order_info {
    dm_str order_ref;  /* PayPal's order id */
    dm_str status;     /* the order's */
    dm_str custom_id;  /* our order id */
    dm_str capture_id; /* empty: no capture yet */
    dm_str cap_status; /* COMPLETED, PENDING, DECLINED, … */
    int64_t amount;    /* the capture's, else the purchase unit's */
    dm_str currency;
    int amount_ok;      /* amount and currency read */
    int currency_known; /* one of ours */
} order_info;

static void read_order(dm_call *call, dm_str json, order_info *o)
{
    memset(o, 0, sizeof(*o));
    o->order_ref = field(call, json, "id");
    o->status = field(call, json, "status");
    o->custom_id = field(call, json, "purchase_units.0.custom_id");
    o->capture_id = field(call, json, "purchase_units.0.payments.captures.0.id");
    o->cap_status = field(call, json, "purchase_units.0.payments.captures.0.status");
    if (!o->custom_id.ptr) {
        o->custom_id = field(call, json, "purchase_units.0.payments.captures.0.custom_id");
    }
    if (o->capture_id.ptr) {
        o->amount_ok = money_at(call, json, "purchase_units.0.payments.captures.0.amount",
                                &o->amount, &o->currency, &o->currency_known);
    } else {
        o->amount_ok = money_at(call, json, "purchase_units.0.amount", &o->amount, &o->currency,
                                &o->currency_known);
    }
}

static dm_status get_order(dm_call *call, const conf *c, dm_str ref, order_info *o, dm_message *msg)
{
    dm_http_response resp;
    char path[128];
    char reason[160];
    dm_status st;

    snprintf(path, sizeof(path), "/v2/checkout/orders/%.*s", (int)ref.len, ref.ptr);
    st = api(call, c, "GET", path, NULL, NULL, &resp, msg);
    if (st != DM_OK) {
        return st;
    }
    if (resp.status != 200) {
        paypal_reason(call, resp.body, reason, sizeof(reason));
        dm_msg_set(msg, "PayPal answered HTTP %d for order %.*s%s%s", resp.status, (int)ref.len,
                   ref.ptr, reason[0] ? ": " : "", reason);
        return DM_ERR_PERMANENT;
    }
    read_order(call, resp.body, o);
    if (o->order_ref.ptr && ref.ptr && o->order_ref.len == ref.len &&
        memcmp(o->order_ref.ptr, ref.ptr, ref.len) == 0) {
        return DM_OK;
    }
    dm_msg_set(msg, "PayPal answered an order that is not %.*s", (int)ref.len, ref.ptr);
    return DM_ERR_TEMPORARY;
}

/* Captures an approved order (POST …/capture, PayPal-Request-Id
 * "dm-capture-<order>", so the return page and the approval webhook make
 * one capture). An order captured already (422 ORDER_ALREADY_CAPTURED, as
 * after a capture under another request id) is read instead. */
static dm_status capture_order(dm_call *call, const conf *c, dm_str ref, order_info *o,
                               dm_message *msg)
{
    dm_http_response resp;
    char path[128], rid[96], reason[160];
    dm_str issue;
    dm_status st;

    if (!is_paypal_id(ref)) {
        dm_msg_set(msg, "the PayPal order id is malformed");
        return DM_ERR_INVALID;
    }
    snprintf(path, sizeof(path), "/v2/checkout/orders/%.*s/capture", (int)ref.len, ref.ptr);
    snprintf(rid, sizeof(rid), "dm-capture-%.*s", (int)ref.len, ref.ptr);
    st = api(call, c, "POST", path, "{}", rid, &resp, msg);
    if (st != DM_OK) {
        return st;
    }
    if (resp.status == 200 || resp.status == 201) {
        read_order(call, resp.body, o);
        if (!o->order_ref.ptr) {
            o->order_ref = ref;
        }
        return DM_OK;
    }
    issue = field(call, resp.body, "details.0.issue");
    if (resp.status == 422 && dm_str_eq(issue, "ORDER_ALREADY_CAPTURED")) {
        return get_order(call, c, ref, o, msg);
    }
    paypal_reason(call, resp.body, reason, sizeof(reason));
    dm_msg_set(msg, "PayPal did not capture order %.*s (HTTP %d%s%s)", (int)ref.len, ref.ptr,
               resp.status, reason[0] ? ", " : "", reason);
    return DM_ERR_PERMANENT;
}

/* The capture named by a refund's or dispute's capture id: our order id
 * and PayPal's order id (GET /v2/payments/captures/{id}). */
static dm_status get_capture(dm_call *call, const conf *c, dm_str capture_id, dm_str *custom_id,
                             dm_str *order_ref, dm_message *msg)
{
    dm_http_response resp;
    char path[128], reason[160];
    dm_status st;

    if (!is_paypal_id(capture_id)) {
        dm_msg_set(msg, "the event names no well-formed capture id");
        return DM_ERR_INVALID;
    }
    snprintf(path, sizeof(path), "/v2/payments/captures/%.*s", (int)capture_id.len, capture_id.ptr);
    st = api(call, c, "GET", path, NULL, NULL, &resp, msg);
    if (st != DM_OK) {
        return st;
    }
    if (resp.status != 200) {
        paypal_reason(call, resp.body, reason, sizeof(reason));
        dm_msg_set(msg, "PayPal answered HTTP %d for capture %.*s%s%s", resp.status,
                   (int)capture_id.len, capture_id.ptr, reason[0] ? ": " : "", reason);
        return resp.status == 404 ? DM_ERR_PERMANENT : DM_ERR_TEMPORARY;
    }
    *custom_id = field(call, resp.body, "custom_id");
    *order_ref = field(call, resp.body, "supplementary_data.related_ids.order_id");
    return DM_OK;
}

/* ---- events ---- */

static dm_str fmt_id(dm_call *call, const char *prefix, dm_str id, const char *suffix)
{
    size_t n = strlen(prefix) + id.len + strlen(suffix) + 1;
    char *s = host->alloc(call, n);
    dm_str out = {NULL, 0};

    if (s) {
        snprintf(s, n, "%s%.*s%s", prefix, (int)id.len, id.ptr, suffix);
        out.ptr = s;
        out.len = strlen(s);
    }
    return out;
}

/* Our order id as the event carries it: custom_id when it is one of ours. */
static dm_str our_order(dm_str custom_id)
{
    dm_str none = {NULL, 0};
    return is_order_id(custom_id) ? custom_id : none;
}

/* The event for what an order's capture says. DM_ERR_INVALID when there is
 * nothing to say (no capture, or an unreadable one). */
static dm_status capture_event(dm_call *call, const order_info *o, dm_payment_event *ev,
                               dm_message *msg)
{
    ev->order_id = our_order(o->custom_id);
    ev->provider_ref = is_paypal_id(o->order_ref) ? o->order_ref : (dm_str){NULL, 0};
    if (!is_paypal_id(o->capture_id)) {
        dm_msg_set(msg, "PayPal's answer names no capture");
        return DM_ERR_INVALID;
    }
    ev->payment_id = o->capture_id;
    if (dm_str_eq(o->cap_status, "COMPLETED") || dm_str_eq(o->cap_status, "PARTIALLY_REFUNDED") ||
        dm_str_eq(o->cap_status, "REFUNDED")) {
        /* (a refunded capture was paid first: its refunds are events of
         * their own) */
        ev->event_id = fmt_id(call, "CAPTURE-", o->capture_id, "-COMPLETED");
        ev->status = DM_PAY_PAID;
    } else if (dm_str_eq(o->cap_status, "PENDING")) {
        ev->event_id = fmt_id(call, "CAPTURE-", o->capture_id, "-PENDING");
        ev->status = DM_PAY_PENDING;
    } else if (dm_str_eq(o->cap_status, "DECLINED") || dm_str_eq(o->cap_status, "FAILED")) {
        ev->event_id = fmt_id(call, "CAPTURE-", o->capture_id, "-DECLINED");
        ev->status = DM_PAY_FAILED;
    } else {
        dm_msg_set(msg, "PayPal's capture has the status %.*s", (int)o->cap_status.len,
                   o->cap_status.ptr ? o->cap_status.ptr : "");
        return DM_ERR_INVALID;
    }
    if (!o->amount_ok) {
        dm_msg_set(msg, "PayPal's capture has no readable amount");
        return DM_ERR_INVALID;
    }
    ev->amount_micros = o->amount < 0 ? -o->amount : o->amount;
    ev->currency = o->currency;
    if (ev->status == DM_PAY_PAID && !o->currency_known) {
        ev->status = DM_PAY_NEEDS_REVIEW;
        ev->review_reason = DM_REVIEW_UNKNOWN_CURRENCY;
        ev->detail = mkstr("PayPal captured a currency this plugin does not know");
    }
    return ev->event_id.ptr ? DM_OK : DM_ERR_INTERNAL;
}

/* ---- webhook verification ---- */

/* n decimal digits at p as a number; 0 when one is not a digit. */
static int digits(const char *p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 1;
}

/* RFC 3339 ("2016-09-21T22:00:46Z", fractions and offsets allowed) as Unix
 * time; 0 when malformed. */
static int parse_rfc3339(dm_str s, int64_t *out)
{
    char t[40];
    struct tm tm;
    int y, mo, d, h, mi, sec, oh = 0, om = 0;
    const char *p;
    int64_t v;

    if (!s.ptr || s.len < 20 || s.len >= sizeof(t)) {
        return 0;
    }
    memcpy(t, s.ptr, s.len);
    t[s.len] = '\0';
    if (!digits(t, 4, &y) || t[4] != '-' || !digits(t + 5, 2, &mo) || t[7] != '-' ||
        !digits(t + 8, 2, &d) || (t[10] != 'T' && t[10] != 't') || !digits(t + 11, 2, &h) ||
        t[13] != ':' || !digits(t + 14, 2, &mi) || t[16] != ':' || !digits(t + 17, 2, &sec)) {
        return 0;
    }
    p = t + 19;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9') {
            return 0;
        }
        while (*p >= '0' && *p <= '9') {
            p++;
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        if (strlen(p) != 6 || !digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om)) {
            return 0;
        }
        p += 6;
        oh *= sign;
        om *= sign;
    } else {
        return 0;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) {
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    v = (int64_t)timegm(&tm);
    *out = v - (int64_t)oh * 3600 - (int64_t)om * 60;
    return 1;
}

static dm_str header_value(const dm_header *hs, size_t n, const char *name)
{
    const dm_header *h = dm_header_find(hs, n, name);
    dm_str none = {NULL, 0};

    return h && h->value.ptr && h->value.len > 0 && !dm_has_ctl(h->value.ptr, h->value.len)
               ? h->value
               : none;
}

/* PayPal's postback (PROVIDERS.md §2, option A): POST
 * /v1/notifications/verify-webhook-signature with the transmission
 * headers, our webhook id and the event spliced in as received. */
static dm_status verify_paypal(dm_call *call, const conf *c, dm_str body, const dm_header *hs,
                               size_t n, dm_message *msg)
{
    static const char *const names[] = {"PAYPAL-AUTH-ALGO", "PAYPAL-CERT-URL",
                                        "PAYPAL-TRANSMISSION-ID", "PAYPAL-TRANSMISSION-SIG",
                                        "PAYPAL-TRANSMISSION-TIME"};
    static const char *const keys[] = {"auth_algo", "cert_url", "transmission_id",
                                       "transmission_sig", "transmission_time"};
    dm_str v[5];
    char *q;
    int64_t when = 0, now = (int64_t)time(NULL);
    dm_http_response resp;
    dm_str verdict;
    buf b = {0};
    char *json;
    dm_status st;

    for (size_t i = 0; i < 5; i++) {
        v[i] = header_value(hs, n, names[i]);
        if (!v[i].ptr || v[i].len > URL_MAX) {
            dm_msg_set(msg, "no %s header", names[i]);
            return DM_ERR_INVALID;
        }
    }
    if (!parse_rfc3339(v[4], &when)) {
        dm_msg_set(msg, "PAYPAL-TRANSMISSION-TIME is not an RFC 3339 time");
        return DM_ERR_INVALID;
    }
    if (when < now - c->max_age_s) {
        dm_msg_set(msg, "the webhook's PAYPAL-TRANSMISSION-TIME is more than %lld s old",
                   (long long)c->max_age_s);
        return DM_ERR_INVALID;
    }
    if (when > now + FUTURE_SKEW_S) {
        dm_msg_set(msg, "the webhook's PAYPAL-TRANSMISSION-TIME is more than %d s in the future",
                   FUTURE_SKEW_S);
        return DM_ERR_INVALID;
    }
    /* The body must be one JSON object (spliced verbatim below). */
    {
        size_t i = 0;
        while (i < body.len && (body.ptr[i] == ' ' || body.ptr[i] == '\t' || body.ptr[i] == '\r' ||
                                body.ptr[i] == '\n')) {
            i++;
        }
        if (i == body.len || body.ptr[i] != '{' || !field(call, body, "id").ptr) {
            dm_msg_set(msg, "the webhook body is not a PayPal event (a JSON object with an id)");
            return DM_ERR_INVALID;
        }
    }
    buf_str(&b, "{");
    for (size_t i = 0; i < 5; i++) {
        q = host->json_quote(call, v[i]);
        if (!q) {
            free(b.p);
            dm_msg_set(msg, "the %s header is not UTF-8", names[i]);
            return DM_ERR_INVALID;
        }
        buf_fmt(&b, "\"%s\":", keys[i]);
        buf_str(&b, q);
        buf_str(&b, ",");
    }
    q = host->json_quote(call, mkstr(c->webhook_id));
    buf_str(&b, "\"webhook_id\":");
    buf_str(&b, q ? q : "\"\"");
    buf_str(&b, ",\"webhook_event\":");
    buf_add(&b, body.ptr, body.len);
    buf_str(&b, "}");
    json = to_call(call, &b);
    free(b.p);
    if (!json) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    st = api(call, c, "POST", "/v1/notifications/verify-webhook-signature", json, NULL, &resp, msg);
    if (st == DM_ERR_PERMANENT) {
        /* our credentials, not the sender's fault: let PayPal retry */
        return DM_ERR_TEMPORARY;
    }
    if (st != DM_OK) {
        return st;
    }
    if (resp.status != 200) {
        char reason[160];
        paypal_reason(call, resp.body, reason, sizeof(reason));
        dm_msg_set(msg, "PayPal's verify-webhook-signature answered HTTP %d%s%s", resp.status,
                   reason[0] ? ": " : "", reason);
        return resp.status == 400 || resp.status == 422 ? DM_ERR_INVALID : DM_ERR_TEMPORARY;
    }
    verdict = field(call, resp.body, "verification_status");
    if (dm_str_eq(verdict, "SUCCESS")) {
        return DM_OK;
    }
    if (dm_str_eq(verdict, "FAILURE")) {
        dm_msg_set(msg, "PayPal says this webhook's signature is not valid (verification_status "
                        "FAILURE): not sent by PayPal for webhook_id, or altered");
        return DM_ERR_INVALID;
    }
    dm_msg_set(msg, "PayPal's verify-webhook-signature answered no verification_status");
    return DM_ERR_TEMPORARY;
}

/* The key of the return page's own events: HMAC-SHA-256(client_secret,
 * RETURN_KEY_CONTEXT webhook_id). */
static void return_key(const conf *c, unsigned char key[32])
{
    char ctx[sizeof(RETURN_KEY_CONTEXT) + ID_MAX + 1];
    int n = snprintf(ctx, sizeof(ctx), "%s%s", RETURN_KEY_CONTEXT, c->webhook_id);

    host->hmac_sha256(c->secret, strlen(c->secret), ctx, (size_t)n, key);
}

/* "t=<unix>,v1=<hex HMAC-SHA-256(return key, "<t>.<body>")>" */
static char *return_signature(dm_call *call, const conf *c, int64_t t, dm_str body)
{
    unsigned char key[32], mac[32];
    char tb[24];
    size_t tl = (size_t)snprintf(tb, sizeof(tb), "%lld.", (long long)t);
    char *signed_text = malloc(tl + body.len + 1), *hex, *out;

    if (!signed_text) {
        return NULL;
    }
    memcpy(signed_text, tb, tl);
    if (body.len) {
        memcpy(signed_text + tl, body.ptr, body.len);
    }
    return_key(c, key);
    host->hmac_sha256(key, sizeof(key), signed_text, tl + body.len, mac);
    free(signed_text);
    memset(key, 0, sizeof(key));
    hex = host->hex_encode(call, mac, sizeof(mac));
    out = hex ? host->alloc(call, strlen(hex) + 32) : NULL;
    if (out) {
        snprintf(out, strlen(hex) + 32, "t=%lld,v1=%s", (long long)t, hex);
    }
    return out;
}

static dm_status verify_return(dm_call *call, const conf *c, dm_str body, dm_str sig,
                               dm_message *msg)
{
    const char *comma;
    int64_t t = 0, now = (int64_t)time(NULL);
    char *expected;

    comma = memchr(sig.ptr, ',', sig.len);
    if (sig.len < 3 || strncmp(sig.ptr, "t=", 2) != 0 || !comma ||
        !parse_int64(sig.ptr + 2, (size_t)(comma - sig.ptr - 2), &t) || t <= 0) {
        dm_msg_set(msg, RETURN_HEADER " is malformed");
        return DM_ERR_INVALID;
    }
    expected = return_signature(call, c, t, body);
    if (!expected) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    if (strlen(expected) != sig.len || !host->equal_ct(expected, sig.ptr, sig.len)) {
        dm_msg_set(msg, "the " RETURN_HEADER " signature does not match the body");
        return DM_ERR_INVALID;
    }
    if (t < now - RETURN_TOLERANCE_S || t > now + RETURN_TOLERANCE_S) {
        dm_msg_set(msg, "the " RETURN_HEADER " timestamp is more than %d s away",
                   RETURN_TOLERANCE_S);
        return DM_ERR_INVALID;
    }
    return DM_OK;
}

/* ---- webhook events ---- */

/* The capture id at the end of a refund's "up" link (…/captures/<id>). */
static dm_str up_capture(dm_call *call, dm_str body)
{
    dm_str none = {NULL, 0};

    for (int i = 0; i < 8; i++) {
        char p[64];
        dm_str rel, href;
        const char *slash;
        snprintf(p, sizeof(p), "resource.links.%d.rel", i);
        rel = field(call, body, p);
        if (!rel.ptr) {
            break;
        }
        if (!dm_str_eq(rel, "up")) {
            continue;
        }
        snprintf(p, sizeof(p), "resource.links.%d.href", i);
        href = field(call, body, p);
        if (!href.ptr) {
            break;
        }
        for (slash = href.ptr + href.len; slash > href.ptr && slash[-1] != '/'; slash--) {
        }
        if (slash - href.ptr >= 10 && memcmp(slash - 10, "/captures/", 10) == 0) {
            dm_str id = {slash, (size_t)(href.ptr + href.len - slash)};
            return is_paypal_id(id) ? id : none;
        }
    }
    return none;
}

/* Fills the order and PayPal order of ev from a capture id. */
static dm_status order_of_capture(dm_call *call, const conf *c, dm_str capture_id,
                                  dm_payment_event *ev, dm_message *msg)
{
    dm_str custom = {NULL, 0}, ref = {NULL, 0};
    dm_status st = get_capture(call, c, capture_id, &custom, &ref, msg);

    if (st != DM_OK) {
        return st;
    }
    ev->payment_id = capture_id;
    ev->order_id = our_order(custom);
    ev->provider_ref = is_paypal_id(ref) ? ref : (dm_str){NULL, 0};
    return DM_OK;
}

static dm_status on_refund(dm_call *call, const conf *c, dm_str body, int reversed,
                           dm_payment_event *ev, dm_message *msg)
{
    dm_str id = field(call, body, "resource.id");
    dm_str rtype = field(call, body, "resource_type");
    dm_str capture_id;
    int known = 0;
    int64_t amount = 0;
    dm_status st;

    if (!is_paypal_id(id)) {
        dm_msg_set(msg, "the refund event has no resource id");
        return DM_ERR_INVALID;
    }
    if (reversed && dm_str_eq(rtype, "capture")) {
        /* the capture itself was reversed: whatever is left of it */
        capture_id = id;
        ev->event_id = fmt_id(call, "REVERSAL-", id, "");
        ev->amount_micros = 0;
        money_at(call, body, "resource.amount", &amount, &ev->currency, &known);
    } else {
        capture_id = up_capture(call, body);
        if (!capture_id.ptr) {
            dm_msg_set(msg, "the refund event links to no capture");
            return DM_ERR_INVALID;
        }
        if (!money_at(call, body, "resource.amount", &amount, &ev->currency, &known) ||
            amount == 0) {
            dm_msg_set(msg, "the refund event has no readable amount");
            return DM_ERR_INVALID;
        }
        ev->amount_micros = amount < 0 ? -amount : amount;
        ev->event_id = fmt_id(call, "REFUND-", id, "");
    }
    st = order_of_capture(call, c, capture_id, ev, msg);
    if (st != DM_OK) {
        return st;
    }
    ev->status = DM_PAY_REFUNDED;
    return DM_OK;
}

static dm_status on_dispute(dm_call *call, const conf *c, dm_str body, int resolved,
                            dm_payment_event *ev, dm_message *msg)
{
    dm_str id = field(call, body, "resource.dispute_id");
    dm_str capture_id = field(call, body, "resource.disputed_transactions.0.seller_transaction_id");
    dm_str outcome = field(call, body, "resource.dispute_outcome.outcome_code");
    int known = 0;
    int64_t amount = 0;
    dm_status st;

    if (!is_paypal_id(id)) {
        dm_msg_set(msg, "the dispute event has no dispute_id");
        return DM_ERR_INVALID;
    }
    if (!is_paypal_id(capture_id)) {
        dm_msg_set(msg, "the dispute event names no seller_transaction_id");
        return DM_ERR_INVALID;
    }
    money_at(call, body, "resource.dispute_amount", &amount, &ev->currency, &known);
    if (!resolved) {
        ev->status = DM_PAY_DISPUTE_OPENED;
        ev->event_id = fmt_id(call, "DISPUTE-", id, "-CREATED");
    } else {
        ev->event_id = fmt_id(call, "DISPUTE-", id, "-RESOLVED");
        if (dm_str_eq(outcome, "RESOLVED_SELLER_FAVOUR") ||
            dm_str_eq(outcome, "CANCELED_BY_BUYER") || dm_str_eq(outcome, "DENIED")) {
            ev->status = DM_PAY_DISPUTE_WON;
        } else if (dm_str_eq(outcome, "RESOLVED_BUYER_FAVOUR") ||
                   dm_str_eq(outcome, "RESOLVED_WITH_PAYOUT") || dm_str_eq(outcome, "ACCEPTED")) {
            int64_t refunded = 0;
            dm_str cur2 = {NULL, 0};
            ev->status = DM_PAY_DISPUTE_LOST;
            if (money_at(call, body, "resource.dispute_outcome.amount_refunded", &refunded, &cur2,
                         &known) &&
                refunded > 0) {
                amount = refunded;
                ev->currency = cur2;
            }
        } else {
            ev->status = DM_PAY_NEEDS_REVIEW;
            ev->review_reason = DM_REVIEW_OTHER;
            ev->detail = mkstr("a PayPal dispute was resolved without a clear outcome");
        }
    }
    ev->amount_micros = amount < 0 ? -amount : amount;
    st = order_of_capture(call, c, capture_id, ev, msg);
    return st;
}

static dm_status paypal_parse_webhook(dm_call *call, dm_str raw_body, const dm_header *headers,
                                      size_t n_headers, dm_payment_event *out, dm_message *msg)
{
    conf c;
    dm_payment_event ev;
    dm_str type, wh_id, ret_sig;
    uint32_t size = out->size;
    order_info o;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    ret_sig = header_value(headers, n_headers, RETURN_HEADER);
    if (dm_header_find(headers, n_headers, "PAYPAL-TRANSMISSION-SIG") || !ret_sig.ptr) {
        st = verify_paypal(call, &c, raw_body, headers, n_headers, msg);
    } else {
        st = verify_return(call, &c, raw_body, ret_sig, msg);
    }
    if (st != DM_OK) {
        return st;
    }

    memset(&ev, 0, sizeof(ev));
    memset(&o, 0, sizeof(o));
    wh_id = field(call, raw_body, "id");
    type = field(call, raw_body, "event_type");
    if (!wh_id.ptr || wh_id.len == 0 || wh_id.len > 200 || dm_has_ctl(wh_id.ptr, wh_id.len) ||
        !type.ptr) {
        dm_msg_set(msg, "the event has no id or event_type");
        return DM_ERR_INVALID;
    }
    ev.event_id = wh_id;
    ev.status = DM_PAY_IGNORED;

    if (dm_str_eq(type, "CHECKOUT.ORDER.APPROVED")) {
        dm_str ref = field(call, raw_body, "resource.id");
        dm_message why;
        memset(&why, 0, sizeof(why));
        st = capture_order(call, &c, ref, &o, &why);
        if (st == DM_OK) {
            st = capture_event(call, &o, &ev, msg);
        } else if (st == DM_ERR_PERMANENT || st == DM_ERR_INVALID) {
            /* not capturable (declined, voided): recorded, the order stays
             * as it is; the janitor asks again */
            ev.event_id = wh_id;
            ev.status = DM_PAY_IGNORED;
            ev.order_id = our_order(field(call, raw_body, "resource.purchase_units.0.custom_id"));
            ev.provider_ref = is_paypal_id(ref) ? ref : (dm_str){NULL, 0};
            ev.detail = mkstr("the approved order could not be captured");
            host->log(call, DM_LOG_NOTICE, why.text);
            st = DM_OK;
        } else {
            dm_msg_set(msg, "%s", why.text);
        }
    } else if (dm_str_eq(type, "PAYMENT.CAPTURE.COMPLETED") ||
               dm_str_eq(type, "PAYMENT.CAPTURE.PENDING") ||
               dm_str_eq(type, "PAYMENT.CAPTURE.DENIED") ||
               dm_str_eq(type, "PAYMENT.CAPTURE.DECLINED")) {
        o.capture_id = field(call, raw_body, "resource.id");
        o.cap_status = field(call, raw_body, "resource.status");
        o.custom_id = field(call, raw_body, "resource.custom_id");
        o.order_ref = field(call, raw_body, "resource.supplementary_data.related_ids.order_id");
        o.amount_ok =
            money_at(call, raw_body, "resource.amount", &o.amount, &o.currency, &o.currency_known);
        if (dm_str_eq(type, "PAYMENT.CAPTURE.DENIED") ||
            dm_str_eq(type, "PAYMENT.CAPTURE.DECLINED")) {
            o.cap_status = mkstr("DECLINED");
        } else if (dm_str_eq(type, "PAYMENT.CAPTURE.PENDING")) {
            o.cap_status = mkstr("PENDING");
        } else {
            o.cap_status = mkstr("COMPLETED");
        }
        if (!is_order_id(o.custom_id) && is_paypal_id(o.order_ref)) {
            /* a capture without custom_id: its order says whose it is */
            order_info full;
            st = get_order(call, &c, o.order_ref, &full, msg);
            if (st != DM_OK) {
                return st;
            }
            o.custom_id = full.custom_id;
        }
        st = capture_event(call, &o, &ev, msg);
    } else if (dm_str_eq(type, "PAYMENT.CAPTURE.REFUNDED")) {
        st = on_refund(call, &c, raw_body, 0, &ev, msg);
    } else if (dm_str_eq(type, "PAYMENT.CAPTURE.REVERSED")) {
        st = on_refund(call, &c, raw_body, 1, &ev, msg);
    } else if (dm_str_eq(type, "CUSTOMER.DISPUTE.CREATED")) {
        st = on_dispute(call, &c, raw_body, 0, &ev, msg);
    } else if (dm_str_eq(type, "CUSTOMER.DISPUTE.RESOLVED")) {
        st = on_dispute(call, &c, raw_body, 1, &ev, msg);
    } else if (dm_str_eq(type, "CHECKOUT.PAYMENT-APPROVAL.REVERSED")) {
        dm_str ref = field(call, raw_body, "resource.order_id");
        ev.status = DM_PAY_EXPIRED;
        ev.provider_ref = is_paypal_id(ref) ? ref : (dm_str){NULL, 0};
        ev.order_id = our_order(field(call, raw_body, "resource.purchase_units.0.custom_id"));
    }
    /* anything else: verified, recorded, not acted on (DM_PAY_IGNORED) */
    if (st != DM_OK) {
        return st;
    }
    if (!ev.event_id.ptr) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    /* Write only what the host's structure has room for (an older host has
     * no payment_id, review_reason or detail). */
    memcpy(out, &ev, size < sizeof(ev) ? size : sizeof(ev));
    out->size = size;
    return DM_OK;
}

/* ---- create_checkout ---- */

/* PayPal-Request-Id of an order: the order and a digest of the site, the
 * amount and the currency, so a repeated create of one order at one site
 * makes one PayPal order, and two sites never share one. */
static char *order_request_id(dm_call *call, const conf *c, dm_str order, const char *value,
                              dm_str currency)
{
    buf b = {0};
    unsigned char d[32];
    char *hex, *out;

    buf_str(&b, c->public_url);
    buf_add(&b, "|", 1);
    buf_add(&b, order.ptr, order.len);
    buf_add(&b, "|", 1);
    buf_str(&b, value);
    buf_add(&b, "|", 1);
    buf_add(&b, currency.ptr, currency.len);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    host->sha256(b.p, b.len, d);
    free(b.p);
    hex = host->hex_encode(call, d, 12);
    out = hex ? host->alloc(call, order.len + 40) : NULL;
    if (out) {
        snprintf(out, order.len + 40, "dm-order-%.*s-%s", (int)order.len, order.ptr, hex);
    }
    return out;
}

static dm_status paypal_create_checkout(dm_call *call, const dm_payment_checkout *in_raw,
                                        dm_payment_checkout_result *out, dm_message *msg)
{
    dm_payment_checkout in;
    conf c;
    const currency_info *ci;
    char value[48], reason[160];
    char *q_return, *q_cancel, *q_brand = NULL, *body, *rid, *ret_url, *cancel_url;
    dm_http_response resp;
    dm_str id, status, link = {NULL, 0};
    size_t ulen;
    buf b = {0};
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
    if (!is_order_id(in.order_id)) {
        dm_msg_set(msg, "the order id must be a decimal number");
        return DM_ERR_INVALID;
    }
    ci = currency_of(in.currency);
    if (!ci || !ci->paypal) {
        dm_msg_set(msg, "PayPal does not take payments in %.*s",
                   (int)(in.currency.len > 8 ? 8 : in.currency.len),
                   in.currency.ptr ? in.currency.ptr : "");
        return DM_ERR_INVALID;
    }
    if (in.amount_micros <= 0 ||
        !micros_to_decimal(in.amount_micros, ci->decimals, value, sizeof(value))) {
        dm_msg_set(msg,
                   "the amount %lld micro-%s is not a positive whole number of %s's minor "
                   "units (%d decimals at PayPal)",
                   (long long)in.amount_micros, ci->code, ci->code, ci->decimals);
        return DM_ERR_INVALID;
    }

    ulen = strlen(c.public_url) + strlen(c.name) + in.order_id.len + 64;
    ret_url = host->alloc(call, ulen);
    cancel_url = host->alloc(call, ulen);
    if (!ret_url || !cancel_url) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(ret_url, ulen, "%s/api/plugins/%s/return?order=%.*s", c.public_url, c.name,
             (int)in.order_id.len, in.order_id.ptr);
    snprintf(cancel_url, ulen, "%s/orders/%.*s", c.public_url, (int)in.order_id.len,
             in.order_id.ptr);
    q_return = host->json_quote(call, mkstr(ret_url));
    q_cancel = host->json_quote(call, mkstr(cancel_url));
    if (c.brand_name) {
        q_brand = host->json_quote(call, mkstr(c.brand_name));
    }
    if (!q_return || !q_cancel || (c.brand_name && !q_brand)) {
        dm_msg_set(msg, "the public URL or brand_name is not UTF-8");
        return DM_ERR_CONFIG;
    }
    buf_str(&b, "{\"intent\":\"CAPTURE\",\"purchase_units\":[{");
    buf_fmt(&b, "\"reference_id\":\"%.*s\",\"custom_id\":\"%.*s\",", (int)in.order_id.len,
            in.order_id.ptr, (int)in.order_id.len, in.order_id.ptr);
    buf_fmt(&b, "\"description\":\"Order %.*s\",", (int)in.order_id.len, in.order_id.ptr);
    buf_fmt(&b, "\"amount\":{\"currency_code\":\"%s\",\"value\":\"%s\"}}],", ci->code, value);
    buf_str(&b, "\"payment_source\":{\"paypal\":{\"experience_context\":{");
    buf_str(&b, "\"return_url\":");
    buf_str(&b, q_return);
    buf_str(&b, ",\"cancel_url\":");
    buf_str(&b, q_cancel);
    buf_str(&b, ",\"user_action\":\"PAY_NOW\",\"shipping_preference\":\"NO_SHIPPING\"");
    if (q_brand) {
        buf_str(&b, ",\"brand_name\":");
        buf_str(&b, q_brand);
    }
    buf_str(&b, "}}}}");
    body = to_call(call, &b);
    free(b.p);
    rid = order_request_id(call, &c, in.order_id, value, in.currency);
    if (!body || !rid) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    st = api(call, &c, "POST", "/v2/checkout/orders", body, rid, &resp, msg);
    if (st != DM_OK) {
        return st;
    }
    if (resp.status != 200 && resp.status != 201) {
        paypal_reason(call, resp.body, reason, sizeof(reason));
        dm_msg_set(msg, "PayPal did not create the order (HTTP %d%s%s)", resp.status,
                   reason[0] ? ", " : "", reason);
        return resp.status == 408 ? DM_ERR_TEMPORARY : DM_ERR_PERMANENT;
    }
    id = field(call, resp.body, "id");
    status = field(call, resp.body, "status");
    /* The buyer's way to PayPal: "payer-action" when payment_source is
     * given, "approve" otherwise (PROVIDERS.md §2). */
    for (int i = 0; i < 8 && !link.ptr; i++) {
        char p[32];
        dm_str rel;
        snprintf(p, sizeof(p), "links.%d.rel", i);
        rel = field(call, resp.body, p);
        if (!rel.ptr) {
            break;
        }
        if (dm_str_eq(rel, "payer-action") || dm_str_eq(rel, "approve")) {
            snprintf(p, sizeof(p), "links.%d.href", i);
            link = field(call, resp.body, p);
        }
    }
    if (!is_paypal_id(id) || !link.ptr || !is_http_url(link.ptr, link.len) ||
        !(dm_str_eq(status, "CREATED") || dm_str_eq(status, "PAYER_ACTION_REQUIRED"))) {
        dm_msg_set(msg, "PayPal answered an order without an id, a payer-action link or the "
                        "status CREATED");
        return DM_ERR_TEMPORARY;
    }
    out->redirect_url = link;
    out->provider_ref = id;
    return DM_OK;
}

/* ---- query ---- */

static dm_status paypal_query(dm_call *call, dm_str provider_ref, dm_payment_event *out,
                              dm_message *msg)
{
    conf c;
    order_info o;
    dm_payment_event ev;
    uint32_t size = out->size;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    if (!is_paypal_id(provider_ref)) {
        dm_msg_set(msg, "the PayPal order id is malformed");
        return DM_ERR_INVALID;
    }
    st = get_order(call, &c, provider_ref, &o, msg);
    if (st != DM_OK) {
        return st;
    }
    if (dm_str_eq(o.status, "APPROVED")) {
        /* approved and never captured (return page and webhook lost) */
        st = capture_order(call, &c, provider_ref, &o, msg);
        if (st != DM_OK) {
            return st;
        }
    }
    memset(&ev, 0, sizeof(ev));
    if (o.capture_id.ptr) {
        st = capture_event(call, &o, &ev, msg);
        if (st != DM_OK) {
            return st;
        }
    } else {
        ev.order_id = our_order(o.custom_id);
        ev.provider_ref = provider_ref;
        ev.amount_micros = o.amount_ok ? o.amount : 0;
        ev.currency = o.amount_ok ? o.currency : (dm_str){NULL, 0};
        if (dm_str_eq(o.status, "VOIDED")) {
            ev.status = DM_PAY_EXPIRED;
        } else if (dm_str_eq(o.status, "CREATED") || dm_str_eq(o.status, "SAVED") ||
                   dm_str_eq(o.status, "PAYER_ACTION_REQUIRED") ||
                   dm_str_eq(o.status, "APPROVED")) {
            ev.status = DM_PAY_PENDING;
        } else {
            dm_msg_set(msg, "PayPal's order %.*s has the status %.*s and no capture",
                       (int)provider_ref.len, provider_ref.ptr, (int)o.status.len,
                       o.status.ptr ? o.status.ptr : "");
            return DM_ERR_PERMANENT;
        }
    }
    memcpy(out, &ev, size < sizeof(ev) ? size : sizeof(ev));
    out->size = size;
    return DM_OK;
}

/* ---- refunds ---- */

static dm_status do_refund(dm_call *call, const conf *c, dm_str provider_ref, dm_str payment_id,
                           int64_t amount_micros, dm_str currency, const char *request_id,
                           dm_str *refund_id, dm_message *msg)
{
    const currency_info *ci = currency_of(currency);
    char value[48], path[128], reason[160];
    char *body;
    dm_str capture_id = payment_id;
    dm_http_response resp;
    dm_str rid;
    buf b = {0};
    dm_status st;

    if (!ci) {
        dm_msg_set(msg, "a refund needs a currency PayPal takes");
        return DM_ERR_INVALID;
    }
    if (amount_micros < 0 || (amount_micros > 0 && !micros_to_decimal(amount_micros, ci->decimals,
                                                                      value, sizeof(value)))) {
        dm_msg_set(msg, "the refund amount is not a whole number of %s's minor units", ci->code);
        return DM_ERR_INVALID;
    }
    if (!is_paypal_id(capture_id)) {
        order_info o;
        if (!is_paypal_id(provider_ref)) {
            dm_msg_set(msg, "the refund names neither a capture nor a PayPal order");
            return DM_ERR_INVALID;
        }
        st = get_order(call, c, provider_ref, &o, msg);
        if (st != DM_OK) {
            return st;
        }
        if (!is_paypal_id(o.capture_id)) {
            dm_msg_set(msg, "PayPal's order %.*s has no capture to refund", (int)provider_ref.len,
                       provider_ref.ptr);
            return DM_ERR_PERMANENT;
        }
        capture_id = o.capture_id;
    }
    if (amount_micros > 0) {
        buf_fmt(&b, "{\"amount\":{\"value\":\"%s\",\"currency_code\":\"%s\"}}", value, ci->code);
    } else {
        buf_str(&b, "{}"); /* the whole capture */
    }
    body = to_call(call, &b);
    free(b.p);
    if (!body) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(path, sizeof(path), "/v2/payments/captures/%.*s/refund", (int)capture_id.len,
             capture_id.ptr);
    st = api(call, c, "POST", path, body, request_id, &resp, msg);
    if (st != DM_OK) {
        return st;
    }
    if (resp.status != 200 && resp.status != 201) {
        paypal_reason(call, resp.body, reason, sizeof(reason));
        dm_msg_set(msg, "PayPal did not refund capture %.*s (HTTP %d%s%s)", (int)capture_id.len,
                   capture_id.ptr, resp.status, reason[0] ? ", " : "", reason);
        return DM_ERR_PERMANENT;
    }
    rid = field(call, resp.body, "id");
    if (refund_id && is_paypal_id(rid)) {
        *refund_id = rid;
    }
    return DM_OK;
}

static dm_status paypal_refund_ex(dm_call *call, const dm_payment_refund_request *req_raw,
                                  dm_str *refund_id, dm_message *msg)
{
    dm_payment_refund_request req;
    conf c;
    char *key;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    memset(&req, 0, sizeof(req));
    memcpy(&req, req_raw, req_raw->size < sizeof(req) ? req_raw->size : sizeof(req));
    if (!req.idempotency_key.ptr || req.idempotency_key.len == 0 || req.idempotency_key.len > 108 ||
        dm_has_ctl(req.idempotency_key.ptr, req.idempotency_key.len)) {
        dm_msg_set(msg, "a refund needs an idempotency key of 1 to 108 characters");
        return DM_ERR_INVALID;
    }
    key = dup_call(call, req.idempotency_key.ptr, req.idempotency_key.len);
    if (!key) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    return do_refund(call, &c, req.provider_ref, req.payment_id, req.amount_micros, req.currency,
                     key, refund_id, msg);
}

/* The ABI 1.0 refund: no key from the host, so a random one (a retry by
 * the host is a new refund request; refund_ex is preferred when offered). */
static dm_status paypal_refund(dm_call *call, dm_str provider_ref, int64_t amount_micros,
                               dm_str currency, dm_message *msg)
{
    conf c;
    unsigned char rnd[16];
    char *hex, *key;
    dm_str none = {NULL, 0};
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    host->random_bytes(rnd, sizeof(rnd));
    hex = host->hex_encode(call, rnd, sizeof(rnd));
    key = hex ? host->alloc(call, strlen(hex) + 12) : NULL;
    if (!key) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(key, strlen(hex) + 12, "dm-refund-%s", hex);
    return do_refund(call, &c, provider_ref, none, amount_micros, currency, key, NULL, msg);
}

/* ---- the return page ---- */

/* The value of `name` in a raw query string, if it is plain (letters,
 * digits, '-', '_'): PayPal's tokens and our order ids need no decoding. */
static dm_str query_param(dm_str q, const char *name)
{
    size_t nl = strlen(name);
    const char *p = q.ptr, *end = q.ptr + q.len;
    dm_str none = {NULL, 0};

    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
            dm_str v = {p + nl + 1, (size_t)(e - p - nl - 1)};
            return is_paypal_id(v) ? v : none;
        }
        p = amp ? amp + 1 : end;
    }
    return none;
}

static const char PAGE_HEAD[] =
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>PayPal</title>\n<style>body{font-family:system-ui,sans-serif;max-width:30em;"
    "margin:3em auto;padding:0 1em;color:#222}</style>\n</head>\n<body>\n";

static dm_status page(dm_call *call, int status, const char *heading, const char *text,
                      const char *location, dm_plugin_response *resp, dm_message *msg)
{
    buf b = {0};
    char *body;
    dm_header *h = NULL;

    buf_str(&b, PAGE_HEAD);
    buf_str(&b, "<h1>");
    buf_html(&b, heading, strlen(heading));
    buf_str(&b, "</h1>\n<p>");
    buf_html(&b, text, strlen(text));
    buf_str(&b, "</p>\n");
    if (location) {
        buf_str(&b, "<p><a href=\"");
        buf_html(&b, location, strlen(location));
        buf_str(&b, "\">Continue to your order</a></p>\n");
    }
    buf_str(&b, "</body>\n</html>\n");
    body = to_call(call, &b);
    free(b.p);
    if (location) {
        h = host->alloc(call, sizeof(*h));
        if (h) {
            *h = hdr("Location", location);
        }
    }
    if (!body || (location && !h)) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    resp->status = status;
    resp->content_type = mkstr("text/html; charset=utf-8");
    resp->body = mkstr(body);
    resp->headers = h;
    resp->n_headers = h ? 1 : 0;
    return DM_OK;
}

/* Posts the completed capture to the site's own webhook endpoint, signed
 * with the return key: the same path every event takes. DM_OK when the
 * site answered 2xx. */
static dm_status post_return_event(dm_call *call, const conf *c, const order_info *o,
                                   dm_message *msg)
{
    char value[48];
    buf b = {0};
    char *body, *sig, *url;
    const currency_info *ci = currency_of(o->currency);
    dm_header hs[2];
    dm_http_response resp;
    size_t ulen = strlen(c->public_url) + strlen(c->name) + 32;
    dm_status st;

    if (!ci || !micros_to_decimal(o->amount, ci->decimals, value, sizeof(value))) {
        dm_msg_set(msg, "the capture's amount cannot be written back");
        return DM_ERR_INVALID;
    }
    buf_fmt(&b,
            "{\"id\":\"DM-RETURN-%.*s\",\"event_type\":\"PAYMENT.CAPTURE.COMPLETED\","
            "\"resource_type\":\"capture\",\"summary\":\"Captured on the buyer's return\","
            "\"resource\":{\"id\":\"%.*s\",\"status\":\"%.*s\","
            "\"amount\":{\"currency_code\":\"%s\",\"value\":\"%s\"},",
            (int)o->capture_id.len, o->capture_id.ptr, (int)o->capture_id.len, o->capture_id.ptr,
            (int)o->cap_status.len, o->cap_status.ptr, ci->code, value);
    buf_fmt(&b, "\"custom_id\":\"%.*s\",", (int)o->custom_id.len, o->custom_id.ptr);
    buf_fmt(&b, "\"supplementary_data\":{\"related_ids\":{\"order_id\":\"%.*s\"}}}}",
            (int)o->order_ref.len, o->order_ref.ptr);
    body = to_call(call, &b);
    free(b.p);
    url = host->alloc(call, ulen);
    if (!body || !url) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(url, ulen, "%s/api/webhooks/%s", c->public_url, c->name);
    sig = return_signature(call, c, (int64_t)time(NULL), mkstr(body));
    if (!sig) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    hs[0] = hdr("Content-Type", "application/json");
    hs[1] = hdr(RETURN_HEADER, sig);
    st = http_send(call, c, "POST", url, hs, 2, body, strlen(body), &resp, msg);
    if (st != DM_OK) {
        return st;
    }
    if (resp.status < 200 || resp.status > 299) {
        dm_msg_set(msg, "the site's webhook endpoint answered HTTP %d to the return event",
                   resp.status);
        return DM_ERR_TEMPORARY;
    }
    return DM_OK;
}

static dm_status paypal_handle_request(dm_call *call, const dm_plugin_request *req_raw,
                                       dm_plugin_response *resp, dm_message *msg)
{
    dm_plugin_request req;
    conf c;
    dm_str token, order;
    order_info o;
    dm_message why;
    char *location = NULL;
    size_t ulen;
    dm_status st;

    memset(&req, 0, sizeof(req));
    memcpy(&req, req_raw, req_raw->size < sizeof(req) ? req_raw->size : sizeof(req));
    st = read_conf(call, &c, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!dm_str_eq(req.path, "/return")) {
        dm_msg_set(msg, "no such page");
        return DM_ERR_UNSUPPORTED;
    }
    if (!req.method || strcmp(req.method, "GET") != 0) {
        dm_header *h = host->alloc(call, sizeof(*h));
        if (!h) {
            dm_msg_set(msg, "out of memory");
            return DM_ERR_INTERNAL;
        }
        *h = hdr("Allow", "GET");
        resp->status = 405;
        resp->body = mkstr("method not allowed\n");
        resp->headers = h;
        resp->n_headers = 1;
        return DM_OK;
    }
    token = query_param(req.query, "token");
    order = query_param(req.query, "order");
    if (!token.ptr) {
        return page(call, 400, "This link cannot be used",
                    "PayPal's return link has no order token.", NULL, resp, msg);
    }
    memset(&o, 0, sizeof(o));
    memset(&why, 0, sizeof(why));
    st = capture_order(call, &c, token, &o, &why);
    if (st == DM_OK && is_order_id(o.custom_id)) {
        order = o.custom_id; /* PayPal's word over the link's */
    }
    if (!is_order_id(order)) {
        return page(call, st == DM_OK ? 200 : 502, "Payment",
                    st == DM_OK ? "PayPal has your payment." : "PayPal could not be reached.", NULL,
                    resp, msg);
    }
    ulen = strlen(c.public_url) + order.len + 16;
    location = host->alloc(call, ulen);
    if (!location) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(location, ulen, "%s/orders/%.*s", c.public_url, (int)order.len, order.ptr);
    if (st == DM_OK && dm_str_eq(o.cap_status, "COMPLETED")) {
        dm_message post_why;
        memset(&post_why, 0, sizeof(post_why));
        if (post_return_event(call, &c, &o, &post_why) != DM_OK) {
            /* captured all the same: PayPal's webhook or the janitor will
             * tell the site */
            host->log(call, DM_LOG_NOTICE, post_why.text);
        }
    } else if (st != DM_OK) {
        /* the order page shows it pending; the approval webhook or the
         * janitor captures later */
        host->log(call, DM_LOG_NOTICE, why.text);
    }
    return page(call, 303, "Payment", "Taking you back to your order.", location, resp, msg);
}

/* ---- life cycle ---- */

static dm_status paypal_init(const dm_host *h, dm_call *call, dm_message *msg)
{
    conf c;

    host = h;
    return read_conf(call, &c, msg);
}

static dm_status paypal_health(dm_call *call, dm_message *msg)
{
    conf c;
    return read_conf(call, &c, msg);
}

static const char *const required[] = {"client_id", "client_secret", "webhook_id", NULL};

static const dm_payment_ops ops = {
    .size = sizeof(dm_payment_ops),
    .create_checkout = paypal_create_checkout,
    .parse_webhook = paypal_parse_webhook,
    .refund = paypal_refund,
    .query = paypal_query,
    .refund_ex = paypal_refund_ex,
    .display_name = "PayPal",
    .method_kind = "wallet",
    .currencies = PAYPAL_CURRENCIES,
    .checkout_lifetime_s = CHECKOUT_LIFETIME_S,
};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_PAYMENT,
    .name = "payment-paypal",
    .version = PAYPAL_VERSION,
    .required_settings = required,
    .init = paypal_init,
    .fini = NULL,
    .ops = &ops,
    .health = paypal_health,
    .handle_request = paypal_handle_request,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *h)
{
    /* Everything used of the host table is in ABI 1.0; the reserved
     * settings of 1.2 are checked in init. */
    if (!DM_HAS_FIELD(h, dm_host, json_quote)) {
        return NULL;
    }
    return &desc;
}
