/*
 * mailer-resend — a mailer plugin for Resend (https://resend.com): sends
 * with POST {api_url}/emails through the host's HTTP client, and verifies
 * and reads Resend's delivery webhooks, which Svix signs. The protocol facts
 * are in PROVIDERS.md §7; tests/standins/resend_standin.py speaks them.
 *
 * Invariants:
 * - Nothing reaches Resend that the host's e-mail builder would refuse:
 *   every send first asks host->mime_message for the message (and throws
 *   it away), so header injection, non-ASCII addresses and replaced
 *   builder headers are refused by the same rules as every other mailer.
 * - Every send carries an Idempotency-Key derived from the message's
 *   idempotency key (used as is when it is 1 to 256 visible ASCII
 *   characters, else "sha256:<hex>"), so a retried send is delivered once:
 *   Resend answers a repeated key with the first answer for 24 hours.
 * - A webhook is believed only when one of its v1 signatures is the
 *   HMAC-SHA-256, keyed with the decoded webhook_secret, of
 *   "<svix-id>.<svix-timestamp>.<raw body>" (compared in constant time),
 *   and its timestamp is within 300 s of now, either way.
 * - Per-instance state lives in the settings, read on every call; the only
 *   static is the host table (the .so may be declared twice).
 *
 * Error mapping of a send: no answer or a 5xx is DM_ERR_TEMPORARY; a 429 is
 * DM_ERR_TEMPORARY with host->retry_after (the retry-after header, or an
 * hour for a used-up daily or monthly quota); 400, 401, 403, 404, 422 and
 * other 4xx are DM_ERR_PERMANENT, except 409 concurrent_idempotent_requests
 * (the first try is still running: temporary).
 */
#include <deepmine/plugin.h>
#include <deepmine/plugin_util.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define RESEND_VERSION "1.0.0"
#define API_URL_DEFAULT "https://api.resend.com"
#define RATE_DEFAULT "2"
#define RATE_MAX 10000L
#define TIMEOUT_DEFAULT_MS 15000L
#define TIMEOUT_MAX_MS 600000L
#define URL_MAX 2048
#define IDEMPOTENCY_KEY_MAX 256
#define PROVIDER_ID_MAX 255
#define SECRET_MIN_BYTES 16
#define SVIX_TOLERANCE_S 300
#define QUOTA_RETRY_S 3600u
#define RETRY_AFTER_MAX_S 86400L
/* base64 of a 32-byte HMAC: 44 characters with padding. */
#define SIG_B64_LEN 44

static const dm_host *host;

typedef struct conf {
    const char *api_key;
    char url[URL_MAX]; /* {api_url}/emails */
    const char *from;
    const unsigned char *secret; /* decoded webhook_secret, or NULL */
    size_t secret_len;
    long timeout_ms;
} conf;

/* The clock of the webhook tolerance. The host will offer one (tests will
 * then move it); until then, the system's, kept to this one place. */
static int64_t now_sec(void)
{
    return (int64_t)time(NULL);
}

static int setting_long(dm_call *call, const char *key, long min, long max, long *out)
{
    const char *v = host->setting(call, key);
    return !v || dm_parse_long(v, strlen(v), min, max, out);
}

/* http:// is only for a stand-in on this machine: the key is a secret. */
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

static dm_status read_conf(dm_call *call, conf *c, dm_message *msg)
{
    const char *api_url = host->setting(call, "api_url"), *secret;
    size_t n;
    long rate;

    memset(c, 0, sizeof(*c));
    c->api_key = host->setting(call, "api_key");
    if (!c->api_key || !*c->api_key || dm_has_ctl(c->api_key, strlen(c->api_key)) ||
        strchr(c->api_key, ' ')) {
        dm_msg_set(msg, "api_key must be set (re_…), without spaces or control characters");
        return DM_ERR_CONFIG;
    }
    if (!api_url || !*api_url) {
        api_url = API_URL_DEFAULT;
    }
    n = strlen(api_url);
    while (n > 0 && api_url[n - 1] == '/') {
        n--;
    }
    if (n + sizeof("/emails") > sizeof(c->url) || dm_has_ctl(api_url, n) ||
        memchr(api_url, ' ', n) || memchr(api_url, '?', n) || memchr(api_url, '#', n)) {
        dm_msg_set(msg, "api_url must be a plain https:// URL, like " API_URL_DEFAULT);
        return DM_ERR_CONFIG;
    }
    snprintf(c->url, sizeof(c->url), "%.*s/emails", (int)n, api_url);
    if (!url_allowed(c->url)) {
        dm_msg_set(msg, "api_url must start with https:// (http:// only to 127.0.0.1 or "
                        "localhost, for a stand-in)");
        return DM_ERR_CONFIG;
    }
    c->from = host->setting(call, "from");
    if (c->from && (dm_has_ctl(c->from, strlen(c->from)) || !strchr(c->from, '@'))) {
        dm_msg_set(msg, "from must be an address (noreply@example.com or Name "
                        "<noreply@example.com>) without control characters");
        return DM_ERR_CONFIG;
    }
    c->timeout_ms = TIMEOUT_DEFAULT_MS;
    if (!setting_long(call, "timeout_ms", 100, TIMEOUT_MAX_MS, &c->timeout_ms)) {
        dm_msg_set(msg, "timeout_ms must be a whole number of milliseconds from 100 to %ld",
                   TIMEOUT_MAX_MS);
        return DM_ERR_CONFIG;
    }
    if (!setting_long(call, "rate_per_second", 1, RATE_MAX, &rate)) {
        dm_msg_set(msg, "rate_per_second must be a whole number from 1 to %ld", RATE_MAX);
        return DM_ERR_CONFIG;
    }
    secret = host->setting(call, "webhook_secret");
    if (secret && *secret) {
        /* Svix: the key is the base64 after "whsec_", decoded. */
        if (!strncmp(secret, "whsec_", 6)) {
            secret += 6;
        }
        c->secret = host->base64_decode(call, secret, strlen(secret), &c->secret_len);
        if (!c->secret || c->secret_len < SECRET_MIN_BYTES) {
            dm_msg_set(msg,
                       "webhook_secret must be Resend's signing secret, whsec_ followed by "
                       "base64 of at least %d bytes",
                       SECRET_MIN_BYTES);
            return DM_ERR_CONFIG;
        }
    }
    return DM_OK;
}

/* ---- send ---- */

/* Text from Resend for a message: control characters blanked, cut short. */
static const char *clean(dm_call *call, const char *s, size_t n)
{
    char *out;

    if (!s) {
        return "";
    }
    n = n > 120 ? 120 : n;
    out = host->alloc(call, n + 1);
    if (!out) {
        return "";
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? ' ' : s[i];
    }
    out[n] = '\0';
    return out;
}

/* Seconds from a response header of delay-seconds, or `dflt`. */
static long header_seconds(const dm_http_response *r, const char *name, long dflt)
{
    const dm_header *h = dm_header_find(r->headers, r->n_headers, name);
    long v;

    if (h && h->value.ptr && dm_parse_long(h->value.ptr, h->value.len, 0, RETRY_AFTER_MAX_S, &v)) {
        return v;
    }
    return dflt;
}

/* The Idempotency-Key header's value: the key itself when Resend takes it
 * (1 to 256 visible ASCII characters), else a digest of it; a random one
 * for a message without a key. */
static const char *idempotency_key(dm_call *call, dm_str key)
{
    unsigned char digest[32];
    char *out, *hex;
    int plain = key.len > 0 && key.len <= IDEMPOTENCY_KEY_MAX;

    for (size_t i = 0; plain && i < key.len; i++) {
        if ((unsigned char)key.ptr[i] < 0x21 || (unsigned char)key.ptr[i] > 0x7e) {
            plain = 0;
        }
    }
    if (plain) {
        out = host->alloc(call, key.len + 1);
        if (out) {
            memcpy(out, key.ptr, key.len);
            out[key.len] = '\0';
        }
        return out;
    }
    if (key.len) {
        host->sha256(key.ptr, key.len, digest);
    } else {
        host->random_bytes(digest, sizeof(digest));
    }
    hex = host->hex_encode(call, digest, sizeof(digest));
    out = host->alloc(call, 7 + 64 + 1);
    if (out && hex) {
        snprintf(out, 7 + 64 + 1, "sha256:%s", hex);
    }
    return hex ? out : NULL;
}

/* The JSON body: {"from","to":[…],"subject","text"?,"html"?,"headers"?}.
 * NULL when a string has no JSON spelling (it is not UTF-8). */
static char *json_body(dm_call *call, const dm_mail *m, size_t *out_len)
{
    enum { FIXED = 6 };
    const char *q[FIXED];
    const char **hq;
    size_t total = 64, n;
    char *out, *w;

    hq = host->alloc(call, sizeof(*hq) * (2 * m->n_headers + 1));
    q[0] = host->json_quote(call, m->from);
    q[1] = host->json_quote(call, m->to);
    q[2] = host->json_quote(call, m->subject);
    q[3] = m->text.len ? host->json_quote(call, m->text) : "";
    q[4] = m->html.len ? host->json_quote(call, m->html) : "";
    q[5] = "";
    for (size_t i = 0; i < FIXED; i++) {
        if (!q[i] || !hq) {
            return NULL;
        }
        total += strlen(q[i]) + 16;
    }
    for (size_t i = 0; i < m->n_headers; i++) {
        hq[2 * i] = host->json_quote(call, m->headers[i].name);
        hq[2 * i + 1] = host->json_quote(call, m->headers[i].value);
        if (!hq[2 * i] || !hq[2 * i + 1]) {
            return NULL;
        }
        total += strlen(hq[2 * i]) + strlen(hq[2 * i + 1]) + 2;
    }
    out = host->alloc(call, total);
    if (!out) {
        return NULL;
    }
    w = out;
    w += sprintf(w, "{\"from\":%s,\"to\":[%s],\"subject\":%s", q[0], q[1], q[2]);
    if (m->text.len) {
        w += sprintf(w, ",\"text\":%s", q[3]);
    }
    if (m->html.len) {
        w += sprintf(w, ",\"html\":%s", q[4]);
    }
    if (m->n_headers) {
        w += sprintf(w, ",\"headers\":{");
        for (size_t i = 0; i < m->n_headers; i++) {
            w += sprintf(w, "%s%s:%s", i ? "," : "", hq[2 * i], hq[2 * i + 1]);
        }
        *w++ = '}';
    }
    *w++ = '}';
    *w = '\0';
    n = (size_t)(w - out);
    *out_len = n;
    return out;
}

/* An error answer: Resend's {"statusCode","message","name"} judged. */
static dm_status judge(dm_call *call, const dm_http_response *r, dm_message *msg)
{
    size_t name_len = 0, text_len = 0;
    const char *name = host->json_get(call, r->body, "name", &name_len);
    const char *text = host->json_get(call, r->body, "message", &text_len);
    dm_str nm = {name, name_len};
    const char *shown_name = name ? clean(call, name, name_len) : "no error name";
    const char *shown_text = text ? clean(call, text, text_len) : "";

    if (r->status == 429) {
        long wait;
        if (dm_str_eq(nm, "daily_quota_exceeded") || dm_str_eq(nm, "monthly_quota_exceeded")) {
            host->retry_after(call, QUOTA_RETRY_S);
            dm_msg_set(msg,
                       "Resend's %s sending quota is used up (%s): %s; trying again in an hour",
                       dm_str_eq(nm, "daily_quota_exceeded") ? "daily" : "monthly", shown_name,
                       shown_text);
            return DM_ERR_TEMPORARY;
        }
        /* retry-after, else the older ratelimit-reset, else a second. */
        wait = header_seconds(r, "retry-after", header_seconds(r, "ratelimit-reset", 1));
        host->retry_after(call, (uint32_t)wait);
        dm_msg_set(msg, "Resend is rate limiting (429 %s): try again in %ld s", shown_name, wait);
        return DM_ERR_TEMPORARY;
    }
    if (r->status >= 500 || r->status < 400) {
        dm_msg_set(msg, "Resend answered %d (%s): %s; trying again later", r->status, shown_name,
                   shown_text);
        return DM_ERR_TEMPORARY;
    }
    if (r->status == 409 && dm_str_eq(nm, "concurrent_idempotent_requests")) {
        host->retry_after(call, 1);
        dm_msg_set(msg, "Resend is still sending the first try of this key (409 %s)", shown_name);
        return DM_ERR_TEMPORARY;
    }
    dm_msg_set(msg, "Resend refused the message: %d %s: %s%s", r->status, shown_name, shown_text,
               r->status == 401 || r->status == 403 ? " (check api_key)" : "");
    return DM_ERR_PERMANENT;
}

static dm_status resend_send(dm_call *call, const dm_mail *mail_in, dm_str *message_id,
                             dm_message *msg)
{
    conf c;
    dm_mail m;
    const char *mid, *key, *id;
    char *body, *auth;
    size_t body_len = 0, len = 0, id_len = 0;
    dm_header hs[4];
    dm_http_request req;
    dm_http_response resp;
    dm_status st;

    memset(&m, 0, sizeof(m));
    memcpy(&m, mail_in, mail_in->size < sizeof(m) ? mail_in->size : sizeof(m));
    m.size = sizeof(m);
    if (!m.headers) {
        m.n_headers = 0;
    }
    st = read_conf(call, &c, msg);
    if (st != DM_OK) {
        return st;
    }
    if (m.from.len == 0 && c.from) {
        m.from.ptr = c.from;
        m.from.len = strlen(c.from);
    }
    if (m.from.len == 0) {
        dm_msg_set(msg, "the mail has no sender and the setting from is not set");
        return DM_ERR_CONFIG;
    }
    /* The host's builder is the judge of what may be sent. */
    mid = host->message_id_for(call, m.idempotency_key, m.from);
    if (!mid || !host->mime_message(call, &m, mid, now_sec(), &len)) {
        dm_msg_set(msg, "the message cannot be built from these fields");
        return DM_ERR_INVALID;
    }
    body = json_body(call, &m, &body_len);
    if (!body) {
        dm_msg_set(msg, "the text or HTML body is not UTF-8 (JSON cannot carry it)");
        return DM_ERR_INVALID;
    }
    key = idempotency_key(call, m.idempotency_key);
    auth = host->alloc(call, strlen(c.api_key) + 8);
    if (!key || !auth) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    sprintf(auth, "Bearer %s", c.api_key);
    hs[0] = (dm_header){{"Authorization", 13}, {auth, strlen(auth)}};
    hs[1] = (dm_header){{"Content-Type", 12}, {"application/json", 16}};
    hs[2] = (dm_header){{"Accept", 6}, {"application/json", 16}};
    hs[3] = (dm_header){{"Idempotency-Key", 15}, {key, strlen(key)}};
    memset(&req, 0, sizeof(req));
    req.size = sizeof(req);
    req.method = "POST";
    req.url = c.url;
    req.headers = hs;
    req.n_headers = 4;
    req.body.ptr = body;
    req.body.len = body_len;
    req.timeout_ms = (uint32_t)c.timeout_ms;
    memset(&resp, 0, sizeof(resp));
    resp.size = sizeof(resp);
    st = host->http(call, &req, &resp, msg);
    if (st != DM_OK) {
        return DM_ERR_TEMPORARY; /* no answer: msg says why */
    }
    if (resp.status < 200 || resp.status > 299) {
        return judge(call, &resp, msg);
    }
    id = host->json_get(call, resp.body, "id", &id_len);
    if (!id || id_len == 0 || id_len > PROVIDER_ID_MAX || dm_has_ctl(id, id_len)) {
        /* Sent or not, a retry with the same key is answered alike. */
        dm_msg_set(msg, "Resend answered %d without an email id", resp.status);
        return DM_ERR_TEMPORARY;
    }
    message_id->ptr = id;
    message_id->len = id_len;
    return DM_OK;
}

/* ---- webhooks (Svix) ---- */

static dm_str header_value(const dm_header *hs, size_t n, const char *name)
{
    const dm_header *h = dm_header_find(hs, n, name);
    dm_str none = {NULL, 0};
    return h && h->value.ptr && h->value.len ? h->value : none;
}

/* Checks a Svix signature over the raw body; DM_ERR_INVALID with a sentence
 * when it does not hold. */
static dm_status verify_svix(dm_call *call, const conf *c, dm_str body, const dm_header *hs,
                             size_t n, dm_str *event_id, dm_message *msg)
{
    /* Svix's own names, or Standard Webhooks' for white-labelled senders. */
    const char *prefix = dm_header_find(hs, n, "svix-id") ? "svix" : "webhook";
    char name[32];
    dm_str id, ts, sig;
    unsigned char mac[32];
    char *signed_text, *expected;
    long t;
    int64_t now;
    int ok = 0, seen_v1 = 0;
    const char *p, *end;

    snprintf(name, sizeof(name), "%s-id", prefix);
    id = header_value(hs, n, name);
    snprintf(name, sizeof(name), "%s-timestamp", prefix);
    ts = header_value(hs, n, name);
    snprintf(name, sizeof(name), "%s-signature", prefix);
    sig = header_value(hs, n, name);
    if (!id.ptr || !ts.ptr || !sig.ptr) {
        dm_msg_set(msg, "not a signed Resend webhook: the svix-id, svix-timestamp and "
                        "svix-signature headers are required");
        return DM_ERR_INVALID;
    }
    if (id.len > PROVIDER_ID_MAX || dm_has_ctl(id.ptr, id.len)) {
        dm_msg_set(msg, "the %s-id header is malformed", prefix);
        return DM_ERR_INVALID;
    }
    if (!dm_parse_long(ts.ptr, ts.len, 1, 99999999999L, &t)) {
        dm_msg_set(msg, "the %s-timestamp header is not a Unix time in seconds", prefix);
        return DM_ERR_INVALID;
    }
    signed_text = host->alloc(call, id.len + ts.len + body.len + 3);
    if (!signed_text) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    memcpy(signed_text, id.ptr, id.len);
    signed_text[id.len] = '.';
    memcpy(signed_text + id.len + 1, ts.ptr, ts.len);
    signed_text[id.len + 1 + ts.len] = '.';
    if (body.len) {
        memcpy(signed_text + id.len + ts.len + 2, body.ptr, body.len);
    }
    host->hmac_sha256(c->secret, c->secret_len, signed_text, id.len + ts.len + 2 + body.len, mac);
    expected = host->base64_encode(call, mac, sizeof(mac));
    if (!expected) {
        dm_msg_set(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    /* "v1,<b64> v1,<b64> …": any v1 entry may match (secret rotation);
     * entries of other versions are ignored. */
    p = sig.ptr;
    end = sig.ptr + sig.len;
    while (p < end) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        const char *e = sp ? sp : end;
        if (e - p == 3 + SIG_B64_LEN && !memcmp(p, "v1,", 3)) {
            seen_v1 = 1;
            /* No early exit: every candidate is compared. */
            ok |= host->equal_ct(expected, p + 3, SIG_B64_LEN);
        } else if (e - p > 3 && !memcmp(p, "v1,", 3)) {
            seen_v1 = 1;
        }
        p = sp ? sp + 1 : end;
    }
    if (!ok) {
        dm_msg_set(msg, "%s",
                   seen_v1 ? "the webhook signature does not match the body (wrong "
                             "webhook_secret, or the body was altered)"
                           : "the webhook carries no v1 signature");
        return DM_ERR_INVALID;
    }
    now = now_sec();
    if ((int64_t)t < now - SVIX_TOLERANCE_S) {
        dm_msg_set(msg, "the webhook timestamp is more than %d s old (a replay?)",
                   SVIX_TOLERANCE_S);
        return DM_ERR_INVALID;
    }
    if ((int64_t)t > now + SVIX_TOLERANCE_S) {
        dm_msg_set(msg, "the webhook timestamp is more than %d s in the future", SVIX_TOLERANCE_S);
        return DM_ERR_INVALID;
    }
    *event_id = id;
    return DM_OK;
}

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

static dm_status resend_parse_webhook(dm_call *call, dm_str raw_body, const dm_header *headers,
                                      size_t n_headers, dm_mail_event *out, dm_message *msg)
{
    conf c;
    dm_mail_event ev;
    dm_str type;
    uint32_t size = out->size;
    dm_status st = read_conf(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    if (!c.secret) {
        dm_msg_set(msg, "webhook_secret is not set: Resend's webhooks cannot be verified");
        return DM_ERR_CONFIG;
    }
    memset(&ev, 0, sizeof(ev));
    st = verify_svix(call, &c, raw_body, headers, n_headers, &ev.event_id, msg);
    if (st != DM_OK) {
        return st;
    }
    type = field(call, raw_body, "type");
    if (!type.ptr || type.len == 0) {
        dm_msg_set(msg, "the event has no type");
        return DM_ERR_INVALID;
    }
    ev.message_id = field(call, raw_body, "data.email_id");
    ev.recipient = field(call, raw_body, "data.to.0");
    if (!ev.recipient.ptr) {
        /* One recipient may come as a plain string. */
        dm_str to = field(call, raw_body, "data.to");
        if (to.ptr && to.len && to.ptr[0] != '[') {
            ev.recipient = to;
        }
    }
    if (dm_str_eq(type, "email.delivered")) {
        ev.type = DM_MAIL_DELIVERED;
    } else if (dm_str_eq(type, "email.bounced")) {
        ev.type = DM_MAIL_BOUNCED;
    } else if (dm_str_eq(type, "email.complained")) {
        ev.type = DM_MAIL_COMPLAINED;
    } else {
        ev.type = DM_MAIL_OTHER; /* verified, but not a type the core acts on */
    }
    if (ev.type != DM_MAIL_OTHER && ev.message_id.len == 0) {
        dm_msg_set(msg, "the %.*s event has no data.email_id", (int)type.len, type.ptr);
        return DM_ERR_INVALID;
    }
    if (ev.message_id.len > PROVIDER_ID_MAX || dm_has_ctl(ev.message_id.ptr, ev.message_id.len) ||
        ev.recipient.len > 320 || dm_has_ctl(ev.recipient.ptr, ev.recipient.len)) {
        dm_msg_set(msg, "the event's email_id or recipient is malformed");
        return DM_ERR_INVALID;
    }
    /* Write only what the host's structure has room for. */
    ev.size = size;
    memcpy(out, &ev, size < sizeof(ev) ? size : sizeof(ev));
    return DM_OK;
}

/* ---- life cycle ---- */

static const char *const required[] = {"api_key", NULL};

static dm_status resend_init(const dm_host *h, dm_call *call, dm_message *msg)
{
    conf c;

    if (!DM_HAS_FIELD(h, dm_host, setting_default)) {
        dm_msg_set(msg,
                   "mailer-resend " RESEND_VERSION " needs a server of plugin ABI 1.3 or later "
                   "(mime_message, retry_after, message_id_for); this one speaks %u.%u",
                   /* h is never NULL: cppcheck reads DM_HAS_FIELD's NULL test as "may be". */
                   // cppcheck-suppress nullPointerRedundantCheck
                   (unsigned)h->abi_major, (unsigned)h->abi_minor);
        return DM_ERR_CONFIG;
    }
    host = h;
    /* Resend's default team limit; the mail queue paces sends by it. */
    h->setting_default(call, "rate_per_second", RATE_DEFAULT);
    return read_conf(call, &c, msg);
}

static dm_status resend_health(dm_call *call, dm_message *msg)
{
    conf c;
    return read_conf(call, &c, msg);
}

static const dm_mailer_ops ops = {
    .size = sizeof(dm_mailer_ops),
    .send = resend_send,
    .parse_webhook = resend_parse_webhook,
};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_MAILER,
    .name = "mailer-resend",
    .version = RESEND_VERSION,
    .required_settings = required,
    .init = resend_init,
    .fini = NULL,
    .ops = &ops,
    .health = resend_health,
    .handle_request = NULL,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *h)
{
    /* init needs setting() to explain an older host's refusal. */
    if (!DM_HAS_FIELD(h, dm_host, setting)) {
        return NULL;
    }
    return &desc;
}
