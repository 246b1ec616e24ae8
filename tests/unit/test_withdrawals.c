/* Withdrawals (destination validators per network, limits, the e-mail and
 * KYC gates, wallet -> pending -> paid or back, decisions once, two
 * concurrent requests that the wallet cannot both pay), capacity (sold
 * out), and the package admin's TH/s parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "shop/capacity.h"
#include "store/db.h"
#include "kyc/kyc_manual.h"
#include "ledger/ledger.h"
#include "members/members.h"
#include "store/migrate.h"
#include "shop/packages_admin.h"
#include "withdrawals/withdrawals.h"
#include "fixture.h"

static apr_pool_t *pool;
static int serial;
static const dm_wd_limits LIMITS = {1000, 5000000, 8000000};

static int64_t count(dm_db *db, const char *sql)
{
    int64_t v = -1;
    int found = 0;
    assert_null(dm_db_query_int64(db, pool, sql, &v, &found));
    return v;
}

/* A member with a verified e-mail and (when kyc) approved KYC, funded
 * with `funds` through the operator's adjustment. */
static int64_t member(dm_db *db, int verified, int kyc, int64_t funds)
{
    dm_stmt *st = NULL;
    int row = 0;
    int64_t id;
    dm_member m;
    dm_transfer t;
    int created = 0;
    const char *email = apr_psprintf(pool, "w%d@example.com", ++serial);
    const char *code = apr_psprintf(pool, "W%07d", serial);

    assert_null(dm_db_prepare(db, pool,
                              "INSERT INTO users (email, email_key, password_hash, referral_code, "
                              "terms_version, terms_accepted_at, created_at, updated_at, "
                              "email_verified_at) VALUES (?, ?, 'x', ?, 'v1', 0, 0, 0, ?) "
                              "RETURNING id",
                              &st));
    dm_stmt_bind_text(st, 1, email, strlen(email));
    dm_stmt_bind_text(st, 2, email, strlen(email));
    dm_stmt_bind_text(st, 3, code, strlen(code));
    if (verified) {
        dm_stmt_bind_int64(st, 4, 1);
    } else {
        dm_stmt_bind_null(st, 4);
    }
    assert_null(dm_stmt_step(st, pool, &row));
    id = dm_stmt_int64(st, 0);
    dm_stmt_done(st);
    if (kyc) {
        assert_null(dm_kyc_set_status(db, pool, 0, NULL, id, "approved", &m));
    }
    if (funds) {
        assert_null(
            dm_ledger_adjust(db, pool, 0, NULL, id, funds, "test funds", NULL, &t, &created));
    }
    return id;
}

static int64_t wallet(dm_db *db, int64_t user)
{
    dm_balances b;
    assert_null(dm_ledger_member_balances(db, pool, user, "USD", &b));
    return b.wallet_micros;
}

static void assert_verify_ok(dm_db *db)
{
    dm_ledger_report rep;
    assert_null(dm_ledger_verify(db, pool, &rep));
    assert_true(rep.ok);
    assert_int_equal(rep.total_micros, 0);
}

/* SQL that sets up rows the other engineers' code makes (orders,
 * contracts); fails with the database's message. */
static void exec_ok(dm_db *db, const char *sql)
{
    dm_err *e = dm_db_exec(db, pool, sql);
    if (e) {
        fail_msg("%s: %s", sql, e->message);
    }
}

static dm_code code_of(dm_err *e)
{
    return e ? e->code : 0;
}

/* ---- destinations ---- */

static void test_destination_validators_per_network(void **state)
{
    static const struct {
        const char *net, *dest;
        int ok;
    } cases[] = {
        {"trc20", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", 1},
        {"trc20", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6", 0},  /* 33 */
        {"trc20", "XR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", 0}, /* not T */
        {"trc20", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj0t", 0}, /* 0 is not base58 */
        {"trc20", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLjIt", 0}, /* nor I */
        {"erc20", "0xdAC17F958D2ee523a2206206994597C13D831ec7", 1},
        {"erc20", "0xdac17f958d2ee523a2206206994597c13d831ec7", 1},
        {"erc20", "0xdAC17F958D2ee523a2206206994597C13D831ec", 0},  /* 39 */
        {"erc20", "dAC17F958D2ee523a2206206994597C13D831ec7aa", 0}, /* no 0x */
        {"erc20", "0xgAC17F958D2ee523a2206206994597C13D831ec7", 0}, /* g */
        {"btc", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", 1},
        {"btc", "BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ", 1},
        {"btc", "bc1qAr0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", 0}, /* mixed case */
        {"btc", "bc1qbr0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", 0}, /* b not bech32 */
        {"btc", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", 1},
        {"btc", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", 1},
        {"btc", "2J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", 0},
        {"btc", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN0", 0}, /* 0 */
        {"btc", "", 0},
    };
    const char *key = NULL;
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dm_err *e = dm_wd_validate_destination(pool, cases[i].net, cases[i].dest, &key);
        if (cases[i].ok != (e == NULL)) {
            fail_msg("%s %s: expected %s", cases[i].net, cases[i].dest,
                     cases[i].ok ? "ok" : "refused");
        }
        if (e) {
            assert_int_equal(e->code, DM_E_INVALID);
            assert_string_equal(e->field, "destination");
        }
    }
    assert_null(dm_wd_validate_destination(pool, "erc20",
                                           "0xdAC17F958D2ee523a2206206994597C13D831ec7", &key));
    assert_string_equal(key, "0xdac17f958d2ee523a2206206994597c13d831ec7");
    assert_string_equal(dm_wd_validate_destination(pool, "sol", "x", &key)->field, "network");
}

/* ---- requests and decisions ---- */

static const char *TRX = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";

static void test_request_needs_verified_email_and_kyc(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t unverified = member(db, 0, 1, 100000), no_kyc = member(db, 1, 0, 100000);
    dm_withdrawal w;
    dm_err *e;
    (void)state;
    e = dm_wd_request(db, pool, &LIMITS, unverified, 5000, "trc20", TRX, &w, NULL);
    assert_int_equal(code_of(e), DM_E_FORBIDDEN);
    e = dm_wd_request(db, pool, &LIMITS, no_kyc, 5000, "trc20", TRX, &w, NULL);
    assert_int_equal(code_of(e), DM_E_FORBIDDEN);
    assert_string_equal(e->message, "identity check required");
    assert_int_equal(count(db, "SELECT COUNT(*) FROM withdrawals"), 0);
    assert_int_equal(wallet(db, no_kyc), 100000);
}

static void test_limits_min_max_and_daily(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t u = member(db, 1, 1, 20000000);
    dm_withdrawal w;
    (void)state;
    assert_int_equal(code_of(dm_wd_request(db, pool, &LIMITS, u, 999, "trc20", TRX, &w, NULL)),
                     DM_E_INVALID);
    assert_int_equal(code_of(dm_wd_request(db, pool, &LIMITS, u, 5000001, "trc20", TRX, &w, NULL)),
                     DM_E_INVALID);
    assert_null(dm_wd_request(db, pool, &LIMITS, u, 5000000, "trc20", TRX, &w, NULL));
    assert_null(dm_wd_request(db, pool, &LIMITS, u, 3000000, "trc20", TRX, &w, NULL));
    /* 8,000,000 requested today: one micro more is over the daily limit */
    assert_int_equal(code_of(dm_wd_request(db, pool, &LIMITS, u, 1000, "trc20", TRX, &w, NULL)),
                     DM_E_CONFLICT);
    /* a rejected request no longer counts */
    assert_null(dm_wd_decide(db, pool, 0, NULL, w.id, 0, NULL, "wrong address", &w));
    assert_null(dm_wd_request(db, pool, &LIMITS, u, 1000, "trc20", TRX, &w, NULL));
    assert_verify_ok(db);
}

static void test_request_moves_wallet_to_pending_then_paid(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t u = member(db, 1, 1, 100000);
    dm_withdrawal w, again;
    int64_t pending = 0, paid = 0;
    dm_account a;
    (void)state;
    assert_null(dm_wd_request(db, pool, &LIMITS, u, 40000, "trc20", TRX, &w, NULL));
    assert_string_equal(w.status, "pending");
    assert_int_equal(wallet(db, u), 60000);
    assert_null(dm_ledger_system_account(db, pool, DM_SYS_WITHDRAWALS_PENDING, "USD", &pending));
    assert_null(dm_ledger_account_get(db, pool, pending, &a));
    assert_int_equal(a.balance_micros, 40000);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE template = "
                               "'withdrawal_requested'"),
                     1);

    assert_int_equal(code_of(dm_wd_decide(db, pool, 0, NULL, w.id, 1, "", NULL, &again)),
                     DM_E_INVALID);
    assert_null(dm_wd_decide(db, pool, 0, NULL, w.id, 1, "0xpayout", NULL, &again));
    assert_string_equal(again.status, "paid");
    assert_string_equal(again.txid, "0xpayout");
    assert_null(dm_ledger_system_account(db, pool, DM_SYS_WITHDRAWALS_PAID, "USD", &paid));
    assert_null(dm_ledger_account_get(db, pool, pending, &a));
    assert_int_equal(a.balance_micros, 0);
    assert_null(dm_ledger_account_get(db, pool, paid, &a));
    assert_int_equal(a.balance_micros, 40000);
    assert_int_equal(wallet(db, u), 60000);
    /* decided once: approving or rejecting again is a conflict, changes nothing */
    assert_int_equal(code_of(dm_wd_decide(db, pool, 0, NULL, w.id, 1, "0xother", NULL, &again)),
                     DM_E_CONFLICT);
    assert_int_equal(code_of(dm_wd_decide(db, pool, 0, NULL, w.id, 0, NULL, "no", &again)),
                     DM_E_CONFLICT);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE action LIKE 'withdrawal.%'"),
                     1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE template = "
                               "'withdrawal_approved'"),
                     1);
    assert_verify_ok(db);
}

static void test_reject_returns_the_amount_to_the_wallet(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t u = member(db, 1, 1, 100000);
    dm_withdrawal w;
    (void)state;
    assert_null(dm_wd_request(db, pool, &LIMITS, u, 100000, "btc",
                              "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", &w, NULL));
    assert_int_equal(wallet(db, u), 0);
    assert_int_equal(code_of(dm_wd_decide(db, pool, 0, NULL, w.id, 0, NULL, "", &w)), DM_E_INVALID);
    assert_null(dm_wd_decide(db, pool, 0, NULL, w.id, 0, NULL, "address on a sanctions list", &w));
    assert_string_equal(w.status, "rejected");
    assert_int_equal(wallet(db, u), 100000);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM transfers WHERE kind = "
                               "'withdrawal_rejected' AND reverses_transfer_id IS NOT NULL"),
                     1);
    assert_verify_ok(db);
}

static void test_insufficient_balance_writes_nothing(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t u = member(db, 1, 1, 5000);
    dm_withdrawal w;
    dm_err *e;
    (void)state;
    e = dm_wd_request(db, pool, &LIMITS, u, 5001, "trc20", TRX, &w, NULL);
    assert_int_equal(code_of(e), DM_E_CONFLICT);
    assert_non_null(strstr(e->message, "insufficient balance"));
    assert_int_equal(count(db, "SELECT COUNT(*) FROM withdrawals"), 0);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE template LIKE 'withdrawal%'"),
                     0);
    assert_int_equal(wallet(db, u), 5000);
    assert_verify_ok(db);
}

static void test_shared_destination_is_reported(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t a = member(db, 1, 1, 100000), b = member(db, 1, 1, 100000), other = -1;
    dm_withdrawal w;
    (void)state;
    assert_null(dm_wd_request(db, pool, &LIMITS, a, 5000, "erc20",
                              "0xdAC17F958D2ee523a2206206994597C13D831ec7", &w, &other));
    assert_int_equal(other, 0);
    /* the same address in another case is the same destination */
    assert_null(dm_wd_request(db, pool, &LIMITS, b, 5000, "erc20",
                              "0xdac17f958d2ee523a2206206994597c13d831ec7", &w, &other));
    assert_int_equal(other, a);
    /* both are flagged, each naming the other */
    assert_int_equal(
        count(db, apr_psprintf(pool,
                               "SELECT COUNT(*) FROM member_flags WHERE reason = "
                               "'same_withdrawal_destination' AND status = 'open' AND "
                               "((user_id = %" APR_INT64_T_FMT
                               " AND related_user_id = %" APR_INT64_T_FMT ") OR "
                               "(user_id = %" APR_INT64_T_FMT
                               " AND related_user_id = %" APR_INT64_T_FMT "))",
                               (apr_int64_t)a, (apr_int64_t)b, (apr_int64_t)b, (apr_int64_t)a)),
        2);
    /* a third request to it raises nothing new */
    assert_null(dm_wd_request(db, pool, &LIMITS, b, 5000, "erc20",
                              "0xdac17f958d2ee523a2206206994597c13d831ec7", &w, &other));
    assert_int_equal(count(db, "SELECT COUNT(*) FROM member_flags"), 2);
}

/* ---- two requests at once on two connections ---- */

typedef struct racer {
    const char *path;
    int64_t user;
    apr_thread_mutex_t *gate;
    dm_code result;
} racer;

static void *APR_THREAD_FUNC racer_thread(apr_thread_t *thr, void *data)
{
    racer *r = data;
    apr_pool_t *p;
    dm_db *db = NULL;
    dm_db_options opt = {60000, 0};
    dm_withdrawal w;

    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    r->result = DM_E_INTERNAL;
    if (!dm_db_open(p, r->path, &opt, &db)) {
        /* both threads wait here, then go together */
        apr_thread_mutex_lock(r->gate);
        apr_thread_mutex_unlock(r->gate);
        r->result = code_of(dm_wd_request(db, p, &LIMITS, r->user, 60000, "trc20", TRX, &w, NULL));
    }
    apr_pool_destroy(p);
    apr_thread_exit(thr, APR_SUCCESS);
    return NULL;
}

static void test_concurrent_requests_exactly_one_succeeds(void **state)
{
    const char *path = dm_fx_path(pool, "db");
    dm_db *db = dm_fx_open_migrated(pool, path);
    int64_t u = member(db, 1, 1, 100000);
    racer r[2];
    apr_thread_t *t[2];
    apr_thread_mutex_t *gate;
    apr_status_t rv;
    int ok = 0, refused = 0;
    (void)state;
    assert_int_equal(apr_thread_mutex_create(&gate, APR_THREAD_MUTEX_DEFAULT, pool), APR_SUCCESS);
    apr_thread_mutex_lock(gate);
    for (int i = 0; i < 2; i++) {
        r[i].path = path;
        r[i].user = u;
        r[i].gate = gate;
        assert_int_equal(apr_thread_create(&t[i], NULL, racer_thread, &r[i], pool), APR_SUCCESS);
    }
    apr_sleep(apr_time_from_msec(50));
    apr_thread_mutex_unlock(gate);
    for (int i = 0; i < 2; i++) {
        apr_thread_join(&rv, t[i]);
        ok += r[i].result == 0;
        refused += r[i].result == DM_E_CONFLICT;
    }
    assert_int_equal(ok, 1);
    assert_int_equal(refused, 1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM withdrawals"), 1);
    assert_int_equal(wallet(db, u), 40000);
    assert_verify_ok(db);
}

/* ---- capacity ---- */

static void test_capacity_none_recorded_means_sold_out(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_package pkg = {0, "Cap test", 5000, 1000000, 1000, 30, "USD", 1, 0, DM_YIELD_FIXED, 0};
    dm_capacity_row row;
    int64_t u = member(db, 1, 1, 0), available = -1;
    dm_err *e;
    (void)state;
    assert_null(dm_catalogue_insert(db, pool, &pkg));
    e = dm_capacity_check(db, pool, pkg.id);
    assert_int_equal(code_of(e), DM_E_CONFLICT);
    assert_non_null(strstr(e->message, "sold out"));
    assert_int_equal(code_of(dm_capacity_check(db, pool, 99999)), DM_E_NOT_FOUND);

    /* exactly enough, then one GH/s short */
    assert_null(dm_capacity_set(db, pool, 0, NULL, 5000, "rack A", &row));
    assert_null(dm_capacity_check(db, pool, pkg.id));
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'capacity.set'"), 1);

    /* a pending order holds its package's share */
    exec_ok(db,
            apr_psprintf(pool,
                         "INSERT INTO orders (user_id, package_id, amount_micros, "
                         "currency, gateway, created_at, updated_at) VALUES (%" APR_INT64_T_FMT ", "
                         "%" APR_INT64_T_FMT ", 1000000, 'USD', 'balance', 0, 0)",
                         (apr_int64_t)u, (apr_int64_t)pkg.id));
    assert_int_equal(code_of(dm_capacity_check(db, pool, pkg.id)), DM_E_CONFLICT);
    assert_null(dm_capacity_available(db, pool, &available));
    assert_int_equal(available, 0);
    assert_null(dm_capacity_set(db, pool, 0, NULL, 9999, NULL, &row));
    assert_int_equal(code_of(dm_capacity_check(db, pool, pkg.id)), DM_E_CONFLICT);
    assert_null(dm_capacity_set(db, pool, 0, NULL, 10000, NULL, &row));
    assert_null(dm_capacity_check(db, pool, pkg.id));
    assert_int_equal(count(db, "SELECT COUNT(*) FROM capacity"), 3);

    /* the order paid: an active contract counts, an expired one not */
    exec_ok(db, "UPDATE orders SET status = 'paid'");
    exec_ok(db, apr_psprintf(
                    pool,
                    "INSERT INTO contracts (order_id, user_id, package_id, name, hashrate_ghs, "
                    "price_micros, daily_yield_micros, duration_days, currency, started_at, "
                    "expires_at) SELECT id, user_id, package_id, 'x', 8000, 1, 0, 30, 'USD', 1, "
                    "%" APR_INT64_T_FMT " FROM orders",
                    (apr_int64_t)apr_time_sec(apr_time_now()) + 3600));
    assert_int_equal(code_of(dm_capacity_check(db, pool, pkg.id)), DM_E_CONFLICT);
    exec_ok(db, "UPDATE contracts SET expires_at = 2");
    assert_null(dm_capacity_check(db, pool, pkg.id));
}

static void test_ensure_sets_only_once(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int set = 0;
    dm_capacity_row cur;
    int found = 0;
    (void)state;
    assert_null(dm_capacity_ensure(db, pool, 1000, "first", &set));
    assert_int_equal(set, 1);
    assert_null(dm_capacity_ensure(db, pool, 2000, "second", &set));
    assert_int_equal(set, 0);
    assert_null(dm_capacity_current(db, pool, &cur, &found));
    assert_int_equal(cur.hashrate_ghs, 1000);
    assert_int_equal(code_of(dm_capacity_ensure(db, pool, -1, NULL, &set)), DM_E_INVALID);
}

static void test_ths_is_exact_to_a_gigahash(void **state)
{
    int64_t ghs = 0;
    json_t *v;
    (void)state;
    v = json_real(0.5);
    assert_null(dm_package_ths_to_ghs(pool, v, &ghs));
    assert_int_equal(ghs, 500);
    json_decref(v);
    v = json_real(0.001);
    assert_null(dm_package_ths_to_ghs(pool, v, &ghs));
    assert_int_equal(ghs, 1);
    json_decref(v);
    v = json_real(123.456);
    assert_null(dm_package_ths_to_ghs(pool, v, &ghs));
    assert_int_equal(ghs, 123456);
    json_decref(v);
    v = json_integer(7);
    assert_null(dm_package_ths_to_ghs(pool, v, &ghs));
    assert_int_equal(ghs, 7000);
    json_decref(v);
    v = json_real(0.0005);
    assert_non_null(dm_package_ths_to_ghs(pool, v, &ghs));
    json_decref(v);
    v = json_integer(0);
    assert_non_null(dm_package_ths_to_ghs(pool, v, &ghs));
    json_decref(v);
    v = json_string("5");
    assert_non_null(dm_package_ths_to_ghs(pool, v, &ghs));
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_destination_validators_per_network),
        cmocka_unit_test(test_request_needs_verified_email_and_kyc),
        cmocka_unit_test(test_limits_min_max_and_daily),
        cmocka_unit_test(test_request_moves_wallet_to_pending_then_paid),
        cmocka_unit_test(test_reject_returns_the_amount_to_the_wallet),
        cmocka_unit_test(test_insufficient_balance_writes_nothing),
        cmocka_unit_test(test_shared_destination_is_reported),
        cmocka_unit_test(test_concurrent_requests_exactly_one_succeeds),
        cmocka_unit_test(test_capacity_none_recorded_means_sold_out),
        cmocka_unit_test(test_ensure_sets_only_once),
        cmocka_unit_test(test_ths_is_exact_to_a_gigahash),
    };
    int rc;
    apr_initialize();
    if (sodium_init() < 0) {
        return 1;
    }
    apr_pool_create(&pool, NULL);
    if (dm_fx_init("withdrawals") != 0) {
        return 1;
    }
    rc = cmocka_run_group_tests_name("withdrawals", tests, NULL, NULL);
    apr_pool_destroy(pool);
    if (dm_fx_done() != 0) {
        return 1;
    }
    return rc;
}
