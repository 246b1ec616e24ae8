/* Money that goes only where it should (issue 11, sequences 4-7 and the
 * per-gateway hold): the commission cap holds for a whole order whatever
 * its upline's levels; a flagged member's purchase holds its commissions
 * at every depth; a suspended member's commissions stay held and staff may
 * forfeit them; a withdrawal is never paid out of a debt; the hold is the
 * order's gateway's. Each test plays
 * the sequence the audit found, with exact amounts, and ends with the
 * ledger verified. */
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
#include <unistd.h>

#include "base/clock.h"
#include "kyc/kyc_manual.h"
#include "ledger/ledger.h"
#include "referral/commission.h"
#include "referral/flags.h"
#include "referral/referral.h"
#include "referral/vip.h"
#include "referral/yield_commission.h"
#include "store/db.h"
#include "fixture.h"
#include "withdrawals/withdrawals.h"

#define USD (INT64_C(1000000))
#define DAY (INT64_C(86400))

static apr_pool_t *pool;
static int serial; /* distinct e-mail addresses */

static int64_t q(dm_db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int64_t q(dm_db *db, const char *fmt, ...)
{
    va_list ap;
    const char *sql;
    int64_t v = -1;
    int found = 0;
    dm_err *e;

    va_start(ap, fmt);
    sql = apr_pvsprintf(pool, fmt, ap);
    va_end(ap);
    e = dm_db_query_int64(db, pool, sql, &v, &found);
    if (e) {
        fail_msg("%s: %s", sql, e->message);
    }
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

/* A member referred by `referrer` (0: none), e-mail verified. */
static int64_t join(dm_db *db, int64_t referrer)
{
    dm_stmt *st = NULL;
    int row = 0;
    int64_t id = 0;
    const char *email = apr_psprintf(pool, "r%d@example.com", ++serial);
    const char *code = dm_referral_code_new(pool);

    assert_null(dm_db_begin(db, pool));
    assert_null(dm_db_prepare(db, pool,
                              "INSERT INTO users (email, email_key, password_hash, referral_code, "
                              "referrer_id, terms_version, terms_accepted_at, created_at, "
                              "updated_at, email_verified_at) "
                              "VALUES (?, ?, 'x', ?, ?, 'v1', 0, 0, 0, 1) RETURNING id",
                              &st));
    dm_stmt_bind_str(st, 1, email);
    dm_stmt_bind_str(st, 2, email);
    dm_stmt_bind_str(st, 3, code);
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

/* n members, each referred by the one before: chain[0] is the root. */
static void make_chain(dm_db *db, int64_t *chain, int n)
{
    for (int i = 0; i < n; i++) {
        chain[i] = join(db, i ? chain[i - 1] : 0);
    }
}

/* Paid order `order` of `amount` by `buyer`, as orders.c pays it. */
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
    assert_int_equal(r.total_micros, 0);
}

static void assert_msg_has(const dm_err *e, const char *needle)
{
    assert_non_null(e);
    if (!strstr(e->message, needle)) {
        fail_msg("\"%s\" is not in \"%s\"", needle, e->message);
    }
}

/* ---- 4. the cap caps an order ---- */

/* The audit's plan: level L pays 5000 bp at depth L and nothing else.
 * Every level pays exactly the cap, but an order whose ancestor at depth
 * d is at level d pays 10 x 5000 bp = 500 % of the order. */
static void test_cap_refuses_a_plan_whose_highest_rates_per_depth_sum_over_it(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_vip_plan plan, bad, back;
    dm_err *e;

    (void)state;
    assert_null(dm_vip_plan_load(db, pool, &plan));
    bad = plan;
    for (int l = 0; l < DM_VIP_LEVELS; l++) {
        memset(bad.levels[l].rates_bp, 0, sizeof(bad.levels[l].rates_bp));
        bad.levels[l].rates_bp[l] = 5000;
    }
    e = dm_vip_plan_replace(db, pool, 0, NULL, &bad, 5000);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "levels");
    assert_msg_has(e, "50000 bp");
    assert_msg_has(e, "cap of 5000 bp");
    assert_msg_has(e, "depth 1 at level 1 (5000 bp)");
    assert_msg_has(e, "depth 7 at level 7 (5000 bp)");
    assert_msg_has(e, "depth 10 at level 10 (5000 bp)");
    /* nothing written, nothing audited */
    assert_null(dm_vip_plan_load(db, pool, &back));
    assert_memory_equal(&back, &plan, sizeof(back));
    assert_int_equal(q(db, "SELECT COUNT(*) FROM audit_log"), 0);
    /* one depth over names only the levels that pay its highest rate */
    bad = plan;
    bad.levels[2].rates_bp[0] = 3051; /* level 3: 3051 + 725 = 3776 alone */
    e = dm_vip_plan_validate(pool, &bad, 5000);
    assert_msg_has(e, "5001 bp");
    assert_msg_has(e, "depth 1 at level 3 (3051 bp)");
    assert_msg_has(e, "depth 2 at level 10 (450 bp)");
    /* a tie names every level that pays it */
    bad = plan;
    for (int l = 0; l < DM_VIP_LEVELS; l++) {
        memcpy(bad.levels[l].rates_bp, plan.levels[9].rates_bp, sizeof(bad.levels[l].rates_bp));
    }
    for (int l = 4; l <= 6; l++) { /* levels 5-7: 3051 + 0 + 1500 = 4551 each */
        bad.levels[l].rates_bp[0] = 3051;
        bad.levels[l].rates_bp[1] = 0;
    }
    e = dm_vip_plan_validate(pool, &bad, 5000);
    assert_msg_has(e, "one order could pay 5001 bp");
    assert_msg_has(e, "depth 1 at levels 5-7 (3051 bp)");
    assert_msg_has(e, "depth 2 at levels 1-4, 8-10 (450 bp)");
    assert_msg_has(e, "depth 3 at levels 1-10 (300 bp)");
    /* the default plan: its highest rates are level 10's, 2950 bp */
    assert_int_equal(dm_vip_plan_order_max_bp(&plan), 2950);
    assert_null(dm_vip_plan_validate(pool, &plan, 2950));
    assert_non_null(dm_vip_plan_validate(pool, &plan, 2949));
}

/* What the cap promises: an order pays at most cap x amount, whatever the
 * levels of its upline. At exactly the cap, level d at depth d each paying
 * 500 bp, a 1,000 USD order pays 10 x 50 USD = 500 USD = 5000 bp. */
static void test_an_order_over_an_upline_of_levels_1_to_10_pays_at_most_the_cap(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_vip_plan plan;
    int64_t chain[11];

    (void)state;
    assert_null(dm_vip_plan_load(db, pool, &plan));
    for (int l = 0; l < DM_VIP_LEVELS; l++) {
        memset(plan.levels[l].rates_bp, 0, sizeof(plan.levels[l].rates_bp));
        plan.levels[l].rates_bp[l] = 500;
    }
    assert_null(dm_vip_plan_replace(db, pool, 0, NULL, &plan, 5000));
    make_chain(db, chain, 11);
    for (int d = 1; d <= 10; d++) {
        /* the ancestor at depth d of chain[10] is chain[10 - d] */
        x(db, "UPDATE users SET vip_level = %d WHERE id = %d", d, (int)chain[10 - d]);
    }
    assert_null(pay(db, 1, chain[10], 1000 * USD));
    assert_int_equal(q(db, "SELECT COUNT(*) FROM commissions WHERE order_id = 1"), 10);
    assert_int_equal(q(db, "SELECT SUM(amount_micros) FROM commissions WHERE order_id = 1"),
                     500 * USD);
    for (int d = 1; d <= 10; d++) {
        assert_int_equal(bal(db, chain[10 - d]).held_micros, 50 * USD);
    }
    assert_ledger_ok(db);
}

/* The plan of commissions on yield is capped the same way: a yield credit
 * pays each ancestor at its own level too. */
static void test_the_yield_commission_plan_is_capped_for_one_credit_too(void **state)
{
    json_t *body = json_pack("{s:[]}", "levels"), *ok;
    dm_yc_plan plan;
    dm_err *e;

    (void)state;
    for (int l = 1; l <= 10; l++) {
        json_t *rates = json_array();
        for (int d = 1; d <= 10; d++) {
            json_array_append_new(rates, json_integer(d == l ? 5000 : 0));
        }
        json_array_append_new(json_object_get(body, "levels"),
                              json_pack("{s:i,s:o}", "level", l, "rates_bp", rates));
    }
    e = dm_yc_plan_parse(pool, body, 5000, &plan);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "levels");
    assert_msg_has(e, "one yield credit could pay 50000 bp, more than the cap of 5000 bp");
    assert_msg_has(e, "depth 10 at level 10 (5000 bp)");
    /* only the levels given count: two levels of 2500 at different depths */
    ok = json_pack("{s:[{s:i,s:[i,i,i,i,i,i,i,i,i,i]},{s:i,s:[i,i,i,i,i,i,i,i,i,i]}]}", "levels",
                   "level", 1, "rates_bp", 2500, 0, 0, 0, 0, 0, 0, 0, 0, 0, "level", 2, "rates_bp",
                   0, 2500, 0, 0, 0, 0, 0, 0, 0, 0);
    assert_null(dm_yc_plan_parse(pool, ok, 5000, &plan));
    assert_non_null(dm_yc_plan_parse(pool, ok, 4999, &plan));
    json_decref(body);
    json_decref(ok);
}

/* ---- 5. a flagged member's purchase holds every depth ---- */

static int64_t release(dm_db *db, int64_t now)
{
    int64_t n = -1;
    assert_null(dm_commission_release_due(db, pool, now, &n));
    return n;
}

static void raise_flag(dm_db *db, int64_t user, int64_t related)
{
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_flags_raise(db, pool, user, related, DM_FLAG_SAME_REGISTRATION_IP));
    assert_null(dm_db_commit(db, pool));
}

static int64_t flag_of(dm_db *db, int64_t user, int64_t related)
{
    return q(db, "SELECT id FROM member_flags WHERE user_id = %d AND related_user_id = %d",
             (int)user, (int)related);
}

static const char *status_of(dm_db *db, int64_t order, int depth)
{
    dm_stmt *st;
    int row = 0;
    const char *s = NULL;

    assert_null(dm_db_prepare(
        db, pool, "SELECT status FROM commissions WHERE order_id = ? AND depth = ?", &st));
    dm_stmt_bind_int64(st, 1, order);
    dm_stmt_bind_int64(st, 2, depth);
    assert_null(dm_stmt_step(st, pool, &row));
    s = row ? dm_stmt_dup_text(st, pool, 0) : "(none)";
    dm_stmt_done(st);
    return s;
}

/* Z -> A -> B -> C, flags on (B, A) and (C, B). C's 1,000 USD order pays
 * B 50, A 20 and Z 10 USD (level 1: 500, 200, 100 bp); all three stay
 * held while C is flagged, however far up they go. */
static void test_a_flagged_members_purchase_holds_its_commissions_at_every_depth(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t c[4], now = dm_now(), later = now + 15 * DAY;
    int64_t z, a, b, buyer;
    dm_flag f;

    (void)state;
    make_chain(db, c, 4);
    z = c[0], a = c[1], b = c[2], buyer = c[3];
    raise_flag(db, b, a);
    raise_flag(db, buyer, b);
    assert_null(pay(db, 1, buyer, 1000 * USD));
    assert_int_equal(release(db, later), 0);
    assert_string_equal(status_of(db, 1, 1), "held");
    assert_string_equal(status_of(db, 1, 2), "held"); /* A: not in C's flag, still held */
    assert_string_equal(status_of(db, 1, 3), "held");
    assert_int_equal(bal(db, b).held_micros, 50 * USD);
    assert_int_equal(bal(db, a).held_micros, 20 * USD);
    assert_int_equal(bal(db, a).wallet_micros, 0);
    assert_int_equal(bal(db, z).held_micros, 10 * USD);
    assert_int_equal(bal(db, z).wallet_micros, 0);
    assert_ledger_ok(db);

    /* B is flagged too (with A): B's own 200 USD order holds A's 10 USD
     * and Z's 4 USD, and confirming the flag keeps them held */
    assert_null(pay(db, 2, b, 200 * USD));
    assert_null(dm_flags_resolve(db, pool, 0, NULL, flag_of(db, b, a), "confirmed", &f));
    /* clearing (C, B) leaves C unflagged: C's order is released, all of it */
    assert_null(dm_flags_resolve(db, pool, 0, NULL, flag_of(db, buyer, b), "cleared", &f));
    assert_int_equal(release(db, later), 3);
    assert_string_equal(status_of(db, 1, 1), "available");
    assert_string_equal(status_of(db, 1, 2), "available");
    assert_string_equal(status_of(db, 1, 3), "available");
    assert_string_equal(status_of(db, 2, 1), "held");
    assert_string_equal(status_of(db, 2, 2), "held");
    assert_int_equal(bal(db, b).wallet_micros, 50 * USD);
    assert_int_equal(bal(db, a).wallet_micros, 20 * USD);
    assert_int_equal(bal(db, a).held_micros, 10 * USD);
    assert_int_equal(bal(db, z).wallet_micros, 10 * USD);
    assert_int_equal(bal(db, z).held_micros, 4 * USD);
    assert_int_equal(release(db, later), 0);
    assert_ledger_ok(db);
}

/* A flag on a member holds the commissions of that member's purchases,
 * whichever side of the flag they are on; a flag on someone else in the
 * upline does not hold an unflagged buyer's commissions. */
static void test_a_flag_holds_purchases_of_both_its_members_and_no_one_elses(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t c[4], now = dm_now(), later = now + 15 * DAY;

    (void)state;
    make_chain(db, c, 4);
    /* c[1] and c[3] share a withdrawal address: flagged the one way round */
    raise_flag(db, c[3], c[1]);
    assert_null(pay(db, 1, c[3], 100 * USD)); /* c[3] is the flag's user */
    assert_null(pay(db, 2, c[1], 100 * USD)); /* c[1] its related member */
    assert_null(pay(db, 3, c[2], 100 * USD)); /* c[2]: not flagged */
    assert_int_equal(release(db, later), 2);
    assert_string_equal(status_of(db, 1, 1), "held");
    assert_string_equal(status_of(db, 1, 2), "held");
    assert_string_equal(status_of(db, 1, 3), "held");
    assert_string_equal(status_of(db, 2, 1), "held");
    assert_string_equal(status_of(db, 3, 1), "available"); /* c[1] earns 5 USD from c[2] */
    assert_string_equal(status_of(db, 3, 2), "available");
    assert_int_equal(bal(db, c[1]).wallet_micros, 5 * USD);
    assert_int_equal(bal(db, c[1]).held_micros, 2 * USD); /* from c[3]: 200 bp of 100 */
    assert_int_equal(bal(db, c[0]).wallet_micros, 2 * USD);
    assert_int_equal(bal(db, c[0]).held_micros, 1 * USD + 5 * USD);
    assert_int_equal(q(db, "SELECT COUNT(*) FROM commissions WHERE status = 'available'"), 2);
    assert_ledger_ok(db);
}

/* ---- 6. suspended members and forfeits ---- */

static void suspend(dm_db *db, int64_t user, int on)
{
    x(db, "UPDATE users SET status = '%s' WHERE id = %d", on ? "suspended" : "active", (int)user);
}

static int64_t commission_id(dm_db *db, int64_t order, int depth)
{
    return q(db, "SELECT id FROM commissions WHERE order_id = %d AND depth = %d", (int)order,
             depth);
}

static int64_t forfeited_total(dm_db *db)
{
    return q(db, "SELECT COALESCE(SUM(balance_micros), 0) FROM accounts WHERE kind = 'system' "
                 "AND code = 'forfeited_commissions'");
}

/* A's 50 USD commission is credited while A is active; A is then
 * suspended: the release job leaves it held, and releases it again only
 * once A is active. */
static void test_a_suspended_members_held_commissions_stay_held(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t c[3], later = dm_now() + 15 * DAY;

    (void)state;
    make_chain(db, c, 3);
    assert_null(pay(db, 1, c[2], 1000 * USD)); /* c[1] 50 USD, c[0] 20 USD */
    suspend(db, c[1], 1);
    assert_int_equal(release(db, later), 1);
    assert_string_equal(status_of(db, 1, 1), "held");
    assert_string_equal(status_of(db, 1, 2), "available");
    assert_int_equal(bal(db, c[1]).held_micros, 50 * USD);
    assert_int_equal(bal(db, c[1]).wallet_micros, 0);
    assert_int_equal(bal(db, c[0]).wallet_micros, 20 * USD);
    assert_ledger_ok(db);
    suspend(db, c[1], 0);
    assert_int_equal(release(db, later), 1);
    assert_int_equal(bal(db, c[1]).held_micros, 0);
    assert_int_equal(bal(db, c[1]).wallet_micros, 50 * USD);
    assert_ledger_ok(db);
}

/* Staff forfeit a suspended member's held commissions to the
 * forfeited_commissions system account, audited with the reason, once. */
static void test_staff_forfeit_a_suspended_members_held_commissions(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t c[3], id, later = dm_now() + 15 * DAY, count = -1, amount = -1;
    dm_commission_row row;
    dm_err *e;

    (void)state;
    make_chain(db, c, 3);
    assert_null(pay(db, 1, c[2], 1000 * USD)); /* c[1] 50, c[0] 20 */
    assert_null(pay(db, 2, c[2], 300 * USD));  /* c[1] 15, c[0] 6 */
    id = commission_id(db, 1, 1);
    /* an active member's commission, held only by its hold period: no */
    e = dm_commission_forfeit(db, pool, 7, "192.0.2.1", id, "fraud", &row);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_msg_has(e, "suspend");
    suspend(db, c[1], 1);
    /* a reason is required */
    e = dm_commission_forfeit(db, pool, 7, "192.0.2.1", id, "", &row);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "reason");
    e = dm_commission_forfeit(db, pool, 7, "192.0.2.1", 999999, "fraud", &row);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_NOT_FOUND);
    assert_int_equal(q(db, "SELECT COUNT(*) FROM audit_log"), 0);

    assert_null(dm_commission_forfeit(db, pool, 0, NULL, id, "account closed for fraud", &row));
    assert_string_equal(row.status, "forfeited");
    assert_int_equal(row.amount_micros, 50 * USD);
    assert_int_equal(bal(db, c[1]).held_micros, 15 * USD);
    assert_int_equal(forfeited_total(db), 50 * USD);
    assert_int_equal(q(db,
                       "SELECT COUNT(*) FROM transfers WHERE idempotency_key = 'forfeit:%d' AND "
                       "kind = 'commission_forfeit' AND amount_micros = %d",
                       (int)id, (int)(50 * USD)),
                     1);
    assert_int_equal(q(db,
                       "SELECT COUNT(*) FROM audit_log WHERE action = 'commission.forfeit' AND "
                       "target_type = 'commission' AND target_id = '%d' AND staff_id IS NULL AND "
                       "after_json LIKE '%%account closed for fraud%%'",
                       (int)id),
                     1);
    /* once: again is a conflict and moves nothing */
    e = dm_commission_forfeit(db, pool, 0, NULL, id, "again", &row);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_int_equal(forfeited_total(db), 50 * USD);

    /* the rest of the member's held commissions in one call */
    assert_null(
        dm_commission_forfeit_member(db, pool, 0, NULL, c[1], "account closed", &count, &amount));
    assert_int_equal(count, 1);
    assert_int_equal(amount, 15 * USD);
    assert_int_equal(bal(db, c[1]).held_micros, 0);
    assert_int_equal(forfeited_total(db), 65 * USD);
    assert_null(
        dm_commission_forfeit_member(db, pool, 0, NULL, c[1], "account closed", &count, &amount));
    assert_int_equal(count, 0);
    assert_int_equal(amount, 0);
    /* an active member's: refused, nothing written */
    e = dm_commission_forfeit_member(db, pool, 0, NULL, c[0], "no", &count, &amount);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_int_equal(bal(db, c[0]).held_micros, 26 * USD);
    assert_int_equal(q(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'commission.forfeit'"),
                     2);
    /* unsuspended later: nothing forfeited comes back; a refund skips them */
    suspend(db, c[1], 0);
    assert_int_equal(release(db, later), 2); /* c[0]'s two */
    assert_int_equal(bal(db, c[1]).wallet_micros, 0);
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_commission_clawback(db, pool, 1));
    assert_null(dm_db_commit(db, pool));
    assert_string_equal(status_of(db, 1, 1), "forfeited");
    assert_string_equal(status_of(db, 1, 2), "clawed_back");
    assert_int_equal(bal(db, c[1]).wallet_micros, 0);
    assert_int_equal(bal(db, c[0]).wallet_micros, 6 * USD);
    assert_int_equal(forfeited_total(db), 65 * USD);
    assert_ledger_ok(db);
}

/* A confirmed flag keeps a buyer's commissions held; staff forfeit them
 * one by one (an open flag must be confirmed first). */
static void test_staff_forfeit_commissions_held_by_a_confirmed_flag(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t c[3], later = dm_now() + 15 * DAY;
    dm_commission_row row;
    dm_flag f;
    dm_err *e;

    (void)state;
    make_chain(db, c, 3);
    raise_flag(db, c[2], c[1]);
    assert_null(pay(db, 1, c[2], 1000 * USD));
    e = dm_commission_forfeit(db, pool, 0, NULL, commission_id(db, 1, 2), "fake buyer", &row);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_msg_has(e, "confirm");
    assert_null(dm_flags_resolve(db, pool, 0, NULL, flag_of(db, c[2], c[1]), "confirmed", &f));
    assert_int_equal(release(db, later), 0);
    assert_null(
        dm_commission_forfeit(db, pool, 0, NULL, commission_id(db, 1, 1), "fake buyer", &row));
    assert_null(
        dm_commission_forfeit(db, pool, 0, NULL, commission_id(db, 1, 2), "fake buyer", &row));
    assert_int_equal(bal(db, c[1]).held_micros, 0);
    assert_int_equal(bal(db, c[0]).held_micros, 0);
    assert_int_equal(bal(db, c[0]).wallet_micros, 0);
    assert_int_equal(forfeited_total(db), 70 * USD);
    assert_int_equal(release(db, later), 0);
    assert_ledger_ok(db);
}

/* ---- 7. no withdrawal out of a debt ---- */

static const dm_wd_limits LIMITS = {1000, 10000 * USD, 20000 * USD};
#define TRX "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"

static void kyc(dm_db *db, int64_t user)
{
    dm_member m;
    assert_null(dm_kyc_set_status(db, pool, 0, NULL, user, "approved", &m));
}

static void refund(dm_db *db, int64_t order)
{
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_commission_clawback(db, pool, order));
    assert_null(dm_db_commit(db, pool));
}

static int64_t wd_held(dm_db *db, int64_t id)
{
    return q(db, "SELECT held_at IS NOT NULL FROM withdrawals WHERE id = %d", (int)id);
}

/* The audit's sequence: A's 50 USD commission is released, A asks to
 * withdraw 50 USD (pending), the order is refunded (A's wallet: -50 USD),
 * finance approves. The approval is refused; the clawback marked the
 * withdrawal held for review; rejecting it returns the 50 USD, which pays
 * the debt. */
static void test_a_withdrawal_is_not_paid_out_of_a_debt(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t c[2], later = dm_now() + 15 * DAY, alerts;
    dm_withdrawal w, other, out;
    dm_err *e;

    (void)state;
    make_chain(db, c, 2);
    kyc(db, c[0]);
    assert_null(pay(db, 1, c[1], 1000 * USD));
    assert_int_equal(release(db, later), 1);
    assert_int_equal(bal(db, c[0]).wallet_micros, 50 * USD);
    assert_null(dm_wd_request(db, pool, &LIMITS, c[0], 50 * USD, "trc20", TRX, &w, NULL));
    assert_string_equal(w.status, "pending");
    assert_int_equal(bal(db, c[0]).wallet_micros, 0);
    assert_int_equal(wd_held(db, w.id), 0);
    alerts = q(db, "SELECT COUNT(*) FROM mail_queue WHERE template = 'staff_alert'");

    refund(db, 1);
    assert_int_equal(bal(db, c[0]).wallet_micros, -50 * USD);
    assert_int_equal(wd_held(db, w.id), 1);
    assert_null(dm_wd_get(db, pool, w.id, &out));
    assert_non_null(out.held_reason);
    assert_non_null(strstr(out.held_reason, "-50.00 USD"));
    assert_int_equal(q(db, "SELECT COUNT(*) FROM mail_queue WHERE template = 'staff_alert'"),
                     alerts); /* no staff account: nobody to tell, nothing queued */

    e = dm_wd_decide(db, pool, 0, NULL, w.id, 1, "0xpaid", NULL, &out);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_msg_has(e, "in debt");
    assert_msg_has(e, "-50.00 USD");
    assert_null(dm_wd_get(db, pool, w.id, &other));
    assert_string_equal(other.status, "pending");
    assert_int_equal(q(db, "SELECT COUNT(*) FROM transfers WHERE kind = 'withdrawal_paid'"), 0);
    assert_int_equal(q(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'withdrawal.approve'"),
                     0);
    assert_ledger_ok(db);

    assert_null(dm_wd_decide(db, pool, 0, NULL, w.id, 0, NULL, "commission refunded", &out));
    assert_string_equal(out.status, "rejected");
    assert_int_equal(bal(db, c[0]).wallet_micros, 0);
    assert_int_equal(bal(db, c[0]).held_micros, 0);
    assert_ledger_ok(db);
}

/* Once the debt is repaid (a later credit), a held withdrawal can be
 * approved; it still shows it was held. Other members' withdrawals are
 * not touched, nor a member's that a clawback leaves above zero. */
static void test_a_clawback_holds_only_the_indebted_members_pending_withdrawals(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t c[3], later = dm_now() + 15 * DAY;
    dm_withdrawal w1, w2, w3, out;
    dm_transfer t;
    int created = 0;

    (void)state;
    make_chain(db, c, 3); /* c[0] <- c[1] <- c[2] */
    kyc(db, c[0]);
    kyc(db, c[1]);
    assert_null(pay(db, 1, c[2], 1000 * USD)); /* c[1] 50, c[0] 20 */
    assert_int_equal(release(db, later), 2);
    assert_null(
        dm_ledger_adjust(db, pool, 0, NULL, c[0], 30 * USD, "other money", NULL, &t, &created));
    /* c[0] withdraws 20 of its 50: the clawback of 20 leaves it at 10 */
    assert_null(dm_wd_request(db, pool, &LIMITS, c[0], 20 * USD, "trc20", TRX, &w1, NULL));
    /* c[1] withdraws 30 and 10 of its 50: the clawback leaves -40 */
    assert_null(dm_wd_request(db, pool, &LIMITS, c[1], 30 * USD, "trc20", TRX, &w2, NULL));
    assert_null(dm_wd_request(db, pool, &LIMITS, c[1], 10 * USD, "trc20", TRX, &w3, NULL));
    refund(db, 1);
    assert_int_equal(bal(db, c[0]).wallet_micros, 10 * USD);
    assert_int_equal(bal(db, c[1]).wallet_micros, -40 * USD);
    assert_int_equal(wd_held(db, w1.id), 0);
    assert_int_equal(wd_held(db, w2.id), 1);
    assert_int_equal(wd_held(db, w3.id), 1);
    assert_null(dm_wd_decide(db, pool, 0, NULL, w1.id, 1, "0xone", NULL, &out));
    assert_string_equal(out.status, "paid");
    assert_int_equal(dm_wd_decide(db, pool, 0, NULL, w2.id, 1, "0xtwo", NULL, &out)->code,
                     DM_E_CONFLICT);
    /* rejecting 30 pays 30 of the 40 of debt: still in debt */
    assert_null(dm_wd_decide(db, pool, 0, NULL, w2.id, 0, NULL, "debt", &out));
    assert_int_equal(bal(db, c[1]).wallet_micros, -10 * USD);
    assert_int_equal(dm_wd_decide(db, pool, 0, NULL, w3.id, 1, "0xthree", NULL, &out)->code,
                     DM_E_CONFLICT);
    /* a later credit settles the rest: the held one may now be paid */
    assert_null(dm_ledger_adjust(db, pool, 0, NULL, c[1], 10 * USD, "repaid", NULL, &t, &created));
    assert_int_equal(bal(db, c[1]).wallet_micros, 0);
    assert_null(dm_wd_decide(db, pool, 0, NULL, w3.id, 1, "0xthree", NULL, &out));
    assert_string_equal(out.status, "paid");
    assert_true(out.held_at > 0);
    assert_int_equal(q(db, "SELECT COALESCE(SUM(balance_micros), 0) FROM accounts WHERE "
                           "code = 'withdrawals_paid'"),
                     30 * USD);
    assert_ledger_ok(db);
}

/* ---- the hold is the gateway's ---- */

static void pay_via(dm_db *db, int64_t order, int64_t buyer, int64_t amount, const char *gateway)
{
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_commission_pay_via(db, pool, order, buyer, amount, "USD", gateway));
    assert_null(dm_db_commit(db, pool));
}

static int64_t hold_of(dm_db *db, int64_t order)
{
    return q(db, "SELECT release_at - created_at FROM commissions WHERE order_id = %d", (int)order);
}

/* Card payments can be charged back for ~120 days, crypto cannot: each
 * gateway may have its own hold; balance-paid orders (and gateways not
 * named) get the default. */
static void test_the_hold_is_the_order_gateways_and_the_default_for_the_balance(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t c[2], now = dm_now();
    char long_name[80];

    (void)state;
    dm_commission_set_hold(14 * DAY);
    assert_int_equal(dm_commission_set_hold_for("card", 120 * DAY), 0);
    assert_int_equal(dm_commission_set_hold_for("crypto", 0), 0);
    assert_int_equal(dm_commission_set_hold_for("crypto", 1 * DAY), 0); /* a later one wins */
    assert_int_equal(dm_commission_set_hold_for("crypto", 0), 0);
    memset(long_name, 'x', 65);
    long_name[65] = '\0';
    assert_int_equal(dm_commission_set_hold_for(long_name, DAY), -1);
    assert_int_equal(dm_commission_hold_for("card"), 120 * DAY);
    assert_int_equal(dm_commission_hold_for("crypto"), 0);
    assert_int_equal(dm_commission_hold_for("balance"), 14 * DAY);
    assert_int_equal(dm_commission_hold_for("other"), 14 * DAY);
    assert_int_equal(dm_commission_hold_for(NULL), 14 * DAY);

    make_chain(db, c, 2);
    pay_via(db, 1, c[1], 100 * USD, "card");
    pay_via(db, 2, c[1], 100 * USD, "crypto");
    pay_via(db, 3, c[1], 100 * USD, "balance");
    assert_null(pay(db, 4, c[1], 100 * USD)); /* dm_commission_pay: no gateway */
    assert_int_equal(hold_of(db, 1), 120 * DAY);
    assert_int_equal(hold_of(db, 2), 0);
    assert_int_equal(hold_of(db, 3), 14 * DAY);
    assert_int_equal(hold_of(db, 4), 14 * DAY);
    /* crypto at once, the balance after 14 days, the card after 120 */
    assert_int_equal(release(db, now + 1), 1);
    assert_int_equal(bal(db, c[0]).wallet_micros, 5 * USD);
    assert_int_equal(release(db, now + 14 * DAY + 1), 2);
    assert_int_equal(release(db, now + 119 * DAY), 0);
    assert_int_equal(release(db, now + 120 * DAY + 1), 1);
    assert_int_equal(bal(db, c[0]).wallet_micros, 20 * USD);
    assert_int_equal(bal(db, c[0]).held_micros, 0);
    /* setting the default again (a restart) forgets the gateways' holds */
    dm_commission_set_hold(14 * DAY);
    assert_int_equal(dm_commission_hold_for("card"), 14 * DAY);
    assert_ledger_ok(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cap_refuses_a_plan_whose_highest_rates_per_depth_sum_over_it),
        cmocka_unit_test(test_an_order_over_an_upline_of_levels_1_to_10_pays_at_most_the_cap),
        cmocka_unit_test(test_the_yield_commission_plan_is_capped_for_one_credit_too),
        cmocka_unit_test(test_a_flagged_members_purchase_holds_its_commissions_at_every_depth),
        cmocka_unit_test(test_a_flag_holds_purchases_of_both_its_members_and_no_one_elses),
        cmocka_unit_test(test_a_suspended_members_held_commissions_stay_held),
        cmocka_unit_test(test_staff_forfeit_a_suspended_members_held_commissions),
        cmocka_unit_test(test_staff_forfeit_commissions_held_by_a_confirmed_flag),
        cmocka_unit_test(test_a_withdrawal_is_not_paid_out_of_a_debt),
        cmocka_unit_test(test_a_clawback_holds_only_the_indebted_members_pending_withdrawals),
        cmocka_unit_test(test_the_hold_is_the_order_gateways_and_the_default_for_the_balance),
    };
    int rc;

    apr_initialize();
    if (sodium_init() < 0) {
        return 1;
    }
    apr_pool_create(&pool, NULL);
    /* as the module does in post_config */
    dm_ledger_set_debt_hook(dm_wd_hold_for_debt);
    if (dm_fx_init("money-rules") != 0) {
        return 1;
    }
    rc = cmocka_run_group_tests_name("money_rules", tests, NULL, NULL);
    apr_pool_destroy(pool);
    if (dm_fx_done() != 0) {
        return 1;
    }
    return rc;
}
