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
/* How long a request waits for a password-hashing slot before 503. */
#define DM_HASH_WAIT_MS 2000

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
    long long wd_min; /* DeepMineWithdrawalLimits <min> <max> <daily>; -1 unset */
    long long wd_max;
    long long wd_daily;
    int cron;               /* DeepMineCron on|off; -1 unset (on) */
    int test_mode;          /* DeepMineTestMode on|off; -1 unset (off) */
    const char *clock_file; /* DeepMineClockFile (test mode only) */
    int accrual_delay;      /* DeepMineAccrualDelay seconds; -1 unset */
    const char *mail_from;  /* DeepMineMailFrom */
    const char *mailer;     /* DeepMineMailer: the mailer plugin the queue uses */
    int job_batch;          /* DeepMineJobBatch: rows per transaction in batch jobs; -1 unset */
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
int dm_conf_cron(const dm_conf *c);
int dm_conf_test_mode(const dm_conf *c);
int dm_conf_accrual_delay(const dm_conf *c);
#define DM_DEFAULT_ACCRUAL_DELAY 120

/* respond.c — every API answer goes through these. */
int dm_http_json(request_rec *r, int status, const char *body, apr_size_t len);
int dm_http_error(request_rec *r, const dm_err *e);
/* A small HTML page (text/html, no-store, the API's security headers). */
int dm_http_html(request_rec *r, int status, const char *body, apr_size_t len);
int dm_http_fail(request_rec *r, dm_code code, const char *field, const char *msg);
/* A JSON answer from a jansson value (taken over: released with the
 * request). */
int dm_http_send_json(request_rec *r, int status, json_t *o);
/* A list page's "next_cursor": the cursor as a string, or null for none. */
json_t *dm_http_cursor_json(apr_pool_t *p, int64_t next);
/* 200 {"<plural>": arr, "next_cursor": …} (arr taken over). */
int dm_http_send_page(request_rec *r, const char *plural, json_t *arr, int64_t next);
/* Cached, validator-carrying answer: ETag + 304 on If-None-Match. */
int dm_http_cached_json(request_rec *r, const dm_rendered *doc);
/* The request body as received, at most DeepMineMaxBody bytes (streamed;
 * 413 beyond, also for a chunked body), NUL-terminated, never parsed:
 * webhook signatures are computed over these exact bytes. */
dm_err *dm_http_read_body(request_rec *r, const char **out, apr_size_t *out_len);
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
int dm_http_origin_allowed(request_rec *r, const char *origin);
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

/* ratelimit.c — the shared-memory limiter. Checks and counts one hit of
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

/* routes_admin.c — the calling staff member: a live dm_admin session (a
 * member's cookie or Bearer token never counts; 401), CSRF on writes, and
 * the role table: DM_E_FORBIDDEN when the staff member's role may not use
 * the matched route. Every /api/admin route but login/logout calls it. */
dm_err *dm_http_staff(request_rec *r, dm_db *db, const dm_route_match *m, dm_staff *out);
/* A pooled connection, then dm_http_staff on it: how every admin handler
 * starts. */
dm_err *dm_http_staff_db(request_rec *r, const dm_route_match *m, dm_db **db, dm_staff *out);

#endif
