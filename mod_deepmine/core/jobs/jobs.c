/*
 * jobs.c — the lease state machine and the runner (see jobs.h).
 *
 * A run goes: take (one transaction: look at the period's run row and the
 * job's lease, then write both) → the job's function, outside any
 * transaction of ours → finish (one transaction: record the outcome, drop
 * the lease, queue the dead-letter alert). If the lease was lost meanwhile
 * (another holder took it over because ours expired), finish records
 * nothing: the new holder owns the period now.
 */
#include "jobs/jobs.h"

#include <apr_strings.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <sodium.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/metrics.h"

/* How long a lease lasts without renewal, and how often a running job
 * renews it (through dm_job_keep_going). */
#define LEASE_TTL 60
#define LEASE_RENEW_EVERY 10
/* A waiting period (no data yet) is looked at again after this long. */
#define WAITING_RETRY 60
#define ERROR_MAX 1000

int64_t dm_job_backoff(int failures)
{
    int64_t d = 30;

    for (int i = 1; i < failures && d < 3600; i++) {
        d *= 2;
    }
    return d > 3600 ? 3600 : d;
}

const char *dm_job_holder(apr_pool_t *p)
{
    char host[256];
    unsigned char rnd[6];

    if (gethostname(host, sizeof(host)) != 0) {
        strcpy(host, "localhost");
    }
    host[sizeof(host) - 1] = '\0';
    randombytes_buf(rnd, sizeof(rnd));
    return apr_psprintf(p, "%s:%ld:%02x%02x%02x%02x%02x%02x", host, (long)getpid(), rnd[0], rnd[1],
                        rnd[2], rnd[3], rnd[4], rnd[5]);
}

/* A holder on this host whose process is gone: its lease need not be
 * waited out. Holders look like "host:pid:random". */
static int holder_is_dead(const char *holder)
{
    char host[256];
    const char *colon = strchr(holder, ':');
    long pid;
    char *end;

    if (!colon || gethostname(host, sizeof(host)) != 0) {
        return 0;
    }
    host[sizeof(host) - 1] = '\0';
    if ((size_t)(colon - holder) != strlen(host) || strncmp(holder, host, strlen(host)) != 0) {
        return 0;
    }
    errno = 0;
    pid = strtol(colon + 1, &end, 10);
    if (errno || *end != ':' || pid <= 0) {
        return 0;
    }
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

const char *dm_job_outcome_name(dm_job_outcome o)
{
    switch (o) {
    case DM_JOB_RAN_OK:
        return "ok";
    case DM_JOB_RAN_FAILED:
        return "failed";
    case DM_JOB_RAN_DEAD:
        return "dead";
    case DM_JOB_RAN_WAITING:
        return "waiting";
    case DM_JOB_ALREADY_DONE:
        return "already_done";
    case DM_JOB_IS_DEAD:
        return "is_dead";
    case DM_JOB_NOT_DUE:
        return "not_due";
    case DM_JOB_BUSY:
        return "busy";
    }
    return "unknown";
}

/* ---- take ---- */

static dm_err *take(dm_db *db, apr_pool_t *p, const dm_job_def *def, const char *period,
                    int64_t period_start, const dm_job_run_opts *o, int64_t now,
                    dm_job_outcome *refused)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e;

    *refused = DM_JOB_RAN_OK;
    e = dm_db_prepare(
        db, p, "SELECT status, next_attempt_at FROM job_runs WHERE job = ? AND period = ?", &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, def->name);
    dm_stmt_bind_str(st, 2, period);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        const char *status = dm_stmt_text(st, 0, NULL);
        int64_t next = dm_stmt_is_null(st, 1) ? 0 : dm_stmt_int64(st, 1);
        if (strcmp(status, "ok") == 0) {
            *refused = DM_JOB_ALREADY_DONE;
        } else if (strcmp(status, "dead") == 0 && !o->force) {
            *refused = DM_JOB_IS_DEAD;
        } else if ((strcmp(status, "failed") == 0 || strcmp(status, "waiting") == 0) &&
                   next > now && !o->force) {
            *refused = DM_JOB_NOT_DUE;
        }
    }
    dm_stmt_done(st);
    if (e || *refused != DM_JOB_RAN_OK) {
        return e;
    }

    e = dm_db_prepare(db, p, "SELECT holder, expires_at FROM job_leases WHERE job = ?", &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, def->name);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        const char *holder = dm_stmt_text(st, 0, NULL);
        if (dm_stmt_int64(st, 1) > now && strcmp(holder, o->holder) != 0 &&
            !holder_is_dead(holder)) {
            *refused = DM_JOB_BUSY;
        }
    }
    dm_stmt_done(st);
    if (e || *refused != DM_JOB_RAN_OK) {
        return e;
    }

    e = dm_db_prepare(
        db, p,
        "INSERT INTO job_leases (job, period, holder, expires_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (job) DO UPDATE SET period = excluded.period, "
        "holder = excluded.holder, expires_at = excluded.expires_at",
        &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, def->name);
    dm_stmt_bind_str(st, 2, period);
    dm_stmt_bind_str(st, 3, o->holder);
    dm_stmt_bind_int64(st, 4, now + LEASE_TTL);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (e) {
        return e;
    }

    e = dm_db_prepare(db, p,
                      "INSERT INTO job_runs (job, period, period_start, status, attempts, holder, "
                      "started_at) VALUES (?, ?, ?, 'running', 1, ?, ?) "
                      "ON CONFLICT (job, period) DO UPDATE SET status = 'running', "
                      "attempts = job_runs.attempts + 1, holder = excluded.holder, "
                      "started_at = excluded.started_at, finished_at = NULL, "
                      "next_attempt_at = NULL, "
                      "failures = CASE WHEN job_runs.status = 'dead' THEN 0 "
                      "ELSE job_runs.failures END",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, def->name);
    dm_stmt_bind_str(st, 2, period);
    dm_stmt_bind_int64(st, 3, period_start);
    dm_stmt_bind_str(st, 4, o->holder);
    dm_stmt_bind_int64(st, 5, now);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

/* ---- keep going ---- */

static dm_err *renew(dm_job_ctx *ctx, int *ours)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e =
        dm_db_prepare(ctx->db, ctx->pool,
                      "UPDATE job_leases SET expires_at = ? WHERE job = ? AND holder = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, dm_now() + LEASE_TTL);
    dm_stmt_bind_str(st, 2, ctx->job);
    dm_stmt_bind_str(st, 3, ctx->holder);
    e = dm_stmt_step(st, ctx->pool, &row);
    dm_stmt_done(st);
    *ours = !e && dm_db_changes(ctx->db) == 1;
    if (e || !*ours) {
        return e;
    }
    /* A daemon busy with a long run is alive: its heartbeat (a row only
     * daemons have, under the same holder id) moves with the lease. */
    e = dm_db_prepare(ctx->db, ctx->pool, "UPDATE cron_heartbeat SET beat_at = ? WHERE holder = ?",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, dm_now());
    dm_stmt_bind_str(st, 2, ctx->holder);
    e = dm_stmt_step(st, ctx->pool, &row);
    dm_stmt_done(st);
    return e;
}

int dm_job_keep_going(dm_job_ctx *ctx)
{
    int64_t t = (int64_t)time(NULL);

    if (ctx->lost || ctx->stopped) {
        return 0;
    }
    if (ctx->stop && *ctx->stop) {
        ctx->stopped = 1;
        return 0;
    }
    if (ctx->deadline && t > ctx->deadline) {
        return 0;
    }
    if (t - ctx->renewed >= LEASE_RENEW_EVERY && !dm_db_in_transaction(ctx->db)) {
        int ours = 0;
        dm_err *e = renew(ctx, &ours);
        if (e) {
            dm_log(DM_L_WARN, "DM00900: job %s %s: lease renewal failed: %s", ctx->job, ctx->period,
                   e->message);
            return 1; /* try again next batch; the lease has LEASE_TTL of slack */
        }
        ctx->renewed = t;
        if (!ours) {
            dm_log(DM_L_WARN, "DM00901: job %s %s: lease lost to another holder; stopping",
                   ctx->job, ctx->period);
            ctx->lost = 1;
            return 0;
        }
    }
    return 1;
}

/* ---- finish ---- */

static dm_err *finish(dm_job_ctx *ctx, const dm_job_def *def, const dm_err *failure,
                      dm_job_result res, dm_job_outcome *outcome)
{
    dm_db *db = ctx->db;
    apr_pool_t *p = ctx->pool;
    int64_t now = dm_now(), failures = 0;
    dm_stmt *st;
    int row = 0, ours = 0;
    const char *status;
    dm_err *e = dm_db_begin(db, p);

    if (e) {
        return e;
    }
    e = dm_db_prepare(db, p, "SELECT holder FROM job_leases WHERE job = ?", &st);
    if (!e) {
        dm_stmt_bind_str(st, 1, def->name);
        e = dm_stmt_step(st, p, &row);
        ours = !e && row && strcmp(dm_stmt_text(st, 0, NULL), ctx->holder) == 0;
        dm_stmt_done(st);
    }
    if (!e && !ours) {
        dm_db_rollback(db);
        *outcome = DM_JOB_BUSY;
        return NULL;
    }
    if (!e) {
        e = dm_db_prepare(db, p, "SELECT failures FROM job_runs WHERE job = ? AND period = ?", &st);
    }
    if (!e) {
        dm_stmt_bind_str(st, 1, def->name);
        dm_stmt_bind_str(st, 2, ctx->period);
        e = dm_stmt_step(st, p, &row);
        failures = (!e && row) ? dm_stmt_int64(st, 0) : 0;
        dm_stmt_done(st);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }

    if (failure) {
        failures++;
        status = failures >= def->max_attempts ? "dead" : "failed";
        *outcome = failures >= def->max_attempts ? DM_JOB_RAN_DEAD : DM_JOB_RAN_FAILED;
    } else if (res == DM_JOB_WAITING) {
        status = "waiting";
        *outcome = DM_JOB_RAN_WAITING;
    } else {
        status = "ok";
        *outcome = DM_JOB_RAN_OK;
    }

    if (*outcome == DM_JOB_RAN_OK && def->quiet && ctx->items == 0) {
        /* Nothing done, nothing worth a history row. */
        e = dm_db_prepare(db, p, "DELETE FROM job_runs WHERE job = ? AND period = ?", &st);
        if (!e) {
            dm_stmt_bind_str(st, 1, def->name);
            dm_stmt_bind_str(st, 2, ctx->period);
        }
    } else {
        e = dm_db_prepare(db, p,
                          "UPDATE job_runs SET status = ?, failures = ?, items = ?, "
                          "finished_at = ?, next_attempt_at = ?, error = ?, holder = NULL "
                          "WHERE job = ? AND period = ?",
                          &st);
        if (!e) {
            dm_stmt_bind_str(st, 1, status);
            dm_stmt_bind_int64(st, 2, failures);
            dm_stmt_bind_int64(st, 3, ctx->items);
            dm_stmt_bind_int64(st, 4, now);
            if (*outcome == DM_JOB_RAN_FAILED) {
                dm_stmt_bind_int64(st, 5, now + dm_job_backoff((int)failures));
            } else if (*outcome == DM_JOB_RAN_WAITING) {
                dm_stmt_bind_int64(st, 5, now + WAITING_RETRY);
            } else {
                dm_stmt_bind_null(st, 5);
            }
            if (failure) {
                const char *m = failure->message ? failure->message : "failed";
                size_t n = strlen(m);
                dm_stmt_bind_text(st, 6, m, n > ERROR_MAX ? ERROR_MAX : n);
            } else {
                dm_stmt_bind_null(st, 6);
            }
            dm_stmt_bind_str(st, 7, def->name);
            dm_stmt_bind_str(st, 8, ctx->period);
        }
    }
    if (!e) {
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    if (!e) {
        e = dm_db_prepare(db, p, "DELETE FROM job_leases WHERE job = ? AND holder = ?", &st);
    }
    if (!e) {
        dm_stmt_bind_str(st, 1, def->name);
        dm_stmt_bind_str(st, 2, ctx->holder);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    if (!e && *outcome == DM_JOB_RAN_DEAD && def->on_dead) {
        e = def->on_dead(db, p, def->name, ctx->period, (int)failures, failure->message);
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
    }
    return e;
}

static dm_err *release_lease(dm_db *db, apr_pool_t *p, const char *job, const char *holder)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, "DELETE FROM job_leases WHERE job = ? AND holder = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, job);
    dm_stmt_bind_str(st, 2, holder);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

/* ---- run ---- */

static dm_err *job_run(dm_db *db, apr_pool_t *p, const dm_job_env *env, const dm_job_def *def,
                       int64_t period_start, const dm_job_run_opts *opts, dm_job_outcome *outcome)
{
    dm_job_ctx ctx;
    dm_job_result res = DM_JOB_OK;
    dm_err *e, *failure;
    int64_t started_us;
    int64_t len = def->sched == DM_SCHED_HOURLY ? 3600 : def->interval_s;

    memset(&ctx, 0, sizeof(ctx));
    ctx.db = db;
    ctx.pool = p;
    ctx.env = env;
    ctx.job = def->name;
    ctx.period = dm_json_time(p, period_start);
    ctx.period_start = period_start;
    ctx.period_end = period_start + (len > 0 ? len : 1);
    ctx.holder = opts->holder;
    ctx.stop = opts->stop;
    ctx.lease_ttl = LEASE_TTL;
    ctx.renewed = (int64_t)time(NULL);
    ctx.deadline = def->timeout_s > 0 ? ctx.renewed + def->timeout_s : 0;

    e = dm_db_begin(db, p);
    if (e) {
        return e;
    }
    e = take(db, p, def, ctx.period, period_start, opts, dm_now(), outcome);
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    if (*outcome != DM_JOB_RAN_OK) {
        return NULL;
    }

    started_us = dm_metrics_now_us();
    failure = def->fn(&ctx, &res);
    dm_metrics_observe_us(DM_M_JOB_DURATION, dm_metrics_now_us() - started_us, "job", def->name,
                          DM_ML_END);
    if (dm_db_in_transaction(db)) {
        dm_db_rollback(db); /* a job that failed mid-batch */
    }
    if (ctx.stopped) {
        /* Shutting down: not a failure. The run row stays `running` and
         * the lease is dropped, so the next holder redoes the period. */
        dm_log(DM_L_NOTICE, "DM00906: job %s %s interrupted by shutdown; left to the next run",
               def->name, ctx.period);
        *outcome = DM_JOB_BUSY;
        return release_lease(db, p, def->name, opts->holder);
    }
    if (!failure && ctx.lost) {
        failure = dm_err_make(p, DM_E_UNAVAILABLE, NULL, "lease lost before the run finished");
    } else if (!failure && ctx.deadline && (int64_t)time(NULL) > ctx.deadline) {
        failure = dm_err_make(p, DM_E_UNAVAILABLE, NULL, "timed out after %d s", def->timeout_s);
    }
    if (failure) {
        dm_log(DM_L_WARN, "DM00902: job %s %s failed: %s", def->name, ctx.period, failure->message);
    }
    e = finish(&ctx, def, failure, res, outcome);
    if (!e) {
        dm_metrics_inc(DM_M_JOB_RUNS, "job", def->name, "result",
                       *outcome == DM_JOB_RAN_DEAD      ? "dead"
                       : *outcome == DM_JOB_RAN_FAILED  ? "failed"
                       : *outcome == DM_JOB_RAN_WAITING ? "waiting"
                                                        : "ok",
                       DM_ML_END);
    }
    if (!e && *outcome == DM_JOB_RAN_OK) {
        dm_metrics_set(DM_M_JOB_LAST_SUCCESS, dm_now(), "job", def->name, DM_ML_END);
    }
    if (!e && *outcome == DM_JOB_RAN_DEAD) {
        dm_log(DM_L_ERR, "DM00903: job %s %s is dead after %d attempts; owners alerted", def->name,
               ctx.period, def->max_attempts);
    }
    return e;
}

dm_err *dm_job_request(dm_db *db, apr_pool_t *p, const char *job, int64_t period_start,
                       const char *by)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO job_state (job, requested_at, requested_period, "
                              "requested_by) VALUES (?, ?, ?, ?) ON CONFLICT (job) DO UPDATE SET "
                              "requested_at = excluded.requested_at, "
                              "requested_period = excluded.requested_period, "
                              "requested_by = excluded.requested_by",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, job);
    dm_stmt_bind_int64(st, 2, dm_now());
    if (period_start) {
        dm_stmt_bind_int64(st, 3, period_start);
    } else {
        dm_stmt_bind_null(st, 3);
    }
    dm_stmt_bind_str(st, 4, by ? by : "");
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

/* ---- history ---- */

#define RUN_ROW_COLUMNS                                                                            \
    "id, job, period, period_start, status, attempts, failures, items, started_at, "               \
    "finished_at, next_attempt_at, error"

static void read_run(dm_stmt *st, apr_pool_t *p, dm_job_run_row *r)
{
    r->id = dm_stmt_int64(st, 0);
    r->job = apr_pstrdup(p, dm_stmt_text(st, 1, NULL));
    r->period = apr_pstrdup(p, dm_stmt_text(st, 2, NULL));
    r->period_start = dm_stmt_int64(st, 3);
    r->status = apr_pstrdup(p, dm_stmt_text(st, 4, NULL));
    r->attempts = dm_stmt_int64(st, 5);
    r->failures = dm_stmt_int64(st, 6);
    r->items = dm_stmt_int64(st, 7);
    r->started_at = dm_stmt_is_null(st, 8) ? 0 : dm_stmt_int64(st, 8);
    r->finished_at = dm_stmt_is_null(st, 9) ? 0 : dm_stmt_int64(st, 9);
    r->next_attempt_at = dm_stmt_is_null(st, 10) ? 0 : dm_stmt_int64(st, 10);
    r->error = dm_stmt_is_null(st, 11) ? NULL : apr_pstrdup(p, dm_stmt_text(st, 11, NULL));
}

/* One row of `sql` (job bound first, then the period text when given). */
static dm_err *run_row(dm_db *db, apr_pool_t *p, const char *sql, const char *job,
                       const char *period, dm_job_run_row *out, int *found)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, sql, &st);

    *found = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, job);
    if (period) {
        dm_stmt_bind_str(st, 2, period);
    }
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        memset(out, 0, sizeof(*out));
        read_run(st, p, out);
        *found = 1;
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_job_run_get(dm_db *db, apr_pool_t *p, const char *job, int64_t period_start,
                       dm_job_run_row *out, int *found)
{
    /* by the period's text, as the runner writes it: the UNIQUE (job,
     * period) index answers */
    return run_row(db, p, "SELECT " RUN_ROW_COLUMNS " FROM job_runs WHERE job = ? AND period = ?",
                   job, dm_json_time(p, period_start), out, found);
}

dm_err *dm_job_run_last(dm_db *db, apr_pool_t *p, const char *job, dm_job_run_row *out, int *found)
{
    return run_row(db, p,
                   "SELECT " RUN_ROW_COLUMNS " FROM job_runs WHERE job = ? "
                   "ORDER BY period_start DESC, id DESC LIMIT 1",
                   job, NULL, out, found);
}

dm_err *dm_job_run(dm_db *db, apr_pool_t *p, const dm_job_env *env, const dm_job_def *def,
                   int64_t period_start, const dm_job_run_opts *opts, dm_job_outcome *outcome)
{
    const char *outer = dm_log_context(DM_LOG_CTX_JOB);
    dm_err *e;

    /* Error reports name the job whose run logged them (docs/operations.md). */
    dm_log_context_set(DM_LOG_CTX_JOB, def->name);
    e = job_run(db, p, env, def, period_start, opts, outcome);
    dm_log_context_set(DM_LOG_CTX_JOB, outer);
    return e;
}
