/* The rate limiter: GCRA arithmetic, the shared table, rule parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/ratelimit.h"

#define S(n) ((int64_t)(n)*1000000)
#define MIN(n) S((n)*60)
#define HOUR(n) S((n)*3600)

static apr_pool_t *pool;
static void *mem;
static const unsigned char hash_key[DM_RL_KEY_BYTES] = "0123456789abcdef";

static int setup(void **state)
{
    (void)state;
    apr_pool_create(&pool, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(mem);
    mem = NULL;
    apr_pool_destroy(pool);
    return 0;
}

/* A fresh table of `entries` in `mem`, filled with garbage first so the
 * init must not rely on zeroed memory. */
static void *make_table(unsigned entries)
{
    size_t size = dm_rl_table_size(entries);

    assert_true(size > 0);
    free(mem);
    mem = aligned_alloc(8, (size + 7) / 8 * 8);
    assert_non_null(mem);
    memset(mem, 0xa5, size);
    assert_int_equal(dm_rl_table_init(mem, size, entries, hash_key), APR_SUCCESS);
    assert_true(dm_rl_table_usable(mem, size, entries));
    return mem;
}

static void test_gcra_allows_exactly_count_in_a_burst(void **state)
{
    int64_t tat = 0, now = S(1000);
    dm_rl_result r;
    (void)state;

    for (int i = 1; i <= 5; i++) {
        r = dm_rl_gcra(&tat, 5, MIN(1), now);
        assert_int_equal(r.allowed, 1);
        assert_int_equal(r.limit, 5);
        assert_int_equal(r.remaining, 5 - i);
        assert_int_equal(r.retry_after_us, 0);
        assert_int_equal(r.reset_after_us, S(12) * i); /* one interval per hit */
    }
    r = dm_rl_gcra(&tat, 5, MIN(1), now);
    assert_int_equal(r.allowed, 0);
    assert_int_equal(r.remaining, 0);
    /* 5/1m: one hit comes back every 12 s */
    assert_int_equal(r.retry_after_us, S(12));
    assert_int_equal(r.reset_after_us, MIN(1));
}

static void test_gcra_refusal_does_not_move_the_state(void **state)
{
    int64_t tat = 0, now = S(1000), before;
    dm_rl_result r;
    (void)state;

    for (int i = 0; i < 3; i++) {
        dm_rl_gcra(&tat, 3, HOUR(1), now);
    }
    before = tat;
    for (int i = 0; i < 10; i++) {
        r = dm_rl_gcra(&tat, 3, HOUR(1), now + S(i));
        assert_int_equal(r.allowed, 0);
        assert_int_equal(r.retry_after_us, S(1200) - S(i));
    }
    assert_true(tat == before);
}

static void test_gcra_recovers_one_hit_per_emission_interval(void **state)
{
    int64_t tat = 0, now = S(1000);
    dm_rl_result r;
    (void)state;

    for (int i = 0; i < 5; i++) {
        dm_rl_gcra(&tat, 5, MIN(1), now);
    }
    r = dm_rl_gcra(&tat, 5, MIN(1), now + S(12) - 1);
    assert_int_equal(r.allowed, 0);
    assert_int_equal(r.retry_after_us, 1);
    r = dm_rl_gcra(&tat, 5, MIN(1), now + S(12));
    assert_int_equal(r.allowed, 1);
    assert_int_equal(r.remaining, 0);
    r = dm_rl_gcra(&tat, 5, MIN(1), now + S(12));
    assert_int_equal(r.allowed, 0);
    /* after a full period of quiet the whole burst is back */
    now += S(12) + MIN(1);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(dm_rl_gcra(&tat, 5, MIN(1), now).allowed, 1);
    }
    assert_int_equal(dm_rl_gcra(&tat, 5, MIN(1), now).allowed, 0);
}

static void test_gcra_never_lets_more_than_count_through_when_period_does_not_divide(void **state)
{
    /* 7 per second: the interval is not a whole number of microseconds */
    int64_t tat = 0, now = S(5);
    int allowed = 0;
    (void)state;

    for (int i = 0; i < 20; i++) {
        allowed += dm_rl_gcra(&tat, 7, S(1), now).allowed;
    }
    assert_int_equal(allowed, 7);
    /* a million per second is still exact */
    tat = 0;
    allowed = 0;
    for (int i = 0; i < 1000010; i++) {
        allowed += dm_rl_gcra(&tat, DM_RL_MAX_COUNT, S(1), now).allowed;
    }
    assert_int_equal(allowed, DM_RL_MAX_COUNT);
}

static void test_gcra_sustained_rate_matches_the_rule(void **state)
{
    /* 50/1s hit every millisecond for 10 s: 50 in the burst + 50 per second */
    int64_t tat = 0, now = S(100);
    int allowed = 0;
    (void)state;

    for (int i = 0; i < 10000; i++) {
        allowed += dm_rl_gcra(&tat, 50, S(1), now + (int64_t)i * 1000).allowed;
    }
    assert_in_range(allowed, 50 + 499, 50 + 500);
}

static void test_gcra_bad_parameters_allow_and_keep_state(void **state)
{
    int64_t tat = 77;
    (void)state;

    assert_int_equal(dm_rl_gcra(&tat, 0, S(1), S(1)).allowed, 1);
    assert_int_equal(dm_rl_gcra(&tat, 5, 0, S(1)).allowed, 1);
    assert_int_equal(dm_rl_gcra(&tat, 5, S(1), -1).allowed, 1);
    assert_int_equal(dm_rl_gcra(&tat, DM_RL_MAX_COUNT + 1, S(1), S(1)).allowed, 1);
    assert_true(tat == 77);
}

static void test_table_size_is_bounded(void **state)
{
    (void)state;
    assert_int_equal(dm_rl_table_size(DM_RL_MIN_ENTRIES - 1), 0);
    assert_int_equal(dm_rl_table_size(DM_RL_MAX_ENTRIES + 1), 0);
    assert_true(dm_rl_table_size(DM_RL_MIN_ENTRIES) > 0);
    assert_true(dm_rl_table_size(DM_RL_DEFAULT_ENTRIES) < 4 * 1024 * 1024);
}

static void test_table_init_refuses_a_block_too_small(void **state)
{
    char small[64] __attribute__((aligned(8)));
    (void)state;
    assert_int_equal(dm_rl_table_init(small, sizeof(small), DM_RL_MIN_ENTRIES, hash_key),
                     APR_EINVAL);
    assert_false(dm_rl_table_usable(small, sizeof(small), DM_RL_MIN_ENTRIES));
}

static void test_table_is_usable_only_with_the_same_size(void **state)
{
    void *t = make_table(2048);
    (void)state;
    assert_true(dm_rl_table_usable(t, dm_rl_table_size(2048), 2048));
    assert_false(dm_rl_table_usable(t, dm_rl_table_size(2048), 4096));
}

static void test_table_counts_a_burst_then_refuses(void **state)
{
    void *t = make_table(DM_RL_MIN_ENTRIES);
    dm_rl_result r;
    (void)state;

    for (int i = 1; i <= 5; i++) {
        r = dm_rl_hit(t, "login", "192.0.2.1", 5, MIN(1), S(500));
        assert_int_equal(r.allowed, 1);
        assert_int_equal(r.remaining, 5 - i);
    }
    r = dm_rl_hit(t, "login", "192.0.2.1", 5, MIN(1), S(500));
    assert_int_equal(r.allowed, 0);
    assert_int_equal(r.retry_after_us, S(12));
    assert_int_equal(dm_rl_table_used(t), 1);
    /* recovery: one more after the emission interval */
    assert_int_equal(dm_rl_hit(t, "login", "192.0.2.1", 5, MIN(1), S(512)).allowed, 1);
    assert_int_equal(dm_rl_hit(t, "login", "192.0.2.1", 5, MIN(1), S(512)).allowed, 0);
}

static void test_table_keys_and_rules_are_independent(void **state)
{
    void *t = make_table(DM_RL_MIN_ENTRIES);
    (void)state;

    assert_int_equal(dm_rl_hit(t, "login", "192.0.2.1", 1, MIN(1), S(10)).allowed, 1);
    assert_int_equal(dm_rl_hit(t, "login", "192.0.2.1", 1, MIN(1), S(10)).allowed, 0);
    /* another key, same rule */
    assert_int_equal(dm_rl_hit(t, "login", "192.0.2.2", 1, MIN(1), S(10)).allowed, 1);
    /* same key, another rule */
    assert_int_equal(dm_rl_hit(t, "register", "192.0.2.1", 1, MIN(1), S(10)).allowed, 1);
    /* "rule\0key" framing: ("log", "in1") is not ("login", "1") */
    assert_int_equal(dm_rl_hit(t, "login", "1", 1, MIN(1), S(10)).allowed, 1);
    assert_int_equal(dm_rl_hit(t, "log", "in1", 1, MIN(1), S(10)).allowed, 1);
    assert_int_equal(dm_rl_table_used(t), 5);
    /* still refused after all that */
    assert_int_equal(dm_rl_hit(t, "login", "192.0.2.1", 1, MIN(1), S(10)).allowed, 0);
}

static void test_table_tells_long_keys_apart(void **state)
{
    void *t = make_table(DM_RL_MIN_ENTRIES);
    char a[1000], b[1000];
    (void)state;

    memset(a, 'x', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(b));
    b[sizeof(b) - 2] = 'y'; /* differs only past the inline buffer */
    assert_int_equal(dm_rl_hit(t, "api", a, 1, MIN(1), S(10)).allowed, 1);
    assert_int_equal(dm_rl_hit(t, "api", b, 1, MIN(1), S(10)).allowed, 1);
    assert_int_equal(dm_rl_hit(t, "api", a, 1, MIN(1), S(10)).allowed, 0);
    assert_int_equal(dm_rl_hit(t, "api", b, 1, MIN(1), S(10)).allowed, 0);
}

static void test_full_table_evicts_the_least_recently_used_key(void **state)
{
    const unsigned n = DM_RL_MIN_ENTRIES;
    void *t = make_table(n);
    char key[32];
    (void)state;

    /* n live keys (1 per hour), key 0 the oldest */
    for (unsigned i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "10.0.%u.%u", i / 256, i % 256);
        assert_int_equal(dm_rl_hit(t, "register", key, 1, HOUR(1), S(10) + i).allowed, 1);
    }
    assert_int_equal(dm_rl_table_used(t), n);
    assert_int_equal(dm_rl_table_evictions(t), 0);
    /* key 1 is hit again (refused): now key 0 is the least recently used */
    assert_int_equal(dm_rl_hit(t, "register", "10.0.0.1", 1, HOUR(1), S(20)).allowed, 0);
    /* one more key: the table is full, key 0 goes */
    assert_int_equal(dm_rl_hit(t, "register", "newcomer", 1, HOUR(1), S(20)).allowed, 1);
    assert_int_equal(dm_rl_table_used(t), n);
    assert_int_equal(dm_rl_table_evictions(t), 1);
    /* key 1 and the newest keys kept their state */
    assert_int_equal(dm_rl_hit(t, "register", "10.0.0.1", 1, HOUR(1), S(21)).allowed, 0);
    assert_int_equal(dm_rl_hit(t, "register", "newcomer", 1, HOUR(1), S(21)).allowed, 0);
    snprintf(key, sizeof(key), "10.0.%u.%u", (n - 1) / 256, (n - 1) % 256);
    assert_int_equal(dm_rl_hit(t, "register", key, 1, HOUR(1), S(21)).allowed, 0);
    /* key 0 was forgotten: it is allowed again */
    assert_int_equal(dm_rl_hit(t, "register", "10.0.0.0", 1, HOUR(1), S(21)).allowed, 1);
    assert_int_equal(dm_rl_table_used(t), n);
}

static void test_full_table_keeps_working_under_a_flood(void **state)
{
    const unsigned n = DM_RL_MIN_ENTRIES;
    void *t = make_table(n);
    char key[32];
    (void)state;

    for (unsigned i = 0; i < 10 * n; i++) {
        snprintf(key, sizeof(key), "k%u", i);
        assert_int_equal(dm_rl_hit(t, "api", key, 2, HOUR(1), S(10)).allowed, 1);
        /* the key just added is always there */
        assert_int_equal(dm_rl_hit(t, "api", key, 2, HOUR(1), S(10)).allowed, 1);
        assert_int_equal(dm_rl_hit(t, "api", key, 2, HOUR(1), S(10)).allowed, 0);
        assert_true(dm_rl_table_used(t) <= n);
    }
    assert_int_equal(dm_rl_table_used(t), n);
    assert_int_equal(dm_rl_table_evictions(t), 9 * n);
}

static void test_expired_keys_go_before_live_ones(void **state)
{
    const unsigned n = DM_RL_MIN_ENTRIES;
    void *t = make_table(n);
    char key[32];
    (void)state;

    /* fill with short-lived keys (1 per second) */
    for (unsigned i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "old%u", i);
        dm_rl_hit(t, "webhook", key, 1, S(1), S(10));
    }
    assert_int_equal(dm_rl_table_used(t), n);
    /* a minute later they carry no state: new keys replace them, none is
     * counted as an eviction, and each hit also clears some dead ones */
    for (unsigned i = 0; i < n / 4; i++) {
        snprintf(key, sizeof(key), "new%u", i);
        assert_int_equal(dm_rl_hit(t, "webhook", key, 1, S(1), S(70)).allowed, 1);
    }
    assert_int_equal(dm_rl_table_evictions(t), 0);
    assert_true(dm_rl_table_used(t) < n);
}

static void test_a_key_whose_state_expired_starts_afresh(void **state)
{
    void *t = make_table(DM_RL_MIN_ENTRIES);
    (void)state;

    for (int i = 0; i < 3; i++) {
        dm_rl_hit(t, "password-reset", "198.51.100.7", 3, HOUR(1), S(100));
    }
    assert_int_equal(dm_rl_hit(t, "password-reset", "198.51.100.7", 3, HOUR(1), S(100)).allowed, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(
            dm_rl_hit(t, "password-reset", "198.51.100.7", 3, HOUR(1), S(100) + HOUR(1)).allowed,
            1);
    }
}

/* dm_rl_table_init_zeroed leaves the bucket array as it finds it (the
 * parent's fresh shared memory stays untouched), and on zeroed memory the
 * table counts as one laid out by dm_rl_table_init. */
static size_t bytes_left(const unsigned char *m, size_t n, unsigned char v)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        k += m[i] == v;
    }
    return k;
}

static void test_table_init_zeroed_writes_no_bucket_and_counts_the_same(void **state)
{
    size_t size = dm_rl_table_size(DM_RL_MIN_ENTRIES);
    unsigned char *a = aligned_alloc(8, (size + 7) / 8 * 8);
    unsigned char *b = aligned_alloc(8, (size + 7) / 8 * 8);
    (void)state;
    memset(a, 0x5a, size);
    memset(b, 0x5a, size);
    assert_int_equal(dm_rl_table_init(a, size, DM_RL_MIN_ENTRIES, hash_key), APR_SUCCESS);
    assert_int_equal(dm_rl_table_init_zeroed(b, size, DM_RL_MIN_ENTRIES, hash_key), APR_SUCCESS);
    /* the same header; the 1,024 buckets (4 bytes each) not written */
    assert_int_equal(bytes_left(b, size, 0x5a) - bytes_left(a, size, 0x5a),
                     DM_RL_MIN_ENTRIES * sizeof(uint32_t));
    /* on zeroed memory: the same answers as a table laid out by init */
    memset(b, 0, size);
    assert_int_equal(dm_rl_table_init_zeroed(b, size, DM_RL_MIN_ENTRIES, hash_key), APR_SUCCESS);
    assert_true(dm_rl_table_usable(b, size, DM_RL_MIN_ENTRIES));
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 300; i++) {
            char key[32];
            snprintf(key, sizeof(key), "client-%d", i);
            dm_rl_result ra = dm_rl_hit(a, "api", key, 5, 60000000LL, 1000);
            dm_rl_result rb = dm_rl_hit(b, "api", key, 5, 60000000LL, 1000);
            assert_int_equal(ra.allowed, rb.allowed);
            assert_int_equal(rb.remaining, 5 - 1 - round);
        }
    }
    assert_int_equal(dm_rl_table_used(b), 300);
    free(a);
    free(b);
}

static void test_hit_on_an_uninitialised_block_allows(void **state)
{
    uint64_t junk[64] = {0};
    (void)state;
    assert_int_equal(dm_rl_hit(junk, "login", "x", 1, S(1), S(1)).allowed, 1);
}

static void test_parse_rule_accepts_good_rules(void **state)
{
    dm_rl_rule r;
    (void)state;

    assert_null(dm_rl_parse_rule(pool, "login", "5/1m", "ip", &r));
    assert_string_equal(r.name, "login");
    assert_int_equal(r.count, 5);
    assert_int_equal(r.period_us, MIN(1));
    assert_int_equal(r.scope, DM_RL_SCOPE_IP);

    assert_null(dm_rl_parse_rule(pool, "password-reset", "3/1h", "ip", &r));
    assert_int_equal(r.period_us, HOUR(1));
    assert_null(dm_rl_parse_rule(pool, "api", "100/1m", "member", &r));
    assert_int_equal(r.scope, DM_RL_SCOPE_MEMBER);
    assert_null(dm_rl_parse_rule(pool, "webhook", "50/1s", "ip", &r));
    assert_int_equal(r.period_us, S(1));
    assert_null(dm_rl_parse_rule(pool, "a", "1000000/30s", "ip", &r));
    assert_int_equal(r.count, 1000000);
    assert_int_equal(r.period_us, S(30));
    assert_null(dm_rl_parse_rule(pool, "x-2", "1/2d", "member", &r));
    assert_int_equal(r.period_us, S(2 * 86400));
    assert_null(dm_rl_parse_rule(pool, "abcdefghijklmnopqrstuvwxyz012345", "1/366d", "ip", &r));
    assert_int_equal(r.period_us, DM_RL_MAX_PERIOD_US);
    assert_string_equal(dm_rl_scope_name(DM_RL_SCOPE_MEMBER), "member");
    assert_string_equal(dm_rl_scope_name(DM_RL_SCOPE_IP), "ip");
}

static void test_parse_rule_refuses_bad_rules_with_a_reason(void **state)
{
    static const struct {
        const char *name, *rate, *scope, *needle;
    } bad[] = {
        {"", "5/1m", "ip", "1 to 32 characters"},
        {"abcdefghijklmnopqrstuvwxyz0123456", "5/1m", "ip", "1 to 32 characters"},
        {"Login", "5/1m", "ip", "lower-case letters"},
        {"log_in", "5/1m", "ip", "lower-case letters"},
        {"login", "0/1m", "ip", "between 1 and 1000000"},
        {"login", "1000001/1m", "ip", "between 1 and 1000000"},
        {"login", "99999999999999999999/1m", "ip", "between 1 and 1000000"},
        {"login", "5", "ip", "<count>/<period>"},
        {"login", "-5/1m", "ip", "<count>/<period>"},
        {"login", "/1m", "ip", "<count>/<period>"},
        {"login", "5/m", "ip", "whole number followed by s, m, h or d"},
        {"login", "5/1", "ip", "whole number followed by s, m, h or d"},
        {"login", "5/1w", "ip", "whole number followed by s, m, h or d"},
        {"login", "5/1mm", "ip", "whole number followed by s, m, h or d"},
        {"login", "5/1m ", "ip", "whole number followed by s, m, h or d"},
        {"login", "5/0s", "ip", "at least 1s"},
        {"login", "5/367d", "ip", "longer than 366 days"},
        {"login", "5/99999999999999999999h", "ip", "longer than 366 days"},
        {"login", "5/1m", "IP", "ip or member"},
        {"login", "5/1m", "user", "ip or member"},
        {"login", "5/1m", "", "ip or member"},
    };
    dm_rl_rule r;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *err = dm_rl_parse_rule(pool, bad[i].name, bad[i].rate, bad[i].scope, &r);
        if (!err || !strstr(err, bad[i].needle)) {
            fail_msg("%s %s %s: got '%s', want '%s'", bad[i].name, bad[i].rate, bad[i].scope,
                     err ? err : "(accepted)", bad[i].needle);
        }
    }
    assert_non_null(dm_rl_parse_rule(pool, NULL, "5/1m", "ip", &r));
    assert_non_null(dm_rl_parse_rule(pool, "login", NULL, "ip", &r));
    assert_non_null(dm_rl_parse_rule(pool, "login", "5/1m", NULL, &r));
}

/* ---- the table's lock ---- */

typedef struct lock_worker {
    void *mem;
    int allowed;
} lock_worker;

static void *lock_hammer(void *arg)
{
    lock_worker *w = arg;
    for (int i = 0; i < 20000; i++) {
        dm_rl_lock(w->mem);
        dm_rl_result r = dm_rl_hit(w->mem, "api", "shared-key", 1000000, 3600000000LL, 1000);
        dm_rl_unlock(w->mem);
        w->allowed += r.allowed;
    }
    return NULL;
}

static void test_lock_serialises_threads_exactly(void **state)
{
    unsigned char key[DM_RL_KEY_BYTES] = {1};
    size_t size = dm_rl_table_size(1024);
    void *mem = aligned_alloc(8, (size + 7) / 8 * 8);
    pthread_t t[4];
    lock_worker w[4];
    int total = 0;
    (void)state;
    assert_int_equal(dm_rl_table_init(mem, size, 1024, key), APR_SUCCESS);
    for (int i = 0; i < 4; i++) {
        w[i].mem = mem;
        w[i].allowed = 0;
        pthread_create(&t[i], NULL, lock_hammer, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += w[i].allowed;
    }
    /* 80,000 hits at one instant against a burst of 1,000,000: all allowed,
     * and the next hit sees exactly 80,000 used (no lost update) */
    assert_int_equal(total, 80000);
    dm_rl_result r = dm_rl_hit(mem, "api", "shared-key", 1000000, 3600000000LL, 1000);
    assert_int_equal(r.remaining, 1000000 - 80001);
    free(mem);
}

static void test_lock_held_by_a_dead_process_is_taken_over(void **state)
{
    unsigned char key[DM_RL_KEY_BYTES] = {2};
    size_t size = dm_rl_table_size(1024);
    void *mem = aligned_alloc(8, (size + 7) / 8 * 8);
    pid_t child;
    (void)state;
    assert_int_equal(dm_rl_table_init(mem, size, 1024, key), APR_SUCCESS);
    /* a child takes the lock in its copy... and we forge the same state
     * in ours: the lock word holds a pid that has exited */
    child = fork();
    if (child == 0) {
        _exit(0);
    }
    waitpid(child, NULL, 0);
    {
        /* the lock word is the header's first field after the LRU tail;
         * take it the normal way, then overwrite the owner */
        dm_rl_lock(mem);
        uint32_t *words = mem;
        for (int i = 0; i < 16; i++) {
            if (words[i] == (uint32_t)getpid()) {
                words[i] = (uint32_t)child;
                break;
            }
        }
    }
    dm_rl_lock(mem); /* must not hang: the holder is gone */
    dm_rl_unlock(mem);
    free(mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gcra_allows_exactly_count_in_a_burst),
        cmocka_unit_test(test_gcra_refusal_does_not_move_the_state),
        cmocka_unit_test(test_gcra_recovers_one_hit_per_emission_interval),
        cmocka_unit_test(test_gcra_never_lets_more_than_count_through_when_period_does_not_divide),
        cmocka_unit_test(test_gcra_sustained_rate_matches_the_rule),
        cmocka_unit_test(test_gcra_bad_parameters_allow_and_keep_state),
        cmocka_unit_test(test_table_size_is_bounded),
        cmocka_unit_test(test_table_init_refuses_a_block_too_small),
        cmocka_unit_test_setup_teardown(test_table_is_usable_only_with_the_same_size, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_table_counts_a_burst_then_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_keys_and_rules_are_independent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_tells_long_keys_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_table_evicts_the_least_recently_used_key, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_full_table_keeps_working_under_a_flood, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_expired_keys_go_before_live_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_key_whose_state_expired_starts_afresh, setup,
                                        teardown),
        cmocka_unit_test(test_hit_on_an_uninitialised_block_allows),
        cmocka_unit_test(test_table_init_zeroed_writes_no_bucket_and_counts_the_same),
        cmocka_unit_test(test_lock_serialises_threads_exactly),
        cmocka_unit_test(test_lock_held_by_a_dead_process_is_taken_over),
        cmocka_unit_test_setup_teardown(test_parse_rule_accepts_good_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_rule_refuses_bad_rules_with_a_reason, setup,
                                        teardown),
    };
    apr_initialize();
    return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
