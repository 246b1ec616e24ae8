/*
 * cron.c — the scheduler the cron daemon runs every second or so, the
 * heartbeat, and the scheduling state staff see (see jobs.h).
 *
 * Order of work for each job in a pass:
 *   1. a run staff asked for (job_state.requested_at), forced;
 *   2. earlier periods not finished: failed ones whose back-off is over,
 *      waiting ones whose re-check time has come, and running ones whose
 *      holder is gone (the lease decides). A failed period that is not due
 *      yet blocks new periods of its job, so hours are done in order;
 *   3. new periods: hourly jobs walk a cursor from the oldest hour not yet
 *      started to the last hour that is due (catch-up after downtime,
 *      oldest first); interval jobs run the current slot once.
 */
#include "cron/cron.h"

#include <apr_strings.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"

#define BEAT_EVERY 5
#define PENDING_SCAN 20

/* ---- heartbeat ---- */

dm_err *dm_cron_beat(dm_db *db, apr_pool_t *p, const char *holder, int64_t started)
{
    dm_stmt *st;
    int row = 0;
    int64_t now = dm_now();
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO cron_heartbeat (holder, pid, started_at, beat_at) "
                              "VALUES (?, ?, ?, ?) ON CONFLICT (holder) DO UPDATE SET "
                              "beat_at = excluded.beat_at",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, holder);
    dm_stmt_bind_int64(st, 2, (int64_t)getpid());
    dm_stmt_bind_int64(st, 3, started ? started : now);
    dm_stmt_bind_int64(st, 4, now);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

dm_err *dm_cron_unbeat(dm_db *db, apr_pool_t *p, const char *holder)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, "DELETE FROM cron_heartbeat WHERE holder = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, holder);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

dm_err *dm_cron_heartbeat_newest(dm_db *db, apr_pool_t *p, int64_t *newest, int *found)
{
    dm_err *e;

    *newest = 0;
    e = dm_db_query_int64(db, p, "SELECT max(beat_at) FROM cron_heartbeat", newest, found);
    if (!e && *found && *newest == 0) {
        *found = 0; /* max() of no rows is NULL */
    }
    return e;
}

dm_err *dm_cron_heartbeat_age(dm_db *db, apr_pool_t *p, int64_t *age, int *found)
{
    int64_t newest = 0;
    dm_err *e = dm_cron_heartbeat_newest(db, p, &newest, found);

    *age = (!e && *found) ? dm_now() - newest : 0;
    if (*age < 0) {
        *age = 0;
    }
    return e;
}

/* ---- job_state ---- */

static dm_err *state_get(dm_db *db, apr_pool_t *p, const char *job, int64_t *cursor,
                         int64_t *req_at, int64_t *req_period)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(
        db, p, "SELECT cursor, requested_at, requested_period FROM job_state WHERE job = ?", &st);

    *cursor = *req_at = *req_period = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, job);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        *cursor = dm_stmt_is_null(st, 0) ? 0 : dm_stmt_int64(st, 0);
        *req_at = dm_stmt_is_null(st, 1) ? 0 : dm_stmt_int64(st, 1);
        *req_period = dm_stmt_is_null(st, 2) ? 0 : dm_stmt_int64(st, 2);
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *state_set_cursor(dm_db *db, apr_pool_t *p, const char *job, int64_t cursor)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO job_state (job, cursor) VALUES (?, ?) "
                              "ON CONFLICT (job) DO UPDATE SET cursor = excluded.cursor",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, job);
    dm_stmt_bind_int64(st, 2, cursor);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

/* Clears a request, but only the one we read (a newer one stays). */
static dm_err *state_clear_request(dm_db *db, apr_pool_t *p, const char *job, int64_t req_at)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "UPDATE job_state SET requested_at = NULL, requested_period = NULL, "
                              "requested_by = NULL WHERE job = ? AND requested_at = ?",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, job);
    dm_stmt_bind_int64(st, 2, req_at);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

int64_t dm_job_default_period(const dm_job_env *env, const dm_job_def *def, int64_t now)
{
    switch (def->sched) {
    case DM_SCHED_HOURLY:
        return dm_hour_floor(now - (env ? env->accrual_delay : 0)) - 3600;
    case DM_SCHED_INTERVAL:
        return now - now % def->interval_s;
    case DM_SCHED_MANUAL:
        break;
    }
    return dm_hour_floor(now);
}

/* The hourly cursor, initialised on first use. */
static dm_err *hourly_cursor(dm_db *db, apr_pool_t *p, const dm_job_def *def, int64_t now,
                             int64_t *cursor)
{
    int64_t req_at, req_period;
    int64_t first[1] = {0};
    dm_err *e = state_get(db, p, def->name, cursor, &req_at, &req_period);

    if (e || *cursor) {
        return e;
    }
    if (def->first_period) {
        dm_err *fe = def->first_period(db, p, now, first);
        if (fe) {
            return fe;
        }
    }
    *cursor = first[0] ? dm_hour_floor(first[0]) : dm_hour_floor(now);
    if (*cursor > dm_hour_floor(now)) {
        *cursor = dm_hour_floor(now);
    }
    /* Kept from now on: after downtime, the hours since are caught up. */
    return state_set_cursor(db, p, def->name, *cursor);
}

dm_err *dm_job_next_run(dm_db *db, apr_pool_t *p, const dm_job_env *env, const dm_job_def *def,
                        int64_t now, int64_t *out)
{
    int64_t cursor = 0, req_at, req_period, retry = 0;
    int found = 0;
    dm_stmt *st;
    int row = 0;
    dm_err *e;

    *out = 0;
    if (def->sched == DM_SCHED_MANUAL) {
        return NULL;
    }
    e = dm_db_prepare(db, p,
                      "SELECT min(next_attempt_at) FROM job_runs WHERE job = ? AND "
                      "status IN ('failed', 'waiting')",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, def->name);
    e = dm_stmt_step(st, p, &row);
    if (!e && row && !dm_stmt_is_null(st, 0)) {
        retry = dm_stmt_int64(st, 0);
        found = 1;
    }
    dm_stmt_done(st);
    if (!e) {
        e = state_get(db, p, def->name, &cursor, &req_at, &req_period);
    }
    if (e) {
        return e;
    }
    if (def->sched == DM_SCHED_HOURLY) {
        *out = (cursor ? cursor : dm_hour_floor(now)) + 3600 + env->accrual_delay;
    } else {
        *out = cursor ? cursor + def->interval_s : now;
    }
    if (found && retry < *out) {
        *out = retry;
    }
    return NULL;
}

/* ---- the pass ---- */

typedef struct tick {
    dm_db *db;
    const dm_job_env *env;
    const char *holder;
    volatile int *stop;
    int ran;
    time_t last_beat;
} tick;

static dm_err *run_one(tick *t, apr_pool_t *parent, const dm_job_def *def, int64_t period,
                       int force, dm_job_outcome *out)
{
    apr_pool_t *p;
    dm_job_run_opts o = {.holder = t->holder, .force = force, .stop = t->stop};
    dm_err *e;

    apr_pool_create(&p, parent);
    e = dm_job_run(t->db, p, t->env, def, period, &o, out);
    if (e) {
        e = dm_err_make(parent, e->code, NULL, "%s", e->message);
    }
    apr_pool_destroy(p);
    if (!e && *out <= DM_JOB_RAN_WAITING) {
        t->ran++;
    }
    if (time(NULL) - t->last_beat >= BEAT_EVERY) {
        t->last_beat = time(NULL);
        (void)dm_cron_beat(t->db, parent, t->holder, 0);
    }
    return e;
}

/* Step 2: earlier periods. *blocked: new periods must wait. */
static dm_err *pending(tick *t, apr_pool_t *p, const dm_job_def *def, int64_t now, int *blocked)
{
    dm_stmt *st;
    int row = 0, n = 0;
    int64_t starts[PENDING_SCAN];
    char kinds[PENDING_SCAN];
    int64_t next[PENDING_SCAN];
    dm_err *e = dm_db_prepare(t->db, p,
                              "SELECT period_start, status, next_attempt_at FROM job_runs "
                              "WHERE job = ? AND status IN ('failed', 'waiting', 'running') "
                              "ORDER BY period_start LIMIT 20",
                              &st);

    *blocked = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, def->name);
    while (!(e = dm_stmt_step(st, p, &row)) && row && n < PENDING_SCAN) {
        starts[n] = dm_stmt_int64(st, 0);
        kinds[n] = dm_stmt_text(st, 1, NULL)[0];
        next[n] = dm_stmt_is_null(st, 2) ? 0 : dm_stmt_int64(st, 2);
        n++;
    }
    dm_stmt_done(st);
    for (int i = 0; !e && i < n && !*t->stop; i++) {
        dm_job_outcome o;
        if (next[i] > now) {
            if (kinds[i] == 'f') {
                *blocked = 1; /* in order: nothing newer before this one */
                break;
            }
            continue; /* waiting: looked at again later */
        }
        e = run_one(t, p, def, starts[i], 0, &o);
        if (!e && (o == DM_JOB_RAN_FAILED || o == DM_JOB_BUSY || o == DM_JOB_NOT_DUE)) {
            *blocked = 1;
            break;
        }
    }
    return e;
}

static dm_err *tick_job(tick *t, apr_pool_t *p, const dm_job_def *def)
{
    int64_t now = dm_now(), cursor = 0, req_at = 0, req_period = 0;
    int blocked = 0;
    dm_job_outcome o;
    dm_err *e = state_get(t->db, p, def->name, &cursor, &req_at, &req_period);

    if (!e && req_at) {
        e = state_clear_request(t->db, p, def->name, req_at);
        if (!e) {
            dm_log(DM_L_NOTICE, "DM00904: job %s: running now, as staff asked", def->name);
            e = run_one(t, p, def,
                        req_period ? req_period : dm_job_default_period(t->env, def, now), 1, &o);
        }
    }
    if (e || def->sched == DM_SCHED_MANUAL) {
        return e;
    }
    e = pending(t, p, def, now, &blocked);
    if (e || blocked) {
        return e;
    }
    if (def->sched == DM_SCHED_INTERVAL) {
        int64_t slot = now - now % def->interval_s;
        if (slot <= cursor) {
            return NULL;
        }
        e = state_set_cursor(t->db, p, def->name, slot);
        return e ? e : run_one(t, p, def, slot, 0, &o);
    }
    e = hourly_cursor(t->db, p, def, now, &cursor);
    while (!e && !*t->stop && cursor + 3600 + t->env->accrual_delay <= now) {
        e = run_one(t, p, def, cursor, 0, &o);
        if (e || o == DM_JOB_RAN_FAILED || o == DM_JOB_BUSY || o == DM_JOB_NOT_DUE) {
            break;
        }
        cursor += 3600;
        e = state_set_cursor(t->db, p, def->name, cursor);
        now = dm_now();
    }
    return e;
}

dm_err *dm_cron_tick(dm_db *db, apr_pool_t *p, const dm_job_env *env, const char *holder,
                     volatile int *stop, int *ran)
{
    static volatile int never;
    tick t = {.db = db,
              .env = env,
              .holder = holder,
              .stop = stop ? stop : &never,
              .last_beat = time(NULL)};
    dm_err *first = NULL;

    for (const dm_job_def *d = dm_jobs_table(); d->name && !*t.stop; d++) {
        dm_err *e;
        if (d->test_only && !env->test_mode) {
            continue;
        }
        e = tick_job(&t, p, d);
        if (e) {
            /* A database hiccup in one job's scheduling must not starve
             * the others; logged, and the next pass tries again. */
            dm_log(DM_L_WARN, "DM00905: cron: scheduling job %s failed: %s", d->name, e->message);
            if (!first) {
                first = e;
            }
        }
    }
    if (ran) {
        *ran = t.ran;
    }
    return first;
}

/* ---- what staff see ---- */

static const char *sched_name(const dm_job_def *d)
{
    return d->sched == DM_SCHED_HOURLY     ? "hourly"
           : d->sched == DM_SCHED_INTERVAL ? "interval"
                                           : "manual";
}

static json_t *run_json(dm_stmt *st, apr_pool_t *p)
{
    json_t *o = json_object();

    json_object_set_new(o, "id", json_integer(dm_stmt_int64(st, 0)));
    json_object_set_new(o, "job", json_string(dm_stmt_text(st, 1, NULL)));
    json_object_set_new(o, "period", json_string(dm_stmt_text(st, 2, NULL)));
    json_object_set_new(o, "status", json_string(dm_stmt_text(st, 3, NULL)));
    json_object_set_new(o, "attempts", json_integer(dm_stmt_int64(st, 4)));
    json_object_set_new(o, "failures", json_integer(dm_stmt_int64(st, 5)));
    json_object_set_new(o, "items", json_integer(dm_stmt_int64(st, 6)));
    json_object_set_new(o, "started_at", dm_json_time_or_null(p, dm_stmt_int64(st, 7)));
    json_object_set_new(o, "finished_at",
                        dm_stmt_is_null(st, 8) ? json_null()
                                               : dm_json_time_or_null(p, dm_stmt_int64(st, 8)));
    json_object_set_new(o, "next_attempt_at",
                        dm_stmt_is_null(st, 9) ? json_null()
                                               : dm_json_time_or_null(p, dm_stmt_int64(st, 9)));
    json_object_set_new(o, "error",
                        dm_stmt_is_null(st, 10) ? json_null()
                                                : json_string(dm_stmt_text(st, 10, NULL)));
    return o;
}

#define RUN_COLUMNS                                                                                \
    "id, job, period, status, attempts, failures, items, started_at, finished_at, "                \
    "next_attempt_at, error"

dm_err *dm_jobs_overview(dm_db *db, apr_pool_t *p, const dm_job_env *env, const char *job,
                         const char *status, int64_t cursor, int limit, json_t **out)
{
    json_t *o = dm_json_own(p, json_object()), *jobs = json_array(), *runs = json_array();
    int64_t now = dm_now(), last_id = 0;
    int row = 0, n = 0;
    dm_stmt *st;
    dm_err *e = NULL;

    json_object_set_new(o, "jobs", jobs);
    json_object_set_new(o, "runs", runs);
    for (const dm_job_def *d = dm_jobs_table(); !e && d->name; d++) {
        json_t *j;
        int64_t next = 0, dead = 0;
        int found = 0;
        if (d->test_only && !env->test_mode) {
            continue;
        }
        e = dm_job_next_run(db, p, env, d, now, &next);
        if (!e) {
            e = dm_db_prepare(
                db, p, "SELECT count(*) FROM job_runs WHERE job = ? AND status = 'dead'", &st);
        }
        if (e) {
            break;
        }
        dm_stmt_bind_str(st, 1, d->name);
        e = dm_stmt_step(st, p, &row);
        dead = (!e && row) ? dm_stmt_int64(st, 0) : 0;
        dm_stmt_done(st);
        if (!e) {
            e = dm_db_prepare(db, p,
                              "SELECT " RUN_COLUMNS " FROM job_runs WHERE job = ? "
                              "ORDER BY period_start DESC, id DESC LIMIT 1",
                              &st);
        }
        if (e) {
            break;
        }
        j = json_object();
        json_object_set_new(j, "name", json_string(d->name));
        json_object_set_new(j, "schedule", json_string(sched_name(d)));
        if (d->sched == DM_SCHED_INTERVAL) {
            json_object_set_new(j, "interval_s", json_integer(d->interval_s));
        }
        json_object_set_new(j, "max_attempts", json_integer(d->max_attempts));
        json_object_set_new(j, "timeout_s", json_integer(d->timeout_s));
        json_object_set_new(j, "about", json_string(d->about));
        json_object_set_new(j, "next_run_at",
                            next ? json_string(dm_json_time(p, next)) : json_null());
        json_object_set_new(j, "dead_periods", json_integer(dead));
        dm_stmt_bind_str(st, 1, d->name);
        e = dm_stmt_step(st, p, &row);
        found = !e && row;
        json_object_set_new(j, "last_run", found ? run_json(st, p) : json_null());
        dm_stmt_done(st);
        json_array_append_new(jobs, j);
    }
    if (e) {
        return e;
    }
    e = dm_db_prepare(db, p,
                      "SELECT " RUN_COLUMNS " FROM job_runs WHERE (? = '' OR job = ?) AND "
                      "(? = '' OR status = ?) AND (? = 0 OR id < ?) ORDER BY id DESC LIMIT ?",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, job ? job : "");
    dm_stmt_bind_str(st, 2, job ? job : "");
    dm_stmt_bind_str(st, 3, status ? status : "");
    dm_stmt_bind_str(st, 4, status ? status : "");
    dm_stmt_bind_int64(st, 5, cursor);
    dm_stmt_bind_int64(st, 6, cursor);
    dm_stmt_bind_int64(st, 7, limit + 1);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        if (n == limit) {
            break;
        }
        last_id = dm_stmt_int64(st, 0);
        json_array_append_new(runs, run_json(st, p));
        n++;
    }
    dm_stmt_done(st);
    json_object_set_new(
        o, "next_cursor",
        (row && n == limit && last_id)
            ? json_string(apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)last_id))
            : json_null());
    *out = o;
    return e;
}
