/*
 * routes/public.c — endpoints anyone may call: health and the catalogue.
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <apr_time.h>
#include <pthread.h>

/* A heartbeat older than this (seconds) makes the server degraded. */
#define DM_CRON_STALE 60

#include "base/clock.h"
#include "cron/cron.h"
#include "base/json.h"
#include "store/migrate.h"

/* What GET /api/health asks the database: the schema version and the
 * newest cron heartbeat. Everything derived from them (ages, states, the
 * clock) is computed per request. */
typedef struct health_probe {
    int schema;
    dm_err *hb_err; /* the heartbeat query failed */
    int hb_found;
    int64_t hb_newest;
} health_probe;

static dm_err *health_probe_run(dm_db *db, apr_pool_t *p, health_probe *hp)
{
    dm_err *e = dm_migrate_version_fast(db, p, &hp->schema);

    if (!e) {
        hp->hb_err = dm_cron_heartbeat_newest(db, p, &hp->hb_newest, &hp->hb_found);
    }
    return e;
}

/* The probe's answers are kept per child and per connection for at most
 * DM_HEALTH_CACHE_FOR, and only while SQLite's data_version of that
 * connection is unchanged: a commit by any other connection (another
 * child, the cron daemon's heartbeat, deepminectl, the sqlite3 shell)
 * makes the next request ask again, so the answer is never older than
 * the database; the second bounds what data_version cannot see (a commit
 * on the same connection). A failed probe is never kept. Balancers poll
 * health often; this keeps it near the cost of a static answer
 * (docs/decisions.md "A cached health probe"). */
#define DM_HEALTH_CACHE_FOR apr_time_from_sec(1)
#define DM_HEALTH_SLOTS 64

typedef struct health_slot {
    const dm_db *db;
    int64_t data_version;
    apr_time_t at;
    health_probe probe;
} health_slot;

static struct {
    pthread_mutex_t lock;
    health_slot slot[DM_HEALTH_SLOTS];
    unsigned next; /* the slot a new connection takes (round robin) */
} health_cache = {PTHREAD_MUTEX_INITIALIZER, {{0}}, 0};

static dm_err *health_probe_cached(dm_db *db, apr_pool_t *p, health_probe *hp)
{
    int64_t version = 0;
    int found = 0, hit = 0;
    apr_time_t now = apr_time_now();
    health_slot *s = NULL;
    dm_err *e;

    if (dm_db_query_int64(db, p, "PRAGMA data_version", &version, &found) || !found) {
        return health_probe_run(db, p, hp);
    }
    pthread_mutex_lock(&health_cache.lock);
    for (int i = 0; i < DM_HEALTH_SLOTS && !s; i++) {
        if (health_cache.slot[i].db == db) {
            s = &health_cache.slot[i];
        }
    }
    if (s && s->data_version == version && now >= s->at && now - s->at < DM_HEALTH_CACHE_FOR) {
        *hp = s->probe;
        hit = 1;
    }
    pthread_mutex_unlock(&health_cache.lock);
    if (hit) {
        return NULL;
    }
    e = health_probe_run(db, p, hp);
    if (!e && !hp->hb_err) {
        pthread_mutex_lock(&health_cache.lock);
        if (!s || s->db != db) {
            s = &health_cache.slot[health_cache.next++ % DM_HEALTH_SLOTS];
        }
        s->db = db;
        s->data_version = version;
        s->at = now;
        s->probe = *hp;
        pthread_mutex_unlock(&health_cache.lock);
    }
    return e;
}

/* The probe's own connection (SQLite only), one per child, outside the
 * pool: a health check passes the pool's gate no more. Its data_version
 * check and its probe are a few microseconds under a mutex that only
 * health requests take, and they never wait for it: a request that finds
 * it taken, or the connection failing, goes the pooled way above, so the
 * answer is what the pool would have said. The connection only reads, so
 * every change to the two tables is another connection's commit, which
 * data_version shows; the second still bounds the answer (docs/decisions.md
 * "Health without the pool"). */
static struct {
    pthread_mutex_t lock;
    dm_db *db;
    apr_pool_t *pool; /* cleared after each probe */
    int kept;         /* `probe` is valid */
    int64_t data_version;
    apr_time_t at;
    health_probe probe;
} health_conn = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, 0, 0, 0, {0}};

void dm_health_child_init(apr_pool_t *pchild, const char *database)
{
    apr_pool_t *scratch;
    dm_db *db;

    if (!database || dm_db_is_postgres(database) ||
        apr_pool_create(&scratch, pchild) != APR_SUCCESS) {
        return;
    }
    if (!dm_db_open(pchild, database, NULL, &db)) {
        health_conn.db = db;
        health_conn.pool = scratch;
    }
}

/* 1 with *hp filled from the child's own connection; 0: use the pool. */
static int health_probe_own(health_probe *hp)
{
    int64_t version = 0;
    int found = 0, ok = 0;
    apr_time_t now;

    if (!health_conn.db || pthread_mutex_trylock(&health_conn.lock) != 0) {
        return 0;
    }
    now = apr_time_now();
    if (!dm_db_query_int64(health_conn.db, health_conn.pool, "PRAGMA data_version", &version,
                           &found) &&
        found) {
        if (health_conn.kept && health_conn.data_version == version && now >= health_conn.at &&
            now - health_conn.at < DM_HEALTH_CACHE_FOR) {
            *hp = health_conn.probe;
            ok = 1;
        } else if (!health_probe_run(health_conn.db, health_conn.pool, hp) && !hp->hb_err) {
            health_conn.kept = 1;
            health_conn.data_version = version;
            health_conn.at = now;
            health_conn.probe = *hp;
            ok = 1;
        } else {
            health_conn.kept = 0;
        }
    }
    apr_pool_clear(health_conn.pool);
    pthread_mutex_unlock(&health_conn.lock);
    return ok;
}

/* The cron daemon's part of the health answer. Degraded when cron is on and
 * its newest heartbeat is older than a minute, or when there has been none
 * for a minute since this server started. */
static void cron_health(request_rec *r, const health_probe *hp, dm_jbuf *b, int *ok)
{
    const dm_conf *c = dm_conf_get(r->server);
    int64_t now = dm_now();
    int64_t age = hp->hb_newest && now > hp->hb_newest ? now - hp->hb_newest : 0;
    int found = !hp->hb_err && hp->hb_found;

    *ok = 1;
    dm_jbuf_lit(b, "{\"enabled\":");
    dm_jbuf_bool(b, dm_conf_cron(c));
    if (!found) {
        dm_jbuf_lit(b, ",\"heartbeat_age_s\":null,\"last_heartbeat\":null");
    } else {
        dm_jbuf_lit(b, ",\"heartbeat_age_s\":");
        dm_jbuf_int(b, age);
        dm_jbuf_lit(b, ",\"last_heartbeat\":");
        dm_jbuf_time(b, now - age);
    }
    dm_jbuf_lit(b, ",\"status\":");
    if (dm_conf_cron(c)) {
        const char *state = "ok";
        if (hp->hb_err) {
            state = "unknown";
            *ok = 0;
        } else if (found && age > DM_CRON_STALE) {
            state = "stale";
            *ok = 0;
        } else if (!found) {
            state = now - dm_g.started_at > DM_CRON_STALE ? "missing" : "starting";
            *ok = strcmp(state, "starting") == 0;
        }
        dm_jbuf_str(b, state);
    } else {
        dm_jbuf_lit(b, "\"off\"");
    }
    dm_jbuf_lit(b, "}");
}

static int health(request_rec *r, const dm_route_match *m)
{
    const dm_conf *c = dm_conf_get(r->server);
    health_probe hp = {0};
    int cron_ok = 1;
    dm_db *db;
    dm_err *e = NULL;
    int storage = 0;
    dm_jbuf b, cron;

    if (!health_probe_own(&hp)) {
        hp = (health_probe){0};
        e = dm_db_pool_acquire(dm_g.db, r->pool, &db);
        if (!e) {
            e = health_probe_cached(db, r->pool, &hp);
            /* the rest reads the probe only: the answer goes out holding
             * no connection (respond.c sends it at once) */
            dm_db_pool_release(dm_g.db, r->pool, db);
        }
    }
    if (!e && hp.schema != dm_migrate_latest()) {
        /* Another node or deepminectl moved the schema on (or back): this
         * server's queries may no longer match it. */
        e = dm_err_make(r->pool, DM_E_UNAVAILABLE, NULL,
                        "database schema is %d, this server is built for %d", hp.schema,
                        dm_migrate_latest());
    }
    cron.len = 0;
    if (!e) {
        dm_jbuf_init(&cron, r->pool, 128);
        cron_health(r, &hp, &cron, &cron_ok);
    }
    /* Reads still work on a full disk; what the last write met is shared
     * by every process (store/db.h). */
    storage = dm_db_storage_full();
    if (!e && storage) {
        e = dm_err_make(r->pool, DM_E_UNAVAILABLE, NULL, "the database's storage %s",
                        storage == 1 ? "is full" : "fails with I/O errors");
        apr_table_setn(r->err_headers_out, "Retry-After", DM_STORAGE_RETRY_AFTER);
    }
    /* the members in the order of the jansson object this replaced */
    dm_jbuf_init(&b, r->pool, 256);
    dm_jbuf_lit(&b, e || !cron_ok ? "{\"status\":\"degraded\"" : "{\"status\":\"ok\"");
    dm_jbuf_lit(&b, ",\"version\":");
    dm_jbuf_str(&b, DM_VERSION);
    dm_jbuf_lit(&b, ",\"schema\":");
    dm_jbuf_int(&b, hp.schema);
    dm_jbuf_lit(&b, ",\"database\":");
    dm_jbuf_str(&b, storage == 1 ? "full" : storage == 2 ? "io_error" : e ? "unavailable" : "ok");
    if (cron.len) {
        dm_jbuf_lit(&b, ",\"cron\":");
        dm_jbuf_lit(&b, cron.p);
    }
    if (dm_conf_test_mode(c)) {
        dm_jbuf_lit(&b, ",\"test_mode\":true,\"clock\":");
        dm_jbuf_time(&b, dm_now());
    }
    dm_jbuf_lit(&b, "}");
    if (e) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, "DM00030: health: database unwell: %s",
                      e->message);
    }
    return dm_http_json(r, e || !cron_ok ? HTTP_SERVICE_UNAVAILABLE : HTTP_OK, b.p, b.len);
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
