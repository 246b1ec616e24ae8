/*
 * metrics_db.c — the database's figures in the Prometheus text format (see
 * metrics_db.h). Money is printed in currency units from the integer
 * micro-units (exact, no floating point); hash rates in hashes per second
 * from GH/s.
 */
#include "cron/metrics_db.h"

#include <apr_strings.h>

#include "cron/cron.h"
#include "shop/capacity.h"

/* micro-units as a decimal number of currency units: -1500000 → "-1.5" */
static const char *units(apr_pool_t *p, int64_t micros)
{
    uint64_t m = micros < 0 ? (uint64_t)0 - (uint64_t)micros : (uint64_t)micros;
    char *s = apr_psprintf(p, "%s%" APR_UINT64_T_FMT ".%06" APR_UINT64_T_FMT, micros < 0 ? "-" : "",
                           (apr_uint64_t)(m / 1000000), (apr_uint64_t)(m % 1000000));
    size_t n = strlen(s);

    while (s[n - 1] == '0') {
        s[--n] = '\0';
    }
    if (s[n - 1] == '.') {
        s[--n] = '\0';
    }
    return s;
}

/* GH/s as H/s, exactly (1e12 GH/s would overflow int64 in H/s). */
static const char *hashes(apr_pool_t *p, int64_t ghs)
{
    return ghs == 0 ? "0" : apr_psprintf(p, "%" APR_INT64_T_FMT "000000000", (apr_int64_t)ghs);
}

static dm_err *balances(dm_db *db, apr_pool_t *p, dm_metrics_buf *b)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT kind, currency, balance_micros FROM metrics_balances "
                              "ORDER BY kind, currency",
                              &st);

    if (e) {
        return e;
    }
    dm_metrics_header(b, "deepmine_ledger_member_balance", "gauge",
                      "Sum of the members' balances in currency units, by account kind (wallet: "
                      "spendable, held: withdrawals and holds in progress) and currency.");
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        dm_metrics_printf(b, "deepmine_ledger_member_balance{kind=\"%s\",currency=\"%s\"} %s\n",
                          dm_metrics_escape(p, dm_stmt_text(st, 0, NULL)),
                          dm_metrics_escape(p, dm_stmt_text(st, 1, NULL)),
                          units(p, dm_stmt_int64(st, 2)));
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *counts(dm_db *db, apr_pool_t *p, int64_t now, dm_metrics_buf *b)
{
    dm_stmt *st;
    int row = 0, found = 0;
    int64_t active = 0, active_ghs = 0, pending_ghs = 0;
    dm_capacity_row cap;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT tbl, status, n, hashrate_ghs FROM metrics_counts "
                              "ORDER BY tbl, status",
                              &st);

    if (e) {
        return e;
    }
    dm_metrics_header(b, "deepmine_orders", "gauge", "Orders by status.");
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        const char *tbl = dm_stmt_text(st, 0, NULL);
        if (strcmp(tbl, "orders") == 0) {
            dm_metrics_printf(b, "deepmine_orders{status=\"%s\"} %lld\n",
                              dm_metrics_escape(p, dm_stmt_text(st, 1, NULL)),
                              (long long)dm_stmt_int64(st, 2));
        } else if (strcmp(tbl, "contracts") == 0 &&
                   strcmp(dm_stmt_text(st, 1, NULL), "active") == 0) {
            active = dm_stmt_int64(st, 2);
            active_ghs = dm_stmt_int64(st, 3);
        }
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    /* Pending orders hold their share of the capacity (shop/capacity.h);
     * there are few at any time (orders_status index). */
    e = dm_db_prepare(db, p,
                      "SELECT COALESCE(SUM(k.hashrate_ghs), 0) FROM orders o "
                      "JOIN packages k ON k.id = o.package_id WHERE o.status = 'pending' "
                      "AND (o.hold_until IS NULL OR o.hold_until > ?)",
                      &st);
    if (!e) {
        dm_stmt_bind_int64(st, 1, now);
        e = dm_stmt_step(st, p, &row);
        pending_ghs = (!e && row) ? dm_stmt_int64(st, 0) : 0;
        dm_stmt_done(st);
    }
    if (!e) {
        e = dm_capacity_current(db, p, &cap, &found);
    }
    if (e) {
        return e;
    }
    dm_metrics_header(b, "deepmine_contracts_active", "gauge", "Contracts in status active.");
    dm_metrics_printf(b, "deepmine_contracts_active %lld\n", (long long)active);
    dm_metrics_header(b, "deepmine_hashrate_sold_hashes_per_second", "gauge",
                      "Hash power sold: active contracts (less what refunds released) and "
                      "pending orders' holds.");
    dm_metrics_printf(b, "deepmine_hashrate_sold_hashes_per_second %s\n",
                      hashes(p, active_ghs + pending_ghs));
    dm_metrics_header(b, "deepmine_hashrate_capacity_hashes_per_second", "gauge",
                      "Hash power the operator recorded as owned or leased (0: none recorded).");
    dm_metrics_printf(b, "deepmine_hashrate_capacity_hashes_per_second %s\n",
                      hashes(p, found ? cap.hashrate_ghs : 0));
    return NULL;
}

static dm_err *withdrawals(dm_db *db, apr_pool_t *p, dm_metrics_buf *b)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT currency, COUNT(*), SUM(amount_micros) FROM withdrawals "
                              "WHERE status = 'pending' GROUP BY currency ORDER BY currency",
                              &st);

    if (e) {
        return e;
    }
    dm_metrics_header(b, "deepmine_withdrawals_pending", "gauge",
                      "Withdrawals waiting for a decision, by currency.");
    dm_metrics_header(b, "deepmine_withdrawals_pending_amount", "gauge",
                      "Amount of the withdrawals waiting for a decision, in currency units.");
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        const char *cur = dm_metrics_escape(p, dm_stmt_text(st, 0, NULL));
        dm_metrics_printf(b, "deepmine_withdrawals_pending{currency=\"%s\"} %lld\n", cur,
                          (long long)dm_stmt_int64(st, 1));
        dm_metrics_printf(b, "deepmine_withdrawals_pending_amount{currency=\"%s\"} %s\n", cur,
                          units(p, dm_stmt_int64(st, 2)));
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *mail_queue(dm_db *db, apr_pool_t *p, int64_t now, dm_metrics_buf *b)
{
    dm_stmt *st;
    int row = 0;
    int64_t depth = 0, oldest = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT COUNT(*), MIN(created_at) FROM mail_queue "
                              "WHERE status IN ('queued', 'sending')",
                              &st);

    if (e) {
        return e;
    }
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        depth = dm_stmt_int64(st, 0);
        oldest = dm_stmt_is_null(st, 1) ? 0 : now - dm_stmt_int64(st, 1);
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    dm_metrics_header(b, "deepmine_mail_queue_depth", "gauge", "Messages queued or being sent.");
    dm_metrics_printf(b, "deepmine_mail_queue_depth %lld\n", (long long)depth);
    dm_metrics_header(b, "deepmine_mail_queue_oldest_age_seconds", "gauge",
                      "Age of the oldest message still queued (0: none).");
    dm_metrics_printf(b, "deepmine_mail_queue_oldest_age_seconds %lld\n",
                      (long long)(oldest > 0 ? oldest : 0));
    return NULL;
}

typedef struct job_figures {
    const char *name;
    int64_t last_ok; /* 0: never (that this server knows) */
    int64_t dead;
    int64_t failing;
} job_figures;

/* Per job of the table: its history rows (job_runs, which the cleanup job
 * keeps short), and the last success this server's cron daemon counted —
 * a quiet job that found nothing to do leaves no history row. */
static dm_err *jobs(dm_db *db, apr_pool_t *p, dm_metrics_buf *b)
{
    const dm_job_def *defs = dm_jobs_table();
    apr_array_header_t *figs = apr_array_make(p, 16, sizeof(job_figures));
    dm_stmt *st;
    int row = 0, found = 0;
    int64_t age = 0;
    dm_err *e = NULL;

    for (const dm_job_def *d = defs; d->name && !e; d++) {
        job_figures *f = apr_array_push(figs);
        memset(f, 0, sizeof(*f));
        f->name = d->name;
        e = dm_db_prepare(db, p,
                          "SELECT MAX(CASE WHEN status = 'ok' THEN finished_at END), "
                          "COALESCE(SUM(status = 'dead'), 0), COALESCE(SUM(status = 'failed'), 0) "
                          "FROM job_runs WHERE job = ?",
                          &st);
        if (e) {
            break;
        }
        dm_stmt_bind_str(st, 1, d->name);
        e = dm_stmt_step(st, p, &row);
        if (!e && row) {
            f->last_ok = dm_stmt_is_null(st, 0) ? 0 : dm_stmt_int64(st, 0);
            f->dead = dm_stmt_int64(st, 1);
            f->failing = dm_stmt_int64(st, 2);
        }
        dm_stmt_done(st);
        {
            int64_t counted = dm_metrics_get(DM_M_JOB_LAST_SUCCESS, "job", d->name, DM_ML_END);
            if (counted > f->last_ok) {
                f->last_ok = counted;
            }
        }
        /* The test-only jobs appear once they did something (test mode). */
        if (d->test_only && !f->last_ok && !f->dead && !f->failing) {
            figs->nelts--;
        }
    }
    if (e) {
        return e;
    }
    dm_metrics_header(b, "deepmine_job_last_success_timestamp_seconds", "gauge",
                      "When a job last finished a period successfully (Unix time; absent: "
                      "never).");
    for (int i = 0; i < figs->nelts; i++) {
        const job_figures *f = &APR_ARRAY_IDX(figs, i, job_figures);
        if (f->last_ok) {
            dm_metrics_printf(b, "deepmine_job_last_success_timestamp_seconds{job=\"%s\"} %lld\n",
                              f->name, (long long)f->last_ok);
        }
    }
    dm_metrics_header(b, "deepmine_job_dead_periods", "gauge",
                      "Periods a job gave up on after its last attempt (need an operator).");
    for (int i = 0; i < figs->nelts; i++) {
        const job_figures *f = &APR_ARRAY_IDX(figs, i, job_figures);
        dm_metrics_printf(b, "deepmine_job_dead_periods{job=\"%s\"} %lld\n", f->name,
                          (long long)f->dead);
    }
    dm_metrics_header(b, "deepmine_job_failing_periods", "gauge",
                      "Periods whose last attempt failed and that wait for a retry.");
    for (int i = 0; i < figs->nelts; i++) {
        const job_figures *f = &APR_ARRAY_IDX(figs, i, job_figures);
        dm_metrics_printf(b, "deepmine_job_failing_periods{job=\"%s\"} %lld\n", f->name,
                          (long long)f->failing);
    }
    e = dm_cron_heartbeat_age(db, p, &age, &found);
    if (e) {
        return e;
    }
    dm_metrics_header(b, "deepmine_cron_heartbeat_age_seconds", "gauge",
                      "Seconds since the cron daemon's last heartbeat (absent: it never beat).");
    if (found) {
        dm_metrics_printf(b, "deepmine_cron_heartbeat_age_seconds %lld\n",
                          (long long)(age > 0 ? age : 0));
    }
    return NULL;
}

dm_err *dm_metrics_db_render(dm_db *db, apr_pool_t *p, int64_t now, dm_metrics_buf *b)
{
    dm_err *e = counts(db, p, now, b);

    if (!e) {
        e = balances(db, p, b);
    }
    if (!e) {
        e = withdrawals(db, p, b);
    }
    if (!e) {
        e = mail_queue(db, p, now, b);
    }
    if (!e) {
        e = jobs(db, p, b);
    }
    return e;
}
