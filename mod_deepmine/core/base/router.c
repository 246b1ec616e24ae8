/*
 * router.c — see router.h. Routes are few (tens) and matched by a linear scan
 * over pre-split patterns; the scan never allocates unless a route matches.
 */
#include "base/router.h"

#include <apr_strings.h>
#include <string.h>

#define MAX_SEGS 16

typedef struct seg {
    const char *text; /* literal, or the placeholder's name */
    size_t len;
    int is_param;
} seg;

typedef struct route {
    const char *method;
    const char *pattern;
    const void *data;
    seg segs[MAX_SEGS];
    int nsegs;
} route;

struct dm_router {
    apr_pool_t *pool;
    apr_array_header_t *routes; /* route */
};

dm_router *dm_router_create(apr_pool_t *p)
{
    dm_router *r = apr_pcalloc(p, sizeof(*r));
    r->pool = p;
    r->routes = apr_array_make(p, 32, sizeof(route));
    return r;
}

/* Splits "/a/b/c" into segments without allocating; -1 when malformed. */
static int split(const char *path, const char **starts, size_t *lens, int max)
{
    int n = 0;
    const char *s = path;

    if (*s != '/') {
        return -1;
    }
    while (*s == '/') {
        const char *b = ++s;
        while (*s && *s != '/') {
            s++;
        }
        if (s == b) {
            /* empty segment: "//" or a trailing "/" */
            return (*s == '\0' && n == 0) ? 0 : -1;
        }
        if (n == max) {
            return -1;
        }
        starts[n] = b;
        lens[n] = (size_t)(s - b);
        n++;
    }
    return n;
}

dm_err *dm_router_add(dm_router *r, const char *method, const char *pattern, const void *data)
{
    route rt;
    const char *starts[MAX_SEGS];
    size_t lens[MAX_SEGS];
    int n = split(pattern, starts, lens, MAX_SEGS);

    if (n < 0) {
        return dm_err_make(r->pool, DM_E_INVALID, "pattern", "malformed route pattern %s", pattern);
    }
    memset(&rt, 0, sizeof(rt));
    rt.method = apr_pstrdup(r->pool, method);
    rt.pattern = apr_pstrdup(r->pool, pattern);
    rt.data = data;
    rt.nsegs = n;
    for (int i = 0; i < n; i++) {
        const char *s = starts[i];
        size_t len = lens[i];
        if (s[0] == '{' || memchr(s, '{', len) || memchr(s, '}', len)) {
            if (len < 3 || s[0] != '{' || s[len - 1] != '}' || memchr(s + 1, '{', len - 2) ||
                memchr(s + 1, '}', len - 2)) {
                return dm_err_make(r->pool, DM_E_INVALID, "pattern",
                                   "malformed placeholder in route pattern %s", pattern);
            }
            rt.segs[i].is_param = 1;
            rt.segs[i].text = apr_pstrmemdup(r->pool, s + 1, len - 2);
            rt.segs[i].len = len - 2;
        } else {
            rt.segs[i].text = apr_pstrmemdup(r->pool, s, len);
            rt.segs[i].len = len;
        }
    }
    for (int i = 0; i < r->routes->nelts; i++) {
        const route *o = &APR_ARRAY_IDX(r->routes, i, route);
        if (strcmp(o->method, method) == 0 && strcmp(o->pattern, pattern) == 0) {
            return dm_err_make(r->pool, DM_E_CONFLICT, "pattern", "route %s %s added twice", method,
                               pattern);
        }
    }
    APR_ARRAY_PUSH(r->routes, route) = rt;
    return NULL;
}

static int route_fits(const route *rt, const char **starts, const size_t *lens, int n)
{
    if (rt->nsegs != n) {
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (!rt->segs[i].is_param &&
            (rt->segs[i].len != lens[i] || memcmp(rt->segs[i].text, starts[i], lens[i]) != 0)) {
            return 0;
        }
    }
    return 1;
}

static int method_is(const char *route_method, const char *method)
{
    return strcmp(route_method, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0);
}

dm_err *dm_router_match(const dm_router *r, apr_pool_t *p, const char *method, const char *path,
                        dm_route_match *out)
{
    const char *starts[MAX_SEGS];
    size_t lens[MAX_SEGS];
    int n = split(path, starts, lens, MAX_SEGS);
    const route *hit = NULL;
    int path_known = 0;

    memset(out, 0, sizeof(*out));
    if (n < 0) {
        return dm_err_make(p, DM_E_NOT_FOUND, NULL, "no such endpoint");
    }
    for (int i = 0; i < r->routes->nelts; i++) {
        const route *rt = &APR_ARRAY_IDX(r->routes, i, route);
        if (!route_fits(rt, starts, lens, n)) {
            continue;
        }
        path_known = 1;
        if (method_is(rt->method, method)) {
            hit = rt;
            break;
        }
    }
    if (hit) {
        out->data = hit->data;
        out->pattern = hit->pattern;
        out->params = apr_table_make(p, 2);
        for (int i = 0; i < n; i++) {
            if (hit->segs[i].is_param) {
                apr_table_setn(out->params, hit->segs[i].text,
                               apr_pstrmemdup(p, starts[i], lens[i]));
            }
        }
        return NULL;
    }
    if (!path_known) {
        return dm_err_make(p, DM_E_NOT_FOUND, NULL, "no such endpoint");
    }
    /* Same path, other methods: build the Allow list. */
    const char *allow = NULL;
    for (int i = 0; i < r->routes->nelts; i++) {
        const route *rt = &APR_ARRAY_IDX(r->routes, i, route);
        if (route_fits(rt, starts, lens, n)) {
            const char *m = strcmp(rt->method, "GET") == 0 ? "GET, HEAD" : rt->method;
            allow = allow ? apr_pstrcat(p, allow, ", ", m, NULL) : apr_pstrdup(p, m);
        }
    }
    out->allow = allow;
    return dm_err_make(p, DM_E_METHOD_NOT_ALLOWED, NULL, "method %s is not allowed here; use %s",
                       method, allow);
}
