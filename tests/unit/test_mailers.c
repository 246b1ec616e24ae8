/*
 * The mailer plugins mailer-smtp and mailer-resend through the real plugin
 * host (dm_plugins_declare/set/init_all, dm_mailer_send,
 * dm_plugins_webhook), against two small servers on threads: a scripted
 * SMTP server and an HTTP server with a canned answer standing in for
 * Resend. The integration tests (test_14_mailers.py) run the same plugins
 * against aiosmtpd and the full Resend stand-in.
 *
 * Needs the built plugins in $DM_PLUGINS.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "plugins/inbound.h"
#include "plugins/mailer.h"
#include "plugins/plugin_host.h"

static apr_pool_t *pool;
static dm_plugin_host *host;

static dm_str S(const char *s)
{
    dm_str out = {s, strlen(s)};
    return out;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!haystack || !strstr(haystack, needle)) {
        fail_msg("expected \"%s\" to contain \"%s\"", haystack ? haystack : "(null)", needle);
    }
}

static void quiet(void *baton, dm_level level, const char *msg)
{
    (void)baton;
    (void)level;
    (void)msg;
}

static const char *rp(const char *name)
{
    const char *dir = getenv("DM_PLUGINS");
    if (!dir) {
        fail_msg("DM_PLUGINS is not set: point it at the built plugins");
    }
    return apr_psprintf(pool, "%s/%s.so", dir, name);
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    assert_null(dm_plugins_create(pool, &host));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool); /* runs the plugins' fini */
    return 0;
}

static dm_mail mail(const char *key)
{
    dm_mail m;
    memset(&m, 0, sizeof(m));
    m.size = sizeof(m);
    m.to = S("Zo\xc3\xab <zoe@example.com>");
    m.subject = S("Welcome");
    m.text = S("Hello.\n");
    m.html = S("<p>Hello.</p>\n");
    m.idempotency_key = S(key);
    return m;
}

/* ---- a listening socket served by a thread ---- */

typedef struct server {
    int fd, port;
    pthread_t thread;
    void *(*main)(void *);
} server;

static int server_start(server *s)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof(a);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s->fd, 8) != 0 ||
        getsockname(s->fd, (struct sockaddr *)&a, &len) != 0) {
        return -1;
    }
    s->port = ntohs(a.sin_port);
    return pthread_create(&s->thread, NULL, s->main, s);
}

static void server_stop(server *s)
{
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(s->thread, NULL);
    close(s->fd);
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void send_str(int fd, const char *s)
{
    send_all(fd, s, strlen(s));
}

/* One CRLF-terminated line from fd (buffered in *buf), without its CRLF;
 * 0 at end of stream. */
typedef struct lines {
    char buf[8192];
    size_t len;
} lines;

static int read_line(int fd, lines *l, char *out, size_t outsz)
{
    for (;;) {
        char *eol = memchr(l->buf, '\n', l->len);
        if (eol) {
            size_t n = (size_t)(eol - l->buf) + 1, keep = n;
            if (n >= 2 && l->buf[n - 2] == '\r') {
                n--;
            }
            n--;
            snprintf(out, outsz, "%.*s", (int)n, l->buf);
            memmove(l->buf, l->buf + keep, l->len - keep);
            l->len -= keep;
            return 1;
        }
        if (l->len == sizeof(l->buf)) {
            return 0;
        }
        ssize_t got = recv(fd, l->buf + l->len, sizeof(l->buf) - l->len, 0);
        if (got <= 0) {
            return 0;
        }
        l->len += (size_t)got;
    }
}

/* ---- a scripted SMTP server ---- */

static int smtp_connections;
static char smtp_rcpt_reply[128];
static char smtp_data[4][8192];
static int smtp_n_data;
static pthread_mutex_t smtp_lock = PTHREAD_MUTEX_INITIALIZER;

static void *smtp_main(void *arg)
{
    server *s = arg;
    for (;;) {
        int c = accept(s->fd, NULL, NULL);
        lines l = {.len = 0};
        char line[1024];
        if (c < 0) {
            return NULL;
        }
        pthread_mutex_lock(&smtp_lock);
        smtp_connections++;
        pthread_mutex_unlock(&smtp_lock);
        send_str(c, "220 unit.example ESMTP\r\n");
        while (read_line(c, &l, line, sizeof(line))) {
            if (!strncasecmp(line, "EHLO", 4)) {
                send_str(c, "250-unit.example\r\n250 8BITMIME\r\n");
            } else if (!strncasecmp(line, "RCPT", 4)) {
                pthread_mutex_lock(&smtp_lock);
                send_str(c, smtp_rcpt_reply[0] ? smtp_rcpt_reply : "250 OK\r\n");
                pthread_mutex_unlock(&smtp_lock);
            } else if (!strncasecmp(line, "DATA", 4)) {
                char *d = smtp_n_data < 4 ? smtp_data[smtp_n_data] : NULL;
                size_t used = 0;
                send_str(c, "354 go on\r\n");
                while (read_line(c, &l, line, sizeof(line)) && strcmp(line, ".") != 0) {
                    if (d && used + strlen(line) + 3 < sizeof(smtp_data[0])) {
                        used += (size_t)sprintf(d + used, "%s\r\n", line);
                    }
                }
                pthread_mutex_lock(&smtp_lock);
                smtp_n_data++;
                pthread_mutex_unlock(&smtp_lock);
                send_str(c, "250 2.0.0 queued\r\n");
            } else if (!strncasecmp(line, "QUIT", 4)) {
                send_str(c, "221 bye\r\n");
                break;
            } else {
                send_str(c, "250 OK\r\n"); /* MAIL, RSET, NOOP */
            }
        }
        close(c);
    }
}

static server smtp_srv = {.main = smtp_main};

static int smtp_group_setup(void **state)
{
    (void)state;
    return server_start(&smtp_srv);
}

static int smtp_group_teardown(void **state)
{
    (void)state;
    server_stop(&smtp_srv);
    return 0;
}

static int smtp_reset(void **state)
{
    smtp_connections = 0;
    smtp_n_data = 0;
    smtp_rcpt_reply[0] = '\0';
    return setup(state);
}

static const dm_loaded_plugin *smtp_plugin(const char *url)
{
    assert_null(dm_plugins_declare(host, "mailer", "smtp", rp("mailer-smtp")));
    assert_null(dm_plugins_set(host, "smtp", "url", url));
    assert_null(dm_plugins_set(host, "smtp", "from", "DeepMine <noreply@deepmine.example>"));
    assert_null(dm_plugins_set(host, "smtp", "timeout_ms", "5000"));
    return dm_plugins_get(host, "smtp");
}

static void test_smtp_sends_many_messages_over_one_connection(void **state)
{
    const dm_loaded_plugin *pl;
    dm_mail m = mail("welcome:1");
    const char *id = NULL, *id2 = NULL;
    uint32_t retry = 9;
    dm_message msg;
    (void)state;
    pl = smtp_plugin(apr_psprintf(pool, "smtp://127.0.0.1:%d", smtp_srv.port));
    assert_null(dm_plugins_init_all(host));
    assert_int_equal(smtp_connections, 0); /* init connects nowhere */

    assert_int_equal(dm_mailer_send(host, pl, pool, &m, &id, &retry, &msg), DM_OK);
    assert_int_equal(retry, 0);
    assert_int_equal(dm_mailer_send(host, pl, pool, &m, &id2, &retry, &msg), DM_OK);
    m = mail("welcome:2");
    assert_int_equal(dm_mailer_send(host, pl, pool, &m, &id2, &retry, &msg), DM_OK);
    assert_int_equal(smtp_n_data, 3);
    assert_int_equal(smtp_connections, 1);
    /* The Message-ID sent is the one returned, and the key's. */
    assert_true(id[0] == '<' && strstr(id, "@deepmine.example>") != NULL);
    assert_contains(smtp_data[0], apr_psprintf(pool, "\r\nMessage-ID: %s\r\n", id));
    assert_contains(smtp_data[1], apr_psprintf(pool, "\r\nMessage-ID: %s\r\n", id));
    assert_contains(smtp_data[2], apr_psprintf(pool, "\r\nMessage-ID: %s\r\n", id2));
    assert_string_not_equal(id, id2);
    assert_contains(smtp_data[0], "\r\nFrom: DeepMine <noreply@deepmine.example>\r\n");
    assert_contains(smtp_data[0], "Content-Type: multipart/alternative;");
}

static void test_smtp_replies_map_to_statuses(void **state)
{
    const dm_loaded_plugin *pl;
    dm_mail m = mail("k");
    const char *id = NULL;
    uint32_t retry = 0;
    dm_message msg;
    (void)state;
    pl = smtp_plugin(apr_psprintf(pool, "smtp://127.0.0.1:%d", smtp_srv.port));
    assert_null(dm_plugins_init_all(host));
    snprintf(smtp_rcpt_reply, sizeof(smtp_rcpt_reply), "550 5.1.1 no such user\r\n");
    assert_int_equal(dm_mailer_send(host, pl, pool, &m, &id, &retry, &msg), DM_ERR_PERMANENT);
    assert_contains(msg.text, "550 5.1.1 no such user");
    snprintf(smtp_rcpt_reply, sizeof(smtp_rcpt_reply), "451 4.3.0 later\r\n");
    assert_int_equal(dm_mailer_send(host, pl, pool, &m, &id, &retry, &msg), DM_ERR_TEMPORARY);
    assert_contains(msg.text, "451 4.3.0 later");
    assert_int_equal(retry, 0);
    smtp_rcpt_reply[0] = '\0';
    assert_int_equal(dm_mailer_send(host, pl, pool, &m, &id, &retry, &msg), DM_OK);
    assert_int_equal(smtp_n_data, 1);
}

static void test_smtp_unreachable_server_is_temporary(void **state)
{
    const dm_loaded_plugin *pl;
    dm_mail m = mail("k");
    const char *id = NULL;
    uint32_t retry = 0;
    dm_message msg;
    (void)state;
    pl = smtp_plugin("smtp://127.0.0.1:1");
    assert_null(dm_plugins_init_all(host));
    assert_int_equal(dm_mailer_send(host, pl, pool, &m, &id, &retry, &msg), DM_ERR_TEMPORARY);
    assert_contains(msg.text, "cannot hand the message to the SMTP server");
}

static void test_smtp_refuses_settings_at_init(void **state)
{
    dm_err *e;
    (void)state;
    smtp_plugin("smtp://mail.example.com:587");
    assert_null(dm_plugins_set(host, "smtp", "starttls", "no"));
    assert_null(dm_plugins_set(host, "smtp", "username", "u"));
    assert_null(dm_plugins_set(host, "smtp", "password", "p"));
    e = dm_plugins_init_all(host);
    assert_non_null(e);
    assert_contains(e->message, "plugin \"smtp\"");
    assert_contains(e->message, "a password would cross the network in clear");
}

/* ---- an HTTP server with a canned answer, standing in for Resend ---- */

static char http_answer[2048];
static char http_request[65536];

static const char *header_of(const char *req, const char *name)
{
    static char val[512];
    char pat[64];
    const char *p, *e;
    snprintf(pat, sizeof(pat), "\r\n%s: ", name);
    p = strcasestr(req, pat);
    if (!p) {
        return "";
    }
    p += strlen(pat);
    e = strstr(p, "\r\n");
    snprintf(val, sizeof(val), "%.*s", (int)(e - p), p);
    return val;
}

static void *http_main(void *arg)
{
    server *s = arg;
    for (;;) {
        int c = accept(s->fd, NULL, NULL);
        size_t got = 0;
        char *end;
        if (c < 0) {
            return NULL;
        }
        while (got < sizeof(http_request) - 1) {
            ssize_t n = recv(c, http_request + got, sizeof(http_request) - 1 - got, 0);
            if (n <= 0) {
                break;
            }
            got += (size_t)n;
            http_request[got] = '\0';
            end = strstr(http_request, "\r\n\r\n");
            if (end && got >= (size_t)(end + 4 - http_request) +
                                  (size_t)atol(header_of(http_request, "Content-Length"))) {
                break;
            }
        }
        send_str(c, http_answer);
        close(c);
    }
}

static server http_srv = {.main = http_main};

static int http_group_setup(void **state)
{
    (void)state;
    return server_start(&http_srv);
}

static int http_group_teardown(void **state)
{
    (void)state;
    server_stop(&http_srv);
    return 0;
}

static void answer(int status, const char *extra_headers, const char *body)
{
    snprintf(http_answer, sizeof(http_answer),
             "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%sContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n%s",
             status, extra_headers, strlen(body), body);
}

/* whsec_ + base64 of "unit-test-webhook-secret-24b" (28 bytes). */
#define SECRET_RAW "unit-test-webhook-secret-24b"

static const dm_loaded_plugin *resend_plugin(void)
{
    char secret[128] = "whsec_";
    sodium_bin2base64(secret + 6, sizeof(secret) - 6, (const unsigned char *)SECRET_RAW,
                      strlen(SECRET_RAW), sodium_base64_VARIANT_ORIGINAL);
    assert_null(dm_plugins_declare(host, "mailer", "resend", rp("mailer-resend")));
    assert_null(dm_plugins_set(host, "resend", "api_key", "re_unit_test_key"));
    assert_null(dm_plugins_set(host, "resend", "api_url",
                               apr_psprintf(pool, "http://127.0.0.1:%d/", http_srv.port)));
    assert_null(dm_plugins_set(host, "resend", "from", "DeepMine <noreply@deepmine.example>"));
    assert_null(dm_plugins_set(host, "resend", "webhook_secret", secret));
    assert_null(dm_plugins_init_all(host));
    return dm_plugins_get(host, "resend");
}

static void test_resend_posts_json_with_key_and_idempotency_key(void **state)
{
    const dm_loaded_plugin *pl;
    dm_mail m = mail("welcome:42");
    const char *id = NULL, *body;
    uint32_t retry = 5;
    dm_message msg;
    (void)state;
    pl = resend_plugin();
    answer(200, "", "{\"id\":\"49a3999c-0ce1-4ea6-ab68-afcd6dc2e794\"}");
    assert_int_equal(dm_mailer_send(host, pl, pool, &m, &id, &retry, &msg), DM_OK);
    assert_string_equal(id, "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794");
    assert_int_equal(retry, 0);
    assert_true(strncmp(http_request, "POST /emails HTTP/1.1\r\n", 23) == 0);
    assert_string_equal(header_of(http_request, "Authorization"), "Bearer re_unit_test_key");
    assert_string_equal(header_of(http_request, "Content-Type"), "application/json");
    assert_string_equal(header_of(http_request, "Idempotency-Key"), "welcome:42");
    body = strstr(http_request, "\r\n\r\n") + 4;
    assert_string_equal(body, "{\"from\":\"DeepMine <noreply@deepmine.example>\","
                              "\"to\":[\"Zo\xc3\xab <zoe@example.com>\"],\"subject\":\"Welcome\","
                              "\"text\":\"Hello.\\n\",\"html\":\"<p>Hello.</p>\\n\"}");
    /* The queue reads the plugin's default rate. */
    assert_string_equal(dm_plugins_setting(pl, "rate_per_second"), "2");
}

static void test_resend_429_and_errors(void **state)
{
    const dm_loaded_plugin *pl;
    dm_mail m = mail("k");
    const char *id = NULL;
    uint32_t retry = 0;
    dm_message msg;
    (void)state;
    pl = resend_plugin();
    answer(429, "retry-after: 7\r\nratelimit-reset: 3\r\n",
           "{\"statusCode\":429,\"message\":\"Too many requests\",\"name\":"
           "\"rate_limit_exceeded\"}");
    assert_int_equal(dm_mailer_send(host, pl, pool, &m, &id, &retry, &msg), DM_ERR_TEMPORARY);
    assert_int_equal(retry, 7);
    answer(429, "retry-after: 1\r\n",
           "{\"statusCode\":429,\"message\":\"You have reached your daily email sending "
           "quota.\",\"name\":\"daily_quota_exceeded\"}");
    assert_int_equal(dm_mailer_send(host, pl, pool, &m, &id, &retry, &msg), DM_ERR_TEMPORARY);
    assert_int_equal(retry, 3600);
    assert_contains(msg.text, "quota");
    answer(503, "", "{}");
    assert_int_equal(dm_mailer_send(host, pl, pool, &m, &id, &retry, &msg), DM_ERR_TEMPORARY);
    assert_int_equal(retry, 0);
    answer(401, "",
           "{\"statusCode\":401,\"message\":\"Missing API key\",\"name\":\"missing_api_key\"}");
    assert_int_equal(dm_mailer_send(host, pl, pool, &m, &id, &retry, &msg), DM_ERR_PERMANENT);
    assert_contains(msg.text, "check api_key");
    answer(422, "",
           "{\"statusCode\":422,\"message\":\"Missing `to` field.\",\"name\":"
           "\"missing_required_field\"}");
    assert_int_equal(dm_mailer_send(host, pl, pool, &m, &id, &retry, &msg), DM_ERR_PERMANENT);
    assert_contains(msg.text, "422 missing_required_field: Missing `to` field.");
}

/* Svix's signature, computed here with libsodium. */
static const char *svix_sig(const char *id, const char *ts, const char *body)
{
    crypto_auth_hmacsha256_state st;
    unsigned char mac[32];
    char *b64 = apr_palloc(pool, 64);

    crypto_auth_hmacsha256_init(&st, (const unsigned char *)SECRET_RAW, strlen(SECRET_RAW));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)id, strlen(id));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, strlen(ts));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2base64(b64, 64, mac, sizeof(mac), sodium_base64_VARIANT_ORIGINAL);
    return apr_pstrcat(pool, "v1,", b64, NULL);
}

static dm_status webhook(const dm_loaded_plugin *pl, const char *id, const char *ts,
                         const char *sig, const char *body, dm_plugin_event *ev, dm_message *msg)
{
    dm_header hs[3] = {
        {S("svix-id"), S(id)}, {S("svix-timestamp"), S(ts)}, {S("svix-signature"), S(sig)}};
    return dm_plugins_webhook(host, pl, pool, S(body), hs, 3, ev, msg);
}

static void test_resend_webhooks_are_verified(void **state)
{
    static const char body[] =
        "{\"type\":\"email.bounced\",\"created_at\":\"2026-01-01T00:00:00Z\","
        "\"data\":{\"email_id\":\"em_1\",\"to\":[\"zoe@example.com\"]}}";
    const dm_loaded_plugin *pl;
    const char *now = apr_psprintf(pool, "%ld", (long)time(NULL));
    const char *old = apr_psprintf(pool, "%ld", (long)time(NULL) - 400);
    dm_plugin_event ev;
    dm_message msg;
    (void)state;
    pl = resend_plugin();
    assert_int_equal(webhook(pl, "msg_1", now, svix_sig("msg_1", now, body), body, &ev, &msg),
                     DM_OK);
    assert_int_equal(ev.mail.type, DM_MAIL_BOUNCED);
    assert_memory_equal(ev.mail.event_id.ptr, "msg_1", 5);
    assert_int_equal(ev.mail.message_id.len, 4);
    assert_memory_equal(ev.mail.message_id.ptr, "em_1", 4);
    assert_int_equal(ev.mail.recipient.len, 15);
    /* Signed for another id, or stale. */
    assert_int_equal(webhook(pl, "msg_2", now, svix_sig("msg_1", now, body), body, &ev, &msg),
                     DM_ERR_INVALID);
    assert_contains(msg.text, "does not match");
    assert_int_equal(webhook(pl, "msg_1", old, svix_sig("msg_1", old, body), body, &ev, &msg),
                     DM_ERR_INVALID);
    assert_contains(msg.text, "more than 300 s old");
    /* Another version's entry first, then the good one. */
    assert_int_equal(webhook(pl, "msg_1", now,
                             apr_pstrcat(pool, "v2,AAAA ", svix_sig("msg_1", now, body), NULL),
                             body, &ev, &msg),
                     DM_OK);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
#define TS(f) cmocka_unit_test_setup_teardown(f, smtp_reset, teardown)

int main(void)
{
    const struct CMUnitTest smtp_tests[] = {
        TS(test_smtp_sends_many_messages_over_one_connection),
        TS(test_smtp_replies_map_to_statuses),
        TS(test_smtp_unreachable_server_is_temporary),
        TS(test_smtp_refuses_settings_at_init),
    };
    const struct CMUnitTest resend_tests[] = {
        T(test_resend_posts_json_with_key_and_idempotency_key),
        T(test_resend_429_and_errors),
        T(test_resend_webhooks_are_verified),
    };
    int failed;

    apr_initialize();
    signal(SIGPIPE, SIG_IGN);
    dm_log_set_sink(quiet, NULL);
    failed = cmocka_run_group_tests_name("mailer_smtp", smtp_tests, smtp_group_setup,
                                         smtp_group_teardown);
    failed += cmocka_run_group_tests_name("mailer_resend", resend_tests, http_group_setup,
                                          http_group_teardown);
    apr_terminate();
    return failed ? 1 : 0;
}
