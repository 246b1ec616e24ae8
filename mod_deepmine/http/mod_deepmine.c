/*
 * mod_deepmine.c — the module record and its hooks: configuration passes,
 * migrations at start-up, per-child database pool and catalogue cache, and
 * the one handler that routes /api requests to the route tables.
 *
 * Start-up order: pre_config (plugin host for this pass) → directives
 * (plugins loaded and checked, file/line on error) → check_config (plugin
 * settings and init; also under `apache2 -t`) → post_config (secret key
 * required, migrations, router) → fork → child_init (connections).
 */
#include "dm_http.h"

#include <ap_expr.h>
#include <ap_mpm.h>
#include <apr_strings.h>
#include <http_core.h>
#include <http_protocol.h>
#include <http_request.h>
#include <malloc.h>
#include <sched.h>
#include <http_connection.h>
#include <errno.h>
#include <mpm_common.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <strings.h>
#include <unistd.h>
#include <unixd.h>

#include "base/aprmem.h"
#include "base/clock.h"
#include "referral/commission.h"
#include "kyc/kyc_events.h"
#include "shop/janitor.h"
#include "shop/refunds.h"
#include "members/legal.h"
#include "base/log.h"
#include "plugins/storage.h"
#include "store/db.h"
#include "store/db_group.h"
#include "store/migrate.h"
#include "ledger/ledger.h"
#include "withdrawals/withdrawals.h"
#include "members/twofa.h"

dm_state dm_g;

/* How long a child serves its rendered catalogue before asking the
 * database whether it changed (see catalogue.h). */
#define DM_CATALOGUE_REVALIDATE apr_time_from_sec(1)

static server_rec *log_server;

static void log_sink(void *baton, dm_level level, const char *msg)
{
    (void)baton;
    ap_log_error(APLOG_MARK, (int)level, 0, log_server, "%s", msg);
}

static int dm_pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    dm_err *e;

    dm_db_global_init();
    dm_log_set_sink(log_sink, NULL);
    memset(&dm_g, 0, sizeof(dm_g));
    e = dm_plugins_create(pconf, &dm_g.plugins);
    if (e) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, NULL, "DM00010: %s", e->message);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return dm_ratelimit_pre_config(pconf);
}

static int dm_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s)
{
    dm_conf *c = dm_conf_get(s);
    dm_err *e;

    if (c->clock_file && !dm_conf_test_mode(c)) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                     "DM00049: refusing to start: DeepMineClockFile is for tests only and needs "
                     "DeepMineTestMode on");
        return HTTP_INTERNAL_SERVER_ERROR;
    }

    for (int i = 0; dm_conf_gateway_holds(c) && i < dm_conf_gateway_holds(c)->nelts; i++) {
        const dm_conf_hold *h = &APR_ARRAY_IDX(dm_conf_gateway_holds(c), i, dm_conf_hold);
        const dm_loaded_plugin *pl = dm_plugins_get(dm_g.plugins, h->plugin);
        if (!pl || pl->kind != DM_PLUGIN_PAYMENT) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                         "DM01101: refusing to start: DeepMineCommissionHold %d %s: %s is not a "
                         "declared payment plugin (DeepMinePlugin payment %s ...); orders paid "
                         "from the balance take the one-argument default",
                         h->days, h->plugin, h->plugin, h->plugin);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* Plugins read it as their reserved setting _public_url (ABI 1.2). */
    dm_plugins_set_public_url(dm_g.plugins, dm_conf_get(s)->public_url);
    e = dm_plugins_init_all(dm_g.plugins);

    if (e) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s, "DM00011: refusing to start: %s",
                     e->message);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (c->storage) {
        const char *why = NULL;
        if (!dm_storage_plugin(dm_g.plugins, c->storage, &why)) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                         "DM01200: refusing to start: DeepMineStorage %s: %s is not a declared "
                         "storage plugin (DeepMinePlugin storage %s ...)",
                         c->storage, c->storage, c->storage);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    return OK;
}

/* Children run as Apache's User: they must be able to write the database,
 * its WAL files and the writers' lock (store/wlock.h) that the parent
 * (root) may just have created. */
static void give_db_to_run_user(apr_pool_t *p, server_rec *s, const char *path)
{
    static const char *suffixes[] = {"", "-wal", "-shm", "-wlock"};

    if (geteuid() != 0) {
        return;
    }
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        const char *f = apr_pstrcat(p, path, suffixes[i], NULL);
        if (access(f, F_OK) == 0 &&
            chown(f, ap_unixd_config.user_id, ap_unixd_config.group_id) != 0) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, errno, s,
                         "DM00012: cannot give %s to the server's user; children may not write it",
                         f);
        }
    }
}

/* The database, its -wal and its -shm hold password hashes, sessions and
 * queued mail: refuse to start on any of them that others can read, as
 * DeepMineSecretKeyFile is refused (new files are created 0600 by
 * dm_db_open). Returns the offending file, or NULL. */
static const char *db_readable_by_others(apr_pool_t *p, const char *path)
{
    static const char *suffixes[] = {"", "-wal", "-shm"};
    apr_finfo_t fi;

    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        const char *f = apr_pstrcat(p, path, suffixes[i], NULL);
        if (apr_stat(&fi, f, APR_FINFO_PROT, p) == APR_SUCCESS &&
            (fi.protection & APR_FPROT_WREAD)) {
            return f;
        }
    }
    return NULL;
}

/* On PostgreSQL several nodes may share the database, but storage-local
 * keeps KYC documents and backups on this node's disk: the other nodes
 * cannot see them (docs/operations.md: use S3-compatible storage). */
static void warn_local_storage_on_postgres(server_rec *s, const dm_conf *c, const char *database)
{
    const dm_loaded_plugin *pl;
    const char *why = NULL;
    dm_plugin_about about;

    if (!dm_db_is_postgres(database)) {
        return;
    }
    pl = dm_storage_plugin(dm_g.plugins, c->storage, &why);
    if (!pl) {
        return;
    }
    dm_plugins_describe(pl, &about);
    if (about.plugin_name && strcmp(about.plugin_name, "storage-local") == 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "DM01754: DeepMineStorage %s is storage-local with a PostgreSQL database: "
                     "KYC documents and backups stay on this node's disk and other nodes do not "
                     "see them; use a storage plugin every node reaches (S3-compatible) when "
                     "running several nodes",
                     pl->name);
    }
}

static int add_routes(apr_pool_t *p, server_rec *s, const dm_route_def *defs)
{
    for (const dm_route_def *d = defs; d->method; d++) {
        dm_err *e = dm_router_add(dm_g.router, d->method, d->pattern, d);
        if (e) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, "DM00013: %s", e->message);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    return OK;
}

/* The database opened and migrated at start-up: the schema's version into
 * *schema. */
static dm_err *migrate_here(apr_pool_t *p, const char *path, int *schema)
{
    dm_db *db;
    int applied = 0;
    dm_err *e = dm_db_open(p, path, NULL, &db);

    if (!e) {
        e = dm_migrate(db, p, dm_migrations, dm_migrations_count, &applied, schema);
        dm_db_close(db);
    }
    return e;
}

/* What the start-up's migration process hands back to the parent. */
typedef struct migrate_answer {
    int done; /* 1: migrated, schema holds the version; 0: message says why not */
    int schema;
    char message[1024];
} migrate_answer;

/* migrate_here in a short-lived child process: the parent does nothing
 * else with the database, and the pages of SQLite (or libpq) that one
 * open and migration touch, about 1.2 MiB of library code and the
 * connection's heap, would stay in the parent's memory for its whole life
 * (docs/decisions.md "Memory, eighth round"). The same messages as before;
 * where no process can be made, the parent migrates itself. */
static dm_err *open_and_migrate(apr_pool_t *p, const char *path, int *schema)
{
    migrate_answer a;
    int fds[2], status = 0;
    size_t got = 0;
    pid_t pid;

    if (pipe(fds) != 0) {
        return migrate_here(p, path, schema);
    }
    pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return migrate_here(p, path, schema);
    }
    if (pid == 0) {
        dm_err *e;
        size_t put = 0;

        close(fds[0]);
        memset(&a, 0, sizeof(a));
        e = migrate_here(p, path, &a.schema);
        if (e) {
            apr_cpystrn(a.message, e->message, sizeof(a.message));
        } else {
            a.done = 1;
        }
        while (put < sizeof(a)) {
            ssize_t n = write(fds[1], (const char *)&a + put, sizeof(a) - put);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                break;
            }
            put += (size_t)n;
        }
        _exit(0);
    }
    close(fds[1]);
    while (got < sizeof(a)) {
        ssize_t n = read(fds[0], (char *)&a + got, sizeof(a) - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (got < sizeof(a)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "the start-up migration process ended without an answer");
    }
    if (!a.done) {
        a.message[sizeof(a.message) - 1] = '\0';
        return dm_err_make(p, DM_E_INTERNAL, NULL, "%s", a.message);
    }
    *schema = a.schema;
    return NULL;
}

static int dm_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s)
{
    dm_conf *c = dm_conf_get(s);
    const char *path = dm_conf_database(c);
    dm_err *e;
    dm_legal *legal = NULL;

    log_server = s;
    /* Apache reads its configuration twice at start-up; the first pass only
     * checks it. Do the real work once. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    if (!c->secret_key) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                     "DM00014: DeepMineSecretKeyFile is not set; create a key with "
                     "`deepminectl keygen /etc/deepmine/secret.key` and name it in the "
                     "configuration");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    warn_local_storage_on_postgres(s, c, path);
    {
        const char *open_file = db_readable_by_others(ptemp, path);
        if (open_file) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                         "DM01400: database file %s is readable by everyone; refusing to use it "
                         "(chmod 600 %s*: it holds password hashes, sessions and queued mail)",
                         open_file, path);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    e = open_and_migrate(ptemp, path, &dm_g.schema_version);
    if (e) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                     "DM00015: database %s cannot be used: %s", path, e->message);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    give_db_to_run_user(ptemp, s, path);
    if (dm_metrics_post_config(s) != OK) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (dm_ratelimit_post_config(pconf, ptemp, s) != OK || dm_monitor_post_config(pconf, s) != OK) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    e = dm_legal_load(pconf, dm_conf_legal_dir(c), &legal);
    if (e) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                     "DM00018: %s (DeepMineLegalDir names the directory)", e->message);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    dm_g.svc.legal = legal;
    dm_keys_derive(c->secret_key, &dm_g.keys);
    dm_g.svc.keys = &dm_g.keys;
    dm_g.svc.public_url = c->public_url;
    dm_protect_set_delay((int64_t)dm_conf_address_delay(c));
    dm_conf_pw_params(c, &dm_g.svc.pw_params);
    dm_commission_set_hold((int64_t)dm_conf_commission_hold_days(c) * 86400);
    dm_refund_set_partial_mode((dm_partial_refund_mode)dm_conf_partial_refund(c));
    for (int i = 0; dm_conf_gateway_holds(c) && i < dm_conf_gateway_holds(c)->nelts; i++) {
        const dm_conf_hold *h = &APR_ARRAY_IDX(dm_conf_gateway_holds(c), i, dm_conf_hold);
        dm_commission_set_hold_for(h->plugin, (int64_t)h->days * 86400);
    }
    /* A clawback into debt holds the member's pending withdrawals. */
    dm_ledger_set_debt_hook(dm_wd_hold_for_debt);
    {
        dm_payment_rules pr;
        dm_conf_payment_rules(c, &pr);
        dm_payment_rules_set(&pr);
    }
    dm_kyc_poll_set_after(dm_conf_kyc_poll_after(c));
    if (dm_conf_test_mode(c)) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "DM00050: DeepMineTestMode is on: test-only jobs are enabled%s%s. Never in "
                     "production.",
                     c->clock_file ? " and the clock reads " : "",
                     c->clock_file ? c->clock_file : "");
    }
    dm_clock_use_file(dm_conf_test_mode(c) ? c->clock_file : NULL);
    dm_g.started_at = dm_now();
    dm_g.router = dm_router_create(pconf);
    if (add_routes(pconf, s, dm_routes_public) != OK ||
        add_routes(pconf, s, dm_routes_auth) != OK || add_routes(pconf, s, dm_routes_me) != OK ||
        add_routes(pconf, s, dm_routes_admin) != OK ||
        add_routes(pconf, s, dm_routes_ledger) != OK ||
        add_routes(pconf, s, dm_routes_plugins) != OK ||
        add_routes(pconf, s, dm_routes_commissions) != OK ||
        add_routes(pconf, s, dm_routes_orders) != OK ||
        add_routes(pconf, s, dm_routes_accrual) != OK ||
        add_routes(pconf, s, dm_routes_withdrawals) != OK ||
        add_routes(pconf, s, dm_routes_email) != OK ||
        add_routes(pconf, s, dm_routes_twofa) != OK ||
        add_routes(pconf, s, dm_routes_catalogue_admin) != OK ||
        add_routes(pconf, s, dm_routes_jobs) != OK || add_routes(pconf, s, dm_routes_stats) != OK ||
        add_routes(pconf, s, dm_routes_ops) != OK || add_routes(pconf, s, dm_routes_kyc) != OK ||
        add_routes(pconf, s, dm_routes_gdpr) != OK) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (dm_cron_daemon_post_config(pconf, s) != OK) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                 "DM00016: mod_deepmine %s ready: database %s at schema %d, %d plugin(s)",
                 DM_VERSION, path, dm_g.schema_version, dm_plugins_all(dm_g.plugins)->nelts);
    return OK;
}

void dm_http_malloc_tune(void)
{
#if defined(M_ARENA_MAX) && defined(M_MMAP_THRESHOLD)
    /* glibc gives threads arenas of their own, up to 8 per core, each
     * keeping the memory its threads once used: with a few hundred threads
     * that was megabytes per arena. The cores bound how many threads run at
     * once, so as many arenas as cores (MALLOC_ARENA_MAX in the environment
     * still wins). A fixed mmap threshold keeps large blocks (a password
     * hash's memory) out of the arenas: they go back to the system when
     * freed, where glibc's sliding threshold would keep them after the
     * first one (docs/decisions.md "Memory: the small pool"). */
    if (!getenv("MALLOC_ARENA_MAX")) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        mallopt(M_ARENA_MAX, n < 1 ? 1 : n > 64 ? 64 : (int)n);
    }
    mallopt(M_MMAP_THRESHOLD, DM_MALLOC_MMAP_THRESHOLD);
#endif
}

/* DeepMineBatchScheduling: the child's threads as SCHED_BATCH. A request
 * is short (tens of microseconds of CPU) and the listener wakes a worker for
 * every request that arrives: under the default policy the woken thread
 * preempts the one running, often in the middle of its request while it
 * holds a pooled connection, a lock or the queue's mutex, and the threads
 * that then need it sleep too (three to four switches per request at 64
 * connections). A batch thread is not preempted by a wake-up: it runs on
 * until it waits (for the next request, a lock, the disk) or its time slice
 * ends, and the woken one runs next. Threads created from here on (the
 * MPM's workers and listener) inherit the policy; no privilege is needed to
 * choose it (docs/decisions.md "The read path, eighth round"). */
static void batch_scheduling(server_rec *s)
{
#ifdef SCHED_BATCH
    struct sched_param sp = {0};

    if (sched_setscheduler(0, SCHED_BATCH, &sp) != 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, s,
                     "DM01970: cannot run this child's threads as SCHED_BATCH; they keep the "
                     "default scheduling policy (" DM_DIR_BATCH_SCHEDULING ")");
    }
#else
    (void)s;
#endif
}

static void dm_child_init(apr_pool_t *pchild, server_rec *s)
{
    dm_conf *c = dm_conf_get(s);
    int min, max, threaded = AP_MPMQ_NOT_SUPPORTED;
    dm_err *e;

    dm_http_malloc_tune();
    /* a threaded MPM's child only: prefork's children are one request
     * each, and under SCHED_BATCH the one that just answered keeps winning
     * the next accept, so one child would serve nearly everything */
    if (dm_conf_batch_scheduling(c) &&
        ap_mpm_query(AP_MPMQ_IS_THREADED, &threaded) == APR_SUCCESS &&
        threaded != AP_MPMQ_NOT_SUPPORTED) {
        batch_scheduling(s);
    }
    dm_ratelimit_child_init(pchild, s);
    /* group commit: a writer connection per database file (store/db_group.h) */
    dm_db_group_own_connection(pchild);
    dm_conf_pool_size(c, &min, &max);
    e = dm_db_pool_create(pchild, dm_conf_database(c), min, max, 60, &dm_g.db);
    if (!e) {
        dm_health_child_init(pchild, dm_conf_database(c));
        e = dm_catalogue_cache_create(pchild, DM_CATALOGUE_REVALIDATE, &dm_g.catalogue);
    }
    if (!e) {
        e = dm_pw_limiter_create(pchild, dm_conf_hash_concurrency(c), DM_HASH_WAIT_MS,
                                 &dm_g.svc.pw_limiter);
    }
    if (e) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     "DM00017: this child cannot reach the database; it answers 503: %s",
                     e->message);
        dm_g.db = NULL;
    }
}

static int dm_handler(request_rec *r)
{
    dm_route_match m = {0};
    dm_err *e;
    int kyc_upload, rc;

    if (!r->handler || strcmp(r->handler, "deepmine") != 0) {
        return DECLINED;
    }
    dm_monitor_request_start(r);
    if (!dm_g.db || !dm_g.router) {
        return dm_http_fail(r, DM_E_UNAVAILABLE, NULL, "the service is not available");
    }
    /* A body over the limit is refused first, whatever the path, but for
     * identity documents: their larger cap (DeepMineKycMaxDocument) is
     * checked the same way, before reading, by routes/kyc.c. */
    kyc_upload = r->method_number == M_PUT && strncmp(r->uri, "/api/kyc/documents/", 19) == 0;
    e = kyc_upload ? NULL : dm_http_check_length(r);
    /* Webhooks are limited per sender address before anything reads them
     * (routes_plugins.c): here, before routing, so unknown names count too. */
    if (!e && strncmp(r->uri, "/api/webhooks/", 14) == 0) {
        e = dm_http_rate_limit(r, "webhook", r->useragent_ip);
    }
    if (!e) {
        e = dm_router_match(dm_g.router, r->pool, r->method, r->uri, &m);
    }
    if (e && e->code == DM_E_METHOD_NOT_ALLOWED && r->method_number == M_OPTIONS) {
        /* OPTIONS, and CORS preflight: what this path accepts. */
        apr_table_setn(r->err_headers_out, "Allow", m.allow);
        dm_http_cors(r, m.allow);
        r->status = HTTP_NO_CONTENT;
        return OK;
    }
    dm_http_cors(r, NULL);
    if (e) {
        if (m.allow) {
            apr_table_setn(r->err_headers_out, "Allow", m.allow);
        }
        return dm_http_error(r, e);
    }
    /* For the access log: %{dm-route}n names the route, not the URL. */
    apr_table_setn(r->notes, "dm-route", m.pattern);
    /* The body first, then the handler and its database connection: a
     * slow sender holds a thread, never one of the pool's few connections
     * (identity documents, larger, are read by routes/kyc.c between two
     * borrowings). */
    if (!kyc_upload) {
        dm_http_prefetch_body(r);
    }
    rc = ((const dm_route_def *)m.data)->fn(r, &m);
    /* The answer is written or queued: a slow reader holds no connection. */
    dm_db_pool_release_scope(dm_g.db, r->pool);
    return rc;
}

/* /api/… names no file: where the configuration hands a URI under /api
 * to this module (SetHandler deepmine in its <Location>), the core's
 * directory walk (a stat per path segment, <Directory> and .htaccess
 * merges) is work whose result no route reads. Answer OK for such a
 * request, as mod_proxy does for its URLs, so the core skips it;
 * <Location> and <If> sections still apply (the core walks them after
 * this hook), <Directory> and <Files> sections do not (docs/decisions.md
 * "No directory walk for /api"). TRACE is left to mod_http (TraceEnable). */
static int dm_map_to_storage(request_rec *r)
{
    const core_dir_config *d;
    const char *handler, *err = NULL;

    if (r->proxyreq || r->method_number == M_TRACE || strncmp(r->uri, "/api", 4) != 0 ||
        (r->uri[4] != '/' && r->uri[4] != '\0')) {
        return DECLINED;
    }
    /* The <Location> sections' SetHandler, from the walk the core repeats
     * after this hook (its cache makes that second walk a lookup). */
    if (ap_location_walk(r) != OK) {
        r->per_dir_config = r->server->lookup_defaults;
        return DECLINED;
    }
    d = ap_get_core_module_config(r->per_dir_config);
    handler = d->expr_handler ? ap_expr_str_exec(r, d->expr_handler, &err) : d->handler;
    r->per_dir_config = r->server->lookup_defaults;
    return !err && handler && strcasecmp(handler, "deepmine") == 0 ? OK : DECLINED;
}

/* A connection's allocator keeps up to MaxMemFree of what its requests freed,
 * for its next request; the event MPM then recycles the connection's pool
 * with that allocator (up to 3/4 of ThreadsPerChild of them), so a burst of
 * N connections left N pools holding their last request's memory for as
 * long as the process lives. When the connection ends, its allocator's
 * limit goes down to nothing, so whatever its pool and its subpools free
 * from here on goes back to the system; a connection that served at least
 * DM_CONN_RELEASE_AFTER requests also gives back the nodes its requests
 * had freed (base/aprmem.h). Its pool's next connection restores the limit
 * (dm_pre_connection) and maps its first request's nodes again: a handful
 * of mmap and munmap calls, which a connection of one request paid at
 * every close (Connection: close, one request each: 3,900 -> 2,100 req/s),
 * and a long one pays once for many (docs/decisions.md "Memory, ninth
 * round"). */
#define DM_CONN_RELEASE_AFTER 64

static apr_status_t conn_release_memory(void *data)
{
    conn_rec *c = data;
    apr_allocator_t *a = apr_pool_allocator_get(c->pool);

    if (c->keepalives >= DM_CONN_RELEASE_AFTER) {
        (void)dm_apr_allocator_release(a, NULL);
    } else {
        /* 1 byte: the smallest limit (0 would mean "unlimited") */
        apr_allocator_max_free_set(a, 1);
    }
    return APR_SUCCESS;
}

static int dm_pre_connection(conn_rec *c, void *csd)
{
    apr_allocator_t *a = apr_pool_allocator_get(c->pool);

    (void)csd;
    if (a && ap_max_mem_free != APR_ALLOCATOR_MAX_FREE_UNLIMITED) {
        apr_allocator_max_free_set(a, ap_max_mem_free);
        apr_pool_pre_cleanup_register(c->pool, c, conn_release_memory);
    }
    return OK;
}

static void dm_register_hooks(apr_pool_t *p)
{
    ap_hook_pre_connection(dm_pre_connection, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_pre_config(dm_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(dm_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(dm_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(dm_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(dm_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_map_to_storage(dm_map_to_storage, NULL, NULL, APR_HOOK_MIDDLE);
    dm_monitor_register_hooks();
    dm_metrics_register_hooks(p);
}

/* Not AP_DECLARE_MODULE: dm_http.h already says APLOG_USE_MODULE. */
__attribute__((visibility("default")))
module AP_MODULE_DECLARE_DATA deepmine_module = {STANDARD20_MODULE_STUFF,
                                                 NULL, /* per-directory config: none */
                                                 NULL,
                                                 dm_conf_create,
                                                 dm_conf_merge,
                                                 dm_directives,
                                                 dm_register_hooks,
#if defined(AP_MODULE_FLAG_ALWAYS_MERGE)
                                                 AP_MODULE_FLAG_NONE
#endif
};
