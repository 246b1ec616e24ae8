/* The job runner (core/jobs.c, cron.c): the back-off schedule, the lease
 * state machine (done once, busy, taken over when expired or when its
 * holder's process is gone, failed → not due → retried → dead with one
 * alert, waiting, interrupted by shutdown, lease lost mid-run), and the
 * scheduler's catch-up of missed hours in order. Time comes from a clock
 * file the tests move. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "store/db.h"
#include "cron/cron.h"
#include "store/migrate.h"
#include "fixture.h"

static apr_pool_t *pool;
static const char *clock_path;
static int64_t now_t;

#define T0 1795600800 /* 2026-11-25T10:00:00Z */

static void set_clock(int64_t t)
{
    FILE *f = fopen(clock_path, "w");
    struct tm tm;
    time_t tt = (time_t)t;
    char buf[64];

    assert_non_null(f);
    gmtime_r(&tt, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(f, "%s\n", buf);
    fclose(f);
    now_t = t;
}

static int64_t count(dm_db *db, const char *sql)
{
    int64_t v = -1;
    int found = 0;
    assert_null(dm_db_query_int64(db, pool, sql, &v, &found));
    return v;
}

static void exec(dm_db *db, const char *sql)
{
    assert_null(dm_db_exec(db, pool, sql));
}

/* ---- job functions for the tests ---- */

static int calls;
static int fail_calls;
static dm_job_result next_result;
static volatile int stop_flag;

static dm_err *fn_ok(dm_job_ctx *ctx, dm_job_result *res)
{
    calls++;
    ctx->items += 7;
    *res = next_result;
    return NULL;
}

static dm_err *fn_fail(dm_job_ctx *ctx, dm_job_result *res)
{
    fail_calls++;
    *res = DM_JOB_OK;
    return dm_err_make(ctx->pool, DM_E_INTERNAL, NULL, "boom %d", fail_calls);
}

/* Works in "batches", asking keep_going between them; the test's hook
 * steals the lease or raises the stop flag after the first batch. */
static void (*between_batches)(dm_job_ctx *ctx);

static dm_err *fn_batches(dm_job_ctx *ctx, dm_job_result *res)
{
    *res = DM_JOB_OK;
    for (int i = 0; i < 3; i++) {
        ctx->items++;
        if (between_batches) {
            between_batches(ctx);
        }
        ctx->renewed = 0; /* renew at every check, as if time had passed */
        if (!dm_job_keep_going(ctx)) {
            return dm_err_make(ctx->pool, DM_E_UNAVAILABLE, NULL, "stopped");
        }
    }
    return NULL;
}

static const dm_job_def def_ok = {.name = "t-ok",
                                  .sched = DM_SCHED_HOURLY,
                                  .max_attempts = 3,
                                  .timeout_s = 60,
                                  .fn = fn_ok,
                                  .about = "test"};
static const dm_job_def def_fail = {.name = "t-fail",
                                    .sched = DM_SCHED_HOURLY,
                                    .max_attempts = 3,
                                    .timeout_s = 60,
                                    .fn = fn_fail,
                                    .on_dead = dm_cron_job_dead_alert,
                                    .about = "test"};
static const dm_job_def def_batches = {.name = "t-batches",
                                       .sched = DM_SCHED_HOURLY,
                                       .max_attempts = 3,
                                       .timeout_s = 60,
                                       .fn = fn_batches,
                                       .about = "test"};

static dm_job_env env;

static dm_job_outcome run(dm_db *db, const dm_job_def *d, int64_t period, const char *holder,
                          int force)
{
    dm_job_outcome o = DM_JOB_BUSY;
    dm_job_run_opts opts = {.holder = holder, .force = force, .stop = &stop_flag};

    assert_null(dm_job_run(db, pool, &env, d, period, &opts, &o));
    return o;
}

static const char *status_of(dm_db *db, const char *job)
{
    dm_stmt *st;
    int row = 0;
    const char *s = NULL;

    assert_null(dm_db_prepare(db, pool, "SELECT status FROM job_runs WHERE job = ?", &st));
    dm_stmt_bind_text(st, 1, job, strlen(job));
    assert_null(dm_stmt_step(st, pool, &row));
    if (row) {
        s = apr_pstrdup(pool, dm_stmt_text(st, 0, NULL));
    }
    dm_stmt_done(st);
    return s;
}

/* ---- tests ---- */

static void test_backoff_doubles_from_30s_up_to_an_hour(void **state)
{
    (void)state;
    assert_int_equal(dm_job_backoff(1), 30);
    assert_int_equal(dm_job_backoff(2), 60);
    assert_int_equal(dm_job_backoff(3), 120);
    assert_int_equal(dm_job_backoff(7), 1920);
    assert_int_equal(dm_job_backoff(8), 3600);
    assert_int_equal(dm_job_backoff(50), 3600);
}

static void test_a_period_that_finished_ok_never_runs_again(void **state)
{
    dm_db *db = dm_fx_db(pool);
    (void)state;
    set_clock(T0 + 100);
    calls = 0;
    next_result = DM_JOB_OK;
    assert_int_equal(run(db, &def_ok, T0 - 3600, "h:1:a", 0), DM_JOB_RAN_OK);
    assert_int_equal(run(db, &def_ok, T0 - 3600, "h:1:a", 0), DM_JOB_ALREADY_DONE);
    assert_int_equal(run(db, &def_ok, T0 - 3600, "other:2:b", 1), DM_JOB_ALREADY_DONE);
    assert_int_equal(calls, 1);
    assert_string_equal(status_of(db, "t-ok"), "ok");
    assert_int_equal(count(db, "SELECT items FROM job_runs WHERE job = 't-ok'"), 7);
    assert_int_equal(count(db, "SELECT count(*) FROM job_leases"), 0);
    dm_db_close(db);
}

static void test_a_live_lease_makes_others_busy_until_it_expires(void **state)
{
    dm_db *db = dm_fx_db(pool);
    (void)state;
    set_clock(T0 + 100);
    calls = 0;
    next_result = DM_JOB_OK;
    /* another host holds the job, lease valid for 60 s more */
    exec(db, "INSERT INTO job_leases (job, period, holder, expires_at) VALUES "
             "('t-ok', '2026-11-25T09:00:00Z', 'elsewhere:1:x', 1795600960)");
    assert_int_equal(run(db, &def_ok, T0 - 3600, "h:1:a", 0), DM_JOB_BUSY);
    assert_int_equal(run(db, &def_ok, T0 - 3600, "h:1:a", 1), DM_JOB_BUSY); /* force is no key */
    assert_int_equal(calls, 0);
    set_clock(T0 + 161); /* expired: taken over */
    assert_int_equal(run(db, &def_ok, T0 - 3600, "h:1:a", 0), DM_JOB_RAN_OK);
    assert_int_equal(calls, 1);
    dm_db_close(db);
}

static void test_a_lease_of_a_dead_process_on_this_host_is_taken_at_once(void **state)
{
    dm_db *db = dm_fx_db(pool);
    char host[256];
    (void)state;
    set_clock(T0 + 100);
    calls = 0;
    gethostname(host, sizeof(host));
    host[sizeof(host) - 1] = '\0';
    /* pid 999999999 cannot exist (pid_max is far lower) */
    exec(db, apr_psprintf(pool,
                          "INSERT INTO job_leases (job, period, holder, expires_at) VALUES "
                          "('t-ok', 'x', '%s:999999999:dead', 1795700000)",
                          host));
    assert_int_equal(run(db, &def_ok, T0 - 3600, "h:1:a", 0), DM_JOB_RAN_OK);
    /* ... but a live one (this very process) is respected */
    exec(db, apr_psprintf(pool,
                          "INSERT INTO job_leases (job, period, holder, expires_at) VALUES "
                          "('t-ok', 'x', '%s:%ld:alive', 1795700000)",
                          host, (long)getpid()));
    assert_int_equal(run(db, &def_ok, T0 - 7200, "h:1:a", 0), DM_JOB_BUSY);
    dm_db_close(db);
}

static void test_failures_back_off_then_die_with_one_alert(void **state)
{
    dm_db *db = dm_fx_db(pool);
    (void)state;
    set_clock(T0 + 100);
    fail_calls = 0;
    exec(db, "INSERT INTO staff (email, email_key, password_hash, role, status, created_at, "
             "updated_at) VALUES ('o@x.test', 'o@x.test', 'x', 'owner', 'active', 0, 0), "
             "('f@x.test', 'f@x.test', 'x', 'finance', 'active', 0, 0)");
    assert_int_equal(run(db, &def_fail, T0 - 3600, "h:1:a", 0), DM_JOB_RAN_FAILED);
    assert_int_equal(count(db, "SELECT next_attempt_at FROM job_runs"), T0 + 100 + 30);
    assert_int_equal(run(db, &def_fail, T0 - 3600, "h:1:a", 0), DM_JOB_NOT_DUE);
    set_clock(T0 + 130);
    assert_int_equal(run(db, &def_fail, T0 - 3600, "h:1:a", 0), DM_JOB_RAN_FAILED);
    assert_int_equal(count(db, "SELECT next_attempt_at FROM job_runs"), T0 + 130 + 60);
    set_clock(T0 + 190);
    assert_int_equal(run(db, &def_fail, T0 - 3600, "h:1:a", 0), DM_JOB_RAN_DEAD);
    assert_string_equal(status_of(db, "t-fail"), "dead");
    assert_int_equal(run(db, &def_fail, T0 - 3600, "h:1:a", 0), DM_JOB_IS_DEAD);
    assert_int_equal(fail_calls, 3);
    /* owners only, once */
    assert_int_equal(count(db, "SELECT count(*) FROM mail_queue WHERE template = 'staff_alert' "
                               "AND recipient = 'o@x.test'"),
                     1);
    assert_int_equal(count(db, "SELECT count(*) FROM mail_queue"), 1);
    /* forced: runs again, failure count afresh, still one alert */
    assert_int_equal(run(db, &def_fail, T0 - 3600, "h:1:a", 1), DM_JOB_RAN_FAILED);
    assert_int_equal(count(db, "SELECT failures FROM job_runs"), 1);
    assert_int_equal(count(db, "SELECT attempts FROM job_runs"), 4);
    assert_int_equal(count(db, "SELECT count(*) FROM mail_queue"), 1);
    dm_db_close(db);
}

static void test_waiting_is_not_a_failure(void **state)
{
    dm_db *db = dm_fx_db(pool);
    (void)state;
    set_clock(T0 + 100);
    next_result = DM_JOB_WAITING;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(run(db, &def_ok, T0 - 3600, "h:1:a", 0), DM_JOB_RAN_WAITING);
        assert_int_equal(run(db, &def_ok, T0 - 3600, "h:1:a", 0), DM_JOB_NOT_DUE);
        set_clock(now_t + 60);
    }
    assert_string_equal(status_of(db, "t-ok"), "waiting");
    assert_int_equal(count(db, "SELECT failures FROM job_runs"), 0);
    next_result = DM_JOB_OK;
    assert_int_equal(run(db, &def_ok, T0 - 3600, "h:1:a", 0), DM_JOB_RAN_OK);
    dm_db_close(db);
}

static void steal_lease(dm_job_ctx *ctx)
{
    assert_null(dm_db_exec(ctx->db, ctx->pool, "UPDATE job_leases SET holder = 'thief:1:x'"));
}

static void raise_stop(dm_job_ctx *ctx)
{
    (void)ctx;
    stop_flag = 1;
}

static void test_a_run_stops_when_its_lease_is_lost_and_records_nothing(void **state)
{
    dm_db *db = dm_fx_db(pool);
    (void)state;
    set_clock(T0 + 100);
    between_batches = steal_lease;
    assert_int_equal(run(db, &def_batches, T0 - 3600, "h:1:a", 0), DM_JOB_BUSY);
    between_batches = NULL;
    /* the thief owns the period now: still running, our failure not recorded */
    assert_string_equal(status_of(db, "t-batches"), "running");
    assert_int_equal(count(db, "SELECT failures FROM job_runs"), 0);
    dm_db_close(db);
}

static void test_shutdown_leaves_the_period_to_the_next_holder(void **state)
{
    dm_db *db = dm_fx_db(pool);
    (void)state;
    set_clock(T0 + 100);
    stop_flag = 0;
    between_batches = raise_stop;
    assert_int_equal(run(db, &def_batches, T0 - 3600, "h:1:a", 0), DM_JOB_BUSY);
    between_batches = NULL;
    stop_flag = 0;
    assert_string_equal(status_of(db, "t-batches"), "running");
    assert_int_equal(count(db, "SELECT count(*) FROM job_leases"), 0);
    /* the next holder takes it straight away and finishes it */
    assert_int_equal(run(db, &def_batches, T0 - 3600, "next:2:b", 0), DM_JOB_RAN_OK);
    assert_int_equal(count(db, "SELECT attempts FROM job_runs"), 2);
    assert_int_equal(count(db, "SELECT failures FROM job_runs"), 0);
    dm_db_close(db);
}

static void test_the_scheduler_catches_up_missed_hours_in_order(void **state)
{
    const char *path = dm_fx_path(pool, "j");
    dm_db *db = dm_fx_open_migrated(pool, path);
    int ran = 0;
    char line[128];
    FILE *f;
    int n = 0;
    (void)state;
    env.database = path;
    env.test_mode = 1;
    env.accrual_delay = 0;
    set_clock(T0 + 5);
    assert_null(dm_cron_tick(db, pool, &env, "h:1:a", NULL, &ran));
    assert_int_equal(count(db, "SELECT cursor FROM job_state WHERE job = 'test-tick'"), T0);
    set_clock(T0 + 4 * 3600 + 5); /* 4 hours later */
    assert_null(dm_cron_tick(db, pool, &env, "h:1:a", NULL, &ran));
    assert_true(ran >= 4);
    assert_null(dm_cron_tick(db, pool, &env, "h:1:a", NULL, &ran));
    f = fopen(apr_pstrcat(pool, env.database, ".ticks", NULL), "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f)) {
        char want[32];
        time_t t = (time_t)(T0 + 3600 * n);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%SZ", &tm);
        assert_memory_equal(line, want, strlen(want));
        n++;
    }
    fclose(f);
    assert_int_equal(n, 4);
    assert_int_equal(count(db, "SELECT count(*) FROM job_runs WHERE job = 'test-tick' AND "
                               "status = 'ok' AND attempts = 1"),
                     4);
    /* heartbeat */
    {
        int64_t age = -1;
        int found = 0;
        assert_null(dm_cron_beat(db, pool, "h:1:a", 0));
        set_clock(now_t + 42);
        assert_null(dm_cron_heartbeat_age(db, pool, &age, &found));
        assert_true(found);
        assert_int_equal(age, 42);
    }
    env.test_mode = 0;
    dm_db_close(db);
}

static void test_history_reads_one_period_and_the_latest_period_not_the_latest_run(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_job_run_row r;
    int found = -1;
    (void)state;
    set_clock(T0 + 100);
    calls = fail_calls = 0;
    next_result = DM_JOB_OK;
    assert_int_equal(run(db, &def_ok, T0 - 3600, "h:1:a", 0), DM_JOB_RAN_OK);
    assert_int_equal(run(db, &def_fail, T0 - 3600, "h:1:a", 0), DM_JOB_RAN_FAILED);
    set_clock(T0 + 200);
    /* an older period run by hand after the newer one */
    assert_int_equal(run(db, &def_ok, T0 - 7200, "h:1:a", 0), DM_JOB_RAN_OK);

    assert_null(dm_job_run_get(db, pool, "t-ok", T0 - 3600, &r, &found));
    assert_int_equal(found, 1);
    assert_string_equal(r.job, "t-ok");
    assert_string_equal(r.period, "2026-11-25T09:00:00Z");
    assert_int_equal(r.period_start, T0 - 3600);
    assert_string_equal(r.status, "ok");
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.failures, 0);
    assert_int_equal(r.items, 7);
    assert_int_equal(r.started_at, T0 + 100);
    assert_int_equal(r.finished_at, T0 + 100);
    assert_int_equal(r.next_attempt_at, 0);
    assert_null(r.error);

    assert_null(dm_job_run_last(db, pool, "t-ok", &r, &found));
    assert_int_equal(found, 1);
    assert_int_equal(r.period_start, T0 - 3600);

    assert_null(dm_job_run_get(db, pool, "t-fail", T0 - 3600, &r, &found));
    assert_int_equal(found, 1);
    assert_string_equal(r.status, "failed");
    assert_int_equal(r.failures, 1);
    assert_int_equal(r.items, 0);
    assert_int_equal(r.next_attempt_at, T0 + 100 + 30);
    assert_string_equal(r.error, "boom 1");

    assert_null(dm_job_run_get(db, pool, "t-ok", T0, &r, &found));
    assert_int_equal(found, 0);
    assert_null(dm_job_run_last(db, pool, "t-never", &r, &found));
    assert_int_equal(found, 0);
    dm_db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_doubles_from_30s_up_to_an_hour),
        cmocka_unit_test(test_a_period_that_finished_ok_never_runs_again),
        cmocka_unit_test(test_a_live_lease_makes_others_busy_until_it_expires),
        cmocka_unit_test(test_a_lease_of_a_dead_process_on_this_host_is_taken_at_once),
        cmocka_unit_test(test_failures_back_off_then_die_with_one_alert),
        cmocka_unit_test(test_waiting_is_not_a_failure),
        cmocka_unit_test(test_a_run_stops_when_its_lease_is_lost_and_records_nothing),
        cmocka_unit_test(test_shutdown_leaves_the_period_to_the_next_holder),
        cmocka_unit_test(test_the_scheduler_catches_up_missed_hours_in_order),
        cmocka_unit_test(test_history_reads_one_period_and_the_latest_period_not_the_latest_run),
    };
    int rc;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    dm_db_global_init();
    if (dm_fx_init("jobs") != 0) {
        return 1;
    }
    clock_path = apr_pstrcat(pool, dm_fx_dir(), "/clock", NULL);
    set_clock(T0);
    dm_clock_use_file(clock_path);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    (void)dm_fx_done();
    apr_terminate();
    return rc;
}
