/*
 * db_pool.h — a per-process pool of database connections (apr_reslist).
 * Created in child_init (never before fork: a SQLite handle must not cross
 * it); a request borrows one connection for its lifetime.
 */
#ifndef DM_DB_POOL_H
#define DM_DB_POOL_H

#include <apr_pools.h>

#include "store/db.h"
#include "base/err.h"

typedef struct dm_db_pool dm_db_pool;

/* min connections opened at once, at most max, idle ones above min closed
 * after ttl seconds (0: never). */
dm_err *dm_db_pool_create(apr_pool_t *p, const char *path, int min, int max, int ttl_sec,
                          dm_db_pool **out);

/* Borrows a connection for the lifetime of `scope`: it goes back to the pool
 * (rolled back first if a transaction was left open) when `scope` is cleaned
 * up. Waits up to the pool's timeout when all are in use; then
 * DM_E_UNAVAILABLE. */
dm_err *dm_db_pool_acquire(dm_db_pool *pool, apr_pool_t *scope, dm_db **out);

/* Gives a connection back before `scope` ends. */
void dm_db_pool_release(dm_db_pool *pool, apr_pool_t *scope, dm_db *db);

/* Connections currently handed out (for health and tests). */
int dm_db_pool_in_use(dm_db_pool *pool);

#endif
