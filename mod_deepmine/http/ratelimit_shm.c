/*
 * ratelimit.c — the edge rate limiter's Apache side: the DeepMineRateLimit
 * and DeepMineRateLimitTable directives, the table every child shares, and
 * dm_http_rate_limit, which counts a hit and answers with the RateLimit
 * header fields (draft-ietf-httpapi-ratelimit-headers) and, over the limit,
 * 429 rate_limited with Retry-After.
 *
 * The table (core/ratelimit.c) lives in anonymous shared memory with its
 * own spin lock inside (dm_rl_lock: see there why not an APR global mutex).
 * It is made once, in the parent's process pool, the way mod_ssl keeps its
 * session cache: it survives graceful (and plain) restarts, so `apachectl graceful` — which
 * logrotate runs daily — does not hand every client a fresh allowance. Children of the old and the
 * new generation, which overlap during a graceful restart, therefore share the same table under the
 * same lock. The table is made afresh only when DeepMineRateLimitTable changes (or a new module
 * build changes its layout).
 *
 * Time is CLOCK_MONOTONIC: system-wide on Linux, so every child agrees,
 * and immune to the wall clock being set.
 */
#include "dm_http.h"

#include <apr_atomic.h>
#include <apr_shm.h>
#include <apr_strings.h>
#include <http_protocol.h>
#include <sodium.h>
#include <time.h>

#include "base/confparse.h"
#include "base/metrics.h"
#include "base/ratelimit.h"

/* Process-pool key of the shared state; the table header carries its own
 * layout version, checked before a surviving table is used again. */
#define RL_USERDATA_KEY "deepmine-ratelimit-shared"
#define RL_SHM_FILE "deepmine-ratelimit.shm"
#define US_PER_S 1000000

/* The defaults of ARCHITECTURE.md, applied when a rule is not configured. */
static const dm_rl_rule default_rules[] = {
    {"login", 5, (int64_t)60 * US_PER_S, DM_RL_SCOPE_IP},
    {"register", 3, (int64_t)3600 * US_PER_S, DM_RL_SCOPE_IP},
    {"api", 100, (int64_t)60 * US_PER_S, DM_RL_SCOPE_MEMBER},
    {"password-reset", 3, (int64_t)3600 * US_PER_S, DM_RL_SCOPE_IP},
    {"verify-email", 10, (int64_t)3600 * US_PER_S, DM_RL_SCOPE_IP},
    {"webhook", 50, (int64_t)1 * US_PER_S, DM_RL_SCOPE_IP},
    /* two-factor codes (docs/security.md): per address, and per account
     * whatever the address */
    {"login-2fa", 10, (int64_t)300 * US_PER_S, DM_RL_SCOPE_IP},
    {"login-2fa-member", 5, (int64_t)300 * US_PER_S, DM_RL_SCOPE_MEMBER},
    /* the e-mailed link that confirms a withdrawal address */
    {"confirm-address", 10, (int64_t)3600 * US_PER_S, DM_RL_SCOPE_IP},
    /* members' data (routes/gdpr.c): the export, the erasure request */
    {"export", 5, (int64_t)3600 * US_PER_S, DM_RL_SCOPE_MEMBER},
    {"erasure", 5, (int64_t)3600 * US_PER_S, DM_RL_SCOPE_MEMBER},
};

/* Kept in the parent's process pool across configuration generations. */
typedef struct rl_shared {
    apr_shm_t *shm;
    unsigned entries;
    apr_size_t size;
} rl_shared;

/* DeepMineRateLimitTable of the configuration being read; 0 is unset. It
 * is global-only and used once, in post_config, so it lives here rather
 * than in dm_conf. Reset in every pre_config. */
static unsigned table_entries;
/* Set in post_config (parent), inherited by the children. */
static rl_shared *shared;
/* This child's view; NULL when the child could not attach (then every hit
 * is allowed). */
static void *table;
static apr_uint32_t logged_unknown_rule;

const char *dm_ratelimit_set_rule(cmd_parms *cmd, void *dc, const char *name, const char *rate,
                                  const char *scope)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    dm_conf *c = dm_conf_get(cmd->server);
    dm_rl_rule rule;

    if (err) {
        return err;
    }
    err = dm_rl_parse_rule(cmd->pool, name, rate, scope, &rule);
    if (err) {
        return apr_pstrcat(cmd->pool, DM_DIR_RATE_LIMIT ": ", err, NULL);
    }
    if (!c->rate_rules) {
        c->rate_rules = apr_array_make(cmd->pool, 8, sizeof(dm_rl_rule));
    }
    /* A later line for the same rule replaces the earlier one, so
     * local.conf can override what the main configuration says. */
    for (int i = 0; i < c->rate_rules->nelts; i++) {
        dm_rl_rule *old = &APR_ARRAY_IDX(c->rate_rules, i, dm_rl_rule);
        if (strcmp(old->name, rule.name) == 0) {
            *old = rule;
            return NULL;
        }
    }
    APR_ARRAY_PUSH(c->rate_rules, dm_rl_rule) = rule;
    return NULL;
}

const char *dm_ratelimit_set_table(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    long long v = 0;

    if (err) {
        return err;
    }
    err = dm_parse_int(cmd->temp_pool, arg, DM_RL_MIN_ENTRIES, DM_RL_MAX_ENTRIES, &v);
    if (err) {
        return apr_pstrcat(
            cmd->pool, DM_DIR_RATE_LIMIT_TABLE " takes the number of keys to track: ", err, NULL);
    }
    table_entries = (unsigned)v;
    return NULL;
}

/* The configured rule, else the default of that name, else NULL. */
static const dm_rl_rule *rule_get(const dm_conf *c, const char *name)
{
    if (c->rate_rules) {
        for (int i = 0; i < c->rate_rules->nelts; i++) {
            const dm_rl_rule *rule = &APR_ARRAY_IDX(c->rate_rules, i, dm_rl_rule);
            if (strcmp(rule->name, name) == 0) {
                return rule;
            }
        }
    }
    for (size_t i = 0; i < sizeof(default_rules) / sizeof(default_rules[0]); i++) {
        if (strcmp(default_rules[i].name, name) == 0) {
            return &default_rules[i];
        }
    }
    return NULL;
}

int dm_ratelimit_pre_config(apr_pool_t *pconf)
{
    (void)pconf;
    table_entries = 0;
    shared = NULL;
    table = NULL;
    return dm_ratelimit_store_pre_config();
}

/* Anonymous shared memory where the platform has it, else a file under
 * DefaultRuntimeDir. Children inherit the mapping either way. */
static apr_status_t shm_create(apr_shm_t **shm, apr_size_t size, apr_pool_t *p, server_rec *s)
{
    apr_status_t rv = apr_shm_create(shm, size, NULL, p);
    const char *file;

    if (rv != APR_ENOTIMPL) {
        return rv;
    }
    file = ap_runtime_dir_relative(p, RL_SHM_FILE);
    if (!file) {
        return APR_EINVAL;
    }
    apr_shm_remove(file, p); /* left over from a crash */
    rv = apr_shm_create(shm, size, file, p);
    if (rv == APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     "rate-limit table in %s (no anonymous shared memory here)", file);
    }
    return rv;
}

static apr_status_t table_create(rl_shared *sh, unsigned entries, apr_size_t size, apr_pool_t *proc,
                                 server_rec *s)
{
    unsigned char key[DM_RL_KEY_BYTES];
    apr_status_t rv;

    if (sh->shm) {
        /* Children of the old generation keep their own mapping. */
        apr_shm_destroy(sh->shm);
        sh->shm = NULL;
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                     "DM00201: DeepMineRateLimitTable changed from %u to %u entries: rate-limit "
                     "counts start afresh",
                     sh->entries, entries);
    }
    rv = shm_create(&sh->shm, size, proc, s);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    /* A fresh random hash key per table, so clients cannot aim collisions. */
    randombytes_buf(key, sizeof(key));
    /* The segment is fresh (anonymous shared memory, or a SysV segment or
     * file created anew: apr_shm_remove above), so zero: its bucket array
     * is not written again, which kept 256 KiB of it resident in the
     * parent, which never looks at it. */
    rv = dm_rl_table_init_zeroed(apr_shm_baseaddr_get(sh->shm), apr_shm_size_get(sh->shm), entries,
                                 key);
    sodium_memzero(key, sizeof(key));
    if (rv != APR_SUCCESS) {
        apr_shm_destroy(sh->shm);
        sh->shm = NULL;
        return rv;
    }
    sh->entries = entries;
    sh->size = apr_shm_size_get(sh->shm);
    return APR_SUCCESS;
}

int dm_ratelimit_post_config(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s)
{
    apr_pool_t *proc = s->process->pool;
    unsigned entries = table_entries ? table_entries : DM_RL_DEFAULT_ENTRIES;
    apr_size_t size = dm_rl_table_size(entries);
    rl_shared *sh = NULL;
    apr_status_t rv;

    if (sodium_init() < 0) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                     "DM00202: libsodium cannot be initialised");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    apr_pool_userdata_get((void **)&sh, RL_USERDATA_KEY, proc);
    if (!sh) {
        sh = apr_pcalloc(proc, sizeof(*sh));
        apr_pool_userdata_set(sh, RL_USERDATA_KEY, apr_pool_cleanup_null, proc);
    }
    if (sh->shm && sh->entries == entries &&
        dm_rl_table_usable(apr_shm_baseaddr_get(sh->shm), sh->size, entries)) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, "rate-limit table kept: %u entries, %u in use",
                     entries, dm_rl_table_used(apr_shm_baseaddr_get(sh->shm)));
    } else {
        rv = table_create(sh, entries, size, proc, s);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, rv, s,
                         "DM00204: cannot create the rate-limit table (%u entries, %" APR_SIZE_T_FMT
                         " bytes of shared memory)",
                         entries, size);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     "rate-limit table created: %u entries, %" APR_SIZE_T_FMT " bytes", entries,
                     sh->size);
    }
    shared = sh;
    /* The shared-memory table is made whatever the store: it costs only
     * address space until used, and a node switched back to shm by a
     * graceful restart finds its counts. */
    return dm_ratelimit_store_post_config(pconf, s);
}

void dm_ratelimit_child_init(apr_pool_t *pchild, server_rec *s)
{
    table = NULL;
    dm_ratelimit_store_child_init(pchild, s);
    if (!shared || !shared->shm) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     "DM00205: the rate-limit table is missing; this child does not enforce "
                     "rate limits");
        return;
    }
    table = apr_shm_baseaddr_get(shared->shm);
}

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * US_PER_S + ts.tv_nsec / 1000;
}

/* Whole seconds, rounded up. */
static int64_t seconds_up(int64_t us)
{
    return us <= 0 ? 0 : (us + US_PER_S - 1) / US_PER_S;
}

/* RateLimit-Policy and RateLimit are Structured Field Lists: several rules
 * checked on one request add members, joined with ", ". err_headers_out,
 * so they reach the client on the 429 (and any other error) too. */
static void set_headers(request_rec *r, const dm_rl_rule *rule, const dm_rl_result *res)
{
    apr_table_t *h = r->err_headers_out;

    apr_table_merge(h, "RateLimit-Policy",
                    apr_psprintf(r->pool, "\"%s\";q=%" APR_INT64_T_FMT ";w=%" APR_INT64_T_FMT,
                                 rule->name, (apr_int64_t)rule->count,
                                 (apr_int64_t)(rule->period_us / US_PER_S)));
    apr_table_merge(h, "RateLimit",
                    apr_psprintf(r->pool, "\"%s\";r=%" APR_INT64_T_FMT ";t=%" APR_INT64_T_FMT,
                                 rule->name, (apr_int64_t)res->remaining,
                                 (apr_int64_t)seconds_up(res->reset_after_us)));
}

dm_err *dm_http_rate_limit(request_rec *r, const char *rule_name, const char *key)
{
    const dm_rl_rule *rule = rule_get(dm_conf_get(r->server), rule_name ? rule_name : "");
    dm_rl_result res;
    int64_t retry;

    if (!rule) {
        if (apr_atomic_cas32(&logged_unknown_rule, 1, 0) == 0) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                          "DM00207: rate-limit rule '%s' is not defined (a bug): requests are "
                          "let through unlimited; logged once per child",
                          rule_name ? rule_name : "(null)");
        }
        return NULL;
    }
    /* An `ip` rule counts the client address whatever the caller passed,
     * so an operator can re-scope a rule; r->useragent_ip is the address
     * mod_remoteip found behind a trusted proxy. */
    if (rule->scope == DM_RL_SCOPE_IP || !key) {
        key = r->useragent_ip ? r->useragent_ip : "";
    }
    if (dm_ratelimit_store_is_shared()) {
        dm_err *e = NULL;
        /* memcached unreachable: admitted (no RateLimit fields) or 503 */
        if (!dm_ratelimit_store_hit(r, rule, key, &res, &e)) {
            return e;
        }
    } else {
        if (!table) {
            return NULL; /* child_init said why */
        }
        dm_rl_lock(table);
        res = dm_rl_hit(table, rule->name, key, rule->count, rule->period_us, now_us());
        dm_rl_unlock(table);
    }
    set_headers(r, rule, &res);
    if (res.allowed) {
        return NULL;
    }
    dm_metrics_inc(DM_M_RATE_LIMIT_REFUSED, "rule", rule->name, DM_ML_END);
    retry = seconds_up(res.retry_after_us);
    if (retry < 1) {
        retry = 1;
    }
    apr_table_setn(r->err_headers_out, "Retry-After",
                   apr_psprintf(r->pool, "%" APR_INT64_T_FMT, (apr_int64_t)retry));
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                  "rate limit '%s' refused %s for %" APR_INT64_T_FMT " s", rule->name, key,
                  (apr_int64_t)retry);
    return dm_err_make(r->pool, DM_E_RATE_LIMITED, NULL,
                       "too many requests; try again in %" APR_INT64_T_FMT " second%s",
                       (apr_int64_t)retry, retry == 1 ? "" : "s");
}
