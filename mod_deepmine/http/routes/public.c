/*
 * routes/public.c — endpoints anyone may call: health and the catalogue.
 */
#include "dm_http.h"

#include <apr_strings.h>

/* A heartbeat older than this (seconds) makes the server degraded. */
#define DM_CRON_STALE 60

#include "base/clock.h"
#include "cron/cron.h"
#include "base/json.h"
#include "store/migrate.h"

/* The cron daemon's part of the health answer. Degraded when cron is on and
 * its newest heartbeat is older than a minute, or when there has been none
 * for a minute since this server started. */
static json_t *cron_health(request_rec *r, dm_db *db, int *ok)
{
    const dm_conf *c = dm_conf_get(r->server);
    int64_t age = 0;
    int found = 0;
    json_t *o = json_object();
    dm_err *e;

    *ok = 1;
    json_object_set_new(o, "enabled", json_boolean(dm_conf_cron(c)));
    e = dm_cron_heartbeat_age(db, r->pool, &age, &found);
    if (e || !found) {
        json_object_set_new(o, "heartbeat_age_s", json_null());
        json_object_set_new(o, "last_heartbeat", json_null());
    } else {
        json_object_set_new(o, "heartbeat_age_s", json_integer(age));
        json_object_set_new(o, "last_heartbeat",
                            json_string(dm_json_time(r->pool, dm_now() - age)));
    }
    if (dm_conf_cron(c)) {
        const char *state = "ok";
        if (e) {
            state = "unknown";
            *ok = 0;
        } else if (found && age > DM_CRON_STALE) {
            state = "stale";
            *ok = 0;
        } else if (!found) {
            state = dm_now() - dm_g.started_at > DM_CRON_STALE ? "missing" : "starting";
            *ok = strcmp(state, "starting") == 0;
        }
        json_object_set_new(o, "status", json_string(state));
    } else {
        json_object_set_new(o, "status", json_string("off"));
    }
    return o;
}

static int health(request_rec *r, const dm_route_match *m)
{
    const dm_conf *c = dm_conf_get(r->server);
    json_t *cron = NULL;
    int cron_ok = 1;
    dm_db *db;
    dm_err *e = dm_db_pool_acquire(dm_g.db, r->pool, &db);
    int schema = 0, storage = 0;
    json_t *o;
    const char *body;
    size_t len;

    if (!e) {
        e = dm_migrate_version(db, r->pool, &schema);
    }
    if (!e && schema != dm_migrate_latest()) {
        /* Another node or deepminectl moved the schema on (or back): this
         * server's queries may no longer match it. */
        e = dm_err_make(r->pool, DM_E_UNAVAILABLE, NULL,
                        "database schema is %d, this server is built for %d", schema,
                        dm_migrate_latest());
    }
    if (!e) {
        cron = cron_health(r, db, &cron_ok);
    }
    /* Reads still work on a full disk; what the last write met is shared
     * by every process (store/db.h). */
    storage = dm_db_storage_full();
    if (!e && storage) {
        e = dm_err_make(r->pool, DM_E_UNAVAILABLE, NULL, "the database's storage %s",
                        storage == 1 ? "is full" : "fails with I/O errors");
        apr_table_setn(r->err_headers_out, "Retry-After", DM_STORAGE_RETRY_AFTER);
    }
    o = dm_json_own(r->pool, json_object());
    json_object_set_new(o, "status", json_string(e || !cron_ok ? "degraded" : "ok"));
    json_object_set_new(o, "version", json_string(DM_VERSION));
    json_object_set_new(o, "schema", json_integer(schema));
    json_object_set_new(o, "database",
                        json_string(storage == 1   ? "full"
                                    : storage == 2 ? "io_error"
                                    : e            ? "unavailable"
                                                   : "ok"));
    if (cron) {
        json_object_set_new(o, "cron", cron);
    }
    if (dm_conf_test_mode(c)) {
        json_object_set_new(o, "test_mode", json_true());
        json_object_set_new(o, "clock", json_string(dm_json_time(r->pool, dm_now())));
    }
    body = dm_json_dump(r->pool, o, &len);
    if (e) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, "DM00030: health: database unwell: %s",
                      e->message);
    }
    return dm_http_json(r, e || !cron_ok ? HTTP_SERVICE_UNAVAILABLE : HTTP_OK, body, len);
}

static int packages_list(request_rec *r, const dm_route_match *m)
{
    dm_rendered doc;
    dm_err *e = dm_catalogue_cache_list(dm_g.catalogue, dm_g.db, r->pool, &doc);

    return e ? dm_http_error(r, e) : dm_http_cached_json(r, &doc);
}

static int package_one(request_rec *r, const dm_route_match *m)
{
    dm_rendered doc;
    int64_t id = 0;
    dm_err *e = dm_http_id_param(r, m, "package", &id);

    if (!e) {
        e = dm_catalogue_cache_one(dm_g.catalogue, dm_g.db, r->pool, id, &doc);
    }
    return e ? dm_http_error(r, e) : dm_http_cached_json(r, &doc);
}

static int legal(request_rec *r, const dm_route_match *m)
{
    const char *which = apr_table_get(m->params, "doc");
    const dm_legal_doc *d = NULL;

    if (strcmp(which, "terms") == 0) {
        d = &dm_g.svc.legal->terms;
    } else if (strcmp(which, "privacy") == 0) {
        d = &dm_g.svc.legal->privacy;
    }
    if (!d) {
        return dm_http_fail(r, DM_E_NOT_FOUND, NULL, "the legal documents are terms and privacy");
    }
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    return dm_http_json(r, HTTP_OK, d->json, strlen(d->json));
}

const dm_route_def dm_routes_public[] = {
    {"GET", "/api/legal/{doc}", legal},
    {"GET", "/api/health", health},
    {"GET", "/api/packages", packages_list},
    {"GET", "/api/packages/{id}", package_one},
    {NULL, NULL, NULL},
};
