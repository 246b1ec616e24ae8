/*
 * jobs.h — scheduled jobs: the table of jobs, leases, run history, retries
 * and dead letters (ARCHITECTURE §5). No httpd here: the cron daemon
 * (http/cron_daemon.c), `deepminectl jobs run` and POST
 * /api/admin/jobs/{job}/run all run jobs through dm_job_run().
 *
 * A run of a job is for one period: an hour ("2026-11-25T10:00:00Z") for
 * hourly jobs, a slot of the job's interval for interval jobs. Invariants:
 * - a (job, period) that finished `ok` never runs again (dm_job_run says
 *   DM_JOB_ALREADY_DONE); a job's functions must still be idempotent
 *   (ledger keys), because a holder killed mid-run leaves work half done
 *   and the next holder redoes the period;
 * - at most one holder runs a job at a time, across processes and hosts on
 *   one database: the lease row (job_leases: job, period, holder,
 *   expires_at) is taken in a transaction; a lease past expires_at can be
 *   taken over;
 * - each run is recorded in job_runs (UNIQUE job, period) with status
 *   running|ok|failed|dead|waiting, attempts, items, error;
 * - a failed period is retried after an exponential back-off
 *   (dm_job_backoff); after max_attempts failures it is `dead`, and the
 *   owners are e-mailed once (staff_alert key "job-dead:<job>:<period>").
 *   A holder that died mid-run (its lease expired, or its process is gone
 *   on this host) is not a failure: the next holder simply runs the period
 *   again (attempts counts starts, failures counts failures).
 */
#ifndef DM_JOBS_H
#define DM_JOBS_H

#include <apr_pools.h>
#include <stdint.h>

#include "store/db.h"
#include "base/err.h"

struct dm_plugin_host;
struct dm_keys;

/* What jobs may need from the platform, filled by whoever runs them (the
 * daemon from the Apache configuration, deepminectl from its options).
 * Fields a runner cannot fill are NULL/0, and a job that needs them fails
 * with a clear error. */
typedef struct dm_job_env {
    const char *database;                 /* path, for jobs that open more connections */
    const struct dm_plugin_host *plugins; /* loaded plugins (mail job) */
    const char *mailer;                   /* name of the mailer plugin in use, or NULL */
    const struct dm_keys *keys;           /* derived keys (unsubscribe tokens) */
    const char *public_url;               /* links in e-mails; may be NULL */
    const char *mail_from;                /* DeepMineMailFrom */
    int accrual_delay;                    /* seconds after the hour before accrual runs */
    int commission_hold_days;             /* DeepMineCommissionHold */
    int test_mode;                        /* DeepMineTestMode on */
    int batch_size;                       /* rows per transaction in batch jobs; 0: default */
    /* kyc-retention (kyc_docs.h): DeepMineStorage's plugin name (NULL: the
     * only one) and DeepMineKycRetention in seconds (0: the defaults) */
    const char *storage;
    int64_t kyc_retention;
    int64_t kyc_abandoned;
    int staff_digest; /* DeepMineStaffDigest on: the staff-digest job sends */
    /* backup, backup-verify (ops/backup.h): keys derived from
     * DeepMineSecretKeyFile (NULL: those jobs fail), DeepMineBackupEvery in
     * seconds (0: off), DeepMineBackupKeep hourly/daily/weekly */
    const struct dm_backup_keys *backup_keys;
    int64_t backup_every;
    int backup_keep[3];
} dm_job_env;

typedef struct dm_job_ctx dm_job_ctx;

/* What a job function returns besides an error. */
typedef enum dm_job_result {
    DM_JOB_OK = 0,     /* the period is done */
    DM_JOB_WAITING = 1 /* the period cannot run yet (e.g. no pool payout
                          recorded): not a failure, no attempt counted,
                          tried again later */
} dm_job_result;

/* A job's work for ctx->period. Returns NULL and sets *res, or an error
 * (the run fails; retried per the job's table row). The function does its
 * own transactions (dm_db_begin/commit on ctx->db), in batches, and calls
 * dm_job_keep_going() between batches. */
typedef dm_err *dm_job_fn(dm_job_ctx *ctx, dm_job_result *res);

struct dm_job_ctx {
    dm_db *db;        /* the runner's connection, no transaction open */
    apr_pool_t *pool; /* lives as long as the run */
    const dm_job_env *env;
    const char *job;      /* name */
    const char *period;   /* as stored: RFC 3339 of period_start */
    int64_t period_start; /* Unix seconds */
    int64_t period_end;   /* period_start + the job's period length */
    int64_t items;        /* the job adds what it processed (shown in history) */
    /* private to jobs.c */
    const char *holder;
    int64_t lease_ttl;
    int64_t deadline;   /* wall-clock (time()) deadline of the run */
    int64_t renewed;    /* wall-clock time of the last lease renewal */
    volatile int *stop; /* the runner is shutting down */
    int lost;
    int stopped;
};

typedef enum dm_job_sched {
    DM_SCHED_HOURLY = 1,   /* one period per UTC hour, each caught up in order,
                              due at hour end + env->accrual_delay */
    DM_SCHED_INTERVAL = 2, /* one period per interval slot, no catch-up */
    DM_SCHED_MANUAL = 3    /* never scheduled: run by hand (deepminectl, admin) */
} dm_job_sched;

typedef struct dm_job_def {
    const char *name;
    dm_job_sched sched;
    int interval_s;   /* DM_SCHED_INTERVAL: slot length */
    int max_attempts; /* then dead */
    int timeout_s;    /* the lease's length; a run past it stops at its next
                         dm_job_keep_going() */
    int quiet;        /* record a run only when it did something or failed */
    int test_only;    /* registered only with DeepMineTestMode on */
    dm_job_fn *fn;
    const char *about; /* one line for operators */
    /* DM_SCHED_HOURLY, optional: the first hour to process when the job has
     * never run (e.g. the start hour of the oldest active contract), or 0
     * for "none yet". NULL: the hour holding `now`. */
    dm_err *(*first_period)(dm_db *db, apr_pool_t *p, int64_t now, int64_t *out);
    /* Optional: called in the transaction that parks a period dead, with
     * what failed (the job table sends the operators' alert e-mail). */
    dm_err *(*on_dead)(dm_db *db, apr_pool_t *p, const char *job, const char *period, int failures,
                       const char *error);
} dm_job_def;

/* Between batches: renews the lease when due; 0 when the run must stop
 * (lease lost to another holder, or past its timeout). */
int dm_job_keep_going(dm_job_ctx *ctx);

typedef enum dm_job_outcome {
    DM_JOB_RAN_OK = 0,
    DM_JOB_RAN_FAILED, /* will be retried */
    DM_JOB_RAN_DEAD,   /* failed for the last time */
    DM_JOB_RAN_WAITING,
    DM_JOB_ALREADY_DONE, /* the period finished ok before */
    DM_JOB_IS_DEAD,      /* dead, and not forced */
    DM_JOB_NOT_DUE,      /* failed before; its retry time has not come */
    DM_JOB_BUSY          /* another holder has the lease */
} dm_job_outcome;

typedef struct dm_job_run_opts {
    const char *holder; /* unique per process: "host:pid:random" */
    int force;          /* retry a dead period / ignore the back-off */
    volatile int *stop; /* may be NULL; when it becomes non-zero the job
                           stops at its next dm_job_keep_going() and the
                           period is left to the next holder (no failure) */
} dm_job_run_opts;

/* Runs `def` for the period starting at period_start through the lease.
 * *outcome says what happened; an error is returned only when the runner
 * itself failed (database), not when the job failed (that is recorded). */
dm_err *dm_job_run(dm_db *db, apr_pool_t *p, const dm_job_env *env, const dm_job_def *def,
                   int64_t period_start, const dm_job_run_opts *opts, dm_job_outcome *outcome);

const char *dm_job_outcome_name(dm_job_outcome o);

/* Seconds to wait before attempt n+1 after n failed attempts (n >= 1):
 * 30 s × 2^(n-1), at most an hour. */
int64_t dm_job_backoff(int attempts);

/* A fresh holder id for this process. */
const char *dm_job_holder(apr_pool_t *p);

/* One row of the run history (job_runs). Times are Unix seconds, 0 when
 * unset; error is NULL when there is none. */
typedef struct dm_job_run_row {
    int64_t id;
    const char *job;
    const char *period; /* RFC 3339 of period_start */
    int64_t period_start;
    const char *status; /* running|ok|failed|dead|waiting */
    int64_t attempts;
    int64_t failures;
    int64_t items;
    int64_t started_at;
    int64_t finished_at;
    int64_t next_attempt_at;
    const char *error;
} dm_job_run_row;

/* The run of `job` for the period starting at period_start; *found 0 when
 * there is none (never run, or a quiet job that found nothing to do). */
dm_err *dm_job_run_get(dm_db *db, apr_pool_t *p, const char *job, int64_t period_start,
                       dm_job_run_row *out, int *found);

/* The run of `job` with the latest period (not the latest attempt: a
 * period redone by hand after a newer one ran is not "last"); *found 0
 * when the job never ran. */
dm_err *dm_job_run_last(dm_db *db, apr_pool_t *p, const char *job, dm_job_run_row *out, int *found);

/* Asks the scheduler to run job `job` soon (period 0: the job's current
 * period), recorded in job_state; the daemon picks it up within a second or
 * two. A domain event that wants a job run soon (a pool payout recorded)
 * calls this: the jobs layer offers it, so no domain file reaches up into
 * the scheduler. */
dm_err *dm_job_request(dm_db *db, apr_pool_t *p, const char *job, int64_t period_start,
                       const char *by);

#endif
