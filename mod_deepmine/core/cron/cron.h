/*
 * cron.h — the scheduler the cron daemon runs (cron.c) and the job table that
 * wires every job to its function (jobs_table.c). This folder sits above the
 * domain folders: it is the one place that knows every job; the runner it
 * drives (jobs/jobs.h) knows none.
 */
#ifndef DM_CRON_H
#define DM_CRON_H

#include "jobs/jobs.h"

/* The job table (in jobs_table.c), NULL-name terminated. */
const dm_job_def *dm_jobs_table(void);
const dm_job_def *dm_job_find(const char *name, int test_mode);

/* Every job's on_dead: e-mails the operators (staff alert, reason
 * job_dead) in the runner's transaction. */
dm_err *dm_cron_job_dead_alert(dm_db *db, apr_pool_t *p, const char *job, const char *period,
                               int failures, const char *error);

/* One pass over the job table: runs every job-period that is due at `now`
 * (staff requests first, then retries of failed periods, then new
 * periods; hourly jobs catch up missed hours oldest first). Returns how
 * many runs it made in *ran. Stops early, between runs, when *stop
 * becomes non-zero (the daemon's signal flag). */
dm_err *dm_cron_tick(dm_db *db, apr_pool_t *p, const dm_job_env *env, const char *holder,
                     volatile int *stop, int *ran);

/* The daemon's heartbeat row (holder, pid, started, beat = now). */
dm_err *dm_cron_beat(dm_db *db, apr_pool_t *p, const char *holder, int64_t started);
/* Removes this daemon's heartbeat (clean shutdown). */
dm_err *dm_cron_unbeat(dm_db *db, apr_pool_t *p, const char *holder);
/* Seconds since the newest heartbeat; *found 0 when no daemon ever beat. */
dm_err *dm_cron_heartbeat_age(dm_db *db, apr_pool_t *p, int64_t *age, int *found);
/* The newest heartbeat's time (Unix seconds); *found 0 when no daemon
 * ever beat. dm_cron_heartbeat_age is dm_now() minus it, at least 0. */
dm_err *dm_cron_heartbeat_newest(dm_db *db, apr_pool_t *p, int64_t *newest, int *found);

/* When the job runs next (Unix seconds), 0 for manual jobs. */
dm_err *dm_job_next_run(dm_db *db, apr_pool_t *p, const dm_job_env *env, const dm_job_def *def,
                        int64_t now, int64_t *out);

/* GET /api/admin/jobs: {"jobs": [every job with its schedule, next run,
 * last run and dead periods], "runs": [history newest first, filtered by
 * job and status when not NULL, keyset paged on id], "next_cursor"}.
 * *out belongs to p. */
struct json_t;
dm_err *dm_jobs_overview(dm_db *db, apr_pool_t *p, const dm_job_env *env, const char *job,
                         const char *status, int64_t cursor, int limit, struct json_t **out);

/* The period a manual run without --period uses: the hour that ended last
 * (hourly), the current slot (interval), the current hour (manual). */
int64_t dm_job_default_period(const dm_job_env *env, const dm_job_def *def, int64_t now);

#endif
