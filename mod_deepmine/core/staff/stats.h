/*
 * stats.h — the staff's statistics (GET /api/admin/stats): sign-ups,
 * paid orders and revenue, commissions, withdrawals, active contracts and
 * hash power sold against capacity, per day, week or month over a range.
 * Read from the daily rollup table stats_daily (sql/024), which triggers
 * keep in each write's transaction: a range costs a row per day and
 * currency, whatever the population.
 */
#ifndef DM_STATS_H
#define DM_STATS_H

#include <apr_pools.h>
#include <jansson.h>
#include <stdint.h>

#include "base/err.h"
#include "store/db.h"

/* The longest range one request may ask for. */
#define DM_STATS_MAX_DAYS 3660

typedef enum { DM_STATS_DAY, DM_STATS_WEEK, DM_STATS_MONTH } dm_stats_bucket;

/* "day" | "week" | "month" into *out; DM_E_INVALID "bucket" otherwise. */
dm_err *dm_stats_parse_bucket(apr_pool_t *p, const char *s, dm_stats_bucket *out);

/* The series of the UTC days from the day of `from` to the day of `to`
 * (both included; at most DM_STATS_MAX_DAYS, else DM_E_INVALID), grouped
 * by `bucket` (weeks start on Monday; a bucket is cut by the range's ends):
 *
 *   {"from","to","bucket","buckets":["YYYY-MM-DD"…] (each bucket's first day),
 *    "signups":[…],"orders_paid":[…],"withdrawals_requested":[…],
 *    "contracts_active":[…],"hashrate_sold_ghs":[…],"capacity_ghs":[…],
 *    "currencies":{"USD":{"revenue_micros":[…],"commissions_micros":[…],
 *                         "withdrawals_requested_micros":[…],
 *                         "withdrawals_paid_micros":[…]}}}
 *
 * Flows are summed over each bucket; levels (contracts_active,
 * hashrate_sold_ghs, capacity_ghs) are those at the end of the bucket's
 * last day. Caller owns *out. */
dm_err *dm_stats_get(dm_db *db, apr_pool_t *p, int64_t from, int64_t to, dm_stats_bucket bucket,
                     json_t **out);

#endif
