/*
 * db_group.c — see db_group.h. One mutex for the process, a condition
 * variable per waiting caller; a queue per database file (few: a process
 * opens one or two). The first caller to find no leader leads: it takes
 * batches off the head of the queue and runs each in one transaction until
 * its own fn is done, then hands over (to the first caller still queued,
 * woken alone), and only then runs the WAL checkpoint its commits made due.
 */
#include "store/db_group.h"

#include <apr_strings.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define GROUPS 8

/* Batches a leader runs after the one holding its own fn, while callers are
 * queued, before it hands the lead over. It is running already: the next
 * leader would first have to be woken and wait for a core (on this
 * 2-core machine often behind the callers just woken to answer), and the
 * queue meanwhile waited. Its own caller's answer waits for that batch
 * (a few milliseconds). */
#define DM_DB_GROUP_EXTRA 1

/* The writer connection's page cache, in KiB (one per process and file). */
#define DM_DB_GROUP_CACHE_KIB_STR "2048"

typedef struct item {
    dm_db_txn_fn fn;
    void *arg;
    apr_pool_t *p;
    dm_err *e;
    int done;
    int lead;           /* handed the lead by the leader before it (under mu) */
    int again;          /* fn may run again (dm_db_group_write_unheld's callers) */
    pthread_cond_t *cv; /* its caller waits on it: woken when done or to lead */
    struct item *next;
} item;

typedef struct group {
    char *path; /* malloc'd, for the process's life */
    item *head, *tail;
    int leading;
    /* The writer connection (dm_db_group_own_connection), used by the
     * leader only; the file it opened, to notice a file replaced. */
    apr_pool_t *wpool;
    dm_db *wdb;
    dev_t wdev;
    ino_t wino;
    int wbusy; /* its busy timeout (opened again for a caller without one) */
    int wopen; /* wdb is open (under mu: dm_db_group_write_unheld reads it) */
} group;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static group groups[GROUPS];
static int n_groups;
static apr_pool_t *own_pool; /* set: leaders use a writer connection */

/* Under mu. NULL: no queue for this file (the table is full). */
static group *group_of(const char *path)
{
    for (int i = 0; i < n_groups; i++) {
        if (strcmp(groups[i].path, path) == 0) {
            return &groups[i];
        }
    }
    if (n_groups == GROUPS || !(groups[n_groups].path = strdup(path))) {
        return NULL;
    }
    return &groups[n_groups++];
}

void dm_db_group_own_connection(apr_pool_t *pool)
{
    apr_pool_t *mine = NULL;

    /* A pool of our own, made now (before any thread writes): the writer
     * connections' pools are made in it later, from leaders' threads,
     * under mu, never touching `pool` itself from another thread. */
    if (pool && apr_pool_create(&mine, pool) != APR_SUCCESS) {
        mine = NULL;
    }
    pthread_mutex_lock(&mu);
    own_pool = mine;
    pthread_mutex_unlock(&mu);
}

static apr_status_t writer_gone(void *data)
{
    group *g = data;

    g->wdb = NULL;
    g->wpool = NULL;
    g->wopen = 0;
    return APR_SUCCESS;
}

/* The connection the leader of g runs its batches on: g's writer
 * connection, opened (or opened again when the file was replaced) on the
 * first use, else db (NULL for a leader without a connection of its own:
 * dm_db_group_write_unheld). Only the leader calls it. */
static dm_db *writer_of(group *g, dm_db *db)
{
    struct stat sb;
    apr_pool_t *wp = NULL;
    dm_db_options opt = {0, 0};

    if (!own_pool || stat(g->path, &sb) != 0) {
        return db;
    }
    if (g->wdb && g->wdev == sb.st_dev && g->wino == sb.st_ino) {
        return g->wdb;
    }
    pthread_mutex_lock(&mu); /* sub-pools of one pool: one at a time */
    if (g->wpool) {
        apr_pool_destroy(g->wpool); /* closes it (writer_gone) */
    }
    if (apr_pool_create(&wp, own_pool) != APR_SUCCESS) {
        wp = NULL;
    }
    pthread_mutex_unlock(&mu);
    if (!wp) {
        return db;
    }
    opt.busy_timeout_ms = db ? dm_db_busy_timeout(db) : g->wbusy;
    if (dm_db_open(wp, g->path, &opt, &g->wdb) != NULL) {
        pthread_mutex_lock(&mu);
        apr_pool_destroy(wp);
        pthread_mutex_unlock(&mu);
        g->wdb = NULL;
        return db;
    }
    /* its savepoints' journals in memory (see below); only a speed-up */
    (void)dm_db_scratch_in_memory(g->wdb, wp, 1);
    /* the pages every batch touches (the right edges and inner pages of
     * the indexes written, the accounts moved) stay cached: 512 KiB, a
     * pooled connection's size, still read ~110 pages per paid order
     * again, 8 MiB ~46 (those of the readers); 2 MiB was no slower than
     * 4 MiB at 100,000 members (webhooks/s 1,061-1,226 against
     * 1,029-1,173, alternated) and holds 2 MiB less in every child
     * (docs/decisions.md "Memory, seventh round") */
    (void)dm_db_exec(g->wdb, wp, "PRAGMA cache_size=-" DM_DB_GROUP_CACHE_KIB_STR);
    g->wpool = wp;
    g->wbusy = opt.busy_timeout_ms;
    g->wdev = sb.st_dev;
    g->wino = sb.st_ino;
    apr_pool_cleanup_register(wp, g, writer_gone, apr_pool_cleanup_null);
    pthread_mutex_lock(&mu);
    g->wopen = 1;
    pthread_mutex_unlock(&mu);
    return g->wdb;
}

/* fn in a transaction of its own. */
static dm_err *run_alone(dm_db *db, apr_pool_t *p, dm_db_txn_fn fn, void *arg)
{
    dm_err *e = dm_db_begin(db, p);

    if (e) {
        return e;
    }
    e = fn(db, p, arg);
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

/* e, in it's pool (the leader's errors outlive nothing of the leader's). */
static void fail(item *it, const dm_err *e)
{
    if (!it->e) {
        it->e = dm_err_make(it->p, e->code, e->field ? apr_pstrdup(it->p, e->field) : NULL, "%s",
                            e->message);
    }
}

static dm_err *step_sql(dm_db *db, apr_pool_t *p, const char *sql)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, sql, &st);

    if (!e) {
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    return e;
}

/* Runs items[0..n) in one transaction on db, each under a savepoint; sets
 * each item's e. p: the leader's pool, for the transaction's own work. */
static void run_saved(dm_db *db, apr_pool_t *p, item **items, int n)
{
    dm_err *e;
    int i;

    if (n == 1) {
        items[0]->e = run_alone(db, items[0]->p, items[0]->fn, items[0]->arg);
        return;
    }
    e = dm_db_begin(db, p);
    for (i = 0; !e && i < n; i++) {
        item *it = items[i];
        dm_err *se = step_sql(db, p, "SAVEPOINT dm_group");
        if (se) {
            e = se;
            break;
        }
        it->e = it->fn(db, it->p, it->arg);
        if (it->e && dm_db_txn_lost(db)) {
            /* SQLite rolled the whole transaction back: the fns before this
             * one lost their writes too; those after it run in another. */
            for (int k = 0; k < i; k++) {
                fail(items[k], it->e);
            }
            dm_db_rollback(db);
            run_saved(db, p, items + i + 1, n - i - 1);
            return;
        }
        se = it->e ? step_sql(db, p, "ROLLBACK TO dm_group") : NULL;
        if (!se) {
            se = step_sql(db, p, "RELEASE dm_group");
        }
        if (se) {
            e = se;
            i++;
            break;
        }
    }
    if (!e) {
        e = dm_db_commit(db, p); /* rolls back when it fails */
    } else {
        dm_db_rollback(db);
    }
    if (e) {
        for (int k = 0; k < n; k++) {
            fail(items[k], e);
        }
    }
}

/* 1 when every fn of items[0..n) may run again. */
static int all_again(item *const *items, int n)
{
    for (int i = 0; i < n; i++) {
        if (!items[i]->again) {
            return 0;
        }
    }
    return 1;
}

/* Runs items[0..n) in one transaction on db. When every fn may run again
 * (callers of dm_db_group_write_unheld), first without savepoints: each
 * one journals every page it changes first (a paid order: ~60 pages copied
 * and freed again, and two statements), for a failure that is rare. Should
 * an fn fail, the transaction is rolled back, the fn keeps its error (got
 * after the same fns as before), and the others run again, each under its
 * savepoint (run_saved): the same writes, the same errors, as if every fn
 * had had its savepoint from the start. Else run_saved at once. */
static void run_batch(dm_db *db, apr_pool_t *p, item **items, int n)
{
    dm_err *e;
    int i, k;

    if (n == 1 || !all_again(items, n)) {
        run_saved(db, p, items, n);
        return;
    }
    e = dm_db_begin(db, p);
    for (i = 0; !e && i < n; i++) {
        item *it = items[i];
        it->e = it->fn(db, it->p, it->arg);
        if (it->e) {
            dm_db_rollback(db);
            for (k = i; k < n - 1; k++) {
                items[k] = items[k + 1];
            }
            items[n - 1] = it;
            run_saved(db, p, items, n - 1);
            return;
        }
    }
    if (!e) {
        e = dm_db_commit(db, p); /* rolls back when it fails */
    }
    if (e) {
        for (k = 0; k < n; k++) {
            fail(items[k], e);
        }
    }
}

/* Queues fn on path's group and returns 1 once it ran (*err its error),
 * leading when the turn comes. db: the caller's connection, or NULL for a
 * caller that holds none (dm_db_group_write_unheld): then *due_out gets
 * the checkpoint its lead made due, to be run on a connection it borrows
 * afterwards. 0, nothing done: no queue for path (the table is full), or
 * no connection to lead with (db NULL and no writer connection open). */
static int queue_and_wait(const char *path, dm_db *db, apr_pool_t *p, dm_db_txn_fn fn, void *arg,
                          dm_err **err, int *due_out)
{
    item me;
    pthread_cond_t cv;
    dm_db *wdb;
    int due, extra = DM_DB_GROUP_EXTRA;
    group *g;

    memset(&me, 0, sizeof(me));
    me.fn = fn;
    me.arg = arg;
    me.p = p;
    me.again = !db;
    pthread_mutex_lock(&mu);
    g = group_of(path);
    /* Without a connection, only once the writer connection is open (the
     * process's first write opens it, with a connection): it stays open
     * (opened again in place when the file is replaced), so this caller,
     * should it lead, needs no connection of its own. */
    if (!g || (!db && (!own_pool || !g->wopen))) {
        pthread_mutex_unlock(&mu);
        return 0;
    }
    pthread_cond_init(&cv, NULL);
    me.cv = &cv;
    if (g->tail) {
        g->tail->next = &me;
    } else {
        g->head = &me;
    }
    g->tail = &me;
    /* Each caller sleeps on its own condition: the leader wakes exactly
     * the callers whose fns its commit holds, and the one it hands the
     * lead to (a broadcast woke every waiter at every commit, most of them
     * to sleep again). */
    if (g->leading) {
        while (!me.done && !me.lead) {
            pthread_cond_wait(&cv, &mu);
        }
    }
    if (me.done) {
        pthread_mutex_unlock(&mu);
        pthread_cond_destroy(&cv);
        *err = me.e;
        return 1;
    }
    g->leading = 1;
    pthread_mutex_unlock(&mu);
    /* Only the leader uses wdb: everything on it is done before the lead
     * is handed over (a connection is used by one thread at a time). */
    wdb = writer_of(g, db);
    if (wdb) {
        dm_db_checkpoint_later(wdb, 1);
    }
    /* Each item's savepoint journals every page its fn changes first (a
     * paid order: some 60 pages, 240 KiB); past 64 KiB SQLite spilled that
     * journal page by page to a file under /var/tmp, about half of the
     * worker's pwrite calls. Held in memory while this leader runs (the
     * writer connection keeps it so): it is bounded by a batch's pages and
     * freed at each RELEASE (store/db.h). Only a speed-up, so a refusal
     * changes nothing. */
    if (wdb && wdb == db) {
        (void)dm_db_scratch_in_memory(db, p, 1);
    }
    pthread_mutex_lock(&mu);
    /* its own batch, then at most `extra` more of what queued meanwhile */
    while (!me.done || (extra-- > 0 && g->head)) {
        item *batch[DM_DB_GROUP_MAX];
        int n = 0;
        while (n < DM_DB_GROUP_MAX && g->head) {
            batch[n++] = g->head;
            g->head = g->head->next;
        }
        if (!g->head) {
            g->tail = NULL;
        }
        pthread_mutex_unlock(&mu);
        if (wdb) {
            run_batch(wdb, p, batch, n);
        } else {
            /* A leader without a connection whose writer connection could
             * not be opened again (the file replaced, then unreadable):
             * nothing is written; a webhook's provider tries again. */
            for (int i = 0; i < n; i++) {
                batch[i]->e = dm_err_make(batch[i]->p, DM_E_UNAVAILABLE, NULL,
                                          "the database cannot be written now, try again");
            }
        }
        pthread_mutex_lock(&mu);
        for (int i = 0; i < n; i++) {
            batch[i]->done = 1;
            if (batch[i] != &me) {
                pthread_cond_signal(batch[i]->cv);
            }
        }
    }
    /* Still the leader (mu held, nobody else leads): take what is left to
     * do on wdb, then hand the lead to the first caller still queued (it
     * alone is woken), or give it up. */
    due = wdb && wdb != db ? dm_db_checkpoint_take(wdb) : 0;
    if (g->head) {
        g->head->lead = 1;
        pthread_cond_signal(g->head->cv);
    } else {
        g->leading = 0;
    }
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&cv);
    /* The WAL's checkpoint, if one is due, once the next leader is free to
     * go on (it needs no lock of ours): on the leader's own connection when
     * a writer connection committed (the next leader may be using it), or
     * on one its caller borrows. */
    *err = me.e;
    if (!wdb) {
        return 1;
    }
    if (wdb != db) {
        if (due && db) {
            dm_db_checkpoint_run(db, due);
        } else if (due_out) {
            *due_out = due;
        }
    } else {
        (void)dm_db_scratch_in_memory(db, p, 0);
        dm_db_checkpoint_later(db, 0);
        dm_db_checkpoint_due(db);
    }
    return 1;
}

/* 1 when path is a SQLite file whose writers may queue. */
static int groupable(const char *path)
{
    return path && *path && *path != ':' && strncmp(path, "file:", 5) != 0 &&
           !dm_db_is_postgres(path);
}

dm_err *dm_db_write_txn(dm_db *db, apr_pool_t *p, dm_db_txn_fn fn, void *arg)
{
    const char *path = dm_db_path(db);
    dm_err *e = NULL;

    if (dm_db_in_transaction(db)) {
        return fn(db, p, arg);
    }
    if (strcmp(dm_db_engine(db), "sqlite") != 0 || !groupable(path) ||
        !queue_and_wait(path, db, p, fn, arg, &e, NULL)) {
        return run_alone(db, p, fn, arg);
    }
    return e;
}

int dm_db_group_write_unheld(const char *path, apr_pool_t *p, dm_db_txn_fn fn, void *arg,
                             dm_err **err, int *due)
{
    *err = NULL;
    *due = 0;
    return groupable(path) && queue_and_wait(path, NULL, p, fn, arg, err, due);
}
