/* The metrics series table (core/base/metrics): counting with label text,
 * histograms, the text format, a full table, processes sharing a region,
 * and the running totals of migration 025 against the tables they sum. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/metrics.h"
#include "cron/metrics_db.h"
#include "fixture.h"

static apr_pool_t *pool;
static void *mem;
static size_t mem_size;

static void make_region(unsigned series)
{
    mem_size = dm_metrics_region_size(series);
    mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    dm_metrics_region_init(mem, mem_size, series);
    dm_metrics_attach(mem);
}

static int setup(void **state)
{
    (void)state;
    apr_pool_create(&pool, NULL);
    make_region(64);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dm_metrics_attach(NULL);
    munmap(mem, mem_size);
    apr_pool_destroy(pool);
    return 0;
}

static const char *render(void)
{
    dm_metrics_buf b;

    dm_metrics_buf_init(&b, pool);
    dm_metrics_render(&b);
    return b.data;
}

static void test_nothing_attached_counts_nothing(void **state)
{
    (void)state;
    dm_metrics_attach(NULL);
    dm_metrics_inc(DM_M_LOGIN_FAILURES, "realm", "member", DM_ML_END);
    assert_int_equal(dm_metrics_get(DM_M_LOGIN_FAILURES, "realm", "member", DM_ML_END), 0);
    assert_int_equal(dm_metrics_swap(DM_M_DB_STORAGE_FULL, 1, DM_ML_END), 0);
    assert_int_equal(dm_metrics_series_used(), 0);
}

static void test_a_series_is_its_family_and_label_values(void **state)
{
    (void)state;
    dm_metrics_inc(DM_M_LOGIN_FAILURES, "realm", "member", DM_ML_END);
    dm_metrics_inc(DM_M_LOGIN_FAILURES, "realm", "member", DM_ML_END);
    dm_metrics_add(DM_M_LOGIN_FAILURES, 5, "realm", "staff", DM_ML_END);
    dm_metrics_inc(DM_M_RATE_LIMIT_REFUSED, "rule", "member", DM_ML_END);
    assert_int_equal(dm_metrics_get(DM_M_LOGIN_FAILURES, "realm", "member", DM_ML_END), 2);
    assert_int_equal(dm_metrics_get(DM_M_LOGIN_FAILURES, "realm", "staff", DM_ML_END), 5);
    assert_int_equal(dm_metrics_get(DM_M_RATE_LIMIT_REFUSED, "rule", "member", DM_ML_END), 1);
    assert_int_equal(dm_metrics_series_used(), 3);
    assert_non_null(strstr(render(), "deepmine_login_failures_total{realm=\"member\"} 2\n"));
    assert_non_null(strstr(render(), "deepmine_login_failures_total{realm=\"staff\"} 5\n"));
}

static void test_label_values_are_escaped(void **state)
{
    (void)state;
    dm_metrics_inc(DM_M_WEBHOOKS_RECEIVED, "plugin", "a\"b\\c\nd", DM_ML_END);
    assert_non_null(
        strstr(render(), "deepmine_webhooks_received_total{plugin=\"a\\\"b\\\\c\\nd\"} 1\n"));
}

static void test_a_long_label_value_is_cut_and_stays_well_formed(void **state)
{
    char longv[400];
    const char *text, *line;

    (void)state;
    memset(longv, '"', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    dm_metrics_inc(DM_M_WEBHOOKS_RECEIVED, "plugin", longv, DM_ML_END);
    text = render();
    line = strstr(text, "deepmine_webhooks_received_total{plugin=\"");
    assert_non_null(line);
    /* cut on a whole escape, closed, then the value */
    assert_non_null(strstr(line, "\\\"\"} 1\n"));
    assert_null(strstr(line, "\\\\\"} 1"));
}

static void test_unlabelled_families_read_zero_before_any_update(void **state)
{
    const char *text;

    (void)state;
    text = render();
    assert_non_null(strstr(text, "# TYPE deepmine_twofa_failures_total counter\n"
                                 "deepmine_twofa_failures_total 0\n"));
    assert_non_null(strstr(text, "deepmine_mail_sent_total 0\n"));
    assert_non_null(strstr(text, "deepmine_metrics_series_dropped_total 0\n"));
    /* labelled families are announced, with no samples yet */
    assert_non_null(strstr(text, "# TYPE deepmine_http_requests_total counter\n# HELP"));
}

static void test_histograms_render_cumulative_buckets_in_seconds(void **state)
{
    const char *text;

    (void)state;
    dm_metrics_observe_us(DM_M_JOB_DURATION, 700, "job", "mail", DM_ML_END);      /* <= 1 ms */
    dm_metrics_observe_us(DM_M_JOB_DURATION, 5000, "job", "mail", DM_ML_END);     /* <= 5 ms */
    dm_metrics_observe_us(DM_M_JOB_DURATION, 20000000, "job", "mail", DM_ML_END); /* > 10 s */
    text = render();
    assert_non_null(strstr(text,
                           "deepmine_job_duration_seconds_bucket{job=\"mail\",le=\"0.001\"} 1\n"
                           "deepmine_job_duration_seconds_bucket{job=\"mail\",le=\"0.005\"} 2\n"
                           "deepmine_job_duration_seconds_bucket{job=\"mail\",le=\"0.01\"} 2\n"));
    assert_non_null(strstr(text,
                           "deepmine_job_duration_seconds_bucket{job=\"mail\",le=\"10\"} 2\n"
                           "deepmine_job_duration_seconds_bucket{job=\"mail\",le=\"+Inf\"} 3\n"
                           "deepmine_job_duration_seconds_sum{job=\"mail\"} 20.0057\n"
                           "deepmine_job_duration_seconds_count{job=\"mail\"} 3\n"));
}

static void test_gauges_set_and_swap(void **state)
{
    (void)state;
    assert_int_equal(dm_metrics_swap(DM_M_DB_STORAGE_FULL, 1, DM_ML_END), 0);
    assert_int_equal(dm_metrics_swap(DM_M_DB_STORAGE_FULL, 0, DM_ML_END), 1);
    dm_metrics_add(DM_M_DB_POOL_IN_USE, 1, DM_ML_END);
    dm_metrics_add(DM_M_DB_POOL_IN_USE, 1, DM_ML_END);
    dm_metrics_add(DM_M_DB_POOL_IN_USE, -1, DM_ML_END);
    assert_int_equal(dm_metrics_get(DM_M_DB_POOL_IN_USE, DM_ML_END), 1);
    dm_metrics_set(DM_M_JOB_LAST_SUCCESS, 1700000000, "job", "mail", DM_ML_END);
    assert_int_equal(dm_metrics_get(DM_M_JOB_LAST_SUCCESS, "job", "mail", DM_ML_END), 1700000000);
    /* a family its reader renders is not in the region's own text */
    assert_null(strstr(render(), "1700000000"));
}

static void test_a_full_table_drops_new_series_and_counts_them(void **state)
{
    char name[16];

    (void)state;
    for (int i = 0; i < 64; i++) {
        snprintf(name, sizeof(name), "r%d", i);
        dm_metrics_inc(DM_M_RATE_LIMIT_REFUSED, "rule", name, DM_ML_END);
    }
    assert_int_equal(dm_metrics_series_used(), 64);
    dm_metrics_inc(DM_M_RATE_LIMIT_REFUSED, "rule", "one-too-many", DM_ML_END);
    dm_metrics_inc(DM_M_RATE_LIMIT_REFUSED, "rule", "r5", DM_ML_END); /* still counted */
    assert_int_equal(dm_metrics_get(DM_M_RATE_LIMIT_REFUSED, "rule", "r5", DM_ML_END), 2);
    assert_non_null(strstr(render(), "deepmine_metrics_series_dropped_total 1\n"));
}

static void test_processes_count_into_one_region(void **state)
{
    pid_t kids[4];

    (void)state;
    for (int k = 0; k < 4; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            for (int i = 0; i < 10000; i++) {
                dm_metrics_inc(DM_M_HTTP_REQUESTS, "route", "/api/x", "method", "GET", "class",
                               "2xx", DM_ML_END);
                dm_metrics_observe_us(DM_M_HTTP_DURATION, i, "route", "/api/x", DM_ML_END);
            }
            _exit(0);
        }
    }
    for (int k = 0; k < 4; k++) {
        int st = 0;
        waitpid(kids[k], &st, 0);
        assert_int_equal(st, 0);
    }
    assert_int_equal(dm_metrics_get(DM_M_HTTP_REQUESTS, "route", "/api/x", "method", "GET", "class",
                                    "2xx", DM_ML_END),
                     40000);
    assert_int_equal(dm_metrics_series_used(), 2);
    assert_non_null(strstr(render(),
                           "deepmine_http_request_duration_seconds_count{route=\"/api/x\"} "
                           "40000\n"));
}

static void test_a_region_of_another_layout_is_not_used(void **state)
{
    (void)state;
    assert_true(dm_metrics_region_usable(mem, mem_size, 64));
    assert_false(dm_metrics_region_usable(mem, mem_size, 65));
    assert_false(dm_metrics_region_usable(mem, mem_size - 1, 64));
    ((uint32_t *)mem)[1] ^= 1; /* the layout version */
    assert_false(dm_metrics_region_usable(mem, mem_size, 64));
}

/* The running totals (sql/025) follow inserts, updates and deletes. */
static void test_running_totals_follow_the_tables(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_metrics_buf b;
    dm_err *e;

    (void)state;
    e = dm_db_exec(db, pool,
                   "INSERT INTO users (id, email, email_key, password_hash, referral_code, "
                   "terms_version, terms_accepted_at, created_at, updated_at) VALUES "
                   "(901, 'm901@example.com', 'm901@example.com', 'x', 'R901', '1', 1, 1, 1), "
                   "(902, 'm902@example.com', 'm902@example.com', 'x', 'R902', '1', 1, 1, 1);"
                   "INSERT INTO accounts (kind, user_id, currency, balance_micros, created_at) "
                   "VALUES ('wallet', 901, 'USD', 1500000, 1), ('wallet', 902, 'USD', 2, 1), "
                   "('held', 901, 'USD', 7, 1);"
                   "UPDATE accounts SET balance_micros = balance_micros - 500000 "
                   "WHERE user_id = 901 AND kind = 'wallet';"
                   "DELETE FROM accounts WHERE user_id = 902;");
    assert_null(e);
    dm_metrics_buf_init(&b, pool);
    e = dm_metrics_db_render(db, pool, 1000, &b);
    assert_null(e);
    assert_non_null(
        strstr(b.data, "deepmine_ledger_member_balance{kind=\"held\",currency=\"USD\"} 0.000007\n"
                       "deepmine_ledger_member_balance{kind=\"wallet\",currency=\"USD\"} 1\n"));
    assert_non_null(strstr(b.data, "deepmine_contracts_active 0\n"));
    dm_db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nothing_attached_counts_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_series_is_its_family_and_label_values, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_label_values_are_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_long_label_value_is_cut_and_stays_well_formed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unlabelled_families_read_zero_before_any_update, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_histograms_render_cumulative_buckets_in_seconds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_gauges_set_and_swap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_full_table_drops_new_series_and_counts_them, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_processes_count_into_one_region, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_region_of_another_layout_is_not_used, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_running_totals_follow_the_tables, setup, teardown),
    };
    int rc;

    apr_initialize();
    if (dm_fx_init("metrics") != 0) {
        return 1;
    }
    rc = cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
    dm_fx_done();
    return rc;
}
