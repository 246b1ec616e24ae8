/*
 * db_pool.c — a per-process pool of dm_db connections. Each connection lives
 * in its own unmanaged pool so that closing it frees its statement cache too.
 *
 * One lock guards everything: the idle connections (a stack: the one given
 * back last, its pages warm, goes out first), the count of connections
 * open, and the line of waiting threads. Taking and giving back are one
 * lock each (there was a gate of permits in front of an apr_reslist, whose
 * own lock was taken once to take and twice to give back).
 *
 * A connection given back while threads wait goes on the stack, where the
 * first thread to run takes it (often the running one, at its next
 * request), and the first waiter is woken to look — one woken at a time,
 * so a release does not wake a crowd that finds nothing. A woken waiter
 * that finds the stack empty keeps its place. Once the first waiter has
 * waited DM_POOL_HANDOFF, a connection given back is handed to it directly
 * (no later thread can take it first): the line's order bounds every wait.
 * The strict line (always handed over) made a convoy at 64 busy threads on
 * 2 cores: every arrival queued behind a waiter not yet scheduled, while
 * the connection handed to it sat unused (docs/decisions.md, "The pool's
 * gate, eleventh round").
 */
#include "store/db_pool.h"

#include <string.h>

#include <apr_strings.h>
#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>

#include "base/metrics.h"

typedef struct conn {
    apr_pool_t *pool;
    dm_db *db;
    apr_time_t freed; /* when it was last given back (idle above min: closed after ttl) */
} conn;

/* A thread waiting in line (in its request's pool). */
typedef struct waiter {
    apr_thread_cond_t *cond;
    int granted;
    conn *c; /* granted: the connection handed over, or NULL: open one */
    apr_time_t since;
    struct waiter *next;
} waiter;

struct dm_db_pool {
    apr_pool_t *pool;
    const char *path;
    int min, max;
    apr_interval_time_t ttl; /* 0: idle connections are never closed */
    apr_thread_mutex_t *lock;
    conn **idle; /* max slots: idle[0] the longest idle, idle[nidle - 1] the last given back */
    int nidle;
    int open;   /* connections open or being opened, at most max */
    int out;    /* handed out (or being opened for a taker) */
    int closed; /* the pool's own pool is being destroyed */
    waiter *head, *tail;
    waiter *waking; /* woken to look at the stack, not yet run */
};

/* A waiter that has waited this long is handed a connection directly: long
 * enough to let running threads through while a woken waiter waits for a
 * core (2 ms did not: under load the first waiter had nearly always waited
 * that long, and the line convoyed as before). */
#define DM_POOL_HANDOFF apr_time_from_msec(20)

/* The longest a request waits for a connection. */
#define DM_POOL_WAIT apr_time_from_sec(5)

static dm_err *conn_open(dm_db_pool *dp, conn **out)
{
    apr_pool_t *sub;
    conn *c;
    dm_err *e;

    /* Unmanaged: the pool closes its connections itself (pool_cleanup), so
     * destroying the owner's pool never destroys one twice. */
    if (apr_pool_create_unmanaged_ex(&sub, NULL, NULL) != APR_SUCCESS) {
        return dm_err_make(dp->pool, DM_E_UNAVAILABLE, NULL, "out of memory");
    }
    c = apr_pcalloc(sub, sizeof(*c));
    c->pool = sub;
    e = dm_db_open(sub, dp->path, NULL, &c->db);
    if (e) {
        apr_pool_destroy(sub);
        return e;
    }
    *out = c;
    return NULL;
}

static void conn_close(conn *c)
{
    apr_pool_destroy(c->pool);
}

/* Under the lock: the longest idle connection if more than min are idle
 * and it has been idle for ttl, as apr_reslist did: taken off the stack and
 * the open count (the caller closes it once the lock is dropped); else NULL. */
static conn *take_expired(dm_db_pool *dp, apr_time_t now)
{
    conn *c;

    if (!dp->ttl || dp->nidle <= dp->min || now - dp->idle[0]->freed < dp->ttl) {
        return NULL;
    }
    c = dp->idle[0];
    dp->nidle--;
    memmove(dp->idle, dp->idle + 1, (size_t)dp->nidle * sizeof(conn *));
    dp->open--;
    return c;
}

/* Under the lock: wakes the first waiter to look at the stack when
 * connections wait there and no waiter is already on its way to look. */
static void wake_next_if_idle(dm_db_pool *dp)
{
    if (dp->head && dp->nidle > 0 && !dp->waking) {
        dp->waking = dp->head;
        apr_thread_cond_signal(dp->head->cond);
    }
}

/* Under the lock: a connection goes on the stack (the first waiter woken to
 * look) while the first waiter has waited under DM_POOL_HANDOFF; else to
 * the first waiter directly (c NULL: the right to open one); else back on
 * the stack (c) or off the open count (NULL).
 * Returns a connection the caller closes once the lock is dropped. */
static conn *give_back_locked(dm_db_pool *dp, conn *c)
{
    waiter *w = dp->head;
    apr_time_t now = apr_time_now();

    if (w && c && now - w->since < DM_POOL_HANDOFF && !dp->closed) {
        /* on the stack, for whoever runs first; the first waiter is woken
         * to look (one at a time) */
        dp->out--;
        c->freed = now;
        dp->idle[dp->nidle++] = c;
        if (!dp->waking) {
            dp->waking = w;
            apr_thread_cond_signal(w->cond);
        }
        return NULL;
    }
    if (w) {
        dp->head = w->next;
        if (!dp->head) {
            dp->tail = NULL;
        }
        /* handed over as it is counted: out and open stay; a waiter woken
         * to look is now served (the next release wakes the next one) */
        if (dp->waking == w) {
            dp->waking = NULL;
        }
        w->c = c;
        w->granted = 1;
        apr_thread_cond_signal(w->cond);
        /* connections left on the stack (w was slow to run): the next in
         * line looks, no later release may come to wake it */
        wake_next_if_idle(dp);
        return NULL;
    }
    dp->out--;
    if (!c) {
        dp->open--;
        return NULL;
    }
    if (dp->closed) {
        dp->open--;
        return c;
    }
    c->freed = now;
    dp->idle[dp->nidle++] = c;
    return take_expired(dp, c->freed);
}

static void give_back(dm_db_pool *dp, conn *c)
{
    conn *gone;

    apr_thread_mutex_lock(dp->lock);
    gone = give_back_locked(dp, c);
    apr_thread_mutex_unlock(dp->lock);
    if (gone) {
        conn_close(gone);
    }
}

/* Waits in line up to DM_POOL_WAIT (under the lock; still held on return).
 * APR_SUCCESS with *c set, or with *c NULL: this thread may open one. */
static apr_status_t wait_in_line(dm_db_pool *dp, apr_pool_t *scope, conn **c)
{
    apr_time_t until = apr_time_now() + DM_POOL_WAIT;
    waiter *w = apr_pcalloc(scope, sizeof(*w));
    apr_status_t rv = apr_thread_cond_create(&w->cond, scope);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    dm_metrics_inc(DM_M_DB_POOL_WAITS, DM_ML_END);
    w->since = apr_time_now();
    if (dp->tail) {
        dp->tail->next = w;
    } else {
        dp->head = w;
    }
    dp->tail = w;
    while (!w->granted) {
        apr_time_t left = until - apr_time_now();
        if (left <= 0) {
            break;
        }
        (void)apr_thread_cond_timedwait(w->cond, dp->lock, left);
        if (dp->waking == w) {
            dp->waking = NULL;
        }
        if (!w->granted && dp->nidle > 0) {
            /* took one from the stack: out of the line */
            w->c = dp->idle[--dp->nidle];
            w->granted = 2;
            dp->out++;
        }
    }
    if (w->granted == 2 || !w->granted) {
        /* out of the line; a connection handed over meanwhile would be granted */
        waiter **pp = &dp->head, *prev = NULL;
        while (*pp && *pp != w) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp) {
            *pp = w->next;
            if (dp->tail == w) {
                dp->tail = prev;
            }
        }
        if (!w->granted) {
            rv = APR_TIMEUP;
        } else {
            *c = w->c;
        }
        wake_next_if_idle(dp);
    } else {
        *c = w->c;
    }
    apr_thread_cond_destroy(w->cond);
    return rv;
}

/* Takes a connection: the last one given back, else a new one while fewer
 * than max are open and nobody waits, else waits its turn. */
static dm_err *take(dm_db_pool *dp, apr_pool_t *scope, conn **out)
{
    conn *c = NULL, *gone = NULL;
    apr_status_t rv = APR_SUCCESS;
    dm_err *e;

    apr_thread_mutex_lock(dp->lock);
    if (dp->nidle == 0 && (dp->head || dp->open >= dp->max)) {
        rv = wait_in_line(dp, scope, &c);
    } else {
        dp->out++;
        if (dp->nidle > 0) {
            c = dp->idle[--dp->nidle];
            gone = take_expired(dp, apr_time_now());
        } else {
            dp->open++;
        }
    }
    apr_thread_mutex_unlock(dp->lock);
    if (gone) {
        conn_close(gone);
    }
    if (rv != APR_SUCCESS) {
        return dm_err_make(scope, DM_E_UNAVAILABLE, NULL,
                           "no database connection available, try again");
    }
    if (!c) {
        e = conn_open(dp, &c);
        if (e) {
            /* the right to open goes on (the next waiter tries in turn) */
            give_back(dp, NULL);
            return dm_err_make(scope, DM_E_UNAVAILABLE, NULL,
                               "no database connection available, try again");
        }
    }
    *out = c;
    return NULL;
}

static apr_status_t pool_cleanup(void *data)
{
    dm_db_pool *dp = data;

    apr_thread_mutex_lock(dp->lock);
    dp->closed = 1;
    while (dp->nidle > 0) {
        conn_close(dp->idle[--dp->nidle]);
        dp->open--;
    }
    apr_thread_mutex_unlock(dp->lock);
    return APR_SUCCESS;
}

dm_err *dm_db_pool_create(apr_pool_t *p, const char *path, int min, int max, int ttl_sec,
                          dm_db_pool **out)
{
    dm_db_pool *dp = apr_pcalloc(p, sizeof(*dp));

    if (min < 0 || max < 1 || min > max) {
        return dm_err_make(p, DM_E_INVALID, "pool",
                           "pool sizes must satisfy 0 <= min <= max, max >= 1");
    }
    dp->pool = p;
    dp->path = apr_pstrdup(p, path);
    dp->min = min;
    dp->max = max;
    dp->ttl = ttl_sec > 0 ? apr_time_from_sec(ttl_sec) : 0;
    dp->idle = apr_pcalloc(p, sizeof(conn *) * (size_t)max);
    if (apr_thread_mutex_create(&dp->lock, APR_THREAD_MUTEX_DEFAULT, p) != APR_SUCCESS) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "cannot create the database pool's lock");
    }
    /* registered before the first connection: it closes them at the end */
    apr_pool_cleanup_register(p, dp, pool_cleanup, apr_pool_cleanup_null);
    for (int i = 0; i < min; i++) {
        conn *c;
        if (conn_open(dp, &c)) {
            return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "cannot open database pool on %s",
                               dm_db_display_name(p, path));
        }
        c->freed = apr_time_now();
        dp->idle[dp->nidle++] = c;
        dp->open++;
    }
    *out = dp;
    return NULL;
}

typedef struct lease {
    dm_db_pool *pool;
    conn *c;
    struct lease *next; /* the scope's other leases (dm_db_pool_release_scope) */
    int returned;
} lease;

#define DM_LEASES_KEY "dm_leases"

static apr_status_t lease_cleanup(void *data)
{
    lease *l = data;

    l->returned = 1;
    if (dm_db_in_transaction(l->c->db)) {
        dm_db_rollback(l->c->db);
    }
    give_back(l->pool, l->c);
    dm_metrics_add(DM_M_DB_POOL_IN_USE, -1, DM_ML_END);
    return APR_SUCCESS;
}

dm_err *dm_db_pool_acquire(dm_db_pool *pool, apr_pool_t *scope, dm_db **out)
{
    lease *l;
    conn *c;
    void *head = NULL;
    dm_err *e = take(pool, scope, &c);

    if (e) {
        dm_metrics_inc(DM_M_DB_POOL_TIMEOUTS, DM_ML_END);
        return e;
    }
    dm_metrics_add(DM_M_DB_POOL_IN_USE, 1, DM_ML_END);
    l = apr_pcalloc(scope, sizeof(*l));
    l->pool = pool;
    l->c = c;
    apr_pool_userdata_get(&head, DM_LEASES_KEY, scope);
    l->next = head;
    apr_pool_userdata_setn(l, DM_LEASES_KEY, NULL, scope);
    apr_pool_cleanup_register(scope, l, lease_cleanup, apr_pool_cleanup_null);
    *out = c->db;
    return NULL;
}

/* The lease is found again by its connection in the scope's list (a
 * request holds one or two): no key to format, no hash entry per lease. */
void dm_db_pool_release(dm_db_pool *pool, apr_pool_t *scope, dm_db *db)
{
    void *head = NULL;
    lease *l;
    (void)pool;

    apr_pool_userdata_get(&head, DM_LEASES_KEY, scope);
    for (l = head; l; l = l->next) {
        if (!l->returned && l->c->db == db) {
            apr_pool_cleanup_run(scope, l, lease_cleanup);
            return;
        }
    }
}

void dm_db_pool_release_scope(dm_db_pool *pool, apr_pool_t *scope)
{
    void *head = NULL;
    lease *l;
    (void)pool;

    apr_pool_userdata_get(&head, DM_LEASES_KEY, scope);
    for (l = head; l; l = l->next) {
        if (!l->returned) {
            apr_pool_cleanup_run(scope, l, lease_cleanup);
        }
    }
    apr_pool_userdata_setn(NULL, DM_LEASES_KEY, NULL, scope);
}

int dm_db_pool_scope_holds(apr_pool_t *scope)
{
    void *head = NULL;

    apr_pool_userdata_get(&head, DM_LEASES_KEY, scope);
    for (const lease *l = head; l; l = l->next) {
        if (!l->returned) {
            return 1;
        }
    }
    return 0;
}

dm_err *dm_db_pool_write_txn(dm_db_pool *pool, apr_pool_t *scope, dm_db_txn_fn fn, void *arg)
{
    dm_db *db;
    dm_err *e;
    int due = 0;

    if (dm_db_group_write_unheld(pool->path, scope, fn, arg, &e, &due)) {
        /* The checkpoint after the answer's commit, as a leader with a
         * connection runs it: skipped if none comes (the next commit that
         * leaves the WAL long makes one due again). */
        if (due && !dm_db_pool_acquire(pool, scope, &db)) {
            dm_db_checkpoint_run(db, due);
            dm_db_pool_release(pool, scope, db);
        }
        return e;
    }
    e = dm_db_pool_acquire(pool, scope, &db);
    if (e) {
        return e;
    }
    e = dm_db_write_txn(db, scope, fn, arg);
    dm_db_pool_release(pool, scope, db);
    return e;
}

int dm_db_pool_in_use(dm_db_pool *pool)
{
    int n;

    apr_thread_mutex_lock(pool->lock);
    n = pool->out;
    apr_thread_mutex_unlock(pool->lock);
    return n;
}
