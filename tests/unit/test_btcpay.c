/*
 * The BTCPay payment plugin through the real plugin host: its BTCPay-Sig
 * check against HMAC-SHA-256 vectors computed with Python's hmac (not with
 * the library the plugin uses), and its mapping of webhooks and invoices to
 * events (paid, over, late, partial, pending, expired, failed, redelivery)
 * against a canned BTCPay invoice served from a thread. The plugin's
 * functions are called directly, so the ABI 1.4 statuses are checked here
 * whatever the host passes on.
 *
 * Needs $DM_PLUGINS (payment-btcpay.so).
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
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "plugins/plugin_host.h"

#define SECRET "test-webhook-secret-0123456789ab"
#define STORE "store1"
#define KEY "api-key-0123456789"

static apr_pool_t *pool;
static dm_plugin_host *host;

/* ---- a canned BTCPay: every request gets `canned` (status 200) ---- */

static int srv_fd = -1, srv_port;
static pthread_t srv_thread;
static pthread_mutex_t srv_lock = PTHREAD_MUTEX_INITIALIZER;
static char canned[4096];
static char got_line[512], got_auth[256];

static void *serve(void *arg)
{
    static char req[65536];
    (void)arg;
    for (;;) {
        int c = accept(srv_fd, NULL, NULL);
        size_t got = 0;
        char head[256];
        const char *a;
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
            if (strstr(req, "\r\n\r\n")) {
                break; /* the plugin's GETs have no body */
            }
        }
        req[got] = '\0';
        pthread_mutex_lock(&srv_lock);
        snprintf(got_line, sizeof(got_line), "%.*s", (int)strcspn(req, "\r"), req);
        a = strcasestr(req, "\r\nAuthorization: ");
        snprintf(got_auth, sizeof(got_auth), "%.*s", a ? (int)strcspn(a + 17, "\r") : 0,
                 a ? a + 17 : "");
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     strlen(canned));
        send(c, head, (size_t)n, MSG_NOSIGNAL);
        send(c, canned, strlen(canned), MSG_NOSIGNAL);
        pthread_mutex_unlock(&srv_lock);
        close(c);
    }
}

static void invoice(const char *status, const char *additional, const char *amount)
{
    pthread_mutex_lock(&srv_lock);
    snprintf(canned, sizeof(canned),
             "{\"id\":\"inv1\",\"storeId\":\"" STORE "\",\"amount\":\"%s\",\"currency\":\"USD\","
             "\"checkoutLink\":\"https://btcpay.example/i/inv1\",\"status\":\"%s\","
             "\"additionalStatus\":\"%s\",\"metadata\":{\"orderId\":\"42\"}}",
             amount, status, additional);
    pthread_mutex_unlock(&srv_lock);
}

static int group_setup(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof(a);
    (void)state;
    if (sodium_init() < 0) {
        return -1;
    }
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

static int setup(void **state)
{
    const char *dir = getenv("DM_PLUGINS");
    (void)state;
    if (!dir) {
        fail_msg("DM_PLUGINS is not set: point it at the built plugins");
    }
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    assert_null(dm_plugins_create(pool, &host));
    assert_null(dm_plugins_declare(host, "payment", "btcpay",
                                   apr_psprintf(pool, "%s/payment-btcpay.so", dir)));
    assert_null(dm_plugins_set(host, "btcpay", "server_url",
                               apr_psprintf(pool, "http://127.0.0.1:%d/", srv_port)));
    assert_null(dm_plugins_set(host, "btcpay", "store_id", STORE));
    assert_null(dm_plugins_set(host, "btcpay", "api_key", KEY));
    assert_null(dm_plugins_set(host, "btcpay", "webhook_secret", SECRET));
    assert_null(dm_plugins_init_all(host));
    invoice("Settled", "None", "12.50");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool);
    return 0;
}

static const dm_loaded_plugin *plugin(void)
{
    return dm_plugins_get(host, "btcpay");
}

static const dm_payment_ops *ops(void)
{
    return plugin()->desc->ops;
}

static const char *str(dm_str s)
{
    return s.ptr ? apr_pstrmemdup(pool, s.ptr, s.len) : "";
}

/* parse_webhook of body with the BTCPay-Sig value sig (NULL: computed). */
static dm_status parse(const char *body, const char *sig, dm_payment_event *ev, dm_message *msg)
{
    dm_header h[2];
    dm_str raw = {body, strlen(body)};

    if (!sig) {
        unsigned char mac[32];
        char hex[65];
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, (const unsigned char *)SECRET, strlen(SECRET));
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, strlen(body));
        crypto_auth_hmacsha256_final(&st, mac);
        sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
        sig = apr_pstrcat(pool, "sha256=", hex, NULL);
    }
    h[0].name.ptr = "Content-Type";
    h[0].name.len = 12;
    h[0].value.ptr = "application/json";
    h[0].value.len = 16;
    h[1].name.ptr = "btcpay-sig";
    h[1].name.len = 10;
    h[1].value.ptr = sig;
    h[1].value.len = strlen(sig);
    memset(ev, 0, sizeof(*ev));
    memset(msg, 0, sizeof(*msg));
    ev->size = sizeof(*ev);
    return ops()->parse_webhook(dm_plugins_call(host, plugin(), pool), raw, h, 2, ev, msg);
}

/* A webhook body of `type` for inv1 with extra JSON members (may be ""). */
static const char *event(const char *type, const char *extra)
{
    return apr_psprintf(pool,
                        "{\"deliveryId\":\"dlv1\",\"webhookId\":\"wh1\",\"originalDeliveryId\":"
                        "\"dlv1\",\"isRedelivery\":false,\"type\":\"%s\",\"storeId\":\"" STORE
                        "\",\"invoiceId\":\"inv1\"%s%s}",
                        type, *extra ? "," : "", extra);
}

/* ---- the signature, against vectors computed with Python's hmac ---- */

/* hmac.new(b"test-webhook-secret-0123456789ab", BODY, sha256).hexdigest() */
#define VECTOR_BODY                                                                                \
    "{\"deliveryId\":\"dlv1\",\"webhookId\":\"wh1\",\"originalDeliveryId\":\"dlv1\","              \
    "\"isRedelivery\":false,\"type\":\"InvoiceSettled\",\"storeId\":\"store1\",\"invoiceId\":"     \
    "\"inv1\",\"manuallyMarked\":false,\"overPaid\":false}"
#define VECTOR_SIG "sha256=0f4be493993a5a9d07f5c8dfb6792e7c8a5c16b58a255c36343c7b04ac7e766c"

static void test_signature_matches_the_python_vector(void **state)
{
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    assert_int_equal(parse(VECTOR_BODY, VECTOR_SIG, &ev, &msg), DM_OK);
    assert_int_equal(ev.status, DM_PAY_PAID);
    /* BTCPay writes lower case; upper-case hex and prefix are the same MAC */
    assert_int_equal(
        parse(VECTOR_BODY,
              "SHA256=0F4BE493993A5A9D07F5C8DFB6792E7C8A5C16B58A255C36343C7B04AC7E766C", &ev, &msg),
        DM_OK);
}

static void test_signature_refusals(void **state)
{
    static const char *const bad[] = {
        "",
        "sha256=",
        "sha1=0f4be493993a5a9d07f5c8dfb6792e7c8a5c16b58a255c36343c7b04ac7e766c",
        "sha256=0f4be493993a5a9d07f5c8dfb6792e7c8a5c16b58a255c36343c7b04ac7e766d",
        "sha256=0f4be493993a5a9d07f5c8dfb6792e7c8a5c16b58a255c36343c7b04ac7e766",
        "sha256=0f4be493993a5a9d07f5c8dfb6792e7c8a5c16b58a255c36343c7b04ac7e766cc",
        "sha256=zf4be493993a5a9d07f5c8dfb6792e7c8a5c16b58a255c36343c7b04ac7e766c",
        /* HMAC of the empty body (Python), not of this one */
        "sha256=d5e4b7be34a6da9443c9e1a9934e23350f7d2656347721dcb020ed6cf8688be2",
    };
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(VECTOR_BODY, bad[i], &ev, &msg), DM_ERR_INVALID);
        assert_true(msg.text[0] != '\0');
    }
    /* one byte of the body changed */
    assert_int_equal(parse(VECTOR_BODY " ", VECTOR_SIG, &ev, &msg), DM_ERR_INVALID);
}

static void test_empty_body_signature_is_the_python_vector(void **state)
{
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    /* verified, then refused as no event */
    assert_int_equal(
        parse("", "sha256=d5e4b7be34a6da9443c9e1a9934e23350f7d2656347721dcb020ed6cf8688be2", &ev,
              &msg),
        DM_ERR_INVALID);
    assert_non_null(strstr(msg.text, "no type or deliveryId"));
}

/* ---- the mapping ---- */

static void test_settled_is_paid_with_the_invoice_amount_and_order(void **state)
{
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    assert_int_equal(parse(event("InvoiceSettled", "\"overPaid\":false"), NULL, &ev, &msg), DM_OK);
    assert_int_equal(ev.status, DM_PAY_PAID);
    assert_string_equal(str(ev.event_id), "dlv1");
    assert_string_equal(str(ev.provider_ref), "inv1");
    assert_string_equal(str(ev.payment_id), "inv1");
    assert_string_equal(str(ev.order_id), "42");
    assert_int_equal(ev.amount_micros, 12500000);
    assert_string_equal(str(ev.currency), "USD");
    /* it read the invoice, with the key as a token */
    assert_string_equal(got_line, "GET /api/v1/stores/" STORE "/invoices/inv1 HTTP/1.1");
    assert_string_equal(got_auth, "token " KEY);
}

static void test_redelivery_is_named_by_its_original_delivery(void **state)
{
    dm_payment_event ev;
    dm_message msg;
    const char *body =
        "{\"deliveryId\":\"dlv9\",\"webhookId\":\"wh1\",\"originalDeliveryId\":\"dlv1\","
        "\"isRedelivery\":true,\"type\":\"InvoiceSettled\",\"storeId\":\"" STORE "\","
        "\"invoiceId\":\"inv1\"}";
    (void)state;
    assert_int_equal(parse(body, NULL, &ev, &msg), DM_OK);
    assert_string_equal(str(ev.event_id), "dlv1");
    body = "{\"deliveryId\":\"dlv9\",\"isRedelivery\":true,\"type\":\"InvoiceSettled\","
           "\"storeId\":\"" STORE "\",\"invoiceId\":\"inv1\"}";
    assert_int_equal(parse(body, NULL, &ev, &msg), DM_ERR_INVALID);
}

static void test_over_late_and_partial_settlements_need_review(void **state)
{
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    assert_int_equal(parse(event("InvoiceSettled", "\"overPaid\":true"), NULL, &ev, &msg), DM_OK);
    assert_int_equal(ev.status, DM_PAY_NEEDS_REVIEW);
    assert_int_equal(ev.review_reason, DM_REVIEW_OVERPAID);
    assert_string_equal(str(ev.payment_id), "inv1");
    invoice("Settled", "PaidOver", "12.50");
    assert_int_equal(parse(event("InvoiceSettled", ""), NULL, &ev, &msg), DM_OK);
    assert_int_equal(ev.review_reason, DM_REVIEW_OVERPAID);
    invoice("Settled", "PaidLate", "12.50");
    assert_int_equal(parse(event("InvoiceSettled", ""), NULL, &ev, &msg), DM_OK);
    assert_int_equal(ev.status, DM_PAY_NEEDS_REVIEW);
    assert_int_equal(ev.review_reason, DM_REVIEW_PAID_AFTER_EXPIRY);
    invoice("Settled", "Marked", "12.50");
    assert_int_equal(parse(event("InvoiceSettled", "\"manuallyMarked\":true"), NULL, &ev, &msg),
                     DM_OK);
    assert_int_equal(ev.status, DM_PAY_PAID);
    assert_string_equal(str(ev.detail), "marked settled by hand at BTCPay");
    /* an amount the ledger cannot hold exactly is never credited */
    invoice("Settled", "None", "0.0000001");
    assert_int_equal(parse(event("InvoiceSettled", ""), NULL, &ev, &msg), DM_OK);
    assert_int_equal(ev.status, DM_PAY_NEEDS_REVIEW);
    assert_int_equal(ev.review_reason, DM_REVIEW_OTHER);
}

static void test_expired_and_invalid(void **state)
{
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    invoice("Expired", "None", "12.5");
    assert_int_equal(parse(event("InvoiceExpired", "\"partiallyPaid\":false"), NULL, &ev, &msg),
                     DM_OK);
    assert_int_equal(ev.status, DM_PAY_EXPIRED);
    assert_int_equal(ev.amount_micros, 12500000);
    assert_int_equal(parse(event("InvoiceExpired", "\"partiallyPaid\":true"), NULL, &ev, &msg),
                     DM_OK);
    assert_int_equal(ev.status, DM_PAY_NEEDS_REVIEW);
    assert_int_equal(ev.review_reason, DM_REVIEW_UNDERPAID);
    invoice("Invalid", "Invalid", "12.50");
    assert_int_equal(parse(event("InvoiceInvalid", "\"manuallyMarked\":false"), NULL, &ev, &msg),
                     DM_OK);
    assert_int_equal(ev.status, DM_PAY_FAILED);
}

static void test_payments_before_settlement_are_pending_after_expiry_need_review(void **state)
{
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    invoice("New", "PaidPartial", "12.50");
    assert_int_equal(
        parse(event("InvoiceReceivedPayment", "\"afterExpiration\":false"), NULL, &ev, &msg),
        DM_OK);
    assert_int_equal(ev.status, DM_PAY_PENDING);
    invoice("Processing", "None", "12.50");
    assert_int_equal(parse(event("InvoiceProcessing", "\"overPaid\":false"), NULL, &ev, &msg),
                     DM_OK);
    assert_int_equal(ev.status, DM_PAY_PENDING);
    assert_string_equal(str(ev.detail), "paid, waiting for confirmations");
    invoice("Expired", "PaidLate", "12.50");
    assert_int_equal(
        parse(event("InvoiceReceivedPayment", "\"afterExpiration\":true"), NULL, &ev, &msg), DM_OK);
    assert_int_equal(ev.status, DM_PAY_NEEDS_REVIEW);
    assert_int_equal(ev.review_reason, DM_REVIEW_PAID_AFTER_EXPIRY);
}

static void test_other_types_are_ignored_without_reading_the_invoice(void **state)
{
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    got_line[0] = '\0';
    assert_int_equal(parse(event("InvoiceCreated", ""), NULL, &ev, &msg), DM_OK);
    assert_int_equal(ev.status, DM_PAY_IGNORED);
    assert_string_equal(got_line, "");
}

static void test_another_store_and_old_deliveries_are_refused(void **state)
{
    dm_payment_event ev;
    dm_message msg;
    const char *other = "{\"deliveryId\":\"d\",\"type\":\"InvoiceSettled\",\"storeId\":\"x\","
                        "\"invoiceId\":\"inv1\"}";
    (void)state;
    assert_int_equal(parse(other, NULL, &ev, &msg), DM_ERR_INVALID);
    assert_non_null(strstr(msg.text, "another BTCPay store"));
    assert_int_equal(parse(event("InvoiceSettled", "\"timestamp\":1000000000"), NULL, &ev, &msg),
                     DM_ERR_INVALID);
    assert_non_null(strstr(msg.text, "older than webhook_max_age"));
}

static void test_query_reports_the_invoice_state(void **state)
{
    static const struct {
        const char *status, *additional;
        dm_payment_event_status want;
        dm_payment_review_reason why;
    } cases[] = {
        {"New", "None", DM_PAY_PENDING, DM_REVIEW_NONE},
        {"Processing", "None", DM_PAY_PENDING, DM_REVIEW_NONE},
        {"Settled", "None", DM_PAY_PAID, DM_REVIEW_NONE},
        {"Settled", "PaidOver", DM_PAY_NEEDS_REVIEW, DM_REVIEW_OVERPAID},
        {"Expired", "None", DM_PAY_EXPIRED, DM_REVIEW_NONE},
        {"Expired", "PaidPartial", DM_PAY_NEEDS_REVIEW, DM_REVIEW_UNDERPAID},
        {"Expired", "PaidLate", DM_PAY_NEEDS_REVIEW, DM_REVIEW_PAID_AFTER_EXPIRY},
        {"Invalid", "Invalid", DM_PAY_FAILED, DM_REVIEW_NONE},
    };
    dm_str ref = {"inv1", 4};
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dm_payment_event ev;
        dm_message msg;
        invoice(cases[i].status, cases[i].additional, "99.99");
        memset(&ev, 0, sizeof(ev));
        memset(&msg, 0, sizeof(msg));
        ev.size = sizeof(ev);
        assert_int_equal(ops()->query(dm_plugins_call(host, plugin(), pool), ref, &ev, &msg),
                         DM_OK);
        assert_int_equal(ev.status, cases[i].want);
        assert_int_equal(ev.review_reason, cases[i].why);
        assert_int_equal(ev.amount_micros, 99990000);
        assert_string_equal(str(ev.order_id), "42");
    }
}

static void test_method_is_described_for_members(void **state)
{
    (void)state;
    assert_string_equal(ops()->display_name, "Bitcoin (BTCPay Server)");
    assert_string_equal(ops()->method_kind, "crypto");
    assert_int_equal(ops()->checkout_lifetime_s, 900);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_signature_matches_the_python_vector),
        T(test_signature_refusals),
        T(test_empty_body_signature_is_the_python_vector),
        T(test_settled_is_paid_with_the_invoice_amount_and_order),
        T(test_redelivery_is_named_by_its_original_delivery),
        T(test_over_late_and_partial_settlements_need_review),
        T(test_expired_and_invalid),
        T(test_payments_before_settlement_are_pending_after_expiry_need_review),
        T(test_other_types_are_ignored_without_reading_the_invoice),
        T(test_another_store_and_old_deliveries_are_refused),
        T(test_query_reports_the_invoice_state),
        T(test_method_is_described_for_members),
    };
    int failed;

    apr_initialize();
    failed = cmocka_run_group_tests_name("btcpay", tests, group_setup, group_teardown);
    apr_terminate();
    return failed;
}
