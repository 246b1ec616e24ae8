/* The ledger: double entry with stored balances that always sum to zero,
 * idempotency keys, the non-negative rule and its one exception (clawback
 * debts), reversals, statements, the admin list, verification of the
 * invariants against tampering, and concurrent posters. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>
#include <apr_time.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store/db.h"
#include "base/json.h"
#include "ledger/ledger.h"
#include "members/members.h"
#include "store/migrate.h"
#include "fixture.h"

static apr_pool_t *pool;
static int serial;

static int64_t count(dm_db *db, const char *sql)
{
    int64_t v = -1;
    int found = 0;
    assert_null(dm_db_query_int64(db, pool, sql, &v, &found));
    return v;
}

static int64_t balance(dm_db *db, int64_t account)
{
    dm_account a;
    assert_null(dm_ledger_account_get(db, pool, account, &a));
    return a.balance_micros;
}

static int64_t sum_of_balances(dm_db *db)
{
    return count(db, "SELECT COALESCE(SUM(balance_micros), 0) FROM accounts");
}

static int64_t new_member(dm_db *db)
{
    dm_stmt *st = NULL;
    int row = 0;
    int64_t id = 0;
    const char *email = apr_psprintf(pool, "m%d@example.com", ++serial);
    const char *code = apr_psprintf(pool, "C%07d", serial);

    assert_null(dm_db_prepare(db, pool,
                              "INSERT INTO users (email, email_key, password_hash, referral_code, "
                              "terms_version, terms_accepted_at, created_at, updated_at) "
                              "VALUES (?, ?, 'x', ?, 'v1', 0, 0, 0) RETURNING id",
                              &st));
    dm_stmt_bind_text(st, 1, email, strlen(email));
    dm_stmt_bind_text(st, 2, email, strlen(email));
    dm_stmt_bind_text(st, 3, code, strlen(code));
    assert_null(dm_stmt_step(st, pool, &row));
    assert_true(row);
    id = dm_stmt_int64(st, 0);
    dm_stmt_done(st);
    return id;
}

static int64_t wallet_of(dm_db *db, int64_t user)
{
    int64_t id = 0;
    assert_null(dm_ledger_member_account(db, pool, user, DM_ACCOUNT_WALLET, "USD", &id));
    return id;
}

static int64_t held_of(dm_db *db, int64_t user)
{
    int64_t id = 0;
    assert_null(dm_ledger_member_account(db, pool, user, DM_ACCOUNT_HELD, "USD", &id));
    return id;
}

static int64_t system_acct(dm_db *db, const char *code)
{
    int64_t id = 0;
    assert_null(dm_ledger_system_account(db, pool, code, "USD", &id));
    return id;
}

static dm_transfer_req req_of(const char *key, int64_t debit, int64_t credit, int64_t amount,
                              const char *kind)
{
    dm_transfer_req r;
    memset(&r, 0, sizeof(r));
    r.idempotency_key = key;
    r.debit_account_id = debit;
    r.credit_account_id = credit;
    r.amount_micros = amount;
    r.currency = "USD";
    r.kind = kind;
    return r;
}

/* One transfer in its own transaction; the error (NULL: committed). */
static dm_err *post(dm_db *db, const char *key, int64_t debit, int64_t credit, int64_t amount,
                    const char *kind, dm_transfer *out, int *created)
{
    dm_transfer_req r = req_of(key, debit, credit, amount, kind);
    dm_transfer t;
    int c = 0;
    dm_err *e;

    assert_null(dm_db_begin(db, pool));
    e = dm_ledger_transfer(db, pool, &r, out ? out : &t, created ? created : &c);
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    assert_null(dm_db_commit(db, pool));
    return NULL;
}

static void assert_verify_ok(dm_db *db)
{
    dm_ledger_report rep;
    assert_null(dm_ledger_verify(db, pool, &rep));
    if (!rep.ok) {
        fail_msg("verify: %s (account %lld)", rep.problem, (long long)rep.account_id);
    }
    assert_int_equal(rep.total_micros, 0);
}

/* ---- accounts ---- */

static void test_accounts_are_made_once_and_codes_are_checked(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t user = new_member(db), a = 0, b = 0;
    (void)state;
    a = wallet_of(db, user);
    assert_int_equal(wallet_of(db, user), a);
    b = held_of(db, user);
    assert_int_not_equal(a, b);
    assert_int_equal(system_acct(db, "sales"), system_acct(db, "sales"));
    assert_int_not_equal(system_acct(db, "gateway:sandbox"), system_acct(db, "sales"));
    assert_int_equal(count(db, "SELECT COUNT(*) FROM accounts"), 4);
    /* in another currency, another account */
    assert_null(dm_ledger_member_account(db, pool, user, DM_ACCOUNT_WALLET, "EUR", &b));
    assert_int_not_equal(a, b);
    assert_int_equal(dm_ledger_member_account(db, pool, 9999, DM_ACCOUNT_WALLET, "USD", &b)->code,
                     DM_E_NOT_FOUND);
    assert_int_equal(dm_ledger_member_account(db, pool, user, DM_ACCOUNT_WALLET, "usd", &b)->code,
                     DM_E_INVALID);
    assert_int_equal(dm_ledger_system_account(db, pool, "salez", "USD", &b)->code, DM_E_INVALID);
    assert_int_equal(dm_ledger_system_account(db, pool, "gateway:", "USD", &b)->code, DM_E_INVALID);
    assert_int_equal(dm_ledger_system_account(db, pool, "gateway:A B", "USD", &b)->code,
                     DM_E_INVALID);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM accounts"), 5);
}

/* ---- transfers ---- */

static void test_transfer_moves_both_balances_and_sums_stay_zero(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t user = new_member(db), w = wallet_of(db, user), y = system_acct(db, "yield");
    int64_t s = system_acct(db, "sales");
    dm_transfer t;
    int created = 0;
    (void)state;
    assert_null(post(db, "earn:1:0", y, w, 2500000, "yield", &t, &created));
    assert_true(created);
    assert_true(t.id > 0);
    assert_string_equal(t.idempotency_key, "earn:1:0");
    assert_int_equal(t.amount_micros, 2500000);
    assert_null(t.reference);
    assert_int_equal(balance(db, w), 2500000);
    assert_int_equal(balance(db, y), -2500000);
    assert_int_equal(sum_of_balances(db), 0);
    assert_null(post(db, "buy:1", w, s, 1000000, "purchase", NULL, NULL));
    assert_int_equal(balance(db, w), 1500000);
    assert_int_equal(balance(db, s), 1000000);
    assert_int_equal(sum_of_balances(db), 0);
    /* the whole balance may be spent: zero is allowed */
    assert_null(post(db, "buy:2", w, s, 1500000, "purchase", NULL, NULL));
    assert_int_equal(balance(db, w), 0);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM transfers"), 3);
    assert_verify_ok(db);
}

static void test_same_key_returns_original_and_changes_nothing(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t user = new_member(db), w = wallet_of(db, user), c = system_acct(db, "commissions");
    int64_t h = held_of(db, user);
    dm_transfer first, again;
    dm_transfer_req r = req_of("comm:7:1", c, h, 300000, "commission");
    int created = -1;
    dm_err *e;
    (void)state;
    r.reference = "order 7";
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_ledger_transfer(db, pool, &r, &first, &created));
    assert_int_equal(created, 1);
    assert_null(dm_db_commit(db, pool));

    /* the same request again: the original, nothing written */
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_ledger_transfer(db, pool, &r, &again, &created));
    assert_int_equal(created, 0);
    assert_int_equal(again.id, first.id);
    assert_int_equal(again.created_at, first.created_at);
    assert_string_equal(again.reference, "order 7");
    assert_null(dm_db_commit(db, pool));
    assert_int_equal(balance(db, h), 300000);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM transfers"), 1);

    /* the same key for another transfer is a bug: conflict naming the key,
     * nothing written */
    r.amount_micros = 999;
    assert_null(dm_db_begin(db, pool));
    e = dm_ledger_transfer(db, pool, &r, &again, &created);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_int_equal(created, 0);
    assert_non_null(strstr(e->message, "comm:7:1"));
    dm_db_rollback(db);
    r.amount_micros = 300000;
    r.credit_account_id = w;
    assert_null(dm_db_begin(db, pool));
    assert_int_equal(dm_ledger_transfer(db, pool, &r, &again, &created)->code, DM_E_CONFLICT);
    r.credit_account_id = h;
    r.reference = "order 8";
    assert_int_equal(dm_ledger_transfer(db, pool, &r, &again, &created)->code, DM_E_CONFLICT);
    assert_null(dm_db_commit(db, pool));
    assert_int_equal(balance(db, h), 300000);
    assert_int_equal(balance(db, w), 0);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM transfers"), 1);
    assert_verify_ok(db);
}

static void test_transfer_outside_a_transaction_is_refused(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t user = new_member(db), w = wallet_of(db, user), y = system_acct(db, "yield");
    dm_transfer_req r = req_of("earn:1:1", y, w, 10, "yield");
    dm_transfer t;
    int created = -1;
    dm_err *e;
    (void)state;
    e = dm_ledger_transfer(db, pool, &r, &t, &created);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INTERNAL);
    assert_non_null(strstr(e->message, "transaction"));
    assert_int_equal(created, 0);
    e = dm_ledger_reverse(db, pool, 1, "rev:1", "reversal", NULL, &t, &created);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INTERNAL);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM transfers"), 0);
    assert_int_equal(balance(db, w), 0);
}

static void test_insufficient_balance_is_refused_and_writes_nothing(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t user = new_member(db), w = wallet_of(db, user), h = held_of(db, user);
    int64_t y = system_acct(db, "yield"), s = system_acct(db, "sales");
    int64_t c = system_acct(db, "commissions");
    dm_transfer_req r;
    dm_transfer t;
    int created = -1;
    dm_err *e;
    (void)state;
    assert_null(post(db, "earn:1:0", y, w, 1000, "yield", NULL, NULL));
    assert_null(post(db, "comm:1:1", c, h, 50, "commission", NULL, NULL));

    /* inside a transaction that goes on and commits other work */
    assert_null(dm_db_begin(db, pool));
    r = req_of("buy:1", w, s, 1001, "purchase");
    e = dm_ledger_transfer(db, pool, &r, &t, &created);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_non_null(strstr(e->message, "insufficient balance"));
    assert_int_equal(created, 0);
    r = req_of("release:1", h, w, 51, "commission_release");
    assert_int_equal(dm_ledger_transfer(db, pool, &r, &t, &created)->code, DM_E_CONFLICT);
    /* a clawback kind cannot take a held account below zero either */
    r = req_of("claw:1", h, c, 51, "commission_clawback");
    assert_int_equal(dm_ledger_transfer(db, pool, &r, &t, &created)->code, DM_E_CONFLICT);
    r = req_of("buy:2", w, s, 400, "purchase");
    assert_null(dm_ledger_transfer(db, pool, &r, &t, &created));
    assert_null(dm_db_commit(db, pool));

    assert_int_equal(balance(db, w), 600);
    assert_int_equal(balance(db, h), 50);
    assert_int_equal(balance(db, s), 400);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM transfers"), 3);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM transfers WHERE idempotency_key IN "
                               "('buy:1', 'release:1', 'claw:1')"),
                     0);
    /* a refused key is free: the retry with enough money posts */
    assert_null(post(db, "buy:1", w, s, 600, "purchase", NULL, &created));
    assert_true(created);
    assert_int_equal(balance(db, w), 0);
    assert_verify_ok(db);
}

static void test_bad_transfers_are_refused(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t user = new_member(db), w = wallet_of(db, user), y = system_acct(db, "yield");
    int64_t eur = 0;
    char long_key[DM_LEDGER_KEY_MAX + 2];
    (void)state;
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    assert_null(dm_ledger_member_account(db, pool, user, DM_ACCOUNT_WALLET, "EUR", &eur));
    assert_int_equal(post(db, "a", y, w, 0, "yield", NULL, NULL)->code, DM_E_INVALID);
    assert_int_equal(post(db, "a", y, w, -5, "yield", NULL, NULL)->code, DM_E_INVALID);
    assert_int_equal(post(db, "a", y, w, 5, "yeild", NULL, NULL)->code, DM_E_INVALID);
    assert_int_equal(post(db, "a", y, w, 5, NULL, NULL, NULL)->code, DM_E_INVALID);
    assert_int_equal(post(db, "a", w, w, 5, "yield", NULL, NULL)->code, DM_E_INVALID);
    assert_int_equal(post(db, "", y, w, 5, "yield", NULL, NULL)->code, DM_E_INVALID);
    assert_int_equal(post(db, NULL, y, w, 5, "yield", NULL, NULL)->code, DM_E_INVALID);
    assert_int_equal(post(db, long_key, y, w, 5, "yield", NULL, NULL)->code, DM_E_INVALID);
    assert_int_equal(post(db, "a\nb", y, w, 5, "yield", NULL, NULL)->code, DM_E_INVALID);
    assert_int_equal(post(db, "a", y, 4242, 5, "yield", NULL, NULL)->code, DM_E_NOT_FOUND);
    assert_int_equal(post(db, "a", 4242, w, 5, "yield", NULL, NULL)->code, DM_E_NOT_FOUND);
    /* currency mismatch: the USD system account and the EUR wallet */
    dm_err *e = post(db, "a", y, eur, 5, "yield", NULL, NULL);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "currency");
    /* a transfer in EUR between USD accounts */
    dm_transfer_req r = req_of("b", y, w, 5, "yield");
    dm_transfer t;
    int created = 0;
    r.currency = "EUR";
    assert_null(dm_db_begin(db, pool));
    assert_int_equal(dm_ledger_transfer(db, pool, &r, &t, &created)->code, DM_E_INVALID);
    r.currency = "US";
    assert_int_equal(dm_ledger_transfer(db, pool, &r, &t, &created)->code, DM_E_INVALID);
    dm_db_rollback(db);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM transfers"), 0);
    assert_int_equal(sum_of_balances(db), 0);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM accounts WHERE balance_micros <> 0"), 0);
}

static void test_balances_never_overflow(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t user = new_member(db), w = wallet_of(db, user), y = system_acct(db, "yield");
    int64_t r = system_acct(db, "rounding");
    dm_err *e;
    (void)state;
    assert_null(post(db, "big", y, w, INT64_MAX, "yield", NULL, NULL));
    e = post(db, "one-more", r, w, 1, "rounding", NULL, NULL);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_non_null(strstr(e->message, "overflow"));
    /* y is at -INT64_MAX: one more is INT64_MIN, two more would overflow */
    assert_null(post(db, "to-min", y, r, 1, "rounding", NULL, NULL));
    assert_int_equal(balance(db, y), INT64_MIN);
    assert_int_equal(post(db, "past-min", y, r, 1, "rounding", NULL, NULL)->code, DM_E_INVALID);
    assert_int_equal(balance(db, w), INT64_MAX);
    assert_int_equal(balance(db, r), 1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM transfers"), 2);
}

/* ---- reversals and debt ---- */

static void test_reversal_is_a_new_opposite_transfer_at_most_once(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t user = new_member(db), w = wallet_of(db, user);
    int64_t g = system_acct(db, "gateway:sandbox"), s = system_acct(db, "sales");
    dm_transfer dep, rev, again;
    int created = 0;
    dm_err *e;
    (void)state;
    assert_null(post(db, "pay:sandbox:ev1", g, w, 5000000, "deposit", &dep, NULL));

    assert_null(dm_db_begin(db, pool));
    assert_null(dm_ledger_reverse(db, pool, dep.id, "refund:ev1", "refund", NULL, &rev, &created));
    assert_true(created);
    assert_null(dm_db_commit(db, pool));
    assert_int_not_equal(rev.id, dep.id);
    assert_int_equal(rev.debit_account_id, w);
    assert_int_equal(rev.credit_account_id, g);
    assert_int_equal(rev.amount_micros, 5000000);
    assert_int_equal(rev.reverses_transfer_id, dep.id);
    assert_int_equal(balance(db, w), 0);
    assert_int_equal(balance(db, g), 0);
    /* the original is untouched */
    assert_int_equal(
        count(db,
              apr_psprintf(pool,
                           "SELECT amount_micros FROM transfers WHERE id = %" APR_INT64_T_FMT " "
                           "AND debit_account_id = %" APR_INT64_T_FMT,
                           (apr_int64_t)dep.id, (apr_int64_t)g)),
        5000000);

    /* again under the same key: the same reversal; under another: refused */
    assert_null(dm_db_begin(db, pool));
    assert_null(
        dm_ledger_reverse(db, pool, dep.id, "refund:ev1", "refund", NULL, &again, &created));
    assert_false(created);
    assert_int_equal(again.id, rev.id);
    e = dm_ledger_reverse(db, pool, dep.id, "refund:ev1-bis", "refund", NULL, &again, &created);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_non_null(strstr(e->message, "already been reversed"));
    assert_int_equal(dm_ledger_reverse(db, pool, 999, "x", "refund", NULL, &again, &created)->code,
                     DM_E_NOT_FOUND);
    assert_null(dm_db_commit(db, pool));
    assert_int_equal(count(db, "SELECT COUNT(*) FROM transfers"), 2);

    /* reversing a deposit that was spent: refused (not a clawback kind) */
    assert_null(post(db, "pay:sandbox:ev2", g, w, 3000000, "deposit", &dep, NULL));
    assert_null(post(db, "buy:9", w, s, 2000000, "purchase", NULL, NULL));
    assert_null(dm_db_begin(db, pool));
    e = dm_ledger_reverse(db, pool, dep.id, "refund:ev2", "refund", NULL, &rev, &created);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    dm_db_rollback(db);
    assert_int_equal(balance(db, w), 1000000);
    assert_verify_ok(db);
}

static void test_clawback_leaves_a_debt_that_later_credits_settle_first(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t user = new_member(db), w = wallet_of(db, user), h = held_of(db, user);
    int64_t c = system_acct(db, "commissions"), y = system_acct(db, "yield");
    int64_t s = system_acct(db, "sales"), g = system_acct(db, "gateway:sandbox");
    dm_transfer comm, claw;
    dm_member m;
    int created = 0;
    dm_err *e;
    (void)state;
    /* a commission held, released, and spent */
    assert_null(post(db, "comm:5:1", c, h, 800, "commission", &comm, NULL));
    assert_null(post(db, "release:5:1", h, w, 800, "commission_release", NULL, NULL));
    assert_null(post(db, "buy:5", w, s, 500, "purchase", NULL, NULL));
    assert_int_equal(balance(db, w), 300);

    /* the order is refunded: the clawback takes the wallet below zero */
    assert_null(post(db, "claw:5:1", w, c, 800, "commission_clawback", &claw, &created));
    assert_true(created);
    assert_int_equal(balance(db, w), -500);
    assert_null(dm_member_get(db, pool, user, &m));
    assert_int_equal(m.balance_micros, -500);

    /* no other debit may touch a wallet in debt, however small */
    e = post(db, "buy:6", w, s, 1, "purchase", NULL, NULL);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_int_equal(post(db, "wd:1:request", w, system_acct(db, "withdrawals_pending"), 1,
                          "withdrawal", NULL, NULL)
                         ->code,
                     DM_E_CONFLICT);
    /* a chargeback is a clawback kind too */
    assert_null(post(db, "cb:1", w, g, 100, "chargeback", NULL, NULL));
    assert_int_equal(balance(db, w), -600);

    /* later credits pay the debt first: nothing is spendable until it is 0 */
    assert_null(post(db, "earn:1:0", y, w, 400, "yield", NULL, NULL));
    assert_int_equal(balance(db, w), -200);
    assert_int_equal(post(db, "buy:7", w, s, 1, "purchase", NULL, NULL)->code, DM_E_CONFLICT);
    assert_null(post(db, "earn:1:1", y, w, 450, "yield", NULL, NULL));
    assert_int_equal(balance(db, w), 250);
    assert_null(post(db, "buy:7", w, s, 250, "purchase", NULL, NULL));
    assert_int_equal(balance(db, w), 0);
    assert_verify_ok(db);
}

/* ---- reading ---- */

static void test_member_balances_and_member_get_read_wallet_and_held(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t user = new_member(db), other = new_member(db);
    int64_t c = system_acct(db, "commissions"), y = system_acct(db, "yield");
    dm_balances b;
    dm_member m;
    (void)state;
    assert_null(dm_ledger_member_balances(db, pool, user, "USD", &b));
    assert_int_equal(b.wallet_micros, 0);
    assert_int_equal(b.wallet_account_id, 0);
    assert_null(dm_member_get(db, pool, user, &m));
    assert_int_equal(m.balance_micros, 0);
    assert_int_equal(m.held_micros, 0);
    assert_null(post(db, "earn", y, wallet_of(db, user), 700, "yield", NULL, NULL));
    assert_null(post(db, "comm", c, held_of(db, user), 90, "commission", NULL, NULL));
    assert_null(post(db, "earn-o", y, wallet_of(db, other), 5, "yield", NULL, NULL));
    assert_null(dm_ledger_member_balances(db, pool, user, "USD", &b));
    assert_int_equal(b.wallet_micros, 700);
    assert_int_equal(b.held_micros, 90);
    assert_int_equal(b.wallet_account_id, wallet_of(db, user));
    assert_null(dm_member_get(db, pool, user, &m));
    assert_int_equal(m.balance_micros, 700);
    assert_int_equal(m.held_micros, 90);
}

static void test_statement_pages_newest_first_and_never_splits_a_line(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t user = new_member(db), other = new_member(db);
    int64_t w = wallet_of(db, user), h = held_of(db, user), ow = wallet_of(db, other);
    int64_t y = system_acct(db, "yield"), c = system_acct(db, "commissions");
    int64_t s = system_acct(db, "sales");
    apr_array_header_t *lines = NULL;
    int64_t cursor = 0, next = 0;
    int total = 0, pages = 0;
    int64_t want_id[] = {6, 5, 5, 3, 2, 1};
    const char *want_acct[] = {"wallet", "wallet", "held", "wallet", "held", "wallet"};
    int64_t want_amount[] = {-40, 60, -60, -100, 60, 1000};
    (void)state;
    assert_null(post(db, "t1", y, w, 1000, "yield", NULL, NULL));            /* 1 */
    assert_null(post(db, "t2", c, h, 60, "commission", NULL, NULL));         /* 2 */
    assert_null(post(db, "t3", w, s, 100, "purchase", NULL, NULL));          /* 3 */
    assert_null(post(db, "t4", y, ow, 7, "yield", NULL, NULL));              /* 4: not mine */
    assert_null(post(db, "t5", h, w, 60, "commission_release", NULL, NULL)); /* 5: two lines */
    assert_null(post(db, "t6", w, s, 40, "purchase", NULL, NULL));           /* 6 */

    /* every page size: the lines in order, none twice, none lost */
    for (int limit = 1; limit <= 7; limit++) {
        total = 0;
        pages = 0;
        cursor = 0;
        do {
            assert_null(dm_ledger_statement(db, pool, user, cursor, limit, &lines, &next));
            assert_true(lines->nelts <= limit);
            for (int i = 0; i < lines->nelts; i++) {
                const dm_statement_line *l = &APR_ARRAY_IDX(lines, i, dm_statement_line);
                assert_true(total < 6);
                assert_int_equal(l->transfer_id, want_id[total]);
                assert_string_equal(l->account, want_acct[total]);
                assert_int_equal(l->amount_micros, want_amount[total]);
                assert_string_equal(l->currency, "USD");
                total++;
            }
            cursor = next;
            pages++;
        } while (next && pages < 20);
        assert_int_equal(total, 6);
        assert_int_equal(pages, (6 + limit - 1) / limit);
    }
    /* the other member sees only their line */
    assert_null(dm_ledger_statement(db, pool, other, 0, 50, &lines, &next));
    assert_int_equal(lines->nelts, 1);
    assert_int_equal(APR_ARRAY_IDX(lines, 0, dm_statement_line).amount_micros, 7);
    assert_int_equal(next, 0);
    /* a member with no accounts: an empty page */
    assert_null(dm_ledger_statement(db, pool, new_member(db), 0, 50, &lines, &next));
    assert_int_equal(lines->nelts, 0);
    assert_int_equal(dm_ledger_statement(db, pool, user, 0, 0, &lines, &next)->code, DM_E_INVALID);
}

static void test_admin_list_filters_by_kind_account_and_time(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t user = new_member(db), w = wallet_of(db, user);
    int64_t y = system_acct(db, "yield"), s = system_acct(db, "sales");
    dm_transfer_filter f;
    apr_array_header_t *rows = NULL;
    int64_t next = 0, now = (int64_t)apr_time_sec(apr_time_now());
    const dm_transfer_row *r;
    (void)state;
    for (int i = 0; i < 5; i++) {
        assert_null(post(db, apr_psprintf(pool, "earn:%d", i), y, w, 100, "yield", NULL, NULL));
    }
    assert_null(post(db, "buy", w, s, 50, "purchase", NULL, NULL));

    memset(&f, 0, sizeof(f));
    assert_null(dm_ledger_transfers_list(db, pool, &f, 0, 50, &rows, &next));
    assert_int_equal(rows->nelts, 6);
    r = &APR_ARRAY_IDX(rows, 0, dm_transfer_row);
    assert_string_equal(r->t.kind, "purchase");
    assert_int_equal(r->debit.id, w);
    assert_string_equal(r->debit.kind, "wallet");
    assert_int_equal(r->debit.user_id, user);
    assert_string_equal(r->credit.code, "sales");

    f.kind = "yield";
    assert_null(dm_ledger_transfers_list(db, pool, &f, 0, 2, &rows, &next));
    assert_int_equal(rows->nelts, 2);
    assert_int_equal(APR_ARRAY_IDX(rows, 0, dm_transfer_row).t.id, 5);
    assert_int_equal(next, 4);
    assert_null(dm_ledger_transfers_list(db, pool, &f, next, 2, &rows, &next));
    assert_int_equal(APR_ARRAY_IDX(rows, 0, dm_transfer_row).t.id, 3);
    assert_null(dm_ledger_transfers_list(db, pool, &f, next, 2, &rows, &next));
    assert_int_equal(rows->nelts, 1);
    assert_int_equal(next, 0);

    memset(&f, 0, sizeof(f));
    f.account_id = s;
    assert_null(dm_ledger_transfers_list(db, pool, &f, 0, 50, &rows, &next));
    assert_int_equal(rows->nelts, 1);
    f.account_id = w; /* both sides */
    assert_null(dm_ledger_transfers_list(db, pool, &f, 0, 4, &rows, &next));
    assert_int_equal(rows->nelts, 4);
    assert_int_equal(APR_ARRAY_IDX(rows, 0, dm_transfer_row).t.id, 6);
    assert_int_equal(next, 3);
    f.kind = "purchase";
    assert_null(dm_ledger_transfers_list(db, pool, &f, 0, 50, &rows, &next));
    assert_int_equal(rows->nelts, 1);

    memset(&f, 0, sizeof(f));
    f.has_from = 1;
    f.from = now - 3600;
    f.has_to = 1;
    f.to = now + 3600;
    assert_null(dm_ledger_transfers_list(db, pool, &f, 0, 50, &rows, &next));
    assert_int_equal(rows->nelts, 6);
    f.from = now + 3600;
    f.to = now + 7200;
    assert_null(dm_ledger_transfers_list(db, pool, &f, 0, 50, &rows, &next));
    assert_int_equal(rows->nelts, 0);
    f.has_from = 0;
    f.to = now - 3600;
    assert_null(dm_ledger_transfers_list(db, pool, &f, 0, 50, &rows, &next));
    assert_int_equal(rows->nelts, 0);

    memset(&f, 0, sizeof(f));
    f.kind = "nonsense";
    assert_int_equal(dm_ledger_transfers_list(db, pool, &f, 0, 50, &rows, &next)->code,
                     DM_E_INVALID);
}

static void test_parse_time_takes_rfc3339_and_unix_seconds(void **state)
{
    int64_t t = 0;
    (void)state;
    assert_null(dm_json_parse_time(pool, "from", "2026-11-25T07:00:00Z", &t));
    assert_int_equal(t, 1795590000);
    assert_null(dm_json_parse_time(pool, "from", "2026-11-25T09:00:00.5+02:00", &t));
    assert_int_equal(t, 1795590000);
    assert_null(dm_json_parse_time(pool, "from", "1795590000", &t));
    assert_int_equal(t, 1795590000);
    const char *bad[] = {"",
                         "yesterday",
                         "2026-11-25",
                         "2026-11-25T07:00:00",
                         "2026-02-30T00:00:00Z",
                         "2026-11-25T25:00:00Z",
                         "-5",
                         "2026-11-25T07:00:00Zjunk"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dm_err *e = dm_json_parse_time(pool, "to", bad[i], &t);
        assert_non_null(e);
        assert_int_equal(e->code, DM_E_INVALID);
        assert_string_equal(e->field, "to");
    }
}

/* ---- verification ---- */

static void test_verify_detects_a_tampered_balance(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t user = new_member(db), w = wallet_of(db, user), y = system_acct(db, "yield");
    dm_ledger_report rep;
    (void)state;
    assert_null(dm_ledger_verify(db, pool, &rep));
    assert_true(rep.ok);
    assert_int_equal(rep.transfers, 0);
    assert_null(post(db, "earn", y, w, 1000, "yield", NULL, NULL));
    assert_null(dm_ledger_verify(db, pool, &rep));
    assert_true(rep.ok);
    assert_int_equal(rep.accounts, 2);
    assert_int_equal(rep.transfers, 1);

    assert_null(dm_db_exec(
        db, pool,
        apr_psprintf(pool, "UPDATE accounts SET balance_micros = 5000 WHERE id = %" APR_INT64_T_FMT,
                     (apr_int64_t)w)));
    assert_null(dm_ledger_verify(db, pool, &rep));
    assert_false(rep.ok);
    assert_int_equal(rep.account_id, w);
    assert_int_equal(rep.stored_micros, 5000);
    assert_int_equal(rep.expected_micros, 1000);
    assert_non_null(strstr(rep.account_name, "wallet of member"));

    /* balanced tampering (both accounts) is still caught per account */
    assert_null(dm_db_exec(db, pool,
                           apr_psprintf(pool,
                                        "UPDATE accounts SET balance_micros = -5000 WHERE id = "
                                        "%" APR_INT64_T_FMT,
                                        (apr_int64_t)y)));
    assert_null(dm_ledger_verify(db, pool, &rep));
    assert_false(rep.ok);
    assert_int_equal(rep.account_id, w < y ? w : y);
}

static void test_verify_detects_a_tampered_transfer(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t user = new_member(db), w = wallet_of(db, user), y = system_acct(db, "yield");
    int64_t h = held_of(db, user);
    dm_ledger_report rep;
    (void)state;
    assert_null(post(db, "earn:1", y, w, 1000, "yield", NULL, NULL));
    assert_null(post(db, "earn:2", y, w, 500, "yield", NULL, NULL));
    assert_null(dm_db_exec(db, pool, "UPDATE transfers SET amount_micros = 400 WHERE id = 2"));
    assert_null(dm_ledger_verify(db, pool, &rep));
    assert_false(rep.ok);
    assert_int_equal(rep.account_id, w); /* the first account by id */
    assert_int_equal(rep.stored_micros, 1500);
    assert_int_equal(rep.expected_micros, 1400);

    /* moved to another account */
    assert_null(dm_db_exec(db, pool, "UPDATE transfers SET amount_micros = 500 WHERE id = 2"));
    assert_null(dm_ledger_verify(db, pool, &rep));
    assert_true(rep.ok);
    assert_null(dm_db_exec(db, pool,
                           apr_psprintf(pool,
                                        "UPDATE transfers SET credit_account_id = %" APR_INT64_T_FMT
                                        " WHERE id = 2",
                                        (apr_int64_t)h)));
    assert_null(dm_ledger_verify(db, pool, &rep));
    assert_false(rep.ok);
    assert_int_equal(rep.account_id, w);
    assert_int_equal(rep.expected_micros, 1000);
}

/* ---- the operator's adjustment ---- */

static void test_adjust_is_audited_idempotent_and_obeys_the_rules(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t user = new_member(db);
    dm_transfer t, again;
    int created = 0;
    dm_err *e;
    (void)state;
    assert_null(dm_ledger_adjust(db, pool, 0, NULL, user, 2500000, "goodwill", NULL, &t, &created));
    assert_true(created);
    assert_int_equal(strncmp(t.idempotency_key, "adj:", 4), 0);
    assert_int_equal(strlen(t.idempotency_key), 4 + 36);
    assert_int_equal(t.credit_account_id, wallet_of(db, user));
    assert_int_equal(balance(db, wallet_of(db, user)), 2500000);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'ledger.adjust' AND "
                               "staff_id IS NULL AND ip = 'console' AND after_json LIKE "
                               "'%goodwill%'"),
                     1);
    /* re-run with the printed key: nothing changes */
    assert_null(dm_ledger_adjust(db, pool, 0, NULL, user, 2500000, "goodwill", t.idempotency_key,
                                 &again, &created));
    assert_false(created);
    assert_int_equal(again.id, t.id);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log"), 1);
    /* a debit below zero is refused, with no audit row */
    e = dm_ledger_adjust(db, pool, 0, NULL, user, -2500001, "too much", NULL, &t, &created);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log"), 1);
    assert_false(dm_db_in_transaction(db));
    assert_null(dm_ledger_adjust(db, pool, 0, NULL, user, -2500000, "reversal of goodwill", NULL,
                                 &t, &created));
    assert_int_equal(balance(db, wallet_of(db, user)), 0);
    assert_int_equal(dm_ledger_adjust(db, pool, 0, NULL, user, 0, "x", NULL, &t, &created)->code,
                     DM_E_INVALID);
    assert_int_equal(dm_ledger_adjust(db, pool, 0, NULL, user, 5, "", NULL, &t, &created)->code,
                     DM_E_INVALID);
    assert_int_equal(
        dm_ledger_adjust(db, pool, 0, NULL, user, 5, "x", "earn:1", &t, &created)->code,
        DM_E_INVALID);
    assert_int_equal(dm_ledger_adjust(db, pool, 0, NULL, 9999, 5, "x", NULL, &t, &created)->code,
                     DM_E_NOT_FOUND);
    assert_verify_ok(db);
}

/* ---- concurrency ---- */

#define POSTERS 8
#define POSTS 500
#define WALLETS 4

typedef struct poster {
    const char *path;
    int n;
    int64_t sys;
    int64_t wallets[WALLETS];
    int64_t delta[WALLETS]; /* what this thread's committed transfers did */
    int64_t sys_delta;
    int committed, refused, errors;
} poster;

static void *APR_THREAD_FUNC poster_thread(apr_thread_t *thr, void *data)
{
    poster *w = data;
    apr_pool_t *p;
    dm_db *db = NULL;
    dm_db_options opt = {60000, 0};

    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    if (dm_db_open(p, w->path, &opt, &db)) {
        w->errors++;
        apr_pool_destroy(p);
        apr_thread_exit(thr, APR_SUCCESS);
        return NULL;
    }
    for (int i = 0; i < POSTS; i++) {
        apr_pool_t *scope;
        int a = (w->n + i) % WALLETS, b = (w->n + i + 1) % WALLETS, created = 0;
        dm_transfer t;
        dm_transfer_req r;
        dm_err *e;

        apr_pool_create(&scope, p);
        memset(&r, 0, sizeof(r));
        r.idempotency_key = apr_psprintf(scope, "t%d:%d", w->n, i);
        r.currency = "USD";
        if (i % 3 == 0) {
            r.debit_account_id = w->sys;
            r.credit_account_id = w->wallets[a];
            r.amount_micros = 1000 + i;
            r.kind = "yield";
        } else {
            /* may find the wallet short, depending on the others */
            r.debit_account_id = w->wallets[a];
            r.credit_account_id = w->wallets[b];
            r.amount_micros = 1 + (i * 37) % 1500;
            r.kind = "adjustment";
        }
        e = dm_db_begin(db, scope);
        if (!e) {
            e = dm_ledger_transfer(db, scope, &r, &t, &created);
            if (!e) {
                e = dm_db_commit(db, scope);
            } else {
                dm_db_rollback(db);
            }
        }
        if (!e && created) {
            w->committed++;
            if (i % 3 == 0) {
                w->sys_delta -= r.amount_micros;
                w->delta[a] += r.amount_micros;
            } else {
                w->delta[a] -= r.amount_micros;
                w->delta[b] += r.amount_micros;
            }
        } else if (e && e->code == DM_E_CONFLICT) {
            w->refused++;
        } else {
            w->errors++;
        }
        apr_pool_destroy(scope);
    }
    apr_pool_destroy(p);
    apr_thread_exit(thr, APR_SUCCESS);
    return NULL;
}

static void test_concurrent_posters_keep_balances_exact(void **state)
{
    const char *path = dm_fx_path(pool, "db");
    dm_db *db = dm_fx_open_migrated(pool, path);
    poster w[POSTERS];
    apr_thread_t *t[POSTERS];
    apr_status_t rv;
    int64_t sys = system_acct(db, "yield"), wallets[WALLETS], want[WALLETS], want_sys = 0;
    int committed = 0;
    (void)state;
    for (int k = 0; k < WALLETS; k++) {
        wallets[k] = wallet_of(db, new_member(db));
        want[k] = 0;
    }
    for (int i = 0; i < POSTERS; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].path = path;
        w[i].n = i;
        w[i].sys = sys;
        memcpy(w[i].wallets, wallets, sizeof(wallets));
        assert_int_equal(apr_thread_create(&t[i], NULL, poster_thread, &w[i], pool), APR_SUCCESS);
    }
    for (int i = 0; i < POSTERS; i++) {
        apr_thread_join(&rv, t[i]);
        assert_int_equal(w[i].errors, 0);
        assert_int_equal(w[i].committed + w[i].refused, POSTS);
        committed += w[i].committed;
        want_sys += w[i].sys_delta;
        for (int k = 0; k < WALLETS; k++) {
            want[k] += w[i].delta[k];
        }
    }
    assert_int_equal(count(db, "SELECT COUNT(*) FROM transfers"), committed);
    assert_int_equal(balance(db, sys), want_sys);
    for (int k = 0; k < WALLETS; k++) {
        assert_int_equal(balance(db, wallets[k]), want[k]);
        assert_true(want[k] >= 0);
    }
    assert_verify_ok(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accounts_are_made_once_and_codes_are_checked),
        cmocka_unit_test(test_transfer_moves_both_balances_and_sums_stay_zero),
        cmocka_unit_test(test_same_key_returns_original_and_changes_nothing),
        cmocka_unit_test(test_transfer_outside_a_transaction_is_refused),
        cmocka_unit_test(test_insufficient_balance_is_refused_and_writes_nothing),
        cmocka_unit_test(test_bad_transfers_are_refused),
        cmocka_unit_test(test_balances_never_overflow),
        cmocka_unit_test(test_reversal_is_a_new_opposite_transfer_at_most_once),
        cmocka_unit_test(test_clawback_leaves_a_debt_that_later_credits_settle_first),
        cmocka_unit_test(test_member_balances_and_member_get_read_wallet_and_held),
        cmocka_unit_test(test_statement_pages_newest_first_and_never_splits_a_line),
        cmocka_unit_test(test_admin_list_filters_by_kind_account_and_time),
        cmocka_unit_test(test_parse_time_takes_rfc3339_and_unix_seconds),
        cmocka_unit_test(test_verify_detects_a_tampered_balance),
        cmocka_unit_test(test_verify_detects_a_tampered_transfer),
        cmocka_unit_test(test_adjust_is_audited_idempotent_and_obeys_the_rules),
        cmocka_unit_test(test_concurrent_posters_keep_balances_exact),
    };
    int rc;
    apr_initialize();
    if (sodium_init() < 0) {
        return 1;
    }
    apr_pool_create(&pool, NULL);
    if (dm_fx_init("ledger") != 0) {
        return 1;
    }
    rc = cmocka_run_group_tests_name("ledger", tests, NULL, NULL);
    apr_pool_destroy(pool);
    if (dm_fx_done() != 0) {
        return 1;
    }
    return rc;
}
