/*
 * memcache.h — a small memcached client for the rate limiter shared by
 * several nodes: `gets`, and `add`/`cas`, over APR sockets with a short
 * timeout. APR-util's apr_memcache offers neither `gets` nor `cas`, and
 * waits without a timeout for a reply (docs/decisions.md); the key is
 * placed on a server with apr_memcache's own hash, so several servers share
 * the keys as apr_memcache (mod_socache_memcache) would share them.
 *
 * Connections are made on demand, one at a time per request, and pooled
 * (apr_reslist) for the threads of one process. A connection that timed
 * out, failed, or read a reply the parser did not accept is closed, never
 * reused. A server that failed to answer is not tried again for a second,
 * so a dead server costs one timeout a second, not one per request.
 */
#ifndef DM_MEMCACHE_H
#define DM_MEMCACHE_H

#include <apr_errno.h>
#include <apr_network_io.h>
#include <apr_pools.h>
#include <apr_time.h>

#include "base/mcproto.h"

#define DM_MC_MAX_SERVERS 16
/* How long a server that failed is left alone. */
#define DM_MC_DOWN_FOR ((apr_interval_time_t)1000000)

typedef struct dm_mc dm_mc;

/* "host:port" ("[v6 address]:port" for IPv6): port 1..65535. NULL when
 * good, else a sentence (in p) saying what is wrong. */
const char *dm_mc_parse_address(apr_pool_t *p, const char *arg, const char **host,
                                apr_port_t *port);

/* A client of n servers (1..DM_MC_MAX_SERVERS, "host:port" each, checked
 * by dm_mc_parse_address). timeout bounds each connect, send and receive,
 * and the wait for a pooled connection when max_conns are in use. The
 * client lives in a pool of its own under p. */
apr_status_t dm_mc_create(apr_pool_t *p, const char *const *servers, int n,
                          apr_interval_time_t timeout, int max_conns, dm_mc **out);

/* "host:port" of the server that holds key. */
const char *dm_mc_server_of(const dm_mc *mc, const char *key);

/* `gets key`: out->found, out->value and out->cas. APR_EGENERAL when the
 * reply was not one the parser accepts (or an error reply), a socket error,
 * APR_TIMEUP, or APR_ECONNREFUSED while the server is left alone. */
apr_status_t dm_mc_gets(dm_mc *mc, const char *key, dm_mc_item *out);

/* `add` (cas 0) or `cas` of value with an expiry (seconds from now, or a
 * Unix time above DM_MC_RELATIVE_MAX, as memcached reads it). Errors as
 * dm_mc_gets. */
apr_status_t dm_mc_store(dm_mc *mc, const char *key, uint32_t exptime, const char *value,
                         size_t len, uint64_t cas, dm_mc_stored *out);

#endif
