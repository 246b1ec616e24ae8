/*
 * payment-binancepay — Binance Pay (the merchant "C2B" API) as a payment
 * gateway: create order v3, the checkout URL Binance gives, webhooks
 * verified with Binance's RSA certificates, order query (for the janitor
 * and the return page) and refunds. Wire facts and their sources are in
 * README.md; tests/standins/binancepay_standin.py speaks them.
 *
 * Invariants:
 * - Every API call is signed as Binance documents: BinancePay-Timestamp
 *   (ms), BinancePay-Nonce (32 letters), BinancePay-Certificate-SN (the API
 *   key) and BinancePay-Signature = upper-case hex HMAC-SHA512, keyed with
 *   the secret key, of "<timestamp>\n<nonce>\n<body>\n". The body is built
 *   once, in a buffer, and that very buffer is signed and sent.
 * - A webhook is believed only when BinancePay-Signature (base64) is an
 *   RSA-SHA256 (PKCS#1 v1.5) signature of "<timestamp>\n<nonce>\n<raw
 *   body>\n" under the certificate Binance names in
 *   BinancePay-Certificate-SN, as its certificates endpoint serves it, and
 *   its timestamp is within webhook_tolerance_s of now. Certificates are
 *   cached by serial; an unknown serial fetches them again, at most once
 *   every cert_refresh_min_s per instance (a forged serial cannot make us
 *   call Binance at will).
 * - Money is never a double: amounts go out as decimal text made from
 *   micro-units, and come in as the raw decimal text of the JSON (the
 *   number is never parsed into a float; an amount with non-zero 7th or
 *   8th decimals is a needs_review, never rounded).
 * - Orders are in USD and paid in one USD stablecoin (pay_currency, USDT
 *   by default) at par; any other currency in an event is needs_review.
 * - Per-instance state lives in the settings, read on every call; the
 *   statics are the host table and the certificate cache (keyed by the
 *   instance's name, under a mutex, freed in fini).
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

#define BP_VERSION "1.0.0"
#define API_URL_DEFAULT "https://bpay.binanceapi.com"
#define PATH_ORDER "/binancepay/openapi/v3/order"
#define PATH_QUERY "/binancepay/openapi/v2/order/query"
#define PATH_REFUND "/binancepay/openapi/order/refund"
#define PATH_CERTS "/binancepay/openapi/certificates"
#define H_TS "BinancePay-Timestamp"
#define H_NONCE "BinancePay-Nonce"
#define H_SN "BinancePay-Certificate-SN"
#define H_SIG "BinancePay-Signature"
#define NONCE_LEN 32
#define TRADE_NO_MAX 32
#define PREFIX_MAX 12
#define REFUND_ID_MAX 64
#define REASON_MAX 256
#define RETURN_URL_MAX 512
#define PREPAY_MAX 64
#define SERIAL_MAX 128
#define REF_MAX 255
#define URL_MAX 2048
#define TIMEOUT_DEFAULT_MS 10000L
#define TIMEOUT_MAX_MS 600000L
#define TOLERANCE_DEFAULT_S 300L
#define TOLERANCE_MAX_S 86400L
#define CERT_REFRESH_DEFAULT_S 30L
#define CERT_REFRESH_MAX_S 86400L
#define CERTS_PER_INSTANCE 32
#define CHECKOUT_LIFETIME_S 3600
#define JSON_DEPTH_MAX 32
/* A billion units: beyond that an amount is a typo. */
#define AMOUNT_MAX ((int64_t)1000000000 * 1000000)

static const dm_host *host;

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int is_alnum_str(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
            return 0;
        }
    }
    return 1;
}

static int is_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return n > 0;
}

static dm_str mk(const char *p, size_t n)
{
    dm_str s = {p, n};
    return s;
}

static dm_str cstr(const char *p)
{
    return mk(p, p ? strlen(p) : 0);
}

/* A whole decimal number in [min, max]. */
static int parse_long(const char *s, size_t n, long min, long max, long *out)
{
    long v = 0;

    if (n == 0 || n > 12 || !is_digits(s, n)) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max) {
        return 0;
    }
    *out = v;
    return 1;
}

static int setting_long(dm_call *call, const char *key, long min, long max, long *out)
{
    const char *v = host->setting(call, key);
    return !v || parse_long(v, strlen(v), min, max, out);
}

/* A copy of n bytes in call memory, NUL-terminated. */
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

/* Text from Binance for a message: control characters blanked, cut short. */
static const char *clean(dm_call *call, const char *s, size_t n)
{
    char *out;

    if (!s) {
        return "";
    }
    n = n > 120 ? 120 : n;
    out = dup_call(call, s, n);
    if (!out) {
        return "";
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f) {
            out[i] = ' ';
        }
    }
    return out;
}

/* A JSON value at path (json_get): a string unescaped, anything else as its
 * compact text; ptr NULL when absent or when it holds a NUL byte. */
static dm_str field(dm_call *call, dm_str json, const char *path)
{
    dm_str s = {NULL, 0};

    if (!json.ptr) {
        return s;
    }
    s.ptr = host->json_get(call, json, path, &s.len);
    if (s.ptr && memchr(s.ptr, '\0', s.len)) {
        s.ptr = NULL;
        s.len = 0;
    }
    return s;
}

/* A string field that is not JSON null. */
static dm_str text_field(dm_call *call, dm_str json, const char *path)
{
    dm_str s = field(call, json, path);

    if (dm_str_eq(s, "null")) {
        s.ptr = NULL;
        s.len = 0;
    }
    return s;
}

/* ---- raw JSON: a member's literal text, never through a double ---- */

static const char *skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }
    return p;
}

/* The end of the JSON value starting at p (p itself when there is none). */
static const char *skip_value(const char *p, const char *e, int depth)
{
    if (p >= e || depth > JSON_DEPTH_MAX) {
        return NULL;
    }
    if (*p == '"') {
        for (p++; p < e; p++) {
            if (*p == '\\') {
                p++;
            } else if (*p == '"') {
                return p + 1;
            }
        }
        return NULL;
    }
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        int object = *p == '{';
        p = skip_ws(p + 1, e);
        if (p < e && *p == close) {
            return p + 1;
        }
        for (;;) {
            if (object) {
                if (p >= e || *p != '"' || !(p = skip_value(p, e, depth + 1))) {
                    return NULL;
                }
                p = skip_ws(p, e);
                if (p >= e || *p != ':') {
                    return NULL;
                }
                p = skip_ws(p + 1, e);
            }
            p = skip_value(p, e, depth + 1);
            if (!p) {
                return NULL;
            }
            p = skip_ws(p, e);
            if (p < e && *p == ',') {
                p = skip_ws(p + 1, e);
                continue;
            }
            return p < e && *p == close ? p + 1 : NULL;
        }
    }
    {
        const char *s = p;
        while (p < e && ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                         (*p >= 'A' && *p <= 'Z') || *p == '.' || *p == '-' || *p == '+')) {
            p++;
        }
        return p > s ? p : NULL;
    }
}

/* The literal of member `key` of the JSON object `json` (top level only):
 * a string's contents between its quotes (escapes as written), any other
 * value as written. 0 when absent or when json is not an object. */
static int raw_member(dm_str json, const char *key, dm_str *out)
{
    const char *p, *e;
    size_t klen = strlen(key);

    if (!json.ptr) {
        return 0;
    }
    p = skip_ws(json.ptr, json.ptr + json.len);
    e = json.ptr + json.len;
    if (p >= e || *p != '{') {
        return 0;
    }
    p = skip_ws(p + 1, e);
    while (p < e && *p == '"') {
        const char *k = p + 1, *kend = skip_value(p, e, 1), *v, *vend;
        if (!kend) {
            return 0;
        }
        p = skip_ws(kend, e);
        if (p >= e || *p != ':') {
            return 0;
        }
        v = skip_ws(p + 1, e);
        vend = skip_value(v, e, 1);
        if (!vend) {
            return 0;
        }
        if ((size_t)(kend - 1 - k) == klen && memcmp(k, key, klen) == 0) {
            if (*v == '"') {
                *out = mk(v + 1, (size_t)(vend - v - 2));
            } else {
                *out = mk(v, (size_t)(vend - v));
            }
            return 1;
        }
        p = skip_ws(vend, e);
        if (p < e && *p == ',') {
            p = skip_ws(p + 1, e);
        }
    }
    return 0;
}

/* Member `key` of the top-level object as text: a string unescaped (through
 * json_get on a one-element array of just that string), anything else as
 * written. Unlike json_get on the whole text, a number jansson cannot hold
 * elsewhere in the document (a bizId beyond int64) does not hide it. */
static dm_str member_text(dm_call *call, dm_str json, const char *key)
{
    dm_str raw, none = {NULL, 0};
    char *arr;

    if (!raw_member(json, key, &raw)) {
        return none;
    }
    if (raw.ptr == json.ptr || raw.ptr[-1] != '"') {
        return dm_str_eq(raw, "null") ? none : raw;
    }
    arr = host->alloc(call, raw.len + 5);
    if (!arr) {
        return none;
    }
    arr[0] = '[';
    arr[1] = '"';
    memcpy(arr + 2, raw.ptr, raw.len);
    arr[raw.len + 2] = '"';
    arr[raw.len + 3] = ']';
    arr[raw.len + 4] = '\0';
    return field(call, mk(arr, raw.len + 4), "0");
}

/* ---- amounts ---- */

/* "12.5", "0.88000000", "25" → micro-units. 1 when exact; 0 when s is not
 * [digits][.digits] with at most 8 decimals or is too large; -1 when it has
 * non-zero 7th or 8th decimals (not a whole number of micro-units). */
static int decimal_micros(dm_str s, int64_t *out)
{
    const char *p = s.ptr, *e = s.ptr + s.len, *dot;
    int64_t units = 0, frac = 0;
    size_t n_int, n_frac;

    if (!p || s.len == 0) {
        return 0;
    }
    dot = memchr(p, '.', s.len);
    n_int = dot ? (size_t)(dot - p) : s.len;
    n_frac = dot ? (size_t)(e - dot - 1) : 0;
    if (n_int == 0 || n_int > 10 || !is_digits(p, n_int) || (dot && n_frac == 0) || n_frac > 8 ||
        (n_frac && !is_digits(dot + 1, n_frac))) {
        return 0;
    }
    for (size_t i = 0; i < n_int; i++) {
        units = units * 10 + (p[i] - '0');
    }
    for (size_t i = 0; i < 6; i++) {
        frac = frac * 10 + (i < n_frac ? dot[1 + i] - '0' : 0);
    }
    if (units > AMOUNT_MAX / 1000000) {
        return 0;
    }
    *out = units * 1000000 + frac;
    for (size_t i = 6; i < n_frac; i++) {
        if (dot[1 + i] != '0') {
            return -1;
        }
    }
    return 1;
}

/* Micro-units as decimal text with 2 to 6 decimals: 12500000 → "12.50". */
static void format_amount(int64_t micros, char *out, size_t outsz)
{
    char f[8];
    size_t n = 6;

    snprintf(f, sizeof(f), "%06lld", (long long)(micros % 1000000));
    while (n > 2 && f[n - 1] == '0') {
        n--;
    }
    f[n] = '\0';
    snprintf(out, outsz, "%lld.%s", (long long)(micros / 1000000), f);
}

/* ---- settings ---- */

typedef struct conf {
    const char *name;
    const char *api_key;
    const char *secret;
    size_t secret_len;
    char base[URL_MAX]; /* api_url without a trailing slash */
    const char *pay_currency;
    const char *prefix;
    const char *terminal_type;
    long timeout_ms;
    long tolerance_s;
    long cert_refresh_s;
} conf;

/* http:// is only for a stand-in on this machine: the requests carry the
 * API key. */
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

static int one_of(const char *v, const char *const *list)
{
    for (; *list; list++) {
        if (!strcmp(v, *list)) {
            return 1;
        }
    }
    return 0;
}

static dm_status read_conf(dm_call *call, conf *c, dm_message *msg)
{
    static const char *const stablecoins[] = {"USDT", "USDC", "FDUSD", NULL};
    static const char *const terminals[] = {"WEB", "WAP", "APP", "MINI_PROGRAM", "OTHERS", NULL};
    const char *api_url = host->setting(call, "api_url");
    size_t n;

    memset(c, 0, sizeof(*c));
    c->name = host->setting(call, "_name");
    if (!c->name) {
        c->name = "binancepay";
    }
    c->api_key = host->setting(call, "api_key");
    if (!c->api_key || !*c->api_key || strlen(c->api_key) > 256 ||
        dm_has_ctl(c->api_key, strlen(c->api_key)) || strchr(c->api_key, ' ')) {
        dm_msg_set(msg, "api_key must be set (the API identity key of the Merchant Admin Portal, "
                        "sent as BinancePay-Certificate-SN), without spaces or control characters");
        return DM_ERR_CONFIG;
    }
    c->secret = host->setting(call, "secret_key");
    if (!c->secret || !*c->secret) {
        dm_msg_set(msg, "secret_key must be set, preferably as env:VAR or file:/path (the API "
                        "secret key of the Merchant Admin Portal)");
        return DM_ERR_CONFIG;
    }
    c->secret_len = strlen(c->secret);
    if (!api_url || !*api_url) {
        api_url = API_URL_DEFAULT;
    }
    n = strlen(api_url);
    while (n > 0 && api_url[n - 1] == '/') {
        n--;
    }
    if (n + sizeof(PATH_QUERY) + 16 > sizeof(c->base) || dm_has_ctl(api_url, n) ||
        memchr(api_url, ' ', n) || memchr(api_url, '?', n) || memchr(api_url, '#', n)) {
        dm_msg_set(msg, "api_url must be a plain https:// URL, like " API_URL_DEFAULT);
        return DM_ERR_CONFIG;
    }
    snprintf(c->base, sizeof(c->base), "%.*s", (int)n, api_url);
    if (!url_allowed(c->base)) {
        dm_msg_set(msg, "api_url must start with https:// (http:// only to 127.0.0.1 or localhost, "
                        "for a stand-in)");
        return DM_ERR_CONFIG;
    }
    c->pay_currency = host->setting(call, "pay_currency");
    if (!c->pay_currency) {
        c->pay_currency = "USDT";
    }
    if (!one_of(c->pay_currency, stablecoins)) {
        dm_msg_set(msg, "pay_currency must be USDT, USDC or FDUSD (a USD stablecoin Binance Pay "
                        "takes; orders are in USD and paid at par)");
        return DM_ERR_CONFIG;
    }
    c->prefix = host->setting(call, "trade_no_prefix");
    if (!c->prefix) {
        c->prefix = "";
    }
    if (strlen(c->prefix) > PREFIX_MAX || !is_alnum_str(c->prefix, strlen(c->prefix))) {
        dm_msg_set(msg, "trade_no_prefix must be at most %d letters or digits", PREFIX_MAX);
        return DM_ERR_CONFIG;
    }
    c->terminal_type = host->setting(call, "terminal_type");
    if (!c->terminal_type) {
        c->terminal_type = "WEB";
    }
    if (!one_of(c->terminal_type, terminals)) {
        dm_msg_set(msg, "terminal_type must be WEB, WAP, APP, MINI_PROGRAM or OTHERS");
        return DM_ERR_CONFIG;
    }
    c->timeout_ms = TIMEOUT_DEFAULT_MS;
    if (!setting_long(call, "timeout_ms", 100, TIMEOUT_MAX_MS, &c->timeout_ms)) {
        dm_msg_set(msg, "timeout_ms must be a whole number of milliseconds from 100 to %ld",
                   TIMEOUT_MAX_MS);
        return DM_ERR_CONFIG;
    }
    c->tolerance_s = TOLERANCE_DEFAULT_S;
    if (!setting_long(call, "webhook_tolerance_s", 0, TOLERANCE_MAX_S, &c->tolerance_s)) {
        dm_msg_set(msg,
                   "webhook_tolerance_s must be a whole number of seconds from 0 (no check) to "
                   "%ld",
                   TOLERANCE_MAX_S);
        return DM_ERR_CONFIG;
    }
    c->cert_refresh_s = CERT_REFRESH_DEFAULT_S;
    if (!setting_long(call, "cert_refresh_min_s", 0, CERT_REFRESH_MAX_S, &c->cert_refresh_s)) {
        dm_msg_set(msg, "cert_refresh_min_s must be a whole number of seconds from 0 to %ld",
                   CERT_REFRESH_MAX_S);
        return DM_ERR_CONFIG;
    }
    return DM_OK;
}

/* ---- signed API calls ---- */

/* 32 letters a-z, A-Z from the host's random bytes (no modulo bias: bytes
 * of 208 and above are drawn again). */
static void make_nonce(char out[NONCE_LEN + 1])
{
    static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    unsigned char rnd[64];
    size_t got = 0;

    while (got < NONCE_LEN) {
        host->random_bytes(rnd, sizeof(rnd));
        for (size_t i = 0; i < sizeof(rnd) && got < NONCE_LEN; i++) {
            if (rnd[i] < 208) {
                out[got++] = letters[rnd[i] % 52];
            }
        }
    }
    out[NONCE_LEN] = '\0';
}

/* UPPER(hex(HMAC-SHA512(secret, ts "\n" nonce "\n" body "\n"))), in call
 * memory. */
static char *sign_request(dm_call *call, const conf *c, const char *ts, const char *nonce,
                          const char *body, size_t body_len)
{
    size_t n = strlen(ts) + strlen(nonce) + body_len + 3;
    char *payload = malloc(n + 1);
    unsigned char mac[64];
    char *hex;

    if (!payload || body_len > 0x7fffffff) {
        free(payload);
        return NULL;
    }
    snprintf(payload, n + 1, "%s\n%s\n%.*s\n", ts, nonce, (int)body_len, body);
    host->hmac_sha512(c->secret, c->secret_len, payload, n, mac);
    free(payload);
    hex = host->hex_encode(call, mac, sizeof(mac));
    memset(mac, 0, sizeof(mac));
    for (char *p = hex; p && *p; p++) {
        if (*p >= 'a' && *p <= 'f') {
            *p = (char)(*p - 'a' + 'A');
        }
    }
    return hex;
}

/* POSTs body (signed as is) to base+path. DM_OK with *data (the envelope's
 * data, compact JSON or a string; empty when absent) when Binance answered
 * 200 {"status":"SUCCESS"}. DM_ERR_TEMPORARY with no answer, a timeout, a
 * 429 or 5xx, or an answer that is not Binance Pay's JSON envelope;
 * DM_ERR_PERMANENT when Binance refused the request ("FAIL"). */
static dm_status api_call(dm_call *call, const conf *c, const char *what, const char *path,
                          const char *body, size_t body_len, dm_str *data, dm_message *msg)
{
    char ts[24], nonce[NONCE_LEN + 1], url[URL_MAX + 64];
    char *sig;
    dm_header hs[5];
    dm_http_request req;
    dm_http_response resp;
    dm_message why;
    dm_str env, status, code, err;
    dm_status st;

    data->ptr = NULL;
    data->len = 0;
    snprintf(url, sizeof(url), "%s%s", c->base, path);
    snprintf(ts, sizeof(ts), "%lld", (long long)now_ms());
    make_nonce(nonce);
    sig = sign_request(call, c, ts, nonce, body, body_len);
    if (!sig) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    hs[0].name = cstr("Content-Type");
    hs[0].value = cstr("application/json");
    hs[1].name = cstr(H_TS);
    hs[1].value = cstr(ts);
    hs[2].name = cstr(H_NONCE);
    hs[2].value = cstr(nonce);
    hs[3].name = cstr(H_SN);
    hs[3].value = cstr(c->api_key);
    hs[4].name = cstr(H_SIG);
    hs[4].value = cstr(sig);
    memset(&req, 0, sizeof(req));
    req.size = sizeof(req);
    req.method = "POST";
    req.url = url;
    req.headers = hs;
    req.n_headers = 5;
    req.body = mk(body, body_len);
    req.timeout_ms = (uint32_t)c->timeout_ms;
    memset(&resp, 0, sizeof(resp));
    resp.size = sizeof(resp);
    memset(&why, 0, sizeof(why));
    st = host->http(call, &req, &resp, &why);
    if (st != DM_OK) {
        dm_msg_set(msg, "Binance Pay did not answer the %s call: %s", what,
                   why.text[0] ? why.text : "no response");
        return DM_ERR_TEMPORARY;
    }
    env = resp.body;
    status = text_field(call, env, "status");
    code = text_field(call, env, "code");
    err = text_field(call, env, "errorMessage");
    if (resp.status == 429 || resp.status >= 500) {
        dm_msg_set(msg, "Binance Pay answered the %s call with HTTP %d%s%s; try again later", what,
                   resp.status, err.len ? ": " : "", clean(call, err.ptr, err.len));
        return DM_ERR_TEMPORARY;
    }
    if (!status.ptr || (!dm_str_eq(status, "SUCCESS") && !dm_str_eq(status, "FAIL"))) {
        dm_msg_set(msg,
                   "Binance Pay answered the %s call with HTTP %d and no Binance Pay JSON; try "
                   "again later",
                   what, resp.status);
        return DM_ERR_TEMPORARY;
    }
    if (resp.status != 200 || !dm_str_eq(status, "SUCCESS")) {
        dm_msg_set(msg, "Binance Pay refused the %s call: HTTP %d, code %s: %s%s", what,
                   resp.status, code.ptr ? clean(call, code.ptr, code.len) : "none",
                   err.ptr ? clean(call, err.ptr, err.len) : "no message",
                   resp.status == 401 || resp.status == 403 || dm_str_eq(code, "400002")
                       ? " (check api_key and secret_key)"
                       : "");
        return DM_ERR_PERMANENT;
    }
    *data = text_field(call, env, "data");
    return DM_OK;
}

/* ---- the certificate cache ---- */

typedef struct cert {
    struct cert *next;
    char *inst;
    char *serial;
    char *pem;
    size_t pem_len;
} cert;

typedef struct fetch_mark {
    struct fetch_mark *next;
    char *inst;
    int64_t at_ms;
} fetch_mark;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cert *certs;
static fetch_mark *marks;

static char *dup_heap(const char *s, size_t n)
{
    char *out = malloc(n + 1);

    if (out) {
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return out;
}

/* The PEM of (inst, serial) copied into call memory, or NULL. */
static const char *cached_pem(dm_call *call, const char *inst, dm_str serial, size_t *len)
{
    const char *out = NULL;

    pthread_mutex_lock(&cache_lock);
    for (cert *k = certs; k; k = k->next) {
        if (!strcmp(k->inst, inst) && strlen(k->serial) == serial.len &&
            !memcmp(k->serial, serial.ptr, serial.len)) {
            out = dup_call(call, k->pem, k->pem_len);
            *len = k->pem_len;
            break;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return out;
}

/* Adds (inst, serial, pem) unless known; keeps at most CERTS_PER_INSTANCE
 * per instance (the oldest go). Old serials stay: Binance's retries of a
 * webhook signed before a rotation still verify. */
static void cache_put(const char *inst, dm_str serial, dm_str pem)
{
    cert *k, **pp;
    int n = 0;

    pthread_mutex_lock(&cache_lock);
    for (k = certs; k; k = k->next) {
        if (!strcmp(k->inst, inst) && strlen(k->serial) == serial.len &&
            !memcmp(k->serial, serial.ptr, serial.len)) {
            if (k->pem_len != pem.len || memcmp(k->pem, pem.ptr, pem.len) != 0) {
                char *p = dup_heap(pem.ptr, pem.len);
                if (p) {
                    free(k->pem);
                    k->pem = p;
                    k->pem_len = pem.len;
                }
            }
            pthread_mutex_unlock(&cache_lock);
            return;
        }
    }
    k = calloc(1, sizeof(*k));
    if (k) {
        k->inst = dup_heap(inst, strlen(inst));
        k->serial = dup_heap(serial.ptr, serial.len);
        k->pem = dup_heap(pem.ptr, pem.len);
        k->pem_len = pem.len;
        if (!k->inst || !k->serial || !k->pem) {
            free(k->inst);
            free(k->serial);
            free(k->pem);
            free(k);
        } else {
            k->next = certs;
            certs = k;
        }
    }
    /* newest first: drop what is beyond the limit for this instance */
    for (pp = &certs; *pp;) {
        k = *pp;
        if (!strcmp(k->inst, inst) && ++n > CERTS_PER_INSTANCE) {
            *pp = k->next;
            free(k->inst);
            free(k->serial);
            free(k->pem);
            free(k);
        } else {
            pp = &k->next;
        }
    }
    pthread_mutex_unlock(&cache_lock);
}

/* 1 when inst may fetch the certificates now (and notes that it does). */
static int may_fetch(const char *inst, long min_s)
{
    int64_t now = now_ms();
    fetch_mark *m;
    int ok = 1;

    pthread_mutex_lock(&cache_lock);
    for (m = marks; m; m = m->next) {
        if (!strcmp(m->inst, inst)) {
            break;
        }
    }
    if (m) {
        ok = now - m->at_ms >= (int64_t)min_s * 1000 || now < m->at_ms;
        if (ok) {
            m->at_ms = now;
        }
    } else {
        m = calloc(1, sizeof(*m));
        if (m && (m->inst = dup_heap(inst, strlen(inst)))) {
            m->at_ms = now;
            m->next = marks;
            marks = m;
        } else {
            free(m);
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return ok;
}

static void cache_free(void)
{
    pthread_mutex_lock(&cache_lock);
    while (certs) {
        cert *k = certs;
        certs = k->next;
        free(k->inst);
        free(k->serial);
        free(k->pem);
        free(k);
    }
    while (marks) {
        fetch_mark *m = marks;
        marks = m->next;
        free(m->inst);
        free(m);
    }
    pthread_mutex_unlock(&cache_lock);
}

/* POST /certificates → [{certSerial, certPublic}], all cached. */
static dm_status fetch_certs(dm_call *call, const conf *c, dm_message *msg)
{
    dm_str data;
    dm_status st = api_call(call, c, "certificates", PATH_CERTS, "{}", 2, &data, msg);
    int n = 0;

    if (st != DM_OK) {
        return st;
    }
    for (int i = 0; i < CERTS_PER_INSTANCE; i++) {
        char path[32];
        dm_str serial, pem;
        snprintf(path, sizeof(path), "%d.certSerial", i);
        serial = text_field(call, data, path);
        snprintf(path, sizeof(path), "%d.certPublic", i);
        pem = text_field(call, data, path);
        if (!serial.ptr || !pem.ptr) {
            break;
        }
        if (serial.len == 0 || serial.len > SERIAL_MAX || dm_has_ctl(serial.ptr, serial.len) ||
            pem.len == 0) {
            continue;
        }
        cache_put(c->name, serial, pem);
        n++;
    }
    if (n == 0) {
        dm_msg_set(msg,
                   "Binance Pay's certificates endpoint listed no certificate; try again later");
        return DM_ERR_TEMPORARY;
    }
    return DM_OK;
}

/* ---- create_checkout ---- */

/* The Binance order number of our order: trade_no_prefix + the order id,
 * letters and digits only, at most 32. */
static int trade_no(const conf *c, dm_str order, char out[TRADE_NO_MAX + 1])
{
    size_t pl = strlen(c->prefix);

    if (order.len == 0 || pl + order.len > TRADE_NO_MAX || !is_alnum_str(order.ptr, order.len)) {
        return 0;
    }
    snprintf(out, TRADE_NO_MAX + 1, "%s%.*s", c->prefix, (int)order.len, order.ptr);
    return 1;
}

static int url_ok(dm_str u, size_t max)
{
    return u.ptr && u.len <= max && !dm_has_ctl(u.ptr, u.len) &&
           ((u.len > 7 && !strncmp(u.ptr, "http://", 7)) ||
            (u.len > 8 && !strncmp(u.ptr, "https://", 8)));
}

static dm_status bp_create_checkout(dm_call *call, const dm_payment_checkout *in_raw,
                                    dm_payment_checkout_result *out, dm_message *msg)
{
    dm_payment_checkout in;
    conf c;
    char tno[TRADE_NO_MAX + 1], amount[48], *body, *order_q, *ret_q = NULL, *cancel_q = NULL;
    size_t cap, len;
    dm_str data, prepay, url;
    dm_status st;

    memset(&in, 0, sizeof(in));
    memcpy(&in, in_raw, in_raw->size < sizeof(in) ? in_raw->size : sizeof(in));
    st = read_conf(call, &c, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!dm_str_eq(in.currency, "USD")) {
        dm_msg_set(msg, "Binance Pay takes orders in USD only (paid in %s at par), not %.*s",
                   c.pay_currency, (int)(in.currency.len > 8 ? 8 : in.currency.len),
                   in.currency.ptr ? in.currency.ptr : "");
        return DM_ERR_PERMANENT;
    }
    if (in.amount_micros <= 0 || in.amount_micros > AMOUNT_MAX) {
        dm_msg_set(msg, "the amount must be positive");
        return DM_ERR_INVALID;
    }
    if (!trade_no(&c, in.order_id, tno)) {
        dm_msg_set(msg, "the order id must be letters or digits, at most %zu with trade_no_prefix",
                   (size_t)TRADE_NO_MAX - strlen(c.prefix));
        return DM_ERR_INVALID;
    }
    format_amount(in.amount_micros, amount, sizeof(amount));
    order_q = host->json_quote(call, in.order_id);
    if (in.success_url.len) {
        if (!url_ok(in.success_url, RETURN_URL_MAX)) {
            dm_msg_set(msg, "the return URL must be an http(s) URL of at most %d bytes",
                       RETURN_URL_MAX);
            return DM_ERR_INVALID;
        }
        ret_q = host->json_quote(call, in.success_url);
    }
    if (in.cancel_url.len) {
        if (!url_ok(in.cancel_url, RETURN_URL_MAX)) {
            dm_msg_set(msg, "the cancel URL must be an http(s) URL of at most %d bytes",
                       RETURN_URL_MAX);
            return DM_ERR_INVALID;
        }
        cancel_q = host->json_quote(call, in.cancel_url);
    }
    if (!order_q || (in.success_url.len && !ret_q) || (in.cancel_url.len && !cancel_q)) {
        dm_msg_set(msg, "the order's URLs are not UTF-8");
        return DM_ERR_INVALID;
    }
    cap = 1024 + 2 * strlen(order_q) + (ret_q ? strlen(ret_q) : 0) +
          (cancel_q ? strlen(cancel_q) : 0);
    body = host->alloc(call, cap);
    if (!body) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    len = (size_t)snprintf(
        body, cap,
        "{\"env\":{\"terminalType\":\"%s\"},\"merchantTradeNo\":\"%s\",\"orderAmount\":%s,"
        "\"currency\":\"%s\",\"description\":\"Order %s\",\"goodsDetails\":[{\"goodsType\":"
        "\"02\",\"goodsCategory\":\"Z000\",\"referenceGoodsId\":%s,\"goodsName\":\"Order "
        "%s\"}],\"passThroughInfo\":%s%s%s%s%s}",
        c.terminal_type, tno, amount, c.pay_currency, tno, order_q, tno, order_q,
        ret_q ? ",\"returnUrl\":" : "", ret_q ? ret_q : "", cancel_q ? ",\"cancelUrl\":" : "",
        cancel_q ? cancel_q : "");
    if (len >= cap) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    st = api_call(call, &c, "create order", PATH_ORDER, body, len, &data, msg);
    if (st != DM_OK) {
        return st;
    }
    prepay = text_field(call, data, "prepayId");
    url = text_field(call, data, "checkoutUrl");
    if (!url.len) {
        url = text_field(call, data, "universalUrl");
    }
    if (!prepay.len || prepay.len > PREPAY_MAX || !is_alnum_str(prepay.ptr, prepay.len) ||
        !url_ok(url, URL_MAX)) {
        dm_msg_set(msg, "Binance Pay created the order without a usable prepayId and checkoutUrl; "
                        "try again later");
        return DM_ERR_TEMPORARY;
    }
    out->provider_ref = prepay;
    out->redirect_url = url;
    return DM_OK;
}

/* ---- events ---- */

/* The inner order of an event or a query: our order id, from
 * passThroughInfo (what we sent) or else merchantTradeNo less the prefix. */
static dm_str order_of(dm_call *call, const conf *c, dm_str inner)
{
    dm_str pass = member_text(call, inner, "passThroughInfo");
    dm_str tno = member_text(call, inner, "merchantTradeNo");
    size_t pl = strlen(c->prefix);

    if (pass.len && pass.len <= TRADE_NO_MAX && is_alnum_str(pass.ptr, pass.len)) {
        return pass;
    }
    if (tno.len > pl && !memcmp(tno.ptr, c->prefix, pl) && is_alnum_str(tno.ptr, tno.len)) {
        return mk(tno.ptr + pl, tno.len - pl);
    }
    return mk(NULL, 0);
}

/* Fills amount and currency of ev from the raw decimal `raw` in Binance's
 * currency `cur`: USD for pay_currency; anything else (an unknown currency,
 * an amount that is not a whole number of micro-units, a malformed one)
 * makes the event needs_review with a detail for staff. */
static void money_of(dm_call *call, const conf *c, dm_str raw, dm_str cur, dm_payment_event *ev,
                     const char *what)
{
    int64_t micros = 0;
    int exact = decimal_micros(raw, &micros);
    char *detail;

    if (exact == 1 && dm_str_eq(cur, c->pay_currency)) {
        ev->amount_micros = micros;
        ev->currency = cstr("USD");
        return;
    }
    detail = host->alloc(call, 200);
    if (detail) {
        snprintf(detail, 200, "Binance Pay reported %s %.*s %.*s; expected %s at par", what,
                 (int)(raw.len > 40 ? 40 : raw.len), raw.ptr ? raw.ptr : "",
                 (int)(cur.len > 16 ? 16 : cur.len), cur.ptr ? cur.ptr : "", c->pay_currency);
        for (char *p = detail; *p; p++) {
            if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                *p = ' ';
            }
        }
    }
    ev->review_reason =
        dm_str_eq(cur, c->pay_currency) ? DM_REVIEW_OTHER : DM_REVIEW_UNKNOWN_CURRENCY;
    ev->amount_micros = exact == 1 ? micros : 0;
    ev->currency = mk(NULL, 0);
    ev->detail = cstr(detail);
    ev->status = DM_PAY_NEEDS_REVIEW;
}

static dm_str header_value(const dm_header *hs, size_t n, const char *name)
{
    const dm_header *h = dm_header_find(hs, n, name);
    return h && h->value.ptr ? h->value : mk(NULL, 0);
}

/* Verifies the webhook's RSA signature and timestamp. */
static dm_status verify_webhook(dm_call *call, const conf *c, dm_str body, const dm_header *hs,
                                size_t n, dm_message *msg)
{
    dm_str ts = header_value(hs, n, H_TS), nonce = header_value(hs, n, H_NONCE);
    dm_str serial = header_value(hs, n, H_SN), sig64 = header_value(hs, n, H_SIG);
    const char *pem;
    size_t pem_len = 0, sig_len = 0, plen;
    unsigned char *sig;
    char *payload;
    long long t = 0;
    int ok;

    if (!ts.len || ts.len > 16 || !is_digits(ts.ptr, ts.len)) {
        dm_msg_set(msg, "no valid " H_TS " header (milliseconds)");
        return DM_ERR_INVALID;
    }
    for (size_t i = 0; i < ts.len; i++) {
        t = t * 10 + (ts.ptr[i] - '0');
    }
    if (!nonce.len || nonce.len > 64 || !is_alnum_str(nonce.ptr, nonce.len)) {
        dm_msg_set(msg, "no valid " H_NONCE " header");
        return DM_ERR_INVALID;
    }
    if (!serial.len || serial.len > SERIAL_MAX || !is_alnum_str(serial.ptr, serial.len)) {
        dm_msg_set(msg, "no valid " H_SN " header");
        return DM_ERR_INVALID;
    }
    if (!sig64.len || sig64.len > 4096 || dm_has_ctl(sig64.ptr, sig64.len) ||
        !(sig = host->base64_decode(call, sig64.ptr, sig64.len, &sig_len)) || sig_len == 0) {
        dm_msg_set(msg, "no valid " H_SIG " header (base64)");
        return DM_ERR_INVALID;
    }
    pem = cached_pem(call, c->name, serial, &pem_len);
    if (!pem) {
        dm_status st;
        if (!may_fetch(c->name, c->cert_refresh_s)) {
            dm_msg_set(msg,
                       "the webhook names certificate %.*s, which is not among those fetched less "
                       "than %ld s ago; try again later",
                       (int)serial.len, serial.ptr, c->cert_refresh_s);
            return DM_ERR_TEMPORARY;
        }
        st = fetch_certs(call, c, msg);
        if (st != DM_OK) {
            return st == DM_ERR_TEMPORARY ? st : DM_ERR_TEMPORARY;
        }
        pem = cached_pem(call, c->name, serial, &pem_len);
        if (!pem) {
            dm_msg_set(msg, "the webhook names certificate %.*s, which Binance Pay does not list",
                       (int)serial.len, serial.ptr);
            return DM_ERR_INVALID;
        }
    }
    plen = ts.len + nonce.len + body.len + 3;
    payload = malloc(plen);
    if (!payload) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    memcpy(payload, ts.ptr, ts.len);
    payload[ts.len] = '\n';
    memcpy(payload + ts.len + 1, nonce.ptr, nonce.len);
    payload[ts.len + 1 + nonce.len] = '\n';
    if (body.len) {
        memcpy(payload + ts.len + nonce.len + 2, body.ptr, body.len);
    }
    payload[plen - 1] = '\n';
    ok = host->rsa_sha256_verify(pem, pem_len, payload, plen, sig, sig_len);
    free(payload);
    if (ok < 0) {
        dm_msg_set(msg, "certificate %.*s from Binance Pay cannot be read as an RSA key",
                   (int)serial.len, serial.ptr);
        return DM_ERR_INVALID;
    }
    if (ok != 1) {
        dm_msg_set(msg, "the " H_SIG " does not match the body (not signed by Binance Pay, or the "
                        "body was altered)");
        return DM_ERR_INVALID;
    }
    if (c->tolerance_s > 0) {
        long long now = (long long)now_ms();
        if (t < now - (long long)c->tolerance_s * 1000) {
            dm_msg_set(msg, "the " H_TS " is more than %ld s old", c->tolerance_s);
            return DM_ERR_INVALID;
        }
        if (t > now + (long long)c->tolerance_s * 1000) {
            dm_msg_set(msg, "the " H_TS " is more than %ld s in the future", c->tolerance_s);
            return DM_ERR_INVALID;
        }
    }
    return DM_OK;
}

static char *join(dm_call *call, const char *a, dm_str b, const char *c2, dm_str d)
{
    size_t n;
    char *out;

    if (!a) {
        return NULL; /* an earlier join ran out of memory */
    }
    n = strlen(a) + b.len + strlen(c2) + d.len + 1;
    out = host->alloc(call, n);
    if (out) {
        snprintf(out, n, "%s%.*s%s%.*s", a, (int)b.len, b.ptr ? b.ptr : "", c2, (int)d.len,
                 d.ptr ? d.ptr : "");
    }
    return out;
}

/* Copies ev into the host's event, only as far as its size reaches. */
static void hand_back(dm_payment_event *out, const dm_payment_event *ev)
{
    uint32_t size = out->size;

    memcpy(out, ev, size < sizeof(*ev) ? size : sizeof(*ev));
    out->size = size;
}

static dm_status bp_parse_webhook(dm_call *call, dm_str raw_body, const dm_header *headers,
                                  size_t n_headers, dm_payment_event *out, dm_message *msg)
{
    conf c;
    dm_payment_event ev;
    dm_str type, id, status, inner, raw;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    st = verify_webhook(call, &c, raw_body, headers, n_headers, msg);
    if (st != DM_OK) {
        return st;
    }
    memset(&ev, 0, sizeof(ev));
    type = member_text(call, raw_body, "bizType");
    id = member_text(call, raw_body, "bizIdStr");
    if (!id.len) {
        id = member_text(call, raw_body, "bizId");
    }
    status = member_text(call, raw_body, "bizStatus");
    /* data is a JSON string holding JSON (unescaped here); an object is
     * read the same way. */
    inner = member_text(call, raw_body, "data");
    if (!type.len || type.len > 64 || dm_has_ctl(type.ptr, type.len) || !id.len ||
        id.len > PREPAY_MAX || !is_alnum_str(id.ptr, id.len) || !status.len || status.len > 64 ||
        dm_has_ctl(status.ptr, status.len)) {
        dm_msg_set(msg, "the notification has no bizType, bizIdStr or bizStatus");
        return DM_ERR_INVALID;
    }
    ev.provider_ref = id;
    ev.payment_id = id;
    ev.order_id = order_of(call, &c, inner);
    ev.status = DM_PAY_IGNORED;
    ev.event_id = cstr(join(call, "", type, ":", id));
    ev.event_id = cstr(join(call, ev.event_id.ptr, mk(NULL, 0), ":", status));

    if (dm_str_eq(type, "PAY") && dm_str_eq(status, "PAY_SUCCESS")) {
        ev.status = DM_PAY_PAID;
        if (!raw_member(inner, "totalFee", &raw)) {
            raw = mk(NULL, 0);
        }
        money_of(call, &c, raw, member_text(call, inner, "currency"), &ev, "a payment of");
    } else if (dm_str_eq(type, "PAY") && dm_str_eq(status, "PAY_CLOSED")) {
        ev.status = DM_PAY_EXPIRED;
    } else if (dm_str_eq(type, "PAY_REFUND") && dm_str_eq(status, "REFUND_SUCCESS")) {
        dm_str info = member_text(call, inner, "refundInfo"), rid;
        rid = member_text(call, info, "refundRequestId");
        if (!info.len || !rid.len || rid.len > REFUND_ID_MAX || dm_has_ctl(rid.ptr, rid.len) ||
            !raw_member(info, "refundAmount", &raw)) {
            /* Binance sends refundInfo only to merchants it approved:
             * without it the amount is unknown, and a refund of unknown
             * size is for a person to look at. */
            ev.status = DM_PAY_NEEDS_REVIEW;
            ev.review_reason = DM_REVIEW_OTHER;
            ev.detail = cstr("Binance Pay reported a refund without refundInfo: see its amount "
                             "in the Merchant Admin Portal");
        } else {
            ev.event_id = cstr(join(call, "PAY_REFUND:", id, ":", rid));
            ev.event_id = cstr(join(call, ev.event_id.ptr, mk(NULL, 0), ":", status));
            ev.status = DM_PAY_REFUNDED;
            money_of(call, &c, raw, member_text(call, inner, "currency"), &ev, "a refund of");
        }
    }
    if (!ev.event_id.ptr) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    if (!DM_HAS_FIELD(out, dm_payment_event, payment_id) &&
        (ev.status == DM_PAY_NEEDS_REVIEW || ev.status == DM_PAY_PENDING)) {
        /* an older host knows no needs_review: it must not credit this */
        ev.status = DM_PAY_IGNORED;
    }
    hand_back(out, &ev);
    return DM_OK;
}

/* ---- query (janitor, return page) ---- */

static dm_status bp_query(dm_call *call, dm_str provider_ref, dm_payment_event *out,
                          dm_message *msg)
{
    conf c;
    dm_payment_event ev;
    dm_str data, status, raw;
    char body[PREPAY_MAX + 32];
    int len;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    if (!provider_ref.len || provider_ref.len > PREPAY_MAX ||
        !is_alnum_str(provider_ref.ptr, provider_ref.len)) {
        dm_msg_set(msg, "a Binance Pay reference is a prepayId of letters and digits");
        return DM_ERR_INVALID;
    }
    len = snprintf(body, sizeof(body), "{\"prepayId\":\"%.*s\"}", (int)provider_ref.len,
                   provider_ref.ptr);
    st = api_call(call, &c, "query order", PATH_QUERY, body, (size_t)len, &data, msg);
    if (st != DM_OK) {
        return st;
    }
    memset(&ev, 0, sizeof(ev));
    status = text_field(call, data, "status");
    ev.provider_ref = provider_ref;
    ev.payment_id = provider_ref;
    ev.order_id = order_of(call, &c, data);
    if (dm_str_eq(status, "PAID")) {
        ev.status = DM_PAY_PAID;
        if (!raw_member(data, "orderAmount", &raw) && !raw_member(data, "totalFee", &raw)) {
            raw = mk(NULL, 0);
        }
        money_of(call, &c, raw, text_field(call, data, "currency"), &ev, "a payment of");
    } else if (dm_str_eq(status, "INITIAL") || dm_str_eq(status, "PENDING")) {
        ev.status = DM_PAY_PENDING;
    } else if (dm_str_eq(status, "EXPIRED") || dm_str_eq(status, "CANCELED")) {
        ev.status = DM_PAY_EXPIRED;
    } else if (dm_str_eq(status, "ERROR")) {
        ev.status = DM_PAY_FAILED;
    } else if (dm_str_eq(status, "REFUNDING") || dm_str_eq(status, "REFUNDED") ||
               dm_str_eq(status, "FULL_REFUNDED")) {
        /* paid, then (partly) refunded: both webhooks were missed */
        ev.status = DM_PAY_NEEDS_REVIEW;
        ev.review_reason = DM_REVIEW_OTHER;
        ev.detail = cstr(join(call, "Binance Pay says the order is ", status,
                              ": it was paid and refunded there", mk(NULL, 0)));
    } else {
        dm_msg_set(msg, "Binance Pay's order query answered the unknown status %s",
                   clean(call, status.ptr, status.len));
        return DM_ERR_TEMPORARY;
    }
    if (!DM_HAS_FIELD(out, dm_payment_event, payment_id)) {
        dm_msg_set(msg, "query needs a host of plugin ABI 1.4");
        return DM_ERR_UNSUPPORTED;
    }
    hand_back(out, &ev);
    return DM_OK;
}

/* ---- refunds ---- */

/* refundRequestId: the idempotency key when it is 1 to 64 letters or
 * digits, else the first 64 hex digits of SHA-256 of it. */
static const char *refund_request_id(dm_call *call, dm_str key)
{
    unsigned char d[32];

    if (key.len && key.len <= REFUND_ID_MAX && is_alnum_str(key.ptr, key.len)) {
        return dup_call(call, key.ptr, key.len);
    }
    host->sha256(key.ptr ? key.ptr : "", key.len, d);
    return host->hex_encode(call, d, sizeof(d));
}

static dm_status bp_refund_ex(dm_call *call, const dm_payment_refund_request *req_raw,
                              dm_str *refund_id, dm_message *msg)
{
    dm_payment_refund_request r;
    conf c;
    dm_str prepay, data, rid;
    char amount[48], *body, *reason_q = NULL;
    const char *rrid;
    size_t cap;
    int len;
    dm_status st;

    memset(&r, 0, sizeof(r));
    memcpy(&r, req_raw, req_raw->size < sizeof(r) ? req_raw->size : sizeof(r));
    st = read_conf(call, &c, msg);
    if (st != DM_OK) {
        return st;
    }
    prepay = r.payment_id.len ? r.payment_id : r.provider_ref;
    if (!prepay.len || prepay.len > PREPAY_MAX || !is_alnum_str(prepay.ptr, prepay.len)) {
        dm_msg_set(msg, "a Binance Pay refund needs the order's prepayId (letters and digits)");
        return DM_ERR_INVALID;
    }
    if (r.amount_micros <= 0 || r.amount_micros > AMOUNT_MAX || !dm_str_eq(r.currency, "USD")) {
        dm_msg_set(msg, "a Binance Pay refund needs a positive amount in USD");
        return DM_ERR_INVALID;
    }
    if (!r.idempotency_key.len) {
        dm_msg_set(msg, "a Binance Pay refund needs an idempotency key (its refundRequestId)");
        return DM_ERR_INVALID;
    }
    rrid = refund_request_id(call, r.idempotency_key);
    if (r.reason.len) {
        dm_str reason = mk(r.reason.ptr, r.reason.len > REASON_MAX ? REASON_MAX : r.reason.len);
        /* a cut in the middle of a UTF-8 sequence: back to its start */
        while (reason.len < r.reason.len && reason.len > 0 &&
               ((unsigned char)reason.ptr[reason.len] & 0xC0) == 0x80) {
            reason.len--;
        }
        reason_q = host->json_quote(call, reason);
    }
    format_amount(r.amount_micros, amount, sizeof(amount));
    cap = 256 + prepay.len + (rrid ? strlen(rrid) : 0) + (reason_q ? strlen(reason_q) : 0);
    body = host->alloc(call, cap);
    if (!rrid || !body) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    len = snprintf(body, cap,
                   "{\"refundRequestId\":\"%s\",\"prepayId\":\"%.*s\",\"refundAmount\":%s%s%s}",
                   rrid, (int)prepay.len, prepay.ptr, amount, reason_q ? ",\"refundReason\":" : "",
                   reason_q ? reason_q : "");
    st = api_call(call, &c, "refund", PATH_REFUND, body, (size_t)len, &data, msg);
    if (st != DM_OK) {
        return st;
    }
    rid = text_field(call, data, "refundId");
    if (refund_id && rid.len && rid.len <= REF_MAX && !dm_has_ctl(rid.ptr, rid.len)) {
        *refund_id = rid;
    }
    return DM_OK;
}

/* The 1.0 refund: no idempotency key from the host, so a fresh
 * refundRequestId (a retry of this call is a second refund: hosts of 1.4
 * call refund_ex with their key). */
static dm_status bp_refund(dm_call *call, dm_str provider_ref, int64_t amount_micros,
                           dm_str currency, dm_message *msg)
{
    dm_payment_refund_request r;
    unsigned char rnd[16];
    dm_str none = {NULL, 0};

    memset(&r, 0, sizeof(r));
    r.size = sizeof(r);
    r.provider_ref = provider_ref;
    r.amount_micros = amount_micros;
    r.currency = currency;
    host->random_bytes(rnd, sizeof(rnd));
    r.idempotency_key = cstr(host->hex_encode(call, rnd, sizeof(rnd)));
    return bp_refund_ex(call, &r, &none, msg);
}

/* ---- life cycle ---- */

static dm_status bp_init(const dm_host *h, dm_call *call, dm_message *msg)
{
    conf c;

    host = h;
    if ((size_t)h->size < offsetof(dm_host, hmac_sha512) + sizeof(h->hmac_sha512) ||
        !h->rsa_sha256_verify || !h->hmac_sha512) {
        dm_msg_set(msg,
                   "needs a server of plugin ABI 1.4 or later (rsa_sha256_verify, "
                   "hmac_sha512); this one speaks 1.%u",
                   (unsigned)h->abi_minor);
        return DM_ERR_CONFIG;
    }
    return read_conf(call, &c, msg);
}

static void bp_fini(void)
{
    cache_free();
}

static dm_status bp_health(dm_call *call, dm_message *msg)
{
    conf c;
    return read_conf(call, &c, msg);
}

static const dm_payment_ops ops = {
    .size = sizeof(dm_payment_ops),
    .create_checkout = bp_create_checkout,
    .parse_webhook = bp_parse_webhook,
    .refund = bp_refund,
    .query = bp_query,
    .refund_ex = bp_refund_ex,
    .display_name = "Binance Pay",
    .method_kind = "wallet",
    .currencies = "USD",
    .checkout_lifetime_s = CHECKOUT_LIFETIME_S,
    /* what Binance expects in the answer to a notification it delivered */
    .webhook_ack_body = "{\"returnCode\":\"SUCCESS\",\"returnMessage\":null}",
};

static const char *const required[] = {"api_key", "secret_key", NULL};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_PAYMENT,
    .name = "payment-binancepay",
    .version = BP_VERSION,
    .required_settings = required,
    .init = bp_init,
    .fini = bp_fini,
    .ops = &ops,
    .health = bp_health,
    .handle_request = NULL,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *h)
{
    /* init explains a host older than 1.4 with a sentence. */
    if (!DM_HAS_FIELD(h, dm_host, json_quote)) {
        return NULL;
    }
    return &desc;
}
