/*
 * mailer-smtp — a mailer plugin that hands each message to an SMTP server
 * (a relay, a provider's submission port, the site's own MTA) with libcurl.
 *
 * Invariants:
 * - The bytes sent are the host's (host->mime_message, ABI 1.3): the same
 *   message every mailer builds, with header injection refused before
 *   anything reaches the wire. The Message-ID comes from
 *   host->message_id_for, so a resend of the same idempotency key carries
 *   the same Message-ID and the receiving side can tell it is one message.
 * - One connection per instance and process: each declared instance owns
 *   one curl easy handle, used under that instance's mutex, and libcurl
 *   keeps its SMTP connection open between sends (closing it after an idle
 *   two minutes, or when the server has closed it). Sends of one instance
 *   in one Apache child are therefore serial, as they are on a single SMTP
 *   connection anyway.
 * - The handle is made in the process that sends, never in init (which
 *   runs in the Apache parent before the fork); a handle found in another
 *   process than the one that made it (a fork after a send) is abandoned,
 *   not closed, since closing would speak on the parent's connection.
 * - The instances are the only mutable statics: a registry keyed by the
 *   host's "_name" (the same .so may be declared twice, with two servers).
 *   Settings are read through host->setting on every send.
 *
 * Error mapping: no connection, a timeout, a TLS failure or a 4xx reply
 * (421, 450, 451, 452, 454) is DM_ERR_TEMPORARY; a 5xx reply (550, 553,
 * 554, 535 …) is DM_ERR_PERMANENT; the message carries libcurl's reason and
 * the server's last reply line.
 */
#include <deepmine/plugin.h>

#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define SMTP_VERSION "1.0.0"
#define MAX_INSTANCES 16
#define NAME_MAX_LEN 64
#define TIMEOUT_DEFAULT_MS 30000L
#define TIMEOUT_MAX_MS 600000L
#define CONNECT_TIMEOUT_MAX_MS 10000L
#define RATE_MAX 10000L
#define REPLY_MAX 200

static const dm_host *host;

typedef struct instance {
    CURL *curl;                  /* NULL until the first send in this process */
    pthread_mutex_t lock;        /* one send at a time on curl */
    pid_t pid;                   /* the process that made curl */
    char name[NAME_MAX_LEN + 1]; /* the host's "_name" */
} instance;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static instance instances[MAX_INSTANCES];
static size_t n_instances;

typedef enum tls_mode { TLS_NO, TLS_TRY, TLS_REQUIRED } tls_mode;

/* The settings of one instance, as read for one call. */
typedef struct conf {
    const char *name;
    const char *url;
    int smtps;
    int local; /* the host is 127.0.0.1, ::1 or localhost */
    tls_mode tls;
    const char *username, *password, *from;
    long timeout_ms;
    int verify_peer;
} conf;

static void set_msg(dm_message *msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_msg(dm_message *msg, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg->text, sizeof(msg->text), fmt, ap);
    va_end(ap);
}

/* The time for the Date header: the system clock. */
static int64_t now_sec(void)
{
    return (int64_t)time(NULL);
}

static int has_ctl(const char *s)
{
    for (; s && *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            return 1;
        }
    }
    return 0;
}

/* A whole decimal number in [min, max]. */
static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ') {
        return 0;
    }
    v = strtol(s, &end, 10);
    if (*end || v < min || v > max) {
        return 0;
    }
    *out = v;
    return 1;
}

/* Reads and checks the settings; DM_ERR_CONFIG with a sentence otherwise.
 * Cheap and without network: init, health and every send use it. */
static dm_status read_conf(dm_call *call, conf *c, dm_message *msg)
{
    const char *v;
    char *scheme = NULL, *hostname = NULL;
    CURLU *u;
    long n;
    dm_status st = DM_ERR_CONFIG;

    memset(c, 0, sizeof(*c));
    c->name = host->setting(call, "_name");
    c->url = host->setting(call, "url");
    if (!c->name || !*c->name || strlen(c->name) > NAME_MAX_LEN) {
        set_msg(msg, "the server gave no instance name (_name)");
        return DM_ERR_CONFIG;
    }
    if (!c->url || has_ctl(c->url)) {
        set_msg(msg, "url must be smtp://host[:port] or smtps://host[:port]");
        return DM_ERR_CONFIG;
    }
    u = curl_url();
    if (!u) {
        set_msg(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    if (curl_url_set(u, CURLUPART_URL, c->url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &hostname, 0) != CURLUE_OK ||
        (strcmp(scheme, "smtp") != 0 && strcmp(scheme, "smtps") != 0)) {
        set_msg(msg, "url %s is not smtp://host[:port] or smtps://host[:port]", c->url);
        goto cleanup;
    }
    c->smtps = !strcmp(scheme, "smtps");
    c->local = !strcmp(hostname, "127.0.0.1") || !strcmp(hostname, "[::1]") ||
               !strcasecmp(hostname, "localhost");

    v = host->setting(call, "starttls");
    if (!v || !*v) {
        /* Mail to a relay on this machine never crosses a network. */
        c->tls = c->local ? TLS_TRY : TLS_REQUIRED;
    } else if (!strcmp(v, "no")) {
        c->tls = TLS_NO;
    } else if (!strcmp(v, "try")) {
        c->tls = TLS_TRY;
    } else if (!strcmp(v, "required")) {
        c->tls = TLS_REQUIRED;
    } else {
        set_msg(msg, "starttls must be no, try or required, not \"%.40s\"", v);
        goto cleanup;
    }
    c->username = host->setting(call, "username");
    c->password = host->setting(call, "password");
    if (c->username && !*c->username) {
        c->username = NULL;
    }
    if (c->password && !*c->password) {
        c->password = NULL;
    }
    if (!c->username != !c->password) {
        set_msg(msg, "username and password go together: set both or neither");
        goto cleanup;
    }
    if (has_ctl(c->username) || has_ctl(c->password)) {
        set_msg(msg, "username or password contains a control character");
        goto cleanup;
    }
    if (c->password && !c->smtps && c->tls != TLS_REQUIRED && !c->local) {
        set_msg(msg,
                "a password would cross the network in clear: use smtps:// or starttls "
                "required for %s",
                c->url);
        goto cleanup;
    }
    c->from = host->setting(call, "from");
    if (c->from && (has_ctl(c->from) || !strchr(c->from, '@'))) {
        set_msg(msg, "from must be an address (noreply@example.com or Name "
                     "<noreply@example.com>) without control characters");
        goto cleanup;
    }
    c->timeout_ms = TIMEOUT_DEFAULT_MS;
    v = host->setting(call, "timeout_ms");
    if (v && !parse_long(v, 100, TIMEOUT_MAX_MS, &c->timeout_ms)) {
        set_msg(msg, "timeout_ms must be a whole number of milliseconds from 100 to %ld",
                TIMEOUT_MAX_MS);
        goto cleanup;
    }
    v = host->setting(call, "verify_peer");
    if (!v || !strcmp(v, "yes")) {
        c->verify_peer = 1;
    } else if (!strcmp(v, "no")) {
        c->verify_peer = 0;
    } else {
        set_msg(msg, "verify_peer must be yes or no");
        goto cleanup;
    }
    v = host->setting(call, "rate_per_second");
    if (v && !parse_long(v, 1, RATE_MAX, &n)) {
        set_msg(msg, "rate_per_second must be a whole number from 1 to %ld", RATE_MAX);
        goto cleanup;
    }
    st = DM_OK;

cleanup:
    curl_free(scheme);
    curl_free(hostname);
    curl_url_cleanup(u);
    return st;
}

/* ---- the registry of instances ---- */

/* The instance named `name`, registered if new; NULL when the table is full. */
static instance *instance_for(const char *name)
{
    instance *in = NULL;

    pthread_mutex_lock(&registry_lock);
    for (size_t i = 0; i < n_instances; i++) {
        if (!strcmp(instances[i].name, name)) {
            in = &instances[i];
            break;
        }
    }
    if (!in && n_instances < MAX_INSTANCES) {
        in = &instances[n_instances];
        memset(in, 0, sizeof(*in));
        snprintf(in->name, sizeof(in->name), "%s", name);
        pthread_mutex_init(&in->lock, NULL);
        n_instances++;
    }
    pthread_mutex_unlock(&registry_lock);
    return in;
}

/* ---- one send ---- */

typedef struct upload {
    const char *p;
    size_t left;
} upload;

static size_t on_read(char *buf, size_t size, size_t nitems, void *baton)
{
    upload *u = baton;
    size_t n = size * nitems;

    if (n > u->left) {
        n = u->left;
    }
    memcpy(buf, u->p, n);
    u->p += n;
    u->left -= n;
    return n;
}

/* The server's reply lines worth showing: the last one, and the last
 * refusal (4xx or 5xx), which libcurl's QUIT after a failure would
 * otherwise hide behind "221 Bye". */
typedef struct replies {
    char last[REPLY_MAX + 1];
    char refusal[REPLY_MAX + 1];
} replies;

static int on_debug(CURL *curl, curl_infotype type, char *data, size_t size, void *baton)
{
    replies *r = baton;
    size_t end = size, start, n;
    char *into;

    (void)curl;
    if (type != CURLINFO_HEADER_IN) {
        return 0;
    }
    while (end > 0 && (data[end - 1] == '\r' || data[end - 1] == '\n')) {
        end--;
    }
    start = end;
    while (start > 0 && data[start - 1] != '\n') {
        start--;
    }
    if (end == start) {
        return 0;
    }
    into = data[start] == '4' || data[start] == '5' ? r->refusal : r->last;
    n = end - start < REPLY_MAX ? end - start : REPLY_MAX;
    for (size_t i = 0; i < n; i++) {
        char c = data[start + i];
        into[i] = (c < 0x20 || c == 0x7f) ? ' ' : c;
    }
    into[n] = '\0';
    return 0;
}

/* The addr-spec of an address mime_message has accepted: between the last
 * '<' and a final '>', else the whole (trimmed) text. In call memory. */
static char *addr_spec(dm_call *call, dm_str a)
{
    const char *s = a.ptr, *e = a.ptr + a.len, *lt = NULL;
    char *out;

    while (s < e && (*s == ' ' || *s == '\t')) {
        s++;
    }
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) {
        e--;
    }
    if (e > s && e[-1] == '>') {
        for (const char *p = e - 1; p > s; p--) {
            if (p[-1] == '<') {
                lt = p - 1;
                break;
            }
        }
        if (lt) {
            s = lt + 1;
            e--;
        }
    }
    out = host->alloc(call, (size_t)(e - s) + 3);
    if (out) {
        snprintf(out, (size_t)(e - s) + 3, "<%.*s>", (int)(e - s), s);
    }
    return out;
}

/* A failed transfer, judged by the SMTP reply code when there is one. */
static dm_status judge(CURLcode rc, long code, const char *errbuf, const replies *r,
                       dm_message *msg)
{
    const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    const char *reply = r->refusal[0] ? r->refusal : r->last;

    if (rc == CURLE_LOGIN_DENIED && !(code >= 400 && code <= 499)) {
        /* 535, or a refusal libcurl reports without a code. */
        set_msg(msg, "the SMTP server refused the login: check username and password (%s)",
                reply[0] ? reply : why);
        return DM_ERR_PERMANENT;
    }
    if (code >= 500 && code <= 599) {
        set_msg(msg, "the SMTP server refused the message for good: %s (server said: %s)", why,
                reply[0] ? reply : "nothing");
        return DM_ERR_PERMANENT;
    }
    if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL) {
        set_msg(msg, "url cannot be used: %s", why);
        return DM_ERR_CONFIG;
    }
    if (code >= 400 && code <= 499) {
        set_msg(msg, "the SMTP server asked to try again later: %s (server said: %s)", why,
                reply[0] ? reply : "nothing");
        return DM_ERR_TEMPORARY;
    }
    /* No connection, a timeout, TLS, a connection that broke: nothing was
     * refused, so the message is tried again. */
    set_msg(msg, "cannot hand the message to the SMTP server: %s%s%s", why,
            reply[0] ? " (server said: " : "", reply[0] ? reply : "");
    if (reply[0]) {
        size_t n = strlen(msg->text);
        if (n + 1 < sizeof(msg->text)) {
            msg->text[n] = ')';
            msg->text[n + 1] = '\0';
        }
    }
    return DM_ERR_TEMPORARY;
}

/* Sets every option of one transfer on the instance's handle (the handle
 * keeps options between transfers: all of them are set each time). */
static void set_options(CURL *curl, const conf *c, const char *mail_from, struct curl_slist *rcpt,
                        upload *up, char *errbuf, replies *reply)
{
    curl_easy_setopt(curl, CURLOPT_URL, c->url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
#else
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_SMTP | CURLPROTO_SMTPS));
#endif
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_USE_SSL,
                     c->smtps || c->tls == TLS_REQUIRED ? (long)CURLUSESSL_ALL
                     : c->tls == TLS_TRY                ? (long)CURLUSESSL_TRY
                                                        : (long)CURLUSESSL_NONE);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, c->verify_peer ? 1L : 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, c->verify_peer ? 2L : 0L);
    curl_easy_setopt(curl, CURLOPT_USERNAME, c->username);
    curl_easy_setopt(curl, CURLOPT_PASSWORD, c->password);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                     c->timeout_ms < CONNECT_TIMEOUT_MAX_MS ? c->timeout_ms
                                                            : CONNECT_TIMEOUT_MAX_MS);
    curl_easy_setopt(curl, CURLOPT_MAIL_FROM, mail_from);
    curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(curl, CURLOPT_READDATA, up);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)up->left);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_DEBUGFUNCTION, on_debug);
    curl_easy_setopt(curl, CURLOPT_DEBUGDATA, reply);
    curl_easy_setopt(curl, CURLOPT_VERBOSE, 1L); /* feeds on_debug; nothing is printed */
}

static dm_status smtp_send(dm_call *call, const dm_mail *mail_in, dm_str *message_id,
                           dm_message *msg)
{
    conf c;
    dm_mail m;
    instance *in;
    const char *mid;
    char *text, *mail_from, *rcpt_to, *out;
    char errbuf[CURL_ERROR_SIZE];
    replies reply;
    struct curl_slist *rcpt = NULL;
    upload up;
    size_t len = 0;
    long code = 0;
    CURLcode rc;
    dm_status st;

    /* Read only the fields the host's dm_mail has (it may be older). */
    memset(&m, 0, sizeof(m));
    memcpy(&m, mail_in, mail_in->size < sizeof(m) ? mail_in->size : sizeof(m));
    m.size = sizeof(m);
    st = read_conf(call, &c, msg);
    if (st != DM_OK) {
        return st;
    }
    if (m.from.len == 0 && c.from) {
        m.from.ptr = c.from;
        m.from.len = strlen(c.from);
    }
    if (m.from.len == 0) {
        set_msg(msg, "the mail has no sender and the setting from is not set");
        return DM_ERR_CONFIG;
    }
    mid = host->message_id_for(call, m.idempotency_key, m.from);
    text = mid ? host->mime_message(call, &m, mid, now_sec(), &len) : NULL;
    if (!text) {
        /* The host tells the caller which field it refused. */
        set_msg(msg, "the message cannot be built from these fields");
        return DM_ERR_INVALID;
    }
    mail_from = addr_spec(call, m.from);
    rcpt_to = addr_spec(call, m.to);
    out = host->alloc(call, strlen(mid) + 3);
    if (!mail_from || !rcpt_to || !out) {
        set_msg(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    rcpt = curl_slist_append(NULL, rcpt_to);
    in = instance_for(c.name);
    if (!rcpt || !in) {
        curl_slist_free_all(rcpt);
        set_msg(msg, !rcpt ? "out of memory" : "more than %d instances of mailer-smtp",
                MAX_INSTANCES);
        return !rcpt ? DM_ERR_TEMPORARY : DM_ERR_CONFIG;
    }

    pthread_mutex_lock(&in->lock);
    if (in->curl && in->pid != getpid()) {
        /* Inherited over a fork: its connection is the parent's. Abandon
         * it (a cleanup would send QUIT on that connection). */
        in->curl = NULL;
    }
    if (!in->curl) {
        in->curl = curl_easy_init();
        in->pid = getpid();
    }
    if (!in->curl) {
        pthread_mutex_unlock(&in->lock);
        curl_slist_free_all(rcpt);
        set_msg(msg, "cannot create a curl handle");
        return DM_ERR_TEMPORARY;
    }
    errbuf[0] = '\0';
    memset(&reply, 0, sizeof(reply));
    up.p = text;
    up.left = len;
    set_options(in->curl, &c, mail_from, rcpt, &up, errbuf, &reply);
    rc = curl_easy_perform(in->curl);
    curl_easy_getinfo(in->curl, CURLINFO_RESPONSE_CODE, &code);
    /* Nothing of this call may stay on the handle past the unlock. */
    curl_easy_setopt(in->curl, CURLOPT_MAIL_RCPT, NULL);
    curl_easy_setopt(in->curl, CURLOPT_READDATA, NULL);
    curl_easy_setopt(in->curl, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(in->curl, CURLOPT_DEBUGDATA, NULL);
    curl_easy_setopt(in->curl, CURLOPT_VERBOSE, 0L);
    pthread_mutex_unlock(&in->lock);
    curl_slist_free_all(rcpt);

    if (rc != CURLE_OK) {
        return judge(rc, code, errbuf, &reply, msg);
    }
    /* The Message-ID header's value, brackets included, as mailer-spool. */
    message_id->len = (size_t)sprintf(out, "<%s>", mid);
    message_id->ptr = out;
    return DM_OK;
}

/* ---- life cycle ---- */

static const char *const required[] = {"url", NULL};

static dm_status smtp_init(const dm_host *h, dm_call *call, dm_message *msg)
{
    conf c;
    dm_status st;

    if (!DM_HAS_FIELD(h, dm_host, message_id_for)) {
        set_msg(msg,
                "mailer-smtp " SMTP_VERSION " needs a server of plugin ABI 1.3 or later "
                "(mime_message, message_id_for); this one speaks %u.%u",
                /* h is never NULL: cppcheck reads DM_HAS_FIELD's NULL test as "may be". */
                // cppcheck-suppress nullPointerRedundantCheck
                (unsigned)h->abi_major, (unsigned)h->abi_minor);
        return DM_ERR_CONFIG;
    }
    host = h;
    st = read_conf(call, &c, msg);
    if (st != DM_OK) {
        return st;
    }
    /* Registered now, connected at the first send (in the child). */
    if (!instance_for(c.name)) {
        set_msg(msg, "more than %d instances of mailer-smtp", MAX_INSTANCES);
        return DM_ERR_CONFIG;
    }
    if (!c.verify_peer) {
        h->log(call, DM_LOG_WARN,
               "verify_peer no: the SMTP server's certificate is not checked; anyone on the "
               "path can read and change the mail");
    }
    return DM_OK;
}

/* Runs once per declared instance, at shutdown: the first run closes every
 * handle this process made, the next ones find nothing left. */
static void smtp_fini(void)
{
    pthread_mutex_lock(&registry_lock);
    for (size_t i = 0; i < n_instances; i++) {
        if (instances[i].curl && instances[i].pid == getpid()) {
            curl_easy_cleanup(instances[i].curl);
        }
        instances[i].curl = NULL;
        pthread_mutex_destroy(&instances[i].lock);
    }
    n_instances = 0;
    pthread_mutex_unlock(&registry_lock);
}

static dm_status smtp_health(dm_call *call, dm_message *msg)
{
    conf c;
    return read_conf(call, &c, msg);
}

static const dm_mailer_ops ops = {
    .size = sizeof(dm_mailer_ops),
    .send = smtp_send,
    .parse_webhook = NULL, /* SMTP has no delivery webhooks (bounces come back as mail) */
};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_MAILER,
    .name = "mailer-smtp",
    .version = SMTP_VERSION,
    .required_settings = required,
    .init = smtp_init,
    .fini = smtp_fini,
    .ops = &ops,
    .health = smtp_health,
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
