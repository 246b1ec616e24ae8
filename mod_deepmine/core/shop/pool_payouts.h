/*
 * pool_payouts.h — the mining pool's actual output, as recorded by an
 * operator (POST /api/admin/pool-payouts, `deepminectl pool-payouts
 * record`) or imported, for one UTC hour or one UTC day; and, once the
 * pool-accrual job has split it (accrual.c), its reconciliation.
 *
 * Invariants:
 * - a payout covers an hour [H, H+1h) or a day [D, D+24h), aligned, that
 *   has ended, in the platform currency, amount > 0;
 * - an hour payout and a day payout never overlap, and a period has at
 *   most one payout (refused with DM_E_CONFLICT at recording; the UNIQUE
 *   (period_kind, period_start) backs the same rule for one kind);
 * - a distributed payout never changes again, and amount_micros ==
 *   credits_micros + fee_micros + remainder_micros, exactly.
 */
#ifndef DM_POOL_PAYOUTS_H
#define DM_POOL_PAYOUTS_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "store/db.h"
#include "base/err.h"

#define DM_POOL_NOTE_MAX 500
#define DM_POOL_PAGE_MAX 200

typedef struct dm_pool_payout {
    int64_t id;
    const char *period_kind; /* "hour" | "day" */
    int64_t period_start;
    int64_t period_end;
    int64_t amount_micros;
    const char *currency;
    const char *note;    /* may be NULL */
    int64_t recorded_by; /* staff id; 0: the console or an import */
    int64_t created_at;
    /* the reconciliation, once distributed (distributed_at != 0) */
    int64_t distributed_at;
    int64_t contracts;
    int64_t hash_seconds;
    int64_t credits_micros;
    int64_t fee_micros;
    int64_t remainder_micros;
} dm_pool_payout;

/* Records a payout for the period of `kind` ("hour" | "day") starting at
 * period_start, audited "pool_payout.record" by `staff_id` (0: console)
 * from `ip`, and asks the cron daemon to run the pool-accrual period that
 * distributes it (the hour; for a day, its 23:00 hour). DM_E_INVALID
 * (field) for a bad kind, a period not aligned or not over yet, an amount
 * <= 0, another currency, a bad note; DM_E_CONFLICT when a payout of
 * either kind already covers part of the period (distributed or not).
 * Runs its own transaction. */
dm_err *dm_pool_payout_record(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                              const char *kind, int64_t period_start, int64_t amount_micros,
                              const char *currency, const char *note, dm_pool_payout *out);

/* The payout covering hour `hour` (an hour payout of that hour, or the
 * day payout of its day); *found 0 when none is recorded. */
dm_err *dm_pool_payout_covering(dm_db *db, apr_pool_t *p, int64_t hour, dm_pool_payout *out,
                                int *found);

/* Records the reconciliation of payout `id` and marks it distributed, in
 * the caller's transaction; DM_E_CONFLICT when it was distributed already.
 * r's reconciliation fields are stored; amount must balance. */
dm_err *dm_pool_payout_mark_distributed(dm_db *db, apr_pool_t *p, const dm_pool_payout *r);

/* Newest period first, keyset paginated on (period_start, id) through the
 * payout id (cursor 0: first page; *next 0: no more). Rows are
 * dm_pool_payout. */
dm_err *dm_pool_payouts_list(dm_db *db, apr_pool_t *p, int64_t cursor, int limit,
                             apr_array_header_t **rows, int64_t *next);

/* As GET /api/admin/pool-payouts shows one (caller owns it): the payout,
 * "status" pending|distributed, and "reconciliation" (null while pending)
 * {contracts, hash_seconds, credits_micros, fee_micros, remainder_micros,
 * balanced}. */
json_t *dm_pool_payout_json(apr_pool_t *p, const dm_pool_payout *r);

#endif
