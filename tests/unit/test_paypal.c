/*
 * The PayPal plugin's pure parts, compiled in from its source: minor-unit
 * conversion (USD two decimals, JPY none, BHD three; amounts that are not
 * whole minor units refused), PayPal's decimal strings read back, RFC 3339
 * transmission times, the return page's query parameters, and the
 * DeepMine-PayPal-Return signature against a vector computed here with
 * libsodium directly (key = HMAC-SHA-256(client secret, context webhook
 * id), MAC = HMAC-SHA-256(key, "<t>.<body>")).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/payment-paypal/payment_paypal.c"

/* ---- a minimal host: malloc'd call memory (freed at exit), libsodium ---- */

static void *t_alloc(dm_call *call, size_t n)
{
    (void)call;
    return calloc(1, n ? n : 1);
}

static void t_hmac(const void *key, size_t key_len, const void *data, size_t len,
                   unsigned char out[32])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, key_len);
    crypto_auth_hmacsha256_update(&st, data, len);
    crypto_auth_hmacsha256_final(&st, out);
}

static char *t_hex(dm_call *call, const void *data, size_t len)
{
    char *out = t_alloc(call, len * 2 + 1);
    sodium_bin2hex(out, len * 2 + 1, data, len);
    return out;
}

static int t_equal(const void *a, const void *b, size_t n)
{
    return sodium_memcmp(a, b, n) == 0;
}

static dm_host test_host;

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0) {
        return -1;
    }
    memset(&test_host, 0, sizeof(test_host));
    test_host.size = sizeof(test_host);
    test_host.alloc = t_alloc;
    test_host.hmac_sha256 = t_hmac;
    test_host.hex_encode = t_hex;
    test_host.equal_ct = t_equal;
    host = &test_host;
    return 0;
}

static dm_str S(const char *s)
{
    dm_str out = {s, strlen(s)};
    return out;
}

/* ---- tests ---- */

static void test_micros_to_decimal_usd_jpy_bhd(void **state)
{
    char out[48];
    (void)state;

    assert_true(micros_to_decimal(12500000, 2, out, sizeof(out)));
    assert_string_equal(out, "12.50");
    assert_true(micros_to_decimal(10000, 2, out, sizeof(out)));
    assert_string_equal(out, "0.01");
    assert_true(micros_to_decimal(1290000000, 2, out, sizeof(out)));
    assert_string_equal(out, "1290.00");
    /* JPY: no decimals at all */
    assert_true(micros_to_decimal(1250000000, 0, out, sizeof(out)));
    assert_string_equal(out, "1250");
    /* BHD: three */
    assert_true(micros_to_decimal(1250000, 3, out, sizeof(out)));
    assert_string_equal(out, "1.250");
    assert_true(micros_to_decimal(1000, 3, out, sizeof(out)));
    assert_string_equal(out, "0.001");
    /* not a whole number of minor units: refused, never rounded */
    assert_false(micros_to_decimal(12505000, 2, out, sizeof(out)));
    assert_false(micros_to_decimal(1500000 + 1, 0, out, sizeof(out)));
    assert_false(micros_to_decimal(500000, 0, out, sizeof(out)));
    assert_false(micros_to_decimal(1500, 3, out, sizeof(out)));
    assert_false(micros_to_decimal(-10000, 2, out, sizeof(out)));
    assert_false(micros_to_decimal(AMOUNT_MAX + 1, 2, out, sizeof(out)));
}

static void test_decimal_to_micros_reads_paypal_amounts(void **state)
{
    int64_t v = 0;
    (void)state;

    assert_true(decimal_to_micros(S("12.50"), 2, &v));
    assert_int_equal(v, 12500000);
    assert_true(decimal_to_micros(S("12.5"), 2, &v));
    assert_int_equal(v, 12500000);
    assert_true(decimal_to_micros(S("100"), 2, &v));
    assert_int_equal(v, 100000000);
    assert_true(decimal_to_micros(S("1250"), 0, &v));
    assert_int_equal(v, 1250000000);
    assert_true(decimal_to_micros(S("1.250"), 3, &v));
    assert_int_equal(v, 1250000);
    assert_true(decimal_to_micros(S("-0.01"), 2, &v)); /* a reversal */
    assert_int_equal(v, -10000);
    /* more decimals than the currency has, or not a number */
    assert_false(decimal_to_micros(S("12.505"), 2, &v));
    assert_false(decimal_to_micros(S("1250.0"), 0, &v));
    assert_false(decimal_to_micros(S("1.2345"), 3, &v));
    assert_false(decimal_to_micros(S(""), 2, &v));
    assert_false(decimal_to_micros(S("."), 2, &v));
    assert_false(decimal_to_micros(S("1."), 2, &v));
    assert_false(decimal_to_micros(S("+1.00"), 2, &v));
    assert_false(decimal_to_micros(S("1,00"), 2, &v));
    assert_false(decimal_to_micros(S("1e3"), 2, &v));
    assert_false(decimal_to_micros(S("1234567890123.00"), 2, &v));
}

static void test_currency_table(void **state)
{
    (void)state;
    assert_int_equal(currency_of(S("USD"))->decimals, 2);
    assert_int_equal(currency_of(S("JPY"))->decimals, 0);
    assert_int_equal(currency_of(S("HUF"))->decimals, 0);
    assert_int_equal(currency_of(S("TWD"))->decimals, 0);
    assert_int_equal(currency_of(S("BHD"))->decimals, 3);
    assert_false(currency_of(S("BHD"))->paypal);
    assert_true(currency_of(S("EUR"))->paypal);
    assert_null(currency_of(S("XYZ")));
    assert_null(currency_of(S("usd")));
}

static void test_rfc3339_transmission_times(void **state)
{
    int64_t t = 0;
    (void)state;

    assert_true(parse_rfc3339(S("2016-09-21T22:00:46Z"), &t));
    assert_int_equal(t, 1474495246);
    assert_true(parse_rfc3339(S("2016-09-21T22:00:46.123Z"), &t));
    assert_int_equal(t, 1474495246);
    assert_true(parse_rfc3339(S("2016-09-22T00:00:46+02:00"), &t));
    assert_int_equal(t, 1474495246);
    assert_false(parse_rfc3339(S("2016-09-21 22:00:46Z"), &t));
    assert_false(parse_rfc3339(S("2016-09-21T22:00:46"), &t));
    assert_false(parse_rfc3339(S("2016-13-21T22:00:46Z"), &t));
    assert_false(parse_rfc3339(S("2016-09-21T22:00:46Zjunk"), &t));
}

static void test_query_params_are_plain_ids_only(void **state)
{
    dm_str q = S("order=42&token=5O190127TN364715T&PayerID=ABC");
    (void)state;

    assert_true(dm_str_eq(query_param(q, "token"), "5O190127TN364715T"));
    assert_true(dm_str_eq(query_param(q, "order"), "42"));
    assert_null(query_param(q, "tok").ptr);
    assert_null(query_param(S("token=a%2Fb"), "token").ptr);
    assert_null(query_param(S("token="), "token").ptr);
    assert_null(query_param(S(""), "token").ptr);
}

static void test_return_signature_matches_an_independent_vector(void **state)
{
    conf c;
    const char *body = "{\"id\":\"DM-RETURN-1\"}";
    unsigned char key[32], mac[32];
    char hex[65], expected[128];
    const char *ctx = "deepmine-paypal-return-event:v1:WH123";
    const char *signed_text = "1700000000.{\"id\":\"DM-RETURN-1\"}";
    char *sig;
    dm_message msg;
    (void)state;

    memset(&c, 0, sizeof(c));
    c.secret = "EStandinSecret";
    c.webhook_id = "WH123";
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)c.secret, strlen(c.secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)ctx, strlen(ctx));
    crypto_auth_hmacsha256_final(&st, key);
    crypto_auth_hmacsha256_init(&st, key, sizeof(key));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)signed_text, strlen(signed_text));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
    snprintf(expected, sizeof(expected), "t=1700000000,v1=%s", hex);

    sig = return_signature(NULL, &c, 1700000000, S(body));
    assert_string_equal(sig, expected);
    /* verify_return: the right signature but far from now is refused for
     * its age; a wrong one for the MAC */
    memset(&msg, 0, sizeof(msg));
    assert_int_equal(verify_return(NULL, &c, S(body), S(sig), &msg), DM_ERR_INVALID);
    assert_non_null(strstr(msg.text, "s away"));
    expected[strlen(expected) - 1] ^= 1;
    memset(&msg, 0, sizeof(msg));
    assert_int_equal(verify_return(NULL, &c, S(body), S(expected), &msg), DM_ERR_INVALID);
    assert_non_null(strstr(msg.text, "does not match"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_micros_to_decimal_usd_jpy_bhd),
        cmocka_unit_test(test_decimal_to_micros_reads_paypal_amounts),
        cmocka_unit_test(test_currency_table),
        cmocka_unit_test(test_rfc3339_transmission_times),
        cmocka_unit_test(test_query_params_are_plain_ids_only),
        cmocka_unit_test(test_return_signature_matches_an_independent_vector),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
