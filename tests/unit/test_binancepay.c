/*
 * payment-binancepay through the real plugin host, against a small canned
 * Binance Pay on a thread: the request signature (HMAC-SHA512, upper-case
 * hex of "ts\nnonce\nbody\n") recomputed here with libsodium and anchored
 * to a vector computed with Python's hmac; a webhook signed with `openssl
 * dgst -sha256 -sign` verified against the certificate the certificates
 * endpoint lists, and refused when a byte changes; the double-encoded data
 * read exactly (10.88 → 10880000 micro-units, never through a double); the
 * query's statuses; the refund's body and refundRequestId.
 *
 * Needs $DM_PLUGINS (payment-binancepay.so).
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

#include "plugins/plugin_host.h"

#define API_KEY "bpUnitApiKey"
#define HMAC_KEY_V "bpTestSecret-0123456789"
#define NONCE_V "abcdefghijklmnopqrstuvwxyzABCDEF"
#define SERIAL "0f1e2d3c4b5a69788796a5b4c3d2e1f0"

/* Computed with Python's hmac: key HMAC_KEY_V, message
 * "1700000000000\n" NONCE_V "\n{\"prepayId\":\"123\"}\n". */
#define HMAC_VECTOR                                                                                \
    "1615129281A795DD68C944FE0455F85887D6720319F7ADC5B900EE2EA398708CB00B75D2BBDC48D8CDC46E624C4A" \
    "CFE3AAA0659B2457AF18463FA551E18C4303"
/* A PAY_SUCCESS notification signed with `openssl dgst -sha256 -sign` (the key
 * made by `openssl genpkey`; WH_PEM is its public half). */
#define WH_BODY                                                                                    \
    "{\"bizType\":\"PAY\",\"bizId\":29383937493038367,\"bizIdStr\":\"29383937493038367\","         \
    "\"bizStatus\":\"PAY_SUCCESS\",\"data\":\"{\\\"merchantTradeNo\\\":\\\"42\\\","                \
    "\\\"productType\\\":\\\"Goods\\\",\\\"productName\\\":\\\"Order "                             \
    "42\\\",\\\"transactTime\\\":1700000000000,\\\"tradeType\\\":\\\"WEB\\\",\\\"totalFee\\\":10." \
    "88,\\\"currency\\\":\\\"USDT\\\",\\\"openUserId\\\":\\\"1f2e\\\",\\\"passThroughInfo\\\":"    \
    "\\\"42\\\"}\"}"
#define WH_TS "1700000000123"
#define WH_NONCE "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvu"
#define WH_SIG                                                                                     \
    "pKLyqNr1lN8Fe7kBItxouoZeeo62JXsjK1eyuQSGQPPaMy+coasobBYTi1tWMZ51tmnknJQ0S7wbFDb/"             \
    "FjYcSGmSez1OwbUJJWUB5wP6Y8KgnHnx0doK28+YlfFaGMiw4z/pUozoR0fug4/FI4UbAEQqWNhlB/"               \
    "xw20UmaInrd4wDrUJ7FrA4TTmXv8sSEEFUl8IjmT6IZG9NK71wMqmMn+Q4bB83K+"                             \
    "rNXWK9Q7XeUT9HVZ3r39uS4d6cdj8hLXTBbUzQdhy02oTofJ1LLUis+"                                      \
    "LNO7Ngn7SY2LWYiLL9NAr7ok4h7mcgvRQzClED3r8mHeqkCadv13wUEMgfVw+yWvQ=="
#define WH_PEM                                                                                     \
    "-----BEGIN PUBLIC KEY-----\n"                                                                 \
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwBh5cUyifouoNqfbfUOy\n"                           \
    "AgLkUTv4yFi+KftMw8aR4Ifnyni+vFjc2I5mdUzzEb946yoQpttP03j4wJRcN+x7\n"                           \
    "6hNoeXvbHxVSiOHq11uV4EhD+va5prLMIr0vkBSLC8xR4GNJuQNxRKcI02KZ5/Ga\n"                           \
    "jbmt2lK7o2Z3Q/Q9G2p1l49KTFNcuGdCqJ+IsVvqfofUkppYvtceKD08+VSDjh66\n"                           \
    "yy4aPPT454Fs8JzMy8IKmjQbgMnwabpZ6ga5wrAd9ku8sWyNnI0LuYS+X3qmys/1\n"                           \
    "yZ6y8enYTPxtSIbDj8LYoqn2URL1pogvE+VflqSz32QBL46t26uMiqo9hYJ3nsmy\n"                           \
    "5wIDAQAB\n"                                                                                   \
    "-----END PUBLIC KEY-----\n"

static apr_pool_t *pool;
static dm_plugin_host *host;

/* ---- a canned Binance Pay: one request per connection, the last kept ---- */

static int srv_fd = -1;
static int srv_port;
static pthread_t srv_thread;
static pthread_mutex_t srv_lock = PTHREAD_MUTEX_INITIALIZER;
static char got_path[256], got_ts[64], got_nonce[128], got_sn[128], got_sig[256], got_type[128];
static char got_body[8192];
static int cert_calls;
static const char *ans_order, *ans_query, *ans_refund, *ans_certs;

static const char *header_of(const char *req, const char *name, char *val, size_t n)
{
    char pat[64];
    const char *p, *e;
    snprintf(pat, sizeof(pat), "\r\n%s: ", name);
    p = strcasestr(req, pat);
    if (!p) {
        val[0] = '\0';
        return val;
    }
    p += strlen(pat);
    e = strstr(p, "\r\n");
    snprintf(val, n, "%.*s", (int)(e - p), p);
    return val;
}

static void *serve(void *arg)
{
    static char req[65536];
    (void)arg;
    for (;;) {
        int c = accept(srv_fd, NULL, NULL);
        size_t got = 0, clen = 0, hlen = 0;
        char *end = NULL, head[256], cl[32], path[256];
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
                clen = (size_t)atol(header_of(req, "Content-Length", cl, sizeof(cl)));
                if (got >= hlen + clen) {
                    break;
                }
            }
        }
        req[got] = '\0';
        pthread_mutex_lock(&srv_lock);
        sscanf(req, "POST %255s", path);
        snprintf(got_path, sizeof(got_path), "%s", path);
        header_of(req, "BinancePay-Timestamp", got_ts, sizeof(got_ts));
        header_of(req, "BinancePay-Nonce", got_nonce, sizeof(got_nonce));
        header_of(req, "BinancePay-Certificate-SN", got_sn, sizeof(got_sn));
        header_of(req, "BinancePay-Signature", got_sig, sizeof(got_sig));
        header_of(req, "Content-Type", got_type, sizeof(got_type));
        snprintf(got_body, sizeof(got_body), "%.*s", (int)clen, end ? end + 4 : "");
        if (strstr(path, "/certificates")) {
            cert_calls++;
            body = ans_certs;
        } else if (strstr(path, "/v3/order")) {
            body = ans_order;
        } else if (strstr(path, "/order/query")) {
            body = ans_query;
        } else {
            body = ans_refund;
        }
        body = body ? body : "{\"status\":\"FAIL\",\"code\":\"404\",\"errorMessage\":\"none\"}";
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     strlen(body));
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

/* {"status":"SUCCESS",…,"data":[{certSerial, certPublic}]} with the PEM's
 * newlines escaped. */
static const char *certs_answer(const char *serial, const char *pem)
{
    char *esc = apr_palloc(pool, 2 * strlen(pem) + 1), *w = esc;
    for (const char *p = pem; *p; p++) {
        if (*p == '\n') {
            *w++ = '\\';
            *w++ = 'n';
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    return apr_psprintf(pool,
                        "{\"status\":\"SUCCESS\",\"code\":\"000000\",\"data\":[{\"certSerial\":"
                        "\"%s\",\"certPublic\":\"%s\"}],\"errorMessage\":\"\"}",
                        serial, esc);
}

static int setup(void **state)
{
    (void)state;
    cert_calls = 0;
    ans_order = ans_query = ans_refund = NULL;
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    ans_certs = certs_answer(SERIAL, WH_PEM);
    assert_null(dm_plugins_create(pool, &host));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool);
    return 0;
}

/* "binancepay" declared against the canned server; tolerance "0" lets the
 * fixed vectors (signed in 2023) verify. */
static const dm_loaded_plugin *plugin(const char *tolerance)
{
    const char *dir = getenv("DM_PLUGINS");
    assert_non_null(dir);
    assert_null(dm_plugins_declare(host, "payment", "binancepay",
                                   apr_psprintf(pool, "%s/payment-binancepay.so", dir)));
    assert_null(dm_plugins_set(host, "binancepay", "api_key", API_KEY));
    assert_null(dm_plugins_set(host, "binancepay", "secret_key", HMAC_KEY_V));
    assert_null(dm_plugins_set(host, "binancepay", "api_url",
                               apr_psprintf(pool, "http://127.0.0.1:%d", srv_port)));
    assert_null(dm_plugins_set(host, "binancepay", "cert_refresh_min_s", "0"));
    if (tolerance) {
        assert_null(dm_plugins_set(host, "binancepay", "webhook_tolerance_s", tolerance));
    }
    assert_null(dm_plugins_init_all(host));
    return dm_plugins_get(host, "binancepay");
}

static const dm_payment_ops *ops_of(const dm_loaded_plugin *pl)
{
    return pl->desc->ops;
}

static dm_str S(const char *s)
{
    dm_str out = {s, strlen(s)};
    return out;
}

static const char *str(dm_str s)
{
    return s.ptr ? apr_pstrndup(pool, s.ptr, s.len) : "(null)";
}

/* The test's own signature: UPPER(hex(HMAC-SHA512(key, ts\nnonce\nbody\n))). */
static const char *hmac_upper(const char *key, const char *ts, const char *nonce, const char *body)
{
    const char *msg = apr_psprintf(pool, "%s\n%s\n%s\n", ts, nonce, body);
    unsigned char mac[crypto_auth_hmacsha512_BYTES];
    crypto_auth_hmacsha512_state st;
    char *hex = apr_palloc(pool, 2 * sizeof(mac) + 1);

    crypto_auth_hmacsha512_init(&st, (const unsigned char *)key, strlen(key));
    crypto_auth_hmacsha512_update(&st, (const unsigned char *)msg, strlen(msg));
    crypto_auth_hmacsha512_final(&st, mac);
    sodium_bin2hex(hex, 2 * sizeof(mac) + 1, mac, sizeof(mac));
    for (char *p = hex; *p; p++) {
        if (*p >= 'a' && *p <= 'f') {
            *p = (char)(*p - 'a' + 'A');
        }
    }
    return hex;
}

static void assert_signed_request(const char *path)
{
    long long ts = atoll(got_ts), now = (long long)time(NULL) * 1000;
    assert_string_equal(got_path, path);
    assert_string_equal(got_type, "application/json");
    assert_string_equal(got_sn, API_KEY);
    assert_int_equal(strlen(got_ts), 13);
    assert_true(ts > now - 60000 && ts < now + 60000);
    assert_int_equal(strlen(got_nonce), 32);
    for (const char *p = got_nonce; *p; p++) {
        assert_true((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'));
    }
    assert_string_equal(got_sig, hmac_upper(HMAC_KEY_V, got_ts, got_nonce, got_body));
}

/* ---- request signing ---- */

static void test_hmac_helper_matches_the_python_vector(void **state)
{
    (void)state;
    assert_string_equal(hmac_upper(HMAC_KEY_V, "1700000000000", NONCE_V, "{\"prepayId\":\"123\"}"),
                        HMAC_VECTOR);
}

static void test_create_order_v3_is_signed_over_the_exact_body(void **state)
{
    const dm_loaded_plugin *pl;
    dm_payment_checkout in = {.size = sizeof(in)};
    dm_payment_checkout_result out = {.size = sizeof(out)};
    dm_message msg = {{0}};
    (void)state;
    pl = plugin(NULL);
    ans_order = "{\"status\":\"SUCCESS\",\"code\":\"000000\",\"data\":{\"prepayId\":"
                "\"29383937493038367\",\"terminalType\":\"WEB\",\"expireTime\":1,\"checkoutUrl\":"
                "\"https://pay.binance.com/en/checkout/abc\",\"universalUrl\":"
                "\"https://app.binance.com/payment/x\"},\"errorMessage\":\"\"}";
    in.order_id = S("42");
    in.amount_micros = 12500000;
    in.currency = S("USD");
    in.success_url = S("https://shop.example/orders/42");
    assert_int_equal(ops_of(pl)->create_checkout(dm_plugins_call(host, pl, pool), &in, &out, &msg),
                     DM_OK);
    assert_string_equal(str(out.provider_ref), "29383937493038367");
    assert_string_equal(str(out.redirect_url), "https://pay.binance.com/en/checkout/abc");
    assert_signed_request("/binancepay/openapi/v3/order");
    assert_string_equal(
        got_body, "{\"env\":{\"terminalType\":\"WEB\"},\"merchantTradeNo\":\"42\",\"orderAmount\":"
                  "12.50,\"currency\":\"USDT\",\"description\":\"Order 42\",\"goodsDetails\":[{"
                  "\"goodsType\":\"02\",\"goodsCategory\":\"Z000\",\"referenceGoodsId\":\"42\","
                  "\"goodsName\":\"Order 42\"}],\"passThroughInfo\":\"42\",\"returnUrl\":"
                  "\"https://shop.example/orders/42\"}");
}

static void test_create_order_refusals(void **state)
{
    const dm_loaded_plugin *pl;
    dm_payment_checkout in = {.size = sizeof(in)};
    dm_payment_checkout_result out = {.size = sizeof(out)};
    dm_message msg = {{0}};
    (void)state;
    pl = plugin(NULL);
    in.order_id = S("4-2");
    in.amount_micros = 1000000;
    in.currency = S("USD");
    assert_int_equal(ops_of(pl)->create_checkout(dm_plugins_call(host, pl, pool), &in, &out, &msg),
                     DM_ERR_INVALID);
    in.order_id = S("42");
    in.currency = S("EUR");
    assert_int_equal(ops_of(pl)->create_checkout(dm_plugins_call(host, pl, pool), &in, &out, &msg),
                     DM_ERR_PERMANENT);
    in.currency = S("USD");
    ans_order = "{\"status\":\"FAIL\",\"code\":\"400002\",\"errorMessage\":\"Signature for this "
                "request is not valid.\"}";
    assert_int_equal(ops_of(pl)->create_checkout(dm_plugins_call(host, pl, pool), &in, &out, &msg),
                     DM_ERR_PERMANENT);
    assert_non_null(strstr(msg.text, "400002"));
    assert_non_null(strstr(msg.text, "check api_key and secret_key"));
    assert_null(strstr(msg.text, HMAC_KEY_V));
    ans_order = "<html>bad gateway</html>";
    assert_int_equal(ops_of(pl)->create_checkout(dm_plugins_call(host, pl, pool), &in, &out, &msg),
                     DM_ERR_TEMPORARY);
}

/* ---- webhooks ---- */

static dm_status webhook(const dm_loaded_plugin *pl, const char *body, const char *ts,
                         const char *serial, const char *sig, dm_payment_event *ev, dm_message *msg)
{
    dm_header hs[5] = {{S("Content-Type"), S("application/json")},
                       {S("BinancePay-Timestamp"), S(ts)},
                       {S("BinancePay-Nonce"), S(WH_NONCE)},
                       {S("BinancePay-Certificate-SN"), S(serial)},
                       {S("BinancePay-Signature"), S(sig)}};
    memset(ev, 0, sizeof(*ev));
    ev->size = sizeof(*ev);
    memset(msg, 0, sizeof(*msg));
    return ops_of(pl)->parse_webhook(dm_plugins_call(host, pl, pool), S(body), hs, 5, ev, msg);
}

static void test_openssl_signed_webhook_verifies_and_reads_the_double_encoded_data(void **state)
{
    const dm_loaded_plugin *pl;
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    pl = plugin("0");
    assert_int_equal(webhook(pl, WH_BODY, WH_TS, SERIAL, WH_SIG, &ev, &msg), DM_OK);
    assert_int_equal(cert_calls, 1);
    assert_string_equal(got_body, "{}");
    assert_signed_request("/binancepay/openapi/certificates");
    assert_int_equal(ev.status, DM_PAY_PAID);
    assert_string_equal(str(ev.event_id), "PAY:29383937493038367:PAY_SUCCESS");
    assert_string_equal(str(ev.provider_ref), "29383937493038367");
    assert_string_equal(str(ev.payment_id), "29383937493038367");
    assert_string_equal(str(ev.order_id), "42");
    assert_int_equal(ev.amount_micros, 10880000);
    assert_string_equal(str(ev.currency), "USD");
    /* cached by serial: no second fetch */
    assert_int_equal(webhook(pl, WH_BODY, WH_TS, SERIAL, WH_SIG, &ev, &msg), DM_OK);
    assert_int_equal(cert_calls, 1);
}

static void test_tampered_unknown_or_stale_webhooks_are_refused(void **state)
{
    const dm_loaded_plugin *pl;
    dm_payment_event ev;
    dm_message msg;
    char *body = apr_pstrdup(pool, WH_BODY), *fee = strstr(body, "10.88");
    char *sig = apr_pstrdup(pool, WH_SIG);
    (void)state;
    pl = plugin("0");
    fee[0] = '9'; /* 90.88 */
    assert_int_equal(webhook(pl, body, WH_TS, SERIAL, WH_SIG, &ev, &msg), DM_ERR_INVALID);
    assert_non_null(strstr(msg.text, "does not match"));
    assert_int_equal(webhook(pl, WH_BODY, "1700000000124", SERIAL, WH_SIG, &ev, &msg),
                     DM_ERR_INVALID);
    sig[10] = sig[10] == 'A' ? 'B' : 'A';
    assert_int_equal(webhook(pl, WH_BODY, WH_TS, SERIAL, sig, &ev, &msg), DM_ERR_INVALID);
    assert_int_equal(webhook(pl, WH_BODY, WH_TS, "ffff0000", WH_SIG, &ev, &msg), DM_ERR_INVALID);
    assert_non_null(strstr(msg.text, "does not list"));
    assert_int_equal(webhook(pl, WH_BODY, WH_TS, SERIAL, "", &ev, &msg), DM_ERR_INVALID);
    teardown(NULL);
    setup(NULL);
    pl = plugin(NULL); /* the default 300 s: a 2023 timestamp is stale */
    assert_int_equal(webhook(pl, WH_BODY, WH_TS, SERIAL, WH_SIG, &ev, &msg), DM_ERR_INVALID);
    assert_non_null(strstr(msg.text, "s old"));
}

/* ---- query ---- */

static dm_status query(const dm_loaded_plugin *pl, const char *status, const char *amount,
                       const char *currency, dm_payment_event *ev)
{
    dm_message msg = {{0}};
    ans_query = apr_psprintf(pool,
                             "{\"status\":\"SUCCESS\",\"code\":\"000000\",\"data\":{\"merchantId\":"
                             "987321472,\"prepayId\":\"29383937493038367\",\"merchantTradeNo\":"
                             "\"42\",\"status\":\"%s\",\"currency\":\"%s\",\"orderAmount\":\"%s\","
                             "\"passThroughInfo\":\"42\",\"createTime\":1700000000000},"
                             "\"errorMessage\":\"\"}",
                             status, currency, amount);
    memset(ev, 0, sizeof(*ev));
    ev->size = sizeof(*ev);
    return ops_of(pl)->query(dm_plugins_call(host, pl, pool), S("29383937493038367"), ev, &msg);
}

static void test_query_maps_binance_statuses(void **state)
{
    const dm_loaded_plugin *pl;
    dm_payment_event ev;
    (void)state;
    pl = plugin(NULL);
    assert_int_equal(query(pl, "PAID", "10.88000000", "USDT", &ev), DM_OK);
    assert_signed_request("/binancepay/openapi/v2/order/query");
    assert_string_equal(got_body, "{\"prepayId\":\"29383937493038367\"}");
    assert_int_equal(ev.status, DM_PAY_PAID);
    assert_int_equal(ev.amount_micros, 10880000);
    assert_string_equal(str(ev.currency), "USD");
    assert_string_equal(str(ev.order_id), "42");
    assert_string_equal(str(ev.payment_id), "29383937493038367");
    assert_int_equal(query(pl, "INITIAL", "10.88", "USDT", &ev), DM_OK);
    assert_int_equal(ev.status, DM_PAY_PENDING);
    assert_int_equal(query(pl, "PENDING", "10.88", "USDT", &ev), DM_OK);
    assert_int_equal(ev.status, DM_PAY_PENDING);
    assert_int_equal(query(pl, "EXPIRED", "10.88", "USDT", &ev), DM_OK);
    assert_int_equal(ev.status, DM_PAY_EXPIRED);
    assert_int_equal(query(pl, "CANCELED", "10.88", "USDT", &ev), DM_OK);
    assert_int_equal(ev.status, DM_PAY_EXPIRED);
    assert_int_equal(query(pl, "ERROR", "10.88", "USDT", &ev), DM_OK);
    assert_int_equal(ev.status, DM_PAY_FAILED);
    assert_int_equal(query(pl, "FULL_REFUNDED", "10.88", "USDT", &ev), DM_OK);
    assert_int_equal(ev.status, DM_PAY_NEEDS_REVIEW);
    assert_int_equal(ev.review_reason, DM_REVIEW_OTHER);
    assert_int_equal(query(pl, "WHATEVER", "10.88", "USDT", &ev), DM_ERR_TEMPORARY);
}

static void test_amounts_that_are_not_micro_units_or_usd_need_review(void **state)
{
    const dm_loaded_plugin *pl;
    dm_payment_event ev;
    (void)state;
    pl = plugin(NULL);
    /* an 8th decimal: never rounded */
    assert_int_equal(query(pl, "PAID", "10.00000001", "USDT", &ev), DM_OK);
    assert_int_equal(ev.status, DM_PAY_NEEDS_REVIEW);
    assert_int_equal(ev.review_reason, DM_REVIEW_OTHER);
    assert_int_equal(ev.currency.len, 0);
    assert_non_null(strstr(str(ev.detail), "10.00000001 USDT"));
    assert_int_equal(query(pl, "PAID", "10.88", "BNB", &ev), DM_OK);
    assert_int_equal(ev.status, DM_PAY_NEEDS_REVIEW);
    assert_int_equal(ev.review_reason, DM_REVIEW_UNKNOWN_CURRENCY);
    assert_int_equal(ev.amount_micros, 10880000);
    assert_int_equal(query(pl, "PAID", "1e3", "USDT", &ev), DM_OK);
    assert_int_equal(ev.status, DM_PAY_NEEDS_REVIEW);
    assert_int_equal(query(pl, "PAID", "0.000001", "USDT", &ev), DM_OK);
    assert_int_equal(ev.status, DM_PAY_PAID);
    assert_int_equal(ev.amount_micros, 1);
}

/* ---- refunds ---- */

static void test_refund_ex_sends_the_key_as_refund_request_id(void **state)
{
    const dm_loaded_plugin *pl;
    dm_payment_refund_request r = {.size = sizeof(r)};
    dm_str rid = {NULL, 0};
    dm_message msg = {{0}};
    unsigned char d[32];
    char hex[65];
    (void)state;
    pl = plugin(NULL);
    ans_refund = "{\"status\":\"SUCCESS\",\"code\":\"000000\",\"data\":{\"refundId\":"
                 "\"68711039982968832\",\"refundRequestId\":\"x\",\"duplicateRequest\":\"N\"},"
                 "\"errorMessage\":\"\"}";
    r.provider_ref = S("29383937493038367");
    r.amount_micros = 2500000;
    r.currency = S("USD");
    r.idempotency_key = S("refund7a");
    r.reason = S("asked \"nicely\"");
    assert_int_equal(ops_of(pl)->refund_ex(dm_plugins_call(host, pl, pool), &r, &rid, &msg), DM_OK);
    assert_signed_request("/binancepay/openapi/order/refund");
    assert_string_equal(got_body,
                        "{\"refundRequestId\":\"refund7a\",\"prepayId\":\"29383937493038367\","
                        "\"refundAmount\":2.50,\"refundReason\":\"asked \\\"nicely\\\"\"}");
    assert_string_equal(str(rid), "68711039982968832");
    /* a key Binance may not take as is: the hex of its SHA-256 */
    r.idempotency_key = S("order:7:refund:1");
    r.reason = S("");
    assert_int_equal(ops_of(pl)->refund_ex(dm_plugins_call(host, pl, pool), &r, &rid, &msg), DM_OK);
    crypto_hash_sha256(d, (const unsigned char *)"order:7:refund:1", 16);
    sodium_bin2hex(hex, sizeof(hex), d, sizeof(d));
    assert_string_equal(got_body, apr_psprintf(pool,
                                               "{\"refundRequestId\":\"%s\",\"prepayId\":"
                                               "\"29383937493038367\",\"refundAmount\":2.50}",
                                               hex));
    r.currency = S("EUR");
    assert_int_equal(ops_of(pl)->refund_ex(dm_plugins_call(host, pl, pool), &r, &rid, &msg),
                     DM_ERR_INVALID);
}

static void test_settings_are_checked(void **state)
{
    const char *dir = getenv("DM_PLUGINS");
    dm_err *e;
    (void)state;
    assert_null(dm_plugins_declare(host, "payment", "bp",
                                   apr_psprintf(pool, "%s/payment-binancepay.so", dir)));
    assert_null(dm_plugins_set(host, "bp", "api_key", API_KEY));
    assert_null(dm_plugins_set(host, "bp", "secret_key", HMAC_KEY_V));
    assert_null(dm_plugins_set(host, "bp", "api_url", "http://pay.example"));
    e = dm_plugins_init_all(host);
    assert_non_null(e);
    assert_non_null(strstr(e->message, "api_url must start with https://"));
    assert_null(strstr(e->message, HMAC_KEY_V));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_hmac_helper_matches_the_python_vector),
        T(test_create_order_v3_is_signed_over_the_exact_body),
        T(test_create_order_refusals),
        T(test_openssl_signed_webhook_verifies_and_reads_the_double_encoded_data),
        T(test_tampered_unknown_or_stale_webhooks_are_refused),
        T(test_query_maps_binance_statuses),
        T(test_amounts_that_are_not_micro_units_or_usd_need_review),
        T(test_refund_ex_sends_the_key_as_refund_request_id),
        T(test_settings_are_checked),
    };
    int failed;

    apr_initialize();
    signal(SIGPIPE, SIG_IGN);
    if (sodium_init() < 0) {
        return 1;
    }
    failed = cmocka_run_group_tests_name("binancepay", tests, group_setup, group_teardown);
    apr_terminate();
    return failed ? 1 : 0;
}
