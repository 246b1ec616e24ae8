/*
 * config.c — the DeepMine* directives. Each value is validated where it is
 * parsed, so `apachectl configtest` names the file, the line and what is
 * wrong. Fields start unset; merge takes the child's value if set, else the
 * parent's; defaults are applied only by the getters.
 */
#include "dm_http.h"

#include <apr_file_info.h>
#include <apr_file_io.h>
#include <apr_strings.h>
#include <strings.h>
#include <unistd.h>
#include <ap_mpm.h>
#include <http_core.h>

#include "referral/commission.h"
#include "base/confparse.h"
#include "withdrawals/withdrawals.h"
#include "referral/vip.h"
#include "kyc/kyc_events.h"
#include "shop/janitor.h"
#include "shop/refunds.h"
#include "kyc/kyc_docs.h"
#include "staff/gdpr.h"

#define DM_UNSET (-1)

void *dm_conf_create(apr_pool_t *p, server_rec *s)
{
    dm_conf *c = apr_pcalloc(p, sizeof(*c));
    (void)s;
    c->pool_min = DM_UNSET;
    c->pool_max = DM_UNSET;
    c->max_body = DM_UNSET;
    c->hash_concurrency = DM_UNSET;
    c->pw_opslimit = DM_UNSET;
    c->pw_memlimit = DM_UNSET;
    c->commission_hold_days = DM_UNSET;
    c->commission_cap_bp = DM_UNSET;
    c->partial_refund = DM_UNSET;
    c->wd_min = DM_UNSET;
    c->wd_max = DM_UNSET;
    c->wd_daily = DM_UNSET;
    c->cron = DM_UNSET;
    c->test_mode = DM_UNSET;
    c->batch_sched = DM_UNSET;
    c->accrual_delay = DM_UNSET;
    c->job_batch = DM_UNSET;
    c->payment_settle = DM_UNSET;
    c->kyc_poll_after = DM_UNSET;
    c->checkout_hold = DM_UNSET;
    c->pending_orders = DM_UNSET;
    c->monitor_queue = DM_UNSET;
    c->kyc_max_document = DM_UNSET;
    c->kyc_required = DM_UNSET;
    c->kyc_retention = DM_UNSET;
    c->kyc_abandoned = DM_UNSET;
    c->staff_2fa = DM_UNSET;
    c->address_delay = DM_UNSET;
    c->erasure_delay = DM_UNSET;
    c->staff_digest = DM_UNSET;
    c->backup_every = DM_UNSET;
    c->backup_keep[0] = DM_UNSET;
    return c;
}

#define MERGE_PTR(f) m->f = add->f ? add->f : base->f
#define MERGE_NUM(f) m->f = add->f != DM_UNSET ? add->f : base->f

void *dm_conf_merge(apr_pool_t *p, void *basev, void *addv)
{
    const dm_conf *base = basev, *add = addv;
    dm_conf *m = apr_pcalloc(p, sizeof(*m));

    MERGE_PTR(database);
    MERGE_PTR(secret_key_file);
    MERGE_PTR(secret_key);
    MERGE_NUM(pool_min);
    MERGE_NUM(pool_max);
    MERGE_NUM(max_body);
    MERGE_PTR(public_url);
    MERGE_PTR(allowed_origins);
    MERGE_PTR(rate_rules);
    MERGE_NUM(hash_concurrency);
    MERGE_NUM(pw_opslimit);
    MERGE_NUM(pw_memlimit);
    MERGE_PTR(legal_dir);
    MERGE_NUM(commission_hold_days);
    MERGE_PTR(gateway_holds);
    MERGE_NUM(commission_cap_bp);
    MERGE_NUM(partial_refund);
    MERGE_NUM(payment_settle);
    MERGE_NUM(kyc_poll_after);
    MERGE_NUM(checkout_hold);
    MERGE_NUM(pending_orders);
    MERGE_NUM(wd_min);
    MERGE_NUM(wd_max);
    MERGE_NUM(wd_daily);
    MERGE_NUM(cron);
    MERGE_NUM(test_mode);
    MERGE_NUM(batch_sched);
    MERGE_PTR(clock_file);
    MERGE_NUM(accrual_delay);
    MERGE_PTR(mail_from);
    MERGE_PTR(environment);
    MERGE_NUM(monitor_queue);
    MERGE_PTR(mailer);
    MERGE_PTR(storage);
    MERGE_PTR(metrics_token);
    MERGE_NUM(kyc_max_document);
    MERGE_NUM(kyc_required);
    MERGE_NUM(kyc_retention);
    MERGE_NUM(kyc_abandoned);
    MERGE_PTR(kyc_provider);
    MERGE_NUM(job_batch);
    MERGE_NUM(staff_2fa);
    MERGE_NUM(address_delay);
    MERGE_NUM(erasure_delay);
    MERGE_NUM(staff_digest);
    MERGE_NUM(backup_every);
    if (add->backup_keep[0] == DM_UNSET) {
        memcpy(m->backup_keep, base->backup_keep, sizeof(m->backup_keep));
    }
    return m;
}

dm_conf *dm_conf_get(const server_rec *s)
{
    return ap_get_module_config(s->module_config, &deepmine_module);
}

const char *dm_conf_database(const dm_conf *c)
{
    return c->database ? c->database : DM_DEFAULT_DATABASE;
}

apr_off_t dm_conf_max_body(const dm_conf *c)
{
    return c->max_body != DM_UNSET ? c->max_body : DM_DEFAULT_MAX_BODY;
}

static int cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

int dm_conf_pool_default(int threads, int ncores)
{
    /* A request takes its connection once its body is read and gives it
     * back when its handler is done: the connections only need to keep the
     * cores busy, with room for requests that wait (the writer lock, a
     * password hash). Each one costs its page and statement caches. */
    int n = DM_POOL_PER_CORE * ncores;

    if (n < DM_POOL_MIN_DEFAULT) {
        n = DM_POOL_MIN_DEFAULT;
    }
    return n < threads ? n : threads;
}

void dm_conf_pool_size(const dm_conf *c, int *min, int *max)
{
    int threads = 0;

    if (ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads) != APR_SUCCESS || threads < 1) {
        threads = 1;
    }
    *min = c->pool_min != DM_UNSET ? c->pool_min : 1;
    *max = c->pool_max != DM_UNSET ? c->pool_max : dm_conf_pool_default(threads, cores());
    if (*min > *max) {
        *min = *max;
    }
}

static dm_conf *sconf(cmd_parms *cmd)
{
    return dm_conf_get(cmd->server);
}

static const char *set_database(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    if (err) {
        return err;
    }
    if (!*arg) {
        return DM_DIR_DATABASE " needs the path of the SQLite database file";
    }
    /* a PostgreSQL URL or key=value string is no path: taken as written */
    sconf(cmd)->database = dm_db_is_postgres(arg) ? apr_pstrdup(cmd->pool, arg)
                                                  : ap_server_root_relative(cmd->pool, arg);
    return NULL;
}

static const char *set_secret_key_file(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    const char *path;
    apr_finfo_t fi;
    apr_file_t *f;
    unsigned char *key;
    apr_size_t n = DM_SECRET_KEY_BYTES;
    apr_status_t rv;

    if (err) {
        return err;
    }
    path = ap_server_root_relative(cmd->pool, arg);
    rv = apr_stat(&fi, path, APR_FINFO_TYPE | APR_FINFO_PROT | APR_FINFO_SIZE, cmd->temp_pool);
    if (rv != APR_SUCCESS) {
        return apr_psprintf(cmd->pool,
                            DM_DIR_SECRET_KEY_FILE " %s cannot be read; create it with "
                                                   "`deepminectl keygen %s`",
                            path, path);
    }
    if (fi.filetype != APR_REG) {
        return apr_psprintf(cmd->pool, DM_DIR_SECRET_KEY_FILE " %s is not a regular file", path);
    }
    if (fi.protection & APR_FPROT_WREAD) {
        return apr_psprintf(cmd->pool,
                            DM_DIR_SECRET_KEY_FILE
                            " %s is readable by everyone; refusing to use it "
                            "(chmod 600 or 640)",
                            path);
    }
    if (fi.size != DM_SECRET_KEY_BYTES) {
        return apr_psprintf(cmd->pool,
                            DM_DIR_SECRET_KEY_FILE " %s must hold exactly %d random bytes, it has "
                                                   "%" APR_OFF_T_FMT,
                            path, DM_SECRET_KEY_BYTES, fi.size);
    }
    key = apr_palloc(cmd->pool, DM_SECRET_KEY_BYTES);
    rv = apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, cmd->temp_pool);
    if (rv == APR_SUCCESS) {
        rv = apr_file_read_full(f, key, DM_SECRET_KEY_BYTES, &n);
        apr_file_close(f);
    }
    if (rv != APR_SUCCESS || n != DM_SECRET_KEY_BYTES) {
        return apr_psprintf(cmd->pool, DM_DIR_SECRET_KEY_FILE " %s could not be read", path);
    }
    sconf(cmd)->secret_key_file = path;
    sconf(cmd)->secret_key = key;
    return NULL;
}

static const char *set_pool(cmd_parms *cmd, void *dc, const char *a1, const char *a2)
{
    long long min = 0, max = 0;
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    if (dm_parse_int(cmd->temp_pool, a1, 0, 1024, &min) ||
        dm_parse_int(cmd->temp_pool, a2, 1, 1024, &max) || min > max) {
        return DM_DIR_POOL " takes two whole numbers <min> <max> with 0 <= min <= max and "
                           "1 <= max <= 1024 (database connections per child)";
    }
    sconf(cmd)->pool_min = (int)min;
    sconf(cmd)->pool_max = (int)max;
    return NULL;
}

static const char *set_max_body(cmd_parms *cmd, void *dc, const char *arg)
{
    long long v = 0;
    const char *err = dm_parse_int(cmd->temp_pool, arg, 1, 1024LL * 1024 * 1024, &v);

    if (err) {
        return apr_pstrcat(cmd->pool, DM_DIR_MAX_BODY " takes a size in bytes: ", err, NULL);
    }
    sconf(cmd)->max_body = (apr_off_t)v;
    return NULL;
}

static const char *set_public_url(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *url;
    const char *err = dm_parse_public_url(cmd->pool, arg, &url);

    if (err) {
        return apr_pstrcat(cmd->pool, DM_DIR_PUBLIC_URL ": ", err, NULL);
    }
    sconf(cmd)->public_url = url;
    return NULL;
}

static const char *add_allowed_origin(cmd_parms *cmd, void *dc, const char *arg)
{
    dm_conf *c = sconf(cmd);
    const char *origin;
    const char *err = dm_parse_origin(cmd->pool, arg, &origin);

    if (err) {
        return apr_pstrcat(cmd->pool, DM_DIR_ALLOWED_ORIGIN ": ", err, NULL);
    }
    if (!c->allowed_origins) {
        c->allowed_origins = apr_array_make(cmd->pool, 4, sizeof(const char *));
    }
    APR_ARRAY_PUSH(c->allowed_origins, const char *) = origin;
    return NULL;
}

static const char *set_legal_dir(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    sconf(cmd)->legal_dir = ap_server_root_relative(cmd->pool, arg);
    return NULL;
}

static const char *set_hash_concurrency(cmd_parms *cmd, void *dc, const char *arg)
{
    long long v = 0;
    const char *err = dm_parse_int(cmd->temp_pool, arg, 1, 1024, &v);

    if (err) {
        return apr_pstrcat(cmd->pool,
                           DM_DIR_HASH_CONCURRENCY " takes the number of password "
                                                   "hashes a child runs at once: ",
                           err, NULL);
    }
    sconf(cmd)->hash_concurrency = (int)v;
    return NULL;
}

static const char *set_password_hash(cmd_parms *cmd, void *dc, const char *ops, const char *mem)
{
    long long o = 0, m = 0;

    if (dm_parse_int(cmd->temp_pool, ops, 1, 64, &o) ||
        dm_parse_int(cmd->temp_pool, mem, 8, 4096, &m)) {
        return DM_DIR_PASSWORD_HASH " takes <opslimit> <memory MiB>: argon2id passes 1..64 and "
                                    "memory 8..4096 MiB";
    }
    sconf(cmd)->pw_opslimit = o;
    sconf(cmd)->pw_memlimit = m * 1024 * 1024;
    return NULL;
}

const char *dm_conf_legal_dir(const dm_conf *c)
{
    return c->legal_dir ? c->legal_dir : DM_DEFAULT_LEGAL_DIR;
}

int dm_conf_hash_concurrency(const dm_conf *c)
{
    int threads = 0;

    if (c->hash_concurrency != DM_UNSET) {
        return c->hash_concurrency;
    }
    if (ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads) != APR_SUCCESS || threads < 4) {
        return 1;
    }
    return threads / 4;
}

void dm_conf_pw_params(const dm_conf *c, dm_pw_params *out)
{
    out->opslimit = c->pw_opslimit != DM_UNSET ? (unsigned long long)c->pw_opslimit : 0;
    out->memlimit = c->pw_memlimit != DM_UNSET ? (size_t)c->pw_memlimit : 0;
}

/* DeepMineCommissionHold <days> [plugin]: without a plugin, the default
 * (balance-paid orders and plugins without their own); with one, the
 * hold of orders paid through that payment plugin. Whether the plugin is
 * a declared payment plugin is checked once the whole configuration is
 * read (mod_deepmine.c, check_config): it may be declared further down. */
static const char *set_commission_hold(cmd_parms *cmd, void *dc, const char *arg,
                                       const char *plugin)
{
    dm_conf *c = sconf(cmd);
    dm_conf_hold *h = NULL;
    long long v = 0;

    if (dm_parse_int(cmd->temp_pool, arg, 0, 365, &v)) {
        return DM_DIR_COMMISSION_HOLD
            " takes the days a commission is held before it can be "
            "withdrawn: a whole number from 0 to 365, optionally followed by the payment "
            "plugin it applies to";
    }
    if (!plugin) {
        c->commission_hold_days = (int)v;
        return NULL;
    }
    if (!*plugin || strlen(plugin) > DM_COMMISSION_GATEWAY_MAX) {
        return apr_psprintf(cmd->pool,
                            "DeepMineCommissionHold: the plugin name is 1 to %d characters",
                            DM_COMMISSION_GATEWAY_MAX);
    }
    if (!c->gateway_holds) {
        c->gateway_holds = apr_array_make(cmd->pool, 4, sizeof(dm_conf_hold));
    }
    for (int i = 0; i < c->gateway_holds->nelts; i++) {
        dm_conf_hold *old = &APR_ARRAY_IDX(c->gateway_holds, i, dm_conf_hold);
        h = strcmp(old->plugin, plugin) == 0 ? old : h;
    }
    if (!h && c->gateway_holds->nelts == DM_COMMISSION_HOLD_GATEWAYS) {
        return apr_psprintf(cmd->pool,
                            "DeepMineCommissionHold: at most %d plugins may have a "
                            "hold of their own",
                            DM_COMMISSION_HOLD_GATEWAYS);
    }
    if (!h) {
        h = apr_array_push(c->gateway_holds);
        h->plugin = apr_pstrdup(cmd->pool, plugin);
    }
    h->days = (int)v;
    return NULL;
}

const apr_array_header_t *dm_conf_gateway_holds(const dm_conf *c)
{
    return c->gateway_holds;
}

static const char *set_commission_cap(cmd_parms *cmd, void *dc, const char *arg)
{
    long long v = 0;

    if (dm_parse_int(cmd->temp_pool, arg, 0, 10000, &v)) {
        return DM_DIR_COMMISSION_CAP " takes the most a VIP level may pay over its 10 depths, in "
                                     "basis points: a whole number from 0 to 10000 (5000 is 50 %)";
    }
    sconf(cmd)->commission_cap_bp = (int)v;
    return NULL;
}

static const char *set_partial_refund(cmd_parms *cmd, void *dc, const char *arg)
{
    dm_partial_refund_mode mode;

    if (dm_refund_mode_parse(arg, &mode) != 0) {
        return apr_psprintf(cmd->pool,
                            DM_DIR_PARTIAL_REFUND
                            " takes prorate (a partly refunded contract "
                            "runs on its remaining share) or end-contract (it ends), not '%s'",
                            arg);
    }
    sconf(cmd)->partial_refund = (int)mode;
    return NULL;
}

static const char *set_payment_settle(cmd_parms *cmd, void *dc, const char *arg)
{
    long long v = 0;

    (void)dc;
    if (dm_parse_int(cmd->temp_pool, arg, 60, 86400, &v)) {
        return DM_DIR_PAYMENT_SETTLE " takes the seconds a gateway order stays pending before "
                                     "the janitor asks the gateway: a whole number from 60 to "
                                     "86400";
    }
    sconf(cmd)->payment_settle = (int)v;
    return NULL;
}

static const char *set_kyc_poll_after(cmd_parms *cmd, void *dc, const char *arg)
{
    long long v = 0;

    (void)dc;
    if (dm_parse_int(cmd->temp_pool, arg, 300, 7 * 86400, &v)) {
        return DM_DIR_KYC_POLL_AFTER " takes the seconds a provider's identity check stays "
                                     "pending before the kyc-poll job asks the provider: a "
                                     "whole number from 300 to 604800";
    }
    sconf(cmd)->kyc_poll_after = (int)v;
    return NULL;
}

int dm_conf_kyc_poll_after(const dm_conf *c)
{
    return c->kyc_poll_after != DM_UNSET ? c->kyc_poll_after : DM_KYC_POLL_AFTER_DEFAULT_S;
}

static const char *set_checkout_hold(cmd_parms *cmd, void *dc, const char *arg)
{
    long long v = 0;

    (void)dc;
    if (dm_parse_int(cmd->temp_pool, arg, 60, 86400, &v)) {
        return DM_DIR_CHECKOUT_HOLD " takes the seconds a pending order holds its capacity when "
                                    "the gateway gives no checkout lifetime: a whole number from "
                                    "60 to 86400";
    }
    sconf(cmd)->checkout_hold = (int)v;
    return NULL;
}

static const char *set_pending_orders(cmd_parms *cmd, void *dc, const char *arg)
{
    long long v = 0;

    (void)dc;
    if (dm_parse_int(cmd->temp_pool, arg, 1, 100, &v)) {
        return DM_DIR_PENDING_ORDERS " takes the unpaid gateway orders a member may hold at "
                                     "once: a whole number from 1 to 100";
    }
    sconf(cmd)->pending_orders = (int)v;
    return NULL;
}

void dm_conf_payment_rules(const dm_conf *c, dm_payment_rules *out)
{
    out->settle_s = c->payment_settle != DM_UNSET ? c->payment_settle : DM_PAYMENT_SETTLE_DEFAULT_S;
    out->checkout_hold_s =
        c->checkout_hold != DM_UNSET ? c->checkout_hold : DM_CHECKOUT_HOLD_DEFAULT_S;
    out->pending_max =
        c->pending_orders != DM_UNSET ? c->pending_orders : DM_PENDING_ORDERS_DEFAULT;
}

int dm_conf_partial_refund(const dm_conf *c)
{
    return c->partial_refund != DM_UNSET ? c->partial_refund : DM_PARTIAL_REFUND_PRORATE;
}

int dm_conf_commission_hold_days(const dm_conf *c)
{
    return c->commission_hold_days != DM_UNSET ? c->commission_hold_days
                                               : DM_COMMISSION_DEFAULT_HOLD_DAYS;
}

int dm_conf_commission_cap_bp(const dm_conf *c)
{
    return c->commission_cap_bp != DM_UNSET ? c->commission_cap_bp : DM_VIP_DEFAULT_CAP_BP;
}

static const char *set_withdrawal_limits(cmd_parms *cmd, void *dc, const char *a1, const char *a2,
                                         const char *a3)
{
    long long min = 0, max = 0, daily = 0;
    const long long top = 1000000000000000LL; /* 10^9 of the currency in micro-units */

    if (dm_parse_int(cmd->temp_pool, a1, 1, top, &min) ||
        dm_parse_int(cmd->temp_pool, a2, 1, top, &max) ||
        dm_parse_int(cmd->temp_pool, a3, 1, top, &daily) || min > max || max > daily) {
        return DM_DIR_WITHDRAWAL_LIMITS " takes <min> <max> <daily> in micro-units, whole "
                                        "numbers with 1 <= min <= max <= daily <= 10^15";
    }
    sconf(cmd)->wd_min = min;
    sconf(cmd)->wd_max = max;
    sconf(cmd)->wd_daily = daily;
    return NULL;
}

void dm_conf_wd_limits(const dm_conf *c, struct dm_wd_limits *out)
{
    out->min_micros = c->wd_min != DM_UNSET ? c->wd_min : DM_WD_DEFAULT_MIN_MICROS;
    out->max_micros = c->wd_max != DM_UNSET ? c->wd_max : DM_WD_DEFAULT_MAX_MICROS;
    out->daily_micros = c->wd_daily != DM_UNSET ? c->wd_daily : DM_WD_DEFAULT_DAILY_MICROS;
}

static const char *add_plugin(cmd_parms *cmd, void *dc, const char *kind, const char *name,
                              const char *path)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    dm_err *e;

    if (err) {
        return err;
    }
    if (!dm_g.plugins) {
        return DM_DIR_PLUGIN ": the plugin host is not ready (internal error)";
    }
    e = dm_plugins_declare(dm_g.plugins, kind, name, ap_server_root_relative(cmd->pool, path));
    return e ? apr_psprintf(cmd->pool, DM_DIR_PLUGIN ": %s", e->message) : NULL;
}

static const char *set_plugin_setting(cmd_parms *cmd, void *dc, const char *name, const char *key,
                                      const char *value)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    dm_err *e;

    if (err) {
        return err;
    }
    if (!dm_g.plugins) {
        return DM_DIR_PLUGIN_SET ": the plugin host is not ready (internal error)";
    }
    e = dm_plugins_set(dm_g.plugins, name, key, value);
    return e ? apr_psprintf(cmd->pool, DM_DIR_PLUGIN_SET ": %s", e->message) : NULL;
}

int dm_conf_cron(const dm_conf *c)
{
    return c->cron != DM_UNSET ? c->cron : 1;
}

int dm_conf_test_mode(const dm_conf *c)
{
    return c->test_mode == 1;
}

int dm_conf_batch_scheduling(const dm_conf *c)
{
    return c->batch_sched != DM_UNSET ? c->batch_sched : 1;
}

int dm_conf_accrual_delay(const dm_conf *c)
{
    return c->accrual_delay != DM_UNSET ? c->accrual_delay : DM_DEFAULT_ACCRUAL_DELAY;
}

static const char *set_cron(cmd_parms *cmd, void *dc, int on)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    sconf(cmd)->cron = on ? 1 : 0;
    return NULL;
}

static const char *set_test_mode(cmd_parms *cmd, void *dc, int on)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    sconf(cmd)->test_mode = on ? 1 : 0;
    return NULL;
}

static const char *set_batch_sched(cmd_parms *cmd, void *dc, int on)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    sconf(cmd)->batch_sched = on ? 1 : 0;
    return NULL;
}

/* Checked against DeepMineTestMode at check_config (the order of the two
 * lines in the file must not matter). */
static const char *set_clock_file(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    sconf(cmd)->clock_file = ap_server_root_relative(cmd->pool, arg);
    return NULL;
}

static const char *set_accrual_delay(cmd_parms *cmd, void *dc, const char *arg)
{
    long long v = 0;

    if (dm_parse_int(cmd->temp_pool, arg, 0, 3000, &v)) {
        return DM_DIR_ACCRUAL_DELAY " takes the seconds after the end of an hour before its "
                                    "yield is credited: a whole number from 0 to 3000";
    }
    sconf(cmd)->accrual_delay = (int)v;
    return NULL;
}

int dm_conf_staff_2fa(const dm_conf *c)
{
    return c->staff_2fa != DM_UNSET ? c->staff_2fa : 1;
}

long long dm_conf_address_delay(const dm_conf *c)
{
    return c->address_delay != DM_UNSET ? c->address_delay : 24 * 3600;
}

static const char *set_staff_2fa(cmd_parms *cmd, void *dc, const char *arg)
{
    if (strcasecmp(arg, "required") == 0) {
        sconf(cmd)->staff_2fa = 1;
    } else if (strcasecmp(arg, "optional") == 0) {
        sconf(cmd)->staff_2fa = 0;
    } else {
        return DM_DIR_STAFF_2FA " takes \"required\" (owner and finance accounts must use "
                                "two-factor sign-in; the default) or \"optional\"";
    }
    return NULL;
}

/* A whole number of seconds, or of minutes, hours or days with the
 * suffix m, h or d ("24h"); 0 to 30 days. */
static const char *set_address_delay(cmd_parms *cmd, void *dc, const char *arg)
{
    static const char usage[] =
        DM_DIR_WITHDRAWAL_ADDRESS_DELAY " takes how long a confirmed withdrawal address (and a "
                                        "security change) waits: seconds, or a number with s, "
                                        "m, h or d (\"24h\"), from 0 to 30 days";
    size_t n = strlen(arg);
    long long v = 0, unit = 1;
    const char *num = arg;

    if (n > 1 && strchr("smhd", arg[n - 1])) {
        unit = arg[n - 1] == 's' ? 1 : arg[n - 1] == 'm' ? 60 : arg[n - 1] == 'h' ? 3600 : 86400;
        num = apr_pstrmemdup(cmd->temp_pool, arg, n - 1);
    }
    if (dm_parse_int(cmd->temp_pool, num, 0, 30LL * 86400, &v) || v * unit > 30LL * 86400) {
        return usage;
    }
    sconf(cmd)->address_delay = v * unit;
    return NULL;
}

static const char *set_job_batch(cmd_parms *cmd, void *dc, const char *arg)
{
    long long v = 0;

    if (dm_parse_int(cmd->temp_pool, arg, 10, 100000, &v)) {
        return DM_DIR_JOB_BATCH " takes the rows a batch job (yield accrual) writes per "
                                "transaction: a whole number from 10 to 100000";
    }
    sconf(cmd)->job_batch = (int)v;
    return NULL;
}

static const char *set_environment(cmd_parms *cmd, void *dc, const char *arg)
{
    size_t n = strlen(arg);

    if (n == 0 || n > 64 ||
        strspn(arg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                    "0123456789._-") != n) {
        return DM_DIR_ENVIRONMENT " takes the name error reports carry (production, staging, "
                                  "…): 1 to 64 letters, digits, '.', '_' or '-'";
    }
    sconf(cmd)->environment = arg;
    return NULL;
}

static const char *set_monitor_queue(cmd_parms *cmd, void *dc, const char *arg)
{
    long long v = 0;

    if (dm_parse_int(cmd->temp_pool, arg, 16, 65536, &v)) {
        return DM_DIR_MONITOR_QUEUE " takes how many error reports may wait for the monitor "
                                    "plugins: a whole number from 16 to 65536";
    }
    sconf(cmd)->monitor_queue = (int)v;
    return NULL;
}

static const char *set_mail_from(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *at = strchr(arg, '@');

    if (!at || at == arg || !at[1] || strpbrk(arg, "\r\n\t") || strlen(arg) > 320) {
        return DM_DIR_MAIL_FROM " takes the sender of the platform's e-mail, as "
                                "noreply@example.com or \"Name <noreply@example.com>\" (one line)";
    }
    sconf(cmd)->mail_from = arg;
    return NULL;
}

static const char *set_mailer(cmd_parms *cmd, void *dc, const char *arg)
{
    sconf(cmd)->mailer = arg;
    return NULL;
}

static const char *set_storage(cmd_parms *cmd, void *dc, const char *arg)
{
    (void)dc;
    if (!*arg) {
        return DM_DIR_STORAGE " needs the name of a declared storage plugin";
    }
    sconf(cmd)->storage = arg;
    return NULL;
}

void dm_conf_kyc(const dm_conf *c, dm_kyc_env *env, int64_t *retention, int64_t *abandoned)
{
    env->max_document =
        c->kyc_max_document != DM_UNSET ? c->kyc_max_document : DM_KYC_DEFAULT_MAX_DOCUMENT;
    env->required =
        c->kyc_required != DM_UNSET ? (unsigned)c->kyc_required : DM_KYC_DEFAULT_REQUIRED;
    *retention = c->kyc_retention != DM_UNSET ? c->kyc_retention : DM_KYC_DEFAULT_RETENTION;
    *abandoned = c->kyc_abandoned != DM_UNSET ? c->kyc_abandoned : DM_KYC_DEFAULT_ABANDONED;
}

static const char *set_kyc_max_document(cmd_parms *cmd, void *dc, const char *arg)
{
    long long v = 0;
    const char *err = dm_parse_int(cmd->temp_pool, arg, 1024, 512LL * 1024 * 1024, &v);

    if (err) {
        return apr_pstrcat(
            cmd->pool, DM_DIR_KYC_MAX_DOCUMENT " takes a size in bytes (1024 to 536870912): ", err,
            NULL);
    }
    sconf(cmd)->kyc_max_document = v;
    return NULL;
}

static const char *set_kyc_required(cmd_parms *cmd, void *dc, const char *arg)
{
    dm_conf *c = sconf(cmd);
    int k = dm_kyc_kind_of(arg);

    if (k < 0) {
        return apr_psprintf(cmd->pool,
                            DM_DIR_KYC_REQUIRED " %s: the documents are id_front, id_back, "
                                                "selfie and proof_of_address",
                            arg);
    }
    /* the first word of the first line replaces the default */
    c->kyc_required = (c->kyc_required == DM_UNSET ? 0 : c->kyc_required) | (1 << k);
    return NULL;
}

/* "<n>d" days or "<n>y" years (365 days) as seconds. */
static const char *parse_period(apr_pool_t *p, const char *arg, long long *out)
{
    size_t n = strlen(arg);
    long long v = 0;
    const char *err;

    if (n < 2 || (arg[n - 1] != 'd' && arg[n - 1] != 'y')) {
        return "a period is a number of days (90d) or years (5y)";
    }
    err = dm_parse_int(p, apr_pstrndup(p, arg, n - 1), 1, 36500, &v);
    if (err) {
        return err;
    }
    *out = v * 86400 * (arg[n - 1] == 'y' ? 365 : 1);
    if (*out > 36500LL * 86400) {
        return "at most 100 years";
    }
    return NULL;
}

/* "0" (off), or a number of seconds, minutes (m), hours (h) or days (d). */
static const char *set_backup_every(cmd_parms *cmd, void *dc, const char *arg)
{
    size_t n = strlen(arg);
    char unit = n ? arg[n - 1] : 0;
    long long v = 0, mult = unit == 'm' ? 60 : unit == 'h' ? 3600 : unit == 'd' ? 86400 : 1;
    const char *num = mult == 1 ? arg : apr_pstrndup(cmd->temp_pool, arg, n - 1);
    const char *err = dm_parse_int(cmd->temp_pool, num, 0, 3650LL * 86400, &v);

    (void)dc;
    if (err || v * mult > 3650LL * 86400 || (v && v * mult < 300)) {
        return DM_DIR_BACKUP_EVERY " is 0 (off) or a period of at least 5 minutes: 300, 30m, "
                                   "1h, 1d";
    }
    sconf(cmd)->backup_every = v * mult;
    return NULL;
}

static const char *set_backup_keep(cmd_parms *cmd, void *dc, const char *h, const char *d,
                                   const char *w)
{
    const char *a[3] = {h, d, w};
    long long v[3] = {0};

    (void)dc;
    for (int i = 0; i < 3; i++) {
        if (dm_parse_int(cmd->temp_pool, a[i], 0, 10000, &v[i])) {
            return DM_DIR_BACKUP_KEEP " <hourly> <daily> <weekly>: three counts from 0 to 10000";
        }
    }
    if (!v[0] && !v[1] && !v[2]) {
        return DM_DIR_BACKUP_KEEP " keeps nothing: at least one count must be above 0";
    }
    for (int i = 0; i < 3; i++) {
        sconf(cmd)->backup_keep[i] = (int)v[i];
    }
    return NULL;
}

/* The backup schedule and retention, defaults applied. */
void dm_conf_backup(const dm_conf *c, long long *every, int keep[3])
{
    static const int def[3] = {24, 7, 4};

    *every = c->backup_every != DM_UNSET ? c->backup_every : 3600;
    memcpy(keep, c->backup_keep[0] != DM_UNSET ? c->backup_keep : def, sizeof(def));
}

static const char *set_kyc_retention(cmd_parms *cmd, void *dc, const char *a1, const char *a2)
{
    long long r = 0, a = DM_KYC_DEFAULT_ABANDONED;
    const char *err = parse_period(cmd->temp_pool, a1, &r);

    if (!err && a2) {
        err = parse_period(cmd->temp_pool, a2, &a);
    }
    if (err) {
        return apr_pstrcat(cmd->pool, DM_DIR_KYC_RETENTION " <approved> [<abandoned>]: ", err,
                           NULL);
    }
    sconf(cmd)->kyc_retention = r;
    sconf(cmd)->kyc_abandoned = a;
    return NULL;
}

/* "<n>s|m|h|d": the grace period of an erasure (0 allowed: the next run of
 * the erasure job). */
static const char *set_erasure_delay(cmd_parms *cmd, void *dc, const char *arg)
{
    size_t n = strlen(arg);
    long long v = 0, unit = 0;
    const char *err = NULL;

    if (n >= 2) {
        unit = arg[n - 1] == 's'   ? 1
               : arg[n - 1] == 'm' ? 60
               : arg[n - 1] == 'h' ? 3600
               : arg[n - 1] == 'd' ? 86400
                                   : 0;
    }
    if (!unit) {
        err = "a period is a number with a unit: 3600s, 60m, 24h or 14d";
    }
    if (!err) {
        err = dm_parse_int(cmd->temp_pool, apr_pstrndup(cmd->temp_pool, arg, n - 1), 0,
                           3650LL * 86400, &v);
    }
    if (!err && v * unit > 3650LL * 86400) {
        err = "at most 3650 days";
    }
    if (err) {
        return apr_pstrcat(cmd->pool, DM_DIR_ERASURE_DELAY " ", arg, ": ", err, NULL);
    }
    sconf(cmd)->erasure_delay = v * unit;
    return NULL;
}

int64_t dm_conf_erasure_delay(const dm_conf *c)
{
    return c->erasure_delay != DM_UNSET ? (int64_t)c->erasure_delay : DM_ERASURE_DEFAULT_DELAY;
}

static const char *set_staff_digest(cmd_parms *cmd, void *dc, int on)
{
    sconf(cmd)->staff_digest = on ? 1 : 0;
    return NULL;
}

static const char *set_kyc_provider(cmd_parms *cmd, void *dc, const char *arg)
{
    if (!*arg) {
        return DM_DIR_KYC_PROVIDER " needs the name of a declared kyc plugin, or manual";
    }
    sconf(cmd)->kyc_provider = arg;
    return NULL;
}

const command_rec dm_directives[] = {
    AP_INIT_TAKE1(DM_DIR_KYC_MAX_DOCUMENT, set_kyc_max_document, NULL, RSRC_CONF,
                  "largest identity document accepted, in bytes (default 10485760)"),
    AP_INIT_ITERATE(DM_DIR_KYC_REQUIRED, set_kyc_required, NULL, RSRC_CONF,
                    "documents a hand-in needs: id_front id_back selfie proof_of_address "
                    "(default id_front selfie)"),
    AP_INIT_TAKE12(DM_DIR_KYC_RETENTION, set_kyc_retention, NULL, RSRC_CONF,
                   "<approved> [<abandoned>]: how long documents are kept after the account "
                   "closes (default 5y) and of rejected or abandoned cases (default 90d)"),
    AP_INIT_TAKE1(DM_DIR_KYC_PROVIDER, set_kyc_provider, NULL, RSRC_CONF,
                  "the KYC plugin (by name) whose flow POST /api/kyc/start starts, or manual"),
    AP_INIT_TAKE1(DM_DIR_ERASURE_DELAY, set_erasure_delay, NULL, RSRC_CONF,
                  "grace period between a confirmed erasure request and the erasure "
                  "(default 14d)"),
    AP_INIT_FLAG(DM_DIR_STAFF_DIGEST, set_staff_digest, NULL, RSRC_CONF,
                 "On: owners get the daily staff digest e-mail (default Off)"),
    AP_INIT_FLAG(DM_DIR_CRON, set_cron, NULL, RSRC_CONF,
                 "On (default): Apache runs the cron daemon; Off: jobs run elsewhere"),
    AP_INIT_FLAG(DM_DIR_BATCH_SCHEDULING, set_batch_sched, NULL, RSRC_CONF,
                 "On (default): the worker child's threads run as SCHED_BATCH (a woken "
                 "thread does not preempt one serving a request); Off: the default policy"),
    AP_INIT_FLAG(DM_DIR_TEST_MODE, set_test_mode, NULL, RSRC_CONF,
                 "On only for tests: allows DeepMineClockFile and test-only jobs"),
    AP_INIT_TAKE1(DM_DIR_CLOCK_FILE, set_clock_file, NULL, RSRC_CONF,
                  "test mode: read the platform's time (RFC 3339) from this file"),
    AP_INIT_TAKE1(DM_DIR_ACCRUAL_DELAY, set_accrual_delay, NULL, RSRC_CONF,
                  "seconds after each hour before its yield is credited (default 120)"),
    AP_INIT_TAKE1(DM_DIR_ENVIRONMENT, set_environment, NULL, RSRC_CONF,
                  "the environment error reports carry (default production)"),
    AP_INIT_TAKE1(DM_DIR_MONITOR_QUEUE, set_monitor_queue, NULL, RSRC_CONF,
                  "error reports that may wait for the monitor plugins (default 256)"),
    AP_INIT_TAKE1(DM_DIR_JOB_BATCH, set_job_batch, NULL, RSRC_CONF,
                  "rows per transaction in batch jobs (default 5000)"),
    AP_INIT_TAKE1(DM_DIR_MAIL_FROM, set_mail_from, NULL, RSRC_CONF,
                  "the From of the platform's e-mail"),
    AP_INIT_TAKE1(DM_DIR_MAILER, set_mailer, NULL, RSRC_CONF,
                  "the mailer plugin (by name) that sends the platform's e-mail"),
    AP_INIT_TAKE1(DM_DIR_STORAGE, set_storage, NULL, RSRC_CONF,
                  "the storage plugin (by name) that holds documents and backups"),
    AP_INIT_TAKE1(DM_DIR_BACKUP_EVERY, set_backup_every, NULL, RSRC_CONF,
                  "how often the cron daemon takes a backup: 0 (off), 30m, 1h (default), 1d"),
    AP_INIT_TAKE3(DM_DIR_BACKUP_KEEP, set_backup_keep, NULL, RSRC_CONF,
                  "<hourly> <daily> <weekly>: the backups kept (default 24 7 4)"),
    AP_INIT_TAKE1(DM_DIR_DATABASE, set_database, NULL, RSRC_CONF,
                  "path of the SQLite database file, or a PostgreSQL URL or key=value string"),
    AP_INIT_TAKE1(DM_DIR_SECRET_KEY_FILE, set_secret_key_file, NULL, RSRC_CONF,
                  "file holding 32 random bytes, not readable by everyone"),
    AP_INIT_TAKE2(DM_DIR_POOL, set_pool, NULL, RSRC_CONF,
                  "<min> <max> database connections per child process"),
    AP_INIT_TAKE1(DM_DIR_MAX_BODY, set_max_body, NULL, RSRC_CONF,
                  "largest request body accepted, in bytes (default 1048576)"),
    AP_INIT_TAKE1(DM_DIR_PUBLIC_URL, set_public_url, NULL, RSRC_CONF,
                  "the URL members reach the site at, e.g. https://mine.example.com"),
    AP_INIT_ITERATE(DM_DIR_ALLOWED_ORIGIN, add_allowed_origin, NULL, RSRC_CONF,
                    "origins allowed for CORS and CSRF checks, scheme://host[:port]"),
    AP_INIT_TAKE1(DM_DIR_LEGAL_DIR, set_legal_dir, NULL, RSRC_CONF,
                  "directory holding terms.md and privacy.md"),
    AP_INIT_TAKE1(DM_DIR_HASH_CONCURRENCY, set_hash_concurrency, NULL, RSRC_CONF,
                  "password hashes a child process runs at once (default: threads / 4)"),
    AP_INIT_TAKE2(DM_DIR_PASSWORD_HASH, set_password_hash, NULL, RSRC_CONF,
                  "<opslimit> <memory MiB> of argon2id (default: libsodium's interactive)"),
    AP_INIT_TAKE12(DM_DIR_COMMISSION_HOLD, set_commission_hold, NULL, RSRC_CONF,
                   "<days> [payment plugin]: days a commission is held before it can be "
                   "withdrawn (default 14), for orders paid through that plugin if named"),
    AP_INIT_TAKE1(DM_DIR_COMMISSION_CAP, set_commission_cap, NULL, RSRC_CONF,
                  "most a VIP level may pay over 10 depths, in basis points (default 5000)"),
    AP_INIT_TAKE1(DM_DIR_PARTIAL_REFUND, set_partial_refund, NULL, RSRC_CONF,
                  "what a partial refund does to the contract: prorate (it runs on its "
                  "remaining share; the default) or end-contract (it ends)"),
    AP_INIT_TAKE1(DM_DIR_KYC_POLL_AFTER, set_kyc_poll_after, NULL, RSRC_CONF,
                  "seconds a provider's identity check stays pending before the kyc-poll job "
                  "asks the provider (default 3600)"),
    AP_INIT_TAKE1(DM_DIR_PAYMENT_SETTLE, set_payment_settle, NULL, RSRC_CONF,
                  "seconds a gateway order stays pending before the janitor asks its gateway "
                  "(default 900)"),
    AP_INIT_TAKE1(DM_DIR_CHECKOUT_HOLD, set_checkout_hold, NULL, RSRC_CONF,
                  "seconds a pending order holds capacity when its gateway gives no checkout "
                  "lifetime (default 1800)"),
    AP_INIT_TAKE1(DM_DIR_PENDING_ORDERS, set_pending_orders, NULL, RSRC_CONF,
                  "unpaid gateway orders a member may hold at once (default 3)"),
    AP_INIT_TAKE3(DM_DIR_WITHDRAWAL_LIMITS, set_withdrawal_limits, NULL, RSRC_CONF,
                  "<min> <max> <daily> withdrawal amounts in micro-units (default 10 USD, "
                  "10000 USD, 20000 USD per member per 24 h)"),
    AP_INIT_TAKE3(DM_DIR_PLUGIN, add_plugin, NULL, RSRC_CONF,
                  "<payment|kyc|mailer> <name> <path.so>"),
    AP_INIT_TAKE3(DM_DIR_PLUGIN_SET, set_plugin_setting, NULL, RSRC_CONF,
                  "<plugin name> <key> <value|env:VAR|file:/path>"),
    AP_INIT_TAKE3(DM_DIR_RATE_LIMIT, dm_ratelimit_set_rule, NULL, RSRC_CONF,
                  "<rule> <count>/<period> <ip|member>, e.g. login 5/1m ip"),
    AP_INIT_TAKE1(DM_DIR_METRICS_TOKEN, dm_metrics_set_token, NULL, RSRC_CONF,
                  "a Bearer token (16+ characters, or file:/path) a scraper may read "
                  "/api/admin/metrics with"),
    AP_INIT_TAKE1(DM_DIR_STAFF_2FA, set_staff_2fa, NULL, RSRC_CONF,
                  "required (default): owner and finance staff must use two-factor sign-in; "
                  "optional"),
    AP_INIT_TAKE1(DM_DIR_WITHDRAWAL_ADDRESS_DELAY, set_address_delay, NULL, RSRC_CONF,
                  "how long a confirmed withdrawal address, and a password or 2FA change, "
                  "hold withdrawals back (default 24h)"),
    AP_INIT_TAKE1(DM_DIR_RATE_LIMIT_TABLE, dm_ratelimit_set_table, NULL, RSRC_CONF,
                  "keys the rate limiter tracks, 1024 to 16777216 (default 65536)"),
    AP_INIT_TAKE_ARGV(DM_DIR_RATE_LIMIT_STORE, dm_ratelimit_set_store, NULL, RSRC_CONF,
                      "shm (default: this node's shared memory) or memcache host:port "
                      "[host:port ...] (shared by several nodes)"),
    AP_INIT_TAKE1(DM_DIR_RATE_LIMIT_UNREACHABLE, dm_ratelimit_set_unreachable, NULL, RSRC_CONF,
                  "open (default: admit) or closed (503) while memcached cannot be reached"),
    AP_INIT_TAKE1(DM_DIR_RATE_LIMIT_STORE_TIMEOUT, dm_ratelimit_set_store_timeout, NULL, RSRC_CONF,
                  "milliseconds memcached may take to connect or answer, 1 to 5000 "
                  "(default 50)"),
    {NULL},
};
