/* libFuzzer: arbitrary methods and paths through the router. A match must
 * carry its params; a miss must be 404 or 405 with an Allow list. */
#include <apr_general.h>
#include <apr_strings.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static apr_pool_t *gp;
    static dm_router *r;
    static const int tag = 1;
    apr_pool_t *p;
    dm_route_match m;
    dm_err *e;
    const uint8_t *nl;
    char *method, *path;

    if (!r) {
        apr_initialize();
        apr_pool_create(&gp, NULL);
        r = dm_router_create(gp);
        dm_router_add(r, "GET", "/api/packages", &tag);
        dm_router_add(r, "POST", "/api/packages", &tag);
        dm_router_add(r, "GET", "/api/packages/{id}", &tag);
        dm_router_add(r, "GET", "/api/users/{user}/documents/{doc}", &tag);
    }
    nl = memchr(data, '\n', size);
    if (!nl) {
        return 0;
    }
    apr_pool_create(&p, NULL);
    method = apr_pstrndup(p, (const char *)data, (apr_size_t)(nl - data));
    path = apr_pstrndup(p, (const char *)nl + 1, size - (apr_size_t)(nl - data) - 1);
    e = dm_router_match(r, p, method, path, &m);
    if (!e) {
        if (m.data != &tag || !m.params) {
            abort();
        }
    } else if (e->code == DM_E_METHOD_NOT_ALLOWED) {
        if (!m.allow) {
            abort();
        }
    } else if (e->code != DM_E_NOT_FOUND) {
        abort();
    }
    apr_pool_destroy(p);
    return 0;
}
