/*
 * payment-coinbase — crypto payments through Coinbase Commerce charges.
 *
 * create_checkout creates a charge (POST /charges: pricing_type
 * fixed_price, local_price, metadata.order_id, redirect_url, cancel_url)
 * and sends the buyer to its hosted_url; the provider reference is the
 * charge's code. A webhook (X-CC-Webhook-Signature: lower-case hex
 * HMAC-SHA-256 of the raw body, keyed with the shared secret) is only a
 * hint: the scheme has no timestamp, so a captured body could be replayed
 * for ever. The plugin therefore re-reads the charge (GET /charges/{code})
 * through the host's HTTP client and reports what the charge itself says,
 * never what the event's type claims. query is the same GET.
 *
 * Invariants:
 * - Only the re-read charge decides a status, an order id and an amount;
 *   the webhook's own data is used for nothing but finding the charge.
 * - The event id given to the host is "<event id>/<what the charge
 *   showed>" (paid, pending, failed, …): five deliveries of one event that
 *   all see the same charge are one event; a delivery that sees the charge
 *   in a new state is a new one, so a redelivery after the charge moved is
 *   never swallowed as a duplicate.
 * - Every HTTP call of the provider goes through one small table of calls
 *   (struct backend: create a charge, read a charge, read a webhook), into
 *   a provider-neutral view of a charge (struct charge). Coinbase is
 *   replacing Commerce by the Coinbase Business Checkouts API; that second
 *   backend fills the same table and the same view (README.md).
 * - No refund function: Commerce has no refund API; staff record manual
 *   refunds they made in Coinbase's dashboard.
 * - Secrets (api_key, webhook_secret) never appear in a message.
 * - Per-instance state lives in the settings, read on every call; the only
 *   static is the host table (the .so may be declared twice).
 */
#include <deepmine/plugin.h>
#include <deepmine/plugin_util.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define COINBASE_VERSION "1.0.0"
#define CC_API_VERSION "2018-03-22"
#define DEFAULT_API_BASE "https://api.commerce.coinbase.com"
#define SIG_HEADER "X-CC-Webhook-Signature"
#define TIMEOUT_DEFAULT 10000
#define TIMEOUT_MIN 100
#define TIMEOUT_MAX 60000
#define ORDER_MAX 64
#define REF_MAX 64
#define EVENT_ID_MAX 200
#define URL_MAX 2048
#define BASE_MAX 512
#define LIST_MAX 64 /* timeline entries and payments looked at */
/* A billion units of any currency. */
#define AMOUNT_MAX ((int64_t)1000000000 * 1000000)
/* Commerce charges can be paid for 60 minutes (README, sources). */
#define CHARGE_LIFETIME_S 3600

static const dm_host *host;

/* ---- small helpers ---- */

static dm_str mkstr(const char *s)
{
    dm_str out = {s, s ? strlen(s) : 0};
    return out;
}

/* Two present strings with the same bytes. */
static int same(dm_str a, dm_str b)
{
    return a.ptr && b.ptr && a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

/* Visible ASCII only: safe in a URL path, a header and a log line. */
static int is_token(dm_str s, size_t max, int dash_alnum_only)
{
    if (!s.ptr || s.len == 0 || s.len > max) {
        return 0;
    }
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (dash_alnum_only) {
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '-')) {
                return 0;
            }
        } else if (c <= 0x20 || c >= 0x7f) {
            return 0;
        }
    }
    return 1;
}

static int is_currency(dm_str s)
{
    if (!s.ptr || s.len != 3) {
        return 0;
    }
    for (size_t i = 0; i < 3; i++) {
        if (s.ptr[i] < 'A' || s.ptr[i] > 'Z') {
            return 0;
        }
    }
    return 1;
}

static int is_http_url(dm_str s)
{
    return s.ptr && s.len <= URL_MAX && !dm_has_ctl(s.ptr, s.len) &&
           ((s.len > 7 && strncmp(s.ptr, "http://", 7) == 0) ||
            (s.len > 8 && strncmp(s.ptr, "https://", 8) == 0));
}

/* A decimal integer setting, the whole text. */
static int parse_uint(const char *s, long *out)
{
    long v = 0;

    if (!s || !*s || strlen(s) > 9) {
        return 0;
    }
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            return 0;
        }
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return 1;
}

/* A JSON value at `path` in call memory; {NULL, 0} when absent or holding
 * a NUL byte. */
static dm_str jget(dm_call *call, dm_str json, const char *path)
{
    dm_str s = {NULL, 0};

    if (!json.ptr || !json.len) {
        return s;
    }
    s.ptr = host->json_get(call, json, path, &s.len);
    if (s.ptr && !memchr(s.ptr, '\0', s.len)) {
        return s;
    }
    s.ptr = NULL;
    s.len = 0;
    return s;
}

/* ---- money ---- */

/* Digits after the decimal point of a currency's minor unit (ISO 4217). */
static int minor_digits(dm_str cur)
{
    static const char zero[] =
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF";
    static const char three[] = "BHD IQD JOD KWD LYD OMR TND";
    char c[4];

    memcpy(c, cur.ptr, 3);
    c[3] = '\0';
    if (strstr(zero, c)) {
        return 0;
    }
    if (strstr(three, c)) {
        return 3;
    }
    return 2;
}

/* Micro-units as Coinbase's decimal string with the currency's minor
 * digits: 12500000 USD → "12.50", 1250000000 JPY → "1250". 0 when the
 * amount is not a whole number of minor units. */
static int format_amount(int64_t micros, dm_str cur, char *out, size_t outsz)
{
    int d = minor_digits(cur);
    int64_t step = 1, units = micros / 1000000, frac = micros % 1000000;

    for (int i = d; i < 6; i++) {
        step *= 10;
    }
    if (frac % step != 0) {
        return 0;
    }
    if (d == 0) {
        snprintf(out, outsz, "%lld", (long long)units);
    } else {
        snprintf(out, outsz, "%lld.%0*lld", (long long)units, d, (long long)(frac / step));
    }
    return 1;
}

/* A decimal string ("12.50", "0.000001", "7") as micro-units. strict: more
 * than 6 decimals is an error; otherwise they are dropped (a payment's
 * local value converted at an exchange rate). No sign, no exponent. */
static int parse_amount(dm_str s, int strict, int64_t *out)
{
    int64_t units = 0, frac = 0;
    size_t i = 0, int_digits = 0, frac_digits = 0;

    if (!s.ptr || s.len == 0 || s.len > 40) {
        return 0;
    }
    for (; i < s.len && s.ptr[i] >= '0' && s.ptr[i] <= '9'; i++) {
        if (++int_digits > 9) {
            return 0; /* a billion units or more */
        }
        units = units * 10 + (s.ptr[i] - '0');
    }
    if (i < s.len && s.ptr[i] == '.') {
        for (i++; i < s.len && s.ptr[i] >= '0' && s.ptr[i] <= '9'; i++) {
            if (++frac_digits <= 6) {
                frac = frac * 10 + (s.ptr[i] - '0');
            } else if (strict && s.ptr[i] != '0') {
                return 0;
            }
        }
        if (frac_digits == 0) {
            return 0;
        }
    }
    if (i != s.len || int_digits + frac_digits == 0) {
        return 0;
    }
    for (size_t k = frac_digits; k < 6; k++) {
        frac *= 10;
    }
    *out = units * 1000000 + frac;
    return 1;
}

/* ---- settings ---- */

typedef struct conf {
    const char *name;
    const char *api_key;
    const char *secret;
    size_t secret_len;
    char api_base[BASE_MAX]; /* without a trailing '/' */
    int paid_at_pending;     /* paid_at pending: PENDING already counts */
    uint32_t timeout_ms;
} conf;

/* https://…, or http:// to a loopback address (the stand-in). */
static int api_base_ok(const char *v)
{
    static const char *const loopback[] = {"http://127.0.0.1", "http://localhost", "http://[::1]",
                                           NULL};
    size_t n = strlen(v);

    if (n == 0 || n >= BASE_MAX || dm_has_ctl(v, n) || strchr(v, '?') || strchr(v, '#') ||
        strchr(v, ' ')) {
        return 0;
    }
    if (strncmp(v, "https://", 8) == 0 && n > 8) {
        return 1;
    }
    for (size_t i = 0; loopback[i]; i++) {
        size_t k = strlen(loopback[i]);
        if (strncmp(v, loopback[i], k) == 0 && (v[k] == '\0' || v[k] == ':' || v[k] == '/')) {
            return 1;
        }
    }
    return 0;
}

/* Reads and checks every setting; DM_ERR_CONFIG with msg when one is bad.
 * Messages name settings, never their values. */
static dm_status read_conf(dm_call *call, conf *c, dm_message *msg)
{
    const char *v;
    long t;
    size_t n;

    memset(c, 0, sizeof(*c));
    c->name = host->setting(call, "_name");
    if (!c->name) {
        c->name = "coinbase";
    }
    c->api_key = host->setting(call, "api_key");
    if (!c->api_key || !*c->api_key) {
        dm_msg_set(msg,
                   "api_key is missing; add DeepMinePluginSet %s api_key file:/path (the API key "
                   "from Coinbase Commerce, Settings, Security)",
                   c->name);
        return DM_ERR_CONFIG;
    }
    if (!is_token(mkstr(c->api_key), 256, 0)) {
        dm_msg_set(msg, "api_key must be 1 to 256 visible ASCII characters (no spaces)");
        return DM_ERR_CONFIG;
    }
    c->secret = host->setting(call, "webhook_secret");
    if (!c->secret || !*c->secret) {
        dm_msg_set(msg,
                   "webhook_secret is missing; add DeepMinePluginSet %s webhook_secret "
                   "file:/path (the shared secret from Coinbase Commerce, Settings, "
                   "Notifications)",
                   c->name);
        return DM_ERR_CONFIG;
    }
    c->secret_len = strlen(c->secret);
    v = host->setting(call, "api_base");
    if (!v) {
        v = DEFAULT_API_BASE;
    }
    if (!api_base_ok(v)) {
        dm_msg_set(msg, "api_base must be an https:// URL (or http:// to 127.0.0.1, localhost or "
                        "[::1], for a test stand-in)");
        return DM_ERR_CONFIG;
    }
    n = strlen(v);
    while (n > 0 && v[n - 1] == '/') {
        n--;
    }
    memcpy(c->api_base, v, n);
    c->api_base[n] = '\0';
    v = host->setting(call, "paid_at");
    if (!v || strcmp(v, "confirmed") == 0) {
        c->paid_at_pending = 0;
    } else if (strcmp(v, "pending") == 0) {
        c->paid_at_pending = 1;
    } else {
        dm_msg_set(msg, "paid_at must be pending or confirmed");
        return DM_ERR_CONFIG;
    }
    c->timeout_ms = TIMEOUT_DEFAULT;
    v = host->setting(call, "timeout_ms");
    if (v) {
        if (!parse_uint(v, &t) || t < TIMEOUT_MIN || t > TIMEOUT_MAX) {
            dm_msg_set(msg, "timeout_ms must be a number of milliseconds from %d to %d",
                       TIMEOUT_MIN, TIMEOUT_MAX);
            return DM_ERR_CONFIG;
        }
        c->timeout_ms = (uint32_t)t;
    }
    return DM_OK;
}

/* ---- the provider-neutral view of a charge ---- */

typedef enum charge_state {
    CS_UNKNOWN = 0,
    CS_NEW,        /* created, nothing paid yet */
    CS_PENDING,    /* payment seen, not final */
    CS_COMPLETED,  /* final: paid */
    CS_EXPIRED,    /* nothing (enough) arrived in time */
    CS_FAILED,     /* could not complete */
    CS_CANCELED,   /* cancelled before payment */
    CS_UNRESOLVED, /* money moved but not as asked: see context */
    CS_RESOLVED,   /* a merchant marked an unresolved charge resolved */
    CS_REFUNDED    /* refund pending or done (in Coinbase's dashboard) */
} charge_state;

typedef struct charge {
    dm_str id;         /* the provider's id (Commerce: a UUID) */
    dm_str code;       /* the short code (Commerce: 8 characters) */
    dm_str hosted_url; /* where the buyer pays */
    dm_str order_id;   /* metadata.order_id: ours */
    int64_t price_micros;
    dm_str currency;
    charge_state state;  /* the timeline's last status */
    dm_str last_status;  /* as the provider spelled it */
    dm_str context;      /* UNRESOLVED's context: UNDERPAID, OVERPAID, DELAYED, … */
    int paid_known;      /* paid_micros is the sum of every payment */
    int64_t paid_micros; /* in `currency` */
    int payments;        /* how many payments the charge lists */
} charge;

/* What create_charge is asked for. */
typedef struct new_charge {
    dm_str order_id;
    const char *amount; /* decimal string */
    dm_str currency;
    dm_str redirect_url;
    dm_str cancel_url;
} new_charge;

/* What a verified webhook names, before anything is re-read. */
typedef struct hint {
    dm_str event_id;
    dm_str type;
    dm_str ref;  /* code (or id) of the charge it is about; may be empty */
    int re_read; /* a type whose charge must be re-read */
} hint;

/* The provider's calls. Every byte sent to or read from the provider goes
 * through one of these; everything else in this file is provider-neutral.
 * A second backend (Coinbase Business Checkouts) fills the same table. */
typedef struct backend {
    const char *name;
    /* DM_OK with out->code and out->hosted_url; DM_ERR_TEMPORARY when the
     * provider is down or answers garbage, DM_ERR_CONFIG on a refused key,
     * DM_ERR_PERMANENT when it refuses the charge. */
    dm_status (*create_charge)(dm_call *call, const conf *c, const new_charge *in, charge *out,
                               dm_message *msg);
    /* The charge `ref` as the provider has it now; DM_ERR_INVALID when it
     * does not exist. */
    dm_status (*get_charge)(dm_call *call, const conf *c, dm_str ref, charge *out, dm_message *msg);
    /* Verifies a webhook over its raw bytes and says what it is about;
     * DM_ERR_INVALID when it is not the provider's. */
    dm_status (*read_webhook)(dm_call *call, const conf *c, dm_str raw_body,
                              const dm_header *headers, size_t n_headers, hint *out,
                              dm_message *msg);
} backend;

/* ---- backend: Coinbase Commerce (api.commerce.coinbase.com) ---- */

/* One request to the Commerce API. DM_OK when an answer arrived (any
 * status), DM_ERR_TEMPORARY when none did. */
static dm_status commerce_call(dm_call *call, const conf *c, const char *method, const char *path,
                               dm_str body, dm_http_response *resp, dm_message *msg)
{
    dm_header hs[4];
    dm_http_request req;
    size_t ulen = strlen(c->api_base) + strlen(path) + 1, n = 0;
    char *url = host->alloc(call, ulen);
    dm_message why;
    dm_status st;

    if (!url) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(url, ulen, "%s%s", c->api_base, path);
    hs[n].name = mkstr("X-CC-Api-Key");
    hs[n++].value = mkstr(c->api_key);
    hs[n].name = mkstr("X-CC-Version");
    hs[n++].value = mkstr(CC_API_VERSION);
    hs[n].name = mkstr("Accept");
    hs[n++].value = mkstr("application/json");
    if (body.len) {
        hs[n].name = mkstr("Content-Type");
        hs[n++].value = mkstr("application/json");
    }
    memset(&req, 0, sizeof(req));
    req.size = sizeof(req);
    req.method = method;
    req.url = url;
    req.headers = hs;
    req.n_headers = n;
    req.body = body;
    req.timeout_ms = c->timeout_ms;
    memset(resp, 0, sizeof(*resp));
    resp->size = sizeof(*resp);
    memset(&why, 0, sizeof(why));
    st = host->http(call, &req, resp, &why);
    if (st != DM_OK) {
        /* The host's message names the URL and the error, never headers. */
        dm_msg_set(msg, "Coinbase Commerce did not answer %s %s: %s", method, path, why.text);
        return DM_ERR_TEMPORARY;
    }
    return DM_OK;
}

/* A status that is not 2xx as a plugin status and message. */
static dm_status commerce_refusal(dm_call *call, const char *what, const dm_http_response *resp,
                                  dm_message *msg)
{
    dm_str m = jget(call, resp->body, "error.message");
    int shown = m.ptr && !dm_has_ctl(m.ptr, m.len);

    if (resp->status == 401 || resp->status == 403) {
        dm_msg_set(msg,
                   "Coinbase Commerce refused the API key (HTTP %d) on %s: check the setting "
                   "api_key",
                   resp->status, what);
        return DM_ERR_CONFIG;
    }
    dm_msg_set(msg, "Coinbase Commerce answered HTTP %d on %s%s%.*s", resp->status, what,
               shown ? ": " : "", shown ? (int)(m.len > 160 ? 160 : m.len) : 0, shown ? m.ptr : "");
    if (resp->status == 429 || resp->status >= 500 || resp->status < 200) {
        return DM_ERR_TEMPORARY;
    }
    if (resp->status == 404) {
        return DM_ERR_INVALID;
    }
    return DM_ERR_PERMANENT;
}

static charge_state commerce_state(dm_str s)
{
    static const struct {
        const char *name;
        charge_state st;
    } names[] = {
        {"NEW", CS_NEW},
        {"SIGNED", CS_NEW},
        {"PENDING", CS_PENDING},
        {"COMPLETED", CS_COMPLETED},
        {"CONFIRMED", CS_COMPLETED},
        {"EXPIRED", CS_EXPIRED},
        {"FAILED", CS_FAILED},
        {"CANCELED", CS_CANCELED},
        {"CANCELLED", CS_CANCELED},
        {"UNRESOLVED", CS_UNRESOLVED},
        {"RESOLVED", CS_RESOLVED},
        {"REFUND PENDING", CS_REFUNDED},
        {"REFUNDED", CS_REFUNDED},
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (dm_str_eq(s, names[i].name)) {
            return names[i].st;
        }
    }
    return CS_UNKNOWN;
}

/* The charge object `data` (compact JSON) into the neutral view. 0 when it
 * lacks what every charge has (code, pricing.local). */
static int commerce_read_charge(dm_call *call, dm_str data, charge *out)
{
    dm_str timeline, payments, amount;
    char path[64];

    memset(out, 0, sizeof(*out));
    out->id = jget(call, data, "id");
    out->code = jget(call, data, "code");
    out->hosted_url = jget(call, data, "hosted_url");
    out->order_id = jget(call, data, "metadata.order_id");
    out->currency = jget(call, data, "pricing.local.currency");
    amount = jget(call, data, "pricing.local.amount");
    if (!is_token(out->code, REF_MAX, 1) || !is_currency(out->currency) ||
        !parse_amount(amount, 1, &out->price_micros) || out->price_micros > AMOUNT_MAX ||
        (out->id.len && !is_token(out->id, REF_MAX, 1)) ||
        (out->order_id.len && dm_has_ctl(out->order_id.ptr, out->order_id.len))) {
        return 0;
    }
    /* The timeline, oldest first: the last status is the charge's state;
     * an UNRESOLVED entry says why in its context. */
    out->state = CS_UNKNOWN;
    timeline = jget(call, data, "timeline");
    for (int i = 0; timeline.len && i < LIST_MAX; i++) {
        dm_str st, ctx;
        snprintf(path, sizeof(path), "%d.status", i);
        st = jget(call, timeline, path);
        if (!st.ptr) {
            break;
        }
        snprintf(path, sizeof(path), "%d.context", i);
        ctx = jget(call, timeline, path);
        out->last_status = st;
        out->state = commerce_state(st);
        out->context = ctx;
    }
    /* Payments: what arrived, in the local currency. */
    out->paid_known = 1;
    payments = jget(call, data, "payments");
    for (int i = 0; payments.len && i < LIST_MAX; i++) {
        dm_str cur, amt;
        int64_t v = 0;
        snprintf(path, sizeof(path), "%d.value.local.amount", i);
        amt = jget(call, payments, path);
        snprintf(path, sizeof(path), "%d.value.local.currency", i);
        cur = jget(call, payments, path);
        if (!amt.ptr && !cur.ptr) {
            snprintf(path, sizeof(path), "%d", i);
            if (!jget(call, payments, path).ptr) {
                break;
            }
        }
        out->payments++;
        if (!parse_amount(amt, 0, &v) || !cur.ptr || cur.len != out->currency.len ||
            memcmp(cur.ptr, out->currency.ptr, cur.len) != 0 || out->paid_micros > AMOUNT_MAX - v) {
            out->paid_known = 0;
            continue;
        }
        out->paid_micros += v;
    }
    if (out->payments == 0) {
        out->paid_known = 0;
    }
    return 1;
}

static dm_status commerce_create_charge(dm_call *call, const conf *c, const new_charge *in,
                                        charge *out, dm_message *msg)
{
    char *q_order = host->json_quote(call, in->order_id);
    char *q_ok = in->redirect_url.len ? host->json_quote(call, in->redirect_url) : NULL;
    char *q_cancel = in->cancel_url.len ? host->json_quote(call, in->cancel_url) : NULL;
    size_t cap, n;
    char *body;
    dm_http_response resp;
    dm_str data;
    dm_status st;

    if (!q_order || (in->redirect_url.len && !q_ok) || (in->cancel_url.len && !q_cancel)) {
        dm_msg_set(msg, "the order id and return URLs must be UTF-8");
        return DM_ERR_INVALID;
    }
    /* The body is built once, as sent: Commerce's documented fields. */
    cap = 3 * strlen(q_order) + (q_ok ? strlen(q_ok) : 0) + (q_cancel ? strlen(q_cancel) : 0) +
          strlen(in->amount) + 256;
    body = host->alloc(call, cap);
    if (!body) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    /* name and description: "Order <id>" (the quoted id without its
     * quotes is spliced into the literal). */
    n = (size_t)snprintf(body, cap,
                         "{\"name\":\"Order %.*s\",\"description\":\"Order %.*s\","
                         "\"pricing_type\":\"fixed_price\","
                         "\"local_price\":{\"amount\":\"%s\",\"currency\":\"%.3s\"},"
                         "\"metadata\":{\"order_id\":%s}",
                         (int)strlen(q_order) - 2, q_order + 1, (int)strlen(q_order) - 2,
                         q_order + 1, in->amount, in->currency.ptr, q_order);
    if (q_ok) {
        n += (size_t)snprintf(body + n, cap - n, ",\"redirect_url\":%s", q_ok);
    }
    if (q_cancel) {
        n += (size_t)snprintf(body + n, cap - n, ",\"cancel_url\":%s", q_cancel);
    }
    n += (size_t)snprintf(body + n, cap - n, "}");
    if (n >= cap) {
        dm_msg_set(msg, "the charge request is too long");
        return DM_ERR_INTERNAL;
    }
    st = commerce_call(call, c, "POST", "/charges", (dm_str){body, n}, &resp, msg);
    if (st != DM_OK) {
        return st;
    }
    if (resp.status != 201 && resp.status != 200) {
        return commerce_refusal(call, "create charge", &resp, msg);
    }
    data = jget(call, resp.body, "data");
    if (!data.ptr || !commerce_read_charge(call, data, out) || !is_http_url(out->hosted_url)) {
        dm_msg_set(msg, "Coinbase Commerce answered the new charge with something that is not a "
                        "charge (no code, hosted_url or pricing)");
        return DM_ERR_TEMPORARY;
    }
    return DM_OK;
}

static dm_status commerce_get_charge(dm_call *call, const conf *c, dm_str ref, charge *out,
                                     dm_message *msg)
{
    char path[16 + REF_MAX];
    dm_http_response resp;
    dm_str data;
    dm_status st;

    if (!is_token(ref, REF_MAX, 1)) {
        dm_msg_set(msg, "a charge reference is 1 to %d letters, digits or dashes", REF_MAX);
        return DM_ERR_INVALID;
    }
    snprintf(path, sizeof(path), "/charges/%.*s", (int)ref.len, ref.ptr);
    st = commerce_call(call, c, "GET", path, (dm_str){NULL, 0}, &resp, msg);
    if (st != DM_OK) {
        return st;
    }
    if (resp.status == 404) {
        dm_msg_set(msg, "Coinbase Commerce has no charge %.*s", (int)ref.len, ref.ptr);
        return DM_ERR_INVALID;
    }
    if (resp.status != 200) {
        return commerce_refusal(call, "read charge", &resp, msg);
    }
    data = jget(call, resp.body, "data");
    if (!data.ptr || !commerce_read_charge(call, data, out)) {
        dm_msg_set(msg,
                   "Coinbase Commerce answered GET /charges/%.*s with something that is not a "
                   "charge",
                   (int)ref.len, ref.ptr);
        return DM_ERR_TEMPORARY;
    }
    if (!same(out->code, ref) && !same(out->id, ref)) {
        dm_msg_set(msg, "Coinbase Commerce answered GET /charges/%.*s with another charge",
                   (int)ref.len, ref.ptr);
        return DM_ERR_TEMPORARY;
    }
    return DM_OK;
}

/* X-CC-Webhook-Signature: lower-case hex HMAC-SHA-256 of the raw body,
 * keyed with the shared secret's bytes (README: sources). */
static dm_status commerce_verify(dm_call *call, const conf *c, dm_str body, const dm_header *hs,
                                 size_t n, dm_message *msg)
{
    const dm_header *h = dm_header_find(hs, n, SIG_HEADER);
    unsigned char mac[32];
    char *expected;

    if (!h || !h->value.ptr || h->value.len == 0) {
        dm_msg_set(msg, "no " SIG_HEADER " header");
        return DM_ERR_INVALID;
    }
    host->hmac_sha256(c->secret, c->secret_len, body.ptr ? body.ptr : "", body.len, mac);
    expected = host->hex_encode(call, mac, sizeof(mac));
    memset(mac, 0, sizeof(mac));
    if (!expected) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    if (h->value.len != 64 || !host->equal_ct(expected, h->value.ptr, 64)) {
        dm_msg_set(msg, "the " SIG_HEADER " does not match the body (wrong secret, or the body was "
                        "altered)");
        return DM_ERR_INVALID;
    }
    return DM_OK;
}

static dm_status commerce_read_webhook(dm_call *call, const conf *c, dm_str body,
                                       const dm_header *hs, size_t n, hint *out, dm_message *msg)
{
    static const char *const re_read[] = {"charge:pending", "charge:confirmed", "charge:failed",
                                          "charge:delayed", "charge:resolved",  NULL};
    dm_status st = commerce_verify(call, c, body, hs, n, msg);

    memset(out, 0, sizeof(*out));
    if (st != DM_OK) {
        return st;
    }
    /* {"attempt_number":1,"event":{"id","type","api_version","created_at",
     *  "data":{<charge>}},"id":"<delivery>","scheduled_for":…} */
    out->event_id = jget(call, body, "event.id");
    out->type = jget(call, body, "event.type");
    out->ref = jget(call, body, "event.data.code");
    if (!out->ref.ptr) {
        out->ref = jget(call, body, "event.data.id");
    }
    if (!is_token(out->event_id, EVENT_ID_MAX, 0) || !out->type.ptr ||
        dm_has_ctl(out->type.ptr, out->type.len)) {
        dm_msg_set(msg, "the webhook has no event.id or event.type");
        return DM_ERR_INVALID;
    }
    if (out->ref.len && !is_token(out->ref, REF_MAX, 1)) {
        dm_msg_set(msg, "the webhook's charge code is not a charge code");
        return DM_ERR_INVALID;
    }
    for (size_t i = 0; re_read[i]; i++) {
        if (dm_str_eq(out->type, re_read[i])) {
            out->re_read = 1;
        }
    }
    if (out->re_read && !out->ref.len) {
        dm_msg_set(msg, "the %.*s webhook names no charge (event.data.code)", (int)out->type.len,
                   out->type.ptr);
        return DM_ERR_INVALID;
    }
    return DM_OK;
}

static const backend commerce = {
    .name = "commerce",
    .create_charge = commerce_create_charge,
    .get_charge = commerce_get_charge,
    .read_webhook = commerce_read_webhook,
};

/* The one backend today (README: adding Coinbase Business). */
static const backend *backend_of(const conf *c)
{
    (void)c;
    return &commerce;
}

/* ---- what a charge means for the order (provider-neutral) ---- */

typedef struct verdict {
    dm_payment_event_status status;
    dm_payment_review_reason reason;
    const char *word; /* for the event id: paid, pending, failed, … */
    int64_t amount;
    char detail[200];
} verdict;

static void money(int64_t micros, char *out, size_t outsz)
{
    int64_t frac = micros % 1000000;
    size_t n;

    snprintf(out, outsz, "%lld.%06lld", (long long)(micros / 1000000), (long long)frac);
    n = strlen(out);
    while (n > 0 && out[n - 1] == '0' && out[n - 3] != '.') {
        out[--n] = '\0';
    }
}

static void review(verdict *v, const charge *ch, dm_payment_review_reason reason, const char *why)
{
    char paid[32], price[32];

    v->status = DM_PAY_NEEDS_REVIEW;
    v->reason = reason;
    v->word = "review";
    money(ch->price_micros, price, sizeof(price));
    if (ch->paid_known) {
        money(ch->paid_micros, paid, sizeof(paid));
        v->amount = ch->paid_micros;
        snprintf(v->detail, sizeof(v->detail), "%s: paid %s of %s %.3s (charge %.*s)", why, paid,
                 price, ch->currency.ptr, (int)ch->code.len, ch->code.ptr);
    } else {
        snprintf(v->detail, sizeof(v->detail), "%s: charge %.*s of %s %.3s", why, (int)ch->code.len,
                 ch->code.ptr, price, ch->currency.ptr);
    }
}

/* Paid, unless the payments say the amount differs from the price. */
static void paid_or_review(verdict *v, const charge *ch)
{
    if (ch->paid_known && ch->paid_micros < ch->price_micros) {
        review(v, ch, DM_REVIEW_UNDERPAID, "underpaid");
        return;
    }
    if (ch->paid_known && ch->paid_micros > ch->price_micros) {
        review(v, ch, DM_REVIEW_OVERPAID, "overpaid");
        return;
    }
    v->status = DM_PAY_PAID;
    v->word = "paid";
}

/* The status a charge means, with paid_at (pending|confirmed). */
static void judge(const conf *c, const charge *ch, verdict *v)
{
    memset(v, 0, sizeof(*v));
    v->amount = ch->price_micros;
    switch (ch->state) {
    case CS_NEW:
        v->status = DM_PAY_PENDING;
        v->word = "pending";
        break;
    case CS_PENDING:
        if (c->paid_at_pending) {
            paid_or_review(v, ch);
        } else {
            v->status = DM_PAY_PENDING;
            v->word = "pending";
        }
        break;
    case CS_COMPLETED:
        paid_or_review(v, ch);
        break;
    case CS_EXPIRED:
        v->status = DM_PAY_EXPIRED;
        v->word = "expired";
        break;
    case CS_FAILED:
    case CS_CANCELED:
        v->status = DM_PAY_FAILED;
        v->word = "failed";
        break;
    case CS_UNRESOLVED:
        if (dm_str_eq(ch->context, "UNDERPAID")) {
            review(v, ch, DM_REVIEW_UNDERPAID, "underpaid");
        } else if (dm_str_eq(ch->context, "OVERPAID")) {
            review(v, ch, DM_REVIEW_OVERPAID, "overpaid");
        } else if (dm_str_eq(ch->context, "DELAYED")) {
            review(v, ch, DM_REVIEW_PAID_AFTER_EXPIRY, "paid after the charge expired");
        } else {
            review(v, ch, DM_REVIEW_OTHER, "unresolved at Coinbase");
        }
        break;
    case CS_RESOLVED:
        review(v, ch, DM_REVIEW_OTHER, "resolved by hand at Coinbase");
        break;
    case CS_REFUNDED:
    case CS_UNKNOWN:
        v->status = DM_PAY_IGNORED;
        v->word = "ignored";
        snprintf(v->detail, sizeof(v->detail), "charge %.*s is %.*s", (int)ch->code.len,
                 ch->code.ptr, (int)(ch->last_status.len > 40 ? 40 : ch->last_status.len),
                 ch->last_status.ptr ? ch->last_status.ptr : "without a timeline");
        break;
    }
}

/* The event for the host from a charge and a verdict. event_id may be
 * empty (query). Written only as far as the host's structure reaches. */
static dm_status fill_event(dm_call *call, const charge *ch, const verdict *v, dm_str event_id,
                            dm_payment_event *out, dm_message *msg)
{
    dm_payment_event ev;
    uint32_t size = out->size;
    char *detail;

    memset(&ev, 0, sizeof(ev));
    ev.size = size;
    ev.event_id = event_id;
    ev.provider_ref = ch->code;
    ev.order_id = ch->order_id;
    ev.status = v->status;
    ev.amount_micros = v->amount;
    ev.currency = ch->currency;
    ev.payment_id = ch->code;
    ev.review_reason = v->reason;
    if (v->detail[0]) {
        detail = host->alloc(call, strlen(v->detail) + 1);
        if (!detail) {
            dm_msg_set(msg, "out of memory");
            return DM_ERR_INTERNAL;
        }
        memcpy(detail, v->detail, strlen(v->detail) + 1);
        ev.detail = mkstr(detail);
    }
    /* DM_HAS_FIELD without its NULL test: out is the host's, never NULL */
    if (v->status > DM_PAY_IGNORED &&
        size < offsetof(dm_payment_event, review_reason) + sizeof(out->review_reason)) {
        dm_msg_set(msg,
                   "charge %.*s needs a status (%s) this host's plugin ABI cannot carry; "
                   "ABI 1.4 is needed",
                   (int)ch->code.len, ch->code.ptr, v->word);
        return DM_ERR_TEMPORARY;
    }
    memcpy(out, &ev, size < sizeof(ev) ? size : sizeof(ev));
    out->size = size;
    return DM_OK;
}

/* ---- the payment functions ---- */

static dm_status coinbase_create_checkout(dm_call *call, const dm_payment_checkout *in_raw,
                                          dm_payment_checkout_result *out, dm_message *msg)
{
    dm_payment_checkout in;
    new_charge nc;
    charge ch;
    conf c;
    char amount[48];
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
    if (!in.order_id.ptr || in.order_id.len == 0 || in.order_id.len > ORDER_MAX ||
        dm_has_ctl(in.order_id.ptr, in.order_id.len)) {
        dm_msg_set(msg, "the order id must be 1 to %d characters without control characters",
                   ORDER_MAX);
        return DM_ERR_INVALID;
    }
    if (in.amount_micros <= 0 || in.amount_micros > AMOUNT_MAX) {
        dm_msg_set(msg, "the amount must be positive and at most a billion units");
        return DM_ERR_INVALID;
    }
    if (!is_currency(in.currency)) {
        dm_msg_set(msg, "a Coinbase charge needs an ISO 4217 currency in capitals");
        return DM_ERR_INVALID;
    }
    if (!format_amount(in.amount_micros, in.currency, amount, sizeof(amount))) {
        dm_msg_set(msg, "%lld micro-units is not a whole number of %.3s's minor unit",
                   (long long)in.amount_micros, in.currency.ptr);
        return DM_ERR_INVALID;
    }
    if ((in.success_url.len && !is_http_url(in.success_url)) ||
        (in.cancel_url.len && !is_http_url(in.cancel_url))) {
        dm_msg_set(msg, "return URLs must be http(s) URLs of at most %d characters", URL_MAX);
        return DM_ERR_INVALID;
    }
    memset(&nc, 0, sizeof(nc));
    nc.order_id = in.order_id;
    nc.amount = amount;
    nc.currency = in.currency;
    nc.redirect_url = in.success_url;
    nc.cancel_url = in.cancel_url;
    st = backend_of(&c)->create_charge(call, &c, &nc, &ch, msg);
    if (st != DM_OK) {
        return st;
    }
    out->redirect_url = ch.hosted_url;
    out->provider_ref = ch.code;
    return DM_OK;
}

static dm_status coinbase_parse_webhook(dm_call *call, dm_str raw_body, const dm_header *headers,
                                        size_t n_headers, dm_payment_event *out, dm_message *msg)
{
    const backend *be;
    conf c;
    hint h;
    charge ch;
    verdict v;
    char *id;
    size_t idlen;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    be = backend_of(&c);
    st = be->read_webhook(call, &c, raw_body, headers, n_headers, &h, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!h.re_read) {
        /* Verified, but nothing we act on (charge:created, new types). */
        dm_payment_event ev;
        uint32_t size = out->size;
        memset(&ev, 0, sizeof(ev));
        ev.event_id = h.event_id;
        ev.provider_ref = h.ref;
        ev.status = DM_PAY_IGNORED;
        memcpy(out, &ev, size < sizeof(ev) ? size : sizeof(ev));
        out->size = size;
        return DM_OK;
    }
    /* A hint: the charge as Coinbase has it now decides. */
    st = be->get_charge(call, &c, h.ref, &ch, msg);
    if (st != DM_OK) {
        return st;
    }
    judge(&c, &ch, &v);
    idlen = h.event_id.len + 1 + strlen(v.word);
    id = host->alloc(call, idlen + 1);
    if (!id) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(id, idlen + 1, "%.*s/%s", (int)h.event_id.len, h.event_id.ptr, v.word);
    return fill_event(call, &ch, &v, (dm_str){id, idlen}, out, msg);
}

static dm_status coinbase_query(dm_call *call, dm_str provider_ref, dm_payment_event *out,
                                dm_message *msg)
{
    conf c;
    charge ch;
    verdict v;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    st = backend_of(&c)->get_charge(call, &c, provider_ref, &ch, msg);
    if (st != DM_OK) {
        return st;
    }
    judge(&c, &ch, &v);
    return fill_event(call, &ch, &v, (dm_str){"", 0}, out, msg);
}

/* ---- life cycle ---- */

static dm_status coinbase_init(const dm_host *h, dm_call *call, dm_message *msg)
{
    conf c;

    host = h;
    return read_conf(call, &c, msg);
}

static dm_status coinbase_health(dm_call *call, dm_message *msg)
{
    conf c;
    return read_conf(call, &c, msg);
}

static const char *const required[] = {"api_key", "webhook_secret", NULL};

static const dm_payment_ops ops = {
    .size = sizeof(dm_payment_ops),
    .create_checkout = coinbase_create_checkout,
    .parse_webhook = coinbase_parse_webhook,
    .refund = NULL, /* Commerce has no refund API: staff record manual refunds */
    .query = coinbase_query,
    .refund_ex = NULL,
    .display_name = "Crypto (Coinbase Commerce)",
    .method_kind = "crypto",
    .currencies = "*",
    .checkout_lifetime_s = CHARGE_LIFETIME_S,
};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_PAYMENT,
    .name = "payment-coinbase",
    .version = COINBASE_VERSION,
    .required_settings = required,
    .init = coinbase_init,
    .fini = NULL,
    .ops = &ops,
    .health = coinbase_health,
    .handle_request = NULL,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *h)
{
    /* Everything used of the host table is in ABI 1.0 (http, hmac_sha256,
     * equal_ct, hex_encode, json_get, json_quote); the 1.4 event fields are
     * written only when the host's event has room for them. */
    if (!DM_HAS_FIELD(h, dm_host, json_quote)) {
        return NULL;
    }
    return &desc;
}
