/* Hourly yield accrual: the fixed-yield proration by the second (24 hours
 * sum to the daily yield, a whole term to daily x days, for odd yields and
 * an odd start), the pool split (payout = credits + fee + remainder,
 * exactly), and the jobs on a real SQLite file under a fake clock: credits
 * with their statement rows, re-runs and a run stopped between batches
 * that never double-credit, pool hours that wait for their payout, a day
 * payout shared at 23:00, expiry with its e-mail, yield commissions, the
 * batch ledger's rules, and migration 011 over existing contracts. Every
 * money test ends with the ledger verified. */
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

#include "shop/accrual.h"
#include "shop/capacity.h"
#include "shop/catalogue.h"
#include "base/clock.h"
#include "store/db.h"
#include "cron/cron.h"
#include "base/json.h"
#include "ledger/ledger.h"
#include "base/log.h"
#include "store/migrate.h"
#include "shop/orders.h"
#include "shop/pool_payouts.h"
#include "referral/referral.h"
#include "referral/yield_commission.h"
#include "fixture.h"

#define HOUR 3600
#define DAY 86400
/* 2026-11-25T00:00:00Z */
#define DAY0 1795564800LL

static apr_pool_t *pool;
static dm_db *db;
static const char *clock_path;
static int serial;

static void quiet_sink(void *baton, dm_level level, const char *msg)
{
    (void)baton;
    (void)level;
    (void)msg;
}

/* printf into the pool (APR's formatter has no %lld). */
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
    assert_null(dm_db_query_int64(db, pool, sql, &v, &found));
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
    const char *email = apr_psprintf(pool, "a%d@example.com", ++serial);
    const char *code = apr_psprintf(pool, "A%07d", serial);

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
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_referral_attach(db, pool, id, referrer));
    assert_null(dm_db_commit(db, pool));
    return id;
}

static int64_t wallet(int64_t user)
{
    dm_balances b;
    assert_null(dm_ledger_member_balances(db, pool, user, "USD", &b));
    return b.wallet_micros;
}

/* A contract as orders.c makes it, with the start chosen by the test. */
static int64_t contract(int64_t user, const char *mode, int64_t fee_bp, int64_t ghs, int64_t daily,
                        int64_t days, int64_t started)
{
    const char *sql;
    int64_t oid;

    sql = sqlf("INSERT INTO orders (user_id, package_id, amount_micros, currency, status, "
               "gateway, created_at, paid_at, updated_at) SELECT %lld, MIN(id), 1000000, "
               "'USD', 'paid', 'balance', 0, 0, 0 FROM packages",
               (long long)user);
    exec(sql);
    oid = count("SELECT MAX(id) FROM orders");
    sql = sqlf("INSERT INTO contracts (order_id, user_id, package_id, name, hashrate_ghs, "
               "price_micros, daily_yield_micros, duration_days, currency, started_at, "
               "expires_at, status, yield_mode, fee_bp) SELECT %lld, %lld, MIN(id), "
               "'Test', %lld, 1000000, %lld, %lld, 'USD', %lld, %lld, 'active', '%s', "
               "%lld FROM packages",
               (long long)oid, (long long)user, (long long)ghs, (long long)daily, (long long)days,
               (long long)started, (long long)(started + days * DAY), mode, (long long)fee_bp);
    exec(sql);
    return count("SELECT MAX(id) FROM contracts");
}

static int64_t earned(int64_t contract_id)
{
    return count(
        sqlf("SELECT earned_micros FROM contracts WHERE id = %lld", (long long)contract_id));
}

static dm_job_env env_of(int batch)
{
    dm_job_env env;
    memset(&env, 0, sizeof(env));
    env.batch_size = batch;
    return env;
}

/* Through the runner, as the daemon and deepminectl run it. */
static dm_job_outcome run(const char *job, int64_t period, int batch)
{
    dm_job_env env = env_of(batch);
    dm_job_run_opts o;
    dm_job_outcome out = DM_JOB_RAN_FAILED;
    const dm_job_def *def = dm_job_find(job, 0);

    assert_non_null(def);
    memset(&o, 0, sizeof(o));
    o.holder = dm_job_holder(pool);
    o.force = 1;
    assert_null(dm_job_run(db, pool, &env, def, period, &o, &out));
    return out;
}

/* The job's function alone (no run history and no lease), as a holder
 * that dies mid-run leaves it: stop_after > 0 stops it after its first
 * batch. */
static dm_err *call(dm_job_fn *fn, const char *job, int64_t period, int batch, int stop_after,
                    dm_job_result *res)
{
    static dm_job_env env;
    dm_job_ctx *ctx = apr_pcalloc(pool, sizeof(*ctx));

    env = env_of(batch);
    ctx->db = db;
    ctx->pool = pool;
    ctx->env = &env;
    ctx->job = job;
    ctx->period = dm_json_time(pool, period);
    ctx->period_start = period;
    ctx->period_end = period + HOUR;
    ctx->holder = "unit";
    ctx->renewed = (int64_t)time(NULL);
    if (stop_after > 0) {
        /* a deadline already past: keep_going says stop at the first check
         * between batches, i.e. after the first batch */
        ctx->deadline = 1;
    }
    return fn(ctx, res);
}

static int setup(void **state)
{
    dm_capacity_row cap;
    dm_package pkg = {0, "Fixed", 5000, 1000000, 1100000, 30, "USD", 1, 10, NULL, 0};

    (void)state;
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    clock_path = apr_psprintf(pool, "%s/clock%d", dm_fx_dir(), ++serial);
    assert_int_equal(dm_clock_use_file(clock_path), 0);
    set_clock(DAY0);
    db = dm_fx_db(pool);
    assert_null(dm_capacity_set(db, pool, 0, NULL, 1000000000, "unit", &cap));
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_catalogue_insert(db, pool, &pkg));
    assert_null(dm_db_commit(db, pool));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dm_clock_use_file(NULL);
    apr_pool_destroy(pool);
    return 0;
}

/* ---- the arithmetic ---- */

static void test_fixed_hours_of_a_day_sum_to_the_daily_yield(void **state)
{
    static const int64_t yields[] = {1, 23, 24, 25, 1100000, 999999937, 1000000000000LL};
    (void)state;

    for (size_t k = 0; k < sizeof(yields) / sizeof(yields[0]); k++) {
        int64_t d = yields[k], sum = 0;
        for (int h = 0; h < 24; h++) {
            int64_t c = dm_accrual_fixed_credit(d, DAY0, DAY0 + h * HOUR, DAY0 + (h + 1) * HOUR);
            /* the ARCHITECTURE rule for a contract started at midnight */
            assert_int_equal(c, d * (h + 1) / 24 - d * h / 24);
            sum += c;
        }
        assert_int_equal(sum, d);
    }
}

static void test_fixed_whole_term_from_an_odd_start_sums_exactly(void **state)
{
    static const int64_t yields[] = {1, 23, 1100000, 999999937, 1000000000000LL};
    int64_t start = DAY0 + 13 * HOUR + 37 * 60 + 11; /* 13:37:11 */
    (void)state;

    for (size_t k = 0; k < sizeof(yields) / sizeof(yields[0]); k++) {
        int64_t d = yields[k], sum = 0, end = start + 7 * DAY, first = 0, last = 0;
        for (int64_t h = dm_hour_floor(start); h < end; h += HOUR) {
            int64_t a = h < start ? start : h, b = h + HOUR > end ? end : h + HOUR;
            int64_t c = dm_accrual_fixed_credit(d, start, a, b);
            if (h == dm_hour_floor(start)) {
                first = c;
            }
            last = c;
            sum += c;
        }
        assert_int_equal(sum, d * 7);
        /* the partial first hour (22 min 49 s) and last hour (37 min 11 s)
         * are prorated by the second */
        assert_true(first <= d * (22 * 60 + 49) / DAY + 1);
        assert_true(last <= d * (37 * 60 + 11) / DAY + 1);
    }
    /* a yield near int64's top over the longest term: no overflow */
    assert_int_equal(dm_accrual_fixed_credit(INT64_MAX, 0, 3650LL * DAY - HOUR, 3650LL * DAY),
                     (int64_t)(((__int128)INT64_MAX * 3650 * DAY) / DAY -
                               ((__int128)INT64_MAX * (3650LL * DAY - HOUR)) / DAY));
    assert_int_equal(dm_accrual_fixed_credit(0, 0, 0, HOUR), 0);
    assert_int_equal(dm_accrual_fixed_credit(100, 10, 5, HOUR), 0); /* before the start */
}

static void test_pool_split_sums_to_the_payout_exactly(void **state)
{
    static const int64_t payouts[] = {1, 7, 1000003, 123456789012LL};
    int64_t hs[50], fee_bp[50], total = 0;
    uint64_t x = 88172645463325252ULL;
    (void)state;

    for (int i = 0; i < 50; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        hs[i] = (int64_t)(x % 300000000) + 1;
        fee_bp[i] = (int64_t)((x >> 20) % 1001);
        total += hs[i];
    }
    for (size_t k = 0; k < sizeof(payouts) / sizeof(payouts[0]); k++) {
        int64_t credits = 0, fees = 0, gross = 0;
        for (int i = 0; i < 50; i++) {
            dm_pool_split s;
            dm_accrual_pool_split(payouts[k], hs[i], total, fee_bp[i], &s);
            assert_int_equal(s.gross,
                             (int64_t)(((__int128)payouts[k] * hs[i]) / total)); /* floored */
            assert_int_equal(s.fee, s.gross * fee_bp[i] / 10000);
            assert_int_equal(s.credit, s.gross - s.fee);
            credits += s.credit;
            fees += s.fee;
            gross += s.gross;
        }
        assert_true(gross <= payouts[k]);
        assert_true(payouts[k] - gross < 50); /* at most one micro per contract */
        assert_int_equal(credits + fees + (payouts[k] - gross), payouts[k]);
    }
}

/* ---- fixed yield on a real database ---- */

static void test_fixed_accrual_credits_each_hour_once_with_statement(void **state)
{
    int64_t start = DAY0 + 13 * HOUR + 37 * 60 + 11, total = 0;
    int64_t u1 = new_member(0), u2 = new_member(0);
    int64_t c1 = contract(u1, "fixed", 0, 5000, 23, 1, start);
    int64_t c2 = contract(u2, "fixed", 0, 20000, 1100000, 1, start + 600);
    int64_t c3 = contract(u2, "pool", 500, 20000, 1100000, 1, start); /* not this job's */
    (void)state;
    (void)c3;

    /* the hour before any contract: nothing; an hour not over: waiting */
    set_clock(start + 2 * DAY);
    assert_int_equal(run("accrual", dm_hour_floor(start) - HOUR, 2), DM_JOB_RAN_OK);
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), 0);
    set_clock(dm_hour_floor(start) + 10);
    assert_int_equal(run("accrual", dm_hour_floor(start), 2), DM_JOB_RAN_WAITING);
    set_clock(start + 2 * DAY);

    for (int64_t h = dm_hour_floor(start); h < start + DAY + HOUR; h += HOUR) {
        assert_int_equal(run("accrual", h, 1), DM_JOB_RAN_OK);
        /* again: the runner says done, and the function itself makes nothing */
        assert_int_equal(run("accrual", h, 1), DM_JOB_ALREADY_DONE);
    }
    assert_int_equal(earned(c1), 23);
    assert_int_equal(earned(c2), 1100000);
    assert_int_equal(wallet(u1), 23);
    assert_int_equal(wallet(u2), 1100000);
    assert_int_equal(earned(c3), 0);
    /* the statement matches the credits, day by day */
    total = count(sqlf("SELECT SUM(credit_micros) FROM contract_days WHERE "
                       "contract_id = %lld",
                       (long long)c2));
    assert_int_equal(total, 1100000);
    assert_int_equal(count(sqlf("SELECT COUNT(*) FROM contract_days WHERE "
                                "contract_id = %lld",
                                (long long)c2)),
                     2);
    assert_int_equal(count(sqlf("SELECT SUM(hash_seconds) FROM contract_days "
                                "WHERE contract_id = %lld",
                                (long long)c2)),
                     20000LL * DAY);
    /* the yield account paid exactly what the wallets got */
    assert_int_equal(count("SELECT -balance_micros FROM accounts WHERE code = 'yield'"),
                     23 + 1100000);
    assert_int_equal(count("SELECT COUNT(*) FROM transfers WHERE idempotency_key LIKE 'yield:%' "
                           "AND kind = 'yield'"),
                     count("SELECT COUNT(*) FROM transfers"));
    assert_ledger_sound();
}

static void test_a_run_stopped_between_batches_is_finished_without_double_credit(void **state)
{
    int64_t start = DAY0, h = DAY0 + 5 * HOUR;
    int64_t users[7], ids[7];
    dm_job_result res;
    dm_err *e;
    (void)state;

    for (int i = 0; i < 7; i++) {
        users[i] = new_member(0);
        ids[i] = contract(users[i], "fixed", 0, 1000, 240000 + i, 30, start);
    }
    set_clock(DAY0 + DAY);
    /* batches of 2: the first commits, then the run is told to stop */
    e = call(dm_accrual_job_fixed, "accrual", h, 2, 1, &res);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_UNAVAILABLE);
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), 2);
    assert_ledger_sound();
    /* the next run finishes the period; a third changes nothing */
    assert_null(call(dm_accrual_job_fixed, "accrual", h, 2, 0, &res));
    assert_int_equal(res, DM_JOB_OK);
    assert_null(call(dm_accrual_job_fixed, "accrual", h, 3, 0, &res));
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), 7);
    for (int i = 0; i < 7; i++) {
        int64_t want = (240000 + i) * 6 / 24 - (240000 + i) * 5 / 24;
        assert_int_equal(earned(ids[i]), want);
        assert_int_equal(wallet(users[i]), want);
        assert_int_equal(count(sqlf("SELECT credit_micros FROM contract_days WHERE "
                                    "contract_id = %lld",
                                    (long long)ids[i])),
                         want);
    }
    assert_ledger_sound();
}

/* Migration 036 over a ledger that credited hours under the old key
 * earn:<contract>:<hour>, the last of them only in part (a run stopped
 * between batches): it records that hour, the stopped hour is finished
 * under the old key, later hours take yield:<hour>:<contract>, and no
 * re-run of any hour credits a contract twice. */
static void test_migration_036_keeps_each_hour_under_the_key_it_began_with(void **state)
{
    int64_t start = DAY0, h1 = DAY0 + 5 * HOUR, h2 = h1 + HOUR, h3 = h2 + HOUR, want = 0;
    int64_t users[5], ids[5];
    int applied = 0, version = 0;
    dm_job_result res;
    dm_err *e;
    (void)state;

    for (int i = 0; i < 5; i++) {
        users[i] = new_member(0);
        ids[i] = contract(users[i], "fixed", 0, 1000, 240000 + 7 * i, 30, start);
    }
    set_clock(DAY0 + DAY);
    /* a new database: no hour was ever keyed the old way */
    assert_int_equal(count("SELECT COUNT(*) FROM accrual_key_cutover"), 0);
    /* as a build before 036 did: every hour keyed earn:<contract>:<hour>;
     * h1 whole, h2 stopped after its first batch of 2 */
    exec("INSERT INTO accrual_key_cutover (id, earn_keys_through) VALUES (1, 4102444800)");
    assert_int_equal(run("accrual", h1, 2), DM_JOB_RAN_OK);
    e = call(dm_accrual_job_fixed, "accrual", h2, 2, 1, &res);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_UNAVAILABLE);
    assert_int_equal(count("SELECT COUNT(*) FROM transfers WHERE idempotency_key LIKE 'earn:%'"),
                     5 + 2);
    /* the upgrade: 036 applied to that ledger reads the last such hour */
    exec("DROP TABLE accrual_key_cutover; DELETE FROM schema_migrations WHERE version = 36");
    assert_null(dm_migrate(db, pool, dm_migrations, dm_migrations_count, &applied, &version));
    assert_int_equal(applied, 1);
    assert_int_equal(count("SELECT earn_keys_through FROM accrual_key_cutover"), h2);
    /* h2 is finished under its old key, h3 takes the new one; the job run
     * again on every hour, twice, adds nothing */
    assert_int_equal(run("accrual", h2, 2), DM_JOB_RAN_OK);
    assert_int_equal(run("accrual", h3, 2), DM_JOB_RAN_OK);
    for (int again = 0; again < 2; again++) {
        for (int64_t h = h1; h <= h3; h += HOUR) {
            assert_null(call(dm_accrual_job_fixed, "accrual", h, 1 + again, 0, &res));
            assert_int_equal(res, DM_JOB_OK);
        }
    }
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), 3 * 5);
    for (int i = 0; i < 5; i++) {
        int64_t sum = 0;
        for (int64_t h = h1; h <= h3; h += HOUR) {
            sum += dm_accrual_fixed_credit(240000 + 7 * i, start, h, h + HOUR);
        }
        assert_int_equal(earned(ids[i]), sum);
        assert_int_equal(wallet(users[i]), sum);
        assert_int_equal(count(sqlf("SELECT COUNT(*) FROM transfers WHERE idempotency_key IN "
                                    "('earn:%lld:%lld', 'earn:%lld:%lld', 'yield:%lld:%lld')",
                                    (long long)ids[i], (long long)h1, (long long)ids[i],
                                    (long long)h2, (long long)h3, (long long)ids[i])),
                         3);
        want += sum;
    }
    assert_int_equal(count("SELECT -balance_micros FROM accounts WHERE code = 'yield'"), want);
    assert_ledger_sound();
}

static void test_a_contract_refunded_later_still_gets_the_hours_before(void **state)
{
    int64_t u = new_member(0), c = contract(u, "fixed", 0, 1000, 2400, 30, DAY0);
    (void)state;

    /* refunded at 03:30, the accrual catches up afterwards (downtime) */
    exec(sqlf("UPDATE contracts SET status = 'refunded', ended_at = %lld WHERE "
              "id = %lld",
              (long long)(DAY0 + 3 * HOUR + 1800), (long long)c));
    set_clock(DAY0 + DAY);
    for (int64_t h = DAY0; h < DAY0 + 6 * HOUR; h += HOUR) {
        assert_int_equal(run("accrual", h, 100), DM_JOB_RAN_OK);
    }
    assert_int_equal(earned(c), 350); /* 3.5 hours of 100 an hour */
    assert_ledger_sound();
}

/* ---- pool yield ---- */

static void test_pool_hour_waits_for_its_payout_then_splits_it_exactly(void **state)
{
    int64_t h = DAY0 + 10 * HOUR, u[3], c[3];
    int64_t ghs[3] = {5000, 20000, 120000}, fee[3] = {0, 500, 300};
    dm_pool_payout pay;
    int64_t credits = 0, fees = 0, gross = 0, total = 0;
    (void)state;

    for (int i = 0; i < 3; i++) {
        u[i] = new_member(0);
        c[i] = contract(u[i], "pool", fee[i], ghs[i], 3000000, 30,
                        DAY0 + (i == 2 ? 10 * HOUR + 900 : 0));
    }
    set_clock(h + 2 * HOUR);
    assert_int_equal(run("pool-accrual", h, 2), DM_JOB_RAN_WAITING);
    assert_int_equal(run("accrual", h, 2), DM_JOB_RAN_OK); /* fixed: nothing of theirs */
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), 0);
    assert_int_equal(count("SELECT status = 'waiting' FROM job_runs WHERE job = 'pool-accrual'"),
                     1);

    assert_null(dm_pool_payout_record(db, pool, 0, NULL, "hour", h, 1234567, "USD", "test", &pay));
    /* recording asks the daemon for the period at once */
    assert_int_equal(count("SELECT requested_period FROM job_state WHERE job = 'pool-accrual'"), h);
    assert_int_equal(run("pool-accrual", h, 2), DM_JOB_RAN_OK);
    for (int i = 0; i < 3; i++) {
        int64_t hs = ghs[i] * (i == 2 ? HOUR - 900 : HOUR);
        total += hs;
    }
    for (int i = 0; i < 3; i++) {
        dm_pool_split s;
        int64_t hs = ghs[i] * (i == 2 ? HOUR - 900 : HOUR);
        dm_accrual_pool_split(1234567, hs, total, fee[i], &s);
        assert_int_equal(earned(c[i]), s.credit);
        assert_int_equal(wallet(u[i]), s.credit);
        assert_int_equal(count(sqlf("SELECT fee_micros FROM contract_days WHERE "
                                    "contract_id = %lld",
                                    (long long)c[i])),
                         s.fee);
        credits += s.credit;
        fees += s.fee;
        gross += s.gross;
    }
    assert_int_equal(count("SELECT credits_micros FROM pool_payouts"), credits);
    assert_int_equal(count("SELECT fee_micros FROM pool_payouts"), fees);
    assert_int_equal(count("SELECT remainder_micros FROM pool_payouts"), 1234567 - gross);
    assert_int_equal(count("SELECT credits_micros + fee_micros + remainder_micros - amount_micros "
                           "FROM pool_payouts"),
                     0);
    assert_int_equal(count("SELECT hash_seconds FROM pool_payouts"), total);
    /* the ledger says the same: yield paid the payout, fee and remainder
     * went to their system accounts */
    assert_int_equal(count("SELECT -balance_micros FROM accounts WHERE code = 'yield'"), 1234567);
    assert_int_equal(count("SELECT balance_micros FROM accounts WHERE code = 'maintenance_fees'"),
                     fees);
    assert_int_equal(count("SELECT balance_micros FROM accounts WHERE code = 'rounding'"),
                     1234567 - gross);
    /* a second payout for the hour, or a day payout over it: refused */
    assert_int_equal(
        dm_pool_payout_record(db, pool, 0, NULL, "hour", h, 5, "USD", NULL, &pay)->code,
        DM_E_CONFLICT);
    assert_int_equal(
        dm_pool_payout_record(db, pool, 0, NULL, "day", DAY0, 5, "USD", NULL, &pay)->code,
        DM_E_INVALID); /* the day is not over yet */
    set_clock(DAY0 + 2 * DAY);
    assert_int_equal(
        dm_pool_payout_record(db, pool, 0, NULL, "day", DAY0, 5, "USD", NULL, &pay)->code,
        DM_E_CONFLICT);
    assert_int_equal(run("pool-accrual", h, 2), DM_JOB_ALREADY_DONE);
    assert_int_equal(count("SELECT COUNT(*) FROM audit_log WHERE action = 'pool_payout.record'"),
                     1);
    assert_ledger_sound();
}

static void test_pool_payout_refusals(void **state)
{
    dm_pool_payout pay;
    (void)state;

    set_clock(DAY0 + 2 * DAY);
    assert_string_equal(
        dm_pool_payout_record(db, pool, 0, NULL, "week", DAY0, 5, "USD", NULL, &pay)->field,
        "period_kind");
    assert_string_equal(
        dm_pool_payout_record(db, pool, 0, NULL, "hour", DAY0 + 60, 5, "USD", NULL, &pay)->field,
        "period_start");
    assert_string_equal(
        dm_pool_payout_record(db, pool, 0, NULL, "day", DAY0 + HOUR, 5, "USD", NULL, &pay)->field,
        "period_start");
    assert_string_equal(
        dm_pool_payout_record(db, pool, 0, NULL, "hour", DAY0, 0, "USD", NULL, &pay)->field,
        "amount_micros");
    assert_string_equal(
        dm_pool_payout_record(db, pool, 0, NULL, "hour", DAY0, 5, "EUR", NULL, &pay)->field,
        "currency");
    assert_string_equal(
        dm_pool_payout_record(db, pool, 0, NULL, "hour", DAY0, 5, "USD", "a\001b", &pay)->field,
        "note");
    /* an hour payout inside a recorded day: refused */
    assert_null(dm_pool_payout_record(db, pool, 0, NULL, "day", DAY0, 5, "USD", NULL, &pay));
    assert_int_equal(
        dm_pool_payout_record(db, pool, 0, NULL, "hour", DAY0 + 23 * HOUR, 5, "USD", NULL, &pay)
            ->code,
        DM_E_CONFLICT);
    assert_null(dm_pool_payout_record(db, pool, 0, NULL, "hour", DAY0 + DAY, 5, "USD", NULL, &pay));
    assert_int_equal(count("SELECT COUNT(*) FROM pool_payouts"), 2);
}

static void test_pool_day_payout_is_shared_at_23h_over_the_whole_day(void **state)
{
    int64_t u1 = new_member(0), u2 = new_member(0);
    int64_t c1 = contract(u1, "pool", 0, 1000, 0, 30, DAY0 - DAY);          /* all day */
    int64_t c2 = contract(u2, "pool", 1000, 1000, 0, 30, DAY0 + 12 * HOUR); /* half the day */
    dm_pool_payout pay;
    (void)state;

    set_clock(DAY0 + DAY + 10);
    assert_null(dm_pool_payout_record(db, pool, 0, NULL, "day", DAY0, 3000001, "USD", NULL, &pay));
    assert_int_equal(count("SELECT requested_period FROM job_state WHERE job = 'pool-accrual'"),
                     DAY0 + 23 * HOUR);
    for (int h = 0; h < 23; h++) {
        assert_int_equal(run("pool-accrual", DAY0 + h * HOUR, 1), DM_JOB_RAN_OK);
        assert_int_equal(count("SELECT COUNT(*) FROM transfers"), 0);
    }
    assert_int_equal(run("pool-accrual", DAY0 + 23 * HOUR, 1), DM_JOB_RAN_OK);
    /* 1000 x 86400 and 1000 x 43200 hash-seconds: two thirds and one third */
    assert_int_equal(earned(c1), 2000000);
    assert_int_equal(earned(c2), 1000000 - 100000); /* 10 % fee */
    assert_int_equal(count("SELECT remainder_micros FROM pool_payouts"), 1);
    assert_int_equal(count("SELECT fee_micros FROM pool_payouts"), 100000);
    assert_int_equal(count(sqlf("SELECT COUNT(*) FROM transfers WHERE "
                                "idempotency_key = 'yield:%lld:%lld'",
                                (long long)(DAY0 + 23 * HOUR), (long long)c1)),
                     1);
    assert_int_equal(count(sqlf("SELECT day FROM contract_days WHERE "
                                "contract_id = %lld",
                                (long long)c2)),
                     DAY0);
    assert_ledger_sound();
}

static void test_pool_distribution_stopped_midway_is_completed_exactly(void **state)
{
    int64_t h = DAY0 + 3 * HOUR, ids[5], users[5], first[5];
    dm_pool_payout pay;
    dm_job_result res;
    (void)state;

    for (int i = 0; i < 5; i++) {
        users[i] = new_member(0);
        ids[i] = contract(users[i], "pool", 250, 1000 + 7 * i, 0, 30, DAY0);
    }
    set_clock(DAY0 + DAY);
    assert_null(dm_pool_payout_record(db, pool, 0, NULL, "hour", h, 999999, "USD", NULL, &pay));
    assert_non_null(call(dm_accrual_job_pool, "pool-accrual", h, 2, 1, &res));
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), 2);
    assert_int_equal(count("SELECT COUNT(*) FROM pool_payouts WHERE distributed_at IS NULL"), 1);
    for (int i = 0; i < 5; i++) {
        first[i] = earned(ids[i]);
    }
    assert_null(call(dm_accrual_job_pool, "pool-accrual", h, 2, 0, &res));
    assert_null(call(dm_accrual_job_pool, "pool-accrual", h, 2, 0, &res)); /* distributed: no-op */
    assert_int_equal(count("SELECT COUNT(*) FROM transfers WHERE kind = 'yield'"), 5);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(earned(ids[i]), first[i]); /* not credited twice */
    }
    assert_int_equal(count("SELECT credits_micros + fee_micros + remainder_micros FROM "
                           "pool_payouts"),
                     999999);
    assert_int_equal(count("SELECT -balance_micros FROM accounts WHERE code = 'yield'"), 999999);
    assert_ledger_sound();
}

/* ---- expiry ---- */

static void test_expiry_waits_for_the_whole_term_then_expires_and_mails(void **state)
{
    int64_t start = DAY0 + 1800, u = new_member(0);
    int64_t c = contract(u, "fixed", 0, 1000, 2400, 1, start);
    int64_t p = contract(u, "pool", 0, 1000, 0, 1, start);
    dm_job_result res;
    dm_pool_payout pay;
    (void)state;

    set_clock(start + DAY + 2 * HOUR);
    assert_null(
        call(dm_accrual_job_expiry, "contract-expiry", dm_now() - dm_now() % 60, 100, 0, &res));
    assert_int_equal(count("SELECT COUNT(*) FROM contracts WHERE status = 'expired'"), 0);
    for (int64_t h = DAY0; h < start + DAY; h += HOUR) {
        assert_int_equal(run("accrual", h, 100), DM_JOB_RAN_OK);
    }
    assert_int_equal(earned(c), 2400);
    assert_null(call(dm_accrual_job_expiry, "contract-expiry", 0, 100, 0, &res));
    assert_int_equal(count(sqlf("SELECT status = 'expired' AND ended_at = "
                                "expires_at FROM contracts WHERE id = %lld",
                                (long long)c)),
                     1);
    /* the pool one waits for distributed payouts over its whole term */
    assert_int_equal(count(sqlf("SELECT status = 'active' FROM contracts WHERE "
                                "id = %lld",
                                (long long)p)),
                     1);
    assert_int_equal(count("SELECT COUNT(*) FROM mail_queue WHERE template = "
                           "'contract_expired'"),
                     1);
    assert_int_equal(count(sqlf("SELECT COUNT(*) FROM mail_queue WHERE "
                                "idempotency_key = 'contract_expired:%lld' AND "
                                "json_extract(variables, '$.earned_micros') = 2400",
                                (long long)c)),
                     1);
    set_clock(start + 2 * DAY + 60);
    assert_null(
        dm_pool_payout_record(db, pool, 0, NULL, "day", DAY0 + DAY, 100, "USD", NULL, &pay));
    assert_int_equal(run("pool-accrual", DAY0 + DAY + 23 * HOUR, 100), DM_JOB_RAN_OK);
    assert_int_equal(earned(p), 100); /* the day's only pool contract (00:00-00:30) */
    /* its last hour is paid, its first day (from 00:30) is not */
    assert_null(call(dm_accrual_job_expiry, "contract-expiry", 0, 100, 0, &res));
    assert_int_equal(count("SELECT COUNT(*) FROM contracts WHERE status = 'expired'"), 1);
    assert_null(dm_pool_payout_record(db, pool, 0, NULL, "day", DAY0, 200, "USD", NULL, &pay));
    assert_int_equal(run("pool-accrual", DAY0 + 23 * HOUR, 100), DM_JOB_RAN_OK);
    assert_int_equal(earned(p), 300);
    assert_null(call(dm_accrual_job_expiry, "contract-expiry", 0, 100, 0, &res));
    assert_int_equal(count("SELECT COUNT(*) FROM contracts WHERE status = 'expired'"), 2);
    assert_int_equal(count(sqlf("SELECT COUNT(*) FROM mail_queue WHERE "
                                "idempotency_key = 'contract_expired:%lld' AND "
                                "json_extract(variables, '$.earned_micros') = 300",
                                (long long)p)),
                     1);
    /* again: no second e-mail */
    assert_null(call(dm_accrual_job_expiry, "contract-expiry", 0, 100, 0, &res));
    assert_int_equal(count("SELECT COUNT(*) FROM mail_queue"), 2);
    assert_ledger_sound();
}

/* The status the expiry job gave a contract before every hour of its term
 * had to be credited (databases from before that rule). */
static void expire_as_the_earlier_rule_did(int64_t c)
{
    exec(sqlf("UPDATE contracts SET status = 'expired', ended_at = expires_at WHERE id = %lld",
              (long long)c));
}

static const char *status_of(int64_t c)
{
    dm_stmt *st = NULL;
    int row = 0;
    const char *s = NULL;

    assert_null(dm_db_prepare(db, pool, "SELECT status FROM contracts WHERE id = ?", &st));
    dm_stmt_bind_int64(st, 1, c);
    assert_null(dm_stmt_step(st, pool, &row));
    assert_true(row);
    s = apr_pstrdup(pool, dm_stmt_text(st, 0, NULL));
    dm_stmt_done(st);
    return s;
}

/* Issue 11, sequence 8: a one-day contract at 2,400/day accrued every
 * hour but 05:00 (a dead hour does not block the later ones). It stays
 * active while 05:00 is owed; 05:00 run later credits its 100; then it
 * expires. */
static void test_expiry_waits_for_every_hour_of_the_term_not_only_the_last(void **state)
{
    int64_t u = new_member(0), c = contract(u, "fixed", 0, 1000, 2400, 1, DAY0);
    dm_job_result res;
    (void)state;

    set_clock(DAY0 + DAY + HOUR);
    for (int h = 0; h < 24; h++) {
        if (h != 5) {
            assert_int_equal(run("accrual", DAY0 + h * HOUR, 100), DM_JOB_RAN_OK);
        }
    }
    assert_int_equal(earned(c), 2300);
    assert_null(call(dm_accrual_job_expiry, "contract-expiry", 0, 100, 0, &res));
    assert_string_equal(status_of(c), "active");
    assert_int_equal(count("SELECT COUNT(*) FROM mail_queue"), 0);
    /* an hour that is not ok (failed, dead, waiting) blocks it too */
    exec(sqlf("INSERT INTO job_runs (job, period, period_start, status, attempts, failures, "
              "started_at) VALUES ('accrual', '%s', %lld, 'dead', 10, 10, 0)",
              dm_json_time(pool, DAY0 + 5 * HOUR), (long long)(DAY0 + 5 * HOUR)));
    assert_null(call(dm_accrual_job_expiry, "contract-expiry", 0, 100, 0, &res));
    assert_string_equal(status_of(c), "active");
    /* staff re-run the dead hour: the contract gets its 100, then expires */
    assert_int_equal(run("accrual", DAY0 + 5 * HOUR, 100), DM_JOB_RAN_OK);
    assert_int_equal(earned(c), 2400);
    assert_int_equal(wallet(u), 2400);
    assert_null(call(dm_accrual_job_expiry, "contract-expiry", 0, 100, 0, &res));
    assert_int_equal(count(sqlf("SELECT status = 'expired' AND ended_at = expires_at FROM "
                                "contracts WHERE id = %lld",
                                (long long)c)),
                     1);
    assert_int_equal(count(sqlf("SELECT COUNT(*) FROM mail_queue WHERE "
                                "idempotency_key = 'contract_expired:%lld' AND "
                                "json_extract(variables, '$.earned_micros') = 2400",
                                (long long)c)),
                     1);
    assert_ledger_sound();
}

/* Issue 11, sequence 8: the accrual of an hour selects the contracts whose
 * paid term covers it, whatever their status now. A contract expired too
 * early (by the earlier rule) still gets its missing hour; a contract
 * refunded at 05:30 gets 05:00 until the refund and nothing after. */
static void
test_an_hour_credits_every_contract_whose_term_covers_it_whatever_its_status(void **state)
{
    int64_t u1 = new_member(0), u2 = new_member(0), u3 = new_member(0);
    int64_t c1 = contract(u1, "fixed", 0, 1000, 2400, 1, DAY0);
    int64_t c2 = contract(u2, "fixed", 0, 1000, 4800, 1, DAY0);
    int64_t c3 = contract(u3, "fixed", 0, 1000, 24000, 30, DAY0 - 30 * DAY); /* over at DAY0 */
    (void)state;

    set_clock(DAY0 + DAY + HOUR);
    for (int h = 0; h < 24; h++) {
        if (h != 5) {
            assert_int_equal(run("accrual", DAY0 + h * HOUR, 100), DM_JOB_RAN_OK);
        }
    }
    assert_int_equal(earned(c1), 2300);
    assert_int_equal(earned(c2), 4600);
    expire_as_the_earlier_rule_did(c1);
    expire_as_the_earlier_rule_did(c3);
    /* c2 refunded at 05:30 (after the hours 06:00-23:00 it was credited:
     * their clawback is the refund's business, not the accrual's) */
    exec(sqlf("UPDATE contracts SET status = 'refunded', ended_at = %lld WHERE id = %lld",
              (long long)(DAY0 + 5 * HOUR + 1800), (long long)c2));
    assert_int_equal(run("accrual", DAY0 + 5 * HOUR, 100), DM_JOB_RAN_OK);
    assert_int_equal(earned(c1), 2400);
    assert_int_equal(wallet(u1), 2400);
    assert_int_equal(earned(c2), 4600 + 100);
    assert_int_equal(wallet(u2), 4700);
    assert_int_equal(earned(c3), 0); /* its term ended before the hour */
    assert_int_equal(count(sqlf("SELECT credit_micros FROM contract_days WHERE contract_id = "
                                "%lld AND day = %lld",
                                (long long)c1, (long long)DAY0)),
                     2400);
    assert_int_equal(count("SELECT -balance_micros FROM accounts WHERE code = 'yield'"),
                     2400 + 4700);
    assert_ledger_sound();
}

/* More candidates than one statement reads (500) and than one batch
 * holds: each contract whose term covers the hour credited once, exactly;
 * those whose term does not (over before it, started after it, refunded
 * before it) not at all, wherever they fall among the others. */
static void test_an_hour_over_many_contracts_credits_each_in_term_exactly_once(void **state)
{
    enum { N = 1203 };
    int64_t u = new_member(0), h = DAY0 + 7 * HOUR, first = 0, n_in = 0, want = 0;
    (void)state;

    for (int i = 0; i < N; i++) {
        /* every 7th over before the hour, every 11th started after it,
         * every 13th refunded before it; the others 240 + i a day */
        int64_t start = i % 7 == 0 ? DAY0 - 30 * DAY : i % 11 == 0 ? h + HOUR + 60 : DAY0;
        int64_t c = contract(u, "fixed", 0, 1000, 240 + i, i % 7 == 0 ? 30 : 2, start);
        if (!first) {
            first = c;
        }
        if (i % 13 == 0 && i % 7 && i % 11) {
            exec(sqlf("UPDATE contracts SET status = 'refunded', ended_at = %lld WHERE id = %lld",
                      (long long)(h - 60), (long long)c));
        } else if (i % 7 && i % 11) {
            n_in++;
            want += (240 + i) * 8 / 24 - (240 + i) * 7 / 24;
        }
    }
    set_clock(DAY0 + DAY);
    assert_int_equal(run("accrual", h, 1000), DM_JOB_RAN_OK);
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), n_in);
    assert_int_equal(wallet(u), want);
    for (int i = 0; i < N; i++) {
        int64_t in = i % 7 && i % 11 && i % 13;
        assert_int_equal(earned(first + i), in ? (240 + i) * 8 / 24 - (240 + i) * 7 / 24 : 0);
    }
    assert_int_equal(count(sqlf("SELECT COUNT(*) FROM transfers WHERE idempotency_key LIKE "
                                "'yield:%lld:%%'",
                                (long long)h)),
                     n_in);
    assert_ledger_sound();
}

/* The accrual's run history is what expiry reads: the clean-up, which
 * trims `ok` runs older than 90 days, keeps the accrual's, or a contract
 * longer than 90 days would never expire. */
static void test_a_long_term_expires_after_the_run_history_clean_up(void **state)
{
    int64_t u = new_member(0), c = contract(u, "fixed", 0, 1000, 2400, 100, DAY0);
    int64_t hours = 100 * 24;
    dm_job_result res;
    (void)state;

    /* its 2,400 hours ran ok, each finished when its hour was over (as
     * the daemon runs them; written here rather than run one by one) */
    exec(sqlf("WITH RECURSIVE h(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM h WHERE k < %lld) "
              "INSERT INTO job_runs (job, period, period_start, status, attempts, started_at, "
              "finished_at) SELECT 'accrual', strftime('%%Y-%%m-%%dT%%H:%%M:%%SZ', %lld + k * "
              "3600, 'unixepoch'), %lld + k * 3600, 'ok', 1, %lld + k * 3600 + 3600, "
              "%lld + k * 3600 + 3600 FROM h",
              (long long)(hours - 1), (long long)DAY0, (long long)DAY0, (long long)DAY0,
              (long long)DAY0));
    set_clock(DAY0 + 100 * DAY + HOUR);
    assert_int_equal(run("cleanup", dm_now() - dm_now() % HOUR, 100), DM_JOB_RAN_OK);
    assert_int_equal(count("SELECT COUNT(*) FROM job_runs WHERE job = 'accrual' AND "
                           "status = 'ok'"),
                     hours);
    assert_null(call(dm_accrual_job_expiry, "contract-expiry", 0, 100, 0, &res));
    assert_string_equal(status_of(c), "expired");
    /* other jobs' old history still goes */
    exec("INSERT INTO job_runs (job, period, period_start, status, attempts, started_at, "
         "finished_at) VALUES ('cleanup', 'old', 0, 'ok', 1, 0, 0)");
    set_clock(DAY0 + 100 * DAY + 2 * HOUR);
    assert_int_equal(run("cleanup", dm_now() - dm_now() % HOUR, 100), DM_JOB_RAN_OK);
    assert_int_equal(count("SELECT COUNT(*) FROM job_runs WHERE period = 'old'"), 0);
}

/* Issue 11, sequence 9: a one-day pool contract; the 23:00 payout is
 * recorded and shared first, then 22:00, then the other hours in a
 * scrambled order. None of it goes to `rounding` but the floors'
 * remainders; the contract stays active until every hour is paid. A
 * contract the earlier rule expired after 23:00 still gets its share of
 * every later payout. */
static void test_pool_payouts_in_any_order_and_after_expiry_reach_their_contracts(void **state)
{
    int64_t u1 = new_member(0), u2 = new_member(0);
    int64_t p1 = contract(u1, "pool", 0, 1000, 0, 1, DAY0);   /* a quarter */
    int64_t p2 = contract(u2, "pool", 500, 3000, 0, 1, DAY0); /* three quarters, 5 % fee */
    int64_t want1 = 0, want2 = 0, fees = 0, rem = 0;
    dm_pool_payout pay;
    dm_job_result res;
    (void)state;

    set_clock(DAY0 + DAY + HOUR);
    for (int k = 0; k < 24; k++) {
        /* 23, 22, then 0..21 scrambled (7k mod 22 visits each once) */
        int h = k == 0 ? 23 : k == 1 ? 22 : (7 * (k - 2)) % 22;
        int64_t amount = h >= 22 ? 1000000 : 1000003 + h;
        dm_pool_split s1, s2;
        assert_null(dm_pool_payout_record(db, pool, 0, NULL, "hour", DAY0 + h * HOUR, amount, "USD",
                                          NULL, &pay));
        assert_int_equal(run("pool-accrual", DAY0 + h * HOUR, 1), DM_JOB_RAN_OK);
        dm_accrual_pool_split(amount, 1000LL * HOUR, 4000LL * HOUR, 0, &s1);
        dm_accrual_pool_split(amount, 3000LL * HOUR, 4000LL * HOUR, 500, &s2);
        want1 += s1.credit;
        want2 += s2.credit;
        fees += s2.fee;
        rem += amount - s1.gross - s2.gross;
        assert_int_equal(earned(p1), want1);
        assert_int_equal(earned(p2), want2);
        assert_int_equal(count(sqlf("SELECT contracts = 2 AND remainder_micros = %lld FROM "
                                    "pool_payouts WHERE id = %lld",
                                    (long long)(amount - s1.gross - s2.gross), (long long)pay.id)),
                         1);
        assert_null(call(dm_accrual_job_expiry, "contract-expiry", 0, 100, 0, &res));
        if (k < 2) {
            /* the 1,000,000 micros: 250,000 and 712,500 each time */
            assert_int_equal(earned(p1), 250000 * (k + 1));
            assert_int_equal(earned(p2), 712500 * (k + 1));
            assert_int_equal(rem, 0);
        }
        if (k == 0) {
            /* the 23:00 payout covers the last hour, not the term */
            assert_string_equal(status_of(p1), "active");
            assert_string_equal(status_of(p2), "active");
            expire_as_the_earlier_rule_did(p1);
        } else if (k < 23) {
            assert_string_equal(status_of(p2), "active");
        }
    }
    /* worked by hand: p1 a quarter of each payout (6,000,066), p2 three
     * quarters less its 5 % fee (17,100,215 after 900,000 of fees), and
     * 16 micros of floors' remainder over the 24 payouts */
    assert_int_equal(want1, 6000066);
    assert_int_equal(want2, 17100215);
    assert_int_equal(fees, 900000);
    assert_int_equal(rem, 16);
    assert_string_equal(status_of(p2), "expired");
    assert_int_equal(wallet(u1), want1);
    assert_int_equal(wallet(u2), want2);
    assert_int_equal(count("SELECT balance_micros FROM accounts WHERE code = 'rounding'"), rem);
    assert_int_equal(count("SELECT balance_micros FROM accounts WHERE code = "
                           "'maintenance_fees'"),
                     fees);
    assert_int_equal(count("SELECT -balance_micros FROM accounts WHERE code = 'yield'"),
                     count("SELECT SUM(amount_micros) FROM pool_payouts"));
    assert_ledger_sound();
}

/* ---- commissions on yield ---- */

static void test_yield_commissions_follow_the_plan_once(void **state)
{
    int64_t top = new_member(0), mid = new_member(top), buyer = new_member(mid);
    int64_t c = contract(buyer, "fixed", 0, 1000, 2400000, 30, DAY0);
    json_t *body;
    dm_yc_plan plan;
    dm_err *e;
    (void)state;

    set_clock(DAY0 + DAY);
    body = dm_json_own(pool, json_loads("{\"levels\":[{\"level\":1,\"rates_bp\":[1000,500,0,0,0,"
                                        "0,0,0,0,0]}]}",
                                        0, NULL));
    assert_null(dm_yc_plan_parse(pool, body, 5000, &plan));
    assert_null(dm_yc_plan_replace(db, pool, 0, NULL, &plan, 5000));
    assert_int_equal(run("accrual", DAY0, 100), DM_JOB_RAN_OK);
    assert_int_equal(earned(c), 100000);
    assert_int_equal(wallet(mid), 10000);
    assert_int_equal(wallet(top), 5000);
    assert_int_equal(count(sqlf("SELECT COUNT(*) FROM transfers WHERE "
                                "idempotency_key = 'ycomm:%lld:%lld:1' AND kind = "
                                "'yield_commission'",
                                (long long)c, (long long)DAY0)),
                     1);
    /* off again: the next hour pays none */
    body = dm_json_own(pool, json_loads("{\"levels\":[]}", 0, NULL));
    assert_null(dm_yc_plan_parse(pool, body, 5000, &plan));
    assert_int_equal(plan.enabled, 0);
    assert_null(dm_yc_plan_replace(db, pool, 0, NULL, &plan, 5000));
    assert_int_equal(run("accrual", DAY0 + HOUR, 100), DM_JOB_RAN_OK);
    assert_int_equal(wallet(mid), 10000);
    assert_int_equal(count("SELECT COUNT(*) FROM audit_log WHERE action = "
                           "'yield_commission_rates.update'"),
                     2);
    /* refusals */
    body = dm_json_own(pool, json_loads("{\"levels\":[{\"level\":1,\"rates_bp\":[6000,0,0,0,0,"
                                        "0,0,0,0,0]}]}",
                                        0, NULL));
    e = dm_yc_plan_parse(pool, body, 5000, &plan);
    assert_non_null(e);
    assert_string_equal(e->field, "levels[0].rates_bp");
    body = dm_json_own(pool, json_loads("{\"levels\":[{\"level\":11,\"rates_bp\":[]}]}", 0, NULL));
    assert_string_equal(dm_yc_plan_parse(pool, body, 5000, &plan)->field, "levels[0].level");
    assert_ledger_sound();
}

/* ---- the batch ledger ---- */

static void test_post_many_is_idempotent_and_debits_only_system_accounts(void **state)
{
    int64_t u = new_member(0), v = new_member(0), yield = 0, wu = 0, wv = 0;
    dm_transfer_req q[3];
    int created[3];
    dm_err *e;
    (void)state;

    assert_null(dm_db_begin(db, pool));
    assert_null(dm_ledger_system_account(db, pool, DM_SYS_YIELD, "USD", &yield));
    assert_null(dm_ledger_member_account(db, pool, u, DM_ACCOUNT_WALLET, "USD", &wu));
    assert_null(dm_ledger_member_account(db, pool, v, DM_ACCOUNT_WALLET, "USD", &wv));
    memset(q, 0, sizeof(q));
    for (int i = 0; i < 3; i++) {
        q[i].idempotency_key = apr_psprintf(pool, "earn:test:%d", i);
        q[i].debit_account_id = yield;
        q[i].credit_account_id = i == 2 ? wv : wu;
        q[i].amount_micros = 10 + i;
        q[i].currency = "USD";
        q[i].kind = DM_KIND_YIELD;
    }
    assert_null(dm_ledger_post_many(db, pool, q, 2, created, NULL));
    assert_true(created[0] && created[1]);
    assert_null(dm_ledger_post_many(db, pool, q, 3, created, NULL));
    assert_true(!created[0] && !created[1] && created[2]);
    assert_null(dm_db_commit(db, pool));
    assert_int_equal(wallet(u), 21);
    assert_int_equal(wallet(v), 12);
    /* a replayed key with another amount: a caller's bug, refused */
    assert_null(dm_db_begin(db, pool));
    q[0].amount_micros = 99;
    e = dm_ledger_post_many(db, pool, q, 1, created, NULL);
    assert_int_equal(e->code, DM_E_CONFLICT);
    dm_db_rollback(db);
    /* a member's account as the debit: refused before anything is written */
    assert_null(dm_db_begin(db, pool));
    q[0].idempotency_key = "earn:test:x";
    q[0].debit_account_id = wu;
    q[0].credit_account_id = wv;
    e = dm_ledger_post_many(db, pool, q, 1, created, NULL);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_int_equal(count("SELECT COUNT(*) FROM transfers WHERE idempotency_key = "
                           "'earn:test:x'"),
                     0);
    /* the same key twice in one batch */
    q[1] = q[2];
    q[0] = q[2];
    e = dm_ledger_post_many(db, pool, q, 2, created, NULL);
    assert_int_equal(e->code, DM_E_INVALID);
    dm_db_rollback(db);
    /* outside a transaction */
    assert_int_equal(dm_ledger_post_many(db, pool, q, 1, created, NULL)->code, DM_E_INTERNAL);
    assert_ledger_sound();
}

/* A batch's new rows get the ids one row at a time would get (the highest
 * id + 1, + 2, … in batch order), a replayed key in the middle takes no id
 * (no gap), and a refusal found while moving balances names the account
 * as the one-row statements did. */
static void test_post_many_ids_follow_on_and_refusals_name_the_account(void **state)
{
    int64_t u = new_member(0), v = new_member(0), yield = 0, wu = 0, wv = 0, top;
    dm_transfer_req q[4];
    int created[4];
    int64_t ids[4];
    dm_err *e;
    (void)state;

    assert_null(dm_db_begin(db, pool));
    assert_null(dm_ledger_system_account(db, pool, DM_SYS_YIELD, "USD", &yield));
    assert_null(dm_ledger_member_account(db, pool, u, DM_ACCOUNT_WALLET, "USD", &wu));
    assert_null(dm_ledger_member_account(db, pool, v, DM_ACCOUNT_HELD, "EUR", &wv));
    memset(q, 0, sizeof(q));
    for (int i = 0; i < 4; i++) {
        q[i].idempotency_key = apr_psprintf(pool, "earn:ids:%d", i);
        q[i].debit_account_id = yield;
        q[i].credit_account_id = wu;
        q[i].amount_micros = 5 + i;
        q[i].currency = "USD";
        q[i].kind = DM_KIND_YIELD;
    }
    assert_null(dm_ledger_post_many(db, pool, &q[1], 1, created, ids));
    assert_true(created[0]);
    top = count("SELECT MAX(id) FROM transfers");
    assert_int_equal(ids[0], top);
    assert_null(dm_ledger_post_many(db, pool, q, 4, created, ids));
    assert_true(created[0] && !created[1] && created[2] && created[3]);
    assert_int_equal(ids[0], top + 1);
    assert_int_equal(ids[1], top);
    assert_int_equal(ids[2], top + 2);
    assert_int_equal(ids[3], top + 3);
    assert_null(dm_db_commit(db, pool));
    assert_int_equal(wallet(u), 5 + 6 + 7 + 8);
    /* the credit account holds another currency: named, as one row at a time */
    assert_null(dm_db_begin(db, pool));
    q[0].idempotency_key = "earn:ids:eur";
    q[0].credit_account_id = wv;
    e = dm_ledger_post_many(db, pool, q, 1, created, NULL);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "currency");
    assert_string_equal(
        e->message,
        apr_psprintf(pool,
                     "the transfer is in USD but held account of member %" APR_INT64_T_FMT
                     " in EUR holds EUR",
                     (apr_int64_t)v));
    dm_db_rollback(db);
    /* a balance that would overflow */
    assert_null(dm_db_begin(db, pool));
    exec(sqlf(
        "UPDATE accounts SET balance_micros = 9223372036854775800 WHERE id = %" APR_INT64_T_FMT,
        (apr_int64_t)wu));
    q[0].idempotency_key = "earn:ids:big";
    q[0].credit_account_id = wu;
    q[0].amount_micros = 100;
    e = dm_ledger_post_many(db, pool, q, 1, created, NULL);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->message, apr_psprintf(pool,
                                                 "the balance of wallet of member %" APR_INT64_T_FMT
                                                 " in USD would overflow",
                                                 (apr_int64_t)u));
    dm_db_rollback(db);
    assert_ledger_sound();
}

static void test_post_many_over_many_rows_matches_one_by_one(void **state)
{
    enum { N = 1000 };
    int64_t yield = 0, w[10];
    dm_transfer_req *q = apr_pcalloc(pool, sizeof(*q) * N);
    int *created = apr_pcalloc(pool, sizeof(int) * N);
    int64_t want[10] = {0};
    (void)state;

    for (int i = 0; i < 10; i++) {
        w[i] = new_member(0);
    }
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_ledger_system_account(db, pool, DM_SYS_YIELD, "USD", &yield));
    for (int i = 0; i < 10; i++) {
        assert_null(dm_ledger_member_account(db, pool, w[i], DM_ACCOUNT_WALLET, "USD", &w[i]));
    }
    for (int i = 0; i < N; i++) {
        q[i].idempotency_key = apr_psprintf(pool, "earn:bulk:%d", i);
        q[i].debit_account_id = yield;
        q[i].credit_account_id = w[i % 10];
        q[i].amount_micros = 1 + i;
        q[i].currency = "USD";
        q[i].kind = DM_KIND_YIELD;
        want[i % 10] += 1 + i;
    }
    {
        dm_err *e = dm_ledger_post_many(db, pool, q, N, created, NULL);
        if (e) {
            fail_msg("post_many: %s", e->message);
        }
    }
    assert_null(dm_db_commit(db, pool));
    for (int i = 0; i < 10; i++) {
        dm_account a;
        assert_null(dm_ledger_account_get(db, pool, w[i], &a));
        assert_int_equal(a.balance_micros, want[i]);
    }
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), N);
    assert_int_equal(count("SELECT -balance_micros FROM accounts WHERE code = 'yield'"),
                     (int64_t)N * (N + 1) / 2);
    assert_ledger_sound();
}

/* More accounts than one UPDATE moves (1,024) and more rows than one
 * INSERT takes: every balance exact, each account moved once per batch;
 * the same batch again is all replays and moves nothing. */
static void test_post_many_over_a_thousand_accounts_moves_each_exactly(void **state)
{
    enum { N = 3001, M = 1501 };
    int64_t yield = 0, *w = apr_pcalloc(pool, sizeof(int64_t) * M);
    int64_t *want = apr_pcalloc(pool, sizeof(int64_t) * M);
    dm_transfer_req *q = apr_pcalloc(pool, sizeof(*q) * N);
    int *created = apr_pcalloc(pool, sizeof(int) * N);
    int64_t *ids = apr_pcalloc(pool, sizeof(int64_t) * N);
    int64_t first = count("SELECT COALESCE(MAX(id), 0) FROM transfers");
    (void)state;

    for (int i = 0; i < M; i++) {
        w[i] = new_member(0);
    }
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_ledger_system_account(db, pool, DM_SYS_YIELD, "USD", &yield));
    for (int i = 0; i < M; i++) {
        assert_null(dm_ledger_member_account(db, pool, w[i], DM_ACCOUNT_WALLET, "USD", &w[i]));
    }
    for (int i = 0; i < N; i++) {
        q[i].idempotency_key = apr_psprintf(pool, "earn:wide:%d", i);
        q[i].debit_account_id = yield;
        q[i].credit_account_id = w[i % M];
        q[i].amount_micros = 1 + i;
        q[i].currency = "USD";
        q[i].kind = DM_KIND_YIELD;
        want[i % M] += 1 + i;
    }
    assert_null(dm_ledger_post_many(db, pool, q, N, created, ids));
    assert_null(dm_db_commit(db, pool));
    for (int i = 0; i < N; i++) {
        assert_int_equal(created[i], 1);
        assert_int_equal(ids[i], first + 1 + i);
    }
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_ledger_post_many(db, pool, q, N, created, ids));
    assert_null(dm_db_commit(db, pool));
    for (int i = 0; i < N; i++) {
        assert_int_equal(created[i], 0);
        assert_int_equal(ids[i], first + 1 + i);
    }
    for (int i = 0; i < M; i++) {
        dm_account a;
        assert_null(dm_ledger_account_get(db, pool, w[i], &a));
        assert_int_equal(a.balance_micros, want[i]);
    }
    assert_int_equal(
        count("SELECT COUNT(*) FROM transfers WHERE idempotency_key LIKE 'earn:wide:%'"), N);
    assert_int_equal(count("SELECT -balance_micros FROM accounts WHERE code = 'yield'"),
                     (int64_t)N * (N + 1) / 2);
    assert_ledger_sound();
}

/* ---- the sale copies the yield terms; migration 011 ---- */

static void test_a_sale_copies_yield_mode_and_fee(void **state)
{
    dm_package pkg = {0, "Pool pkg", 5000, 1000000, 10, 30, "USD", 1, 1, DM_YIELD_POOL, 450};
    int64_t u = new_member(0);
    dm_order o;
    dm_contract c;
    dm_transfer t;
    int found = 0, created = 0;
    (void)state;

    assert_null(dm_db_begin(db, pool));
    assert_null(dm_catalogue_insert(db, pool, &pkg));
    assert_null(dm_db_commit(db, pool));
    assert_null(dm_ledger_adjust(db, pool, 0, NULL, u, 1000000, "test", NULL, &t, &created));
    assert_null(dm_order_pay_from_balance(db, pool, u, pkg.id, &o));
    assert_null(dm_contract_of_order(db, pool, o.id, &c, &found));
    assert_true(found);
    assert_string_equal(c.yield_mode, "pool");
    assert_int_equal(c.fee_bp, 450);
    assert_int_equal(c.earned_micros, 0);
    /* a later change of the package does not touch the contract */
    exec("UPDATE packages SET yield_mode = 'fixed', fee_bp = 0");
    assert_null(dm_contract_get(db, pool, c.id, u, &c));
    assert_string_equal(c.yield_mode, "pool");
    assert_int_equal(dm_contract_get(db, pool, c.id, u + 1000, &c)->code, DM_E_NOT_FOUND);
}

static void test_migration_011_keeps_contracts_and_their_triggers(void **state)
{
    dm_db *old;
    int applied = 0, version = 0, v10 = 0;
    int64_t gen;
    (void)state;

    while (v10 < dm_migrations_count && dm_migrations[v10].version <= 10) {
        v10++;
    }
    assert_null(dm_db_open(pool, dm_fx_path(pool, "old"), NULL, &old));
    assert_null(dm_migrate(old, pool, dm_migrations, v10, &applied, &version));
    assert_int_equal(version, 10);
    assert_null(dm_db_exec(
        old, pool,
        "INSERT INTO packages (name, hashrate_ghs, price_micros, daily_yield_micros, "
        "duration_days, created_at, updated_at) VALUES ('Old', 1000, 5, 7, 30, 0, 0);"
        "INSERT INTO users (email, email_key, password_hash, referral_code, terms_version, "
        "terms_accepted_at, created_at, updated_at) VALUES ('o@x', 'o@x', 'x', 'OLD0001', 'v', 0, "
        "0, 0);"
        "INSERT INTO orders (user_id, package_id, amount_micros, currency, status, gateway, "
        "created_at, updated_at) VALUES (1, 1, 5, 'USD', 'paid', 'balance', 0, 0);"
        "INSERT INTO contracts (order_id, user_id, package_id, name, hashrate_ghs, price_micros, "
        "daily_yield_micros, duration_days, currency, started_at, expires_at, status) VALUES "
        "(1, 1, 1, 'Old', 1000, 5, 7, 30, 'USD', 100, 200, 'refunded')"));
    assert_null(dm_migrate(old, pool, dm_migrations, dm_migrations_count, &applied, &version));
    assert_int_equal(version, dm_migrate_latest());
    db = old;
    assert_int_equal(count("SELECT COUNT(*) FROM contracts WHERE id = 1 AND status = 'refunded' "
                           "AND yield_mode = 'fixed' AND fee_bp = 0 AND earned_micros = 0 AND "
                           "started_at = 100"),
                     1);
    assert_int_equal(count("SELECT COUNT(*) FROM packages WHERE yield_mode = 'fixed'"), 1);
    /* the catalogue triggers of 009 are back */
    assert_null(dm_catalogue_generation(db, pool, &gen));
    exec("UPDATE contracts SET status = 'expired' WHERE id = 1");
    assert_int_equal(count("SELECT generation FROM catalogue_state"), gen + 1);
    /* (by name: later migrations add triggers of their own, e.g. 024's
     * statistics rollup) */
    assert_int_equal(count("SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND "
                           "tbl_name = 'contracts' AND name IN ('contracts_ai_catalogue', "
                           "'contracts_au_catalogue')"),
                     2);
    assert_int_equal(count("SELECT COUNT(*) FROM pragma_foreign_key_check"), 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_hours_of_a_day_sum_to_the_daily_yield),
        cmocka_unit_test(test_fixed_whole_term_from_an_odd_start_sums_exactly),
        cmocka_unit_test(test_pool_split_sums_to_the_payout_exactly),
        T(test_fixed_accrual_credits_each_hour_once_with_statement),
        T(test_a_run_stopped_between_batches_is_finished_without_double_credit),
        T(test_migration_036_keeps_each_hour_under_the_key_it_began_with),
        T(test_a_contract_refunded_later_still_gets_the_hours_before),
        T(test_pool_hour_waits_for_its_payout_then_splits_it_exactly),
        T(test_pool_payout_refusals),
        T(test_pool_day_payout_is_shared_at_23h_over_the_whole_day),
        T(test_pool_distribution_stopped_midway_is_completed_exactly),
        T(test_expiry_waits_for_the_whole_term_then_expires_and_mails),
        T(test_expiry_waits_for_every_hour_of_the_term_not_only_the_last),
        T(test_an_hour_credits_every_contract_whose_term_covers_it_whatever_its_status),
        T(test_pool_payouts_in_any_order_and_after_expiry_reach_their_contracts),
        T(test_a_long_term_expires_after_the_run_history_clean_up),
        T(test_an_hour_over_many_contracts_credits_each_in_term_exactly_once),
        T(test_yield_commissions_follow_the_plan_once),
        T(test_post_many_is_idempotent_and_debits_only_system_accounts),
        T(test_post_many_ids_follow_on_and_refusals_name_the_account),
        T(test_post_many_over_many_rows_matches_one_by_one),
        T(test_post_many_over_a_thousand_accounts_moves_each_exactly),
        T(test_a_sale_copies_yield_mode_and_fee),
        T(test_migration_011_keeps_contracts_and_their_triggers),
    };
    int failed;

    apr_initialize();
    if (sodium_init() < 0 || dm_fx_init("accrual") != 0) {
        return 1;
    }
    dm_log_set_sink(quiet_sink, NULL);
    failed = cmocka_run_group_tests_name("accrual", tests, NULL, NULL);
    apr_terminate();
    return failed ? 1 : 0;
}
