/* The hot read answers written with the direct writer (GET /api/me's user,
 * GET /api/referrals/network) are byte for byte what the jansson trees
 * they replaced dump to, for every kind of value they can hold. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "ledger/ledger.h"
#include "members/members.h"
#include "referral/referral.h"

static apr_pool_t *pool;

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

static void assert_member_bytes(const dm_services *s, const dm_member *m)
{
    dm_jbuf b;
    const char *want = dm_json_dump(pool, dm_json_own(pool, dm_member_json(pool, s, m)), NULL);

    dm_jbuf_init(&b, pool, 8);
    dm_member_write(&b, s, m);
    assert_string_equal(b.p, want);
    assert_int_equal(strlen(b.p), b.len);
}

static void test_member_write_is_the_dump_of_member_json(void **state)
{
    dm_legal legal;
    dm_services with = {0}, without = {0};
    dm_member m = {0};
    (void)state;
    memset(&legal, 0, sizeof(legal));
    legal.terms.version = "2026-11-01";
    with.legal = &legal;

    m.id = 45000;
    m.email = "gen45000@example.test";
    m.name = NULL;
    m.referral_code = "ATNQDMGK";
    m.vip_level = 1;
    m.status = "active";
    m.kyc_status = "none";
    m.terms_version = "generated";
    m.created_at = 1795000000;
    assert_member_bytes(&with, &m);
    assert_member_bytes(&without, &m);

    /* every field set, at its edges: a name with quotes, a backslash,
     * control characters and non-ASCII text; a debt; the current terms */
    m.id = INT64_MAX;
    m.name = "Zo\xc3\xab \"Z\" O'Neil \\ \t\x01\x1f \xe2\x82\xac \xf0\x9f\x98\x80 </script>";
    m.email = "a.b+c@example.test";
    m.vip_level = 10;
    m.balance_micros = -1234567;
    m.held_micros = INT64_MAX;
    m.email_verified_at = 1795000001;
    m.kyc_status = "approved";
    m.status = "suspended";
    m.terms_version = "2026-11-01";
    m.created_at = 0;
    assert_member_bytes(&with, &m);
    m.balance_micros = INT64_MIN;
    m.created_at = 253402300799; /* 9999-12-31T23:59:59Z */
    m.name = "";
    assert_member_bytes(&with, &m);
}

static void test_network_write_is_the_dump_of_the_tree(void **state)
{
    static const dm_network nets[] = {
        {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0},
        {{13, 73, 273, 743, 1677, 3194, 5153, 7182, 8788, 9309}, 93615},
        {{INT64_MAX, 1, 0, 0, 0, 0, 0, 0, 0, INT64_MIN}, INT64_MAX},
    };
    (void)state;
    for (size_t k = 0; k < sizeof(nets) / sizeof(nets[0]); k++) {
        const dm_network *n = &nets[k];
        json_t *levels = json_array();
        dm_jbuf b;
        for (int i = 0; i < DM_REFERRAL_LEVELS; i++) {
            json_array_append_new(levels, json_integer(n->levels[i]));
        }
        dm_jbuf_init(&b, pool, 8);
        dm_referral_network_write(&b, n);
        assert_string_equal(
            b.p, dm_json_dump(pool,
                              dm_json_own(pool, json_pack("{s:I,s:I,s:o}", "direct",
                                                          (json_int_t)n->levels[0], "total",
                                                          (json_int_t)n->total, "levels", levels)),
                              NULL));
    }
}

/* The ledger's page written into malloc's memory (p NULL, handed over to
 * the answer) is the same bytes as in a pool, also when it grows past its
 * estimate of 160 bytes a line many times over (realloc). */
static void test_statement_page_in_malloc_is_the_pool_bytes(void **state)
{
    apr_array_header_t *lines = apr_array_make(pool, 4, sizeof(dm_statement_line));
    (void)state;
    for (int n = 0; n <= 120; n += 40) {
        for (int64_t next = 0; next <= 7; next += 7) {
            size_t plen = 0, mlen = 0;
            const char *in_pool = dm_statement_page_json(pool, lines, next, &plen);
            char *in_malloc = (char *)dm_statement_page_json(NULL, lines, next, &mlen);
            assert_non_null(in_malloc);
            assert_int_equal(mlen, plen);
            assert_int_equal(strlen(in_malloc), mlen);
            assert_memory_equal(in_malloc, in_pool, plen);
            free(in_malloc);
        }
        for (int i = 0; i < 40; i++) {
            dm_statement_line *l = apr_array_push(lines);
            memset(l, 0, sizeof(*l));
            l->transfer_id = INT64_MAX - n - i;
            l->kind = i % 2 ? "commission" : "k\"ind\n";
            l->amount_micros = i % 3 ? -250000 : INT64_MIN;
            l->currency = "USD";
            l->account = i % 2 ? "wallet" : "held";
            l->created_at = 1795000000 + i;
            l->reference = apr_psprintf(pool, "order:%d:%0300d", n + i, i);
            l->position = l->transfer_id / 2; /* any position: no overflow */
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_member_write_is_the_dump_of_member_json),
        cmocka_unit_test(test_network_write_is_the_dump_of_the_tree),
        cmocka_unit_test(test_statement_page_in_malloc_is_the_pool_bytes),
    };
    apr_initialize();
    return cmocka_run_group_tests_name("answers_json", tests, setup, teardown);
}
