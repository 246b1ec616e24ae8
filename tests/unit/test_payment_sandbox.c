/*
 * The sandbox payment plugin through the real plugin host (ABI 1.2): it
 * refuses to load unless enabled, warns at start, makes stateless signed
 * checkout tokens, serves its checkout page through handle_request, posts
 * Stripe-style signed webhooks to its own public URL (a small server on a
 * thread stands in for the site), and verifies them in parse_webhook. Also
 * the host's side of ABI 1.2 (reserved settings, the checks of a plugin's
 * page and event) and the recording of verified events (core/payments.c).
 *
 * Needs $DM_PLUGINS (payment-sandbox.so) and $DM_TESTPLUGINS (host_probe,
 * abi_older, abi_newer, kind_payment, pages).
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

#include "store/db.h"
#include "base/log.h"
#include "store/migrate.h"
#include "shop/payments.h"
#include "plugins/inbound.h"
#include "plugins/plugin_host.h"
#include "fixture.h"

#define SECRET "whsec_sbx_0123456789abcdef0123456789abcdef"

static apr_pool_t *pool;
static dm_plugin_host *host;

/* ---- helpers ---- */

static dm_str S(const char *s)
{
    dm_str out = {s, strlen(s)};
    return out;
}

static const char *plugin_path(const char *env, const char *file)
{
    const char *dir = getenv(env);
    if (!dir) {
        fail_msg("%s is not set: point it at the built plugins", env);
    }
    return apr_psprintf(pool, "%s/%s.so", dir, file);
}

/* The ABI minor as a string literal, for expected log lines. */
#define STR(x) #x
#define XSTR(x) STR(x)

static char logbuf[65536];

static void capture_sink(void *baton, dm_level level, const char *msg)
{
    size_t used = strlen(logbuf);
    (void)baton;
    snprintf(logbuf + used, sizeof(logbuf) - used, "[%d] %s\n", (int)level, msg);
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!haystack || !strstr(haystack, needle)) {
        fail_msg("expected \"%s\" to contain \"%s\"", haystack ? haystack : "(null)", needle);
    }
}

/* printf into the pool: APR's formatter knows no %lld. */
static const char *sf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *sf(const char *fmt, ...)
{
    char buf[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return apr_pstrdup(pool, buf);
}

static const char *str(dm_str s)
{
    return s.ptr ? apr_pstrmemdup(pool, s.ptr, s.len) : "";
}

/* ---- a stand-in for the site: one request per connection, recorded ---- */

static int srv_fd = -1;
static int srv_port;
static pthread_t srv_thread;
static pthread_mutex_t srv_lock = PTHREAD_MUTEX_INITIALIZER;
static char got_method[16], got_path[256], got_sig[512], got_type[128];
static char got_body[65536];
static size_t got_body_len;
static int srv_requests;
static int answer_status = 200;

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

static void *serve(void *arg)
{
    static char req[131072];
    (void)arg;
    for (;;) {
        int c = accept(srv_fd, NULL, NULL);
        size_t got = 0, clen = 0, hlen = 0;
        char *end = NULL, head[512];
        const char *body;
        int n;
        if (c < 0) {
            return NULL;
        }
        while (got < sizeof(req) - 1) {
            ssize_t k = recv(c, req + got, sizeof(req) - 1 - got, 0);
            if (k <= 0) {
                break;
            }
            got += (size_t)k;
            req[got] = '\0';
            end = strstr(req, "\r\n\r\n");
            if (end) {
                hlen = (size_t)(end + 4 - req);
                clen = (size_t)atol(header_of(req, "Content-Length"));
                if (got >= hlen + clen) {
                    break;
                }
            }
        }
        req[got] = '\0';
        pthread_mutex_lock(&srv_lock);
        sscanf(req, "%15s %255s", got_method, got_path);
        snprintf(got_sig, sizeof(got_sig), "%s", header_of(req, "Sandbox-Signature"));
        snprintf(got_type, sizeof(got_type), "%s", header_of(req, "Content-Type"));
        got_body_len = end && clen < sizeof(got_body) ? clen : 0;
        memcpy(got_body, end ? end + 4 : "", got_body_len);
        got_body[got_body_len] = '\0';
        srv_requests++;
        body = answer_status == 200 ? "{\"received\":true,\"duplicate\":false}"
                                    : "{\"error\":{\"code\":\"invalid\",\"message\":\"no such "
                                      "order here\"}}";
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     answer_status, strlen(body));
        pthread_mutex_unlock(&srv_lock);
        send(c, head, (size_t)n, MSG_NOSIGNAL);
        send(c, body, strlen(body), MSG_NOSIGNAL);
        close(c);
    }
}

static int group_setup(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof(a);
    (void)state;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    srv_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (srv_fd < 0 || bind(srv_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(srv_fd, 8) != 0 || getsockname(srv_fd, (struct sockaddr *)&a, &len) != 0) {
        return -1;
    }
    srv_port = ntohs(a.sin_port);
    return pthread_create(&srv_thread, NULL, serve, NULL);
}

static int group_teardown(void **state)
{
    (void)state;
    shutdown(srv_fd, SHUT_RDWR);
    pthread_join(srv_thread, NULL);
    close(srv_fd);
    return 0;
}

static const char *public_url(void)
{
    return apr_psprintf(pool, "http://127.0.0.1:%d", srv_port);
}

static int setup(void **state)
{
    (void)state;
    logbuf[0] = '\0';
    answer_status = 200;
    srv_requests = 0;
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    assert_null(dm_plugins_create(pool, &host));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool);
    return 0;
}

/* Declares the sandbox as "sandbox" with the given settings (NULL: unset)
 * and the stand-in's URL as the public URL; returns the init error. */
static dm_err *declare(const char *enabled, const char *secret, const char *test_endpoints)
{
    assert_null(dm_plugins_declare(host, "payment", "sandbox",
                                   plugin_path("DM_PLUGINS", "payment-sandbox")));
    if (enabled) {
        assert_null(dm_plugins_set(host, "sandbox", "enabled", enabled));
    }
    if (secret) {
        assert_null(dm_plugins_set(host, "sandbox", "webhook_secret", secret));
    }
    if (test_endpoints) {
        assert_null(dm_plugins_set(host, "sandbox", "test_endpoints", test_endpoints));
    }
    dm_plugins_set_public_url(host, public_url());
    return dm_plugins_init_all(host);
}

static const dm_loaded_plugin *sandbox(void)
{
    assert_null(declare("yes", SECRET, "yes"));
    return dm_plugins_get(host, "sandbox");
}

static const dm_payment_ops *ops_of(const dm_loaded_plugin *pl)
{
    return pl->desc->ops;
}

/* A checkout through create_checkout; returns the token (the last path
 * segment of the redirect URL). */
static const char *checkout(const dm_loaded_plugin *pl, const char *order, int64_t amount,
                            const char **ref)
{
    dm_payment_checkout in = {.size = sizeof(in)};
    dm_payment_checkout_result out = {.size = sizeof(out)};
    dm_message msg = {{0}};
    const char *url, *prefix;

    in.order_id = S(order);
    in.amount_micros = amount;
    in.currency = S("USD");
    in.success_url = S("https://shop.example/paid?x=1&y=2");
    assert_int_equal(ops_of(pl)->create_checkout(dm_plugins_call(host, pl, pool), &in, &out, &msg),
                     DM_OK);
    url = str(out.redirect_url);
    prefix = apr_pstrcat(pool, public_url(), "/api/plugins/sandbox/checkout/", NULL);
    assert_true(strncmp(url, prefix, strlen(prefix)) == 0);
    if (ref) {
        *ref = str(out.provider_ref);
    }
    return url + strlen(prefix);
}

typedef struct page {
    dm_status st;
    int status;
    const char *type;
    const char *body;
    dm_message msg;
} page;

static page request(const dm_loaded_plugin *pl, const char *method, const char *path,
                    const char *body)
{
    dm_plugin_request req = {.size = sizeof(req)};
    dm_plugin_response resp;
    page out;

    memset(&out, 0, sizeof(out));
    req.method = method;
    req.path = S(path);
    req.query = S("");
    req.body = S(body ? body : "");
    out.st = dm_plugins_handle_request(host, pl, pool, &req, &resp, &out.msg);
    out.status = resp.status;
    out.type = str(resp.content_type);
    out.body = str(resp.body);
    return out;
}

/* parse_webhook through the host with one signature header. */
static dm_status webhook(const dm_loaded_plugin *pl, const char *header, const char *sig,
                         const char *body, size_t len, dm_payment_event *ev, dm_message *msg)
{
    dm_header hs[2] = {{S("Content-Type"), S("application/json")}, {S(header), S(sig)}};
    dm_plugin_event out;
    dm_str raw = {body, len};
    dm_status st = dm_plugins_webhook(host, pl, pool, raw, hs, 2, &out, msg);
    *ev = out.payment;
    return st;
}

/* Stripe's scheme computed here, independently of the plugin. */
static const char *sign(const char *secret, long long t, const char *body)
{
    unsigned char mac[32];
    char hex[65];
    crypto_auth_hmacsha256_state st;
    const char *prefix = sf("%lld.", t);

    crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)prefix, strlen(prefix));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
    return apr_psprintf(pool, "%s", hex);
}

/* A token in the documented format, for payloads create_checkout would
 * never make (an expired one). */
static const char *make_token(const char *secret, const char *payload)
{
    char b64[1024], mac64[64];
    unsigned char mac[32];
    crypto_auth_hmacsha256_state st;
    const char *ctx = "sandbox-checkout-token:";

    sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)payload, strlen(payload),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)ctx, strlen(ctx));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)b64, strlen(b64));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2base64(mac64, sizeof(mac64), mac, sizeof(mac),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return apr_pstrcat(pool, b64, ".", mac64, NULL);
}

/* ---- loading ---- */

static void test_sandbox_refuses_to_load_unless_enabled_yes(void **state)
{
    dm_err *e;
    (void)state;
    e = declare(NULL, SECRET, NULL);
    assert_non_null(e);
    assert_contains(e->message, "plugin \"sandbox\"");
    assert_contains(e->message, "must never run in production");
    assert_contains(e->message, "DeepMinePluginSet sandbox enabled yes");
    assert_false(dm_plugins_get(host, "sandbox")->initialised);
}

static void test_sandbox_enabled_must_be_exactly_yes(void **state)
{
    dm_err *e;
    (void)state;
    e = declare("YES", SECRET, NULL);
    assert_non_null(e);
    assert_contains(e->message, "must never run in production");
}

static void test_sandbox_needs_a_long_webhook_secret(void **state)
{
    dm_err *e;
    (void)state;
    e = declare("yes", "too-short-0123456789", NULL);
    assert_non_null(e);
    assert_contains(e->message, "webhook_secret is 20 characters; it must have at least 32");
}

static void test_sandbox_needs_a_webhook_secret(void **state)
{
    dm_err *e;
    (void)state;
    e = declare("yes", NULL, NULL);
    assert_non_null(e);
    assert_contains(e->message, "webhook_secret is missing");
}

static void test_sandbox_needs_the_public_url(void **state)
{
    dm_err *e;
    (void)state;
    assert_null(dm_plugins_declare(host, "payment", "sandbox",
                                   plugin_path("DM_PLUGINS", "payment-sandbox")));
    assert_null(dm_plugins_set(host, "sandbox", "enabled", "yes"));
    assert_null(dm_plugins_set(host, "sandbox", "webhook_secret", SECRET));
    e = dm_plugins_init_all(host);
    assert_non_null(e);
    assert_contains(e->message, "DeepMinePublicURL is not set");
}

static void test_sandbox_refuses_a_bad_currency_or_test_endpoints(void **state)
{
    dm_err *e;
    (void)state;
    assert_null(dm_plugins_set(host, "sandbox", "currency", "usd"));
    e = declare("yes", SECRET, "maybe");
    assert_non_null(e);
    assert_contains(e->message, "currency must be an ISO 4217 code");
}

static void test_sandbox_warns_at_every_start(void **state)
{
    (void)state;
    sandbox();
    assert_contains(logbuf, "[4] DM00101: plugin sandbox: SANDBOX payments are enabled");
    assert_contains(logbuf, "never enable this in production");
    assert_contains(logbuf, "DM00100: plugin sandbox (payment payment-sandbox 1.0.0) loaded "
                            "(ABI 1." XSTR(DM_PLUGIN_ABI_MINOR) ")");
}

/* ---- the host's reserved settings (through host_probe) ---- */

static void test_reserved_settings_name_and_public_url(void **state)
{
    const dm_host *h = NULL;
    char slot[32];
    dm_call *call;
    dm_err *e;
    (void)state;
    snprintf(slot, sizeof(slot), "%p", (void *)&h);
    assert_null(
        dm_plugins_declare(host, "mailer", "probe", plugin_path("DM_TESTPLUGINS", "host_probe")));
    assert_null(dm_plugins_set(host, "probe", "slot", slot));
    e = dm_plugins_set(host, "probe", "_public_url", "https://evil.example");
    assert_non_null(e);
    assert_contains(e->message, "keys starting with '_' are reserved");
    dm_plugins_set_public_url(host, "https://shop.example");
    assert_null(dm_plugins_init_all(host));
    call = dm_plugins_call(host, dm_plugins_get(host, "probe"), pool);
    assert_string_equal(h->setting(call, "_name"), "probe");
    assert_string_equal(h->setting(call, "_public_url"), "https://shop.example");
    assert_int_equal(h->abi_minor, DM_PLUGIN_ABI_MINOR);
}

static void test_reserved_public_url_is_unset_without_one(void **state)
{
    const dm_host *h = NULL;
    char slot[32];
    (void)state;
    snprintf(slot, sizeof(slot), "%p", (void *)&h);
    assert_null(
        dm_plugins_declare(host, "mailer", "probe", plugin_path("DM_TESTPLUGINS", "host_probe")));
    assert_null(dm_plugins_set(host, "probe", "slot", slot));
    assert_null(dm_plugins_init_all(host));
    assert_null(
        h->setting(dm_plugins_call(host, dm_plugins_get(host, "probe"), pool), "_public_url"));
}

/* ---- the host's side of handle_request and webhooks ---- */

static void test_older_plugins_serve_no_pages(void **state)
{
    page p;
    (void)state;
    assert_null(
        dm_plugins_declare(host, "mailer", "old", plugin_path("DM_TESTPLUGINS", "abi_older")));
    assert_null(
        dm_plugins_declare(host, "mailer", "new", plugin_path("DM_TESTPLUGINS", "abi_newer")));
    assert_null(
        dm_plugins_declare(host, "payment", "pay", plugin_path("DM_TESTPLUGINS", "kind_payment")));
    assert_null(dm_plugins_init_all(host));
    /* 1.0: the descriptor ends before handle_request; never read. */
    assert_false(DM_HAS_FIELD(dm_plugins_get(host, "old")->desc, dm_plugin, handle_request));
    assert_false(dm_plugins_offers_requests(dm_plugins_get(host, "old")));
    /* Newer and current, with handle_request NULL. */
    assert_true(DM_HAS_FIELD(dm_plugins_get(host, "new")->desc, dm_plugin, handle_request));
    assert_false(dm_plugins_offers_requests(dm_plugins_get(host, "new")));
    assert_false(dm_plugins_offers_requests(dm_plugins_get(host, "pay")));
    p = request(dm_plugins_get(host, "old"), "GET", "/x", NULL);
    assert_int_equal(p.st, DM_ERR_UNSUPPORTED);
    assert_int_equal(DM_PLUGIN_SIZE_1_1, offsetof(dm_plugin, health) + sizeof(void *));
}

static void test_host_checks_a_plugins_page(void **state)
{
    const dm_loaded_plugin *pl;
    dm_plugin_request req = {.size = sizeof(req), .method = "GET"};
    dm_plugin_response resp;
    dm_message msg;
    page p;
    (void)state;
    assert_null(
        dm_plugins_declare(host, "payment", "pages", plugin_path("DM_TESTPLUGINS", "pages")));
    assert_null(dm_plugins_init_all(host));
    pl = dm_plugins_get(host, "pages");
    assert_true(dm_plugins_offers_requests(pl));

    req.path = S("/ok");
    assert_int_equal(dm_plugins_handle_request(host, pl, pool, &req, &resp, &msg), DM_OK);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.n_headers, 1);
    assert_string_equal(str(resp.headers[0].name), "X-Page");
    p = request(pl, "GET", "/redirect", NULL);
    assert_int_equal(p.st, DM_OK);
    assert_int_equal(p.status, 303);

    p = request(pl, "GET", "/set-cookie", NULL);
    assert_int_equal(p.st, DM_ERR_INTERNAL);
    assert_contains(p.msg.text, "may not set the header set-cookie");
    p = request(pl, "GET", "/csp", NULL);
    assert_int_equal(p.st, DM_ERR_INTERNAL);
    assert_contains(p.msg.text, "Content-Security-Policy");
    p = request(pl, "GET", "/crlf", NULL);
    assert_int_equal(p.st, DM_ERR_INTERNAL);
    assert_contains(p.msg.text, "malformed header 0");
    p = request(pl, "GET", "/badname", NULL);
    assert_int_equal(p.st, DM_ERR_INTERNAL);
    p = request(pl, "GET", "/status", NULL);
    assert_int_equal(p.st, DM_ERR_INTERNAL);
    assert_contains(p.msg.text, "HTTP status 99");
    p = request(pl, "GET", "/nobody", NULL);
    assert_int_equal(p.st, DM_ERR_INTERNAL);
    p = request(pl, "GET", "/invalid", NULL);
    assert_int_equal(p.st, DM_ERR_INVALID);
    assert_string_equal(p.msg.text, "pages: bad request");
    p = request(pl, "GET", "/nothing", NULL);
    assert_int_equal(p.st, DM_ERR_UNSUPPORTED);
}

static void test_host_checks_a_plugins_event(void **state)
{
    const dm_loaded_plugin *pl;
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    assert_null(
        dm_plugins_declare(host, "payment", "pages", plugin_path("DM_TESTPLUGINS", "pages")));
    assert_null(
        dm_plugins_declare(host, "mailer", "old", plugin_path("DM_TESTPLUGINS", "abi_older")));
    assert_null(dm_plugins_init_all(host));
    pl = dm_plugins_get(host, "pages");
    assert_int_equal(webhook(pl, "X", "y", "noid", 4, &ev, &msg), DM_ERR_INTERNAL);
    assert_contains(msg.text, "an event without an id");
    assert_int_equal(webhook(pl, "X", "y", "badstatus", 9, &ev, &msg), DM_ERR_INTERNAL);
    assert_contains(msg.text, "a malformed event");
    assert_int_equal(webhook(pl, "X", "y", "other", 5, &ev, &msg), DM_ERR_INVALID);
    assert_string_equal(msg.text, "pages: unsigned");
    /* A mailer without parse_webhook receives no webhooks. */
    assert_int_equal(webhook(dm_plugins_get(host, "old"), "X", "y", "{}", 2, &ev, &msg),
                     DM_ERR_UNSUPPORTED);
}

/* ---- checkouts and the page ---- */

static void test_checkout_url_carries_a_signed_token(void **state)
{
    const dm_loaded_plugin *pl;
    const char *ref = NULL, *tok, *tok2;
    (void)state;
    pl = sandbox();
    tok = checkout(pl, "ord-42", 12500000, &ref);
    assert_true(strncmp(ref, "cs_sbx_", 7) == 0);
    assert_int_equal(strlen(ref), 7 + 32);
    /* URL-safe: base64url characters and one dot, no padding. */
    assert_int_equal(
        strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."),
        strlen(tok));
    assert_non_null(strchr(tok, '.'));
    assert_null(strchr(strchr(tok, '.') + 1, '.'));
    /* A new checkout id every time. */
    tok2 = checkout(pl, "ord-42", 12500000, NULL);
    assert_string_not_equal(tok, tok2);
}

static void test_checkout_refusals(void **state)
{
    const dm_loaded_plugin *pl;
    dm_payment_checkout in = {.size = sizeof(in)};
    dm_payment_checkout_result out = {.size = sizeof(out)};
    dm_message msg = {{0}};
    dm_call *call;
    (void)state;
    pl = sandbox();
    call = dm_plugins_call(host, pl, pool);
    in.order_id = S("ord-1");
    in.amount_micros = 0;
    assert_int_equal(ops_of(pl)->create_checkout(call, &in, &out, &msg), DM_ERR_INVALID);
    in.amount_micros = 1000000;
    in.currency = S("EUR");
    assert_int_equal(ops_of(pl)->create_checkout(call, &in, &out, &msg), DM_ERR_INVALID);
    assert_contains(msg.text, "USD only");
    in.currency = S("");
    in.order_id = S("a\nb");
    assert_int_equal(ops_of(pl)->create_checkout(call, &in, &out, &msg), DM_ERR_INVALID);
    in.order_id = S("ord-1");
    in.success_url = S("javascript:alert(1)");
    assert_int_equal(ops_of(pl)->create_checkout(call, &in, &out, &msg), DM_ERR_INVALID);
    in.success_url = S("");
    /* An empty currency is the configured one. */
    assert_int_equal(ops_of(pl)->create_checkout(call, &in, &out, &msg), DM_OK);
}

static void test_checkout_page_shows_the_order_escaped(void **state)
{
    const dm_loaded_plugin *pl;
    const char *ref = NULL, *tok;
    page p;
    (void)state;
    pl = sandbox();
    tok = checkout(pl, "<script>alert('x')</script>&", 12500000, &ref);
    p = request(pl, "GET", apr_pstrcat(pool, "/checkout/", tok, NULL), NULL);
    assert_int_equal(p.st, DM_OK);
    assert_int_equal(p.status, 200);
    assert_string_equal(p.type, "text/html; charset=utf-8");
    assert_contains(p.body, "Pay 12.50 USD");
    assert_contains(p.body, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;");
    assert_null(strstr(p.body, "<script>"));
    assert_contains(p.body, ref);
    assert_contains(p.body, apr_pstrcat(pool, "action=\"", tok, "/pay\"", NULL));
    assert_contains(p.body, apr_pstrcat(pool, "action=\"", tok, "/decline\"", NULL));
    /* HEAD is GET. */
    p = request(pl, "HEAD", apr_pstrcat(pool, "/checkout/", tok, NULL), NULL);
    assert_int_equal(p.status, 200);
}

static void test_amounts_are_shown_from_micro_units(void **state)
{
    const dm_loaded_plugin *pl;
    page p;
    (void)state;
    pl = sandbox();
    p = request(pl, "GET", apr_pstrcat(pool, "/checkout/", checkout(pl, "o", 1, NULL), NULL), NULL);
    assert_contains(p.body, "Pay 0.000001 USD");
    p = request(pl, "GET",
                apr_pstrcat(pool, "/checkout/", checkout(pl, "o", 7000000000LL, NULL), NULL), NULL);
    assert_contains(p.body, "Pay 7000.00 USD");
    p = request(pl, "GET", apr_pstrcat(pool, "/checkout/", checkout(pl, "o", 1250000, NULL), NULL),
                NULL);
    assert_contains(p.body, "Pay 1.25 USD");
}

static void test_tampered_token_is_a_400_page(void **state)
{
    const dm_loaded_plugin *pl;
    char *tok;
    page p;
    (void)state;
    pl = sandbox();
    tok = apr_pstrdup(pool, checkout(pl, "ord-1", 5000000, NULL));
    tok[3] = tok[3] == 'A' ? 'B' : 'A'; /* in the payload */
    p = request(pl, "GET", apr_pstrcat(pool, "/checkout/", tok, NULL), NULL);
    assert_int_equal(p.st, DM_OK);
    assert_int_equal(p.status, 400);
    assert_contains(p.body, "not one of ours");
    p = request(pl, "POST", apr_pstrcat(pool, "/checkout/", tok, "/pay", NULL), NULL);
    assert_int_equal(p.status, 400);
    assert_int_equal(srv_requests, 0); /* nothing was posted */
    p = request(pl, "GET", "/checkout/no-dot-at-all", NULL);
    assert_int_equal(p.status, 400);
    assert_contains(p.body, "malformed");
}

static void test_token_of_another_secret_or_expired_is_a_400_page(void **state)
{
    const dm_loaded_plugin *pl;
    long long now = (long long)time(NULL);
    const char *fmt = "{\"v\":1,\"id\":\"cs_sbx_1\",\"order\":\"o\",\"amount\":1000000,"
                      "\"currency\":\"USD\",\"exp\":%lld}";
    page p;
    (void)state;
    pl = sandbox();
    /* The documented format with the right secret: accepted. */
    p = request(pl, "GET",
                apr_pstrcat(pool, "/checkout/", make_token(SECRET, sf(fmt, now + 60)), NULL), NULL);
    assert_int_equal(p.status, 200);
    assert_contains(p.body, "Pay 1.00 USD");
    /* Another secret. */
    p = request(pl, "GET",
                apr_pstrcat(pool, "/checkout/", make_token(SECRET "x", sf(fmt, now + 60)), NULL),
                NULL);
    assert_int_equal(p.status, 400);
    /* Expired. */
    p = request(pl, "POST",
                apr_pstrcat(pool, "/checkout/", make_token(SECRET, sf(fmt, now - 1)), "/pay", NULL),
                NULL);
    assert_int_equal(p.status, 400);
    assert_contains(p.body, "expired");
    assert_int_equal(srv_requests, 0);
}

static void test_wrong_methods_and_unknown_pages(void **state)
{
    const dm_loaded_plugin *pl;
    const char *tok;
    page p;
    (void)state;
    pl = sandbox();
    tok = checkout(pl, "o", 1000000, NULL);
    p = request(pl, "POST", apr_pstrcat(pool, "/checkout/", tok, NULL), NULL);
    assert_int_equal(p.status, 405);
    p = request(pl, "GET", apr_pstrcat(pool, "/checkout/", tok, "/pay", NULL), NULL);
    assert_int_equal(p.status, 405);
    p = request(pl, "POST", apr_pstrcat(pool, "/checkout/", tok, "/refund", NULL), NULL);
    assert_int_equal(p.st, DM_ERR_UNSUPPORTED);
    p = request(pl, "GET", "/", NULL);
    assert_int_equal(p.st, DM_ERR_UNSUPPORTED);
}

/* ---- pay, decline, and the webhook they post ---- */

static void test_pay_posts_a_signed_paid_event_that_verifies(void **state)
{
    const dm_loaded_plugin *pl;
    const char *ref = NULL, *tok, *v1;
    long long t = 0;
    dm_payment_event ev;
    dm_message msg;
    page p;
    (void)state;
    pl = sandbox();
    tok = checkout(pl, "ord-7", 12500000, &ref);
    p = request(pl, "POST", apr_pstrcat(pool, "/checkout/", tok, "/pay", NULL), "");
    assert_int_equal(p.st, DM_OK);
    assert_int_equal(p.status, 200);
    assert_contains(p.body, "Payment accepted");
    assert_contains(p.body, "webhook answered HTTP 200");
    assert_contains(p.body, "href=\"https://shop.example/paid?x=1&amp;y=2\"");

    assert_int_equal(srv_requests, 1);
    assert_string_equal(got_method, "POST");
    assert_string_equal(got_path, "/api/webhooks/sandbox");
    assert_string_equal(got_type, "application/json");
    /* The header, checked independently: t=<now>,v1=hex(HMAC(secret, "t.body")). */
    assert_int_equal(sscanf(got_sig, "t=%lld,", &t), 1);
    assert_true(t >= (long long)time(NULL) - 5 && t <= (long long)time(NULL));
    v1 = strstr(got_sig, ",v1=");
    assert_non_null(v1);
    assert_string_equal(v1 + 4, sign(SECRET, t, got_body));
    assert_contains(got_body, "\"type\":\"checkout.paid\"");

    assert_int_equal(webhook(pl, "Sandbox-Signature", got_sig, got_body, got_body_len, &ev, &msg),
                     DM_OK);
    assert_int_equal(ev.status, DM_PAY_PAID);
    assert_int_equal(ev.amount_micros, 12500000);
    assert_string_equal(str(ev.currency), "USD");
    assert_string_equal(str(ev.order_id), "ord-7");
    assert_string_equal(str(ev.provider_ref), ref);
    assert_true(strncmp(str(ev.event_id), "evt_", 4) == 0);
}

static void test_decline_posts_a_failed_event(void **state)
{
    const dm_loaded_plugin *pl;
    dm_payment_event ev;
    dm_message msg;
    page p;
    (void)state;
    pl = sandbox();
    p = request(
        pl, "POST",
        apr_pstrcat(pool, "/checkout/", checkout(pl, "ord-8", 3000000, NULL), "/decline", NULL),
        NULL);
    assert_int_equal(p.status, 200);
    assert_contains(p.body, "Payment declined");
    assert_contains(got_body, "\"type\":\"checkout.declined\"");
    assert_int_equal(webhook(pl, "Sandbox-Signature", got_sig, got_body, got_body_len, &ev, &msg),
                     DM_OK);
    assert_int_equal(ev.status, DM_PAY_FAILED);
    assert_int_equal(ev.amount_micros, 3000000);
}

static void test_refused_webhook_shows_on_the_page(void **state)
{
    const dm_loaded_plugin *pl;
    page p;
    (void)state;
    pl = sandbox();
    answer_status = 400;
    p = request(pl, "POST",
                apr_pstrcat(pool, "/checkout/", checkout(pl, "ord-9", 3000000, NULL), "/pay", NULL),
                NULL);
    assert_int_equal(p.st, DM_OK);
    assert_int_equal(p.status, 502);
    assert_contains(p.body, "webhook answered HTTP 400: no such order here");
}

static void test_refund_posts_a_refunded_event(void **state)
{
    const dm_loaded_plugin *pl;
    dm_payment_event ev;
    dm_message msg = {{0}};
    (void)state;
    pl = sandbox();
    assert_non_null(ops_of(pl)->refund);
    assert_int_equal(ops_of(pl)->refund(dm_plugins_call(host, pl, pool), S("cs_sbx_abc"), 2500000,
                                        S("USD"), &msg),
                     DM_OK);
    assert_contains(got_body, "\"type\":\"charge.refunded\"");
    assert_int_equal(webhook(pl, "Sandbox-Signature", got_sig, got_body, got_body_len, &ev, &msg),
                     DM_OK);
    assert_int_equal(ev.status, DM_PAY_REFUNDED);
    assert_string_equal(str(ev.provider_ref), "cs_sbx_abc");
    assert_int_equal(ev.amount_micros, 2500000);
    assert_int_equal(ev.order_id.len, 0);
    answer_status = 503;
    assert_int_equal(ops_of(pl)->refund(dm_plugins_call(host, pl, pool), S("cs_sbx_abc"), 2500000,
                                        S("USD"), &msg),
                     DM_ERR_TEMPORARY);
}

/* ---- parse_webhook: what is refused ---- */

static const char *EVENT = "{\"id\":\"evt_test_1\",\"type\":\"checkout.paid\",\"created\":1,"
                           "\"data\":{\"object\":{\"id\":\"cs_sbx_1\",\"order_id\":\"ord-1\","
                           "\"amount_micros\":5000000,\"currency\":\"USD\"}}}";

static dm_status try_sig(const dm_loaded_plugin *pl, const char *header, const char *body,
                         dm_message *msg)
{
    dm_payment_event ev;
    return webhook(pl, "Sandbox-Signature", header, body, strlen(body), &ev, msg);
}

static void test_webhook_signature_over_the_exact_body(void **state)
{
    const dm_loaded_plugin *pl;
    long long now = (long long)time(NULL);
    const char *good = sign(SECRET, now, EVENT);
    char *tampered = apr_pstrdup(pool, EVENT);
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    pl = sandbox();
    assert_int_equal(try_sig(pl, sf("t=%lld,v1=%s", now, good), EVENT, &msg), DM_OK);
    /* One byte of the body changed (5000000 → 6000000). */
    *strstr(tampered, "5000000") = '6';
    assert_int_equal(try_sig(pl, sf("t=%lld,v1=%s", now, good), tampered, &msg), DM_ERR_INVALID);
    assert_contains(msg.text, "does not match the body");
    /* The same JSON re-serialised (a space added) is another body. */
    assert_int_equal(
        try_sig(pl, sf("t=%lld,v1=%s", now, good), apr_pstrcat(pool, EVENT, " ", NULL), &msg),
        DM_ERR_INVALID);
    /* Another secret. */
    assert_int_equal(
        try_sig(pl, sf("t=%lld,v1=%s", now, sign(SECRET "x", now, EVENT)), EVENT, &msg),
        DM_ERR_INVALID);
    /* The timestamp is part of what is signed. */
    assert_int_equal(try_sig(pl, sf("t=%lld,v1=%s", now - 1, good), EVENT, &msg), DM_ERR_INVALID);
    /* Header names are case-insensitive. */
    assert_int_equal(webhook(pl, "sandbox-signature", sf("t=%lld,v1=%s", now, good), EVENT,
                             strlen(EVENT), &ev, &msg),
                     DM_OK);
}

static void test_webhook_timestamp_tolerance_is_300_s(void **state)
{
    const dm_loaded_plugin *pl;
    long long now = (long long)time(NULL);
    dm_message msg;
    (void)state;
    pl = sandbox();
    assert_int_equal(
        try_sig(pl, sf("t=%lld,v1=%s", now - 290, sign(SECRET, now - 290, EVENT)), EVENT, &msg),
        DM_OK);
    assert_int_equal(
        try_sig(pl, sf("t=%lld,v1=%s", now - 301, sign(SECRET, now - 301, EVENT)), EVENT, &msg),
        DM_ERR_INVALID);
    assert_contains(msg.text, "more than 300 s old");
    assert_int_equal(
        try_sig(pl, sf("t=%lld,v1=%s", now + 400, sign(SECRET, now + 400, EVENT)), EVENT, &msg),
        DM_ERR_INVALID);
    assert_contains(msg.text, "in the future");
}

static void test_webhook_accepts_any_of_several_v1(void **state)
{
    const dm_loaded_plugin *pl;
    long long now = (long long)time(NULL);
    const char *good = sign(SECRET, now, EVENT),
               *old = sign("whsec_rotated_out_0123456789abcdef", now, EVENT);
    dm_message msg;
    (void)state;
    pl = sandbox();
    assert_int_equal(try_sig(pl, sf("t=%lld,v1=%s,v1=%s", now, old, good), EVENT, &msg), DM_OK);
    assert_int_equal(try_sig(pl, sf("v1=%s,t=%lld,v0=abc", good, now), EVENT, &msg), DM_OK);
    /* Only a v0 (a scheme we do not use): refused. */
    assert_int_equal(try_sig(pl, sf("t=%lld,v0=%s", now, good), EVENT, &msg), DM_ERR_INVALID);
    assert_contains(msg.text, "no v1 signature");
}

static void test_webhook_malformed_headers_are_refused(void **state)
{
    const dm_loaded_plugin *pl;
    long long now = (long long)time(NULL);
    const char *good = sign(SECRET, now, EVENT);
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    pl = sandbox();
    assert_int_equal(webhook(pl, "X-Other", "t=1", EVENT, strlen(EVENT), &ev, &msg),
                     DM_ERR_INVALID);
    assert_contains(msg.text, "no Sandbox-Signature header");
    assert_int_equal(try_sig(pl, apr_psprintf(pool, "v1=%s", good), EVENT, &msg), DM_ERR_INVALID);
    assert_contains(msg.text, "no valid timestamp");
    assert_int_equal(try_sig(pl, sf("t=%lldx,v1=%s", now, good), EVENT, &msg), DM_ERR_INVALID);
    assert_int_equal(try_sig(pl, sf("t=%lld,t=%lld,v1=%s", now, now, good), EVENT, &msg),
                     DM_ERR_INVALID);
    assert_contains(msg.text, "more than one timestamp");
    /* An upper-case hex signature is not the lower-case one Stripe sends. */
    assert_int_equal(try_sig(pl,
                             sf("t=%lld,v1=%s", now,
                                apr_pstrdup(pool, "ABCDEF0123456789ABCDEF0123456789"
                                                  "ABCDEF0123456789ABCDEF0123456789")),
                             EVENT, &msg),
                     DM_ERR_INVALID);
}

static void test_verified_event_of_another_type_is_ignored(void **state)
{
    const dm_loaded_plugin *pl;
    long long now = (long long)time(NULL);
    const char *body = "{\"id\":\"evt_2\",\"type\":\"customer.created\",\"data\":{}}";
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    pl = sandbox();
    assert_int_equal(webhook(pl, "Sandbox-Signature",
                             sf("t=%lld,v1=%s", now, sign(SECRET, now, body)), body, strlen(body),
                             &ev, &msg),
                     DM_OK);
    assert_int_equal(ev.status, DM_PAY_IGNORED);
    assert_string_equal(str(ev.event_id), "evt_2");
    /* Verified but not an event: refused. */
    body = "[1,2,3]";
    assert_int_equal(webhook(pl, "Sandbox-Signature",
                             sf("t=%lld,v1=%s", now, sign(SECRET, now, body)), body, strlen(body),
                             &ev, &msg),
                     DM_ERR_INVALID);
}

/* ---- the test endpoint ---- */

static void test_test_endpoint_only_with_test_endpoints_yes(void **state)
{
    const dm_loaded_plugin *pl;
    const char *body = "{\"order_id\":\"ord-5\",\"amount_micros\":2000000,\"currency\":\"USD\"}";
    page p;
    (void)state;
    assert_null(declare("yes", SECRET, NULL));
    pl = dm_plugins_get(host, "sandbox");
    p = request(pl, "POST", "/checkout", body);
    assert_int_equal(p.st, DM_ERR_UNSUPPORTED);
}

static void test_test_endpoint_creates_a_checkout(void **state)
{
    const dm_loaded_plugin *pl;
    page p;
    (void)state;
    pl = sandbox();
    p = request(pl, "POST", "/checkout",
                "{\"order_id\":\"ord-5\",\"amount_micros\":2000000,\"currency\":\"USD\"}");
    assert_int_equal(p.st, DM_OK);
    assert_int_equal(p.status, 201);
    assert_string_equal(p.type, "application/json");
    assert_contains(p.body, apr_pstrcat(pool, "{\"url\":\"", public_url(),
                                        "/api/plugins/sandbox/checkout/", NULL));
    assert_contains(p.body, "\"provider_ref\":\"cs_sbx_");
    p = request(pl, "POST", "/checkout", "{\"order_id\":\"ord-5\"}");
    assert_int_equal(p.st, DM_ERR_INVALID);
    p = request(pl, "GET", "/checkout", NULL);
    assert_int_equal(p.status, 405);
}

/* ---- recording verified events (core/payments.c) ---- */

static int64_t count_events(dm_db *db)
{
    int64_t n = -1;
    int found = 0;
    assert_null(dm_db_query_int64(db, pool, "SELECT COUNT(*) FROM payment_events", &n, &found));
    return n;
}

static void test_event_is_recorded_once_per_plugin_and_id(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_payment_event ev = {.size = sizeof(ev)};
    dm_payment_recorded rec, again, other;
    (void)state;
    ev.event_id = S("evt_1");
    ev.order_id = S("ord-1");
    ev.provider_ref = S("cs_sbx_1");
    ev.status = DM_PAY_PAID;
    ev.amount_micros = 5000000;
    ev.currency = S("USD");
    assert_null(dm_payment_event_record(db, pool, "sandbox", &ev, EVENT, strlen(EVENT), &rec));
    assert_false(rec.duplicate);
    assert_true(rec.id > 0);
    assert_null(dm_payment_event_record(db, pool, "sandbox", &ev, EVENT, strlen(EVENT), &again));
    assert_true(again.duplicate);
    assert_int_equal(again.id, rec.id);
    assert_int_equal(count_events(db), 1);
    /* The same id from another plugin is another event. */
    assert_null(dm_payment_event_record(db, pool, "stripe", &ev, EVENT, strlen(EVENT), &other));
    assert_false(other.duplicate);
    assert_int_equal(count_events(db), 2);
    assert_false(dm_db_in_transaction(db));
}

static void test_unusable_event_is_refused_and_not_recorded(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_payment_event ev = {.size = sizeof(ev)};
    dm_payment_recorded rec;
    dm_err *e;
    (void)state;
    ev.event_id = S("evt_1");
    ev.status = DM_PAY_PAID;
    ev.currency = S("usd");
    e = dm_payment_event_record(db, pool, "sandbox", &ev, "{}", 2, &rec);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "currency");
    ev.currency = S("USD");
    ev.amount_micros = -1;
    assert_non_null(dm_payment_event_record(db, pool, "sandbox", &ev, "{}", 2, &rec));
    ev.amount_micros = 1;
    ev.event_id = S("");
    assert_non_null(dm_payment_event_record(db, pool, "sandbox", &ev, "{}", 2, &rec));
    ev.event_id = S("evt\n1");
    assert_non_null(dm_payment_event_record(db, pool, "sandbox", &ev, "{}", 2, &rec));
    assert_int_equal(count_events(db), 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_sandbox_refuses_to_load_unless_enabled_yes),
        T(test_sandbox_enabled_must_be_exactly_yes),
        T(test_sandbox_needs_a_long_webhook_secret),
        T(test_sandbox_needs_a_webhook_secret),
        T(test_sandbox_needs_the_public_url),
        T(test_sandbox_refuses_a_bad_currency_or_test_endpoints),
        T(test_sandbox_warns_at_every_start),
        T(test_reserved_settings_name_and_public_url),
        T(test_reserved_public_url_is_unset_without_one),
        T(test_older_plugins_serve_no_pages),
        T(test_host_checks_a_plugins_page),
        T(test_host_checks_a_plugins_event),
        T(test_checkout_url_carries_a_signed_token),
        T(test_checkout_refusals),
        T(test_checkout_page_shows_the_order_escaped),
        T(test_amounts_are_shown_from_micro_units),
        T(test_tampered_token_is_a_400_page),
        T(test_token_of_another_secret_or_expired_is_a_400_page),
        T(test_wrong_methods_and_unknown_pages),
        T(test_pay_posts_a_signed_paid_event_that_verifies),
        T(test_decline_posts_a_failed_event),
        T(test_refused_webhook_shows_on_the_page),
        T(test_refund_posts_a_refunded_event),
        T(test_webhook_signature_over_the_exact_body),
        T(test_webhook_timestamp_tolerance_is_300_s),
        T(test_webhook_accepts_any_of_several_v1),
        T(test_webhook_malformed_headers_are_refused),
        T(test_verified_event_of_another_type_is_ignored),
        T(test_test_endpoint_only_with_test_endpoints_yes),
        T(test_test_endpoint_creates_a_checkout),
        T(test_event_is_recorded_once_per_plugin_and_id),
        T(test_unusable_event_is_refused_and_not_recorded),
    };
    int failed;

    apr_initialize();
    signal(SIGPIPE, SIG_IGN);
    if (sodium_init() < 0 || dm_fx_init("payments") != 0) {
        return 1;
    }
    dm_log_set_sink(capture_sink, NULL);
    failed = cmocka_run_group_tests_name("payment_sandbox", tests, group_setup, group_teardown);
    if (dm_fx_done() != 0) {
        failed = 1;
    }
    apr_terminate();
    return failed ? 1 : 0;
}
