/* Passwords (password.h): argon2id hashing and verification, bcrypt
 * imports, rehash-on-login, the concurrency limiter, and the policy. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "members/password.h"

static apr_pool_t *pool;

/* Cheapest argon2id: these tests are about behaviour, not cost. */
static const dm_pw_params cheap = {crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN};

/* Known vectors. The $2b$ ones come from Debian's libxcrypt (Python's
 * crypt.crypt with METHOD_BLOWFISH, 16 rounds); the $2y$ one is the same
 * hash with the PHP prefix, which libxcrypt accepts as the same algorithm;
 * the $2a$ one is from Openwall's crypt_blowfish test suite. */
#define BCRYPT_2B "$2b$04$NcDy7M2LAZvHHVxiy5oWJO3dSbermf0Goel2u7G8IZ1k0rm7SH7QO"
#define BCRYPT_2Y "$2y$04$NcDy7M2LAZvHHVxiy5oWJO3dSbermf0Goel2u7G8IZ1k0rm7SH7QO"
#define BCRYPT_2B_PASSWORD "correct horse"
#define BCRYPT_2A "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"
#define BCRYPT_2A_PASSWORD "U*U"

static int setup(void **state)
{
    (void)state;
    apr_pool_create(&pool, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool);
    return 0;
}

static const char *hash_cheap(const char *password)
{
    const char *h = NULL;

    assert_null(dm_pw_hash(pool, NULL, &cheap, password, &h));
    assert_non_null(h);
    return h;
}

/* ---- hashing and verification ---- */

static void test_argon2id_hash_round_trips(void **state)
{
    const char *h = hash_cheap("correct horse battery");
    int ok = -1, rehash = -1;
    (void)state;
    assert_true(strncmp(h, "$argon2id$v=19$m=8,t=1,p=1$", 27) == 0);
    assert_null(dm_pw_verify(pool, NULL, &cheap, h, "correct horse battery", &ok, &rehash));
    assert_int_equal(ok, 1);
    assert_int_equal(rehash, 0);
}

static void test_same_password_hashes_differently_each_time(void **state)
{
    (void)state;
    assert_string_not_equal(hash_cheap("correct horse battery"),
                            hash_cheap("correct horse battery"));
}

static void test_wrong_password_does_not_match(void **state)
{
    const char *h = hash_cheap("correct horse battery");
    int ok = -1, rehash = -1;
    (void)state;
    assert_null(dm_pw_verify(pool, NULL, &cheap, h, "correct horse batterY", &ok, &rehash));
    assert_int_equal(ok, 0);
    assert_int_equal(rehash, 0);
    assert_null(dm_pw_verify(pool, NULL, &cheap, h, "", &ok, &rehash));
    assert_int_equal(ok, 0);
}

static void test_default_params_are_libsodium_interactive(void **state)
{
    const dm_pw_params unset = {0, 0};
    const char *h = NULL;
    int ok = -1, rehash = -1;
    (void)state;
    assert_null(dm_pw_hash(pool, NULL, &unset, "correct horse battery", &h));
    assert_true(strncmp(h, "$argon2id$v=19$m=65536,t=2,p=1$", 31) == 0);
    assert_null(dm_pw_hash(pool, NULL, NULL, "correct horse battery", &h));
    assert_true(strncmp(h, "$argon2id$v=19$m=65536,t=2,p=1$", 31) == 0);
    /* a cheap hash verified under the defaults must be upgraded */
    assert_null(dm_pw_verify(pool, NULL, NULL, hash_cheap("correct horse battery"),
                             "correct horse battery", &ok, &rehash));
    assert_int_equal(ok, 1);
    assert_int_equal(rehash, 1);
}

static void test_argon2id_with_other_params_needs_rehash(void **state)
{
    const dm_pw_params more_ops = {cheap.opslimit + 1, cheap.memlimit};
    const dm_pw_params more_mem = {cheap.opslimit, cheap.memlimit * 2};
    const char *h = hash_cheap("correct horse battery");
    int ok = -1, rehash = -1;
    (void)state;
    assert_null(dm_pw_verify(pool, NULL, &more_ops, h, "correct horse battery", &ok, &rehash));
    assert_int_equal(ok, 1);
    assert_int_equal(rehash, 1);
    assert_null(dm_pw_verify(pool, NULL, &more_mem, h, "correct horse battery", &ok, &rehash));
    assert_int_equal(ok, 1);
    assert_int_equal(rehash, 1);
    /* a wrong password never asks for a rehash: the caller could not do one */
    assert_null(dm_pw_verify(pool, NULL, &more_ops, h, "wrong horse battery", &ok, &rehash));
    assert_int_equal(ok, 0);
    assert_int_equal(rehash, 0);
}

static void expect_verify(const char *stored, const char *password, int want_ok, int want_rehash)
{
    int ok = -1, rehash = -1;

    assert_null(dm_pw_verify(pool, NULL, &cheap, stored, password, &ok, &rehash));
    if (ok != want_ok || rehash != want_rehash) {
        fail_msg("verify(\"%s\", \"%s\"): ok %d rehash %d, want %d %d", stored ? stored : "(null)",
                 password, ok, rehash, want_ok, want_rehash);
    }
}

static void test_bcrypt_2b_and_2y_verify_and_need_rehash(void **state)
{
    (void)state;
    expect_verify(BCRYPT_2B, BCRYPT_2B_PASSWORD, 1, 1);
    expect_verify(BCRYPT_2Y, BCRYPT_2B_PASSWORD, 1, 1);
    expect_verify(BCRYPT_2B, "Correct horse", 0, 0);
    expect_verify(BCRYPT_2Y, "correct horse ", 0, 0);
}

static void test_bcrypt_2a_verifies_against_openwall_vector(void **state)
{
    (void)state;
    expect_verify(BCRYPT_2A, BCRYPT_2A_PASSWORD, 1, 1);
    expect_verify(BCRYPT_2A, "U*V", 0, 0);
}

static void test_malformed_or_unknown_hash_is_a_mismatch_not_an_error(void **state)
{
    const char *h = hash_cheap("correct horse battery");
    const char *cut = apr_pstrndup(pool, h, strlen(h) - 1);
    const char *md5 = "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/"; /* md5crypt: never accepted */
    (void)state;
    expect_verify(NULL, "correct horse battery", 0, 0);
    expect_verify("", "correct horse battery", 0, 0);
    expect_verify("correct horse battery", "correct horse battery", 0, 0); /* plain text */
    expect_verify(cut, "correct horse battery", 0, 0);
    expect_verify(apr_pstrcat(pool, h, "x", NULL), "correct horse battery", 0, 0);
    expect_verify("$argon2id$v=19$m=8,t=1,p=1$garbage", "correct horse battery", 0, 0);
    expect_verify("$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA", "x", 0, 0);
    expect_verify("$2b$04$short", BCRYPT_2B_PASSWORD, 0, 0);
    expect_verify("$2b$", BCRYPT_2B_PASSWORD, 0, 0);
    expect_verify("$2b$99$NcDy7M2LAZvHHVxiy5oWJO3dSbermf0Goel2u7G8IZ1k0rm7SH7QO",
                  BCRYPT_2B_PASSWORD, 0, 0);
    expect_verify("$2x$04$NcDy7M2LAZvHHVxiy5oWJO3dSbermf0Goel2u7G8IZ1k0rm7SH7QO",
                  BCRYPT_2B_PASSWORD, 0, 0);
    expect_verify(md5, "password", 0, 0);
    {
        char *longer = apr_pcalloc(pool, 201);
        memcpy(longer, h, strlen(h));
        memset(longer + strlen(h), 'A', 200 - strlen(h));
        expect_verify(longer, "correct horse battery", 0, 0); /* over crypto_pwhash_STRBYTES */
    }
}

static void test_dummy_verify_runs_and_reports_no_error(void **state)
{
    (void)state;
    assert_null(dm_pw_verify_dummy(pool, NULL, &cheap, "any password"));
    assert_null(dm_pw_verify_dummy(pool, NULL, &cheap, ""));
    /* other parameters: the dummy hash is remade for them */
    assert_null(dm_pw_verify_dummy(pool, NULL, &(dm_pw_params){2, 16384}, "any password"));
}

/* ---- the limiter ---- */

typedef struct slow_job {
    dm_pw_limiter *lim;
    dm_err *err;
    apr_time_t started, finished;
    volatile int done;
} slow_job;

/* ~150 ms here (3x the 50 ms wait): 16 MiB, 24 passes. */
static const dm_pw_params slow = {24, 16u << 20};

static void *slow_hash(void *arg)
{
    slow_job *j = arg;
    apr_pool_t *p;
    const char *h = NULL;

    apr_pool_create(&p, NULL);
    j->started = apr_time_now();
    j->err = dm_pw_hash(p, j->lim, &slow, "a slow one", &h);
    j->finished = apr_time_now();
    __atomic_store_n(&j->done, 1, __ATOMIC_SEQ_CST);
    apr_pool_destroy(p);
    return NULL;
}

static void test_limiter_refuses_a_second_hash_while_the_first_holds_the_only_slot(void **state)
{
    dm_pw_limiter *lim = NULL;
    slow_job job = {0};
    pthread_t t;
    dm_err *e = NULL;
    apr_time_t t0 = 0, t1 = 0;
    (void)state;
    assert_null(dm_pw_limiter_create(pool, 1, 50, &lim));
    job.lim = lim;
    assert_int_equal(pthread_create(&t, NULL, slow_hash, &job), 0);
    /* Until the slow thread holds the slot our cheap hash gets through
     * (and proves nothing); once it does, we are turned away after 50 ms. */
    while (!__atomic_load_n(&job.done, __ATOMIC_SEQ_CST)) {
        const char *h = NULL;
        t0 = apr_time_now();
        e = dm_pw_hash(pool, lim, &cheap, "the second one", &h);
        t1 = apr_time_now();
        if (e) {
            break;
        }
        apr_sleep(apr_time_from_msec(5));
    }
    pthread_join(t, NULL);
    assert_null(job.err);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_UNAVAILABLE);
    assert_string_equal(e->message, "too many password checks at once, try again");
    assert_true(t1 - t0 >= apr_time_from_msec(50));
    assert_true(t0 < job.finished); /* refused while the first was still running */
    /* verification and the dummy share the cap */
    {
        int ok = -1, rehash = -1;
        job.done = 0;
        assert_int_equal(pthread_create(&t, NULL, slow_hash, &job), 0);
        e = NULL;
        while (!__atomic_load_n(&job.done, __ATOMIC_SEQ_CST) && !e) {
            e = dm_pw_verify(pool, lim, &cheap, BCRYPT_2B, BCRYPT_2B_PASSWORD, &ok, &rehash);
            if (!e) {
                apr_sleep(apr_time_from_msec(5));
            }
        }
        pthread_join(t, NULL);
        assert_non_null(e);
        assert_int_equal(e->code, DM_E_UNAVAILABLE);
        assert_int_equal(ok, 0);
    }
    /* the slot is free again */
    assert_null(dm_pw_verify_dummy(pool, lim, &cheap, "x"));
    assert_string_not_equal(hash_cheap("x"), "");
}

static void test_limiter_lets_a_waiter_in_when_a_slot_frees_in_time(void **state)
{
    dm_pw_limiter *lim = NULL;
    slow_job job = {0};
    pthread_t t;
    dm_err *e = NULL;
    apr_interval_time_t waited = 0;
    (void)state;
    assert_null(dm_pw_limiter_create(pool, 1, 10000, &lim));
    job.lim = lim;
    assert_int_equal(pthread_create(&t, NULL, slow_hash, &job), 0);
    /* A cheap hash takes well under a millisecond; one that took 20 ms or
     * more waited for the slow thread's slot, and must still succeed. */
    while (!__atomic_load_n(&job.done, __ATOMIC_SEQ_CST)) {
        const char *h = NULL;
        apr_time_t t0 = apr_time_now();
        e = dm_pw_hash(pool, lim, &cheap, "the second one", &h);
        waited = apr_time_now() - t0;
        if (e || waited >= apr_time_from_msec(20)) {
            break;
        }
        apr_sleep(apr_time_from_msec(5));
    }
    pthread_join(t, NULL);
    assert_null(job.err);
    assert_null(e);
    assert_true(waited >= apr_time_from_msec(20));
}

static void test_limiter_with_two_slots_runs_two_at_once(void **state)
{
    dm_pw_limiter *lim = NULL;
    slow_job a = {0}, b = {0};
    pthread_t ta, tb;
    (void)state;
    assert_null(dm_pw_limiter_create(pool, 2, 0, &lim));
    a.lim = b.lim = lim;
    assert_int_equal(pthread_create(&ta, NULL, slow_hash, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, slow_hash, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    /* no waiting allowed, yet neither was refused */
    assert_null(a.err);
    assert_null(b.err);
}

static void test_limiter_needs_at_least_one_slot(void **state)
{
    dm_pw_limiter *lim = NULL;
    (void)state;
    assert_non_null(dm_pw_limiter_create(pool, 0, 50, &lim));
    assert_non_null(dm_pw_limiter_create(pool, 1, -1, &lim));
    assert_null(lim);
}

/* ---- the policy ---- */

static void policy_ok(const char *password, const char *email)
{
    dm_err *e = dm_pw_policy_check(pool, password, email);

    if (e) {
        fail_msg("\"%s\" refused: %s", password, e->message);
    }
}

static void policy_bad(const char *password, const char *email, const char *words)
{
    dm_err *e = dm_pw_policy_check(pool, password, email);

    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "password");
    if (!strstr(e->message, words)) {
        fail_msg("\"%s\": message \"%s\" does not contain \"%s\"", password, e->message, words);
    }
}

static void test_policy_needs_10_characters(void **state)
{
    (void)state;
    policy_bad("Kx7#mP2qZ", "jane@example.com", "at least 10 characters");
    policy_ok("Kx7#mP2qZw", "jane@example.com");
    policy_bad("", "jane@example.com", "required");
    policy_bad(NULL, "jane@example.com", "required");
}

static void test_policy_counts_code_points_for_the_minimum(void **state)
{
    (void)state;
    /* 9 code points in 18 bytes: too short */
    policy_bad("\xc3\x84\xc3\xb6\xc3\x9f\xc3\xa9\xc3\xa8\xc3\xaa\xc3\xb1\xc3\xa7\xc3\xb8", NULL,
               "at least 10 characters");
}

static void test_policy_allows_at_most_128_bytes(void **state)
{
    char pw[130];
    (void)state;
    /* not systematic, so libpwquality has nothing to say about it */
    for (int i = 0; i < 129; i++) {
        pw[i] = "Kx7#mP2qZw-Tr0ub4d&r!"[(i * 7 + i / 21) % 21];
    }
    pw[128] = '\0';
    policy_ok(pw, "jane@example.com");
    pw[128] = 'y';
    pw[129] = '\0';
    policy_bad(pw, "jane@example.com", "at most 128 bytes");
    /* bytes, not characters: 65 two-byte characters are 130 bytes */
    {
        const char *s = "";
        for (int i = 0; i < 65; i++) {
            s = apr_pstrcat(pool, s, "\xc3\xa9", NULL);
        }
        policy_bad(s, NULL, "at most 128 bytes");
    }
    {
        char *big = apr_palloc(pool, 10241);
        memset(big, 'k', 10240);
        big[10240] = '\0';
        policy_bad(big, NULL, "at most 128 bytes");
    }
}

static void test_policy_refuses_the_email_local_part_in_any_case(void **state)
{
    (void)state;
    policy_bad("xyJohn.Doeq7#2", "john.doe@example.com", "before the @");
    policy_bad("JOHN.DOE-wq7#2", "john.doe@example.com", "before the @");
    policy_bad("Kx7#john.doe", "John.Doe@example.com", "before the @");
    policy_bad("Kx7#jane doe!", "\"Jane Doe\"@example.com", "before the @");
    /* the domain is not the local part */
    policy_ok("example.com-Kx7#mP2q", "jd@example.com");
    /* a local part under 3 characters is not looked for */
    policy_ok("Kx7#jdmP2qZw", "jd@example.com");
}

static void test_policy_refuses_dictionary_words_with_libpwquality_reason(void **state)
{
    dm_err *e = dm_pw_policy_check(pool, "password12", "jane@example.com");
    (void)state;
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "password");
    assert_string_equal(
        e->message, "The password fails the dictionary check - it is based on a dictionary word");
    policy_bad("qwertyuiop", NULL, "dictionary check");
    policy_bad("1234567890", NULL, "dictionary check");
    policy_bad("aaaaaaaaaa", NULL, "palindrome");
}

static void test_policy_refuses_controls_nul_and_invalid_utf8(void **state)
{
    (void)state;
    policy_bad("Kx7#mP2qZw\x01", NULL, "control characters");
    policy_bad("Kx7#mP2\tqZw", NULL, "control characters");
    policy_bad("Kx7#mP2qZw\n", NULL, "control characters");
    policy_bad("Kx7#mP2qZw\x7f", NULL, "control characters");
    policy_bad("Kx7#mP2qZw\xc2\x85", NULL, "control characters"); /* U+0085 */
    policy_bad("Kx7#mP2qZw\xc0\xaf", NULL, "UTF-8");
    policy_bad("Kx7#mP2qZw\xed\xa0\x80", NULL, "UTF-8");
    policy_bad("Kx7#mP2qZw\xe2\x82", NULL, "UTF-8");
    policy_bad("Kx7#mP2qZw\xff", NULL, "UTF-8");
    /* A C string ends at NUL (the JSON layer refuses \u0000 before this):
     * what follows a NUL is never part of the password. */
    policy_bad("Kx7#m\0P2qZw-Tr0ub4", NULL, "at least 10 characters");
}

static void test_policy_accepts_non_ascii_passwords(void **state)
{
    (void)state;
    policy_ok("Gr\xc3\xbc\xc3\x9f"
              "e-7#K\xc3\xa4se-x9",
              "jane@example.com"); /* Grüße-7#Käse-x9 */
}

typedef struct policy_job {
    int wrong;
} policy_job;

static void *policy_many(void *arg)
{
    policy_job *j = arg;
    apr_pool_t *p;

    apr_pool_create(&p, NULL);
    for (int i = 0; i < 40; i++) {
        dm_err *good = dm_pw_policy_check(p, "Kx7#mP2qZw-Tr0ub4", "jane@example.com");
        dm_err *bad = dm_pw_policy_check(p, "password12", "jane@example.com");
        if (good || !bad || !strstr(bad->message, "dictionary word")) {
            j->wrong++;
        }
    }
    apr_pool_destroy(p);
    return NULL;
}

/* cracklib keeps its open dictionary in a static: unserialised, this
 * crashes or answers "error loading dictionary". */
static void test_policy_checks_from_many_threads_at_once_give_right_answers(void **state)
{
    pthread_t t[4];
    policy_job jobs[4] = {{0}};
    (void)state;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, policy_many, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(jobs[i].wrong, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argon2id_hash_round_trips),
        cmocka_unit_test(test_same_password_hashes_differently_each_time),
        cmocka_unit_test(test_wrong_password_does_not_match),
        cmocka_unit_test(test_default_params_are_libsodium_interactive),
        cmocka_unit_test(test_argon2id_with_other_params_needs_rehash),
        cmocka_unit_test(test_bcrypt_2b_and_2y_verify_and_need_rehash),
        cmocka_unit_test(test_bcrypt_2a_verifies_against_openwall_vector),
        cmocka_unit_test(test_malformed_or_unknown_hash_is_a_mismatch_not_an_error),
        cmocka_unit_test(test_dummy_verify_runs_and_reports_no_error),
        cmocka_unit_test(test_limiter_refuses_a_second_hash_while_the_first_holds_the_only_slot),
        cmocka_unit_test(test_limiter_lets_a_waiter_in_when_a_slot_frees_in_time),
        cmocka_unit_test(test_limiter_with_two_slots_runs_two_at_once),
        cmocka_unit_test(test_limiter_needs_at_least_one_slot),
        cmocka_unit_test(test_policy_needs_10_characters),
        cmocka_unit_test(test_policy_counts_code_points_for_the_minimum),
        cmocka_unit_test(test_policy_allows_at_most_128_bytes),
        cmocka_unit_test(test_policy_refuses_the_email_local_part_in_any_case),
        cmocka_unit_test(test_policy_refuses_dictionary_words_with_libpwquality_reason),
        cmocka_unit_test(test_policy_refuses_controls_nul_and_invalid_utf8),
        cmocka_unit_test(test_policy_accepts_non_ascii_passwords),
        cmocka_unit_test(test_policy_checks_from_many_threads_at_once_give_right_answers),
    };
    apr_initialize();
    if (sodium_init() < 0) {
        return 1;
    }
    return cmocka_run_group_tests_name("password", tests, setup, teardown);
}
