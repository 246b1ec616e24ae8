/*
 * router.h — method + path pattern matching for the API. Patterns are
 * literal segments and `{name}` placeholders ("/api/packages/{id}"); a
 * placeholder matches one non-empty segment. HEAD is served by GET routes.
 * The router knows nothing of HTTP servers: a route carries an opaque
 * pointer the caller gives meaning to.
 */
#ifndef DM_ROUTER_H
#define DM_ROUTER_H

#include <apr_pools.h>
#include <apr_tables.h>

#include "base/err.h"

typedef struct dm_router dm_router;

typedef struct dm_route_match {
    const void *data;    /* what dm_router_add was given */
    const char *pattern; /* the matched pattern */
    apr_table_t *params; /* placeholder name -> segment */
    const char *allow;   /* on 405: the methods the path accepts, "GET, HEAD" */
} dm_route_match;

dm_router *dm_router_create(apr_pool_t *p);

/* Adds a route; refuses a malformed pattern (not starting with '/', empty
 * or unclosed placeholder, duplicate method + pattern). */
dm_err *dm_router_add(dm_router *r, const char *method, const char *pattern, const void *data);

/* NULL and *out filled on a match; else DM_E_NOT_FOUND, or
 * DM_E_METHOD_NOT_ALLOWED with out->allow set. */
dm_err *dm_router_match(const dm_router *r, apr_pool_t *p, const char *method, const char *path,
                        dm_route_match *out);

#endif
