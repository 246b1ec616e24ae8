/*
 * kyc-sumsub — identity checks through Sumsub (PROVIDERS.md §5, README.md).
 *
 * start creates the member's applicant (POST /resources/applicants
 * ?levelName=<level>, externalUserId = our member id; an applicant that
 * already exists — HTTP 409 — is looked up by externalUserId) and mints a
 * WebSDK access token for it (POST /resources/accessTokens/sdk), handed to
 * the browser as {"token"}; the provider reference is the applicant id.
 * Every API call is signed: X-App-Token, X-App-Access-Ts (Unix seconds),
 * X-App-Access-Sig = lower-case hex HMAC-SHA256(secret_key, ts + METHOD +
 * path with query + body).
 *
 * parse_webhook checks X-Payload-Digest, the hex HMAC of the raw body under
 * webhook_secret with the algorithm X-Payload-Digest-Alg names:
 * HMAC_SHA256_HEX (also when the header is absent: Sumsub's default) or
 * HMAC_SHA512_HEX. HMAC_SHA1_HEX is refused with a sentence telling the
 * operator to switch the webhook to SHA-256 (libsodium has no SHA-1, and a
 * plugin should not need it). Then:
 *   applicantReviewed GREEN        approved
 *   applicantReviewed RED + RETRY  resubmission (the member may try again)
 *   applicantReviewed RED + FINAL  rejected (also RED without a type)
 *   applicantPending               pending (records the applicant id)
 *   applicantOnHold                needs review
 *   anything else                  ignored
 * The event id is "<correlationId>/<type>": a redelivery of one event is
 * the same id, while two types Sumsub sends for one action stay apart. The
 * event time is createdAtMs ("yyyy-MM-dd HH:mm:ss.fff" UTC, or a number of
 * milliseconds).
 *
 * query reads GET /resources/applicants/{applicantId}/status.
 *
 * Invariants: secrets never appear in a message; a setting is read on every
 * call (the .so may be declared twice); the only static is the host table.
 */
#include <deepmine/plugin.h>
#include <deepmine/plugin_util.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SUMSUB_VERSION "1.0.0"
#define DEFAULT_API_BASE "https://api.sumsub.com"
#define DEFAULT_LEVEL "basic-kyc-level"
#define DIGEST_HEADER "X-Payload-Digest"
#define ALG_HEADER "X-Payload-Digest-Alg"
#define TIMEOUT_DEFAULT 10000
#define TIMEOUT_MIN 100
#define TIMEOUT_MAX 60000
#define TTL_DEFAULT 1800
#define BASE_MAX 512
#define LEVEL_MAX 128
#define ID_MAX 128
#define REASON_MAX 200

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

static char *dup_str(dm_call *call, dm_str s)
{
    char *out = host->alloc(call, s.len + 1);

    if (out) {
        memcpy(out, s.ptr ? s.ptr : "", s.len);
        out[s.len] = '\0';
    }
    return out;
}

/* RFC 3986 percent-encoding of everything but the unreserved characters
 * (Sumsub: encode a level name before signing). */
static char *url_encode(dm_call *call, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = host->alloc(call, 3 * n + 1), *o = out;

    if (!out) {
        return NULL;
    }
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int take_num(dm_str s, size_t *i, size_t digits, int64_t *out)
{
    int64_t v = 0;

    if (*i + digits > s.len) {
        return 0;
    }
    for (size_t k = 0; k < digits; k++) {
        char c = s.ptr[*i + k];
        if (c < '0' || c > '9') {
            return 0;
        }
        v = v * 10 + (c - '0');
    }
    *i += digits;
    *out = v;
    return 1;
}

/* "yyyy-MM-dd HH:mm:ss[.fff]" (UTC; a 'T' between date and time and a
 * trailing 'Z' are accepted too) or plain milliseconds, as Unix ms. 0 when
 * it is neither. */
static int64_t parse_time_ms(dm_str s)
{
    int64_t y, mo, d, h, mi, sec, ms = 0;
    size_t i = 0;

    if (!s.ptr || s.len == 0) {
        return 0;
    }
    if (is_digits(s, 15)) {
        int64_t v = 0;
        for (size_t k = 0; k < s.len; k++) {
            v = v * 10 + (s.ptr[k] - '0');
        }
        return v;
    }
    if (!take_num(s, &i, 4, &y) || i >= s.len || s.ptr[i++] != '-' || !take_num(s, &i, 2, &mo) ||
        i >= s.len || s.ptr[i++] != '-' || !take_num(s, &i, 2, &d) || i >= s.len ||
        (s.ptr[i] != ' ' && s.ptr[i] != 'T')) {
        return 0;
    }
    i++;
    if (!take_num(s, &i, 2, &h) || i >= s.len || s.ptr[i++] != ':' || !take_num(s, &i, 2, &mi) ||
        i >= s.len || s.ptr[i++] != ':' || !take_num(s, &i, 2, &sec)) {
        return 0;
    }
    if (i < s.len && s.ptr[i] == '.') {
        size_t start = ++i;
        while (i < s.len && s.ptr[i] >= '0' && s.ptr[i] <= '9') {
            if (i - start < 3) {
                ms = ms * 10 + (s.ptr[i] - '0');
            }
            i++;
        }
        for (size_t k = i - start; k < 3; k++) {
            ms *= 10;
        }
        if (i == start) {
            return 0;
        }
    }
    if (i < s.len && s.ptr[i] == 'Z') {
        i++;
    }
    if (i != s.len || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 ||
        y < 1970) {
        return 0;
    }
    return ((days_from_civil(y, mo, d) * 86400) + h * 3600 + mi * 60 + sec) * 1000 + ms;
}

/* ---- settings ---- */

typedef struct conf {
    const char *name;
    const char *app_token;
    const char *secret_key;
    const char *webhook_secret;
    const char *level;
    char api_base[BASE_MAX];
    long ttl_s;
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
        c->name = "sumsub";
    }
    c->app_token = host->setting(call, "app_token");
    c->secret_key = host->setting(call, "secret_key");
    c->webhook_secret = host->setting(call, "webhook_secret");
    st = need(c, "app_token", c->app_token, "the App Token from Sumsub's Dev space", msg);
    if (st == DM_OK) {
        st = need(c, "secret_key", c->secret_key, "the Secret Key shown with the App Token", msg);
    }
    if (st == DM_OK) {
        st = need(c, "webhook_secret", c->webhook_secret,
                  "the secret key of the webhook in Sumsub's Dev space, Webhooks", msg);
    }
    if (st != DM_OK) {
        return st;
    }
    if (dm_has_ctl(c->app_token, strlen(c->app_token)) || strchr(c->app_token, ' ')) {
        dm_msg_set(msg, "app_token must be visible ASCII characters (no spaces)");
        return DM_ERR_CONFIG;
    }
    c->level = host->setting(call, "level_name");
    if (!c->level) {
        c->level = DEFAULT_LEVEL;
    }
    if (!*c->level || strlen(c->level) > LEVEL_MAX || dm_has_ctl(c->level, strlen(c->level))) {
        dm_msg_set(msg,
                   "level_name must be 1 to %d characters: the level's name in Sumsub's "
                   "dashboard (case-sensitive)",
                   LEVEL_MAX);
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
    c->ttl_s = TTL_DEFAULT;
    v = host->setting(call, "token_ttl_s");
    if (v && (!parse_uint(v, &c->ttl_s) || c->ttl_s < 60 || c->ttl_s > 86400)) {
        dm_msg_set(msg, "token_ttl_s must be a number of seconds from 60 to 86400");
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

/* ---- the signed API call ---- */

/* path starts with '/' and holds the query string; body may be empty. */
static dm_status api_call(dm_call *call, const conf *c, const char *method, const char *path,
                          dm_str body, dm_http_response *resp, dm_message *msg)
{
    dm_header hs[6];
    dm_http_request req;
    char ts[24], *url, *to_sign, *sig;
    size_t ulen = strlen(c->api_base) + strlen(path) + 1, slen, n = 0, k;
    unsigned char mac[32];
    dm_message why;
    dm_status st;

    snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
    url = host->alloc(call, ulen);
    slen = strlen(ts) + strlen(method) + strlen(path) + body.len;
    to_sign = host->alloc(call, slen + 1);
    if (!url || !to_sign) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(url, ulen, "%s%s", c->api_base, path);
    k = (size_t)snprintf(to_sign, slen + 1, "%s%s%s", ts, method, path);
    if (body.len) {
        memcpy(to_sign + k, body.ptr, body.len);
    }
    host->hmac_sha256(c->secret_key, strlen(c->secret_key), to_sign, slen, mac);
    sig = host->hex_encode(call, mac, sizeof(mac));
    memset(mac, 0, sizeof(mac));
    if (!sig) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    hs[n].name = mkstr("X-App-Token");
    hs[n++].value = mkstr(c->app_token);
    hs[n].name = mkstr("X-App-Access-Ts");
    hs[n++].value = mkstr(dup_str(call, mkstr(ts)));
    hs[n].name = mkstr("X-App-Access-Sig");
    hs[n++].value = mkstr(sig);
    hs[n].name = mkstr("Accept");
    hs[n++].value = mkstr("application/json");
    /* Sumsub's advice: always a JSON content type, body or not. */
    hs[n].name = mkstr("Content-Type");
    hs[n++].value = mkstr("application/json");
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
        dm_msg_set(msg, "Sumsub did not answer %s %s: %s", method, path, why.text);
        return DM_ERR_TEMPORARY;
    }
    return DM_OK;
}

static dm_status refusal(dm_call *call, const char *what, const dm_http_response *resp,
                         dm_message *msg)
{
    dm_str m = jget(call, resp->body, "description");
    int shown = m.ptr && !dm_has_ctl(m.ptr, m.len);

    if (resp->status == 401 || resp->status == 403) {
        dm_msg_set(msg,
                   "Sumsub refused the app token or signature (HTTP %d) on %s: check app_token and "
                   "secret_key (and the server's clock: Sumsub allows one minute)",
                   resp->status, what);
        return DM_ERR_CONFIG;
    }
    dm_msg_set(msg, "Sumsub answered HTTP %d on %s%s%.*s", resp->status, what, shown ? ": " : "",
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

static dm_status applicant_id(dm_call *call, const conf *c, dm_str member, dm_str email,
                              dm_str *out, dm_message *msg)
{
    const char *level = url_encode(call, c->level);
    const char *mid = dup_str(call, member);
    const char *qid, *qmail;
    dm_http_response resp;
    dm_status st;

    if (!level || !mid) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    qid = host->json_quote(call, member);
    qmail = email.len ? host->json_quote(call, email) : NULL;
    if (!qid || (email.len && !qmail)) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    {
        size_t n = strlen(qid) + (qmail ? strlen(qmail) : 0) + 64;
        char *json = host->alloc(call, n);
        char *p2 = host->alloc(call, strlen(level) + 48);
        if (!json || !p2) {
            dm_msg_set(msg, "out of memory");
            return DM_ERR_INTERNAL;
        }
        if (qmail) {
            snprintf(json, n, "{\"externalUserId\":%s,\"email\":%s}", qid, qmail);
        } else {
            snprintf(json, n, "{\"externalUserId\":%s}", qid);
        }
        snprintf(p2, strlen(level) + 48, "/resources/applicants?levelName=%s", level);
        st = api_call(call, c, "POST", p2, mkstr(json), &resp, msg);
    }
    if (st != DM_OK) {
        return st;
    }
    if (resp.status == 409) {
        /* The member has an applicant already: look it up by our id. */
        size_t n = strlen(mid) + 64;
        char *p3 = host->alloc(call, n);
        if (!p3) {
            dm_msg_set(msg, "out of memory");
            return DM_ERR_INTERNAL;
        }
        snprintf(p3, n, "/resources/applicants/-;externalUserId=%s/one", mid);
        st = api_call(call, c, "GET", p3, mkstr(""), &resp, msg);
        if (st != DM_OK) {
            return st;
        }
        if (resp.status != 200) {
            return refusal(call, "reading the member's applicant", &resp, msg);
        }
    } else if (resp.status != 200 && resp.status != 201) {
        return refusal(call, "creating an applicant", &resp, msg);
    }
    *out = jget(call, resp.body, "id");
    if (!is_id(*out, ID_MAX)) {
        dm_msg_set(msg, "Sumsub's applicant has no usable id");
        return DM_ERR_TEMPORARY;
    }
    return DM_OK;
}

static dm_status sumsub_start(dm_call *call, dm_str member_id, dm_str email,
                              dm_kyc_start_result *out, dm_message *msg)
{
    conf c;
    dm_http_response resp;
    dm_str app = {NULL, 0}, token;
    const char *uid, *lvl;
    char *body;
    size_t n;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    if (!is_digits(member_id, 20)) {
        dm_msg_set(msg, "the member id must be digits");
        return DM_ERR_INVALID;
    }
    if (email.len && (dm_has_ctl(email.ptr, email.len) || email.len > 254)) {
        email.len = 0;
    }
    st = applicant_id(call, &c, member_id, email, &app, msg);
    if (st != DM_OK) {
        return st;
    }
    uid = host->json_quote(call, member_id);
    lvl = host->json_quote(call, mkstr(c.level));
    if (!uid || !lvl) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    n = strlen(uid) + strlen(lvl) + 80;
    body = host->alloc(call, n);
    if (!body) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(body, n, "{\"userId\":%s,\"levelName\":%s,\"ttlInSecs\":%ld}", uid, lvl, c.ttl_s);
    st = api_call(call, &c, "POST", "/resources/accessTokens/sdk", mkstr(body), &resp, msg);
    if (st != DM_OK) {
        return st;
    }
    if (resp.status != 200) {
        return refusal(call, "minting a WebSDK access token", &resp, msg);
    }
    token = jget(call, resp.body, "token");
    if (!token.ptr || token.len == 0 || token.len > 4096 || dm_has_ctl(token.ptr, token.len)) {
        dm_msg_set(msg, "Sumsub's access token answer has no token");
        return DM_ERR_TEMPORARY;
    }
    out->token = token;
    out->provider_ref = app;
    return DM_OK;
}

/* ---- webhooks ---- */

static dm_status verify(dm_call *call, const conf *c, dm_str body, const dm_header *hs, size_t n,
                        dm_message *msg)
{
    const dm_header *dig = dm_header_find(hs, n, DIGEST_HEADER);
    const dm_header *alg = dm_header_find(hs, n, ALG_HEADER);
    unsigned char mac[64];
    size_t maclen;
    char *expected;
    const char *key = c->webhook_secret;

    if (alg && dm_str_eq(alg->value, "HMAC_SHA1_HEX")) {
        dm_msg_set(msg, "this Sumsub webhook is signed with HMAC-SHA1 (X-Payload-Digest-Alg "
                        "HMAC_SHA1_HEX), which DeepMine does not accept: in Sumsub's dashboard "
                        "(Dev space, Webhooks) set the webhook's signature algorithm to SHA256 "
                        "(or SHA512)");
        return DM_ERR_INVALID;
    }
    if (!alg || dm_str_eq(alg->value, "HMAC_SHA256_HEX")) {
        host->hmac_sha256(key, strlen(key), body.ptr ? body.ptr : "", body.len, mac);
        maclen = 32;
    } else if (dm_str_eq(alg->value, "HMAC_SHA512_HEX")) {
        if (!DM_HAS_FIELD(host, dm_host, hmac_sha512)) {
            dm_msg_set(msg, "this server cannot check HMAC_SHA512_HEX: set the webhook to SHA256");
            return DM_ERR_INVALID;
        }
        host->hmac_sha512(key, strlen(key), body.ptr ? body.ptr : "", body.len, mac);
        maclen = 64;
    } else {
        dm_msg_set(msg, "unknown " ALG_HEADER " (expected HMAC_SHA256_HEX or HMAC_SHA512_HEX)");
        return DM_ERR_INVALID;
    }
    if (!dig || !dig->value.ptr || dig->value.len == 0) {
        memset(mac, 0, sizeof(mac));
        dm_msg_set(msg, "no " DIGEST_HEADER " header");
        return DM_ERR_INVALID;
    }
    expected = host->hex_encode(call, mac, maclen);
    memset(mac, 0, sizeof(mac));
    if (!expected) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    if (dig->value.len != 2 * maclen || !host->equal_ct(expected, dig->value.ptr, 2 * maclen)) {
        dm_msg_set(msg, "the " DIGEST_HEADER " does not match the body (wrong webhook_secret, or "
                        "the body was altered)");
        return DM_ERR_INVALID;
    }
    return DM_OK;
}

/* A moderation comment Sumsub means for the member, made safe: control
 * characters become spaces, at most REASON_MAX bytes (cut on a UTF-8
 * boundary). */
static dm_str safe_reason(dm_call *call, dm_str s)
{
    size_t n = s.len > REASON_MAX ? REASON_MAX : s.len;
    char *out;

    if (!s.ptr || s.len == 0) {
        return mkstr("");
    }
    while (n > 0 && n < s.len && ((unsigned char)s.ptr[n] & 0xC0) == 0x80) {
        n--;
    }
    out = host->alloc(call, n + 1);
    if (!out) {
        return mkstr("");
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        out[i] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
    }
    out[n] = '\0';
    return mkstr(out);
}

/* The verdict of a reviewResult at `prefix` ("reviewResult"). */
static dm_kyc_status verdict(dm_call *call, dm_str json, dm_str *reason)
{
    dm_str answer = jget(call, json, "reviewResult.reviewAnswer");
    dm_str type = jget(call, json, "reviewResult.reviewRejectType");

    *reason = mkstr("");
    if (dm_str_eq(answer, "GREEN")) {
        return DM_KYC_APPROVED;
    }
    if (!dm_str_eq(answer, "RED")) {
        return DM_KYC_PENDING;
    }
    *reason = safe_reason(call, jget(call, json, "reviewResult.moderationComment"));
    return dm_str_eq(type, "RETRY") ? DM_KYC_RESUBMISSION : DM_KYC_REJECTED;
}

static dm_status sumsub_parse_webhook(dm_call *call, dm_str raw_body, const dm_header *headers,
                                      size_t n_headers, dm_kyc_event *out, dm_message *msg)
{
    conf c;
    dm_str type, corr, ext, app, created, reason = {"", 0};
    dm_kyc_status status = DM_KYC_IGNORED;
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
    type = jget(call, raw_body, "type");
    corr = jget(call, raw_body, "correlationId");
    ext = jget(call, raw_body, "externalUserId");
    app = jget(call, raw_body, "applicantId");
    created = jget(call, raw_body, "createdAtMs");
    if (!is_id(type, 64) || !is_id(corr, ID_MAX)) {
        dm_msg_set(msg, "the webhook has no type or correlationId");
        return DM_ERR_INVALID;
    }
    if (dm_str_eq(type, "applicantReviewed")) {
        status = verdict(call, raw_body, &reason);
        if (status == DM_KYC_PENDING) {
            dm_msg_set(msg, "the applicantReviewed webhook has no reviewAnswer GREEN or RED");
            return DM_ERR_INVALID;
        }
    } else if (dm_str_eq(type, "applicantPending")) {
        status = DM_KYC_PENDING;
    } else if (dm_str_eq(type, "applicantOnHold")) {
        status = DM_KYC_NEEDS_REVIEW;
    }
    if (status != DM_KYC_IGNORED && !is_digits(ext, 20)) {
        dm_msg_set(msg, "the %.*s webhook's externalUserId is not one of our member ids",
                   (int)type.len, type.ptr);
        return DM_ERR_INVALID;
    }
    if (app.len && !is_id(app, ID_MAX)) {
        dm_msg_set(msg, "the webhook's applicantId is malformed");
        return DM_ERR_INVALID;
    }
    n = corr.len + type.len + 2;
    id = host->alloc(call, n);
    if (!id) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(id, n, "%.*s/%.*s", (int)corr.len, corr.ptr, (int)type.len, type.ptr);
    out->event_id = mkstr(id);
    out->member_id = is_digits(ext, 20) ? ext : mkstr("");
    out->status = status;
    out->reason = reason;
    if (HAS_1_5_FIELDS(out)) {
        out->occurred_at_ms = parse_time_ms(created);
        out->provider_ref = app.len ? app : mkstr("");
    }
    return DM_OK;
}

/* ---- query ---- */

static dm_status sumsub_query(dm_call *call, dm_str member_id, dm_str provider_ref,
                              dm_kyc_event *out, dm_message *msg)
{
    conf c;
    dm_http_response resp;
    dm_str rs, when, reason;
    dm_kyc_status status;
    char *path, *id;
    size_t n;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    if (!is_id(provider_ref, ID_MAX)) {
        dm_msg_set(msg, "the applicant id is malformed");
        return DM_ERR_INVALID;
    }
    n = provider_ref.len + 48;
    path = host->alloc(call, n);
    if (!path) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(path, n, "/resources/applicants/%.*s/status", (int)provider_ref.len, provider_ref.ptr);
    st = api_call(call, &c, "GET", path, mkstr(""), &resp, msg);
    if (st != DM_OK) {
        return st;
    }
    if (resp.status != 200) {
        return refusal(call, "reading an applicant's status", &resp, msg);
    }
    rs = jget(call, resp.body, "reviewStatus");
    status = verdict(call, resp.body, &reason);
    if (!dm_str_eq(rs, "completed")) {
        status = dm_str_eq(rs, "onHold") ? DM_KYC_NEEDS_REVIEW : DM_KYC_PENDING;
        reason = mkstr("");
    }
    when = jget(call, resp.body, "reviewDate");
    n = provider_ref.len + 96;
    id = host->alloc(call, n);
    if (!id) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    snprintf(id, n, "status/%.*s/%d/%lld", (int)provider_ref.len, provider_ref.ptr, (int)status,
             (long long)parse_time_ms(when));
    out->event_id = mkstr(id);
    out->member_id = member_id;
    out->status = status;
    out->reason = reason;
    if (HAS_1_5_FIELDS(out)) {
        /* reviewDate is known to the second: it counts as that second's
         * end, so it is never older than an event of the same second */
        out->occurred_at_ms = parse_time_ms(when);
        if (out->occurred_at_ms && when.len == 19) {
            out->occurred_at_ms += 999;
        }
        out->provider_ref = provider_ref;
    }
    return DM_OK;
}

/* ---- life cycle ---- */

static dm_status sumsub_init(const dm_host *h, dm_call *call, dm_message *msg)
{
    conf c;

    host = h;
    return read_conf(call, &c, msg);
}

static dm_status sumsub_health(dm_call *call, dm_message *msg)
{
    conf c;
    return read_conf(call, &c, msg);
}

static const char *const required[] = {"app_token", "secret_key", "webhook_secret", NULL};

static const dm_kyc_ops ops = {
    .size = sizeof(dm_kyc_ops),
    .start = sumsub_start,
    .parse_webhook = sumsub_parse_webhook,
    .query = sumsub_query,
};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_KYC,
    .name = "kyc-sumsub",
    .version = SUMSUB_VERSION,
    .required_settings = required,
    .init = sumsub_init,
    .fini = NULL,
    .ops = &ops,
    .health = sumsub_health,
    .handle_request = NULL,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *h)
{
    /* hmac_sha512 (1.4) is checked where it is used: without it only
     * HMAC_SHA256_HEX webhooks verify. */
    if (!DM_HAS_FIELD(h, dm_host, json_quote)) {
        return NULL;
    }
    return &desc;
}
