/*
 * wlock.h — the writers' queue of one SQLite database, private to store/
 * (db.c takes it around every write transaction).
 *
 * SQLite lets one writer in at a time and sends the others into its busy
 * handler, which sleeps 1, 2, 5, 10 … 100 ms between tries: under load a
 * writer sleeps long after the lock was free again, and the unlucky ones
 * time out. Here writers wait on a futex in a page of shared memory mapped
 * from a file beside the database (`<database>-wlock`), so every process
 * that writes — Apache's children, the cron daemon, deepminectl — queues on
 * the same word and the next one is woken the moment the lock is free.
 *
 * The word is 0 when free, else the holder's pid and start time (plus a
 * bit saying that someone sleeps on it): a lock whose holder process died
 * (or is a zombie, or whose pid now names another process, as after a
 * reboot or a container restart) is taken over by a sleeper within 100 ms.
 * Threads of one process share the pid and still take turns. The queue is
 * not strictly first come, first served: a newcomer may take a lock just
 * freed before the sleeper it woke; what it promises is that a free lock
 * never leaves a sleeper sleeping.
 * The lock only orders writers; SQLite's own lock still decides, so a
 * process that does not take this lock (the sqlite3 shell) stays correct.
 * Linux only (futex); elsewhere dm_wlock_open answers NULL and writers use
 * the busy handler alone.
 */
#ifndef DM_WLOCK_H
#define DM_WLOCK_H

#include <apr_pools.h>

typedef struct dm_wlock dm_wlock;

/* Maps the lock of the database at db_path, creating `<db_path>-wlock`
 * (mode 0600, owned by the database file's owner when run as root) if
 * needed. NULL when the database is not a plain file or the lock file
 * cannot be opened: then there is no queue, and *why says why (static
 * text, or NULL for an in-memory database). p holds the handle; the page
 * is unmapped by dm_wlock_close (db.c's connection cleanup releases the
 * lock first, and the order of pool cleanups would not let it). */
dm_wlock *dm_wlock_open(apr_pool_t *p, const char *db_path, const char **why);
void dm_wlock_close(dm_wlock *wl);

/* Waits at most timeout_ms for the lock. 1 when taken, 0 when the wait
 * timed out (then *holder is the pid that held it). */
int dm_wlock_acquire(dm_wlock *wl, int timeout_ms, unsigned *holder);
void dm_wlock_release(dm_wlock *wl);

#endif
