/*
 * db_group.h — group commit for SQLite writers of one process.
 *
 * dm_db_write_txn(db, p, fn, arg) runs fn inside a write transaction and
 * returns fn's error (its writes undone) or the commit's. On SQLite, the
 * threads of a process that call it while another one's transaction runs
 * queue up, and the next leader runs all the queued fns in ONE transaction
 * on its own connection, each as under a savepoint of its own: an fn that
 * fails is rolled back alone, and its caller gets its error; the others
 * commit together (see dm_db_group_write_unheld for fns that may run
 * twice). Each caller returns only after the
 * commit that holds its writes (or with the error that lost them), so what
 * a caller answers is as durable as with a transaction of its own. One
 * commit (one lock hand-over, one WAL append of the pages the batch shares,
 * one checkpoint check) then serves many writers. A leader whose own fn is
 * done runs one more batch of what queued meanwhile before it hands over
 * (its own caller waits for that commit too).
 *
 * fn runs on another thread's connection, with the caller's pool p (the
 * caller waits meanwhile): it must use only db, p and arg, never begin or
 * commit, and must give the same result whichever connection runs it.
 * On PostgreSQL, on an in-memory database, or inside a transaction already
 * open, fn simply runs in a transaction of its own (or the open one).
 */
#ifndef DM_STORE_DB_GROUP_H
#define DM_STORE_DB_GROUP_H

#include "store/db.h"

/* At most this many fns share one transaction. */
#define DM_DB_GROUP_MAX 32

typedef dm_err *(*dm_db_txn_fn)(dm_db *db, apr_pool_t *p, void *arg);

dm_err *dm_db_write_txn(dm_db *db, apr_pool_t *p, dm_db_txn_fn fn, void *arg);

/* From now on, leaders of this process run their batches on a writer
 * connection of its own per database file (opened on first use in a
 * sub-pool of `pool`, closed with it), not on their own connection. Only
 * that connection then writes, so its page cache stays valid from one
 * batch to the next; a pooled connection's cache is thrown away by SQLite
 * whenever another connection has committed since its last transaction,
 * and every batch read its pages again. For the server's children (their
 * threads share the pool's connections); call before any thread writes.
 * Without it (the command-line tool, cron, unit tests) a leader uses its
 * own connection. */
void dm_db_group_own_connection(apr_pool_t *pool);

/* For a caller that holds no connection (store/db_pool.h's
 * dm_db_pool_write_txn): when path is a SQLite file whose writer
 * connection this process has open (dm_db_group_own_connection, and a
 * first write made with a connection), fn is queued and run exactly as
 * dm_db_write_txn runs it, on the writer connection, and 1 is returned
 * with *err fn's (or the commit's) error and *due the length of the
 * checkpoint its caller's lead made due (0: none) — to be run with
 * dm_db_checkpoint_run on any connection to path. Else 0, nothing done:
 * the caller takes a connection and calls dm_db_write_txn. A caller
 * queued so holds no connection while it waits, so more writers than
 * the pool's connections can share a commit.
 *
 * Such an fn may run twice, and must set every output in arg each time: a
 * batch of these fns alone runs them without savepoints (each journals
 * every page it changes first, for a failure that is rare); should one
 * fail, the transaction is rolled back, that fn keeps its error, and the
 * others run again, each under its savepoint, in the same order — the
 * same writes and errors as with savepoints from the start. */
int dm_db_group_write_unheld(const char *path, apr_pool_t *p, dm_db_txn_fn fn, void *arg,
                             dm_err **err, int *due);

#endif
