/*
 * db_pool.c — apr_reslist of dm_db connections. Each connection lives in its
 * own sub-pool so that closing it frees its statement cache too.
 *
 * In front of the reslist, a gate of `max` permits that waiting threads pass
 * in the order they came: the reslist's own wait lets a thread that just
 * arrived take a connection before one woken for it, so with a few
 * connections and a few hundred threads some requests waited many turns
 * (the tail latency of a small pool). A released permit is handed to the
 * first waiter directly.
 */
#include "store/db_pool.h"

#include <apr_reslist.h>
#include <apr_strings.h>
#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>

#include "base/metrics.h"

/* A thread waiting at the gate (in its request's pool). */
typedef struct waiter {
    apr_thread_cond_t *cond;
    int granted;
    struct waiter *next;
} waiter;

struct dm_db_pool {
    apr_reslist_t *list;
    apr_pool_t *pool;
    const char *path;
    int max;
    apr_thread_mutex_t *gate;
    int permits; /* free permits: max - connections handed out or promised */
    waiter *head, *tail;
};

/* The longest a request waits for a connection. */
#define DM_POOL_WAIT apr_time_from_sec(5)

/* Takes a permit, waiting in line up to DM_POOL_WAIT. */
static apr_status_t gate_enter(dm_db_pool *dp, apr_pool_t *scope)
{
    waiter *w;
    apr_time_t until = apr_time_now() + DM_POOL_WAIT;
    apr_status_t rv = APR_SUCCESS;

    apr_thread_mutex_lock(dp->gate);
    if (dp->permits > 0 && !dp->head) {
        dp->permits--;
        apr_thread_mutex_unlock(dp->gate);
        return APR_SUCCESS;
    }
    dm_metrics_inc(DM_M_DB_POOL_WAITS, DM_ML_END);
    w = apr_pcalloc(scope, sizeof(*w));
    rv = apr_thread_cond_create(&w->cond, scope);
    if (rv != APR_SUCCESS) {
        apr_thread_mutex_unlock(dp->gate);
        return rv;
    }
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
        (void)apr_thread_cond_timedwait(w->cond, dp->gate, left);
    }
    if (!w->granted) {
        /* out of the line; a permit handed over meanwhile would be granted */
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
        rv = APR_TIMEUP;
    }
    apr_thread_mutex_unlock(dp->gate);
    apr_thread_cond_destroy(w->cond);
    return rv;
}

/* Gives a permit back: to the first waiter, else to the free count. */
static void gate_leave(dm_db_pool *dp)
{
    waiter *w;

    apr_thread_mutex_lock(dp->gate);
    w = dp->head;
    if (w) {
        dp->head = w->next;
        if (!dp->head) {
            dp->tail = NULL;
        }
        w->granted = 1;
        apr_thread_cond_signal(w->cond);
    } else {
        dp->permits++;
    }
    apr_thread_mutex_unlock(dp->gate);
}

typedef struct conn {
    apr_pool_t *pool;
    dm_db *db;
} conn;

typedef struct lease {
    dm_db_pool *pool;
    conn *c;
    struct lease *next; /* the scope's other leases (dm_db_pool_release_scope) */
    int returned;
} lease;

#define DM_LEASES_KEY "dm_leases"

static apr_status_t conn_construct(void **res, void *params, apr_pool_t *p)
{
    dm_db_pool *dp = params;
    conn *c;
    apr_pool_t *sub;
    dm_err *e;

    /* Not a sub-pool of p: destroying p destroys sub-pools before it runs
     * the reslist's own cleanup, which would then destroy each connection a
     * second time (a crash at every child exit). The reslist owns them. */
    (void)p;
    if (apr_pool_create_unmanaged_ex(&sub, NULL, NULL) != APR_SUCCESS) {
        return APR_ENOMEM;
    }
    c = apr_pcalloc(sub, sizeof(*c));
    c->pool = sub;
    e = dm_db_open(sub, dp->path, NULL, &c->db);
    if (e) {
        apr_pool_destroy(sub);
        return APR_EGENERAL;
    }
    *res = c;
    return APR_SUCCESS;
}

static apr_status_t conn_destruct(void *res, void *params, apr_pool_t *p)
{
    conn *c = res;
    (void)params;
    (void)p;
    apr_pool_destroy(c->pool);
    return APR_SUCCESS;
}

dm_err *dm_db_pool_create(apr_pool_t *p, const char *path, int min, int max, int ttl_sec,
                          dm_db_pool **out)
{
    dm_db_pool *dp = apr_pcalloc(p, sizeof(*dp));
    apr_status_t rv;

    if (min < 0 || max < 1 || min > max) {
        return dm_err_make(p, DM_E_INVALID, "pool",
                           "pool sizes must satisfy 0 <= min <= max, max >= 1");
    }
    dp->pool = p;
    dp->path = apr_pstrdup(p, path);
    dp->max = max;
    dp->permits = max;
    if (apr_thread_mutex_create(&dp->gate, APR_THREAD_MUTEX_DEFAULT, p) != APR_SUCCESS) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "cannot create the database pool's lock");
    }
    rv = apr_reslist_create(&dp->list, min, min, max, apr_time_from_sec(ttl_sec), conn_construct,
                            conn_destruct, dp, p);
    if (rv != APR_SUCCESS) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "cannot open database pool on %s",
                           dm_db_display_name(p, path));
    }
    /* The gate admits at most max: the reslist never waits but for a
     * connection being opened (bounded all the same). */
    apr_reslist_timeout_set(dp->list, DM_POOL_WAIT);
    *out = dp;
    return NULL;
}

static apr_status_t lease_cleanup(void *data)
{
    lease *l = data;

    l->returned = 1;
    if (dm_db_in_transaction(l->c->db)) {
        dm_db_rollback(l->c->db);
    }
    apr_reslist_release(l->pool->list, l->c);
    gate_leave(l->pool);
    dm_metrics_add(DM_M_DB_POOL_IN_USE, -1, DM_ML_END);
    return APR_SUCCESS;
}

dm_err *dm_db_pool_acquire(dm_db_pool *pool, apr_pool_t *scope, dm_db **out)
{
    void *res;
    lease *l;
    void *head = NULL;
    apr_status_t rv;

    /* Every connection of this child handed out: this request waits its
     * turn at the gate. */
    rv = gate_enter(pool, scope);
    if (rv == APR_SUCCESS) {
        rv = apr_reslist_acquire(pool->list, &res);
        if (rv != APR_SUCCESS) {
            gate_leave(pool);
        }
    }
    if (rv != APR_SUCCESS) {
        dm_metrics_inc(DM_M_DB_POOL_TIMEOUTS, DM_ML_END);
        return dm_err_make(scope, DM_E_UNAVAILABLE, NULL,
                           "no database connection available, try again");
    }
    dm_metrics_add(DM_M_DB_POOL_IN_USE, 1, DM_ML_END);
    l = apr_pcalloc(scope, sizeof(*l));
    l->pool = pool;
    l->c = res;
    apr_pool_userdata_get(&head, DM_LEASES_KEY, scope);
    l->next = head;
    apr_pool_userdata_setn(l, DM_LEASES_KEY, NULL, scope);
    apr_pool_cleanup_register(scope, l, lease_cleanup, apr_pool_cleanup_null);
    *out = l->c->db;
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
    return (int)apr_reslist_acquired_count(pool->list);
}
