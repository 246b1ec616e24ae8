/* TOTP arithmetic (RFC 6238's SHA-1 test vectors, RFC 4226's HOTP
 * values), base32 (RFC 4648 vectors), the window and replay rule, and the
 * enrolment rows of members/twofa.h: the secret sealed at rest, a code good
 * once, recovery codes good once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/token.h"
#include "base/totp.h"
#include "members/twofa.h"
#include "fixture.h"

static apr_pool_t *pool;
static const unsigned char RFC_KEY[] = "12345678901234567890";
#define RFC_KEY_LEN 20

static void test_rfc6238_sha1_vectors(void **state)
{
    static const struct {
        int64_t t;
        long code;
    } v[] = {
        {59, 94287082},         {1111111109, 7081804},  {1111111111, 14050471},
        {1234567890, 89005924}, {2000000000, 69279037}, {20000000000LL, 65353130},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        assert_int_equal(dm_totp_code(RFC_KEY, RFC_KEY_LEN, dm_totp_step(v[i].t), 8), v[i].code);
        /* six digits are the last six of the same value */
        assert_int_equal(dm_totp_code(RFC_KEY, RFC_KEY_LEN, dm_totp_step(v[i].t), 6),
                         v[i].code % 1000000);
    }
}

static void test_rfc4226_hotp_values(void **state)
{
    static const long want[] = {755224, 287082, 359152, 969429, 338314,
                                254676, 287922, 162583, 399871, 520489};
    (void)state;

    for (int c = 0; c < 10; c++) {
        assert_int_equal(dm_totp_code(RFC_KEY, RFC_KEY_LEN, c, 6), want[c]);
    }
    assert_int_equal(dm_totp_code(RFC_KEY, RFC_KEY_LEN, 1, 5), -1);
    assert_int_equal(dm_totp_code(RFC_KEY, RFC_KEY_LEN, 1, 9), -1);
    assert_int_equal(dm_totp_code(RFC_KEY, 0, 1, 6), -1);
}

static void test_step_is_thirty_seconds(void **state)
{
    (void)state;
    assert_int_equal(dm_totp_step(0), 0);
    assert_int_equal(dm_totp_step(29), 0);
    assert_int_equal(dm_totp_step(30), 1);
    assert_int_equal(dm_totp_step(59), 1);
    assert_int_equal(dm_totp_step(-5), 0);
}

static void test_well_formed_is_exactly_six_digits(void **state)
{
    (void)state;
    assert_true(dm_totp_well_formed("012345"));
    assert_false(dm_totp_well_formed("12345"));
    assert_false(dm_totp_well_formed("1234567"));
    assert_false(dm_totp_well_formed("12345a"));
    assert_false(dm_totp_well_formed(" 12345"));
    assert_false(dm_totp_well_formed(""));
    assert_false(dm_totp_well_formed(NULL));
}

static const char *code_at(int64_t t)
{
    return apr_psprintf(pool, "%06ld", dm_totp_code(RFC_KEY, RFC_KEY_LEN, dm_totp_step(t), 6));
}

static void test_match_one_step_either_side_and_later_than_the_last(void **state)
{
    const int64_t now = 1111111109; /* step 37037036 */
    const int64_t step = dm_totp_step(now);
    (void)state;

    assert_int_equal(dm_totp_match(RFC_KEY, RFC_KEY_LEN, code_at(now), now, 1, 0), step);
    assert_int_equal(dm_totp_match(RFC_KEY, RFC_KEY_LEN, code_at(now - 30), now, 1, 0), step - 1);
    assert_int_equal(dm_totp_match(RFC_KEY, RFC_KEY_LEN, code_at(now + 30), now, 1, 0), step + 1);
    assert_int_equal(dm_totp_match(RFC_KEY, RFC_KEY_LEN, code_at(now - 60), now, 1, 0), 0);
    assert_int_equal(dm_totp_match(RFC_KEY, RFC_KEY_LEN, code_at(now + 60), now, 1, 0), 0);
    /* replay: a step not later than the last used one does not count */
    assert_int_equal(dm_totp_match(RFC_KEY, RFC_KEY_LEN, code_at(now), now, 1, step), 0);
    assert_int_equal(dm_totp_match(RFC_KEY, RFC_KEY_LEN, code_at(now + 30), now, 1, step),
                     step + 1);
    /* 5 and 7 digits never match, even as a prefix or with a leading 0 */
    assert_int_equal(dm_totp_match(RFC_KEY, RFC_KEY_LEN, "81804", now, 1, 0), 0);
    assert_int_equal(
        dm_totp_match(RFC_KEY, RFC_KEY_LEN, apr_pstrcat(pool, "0", code_at(now), NULL), now, 1, 0),
        0);
}

static void test_base32_rfc4648_vectors(void **state)
{
    static const char *const v[][2] = {{"", ""},
                                       {"f", "MY"},
                                       {"fo", "MZXQ"},
                                       {"foo", "MZXW6"},
                                       {"foob", "MZXW6YQ"},
                                       {"fooba", "MZXW6YTB"},
                                       {"foobar", "MZXW6YTBOI"}};
    (void)state;

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        unsigned char *out = NULL;
        size_t len = 99;
        assert_string_equal(dm_base32_encode(pool, (const unsigned char *)v[i][0], strlen(v[i][0])),
                            v[i][1]);
        assert_int_equal(dm_base32_decode(pool, v[i][1], &out, &len), 0);
        assert_int_equal(len, strlen(v[i][0]));
        assert_memory_equal(out, v[i][0], len);
    }
    /* RFC 6238's key as authenticator apps take it */
    assert_string_equal(dm_base32_encode(pool, RFC_KEY, RFC_KEY_LEN),
                        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
}

static void test_base32_decode_is_lenient_on_case_and_padding_strict_elsewhere(void **state)
{
    unsigned char *out = NULL;
    size_t len = 0;
    (void)state;

    assert_int_equal(dm_base32_decode(pool, "mzxw6ytboi", &out, &len), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(out, "foobar", 6);
    assert_int_equal(dm_base32_decode(pool, "MZXW6YQ=", &out, &len), 0);
    assert_int_equal(len, 4);
    assert_int_equal(dm_base32_decode(pool, "MZXW 6YTB-OI", &out, &len), 0);
    assert_int_equal(len, 6);
    assert_int_equal(dm_base32_decode(pool, "MZXW1", &out, &len), -1); /* 1 is not base32 */
    assert_int_equal(dm_base32_decode(pool, "MZXW8", &out, &len), -1);
    assert_int_equal(dm_base32_decode(pool, "MZ", &out, &len), -1);  /* trailing bits set */
    assert_int_equal(dm_base32_decode(pool, "MZX", &out, &len), -1); /* not a whole length */
    assert_int_equal(dm_base32_decode(pool, NULL, &out, &len), -1);
}

/* ---- the enrolment rows ---- */

static const char *clock_path;

static void set_clock(int64_t t)
{
    FILE *f = fopen(clock_path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", dm_json_time(pool, t));
    fclose(f);
}

static void test_enrolment_seals_the_secret_and_codes_work_once(void **state)
{
    unsigned char master[32], *secret = NULL;
    size_t len = 0;
    dm_keys keys;
    dm_db *db;
    const char *b32 = NULL, *uri = NULL, *code;
    apr_array_header_t *codes = NULL;
    dm_2fa_state st;
    int used = 0;
    int64_t t = 2000000000;
    dm_err *e;
    (void)state;

    memset(master, 9, sizeof(master));
    dm_keys_derive(master, &keys);
    clock_path = apr_psprintf(pool, "%s/clock", dm_fx_dir());
    assert_int_equal(dm_clock_use_file(clock_path), 0);
    set_clock(t);
    db = dm_fx_db(pool);

    assert_null(dm_2fa_setup(db, pool, &keys, DM_2FA_MEMBER, 7, "ada@example.com", &b32, &uri));
    assert_string_equal(uri, apr_psprintf(pool,
                                          "otpauth://totp/DeepMine%%3Aada%%40example.com?secret=%s"
                                          "&issuer=DeepMine&algorithm=SHA1&digits=6&period=30",
                                          b32));
    assert_int_equal(dm_base32_decode(pool, b32, &secret, &len), 0);
    assert_int_equal(len, DM_TOTP_SECRET_BYTES);
    code = apr_psprintf(pool, "%06ld", dm_totp_code(secret, len, dm_totp_step(t), 6));

    assert_null(dm_db_begin(db, pool));
    e = dm_2fa_enable(db, pool, &keys, DM_2FA_MEMBER, 7, "12345", &codes);
    assert_int_equal(e->code, DM_E_INVALID_CODE);
    assert_null(dm_2fa_enable(db, pool, &keys, DM_2FA_MEMBER, 7, code, &codes));
    assert_null(dm_db_commit(db, pool));
    assert_int_equal(codes->nelts, DM_2FA_RECOVERY_CODES);

    assert_null(dm_2fa_state_get(db, pool, DM_2FA_MEMBER, 7, &st));
    assert_true(st.enabled);
    assert_int_equal(st.recovery_left, 10);
    /* another account's enrolment is not this one */
    assert_null(dm_2fa_state_get(db, pool, DM_2FA_STAFF, 7, &st));
    assert_false(st.enabled);

    assert_null(dm_db_begin(db, pool));
    /* the enrolment spent this step's code */
    e = dm_2fa_verify(db, pool, &keys, DM_2FA_MEMBER, 7, code, 1, &used);
    assert_int_equal(e->code, DM_E_INVALID_CODE);
    set_clock(t + 30);
    code = apr_psprintf(pool, "%06ld", dm_totp_code(secret, len, dm_totp_step(t + 30), 6));
    assert_null(dm_2fa_verify(db, pool, &keys, DM_2FA_MEMBER, 7, code, 1, &used));
    assert_int_equal(used, 0);
    e = dm_2fa_verify(db, pool, &keys, DM_2FA_MEMBER, 7, code, 1, &used);
    assert_int_equal(e->code, DM_E_INVALID_CODE);
    /* a recovery code, once; not where recovery is not allowed */
    e = dm_2fa_verify(db, pool, &keys, DM_2FA_MEMBER, 7, APR_ARRAY_IDX(codes, 0, const char *), 0,
                      &used);
    assert_int_equal(e->code, DM_E_INVALID_CODE);
    assert_null(dm_2fa_verify(db, pool, &keys, DM_2FA_MEMBER, 7,
                              APR_ARRAY_IDX(codes, 0, const char *), 1, &used));
    assert_int_equal(used, 1);
    e = dm_2fa_verify(db, pool, &keys, DM_2FA_MEMBER, 7, APR_ARRAY_IDX(codes, 0, const char *), 1,
                      &used);
    assert_int_equal(e->code, DM_E_INVALID_CODE);
    assert_null(dm_db_commit(db, pool));

    /* sealed: the stored text is neither the secret nor its base32, and a
     * sealed secret moved to another account does not open there */
    {
        dm_stmt *q;
        int row = 0;
        const char *sealed;
        assert_null(dm_db_prepare(
            db, pool, "SELECT secret_enc FROM twofa WHERE subject = 'member' AND owner_id = 7",
            &q));
        assert_null(dm_stmt_step(q, pool, &row));
        sealed = apr_pstrdup(pool, dm_stmt_text(q, 0, NULL));
        dm_stmt_done(q);
        assert_null(strstr(sealed, b32));
        assert_null(dm_db_exec(db, pool,
                               apr_psprintf(pool,
                                            "INSERT INTO twofa (subject, owner_id, secret_enc, "
                                            "enabled_at) VALUES ('member', 8, '%s', 1)",
                                            sealed)));
        assert_null(dm_db_begin(db, pool));
        set_clock(t + 60);
        code = apr_psprintf(pool, "%06ld", dm_totp_code(secret, len, dm_totp_step(t + 60), 6));
        e = dm_2fa_verify(db, pool, &keys, DM_2FA_MEMBER, 8, code, 1, &used);
        assert_int_equal(e->code, DM_E_INTERNAL);
        dm_db_rollback(db);
    }
    dm_clock_use_file(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc6238_sha1_vectors),
        cmocka_unit_test(test_rfc4226_hotp_values),
        cmocka_unit_test(test_step_is_thirty_seconds),
        cmocka_unit_test(test_well_formed_is_exactly_six_digits),
        cmocka_unit_test(test_match_one_step_either_side_and_later_than_the_last),
        cmocka_unit_test(test_base32_rfc4648_vectors),
        cmocka_unit_test(test_base32_decode_is_lenient_on_case_and_padding_strict_elsewhere),
        cmocka_unit_test(test_enrolment_seals_the_secret_and_codes_work_once),
    };
    int rc;

    apr_initialize();
    if (sodium_init() < 0) {
        return 1;
    }
    apr_pool_create(&pool, NULL);
    if (dm_fx_init("totp") != 0) {
        return 1;
    }
    rc = cmocka_run_group_tests_name("totp", tests, NULL, NULL);
    apr_pool_destroy(pool);
    if (dm_fx_done() != 0) {
        return 1;
    }
    return rc;
}
