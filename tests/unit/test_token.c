/* Access tokens (JWT HS256, alg pinned): every tamper case is 401;
 * opaque tokens and key derivation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <sodium.h>
#include <string.h>

#include "base/token.h"

static apr_pool_t *pool;
static dm_keys keys;
static const int64_t NOW = 1795000000;

static int setup(void **state)
{
    unsigned char master[32];
    (void)state;
    apr_pool_create(&pool, NULL);
    memset(master, 7, sizeof(master));
    dm_keys_derive(master, &keys);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool);
    return 0;
}

static const char *good_token(int64_t iat, int64_t nbf, int64_t exp)
{
    dm_claims c = {"member", 42, 3, iat, nbf, exp, NULL};
    return dm_jwt_sign(pool, keys.jwt, &c);
}

static dm_code verify_code(const char *token)
{
    dm_claims c;
    dm_err *e = dm_jwt_verify(pool, keys.jwt, token, "member", NOW, 5, &c);
    return e ? e->code : 0;
}

/* A token with the given header and claims, signed with `key`. */
static const char *forge(const char *header, const char *claims, const unsigned char *key)
{
    const char *signing = apr_pstrcat(pool, dm_b64url(pool, header, strlen(header)), ".",
                                      dm_b64url(pool, claims, strlen(claims)), NULL);
    unsigned char mac[32];
    if (!key) {
        return apr_pstrcat(pool, signing, ".", NULL);
    }
    crypto_auth_hmacsha256(mac, (const unsigned char *)signing, strlen(signing), key);
    return apr_pstrcat(pool, signing, ".", dm_b64url(pool, mac, 32), NULL);
}

static const char *CLAIMS =
    "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,\"nbf\":1795000000,"
    "\"exp\":1795000900}";

static void test_family_claim_round_trips_and_must_be_a_string(void **state)
{
    dm_claims c = {"member", 42, 3, NOW, NOW, NOW + 900, "fam-abc"};
    dm_claims out;
    (void)state;
    assert_null(
        dm_jwt_verify(pool, keys.jwt, dm_jwt_sign(pool, keys.jwt, &c), "member", NOW, 5, &out));
    assert_string_equal(out.fam, "fam-abc");
    /* absent: NULL (the member layer refuses such a token) */
    assert_null(
        dm_jwt_verify(pool, keys.jwt, good_token(NOW, NOW, NOW + 900), "member", NOW, 5, &out));
    assert_null(out.fam);
    assert_int_equal(verify_code(forge("{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
                                       "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,"
                                       "\"iat\":1795000000,\"nbf\":1795000000,"
                                       "\"exp\":1795000900,\"fam\":7}",
                                       keys.jwt)),
                     DM_E_UNAUTHORIZED);
}

static void test_valid_token_round_trips_claims(void **state)
{
    dm_claims c;
    (void)state;
    assert_null(
        dm_jwt_verify(pool, keys.jwt, good_token(NOW, NOW, NOW + 900), "member", NOW, 5, &c));
    assert_int_equal(c.sub, 42);
    assert_int_equal(c.ver, 3);
    assert_int_equal(c.exp, NOW + 900);
    assert_string_equal(c.typ, "member");
    /* the forge helper makes the same kind of token */
    assert_int_equal(verify_code(forge("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", CLAIMS, keys.jwt)),
                     0);
}

static void test_alg_none_is_refused(void **state)
{
    (void)state;
    assert_int_equal(verify_code(forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", CLAIMS, NULL)),
                     DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code(forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", CLAIMS, keys.jwt)),
                     DM_E_UNAUTHORIZED);
}

static void test_other_algs_are_refused_even_when_signed(void **state)
{
    (void)state;
    assert_int_equal(verify_code(forge("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", CLAIMS, keys.jwt)),
                     DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code(forge("{\"alg\":\"hs256\",\"typ\":\"JWT\"}", CLAIMS, keys.jwt)),
                     DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code(forge("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", CLAIMS, keys.jwt)),
                     DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code(forge("{\"typ\":\"JWT\"}", CLAIMS, keys.jwt)), DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code(forge("{\"alg\":\"HS256\",\"alg\":\"none\"}", CLAIMS, keys.jwt)),
                     DM_E_UNAUTHORIZED);
}

static void test_bad_signature_is_refused(void **state)
{
    unsigned char other[32];
    char *t = apr_pstrdup(pool, good_token(NOW, NOW, NOW + 900));
    (void)state;
    memset(other, 9, sizeof(other));
    assert_int_equal(verify_code(forge("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", CLAIMS, other)),
                     DM_E_UNAUTHORIZED);
    /* flip a character of the signature */
    t[strlen(t) - 2] = t[strlen(t) - 2] == 'A' ? 'B' : 'A';
    assert_int_equal(verify_code(t), DM_E_UNAUTHORIZED);
}

static void test_tampered_payload_is_refused(void **state)
{
    const char *t = good_token(NOW, NOW, NOW + 900);
    const char *dot1 = strchr(t, '.'), *dot2 = strrchr(t, '.');
    const char *evil = "{\"typ\":\"member\",\"sub\":\"1\",\"ver\":3,\"iat\":1795000000,"
                       "\"nbf\":1795000000,\"exp\":1795000900}";
    (void)state;
    const char *tampered = apr_pstrcat(pool, apr_pstrmemdup(pool, t, (apr_size_t)(dot1 - t)), ".",
                                       dm_b64url(pool, evil, strlen(evil)), dot2, NULL);
    assert_int_equal(verify_code(tampered), DM_E_UNAUTHORIZED);
}

static void test_expired_and_not_yet_valid_are_refused(void **state)
{
    (void)state;
    assert_int_equal(verify_code(good_token(NOW - 2000, NOW - 2000, NOW - 1000)),
                     DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code(good_token(NOW, NOW + 600, NOW + 1500)), DM_E_UNAUTHORIZED);
    /* within the 5 s leeway both ways */
    assert_int_equal(verify_code(good_token(NOW, NOW + 3, NOW + 900)), 0);
    assert_int_equal(verify_code(good_token(NOW - 900, NOW - 900, NOW - 3)), 0);
}

static void test_wrong_type_or_claims_are_refused(void **state)
{
    dm_claims c = {"staff", 42, 3, NOW, NOW, NOW + 900, NULL};
    (void)state;
    assert_int_equal(verify_code(dm_jwt_sign(pool, keys.jwt, &c)), DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code(forge("{\"alg\":\"HS256\"}",
                                       "{\"typ\":\"member\",\"sub\":42,\"ver\":3,\"iat\":1,"
                                       "\"nbf\":1,\"exp\":1795000900}",
                                       keys.jwt)),
                     DM_E_UNAUTHORIZED); /* sub must be a string */
    assert_int_equal(verify_code(forge("{\"alg\":\"HS256\"}",
                                       "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3}", keys.jwt)),
                     DM_E_UNAUTHORIZED); /* no times */
    assert_int_equal(verify_code(forge("{\"alg\":\"HS256\"}", "[1,2]", keys.jwt)),
                     DM_E_UNAUTHORIZED);
}

static void test_malformed_tokens_are_refused(void **state)
{
    (void)state;
    assert_int_equal(verify_code(""), DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code("abc"), DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code("a.b"), DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code("a.b.c.d"), DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code("!!!.???.***"), DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code(apr_pstrcat(pool, good_token(NOW, NOW, NOW + 900), "x", NULL)),
                     DM_E_UNAUTHORIZED);
    char *big = apr_palloc(pool, 10001);
    memset(big, 'a', 10000);
    big[10000] = '\0';
    assert_int_equal(verify_code(big), DM_E_UNAUTHORIZED);
}

static void test_opaque_tokens_are_random_and_hash_stably(void **state)
{
    const char *a = dm_token_new(pool), *b = dm_token_new(pool);
    (void)state;
    assert_int_equal(strlen(a), 43);
    assert_string_not_equal(a, b);
    assert_string_equal(dm_token_hash(pool, keys.token_hash, a),
                        dm_token_hash(pool, keys.token_hash, a));
    assert_string_not_equal(dm_token_hash(pool, keys.token_hash, a),
                            dm_token_hash(pool, keys.jwt, a));
    assert_int_equal(strlen(dm_token_hash(pool, keys.token_hash, a)), 64);
}

static void test_derived_keys_differ_per_purpose(void **state)
{
    (void)state;
    assert_memory_not_equal(keys.jwt, keys.token_hash, 32);
    assert_memory_not_equal(keys.jwt, keys.unsubscribe, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_token_round_trips_claims),
        cmocka_unit_test(test_alg_none_is_refused),
        cmocka_unit_test(test_other_algs_are_refused_even_when_signed),
        cmocka_unit_test(test_bad_signature_is_refused),
        cmocka_unit_test(test_tampered_payload_is_refused),
        cmocka_unit_test(test_expired_and_not_yet_valid_are_refused),
        cmocka_unit_test(test_wrong_type_or_claims_are_refused),
        cmocka_unit_test(test_malformed_tokens_are_refused),
        cmocka_unit_test(test_family_claim_round_trips_and_must_be_a_string),
        cmocka_unit_test(test_opaque_tokens_are_random_and_hash_stably),
        cmocka_unit_test(test_derived_keys_differ_per_purpose),
    };
    apr_initialize();
    if (sodium_init() < 0) {
        return 1;
    }
    return cmocka_run_group_tests_name("token", tests, setup, teardown);
}
