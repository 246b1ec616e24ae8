/*
 * capacity.h — the hash power the operator actually owns or leases, and
 * the rule that the platform never sells more than that.
 *
 * Capacity is a history (table `capacity`): the current figure is the
 * newest row. With no row at all nothing can be sold: a fresh install
 * must record its capacity (PUT /api/admin/capacity, or `deepminectl
 * capacity set`) before the first order; `make run` records a generous
 * demo figure.
 *
 * Sold hash power = the hash rate of every active, unexpired contract
 * (less what a partial refund released: shop/refunds.h) +
 * the package hash rate of every pending order (an order being paid holds
 * its share, so two checkouts cannot both take the last terahash).
 */
#ifndef DM_CAPACITY_H
#define DM_CAPACITY_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "store/db.h"
#include "base/err.h"

#define DM_CAPACITY_NOTE_MAX 500
/* 1 EH/s in GH/s: a bound on what anyone records (and no overflow). */
#define DM_CAPACITY_MAX_GHS 1000000000000LL

typedef struct dm_capacity_row {
    int64_t id;
    int64_t hashrate_ghs;
    const char *note; /* may be NULL */
    int64_t set_by;   /* staff id; 0: the console */
    int64_t created_at;
} dm_capacity_row;

/* The current capacity; *found 0 when none was ever recorded. */
dm_err *dm_capacity_current(dm_db *db, apr_pool_t *p, dm_capacity_row *out, int *found);

/* Records a new capacity (0..DM_CAPACITY_MAX_GHS GH/s, note up to
 * DM_CAPACITY_NOTE_MAX characters, may be NULL) by staff `staff_id` (0: the
 * console) from `ip` (NULL: console), with an audit row "capacity.set"
 * (before/after), in its own transaction. */
dm_err *dm_capacity_set(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                        int64_t hashrate_ghs, const char *note, dm_capacity_row *out);

/* Records `hashrate_ghs` only when no capacity exists yet (the demo of
 * `make run`); *set says whether it did. */
dm_err *dm_capacity_ensure(dm_db *db, apr_pool_t *p, int64_t hashrate_ghs, const char *note,
                           int *set);

/* Newest first, at most `limit` (1..200) rows of dm_capacity_row. */
dm_err *dm_capacity_history(dm_db *db, apr_pool_t *p, int limit, apr_array_header_t **rows);

/* Hash power sold now (see the header comment), in GH/s. */
dm_err *dm_capacity_sold(dm_db *db, apr_pool_t *p, int64_t *sold_ghs);

/* What is left: capacity - sold (0 when none is recorded, never < 0). */
dm_err *dm_capacity_available(dm_db *db, apr_pool_t *p, int64_t *available_ghs);

/* DM_E_CONFLICT "sold out" when selling package `package_id` now would
 * take the sold hash power over the current capacity (always, when no
 * capacity is recorded); DM_E_NOT_FOUND for an unknown package. Call it
 * inside the transaction that creates the order, so two concurrent
 * orders cannot both pass on the same spare capacity. */
dm_err *dm_capacity_check(dm_db *db, apr_pool_t *p, int64_t package_id);

/* {"id","hashrate_ths","hashrate_ghs","note","set_by","created_at"}. */
json_t *dm_capacity_row_json(apr_pool_t *p, const dm_capacity_row *c);

#endif
