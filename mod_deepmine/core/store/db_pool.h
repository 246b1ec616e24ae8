/*
 * db_pool.h — a per-process pool of database connections (apr_reslist).
 * Created in child_init (never before fork: a SQLite handle must not cross
 * it); a request borrows one connection until its handler is done. The
 * pool is small (DeepMinePool): a request waits its turn for a connection,
 * and takes it only once its body has been read.
 */
#ifndef DM_DB_POOL_H
#define DM_DB_POOL_H

#include <apr_pools.h>

#include "store/db.h"
#include "store/db_group.h"
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

/* Gives back every connection `scope` still borrows (the handler is done:
 * its answer may wait for a slow reader, holding no connection). */
void dm_db_pool_release_scope(dm_db_pool *pool, apr_pool_t *scope);

/* 1 while `scope` still borrows a connection of any pool, else 0. */
int dm_db_pool_scope_holds(apr_pool_t *scope);

/* Runs fn as dm_db_write_txn (store/db_group.h) does, for a caller that
 * holds no connection of this pool: on a SQLite file once the process's
 * writer connection is open, queued without borrowing any (a connection is
 * borrowed afterwards only to run a checkpoint the caller's lead made
 * due); else on a connection borrowed for the call and given back before
 * it returns. The caller must hold none in `scope` (a second one could
 * wait for a connection held by writers waiting on it). fn may be run a
 * second time (its batch's transaction rolled back because another call
 * failed, and run again without it: store/db_group.h), so it must set
 * every output in arg each time it runs. */
dm_err *dm_db_pool_write_txn(dm_db_pool *pool, apr_pool_t *scope, dm_db_txn_fn fn, void *arg);

/* Connections currently handed out (for health and tests). */
int dm_db_pool_in_use(dm_db_pool *pool);

#endif
