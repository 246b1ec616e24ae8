/*
 * aprmem.h — giving an APR allocator's free nodes back to the system.
 *
 * An allocator keeps the nodes its pools free, up to its limit
 * (apr_allocator_max_free_set; Apache's MaxMemFree), for the next
 * allocation. APR has no call that empties those free lists, so an
 * allocator that outlives its use (the event MPM recycles a connection's
 * pool together with its allocator) holds them for as long as it lives.
 */
#ifndef DM_APRMEM_H
#define DM_APRMEM_H

#include <apr_allocator.h>

/* Lowers a's limit to its smallest (nothing is kept from here on: what a's
 * pools free next goes back to the system) and gives back every node on its
 * free lists; *released (may be NULL) gets their bytes. Returns 0 when a is
 * not laid out as this APR's allocator is known to be: its free lists are
 * then left alone (only the limit is lowered). Call it only from the one
 * thread that uses a, or with a's mutex set. */
int dm_apr_allocator_release(apr_allocator_t *a, apr_size_t *released);

#endif
