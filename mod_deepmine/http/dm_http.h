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

#include "catalogue.h"
#include "db_pool.h"
#include "err.h"
#include "plugin_host.h"
#include "router.h"

extern module AP_MODULE_DECLARE_DATA deepmine_module;
APLOG_USE_MODULE(deepmine);

#define DM_VERSION "0.1.0"

/* Defaults, applied by the getters in config.c when a directive is unset. */
#define DM_DEFAULT_DATABASE "/var/lib/deepmine/deepmine.db"
#define DM_DEFAULT_MAX_BODY ((apr_off_t)1024 * 1024)
#define DM_SECRET_KEY_BYTES 32

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
} dm_conf;

/* Process-wide state: built in post_config (router, plugins) and
 * child_init (database pool, catalogue cache). */
typedef struct dm_state {
    dm_router *router;
    dm_plugin_host *plugins; /* of the current configuration pass */
    dm_db_pool *db;          /* per child */
    dm_catalogue_cache *catalogue; /* per child */
    int schema_version;
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

/* respond.c — every API answer goes through these. */
int dm_http_json(request_rec *r, int status, const char *body, apr_size_t len);
int dm_http_error(request_rec *r, const dm_err *e);
int dm_http_fail(request_rec *r, dm_code code, const char *field, const char *msg);
/* Cached, validator-carrying answer: ETag + 304 on If-None-Match. */
int dm_http_cached_json(request_rec *r, const dm_rendered *doc);
/* Reads a JSON object body, at most DeepMineMaxBody bytes (streamed; 413
 * beyond). */
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

/* routes_*.c: each a table ending with {NULL, NULL, NULL}. */
extern const dm_route_def dm_routes_public[];

#endif
