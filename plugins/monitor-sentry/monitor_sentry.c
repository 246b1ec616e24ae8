/*
 * monitor-sentry — a monitor plugin for Sentry (and Sentry-compatible
 * servers such as GlitchTip): each error event the host hands in becomes
 * one envelope POSTed to the project's envelope endpoint through the host's
 * HTTP client. The protocol facts, with their sources, are in README.md
 * and PROVIDERS.md §8; tests/standins/sentry_standin.py speaks them.
 *
 * Invariants:
 * - The DSN is parsed once per call from the setting (no state but the
 *   host table: the .so may be declared twice); a DSN this plugin cannot
 *   use refuses to start the server, with a sentence saying why.
 * - An event is grouped by its DM number (fingerprint), tagged with
 *   route, plugin, job and request id, and carries release, environment
 *   and server name. It holds nothing else: the host builds it from a log
 *   line it has scrubbed (monitor_queue.h).
 * - Sentry's rate limits are honoured: a 429 is DM_ERR_TEMPORARY with
 *   host->retry_after (X-Sentry-Rate-Limits for the error category, else
 *   Retry-After, else 60 s); X-Sentry-Rate-Limits on a success pauses the
 *   next sends the same way.
 */
#include <deepmine/plugin.h>
#include <deepmine/plugin_util.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SENTRY_VERSION "1.0.0"
#define SDK_NAME "deepmine.monitor-sentry"
#define TIMEOUT_DEFAULT_MS 5000L
#define TIMEOUT_MAX_MS 60000L
#define URL_MAX 2048
#define KEY_MAX 128
#define BARE_429_S 60
#define RETRY_MAX_S 86400L

static const dm_host *host;

typedef struct conf {
    char url[URL_MAX];       /* {scheme}://{host}{path}/api/{project}/envelope/ */
    char key[KEY_MAX];       /* the DSN's public key */
    char secret[KEY_MAX];    /* the DSN's secret key, deprecated: usually empty */
    const char *environment; /* setting environment, or NULL: the host's */
    long timeout_ms;
} conf;

static int has_ctl_or_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f) {
            return 1;
        }
    }
    return 0;
}

/* Loopback hosts may be reached over plain http (a stand-in, a local
 * relay); anything else needs https. */
static int loopback(const char *h, size_t n)
{
    return (n >= 9 && !strncmp(h, "127.0.0.1", 9) && (n == 9 || h[9] == ':')) ||
           (n >= 9 && !strncmp(h, "localhost", 9) && (n == 9 || h[9] == ':'));
}

#define DSN_FORM "https://<public key>@<host>[/<path>]/<project id>"

/* {PROTOCOL}://{PUBLIC_KEY}[:{SECRET_KEY}]@{HOST}{PATH}/{PROJECT_ID} */
static dm_status parse_dsn(const char *dsn, conf *c, dm_message *msg)
{
    const char *p, *at, *host_start, *slash, *last, *colon;
    size_t scheme_len, n = dsn ? strlen(dsn) : 0;
    int https;

    if (!dsn || !n || has_ctl_or_space(dsn, n) || strpbrk(dsn, "?#")) {
        dm_msg_set(msg, "dsn must be the project's DSN, " DSN_FORM);
        return DM_ERR_CONFIG;
    }
    https = !strncmp(dsn, "https://", 8);
    if (!https && strncmp(dsn, "http://", 7) != 0) {
        dm_msg_set(msg, "dsn must start with https:// (" DSN_FORM ")");
        return DM_ERR_CONFIG;
    }
    scheme_len = https ? 8 : 7;
    p = dsn + scheme_len;
    slash = strchr(p, '/');
    at = memchr(p, '@', slash ? (size_t)(slash - p) : strlen(p));
    if (!at || at == p || !slash) {
        dm_msg_set(msg, "dsn has no public key or no project id (" DSN_FORM ")");
        return DM_ERR_CONFIG;
    }
    colon = memchr(p, ':', (size_t)(at - p));
    if ((size_t)((colon ? colon : at) - p) >= sizeof(c->key) ||
        (colon && (size_t)(at - colon - 1) >= sizeof(c->secret))) {
        dm_msg_set(msg, "dsn's key is too long");
        return DM_ERR_CONFIG;
    }
    memcpy(c->key, p, (size_t)((colon ? colon : at) - p));
    c->key[(colon ? colon : at) - p] = '\0';
    if (colon) {
        memcpy(c->secret, colon + 1, (size_t)(at - colon - 1));
        c->secret[at - colon - 1] = '\0';
    }
    if (!c->key[0]) {
        dm_msg_set(msg, "dsn has an empty public key (" DSN_FORM ")");
        return DM_ERR_CONFIG;
    }
    host_start = at + 1;
    if (slash == host_start) {
        dm_msg_set(msg, "dsn has no host (" DSN_FORM ")");
        return DM_ERR_CONFIG;
    }
    if (!https && !loopback(host_start, (size_t)(slash - host_start))) {
        dm_msg_set(msg, "dsn must use https:// (http:// only to 127.0.0.1 or localhost)");
        return DM_ERR_CONFIG;
    }
    last = strrchr(slash, '/');
    if (!last[1]) {
        dm_msg_set(msg, "dsn has no project id after its last '/' (" DSN_FORM ")");
        return DM_ERR_CONFIG;
    }
    /* base = scheme + host + path (up to the last '/'), then the endpoint */
    if ((size_t)(last - dsn) + strlen(last + 1) + sizeof("/api//envelope/") >= sizeof(c->url)) {
        dm_msg_set(msg, "dsn is too long");
        return DM_ERR_CONFIG;
    }
    snprintf(c->url, sizeof(c->url), "%.*s%.*s/api/%s/envelope/", (int)scheme_len, dsn,
             (int)(last - host_start), host_start, last + 1);
    return DM_OK;
}

static dm_status read_conf(dm_call *call, conf *c, dm_message *msg)
{
    const char *t = host->setting(call, "timeout_ms"), *env;
    dm_status st;

    memset(c, 0, sizeof(*c));
    st = parse_dsn(host->setting(call, "dsn"), c, msg);
    if (st != DM_OK) {
        return st;
    }
    c->timeout_ms = TIMEOUT_DEFAULT_MS;
    if (t && !dm_parse_long(t, strlen(t), 100, TIMEOUT_MAX_MS, &c->timeout_ms)) {
        dm_msg_set(msg, "timeout_ms must be a whole number of milliseconds from 100 to %ld",
                   TIMEOUT_MAX_MS);
        return DM_ERR_CONFIG;
    }
    env = host->setting(call, "environment");
    if (env && *env) {
        if (strlen(env) > 64 || has_ctl_or_space(env, strlen(env))) {
            dm_msg_set(msg, "environment must be one word of at most 64 characters");
            return DM_ERR_CONFIG;
        }
        c->environment = env;
    }
    return DM_OK;
}

/* ---- the envelope ---- */

static const char *level_name(dm_log_level l)
{
    if ((int)l <= 2) {
        return "fatal";
    }
    switch (l) {
    case DM_LOG_ERROR:
        return "error";
    case DM_LOG_WARN:
        return "warning";
    case DM_LOG_NOTICE:
    case DM_LOG_INFO:
        return "info";
    default:
        return "debug";
    }
}

typedef struct buf {
    char *p;
    size_t len, cap;
    int failed;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->failed || b->len + n + 1 > b->cap) {
        b->failed = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void put_quoted(dm_call *call, buf *b, dm_str s)
{
    char *q = host->json_quote(call, s);
    if (!q) {
        b->failed = 1;
        return;
    }
    puts_(b, q);
}

static dm_str str_of(const char *s)
{
    dm_str v = {s, s ? strlen(s) : 0};
    return v;
}

static int set(dm_str s)
{
    return s.ptr && s.len > 0;
}

/* One tag "name":"value" when value is set; *first tracks the commas. */
static void tag(dm_call *call, buf *b, const char *name, dm_str v, int *first)
{
    if (!set(v)) {
        return;
    }
    puts_(b, *first ? "" : ",");
    *first = 0;
    put_quoted(call, b, str_of(name));
    puts_(b, ":");
    put_quoted(call, b, v);
}

static int event_json(dm_call *call, const conf *c, const dm_monitor_event *ev, buf *b)
{
    char ts[48];
    int first = 1;
    dm_str env = c->environment ? str_of(c->environment) : ev->environment;

    snprintf(ts, sizeof(ts), "%lld.%03lld", (long long)(ev->time_ms / 1000),
             (long long)(ev->time_ms % 1000));
    puts_(b, "{\"event_id\":");
    put_quoted(call, b, ev->event_id);
    puts_(b, ",\"timestamp\":");
    puts_(b, ts);
    puts_(b, ",\"platform\":\"c\",\"logger\":\"mod_deepmine\",\"level\":\"");
    puts_(b, level_name(ev->level));
    puts_(b, "\"");
    if (set(ev->server_name)) {
        puts_(b, ",\"server_name\":");
        put_quoted(call, b, ev->server_name);
    }
    puts_(b, ",\"environment\":");
    put_quoted(call, b, set(env) ? env : str_of("production"));
    if (set(ev->release)) {
        puts_(b, ",\"release\":");
        put_quoted(call, b, ev->release);
    }
    if (set(ev->route)) {
        puts_(b, ",\"transaction\":");
        put_quoted(call, b, ev->route);
    }
    puts_(b, ",\"exception\":{\"values\":[{\"type\":");
    put_quoted(call, b, set(ev->dm_number) ? ev->dm_number : str_of("DeepMineError"));
    puts_(b, ",\"value\":");
    put_quoted(call, b, set(ev->message) ? ev->message : str_of("(no message)"));
    puts_(b, ",\"mechanism\":{\"type\":\"generic\",\"handled\":true}}]}");
    /* Grouped by DM number (and plugin): one issue per kind of failure,
     * whatever the order id or plugin message in the text. */
    puts_(b, ",\"fingerprint\":[");
    put_quoted(call, b, set(ev->dm_number) ? ev->dm_number : str_of("{{ default }}"));
    if (set(ev->plugin)) {
        /* a plugin's own lines share one number (DM00101): one issue per plugin */
        puts_(b, ",");
        put_quoted(call, b, ev->plugin);
    }
    puts_(b, "],\"tags\":{");
    tag(call, b, "dm_number", ev->dm_number, &first);
    tag(call, b, "route", ev->route, &first);
    tag(call, b, "plugin", ev->plugin, &first);
    tag(call, b, "job", ev->job, &first);
    tag(call, b, "request_id", ev->request_id, &first);
    puts_(b, "}}");
    return !b->failed;
}

static char *envelope(dm_call *call, const conf *c, const dm_monitor_event *ev, size_t *out_len)
{
    size_t cap = 4096 + 6 * (ev->message.len + ev->route.len + ev->plugin.len + ev->job.len +
                             ev->server_name.len + ev->request_id.len + ev->release.len);
    buf item = {host->alloc(call, cap), 0, cap, 0};
    buf all = {host->alloc(call, cap + 512), 0, cap + 512, 0};
    char line[160], sent[32];
    time_t now = time(NULL);
    struct tm tm;

    if (!item.p || !all.p || !event_json(call, c, ev, &item)) {
        return NULL;
    }
    gmtime_r(&now, &tm);
    strftime(sent, sizeof(sent), "%Y-%m-%dT%H:%M:%SZ", &tm);
    puts_(&all, "{\"event_id\":");
    put_quoted(call, &all, ev->event_id);
    puts_(&all, ",\"sent_at\":\"");
    puts_(&all, sent);
    puts_(&all, "\",\"sdk\":{\"name\":\"" SDK_NAME "\",\"version\":\"" SENTRY_VERSION "\"}}\n");
    snprintf(line, sizeof(line),
             "{\"type\":\"event\",\"length\":%zu,\"content_type\":\"application/json\"}\n",
             item.len);
    puts_(&all, line);
    put(&all, item.p, item.len);
    puts_(&all, "\n");
    if (all.failed) {
        return NULL;
    }
    *out_len = all.len;
    return all.p;
}

/* ---- rate limits ---- */

/* Does a ';'-separated category list (empty: all) cover error events? */
static int covers_errors(const char *cats, size_t n)
{
    size_t i = 0;

    if (n == 0) {
        return 1;
    }
    while (i < n) {
        size_t j = i;
        while (j < n && cats[j] != ';') {
            j++;
        }
        if ((j - i == 5 && !strncmp(cats + i, "error", 5)) ||
            (j - i == 7 && !strncmp(cats + i, "default", 7))) {
            return 1;
        }
        i = j + 1;
    }
    return 0;
}

/* The longest retry_after of the X-Sentry-Rate-Limits entries that cover
 * errors: "<retry_after>:<categories>:<scope>[:…], …"; -1 when none. */
static long sentry_limit(const dm_header *h)
{
    const char *s, *end;
    long best = -1;

    if (!h || !h->value.ptr) {
        return -1;
    }
    s = h->value.ptr;
    end = s + h->value.len;
    while (s < end) {
        const char *e = memchr(s, ',', (size_t)(end - s)), *c1, *c2;
        long v;
        if (!e) {
            e = end;
        }
        while (s < e && *s == ' ') {
            s++;
        }
        c1 = memchr(s, ':', (size_t)(e - s));
        if (c1) {
            c2 = memchr(c1 + 1, ':', (size_t)(e - c1 - 1));
            if (!c2) {
                c2 = e;
            }
            if (dm_parse_long(s, (size_t)(c1 - s), 0, RETRY_MAX_S, &v) &&
                covers_errors(c1 + 1, (size_t)(c2 - c1 - 1)) && v > best) {
                best = v;
            }
        }
        s = e + 1;
    }
    return best;
}

/* ---- capture ---- */

static dm_status sentry_capture(dm_call *call, const dm_monitor_event *ev_in, dm_message *msg)
{
    conf c;
    dm_monitor_event ev;
    char auth[2 * KEY_MAX + 160];
    char *body;
    size_t body_len = 0;
    dm_header hs[3];
    dm_http_request req;
    dm_http_response resp;
    dm_status st;
    long limit, wait;

    memset(&ev, 0, sizeof(ev));
    memcpy(&ev, ev_in, ev_in->size < sizeof(ev) ? ev_in->size : sizeof(ev));
    st = read_conf(call, &c, msg);
    if (st != DM_OK) {
        return st;
    }
    if (ev.event_id.len != 32) {
        dm_msg_set(msg, "the event has no 32-digit id");
        return DM_ERR_INVALID;
    }
    body = envelope(call, &c, &ev, &body_len);
    if (!body) {
        dm_msg_set(msg, "the event cannot be written as JSON (not UTF-8, or out of memory)");
        return DM_ERR_INVALID;
    }
    snprintf(auth, sizeof(auth),
             "Sentry sentry_version=7, sentry_client=" SDK_NAME "/" SENTRY_VERSION
             ", sentry_key=%s%s%s",
             c.key, c.secret[0] ? ", sentry_secret=" : "", c.secret);
    hs[0] = (dm_header){{"X-Sentry-Auth", 13}, {auth, strlen(auth)}};
    hs[1] = (dm_header){{"Content-Type", 12}, {"application/x-sentry-envelope", 29}};
    hs[2] = (dm_header){{"User-Agent", 10},
                        {SDK_NAME "/" SENTRY_VERSION, sizeof(SDK_NAME "/" SENTRY_VERSION) - 1}};
    memset(&req, 0, sizeof(req));
    req.size = sizeof(req);
    req.method = "POST";
    req.url = c.url;
    req.headers = hs;
    req.n_headers = 3;
    req.body.ptr = body;
    req.body.len = body_len;
    req.timeout_ms = (uint32_t)c.timeout_ms;
    memset(&resp, 0, sizeof(resp));
    resp.size = sizeof(resp);
    st = host->http(call, &req, &resp, msg);
    if (st != DM_OK) {
        return DM_ERR_TEMPORARY; /* no answer: msg says why */
    }
    limit = sentry_limit(dm_header_find(resp.headers, resp.n_headers, "x-sentry-rate-limits"));
    if (resp.status == 429) {
        const dm_header *ra = dm_header_find(resp.headers, resp.n_headers, "retry-after");
        wait = limit;
        if (wait < 0 && !(ra && ra->value.ptr &&
                          dm_parse_long(ra->value.ptr, ra->value.len, 0, RETRY_MAX_S, &wait))) {
            wait = BARE_429_S;
        }
        host->retry_after(call, (uint32_t)wait);
        dm_msg_set(msg, "Sentry is rate limiting (429): sending again in %ld s", wait);
        return DM_ERR_TEMPORARY;
    }
    if (limit > 0) {
        host->retry_after(call, (uint32_t)limit); /* limits announced on a success */
    }
    if (resp.status >= 200 && resp.status <= 299) {
        return DM_OK;
    }
    if (resp.status >= 500 || resp.status < 200) {
        dm_msg_set(msg, "Sentry answered %d; sending again later", resp.status);
        return DM_ERR_TEMPORARY;
    }
    if (resp.status == 401 || resp.status == 403) {
        dm_msg_set(msg, "Sentry refused the DSN's key (%d): check the setting dsn", resp.status);
        return DM_ERR_CONFIG;
    }
    dm_msg_set(msg, "Sentry refused the event (%d)", resp.status);
    return DM_ERR_PERMANENT;
}

/* ---- life cycle ---- */

static const char *const required[] = {"dsn", NULL};

static dm_status sentry_init(const dm_host *h, dm_call *call, dm_message *msg)
{
    conf c;

    if (!DM_HAS_FIELD(h, dm_host, retry_after)) {
        dm_msg_set(msg,
                   "monitor-sentry " SENTRY_VERSION " needs a server of plugin ABI 1.5 or later "
                   "(monitor plugins, retry_after); "
                   "this one speaks %u.%u",
                   // cppcheck-suppress nullPointerRedundantCheck
                   (unsigned)h->abi_major, (unsigned)h->abi_minor);
        return DM_ERR_CONFIG;
    }
    host = h;
    return read_conf(call, &c, msg);
}

static dm_status sentry_health(dm_call *call, dm_message *msg)
{
    conf c;
    return read_conf(call, &c, msg);
}

static const dm_monitor_ops ops = {
    .size = sizeof(dm_monitor_ops),
    .capture = sentry_capture,
};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_MONITOR,
    .name = "monitor-sentry",
    .version = SENTRY_VERSION,
    .required_settings = required,
    .init = sentry_init,
    .fini = NULL,
    .ops = &ops,
    .health = sentry_health,
    .handle_request = NULL,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *h)
{
    if (!DM_HAS_FIELD(h, dm_host, setting)) {
        return NULL;
    }
    return &desc;
}
