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

static const char *HDR = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

/* Claims with the given text in place of the member list's tail: the
 * times are valid at NOW. */
static dm_code claims_code(const char *claims)
{
    return verify_code(forge(HDR, claims, keys.jwt));
}

static void test_reordered_members_and_whitespace_are_read(void **state)
{
    dm_claims c;
    const char *t;
    (void)state;
    /* the order and spacing of Python's json.dumps, a fam too */
    t = forge("{ \"typ\": \"JWT\", \"alg\": \"HS256\" }",
              "{\"exp\": 1795000900, \"fam\": \"f-1\", \"nbf\": 1795000000, \"iat\": 1795000000,"
              " \"ver\": 3, \"sub\": \"42\", \"typ\": \"member\", \"jti\": \"x\"}",
              keys.jwt);
    assert_null(dm_jwt_verify(pool, keys.jwt, t, "member", NOW, 5, &c));
    assert_int_equal(c.sub, 42);
    assert_int_equal(c.ver, 3);
    assert_int_equal(c.iat, 1795000000);
    assert_int_equal(c.nbf, 1795000000);
    assert_int_equal(c.exp, 1795000900);
    assert_string_equal(c.fam, "f-1");
    assert_string_equal(c.typ, "member");
    assert_int_equal(claims_code("\r\n\t {\n\"typ\"\t:\"member\" ,\"sub\":\"42\",\"ver\":3,"
                                 "\"iat\":1795000000,\"nbf\":1795000000,\"exp\":1795000900}\n "),
                     0);
    /* negative numbers are integers too */
    assert_int_equal(claims_code("{\"typ\":\"member\",\"sub\":\"42\",\"ver\":-1,\"iat\":-0,"
                                 "\"nbf\":1795000000,\"exp\":1795000900}"),
                     0);
}

static void test_duplicate_members_are_refused(void **state)
{
    (void)state;
    assert_int_equal(claims_code("{\"typ\":\"member\",\"sub\":\"42\",\"sub\":\"1\",\"ver\":3,"
                                 "\"iat\":1795000000,\"nbf\":1795000000,\"exp\":1795000900}"),
                     DM_E_UNAUTHORIZED);
    assert_int_equal(claims_code("{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,"
                                 "\"nbf\":1795000000,\"exp\":1795000900,\"exp\":1895000900}"),
                     DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code(forge("{\"alg\":\"HS256\",\"alg\":\"HS256\"}", CLAIMS, keys.jwt)),
                     DM_E_UNAUTHORIZED);
    assert_int_equal(
        verify_code(forge("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"typ\":\"JWT\"}", CLAIMS, keys.jwt)),
        DM_E_UNAUTHORIZED);
}

static void test_members_of_the_wrong_type_are_refused(void **state)
{
    static const char *bad[] = {
        /* a number where a string belongs, and the reverse */
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":\"3\",\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900}",
        "{\"typ\":1,\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900}",
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900,\"jti\":5}",
        /* fractions and exponents are not integers */
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3.0,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900}",
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1e10}",
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":17950009E2}",
        /* literals */
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":true,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900}",
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900,\"fam\":null}",
        /* not JSON numbers */
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":03,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900}",
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":+3,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900}",
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":-,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900}",
        /* a required member missing */
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,\"exp\":1795000900}",
        "{}",
        "[]",
        "\"member\"",
        "",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (claims_code(bad[i]) != DM_E_UNAUTHORIZED) {
            fail_msg("accepted: %s", bad[i]);
        }
    }
    /* the header's alg a string, exactly */
    assert_int_equal(verify_code(forge("{\"alg\":[\"HS256\"]}", CLAIMS, keys.jwt)),
                     DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code(forge("{\"alg\":\"HS256\",\"typ\":1}", CLAIMS, keys.jwt)),
                     DM_E_UNAUTHORIZED);
}

static void test_huge_numbers_are_refused_not_clamped(void **state)
{
    (void)state;
    /* INT64_MAX itself is a number; one more is not */
    assert_int_equal(claims_code("{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,"
                                 "\"nbf\":1795000000,\"exp\":9223372036854775807}"),
                     0);
    assert_int_equal(claims_code("{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,"
                                 "\"nbf\":1795000000,\"exp\":9223372036854775808}"),
                     DM_E_UNAUTHORIZED);
    assert_int_equal(claims_code("{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,"
                                 "\"nbf\":-9223372036854775809,\"exp\":1795000900}"),
                     DM_E_UNAUTHORIZED);
    assert_int_equal(claims_code("{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,"
                                 "\"nbf\":1795000000,\"exp\":99999999999999999999999999999}"),
                     DM_E_UNAUTHORIZED);
    /* the subject: a positive int64 written as we write it */
    assert_int_equal(claims_code("{\"typ\":\"member\",\"sub\":\"9223372036854775808\",\"ver\":3,"
                                 "\"iat\":1795000000,\"nbf\":1795000000,\"exp\":1795000900}"),
                     DM_E_UNAUTHORIZED);
    assert_int_equal(claims_code("{\"typ\":\"member\",\"sub\":\"9223372036854775807\",\"ver\":3,"
                                 "\"iat\":1795000000,\"nbf\":1795000000,\"exp\":1795000900}"),
                     0);
    static const char *subs[] = {"0", "-42", "+42", " 42", "42 ", "042", "4x2", ""};
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        const char *claims = apr_psprintf(pool,
                                          "{\"typ\":\"member\",\"sub\":\"%s\",\"ver\":3,"
                                          "\"iat\":1795000000,\"nbf\":1795000000,"
                                          "\"exp\":1795000900}",
                                          subs[i]);
        if (claims_code(claims) != DM_E_UNAUTHORIZED) {
            fail_msg("subject accepted: \"%s\"", subs[i]);
        }
    }
}

static void test_trailing_garbage_is_refused(void **state)
{
    static const char *tails[] = {"x", "}", ",", "{}", "// c", "\v", "\f"};
    (void)state;
    for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
        const char *claims = apr_pstrcat(pool, CLAIMS, tails[i], NULL);
        if (claims_code(claims) != DM_E_UNAUTHORIZED) {
            fail_msg("accepted with tail %zu", i);
        }
    }
    /* a NUL byte inside the part (the forge helper stops at one) */
    {
        static const char hdr[] = "{\"alg\":\"HS256\"}\0x";
        const char *signing = apr_pstrcat(pool, dm_b64url(pool, hdr, sizeof(hdr) - 1), ".",
                                          dm_b64url(pool, CLAIMS, strlen(CLAIMS)), NULL);
        unsigned char mac[32];
        crypto_auth_hmacsha256(mac, (const unsigned char *)signing, strlen(signing), keys.jwt);
        assert_int_equal(
            verify_code(apr_pstrcat(pool, signing, ".", dm_b64url(pool, mac, 32), NULL)),
            DM_E_UNAUTHORIZED);
    }
    /* an object not closed */
    assert_int_equal(claims_code("{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,"
                                 "\"nbf\":1795000000,\"exp\":1795000900"),
                     DM_E_UNAUTHORIZED);
    assert_int_equal(claims_code("{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,"
                                 "\"nbf\":1795000000,\"exp\":1795000900,}"),
                     DM_E_UNAUTHORIZED);
}

static void test_nested_unknown_or_escaped_members_are_refused(void **state)
{
    static const char *bad[] = {
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900,\"fam\":{\"id\":\"f\"}}",
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900,\"fam\":[\"f\"]}",
        "{\"typ\":\"member\",\"sub\":{\"n\":42},\"ver\":3,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900}",
        /* a member we never issue */
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900,\"admin\":1}",
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900,\"\":1}",
        /* escapes, even of the same text: "member", "sub" */
        "{\"typ\":\"memb\\u0065r\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,"
        "\"nbf\":1795000000,\"exp\":1795000900}",
        "{\"typ\":\"member\",\"s\\u0075b\":\"42\",\"ver\":3,\"iat\":1795000000,"
        "\"nbf\":1795000000,\"exp\":1795000900}",
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900,\"fam\":\"a\\\"b\"}",
        /* bytes outside printable ASCII in a string */
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900,\"fam\":\"caf\xc3\xa9\"}",
        "{\"typ\":\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900,\"fam\":\"a\tb\"}",
        /* single quotes, bare words */
        "{'typ':'member','sub':'42','ver':3,'iat':1795000000,'nbf':1795000000,"
        "'exp':1795000900}",
        "{typ:\"member\",\"sub\":\"42\",\"ver\":3,\"iat\":1795000000,\"nbf\":1795000000,"
        "\"exp\":1795000900}",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (claims_code(bad[i]) != DM_E_UNAUTHORIZED) {
            fail_msg("accepted: %s", bad[i]);
        }
    }
    /* the header: crit, kid, a nested object, an escaped alg */
    assert_int_equal(
        verify_code(forge("{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}", CLAIMS, keys.jwt)),
        DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code(forge("{\"alg\":\"HS256\",\"kid\":\"k1\"}", CLAIMS, keys.jwt)),
                     DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code(forge("{\"alg\":{\"v\":\"HS256\"}}", CLAIMS, keys.jwt)),
                     DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code(forge("{\"alg\":\"HS\\u00325\\u0036\"}", CLAIMS, keys.jwt)),
                     DM_E_UNAUTHORIZED);
}

/* A part has one spelling: padding, other alphabets and a last digit
 * with stray low bits (the same bytes, spelled otherwise) are refused. */
static void test_parts_spelled_otherwise_are_refused(void **state)
{
    const char *t = good_token(NOW, NOW, NOW + 900);
    size_t n = strlen(t);
    char *u = apr_pstrdup(pool, t);
    const char *b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int last;
    (void)state;
    assert_int_equal(verify_code(t), 0);
    /* 43 digits for 32 bytes: the last digit's two low bits are unused */
    last = (int)(strchr(b64, t[n - 1]) - b64);
    u[n - 1] = b64[last ^ 1];
    assert_int_equal(verify_code(u), DM_E_UNAUTHORIZED);
    u[n - 1] = b64[last ^ 2];
    assert_int_equal(verify_code(u), DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code(apr_pstrcat(pool, t, "=", NULL)), DM_E_UNAUTHORIZED);
    /* the standard alphabet's + and / are not base64url */
    u = apr_pstrdup(pool, t);
    u[2] = '+';
    assert_int_equal(verify_code(u), DM_E_UNAUTHORIZED);
    u = apr_pstrdup(pool, t);
    u[strchr(t, '.') - t + 3] = '/';
    assert_int_equal(verify_code(u), DM_E_UNAUTHORIZED);
    /* a digit more or less in the signature */
    assert_int_equal(verify_code(apr_pstrmemdup(pool, t, n - 1)), DM_E_UNAUTHORIZED);
    assert_int_equal(verify_code(apr_pstrcat(pool, t, "AA", NULL)), DM_E_UNAUTHORIZED);
}

/* Tokens of two keys verified in turn: each only under its own key. */
static void test_keys_in_turn_each_verify_only_their_tokens(void **state)
{
    dm_claims in = {"member", 42, 3, NOW, NOW, NOW + 900, "f"};
    dm_claims out;
    (void)state;
    for (int i = 0; i < 3; i++) {
        const char *a = dm_jwt_sign(pool, keys.jwt, &in);
        const char *b = dm_jwt_sign(pool, keys.token_hash, &in);
        assert_null(dm_jwt_verify(pool, keys.jwt, a, "member", NOW, 5, &out));
        assert_non_null(dm_jwt_verify(pool, keys.token_hash, a, "member", NOW, 5, &out));
        assert_null(dm_jwt_verify(pool, keys.token_hash, b, "member", NOW, 5, &out));
        assert_non_null(dm_jwt_verify(pool, keys.jwt, b, "member", NOW, 5, &out));
    }
}

/* Each refusal says what failed: tests and clients tell them apart. */
static void test_refusals_name_the_stage(void **state)
{
    dm_claims c;
    (void)state;
    assert_string_equal(dm_jwt_verify(pool, keys.jwt, "a.b", "member", NOW, 5, &c)->message,
                        "the access token is malformed");
    assert_string_equal(dm_jwt_verify(pool, keys.jwt, "abc.def.ghi", "member", NOW, 5, &c)->message,
                        "the access token's algorithm is not accepted");
    assert_string_equal(
        dm_jwt_verify(pool, keys.jwt, forge(HDR, CLAIMS, keys.token_hash), "member", NOW, 5, &c)
            ->message,
        "the access token's signature is not valid");
    assert_string_equal(dm_jwt_verify(pool, keys.jwt, forge(HDR, "{\"typ\":\"member\"}", keys.jwt),
                                      "member", NOW, 5, &c)
                            ->message,
                        "the access token's claims are not valid");
    assert_string_equal(
        dm_jwt_verify(pool, keys.jwt,
                      forge(HDR,
                            "{\"typ\":\"member\",\"sub\":\"x\",\"ver\":3,\"iat\":1795000000,"
                            "\"nbf\":1795000000,\"exp\":1795000900}",
                            keys.jwt),
                      "member", NOW, 5, &c)
            ->message,
        "the access token's subject is not valid");
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
        cmocka_unit_test(test_reordered_members_and_whitespace_are_read),
        cmocka_unit_test(test_duplicate_members_are_refused),
        cmocka_unit_test(test_members_of_the_wrong_type_are_refused),
        cmocka_unit_test(test_huge_numbers_are_refused_not_clamped),
        cmocka_unit_test(test_trailing_garbage_is_refused),
        cmocka_unit_test(test_nested_unknown_or_escaped_members_are_refused),
        cmocka_unit_test(test_refusals_name_the_stage),
        cmocka_unit_test(test_parts_spelled_otherwise_are_refused),
        cmocka_unit_test(test_keys_in_turn_each_verify_only_their_tokens),
        cmocka_unit_test(test_opaque_tokens_are_random_and_hash_stably),
        cmocka_unit_test(test_derived_keys_differ_per_purpose),
    };
    apr_initialize();
    if (sodium_init() < 0) {
        return 1;
    }
    return cmocka_run_group_tests_name("token", tests, setup, teardown);
}
