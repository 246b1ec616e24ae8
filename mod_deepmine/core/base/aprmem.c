/*
 * aprmem.c — see aprmem.h.
 *
 * APR 1.x's allocator (memory/unix/apr_pools.c, the same since 1.3) keeps
 * its free nodes in lists by size: slot i (1..19) holds nodes of (i + 1)
 * boundaries of 4 KiB, slot 0 the larger ones. Their heads are read here
 * through a copy of that layout, checked first against the public getters
 * (the limit just set, the owner, the mutex); the nodes themselves are taken
 * with apr_allocator_alloc and given back with apr_allocator_free, so APR
 * keeps its own accounting and, with the limit at its lowest, unmaps (or
 * frees) each of them.
 */
#include "base/aprmem.h"

#include <apr_pools.h>
#if APR_HAS_THREADS
#include <apr_thread_mutex.h>
#endif

#define APR_MAX_INDEX 20
#define APR_BOUNDARY_INDEX 12

struct apr_allocator_layout {
    apr_size_t max_index;
    apr_size_t max_free_index;
    apr_size_t current_free_index;
#if APR_HAS_THREADS
    apr_thread_mutex_t *mutex;
#endif
    apr_pool_t *owner;
    apr_memnode_t *free[APR_MAX_INDEX];
};

int dm_apr_allocator_release(apr_allocator_t *a, apr_size_t *released)
{
    const struct apr_allocator_layout *m = (const struct apr_allocator_layout *)(const void *)a;
    apr_memnode_t *taken = NULL;
    apr_size_t bytes = 0;
    int budget = 4096; /* far above what any limit lets an allocator keep */

    if (released) {
        *released = 0;
    }
    /* 1 byte: the smallest limit, one boundary (0 would mean unlimited) */
    apr_allocator_max_free_set(a, 1);
    if (m->max_free_index != 1 || m->owner != apr_allocator_owner_get(a) ||
#if APR_HAS_THREADS
        m->mutex != apr_allocator_mutex_get(a) ||
#endif
        m->max_index >= APR_MAX_INDEX) {
        return 0;
    }
    for (apr_size_t i = 0; i < APR_MAX_INDEX; i++) {
        while (m->free[i] && budget-- > 0) {
            /* the node at a list's head is the one apr_allocator_alloc
             * returns for its size: (k + 1) boundaries, header included */
            apr_size_t k = i ? i : m->free[0]->index;
            apr_memnode_t *n =
                apr_allocator_alloc(a, ((k + 1) << APR_BOUNDARY_INDEX) - APR_MEMNODE_T_SIZE);
            if (!n) {
                break;
            }
            bytes += (apr_size_t)(n->endp - (char *)n);
            n->next = taken;
            taken = n;
        }
    }
    if (taken) {
        apr_allocator_free(a, taken);
    }
    if (released) {
        *released = bytes;
    }
    return 1;
}
