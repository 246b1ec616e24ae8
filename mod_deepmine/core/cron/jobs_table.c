/*
 * jobs_table.c — every scheduled job, in one table, and the small jobs that
 * have no module of their own (commission release, clean-up, the test-only
 * failing job). A new job is one row here plus its function.
 *
 * Backups (ops/backup.h): "backup" looks every 5 minutes whether the
 * current DeepMineBackupEvery window has one, "backup-verify" checks the
 * newest daily.
 */
#include "cron/cron.h"

#include <apr_strings.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "shop/accrual.h"
#include "base/clock.h"
#include "referral/commission.h"
#include "base/log.h"
#include "mail/mail.h"
#include "mail/mailq.h"
#include "base/json.h"
#include "shop/janitor.h"
#include "kyc/kyc_docs.h"
#include "kyc/kyc_store.h"
#include "plugins/storage.h"
#include "kyc/kyc_events.h"
#include "staff/gdpr.h"
#include "ops/backup.h"

#include <jansson.h>

/* Pending orders older than this are expired by the clean-up job (a
 * checkout that was never paid; a late payment still lands, as
 * needs_review, never lost). */
#define PENDING_ORDER_TTL (24 * 3600)
/* Quiet-job history and finished runs are kept this long, except the
 * fixed-yield accrual's: its `ok` runs are the record contract-expiry
 * reads (every hour of a term credited, terms up to 3,650 days), 8,760
 * rows a year, kept. */
#define RUN_HISTORY_KEEP (90 * 86400)

static dm_err *job_commission_release(dm_job_ctx *ctx, dm_job_result *res)
{
    int64_t released = 0;
    dm_err *e = dm_commission_release_due(ctx->db, ctx->pool, dm_now(), &released);

    ctx->items += released;
    *res = DM_JOB_OK;
    return e;
}

/* One DELETE/UPDATE of the clean-up, in its own transaction: ?1 is the
 * threshold t, ?2 (when used) the time now. */
static dm_err *cleanup_step(dm_job_ctx *ctx, const char *sql, int64_t t)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_begin(ctx->db, ctx->pool);

    if (!e) {
        e = dm_db_prepare(ctx->db, ctx->pool, sql, &st);
    }
    if (!e) {
        dm_stmt_bind_int64(st, 1, t);
        if (strstr(sql, "?2")) {
            dm_stmt_bind_int64(st, 2, dm_now());
        }
        e = dm_stmt_step(st, ctx->pool, &row);
        dm_stmt_done(st);
    }
    if (!e) {
        ctx->items += dm_db_changes(ctx->db);
        e = dm_db_commit(ctx->db, ctx->pool);
    }
    if (e) {
        dm_db_rollback(ctx->db);
    }
    return e;
}

static dm_err *job_cleanup(dm_job_ctx *ctx, dm_job_result *res)
{
    int64_t now = dm_now();
    dm_err *e;

    *res = DM_JOB_OK;
    /* Expired or revoked refresh tokens: a revoked one is kept while it
     * could still be replayed (reuse detection revokes its family). */
    e = cleanup_step(ctx, "DELETE FROM refresh_tokens WHERE expires_at < ?", now);
    if (!e) {
        e = cleanup_step(ctx, "DELETE FROM email_tokens WHERE expires_at < ?", now);
    }
    if (!e) {
        e = cleanup_step(ctx, "DELETE FROM staff_sessions WHERE expires_at < ?", now);
    }
    if (!e) {
        e = cleanup_step(ctx,
                         "UPDATE orders SET status = 'expired', updated_at = ?2 "
                         "WHERE status = 'pending' AND created_at < ?1",
                         now - PENDING_ORDER_TTL);
    }
    if (!e) {
        e = cleanup_step(ctx,
                         "DELETE FROM job_runs WHERE status = 'ok' AND finished_at < ? "
                         "AND job <> 'accrual'",
                         now - RUN_HISTORY_KEEP);
    }
    if (!e) {
        e = cleanup_step(ctx, "DELETE FROM cron_heartbeat WHERE beat_at < ?", now - 86400);
    }
    return e;
}

/* shop/janitor.c: pending gateway orders whose webhook never came. */
static dm_err *job_payment_janitor(dm_job_ctx *ctx, dm_job_result *res)
{
    dm_janitor_stats st;
    dm_err *e = dm_janitor_run(ctx->db, ctx->pool, ctx->env->plugins, dm_now(), 0, &st);

    *res = DM_JOB_OK;
    ctx->items += st.settled + st.expired;
    if (!e && (st.settled || st.expired || st.failures)) {
        dm_log(DM_L_INFO,
               "payment janitor: %" APR_INT64_T_FMT " asked, %" APR_INT64_T_FMT
               " settled, %" APR_INT64_T_FMT " expired, %" APR_INT64_T_FMT " failed",
               (apr_int64_t)st.queried, (apr_int64_t)st.settled, (apr_int64_t)st.expired,
               (apr_int64_t)st.failures);
    }
    return e;
}

/* kyc/kyc_events.c: provider verifications pending past
 * DeepMineKycPollAfter whose webhook may have been lost. */
static dm_err *job_kyc_poll(dm_job_ctx *ctx, dm_job_result *res)
{
    dm_kyc_poll_stats st;
    dm_err *e = dm_kyc_poll_run(ctx->db, ctx->pool, ctx->env->plugins, dm_now(), &st);

    *res = DM_JOB_OK;
    ctx->items += st.queried;
    if (!e && st.queried) {
        dm_log(DM_L_INFO,
               "kyc-poll: %" APR_INT64_T_FMT " asked, %" APR_INT64_T_FMT
               " changed a member, %" APR_INT64_T_FMT " failed",
               (apr_int64_t)st.queried, (apr_int64_t)st.applied, (apr_int64_t)st.failures);
    }
    return e;
}

/* The storage plugin (DeepMineStorage, or the only one) for a job that
 * keeps objects: *pl set, or an error naming the job and why there is
 * none. Plugins are loaded where jobs run (the cron daemon, or staff's
 * "run"), not in deepminectl. */
static dm_err *job_storage(dm_job_ctx *ctx, const dm_loaded_plugin **pl)
{
    const char *why = NULL;

    *pl = ctx->env->plugins ? dm_storage_plugin(ctx->env->plugins, ctx->env->storage, &why) : NULL;
    if (!*pl) {
        return dm_err_make(ctx->pool, DM_E_UNAVAILABLE, NULL,
                           "%s needs the storage plugin (it runs in the cron daemon)%s%s", ctx->job,
                           why ? ": " : "", why ? why : "");
    }
    return NULL;
}

/* kyc_docs.c: identity documents past their retention are deleted (rows,
 * then objects), one audit row per member. Needs the storage plugin, so
 * it runs where plugins are loaded (the cron daemon, or staff's "run"). */
static dm_err *job_kyc_retention(dm_job_ctx *ctx, dm_job_result *res)
{
    const dm_loaded_plugin *pl;
    dm_kyc_plugin_store store;
    dm_kyc_env kenv = {0};
    int64_t deleted = 0;
    dm_err *e = job_storage(ctx, &pl);

    *res = DM_JOB_OK;
    if (e) {
        return e;
    }
    dm_kyc_store_plugin(&store, ctx->env->plugins, pl);
    kenv.store = &store.store;
    e = dm_kyc_retention_run(
        ctx->db, ctx->pool, &kenv, dm_now(),
        ctx->env->kyc_retention > 0 ? ctx->env->kyc_retention : DM_KYC_DEFAULT_RETENTION,
        ctx->env->kyc_abandoned > 0 ? ctx->env->kyc_abandoned : DM_KYC_DEFAULT_ABANDONED, &deleted);
    ctx->items += deleted;
    if (!e && deleted) {
        dm_log(DM_L_NOTICE,
               "DM01257: kyc-retention deleted %" APR_INT64_T_FMT
               " document(s) past their retention",
               (apr_int64_t)deleted);
    }
    return e;
}

/* staff/gdpr.c: confirmed erasure requests whose grace period is over.
 * KYC objects go through the storage plugin when one is loaded; without
 * one the documents stay for kyc-retention (the erasure closes the case). */
static dm_err *job_erasure(dm_job_ctx *ctx, dm_job_result *res)
{
    const dm_loaded_plugin *pl;
    dm_kyc_plugin_store store;
    int64_t done = 0;
    dm_err *e;

    *res = DM_JOB_OK;
    if (!job_storage(ctx, &pl)) {
        dm_kyc_store_plugin(&store, ctx->env->plugins, pl);
    }
    e = dm_gdpr_erase_due(ctx->db, ctx->pool, pl ? &store.store : NULL, dm_now(), &done);
    ctx->items += done;
    return e;
}

/* staff/gdpr.c: the owners' daily digest, when DeepMineStaffDigest is on. */
static dm_err *job_staff_digest(dm_job_ctx *ctx, dm_job_result *res)
{
    int64_t sent = 0;
    dm_err *e = NULL;

    *res = DM_JOB_OK;
    if (ctx->env->staff_digest) {
        e = dm_gdpr_staff_digest(ctx->db, ctx->pool, dm_now(), &sent);
    }
    ctx->items += sent;
    return e;
}

/* The storage plugin and keys the backup jobs need, or an error. */
static dm_err *backup_store(dm_job_ctx *ctx, dm_backup_store *s)
{
    dm_err *e = job_storage(ctx, &s->pl);

    s->host = ctx->env->plugins;
    if (e) {
        return e;
    }
    if (!ctx->env->backup_keys) {
        return dm_err_make(ctx->pool, DM_E_UNAVAILABLE, NULL,
                           "%s needs DeepMineSecretKeyFile (backups are encrypted under it)",
                           ctx->job);
    }
    return NULL;
}

/* One backup per DeepMineBackupEvery window (aligned to the epoch: every
 * hour on the hour by default), then retention. Runs every 5 minutes and
 * does nothing when the window has its backup. */
static dm_err *job_backup(dm_job_ctx *ctx, dm_job_result *res)
{
    int64_t every = ctx->env->backup_every, now = dm_now(), newest = 0, deleted = 0;
    const int *keep = ctx->env->backup_keep;
    apr_array_header_t *all = NULL;
    dm_backup_store s;
    dm_backup_info b;
    dm_err *e;

    *res = DM_JOB_OK;
    if (every <= 0) {
        return NULL;
    }
    e = backup_store(ctx, &s);
    if (!e) {
        e = dm_backup_list(ctx->pool, &s, ctx->env->backup_keys, &all);
    }
    for (int i = 0; !e && i < all->nelts; i++) {
        int64_t t = APR_ARRAY_IDX(all, i, dm_backup_info).created;
        newest = t > newest ? t : newest;
    }
    if (e || (newest && newest / every >= now / every)) {
        return e;
    }
    e = dm_backup_create(ctx->pool, &s, ctx->env->backup_keys, ctx->env->database, now, &b);
    if (!e) {
        ctx->items++;
        dm_log(DM_L_NOTICE,
               "DM01651: backup %s stored: %" APR_INT64_T_FMT " rows, %" APR_INT64_T_FMT
               " bytes of database in %" APR_INT64_T_FMT " stored",
               b.id, (apr_int64_t)b.total_rows, (apr_int64_t)b.db_bytes,
               (apr_int64_t)b.object_bytes);
        e = dm_backup_prune(ctx->pool, &s, ctx->env->backup_keys, keep[0], keep[1], keep[2],
                            &deleted);
    }
    if (!e && deleted) {
        dm_log(DM_L_NOTICE, "DM01652: backup retention deleted %" APR_INT64_T_FMT " backup(s)",
               (apr_int64_t)deleted);
    }
    return e;
}

/* The newest backup fetched, decrypted and checked on a temporary copy
 * beside the database; a refusal fails the run. */
static dm_err *job_backup_verify(dm_job_ctx *ctx, dm_job_result *res)
{
    dm_backup_store s;
    dm_backup_info b;
    dm_err *e;

    *res = DM_JOB_OK;
    if (ctx->env->backup_every <= 0) {
        return NULL;
    }
    e = backup_store(ctx, &s);
    if (!e) {
        e = dm_backup_verify(ctx->pool, &s, ctx->env->backup_keys, NULL, ctx->env->database, &b);
    }
    if (e && e->code == DM_E_NOT_FOUND) {
        return NULL; /* none yet */
    }
    if (!e) {
        ctx->items++;
        dm_log(DM_L_INFO, "backup-verify: backup %s verified (%" APR_INT64_T_FMT " rows)", b.id,
               (apr_int64_t)b.total_rows);
    }
    return e;
}

/* Test mode only: fails every time, for the dead-letter tests. */
static dm_err *job_test_fail(dm_job_ctx *ctx, dm_job_result *res)
{
    *res = DM_JOB_OK;
    return dm_err_make(ctx->pool, DM_E_INTERNAL, NULL, "test-fail always fails (period %s)",
                       ctx->period);
}

/* Test mode only: an hourly job whose one effect is a line "<period>
 * <pid>" appended to <database>.ticks, so tests can see which periods ran,
 * in which order, and that none ran twice. */
static dm_err *job_test_tick(dm_job_ctx *ctx, dm_job_result *res)
{
    const char *path = dm_db_sidecar_path(ctx->pool, ctx->env->database, ".ticks");
    const char *line = apr_psprintf(ctx->pool, "%s %ld\n", ctx->period, (long)getpid());
    int fd = path ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : -1;
    ssize_t n;

    *res = DM_JOB_OK;
    if (fd < 0) {
        return dm_err_make(ctx->pool, DM_E_INTERNAL, NULL, "test-tick: cannot open %s", path);
    }
    n = write(fd, line, strlen(line));
    close(fd);
    if (n != (ssize_t)strlen(line)) {
        return dm_err_make(ctx->pool, DM_E_INTERNAL, NULL, "test-tick: short write to %s", path);
    }
    ctx->items++;
    return NULL;
}

/* A period parked dead: the operators are e-mailed (the staff alert
 * template, reason job_dead), in the runner's transaction. */
dm_err *dm_cron_job_dead_alert(dm_db *db, apr_pool_t *p, const char *job, const char *period,
                               int failures, const char *error)
{
    json_t *vars = dm_json_own(p, json_object());

    json_object_set_new(vars, "reason", json_string("job_dead"));
    json_object_set_new(vars, "detail",
                        json_string(apr_psprintf(p, "job %s, period %s, failed %d times: %s", job,
                                                 period, failures, error)));
    json_object_set_new(vars, "job", json_string(job));
    json_object_set_new(vars, "period", json_string(period));
    json_object_set_new(vars, "error", json_string(error));
    return dm_mail_staff_alert(db, p, 0, vars, apr_psprintf(p, "job-dead:%s:%s", job, period));
}

static const dm_job_def jobs[] = {
    /* accrual.c: never waits for data (an hour not over yet is waiting) */
    {.name = "accrual",
     .on_dead = dm_cron_job_dead_alert,
     .sched = DM_SCHED_HOURLY,
     .max_attempts = 10,
     .timeout_s = 3600,
     .fn = dm_accrual_job_fixed,
     .about = "credits each fixed-yield contract its yield for the hour (yield:<hour>:<contract>)",
     .first_period = dm_accrual_first_fixed},
    /* accrual.c: waits until the pool's payout covering the hour is
     * recorded; a day payout is shared out in the day's 23:00 period */
    {.name = "pool-accrual",
     .on_dead = dm_cron_job_dead_alert,
     .sched = DM_SCHED_HOURLY,
     .max_attempts = 10,
     .timeout_s = 3600,
     .fn = dm_accrual_job_pool,
     .about = "shares the pool's recorded payout for the hour (or day) among pool-yield "
              "contracts by hash-rate-seconds, less their maintenance fee",
     .first_period = dm_accrual_first_pool},
    {.name = "contract-expiry",
     .on_dead = dm_cron_job_dead_alert,
     .sched = DM_SCHED_INTERVAL,
     .interval_s = 60,
     .max_attempts = 5,
     .timeout_s = 600,
     .quiet = 1,
     .fn = dm_accrual_job_expiry,
     .about = "marks contracts past their term expired once every hour of it is credited, and "
              "queues the contract_expired e-mail"},
    {.name = "commission-release",
     .on_dead = dm_cron_job_dead_alert,
     .sched = DM_SCHED_INTERVAL,
     .interval_s = 600,
     .max_attempts = 5,
     .timeout_s = 600,
     .quiet = 1,
     .fn = job_commission_release,
     .about = "moves held commissions whose hold period has passed to the wallets"},
    {.name = "cleanup",
     .on_dead = dm_cron_job_dead_alert,
     .sched = DM_SCHED_INTERVAL,
     .interval_s = 3600,
     .max_attempts = 5,
     .timeout_s = 600,
     .fn = job_cleanup,
     .about = "deletes expired tokens and sessions, expires unpaid orders after 24 h, "
              "trims old job history"},
    {.name = "payment-janitor",
     .on_dead = dm_cron_job_dead_alert,
     .sched = DM_SCHED_INTERVAL,
     .interval_s = 60,
     .max_attempts = 5,
     .timeout_s = 600,
     .quiet = 1,
     .fn = job_payment_janitor,
     .about = "asks the gateway about orders still pending after DeepMinePaymentSettle and "
              "settles them as their webhook would; expires orders whose checkout never "
              "started"},
    {.name = "kyc-poll",
     .on_dead = dm_cron_job_dead_alert,
     .sched = DM_SCHED_INTERVAL,
     .interval_s = 300,
     .max_attempts = 5,
     .timeout_s = 600,
     .quiet = 1,
     .fn = job_kyc_poll,
     .about = "asks the KYC provider about identity checks still pending after "
              "DeepMineKycPollAfter (each at most once per that age, or per the plugin's "
              "poll_every_s) and applies the answer as its webhook would"},
    {.name = "mail",
     .on_dead = dm_cron_job_dead_alert,
     .sched = DM_SCHED_INTERVAL,
     .interval_s = 5,
     .max_attempts = 100,
     .timeout_s = 60,
     .quiet = 1,
     .fn = dm_mail_job,
     .about = "sends queued e-mail through the mailer plugin (up to 20 s a run), retries "
              "temporary failures with back-off"},
    {.name = "commission-digest",
     .on_dead = dm_cron_job_dead_alert,
     .sched = DM_SCHED_INTERVAL,
     .interval_s = 86400,
     .max_attempts = 5,
     .timeout_s = 600,
     .fn = dm_mail_job_commission_digest,
     .about = "queues one e-mail per member summing the referral commissions of the UTC day "
              "before"},
    {.name = "kyc-retention",
     .on_dead = dm_cron_job_dead_alert,
     .sched = DM_SCHED_INTERVAL,
     .interval_s = 86400,
     .max_attempts = 5,
     .timeout_s = 600,
     .fn = job_kyc_retention,
     .about = "deletes identity documents past DeepMineKycRetention (approved members: after "
              "the account closes; rejected or abandoned cases: 90 days) and audits it"},
    {.name = "erasure",
     .on_dead = dm_cron_job_dead_alert,
     .sched = DM_SCHED_INTERVAL,
     .interval_s = 3600,
     .max_attempts = 5,
     .timeout_s = 600,
     .fn = job_erasure,
     .about = "erases the members whose confirmed erasure request is past "
              "DeepMineErasureDelay (a member still holding money waits, logged)"},
    {.name = "staff-digest",
     .on_dead = dm_cron_job_dead_alert,
     .sched = DM_SCHED_INTERVAL,
     .interval_s = 86400,
     .max_attempts = 5,
     .timeout_s = 600,
     .fn = job_staff_digest,
     .about = "when DeepMineStaffDigest is on, e-mails each owner the day before in figures "
              "(sign-ups, revenue, work waiting, dead jobs, failures)"},
    {.name = "backup",
     .on_dead = dm_cron_job_dead_alert,
     .sched = DM_SCHED_INTERVAL,
     .interval_s = 300,
     .max_attempts = 3,
     .timeout_s = 3600,
     .quiet = 1,
     .fn = job_backup,
     .about = "takes a backup (ops/backup.h) once per DeepMineBackupEvery (default 1 h; 0 off) "
              "through the storage plugin, then deletes those outside DeepMineBackupKeep"},
    {.name = "backup-verify",
     .on_dead = dm_cron_job_dead_alert,
     .sched = DM_SCHED_INTERVAL,
     .interval_s = 86400,
     .max_attempts = 3,
     .timeout_s = 3600,
     .quiet = 1,
     .fn = job_backup_verify,
     .about = "fetches the newest backup, decrypts it and checks its hash, integrity, ledger "
              "and row counts on a temporary copy"},
    {.name = "test-fail",
     .on_dead = dm_cron_job_dead_alert,
     .sched = DM_SCHED_MANUAL,
     .max_attempts = 3,
     .timeout_s = 60,
     .test_only = 1,
     .fn = job_test_fail,
     .about = "test mode only: always fails (dead-letter tests)"},
    {.name = "test-tick",
     .on_dead = dm_cron_job_dead_alert,
     .sched = DM_SCHED_HOURLY,
     .max_attempts = 3,
     .timeout_s = 60,
     .test_only = 1,
     .fn = job_test_tick,
     .about = "test mode only: appends each hourly period it runs to <database>.ticks"},
    {.name = NULL},
};

const dm_job_def *dm_jobs_table(void)
{
    return jobs;
}

const dm_job_def *dm_job_find(const char *name, int test_mode)
{
    for (const dm_job_def *d = jobs; name && d->name; d++) {
        if (strcmp(d->name, name) == 0 && (!d->test_only || test_mode)) {
            return d;
        }
    }
    return NULL;
}
