/*
 * dm_http.h — private header of the Apache glue: the module's log identity,
 * its configuration, the per-process state, and the helpers every route
 * file uses. Nothing outside http/ includes this.
 */
#ifndef DM_HTTP_H
#define DM_HTTP_H

#include <httpd.h>
#include <http_config.h>
#include <http_log.h>

#include "shop/catalogue.h"
#include "store/db_pool.h"
#include "base/err.h"
#include "members/members.h"
#include "plugins/plugin_host.h"
#include "base/router.h"
#include "staff/staff.h"

extern module AP_MODULE_DECLARE_DATA deepmine_module;
APLOG_USE_MODULE(deepmine);

#define DM_VERSION "0.1.0"

/* Defaults, applied by the getters in config.c when a directive is unset. */
#define DM_DEFAULT_DATABASE "/var/lib/deepmine/deepmine.db"
#define DM_DEFAULT_MAX_BODY ((apr_off_t)1024 * 1024)
#define DM_SECRET_KEY_BYTES 32
#define DM_DEFAULT_LEGAL_DIR "/etc/deepmine/legal"
/* Retry-After (seconds) of a 503 while the database's storage refuses
 * writes (full disk): long enough not to hammer it, short enough that
 * webhook senders come back soon after space returns. */
#define DM_STORAGE_RETRY_AFTER "60"
/* How long a request waits for a password-hashing slot before 503. */
#define DM_HASH_WAIT_MS 2000
/* A request note: this 5xx answers a condition already logged (at most
 * once a minute, by whoever set it), so the answer adds no error line
 * (DM00020) and no monitor event (DM01600) of its own. */
#define DM_NOTE_REPORTED "dm-reported"

/* DeepMinePool's default max: this many connections per core, at least
 * DM_POOL_MIN_DEFAULT, at most the threads per child. */
#define DM_POOL_PER_CORE 4
#define DM_POOL_MIN_DEFAULT 8
/* Blocks from this size on are mapped and unmapped, never kept in an
 * arena (dm_http_malloc_tune). */
#define DM_MALLOC_MMAP_THRESHOLD (256 * 1024)

/* The directives' names, as the command table registers them and every
 * message about them spells them. */
#define DM_DIR_ACCRUAL_DELAY "DeepMineAccrualDelay"
#define DM_DIR_ALLOWED_ORIGIN "DeepMineAllowedOrigin"
#define DM_DIR_CLOCK_FILE "DeepMineClockFile"
#define DM_DIR_COMMISSION_CAP "DeepMineCommissionCap"
#define DM_DIR_COMMISSION_HOLD "DeepMineCommissionHold"
#define DM_DIR_CRON "DeepMineCron"
#define DM_DIR_DATABASE "DeepMineDatabase"
#define DM_DIR_HASH_CONCURRENCY "DeepMineHashConcurrency"
#define DM_DIR_KYC_MAX_DOCUMENT "DeepMineKycMaxDocument"
#define DM_DIR_KYC_PROVIDER "DeepMineKycProvider"
#define DM_DIR_KYC_REQUIRED "DeepMineKycRequired"
#define DM_DIR_KYC_RETENTION "DeepMineKycRetention"
#define DM_DIR_ERASURE_DELAY "DeepMineErasureDelay"
#define DM_DIR_STAFF_DIGEST "DeepMineStaffDigest"
#define DM_DIR_JOB_BATCH "DeepMineJobBatch"
#define DM_DIR_KYC_POLL_AFTER "DeepMineKycPollAfter"
#define DM_DIR_LEGAL_DIR "DeepMineLegalDir"
#define DM_DIR_MAIL_FROM "DeepMineMailFrom"
#define DM_DIR_ENVIRONMENT "DeepMineEnvironment"
#define DM_DIR_MONITOR_QUEUE "DeepMineMonitorQueue"
#define DM_DIR_MAILER "DeepMineMailer"
#define DM_DIR_STORAGE "DeepMineStorage"
#define DM_DIR_BACKUP_EVERY "DeepMineBackupEvery"
#define DM_DIR_BACKUP_KEEP "DeepMineBackupKeep"
#define DM_DIR_MAX_BODY "DeepMineMaxBody"
#define DM_DIR_METRICS_TOKEN "DeepMineMetricsToken"
#define DM_DIR_PASSWORD_HASH "DeepMinePasswordHash"
#define DM_DIR_PARTIAL_REFUND "DeepMinePartialRefund"
#define DM_DIR_PAYMENT_SETTLE "DeepMinePaymentSettle"
#define DM_DIR_CHECKOUT_HOLD "DeepMineCheckoutHold"
#define DM_DIR_PENDING_ORDERS "DeepMinePendingOrders"
#define DM_DIR_PLUGIN "DeepMinePlugin"
#define DM_DIR_PLUGIN_SET "DeepMinePluginSet"
#define DM_DIR_POOL "DeepMinePool"
#define DM_DIR_PUBLIC_URL "DeepMinePublicURL"
#define DM_DIR_RATE_LIMIT "DeepMineRateLimit"
#define DM_DIR_RATE_LIMIT_TABLE "DeepMineRateLimitTable"
#define DM_DIR_RATE_LIMIT_STORE "DeepMineRateLimitStore"
#define DM_DIR_RATE_LIMIT_STORE_TIMEOUT "DeepMineRateLimitStoreTimeout"
#define DM_DIR_RATE_LIMIT_UNREACHABLE "DeepMineRateLimitUnreachable"
#define DM_DIR_SECRET_KEY_FILE "DeepMineSecretKeyFile"
#define DM_DIR_TEST_MODE "DeepMineTestMode"
#define DM_DIR_BATCH_SCHEDULING "DeepMineBatchScheduling"
#define DM_DIR_WITHDRAWAL_LIMITS "DeepMineWithdrawalLimits"
#define DM_DIR_STAFF_2FA "DeepMineStaff2FA"
#define DM_DIR_WITHDRAWAL_ADDRESS_DELAY "DeepMineWithdrawalAddressDelay"

/* Server configuration. Every field starts "unset" (NULL or -1) so merge
 * can tell "not said" from "said"; defaults live in the getters. */
typedef struct dm_conf {
    const char *database;
    const char *secret_key_file;
    const unsigned char *secret_key; /* DM_SECRET_KEY_BYTES, read at parse time */
    int pool_min;
    int pool_max;
    apr_off_t max_body;
    const char *public_url;
    apr_array_header_t *allowed_origins; /* const char * */
    apr_array_header_t *rate_rules;      /* ratelimit.c: rules from DeepMineRateLimit */
    int hash_concurrency;                /* DeepMineHashConcurrency; -1 unset */
    long long pw_opslimit;               /* DeepMinePasswordHash <ops> <mem>; -1 unset */
    long long pw_memlimit;               /* bytes; -1 unset */
    const char *legal_dir;               /* DeepMineLegalDir */
    int commission_hold_days;            /* DeepMineCommissionHold <days>; -1 unset */
    apr_array_header_t *gateway_holds;   /* DeepMineCommissionHold <days> <plugin>: dm_conf_hold */
    int commission_cap_bp;               /* DeepMineCommissionCap; -1 unset */
    int partial_refund;                  /* DeepMinePartialRefund (refunds.h mode); -1 unset */
    long long wd_min; /* DeepMineWithdrawalLimits <min> <max> <daily>; -1 unset */
    long long wd_max;
    long long wd_daily;
    int cron;               /* DeepMineCron on|off; -1 unset (on) */
    int test_mode;          /* DeepMineTestMode on|off; -1 unset (off) */
    const char *clock_file; /* DeepMineClockFile (test mode only) */
    int accrual_delay;      /* DeepMineAccrualDelay seconds; -1 unset */
    int batch_sched;        /* DeepMineBatchScheduling on|off; -1 unset (on) */
    const char *mail_from;  /* DeepMineMailFrom */
    const char *mailer;     /* DeepMineMailer: the mailer plugin the queue uses */
    const char *storage;    /* DeepMineStorage: the storage plugin for documents, backups */
    /* KYC (kyc_docs.h); -1 / NULL unset */
    long long kyc_max_document; /* DeepMineKycMaxDocument bytes */
    int kyc_required;           /* DeepMineKycRequired: dm_kyc_kind bits */
    long long kyc_retention;    /* DeepMineKycRetention <approved> [<abandoned>], seconds */
    long long kyc_abandoned;
    const char *kyc_provider;  /* DeepMineKycProvider: a KYC plugin's name, or "manual" */
    int job_batch;             /* DeepMineJobBatch: rows per transaction in batch jobs; -1 unset */
    int payment_settle;        /* DeepMinePaymentSettle seconds; -1 unset */
    int checkout_hold;         /* DeepMineCheckoutHold seconds; -1 unset */
    int pending_orders;        /* DeepMinePendingOrders; -1 unset */
    int kyc_poll_after;        /* DeepMineKycPollAfter seconds; -1 unset */
    const char *environment;   /* DeepMineEnvironment (error reports); NULL: production */
    long long backup_every;    /* DeepMineBackupEvery seconds (0 off); -1 unset (3600) */
    int backup_keep[3];        /* DeepMineBackupKeep hourly daily weekly; [0] -1 unset (24 7 4) */
    int monitor_queue;         /* DeepMineMonitorQueue: reports waiting at most; -1 unset */
    const char *metrics_token; /* DeepMineMetricsToken: a scraper's Bearer token; NULL unset */
    int staff_2fa;             /* DeepMineStaff2FA required (1) | optional (0); -1 unset */
    long long address_delay;   /* DeepMineWithdrawalAddressDelay seconds; -1 unset */
    long long erasure_delay;   /* DeepMineErasureDelay seconds; -1 unset (14 days) */
    int staff_digest;          /* DeepMineStaffDigest on|off; -1 unset (off) */
} dm_conf;

/* Process-wide state: built in post_config (router, plugins) and
 * child_init (database pool, catalogue cache). */
typedef struct dm_state {
    dm_router *router;
    dm_plugin_host *plugins;       /* of the current configuration pass */
    dm_db_pool *db;                /* per child */
    dm_catalogue_cache *catalogue; /* per child */
    int schema_version;
    dm_keys keys;       /* derived from DeepMineSecretKeyFile in post_config */
    dm_services svc;    /* what the member functions need (keys, legal, hashing) */
    int64_t started_at; /* post_config of this generation (dm_now()) */
} dm_state;

extern dm_state dm_g;

/* config.c */
extern const command_rec dm_directives[];
void *dm_conf_create(apr_pool_t *p, server_rec *s);
void *dm_conf_merge(apr_pool_t *p, void *basev, void *addv);
dm_conf *dm_conf_get(const server_rec *s);
const char *dm_conf_database(const dm_conf *c);
apr_off_t dm_conf_max_body(const dm_conf *c);
/* malloc tuned for a process of many threads (arenas as many as cores,
 * a fixed mmap threshold): the children and the cron daemon, before their
 * threads start. */
void dm_http_malloc_tune(void);
/* routes/public.c: GET /api/health's own connection in this child (SQLite). */
void dm_health_child_init(apr_pool_t *pchild, const char *database);
/* The default max for `threads` per child on `ncores` cores. */
int dm_conf_pool_default(int threads, int ncores);
void dm_conf_pool_size(const dm_conf *c, int *min, int *max);
const char *dm_conf_legal_dir(const dm_conf *c);
int dm_conf_hash_concurrency(const dm_conf *c);
void dm_conf_pw_params(const dm_conf *c, dm_pw_params *out);
struct dm_wd_limits;
void dm_conf_wd_limits(const dm_conf *c, struct dm_wd_limits *out);
int dm_conf_commission_hold_days(const dm_conf *c);
/* One DeepMineCommissionHold <days> <plugin>: the hold of orders paid
 * through that payment plugin. */
typedef struct dm_conf_hold {
    const char *plugin;
    int days;
} dm_conf_hold;
/* The per-plugin holds (dm_conf_hold, a later line for a plugin replaces
 * an earlier one), or NULL. */
const apr_array_header_t *dm_conf_gateway_holds(const dm_conf *c);
int dm_conf_commission_cap_bp(const dm_conf *c);
int dm_conf_partial_refund(const dm_conf *c);
/* DeepMinePaymentSettle, DeepMineCheckoutHold, DeepMinePendingOrders with
 * their defaults (shop/janitor.h). */
struct dm_payment_rules;
void dm_conf_payment_rules(const dm_conf *c, struct dm_payment_rules *out);
/* DeepMineKycPollAfter with its default (kyc/kyc_events.h). */
int dm_conf_kyc_poll_after(const dm_conf *c);
int dm_conf_cron(const dm_conf *c);
int dm_conf_test_mode(const dm_conf *c);
int dm_conf_batch_scheduling(const dm_conf *c);
/* DeepMineErasureDelay in seconds (default 14 days). */
int64_t dm_conf_erasure_delay(const dm_conf *c);
int dm_conf_accrual_delay(const dm_conf *c);
/* The KYC settings with their defaults (kyc_docs.h). */
struct dm_kyc_env;
void dm_conf_kyc(const dm_conf *c, struct dm_kyc_env *env, int64_t *retention, int64_t *abandoned);
/* DeepMineStaff2FA: 1 (required, the default) or 0 (optional). */
int dm_conf_staff_2fa(const dm_conf *c);
/* DeepMineWithdrawalAddressDelay in seconds (default 24 h). */
long long dm_conf_address_delay(const dm_conf *c);
/* DeepMineBackupEvery (seconds, 0 off) and DeepMineBackupKeep, defaults applied. */
void dm_conf_backup(const dm_conf *c, long long *every, int keep[3]);
#define DM_DEFAULT_ACCRUAL_DELAY 120

/* respond.c — every API answer goes through these. */
int dm_http_json(request_rec *r, int status, const char *body, apr_size_t len);
/* dm_http_json for a malloc'd body that the answer takes over (freed once
 * written): a body of a few KiB in r->pool would take the request's pool
 * to another 8 KiB node, which the connection's allocator keeps. */
int dm_http_json_owned(request_rec *r, int status, char *body, apr_size_t len);
/* dm_http_json_owned for json_dumps's text: NULL (json_dumps ran out of
 * memory) answers 500 internal_error instead of a 200 without a body. */
int dm_http_json_dumped(request_rec *r, int status, char *text);
int dm_http_error(request_rec *r, const dm_err *e);
/* A small HTML page (text/html, no-store, the API's security headers). */
int dm_http_html(request_rec *r, int status, const char *body, apr_size_t len);
int dm_http_fail(request_rec *r, dm_code code, const char *field, const char *msg);
/* Starts a streamed CSV answer (200, text/csv, Content-Disposition:
 * attachment with `filename`, no-store, the API's security headers); the
 * caller then writes the body with ap_rwrite/ap_rputs. */
void dm_http_csv_begin(request_rec *r, const char *filename);
/* A JSON answer from a jansson value (taken over: released with the
 * request). */
int dm_http_send_json(request_rec *r, int status, json_t *o);
/* A list page's "next_cursor": the cursor as a string, or null for none. */
json_t *dm_http_cursor_json(apr_pool_t *p, int64_t next);
/* Cached, validator-carrying answer: ETag + 304 on If-None-Match. */
int dm_http_cached_json(request_rec *r, const dm_rendered *doc);
/* The request body as received, at most DeepMineMaxBody bytes (streamed;
 * 413 beyond, also for a chunked body), NUL-terminated, never parsed:
 * webhook signatures are computed over these exact bytes. */
dm_err *dm_http_read_body(request_rec *r, const char **out, apr_size_t *out_len);
/* Reads the request body, if it has one, before the handler takes a
 * database connection (dm_handler): a client sending its body slowly then
 * holds a worker thread, never one of the pool's few connections.
 * dm_http_read_body answers from what was read, error included, when the
 * handler asks (docs/decisions.md "The body before the connection"). */
void dm_http_prefetch_body(request_rec *r);
/* Reads a JSON object body (dm_http_read_body, then bad_json/invalid). */
dm_err *dm_http_read_json(request_rec *r, json_t **out);
/* Refuses a declared body over DeepMineMaxBody before anything reads it. */
dm_err *dm_http_check_length(request_rec *r);

/* A route handler: writes the answer (with the helpers above) and returns
 * OK, or returns an HTTP status for Apache to answer (e.g. 304). */
typedef int dm_route_fn(request_rec *r, const dm_route_match *m);

typedef struct dm_route_def {
    const char *method;
    const char *pattern;
    dm_route_fn *fn;
} dm_route_def;

/* session.c — cookies, member authentication, CSRF and CORS. */
const char *dm_http_cookie(request_rec *r, const char *name);
/* One Set-Cookie: Path, Max-Age, SameSite (Lax|Strict), HttpOnly when
 * asked, Secure unless the public URL is plain http on loopback. */
void dm_http_set_cookie(request_rec *r, const char *name, const char *value, const char *path,
                        long max_age, int http_only, const char *samesite);
void dm_http_set_session_cookies(request_rec *r, const dm_session *s);
void dm_http_clear_session_cookies(request_rec *r);
/* State-changing requests that carry an Origin (or Referer) must come from
 * an allowed origin (login CSRF), authenticated or not. */
dm_err *dm_http_check_origin(request_rec *r);
/* Cookie-authenticated writes: X-CSRF-Token == dm_csrf, and an allowed
 * Origin/Referer present. */
dm_err *dm_http_check_csrf(request_rec *r);
/* The calling member (Bearer token, else the dm_session cookie + CSRF),
 * counted against the "api" rate limit. */
dm_err *dm_http_member(request_rec *r, dm_db *db, dm_member *m);
/* A pooled connection, then dm_http_member on it. */
dm_err *dm_http_member_db(request_rec *r, dm_db **db, dm_member *m);
/* A member's read that authenticates it and reads what the answer needs in
 * one statement (dm_member_authenticate_claims or one of its variants),
 * with the baton for what it reads besides the member. */
typedef dm_err *(*dm_http_member_read_fn)(dm_db *db, apr_pool_t *p, const dm_claims *c,
                                          dm_member *m, void *baton);
/* dm_http_member_db for a handler whose answer needs nothing from the
 * database but `read`: the pooled connection is held for that statement
 * only and given back before the rate limit is counted. The same answers,
 * in the same order (401 and 403 before 429). */
dm_err *dm_http_member_read(request_rec *r, dm_http_member_read_fn read, void *baton, dm_member *m);
/* CORS headers for an allowed Origin; with allow_methods, a preflight
 * answer's headers. Returns 1 when the origin is allowed. */
int dm_http_cors(request_rec *r, const char *allow_methods);
/* Query parameters of the request (ap_args_to_table). */
const char *dm_http_arg(request_rec *r, const char *name);
/* A query parameter as a filter: *out NULL when absent or empty;
 * DM_E_INVALID naming it when longer than max bytes. */
dm_err *dm_http_arg_max(request_rec *r, const char *name, apr_size_t max, const char **out);
/* The usual list paging: ?limit= (1..200, default 50) and ?cursor=
 * (opaque; here a positive id). */
dm_err *dm_http_paging(request_rec *r, int *limit, int64_t *cursor);
/* The route's {id} as a positive number; else DM_E_INVALID on field "id",
 * "the <what> id must be a positive number" ("the id …" when what is NULL). */
dm_err *dm_http_id_param(request_rec *r, const dm_route_match *m, const char *what, int64_t *id);
/* Every list endpoint's guard: each query parameter's name must be one of
 * `allowed` (names separated by spaces; NULL or "": none). Otherwise
 * DM_E_INVALID (400 "invalid") naming the first unknown parameter as its
 * field, the message listing what the endpoint takes. A filter a client
 * misspells is refused instead of silently ignored. */
dm_err *dm_http_check_args(request_rec *r, const char *allowed);

/* A paginated list endpoint, in one shape:
 *
 *     dm_http_page pg;
 *     dm_err *e = dm_http_page_begin(r, m, DM_HTTP_STAFF, "status user_id", &pg);
 *     (filters: if (!e) e = dm_http_arg_max(…);)
 *     if (!e) e = dm_x_list(pg.db, r->pool, …, pg.cursor, pg.limit, &pg.rows, &pg.next);
 *     return dm_http_page_send(r, e, &pg, "xs", x_row);
 *
 * begin takes a pooled connection, authenticates the caller (staff through
 * dm_http_staff_db, with its role table, or a member through dm_http_member),
 * refuses any query parameter but ?limit=, ?cursor= and the `filters`
 * named (space-separated; NULL: none) with dm_http_check_args, and reads
 * ?limit= and ?cursor=; send answers the error, or 200
 * {"<plural>": [row_json(row)…], "next_cursor": …}. */
typedef enum { DM_HTTP_STAFF, DM_HTTP_MEMBER } dm_http_caller;

typedef struct dm_http_page {
    dm_http_caller who;
    dm_db *db;
    dm_staff staff;           /* DM_HTTP_STAFF */
    dm_member member;         /* DM_HTTP_MEMBER */
    int limit;                /* ?limit= (1..200, default 50) */
    int64_t cursor;           /* ?cursor= (0: the first page) */
    apr_array_header_t *rows; /* set by the handler's list call */
    int64_t next;             /* set by the handler's list call; 0: the last page */
} dm_http_page;

/* One element of pg->rows as JSON; staff_view is 1 when staff asked. */
typedef json_t *dm_http_row_json(apr_pool_t *p, const void *row, int staff_view);

dm_err *dm_http_page_begin(request_rec *r, const dm_route_match *m, dm_http_caller who,
                           const char *filters, dm_http_page *pg);
int dm_http_page_send(request_rec *r, dm_err *e, const dm_http_page *pg, const char *plural,
                      dm_http_row_json *row_json);

/* ratelimit.c — the limiter (shared memory, or memcached through
 * ratelimit_memcache.c: DeepMineRateLimitStore). Checks and counts one hit of
 * `rule` for `key` (an IP or a member id); on refusal returns
 * DM_E_RATE_LIMITED and has set Retry-After and RateLimit-Policy/RateLimit
 * on r->err_headers_out. Also sets the RateLimit headers when allowed. */
dm_err *dm_http_rate_limit(request_rec *r, const char *rule, const char *key);
/* ---- ratelimit.c: hooks and directives (rate-limiter issue) ---- */
int dm_ratelimit_pre_config(apr_pool_t *pconf);
int dm_ratelimit_post_config(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s);
void dm_ratelimit_child_init(apr_pool_t *pchild, server_rec *s);
const char *dm_ratelimit_set_rule(cmd_parms *cmd, void *dc, const char *name, const char *rate,
                                  const char *scope);
const char *dm_ratelimit_set_table(cmd_parms *cmd, void *dc, const char *arg);
/* ---- end ratelimit.c ---- */

/* ---- ratelimit_memcache.c: the store several nodes share (issue 17) ---- */
struct dm_rl_rule;
struct dm_rl_result;
const char *dm_ratelimit_set_store(cmd_parms *cmd, void *dc, int argc, char *const argv[]);
const char *dm_ratelimit_set_unreachable(cmd_parms *cmd, void *dc, const char *arg);
const char *dm_ratelimit_set_store_timeout(cmd_parms *cmd, void *dc, const char *arg);
int dm_ratelimit_store_pre_config(void);
int dm_ratelimit_store_post_config(apr_pool_t *pconf, server_rec *s);
void dm_ratelimit_store_child_init(apr_pool_t *pchild, server_rec *s);
/* 1: DeepMineRateLimitStore is memcache. */
int dm_ratelimit_store_is_shared(void);
/* Counts one hit in memcached. 1 when *res holds the answer; 0 when the
 * store could not be reached: then *err is NULL to admit the request
 * (DeepMineRateLimitUnreachable open) or a 503 unavailable (closed, with
 * Retry-After set). */
int dm_ratelimit_store_hit(request_rec *r, const struct dm_rl_rule *rule, const char *key,
                           struct dm_rl_result *res, dm_err **err);
/* ---- end ratelimit_memcache.c ---- */

/* monitor.c — error reports to the monitor plugins (docs/operations.md,
 * "Error reporting"): the queue in shared memory (post_config), the hooks
 * that fill it, and the drain the cron daemon runs. dm_monitor_stats: the
 * queue's counters (0 when no monitor plugin is declared). */
struct dm_mq_stats;
int dm_monitor_post_config(apr_pool_t *pconf, server_rec *s);
void dm_monitor_register_hooks(void);
void dm_monitor_request_start(request_rec *r);
void dm_monitor_drain(apr_pool_t *p, server_rec *s);
int dm_monitor_stats(struct dm_mq_stats *out);

/* ---- metrics.c: the shared metrics region, request counting, the
 * deepmine-metrics handler and the Prometheus answer ---- */
const char *dm_metrics_set_token(cmd_parms *cmd, void *dc, const char *arg);
/* Makes (or keeps) the region and attaches it; before the cron daemon's
 * fork, so the daemon counts into it too. */
int dm_metrics_post_config(server_rec *s);
void dm_metrics_register_hooks(apr_pool_t *p);
/* The Prometheus answer (200, text/plain; version=0.0.4). */
int dm_http_metrics_send(request_rec *r);
/* Counts the request now (once), before its answer is sent from the
 * handler (respond.c). */
void dm_http_metrics_count_now(request_rec *r);
/* The request carries "Authorization: Bearer <DeepMineMetricsToken>". */
int dm_http_metrics_token_ok(request_rec *r);

/* cron_daemon.c — forks the cron daemon (DeepMineCron on) from the
 * parent's post_config; and the job environment built from the
 * configuration (also used by POST /api/admin/jobs/{job}/run). */
struct dm_job_env;
int dm_cron_daemon_post_config(apr_pool_t *pconf, server_rec *s);
void dm_cron_env(const dm_conf *c, struct dm_job_env *env);

/* routes_*.c: each a table ending with {NULL, NULL, NULL}. */
extern const dm_route_def dm_routes_public[];
extern const dm_route_def dm_routes_auth[];
extern const dm_route_def dm_routes_me[];
extern const dm_route_def dm_routes_admin[];
extern const dm_route_def dm_routes_ledger[];
extern const dm_route_def dm_routes_plugins[];
extern const dm_route_def dm_routes_withdrawals[];
extern const dm_route_def dm_routes_catalogue_admin[];
extern const dm_route_def dm_routes_commissions[];
extern const dm_route_def dm_routes_orders[];
extern const dm_route_def dm_routes_accrual[];
extern const dm_route_def dm_routes_jobs[];
extern const dm_route_def dm_routes_email[];
extern const dm_route_def dm_routes_stats[]; /* routes/stats.c: statistics, CSV exports */

extern const dm_route_def dm_routes_ops[];
extern const dm_route_def dm_routes_kyc[];
extern const dm_route_def dm_routes_twofa[];
extern const dm_route_def dm_routes_gdpr[]; /* routes/gdpr.c: members' data */

/* routes/admin.c — how every /api/admin handler but login/logout starts: a
 * pooled connection and the calling staff member: a live dm_admin session
 * (a member's cookie or Bearer token never counts; 401), CSRF on writes,
 * and the role table: DM_E_FORBIDDEN when the staff member's role may not
 * use the matched route. */
dm_err *dm_http_staff_db(request_rec *r, const dm_route_match *m, dm_db **db, dm_staff *out);

#endif
