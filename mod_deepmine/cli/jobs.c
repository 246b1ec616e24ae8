/*
 * jobs.c — deepminectl jobs list | run: the scheduled jobs, through the
 * same runner and lease as the cron daemon, so running a job by hand while
 * the daemon runs it is safe (one of them is told "busy"). Jobs that need
 * plugins (mail) run only in the daemon.
 */
#include <apr_strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"
#include "commands.h"
#include "cron/cron.h"

/* What the runner needs from its host: the CLI has no configuration
 * besides the database (DEEPMINE_ACCRUAL_DELAY: the accrual's wait after
 * the hour, as DeepMineAccrualDelay). */
static void job_env(const dm_cli *c, dm_job_env *env)
{
    const char *delay = getenv("DEEPMINE_ACCRUAL_DELAY");

    memset(env, 0, sizeof(*env));
    env->database = c->db_path;
    env->accrual_delay = delay && *delay ? (int)strtol(delay, NULL, 10) : 120;
    env->test_mode = c->test_mode;
}

static const char *sched_text(apr_pool_t *p, const dm_job_def *d)
{
    switch (d->sched) {
    case DM_SCHED_HOURLY:
        return "hourly";
    case DM_SCHED_INTERVAL:
        return apr_psprintf(p, "every %ds", d->interval_s);
    case DM_SCHED_MANUAL:
        break;
    }
    return "manual";
}

int dm_cmd_jobs_list(dm_cli *c)
{
    int64_t now = dm_now();
    dm_job_env env;
    int rc = dm_cli_open(c, 1);

    if (rc != DM_CLI_OK) {
        return rc;
    }
    job_env(c, &env);
    printf("%-20s %-12s %-22s %s\n", "job", "schedule", "next run", "last run");
    for (const dm_job_def *d = dm_jobs_table(); d->name; d++) {
        int64_t next = 0;
        dm_job_run_row run;
        int found = 0;
        dm_err *e;
        if (d->test_only && !c->test_mode) {
            continue;
        }
        e = dm_job_next_run(c->db, c->pool, &env, d, now, &next);
        if (!e) {
            e = dm_job_run_last(c->db, c->pool, d->name, &run, &found);
        }
        if (e) {
            return dm_cli_fail(c, e);
        }
        printf("%-20s %-12s %-22s %s\n", d->name, sched_text(c->pool, d),
               next ? dm_json_time(c->pool, next) : "-",
               found ? apr_psprintf(c->pool, "%s %s (attempt %" APR_INT64_T_FMT ")", run.period,
                                    run.status, (apr_int64_t)run.attempts)
                     : "-");
    }
    return DM_CLI_OK;
}

int dm_cmd_jobs_run(dm_cli *c)
{
    const dm_job_def *def = dm_job_find(c->argv[0], c->test_mode);
    int64_t period = 0;
    dm_job_env env;
    dm_job_outcome outcome;
    dm_job_run_opts o;
    dm_job_run_row run;
    int found = 0, rc;
    dm_err *e;

    if (!def) {
        fprintf(stderr, "%s: no job named %s (see `deepminectl jobs list`)\n", c->tool->name,
                c->argv[0]);
        return DM_CLI_USAGE;
    }
    if (dm_cli_opt_time(c, "period", &period) < 0) {
        fprintf(stderr, "%s: --period takes an RFC 3339 time or Unix seconds\n", c->tool->name);
        return DM_CLI_USAGE;
    }
    rc = dm_cli_open(c, 1);
    if (rc != DM_CLI_OK) {
        return rc;
    }
    job_env(c, &env);
    if (!period) {
        period = dm_job_default_period(&env, def, dm_now());
    } else if (def->sched == DM_SCHED_HOURLY) {
        period = dm_hour_floor(period);
    } else if (def->sched == DM_SCHED_INTERVAL) {
        period -= period % def->interval_s;
    }
    memset(&o, 0, sizeof(o));
    o.holder = dm_job_holder(c->pool);
    o.force = dm_cli_flag(c, "force");
    e = dm_job_run(c->db, c->pool, &env, def, period, &o, &outcome);
    if (!e) {
        e = dm_job_run_get(c->db, c->pool, def->name, period, &run, &found);
    }
    if (e) {
        return dm_cli_fail(c, e);
    }
    printf("job %s period %s: %s, %" APR_INT64_T_FMT " item(s)%s%s\n", def->name,
           dm_json_time(c->pool, period), dm_job_outcome_name(outcome),
           (apr_int64_t)(found ? run.items : 0), found && run.error ? ": " : "",
           found && run.error ? run.error : "");
    switch (outcome) {
    case DM_JOB_RAN_OK:
    case DM_JOB_RAN_WAITING:
    case DM_JOB_ALREADY_DONE:
        return DM_CLI_OK;
    default:
        return DM_CLI_FAIL;
    }
}
