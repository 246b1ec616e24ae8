/*
 * yield_commission.h — the optional commission plan on yield: the rate an
 * upline of VIP level L earns, at depth d (1..10) above the member, on
 * each of the member's yield credits. Off by default: an empty table pays
 * nothing. The accrual job (accrual.c) pays these in the batch that makes
 * the credit, under the ledger key ycomm:<contract>:<hour>:<depth>, from
 * the commissions system account to the upline's wallet (no hold: yield
 * is never refunded, so there is nothing to claw back).
 *
 * Invariant: a stored plan has levels 1..10 each at most once, rates
 * 0..10000 bp, and each level's total over the 10 depths, and the most one
 * credit can pay (the highest rate of each depth, summed: an upline may
 * hold any mix of levels), within the cap it was validated against
 * (DeepMineCommissionCap, as the purchase plan).
 */
#ifndef DM_YIELD_COMMISSION_H
#define DM_YIELD_COMMISSION_H

#include <apr_pools.h>
#include <jansson.h>
#include <stdint.h>

#include "store/db.h"
#include "base/err.h"

#define DM_YC_LEVELS 10
#define DM_YC_DEPTHS 10

typedef struct dm_yc_plan {
    int present[DM_YC_LEVELS];                /* [0] is level 1 */
    int rates_bp[DM_YC_LEVELS][DM_YC_DEPTHS]; /* [level-1][depth-1] */
    int enabled;                              /* some rate > 0 */
} dm_yc_plan;

/* The stored plan (all zero and enabled 0 when the table is empty). */
dm_err *dm_yc_plan_load(dm_db *db, apr_pool_t *p, dm_yc_plan *out);

/* {"levels":[{"level","rates_bp":[10]}, …]} → a plan. 0 to 10 entries,
 * levels 1..10 each at most once, 10 rates each 0..10000, each level's
 * total <= cap_bp, the most one credit can pay <= cap_bp. DM_E_INVALID
 * naming the field otherwise. */
dm_err *dm_yc_plan_parse(apr_pool_t *p, json_t *body, int cap_bp, dm_yc_plan *out);

/* Replaces the stored plan, audited "yield_commission_rates.update" with
 * before and after, in one transaction. */
dm_err *dm_yc_plan_replace(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                           const dm_yc_plan *plan, int cap_bp);

/* {"enabled","levels":[{"level","rates_bp":[10],"total_bp"}],"cap_bp"}
 * (caller owns it). */
json_t *dm_yc_plan_json(const dm_yc_plan *plan, int cap_bp);

#endif
