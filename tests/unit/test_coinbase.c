/*
 * The Coinbase Commerce payment plugin (plugins/payment-coinbase) through
 * the real plugin host, with a fake HTTP client under the host's http():
 * - X-CC-Webhook-Signature against vectors computed here independently
 *   (a fixed vector made with `openssl dgst -sha256 -hmac`, and OpenSSL's
 *   HMAC() over other bodies and a key longer than a SHA-256 block);
 * - the charge it creates (the exact JSON body, headers, minor units);
 * - a webhook is a hint: the charge is re-read, and the re-read charge's
 *   timeline and payments decide (paid_at confirmed or pending, under- and
 *   overpayment, paid after expiry, a "confirmed" event whose charge is
 *   not), the same mapping as query;
 * - what it answers when Coinbase is down, refuses the key or answers
 *   garbage; that no message carries a secret.
 *
 * Needs $DM_PLUGINS (payment-coinbase.so).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "plugins/http_client.h"
#include "plugins/plugin_host.h"

#define API_KEY "cc-unit-api-key-5d41402abc4b2a76"
#define SECRET "6c0f3a0e-coinbase-shared-secret"
#define BASE "http://127.0.0.1:9"
#define CODE "ABCD1234"
#define CHARGE_ID "8b6f3a0e-2c57-4c5e-9d59-0f8a3e4b1c11"

static apr_pool_t *pool;
static dm_plugin_host *host;
/* The webhook_secret load() configures (setup: SECRET). */
static const char *secret = SECRET;

/* ---- a fake HTTP client: canned answers, every request recorded ---- */

typedef struct answer {
    int status; /* 0: no answer (the network failed) */
    const char *body;
} answer;

static answer answers[8];
static int n_answers, next_answer, performed;
static char seen_method[16], seen_url[512], seen_headers[2048], seen_body[4096];
static uint32_t seen_timeout;

static dm_err *fake_perform(apr_pool_t *p, const dm_http_client_request *req,
                            dm_http_client_response *resp)
{
    answer a = {0, NULL};
    size_t used = 0;

    performed++;
    snprintf(seen_method, sizeof(seen_method), "%s", req->method);
    snprintf(seen_url, sizeof(seen_url), "%s", req->url);
    seen_headers[0] = '\0';
    for (size_t i = 0; i < req->n_headers; i++) {
        used += (size_t)snprintf(seen_headers + used, sizeof(seen_headers) - used, "%.*s: %.*s\n",
                                 (int)req->headers[i].name.len, req->headers[i].name.ptr,
                                 (int)req->headers[i].value.len, req->headers[i].value.ptr);
    }
    snprintf(seen_body, sizeof(seen_body), "%.*s", (int)req->body.len,
             req->body.ptr ? req->body.ptr : "");
    seen_timeout = req->timeout_ms;
    if (next_answer < n_answers) {
        a = answers[next_answer++];
    }
    if (a.status == 0) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "%s %s: connection refused", req->method,
                           req->url);
    }
    resp->status = a.status;
    resp->body.ptr = a.body ? a.body : "";
    resp->body.len = strlen(resp->body.ptr);
    resp->headers = NULL;
    resp->n_headers = 0;
    return NULL;
}

static const dm_http_client_impl fake = {
    .name = "fake",
    .init = NULL,
    .perform = fake_perform,
};

static void answer_with(int status, const char *body)
{
    answers[n_answers].status = status;
    answers[n_answers].body = body;
    n_answers++;
}

/* ---- helpers ---- */

static dm_str S(const char *s)
{
    dm_str out = {s, strlen(s)};
    return out;
}

static const char *str(dm_str s)
{
    return s.ptr ? apr_pstrmemdup(pool, s.ptr, s.len) : "";
}

static void quiet(void *baton, dm_level level, const char *msg)
{
    (void)baton;
    (void)level;
    (void)msg;
}

static void assert_no_secret(const char *text)
{
    if (strstr(text, API_KEY) || strstr(text, SECRET)) {
        fail_msg("a secret appears in \"%s\"", text);
    }
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    assert_null(dm_plugins_create(pool, &host));
    dm_http_client_use(&fake);
    secret = SECRET;
    n_answers = next_answer = performed = 0;
    seen_url[0] = seen_body[0] = seen_headers[0] = '\0';
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dm_http_client_use(NULL);
    apr_pool_destroy(pool);
    return 0;
}

/* Declares the plugin as "coinbase"; extra settings as key, value pairs
 * ending with NULL. The error of init, or NULL. */
static dm_err *load(const char *key, ...)
{
    const char *dir = getenv("DM_PLUGINS");
    va_list ap;

    if (!dir) {
        fail_msg("DM_PLUGINS is not set: point it at the built plugins");
    }
    assert_null(dm_plugins_declare(host, "payment", "coinbase",
                                   apr_psprintf(pool, "%s/payment-coinbase.so", dir)));
    assert_null(dm_plugins_set(host, "coinbase", "api_key", API_KEY));
    assert_null(dm_plugins_set(host, "coinbase", "webhook_secret", secret));
    assert_null(dm_plugins_set(host, "coinbase", "api_base", BASE));
    va_start(ap, key);
    for (const char *k = key; k; k = va_arg(ap, const char *)) {
        assert_null(dm_plugins_set(host, "coinbase", k, va_arg(ap, const char *)));
    }
    va_end(ap);
    return dm_plugins_init_all(host);
}

static const dm_payment_ops *ops(void)
{
    const dm_loaded_plugin *pl = dm_plugins_get(host, "coinbase");
    assert_non_null(pl);
    assert_true(pl->initialised);
    return pl->desc->ops;
}

static dm_call *call(void)
{
    return dm_plugins_call(host, dm_plugins_get(host, "coinbase"), pool);
}

/* Lower-case hex HMAC-SHA-256 by OpenSSL (not the host's libsodium). */
static const char *openssl_sig(const char *key, const char *body, size_t len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    char *hex = apr_palloc(pool, 65);

    assert_non_null(
        HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)body, len, mac, &n));
    assert_int_equal(n, 32);
    for (unsigned int i = 0; i < n; i++) {
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    }
    return hex;
}

static dm_status webhook(const char *body, const char *sig, dm_payment_event *ev, dm_message *msg)
{
    dm_header hs[2] = {{{"Content-Type", 12}, {"application/json", 16}},
                       {{"x-cc-webhook-signature", 22}, {sig, sig ? strlen(sig) : 0}}};

    memset(ev, 0, sizeof(*ev));
    memset(msg, 0, sizeof(*msg));
    ev->size = sizeof(*ev);
    return ops()->parse_webhook(call(), S(body), hs, sig ? 2 : 1, ev, msg);
}

/* A Commerce webhook body of `type` about charge CODE. */
static const char *event_body(const char *event_id, const char *type)
{
    return apr_psprintf(pool,
                        "{\"attempt_number\":1,\"event\":{\"api_version\":\"2018-03-22\","
                        "\"created_at\":\"2026-05-01T10:00:00Z\",\"data\":{\"code\":\"" CODE
                        "\",\"id\":\"" CHARGE_ID "\",\"timeline\":[{\"status\":\"COMPLETED\","
                        "\"time\":\"2026-05-01T10:00:00Z\"}]},\"id\":\"%s\",\"resource\":"
                        "\"event\",\"type\":\"%s\"},\"id\":\"0b7c8f3e-wh\","
                        "\"scheduled_for\":\"2026-05-01T10:00:00Z\"}",
                        event_id, type);
}

/* GET /charges/CODE's answer: a charge of 12.50 USD for order 42 with
 * this timeline and these payments (JSON arrays' insides). */
static const char *charge_json(const char *timeline, const char *payments)
{
    return apr_psprintf(pool,
                        "{\"data\":{\"id\":\"" CHARGE_ID "\",\"code\":\"" CODE "\","
                        "\"resource\":\"charge\",\"hosted_url\":\"https://commerce.coinbase.com/"
                        "pay/" CODE "\",\"metadata\":{\"order_id\":\"42\"},"
                        "\"pricing_type\":\"fixed_price\",\"pricing\":{\"local\":{\"amount\":"
                        "\"12.50\",\"currency\":\"USD\"},\"bitcoin\":{\"amount\":\"0.00020000\","
                        "\"currency\":\"BTC\"}},\"timeline\":[%s],\"payments\":[%s]}}",
                        timeline, payments);
}

#define T_NEW "{\"status\":\"NEW\",\"time\":\"2026-05-01T09:00:00Z\"}"
#define T_PENDING T_NEW ",{\"status\":\"PENDING\",\"time\":\"2026-05-01T09:05:00Z\"}"
#define T_COMPLETED T_PENDING ",{\"status\":\"COMPLETED\",\"time\":\"2026-05-01T09:20:00Z\"}"
#define PAY(amount, status)                                                                        \
    "{\"network\":\"ethereum\",\"transaction_id\":\"0xabc\",\"status\":\"" status "\","            \
    "\"value\":{\"local\":{\"amount\":\"" amount "\",\"currency\":\"USD\"},"                       \
    "\"crypto\":{\"amount\":\"0.0040\",\"currency\":\"ETH\"}}}"

/* ---- signatures ---- */

static void test_signature_matches_an_openssl_made_vector(void **state)
{
    /* Made outside this program: printf '%s' "$body" | openssl dgst
     * -sha256 -hmac 6c0f3a0e-coinbase-shared-secret */
    const char *body = "{\"attempt_number\":1,\"event\":{\"id\":\"evt-fixed\",\"type\":"
                       "\"charge:created\",\"data\":{\"code\":\"FIXED001\"}},\"id\":\"wh-fixed\"}";
    const char *sig = "01a688bc99697c1df350bc5297c236888205559e4d386d6777cd7be11a222c67";
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));

    assert_string_equal(openssl_sig(SECRET, body, strlen(body)), sig);
    assert_int_equal(webhook(body, sig, &ev, &msg), DM_OK);
    /* charge:created is nothing to act on: no re-read */
    assert_int_equal(ev.status, DM_PAY_IGNORED);
    assert_string_equal(str(ev.event_id), "evt-fixed");
    assert_string_equal(str(ev.provider_ref), "FIXED001");
    assert_int_equal(performed, 0);
}

static void test_signature_with_a_long_key_and_any_bytes(void **state)
{
    /* A key longer than SHA-256's 64-byte block is hashed first (RFC 2104):
     * the host's streaming HMAC must agree with OpenSSL's. */
    const char *long_secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                              "-and-more-than-a-block";
    const char *body = "{\"event\":{\"id\":\"e-long-key\",\"type\":\"charge:created\","
                       "\"data\":{\"code\":\"LONGKEY1\",\"name\":\"Z\xc3\xbc\"}}}";
    const char *sig;
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    secret = long_secret;
    assert_null(load(NULL));

    sig = openssl_sig(long_secret, body, strlen(body));
    assert_int_equal(webhook(body, sig, &ev, &msg), DM_OK);
    assert_int_equal(ev.status, DM_PAY_IGNORED);
    assert_string_equal(str(ev.event_id), "e-long-key");
    /* the 64-byte prefix of the key is another key */
    assert_int_equal(webhook(body,
                             openssl_sig(apr_pstrndup(pool, long_secret, 64), body, strlen(body)),
                             &ev, &msg),
                     DM_ERR_INVALID);
}

static void test_signature_refusals_change_nothing_and_read_nothing(void **state)
{
    const char *body = event_body("evt-1", "charge:confirmed");
    const char *good = openssl_sig(SECRET, body, strlen(body));
    char *upper = apr_pstrdup(pool, good);
    char *tampered = apr_pstrdup(pool, body);
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));
    for (char *c = upper; *c; c++) {
        if (*c >= 'a' && *c <= 'f') {
            *c = (char)(*c - 'a' + 'A');
        }
    }
    tampered[strlen(tampered) - 3] = 'X';

    assert_int_equal(webhook(body, NULL, &ev, &msg), DM_ERR_INVALID);
    assert_string_equal(msg.text, "no X-CC-Webhook-Signature header");
    assert_int_equal(webhook(body, openssl_sig(SECRET "x", body, strlen(body)), &ev, &msg),
                     DM_ERR_INVALID);
    assert_string_equal(msg.text, "the X-CC-Webhook-Signature does not match the body (wrong "
                                  "secret, or the body was altered)");
    assert_int_equal(webhook(tampered, good, &ev, &msg), DM_ERR_INVALID);
    assert_int_equal(webhook(body, upper, &ev, &msg), DM_ERR_INVALID);
    assert_int_equal(webhook(body, apr_pstrndup(pool, good, 63), &ev, &msg), DM_ERR_INVALID);
    assert_int_equal(webhook(body, apr_pstrcat(pool, good, " ", NULL), &ev, &msg), DM_ERR_INVALID);
    assert_int_equal(webhook(body, "", &ev, &msg), DM_ERR_INVALID);
    assert_int_equal(performed, 0);
    assert_no_secret(msg.text);
}

static void test_verified_webhook_without_an_event_id_is_refused(void **state)
{
    const char *body =
        "{\"event\":{\"type\":\"charge:confirmed\",\"data\":{\"code\":\"" CODE "\"}}}";
    const char *nocode = "{\"event\":{\"id\":\"e1\",\"type\":\"charge:confirmed\",\"data\":{}}}";
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));
    assert_int_equal(webhook(body, openssl_sig(SECRET, body, strlen(body)), &ev, &msg),
                     DM_ERR_INVALID);
    assert_string_equal(msg.text, "the webhook has no event.id or event.type");
    assert_int_equal(webhook(nocode, openssl_sig(SECRET, nocode, strlen(nocode)), &ev, &msg),
                     DM_ERR_INVALID);
    assert_string_equal(msg.text, "the charge:confirmed webhook names no charge (event.data.code)");
    assert_int_equal(performed, 0);
}

/* ---- creating a charge ---- */

static const char *created(const char *code)
{
    return apr_psprintf(pool,
                        "{\"data\":{\"id\":\"" CHARGE_ID "\",\"code\":\"%s\",\"hosted_url\":"
                        "\"https://commerce.coinbase.com/pay/%s\",\"pricing\":{\"local\":"
                        "{\"amount\":\"12.50\",\"currency\":\"USD\"}},\"timeline\":[" T_NEW "],"
                        "\"metadata\":{\"order_id\":\"42\"},\"payments\":[]},\"warnings\":[]}",
                        code, code);
}

static dm_status checkout(int64_t micros, const char *currency, dm_payment_checkout_result *res,
                          dm_message *msg)
{
    dm_payment_checkout in;

    memset(&in, 0, sizeof(in));
    memset(res, 0, sizeof(*res));
    memset(msg, 0, sizeof(*msg));
    in.size = sizeof(in);
    res->size = sizeof(*res);
    in.order_id = S("42");
    in.amount_micros = micros;
    in.currency = S(currency);
    in.success_url = S("https://shop.example/orders/42?paid=1");
    in.cancel_url = S("https://shop.example/orders/42");
    in.customer_email = S("zoe@example.com");
    return ops()->create_checkout(call(), &in, res, msg);
}

static void test_checkout_creates_a_fixed_price_charge(void **state)
{
    dm_payment_checkout_result res;
    dm_message msg;
    (void)state;
    assert_null(load("timeout_ms", "2500", NULL));
    answer_with(201, created(CODE));

    assert_int_equal(checkout(12500000, "USD", &res, &msg), DM_OK);
    assert_string_equal(str(res.provider_ref), CODE);
    assert_string_equal(str(res.redirect_url), "https://commerce.coinbase.com/pay/" CODE);
    assert_string_equal(seen_method, "POST");
    assert_string_equal(seen_url, BASE "/charges");
    assert_string_equal(seen_headers, "X-CC-Api-Key: " API_KEY "\n"
                                      "X-CC-Version: 2018-03-22\n"
                                      "Accept: application/json\n"
                                      "Content-Type: application/json\n");
    assert_string_equal(seen_body, "{\"name\":\"Order 42\",\"description\":\"Order 42\","
                                   "\"pricing_type\":\"fixed_price\","
                                   "\"local_price\":{\"amount\":\"12.50\",\"currency\":\"USD\"},"
                                   "\"metadata\":{\"order_id\":\"42\"},"
                                   "\"redirect_url\":\"https://shop.example/orders/42?paid=1\","
                                   "\"cancel_url\":\"https://shop.example/orders/42\"}");
    assert_int_equal(seen_timeout, 2500);
}

static void test_checkout_amounts_in_the_currencys_minor_unit(void **state)
{
    static const struct {
        int64_t micros;
        const char *currency, *amount;
    } ok[] = {
        {12500000, "USD", "12.50"}, {5000000, "EUR", "5.00"},
        {10000, "USD", "0.01"},     {1250000000, "JPY", "1250"},
        {1234000, "KWD", "1.234"},  {1000000000000, "USD", "1000000.00"},
    };
    static const struct {
        int64_t micros;
        const char *currency;
    } bad[] = {{12505000, "USD"}, {1250500000, "JPY"}, {1234500, "KWD"}, {1, "EUR"}};
    dm_payment_checkout_result res;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        answer_with(201, created(CODE));
        assert_int_equal(checkout(ok[i].micros, ok[i].currency, &res, &msg), DM_OK);
        if (!strstr(seen_body, apr_psprintf(pool,
                                            "\"local_price\":{\"amount\":\"%s\","
                                            "\"currency\":\"%s\"}",
                                            ok[i].amount, ok[i].currency))) {
            fail_msg("%s %s: sent %s", ok[i].amount, ok[i].currency, seen_body);
        }
    }
    performed = 0;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(checkout(bad[i].micros, bad[i].currency, &res, &msg), DM_ERR_INVALID);
        assert_non_null(strstr(msg.text, "is not a whole number of"));
    }
    assert_int_equal(checkout(0, "USD", &res, &msg), DM_ERR_INVALID);
    assert_int_equal(checkout(12500000, "usd", &res, &msg), DM_ERR_INVALID);
    assert_int_equal(checkout(12500000, "", &res, &msg), DM_ERR_INVALID);
    assert_int_equal(performed, 0);
}

static void test_checkout_when_coinbase_fails(void **state)
{
    static const struct {
        int status;
        const char *body;
        dm_status want;
        const char *msg;
    } cases[] = {
        {0, NULL, DM_ERR_TEMPORARY,
         "Coinbase Commerce did not answer POST /charges: POST " BASE "/charges: connection "
         "refused"},
        {500, "{\"error\":{\"type\":\"internal_server_error\",\"message\":\"boom\"}}",
         DM_ERR_TEMPORARY, "Coinbase Commerce answered HTTP 500 on create charge: boom"},
        {429, "{}", DM_ERR_TEMPORARY, "Coinbase Commerce answered HTTP 429 on create charge"},
        {401, "{\"error\":{\"type\":\"authorization_error\",\"message\":\"No such API key.\"}}",
         DM_ERR_CONFIG,
         "Coinbase Commerce refused the API key (HTTP 401) on create charge: check the setting "
         "api_key"},
        {400, "{\"error\":{\"type\":\"invalid_request\",\"message\":\"local_price is invalid\"}}",
         DM_ERR_PERMANENT,
         "Coinbase Commerce answered HTTP 400 on create charge: local_price is invalid"},
        {201, "<html>not json</html>", DM_ERR_TEMPORARY,
         "Coinbase Commerce answered the new charge with something that is not a charge (no "
         "code, hosted_url or pricing)"},
        {201, "{\"data\":{\"code\":\"" CODE "\"}}", DM_ERR_TEMPORARY,
         "Coinbase Commerce answered the new charge with something that is not a charge (no "
         "code, hosted_url or pricing)"},
    };
    dm_payment_checkout_result res;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        answer_with(cases[i].status, cases[i].body);
        assert_int_equal(checkout(12500000, "USD", &res, &msg), cases[i].want);
        assert_string_equal(msg.text, cases[i].msg);
        assert_no_secret(msg.text);
    }
}

/* ---- a webhook is a hint: the re-read charge decides ---- */

typedef struct row {
    const char *paid_at; /* "pending" | "confirmed" */
    const char *type;    /* the event's claim */
    const char *timeline, *payments;
    dm_payment_event_status status;
    dm_payment_review_reason reason;
    int64_t amount;
    const char *word, *detail;
} row;

static const row rows[] = {
    /* a confirmed charge is paid */
    {"confirmed", "charge:confirmed", T_COMPLETED, PAY("12.50", "CONFIRMED"), DM_PAY_PAID,
     DM_REVIEW_NONE, 12500000, "paid", ""},
    /* "confirmed" claimed, the charge is only pending: not paid */
    {"confirmed", "charge:confirmed", T_PENDING, PAY("12.50", "PENDING"), DM_PAY_PENDING,
     DM_REVIEW_NONE, 12500000, "pending", ""},
    /* "confirmed" claimed, nothing was paid at all */
    {"confirmed", "charge:confirmed", T_NEW, "", DM_PAY_PENDING, DM_REVIEW_NONE, 12500000,
     "pending", ""},
    /* paid_at pending: a pending charge is paid */
    {"pending", "charge:pending", T_PENDING, PAY("12.50", "PENDING"), DM_PAY_PAID, DM_REVIEW_NONE,
     12500000, "paid", ""},
    {"confirmed", "charge:pending", T_PENDING, PAY("12.50", "PENDING"), DM_PAY_PENDING,
     DM_REVIEW_NONE, 12500000, "pending", ""},
    /* legacy timelines: UNRESOLVED with its context */
    {"confirmed", "charge:failed",
     T_PENDING ",{\"status\":\"UNRESOLVED\",\"context\":\"UNDERPAID\",\"time\":\"t\"}",
     PAY("9.50", "CONFIRMED"), DM_PAY_NEEDS_REVIEW, DM_REVIEW_UNDERPAID, 9500000, "review",
     "underpaid: paid 9.50 of 12.50 USD (charge " CODE ")"},
    {"pending", "charge:confirmed",
     T_PENDING ",{\"status\":\"UNRESOLVED\",\"context\":\"OVERPAID\",\"time\":\"t\"}",
     PAY("13.75", "CONFIRMED"), DM_PAY_NEEDS_REVIEW, DM_REVIEW_OVERPAID, 13750000, "review",
     "overpaid: paid 13.75 of 12.50 USD (charge " CODE ")"},
    {"confirmed", "charge:delayed",
     T_NEW ",{\"status\":\"EXPIRED\",\"time\":\"t\"},{\"status\":\"UNRESOLVED\",\"context\":"
           "\"DELAYED\",\"time\":\"t\"}",
     PAY("12.50", "CONFIRMED"), DM_PAY_NEEDS_REVIEW, DM_REVIEW_PAID_AFTER_EXPIRY, 12500000,
     "review", "paid after the charge expired: paid 12.50 of 12.50 USD (charge " CODE ")"},
    {"confirmed", "charge:failed",
     T_PENDING ",{\"status\":\"UNRESOLVED\",\"context\":\"MULTIPLE\",\"time\":\"t\"}",
     PAY("12.50", "CONFIRMED") "," PAY("12.50", "CONFIRMED"), DM_PAY_NEEDS_REVIEW, DM_REVIEW_OTHER,
     25000000, "review", "unresolved at Coinbase: paid 25.00 of 12.50 USD (charge " CODE ")"},
    /* the timeline says completed but the payments fall short */
    {"confirmed", "charge:confirmed", T_COMPLETED, PAY("12.49", "CONFIRMED"), DM_PAY_NEEDS_REVIEW,
     DM_REVIEW_UNDERPAID, 12490000, "review",
     "underpaid: paid 12.49 of 12.50 USD (charge " CODE ")"},
    {"confirmed", "charge:resolved",
     T_PENDING ",{\"status\":\"UNRESOLVED\",\"context\":\"UNDERPAID\",\"time\":\"t\"},"
               "{\"status\":\"RESOLVED\",\"time\":\"t\"}",
     PAY("9.50", "CONFIRMED"), DM_PAY_NEEDS_REVIEW, DM_REVIEW_OTHER, 9500000, "review",
     "resolved by hand at Coinbase: paid 9.50 of 12.50 USD (charge " CODE ")"},
    {"confirmed", "charge:failed", T_NEW ",{\"status\":\"EXPIRED\",\"time\":\"t\"}", "",
     DM_PAY_EXPIRED, DM_REVIEW_NONE, 12500000, "expired", ""},
    {"confirmed", "charge:failed", T_PENDING ",{\"status\":\"FAILED\",\"time\":\"t\"}", "",
     DM_PAY_FAILED, DM_REVIEW_NONE, 12500000, "failed", ""},
    /* a "failed" claim about a charge that is in fact completed */
    {"confirmed", "charge:failed", T_COMPLETED, PAY("12.50", "CONFIRMED"), DM_PAY_PAID,
     DM_REVIEW_NONE, 12500000, "paid", ""},
};

static void test_webhook_reports_the_re_read_charge(void **state)
{
    dm_payment_event ev;
    dm_message msg;
    (void)state;

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const row *r = &rows[i];
        const char *evid, *body;

        teardown(NULL); /* a fresh host for each paid_at */
        setup(NULL);
        evid = apr_psprintf(pool, "evt-%zu", i);
        body = event_body(evid, r->type);
        assert_null(load("paid_at", r->paid_at, NULL));
        answer_with(200, charge_json(r->timeline, r->payments));
        if (webhook(body, openssl_sig(SECRET, body, strlen(body)), &ev, &msg) != DM_OK) {
            fail_msg("row %zu: %s", i, msg.text);
        }
        assert_int_equal(performed, 1);
        assert_string_equal(seen_method, "GET");
        assert_string_equal(seen_url, BASE "/charges/" CODE);
        assert_string_equal(seen_headers, "X-CC-Api-Key: " API_KEY "\n"
                                          "X-CC-Version: 2018-03-22\n"
                                          "Accept: application/json\n");
        if (ev.status != r->status || ev.review_reason != r->reason ||
            ev.amount_micros != r->amount) {
            fail_msg("row %zu (%s, %s): status %d reason %d amount %lld", i, r->paid_at, r->type,
                     (int)ev.status, (int)ev.review_reason, (long long)ev.amount_micros);
        }
        assert_string_equal(str(ev.event_id), apr_psprintf(pool, "%s/%s", evid, r->word));
        assert_string_equal(str(ev.provider_ref), CODE);
        assert_string_equal(str(ev.payment_id), CODE);
        assert_string_equal(str(ev.order_id), "42");
        assert_string_equal(str(ev.currency), "USD");
        assert_string_equal(str(ev.detail), r->detail);

        /* query reads the same charge and says the same */
        answer_with(200, charge_json(r->timeline, r->payments));
        memset(&ev, 0, sizeof(ev));
        ev.size = sizeof(ev);
        assert_int_equal(ops()->query(call(), S(CODE), &ev, &msg), DM_OK);
        assert_int_equal(ev.status, r->status);
        assert_int_equal(ev.review_reason, r->reason);
        assert_int_equal(ev.amount_micros, r->amount);
        assert_string_equal(str(ev.event_id), "");
        assert_string_equal(str(ev.payment_id), CODE);
        assert_string_equal(seen_url, BASE "/charges/" CODE);
    }
}

static void test_webhook_when_the_charge_cannot_be_re_read(void **state)
{
    static const struct {
        int status;
        const char *body;
        dm_status want;
        const char *msg;
    } cases[] = {
        {0, NULL, DM_ERR_TEMPORARY,
         "Coinbase Commerce did not answer GET /charges/" CODE ": GET " BASE "/charges/" CODE
         ": connection refused"},
        {503, "", DM_ERR_TEMPORARY, "Coinbase Commerce answered HTTP 503 on read charge"},
        {404, "{\"error\":{\"type\":\"not_found\",\"message\":\"Not found\"}}", DM_ERR_INVALID,
         "Coinbase Commerce has no charge " CODE},
        {403, "{}", DM_ERR_CONFIG,
         "Coinbase Commerce refused the API key (HTTP 403) on read charge: check the setting "
         "api_key"},
        {200, "{\"data\":{\"code\":\"" CODE "\"}}", DM_ERR_TEMPORARY,
         "Coinbase Commerce answered GET /charges/" CODE " with something that is not a charge"},
    };
    const char *body = event_body("evt-x", "charge:confirmed");
    const char *sig = openssl_sig(SECRET, body, strlen(body));
    const char *other;
    dm_payment_event ev;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        answer_with(cases[i].status, cases[i].body);
        assert_int_equal(webhook(body, sig, &ev, &msg), cases[i].want);
        assert_string_equal(msg.text, cases[i].msg);
        assert_no_secret(msg.text);
    }
    /* an answer about another charge is not this one's state */
    other = apr_pstrdup(pool, charge_json(T_COMPLETED, PAY("12.50", "CONFIRMED")));
    other = apr_psprintf(pool, "%.*sZZZZ9999%s", (int)(strstr(other, CODE) - other), other,
                         strstr(other, CODE) + 8);
    other = apr_psprintf(pool, "%.*s00000000-0000-0000-0000-000000000000%s",
                         (int)(strstr(other, CHARGE_ID) - other), other,
                         strstr(other, CHARGE_ID) + strlen(CHARGE_ID));
    answer_with(200, other);
    assert_int_equal(webhook(body, sig, &ev, &msg), DM_ERR_TEMPORARY);
    assert_string_equal(msg.text,
                        "Coinbase Commerce answered GET /charges/" CODE " with another charge");
}

/* ---- settings and the table ---- */

static void test_settings_are_checked_and_never_shown(void **state)
{
    static const struct {
        const char *key, *value, *msg;
    } bad[] = {
        {"api_base", "http://api.example.com",
         "api_base must be an https:// URL (or http:// to 127.0.0.1, localhost or [::1], for a "
         "test stand-in)"},
        {"api_base", "http://127.0.0.1.example.com", "api_base must be an https:// URL"},
        {"paid_at", "sometime", "paid_at must be pending or confirmed"},
        {"timeout_ms", "50", "timeout_ms must be a number of milliseconds from 100 to 60000"},
        {"timeout_ms", "1e4", "timeout_ms must be a number of milliseconds"},
        {"api_key", "has space", "api_key must be 1 to 256 visible ASCII characters"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dm_err *e;
        teardown(NULL);
        setup(NULL);
        e = load(bad[i].key, bad[i].value, NULL);
        assert_non_null(e);
        if (!strstr(e->message, bad[i].msg)) {
            fail_msg("%s %s: %s", bad[i].key, bad[i].value, e->message);
        }
        assert_no_secret(e->message);
    }
}

static void test_table_says_crypto_and_has_no_refund(void **state)
{
    const dm_payment_ops *o;
    const dm_loaded_plugin *pl;
    (void)state;
    assert_null(load(NULL));
    pl = dm_plugins_get(host, "coinbase");
    o = ops();
    assert_string_equal(pl->desc->name, "payment-coinbase");
    assert_string_equal(o->display_name, "Crypto (Coinbase Commerce)");
    assert_string_equal(o->method_kind, "crypto");
    assert_string_equal(o->currencies, "*");
    assert_int_equal(o->checkout_lifetime_s, 3600);
    assert_null(o->refund);
    assert_null(o->refund_ex);
    assert_non_null(o->query);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_signature_matches_an_openssl_made_vector),
        T(test_signature_with_a_long_key_and_any_bytes),
        T(test_signature_refusals_change_nothing_and_read_nothing),
        T(test_verified_webhook_without_an_event_id_is_refused),
        T(test_checkout_creates_a_fixed_price_charge),
        T(test_checkout_amounts_in_the_currencys_minor_unit),
        T(test_checkout_when_coinbase_fails),
        T(test_webhook_reports_the_re_read_charge),
        T(test_webhook_when_the_charge_cannot_be_re_read),
        T(test_settings_are_checked_and_never_shown),
        T(test_table_says_crypto_and_has_no_refund),
    };
    int rc;

    apr_initialize();
    dm_log_set_sink(quiet, NULL);
    rc = cmocka_run_group_tests_name("coinbase", tests, NULL, NULL);
    apr_terminate();
    return rc;
}
