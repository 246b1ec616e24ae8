/*
 * catalogue.h — the packages members can buy, and the rendered answer of
 * GET /api/packages that every child keeps in memory.
 *
 * The cache holds the catalogue rendered to JSON with its ETag. It is
 * revalidated at most once per interval against catalogue_state.generation
 * (bumped by triggers on every change to packages, whoever makes it), so a
 * change made anywhere — another child, another Apache node, deepminectl —
 * is served everywhere within one interval, and a change made through this
 * process is served at once (dm_catalogue_cache_invalidate).
 */
#ifndef DM_CATALOGUE_H
#define DM_CATALOGUE_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>
#include <jansson.h>
#include <stdint.h>

#include "store/db.h"
#include "store/db_pool.h"
#include "base/err.h"

typedef struct dm_package {
    int64_t id;
    const char *name;
    int64_t hashrate_ghs;
    int64_t price_micros;
    int64_t daily_yield_micros;
    int64_t duration_days;
    const char *currency;
    int active;
    int64_t sort_order;
    /* How yield accrues (copied to each contract at the sale):
     * DM_YIELD_POOL (the pool's recorded output, less fee_bp) or
     * DM_YIELD_FIXED (daily_yield_micros). NULL when inserting: fixed. */
    const char *yield_mode;
    int64_t fee_bp; /* pool mode's maintenance fee, 0..10000 */
} dm_package;

#define DM_YIELD_POOL "pool"
#define DM_YIELD_FIXED "fixed"

/* Active packages in catalogue order (or all, with active_only == 0);
 * an array of dm_package. */
dm_err *dm_catalogue_list(dm_db *db, apr_pool_t *p, int active_only, apr_array_header_t **out);

/* Adds a package (its id is set on return). Runs inside the caller's
 * transaction if one is open. */
dm_err *dm_catalogue_insert(dm_db *db, apr_pool_t *p, dm_package *pkg);

/* One package, active or not; DM_E_NOT_FOUND when absent. */
dm_err *dm_catalogue_get(dm_db *db, apr_pool_t *p, int64_t id, dm_package *out);

/* Writes every field of package pkg->id but its currency. In the caller's
 * transaction if one is open. */
dm_err *dm_catalogue_update(dm_db *db, apr_pool_t *p, const dm_package *pkg);

/* Inserts the demo catalogue of 6 packages (fixed and pool yield) when
 * there is no package at all;
 * `*inserted` is 0 when the catalogue already had packages. */
dm_err *dm_catalogue_seed_demo(dm_db *db, apr_pool_t *p, int *inserted);

dm_err *dm_catalogue_generation(dm_db *db, apr_pool_t *p, int64_t *gen);

/* How many packages there are, and how many of them are active. Reads
 * only columns of the first schema, so `deepminectl status` can count on
 * a database whose migrations are pending. */
dm_err *dm_catalogue_count(dm_db *db, apr_pool_t *p, int64_t *total, int64_t *active);

/* The public JSON of one package (API.md). Caller owns the reference. */
json_t *dm_package_json(const dm_package *pkg);

typedef struct dm_catalogue_cache dm_catalogue_cache;

typedef struct dm_rendered {
    const char *body; /* in the request pool */
    size_t len;
    const char *etag; /* quoted strong ETag, e.g. "\"3f2a…\"" */
} dm_rendered;

dm_err *dm_catalogue_cache_create(apr_pool_t *p, apr_interval_time_t revalidate,
                                  dm_catalogue_cache **out);

/* The whole catalogue, {"packages":[…],"available_ths"}: each package
 * also says "sold_out" (capacity.h: its hash rate is more than what is
 * left). */
dm_err *dm_catalogue_cache_list(dm_catalogue_cache *c, dm_db_pool *dbp, apr_pool_t *rp,
                                dm_rendered *out);

/* One active package, {"package":{…}}; DM_E_NOT_FOUND when absent. */
dm_err *dm_catalogue_cache_one(dm_catalogue_cache *c, dm_db_pool *dbp, apr_pool_t *rp, int64_t id,
                               dm_rendered *out);

/* Forces a revalidation at the next read. */
void dm_catalogue_cache_invalidate(dm_catalogue_cache *c);

#endif
