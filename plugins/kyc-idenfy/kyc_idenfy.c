/*
 * kyc-idenfy — identity checks through iDenfy (PROVIDERS.md §6, README.md).
 *
 * start asks for a verification token (POST /api/v2/token, HTTP Basic with
 * api_key:api_secret, JSON {"clientId": <our member id>}) and sends the
 * member to its redirectUrl ({"url"}); the provider reference is the
 * scanRef.
 *
 * parse_webhook checks Idenfy-Signature, the lower-case hex HMAC-SHA256 of
 * the raw body under webhook_secret (the webhook's signing key), then acts
 * only on "final": true; a verified non-final event is DM_KYC_IGNORED.
 * status.overall:
 *   APPROVED                 approved
 *   DENIED                   rejected
 *   SUSPECTED                needs review (a person decides)
 *   EXPIRED, EXPIRED-DELETED expired (the member may start again)
 *   anything else            ignored
 * The event id is "<scanRef>/<kind>/<overall>/<final|interim>" (kind: the
 * body's "type" when present, else IDENTIFICATION): iDenfy has no event id,
 * so a redelivery is the same id and a later verdict on the scan is a new
 * one. The event time is finishTime (Unix seconds) when the body has it.
 *
 * query asks POST /api/v2/status {"scanRef"}. iDenfy asks not to poll
 * regularly: the plugin gives the host its setting poll_every_s (default
 * 21600, six hours), the least time between two questions about one case.
 *
 * Invariants: secrets never appear in a message; settings are read on every
 * call; the only static is the host table.
 */
#include <deepmine/plugin.h>
#include <deepmine/plugin_util.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IDENFY_VERSION "1.0.0"
#define DEFAULT_API_BASE "https://ivs.idenfy.com"
#define SIG_HEADER "Idenfy-Signature"
#define TIMEOUT_DEFAULT 10000
#define TIMEOUT_MIN 100
#define TIMEOUT_MAX 60000
#define POLL_EVERY_DEFAULT "21600"
#define BASE_MAX 512
#define ID_MAX 128
#define URL_MAX 2048

/* The host's event has the 1.5 fields (occurred_at_ms, provider_ref):
 * DM_HAS_FIELD without its NULL test, out never being NULL here. */
#define HAS_1_5_FIELDS(ev)                                                                         \
    ((size_t)(ev)->size >= offsetof(dm_kyc_event, provider_ref) + sizeof(dm_str))

static const dm_host *host;

/* ---- small helpers ---- */

static dm_str mkstr(const char *s)
{
    dm_str out = {s, s ? strlen(s) : 0};
    return out;
}

/* Letters, digits and "-_.:" only: safe in a URL path, a header, a log. */
static int is_id(dm_str s, size_t max)
{
    if (!s.ptr || s.len == 0 || s.len > max) {
        return 0;
    }
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '_' || c == '.' || c == ':')) {
            return 0;
        }
    }
    return 1;
}

static int is_digits(dm_str s, size_t max)
{
    if (!s.ptr || s.len == 0 || s.len > max) {
        return 0;
    }
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9') {
            return 0;
        }
    }
    return 1;
}

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

/* ---- settings ---- */

typedef struct conf {
    const char *name;
    const char *api_key;
    const char *api_secret;
    const char *webhook_secret;
    char api_base[BASE_MAX];
    uint32_t timeout_ms;
} conf;

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

static dm_status need(const conf *c, const char *key, const char *v, const char *where,
                      dm_message *msg)
{
    if (v && *v) {
        return DM_OK;
    }
    dm_msg_set(msg, "%s is missing; add DeepMinePluginSet %s %s file:/path (%s)", key, c->name, key,
               where);
    return DM_ERR_CONFIG;
}

static dm_status read_conf(dm_call *call, conf *c, dm_message *msg)
{
    const char *v;
    long t;
    size_t n;
    dm_status st;

    memset(c, 0, sizeof(*c));
    c->name = host->setting(call, "_name");
    if (!c->name) {
        c->name = "idenfy";
    }
    c->api_key = host->setting(call, "api_key");
    c->api_secret = host->setting(call, "api_secret");
    c->webhook_secret = host->setting(call, "webhook_secret");
    st = need(c, "api_key", c->api_key, "the API key from iDenfy's dashboard, Settings", msg);
    if (st == DM_OK) {
        st = need(c, "api_secret", c->api_secret, "the API secret shown with the key", msg);
    }
    if (st == DM_OK) {
        st = need(c, "webhook_secret", c->webhook_secret,
                  "the signing key of the webhook: Settings, Notifications, Headers", msg);
    }
    if (st != DM_OK) {
        return st;
    }
    if (dm_has_ctl(c->api_key, strlen(c->api_key)) || strchr(c->api_key, ':') ||
        dm_has_ctl(c->api_secret, strlen(c->api_secret))) {
        dm_msg_set(msg, "api_key must be visible characters without ':' and api_secret visible "
                        "characters");
        return DM_ERR_CONFIG;
    }
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
    v = host->setting(call, "poll_every_s");
    if (v && (!parse_uint(v, &t) || t < 3600 || t > 30 * 86400)) {
        dm_msg_set(msg, "poll_every_s must be a number of seconds from 3600 to 2592000");
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

/* ---- the API call: HTTP Basic, JSON both ways ---- */

static dm_status api_call(dm_call *call, const conf *c, const char *path, dm_str body,
                          dm_http_response *resp, dm_message *msg)
{
    dm_header hs[3];
    dm_http_request req;
    size_t ulen = strlen(c->api_base) + strlen(path) + 1;
    size_t clen = strlen(c->api_key) + strlen(c->api_secret) + 2;
    char *url = host->alloc(call, ulen), *cred = host->alloc(call, clen), *b64, *auth;
    dm_message why;
    dm_status st;

    if (!url || !cred) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(url, ulen, "%s%s", c->api_base, path);
    snprintf(cred, clen, "%s:%s", c->api_key, c->api_secret);
    b64 = host->base64_encode(call, cred, strlen(cred));
    memset(cred, 0, clen);
    if (!b64) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    auth = host->alloc(call, strlen(b64) + 7);
    if (!auth) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(auth, strlen(b64) + 7, "Basic %s", b64);
    hs[0].name = mkstr("Authorization");
    hs[0].value = mkstr(auth);
    hs[1].name = mkstr("Content-Type");
    hs[1].value = mkstr("application/json");
    hs[2].name = mkstr("Accept");
    hs[2].value = mkstr("application/json");
    memset(&req, 0, sizeof(req));
    req.size = sizeof(req);
    req.method = "POST";
    req.url = url;
    req.headers = hs;
    req.n_headers = 3;
    req.body = body;
    req.timeout_ms = c->timeout_ms;
    memset(resp, 0, sizeof(*resp));
    resp->size = sizeof(*resp);
    memset(&why, 0, sizeof(why));
    st = host->http(call, &req, resp, &why);
    if (st != DM_OK) {
        dm_msg_set(msg, "iDenfy did not answer POST %s: %s", path, why.text);
        return DM_ERR_TEMPORARY;
    }
    return DM_OK;
}

static dm_status refusal(dm_call *call, const char *what, const dm_http_response *resp,
                         dm_message *msg)
{
    dm_str m = jget(call, resp->body, "message");
    int shown = m.ptr && !dm_has_ctl(m.ptr, m.len);

    if (resp->status == 401 || resp->status == 403) {
        dm_msg_set(msg, "iDenfy refused the API key (HTTP %d) on %s: check api_key and api_secret",
                   resp->status, what);
        return DM_ERR_CONFIG;
    }
    dm_msg_set(msg, "iDenfy answered HTTP %d on %s%s%.*s", resp->status, what, shown ? ": " : "",
               shown ? (int)(m.len > 160 ? 160 : m.len) : 0, shown ? m.ptr : "");
    if (resp->status == 429 || resp->status >= 500 || resp->status < 200) {
        return DM_ERR_TEMPORARY;
    }
    if (resp->status == 404) {
        return DM_ERR_NOT_FOUND;
    }
    return DM_ERR_PERMANENT;
}

/* ---- start ---- */

static int is_http_url(dm_str s)
{
    return s.ptr && s.len <= URL_MAX && !dm_has_ctl(s.ptr, s.len) &&
           ((s.len > 7 && strncmp(s.ptr, "http://", 7) == 0) ||
            (s.len > 8 && strncmp(s.ptr, "https://", 8) == 0));
}

static dm_status idenfy_start(dm_call *call, dm_str member_id, dm_str email,
                              dm_kyc_start_result *out, dm_message *msg)
{
    conf c;
    dm_http_response resp;
    dm_str url, scan;
    const char *qid;
    char *body;
    size_t n;
    dm_status st = read_conf(call, &c, msg);

    (void)email; /* iDenfy's token takes no e-mail address */
    if (st != DM_OK) {
        return st;
    }
    if (!is_digits(member_id, 20)) {
        dm_msg_set(msg, "the member id must be digits");
        return DM_ERR_INVALID;
    }
    qid = host->json_quote(call, member_id);
    n = (qid ? strlen(qid) : 0) + 32;
    body = host->alloc(call, n);
    if (!qid || !body) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(body, n, "{\"clientId\":%s}", qid);
    st = api_call(call, &c, "/api/v2/token", mkstr(body), &resp, msg);
    if (st != DM_OK) {
        return st;
    }
    if (resp.status != 200 && resp.status != 201) {
        return refusal(call, "generating a verification token", &resp, msg);
    }
    url = jget(call, resp.body, "redirectUrl");
    scan = jget(call, resp.body, "scanRef");
    if (!is_http_url(url) || !is_id(scan, ID_MAX)) {
        dm_msg_set(msg, "iDenfy's token answer has no redirectUrl or scanRef");
        return DM_ERR_TEMPORARY;
    }
    out->url = url;
    out->provider_ref = scan;
    return DM_OK;
}

/* ---- webhooks ---- */

static dm_status verify(dm_call *call, const conf *c, dm_str body, const dm_header *hs, size_t n,
                        dm_message *msg)
{
    const dm_header *h = dm_header_find(hs, n, SIG_HEADER);
    unsigned char mac[32];
    char *expected;

    if (!h || !h->value.ptr || h->value.len == 0) {
        dm_msg_set(msg, "no " SIG_HEADER " header");
        return DM_ERR_INVALID;
    }
    host->hmac_sha256(c->webhook_secret, strlen(c->webhook_secret), body.ptr ? body.ptr : "",
                      body.len, mac);
    expected = host->hex_encode(call, mac, sizeof(mac));
    memset(mac, 0, sizeof(mac));
    if (!expected) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    if (h->value.len != 64 || !host->equal_ct(expected, h->value.ptr, 64)) {
        dm_msg_set(msg, "the " SIG_HEADER " does not match the body (wrong webhook_secret, or the "
                        "body was altered)");
        return DM_ERR_INVALID;
    }
    return DM_OK;
}

/* status.overall (or a plain status string) as our status. */
static dm_kyc_status overall_status(dm_str overall, dm_str *reason)
{
    *reason = mkstr("");
    if (dm_str_eq(overall, "APPROVED")) {
        return DM_KYC_APPROVED;
    }
    if (dm_str_eq(overall, "DENIED")) {
        *reason = mkstr("The identity check was not passed.");
        return DM_KYC_REJECTED;
    }
    if (dm_str_eq(overall, "SUSPECTED")) {
        return DM_KYC_NEEDS_REVIEW;
    }
    if (dm_str_eq(overall, "EXPIRED") || dm_str_eq(overall, "EXPIRED-DELETED")) {
        *reason = mkstr("The verification session expired before it was finished.");
        return DM_KYC_EXPIRED;
    }
    if (dm_str_eq(overall, "ACTIVE") || dm_str_eq(overall, "REVIEWING")) {
        return DM_KYC_PENDING;
    }
    return DM_KYC_IGNORED;
}

static int64_t seconds_ms(dm_str s)
{
    int64_t v = 0;

    if (!is_digits(s, 12)) {
        return 0;
    }
    for (size_t i = 0; i < s.len; i++) {
        v = v * 10 + (s.ptr[i] - '0');
    }
    return v * 1000;
}

static dm_status idenfy_parse_webhook(dm_call *call, dm_str raw_body, const dm_header *headers,
                                      size_t n_headers, dm_kyc_event *out, dm_message *msg)
{
    conf c;
    dm_str fin, overall, scan, client, kind, reason = {"", 0};
    dm_kyc_status status;
    int final;
    size_t n;
    char *id;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    st = verify(call, &c, raw_body, headers, n_headers, msg);
    if (st != DM_OK) {
        return st;
    }
    fin = jget(call, raw_body, "final");
    overall = jget(call, raw_body, "status.overall");
    scan = jget(call, raw_body, "scanRef");
    client = jget(call, raw_body, "clientId");
    kind = jget(call, raw_body, "type");
    if (!kind.ptr) {
        kind = mkstr("IDENTIFICATION");
    }
    if (!is_id(scan, ID_MAX) || !is_id(overall, 32) || !is_id(kind, 64) ||
        !(dm_str_eq(fin, "true") || dm_str_eq(fin, "false"))) {
        dm_msg_set(msg, "the webhook has no scanRef, final or status.overall");
        return DM_ERR_INVALID;
    }
    final = dm_str_eq(fin, "true");
    status = final ? overall_status(overall, &reason) : DM_KYC_IGNORED;
    if (status == DM_KYC_PENDING) {
        status = DM_KYC_IGNORED; /* a final event is a verdict or nothing */
    }
    if (status != DM_KYC_IGNORED && !is_digits(client, 20)) {
        dm_msg_set(msg, "the webhook's clientId is not one of our member ids");
        return DM_ERR_INVALID;
    }
    n = scan.len + kind.len + overall.len + 16;
    id = host->alloc(call, n);
    if (!id) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(id, n, "%.*s/%.*s/%.*s/%s", (int)scan.len, scan.ptr, (int)kind.len, kind.ptr,
             (int)overall.len, overall.ptr, final ? "final" : "interim");
    out->event_id = mkstr(id);
    out->member_id = is_digits(client, 20) ? client : mkstr("");
    out->status = status;
    out->reason = reason;
    if (HAS_1_5_FIELDS(out)) {
        out->occurred_at_ms = seconds_ms(jget(call, raw_body, "finishTime"));
        out->provider_ref = scan;
    }
    return DM_OK;
}

/* ---- query ---- */

static dm_status idenfy_query(dm_call *call, dm_str member_id, dm_str provider_ref,
                              dm_kyc_event *out, dm_message *msg)
{
    conf c;
    dm_http_response resp;
    dm_str overall, reason;
    dm_kyc_status status;
    const char *q;
    char *body, *id;
    size_t n;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    if (!is_id(provider_ref, ID_MAX)) {
        dm_msg_set(msg, "the scanRef is malformed");
        return DM_ERR_INVALID;
    }
    q = host->json_quote(call, provider_ref);
    n = (q ? strlen(q) : 0) + 32;
    body = host->alloc(call, n);
    if (!q || !body) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(body, n, "{\"scanRef\":%s}", q);
    st = api_call(call, &c, "/api/v2/status", mkstr(body), &resp, msg);
    if (st != DM_OK) {
        return st;
    }
    if (resp.status != 200) {
        return refusal(call, "reading a verification's status", &resp, msg);
    }
    overall = jget(call, resp.body, "status.overall");
    if (!overall.ptr) {
        overall = jget(call, resp.body, "status");
    }
    if (!is_id(overall, 32)) {
        dm_msg_set(msg, "iDenfy's status answer has no status");
        return DM_ERR_TEMPORARY;
    }
    status = overall_status(overall, &reason);
    if (status == DM_KYC_IGNORED) {
        status = DM_KYC_PENDING;
    }
    n = provider_ref.len + overall.len + 16;
    id = host->alloc(call, n);
    if (!id) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(id, n, "status/%.*s/%.*s", (int)provider_ref.len, provider_ref.ptr, (int)overall.len,
             overall.ptr);
    out->event_id = mkstr(id);
    out->member_id = member_id;
    out->status = status;
    out->reason = reason;
    if (HAS_1_5_FIELDS(out)) {
        out->occurred_at_ms = seconds_ms(jget(call, resp.body, "finishTime"));
        out->provider_ref = provider_ref;
    }
    return DM_OK;
}

/* ---- life cycle ---- */

static dm_status idenfy_init(const dm_host *h, dm_call *call, dm_message *msg)
{
    conf c;

    host = h;
    if (DM_HAS_FIELD(h, dm_host, setting_default)) {
        /* read by the host's polling job: at most one question per case
         * in this many seconds (iDenfy asks not to poll regularly) */
        h->setting_default(call, "poll_every_s", POLL_EVERY_DEFAULT);
    }
    return read_conf(call, &c, msg);
}

static dm_status idenfy_health(dm_call *call, dm_message *msg)
{
    conf c;
    return read_conf(call, &c, msg);
}

static const char *const required[] = {"api_key", "api_secret", "webhook_secret", NULL};

static const dm_kyc_ops ops = {
    .size = sizeof(dm_kyc_ops),
    .start = idenfy_start,
    .parse_webhook = idenfy_parse_webhook,
    .query = idenfy_query,
};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_KYC,
    .name = "kyc-idenfy",
    .version = IDENFY_VERSION,
    .required_settings = required,
    .init = idenfy_init,
    .fini = NULL,
    .ops = &ops,
    .health = idenfy_health,
    .handle_request = NULL,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *h)
{
    if (!DM_HAS_FIELD(h, dm_host, json_quote)) {
        return NULL;
    }
    return &desc;
}
