/*
 * routes/jobs.c — the scheduled jobs for staff (owner):
 *   GET  /api/admin/jobs              every job, its next run, and the run
 *                                     history (?job=, ?status=, paging)
 *   POST /api/admin/jobs/{job}/run    run one now {"period": optional};
 *                                     a dead period is retried (forced)
 * With the cron daemon on, a run is handed to it (202, picked up within a
 * second or two); with DeepMineCron off, it runs in this request (200 with
 * the outcome). Both are audited.
 */
#include "dm_http.h"

#include <apr_strings.h>

#include "store/audit.h"
#include "base/clock.h"
#include "cron/cron.h"
#include "base/json.h"

static const char *const run_statuses[] = {"running", "ok", "failed", "dead", "waiting", NULL};

static int jobs_list(request_rec *r, const dm_route_match *m)
{
    dm_job_env env;
    dm_staff st;
    dm_db *db;
    json_t *out = NULL;
    const char *job = dm_http_arg(r, "job"), *status = dm_http_arg(r, "status");
    int limit = 50;
    int64_t cursor = 0;
    size_t len;
    const char *body;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    dm_cron_env(dm_conf_get(r->server), &env);
    if (!e) {
        e = dm_http_check_args(r, "job status limit cursor");
    }
    if (!e && job && !dm_job_find(job, env.test_mode)) {
        e = dm_err_make(r->pool, DM_E_INVALID, "job", "no job named %s", job);
    }
    if (!e && status) {
        int ok = 0;
        for (int i = 0; run_statuses[i]; i++) {
            ok |= strcmp(run_statuses[i], status) == 0;
        }
        if (!ok) {
            e = dm_err_make(r->pool, DM_E_INVALID, "status",
                            "status must be running, ok, failed, dead or waiting");
        }
    }
    if (!e) {
        e = dm_http_paging(r, &limit, &cursor);
    }
    if (!e) {
        e = dm_jobs_overview(db, r->pool, &env, job, status, cursor, limit, &out);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    json_object_set_new(out, "cron_enabled", json_boolean(dm_conf_cron(dm_conf_get(r->server))));
    body = dm_json_dump(r->pool, out, &len);
    return dm_http_json(r, HTTP_OK, body, len);
}

/* The body is optional here: {"period": …} or nothing at all. */
static int has_body(request_rec *r)
{
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    return apr_table_get(r->headers_in, "Transfer-Encoding") || (cl && strcmp(cl, "0") != 0);
}

static int job_run(request_rec *r, const dm_route_match *m)
{
    const dm_conf *c = dm_conf_get(r->server);
    dm_job_env env;
    const dm_job_def *def;
    dm_staff st;
    dm_db *db;
    json_t *in = NULL, *pv, *after, *out;
    int64_t period = 0;
    const char *name = apr_table_get(m->params, "job"), *body;
    size_t len;
    dm_job_outcome outcome = DM_JOB_RAN_OK;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    dm_cron_env(c, &env);
    def = dm_job_find(name, env.test_mode);
    if (!e && !def) {
        e = dm_err_make(r->pool, DM_E_NOT_FOUND, NULL, "no job named %s", name);
    }
    if (!e && has_body(r)) {
        e = dm_http_read_json(r, &in);
    }
    pv = in ? json_object_get(in, "period") : NULL;
    if (!e && pv && !json_is_null(pv)) {
        if (!json_is_string(pv)) {
            e = dm_err_make(r->pool, DM_E_INVALID, "period",
                            "period must be an RFC 3339 time (the start of the period)");
        } else {
            e = dm_json_parse_time(r->pool, "period", json_string_value(pv), &period);
        }
        if (!e && (period <= 0 || period > dm_now())) {
            e = dm_err_make(r->pool, DM_E_INVALID, "period", "period must be in the past");
        }
    }
    if (e) {
        return dm_http_error(r, e);
    }
    if (!period) {
        period = dm_job_default_period(&env, def, dm_now());
    } else if (def->sched == DM_SCHED_HOURLY || def->sched == DM_SCHED_MANUAL) {
        period = dm_hour_floor(period);
    } else {
        period -= period % def->interval_s;
    }

    after = dm_json_own(r->pool, json_object());
    json_object_set_new(after, "job", json_string(def->name));
    json_object_set_new(after, "period", json_string(dm_json_time(r->pool, period)));
    json_object_set_new(after, "via", json_string(dm_conf_cron(c) ? "daemon" : "request"));
    e = dm_db_begin(db, r->pool);
    if (!e && dm_conf_cron(c)) {
        e = dm_job_request(db, r->pool, def->name, period, st.email);
    }
    if (!e) {
        e = dm_audit_write(db, r->pool, st.id, "job.run", "job", def->name, NULL, after,
                           r->useragent_ip);
    }
    if (!e) {
        e = dm_db_commit(db, r->pool);
    }
    if (e) {
        dm_db_rollback(db);
        return dm_http_error(r, e);
    }
    out = dm_json_own(r->pool, json_object());
    json_object_set_new(out, "job", json_string(def->name));
    json_object_set_new(out, "period", json_string(dm_json_time(r->pool, period)));
    if (dm_conf_cron(c)) {
        json_object_set_new(out, "status", json_string("queued"));
        body = dm_json_dump(r->pool, out, &len);
        return dm_http_json(r, HTTP_ACCEPTED, body, len);
    }
    {
        dm_job_run_opts o = {.holder = dm_job_holder(r->pool), .force = 1};
        e = dm_job_run(db, r->pool, &env, def, period, &o, &outcome);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    json_object_set_new(out, "status", json_string(dm_job_outcome_name(outcome)));
    body = dm_json_dump(r->pool, out, &len);
    return dm_http_json(r, HTTP_OK, body, len);
}

const dm_route_def dm_routes_jobs[] = {
    {"GET", "/api/admin/jobs", jobs_list},
    {"POST", "/api/admin/jobs/{job}/run", job_run},
    {NULL, NULL, NULL},
};
