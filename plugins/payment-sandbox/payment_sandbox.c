/*
 * payment-sandbox — a payment gateway that moves no money, so a new site
 * can sell a package end to end with no outside service: its checkout is a
 * page served by the same Apache (ABI 1.2 handle_request) whose "Pay" and
 * "Decline" buttons make the plugin post a signed webhook to the site's own
 * /api/webhooks/<name>, exactly as a real gateway would.
 *
 * Invariants:
 * - It never runs by accident: init refuses unless the setting `enabled` is
 *   `yes`, and logs a warning at every start when it is.
 * - Checkouts are stateless: the checkout URL carries a token, an HMAC-
 *   signed encoding of (checkout id, order, amount, currency, expiry, return
 *   URLs), so any child or node can serve the page and nothing is stored.
 * - Webhooks are signed like Stripe's: Sandbox-Signature: t=<unix>,v1=<hex
 *   HMAC-SHA-256 of "<t>.<raw body>">, keyed with webhook_secret; the
 *   receiving side verifies over the exact raw bytes, accepts any of several
 *   v1 values (secret rotation) and a timestamp within 300 s.
 * - Per-instance state lives in the settings, read on every call; the only
 *   static is the host table (the .so may be declared twice).
 * - Memory: pages and events are built in malloc'd buffers this file frees
 *   before returning; what goes back to the host is host->alloc'd.
 *
 * Token format (README.md): base64url(payload) "." base64url(HMAC-SHA-256(
 * webhook_secret, "sandbox-checkout-token:" base64url(payload))), where the
 * payload is the JSON object {"v":1,"id","order","amount","currency","exp",
 * "success_url"?,"cancel_url"?}. base64url is unpadded (RFC 4648 §5).
 */
#include <deepmine/plugin.h>
#include <deepmine/plugin_util.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SANDBOX_VERSION "1.0.0"
#define SECRET_MIN 32
#define TOLERANCE_S 300
#define TTL_DEFAULT 3600
#define TTL_MIN 60
#define TTL_MAX (7 * 86400)
#define TOKEN_MAX 4096
#define REF_MAX 255
#define URL_MAX 2048
#define V1_MAX 8
/* A billion units of any currency: beyond that, a sandbox amount is a typo. */
#define AMOUNT_MAX ((int64_t)1000000000 * 1000000)
#define SIG_HEADER "Sandbox-Signature"
#define TOKEN_CONTEXT "sandbox-checkout-token:"

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
    char tmp[256];
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

/* Text for an HTML element or a quoted attribute. */
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

static int is_currency(const char *s, size_t n)
{
    if (n != 3) {
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
    return n <= URL_MAX && !dm_has_ctl(s, n) &&
           ((n > 7 && strncmp(s, "http://", 7) == 0) || (n > 8 && strncmp(s, "https://", 8) == 0));
}

/* A decimal integer, the whole text: no sign but '-', no spaces, no
 * leading '+', no overflow. */
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
        return 0; /* 18 digits keep v * 10 + 9 inside int64 */
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

/* Micro-units as a decimal amount with 2 to 6 decimals: 12500000 → "12.50",
 * 1 → "0.000001". */
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

/* ---- settings ---- */

typedef struct conf {
    const char *secret;
    size_t secret_len;
    const char *currency;
    const char *public_url;
    const char *name;
    int test_endpoints;
    int64_t ttl;
    const char *state_dir; /* NULL: stateless, no query */
} conf;

/* Reads and checks every setting; DM_ERR_CONFIG with msg when one is bad. */
static dm_status read_conf(dm_call *call, conf *c, dm_message *msg)
{
    const char *v;

    memset(c, 0, sizeof(*c));
    c->name = host->setting(call, "_name");
    c->public_url = host->setting(call, "_public_url");
    if (!c->name) {
        dm_msg_set(msg, "this server gives plugins no _name setting; the sandbox needs a host of "
                        "plugin ABI 1.2 or later");
        return DM_ERR_CONFIG;
    }
    if (!c->public_url || !is_http_url(c->public_url, strlen(c->public_url))) {
        dm_msg_set(msg, "DeepMinePublicURL is not set: the sandbox builds its checkout URLs and "
                        "posts its webhooks to it");
        return DM_ERR_CONFIG;
    }
    c->secret = host->setting(call, "webhook_secret");
    if (!c->secret || !*c->secret) {
        dm_msg_set(msg,
                   "webhook_secret is missing; add DeepMinePluginSet %s webhook_secret "
                   "file:/path/to/secret (at least %d characters)",
                   c->name, SECRET_MIN);
        return DM_ERR_CONFIG;
    }
    c->secret_len = strlen(c->secret);
    if (c->secret_len < SECRET_MIN) {
        dm_msg_set(msg, "webhook_secret is %zu characters; it must have at least %d", c->secret_len,
                   SECRET_MIN);
        return DM_ERR_CONFIG;
    }
    c->currency = host->setting(call, "currency");
    if (!c->currency) {
        c->currency = "USD";
    }
    if (!is_currency(c->currency, strlen(c->currency))) {
        dm_msg_set(msg, "currency must be an ISO 4217 code in capitals, like USD");
        return DM_ERR_CONFIG;
    }
    v = host->setting(call, "test_endpoints");
    if (v && strcmp(v, "yes") != 0 && strcmp(v, "no") != 0) {
        dm_msg_set(msg, "test_endpoints must be yes or no");
        return DM_ERR_CONFIG;
    }
    c->test_endpoints = v && strcmp(v, "yes") == 0;
    c->state_dir = host->setting(call, "state_dir");
    if (c->state_dir && (c->state_dir[0] != '/' || strlen(c->state_dir) > 1024)) {
        dm_msg_set(msg, "state_dir must be an absolute path of a directory the server can write");
        return DM_ERR_CONFIG;
    }
    c->ttl = TTL_DEFAULT;
    v = host->setting(call, "checkout_ttl");
    if (v && (!parse_int64(v, strlen(v), &c->ttl) || c->ttl < TTL_MIN || c->ttl > TTL_MAX)) {
        dm_msg_set(msg, "checkout_ttl must be a number of seconds from %d to %d", TTL_MIN, TTL_MAX);
        return DM_ERR_CONFIG;
    }
    return DM_OK;
}

/* ---- base64url and the checkout token ---- */

/* Unpadded base64url of data, in call memory. */
static char *b64url(dm_call *call, const void *data, size_t len)
{
    char *s = host->base64_encode(call, data, len);
    size_t n;

    if (!s) {
        return NULL;
    }
    n = strlen(s);
    while (n > 0 && s[n - 1] == '=') {
        s[--n] = '\0';
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            s[i] = '-';
        } else if (s[i] == '/') {
            s[i] = '_';
        }
    }
    return s;
}

/* The reverse; NULL on anything but unpadded base64url. */
static unsigned char *b64url_decode(dm_call *call, const char *s, size_t n, size_t *out_len)
{
    char *t;
    size_t padded = (n + 3) / 4 * 4;

    if (n % 4 == 1) {
        return NULL;
    }
    t = host->alloc(call, padded + 1);
    if (!t) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '-') {
            c = '+';
        } else if (c == '_') {
            c = '/';
        } else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            return NULL;
        }
        t[i] = c;
    }
    for (size_t i = n; i < padded; i++) {
        t[i] = '=';
    }
    t[padded] = '\0';
    return host->base64_decode(call, t, padded, out_len);
}

/* base64url of HMAC(secret, TOKEN_CONTEXT payload_b64): 43 characters. */
static char *token_mac(dm_call *call, const conf *c, const char *payload_b64, size_t n)
{
    size_t clen = sizeof(TOKEN_CONTEXT) - 1;
    unsigned char mac[32];
    char *msg = malloc(clen + n);
    char *out;

    if (!msg) {
        return NULL;
    }
    memcpy(msg, TOKEN_CONTEXT, clen);
    memcpy(msg + clen, payload_b64, n);
    host->hmac_sha256(c->secret, c->secret_len, msg, clen + n, mac);
    free(msg);
    out = b64url(call, mac, sizeof(mac));
    memset(mac, 0, sizeof(mac));
    return out;
}

typedef struct checkout {
    dm_str id;
    dm_str order;
    int64_t amount;
    dm_str currency;
    int64_t exp;
    dm_str success_url;
    dm_str cancel_url;
} checkout;

/* A JSON string or number from the payload; dm_str with NULL ptr when absent. */
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

/* Verifies a token and reads it. DM_ERR_INVALID with msg when it is
 * malformed, not signed with this instance's secret, or expired. */
static dm_status token_read(dm_call *call, const conf *c, dm_str token, checkout *out,
                            dm_message *msg)
{
    const char *dot;
    char *mac;
    size_t plen, json_len = 0;
    unsigned char *json;
    dm_str j, v, amount, exp;

    memset(out, 0, sizeof(*out));
    dot = token.len <= TOKEN_MAX ? memchr(token.ptr, '.', token.len) : NULL;
    if (!dot) {
        dm_msg_set(msg, "this checkout link is malformed");
        return DM_ERR_INVALID;
    }
    plen = (size_t)(dot - token.ptr);
    mac = token_mac(call, c, token.ptr, plen);
    if (!mac || strlen(mac) != token.len - plen - 1 ||
        !host->equal_ct(mac, dot + 1, token.len - plen - 1)) {
        dm_msg_set(msg, "this checkout link is not one of ours (bad signature)");
        return DM_ERR_INVALID;
    }
    json = b64url_decode(call, token.ptr, plen, &json_len);
    if (!json) {
        dm_msg_set(msg, "this checkout link is malformed");
        return DM_ERR_INVALID;
    }
    j.ptr = (const char *)json;
    j.len = json_len;
    v = field(call, j, "v");
    out->id = field(call, j, "id");
    out->order = field(call, j, "order");
    out->currency = field(call, j, "currency");
    out->success_url = field(call, j, "success_url");
    out->cancel_url = field(call, j, "cancel_url");
    amount = field(call, j, "amount");
    exp = field(call, j, "exp");
    if (!dm_str_eq(v, "1") || !out->id.len || !out->order.len || !out->currency.len ||
        !parse_int64(amount.ptr, amount.len, &out->amount) ||
        !parse_int64(exp.ptr, exp.len, &out->exp)) {
        dm_msg_set(msg, "this checkout link is malformed");
        return DM_ERR_INVALID;
    }
    if (out->exp < (int64_t)time(NULL)) {
        dm_msg_set(msg, "this checkout link has expired");
        return DM_ERR_INVALID;
    }
    return DM_OK;
}

/* ---- state (setting state_dir): what query answers ---- */

/* One checkout's state, one line in <state_dir>/<checkout id>:
 * "<state> <order> <amount> <currency> <exp> <payment id or ->" where state
 * is open, paid or declined. */
typedef struct state {
    char st[16];
    char order[REF_MAX + 1];
    long long amount;
    char currency[4];
    long long exp;
    char payment_id[64];
} state;

static int state_path(const conf *c, dm_str ref, char *out, size_t n)
{
    if (!c->state_dir || ref.len == 0 || ref.len > 64) {
        return 0;
    }
    for (size_t i = 0; i < ref.len; i++) {
        char ch = ref.ptr[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) {
            return 0;
        }
    }
    return snprintf(out, n, "%s/%.*s", c->state_dir, (int)ref.len, ref.ptr) < (int)n;
}

/* Written whole to a temporary file, then renamed: a reader sees the old
 * line or the new one. 0 on success. */
static int state_write(const conf *c, dm_str ref, const state *s)
{
    char path[1200], tmp[1300];
    FILE *f;
    int ok;

    if (!state_path(c, ref, path, sizeof(path)) || strchr(s->order, ' ')) {
        return -1;
    }
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)rand());
    f = fopen(tmp, "w");
    if (!f) {
        return -1;
    }
    ok = fprintf(f, "%s %s %lld %s %lld %s\n", s->st, s->order, s->amount, s->currency, s->exp,
                 s->payment_id[0] ? s->payment_id : "-") > 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return -1;
    }
    return 0;
}

/* The next space-separated word of *p into out (at most n-1 bytes). */
static int next_word(char **p, char *out, size_t n)
{
    char *w = *p, *end;
    size_t len;

    while (*w == ' ') {
        w++;
    }
    end = w + strcspn(w, " \n");
    len = (size_t)(end - w);
    if (len == 0 || len >= n) {
        return 0;
    }
    memcpy(out, w, len);
    out[len] = '\0';
    *p = end;
    return 1;
}

static int state_read(const conf *c, dm_str ref, state *s)
{
    char path[1200], line[512], num[32];
    char *p = line;
    FILE *f;
    int ok;
    int64_t amount = 0, exp = 0;

    memset(s, 0, sizeof(*s));
    if (!state_path(c, ref, path, sizeof(path)) || !(f = fopen(path, "r"))) {
        return -1;
    }
    ok = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    ok = ok && next_word(&p, s->st, sizeof(s->st)) && next_word(&p, s->order, sizeof(s->order)) &&
         next_word(&p, num, sizeof(num)) && parse_int64(num, strlen(num), &amount) &&
         next_word(&p, s->currency, sizeof(s->currency)) && next_word(&p, num, sizeof(num)) &&
         parse_int64(num, strlen(num), &exp) && next_word(&p, s->payment_id, sizeof(s->payment_id));
    if (!ok) {
        return -1;
    }
    s->amount = (long long)amount;
    s->exp = (long long)exp;
    if (strcmp(s->payment_id, "-") == 0) {
        s->payment_id[0] = '\0';
    }
    return 0;
}

/* A new payment identity, "py_sbx_" + 24 hex digits, into out[64]. */
static void new_payment_id(dm_call *call, char *out)
{
    unsigned char rnd[12];
    char *hex;

    host->random_bytes(rnd, sizeof(rnd));
    hex = host->hex_encode(call, rnd, sizeof(rnd));
    snprintf(out, 64, "py_sbx_%s", hex ? hex : "0");
}

/* ---- events ---- */

/* Builds an event and signs it; *body and *sig are call memory. */
static dm_status make_event(dm_call *call, const conf *c, const char *type, dm_str object_id,
                            dm_str order, int64_t amount, dm_str currency, const char *extra,
                            const char **body, size_t *body_len, const char **sig, dm_message *msg)
{
    unsigned char rnd[12], mac[32];
    char *id_hex, *q_id, *q_order = NULL, *signed_text, *mac_hex, *out_sig;
    buf b = {0};
    long long now = (long long)time(NULL);
    char tbuf[24];
    size_t tlen;
    dm_status ret = DM_ERR_INTERNAL;

    host->random_bytes(rnd, sizeof(rnd));
    id_hex = host->hex_encode(call, rnd, sizeof(rnd));
    q_id = host->json_quote(call, object_id);
    if (order.len) {
        q_order = host->json_quote(call, order);
    }
    if (!id_hex || !q_id || (order.len && !q_order)) {
        dm_msg_set(msg, "the checkout's references are not UTF-8");
        return DM_ERR_INVALID;
    }
    buf_fmt(&b, "{\"id\":\"evt_%s\",\"type\":\"%s\",\"created\":%lld,\"livemode\":false,", id_hex,
            type, now);
    buf_str(&b, "\"data\":{\"object\":{\"id\":");
    buf_str(&b, q_id);
    if (q_order) {
        buf_str(&b, ",\"order_id\":");
        buf_str(&b, q_order);
    }
    buf_fmt(&b, ",\"amount_micros\":%lld,\"currency\":\"%.*s\"%s}}}", (long long)amount,
            (int)currency.len, currency.ptr, extra ? extra : "");
    *body = to_call(call, &b);
    if (!*body) {
        dm_msg_set(msg, "out of memory");
        goto cleanup;
    }
    *body_len = b.len;

    /* Stripe's scheme: HMAC-SHA-256 over "<t>.<body>", lower-case hex. */
    tlen = (size_t)snprintf(tbuf, sizeof(tbuf), "%lld.", now);
    signed_text = host->alloc(call, tlen + b.len);
    if (!signed_text) {
        dm_msg_set(msg, "out of memory");
        goto cleanup;
    }
    memcpy(signed_text, tbuf, tlen);
    memcpy(signed_text + tlen, b.p, b.len);
    host->hmac_sha256(c->secret, c->secret_len, signed_text, tlen + b.len, mac);
    mac_hex = host->hex_encode(call, mac, sizeof(mac));
    out_sig = host->alloc(call, 128);
    if (!mac_hex || !out_sig) {
        dm_msg_set(msg, "out of memory");
        goto cleanup;
    }
    snprintf(out_sig, 128, "t=%lld,v1=%s", now, mac_hex);
    *sig = out_sig;
    ret = DM_OK;

cleanup:
    free(b.p);
    return ret;
}

/* Posts an event to this instance's own webhook endpoint. DM_OK when a
 * response arrived (its status in *status, and in *outcome, when not NULL,
 * what the shop did with it: "already_paid", ...; "" when it did not say),
 * else DM_ERR_TEMPORARY. */
static dm_status post_event(dm_call *call, const conf *c, const char *body, size_t len,
                            const char *sig, int *status, const char **outcome, dm_message *msg)
{
    dm_header hs[2];
    dm_http_request req;
    dm_http_response resp;
    size_t ulen = strlen(c->public_url) + strlen(c->name) + 32;
    char *url = host->alloc(call, ulen);
    dm_status st;

    if (!url) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(url, ulen, "%s/api/webhooks/%s", c->public_url, c->name);
    hs[0].name.ptr = "Content-Type";
    hs[0].name.len = 12;
    hs[0].value.ptr = "application/json";
    hs[0].value.len = 16;
    hs[1].name.ptr = SIG_HEADER;
    hs[1].name.len = sizeof(SIG_HEADER) - 1;
    hs[1].value.ptr = sig;
    hs[1].value.len = strlen(sig);
    memset(&req, 0, sizeof(req));
    req.size = sizeof(req);
    req.method = "POST";
    req.url = url;
    req.headers = hs;
    req.n_headers = 2;
    req.body.ptr = body;
    req.body.len = len;
    memset(&resp, 0, sizeof(resp));
    resp.size = sizeof(resp);
    *status = 0;
    st = host->http(call, &req, &resp, msg);
    if (st != DM_OK) {
        return st == DM_ERR_INVALID ? DM_ERR_INTERNAL : DM_ERR_TEMPORARY;
    }
    *status = resp.status;
    if (outcome) {
        size_t n = 0;
        const char *o = host->json_get(call, resp.body, "outcome", &n);
        *outcome = o ? o : "";
    }
    if (resp.status < 200 || resp.status > 299) {
        /* The API's error body says why; keep its message for the page. */
        size_t n = 0;
        dm_str rb = resp.body;
        const char *m = host->json_get(call, rb, "error.message", &n);
        dm_msg_set(msg, "%.*s", m ? (int)(n > 200 ? 200 : n) : 0, m ? m : "");
    }
    return DM_OK;
}

/* ---- create_checkout ---- */

static dm_status make_checkout(dm_call *call, const conf *c, const dm_payment_checkout *in_raw,
                               dm_str *url_out, dm_str *ref_out, dm_message *msg)
{
    dm_payment_checkout in;
    unsigned char rnd[16];
    char *id_hex, *q_order, *q_ok = NULL, *q_cancel = NULL, *payload_b64, *mac, *url, *ref;
    dm_str cur;
    buf b = {0};
    size_t ulen;
    dm_status ret = DM_ERR_INVALID;

    /* Read only the fields the host's structure has (it may be older). */
    memset(&in, 0, sizeof(in));
    memcpy(&in, in_raw, in_raw->size < sizeof(in) ? in_raw->size : sizeof(in));
    if (in.order_id.len == 0 || in.order_id.len > REF_MAX || !in.order_id.ptr ||
        dm_has_ctl(in.order_id.ptr, in.order_id.len)) {
        dm_msg_set(msg, "the order id must be 1 to %d characters without control characters",
                   REF_MAX);
        return DM_ERR_INVALID;
    }
    if (in.amount_micros <= 0 || in.amount_micros > AMOUNT_MAX) {
        dm_msg_set(msg, "the amount must be positive and at most a billion units");
        return DM_ERR_INVALID;
    }
    cur = in.currency;
    if (cur.len == 0) {
        cur.ptr = c->currency;
        cur.len = strlen(c->currency);
    }
    if (!cur.ptr || cur.len != strlen(c->currency) || memcmp(cur.ptr, c->currency, cur.len) != 0) {
        dm_msg_set(msg, "this sandbox takes payments in %s only (its setting currency)",
                   c->currency);
        return DM_ERR_INVALID;
    }
    if ((in.success_url.len &&
         (!in.success_url.ptr || !is_http_url(in.success_url.ptr, in.success_url.len))) ||
        (in.cancel_url.len &&
         (!in.cancel_url.ptr || !is_http_url(in.cancel_url.ptr, in.cancel_url.len)))) {
        dm_msg_set(msg, "return URLs must be http(s) URLs of at most %d characters", URL_MAX);
        return DM_ERR_INVALID;
    }

    host->random_bytes(rnd, sizeof(rnd));
    id_hex = host->hex_encode(call, rnd, sizeof(rnd));
    q_order = host->json_quote(call, in.order_id);
    if (in.success_url.len) {
        q_ok = host->json_quote(call, in.success_url);
    }
    if (in.cancel_url.len) {
        q_cancel = host->json_quote(call, in.cancel_url);
    }
    if (!id_hex || !q_order || (in.success_url.len && !q_ok) || (in.cancel_url.len && !q_cancel)) {
        dm_msg_set(msg, "the order id and return URLs must be UTF-8");
        return DM_ERR_INVALID;
    }
    buf_fmt(&b, "{\"v\":1,\"id\":\"cs_sbx_%s\",\"order\":", id_hex);
    buf_str(&b, q_order);
    buf_fmt(&b, ",\"amount\":%lld,\"currency\":\"%s\",\"exp\":%lld", (long long)in.amount_micros,
            c->currency, (long long)time(NULL) + (long long)c->ttl);
    if (q_ok) {
        buf_str(&b, ",\"success_url\":");
        buf_str(&b, q_ok);
    }
    if (q_cancel) {
        buf_str(&b, ",\"cancel_url\":");
        buf_str(&b, q_cancel);
    }
    buf_str(&b, "}");
    if (b.oom) {
        dm_msg_set(msg, "out of memory");
        ret = DM_ERR_INTERNAL;
        goto cleanup;
    }
    payload_b64 = b64url(call, b.p, b.len);
    mac = payload_b64 ? token_mac(call, c, payload_b64, strlen(payload_b64)) : NULL;
    if (!mac) {
        dm_msg_set(msg, "out of memory");
        ret = DM_ERR_INTERNAL;
        goto cleanup;
    }
    if (strlen(payload_b64) + 1 + strlen(mac) > TOKEN_MAX) {
        dm_msg_set(msg, "the order id and return URLs are too long for a checkout link");
        goto cleanup;
    }
    ulen = strlen(c->public_url) + strlen(c->name) + strlen(payload_b64) + strlen(mac) + 40;
    url = host->alloc(call, ulen);
    ref = host->alloc(call, 48);
    if (!url || !ref) {
        dm_msg_set(msg, "out of memory");
        ret = DM_ERR_INTERNAL;
        goto cleanup;
    }
    url_out->len = (size_t)snprintf(url, ulen, "%s/api/plugins/%s/checkout/%s.%s", c->public_url,
                                    c->name, payload_b64, mac);
    url_out->ptr = url;
    ref_out->len = (size_t)snprintf(ref, 48, "cs_sbx_%s", id_hex);
    ref_out->ptr = ref;
    ret = DM_OK;

cleanup:
    free(b.p);
    return ret;
}

static dm_status sandbox_create_checkout(dm_call *call, const dm_payment_checkout *in,
                                         dm_payment_checkout_result *out, dm_message *msg)
{
    conf c;
    dm_str url, ref;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    if (!DM_HAS_FIELD(out, dm_payment_checkout_result, provider_ref)) {
        dm_msg_set(msg, "the host's checkout result has no room for the provider reference");
        return DM_ERR_INTERNAL;
    }
    st = make_checkout(call, &c, in, &url, &ref, msg);
    if (st == DM_OK && c.state_dir) {
        state sv;
        memset(&sv, 0, sizeof(sv));
        snprintf(sv.st, sizeof(sv.st), "open");
        snprintf(sv.order, sizeof(sv.order), "%.*s", (int)in->order_id.len, in->order_id.ptr);
        sv.amount = (long long)in->amount_micros;
        snprintf(sv.currency, sizeof(sv.currency), "%s", c.currency);
        sv.exp = (long long)time(NULL) + (long long)c.ttl;
        if (state_write(&c, ref, &sv) != 0) {
            dm_msg_set(msg, "the sandbox could not write its state_dir");
            return DM_ERR_TEMPORARY;
        }
    }
    if (st == DM_OK) {
        out->redirect_url = url;
        out->provider_ref = ref;
    }
    return st;
}

/* ---- query (ABI 1.4): the checkout's state from state_dir ---- */

static dm_status sandbox_query(dm_call *call, dm_str provider_ref, dm_payment_event *out,
                               dm_message *msg)
{
    conf c;
    state sv;
    dm_payment_event ev;
    uint32_t size = out->size;
    size_t n;
    char *buf_;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    if (!c.state_dir) {
        dm_msg_set(msg, "this sandbox keeps no state (set state_dir) and cannot be queried");
        return DM_ERR_UNSUPPORTED;
    }
    if (state_read(&c, provider_ref, &sv) != 0) {
        dm_msg_set(msg, "no such checkout");
        return DM_ERR_PERMANENT;
    }
    memset(&ev, 0, sizeof(ev));
    ev.provider_ref = provider_ref;
    n = strlen(sv.order);
    buf_ = host->alloc(call, n + 4 + strlen(sv.payment_id) + 1);
    if (!buf_) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    memcpy(buf_, sv.order, n + 1);
    ev.order_id.ptr = buf_;
    ev.order_id.len = n;
    memcpy(buf_ + n + 1, sv.currency, 4);
    ev.currency.ptr = buf_ + n + 1;
    ev.currency.len = strlen(sv.currency);
    memcpy(buf_ + n + 5, sv.payment_id, strlen(sv.payment_id) + 1);
    ev.payment_id.ptr = buf_ + n + 5;
    ev.payment_id.len = strlen(sv.payment_id);
    ev.amount_micros = sv.amount;
    if (strcmp(sv.st, "paid") == 0) {
        ev.status = DM_PAY_PAID;
    } else if (strcmp(sv.st, "declined") == 0) {
        ev.status = DM_PAY_FAILED;
    } else if (sv.exp < (long long)time(NULL)) {
        ev.status = DM_PAY_EXPIRED;
    } else {
        ev.status = DM_PAY_PENDING;
    }
    memcpy(out, &ev, size < sizeof(ev) ? size : sizeof(ev));
    out->size = size;
    return DM_OK;
}

/* ---- pages ---- */

static const char PAGE_HEAD[] =
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>Sandbox checkout</title>\n<style>\n"
    "body{font-family:system-ui,sans-serif;max-width:30em;margin:3em auto;padding:0 1em;"
    "color:#222}\n"
    ".sandbox{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em;border-radius:4px}\n"
    "form{display:inline-block;margin:1em 1em 0 0}\n"
    "button{font-size:1.1em;padding:.5em 1.5em;cursor:pointer}\n"
    "code{word-break:break-all}\n"
    "</style>\n</head>\n<body>\n"
    "<p class=\"sandbox\"><strong>Sandbox</strong> &mdash; a test gateway: no money moves.</p>\n";

static const char PAGE_TAIL[] = "</body>\n</html>\n";

/* Fills resp with the page in b (consumed) and the given status. */
static dm_status page(dm_call *call, buf *b, int status, dm_plugin_response *resp, dm_message *msg)
{
    char *body;

    buf_str(b, PAGE_TAIL);
    body = to_call(call, b);
    free(b->p);
    b->p = NULL;
    if (!body) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    resp->status = status;
    resp->content_type.ptr = "text/html; charset=utf-8";
    resp->content_type.len = strlen(resp->content_type.ptr);
    resp->body.ptr = body;
    resp->body.len = strlen(body);
    return DM_OK;
}

static dm_status error_page(dm_call *call, int status, const char *why, dm_plugin_response *resp,
                            dm_message *msg)
{
    buf b = {0};

    buf_str(&b, PAGE_HEAD);
    buf_str(&b, "<h1>This checkout cannot be used</h1>\n<p>");
    buf_html(&b, why, strlen(why));
    buf_str(&b, "</p>\n");
    return page(call, &b, status, resp, msg);
}

static dm_status checkout_page(dm_call *call, const checkout *co, dm_str token,
                               dm_plugin_response *resp, dm_message *msg)
{
    buf b = {0};
    char amount[48];

    format_amount(co->amount, amount, sizeof(amount));
    buf_str(&b, PAGE_HEAD);
    buf_str(&b, "<h1>Pay ");
    buf_html(&b, amount, strlen(amount));
    buf_str(&b, " ");
    buf_html(&b, co->currency.ptr, co->currency.len);
    buf_str(&b, "</h1>\n<p>Order <code>");
    buf_html(&b, co->order.ptr, co->order.len);
    buf_str(&b, "</code><br>Checkout <code>");
    buf_html(&b, co->id.ptr, co->id.len);
    buf_str(&b, "</code></p>\n");
    /* Relative actions: the page is .../checkout/<token>, so "<token>/pay"
     * is .../checkout/<token>/pay on whatever origin the buyer used. */
    buf_str(&b, "<form method=\"post\" action=\"");
    buf_html(&b, token.ptr, token.len);
    buf_str(&b, "/pay\"><button type=\"submit\">Pay</button></form>\n"
                "<form method=\"post\" action=\"");
    buf_html(&b, token.ptr, token.len);
    buf_str(&b, "/decline\"><button type=\"submit\">Decline</button></form>\n");
    return page(call, &b, 200, resp, msg);
}

enum { ACT_PAY, ACT_DECLINE, ACT_PAY_QUIETLY, ACT_UNDERPAY, ACT_OVERPAY };

/* POST checkout/<token>/<action>: the event, posted to ourselves. pay: a
 * new payment (its own payment id); decline; and with test_endpoints yes:
 * pay-quietly (the payment is recorded in state_dir but its webhook is
 * lost, for the janitor), underpay / overpay (a tenth less / more: an
 * event needing review). */
static dm_status checkout_act(dm_call *call, const conf *c, const checkout *co, int act,
                              dm_plugin_response *resp, dm_message *msg)
{
    const char *body, *sig;
    size_t len;
    int status = 0;
    const char *outcome = "";
    dm_message why;
    dm_status st;
    buf b = {0};
    int paid = act != ACT_DECLINE;
    dm_str back = paid ? co->success_url : co->cancel_url;
    int already_paid;
    state sv;
    char extra[160];
    const char *type = act == ACT_DECLINE    ? "checkout.declined"
                       : act == ACT_UNDERPAY ? "checkout.underpaid"
                       : act == ACT_OVERPAY  ? "checkout.overpaid"
                                             : "checkout.paid";
    int64_t amount = act == ACT_UNDERPAY  ? co->amount - co->amount / 10
                     : act == ACT_OVERPAY ? co->amount + co->amount / 10
                                          : co->amount;

    memset(&why, 0, sizeof(why));
    memset(&sv, 0, sizeof(sv));
    extra[0] = '\0';
    snprintf(sv.st, sizeof(sv.st), "%s", act == ACT_DECLINE ? "declined" : "paid");
    snprintf(sv.order, sizeof(sv.order), "%.*s", (int)co->order.len, co->order.ptr);
    sv.amount = (long long)amount;
    snprintf(sv.currency, sizeof(sv.currency), "%.*s", (int)co->currency.len, co->currency.ptr);
    sv.exp = (long long)co->exp;
    if (paid) {
        new_payment_id(call, sv.payment_id);
        snprintf(extra, sizeof(extra), ",\"payment_id\":\"%s\",\"expected_micros\":%lld",
                 sv.payment_id, (long long)co->amount);
    }
    if (c->state_dir && act != ACT_UNDERPAY && act != ACT_OVERPAY &&
        state_write(c, co->id, &sv) != 0) {
        dm_msg_set(msg, "the sandbox could not write its state_dir");
        return DM_ERR_INTERNAL;
    }
    if (act == ACT_PAY_QUIETLY) {
        buf_str(&b, PAGE_HEAD);
        buf_str(&b, "<h1>Payment accepted</h1>\n<p>The webhook was withheld (test): the shop "
                    "learns of this payment from the janitor or a redelivery.</p>\n");
        return page(call, &b, 200, resp, msg);
    }
    st = make_event(call, c, type, co->id, co->order, amount, co->currency, extra, &body, &len,
                    &sig, msg);
    if (st != DM_OK) {
        return st;
    }
    st = post_event(call, c, body, len, sig, &status, &outcome, &why);
    if (st == DM_ERR_INTERNAL) {
        dm_msg_set(msg, "%s", why.text);
        return st;
    }
    /* Decline pressed after Pay: the shop kept the order paid; say so
     * rather than "declined". */
    already_paid =
        !paid && st == DM_OK && status >= 200 && status <= 299 && !strcmp(outcome, "already_paid");
    buf_str(&b, PAGE_HEAD);
    if (already_paid) {
        buf_str(&b, "<h1>Already paid</h1>\n<p>This checkout was already paid: Decline changed "
                    "nothing and the order stays paid.</p>\n");
    } else {
        buf_str(&b, paid ? "<h1>Payment accepted</h1>\n" : "<h1>Payment declined</h1>\n");
    }
    buf_str(&b, "<p>Order <code>");
    buf_html(&b, co->order.ptr, co->order.len);
    buf_str(&b, "</code></p>\n<p>");
    if (st != DM_OK) {
        buf_str(&b, "The shop could not be notified: ");
        buf_html(&b, why.text, strlen(why.text));
    } else if (status >= 200 && status <= 299) {
        buf_fmt(&b, "The shop was notified (webhook answered HTTP %d).", status);
    } else {
        buf_fmt(&b, "The shop refused the notification (webhook answered HTTP %d", status);
        if (why.text[0]) {
            buf_str(&b, ": ");
            buf_html(&b, why.text, strlen(why.text));
        }
        buf_str(&b, ").");
    }
    buf_str(&b, "</p>\n");
    if (back.len) {
        buf_str(&b, "<p><a href=\"");
        buf_html(&b, back.ptr, back.len);
        buf_str(&b, "\">Back to the shop</a></p>\n");
    }
    return page(call, &b, st == DM_OK && status >= 200 && status <= 299 ? 200 : 502, resp, msg);
}

/* POST checkout (test_endpoints yes): {order_id, amount_micros, currency?,
 * success_url?, cancel_url?} → 201 {"url","provider_ref"}. */
static dm_status test_create(dm_call *call, const conf *c, dm_str body, dm_plugin_response *resp,
                             dm_message *msg)
{
    dm_payment_checkout in;
    dm_str order = field(call, body, "order_id"), amount = field(call, body, "amount_micros");
    dm_str url, ref;
    buf b = {0};
    char *q_url, *q_ref, *out;
    dm_status st;

    memset(&in, 0, sizeof(in));
    in.size = sizeof(in);
    if (!order.ptr || !amount.ptr || !parse_int64(amount.ptr, amount.len, &in.amount_micros)) {
        dm_msg_set(msg, "the body must be a JSON object with order_id and amount_micros");
        return DM_ERR_INVALID;
    }
    in.order_id = order;
    in.currency = field(call, body, "currency");
    in.success_url = field(call, body, "success_url");
    in.cancel_url = field(call, body, "cancel_url");
    st = make_checkout(call, c, &in, &url, &ref, msg);
    if (st != DM_OK) {
        return st;
    }
    q_url = host->json_quote(call, url);
    q_ref = host->json_quote(call, ref);
    buf_str(&b, "{\"url\":");
    buf_str(&b, q_url ? q_url : "null");
    buf_str(&b, ",\"provider_ref\":");
    buf_str(&b, q_ref ? q_ref : "null");
    buf_str(&b, "}");
    out = to_call(call, &b);
    free(b.p);
    if (!out) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    resp->status = 201;
    resp->content_type.ptr = "application/json";
    resp->content_type.len = 16;
    resp->body.ptr = out;
    resp->body.len = strlen(out);
    return DM_OK;
}

/* A JSON answer {"status":<webhook status>,"outcome":"..."}. */
static dm_status posted_answer(dm_call *call, int status, const char *outcome,
                               dm_plugin_response *resp, dm_message *msg)
{
    buf b = {0};
    dm_str o = {outcome ? outcome : "", outcome ? strlen(outcome) : 0};
    char *q = host->json_quote(call, o), *out;

    buf_fmt(&b, "{\"status\":%d,\"outcome\":%s}", status, q ? q : "\"\"");
    out = to_call(call, &b);
    free(b.p);
    if (!out) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    resp->status = 200;
    resp->content_type.ptr = "application/json";
    resp->content_type.len = 16;
    resp->body.ptr = out;
    resp->body.len = strlen(out);
    return DM_OK;
}

/* POST dispute (test_endpoints yes): {provider_ref, order_id?, payment_id?,
 * status: opened|won|lost, amount_micros, currency?} posts
 * charge.dispute.created or charge.dispute.closed. POST redeliver:
 * {provider_ref} posts the checkout.paid event of a checkout state_dir
 * records as paid, with its payment id (a late or repeated webhook). */
static dm_status test_post(dm_call *call, const conf *c, int dispute, dm_str body,
                           dm_plugin_response *resp, dm_message *msg)
{
    dm_str ref = field(call, body, "provider_ref"), order = field(call, body, "order_id");
    dm_str amount_s = field(call, body, "amount_micros"), cur = field(call, body, "currency");
    dm_str how = field(call, body, "status"), pid = field(call, body, "payment_id");
    const char *type = "checkout.paid", *ev_body, *sig, *outcome = "";
    char extra[200];
    int64_t amount = 0;
    size_t len;
    int status = 0;
    dm_message why;
    dm_status st;

    memset(&why, 0, sizeof(why));
    if (!ref.len || ref.len > REF_MAX || dm_has_ctl(ref.ptr, ref.len) || pid.len > 64 ||
        dm_has_ctl(pid.ptr, pid.len) || order.len > REF_MAX || dm_has_ctl(order.ptr, order.len)) {
        dm_msg_set(msg, "the body needs provider_ref (and plain order_id, payment_id)");
        return DM_ERR_INVALID;
    }
    if (dispute) {
        if (!amount_s.ptr || !parse_int64(amount_s.ptr, amount_s.len, &amount)) {
            dm_msg_set(msg, "a dispute needs amount_micros");
            return DM_ERR_INVALID;
        }
        if (!cur.len) {
            cur.ptr = c->currency;
            cur.len = strlen(c->currency);
        }
        if (!is_currency(cur.ptr, cur.len)) {
            dm_msg_set(msg, "currency must be an ISO 4217 code");
            return DM_ERR_INVALID;
        }
        if (dm_str_eq(how, "opened")) {
            type = "charge.dispute.created";
            extra[0] = '\0';
        } else if (dm_str_eq(how, "won") || dm_str_eq(how, "lost")) {
            type = "charge.dispute.closed";
        } else {
            dm_msg_set(msg, "status must be opened, won or lost");
            return DM_ERR_INVALID;
        }
        snprintf(extra, sizeof(extra), "%s%.*s%s,\"status\":\"%.*s\"",
                 pid.len ? ",\"payment_id\":\"" : "", (int)pid.len, pid.ptr ? pid.ptr : "",
                 pid.len ? "\"" : "", (int)how.len, how.ptr);
    } else {
        state sv;
        if (state_read(c, ref, &sv) != 0 || strcmp(sv.st, "paid") != 0) {
            dm_msg_set(msg, "no paid checkout %.*s in state_dir", (int)ref.len, ref.ptr);
            return DM_ERR_INVALID;
        }
        amount = sv.amount;
        order.ptr = host->alloc(call, strlen(sv.order) + 1);
        cur.ptr = host->alloc(call, 4);
        if (!order.ptr || !cur.ptr) {
            dm_msg_set(msg, "out of memory");
            return DM_ERR_INTERNAL;
        }
        memcpy((char *)order.ptr, sv.order, strlen(sv.order) + 1);
        order.len = strlen(sv.order);
        memcpy((char *)cur.ptr, sv.currency, 4);
        cur.len = strlen(sv.currency);
        snprintf(extra, sizeof(extra), ",\"payment_id\":\"%s\"", sv.payment_id);
    }
    st = make_event(call, c, type, ref, order, amount, cur, extra, &ev_body, &len, &sig, msg);
    if (st != DM_OK) {
        return st;
    }
    st = post_event(call, c, ev_body, len, sig, &status, &outcome, &why);
    if (st != DM_OK) {
        dm_msg_set(msg, "%s", why.text);
        return st;
    }
    return posted_answer(call, status, outcome, resp, msg);
}

static dm_status method_not_allowed(dm_call *call, dm_plugin_response *resp, const char *allow,
                                    dm_message *msg)
{
    static const char body[] = "method not allowed\n";
    dm_header *h = host->alloc(call, sizeof(*h));

    if (!h) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    h->name.ptr = "Allow";
    h->name.len = 5;
    h->value.ptr = allow;
    h->value.len = strlen(allow);
    resp->status = 405;
    resp->body.ptr = body;
    resp->body.len = sizeof(body) - 1;
    resp->headers = h;
    resp->n_headers = 1;
    return DM_OK;
}

static dm_status sandbox_handle_request(dm_call *call, const dm_plugin_request *req_raw,
                                        dm_plugin_response *resp, dm_message *msg)
{
    dm_plugin_request req;
    conf c;
    checkout co;
    dm_str rest, token, action = {NULL, 0};
    const char *slash;
    int is_get, is_post;
    dm_status st;

    memset(&req, 0, sizeof(req));
    memcpy(&req, req_raw, req_raw->size < sizeof(req) ? req_raw->size : sizeof(req));
    st = read_conf(call, &c, msg);
    if (st != DM_OK) {
        return st;
    }
    is_get = req.method && (!strcmp(req.method, "GET") || !strcmp(req.method, "HEAD"));
    is_post = req.method && !strcmp(req.method, "POST");

    if (dm_str_eq(req.path, "/checkout")) {
        if (!c.test_endpoints) {
            dm_msg_set(msg, "no such page");
            return DM_ERR_UNSUPPORTED;
        }
        return is_post ? test_create(call, &c, req.body, resp, msg)
                       : method_not_allowed(call, resp, "POST", msg);
    }
    if (dm_str_eq(req.path, "/dispute") || dm_str_eq(req.path, "/redeliver")) {
        if (!c.test_endpoints) {
            dm_msg_set(msg, "no such page");
            return DM_ERR_UNSUPPORTED;
        }
        return is_post ? test_post(call, &c, dm_str_eq(req.path, "/dispute"), req.body, resp, msg)
                       : method_not_allowed(call, resp, "POST", msg);
    }
    if (req.path.len <= 10 || strncmp(req.path.ptr, "/checkout/", 10) != 0) {
        dm_msg_set(msg, "no such page");
        return DM_ERR_UNSUPPORTED;
    }
    rest.ptr = req.path.ptr + 10;
    rest.len = req.path.len - 10;
    slash = memchr(rest.ptr, '/', rest.len);
    token.ptr = rest.ptr;
    token.len = slash ? (size_t)(slash - rest.ptr) : rest.len;
    if (slash) {
        action.ptr = slash + 1;
        action.len = rest.len - token.len - 1;
        if (!dm_str_eq(action, "pay") && !dm_str_eq(action, "decline") &&
            !(c.test_endpoints &&
              (dm_str_eq(action, "pay-quietly") || dm_str_eq(action, "underpay") ||
               dm_str_eq(action, "overpay")))) {
            dm_msg_set(msg, "no such page");
            return DM_ERR_UNSUPPORTED;
        }
        if (!is_post) {
            return method_not_allowed(call, resp, "POST", msg);
        }
    } else if (!is_get) {
        return method_not_allowed(call, resp, "GET, HEAD", msg);
    }

    if (token_read(call, &c, token, &co, msg) != DM_OK) {
        return error_page(call, 400, msg->text, resp, msg);
    }
    if (!slash) {
        return checkout_page(call, &co, token, resp, msg);
    }
    return checkout_act(call, &c, &co,
                        dm_str_eq(action, "pay")           ? ACT_PAY
                        : dm_str_eq(action, "decline")     ? ACT_DECLINE
                        : dm_str_eq(action, "pay-quietly") ? ACT_PAY_QUIETLY
                        : dm_str_eq(action, "underpay")    ? ACT_UNDERPAY
                                                           : ACT_OVERPAY,
                        resp, msg);
}

/* ---- parse_webhook ---- */

static int is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

/* Verifies the Sandbox-Signature header against the raw body. */
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
    /* "t=<unix>,v1=<hex>[,v1=<hex>…]": elements split on ',', each on its
     * first '='; other schemes (v0) are ignored, as Stripe's libraries do. */
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
    host->hmac_sha256(c->secret, c->secret_len, signed_text, t_len + 1 + body.len, mac);
    free(signed_text);
    expected = host->hex_encode(call, mac, sizeof(mac));
    if (!expected) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    for (size_t i = 0; i < n_v1; i++) {
        /* No early exit: every candidate is compared. */
        ok |= host->equal_ct(expected, v1[i], 64);
    }
    if (!ok) {
        dm_msg_set(msg, "the " SIG_HEADER " does not match the body (wrong secret, or the body "
                        "was altered)");
        return DM_ERR_INVALID;
    }
    if (ts < (int64_t)time(NULL) - TOLERANCE_S) {
        dm_msg_set(msg, "the " SIG_HEADER " timestamp is more than %d s old", TOLERANCE_S);
        return DM_ERR_INVALID;
    }
    if (ts > (int64_t)time(NULL) + TOLERANCE_S) {
        dm_msg_set(msg, "the " SIG_HEADER " timestamp is more than %d s in the future",
                   TOLERANCE_S);
        return DM_ERR_INVALID;
    }
    return DM_OK;
}

static dm_status sandbox_parse_webhook(dm_call *call, dm_str raw_body, const dm_header *headers,
                                       size_t n_headers, dm_payment_event *out, dm_message *msg)
{
    conf c;
    dm_payment_event ev;
    dm_str type, amount;
    uint32_t size = out->size;
    /* the host's event has the fields of ABI 1.4 (DM_HAS_FIELD on size) */
    int v14 = size >= offsetof(dm_payment_event, detail) + sizeof(dm_str);
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    st = verify_signature(call, &c, raw_body, headers, n_headers, msg);
    if (st != DM_OK) {
        return st;
    }
    memset(&ev, 0, sizeof(ev));
    ev.event_id = field(call, raw_body, "id");
    type = field(call, raw_body, "type");
    ev.provider_ref = field(call, raw_body, "data.object.id");
    ev.order_id = field(call, raw_body, "data.object.order_id");
    ev.currency = field(call, raw_body, "data.object.currency");
    amount = field(call, raw_body, "data.object.amount_micros");
    if (!ev.event_id.len || ev.event_id.len > REF_MAX || !type.ptr) {
        dm_msg_set(msg, "the event has no id or type");
        return DM_ERR_INVALID;
    }
    if (amount.ptr &&
        (!parse_int64(amount.ptr, amount.len, &ev.amount_micros) || ev.amount_micros < 0)) {
        dm_msg_set(msg, "the event's amount_micros is not a non-negative integer");
        return DM_ERR_INVALID;
    }
    if (ev.currency.len && !is_currency(ev.currency.ptr, ev.currency.len)) {
        dm_msg_set(msg, "the event's currency is not an ISO 4217 code");
        return DM_ERR_INVALID;
    }
    if (dm_str_eq(type, "checkout.paid")) {
        ev.status = DM_PAY_PAID;
    } else if (dm_str_eq(type, "checkout.declined")) {
        ev.status = DM_PAY_FAILED;
    } else if (dm_str_eq(type, "charge.refunded")) {
        ev.status = DM_PAY_REFUNDED;
    } else if (v14 &&
               (dm_str_eq(type, "checkout.underpaid") || dm_str_eq(type, "checkout.overpaid"))) {
        ev.status = DM_PAY_NEEDS_REVIEW;
        ev.review_reason =
            dm_str_eq(type, "checkout.underpaid") ? DM_REVIEW_UNDERPAID : DM_REVIEW_OVERPAID;
        ev.detail = field(call, raw_body, "data.object.expected_micros");
    } else if (v14 && dm_str_eq(type, "charge.dispute.created")) {
        ev.status = DM_PAY_DISPUTE_OPENED;
    } else if (v14 && dm_str_eq(type, "charge.dispute.closed")) {
        dm_str how = field(call, raw_body, "data.object.status");
        if (dm_str_eq(how, "won")) {
            ev.status = DM_PAY_DISPUTE_WON;
        } else if (dm_str_eq(how, "lost")) {
            ev.status = DM_PAY_DISPUTE_LOST;
        } else {
            dm_msg_set(msg, "a closed dispute must say won or lost");
            return DM_ERR_INVALID;
        }
    } else {
        /* verified, but not a type we act on (or a 1.4 type an older
         * host cannot take) */
        ev.status = DM_PAY_IGNORED;
    }
    if (v14) {
        ev.payment_id = field(call, raw_body, "data.object.payment_id");
        if (ev.payment_id.len > REF_MAX || dm_has_ctl(ev.payment_id.ptr, ev.payment_id.len)) {
            dm_msg_set(msg, "the event's payment_id is not a reference");
            return DM_ERR_INVALID;
        }
        if (ev.detail.len) {
            /* "expected 10000000": words for staff */
            size_t dn = ev.detail.len + 16;
            char *d = host->alloc(call, dn);
            if (d) {
                ev.detail.len =
                    (size_t)snprintf(d, dn, "expected %.*s", (int)ev.detail.len, ev.detail.ptr);
                ev.detail.ptr = d;
            }
        }
    }
    /* Write only what the host's structure has room for. */
    memcpy(out, &ev, size < sizeof(ev) ? size : sizeof(ev));
    out->size = size;
    return DM_OK;
}

/* ---- refund: a charge.refunded event, posted to ourselves ---- */

static dm_status sandbox_refund(dm_call *call, dm_str provider_ref, int64_t amount_micros,
                                dm_str currency, dm_message *msg)
{
    conf c;
    const char *body, *sig;
    size_t len;
    int status = 0;
    dm_str none = {NULL, 0};
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    if (provider_ref.len == 0 || provider_ref.len > REF_MAX || !provider_ref.ptr ||
        dm_has_ctl(provider_ref.ptr, provider_ref.len)) {
        dm_msg_set(msg, "the provider reference must be 1 to %d characters", REF_MAX);
        return DM_ERR_INVALID;
    }
    if (amount_micros <= 0 || amount_micros > AMOUNT_MAX || !currency.ptr ||
        !is_currency(currency.ptr, currency.len)) {
        dm_msg_set(msg, "a refund needs a positive amount and an ISO 4217 currency");
        return DM_ERR_INVALID;
    }
    st = make_event(call, &c, "charge.refunded", provider_ref, none, amount_micros, currency, NULL,
                    &body, &len, &sig, msg);
    if (st != DM_OK) {
        return st;
    }
    st = post_event(call, &c, body, len, sig, &status, NULL, msg);
    if (st != DM_OK) {
        return st;
    }
    if (status >= 200 && status <= 299) {
        return DM_OK;
    }
    if (!msg->text[0]) {
        dm_msg_set(msg, "the refund webhook answered HTTP %d", status);
    }
    return status == 429 || status >= 500 ? DM_ERR_TEMPORARY : DM_ERR_PERMANENT;
}

/* ---- life cycle ---- */

static dm_status sandbox_init(const dm_host *h, dm_call *call, dm_message *msg)
{
    const char *enabled = h->setting(call, "enabled");
    const char *name = h->setting(call, "_name");
    conf c;
    dm_status st;

    host = h;
    if (!enabled || strcmp(enabled, "yes") != 0) {
        dm_msg_set(msg,
                   "the sandbox payment gateway accepts payments that move no money and must never "
                   "run in production; to use it for development or a demo, add "
                   "DeepMinePluginSet %s enabled yes",
                   name ? name : "<name>");
        return DM_ERR_CONFIG;
    }
    st = read_conf(call, &c, msg);
    if (st != DM_OK) {
        return st;
    }
    h->log(call, DM_LOG_WARN,
           "SANDBOX payments are enabled: checkouts are paid with a button and no money moves; "
           "never enable this in production");
    return DM_OK;
}

static dm_status sandbox_health(dm_call *call, dm_message *msg)
{
    conf c;
    return read_conf(call, &c, msg);
}

static const dm_payment_ops ops = {
    .size = sizeof(dm_payment_ops),
    .create_checkout = sandbox_create_checkout,
    .parse_webhook = sandbox_parse_webhook,
    .refund = sandbox_refund,
    .query = sandbox_query,
    .display_name = "Sandbox (no money moves)",
    .method_kind = "card",
    .currencies = "*",
};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_PAYMENT,
    .name = "payment-sandbox",
    .version = SANDBOX_VERSION,
    .required_settings = NULL, /* init checks them, `enabled` first */
    .init = sandbox_init,
    .fini = NULL,
    .ops = &ops,
    .health = sandbox_health,
    .handle_request = sandbox_handle_request,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *h)
{
    /* Everything used of the host table is in ABI 1.0; the reserved
     * settings of 1.2 are checked in init (an older host leaves them NULL,
     * and the plugin refuses with a sentence). */
    if (!DM_HAS_FIELD(h, dm_host, json_quote)) {
        return NULL;
    }
    return &desc;
}
