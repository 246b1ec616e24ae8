/*
 * monitor.c — error reporting (docs/operations.md, "Error reporting"): what
 * the server reports to the monitor plugins (ABI 1.5, e.g. monitor-sentry),
 * and how without slowing a request.
 *
 * Reported: every line this module logs at error level or worse, with its
 * DM number (Apache's error_log hook, so the lines of core/ through dm_log
 * and those of http/ alike); the notice-level lines listed in `always`
 * (a payment parked for review, a gateway that failed a checkout or a
 * refund); every 5xx the module answered (log_transaction hook; reported
 * as DM01600). A dead job logs DM00903 at error level, so it is reported
 * as such.
 *
 * How: the hooks copy a report into a bounded queue in anonymous shared
 * memory (core/base/monitor_queue.h), made by the parent in post_config
 * and inherited by the children and the cron daemon; when it is full the
 * report is counted and dropped. The cron daemon drains it (dm_monitor_
 * drain, between its job ticks) into every monitor plugin: a plugin that
 * says "temporary" or asks for a pause keeps the report for later, marked
 * as done for the plugins that took it. Reports older than a day are given
 * up. Nothing here logs at error level (a failing monitor would report
 * itself in a loop): its own lines are warnings, at most one a minute.
 */
#include "dm_http.h"

#include <apr_shm.h>
#include <apr_strings.h>
#include <http_core.h>
#include <http_protocol.h>
#include <sodium.h>

#include "base/log.h"
#include "base/monitor_queue.h"
#include "plugins/monitor.h"

#define DM_MONITOR_SLOTS_DEFAULT 256
#define DRAIN_MAX 50
#define GIVE_UP_MS ((int64_t)86400 * 1000)
#define MAX_MONITORS 8
#define WARN_EVERY apr_time_from_sec(60)

/* The queue of this generation (NULL: no monitor plugin is declared). */
static void *queue;
static const char *release_tag;
static const char *environment;
static const char *server_name;

/* Notice-level lines that are reported anyway: money waiting for a person,
 * and gateways failing. */
static const char *const always[] = {"DM00700", "DM00701", "DM00705", NULL};

int dm_monitor_post_config(apr_pool_t *pconf, server_rec *s)
{
    const apr_array_header_t *all = dm_plugins_all(dm_g.plugins);
    const dm_conf *c = dm_conf_get(s);
    unsigned slots = c->monitor_queue > 0 ? (unsigned)c->monitor_queue : DM_MONITOR_SLOTS_DEFAULT;
    apr_shm_t *shm;
    apr_status_t rv;
    int monitors = 0;

    queue = NULL;
    for (int i = 0; all && i < all->nelts; i++) {
        monitors += APR_ARRAY_IDX(all, i, const dm_loaded_plugin *)->kind == DM_PLUGIN_MONITOR;
    }
    if (!monitors) {
        return OK;
    }
    rv = apr_shm_create(&shm, dm_mq_size(slots), NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, rv, s,
                     "DM01602: cannot create the error-report queue (%u reports of shared "
                     "memory)",
                     slots);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    dm_mq_init(apr_shm_baseaddr_get(shm), slots);
    release_tag = apr_pstrcat(pconf, "deepmine@", DM_VERSION, NULL);
    environment = c->environment ? c->environment : "production";
    server_name = s->server_hostname ? s->server_hostname : "";
    queue = apr_shm_baseaddr_get(shm);
    return OK;
}

int dm_monitor_stats(dm_mq_stats *out)
{
    if (!queue) {
        memset(out, 0, sizeof(*out));
        return 0;
    }
    dm_mq_stats_get(queue, out);
    return 1;
}

static void copy(char *dst, size_t n, const char *src)
{
    apr_cpystrn(dst, src ? src : "", n);
}

static void fill_request(dm_mq_event *ev, const request_rec *r)
{
    const char *route, *id;

    if (!r) {
        return;
    }
    route = apr_table_get(r->notes, "dm-route");
    if (route && *route) {
        apr_snprintf(ev->route, sizeof(ev->route), "%s %s", r->method, route);
    }
    id = r->log_id ? r->log_id : apr_table_get(r->subprocess_env, "UNIQUE_ID");
    copy(ev->request_id, sizeof(ev->request_id), id);
}

static void push(int level, const char *line, const request_rec *r)
{
    dm_mq_event ev;
    unsigned char rnd[16];

    memset(&ev, 0, sizeof(ev));
    ev.level = level;
    ev.time_ms = apr_time_as_msec(apr_time_now());
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(ev.event_id, sizeof(ev.event_id), rnd, sizeof(rnd));
    dm_mq_set_message(&ev, line);
    copy(ev.plugin, sizeof(ev.plugin), dm_log_context(DM_LOG_CTX_PLUGIN));
    copy(ev.job, sizeof(ev.job), dm_log_context(DM_LOG_CTX_JOB));
    fill_request(&ev, r);
    (void)dm_mq_push(queue, &ev);
}

static int reported_anyway(const char *line)
{
    for (const char *const *a = always; *a; a++) {
        if (!strncmp(line, *a, 7) && line[7] == ':') {
            return 1;
        }
    }
    return 0;
}

static void monitor_error_log(const ap_errorlog_info *info, const char *errstr)
{
    int level;

    if (!queue || !info || !errstr || info->module_index != APLOG_MODULE_INDEX) {
        return;
    }
    level = info->level & APLOG_LEVELMASK;
    if (level > APLOG_ERR && !(level <= APLOG_NOTICE && reported_anyway(errstr))) {
        return;
    }
    push(level, errstr, info->r);
}

static int monitor_log_transaction(request_rec *r)
{
    if (queue && r->status >= 500 && apr_table_get(r->notes, "dm-handled") &&
        !apr_table_get(r->notes, DM_NOTE_REPORTED)) {
        char line[128];
        apr_snprintf(line, sizeof(line), "DM01600: answered %d", r->status);
        push(APLOG_ERR, line, r);
    }
    return DECLINED;
}

void dm_monitor_request_start(request_rec *r)
{
    apr_table_setn(r->notes, "dm-handled", "1");
    dm_log_context_set(DM_LOG_CTX_PLUGIN, NULL);
    dm_log_context_set(DM_LOG_CTX_JOB, NULL);
}

/* ---- the drain (the cron daemon) ---- */

typedef struct monitor_state {
    const dm_loaded_plugin *pl;
    apr_time_t paused_until;
    apr_time_t warned_at;
} monitor_state;

static monitor_state monitors[MAX_MONITORS];
static int n_monitors = -1;

static dm_str s_of(const char *s)
{
    dm_str v = {s, strlen(s)};
    return v;
}

static void to_plugin_event(const dm_mq_event *q, dm_monitor_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->size = sizeof(*ev);
    ev->level = q->level <= APLOG_ERR       ? (dm_log_level)q->level
                : q->level == APLOG_WARNING ? DM_LOG_WARN
                                            : DM_LOG_NOTICE;
    ev->event_id = s_of(q->event_id);
    ev->time_ms = q->time_ms;
    ev->dm_number = s_of(q->dm_number);
    ev->message = s_of(q->message);
    ev->route = s_of(q->route);
    ev->plugin = s_of(q->plugin);
    ev->job = s_of(q->job);
    ev->release = s_of(release_tag);
    ev->environment = s_of(environment);
    ev->request_id = s_of(q->request_id);
    ev->server_name = s_of(server_name);
}

static void find_monitors(void)
{
    const apr_array_header_t *all = dm_plugins_all(dm_g.plugins);

    n_monitors = 0;
    for (int i = 0; all && i < all->nelts && n_monitors < MAX_MONITORS; i++) {
        const dm_loaded_plugin *pl = APR_ARRAY_IDX(all, i, const dm_loaded_plugin *);
        if (pl->kind == DM_PLUGIN_MONITOR && pl->initialised) {
            monitors[n_monitors].pl = pl;
            n_monitors++;
        }
    }
}

static void warn_once_a_minute(monitor_state *m, server_rec *s, apr_time_t now, const char *what,
                               const char *why)
{
    if (now - m->warned_at < WARN_EVERY) {
        return;
    }
    m->warned_at = now;
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "DM01601: monitor %s %s: %s", m->pl->name, what,
                 why);
}

/* Sends one report to the monitors that have not taken it: 1 when every
 * one is done with it, 0 when it must wait (ev->done_mask updated). */
static int send_one(apr_pool_t *p, server_rec *s, dm_mq_event *q, apr_time_t now)
{
    dm_monitor_event ev;
    int waiting = 0;

    to_plugin_event(q, &ev);
    for (int i = 0; i < n_monitors; i++) {
        monitor_state *m = &monitors[i];
        dm_message msg;
        uint32_t pause_s = 0;
        dm_status st;

        if (q->done_mask & (1u << i)) {
            continue;
        }
        if (m->paused_until > now) {
            waiting = 1;
            continue;
        }
        st = dm_monitor_capture(dm_g.plugins, m->pl, p, &ev, &pause_s, &msg);
        if (pause_s) {
            m->paused_until = now + apr_time_from_sec(pause_s);
        }
        if (st == DM_ERR_TEMPORARY) {
            if (!pause_s) {
                m->paused_until = now + apr_time_from_sec(10);
            }
            warn_once_a_minute(m, s, now, "cannot take reports for now", msg.text);
            waiting = 1;
            continue;
        }
        if (st != DM_OK) {
            warn_once_a_minute(m, s, now, "dropped a report", msg.text);
            dm_mq_count_failed(queue);
        }
        q->done_mask |= 1u << i;
    }
    return !waiting;
}

void dm_monitor_drain(apr_pool_t *p, server_rec *s)
{
    apr_time_t now = apr_time_now();
    dm_mq_event q;

    if (!queue) {
        return;
    }
    if (n_monitors < 0) {
        find_monitors();
    }
    for (int i = 0; i < DRAIN_MAX && dm_mq_pop(queue, &q); i++) {
        if (apr_time_as_msec(now) - q.time_ms > GIVE_UP_MS) {
            dm_mq_count_failed(queue);
            continue;
        }
        if (!send_one(p, s, &q, now)) {
            (void)dm_mq_unpop(queue, &q);
            break; /* the next tick tries again */
        }
        dm_mq_count_sent(queue);
    }
}

void dm_monitor_register_hooks(void)
{
    ap_hook_error_log(monitor_error_log, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_log_transaction(monitor_log_transaction, NULL, NULL, APR_HOOK_MIDDLE);
}
