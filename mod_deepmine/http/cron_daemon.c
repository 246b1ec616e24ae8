/*
 * cron_daemon.c — the cron daemon: a process of its own, forked by the
 * Apache parent in post_config (the pattern of mod_cgid's daemon) and
 * registered as an "other child", so the parent restarts it when it dies
 * and a stop or graceful restart ends it (SIGTERM, then SIGKILL after 3 s).
 * It drops to Apache's User like the children, never serves HTTP, and runs
 * the job table (core/jobs_table.c) through the scheduler (core/cron.c).
 *
 * What keeps a job from running twice is the database lease, not this
 * process: during a graceful restart the old daemon may still be finishing
 * a batch when the new one starts.
 */
#include "dm_http.h"

#include "kyc/kyc_docs.h"

#include <ap_listen.h>
#include <ap_mpm.h>
#include <apr_strings.h>
#include <errno.h>
#include <http_main.h>
#include <mpm_common.h>
#include <apr_signal.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "cron/cron.h"
#include "base/log.h"
#include "ops/backup.h"

/* Exit status of a daemon that could not start at all: not restarted
 * (it would fail the same way in a loop); the log says why. */
#define DAEMON_STARTUP_ERROR 254
#define BEAT_EVERY 5

static volatile int daemon_stop;
static server_rec *root_server;
static apr_pool_t *root_pool;
static pid_t parent_pid;

static int daemon_start(apr_pool_t *p, server_rec *s, apr_proc_t *proc);

static void on_stop_signal(int sig)
{
    (void)sig;
    daemon_stop = 1;
}

static const char *pick_mailer(const dm_conf *c)
{
    const apr_array_header_t *all = dm_plugins_all(dm_g.plugins);

    if (c->mailer) {
        return c->mailer;
    }
    for (int i = 0; all && i < all->nelts; i++) {
        const dm_loaded_plugin *pl = APR_ARRAY_IDX(all, i, const dm_loaded_plugin *);
        if (pl->kind == DM_PLUGIN_MAILER) {
            return pl->name;
        }
    }
    return NULL;
}

void dm_cron_env(const dm_conf *c, dm_job_env *env)
{
    memset(env, 0, sizeof(*env));
    env->database = dm_conf_database(c);
    env->plugins = dm_g.plugins;
    env->mailer = pick_mailer(c);
    env->keys = &dm_g.keys;
    env->public_url = c->public_url;
    env->mail_from = c->mail_from;
    env->accrual_delay = dm_conf_accrual_delay(c);
    env->commission_hold_days = dm_conf_commission_hold_days(c);
    env->test_mode = dm_conf_test_mode(c);
    env->batch_size = c->job_batch > 0 ? c->job_batch : 0;
    env->storage = c->storage;
    env->staff_digest = c->staff_digest == 1;
    {
        dm_kyc_env k;
        dm_conf_kyc(c, &k, &env->kyc_retention, &env->kyc_abandoned);
    }
    {
        static dm_backup_keys bk;
        long long every = 0;
        dm_conf_backup(c, &every, env->backup_keep);
        env->backup_every = every;
        if (c->secret_key) {
            dm_backup_keys_derive(c->secret_key, &bk);
            env->backup_keys = &bk;
        }
    }
}

/* Sleeps up to ms, returning early on a stop signal. */
static void nap(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (!daemon_stop && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int daemon_main(apr_pool_t *p, server_rec *s)
{
    dm_conf *c = dm_conf_get(s);
    dm_job_env env;
    dm_db *db;
    const char *holder;
    int64_t started = dm_now();
    time_t last_beat = 0;
    dm_err *e;

    dm_cron_env(c, &env);
    e = dm_db_open(p, env.database, NULL, &db);
    if (e) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     "DM00040: cron daemon cannot open the database; jobs will not run: %s",
                     e->message);
        return DAEMON_STARTUP_ERROR;
    }
    holder = dm_job_holder(p);
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, "DM00041: cron daemon started (pid %ld, %s)",
                 (long)getpid(), holder);
    while (!daemon_stop) {
        apr_pool_t *it;
        int ran = 0;

        if (getppid() != parent_pid) {
            break; /* the parent is gone: so are we */
        }
        apr_pool_create(&it, p);
        if (time(NULL) - last_beat >= BEAT_EVERY) {
            e = dm_cron_beat(db, it, holder, started);
            if (e) {
                ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                             "DM00042: cron daemon: heartbeat failed: %s", e->message);
            } else {
                last_beat = time(NULL);
            }
        }
        (void)dm_cron_tick(db, it, &env, holder, &daemon_stop, &ran);
        dm_monitor_drain(it, s);
        apr_pool_destroy(it);
        nap(ran ? 100 : 1000);
    }
    {
        apr_pool_t *it;
        apr_pool_create(&it, p);
        (void)dm_cron_unbeat(db, it, holder);
        apr_pool_destroy(it);
    }
    dm_db_close(db);
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, "DM00043: cron daemon (pid %ld) stopped",
                 (long)getpid());
    return 0;
}

static void daemon_maint(int reason, void *data, apr_wait_t status)
{
    apr_proc_t *proc = data;
    int mpm_state = AP_MPMQ_STOPPING;

    switch (reason) {
    case APR_OC_REASON_DEATH:
        apr_proc_other_child_unregister(data);
        if (ap_mpm_query(AP_MPMQ_MPM_STATE, &mpm_state) != APR_SUCCESS ||
            mpm_state == AP_MPMQ_STOPPING) {
            break;
        }
        if (status == DAEMON_STARTUP_ERROR) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, root_server,
                         "DM00044: cron daemon could not start; not restarting it");
            break;
        }
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, root_server,
                     "DM00045: cron daemon (pid %ld) died (status %d); restarting it",
                     (long)proc->pid, (int)status);
        daemon_start(root_pool, root_server, proc);
        break;
    case APR_OC_REASON_RESTART:
        apr_proc_other_child_unregister(data);
        break;
    case APR_OC_REASON_LOST:
        apr_proc_other_child_unregister(data);
        daemon_start(root_pool, root_server, proc);
        break;
    case APR_OC_REASON_UNREGISTER:
        /* pconf is being cleared: stop or restart. */
        kill(proc->pid, SIGTERM);
        break;
    default:
        break;
    }
}

static int daemon_start(apr_pool_t *p, server_rec *s, apr_proc_t *proc)
{
    pid_t pid;

    daemon_stop = 0;
    pid = fork();
    if (pid < 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, s,
                     "DM00046: cannot fork the cron daemon; jobs will not run");
        return DECLINED;
    }
    if (pid == 0) {
        apr_pool_t *pd;
        int rc;

        dm_http_malloc_tune();
        apr_pool_create(&pd, p);
        apr_signal(SIGTERM, on_stop_signal);
        apr_signal(SIGHUP, on_stop_signal);
        apr_signal(SIGINT, on_stop_signal);
        apr_signal(SIGUSR1, on_stop_signal); /* graceful restart of the group */
        apr_signal(SIGWINCH, on_stop_signal);
        apr_signal(SIGPIPE, SIG_IGN);
        ap_close_listeners();
        if (ap_run_drop_privileges(pd, ap_server_conf) != 0) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                         "DM00047: cron daemon cannot drop privileges; not starting");
            _exit(DAEMON_STARTUP_ERROR);
        }
        rc = daemon_main(pd, s);
        _exit(rc);
    }
    proc->pid = pid;
    proc->err = proc->in = proc->out = NULL;
    apr_pool_note_subprocess(p, proc, APR_KILL_AFTER_TIMEOUT);
    apr_proc_other_child_register(proc, daemon_maint, proc, NULL, p);
    return OK;
}

int dm_cron_daemon_post_config(apr_pool_t *pconf, server_rec *s)
{
    apr_proc_t *proc;

    root_server = s;
    root_pool = pconf;
    parent_pid = getpid();
    if (!dm_conf_cron(dm_conf_get(s))) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                     "DM00048: DeepMineCron off: this server runs no jobs (run them with "
                     "`deepminectl jobs run` or on another node)");
        return OK;
    }
    proc = apr_pcalloc(pconf, sizeof(*proc));
    (void)daemon_start(pconf, s, proc); /* a server without cron still serves (logged) */
    return OK;
}
