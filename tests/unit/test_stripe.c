/*
 * The Stripe payment plugin without a network: Stripe's minor units
 * (plugins/payment-stripe/minor_units.h, USD, JPY, KWD, ISK), the
 * Stripe-Signature scheme against a vector computed independently (Python's
 * hmac module, below), the 300 s tolerance either way, several v1 entries,
 * and the mapping of every event type the plugin acts on (through the real
 * plugin host, calling parse_webhook directly, so the ABI 1.4 statuses are
 * seen before core passes them on). The checkout, refund and query calls
 * are tested against the stand-in in tests/integration/test_31_stripe.py.
 *
 * Needs $DM_PLUGINS (payment-stripe.so).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plugins/plugin_host.h"
#include "../../plugins/payment-stripe/minor_units.h"

#define KEY "sk_test_unit_0123456789abcdef"
#define WHSEC "whsec_unit_0123456789abcdef"

static apr_pool_t *pool;
static dm_plugin_host *host;

/* ---- minor units ---- */

static int64_t minor_of(const char *cur, int64_t micros, stripe_minor_result want)
{
    int64_t minor = -1;
    assert_int_equal(stripe_to_minor(cur, strlen(cur), micros, &minor), want);
    return minor;
}

static void test_usd_has_two_decimals(void **state)
{
    int64_t m = 0;
    (void)state;
    assert_int_equal(minor_of("USD", 12500000, STRIPE_MINOR_OK), 1250);
    assert_int_equal(minor_of("USD", 10000, STRIPE_MINOR_OK), 1);
    minor_of("USD", 12505000, STRIPE_MINOR_FRACTION); /* 12.505 */
    minor_of("USD", 1, STRIPE_MINOR_FRACTION);
    minor_of("USD", 0, STRIPE_MINOR_NOT_POSITIVE);
    minor_of("USD", -10000, STRIPE_MINOR_NOT_POSITIVE);
    assert_true(stripe_from_minor("USD", 3, 1250, &m));
    assert_int_equal(m, 12500000);
}

static void test_jpy_is_zero_decimal(void **state)
{
    int64_t m = 0;
    (void)state;
    assert_int_equal(minor_of("JPY", 1250000000, STRIPE_MINOR_OK), 1250);
    minor_of("JPY", 1250500000, STRIPE_MINOR_FRACTION); /* 1250.5 yen */
    minor_of("JPY", 10000, STRIPE_MINOR_FRACTION);      /* 0.01 yen */
    assert_true(stripe_from_minor("JPY", 3, 1250, &m));
    assert_int_equal(m, 1250000000);
    assert_int_equal(minor_of("KRW", 1000000, STRIPE_MINOR_OK), 1);
}

static void test_kwd_has_three_decimals_ending_in_zero(void **state)
{
    int64_t m = 0;
    (void)state;
    assert_int_equal(minor_of("KWD", 12340000, STRIPE_MINOR_OK), 12340); /* 12.340 */
    minor_of("KWD", 12345000, STRIPE_MINOR_FRACTION); /* 12.345: Stripe wants a last 0 */
    minor_of("KWD", 12345600, STRIPE_MINOR_FRACTION); /* 12.3456 */
    assert_true(stripe_from_minor("KWD", 3, 12340, &m));
    assert_int_equal(m, 12340000);
    assert_true(stripe_from_minor("BHD", 3, 5, &m));
    assert_int_equal(m, 5000);
}

static void test_isk_is_two_decimal_in_whole_kronur(void **state)
{
    (void)state;
    assert_int_equal(minor_of("ISK", 5000000, STRIPE_MINOR_OK), 500);
    minor_of("ISK", 5500000, STRIPE_MINOR_FRACTION);
}

static void test_bad_currencies_and_overflow_are_refused(void **state)
{
    int64_t m = 0;
    (void)state;
    minor_of("usd", 1000000, STRIPE_MINOR_BAD_CURRENCY);
    minor_of("US", 1000000, STRIPE_MINOR_BAD_CURRENCY);
    minor_of("US1", 1000000, STRIPE_MINOR_BAD_CURRENCY);
    assert_false(stripe_from_minor("USD", 3, -1, &m));
    assert_false(stripe_from_minor("JPY", 3, INT64_MAX / 1000000 + 1, &m));
    assert_true(stripe_from_minor("JPY", 3, INT64_MAX / 1000000, &m));
}

/* ---- the plugin ---- */

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
    apr_pool_destroy(pool);
    return 0;
}

static const dm_loaded_plugin *stripe(void)
{
    const char *dir = getenv("DM_PLUGINS");
    if (!dir) {
        fail_msg("DM_PLUGINS is not set: point it at the built plugins");
    }
    assert_null(dm_plugins_declare(host, "payment", "stripe",
                                   apr_psprintf(pool, "%s/payment-stripe.so", dir)));
    assert_null(dm_plugins_set(host, "stripe", "secret_key", KEY));
    assert_null(dm_plugins_set(host, "stripe", "webhook_secret", WHSEC));
    /* nothing listens there: a call that reaches for the network fails */
    assert_null(dm_plugins_set(host, "stripe", "api_base", "http://127.0.0.1:9"));
    dm_plugins_set_public_url(host, "https://shop.example");
    assert_null(dm_plugins_init_all(host));
    return dm_plugins_get(host, "stripe");
}

static const dm_payment_ops *ops_of(const dm_loaded_plugin *pl)
{
    return pl->desc->ops;
}

/* "t=<t>,v1=<hex>" over body, computed here with libsodium. */
static const char *sign_at(const char *body, long long t, const char *secret)
{
    crypto_auth_hmacsha256_state st;
    unsigned char mac[32];
    char hex[65], ts[32], out[128];

    snprintf(ts, sizeof(ts), "%lld.", t);

    crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, strlen(ts));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
    snprintf(out, sizeof(out), "t=%lld,v1=%s", t, hex);
    return apr_pstrdup(pool, out);
}

typedef struct parsed {
    dm_status st;
    dm_payment_event ev;
    dm_message msg;
} parsed;

static parsed parse(const dm_loaded_plugin *pl, const char *body, const char *sig)
{
    parsed out;
    dm_header hs[2] = {{{"Content-Type", 12}, {"application/json", 16}},
                       {{"stripe-signature", 16}, {sig, strlen(sig)}}};
    dm_str raw = {body, strlen(body)};

    memset(&out, 0, sizeof(out));
    out.ev.size = sizeof(out.ev);
    out.st =
        ops_of(pl)->parse_webhook(dm_plugins_call(host, pl, pool), raw, hs, 2, &out.ev, &out.msg);
    return out;
}

static const char *str(dm_str s)
{
    return s.ptr ? apr_pstrmemdup(pool, s.ptr, s.len) : "";
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!haystack || !strstr(haystack, needle)) {
        fail_msg("expected \"%s\" to contain \"%s\"", haystack ? haystack : "(null)", needle);
    }
}

#define VECTOR_BODY "{\"id\":\"evt_vector\",\"type\":\"customer.created\",\"data\":{\"object\":{}}}"
/* python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec_unit_0123456789abcdef",
 *   b"1700000000." + BODY, hashlib.sha256).hexdigest())' */
#define VECTOR_MAC "4fc9f41f8b786fa0d1d2fbc0ac4767c6f2cce286cf061bfe6eb52ce6685d92f0"

static void test_signature_matches_an_independent_vector(void **state)
{
    const dm_loaded_plugin *pl = stripe();
    parsed p;
    char bad[] = VECTOR_MAC;
    (void)state;

    /* The vector's MAC is right but its time is long past: refused for
     * its age, which the plugin checks only after the MAC matched. */
    p = parse(pl, VECTOR_BODY, "t=1700000000,v1=" VECTOR_MAC);
    assert_int_equal(p.st, DM_ERR_INVALID);
    assert_contains(p.msg.text, "more than 300 s old");
    bad[0] = bad[0] == '0' ? '1' : '0';
    p = parse(pl, VECTOR_BODY, apr_pstrcat(pool, "t=1700000000,v1=", bad, NULL));
    assert_int_equal(p.st, DM_ERR_INVALID);
    assert_contains(p.msg.text, "does not match the body");
    /* the same computation now, by libsodium here */
    assert_string_equal(sign_at(VECTOR_BODY, 1700000000, WHSEC), "t=1700000000,v1=" VECTOR_MAC);
}

static void test_tolerance_is_300_s_either_way(void **state)
{
    const dm_loaded_plugin *pl = stripe();
    long long now = (long long)time(NULL);
    parsed p;
    (void)state;

    p = parse(pl, VECTOR_BODY, sign_at(VECTOR_BODY, now - 290, WHSEC));
    assert_int_equal(p.st, DM_OK);
    assert_int_equal(p.ev.status, DM_PAY_IGNORED);
    assert_string_equal(str(p.ev.event_id), "evt_vector");
    p = parse(pl, VECTOR_BODY, sign_at(VECTOR_BODY, now + 290, WHSEC));
    assert_int_equal(p.st, DM_OK);
    p = parse(pl, VECTOR_BODY, sign_at(VECTOR_BODY, now - 310, WHSEC));
    assert_int_equal(p.st, DM_ERR_INVALID);
    assert_contains(p.msg.text, "more than 300 s old");
    p = parse(pl, VECTOR_BODY, sign_at(VECTOR_BODY, now + 310, WHSEC));
    assert_int_equal(p.st, DM_ERR_INVALID);
    assert_contains(p.msg.text, "in the future");
}

static void test_any_of_several_v1_and_the_whole_whsec_string_as_key(void **state)
{
    const dm_loaded_plugin *pl = stripe();
    long long now = (long long)time(NULL);
    const char *good = sign_at(VECTOR_BODY, now, WHSEC);
    const char *old = sign_at(VECTOR_BODY, now, "whsec_previous_secret");
    /* keyed with the part after "whsec_" only: not Stripe's scheme */
    const char *stripped = sign_at(VECTOR_BODY, now, &WHSEC[6]);
    parsed p;
    (void)state;

    p = parse(pl, VECTOR_BODY, apr_psprintf(pool, "%s,%s,v0=abc", old, strchr(good, ',') + 1));
    assert_int_equal(p.st, DM_OK);
    p = parse(pl, VECTOR_BODY, stripped);
    assert_int_equal(p.st, DM_ERR_INVALID);
    assert_contains(p.msg.text, "does not match");
    p = parse(pl, VECTOR_BODY, apr_pstrcat(pool, "t=1,", good, NULL));
    assert_int_equal(p.st, DM_ERR_INVALID);
    p = parse(pl, "{\"id\":\"evt_vector\"}", good);
    assert_int_equal(p.st, DM_ERR_INVALID);
}

/* A signed event of `type` around `object` (and `extra` data members). */
static parsed event(const dm_loaded_plugin *pl, const char *type, const char *object,
                    const char *extra)
{
    const char *body = apr_psprintf(pool,
                                    "{\n  \"id\": \"evt_test_%s\",\n  \"object\": \"event\",\n"
                                    "  \"type\": \"%s\",\n  \"data\": {\"object\": %s%s},\n"
                                    "  \"livemode\": false\n}",
                                    type, type, object, extra ? extra : "");
    return parse(pl, body, sign_at(body, (long long)time(NULL), WHSEC));
}

#define SESSION(pay_status)                                                                        \
    "{\"id\": \"cs_test_a1\", \"object\": \"checkout.session\", \"amount_total\": 1250, "          \
    "\"currency\": \"usd\", \"client_reference_id\": \"42\", \"metadata\": {\"order_id\": "        \
    "\"42\"}, \"payment_intent\": \"pi_test_p1\", \"payment_status\": \"" pay_status "\", "        \
    "\"status\": \"complete\"}"

static void assert_session_event(parsed p, dm_payment_event_status want)
{
    assert_int_equal(p.st, DM_OK);
    assert_int_equal(p.ev.status, want);
    assert_string_equal(str(p.ev.provider_ref), "cs_test_a1");
    assert_string_equal(str(p.ev.order_id), "42");
    assert_string_equal(str(p.ev.payment_id), "pi_test_p1");
}

static void test_checkout_session_events(void **state)
{
    const dm_loaded_plugin *pl = stripe();
    parsed p;
    (void)state;

    p = event(pl, "checkout.session.completed", SESSION("paid"), NULL);
    assert_session_event(p, DM_PAY_PAID);
    assert_int_equal(p.ev.amount_micros, 12500000);
    assert_string_equal(str(p.ev.currency), "USD");
    assert_string_equal(str(p.ev.event_id), "evt_test_checkout.session.completed");
    /* a delayed method: completed but not paid yet */
    p = event(pl, "checkout.session.completed", SESSION("unpaid"), NULL);
    assert_session_event(p, DM_PAY_PENDING);
    p = event(pl, "checkout.session.async_payment_succeeded", SESSION("paid"), NULL);
    assert_session_event(p, DM_PAY_PAID);
    assert_int_equal(p.ev.amount_micros, 12500000);
    p = event(pl, "checkout.session.async_payment_failed", SESSION("unpaid"), NULL);
    assert_session_event(p, DM_PAY_FAILED);
    p = event(pl, "checkout.session.expired",
              "{\"id\": \"cs_test_a1\", \"object\": \"checkout.session\", \"amount_total\": "
              "1250, \"currency\": \"usd\", \"client_reference_id\": null, \"metadata\": "
              "{\"order_id\": \"42\"}, \"payment_intent\": null, \"status\": \"expired\"}",
              NULL);
    assert_int_equal(p.st, DM_OK);
    assert_int_equal(p.ev.status, DM_PAY_EXPIRED);
    assert_string_equal(str(p.ev.order_id), "42"); /* from metadata */
    assert_int_equal(p.ev.payment_id.len, 0);      /* null is no id */
    /* a zero-decimal currency */
    p = event(pl, "checkout.session.completed",
              "{\"id\": \"cs_test_a1\", \"amount_total\": 1250, \"currency\": \"jpy\", "
              "\"client_reference_id\": \"42\", \"payment_intent\": \"pi_test_p1\", "
              "\"payment_status\": \"paid\"}",
              NULL);
    assert_int_equal(p.ev.amount_micros, 1250000000);
    assert_string_equal(str(p.ev.currency), "JPY");
}

#define CHARGE(refunded)                                                                           \
    "{\"id\": \"ch_test_c1\", \"object\": \"charge\", \"amount\": 1250, "                          \
    "\"amount_refunded\": " refunded                                                               \
    ", \"currency\": \"usd\", \"payment_intent\": \"pi_test_p1\", \"metadata\": "                  \
    "{\"order_id\": \"42\"}, \"refunded\": false}"

static void test_charge_refunded_reports_what_this_refund_added(void **state)
{
    const dm_loaded_plugin *pl = stripe();
    parsed p;
    (void)state;

    p = event(pl, "charge.refunded", CHARGE("1000"),
              ", \"previous_attributes\": {\"amount_refunded\": 250, \"refunded\": false}");
    assert_int_equal(p.st, DM_OK);
    assert_int_equal(p.ev.status, DM_PAY_REFUNDED);
    assert_int_equal(p.ev.amount_micros, 7500000); /* 10.00 - 2.50 */
    assert_string_equal(str(p.ev.currency), "USD");
    assert_string_equal(str(p.ev.order_id), "42");
    assert_string_equal(str(p.ev.payment_id), "pi_test_p1");
    /* no previous total: how much is new is unknown, a person decides */
    p = event(pl, "charge.refunded", CHARGE("1000"), NULL);
    assert_int_equal(p.st, DM_OK);
    assert_int_equal(p.ev.status, DM_PAY_NEEDS_REVIEW);
    assert_int_equal(p.ev.review_reason, DM_REVIEW_OTHER);
    assert_contains(str(p.ev.detail), "1000 of 1250");
    /* nothing new */
    p = event(pl, "charge.refunded", CHARGE("250"),
              ", \"previous_attributes\": {\"amount_refunded\": 250}");
    assert_int_equal(p.ev.status, DM_PAY_IGNORED);
    /* more refunded than charged: not what Stripe sends */
    p = event(pl, "charge.refunded", CHARGE("2000"),
              ", \"previous_attributes\": {\"amount_refunded\": 0}");
    assert_int_equal(p.st, DM_ERR_INVALID);
}

#define DISPUTE(status)                                                                            \
    "{\"id\": \"dp_test_d1\", \"object\": \"dispute\", \"amount\": 1250, \"currency\": \"usd\", "  \
    "\"charge\": \"ch_test_c1\", \"payment_intent\": null, \"reason\": \"fraudulent\", "           \
    "\"status\": \"" status "\"}"

static void test_dispute_events_open_win_and_lose(void **state)
{
    const dm_loaded_plugin *pl = stripe();
    parsed p;
    (void)state;

    p = event(pl, "charge.dispute.created", DISPUTE("needs_response"), NULL);
    assert_int_equal(p.st, DM_OK);
    assert_int_equal(p.ev.status, DM_PAY_DISPUTE_OPENED);
    assert_int_equal(p.ev.amount_micros, 12500000);
    assert_string_equal(str(p.ev.detail), "dispute dp_test_d1 (fraudulent), status needs_response");
    p = event(pl, "charge.dispute.closed", DISPUTE("won"), NULL);
    assert_int_equal(p.ev.status, DM_PAY_DISPUTE_WON);
    p = event(pl, "charge.dispute.closed", DISPUTE("warning_closed"), NULL);
    assert_int_equal(p.ev.status, DM_PAY_DISPUTE_WON);
    p = event(pl, "charge.dispute.closed", DISPUTE("lost"), NULL);
    assert_int_equal(p.ev.status, DM_PAY_DISPUTE_LOST);
    p = event(pl, "charge.dispute.closed", DISPUTE("under_review"), NULL);
    assert_int_equal(p.ev.status, DM_PAY_IGNORED);
}

static void test_a_lookup_that_cannot_reach_stripe_is_temporary(void **state)
{
    const dm_loaded_plugin *pl = stripe();
    parsed p;
    (void)state;

    /* a charge without our order in its metadata: the plugin asks Stripe
     * for the session of its payment intent; Stripe is unreachable */
    p = event(pl, "charge.refunded",
              "{\"id\": \"ch_test_c1\", \"amount\": 1250, \"amount_refunded\": 1250, "
              "\"currency\": \"usd\", \"payment_intent\": \"pi_test_p1\", \"metadata\": {}}",
              ", \"previous_attributes\": {\"amount_refunded\": 0}");
    assert_int_equal(p.st, DM_ERR_TEMPORARY);
    assert_true(strstr(p.msg.text, KEY) == NULL);
}

static void test_checkout_refuses_what_stripe_cannot_charge_before_any_request(void **state)
{
    const dm_loaded_plugin *pl = stripe();
    dm_payment_checkout in;
    dm_payment_checkout_result out;
    dm_message msg;
    (void)state;

    memset(&in, 0, sizeof(in));
    memset(&out, 0, sizeof(out));
    memset(&msg, 0, sizeof(msg));
    in.size = sizeof(in);
    out.size = sizeof(out);
    in.order_id.ptr = "42";
    in.order_id.len = 2;
    in.currency.ptr = "KWD";
    in.currency.len = 3;
    in.amount_micros = 12345000;
    assert_int_equal(ops_of(pl)->create_checkout(dm_plugins_call(host, pl, pool), &in, &out, &msg),
                     DM_ERR_INVALID);
    assert_contains(msg.text, "not a whole number");
    /* a chargeable amount reaches for the (absent) network: temporary */
    in.amount_micros = 12340000;
    memset(&msg, 0, sizeof(msg));
    assert_int_equal(ops_of(pl)->create_checkout(dm_plugins_call(host, pl, pool), &in, &out, &msg),
                     DM_ERR_TEMPORARY);
    assert_contains(msg.text, "Stripe did not answer the checkout session");
    assert_true(strstr(msg.text, KEY) == NULL);
}

static void test_settings_are_checked_at_start(void **state)
{
    static const char *const bad[][2] = {{"secret_key", "pk_test_publishable"},
                                         {"secret_key", "sk_test_ with space"},
                                         {"webhook_secret", "not_whsec"},
                                         {"api_base", "http://example.com"},
                                         {"timeout_ms", "50"},
                                         {"timeout_ms", "ten"}};
    const char *dir = getenv("DM_PLUGINS");
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dm_plugin_host *h;
        dm_err *e;
        assert_null(dm_plugins_create(pool, &h));
        assert_null(dm_plugins_declare(h, "payment", "stripe",
                                       apr_psprintf(pool, "%s/payment-stripe.so", dir)));
        assert_null(dm_plugins_set(h, "stripe", "secret_key", KEY));
        assert_null(dm_plugins_set(h, "stripe", "webhook_secret", WHSEC));
        assert_null(dm_plugins_set(h, "stripe", bad[i][0], bad[i][1]));
        dm_plugins_set_public_url(h, "https://shop.example");
        e = dm_plugins_init_all(h);
        if (!e) {
            fail_msg("%s %s was accepted", bad[i][0], bad[i][1]);
        }
        assert_contains(e->message, bad[i][0]);
        assert_true(strstr(e->message, KEY) == NULL);
    }
}

static void test_method_is_a_card(void **state)
{
    const dm_payment_ops *o = ops_of(stripe());
    (void)state;

    assert_true(DM_HAS_FIELD(o, dm_payment_ops, checkout_lifetime_s));
    assert_string_equal(o->display_name, "Card (Stripe)");
    assert_string_equal(o->method_kind, "card");
    assert_string_equal(o->currencies, "*");
    assert_int_equal(o->checkout_lifetime_s, 1860);
    assert_non_null(o->query);
    assert_non_null(o->refund_ex);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usd_has_two_decimals),
        cmocka_unit_test(test_jpy_is_zero_decimal),
        cmocka_unit_test(test_kwd_has_three_decimals_ending_in_zero),
        cmocka_unit_test(test_isk_is_two_decimal_in_whole_kronur),
        cmocka_unit_test(test_bad_currencies_and_overflow_are_refused),
        T(test_signature_matches_an_independent_vector),
        T(test_tolerance_is_300_s_either_way),
        T(test_any_of_several_v1_and_the_whole_whsec_string_as_key),
        T(test_checkout_session_events),
        T(test_charge_refunded_reports_what_this_refund_added),
        T(test_dispute_events_open_win_and_lose),
        T(test_a_lookup_that_cannot_reach_stripe_is_temporary),
        T(test_checkout_refuses_what_stripe_cannot_charge_before_any_request),
        T(test_settings_are_checked_at_start),
        T(test_method_is_a_card),
    };
    if (apr_initialize() != APR_SUCCESS || sodium_init() < 0) {
        return 1;
    }
    return cmocka_run_group_tests_name("stripe", tests, NULL, NULL);
}
