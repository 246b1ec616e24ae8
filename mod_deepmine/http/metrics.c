/*
 * metrics.c — the Apache side of the platform's metrics (core/base/
 * metrics.h): the shared region every child and the cron daemon count
 * into, the log_transaction hook that counts every API request by route
 * pattern, method and status class, the DeepMineMetricsToken directive,
 * and the Prometheus answer, served both at GET /api/admin/metrics
 * (routes/ops.c) and by the `deepmine-metrics` handler an operator mounts
 * where they like (`SetHandler deepmine-metrics` behind `Require ip`).
 *
 * The region is made the way ratelimit_shm.c makes its table: once, in the
 * parent's process pool, before the cron daemon is forked, so it survives
 * graceful restarts (counters never go back to zero behind Prometheus's
 * back; rate() copes with a real restart) and children of old and new
 * generations share it. It is made afresh only when a new build changes
 * its layout.
 */
#include "dm_http.h"

#include "base/monitor_queue.h"

#include <apr_shm.h>
#include <apr_strings.h>
#include <http_protocol.h>
#include <http_request.h>
#include <sodium.h>

#include "base/clock.h"
#include "base/metrics.h"
#include "cron/metrics_db.h"

#define METRICS_USERDATA_KEY "deepmine-metrics-shared"
#define METRICS_SHM_FILE "deepmine-metrics.shm"
/* Series the region holds: routes × methods × status classes, plugins ×
 * functions, jobs, rules — a few hundred on a busy site. */
#define METRICS_SERIES 4096
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define TOKEN_MIN 16

typedef struct metrics_shared {
    apr_shm_t *shm;
    apr_size_t size;
} metrics_shared;

const char *dm_metrics_set_token(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    const char *token = arg;

    if (err) {
        return err;
    }
    if (strncmp(arg, "file:", 5) == 0) {
        char *text = NULL;
        apr_file_t *f;
        apr_finfo_t fi;
        apr_size_t n;
        const char *path = ap_server_root_relative(cmd->temp_pool, arg + 5);
        if (!path || apr_file_open(&f, path, APR_READ, 0, cmd->temp_pool) != APR_SUCCESS ||
            apr_file_info_get(&fi, APR_FINFO_SIZE, f) != APR_SUCCESS || fi.size > 4096) {
            return apr_pstrcat(cmd->pool, DM_DIR_METRICS_TOKEN ": cannot read ", arg + 5,
                               " (a file of at most 4096 bytes holding the token)", NULL);
        }
        n = (apr_size_t)fi.size;
        text = apr_pcalloc(cmd->pool, n + 1);
        apr_file_read_full(f, text, n, &n);
        apr_file_close(f);
        text[n] = '\0';
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) {
            text[--n] = '\0';
        }
        token = text;
    }
    if (strlen(token) < TOKEN_MIN) {
        return apr_psprintf(cmd->pool,
                            DM_DIR_METRICS_TOKEN " needs a token of at least %d characters "
                                                 "(or file:/path to one), e.g. the output of "
                                                 "`openssl rand -hex 32`",
                            TOKEN_MIN);
    }
    for (const char *s = token; *s; s++) {
        if (*s <= ' ' || *s > '~') {
            return DM_DIR_METRICS_TOKEN ": the token must be printable ASCII without spaces";
        }
    }
    dm_conf_get(cmd->server)->metrics_token = token;
    return NULL;
}

int dm_metrics_post_config(server_rec *s)
{
    apr_pool_t *proc = s->process->pool;
    apr_size_t size = dm_metrics_region_size(METRICS_SERIES);
    metrics_shared *sh = NULL;
    apr_status_t rv;

    apr_pool_userdata_get((void **)&sh, METRICS_USERDATA_KEY, proc);
    if (!sh) {
        sh = apr_pcalloc(proc, sizeof(*sh));
        apr_pool_userdata_set(sh, METRICS_USERDATA_KEY, apr_pool_cleanup_null, proc);
    }
    if (!sh->shm ||
        !dm_metrics_region_usable(apr_shm_baseaddr_get(sh->shm), sh->size, METRICS_SERIES)) {
        if (sh->shm) {
            apr_shm_destroy(sh->shm);
            sh->shm = NULL;
        }
        rv = apr_shm_create(&sh->shm, size, NULL, proc);
        if (rv == APR_ENOTIMPL) {
            const char *file = ap_runtime_dir_relative(proc, METRICS_SHM_FILE);
            apr_shm_remove(file, proc); /* left over from a crash */
            rv = apr_shm_create(&sh->shm, size, file, proc);
        }
        if (rv != APR_SUCCESS) {
            sh->shm = NULL;
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, rv, s,
                         "DM01552: cannot create the metrics region (%" APR_SIZE_T_FMT
                         " bytes of shared memory)",
                         size);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        sh->size = apr_shm_size_get(sh->shm);
        dm_metrics_region_init(apr_shm_baseaddr_get(sh->shm), sh->size, METRICS_SERIES);
    }
    /* Attached here, in the parent: children and the cron daemon inherit
     * the mapping and this pointer. */
    dm_metrics_attach(apr_shm_baseaddr_get(sh->shm));
    return OK;
}

/* A label value that cannot grow the table without bound. */
static const char *method_label(const request_rec *r)
{
    static const char *known[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(r->method, known[i]) == 0) {
            return known[i];
        }
    }
    return "other";
}

/* Counts a webhook: by its plugin's name when one is loaded under it, else
 * "unknown" (anyone can post to any name). */
static void count_webhook(const request_rec *r, int status)
{
    const char *name = r->uri + sizeof("/api/webhooks/") - 1;
    const char *slash = strchr(name, '/');
    char plugin[64];

    apr_cpystrn(plugin, name, sizeof(plugin));
    if (slash && (size_t)(slash - name) < sizeof(plugin)) {
        plugin[slash - name] = '\0';
    }
    if (!dm_g.plugins || !dm_plugins_get(dm_g.plugins, plugin)) {
        apr_cpystrn(plugin, "unknown", sizeof(plugin));
    }
    dm_metrics_inc(DM_M_WEBHOOKS_RECEIVED, "plugin", plugin, DM_ML_END);
    dm_metrics_inc(status < 300 ? DM_M_WEBHOOKS_ACCEPTED : DM_M_WEBHOOKS_REFUSED, "plugin", plugin,
                   DM_ML_END);
}

/* Counts a request our handlers answered, once, with its final status:
 * `first` is the request as it came, `last` the last of its internal
 * redirect chain. */
static void count_answer(request_rec *first, const request_rec *last)
{
    const char *route;
    char cls[4];
    int status;

    if (!first->handler || (strcmp(first->handler, "deepmine") != 0 &&
                            strcmp(first->handler, "deepmine-metrics") != 0)) {
        return;
    }
    if (apr_table_get(first->notes, "dm-counted")) {
        return;
    }
    apr_table_setn(first->notes, "dm-counted", "1");
    route = apr_table_get(last->notes, "dm-route");
    if (!route) {
        route = apr_table_get(first->notes, "dm-route");
    }
    if (!route) {
        route =
            strcmp(first->handler, "deepmine-metrics") == 0 ? "(deepmine-metrics)" : "(unmatched)";
    }
    status = last->status;
    cls[0] = (char)('0' + (status / 100) % 10);
    cls[1] = 'x';
    cls[2] = 'x';
    cls[3] = '\0';
    dm_metrics_inc(DM_M_HTTP_REQUESTS, "route", route, "method", method_label(first), "class", cls,
                   DM_ML_END);
    dm_metrics_observe_us(DM_M_HTTP_DURATION, (int64_t)(apr_time_now() - first->request_time),
                          "route", route, "method", method_label(first), "class", cls, DM_ML_END);
    if (strcmp(route, "/api/webhooks/{name}") == 0 && first->method_number == M_POST) {
        count_webhook(first, status);
    }
}

/* respond.c, before it sends an answer from the handler: the request is
 * counted with that answer's status before the client can see it, so a
 * scrape that follows the answer finds it counted (as when the count came
 * from log_transaction, before the answer left). */
void dm_http_metrics_count_now(request_rec *r)
{
    request_rec *first = r;

    while (first->prev) {
        first = first->prev;
    }
    count_answer(first, r);
}

/* log_transaction: every request our handlers answered that was not
 * counted when its answer was sent. */
static int count_request(request_rec *r)
{
    const request_rec *last = r;

    while (last->next) {
        last = last->next;
    }
    count_answer(r, last);
    return DECLINED;
}

/* The whole answer: the shared counters, then the database's figures. A
 * database that cannot be read leaves its families out and says so in
 * deepmine_metrics_database_up; the counters are served regardless. */
static int send_metrics(request_rec *r)
{
    int64_t t0 = dm_metrics_now_us();
    dm_metrics_buf b;
    dm_db *db = NULL;
    dm_err *e = dm_g.db ? dm_db_pool_acquire(dm_g.db, r->pool, &db)
                        : dm_err_make(r->pool, DM_E_UNAVAILABLE, NULL, "no database pool");
    char num[32];

    dm_metrics_buf_init(&b, r->pool);
    dm_metrics_header(&b, "deepmine_build_info", "gauge", "The running module's version.");
    dm_metrics_printf(&b, "deepmine_build_info{version=\"%s\"} 1\n", DM_VERSION);
    dm_metrics_render(&b);
    if (!e) {
        e = dm_metrics_db_render(db, r->pool, dm_now(), &b);
        dm_db_pool_release(dm_g.db, r->pool, db);
    }
    if (e) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "DM01553: metrics: the database's figures are left out: %s", e->message);
    }
    {
        /* the error-report queue of the monitor plugins (http/monitor.c);
         * all zero when none is declared */
        dm_mq_stats mq;
        (void)dm_monitor_stats(&mq);
        dm_metrics_header(&b, "deepmine_monitor_reports_queued", "gauge",
                          "Error reports waiting for the monitor plugins.");
        dm_metrics_printf(&b, "deepmine_monitor_reports_queued %" APR_UINT64_T_FMT "\n",
                          (apr_uint64_t)mq.queued);
        dm_metrics_header(&b, "deepmine_monitor_reports_dropped_total", "counter",
                          "Error reports dropped because the queue was full.");
        dm_metrics_printf(&b, "deepmine_monitor_reports_dropped_total %" APR_UINT64_T_FMT "\n",
                          (apr_uint64_t)mq.dropped);
        dm_metrics_header(&b, "deepmine_monitor_reports_sent_total", "counter",
                          "Error reports every monitor plugin took.");
        dm_metrics_printf(&b, "deepmine_monitor_reports_sent_total %" APR_UINT64_T_FMT "\n",
                          (apr_uint64_t)mq.sent);
        dm_metrics_header(&b, "deepmine_monitor_reports_failed_total", "counter",
                          "Error reports given up on (refused, or older than a day).");
        dm_metrics_printf(&b, "deepmine_monitor_reports_failed_total %" APR_UINT64_T_FMT "\n",
                          (apr_uint64_t)mq.failed);
    }
    dm_metrics_header(&b, "deepmine_metrics_database_up", "gauge",
                      "1 when this scrape read the database's figures, else 0.");
    dm_metrics_printf(&b, "deepmine_metrics_database_up %d\n", e ? 0 : 1);
    dm_metrics_header(&b, "deepmine_metrics_scrape_duration_seconds", "gauge",
                      "Time this scrape took to gather its figures.");
    t0 = dm_metrics_now_us() - t0;
    apr_snprintf(num, sizeof(num), "%" APR_INT64_T_FMT ".%06" APR_INT64_T_FMT,
                 (apr_int64_t)(t0 / 1000000), (apr_int64_t)(t0 % 1000000));
    dm_metrics_printf(&b, "deepmine_metrics_scrape_duration_seconds %s\n", num);

    r->status = HTTP_OK;
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    ap_set_content_type(r, METRICS_CONTENT_TYPE);
    ap_set_content_length(r, (apr_off_t)b.len);
    if (!r->header_only) {
        ap_rwrite(b.data, (int)b.len, r);
    }
    return OK;
}

int dm_http_metrics_send(request_rec *r)
{
    return send_metrics(r);
}

int dm_http_metrics_token_ok(request_rec *r)
{
    const char *want = dm_conf_get(r->server)->metrics_token;
    const char *auth = apr_table_get(r->headers_in, "Authorization");
    size_t n;

    if (!want || !auth || strncasecmp(auth, "Bearer ", 7) != 0) {
        return 0;
    }
    auth += 7;
    n = strlen(want);
    return strlen(auth) == n && sodium_memcmp(auth, want, n) == 0;
}

/* SetHandler deepmine-metrics: who may read it is Apache's business
 * (Require ip …); GET and HEAD only. */
static int metrics_handler(request_rec *r)
{
    if (!r->handler || strcmp(r->handler, "deepmine-metrics") != 0) {
        return DECLINED;
    }
    if (r->method_number != M_GET) {
        apr_table_setn(r->err_headers_out, "Allow", "GET, HEAD");
        return dm_http_fail(r, DM_E_METHOD_NOT_ALLOWED, NULL,
                            "the metrics are read with GET (or HEAD)");
    }
    return send_metrics(r);
}

void dm_metrics_register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_handler(metrics_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_log_transaction(count_request, NULL, NULL, APR_HOOK_MIDDLE);
}
