/*
 * accrual.h — hourly yield accrual (ARCHITECTURE §3): the jobs that
 * credit every contract's yield for each hour, exactly once, and expire
 * contracts with every hour of their term credited. Rows of jobs_table.c:
 *
 *   accrual          hourly; fixed-yield contracts: the operator's daily
 *                    yield D split by the second, so that any partition of
 *                    a contract's term sums to D x duration_days exactly;
 *   pool-accrual     hourly; pool-yield contracts: the pool's recorded
 *                    payout (pool_payouts.h) split pro rata to
 *                    hash-rate-seconds, less each contract's fee_bp; an
 *                    hour with no payout recorded waits (DM_JOB_WAITING);
 *   contract-expiry  every minute: a contract past expires_at with every
 *                    hour of its term credited becomes `expired`, and its
 *                    member gets the contract_expired e-mail (queued).
 *
 * An hour's contracts are those whose paid term covers it, whatever their
 * status now: an hour run late (after a dead period, a late payout) still
 * credits a contract that expired or was refunded since, the latter only
 * up to its refund (ended_at).
 *
 * Exactly once: every credit is a ledger transfer keyed
 * yield:<hour start, Unix seconds>:<contract> (hour first: an hour's keys
 * fill pages of their own at the end of the key's index; an hour up to
 * migration 036's cutover keeps the key it was credited under,
 * earn:<contract>:<hour>, sql/036_…), posted in batches
 * (dm_ledger_post_many) of env->batch_size contracts (default 5000) per
 * transaction; contracts.earned_micros, the member's statement
 * (contract_days) and yield commissions (ycomm:<contract>:<hour>:<depth>)
 * change only for transfers that were new, in the same transaction. So a
 * crash loses at most the uncommitted batch, and re-running the period
 * credits only what is missing.
 *
 * The exact formulas are in docs/decisions.md ("Yield accrual").
 */
#ifndef DM_ACCRUAL_H
#define DM_ACCRUAL_H

#include <apr_pools.h>
#include <stdint.h>

#include "store/db.h"
#include "base/err.h"
#include "jobs/jobs.h"

#define DM_ACCRUAL_BATCH 5000

/* A fixed-yield contract's credit for [a, b), started_at <= a <= b:
 * floor(D x (b - started_at) / 86400) - floor(D x (a - started_at) / 86400),
 * in 128-bit arithmetic (no overflow for any int64 D and term). 0 for an
 * empty or inverted interval or D <= 0. */
int64_t dm_accrual_fixed_credit(int64_t daily_micros, int64_t started_at, int64_t a, int64_t b);

/* The same credit for a contract running on num/den of its terms (a partly
 * refunded contract: (price - refunded) / price): G(b) - G(a) with
 * G(t) = floor(F(t) x num / den), F(t) the full contract's total above, in
 * 128 bits. num >= den is the full credit; num <= 0 nothing. A whole term
 * at one share sums to floor(D x days x num / den). */
int64_t dm_accrual_fixed_credit_share(int64_t daily_micros, int64_t started_at, int64_t a,
                                      int64_t b, int64_t num, int64_t den);

/* One contract's part of a pool payout. */
typedef struct dm_pool_split {
    int64_t gross;  /* floor(payout x hash_seconds / total_hash_seconds) */
    int64_t fee;    /* floor(gross x fee_bp / 10000) */
    int64_t credit; /* gross - fee */
} dm_pool_split;

/* The split above; all zero when total <= 0 or hash_seconds <= 0.
 * hash_seconds <= total is the caller's rule (then gross <= payout). */
void dm_accrual_pool_split(int64_t payout_micros, int64_t hash_seconds, int64_t total_hash_seconds,
                           int64_t fee_bp, dm_pool_split *out);

/* The jobs (dm_job_fn). */
dm_err *dm_accrual_job_fixed(dm_job_ctx *ctx, dm_job_result *res);
dm_err *dm_accrual_job_pool(dm_job_ctx *ctx, dm_job_result *res);
dm_err *dm_accrual_job_expiry(dm_job_ctx *ctx, dm_job_result *res);

/* first_period of the hourly jobs: the start of the oldest active
 * contract of the mode (0: none). */
dm_err *dm_accrual_first_fixed(dm_db *db, apr_pool_t *p, int64_t now, int64_t *out);
dm_err *dm_accrual_first_pool(dm_db *db, apr_pool_t *p, int64_t now, int64_t *out);

#endif
