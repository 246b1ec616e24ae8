/* Refunds (issue 11, sequences 1 and 2) through the real core on a SQLite
 * file under a fake clock: a refund undoes the purchase — the payment,
 * the purchase commissions, the yield credited on the contract and the
 * yield commissions paid on it, also for an expired contract (a debt when
 * the yield was spent); partial refunds post a refund transfer and the
 * proportional clawbacks (floor, the remainder carried: refunds summing
 * to the price claw back exactly everything), the contract runs on its
 * remaining share (released hash rate back in capacity) or ends
 * (end-contract), an over-refund is parked for staff, and the accrual's
 * share of an hour depends only on refunds made before the hour ended.
 * Every test ends with the ledger verified. The VIP side (sequence 3) is
 * in test_commission.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "cron/cron.h"
#include "ledger/ledger.h"
#include "referral/referral.h"
#include "referral/yield_commission.h"
#include "shop/accrual.h"
#include "shop/capacity.h"
#include "shop/catalogue.h"
#include "shop/orders.h"
#include "shop/payments.h"
#include "shop/pool_payouts.h"
#include "shop/refunds.h"
#include "store/db.h"
#include "fixture.h"

#define HOUR 3600
#define DAY 86400
#define USD INT64_C(1000000)
#define DAILY INT64_C(1100000) /* the audit's package: 1 USD yields 1.1 USD a day */
/* 2026-11-25T00:00:00Z */
#define DAY0 INT64_C(1795564800)

static apr_pool_t *pool;
static dm_db *db;
static const char *clock_path;
static int serial;
static int64_t one_id, day_id, pool_id; /* packages */

static void quiet_sink(void *baton, dm_level level, const char *msg)
{
    (void)baton;
    (void)level;
    (void)msg;
}

static const char *sqlf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *sqlf(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return apr_pstrdup(pool, buf);
}

static void set_clock(int64_t t)
{
    FILE *f = fopen(clock_path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", dm_json_time(pool, t));
    fclose(f);
}

static int64_t count(const char *sql)
{
    int64_t v = -1;
    int found = 0;
    dm_err *e = dm_db_query_int64(db, pool, sql, &v, &found);
    if (e) {
        fail_msg("%s: %s", sql, e->message);
    }
    return found ? v : 0;
}

static void exec(const char *sql)
{
    dm_err *e = dm_db_exec(db, pool, sql);
    if (e) {
        fail_msg("%s: %s", sql, e->message);
    }
}

static void assert_ledger_sound(void)
{
    dm_ledger_report rep;
    assert_null(dm_ledger_verify(db, pool, &rep));
    if (!rep.ok) {
        fail_msg("ledger verify: %s", rep.problem ? rep.problem : "?");
    }
    assert_int_equal(rep.total_micros, 0);
}

static int64_t new_member(int64_t referrer)
{
    dm_stmt *st = NULL;
    int row = 0;
    int64_t id;
    const char *email = apr_psprintf(pool, "f%d@example.com", ++serial);
    const char *code = apr_psprintf(pool, "F%07d", serial);

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
    assert_true(row);
    id = dm_stmt_int64(st, 0);
    dm_stmt_done(st);
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_referral_attach(db, pool, id, referrer));
    assert_null(dm_db_commit(db, pool));
    return id;
}

static void credit(int64_t user, int64_t amount)
{
    dm_transfer t;
    int created = 0;
    assert_null(
        dm_ledger_adjust(db, pool, 0, NULL, user, amount, "test credit", NULL, &t, &created));
}

static int64_t wallet(int64_t user)
{
    dm_balances b;
    assert_null(dm_ledger_member_balances(db, pool, user, "USD", &b));
    return b.wallet_micros;
}

static int64_t held(int64_t user)
{
    dm_balances b;
    assert_null(dm_ledger_member_balances(db, pool, user, "USD", &b));
    return b.held_micros;
}

static int64_t system_balance(const char *code)
{
    return count(sqlf("SELECT balance_micros FROM accounts WHERE code = '%s'", code));
}

static dm_str S(const char *s)
{
    dm_str out = {s, s ? strlen(s) : 0};
    return out;
}

/* A text column of a one-row query (NULL when no row or NULL). */
static const char *text_of(const char *sql)
{
    dm_stmt *st = NULL;
    int row = 0;
    const char *out = NULL;

    assert_null(dm_db_prepare(db, pool, sql, &st));
    assert_null(dm_stmt_step(st, pool, &row));
    if (row) {
        out = dm_stmt_dup_text(st, pool, 0);
    }
    dm_stmt_done(st);
    return out;
}

/* Records (and so applies) an event of the sandbox gateway; its outcome. */
static const char *deliver(dm_payment_event_status status, int64_t order_id, const char *ref,
                           int64_t amount, const char *currency)
{
    dm_payment_event ev;
    dm_payment_recorded rec;
    const char *evid = apr_psprintf(pool, "evt_%d", ++serial);
    const char *oid = order_id ? sqlf("%lld", (long long)order_id) : NULL;

    memset(&ev, 0, sizeof(ev));
    ev.size = sizeof(ev);
    ev.event_id = S(evid);
    ev.status = status;
    ev.order_id = S(oid);
    ev.provider_ref = S(ref);
    ev.amount_micros = amount;
    ev.currency = S(currency);
    assert_null(dm_payment_event_record(db, pool, "sandbox", &ev, "{}", 2, &rec));
    return text_of(sqlf("SELECT outcome FROM payment_events WHERE id = %lld", (long long)rec.id));
}

static dm_order order(int64_t id)
{
    dm_order o;
    assert_null(dm_order_get(db, pool, id, 0, &o));
    return o;
}

static dm_contract contract_of(int64_t order_id)
{
    dm_contract c;
    int found = 0;
    assert_null(dm_contract_of_order(db, pool, order_id, &c, &found));
    assert_true(found);
    return c;
}

/* A checkout of package `pkg` through the sandbox gateway paid by its
 * event now (as orders.c leaves a pending order, then its webhook). */
static int64_t gateway_order(int64_t user, int64_t pkg, int64_t price)
{
    const char *ref = apr_psprintf(pool, "cs_unit_%d", ++serial);
    int64_t id;

    exec(sqlf("INSERT INTO orders (user_id, package_id, amount_micros, currency, status, "
              "gateway, provider_ref, created_at, updated_at) VALUES (%lld, %lld, %lld, 'USD', "
              "'pending', 'sandbox', '%s', %lld, %lld)",
              (long long)user, (long long)pkg, (long long)price, ref, (long long)dm_now(),
              (long long)dm_now()));
    id = count("SELECT MAX(id) FROM orders");
    assert_string_equal(deliver(DM_PAY_PAID, id, ref, price, "USD"), "paid");
    return id;
}

static int64_t balance_order(int64_t user, int64_t pkg, int64_t price)
{
    dm_order o;
    credit(user, price);
    assert_null(dm_order_pay_from_balance(db, pool, user, pkg, &o));
    return o.id;
}

/* The hourly accrual through the runner, as the daemon runs it. */
static void accrue(int64_t from, int64_t to)
{
    dm_job_env env;
    dm_job_run_opts o;
    const dm_job_def *def = dm_job_find("accrual", 0);

    assert_non_null(def);
    memset(&env, 0, sizeof(env));
    env.batch_size = 100;
    memset(&o, 0, sizeof(o));
    o.holder = dm_job_holder(pool);
    o.force = 1;
    for (int64_t h = from; h < to; h += HOUR) {
        dm_job_outcome out = DM_JOB_RAN_FAILED;
        assert_null(dm_job_run(db, pool, &env, def, h, &o, &out));
        assert_int_equal(out, DM_JOB_RAN_OK);
    }
}

/* A job's function alone (no run history): re-runs a period. */
static void call(dm_job_fn *fn, const char *job, int64_t period)
{
    static dm_job_env env;
    dm_job_ctx *ctx = apr_pcalloc(pool, sizeof(*ctx));
    dm_job_result res;

    memset(&env, 0, sizeof(env));
    env.batch_size = 100;
    ctx->db = db;
    ctx->pool = pool;
    ctx->env = &env;
    ctx->job = job;
    ctx->period = dm_json_time(pool, period);
    ctx->period_start = period;
    ctx->period_end = period + HOUR;
    ctx->holder = "unit";
    ctx->renewed = (int64_t)time(NULL);
    assert_null(fn(ctx, &res));
}

/* floor(D x t x num / (86400 x den)) as the accrual computes it for a
 * contract started on a whole hour: G(t) = floor(floor(D t / 86400) x num
 * / den). */
static int64_t G(int64_t t, int64_t num, int64_t den)
{
    return (int64_t)(((__int128)(DAILY * t / DAY)) * num / den);
}

/* What the depth-d yield commissions of a contract's hourly credits
 * [from, to) come to at `bp`, with the share num/den. */
static int64_t ycomm(int64_t start, int64_t from, int64_t to, int bp, int64_t num, int64_t den)
{
    int64_t sum = 0;
    for (int64_t h = from; h < to; h += HOUR) {
        int64_t c = G(h + HOUR - start, num, den) - G(h - start, num, den);
        sum += c * bp / 10000;
    }
    return sum;
}

static void yield_plan(const char *json)
{
    dm_yc_plan plan;
    json_t *body = dm_json_own(pool, json_loads(json, 0, NULL));
    assert_null(dm_yc_plan_parse(pool, body, 5000, &plan));
    assert_null(dm_yc_plan_replace(db, pool, 0, NULL, &plan, 5000));
}

static int64_t sold(void)
{
    int64_t v = 0;
    assert_null(dm_capacity_sold(db, pool, &v));
    return v;
}

static int setup(void **state)
{
    dm_capacity_row cap;
    dm_package one = {0, "One", 1000, USD, DAILY, 30, "USD", 1, 10, DM_YIELD_FIXED, 0};
    dm_package day = {0, "Day", 1000, USD, DAILY, 1, "USD", 1, 20, DM_YIELD_FIXED, 0};
    dm_package pl = {0, "Pool", 1000, USD, 0, 30, "USD", 1, 30, DM_YIELD_POOL, 0};

    (void)state;
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    clock_path = dm_fx_path(pool, "clock");
    assert_int_equal(dm_clock_use_file(clock_path), 0);
    set_clock(DAY0);
    db = dm_fx_db(pool);
    assert_null(dm_capacity_set(db, pool, 0, NULL, 1000000000, "unit", &cap));
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_catalogue_insert(db, pool, &one));
    assert_null(dm_catalogue_insert(db, pool, &day));
    assert_null(dm_catalogue_insert(db, pool, &pl));
    assert_null(dm_db_commit(db, pool));
    one_id = one.id;
    day_id = day.id;
    pool_id = pl.id;
    dm_refund_set_partial_mode(DM_PARTIAL_REFUND_PRORATE);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dm_refund_set_partial_mode(DM_PARTIAL_REFUND_PRORATE);
    dm_clock_use_file(NULL);
    apr_pool_destroy(pool);
    return 0;
}

/* ---- 1. a refund undoes the purchase ---- */

static void
test_a_refund_event_takes_back_payment_commissions_yield_and_yield_commissions(void **state)
{
    int64_t top = new_member(0), mid = new_member(top), buyer = new_member(mid);
    int64_t oid, cid;
    dm_contract c;
    dm_order o;
    (void)state;

    yield_plan("{\"levels\":[{\"level\":1,\"rates_bp\":[1000,500,0,0,0,0,0,0,0,0]}]}");
    oid = gateway_order(buyer, one_id, USD);
    cid = contract_of(oid).id;
    set_clock(DAY0 + DAY + 60);
    accrue(DAY0, DAY0 + DAY);
    assert_int_equal(wallet(buyer), DAILY); /* 1.1 USD over 24 hours */
    assert_int_equal(wallet(mid), ycomm(DAY0, DAY0, DAY0 + DAY, 1000, 1, 1));
    assert_int_equal(wallet(top), ycomm(DAY0, DAY0, DAY0 + DAY, 500, 1, 1));
    assert_int_equal(held(mid), 50000); /* 5 % of 1 USD */
    assert_int_equal(held(top), 20000);

    o = order(oid);
    assert_string_equal(deliver(DM_PAY_REFUNDED, 0, o.provider_ref, USD, "USD"), "refunded");
    assert_int_equal(wallet(buyer), 0);
    assert_int_equal(wallet(mid), 0);
    assert_int_equal(wallet(top), 0);
    assert_int_equal(held(mid), 0);
    assert_int_equal(held(top), 0);
    /* every account of the platform is back where it was */
    assert_int_equal(count("SELECT COUNT(*) FROM accounts WHERE balance_micros <> 0"), 0);
    o = order(oid);
    assert_string_equal(o.status, "refunded");
    assert_int_equal(o.refunded_micros, USD);
    c = contract_of(oid);
    assert_string_equal(c.status, "refunded");
    assert_int_equal(c.earned_micros, DAILY);
    assert_int_equal(c.yield_clawed_micros, DAILY);
    /* the whole order at once: the payment reversed, the old keys */
    assert_int_equal(count(sqlf("SELECT COUNT(*) FROM transfers WHERE idempotency_key = "
                                "'refund:%lld' AND reverses_transfer_id = %lld",
                                (long long)oid, (long long)o.payment_transfer_id)),
                     1);
    assert_int_equal(count(sqlf("SELECT amount_micros FROM transfers WHERE idempotency_key = "
                                "'yieldback:%lld' AND kind = 'yield_clawback'",
                                (long long)cid)),
                     DAILY);
    assert_int_equal(count(sqlf("SELECT COUNT(*) FROM transfers WHERE idempotency_key IN "
                                "('clawback:%lld:1', 'clawback:%lld:2')",
                                (long long)oid, (long long)oid)),
                     2);
    /* the hour the refund fell in pays nothing */
    set_clock(DAY0 + DAY + HOUR + 60);
    accrue(DAY0 + DAY, DAY0 + DAY + HOUR);
    assert_int_equal(wallet(buyer), 0);
    assert_int_equal(contract_of(oid).earned_micros, DAILY);
    assert_ledger_sound();
}

static void test_a_refund_of_an_expired_contract_takes_its_yield_into_a_debt(void **state)
{
    int64_t buyer = new_member(0), oid;
    dm_contract c;
    dm_order o;
    (void)state;

    oid = gateway_order(buyer, day_id, USD);
    set_clock(DAY0 + DAY + 60);
    accrue(DAY0, DAY0 + DAY);
    call(dm_accrual_job_expiry, "contract-expiry", DAY0 + DAY);
    c = contract_of(oid);
    assert_string_equal(c.status, "expired");
    assert_string_equal(order(oid).status, "paid");
    assert_int_equal(wallet(buyer), DAILY);
    /* the member spends a dollar of the yield on another package */
    {
        dm_order second;
        assert_null(dm_order_pay_from_balance(db, pool, buyer, one_id, &second));
    }
    assert_int_equal(wallet(buyer), DAILY - USD);
    o = order(oid);
    /* an event without an amount refunds what is left: the whole order */
    assert_string_equal(deliver(DM_PAY_REFUNDED, 0, o.provider_ref, 0, NULL), "refunded");
    assert_int_equal(wallet(buyer), DAILY - USD - DAILY); /* a debt of 1 USD */
    c = contract_of(oid);
    assert_string_equal(c.status, "refunded");
    assert_int_equal(c.ended_at, c.expires_at); /* its life ended at its expiry */
    assert_int_equal(c.yield_clawed_micros, DAILY);
    assert_int_equal(system_balance("gateway:sandbox"), 0);
    assert_ledger_sound();
}

/* ---- 2. partial refunds ---- */

static void test_two_half_refund_events_refund_half_each_then_end_the_contract(void **state)
{
    int64_t ref = new_member(0), buyer = new_member(ref), oid, before;
    dm_contract c;
    dm_order o;
    (void)state;

    oid = gateway_order(buyer, one_id, USD);
    set_clock(DAY0 + 2 * HOUR + 60);
    accrue(DAY0, DAY0 + 2 * HOUR);
    assert_int_equal(wallet(buyer), 91666);
    assert_int_equal(held(ref), 50000);
    before = sold();

    o = order(oid);
    assert_string_equal(deliver(DM_PAY_REFUNDED, 0, o.provider_ref, USD / 2, "USD"),
                        "partial_refund");
    o = order(oid);
    assert_string_equal(o.status, "paid");
    assert_int_equal(o.refunded_micros, USD / 2);
    /* the money moves: sales -> the gateway, half the price */
    assert_int_equal(count(sqlf("SELECT amount_micros FROM transfers WHERE idempotency_key = "
                                "'refund:%lld:500000' AND kind = 'refund' AND debit_account_id = "
                                "(SELECT id FROM accounts WHERE code = 'sales') AND "
                                "credit_account_id = (SELECT id FROM accounts WHERE code = "
                                "'gateway:sandbox')",
                                (long long)oid)),
                     USD / 2);
    assert_int_equal(system_balance("gateway:sandbox"), -USD / 2);
    /* half of the yield and of the held commission back */
    assert_int_equal(wallet(buyer), 91666 - 45833);
    assert_int_equal(held(ref), 25000);
    c = contract_of(oid);
    assert_string_equal(c.status, "active");
    assert_int_equal(c.refunded_micros, USD / 2);
    assert_int_equal(c.released_ghs, 500);
    assert_int_equal(c.yield_clawed_micros, 45833);
    assert_int_equal(sold(), before - 500);
    /* the next hour on half the terms */
    set_clock(DAY0 + 3 * HOUR + 60);
    accrue(DAY0 + 2 * HOUR, DAY0 + 3 * HOUR);
    assert_int_equal(G(3 * HOUR, 1, 2) - G(2 * HOUR, 1, 2), 22917);
    assert_int_equal(wallet(buyer), 45833 + 22917);

    assert_string_equal(deliver(DM_PAY_REFUNDED, 0, o.provider_ref, USD / 2, "USD"), "refunded");
    o = order(oid);
    assert_string_equal(o.status, "refunded");
    assert_int_equal(o.refunded_micros, USD);
    c = contract_of(oid);
    assert_string_equal(c.status, "refunded");
    assert_int_equal(c.yield_clawed_micros, c.earned_micros);
    assert_int_equal(wallet(buyer), 0);
    assert_int_equal(held(ref), 0);
    assert_int_equal(sold(), before - 1000);
    assert_int_equal(count(sqlf("SELECT COUNT(*) FROM transfers WHERE idempotency_key IN "
                                "('clawback:%lld:1:500000', 'clawback:%lld:1:1000000', "
                                "'refund:%lld:1000000')",
                                (long long)oid, (long long)oid, (long long)oid)),
                     3);
    assert_int_equal(count(sqlf("SELECT COUNT(*) FROM order_refunds WHERE order_id = %lld AND "
                                "source = 'event'",
                                (long long)oid)),
                     2);
    /* the provider returned the price; the gateway's account agrees */
    assert_int_equal(count("SELECT COUNT(*) FROM accounts WHERE balance_micros <> 0"), 0);
    /* a third refund event finds the order refunded */
    assert_string_equal(deliver(DM_PAY_REFUNDED, 0, o.provider_ref, USD / 2, "USD"),
                        "already_refunded");
    assert_ledger_sound();
}

/* What each clawback of a refund must be: floor(kept x part / left). */
typedef struct kept_t {
    int64_t yield, ymid, ytop, cmid, ctop;
} kept_t;

static int64_t take(int64_t *kept, int64_t part, int64_t left)
{
    int64_t c = part == left ? *kept : (int64_t)(((__int128)*kept * part) / left);
    *kept -= c;
    return c;
}

static void refund_part(int64_t oid, int64_t amount, kept_t *k, int64_t *left)
{
    dm_order o;
    int refunded = 0;
    int64_t part = amount ? amount : *left;

    take(&k->yield, part, *left);
    take(&k->ymid, part, *left);
    take(&k->ytop, part, *left);
    take(&k->cmid, part, *left);
    take(&k->ctop, part, *left);
    *left -= part;
    assert_null(dm_order_refund(db, pool, NULL, 0, NULL, oid, amount, "thirds", &o, &refunded));
    assert_true(refunded);
    assert_int_equal(o.refunded_micros, USD - *left);
}

static void test_refunds_in_thirds_claw_back_in_proportion_and_exactly_everything(void **state)
{
    int64_t top = new_member(0), mid = new_member(top), buyer = new_member(mid), oid;
    int64_t left = USD, credit6;
    kept_t k;
    (void)state;

    yield_plan("{\"levels\":[{\"level\":1,\"rates_bp\":[1000,500,0,0,0,0,0,0,0,0]}]}");
    oid = balance_order(buyer, one_id, USD);
    set_clock(DAY0 + 5 * HOUR + 60);
    accrue(DAY0, DAY0 + 5 * HOUR);
    k.yield = G(5 * HOUR, 1, 1);
    k.ymid = ycomm(DAY0, DAY0, DAY0 + 5 * HOUR, 1000, 1, 1);
    k.ytop = ycomm(DAY0, DAY0, DAY0 + 5 * HOUR, 500, 1, 1);
    k.cmid = 50000;
    k.ctop = 20000;
    assert_int_equal(wallet(buyer), k.yield);
    assert_int_equal(wallet(mid), k.ymid);

    refund_part(oid, 333333, &k, &left);
    assert_int_equal(wallet(buyer), 333333 + k.yield);
    assert_int_equal(wallet(mid), k.ymid);
    assert_int_equal(wallet(top), k.ytop);
    assert_int_equal(held(mid), k.cmid);
    assert_int_equal(held(top), k.ctop);
    assert_int_equal(k.cmid, 50000 - 16666); /* floor(50000 x 333333 / 1000000) */

    /* an hour on the remaining 666,667 of 1,000,000 */
    set_clock(DAY0 + 6 * HOUR + 60);
    accrue(DAY0 + 5 * HOUR, DAY0 + 6 * HOUR);
    credit6 = G(6 * HOUR, 666667, USD) - G(5 * HOUR, 666667, USD);
    k.yield += credit6;
    k.ymid += credit6 * 1000 / 10000;
    k.ytop += credit6 * 500 / 10000;
    assert_int_equal(wallet(buyer), 333333 + k.yield);
    assert_int_equal(wallet(mid), k.ymid);

    refund_part(oid, 333333, &k, &left);
    assert_int_equal(wallet(buyer), 666666 + k.yield);
    assert_int_equal(wallet(mid), k.ymid);
    assert_int_equal(wallet(top), k.ytop);
    assert_int_equal(held(mid), k.cmid);
    assert_int_equal(held(top), k.ctop);
    assert_string_equal(order(oid).status, "paid");

    refund_part(oid, 0, &k, &left); /* what is left: 333,334 */
    assert_int_equal(left, 0);
    assert_int_equal(k.yield + k.ymid + k.ytop + k.cmid + k.ctop, 0);
    assert_int_equal(wallet(buyer), USD); /* the price back, every yield micro gone */
    assert_int_equal(wallet(mid), 0);
    assert_int_equal(wallet(top), 0);
    assert_int_equal(held(mid), 0);
    assert_int_equal(held(top), 0);
    assert_string_equal(order(oid).status, "refunded");
    assert_string_equal(contract_of(oid).status, "refunded");
    assert_int_equal(system_balance("yield"), 0);
    assert_int_equal(system_balance("commissions"), 0);
    assert_int_equal(system_balance("sales"), 0);
    /* three refund transfers, none a reversal; staff refunds recorded */
    assert_int_equal(count(sqlf("SELECT COUNT(*) FROM transfers WHERE kind = 'refund' AND "
                                "reference = 'order:%lld' AND reverses_transfer_id IS NULL",
                                (long long)oid)),
                     3);
    assert_int_equal(count(sqlf("SELECT COUNT(*) FROM order_refunds WHERE order_id = %lld AND "
                                "source = 'staff' AND reason = 'thirds'",
                                (long long)oid)),
                     3);
    assert_int_equal(count(sqlf("SELECT COUNT(*) FROM audit_log WHERE action = 'order.refund' "
                                "AND target_id = '%lld'",
                                (long long)oid)),
                     3);
    assert_ledger_sound();
}

static void test_refusals_and_over_refunds_move_nothing(void **state)
{
    int64_t buyer = new_member(0), oid, gid, transfers;
    dm_order o;
    dm_err *e;
    int refunded = 0;
    (void)state;

    oid = balance_order(buyer, one_id, USD);
    transfers = count("SELECT COUNT(*) FROM transfers");
    e = dm_order_refund(db, pool, NULL, 0, NULL, oid, USD + 1, "too much", &o, &refunded);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    e = dm_order_refund(db, pool, NULL, 0, NULL, oid, 0, NULL, &o, &refunded);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "reason");
    e = dm_order_refund(db, pool, NULL, 0, NULL, oid, -5, "negative", &o, &refunded);
    assert_non_null(e);
    assert_string_equal(e->field, "amount_micros");
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), transfers);
    assert_int_equal(count("SELECT COUNT(*) FROM audit_log WHERE action = 'order.refund'"), 0);

    /* an over-refund by the gateway: nothing posted, the order parked */
    gid = gateway_order(buyer, one_id, USD);
    o = order(gid);
    assert_string_equal(deliver(DM_PAY_REFUNDED, 0, o.provider_ref, 600000, "USD"),
                        "partial_refund");
    transfers = count("SELECT COUNT(*) FROM transfers");
    assert_string_equal(deliver(DM_PAY_REFUNDED, 0, o.provider_ref, 600000, "USD"), "needs_review");
    o = order(gid);
    assert_string_equal(o.status, "needs_review");
    assert_int_equal(o.refunded_micros, 600000);
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), transfers);
    e = dm_order_refund(db, pool, NULL, 0, NULL, gid, 0, "again", &o, &refunded);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    /* a refund in another currency is parked the same way */
    gid = gateway_order(buyer, one_id, USD);
    o = order(gid);
    assert_string_equal(deliver(DM_PAY_REFUNDED, 0, o.provider_ref, 1000, "EUR"), "needs_review");
    assert_int_equal(order(gid).refunded_micros, 0);
    assert_ledger_sound();
}

static void test_prorate_releases_hash_rate_and_end_contract_ends_the_contract(void **state)
{
    int64_t buyer = new_member(0), oid, before, gen0 = 0, gen1 = 0;
    dm_order o;
    dm_contract c;
    int refunded = 0;
    (void)state;

    before = sold();
    oid = balance_order(buyer, one_id, USD);
    assert_int_equal(sold(), before + 1000);
    assert_null(dm_catalogue_generation(db, pool, &gen0));
    assert_null(dm_order_refund(db, pool, NULL, 0, NULL, oid, 250000, "a quarter", &o, &refunded));
    assert_int_equal(contract_of(oid).released_ghs, 250);
    assert_int_equal(sold(), before + 750);
    assert_null(dm_catalogue_generation(db, pool, &gen1));
    assert_true(gen1 > gen0); /* the catalogue shows the hash rate again */

    /* end-contract: the first partial refund ends the contract */
    dm_refund_set_partial_mode(DM_PARTIAL_REFUND_END_CONTRACT);
    before = sold();
    oid = balance_order(buyer, one_id, USD);
    set_clock(DAY0 + HOUR + 60);
    accrue(DAY0, DAY0 + HOUR);
    assert_int_equal(contract_of(oid).earned_micros, 45833);
    set_clock(DAY0 + HOUR + 1800);
    assert_null(dm_order_refund(db, pool, NULL, 0, NULL, oid, USD / 2, "half", &o, &refunded));
    c = contract_of(oid);
    assert_string_equal(c.status, "ended");
    assert_int_equal(c.ended_at, DAY0 + HOUR + 1800);
    assert_int_equal(c.yield_clawed_micros, 22916);
    assert_string_equal(order(oid).status, "paid");
    assert_int_equal(sold(), before);
    /* its last half hour, on half the terms; nothing after */
    set_clock(DAY0 + 3 * HOUR + 60);
    accrue(DAY0 + HOUR, DAY0 + 3 * HOUR);
    c = contract_of(oid);
    assert_int_equal(c.earned_micros, 45833 + (G(HOUR + 1800, 1, 2) - G(HOUR, 1, 2)));
    assert_int_equal(G(HOUR + 1800, 1, 2) - G(HOUR, 1, 2), 11459);
    /* the rest refunded later: the order is refunded, the contract too */
    assert_null(dm_order_refund(db, pool, NULL, 0, NULL, oid, 0, "the rest", &o, &refunded));
    assert_string_equal(o.status, "refunded");
    c = contract_of(oid);
    assert_string_equal(c.status, "refunded");
    assert_int_equal(c.ended_at, DAY0 + HOUR + 1800);
    assert_int_equal(c.yield_clawed_micros, c.earned_micros);
    assert_ledger_sound();
}

static void test_an_hours_share_depends_only_on_refunds_made_before_it_ended(void **state)
{
    int64_t a = new_member(0), b = new_member(0), oid, pa, pb, wa;
    dm_pool_payout pay;
    dm_order o;
    int refunded = 0;
    (void)state;

    /* fixed: hour 0 credited in full, then half refunded */
    oid = balance_order(a, one_id, USD);
    set_clock(DAY0 + HOUR + 60);
    accrue(DAY0, DAY0 + HOUR);
    assert_null(dm_order_refund(db, pool, NULL, 0, NULL, oid, USD / 2, "half", &o, &refunded));
    wa = wallet(a);
    assert_int_equal(wa, USD / 2 + 45833 - 22916);
    /* hour 0 again (a crashed run's redo): the same credit, no conflict */
    call(dm_accrual_job_fixed, "accrual", DAY0);
    assert_int_equal(wallet(a), wa);
    /* hour 1 ends after the refund: half the terms */
    set_clock(DAY0 + 2 * HOUR + 60);
    accrue(DAY0 + HOUR, DAY0 + 2 * HOUR);
    assert_int_equal(wallet(a), wa + G(2 * HOUR, 1, 2) - G(HOUR, 1, 2));

    /* pool: two equal contracts, one half refunded inside the hour, share
     * the payout 1 : 2 */
    set_clock(DAY0 + 3 * HOUR);
    pa = balance_order(a, pool_id, USD);
    pb = balance_order(b, pool_id, USD);
    set_clock(DAY0 + 3 * HOUR + 1800);
    assert_null(dm_order_refund(db, pool, NULL, 0, NULL, pa, USD / 2, "half", &o, &refunded));
    set_clock(DAY0 + 4 * HOUR + 60);
    assert_null(dm_pool_payout_record(db, pool, 0, NULL, "hour", DAY0 + 3 * HOUR, 3000000, "USD",
                                      NULL, &pay));
    call(dm_accrual_job_pool, "pool-accrual", DAY0 + 3 * HOUR);
    assert_int_equal(contract_of(pa).earned_micros, 1000000);
    assert_int_equal(contract_of(pb).earned_micros, 2000000);
    assert_ledger_sound();
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_a_refund_event_takes_back_payment_commissions_yield_and_yield_commissions),
        T(test_a_refund_of_an_expired_contract_takes_its_yield_into_a_debt),
        T(test_two_half_refund_events_refund_half_each_then_end_the_contract),
        T(test_refunds_in_thirds_claw_back_in_proportion_and_exactly_everything),
        T(test_refusals_and_over_refunds_move_nothing),
        T(test_prorate_releases_hash_rate_and_end_contract_ends_the_contract),
        T(test_an_hours_share_depends_only_on_refunds_made_before_it_ended),
    };
    int failed;

    apr_initialize();
    if (sodium_init() < 0 || dm_fx_init("refunds") != 0) {
        return 1;
    }
    dm_log_set_sink(quiet_sink, NULL);
    failed = cmocka_run_group_tests_name("refunds", tests, NULL, NULL);
    if (dm_fx_done() != 0) {
        failed = 1;
    }
    apr_terminate();
    return failed ? 1 : 0;
}
