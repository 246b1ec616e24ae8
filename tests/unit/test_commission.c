/* Commissions and VIP levels: the 10-level split for every VIP level and
 * depth of the default plan, rounding under the cap, suspended ancestors,
 * idempotency, clawback from held then wallet (debt), release after the
 * hold unless a fraud flag names the buyer, registration-IP flags, VIP
 * qualification boundaries and re-evaluation, and plan validation. The
 * orders side is played by calling the functions inside a transaction. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "referral/commission.h"
#include "store/db.h"
#include "referral/flags.h"
#include "ledger/ledger.h"
#include "store/migrate.h"
#include "referral/referral.h"
#include "referral/vip.h"
#include "fixture.h"

#define USD (INT64_C(1000000))
#define CHAIN 13 /* root + 12 below it */

/* The default plan of sql/006_commissions.sql, as docs/commissions.md
 * shows it: rates_bp[level-1][depth-1]. */
static const int plan_rates[10][10] = {
    {500, 200, 100, 50, 50, 25, 25, 25, 25, 25},
    {550, 220, 110, 60, 60, 30, 30, 30, 30, 30},
    {600, 250, 125, 75, 75, 40, 40, 40, 40, 40},
    {650, 275, 150, 90, 90, 50, 50, 50, 50, 50},
    {700, 300, 175, 100, 100, 60, 60, 60, 60, 60},
    {750, 325, 200, 125, 125, 75, 75, 75, 75, 75},
    {800, 350, 225, 150, 150, 90, 90, 90, 90, 90},
    {850, 375, 250, 175, 175, 100, 100, 100, 100, 100},
    {900, 400, 275, 200, 200, 125, 125, 125, 125, 125},
    {1000, 450, 300, 225, 225, 150, 150, 150, 150, 150},
};
static const int64_t plan_personal[10] = {0,    500,  1000,  2000,  3000,
                                          5000, 7500, 10000, 15000, 25000};
static const int64_t plan_direct[10] = {0, 1, 2, 3, 5, 8, 12, 16, 20, 30};
static const int64_t plan_team[10] = {0,     2000,   5000,   10000,  25000,
                                      50000, 100000, 250000, 500000, 1000000};

static apr_pool_t *pool;
static int serial;

static int64_t q(dm_db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int64_t q(dm_db *db, const char *fmt, ...)
{
    va_list ap;
    const char *sql;
    int64_t v = -1;
    int found = 0;

    va_start(ap, fmt);
    sql = apr_pvsprintf(pool, fmt, ap);
    va_end(ap);
    assert_null(dm_db_query_int64(db, pool, sql, &v, &found));
    return found ? v : -1;
}

static void x(dm_db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void x(dm_db *db, const char *fmt, ...)
{
    va_list ap;
    const char *sql;

    va_start(ap, fmt);
    sql = apr_pvsprintf(pool, fmt, ap);
    va_end(ap);
    assert_null(dm_db_exec(db, pool, sql));
}

static int64_t join(dm_db *db, int64_t referrer)
{
    dm_stmt *st = NULL;
    int row = 0;
    int64_t id = 0;
    const char *email = apr_psprintf(pool, "m%d@example.com", ++serial);
    const char *code = dm_referral_code_new(pool);

    assert_null(dm_db_begin(db, pool));
    assert_null(dm_db_prepare(db, pool,
                              "INSERT INTO users (email, email_key, password_hash, referral_code, "
                              "referrer_id, terms_version, terms_accepted_at, created_at, "
                              "updated_at) VALUES (?, ?, 'x', ?, ?, 'v1', 0, 0, 0) RETURNING id",
                              &st));
    dm_stmt_bind_text(st, 1, email, strlen(email));
    dm_stmt_bind_text(st, 2, email, strlen(email));
    dm_stmt_bind_text(st, 3, code, strlen(code));
    if (referrer) {
        dm_stmt_bind_int64(st, 4, referrer);
    } else {
        dm_stmt_bind_null(st, 4);
    }
    assert_null(dm_stmt_step(st, pool, &row));
    id = dm_stmt_int64(st, 0);
    dm_stmt_done(st);
    assert_null(dm_referral_attach(db, pool, id, referrer));
    assert_null(dm_db_commit(db, pool));
    return id;
}

/* chain[0] is the root, chain[12] the tip. */
static void make_chain(dm_db *db, int64_t chain[CHAIN])
{
    for (int i = 0; i < CHAIN; i++) {
        chain[i] = join(db, i ? chain[i - 1] : 0);
    }
}

static dm_err *pay(dm_db *db, int64_t order, int64_t buyer, int64_t amount)
{
    dm_err *e;

    assert_null(dm_db_begin(db, pool));
    e = dm_commission_pay(db, pool, order, buyer, amount, "USD");
    if (!e) {
        e = dm_vip_reevaluate(db, pool, buyer);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    assert_null(dm_db_commit(db, pool));
    return NULL;
}

static void clawback(dm_db *db, int64_t order)
{
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_commission_clawback(db, pool, order));
    assert_null(dm_db_commit(db, pool));
}

static dm_balances bal(dm_db *db, int64_t user)
{
    dm_balances b;
    assert_null(dm_ledger_member_balances(db, pool, user, "USD", &b));
    return b;
}

static void assert_ledger_ok(dm_db *db)
{
    dm_ledger_report r;
    assert_null(dm_ledger_verify(db, pool, &r));
    if (!r.ok) {
        fail_msg("ledger verify: %s", r.problem);
    }
}

static int64_t release(dm_db *db, int64_t now)
{
    int64_t n = -1;
    assert_null(dm_commission_release_due(db, pool, now, &n));
    return n;
}

static int64_t credit_of(dm_db *db, int64_t order, int depth)
{
    return q(db, "SELECT amount_micros FROM commissions WHERE order_id = %d AND depth = %d",
             (int)order, depth);
}

static void test_default_plan_is_the_documented_one_and_within_the_cap(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_vip_plan plan;

    (void)state;
    assert_null(dm_vip_plan_load(db, pool, &plan));
    for (int l = 0; l < 10; l++) {
        int total = 0;
        assert_int_equal(plan.levels[l].level, l + 1);
        assert_int_equal(plan.levels[l].min_personal_volume_micros, plan_personal[l] * USD);
        assert_int_equal(plan.levels[l].min_direct_paid_referrals, plan_direct[l]);
        assert_int_equal(plan.levels[l].min_team_volume_micros, plan_team[l] * USD);
        for (int d = 0; d < 10; d++) {
            assert_int_equal(plan.levels[l].rates_bp[d], plan_rates[l][d]);
            total += plan_rates[l][d];
        }
        assert_true(total <= DM_VIP_DEFAULT_CAP_BP);
    }
    assert_null(dm_vip_plan_validate(pool, &plan, DM_VIP_DEFAULT_CAP_BP));
}

static void test_split_pays_every_level_and_depth_and_stops_at_depth_10(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t chain[CHAIN], held[CHAIN] = {0};
    const int64_t amounts[] = {1000 * USD, 123456789};

    (void)state;
    make_chain(db, chain);
    for (int level = 1; level <= 10; level++) {
        for (size_t k = 0; k < sizeof(amounts) / sizeof(amounts[0]); k++) {
            int64_t order = level * 10 + (int64_t)k, a = amounts[k];
            /* every ancestor at this level for this order */
            x(db, "UPDATE users SET vip_level = %d", level);
            assert_null(pay(db, order, chain[12], a));
            assert_int_equal(
                q(db, "SELECT COUNT(*) FROM commissions WHERE order_id = %d", (int)order), 10);
            for (int d = 1; d <= 10; d++) {
                int64_t want = a * plan_rates[level - 1][d - 1] / 10000;
                int64_t who = chain[12 - d];
                assert_int_equal(credit_of(db, order, d), want);
                assert_int_equal(q(db,
                                   "SELECT beneficiary_id FROM commissions WHERE order_id = %d "
                                   "AND depth = %d",
                                   (int)order, d),
                                 who);
                assert_int_equal(q(db,
                                   "SELECT vip_level * 100000 + rate_bp FROM commissions WHERE "
                                   "order_id = %d AND depth = %d",
                                   (int)order, d),
                                 level * 100000 + plan_rates[level - 1][d - 1]);
                held[12 - d] += want;
            }
        }
    }
    for (int i = 0; i < CHAIN; i++) {
        assert_int_equal(bal(db, chain[i]).held_micros, held[i]);
        assert_int_equal(bal(db, chain[i]).wallet_micros, 0);
    }
    /* depth 11 and 12 (chain[1], chain[0]) and the buyer: nothing */
    assert_int_equal(held[0], 0);
    assert_int_equal(held[1], 0);
    assert_int_equal(q(db, "SELECT COUNT(*) FROM commissions WHERE beneficiary_id IN (%d, %d, %d)",
                       (int)chain[0], (int)chain[1], (int)chain[12]),
                     0);
    assert_int_equal(q(db, "SELECT COUNT(*) FROM transfers WHERE idempotency_key LIKE 'comm:%%'"),
                     200);
    assert_ledger_ok(db);
}

static void test_rounding_never_pays_more_than_the_cap(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t chain[CHAIN];
    const int64_t amounts[] = {1, 3, 7, 19, 99, 999999, 1000001, 33333333, INT64_C(1000000000000)};
    int64_t order = 1;

    (void)state;
    make_chain(db, chain);
    for (int level = 1; level <= 10; level++) {
        x(db, "UPDATE users SET vip_level = %d", level);
        for (size_t k = 0; k < sizeof(amounts) / sizeof(amounts[0]); k++, order++) {
            int64_t a = amounts[k], want = 0;
            assert_null(pay(db, order, chain[12], a));
            for (int d = 0; d < 10; d++) {
                want += a * plan_rates[level - 1][d] / 10000;
            }
            assert_int_equal(
                q(db, "SELECT COALESCE(SUM(amount_micros), 0) FROM commissions WHERE order_id = %d",
                  (int)order),
                want);
            assert_true(want * 10000 <= a * DM_VIP_DEFAULT_CAP_BP);
        }
    }
    /* an order of 1 or 3 micro-units rounds every credit down to nothing */
    assert_int_equal(q(db, "SELECT COUNT(*) FROM commissions WHERE order_id IN (1, 2)"), 0);
    assert_ledger_ok(db);
}

static void test_suspended_ancestors_are_skipped(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t chain[CHAIN];

    (void)state;
    make_chain(db, chain);
    x(db, "UPDATE users SET status = 'suspended' WHERE id IN (%d, %d)", (int)chain[9],
      (int)chain[4]);
    assert_null(pay(db, 1, chain[12], 1000 * USD));
    assert_int_equal(q(db, "SELECT COUNT(*) FROM commissions WHERE order_id = 1"), 8);
    assert_int_equal(credit_of(db, 1, 3), -1); /* chain[9] */
    assert_int_equal(credit_of(db, 1, 8), -1); /* chain[4] */
    assert_int_equal(credit_of(db, 1, 1), 50 * USD);
    assert_int_equal(bal(db, chain[9]).held_micros, 0);
    assert_ledger_ok(db);
}

static void test_paying_an_order_twice_credits_once(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t chain[CHAIN];
    int64_t transfers;
    dm_err *e;

    (void)state;
    make_chain(db, chain);
    assert_null(pay(db, 7, chain[12], 1000 * USD));
    transfers = q(db, "SELECT COUNT(*) FROM transfers");
    assert_null(pay(db, 7, chain[12], 1000 * USD));
    assert_int_equal(q(db, "SELECT COUNT(*) FROM transfers"), transfers);
    assert_int_equal(q(db, "SELECT COUNT(*) FROM commissions"), 10);
    assert_int_equal(bal(db, chain[11]).held_micros, 50 * USD);
    assert_int_equal(q(db, "SELECT personal_volume_micros FROM member_volumes WHERE user_id = %d",
                       (int)chain[12]),
                     1000 * USD);
    /* the same order id with another amount is a caller's bug */
    e = pay(db, 7, chain[12], 999 * USD);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    /* outside a transaction nothing is written */
    e = dm_commission_pay(db, pool, 8, chain[12], USD, "USD");
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INTERNAL);
    e = dm_commission_clawback(db, pool, 7);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INTERNAL);
    /* an amount whose product with a rate overflows is refused */
    e = pay(db, 9, chain[12], INT64_MAX / 2);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_int_equal(q(db, "SELECT COUNT(*) FROM commissions WHERE order_id = 9"), 0);
    assert_ledger_ok(db);
}

static void test_clawback_takes_from_held_then_from_the_wallet_leaving_a_debt(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t chain[CHAIN], wallet = 0, adj = 0, now = apr_time_sec(apr_time_now());
    dm_transfer_req req;
    dm_transfer t;
    int created = 0;
    dm_err *e;

    (void)state;
    make_chain(db, chain);
    /* order 1 is released and its depth-1 credit (50 USD) spent */
    assert_null(pay(db, 1, chain[12], 1000 * USD));
    assert_int_equal(release(db, now + 15 * 86400), 10);
    assert_int_equal(bal(db, chain[11]).wallet_micros, 50 * USD);
    assert_int_equal(q(db, "SELECT COUNT(*) FROM commissions WHERE status = 'available'"), 10);
    assert_null(dm_ledger_member_account(db, pool, chain[11], DM_ACCOUNT_WALLET, "USD", &wallet));
    assert_null(dm_ledger_system_account(db, pool, DM_SYS_ADJUSTMENTS, "USD", &adj));
    memset(&req, 0, sizeof(req));
    req.idempotency_key = "adj:spent";
    req.debit_account_id = wallet;
    req.credit_account_id = adj;
    req.amount_micros = 40 * USD;
    req.currency = "USD";
    req.kind = DM_KIND_ADJUSTMENT;
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_ledger_transfer(db, pool, &req, &t, &created));
    assert_null(dm_db_commit(db, pool));
    /* order 2 is still held */
    assert_null(pay(db, 2, chain[12], 200 * USD));
    assert_int_equal(bal(db, chain[11]).held_micros, 10 * USD);

    clawback(db, 2); /* from held */
    assert_int_equal(bal(db, chain[11]).held_micros, 0);
    assert_int_equal(bal(db, chain[11]).wallet_micros, 10 * USD);
    clawback(db, 1); /* from the wallet: 10 - 50 = a debt of 40 */
    assert_int_equal(bal(db, chain[11]).wallet_micros, -40 * USD);
    assert_int_equal(bal(db, chain[10]).wallet_micros, 0);
    assert_int_equal(q(db, "SELECT COUNT(*) FROM commissions WHERE status <> 'clawed_back'"), 0);
    assert_int_equal(q(db, "SELECT COUNT(*) FROM transfers WHERE kind = 'commission_clawback'"),
                     20);
    /* again: nothing; paying a refunded order again: refused */
    clawback(db, 1);
    assert_int_equal(q(db, "SELECT COUNT(*) FROM transfers WHERE kind = 'commission_clawback'"),
                     20);
    e = pay(db, 1, chain[12], 1000 * USD);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    /* an order never paid: nothing */
    clawback(db, 424242);
    /* refunded volume no longer counts anywhere */
    assert_int_equal(q(db,
                       "SELECT personal_volume_micros + paid_orders FROM member_volumes "
                       "WHERE user_id = %d",
                       (int)chain[12]),
                     0);
    assert_int_equal(q(db, "SELECT direct_paid_referrals FROM member_volumes WHERE user_id = %d",
                       (int)chain[11]),
                     0);
    assert_int_equal(q(db, "SELECT COALESCE(SUM(team_volume_micros), 0) FROM member_volumes"), 0);
    /* a later credit settles the debt first */
    assert_null(pay(db, 3, chain[12], 1000 * USD));
    assert_int_equal(release(db, now + 15 * 86400), 10);
    assert_int_equal(bal(db, chain[11]).wallet_micros, 10 * USD);
    assert_ledger_ok(db);
}

static void test_release_waits_for_the_hold_and_skips_flagged_buyers(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t chain[CHAIN], now = apr_time_sec(apr_time_now());
    dm_flag f;
    dm_err *e;

    (void)state;
    make_chain(db, chain);
    assert_int_equal(dm_commission_hold(), 14 * 86400);
    assert_null(pay(db, 1, chain[12], 1000 * USD));
    assert_int_equal(q(db, "SELECT MIN(release_at) - MIN(created_at) FROM commissions"),
                     14 * 86400);
    assert_int_equal(release(db, now), 0);
    /* the buyer is flagged (on either side of a flag): every depth of its
     * order stays held, not only its referrer's credit */
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_flags_raise(db, pool, chain[12], chain[11], "same_registration_ip"));
    assert_null(dm_flags_raise(db, pool, chain[12], chain[11], "same_registration_ip"));
    assert_null(dm_flags_raise(db, pool, chain[8], chain[12], "shared_destination"));
    assert_null(dm_db_commit(db, pool));
    assert_int_equal(q(db, "SELECT COUNT(*) FROM member_flags WHERE status = 'open'"), 2);
    assert_int_equal(release(db, now + 14 * 86400 + 5), 0);
    assert_int_equal(q(db, "SELECT COUNT(*) FROM commissions WHERE status = 'held'"), 10);
    assert_int_equal(bal(db, chain[11]).held_micros, 50 * USD);
    assert_int_equal(bal(db, chain[10]).held_micros, 20 * USD);
    /* cleared: no longer holds; confirmed: still holds the buyer's order */
    assert_null(dm_flags_resolve(db, pool, 0, NULL, q(db, "SELECT MIN(id) FROM member_flags"),
                                 "cleared", &f));
    assert_string_equal(f.status, "cleared");
    assert_null(dm_flags_resolve(db, pool, 0, NULL, q(db, "SELECT MAX(id) FROM member_flags"),
                                 "confirmed", &f));
    e = dm_flags_resolve(db, pool, 0, NULL, f.id, "cleared", &f);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_int_equal(q(db, "SELECT COUNT(*) FROM audit_log WHERE action IN ('flag.clear', "
                           "'flag.confirm')"),
                     2);
    assert_int_equal(release(db, now + 14 * 86400 + 5), 0);
    assert_int_equal(bal(db, chain[11]).held_micros, 50 * USD);
    /* chain[11] is only in the cleared flag: its own order is released at
     * every depth, chain[8] (confirmed with chain[12]) included */
    assert_null(pay(db, 2, chain[11], 1000 * USD));
    assert_int_equal(release(db, now + 14 * 86400 + 5), 10);
    assert_int_equal(bal(db, chain[10]).wallet_micros, 50 * USD);
    assert_int_equal(bal(db, chain[8]).wallet_micros, 1000 * USD * 100 / 10000);
    assert_int_equal(bal(db, chain[8]).held_micros, 1000 * USD * 50 / 10000);
    assert_int_equal(release(db, now + 14 * 86400 + 5), 0);
    assert_ledger_ok(db);
}

static void accept_terms(dm_db *db, int64_t user, const char *ip, int64_t at)
{
    x(db,
      "INSERT INTO legal_acceptances (user_id, document, version, content_hash, ip, accepted_at) "
      "VALUES (%d, 'terms', 'v1', 'h', '%s', %d)",
      (int)user, ip, (int)at);
}

static void test_registration_from_the_referrers_ip_within_24h_raises_a_flag(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t root = join(db, 0), t = 1700000000;
    int64_t same = join(db, root), other = join(db, root), late = join(db, root);

    (void)state;
    accept_terms(db, root, "203.0.113.5", t);
    accept_terms(db, same, "203.0.113.5", t + 86400);
    accept_terms(db, other, "198.51.100.7", t + 60);
    accept_terms(db, late, "203.0.113.5", t + 86401);
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_flags_check_registration(db, pool, same));
    assert_null(dm_flags_check_registration(db, pool, other));
    assert_null(dm_flags_check_registration(db, pool, late));
    assert_null(dm_flags_check_registration(db, pool, root));
    assert_null(dm_db_commit(db, pool));
    assert_int_equal(q(db, "SELECT COUNT(*) FROM member_flags"), 1);
    assert_int_equal(q(db, "SELECT user_id FROM member_flags"), same);
    assert_int_equal(q(db, "SELECT related_user_id FROM member_flags"), root);
}

static void test_vip_qualification_boundaries(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_vip_plan plan;

    (void)state;
    assert_null(dm_vip_plan_load(db, pool, &plan));
    for (int l = 1; l < 10; l++) {
        dm_volumes at = {plan_personal[l] * USD, 1, plan_direct[l], plan_team[l] * USD};
        dm_volumes v;
        assert_int_equal(dm_vip_qualify(&plan, &at), l + 1);
        v = at;
        v.personal_volume_micros -= 1;
        assert_int_equal(dm_vip_qualify(&plan, &v), l);
        v = at;
        v.direct_paid_referrals -= 1;
        assert_int_equal(dm_vip_qualify(&plan, &v), l);
        v = at;
        v.team_volume_micros -= 1;
        assert_int_equal(dm_vip_qualify(&plan, &v), l);
    }
    {
        dm_volumes zero = {0, 0, 0, 0};
        assert_int_equal(dm_vip_qualify(&plan, &zero), 1);
    }
}

static void test_reevaluation_raises_buyer_and_upline_and_a_refund_lowers_back(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t top = join(db, 0), r = join(db, top), b = join(db, r);

    (void)state;
    assert_null(pay(db, 1, r, 500 * USD)); /* r: personal 500 */
    assert_int_equal(q(db, "SELECT vip_level FROM users WHERE id = %d", (int)r), 1);
    assert_null(pay(db, 2, b, 2000 * USD - 1)); /* r: direct 1, team just below 2000 */
    assert_int_equal(q(db, "SELECT vip_level FROM users WHERE id = %d", (int)r), 1);
    assert_null(pay(db, 3, b, 1)); /* team exactly 2000 */
    assert_int_equal(q(db, "SELECT vip_level FROM users WHERE id = %d", (int)r), 2);
    /* b has the personal volume but no direct paid referral, no team */
    assert_int_equal(q(db, "SELECT vip_level FROM users WHERE id = %d", (int)b), 1);
    assert_int_equal(
        q(db, "SELECT direct_paid_referrals FROM member_volumes WHERE user_id = %d", (int)top), 1);
    /* the next order pays r at its new level */
    assert_null(pay(db, 4, b, 1000 * USD));
    assert_int_equal(credit_of(db, 4, 1), 1000 * USD * 550 / 10000);
    /* a refund takes the volume back, and with it the level only that
     * volume justified (refunded volume never counts: docs/commissions.md);
     * re-evaluation itself never lowers */
    clawback(db, 2);
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_vip_reevaluate(db, pool, b));
    assert_null(dm_db_commit(db, pool));
    assert_int_equal(q(db, "SELECT vip_level FROM users WHERE id = %d", (int)r), 1);
    assert_int_equal(
        q(db, "SELECT team_volume_micros FROM member_volumes WHERE user_id = %d", (int)r),
        1000 * USD + 1);
    assert_ledger_ok(db);
}

/* Issue 11, sequence 3: R buys 500 USD, R's referral X buys 2,000 USD, R
 * reaches level 2; X's order is refunded: R is back at level 1, audited
 * with the reason, and a later 1,000 USD order under R pays R 50 USD (the
 * level-1 rate), not 55. */
static void test_a_refund_lowers_the_level_only_its_volume_justified(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t r = join(db, 0), x = join(db, r), z = join(db, r);

    (void)state;
    assert_null(pay(db, 1, r, 500 * USD));
    assert_null(pay(db, 2, x, 2000 * USD));
    assert_int_equal(q(db, "SELECT vip_level FROM users WHERE id = %d", (int)r), 2);
    clawback(db, 2);
    assert_int_equal(q(db, "SELECT vip_level FROM users WHERE id = %d", (int)r), 1);
    assert_int_equal(q(db, "SELECT vip_level FROM users WHERE id = %d", (int)x), 1);
    assert_int_equal(q(db,
                       "SELECT COUNT(*) FROM audit_log WHERE action = 'user.vip_lowered' AND "
                       "target_type = 'user' AND target_id = '%d' AND staff_id IS NULL AND "
                       "ip = 'system' AND before_json = '{\"vip_level\":2}' AND "
                       "json_extract(after_json, '$.vip_level') = 1 AND "
                       "json_extract(after_json, '$.order_id') = 2 AND "
                       "json_extract(after_json, '$.reason') LIKE 'order 2 refunded: %%'",
                       (int)r),
                     1);
    assert_int_equal(q(db, "SELECT COUNT(*) FROM audit_log"), 1); /* nobody else moved */
    assert_null(pay(db, 3, z, 1000 * USD));
    assert_int_equal(credit_of(db, 3, 1), 50 * USD);
    assert_ledger_ok(db);
}

/* A level the refunded volume did not earn stays: one set by hand above
 * the volumes, one still reached without the refunded part (a partial
 * refund), and one earned under an easier plan (levels never fall with
 * time or a new plan, only with the volume that earned them). */
static void test_a_refund_leaves_levels_it_did_not_earn(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t r = join(db, 0), xr = join(db, r), hand = join(db, 0), y = join(db, hand);
    dm_vip_plan plan;

    (void)state;
    /* by hand: level 5 with no volume; a refund below it changes nothing */
    x(db, "UPDATE users SET vip_level = 5 WHERE id = %d", (int)hand);
    assert_null(pay(db, 10, y, 2000 * USD));
    clawback(db, 10);
    assert_int_equal(q(db, "SELECT vip_level FROM users WHERE id = %d", (int)hand), 5);
    /* a part refunded: 2,500 of team volume - 400 still reaches 2,000 */
    assert_null(pay(db, 1, r, 500 * USD));
    assert_null(pay(db, 2, xr, 2500 * USD));
    assert_int_equal(q(db, "SELECT vip_level FROM users WHERE id = %d", (int)r), 2);
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_commission_refund(db, pool, 2, 400 * USD, NULL));
    assert_null(dm_db_commit(db, pool));
    assert_int_equal(q(db, "SELECT vip_level FROM users WHERE id = %d", (int)r), 2);
    assert_int_equal(
        q(db, "SELECT team_volume_micros FROM member_volumes WHERE user_id = %d", (int)r),
        2100 * USD);
    /* X still has the order (in part): still R's direct paid referral */
    assert_int_equal(
        q(db, "SELECT direct_paid_referrals FROM member_volumes WHERE user_id = %d", (int)r), 1);
    /* a harder plan: level 2 now needs 3,000 of team volume; R keeps it
     * (its volumes no longer reach it before the next refund either) */
    assert_null(dm_vip_plan_load(db, pool, &plan));
    plan.levels[1].min_team_volume_micros = 3000 * USD;
    for (int l = 2; l < 10; l++) {
        if (plan.levels[l].min_team_volume_micros < 3000 * USD) {
            plan.levels[l].min_team_volume_micros = 3000 * USD;
        }
    }
    assert_null(dm_vip_plan_replace(db, pool, 0, NULL, &plan, 5000));
    clawback(db, 2);
    assert_int_equal(q(db, "SELECT vip_level FROM users WHERE id = %d", (int)r), 2);
    assert_int_equal(q(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'user.vip_lowered'"), 0);
    assert_ledger_ok(db);
}

static void test_plan_validation_refuses_a_plan_over_the_cap_naming_the_level(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_vip_plan plan, bad, back;
    dm_err *e;

    (void)state;
    assert_null(dm_vip_plan_load(db, pool, &plan));
    bad = plan;
    bad.levels[6].rates_bp[0] += 5000 - 2125 + 1; /* level 7 totals 5001 */
    e = dm_vip_plan_replace(db, pool, 0, NULL, &bad, 5000);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_non_null(strstr(e->message, "level 7 pays 5001 bp"));
    assert_string_equal(e->field, "levels[6].rates_bp");
    /* a lower cap refuses the default plan at its first level above it */
    e = dm_vip_plan_validate(pool, &plan, 2000);
    assert_non_null(e);
    assert_non_null(strstr(e->message, "level 7 pays 2125 bp"));
    bad = plan;
    bad.levels[3].min_team_volume_micros = 1;
    e = dm_vip_plan_validate(pool, &bad, 5000);
    assert_non_null(e);
    assert_non_null(strstr(e->message, "level 4"));
    bad = plan;
    bad.levels[0].rates_bp[9] = 10001;
    assert_non_null(dm_vip_plan_validate(pool, &bad, 10000 * 10));
    bad = plan;
    bad.levels[2].level = 4;
    assert_non_null(dm_vip_plan_validate(pool, &bad, 5000));
    assert_int_equal(q(db, "SELECT COUNT(*) FROM audit_log"), 0);
    /* exactly at the cap is allowed, stored and audited */
    bad = plan;
    bad.levels[9].rates_bp[0] += 5000 - 2950;
    assert_null(dm_vip_plan_replace(db, pool, 0, NULL, &bad, 5000));
    assert_null(dm_vip_plan_load(db, pool, &back));
    assert_memory_equal(&back, &bad, sizeof(back));
    assert_int_equal(q(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'vip_levels.update'"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_plan_is_the_documented_one_and_within_the_cap),
        cmocka_unit_test(test_split_pays_every_level_and_depth_and_stops_at_depth_10),
        cmocka_unit_test(test_rounding_never_pays_more_than_the_cap),
        cmocka_unit_test(test_suspended_ancestors_are_skipped),
        cmocka_unit_test(test_paying_an_order_twice_credits_once),
        cmocka_unit_test(test_clawback_takes_from_held_then_from_the_wallet_leaving_a_debt),
        cmocka_unit_test(test_release_waits_for_the_hold_and_skips_flagged_buyers),
        cmocka_unit_test(test_registration_from_the_referrers_ip_within_24h_raises_a_flag),
        cmocka_unit_test(test_vip_qualification_boundaries),
        cmocka_unit_test(test_reevaluation_raises_buyer_and_upline_and_a_refund_lowers_back),
        cmocka_unit_test(test_a_refund_lowers_the_level_only_its_volume_justified),
        cmocka_unit_test(test_a_refund_leaves_levels_it_did_not_earn),
        cmocka_unit_test(test_plan_validation_refuses_a_plan_over_the_cap_naming_the_level),
    };
    int rc;

    apr_initialize();
    if (sodium_init() < 0) {
        return 1;
    }
    apr_pool_create(&pool, NULL);
    if (dm_fx_init("commission") != 0) {
        return 1;
    }
    rc = cmocka_run_group_tests_name("commission", tests, NULL, NULL);
    apr_pool_destroy(pool);
    if (dm_fx_done() != 0) {
        return 1;
    }
    return rc;
}
