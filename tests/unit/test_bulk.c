/* The bench's bulk paths write what the per-row paths write.
 *
 * Members (members/member_bulk.c): a small tree — random placements, a
 * 15-deep chain so that totals run past 10 levels, several roots — loaded
 * through the bulk path over two transactions, and the same tree
 * registered member by member through dm_member_insert (registration's own
 * insert): the users rows (every column but the random referral code),
 * the full-text index, user_ancestors, referral_counts and the terms
 * acceptances are equal row for row, and the ledger untouched on both.
 *
 * Contracts (shop/contract_bulk.c): the same buyers get contracts through
 * the bulk path and through real sales from the wallet: the contracts and
 * the catalogue's counters are equal row for row, the orders too but for
 * the payment transfer, which bench contracts do not have; their ledger
 * has the buyers' wallets and no transfer, and verifies.
 *
 * Time comes from a clock file, so both sides write the same instants. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/validate.h"
#include "ledger/ledger.h"
#include "members/member_bulk.h"
#include "members/members.h"
#include "shop/capacity.h"
#include "shop/catalogue.h"
#include "shop/contract_bulk.h"
#include "shop/orders.h"
#include "store/db.h"
#include "fixture.h"

#define T0 1795600800 /* 2026-11-25T10:00:00Z */
#define MEMBERS 300
#define BUYERS 40
#define HASH "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"

static apr_pool_t *pool;
static const dm_legal_doc terms = {"terms", "2026-01", "0f1e2d3c4b5a", NULL, NULL};

static void quiet_sink(void *baton, dm_level level, const char *msg)
{
    (void)baton;
    (void)level;
    (void)msg;
}

static void set_clock(int64_t t)
{
    const char *path = apr_pstrcat(pool, dm_fx_dir(), "/clock", NULL);
    FILE *f = fopen(path, "w");
    struct tm tm;
    time_t tt = (time_t)t;
    char buf[64];

    assert_non_null(f);
    gmtime_r(&tt, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(f, "%s\n", buf);
    fclose(f);
    assert_int_equal(dm_clock_use_file(path), 0);
}

static int64_t count(dm_db *db, const char *sql)
{
    int64_t v = -1;
    int found = 0;
    assert_null(dm_db_query_int64(db, pool, sql, &v, &found));
    return v;
}

/* Every column of every row of `sql`, compared as text (NULL apart). */
static void assert_same_rows(dm_db *x, dm_db *y, const char *sql, int cols, int64_t expect_rows)
{
    dm_stmt *a = NULL, *b = NULL;
    int ra = 0, rb = 0;
    int64_t n = 0;

    assert_null(dm_db_prepare(x, pool, sql, &a));
    assert_null(dm_db_prepare(y, pool, sql, &b));
    for (;;) {
        assert_null(dm_stmt_step(a, pool, &ra));
        assert_null(dm_stmt_step(b, pool, &rb));
        if (ra != rb) {
            fail_msg("%s: row %lld exists on one side only", sql, (long long)n);
        }
        if (!ra) {
            break;
        }
        for (int c = 0; c < cols; c++) {
            int na = dm_stmt_is_null(a, c), nb = dm_stmt_is_null(b, c);
            const char *ta = na ? "NULL" : dm_stmt_text(a, c, NULL);
            const char *tb = nb ? "NULL" : dm_stmt_text(b, c, NULL);
            if (na != nb || strcmp(ta, tb) != 0) {
                fail_msg("%s: row %lld column %d: '%s' (per row) != '%s' (bulk)", sql, (long long)n,
                         c, ta, tb);
            }
        }
        n++;
    }
    dm_stmt_done(a);
    dm_stmt_done(b);
    assert_int_equal(n, expect_rows);
}

/* The tree: member i (0-based) under parent_of[i] (-1: a root). Uniform
 * among earlier members, 1 in 25 a new root, members 200..214 a chain
 * grown from member 7. Deterministic. */
static void tree_shape(int64_t parent_of[MEMBERS])
{
    uint64_t s = 0x9E3779B97F4A7C15ULL;

    for (int i = 0; i < MEMBERS; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        if (i >= 200 && i < 215) {
            parent_of[i] = i == 200 ? 7 : i - 1;
        } else if (i == 0 || s % 25 == 0) {
            parent_of[i] = -1;
        } else {
            parent_of[i] = (int64_t)(s % (uint64_t)i);
        }
    }
}

/* Registration's way, one member per transaction. */
static void load_per_row(dm_db *db, const int64_t parent_of[MEMBERS])
{
    for (int i = 0; i < MEMBERS; i++) {
        dm_member_new m;
        int64_t id = 0;
        memset(&m, 0, sizeof(m));
        assert_null(dm_validate_email(pool, "email",
                                      apr_psprintf(pool, "Gen%d@Example.TEST", i + 1), &m.email,
                                      &m.email_key));
        m.password_hash = HASH;
        m.referrer_id = parent_of[i] < 0 ? 0 : parent_of[i] + 1;
        m.terms = &terms;
        m.ip = "127.0.0.1";
        assert_null(dm_db_begin(db, pool));
        assert_null(dm_member_insert(db, pool, &m, &id));
        assert_null(dm_db_commit(db, pool));
        assert_int_equal(id, i + 1);
    }
}

/* The bench's way: two transactions, then the counters. */
static void load_bulk(dm_db *db, const int64_t parent_of[MEMBERS])
{
    dm_member_bulk_spec spec = {"Gen", "Example.TEST", HASH, &terms, "127.0.0.1", 0};
    dm_member_bulk *b = NULL;
    int64_t changed = 0;

    assert_null(dm_member_bulk_begin(db, pool, &spec, &b));
    for (int i = 0; i < MEMBERS; i++) {
        int64_t id = 0;
        if (i == 0 || i == MEMBERS / 2) {
            assert_null(dm_db_begin(db, pool));
        }
        assert_null(dm_member_bulk_add(b, parent_of[i] < 0 ? 0 : parent_of[i] + 1, &id));
        assert_int_equal(id, i + 1);
        if (i == MEMBERS / 2 - 1 || i == MEMBERS - 1) {
            assert_null(dm_member_bulk_flush(b));
            assert_null(dm_db_commit(db, pool));
        }
    }
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_member_bulk_finish(b, &changed));
    assert_null(dm_db_commit(db, pool));
    assert_true(changed > 0); /* the bulk left them stale until now */
}

static void assert_ledger_verifies(dm_db *db)
{
    dm_ledger_report rep;

    assert_null(dm_ledger_verify(db, pool, &rep));
    if (!rep.ok) {
        fail_msg("ledger verify: %s", rep.problem);
    }
}

static void test_bulk_members_are_the_rows_registration_writes(void **state)
{
    static int64_t parent_of[MEMBERS];
    dm_db *per_row = dm_fx_db(pool), *bulk = dm_fx_db(pool);
    int64_t ancestors;
    (void)state;
    tree_shape(parent_of);
    set_clock(T0);
    load_per_row(per_row, parent_of);
    load_bulk(bulk, parent_of);

    /* every column of users but referral_code (random) is compared below:
     * a new column fails here until the comparison names it */
    assert_int_equal(count(bulk, "SELECT COUNT(*) FROM pragma_table_info('users')"), 19);
    assert_same_rows(per_row, bulk,
                     "SELECT id, email, email_key, name, password_hash, referrer_id, depth, "
                     "vip_level, status, token_version, email_verified_at, kyc_status, "
                     "marketing_opt_in, terms_version, terms_accepted_at, created_at, updated_at, "
                     "length(referral_code), withdrawals_locked_until FROM users ORDER BY id",
                     19, MEMBERS);
    assert_int_equal(count(bulk, "SELECT COUNT(DISTINCT referral_code) FROM users"), MEMBERS);
    assert_same_rows(per_row, bulk, "SELECT rowid, email, name FROM users_fts ORDER BY rowid", 3,
                     MEMBERS);
    assert_int_equal(count(bulk, "SELECT COUNT(*) FROM users u JOIN users_fts f ON "
                                 "f.rowid = u.id AND f.referral_code = u.referral_code"),
                     MEMBERS);

    ancestors = count(per_row, "SELECT COUNT(*) FROM user_ancestors");
    assert_true(ancestors > 2 * MEMBERS);
    assert_same_rows(per_row, bulk,
                     "SELECT user_id, depth, ancestor_id FROM user_ancestors "
                     "ORDER BY user_id, depth",
                     3, ancestors);
    assert_same_rows(per_row, bulk,
                     "SELECT user_id, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, total "
                     "FROM referral_counts ORDER BY user_id",
                     12, MEMBERS);
    /* the chain makes member 8's downline reach past 10 levels */
    assert_true(count(bulk, "SELECT total - (l1 + l2 + l3 + l4 + l5 + l6 + l7 + l8 + l9 + l10) "
                            "FROM referral_counts WHERE user_id = 8") > 0);
    assert_same_rows(per_row, bulk,
                     "SELECT id, user_id, document, version, content_hash, ip, accepted_at "
                     "FROM legal_acceptances ORDER BY id",
                     7, MEMBERS);

    /* the ledger: untouched by members on both sides */
    assert_int_equal(count(bulk, "SELECT COUNT(*) FROM accounts"), 0);
    assert_int_equal(count(per_row, "SELECT COUNT(*) FROM accounts"), 0);
    assert_ledger_verifies(per_row);
    assert_ledger_verifies(bulk);
    dm_db_close(per_row);
    dm_db_close(bulk);
}

static void test_bulk_contracts_are_the_rows_a_sale_writes_without_the_payment(void **state)
{
    static int64_t parent_of[MEMBERS];
    int64_t buyers[BUYERS];
    dm_package pkg = {0, "Pool 12 TH/s", 12000, 41000000, 0, 90, "USD", 1, 10, DM_YIELD_POOL, 250};
    dm_db *sold = dm_fx_db(pool), *bulk = dm_fx_db(pool);
    dm_db *both[2] = {sold, bulk};
    (void)state;
    tree_shape(parent_of);
    set_clock(T0);
    load_per_row(sold, parent_of);
    load_bulk(bulk, parent_of);
    for (int k = 0; k < 2; k++) {
        dm_capacity_row cap;
        dm_package copy = pkg;
        assert_null(dm_capacity_set(both[k], pool, 0, NULL, 1000000000, "unit", &cap));
        assert_null(dm_db_begin(both[k], pool));
        assert_null(dm_catalogue_insert(both[k], pool, &copy));
        assert_null(dm_db_commit(both[k], pool));
        pkg.id = copy.id;
    }
    for (int i = 0; i < BUYERS; i++) {
        buyers[i] = 1 + (i * 7) % MEMBERS; /* spread over the tree */
    }

    set_clock(T0 + 3600);
    for (int i = 0; i < BUYERS; i++) {
        dm_transfer t;
        dm_order o;
        int created = 0;
        assert_null(dm_ledger_adjust(sold, pool, 0, NULL, buyers[i], pkg.price_micros, "unit", NULL,
                                     &t, &created));
        assert_null(dm_order_pay_from_balance(sold, pool, buyers[i], pkg.id, &o));
    }
    assert_null(dm_db_begin(bulk, pool));
    for (int i = 0; i < BUYERS; i++) {
        int64_t wallet = 0;
        assert_null(
            dm_ledger_member_account(bulk, pool, buyers[i], DM_ACCOUNT_WALLET, "USD", &wallet));
    }
    assert_null(dm_contract_bulk_insert(bulk, pool, &pkg, T0 + 3600, buyers, BUYERS));
    assert_null(dm_db_commit(bulk, pool));

    assert_int_equal(count(bulk, "SELECT COUNT(*) FROM pragma_table_info('contracts')"), 20);
    assert_same_rows(sold, bulk,
                     "SELECT id, order_id, user_id, package_id, name, hashrate_ghs, price_micros, "
                     "daily_yield_micros, duration_days, currency, started_at, expires_at, "
                     "status, ended_at, yield_mode, fee_bp, earned_micros, refunded_micros, "
                     "released_ghs, yield_clawed_micros, "
                     "expires_at - started_at FROM contracts ORDER BY id",
                     21, BUYERS);
    assert_int_equal(count(bulk, "SELECT COUNT(*) FROM pragma_table_info('orders')"), 18);
    assert_same_rows(
        sold, bulk,
        "SELECT id, user_id, package_id, amount_micros, currency, status, gateway, "
        "provider_ref, checkout_url, created_at, paid_at, updated_at, refunded_micros, "
        "payment_id, dispute, review_reason, hold_until "
        "FROM orders ORDER BY id",
        17, BUYERS);
    assert_int_equal(count(sold, "SELECT COUNT(*) FROM orders WHERE payment_transfer_id IS NULL"),
                     0);
    assert_int_equal(count(bulk, "SELECT COUNT(*) FROM orders WHERE payment_transfer_id IS NULL"),
                     BUYERS);
    /* the catalogue follows sales (migration 009's triggers) alike */
    assert_same_rows(sold, bulk, "SELECT * FROM catalogue_state", 2, 1);

    /* the ledger: the buyers' wallets on both sides; no transfer at all in
     * the bench's, and both verify */
    assert_same_rows(sold, bulk,
                     "SELECT user_id, kind, currency FROM accounts WHERE kind = 'wallet' AND "
                     "user_id IN (SELECT user_id FROM contracts) ORDER BY user_id",
                     3, BUYERS);
    assert_int_equal(count(bulk, "SELECT COUNT(*) FROM accounts WHERE user_id IS NOT NULL"),
                     BUYERS);
    assert_int_equal(count(bulk, "SELECT COUNT(*) FROM transfers"), 0);
    assert_ledger_verifies(sold);
    assert_ledger_verifies(bulk);
    dm_db_close(sold);
    dm_db_close(bulk);
}

static void test_bulk_add_needs_a_transaction(void **state)
{
    dm_member_bulk_spec spec = {"g", "example.test", HASH, &terms, "127.0.0.1", 0};
    dm_member_bulk *b = NULL;
    dm_db *db = dm_fx_db(pool);
    int64_t id = 0;
    dm_err *e;
    (void)state;
    assert_null(dm_member_bulk_begin(db, pool, &spec, &b));
    e = dm_member_bulk_add(b, 0, &id);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    dm_db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bulk_members_are_the_rows_registration_writes),
        cmocka_unit_test(test_bulk_contracts_are_the_rows_a_sale_writes_without_the_payment),
        cmocka_unit_test(test_bulk_add_needs_a_transaction),
    };
    int rc;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    dm_db_global_init();
    dm_log_set_sink(quiet_sink, NULL);
    if (dm_fx_init("bulk") != 0) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    dm_clock_use_file(NULL);
    if (dm_fx_done() != 0) {
        rc = 1;
    }
    apr_terminate();
    return rc;
}
