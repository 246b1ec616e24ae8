/*
 * catalogue.c — packages, and the per-process rendered catalogue (see
 * catalogue.h for the cache's contract).
 *
 * Concurrency: a snapshot (rendered list + one rendering per package) is
 * immutable once built. Readers copy the bytes they need under a read lock;
 * one thread at a time rebuilds (refresh_lock) and swaps the snapshot under
 * the write lock, then frees the old one once no reader can hold it.
 */
#include "shop/catalogue.h"

#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <apr_thread_rwlock.h>
#include <sodium.h>
#include <string.h>

#include "base/clock.h"
#include "shop/capacity.h"
#include "base/json.h"
#include "base/log.h"

#define PKG_COLUMNS                                                                                \
    "id, name, hashrate_ghs, price_micros, daily_yield_micros, duration_days, currency, active, "  \
    "sort_order, yield_mode, fee_bp"

static void read_package(dm_stmt *st, apr_pool_t *p, dm_package *pkg)
{
    pkg->id = dm_stmt_int64(st, 0);
    pkg->name = apr_pstrdup(p, dm_stmt_text(st, 1, NULL));
    pkg->hashrate_ghs = dm_stmt_int64(st, 2);
    pkg->price_micros = dm_stmt_int64(st, 3);
    pkg->daily_yield_micros = dm_stmt_int64(st, 4);
    pkg->duration_days = dm_stmt_int64(st, 5);
    pkg->currency = apr_pstrdup(p, dm_stmt_text(st, 6, NULL));
    pkg->active = (int)dm_stmt_int64(st, 7);
    pkg->sort_order = dm_stmt_int64(st, 8);
    pkg->yield_mode =
        strcmp(dm_stmt_text(st, 9, NULL), DM_YIELD_POOL) == 0 ? DM_YIELD_POOL : DM_YIELD_FIXED;
    pkg->fee_bp = dm_stmt_int64(st, 10);
}

dm_err *dm_catalogue_list(dm_db *db, apr_pool_t *p, int active_only, apr_array_header_t **out)
{
    dm_stmt *st;
    dm_err *e;
    int row = 0;
    apr_array_header_t *list = apr_array_make(p, 8, sizeof(dm_package));

    e = dm_db_prepare(db, p,
                      "SELECT " PKG_COLUMNS " FROM packages WHERE active >= ? "
                      "ORDER BY sort_order, id",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, active_only ? 1 : 0);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        read_package(st, p, apr_array_push(list));
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    *out = list;
    return NULL;
}

dm_err *dm_catalogue_insert(dm_db *db, apr_pool_t *p, dm_package *pkg)
{
    dm_stmt *st;
    dm_err *e;
    int64_t now = dm_now();
    int row = 0;

    e = dm_db_prepare(db, p,
                      "INSERT INTO packages (name, hashrate_ghs, price_micros, daily_yield_micros, "
                      "duration_days, currency, active, sort_order, created_at, updated_at, "
                      "yield_mode, fee_bp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                      "RETURNING id",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_text(st, 1, pkg->name, strlen(pkg->name));
    dm_stmt_bind_int64(st, 2, pkg->hashrate_ghs);
    dm_stmt_bind_int64(st, 3, pkg->price_micros);
    dm_stmt_bind_int64(st, 4, pkg->daily_yield_micros);
    dm_stmt_bind_int64(st, 5, pkg->duration_days);
    dm_stmt_bind_text(st, 6, pkg->currency, strlen(pkg->currency));
    dm_stmt_bind_int64(st, 7, pkg->active);
    dm_stmt_bind_int64(st, 8, pkg->sort_order);
    dm_stmt_bind_int64(st, 9, now);
    dm_stmt_bind_int64(st, 10, now);
    if (!pkg->yield_mode) {
        pkg->yield_mode = DM_YIELD_FIXED;
    }
    dm_stmt_bind_text(st, 11, pkg->yield_mode, strlen(pkg->yield_mode));
    dm_stmt_bind_int64(st, 12, pkg->fee_bp);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        pkg->id = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_catalogue_get(dm_db *db, apr_pool_t *p, int64_t id, dm_package *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, "SELECT " PKG_COLUMNS " FROM packages WHERE id = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        read_package(st, p, out);
    }
    dm_stmt_done(st);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "package %" APR_INT64_T_FMT " does not exist",
                        (apr_int64_t)id);
    }
    return e;
}

dm_err *dm_catalogue_update(dm_db *db, apr_pool_t *p, const dm_package *pkg)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "UPDATE packages SET name = ?, hashrate_ghs = ?, price_micros = ?, "
                              "daily_yield_micros = ?, duration_days = ?, active = ?, "
                              "sort_order = ?, updated_at = ?, yield_mode = ?, fee_bp = ? "
                              "WHERE id = ?",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_text(st, 1, pkg->name, strlen(pkg->name));
    dm_stmt_bind_int64(st, 2, pkg->hashrate_ghs);
    dm_stmt_bind_int64(st, 3, pkg->price_micros);
    dm_stmt_bind_int64(st, 4, pkg->daily_yield_micros);
    dm_stmt_bind_int64(st, 5, pkg->duration_days);
    dm_stmt_bind_int64(st, 6, pkg->active);
    dm_stmt_bind_int64(st, 7, pkg->sort_order);
    dm_stmt_bind_int64(st, 8, dm_now());
    dm_stmt_bind_text(st, 9, pkg->yield_mode ? pkg->yield_mode : DM_YIELD_FIXED,
                      strlen(pkg->yield_mode ? pkg->yield_mode : DM_YIELD_FIXED));
    dm_stmt_bind_int64(st, 10, pkg->fee_bp);
    dm_stmt_bind_int64(st, 11, pkg->id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

dm_err *dm_catalogue_seed_demo(dm_db *db, apr_pool_t *p, int *inserted)
{
    /* hash rate in GH/s, money in micro-USD; both yield modes, so the
     * pages show both (a pool package's daily yield is the operator's
     * estimate: what it credits is the pool's output less the fee) */
    static const dm_package demo[] = {
        {0, "Trial 0.5 TH/s", 500, 5000000, 800000, 7, "USD", 1, 10, DM_YIELD_FIXED, 0},
        {0, "Starter 5 TH/s", 5000, 29000000, 1100000, 30, "USD", 1, 20, DM_YIELD_FIXED, 0},
        {0, "Basic 20 TH/s", 20000, 99000000, 2100000, 60, "USD", 1, 30, DM_YIELD_FIXED, 0},
        {0, "Standard 50 TH/s", 50000, 239000000, 3400000, 90, "USD", 1, 40, DM_YIELD_POOL, 500},
        {0, "Pro 120 TH/s", 120000, 549000000, 4050000, 180, "USD", 1, 50, DM_YIELD_POOL, 400},
        {0, "Elite 300 TH/s", 300000, 1290000000, 4700000, 365, "USD", 1, 60, DM_YIELD_POOL, 300},
    };
    int64_t count = 0;
    int found;
    dm_err *e;

    *inserted = 0;
    e = dm_db_begin(db, p);
    if (e) {
        return e;
    }
    e = dm_db_query_int64(db, p, "SELECT COUNT(*) FROM packages", &count, &found);
    for (size_t i = 0; !e && count == 0 && i < sizeof(demo) / sizeof(demo[0]); i++) {
        dm_package pkg = demo[i];
        e = dm_catalogue_insert(db, p, &pkg);
        if (!e) {
            (*inserted)++;
        }
    }
    if (e) {
        dm_db_rollback(db);
        *inserted = 0;
        return e;
    }
    return dm_db_commit(db, p);
}

dm_err *dm_catalogue_generation(dm_db *db, apr_pool_t *p, int64_t *gen)
{
    int found;
    dm_err *e = dm_db_query_int64(db, p, "SELECT generation FROM catalogue_state WHERE id = 1", gen,
                                  &found);
    if (!e && !found) {
        *gen = 0;
    }
    return e;
}

dm_err *dm_catalogue_count(dm_db *db, apr_pool_t *p, int64_t *total, int64_t *active)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e =
        dm_db_prepare(db, p, "SELECT COUNT(*), COALESCE(SUM(active = 1), 0) FROM packages", &st);

    *total = *active = 0;
    if (e) {
        return e;
    }
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        *total = dm_stmt_int64(st, 0);
        *active = dm_stmt_int64(st, 1);
    }
    dm_stmt_done(st);
    return e;
}

json_t *dm_package_json(const dm_package *pkg)
{
    json_t *o = json_object();
    json_t *ths = dm_json_ths(pkg->hashrate_ghs);

    json_object_set_new(o, "id", json_integer(pkg->id));
    json_object_set_new(o, "name", json_string(pkg->name));
    json_object_set_new(o, "hashrate_ths", ths);
    json_object_set_new(o, "price_micros", json_integer(pkg->price_micros));
    json_object_set_new(o, "daily_yield_micros", json_integer(pkg->daily_yield_micros));
    json_object_set_new(o, "duration_days", json_integer(pkg->duration_days));
    json_object_set_new(o, "currency", json_string(pkg->currency));
    json_object_set_new(o, "yield_mode",
                        json_string(pkg->yield_mode ? pkg->yield_mode : DM_YIELD_FIXED));
    json_object_set_new(o, "fee_bp", json_integer(pkg->fee_bp));
    return o;
}

/* ---- the per-process cache ---- */

typedef struct rendered_bytes {
    const char *body;
    size_t len;
    const char *etag;
} rendered_bytes;

typedef struct snapshot {
    apr_pool_t *pool;
    int64_t generation;
    rendered_bytes list;
    apr_hash_t *by_id; /* int64 id -> rendered_bytes */
} snapshot;

struct dm_catalogue_cache {
    apr_pool_t *pool;
    apr_thread_rwlock_t *rw;     /* guards `snap` */
    apr_thread_mutex_t *refresh; /* one rebuilder at a time */
    snapshot *snap;
    apr_interval_time_t revalidate;
    apr_time_t last_check; /* read without the lock: a stale value only delays */
};

dm_err *dm_catalogue_cache_create(apr_pool_t *p, apr_interval_time_t revalidate,
                                  dm_catalogue_cache **out)
{
    dm_catalogue_cache *c = apr_pcalloc(p, sizeof(*c));

    c->pool = p;
    c->revalidate = revalidate;
    if (apr_thread_rwlock_create(&c->rw, p) != APR_SUCCESS ||
        apr_thread_mutex_create(&c->refresh, APR_THREAD_MUTEX_DEFAULT, p) != APR_SUCCESS) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "cannot create catalogue cache locks");
    }
    *out = c;
    return NULL;
}

static void render(apr_pool_t *p, json_t *v, rendered_bytes *out)
{
    unsigned char h[crypto_hash_sha256_BYTES];
    char hex[2 * 12 + 1];

    out->body = dm_json_dump(p, v, &out->len);
    /* A content hash, so every child and every node agrees on the ETag. */
    crypto_hash_sha256(h, (const unsigned char *)out->body, out->len);
    sodium_bin2hex(hex, sizeof(hex), h, 12);
    out->etag = apr_pstrcat(p, "\"", hex, "\"", NULL);
}

static dm_err *build(dm_catalogue_cache *c, dm_db *db, apr_pool_t *tmp, int64_t gen, snapshot **out)
{
    apr_array_header_t *pkgs = NULL;
    int64_t available = 0;
    dm_err *e = dm_catalogue_list(db, tmp, 1, &pkgs);
    apr_pool_t *sp;
    snapshot *s;
    json_t *arr, *root;

    if (!e) {
        e = dm_capacity_available(db, tmp, &available);
    }
    if (e) {
        return e;
    }
    apr_pool_create(&sp, c->pool);
    s = apr_pcalloc(sp, sizeof(*s));
    s->pool = sp;
    s->generation = gen;
    s->by_id = apr_hash_make(sp);
    arr = json_array();
    for (int i = 0; i < pkgs->nelts; i++) {
        const dm_package *pkg = &APR_ARRAY_IDX(pkgs, i, dm_package);
        json_t *one = dm_package_json(pkg);
        json_t *wrap;
        rendered_bytes *rb;
        int64_t *key;

        /* What capacity is left (capacity.h); a cached answer, so it is as
         * fresh as the catalogue generation. */
        json_object_set_new(one, "sold_out", json_boolean(pkg->hashrate_ghs > available));
        wrap = json_pack("{s:O}", "package", one);
        rb = apr_pcalloc(sp, sizeof(*rb));
        key = apr_pmemdup(sp, &pkg->id, sizeof(pkg->id));

        render(sp, wrap, rb);
        apr_hash_set(s->by_id, key, sizeof(*key), rb);
        json_decref(wrap);
        json_array_append_new(arr, one);
    }
    root = json_pack("{s:o,s:o}", "packages", arr, "available_ths", dm_json_ths(available));
    render(sp, root, &s->list);
    json_decref(root);
    *out = s;
    return NULL;
}

/* Brings the snapshot up to date if the interval has passed. Serves the old
 * snapshot while another thread rebuilds; waits only when there is none. */
static dm_err *revalidate(dm_catalogue_cache *c, dm_db_pool *dbp, apr_pool_t *rp)
{
    apr_time_t now = apr_time_now();
    apr_time_t last = __atomic_load_n(&c->last_check, __ATOMIC_RELAXED);
    snapshot *old = NULL, *fresh = NULL;
    dm_err *e = NULL;
    dm_db *db;
    int64_t gen;

    if (c->snap && now - last < c->revalidate) {
        return NULL;
    }
    if (c->snap) {
        if (apr_thread_mutex_trylock(c->refresh) != APR_SUCCESS) {
            return NULL;
        }
    } else {
        apr_thread_mutex_lock(c->refresh);
        if (c->snap) {
            apr_thread_mutex_unlock(c->refresh);
            return NULL;
        }
    }
    e = dm_db_pool_acquire(dbp, rp, &db);
    if (!e) {
        e = dm_catalogue_generation(db, rp, &gen);
    }
    if (!e && (!c->snap || c->snap->generation != gen)) {
        e = build(c, db, rp, gen, &fresh);
    }
    if (!e) {
        dm_db_pool_release(dbp, rp, db);
    }
    if (fresh) {
        apr_thread_rwlock_wrlock(c->rw);
        old = c->snap;
        c->snap = fresh;
        apr_thread_rwlock_unlock(c->rw);
        if (old) {
            apr_pool_destroy(old->pool);
        }
    }
    if (!e) {
        __atomic_store_n(&c->last_check, now, __ATOMIC_RELAXED);
    } else if (c->snap) {
        dm_log(DM_L_WARN, "DM00002: cannot revalidate the catalogue, serving the cached one: %s",
               e->message);
        e = NULL;
    }
    apr_thread_mutex_unlock(c->refresh);
    return e;
}

static void copy_out(apr_pool_t *rp, const rendered_bytes *rb, dm_rendered *out)
{
    out->body = apr_pmemdup(rp, rb->body, rb->len);
    out->len = rb->len;
    out->etag = apr_pstrdup(rp, rb->etag);
}

dm_err *dm_catalogue_cache_list(dm_catalogue_cache *c, dm_db_pool *dbp, apr_pool_t *rp,
                                dm_rendered *out)
{
    dm_err *e = revalidate(c, dbp, rp);

    if (e) {
        return e;
    }
    apr_thread_rwlock_rdlock(c->rw);
    copy_out(rp, &c->snap->list, out);
    apr_thread_rwlock_unlock(c->rw);
    return NULL;
}

dm_err *dm_catalogue_cache_one(dm_catalogue_cache *c, dm_db_pool *dbp, apr_pool_t *rp, int64_t id,
                               dm_rendered *out)
{
    dm_err *e = revalidate(c, dbp, rp);
    const rendered_bytes *rb;

    if (e) {
        return e;
    }
    apr_thread_rwlock_rdlock(c->rw);
    rb = apr_hash_get(c->snap->by_id, &id, sizeof(id));
    if (rb) {
        copy_out(rp, rb, out);
    }
    apr_thread_rwlock_unlock(c->rw);
    return rb ? NULL
              : dm_err_make(rp, DM_E_NOT_FOUND, NULL,
                            "package %" APR_INT64_T_FMT " does not exist or is not on sale",
                            (apr_int64_t)id);
}

void dm_catalogue_cache_invalidate(dm_catalogue_cache *c)
{
    __atomic_store_n(&c->last_check, 0, __ATOMIC_RELAXED);
}
