/*
 * memcache.c — see memcache.h.
 *
 * The client's pool has an allocator of its own with a mutex: the reslist
 * makes connections (each in a sub-pool) outside its own lock, from any
 * thread. The reslist destroys its connections before the sub-pools go
 * (APR_RESLIST_CLEANUP_FIRST).
 */
#include "base/memcache.h"

#include <apr_allocator.h>
#include <apr_memcache.h>
#include <apr_reslist.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <string.h>

typedef struct mc_server {
    const char *name; /* "host:port" as configured */
    const char *host;
    apr_port_t port;
    apr_interval_time_t timeout;
    apr_reslist_t *conns;
    int64_t down_until; /* apr_time_t; read and written atomically */
} mc_server;

struct dm_mc {
    apr_pool_t *pool;
    int n;
    mc_server servers[DM_MC_MAX_SERVERS];
};

typedef struct mc_conn {
    apr_pool_t *pool;
    apr_socket_t *sock;
    unsigned uses; /* commands answered on it */
} mc_conn;

const char *dm_mc_parse_address(apr_pool_t *p, const char *arg, const char **host, apr_port_t *port)
{
    const char *colon = arg ? strrchr(arg, ':') : NULL;
    const char *h_end;
    const char *h = arg;
    long v = 0;

    if (!colon || colon == arg) {
        return apr_psprintf(p, "'%s' is not host:port", arg ? arg : "");
    }
    h_end = colon;
    if (arg[0] == '[') {
        if (colon[-1] != ']' || colon - arg < 3) {
            return apr_psprintf(p, "'%s' is not [address]:port", arg);
        }
        h = arg + 1;
        h_end = colon - 1;
    } else if (memchr(arg, ':', (size_t)(colon - arg))) {
        return apr_psprintf(p, "'%s': write an IPv6 address in brackets, [::1]:11211", arg);
    }
    for (const char *c = colon + 1; *c; c++) {
        if (*c < '0' || *c > '9' || v > 65535) {
            v = -1;
            break;
        }
        v = v * 10 + (*c - '0');
    }
    if (!colon[1] || v < 1 || v > 65535) {
        return apr_psprintf(p, "the port in '%s' must be a number from 1 to 65535", arg);
    }
    *host = apr_pstrmemdup(p, h, (apr_size_t)(h_end - h));
    *port = (apr_port_t)v;
    return NULL;
}

static apr_status_t conn_make(void **res, void *params, apr_pool_t *pool)
{
    mc_server *sv = params;
    apr_sockaddr_t *sa = NULL;
    apr_pool_t *cp = NULL;
    mc_conn *c;
    apr_status_t rv = apr_pool_create(&cp, pool);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    c = apr_pcalloc(cp, sizeof(*c));
    c->pool = cp;
    rv = apr_sockaddr_info_get(&sa, sv->host, APR_UNSPEC, sv->port, 0, cp);
    if (rv == APR_SUCCESS) {
        rv = apr_socket_create(&c->sock, sa->family, SOCK_STREAM, APR_PROTO_TCP, cp);
    }
    if (rv == APR_SUCCESS) {
        apr_socket_opt_set(c->sock, APR_TCP_NODELAY, 1);
        rv = apr_socket_timeout_set(c->sock, sv->timeout);
    }
    if (rv == APR_SUCCESS) {
        rv = apr_socket_connect(c->sock, sa);
    }
    if (rv != APR_SUCCESS) {
        apr_pool_destroy(cp);
        return rv;
    }
    *res = c;
    return APR_SUCCESS;
}

static apr_status_t conn_drop(void *res, void *params, apr_pool_t *pool)
{
    (void)params;
    (void)pool;
    apr_pool_destroy(((mc_conn *)res)->pool);
    return APR_SUCCESS;
}

apr_status_t dm_mc_create(apr_pool_t *p, const char *const *servers, int n,
                          apr_interval_time_t timeout, int max_conns, dm_mc **out)
{
    apr_allocator_t *alloc = NULL;
    apr_thread_mutex_t *mutex = NULL;
    apr_pool_t *mp = NULL;
    dm_mc *mc;
    apr_status_t rv;

    if (n < 1 || n > DM_MC_MAX_SERVERS || timeout <= 0 || max_conns < 1) {
        return APR_EINVAL;
    }
    rv = apr_allocator_create(&alloc);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    rv = apr_pool_create_ex(&mp, p, NULL, alloc);
    if (rv != APR_SUCCESS) {
        apr_allocator_destroy(alloc);
        return rv;
    }
    apr_allocator_owner_set(alloc, mp);
    rv = apr_thread_mutex_create(&mutex, APR_THREAD_MUTEX_DEFAULT, mp);
    if (rv != APR_SUCCESS) {
        apr_pool_destroy(mp);
        return rv;
    }
    apr_allocator_mutex_set(alloc, mutex);
    mc = apr_pcalloc(mp, sizeof(*mc));
    mc->pool = mp;
    mc->n = n;
    for (int i = 0; i < n && rv == APR_SUCCESS; i++) {
        mc_server *sv = &mc->servers[i];
        const char *why = dm_mc_parse_address(mp, servers[i], &sv->host, &sv->port);
        if (why) {
            rv = APR_EINVAL;
            break;
        }
        sv->name = apr_pstrdup(mp, servers[i]);
        sv->timeout = timeout;
        rv = apr_reslist_create(&sv->conns, 0, max_conns, max_conns, 0, conn_make, conn_drop, sv,
                                mp);
        if (rv == APR_SUCCESS) {
            apr_reslist_cleanup_order_set(sv->conns, APR_RESLIST_CLEANUP_FIRST);
            apr_reslist_timeout_set(sv->conns, timeout);
        }
    }
    if (rv != APR_SUCCESS) {
        apr_pool_destroy(mp);
        return rv;
    }
    *out = mc;
    return APR_SUCCESS;
}

static mc_server *server_of(const dm_mc *mc, const char *key)
{
    apr_uint32_t h = apr_memcache_hash_default(NULL, key, strlen(key));

    return (mc_server *)&mc->servers[h % (apr_uint32_t)mc->n];
}

const char *dm_mc_server_of(const dm_mc *mc, const char *key)
{
    return server_of(mc, key)->name;
}

static apr_status_t send_all(apr_socket_t *sock, const char *buf, size_t len)
{
    while (len > 0) {
        apr_size_t n = len;
        apr_status_t rv = apr_socket_send(sock, buf, &n);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        buf += n;
        len -= n;
    }
    return APR_SUCCESS;
}

/* The parse of the reply to one command. */
typedef struct reply {
    const char *key; /* gets: the key asked for; NULL for a store */
    dm_mc_item *item;
    dm_mc_stored *stored;
} reply;

static apr_status_t receive(apr_socket_t *sock, reply *want)
{
    char buf[DM_MC_REPLY_MAX + 1];
    size_t len = 0;

    for (;;) {
        apr_size_t n = sizeof(buf) - len;
        apr_status_t rv;
        dm_mc_parse got;

        if (n == 0) {
            return APR_EGENERAL;
        }
        rv = apr_socket_recv(sock, buf + len, &n);
        len += n;
        if (rv != APR_SUCCESS && !(APR_STATUS_IS_EOF(rv) && n > 0)) {
            return rv;
        }
        got = want->key ? dm_mc_parse_gets(buf, len, want->key, want->item)
                        : dm_mc_parse_store(buf, len, want->stored);
        if (got == DM_MC_DONE) {
            return APR_SUCCESS;
        }
        if (got == DM_MC_BAD || APR_STATUS_IS_EOF(rv)) {
            return APR_EGENERAL;
        }
    }
}

/* Sends one command to key's server and reads its reply. A pooled
 * connection the server closed meanwhile (memcached restarted, an idle
 * timeout) fails at once: the command is tried once more on a new
 * connection. Repeating an add or cas whose reply was lost is safe: it
 * answers NOT_STORED or EXISTS, and the caller reads again (at worst a hit
 * is counted twice, never admitted twice). */
static apr_status_t exchange(dm_mc *mc, const char *key, const char *cmd, size_t len, reply *want)
{
    mc_server *sv = server_of(mc, key);
    apr_status_t rv = APR_SUCCESS;
    int busy = 0;

    if (apr_time_now() < __atomic_load_n(&sv->down_until, __ATOMIC_RELAXED)) {
        return APR_ECONNREFUSED;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        void *res = NULL;
        mc_conn *c;
        int reused;

        rv = apr_reslist_acquire(sv->conns, &res);
        if (rv != APR_SUCCESS) {
            busy = APR_STATUS_IS_TIMEUP(rv);
            break;
        }
        c = res;
        reused = c->uses > 0;
        rv = send_all(c->sock, cmd, len);
        if (rv == APR_SUCCESS) {
            rv = receive(c->sock, want);
        }
        if (rv == APR_SUCCESS) {
            c->uses++;
            apr_reslist_release(sv->conns, c);
            return APR_SUCCESS;
        }
        apr_reslist_invalidate(sv->conns, c);
        if (!reused || rv == APR_EGENERAL || APR_STATUS_IS_TIMEUP(rv)) {
            break;
        }
    }
    /* Not for a reply we refused (the server answers), nor for every
     * pooled connection being busy (TIMEUP from the reslist). */
    if (rv != APR_EGENERAL && !busy) {
        __atomic_store_n(&sv->down_until, apr_time_now() + DM_MC_DOWN_FOR, __ATOMIC_RELAXED);
    }
    return rv;
}

apr_status_t dm_mc_gets(dm_mc *mc, const char *key, dm_mc_item *out)
{
    char cmd[DM_MC_KEY_MAX + 16];
    size_t len = dm_mc_format_gets(cmd, sizeof(cmd), key);
    reply want = {key, out, NULL};

    if (!len) {
        return APR_EINVAL;
    }
    return exchange(mc, key, cmd, len, &want);
}

apr_status_t dm_mc_store(dm_mc *mc, const char *key, uint32_t exptime, const char *value,
                         size_t len, uint64_t cas, dm_mc_stored *out)
{
    char cmd[DM_MC_KEY_MAX + DM_MC_VALUE_MAX + 96];
    size_t n = dm_mc_format_store(cmd, sizeof(cmd), key, exptime, value, len, cas);
    reply want = {NULL, NULL, out};

    if (!n) {
        return APR_EINVAL;
    }
    return exchange(mc, key, cmd, n, &want);
}
