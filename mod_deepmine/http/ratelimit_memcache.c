/*
 * ratelimit_memcache.c — the rate limiter's store shared by several nodes
 * (DeepMineRateLimitStore memcache host:port …): the directives, the
 * memcached client of each child, and the hit that ratelimit_shm.c's
 * dm_http_rate_limit hands over when the store is memcache.
 *
 * The arithmetic and the rules are the shared-memory limiter's
 * (core/base/ratelimit.c: dm_rl_cas_hit runs dm_rl_gcra between a `gets`
 * and an `add`/`cas`); only where the TAT is kept differs. Time is the wall
 * clock here, not CLOCK_MONOTONIC: the TAT is compared on every node, so
 * the nodes' clocks must agree (NTP; docs/operations.md).
 *
 * When memcached cannot be reached (down, too slow: DeepMineRateLimitStore-
 * Timeout, a reply we do not accept), DeepMineRateLimitUnreachable says
 * what happens: `open` admits the request, `closed` answers 503
 * unavailable. Either way the node logs it at most once a minute (the
 * minute is kept in a word of shared memory, so all children of a node
 * agree) and once more when the store answers again, and counts each
 * failure in deepmine_rate_limit_store_errors_total.
 */
#include "dm_http.h"

#include <ap_mpm.h>
#include <apr_atomic.h>
#include <apr_shm.h>
#include <apr_strings.h>

#include "base/clock.h"
#include "base/confparse.h"
#include "base/memcache.h"
#include "base/metrics.h"
#include "base/ratelimit.h"

#define STORE_SHM 1
#define STORE_MEMCACHE 2
#define UNREACHABLE_OPEN 1
#define UNREACHABLE_CLOSED 2
#define DEFAULT_TIMEOUT_MS 50
#define MAX_TIMEOUT_MS 5000
/* Seconds a 503 of the `closed` policy asks clients to wait. */
#define CLOSED_RETRY_AFTER "5"
#define ALARM_EVERY 60

/* The directives of the configuration being read (global-only, used in
 * post_config and child_init); reset in every pre_config. */
static int store_kind;
static apr_array_header_t *servers; /* const char * "host:port" */
static int unreachable;
static int timeout_ms;

/* Set in post_config (parent), inherited by the children: the node's
 * alarm word (when it last logged the store unreachable, dm_now seconds;
 * 0 while the store answers). */
typedef struct mc_alarm {
    apr_uint32_t logged_at;
} mc_alarm;
static apr_shm_t *alarm_shm;
static mc_alarm *alarm_word;
/* This child's client. */
static dm_mc *client;
static int client_failed;

static const char *check_global(cmd_parms *cmd)
{
    return ap_check_cmd_context(cmd, GLOBAL_ONLY);
}

const char *dm_ratelimit_set_store(cmd_parms *cmd, void *dc, int argc, char *const argv[])
{
    const char *err = check_global(cmd);

    (void)dc;
    if (err) {
        return err;
    }
    if (argc == 1 && strcmp(argv[0], "shm") == 0) {
        store_kind = STORE_SHM;
        servers = NULL;
        return NULL;
    }
    if (argc < 1 || strcmp(argv[0], "memcache") != 0) {
        return DM_DIR_RATE_LIMIT_STORE " takes shm, or memcache and one or more host:port";
    }
    if (argc < 2) {
        return DM_DIR_RATE_LIMIT_STORE " memcache needs one or more host:port";
    }
    if (argc - 1 > DM_MC_MAX_SERVERS) {
        return apr_psprintf(cmd->pool, DM_DIR_RATE_LIMIT_STORE " takes at most %d servers",
                            DM_MC_MAX_SERVERS);
    }
    servers = apr_array_make(cmd->pool, argc - 1, sizeof(const char *));
    for (int i = 1; i < argc; i++) {
        const char *host;
        apr_port_t port;
        const char *why = dm_mc_parse_address(cmd->temp_pool, argv[i], &host, &port);
        if (why) {
            return apr_pstrcat(cmd->pool, DM_DIR_RATE_LIMIT_STORE ": ", why, NULL);
        }
        APR_ARRAY_PUSH(servers, const char *) = apr_pstrdup(cmd->pool, argv[i]);
    }
    store_kind = STORE_MEMCACHE;
    return NULL;
}

const char *dm_ratelimit_set_unreachable(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = check_global(cmd);

    (void)dc;
    if (err) {
        return err;
    }
    if (strcmp(arg, "open") == 0) {
        unreachable = UNREACHABLE_OPEN;
    } else if (strcmp(arg, "closed") == 0) {
        unreachable = UNREACHABLE_CLOSED;
    } else {
        return DM_DIR_RATE_LIMIT_UNREACHABLE " takes open (admit the request) or closed (503)";
    }
    return NULL;
}

const char *dm_ratelimit_set_store_timeout(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = check_global(cmd);
    long long v = 0;

    (void)dc;
    if (err) {
        return err;
    }
    err = dm_parse_int(cmd->temp_pool, arg, 1, MAX_TIMEOUT_MS, &v);
    if (err) {
        return apr_pstrcat(cmd->pool, DM_DIR_RATE_LIMIT_STORE_TIMEOUT " takes milliseconds: ", err,
                           NULL);
    }
    timeout_ms = (int)v;
    return NULL;
}

int dm_ratelimit_store_pre_config(void)
{
    store_kind = 0;
    servers = NULL;
    unreachable = 0;
    timeout_ms = 0;
    alarm_shm = NULL;
    alarm_word = NULL;
    client = NULL;
    client_failed = 0;
    return OK;
}

int dm_ratelimit_store_is_shared(void)
{
    return store_kind == STORE_MEMCACHE;
}

int dm_ratelimit_store_post_config(apr_pool_t *pconf, server_rec *s)
{
    apr_status_t rv;

    if (store_kind != STORE_MEMCACHE) {
        return OK;
    }
    rv = apr_shm_create(&alarm_shm, sizeof(mc_alarm), NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, rv, s,
                     "DM01750: cannot create the rate-limit store's shared word");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    alarm_word = apr_shm_baseaddr_get(alarm_shm);
    alarm_word->logged_at = 0;
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 "rate limits kept in memcached %s (timeout %d ms, %s when unreachable)",
                 apr_array_pstrcat(pconf, servers, ' '),
                 timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS,
                 unreachable == UNREACHABLE_CLOSED ? "closed" : "open");
    return OK;
}

void dm_ratelimit_store_child_init(apr_pool_t *pchild, server_rec *s)
{
    int threads = 1;
    apr_status_t rv;

    if (store_kind != STORE_MEMCACHE) {
        return;
    }
    if (ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads) != APR_SUCCESS || threads < 1) {
        threads = 1;
    }
    rv = dm_mc_create(pchild, (const char *const *)servers->elts, servers->nelts,
                      (apr_interval_time_t)(timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS) * 1000,
                      threads, &client);
    if (rv != APR_SUCCESS) {
        client = NULL;
        client_failed = 1;
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                     "DM01751: cannot set up the memcached client for rate limits; this child "
                     "treats memcached as unreachable");
    }
}

/* dm_rl_cas_store over memcached: the TAT is a decimal number. */
static apr_status_t mc_get(void *baton, const char *key, int *found, int64_t *tat_ns,
                           uint64_t *version)
{
    dm_mc_item item;
    apr_status_t rv;

    memset(&item, 0, sizeof(item));
    rv = dm_mc_gets(baton, key, &item);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    *found = item.found;
    *version = item.cas;
    *tat_ns = 0;
    /* A value that is not a TAT (written by someone else) reads as none,
     * and is replaced. */
    for (size_t i = 0; item.found && i < item.len; i++) {
        unsigned d = (unsigned)(item.value[i] - '0');
        if (d > 9 || *tat_ns > (INT64_MAX - (int64_t)d) / 10) {
            *tat_ns = 0;
            break;
        }
        *tat_ns = *tat_ns * 10 + (int64_t)d;
    }
    return APR_SUCCESS;
}

static apr_status_t mc_put(void *baton, const char *key, int found, uint64_t version,
                           int64_t tat_ns, int64_t ttl_s, int *stored)
{
    char value[24];
    dm_mc_stored answer = 0;
    uint32_t exptime;
    int n = snprintf(value, sizeof(value), "%lld", (long long)tat_ns);
    apr_status_t rv;

    if (ttl_s < 1) {
        ttl_s = 1;
    }
    /* memcached reads an expiry above 30 days as a Unix time. */
    exptime = ttl_s <= DM_MC_RELATIVE_MAX ? (uint32_t)ttl_s
                                          : (uint32_t)(apr_time_sec(apr_time_now()) + ttl_s);
    rv = dm_mc_store(baton, key, exptime, value, (size_t)n, found ? version : 0, &answer);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (answer == DM_MC_STORED) {
        *stored = 1;
    } else if (answer == (found ? DM_MC_EXISTS : DM_MC_NOT_STORED) ||
               (found && answer == DM_MC_NOT_FOUND)) {
        *stored = 0;
    } else {
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
}

/* The store failed: counted, logged at most once a minute per node. */
static void store_failed(request_rec *r, const char *key, apr_status_t rv)
{
    apr_uint32_t now = (apr_uint32_t)dm_now();
    apr_uint32_t last;

    dm_metrics_inc(DM_M_RL_STORE_ERRORS, DM_ML_END);
    if (!alarm_word) {
        return;
    }
    last = apr_atomic_read32(&alarm_word->logged_at);
    if ((last == 0 || now - last >= ALARM_EVERY) &&
        apr_atomic_cas32(&alarm_word->logged_at, now ? now : 1, last) == last) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r,
                      "DM01752: the rate-limit store memcached %s cannot be reached: requests "
                      "are %s (DeepMineRateLimitUnreachable %s); logged at most once a minute",
                      client ? dm_mc_server_of(client, key) : "(no client)",
                      unreachable == UNREACHABLE_CLOSED ? "refused with 503" : "admitted unchecked",
                      unreachable == UNREACHABLE_CLOSED ? "closed" : "open");
    }
}

static void store_answered(request_rec *r)
{
    apr_uint32_t last;

    if (!alarm_word) {
        return;
    }
    last = apr_atomic_read32(&alarm_word->logged_at);
    if (last != 0 && apr_atomic_cas32(&alarm_word->logged_at, 0, last) == last) {
        ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r,
                      "DM01753: the rate-limit store memcached answers again");
    }
}

int dm_ratelimit_store_hit(request_rec *r, const dm_rl_rule *rule, const char *key,
                           dm_rl_result *res, dm_err **err)
{
    dm_rl_cas_store st = {mc_get, mc_put, client};
    apr_status_t rv = APR_EINIT;
    char name[DM_RL_SHARED_KEY_MAX];

    *err = NULL;
    if (client) {
        rv = dm_rl_cas_hit(&st, rule->name, key, rule->count, rule->period_us,
                           (int64_t)apr_time_now(), res);
    }
    if (rv == APR_SUCCESS) {
        store_answered(r);
        return 1;
    }
    dm_rl_shared_key(name, rule->name, key);
    store_failed(r, name, rv);
    if (unreachable == UNREACHABLE_CLOSED) {
        /* the outage is DM01752's, once a minute: not one error line (and
         * monitor event) per refused request (respond.c, monitor.c) */
        apr_table_setn(r->notes, DM_NOTE_REPORTED, "1");
        apr_table_setn(r->err_headers_out, "Retry-After", CLOSED_RETRY_AFTER);
        *err = dm_err_make(
            r->pool, DM_E_UNAVAILABLE, NULL,
            "rate limits cannot be checked right now; try again in " CLOSED_RETRY_AFTER " seconds");
    }
    return 0;
}
