/*
 * earnings.h — what members see of their yield: daily totals for a chart
 * (GET /api/earnings) and a contract's statement per UTC day (GET
 * /api/contracts/{id}/statement), both read from contract_days, which the
 * accrual writes in the transaction of each new credit (so they always
 * agree with the ledger's yield:<hour>:<contract> transfers).
 */
#ifndef DM_EARNINGS_H
#define DM_EARNINGS_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "store/db.h"
#include "base/err.h"
#include "shop/contracts.h"

/* The longest range one answer covers, in days. */
#define DM_EARNINGS_MAX_DAYS 366

typedef struct dm_earning_day {
    int64_t day;           /* 00:00 UTC, Unix seconds */
    int64_t hashrate_ghs;  /* statement: the contract's; totals: 0 */
    int64_t hash_seconds;  /* GH/s x seconds credited */
    int64_t share_micros;  /* gross share of the pool's output (fixed: = credit) */
    int64_t fee_micros;    /* maintenance fee taken */
    int64_t credit_micros; /* to the wallet */
} dm_earning_day;

/* The UTC days [from, to) cover, from's day to the day before the one
 * holding `to` (or holding it, when `to` is not midnight): every day of
 * the range, with zeros where nothing accrued. DM_E_INVALID: field "to"
 * when to <= from or the range is over DM_EARNINGS_MAX_DAYS days. */
dm_err *dm_earnings_daily(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t from, int64_t to,
                          apr_array_header_t **days, int64_t *total_micros);

/* Contract `contract_id`'s statement over [from, to) (same day rule),
 * only the days it accrued something. user_id != 0: the member's own
 * contract only (else DM_E_NOT_FOUND). */
dm_err *dm_earnings_statement(dm_db *db, apr_pool_t *p, int64_t contract_id, int64_t user_id,
                              int64_t from, int64_t to, dm_contract *contract,
                              apr_array_header_t **days);

/* One day as JSON: {day, hash_seconds, fee_micros, credit_micros}, and
 * for a statement (with_contract) hashrate_ths and pool_share_micros;
 * `fixed` shows pool_share_micros and fee_micros as null (no pool behind
 * a fixed yield). */
json_t *dm_earning_day_json(apr_pool_t *p, const dm_earning_day *d, int with_contract, int fixed);

#endif
