/*
 * vip.h — VIP levels: the commission plan (what each level 1..10 needs and
 * what it earns at each depth 1..10), the per-member volumes that qualify
 * for a level, and the re-evaluation that raises levels.
 *
 * Invariants:
 * - the stored plan always has 10 levels with non-decreasing thresholds,
 *   rates 0..10000 bp, and the most one order can pay within the cap it
 *   was validated against (DeepMineCommissionCap): an order pays each
 *   ancestor at that ancestor's level, so the sum over the 10 depths of
 *   the highest rate any level pays at that depth is what is capped (and
 *   with it each level's own total);
 * - volumes count paid orders only: a clawback takes an order's volume
 *   back, so refunded volume never qualifies anyone;
 * - levels go up automatically when volumes reach them, and down only when
 *   a refund takes away the volume that justified them (audited with the
 *   reason, dm_vip_refund_order); never with time or a change of plan.
 *   Staff may set one by hand (audited).
 */
#ifndef DM_VIP_H
#define DM_VIP_H

#include <apr_pools.h>
#include <jansson.h>
#include <stdint.h>

#include "store/db.h"
#include "base/err.h"

#define DM_VIP_LEVELS 10
#define DM_VIP_DEPTHS 10
#define DM_VIP_RATE_MAX_BP 10000
/* The default of DeepMineCommissionCap: at most 50 % of an order paid out. */
#define DM_VIP_DEFAULT_CAP_BP 5000

typedef struct dm_vip_level {
    int64_t min_personal_volume_micros;
    int64_t min_direct_paid_referrals;
    int64_t min_team_volume_micros;
    int level;                   /* 1..10 */
    int rates_bp[DM_VIP_DEPTHS]; /* [0] is depth 1 */
} dm_vip_level;

typedef struct dm_vip_plan {
    dm_vip_level levels[DM_VIP_LEVELS]; /* [0] is level 1 */
} dm_vip_plan;

typedef struct dm_volumes {
    int64_t personal_volume_micros; /* own paid, unrefunded orders */
    int64_t paid_orders;            /* how many of them */
    int64_t direct_paid_referrals;  /* direct referrals with paid_orders > 0 */
    int64_t team_volume_micros;     /* paid, unrefunded orders 1..10 levels below */
} dm_volumes;

/* The stored plan. */
dm_err *dm_vip_plan_load(dm_db *db, apr_pool_t *p, dm_vip_plan *out);

/* Checks a plan: levels 1..10 in order, thresholds >= 0 and non-decreasing
 * from one level to the next, rates 0..10000 bp, each level's total over
 * the 10 depths <= cap_bp (DM_E_INVALID naming the level, field
 * "levels[i]..."), and the most one order can pay
 * (dm_vip_plan_order_max_bp) <= cap_bp (DM_E_INVALID, field "levels",
 * naming each depth and the levels paying its highest rate). */
dm_err *dm_vip_plan_validate(apr_pool_t *p, const dm_vip_plan *plan, int cap_bp);

/* The most one order can pay under `plan`, in basis points: the sum over
 * the 10 depths of the highest rate any level pays at that depth (an
 * upline may hold any mix of levels). */
int dm_vip_plan_order_max_bp(const dm_vip_plan *plan);

/* The same for any rates table rates[level-1][depth-1] (the yield plan's
 * too), and its check: DM_E_INVALID (field "levels") when it is over
 * cap_bp, "one <what> could pay N bp, more than the cap …", naming each
 * depth and the levels paying its highest rate. */
int dm_vip_rates_order_max_bp(const int rates[DM_VIP_LEVELS][DM_VIP_DEPTHS]);
dm_err *dm_vip_rates_check_order_cap(apr_pool_t *p, const int rates[DM_VIP_LEVELS][DM_VIP_DEPTHS],
                                     int cap_bp, const char *what);

/* {"levels":[{"level","min_personal_volume_micros","min_direct_paid_referrals",
 * "min_team_volume_micros","rates_bp":[10],"total_bp"}],"cap_bp",
 * "max_order_bp"} (caller owns it). */
json_t *dm_vip_plan_json(apr_pool_t *p, const dm_vip_plan *plan, int cap_bp);

/* The body of PUT /api/admin/vip-levels ({"levels":[10 objects]}) into a
 * plan, checking types and shape (not the rules: dm_vip_plan_validate). */
dm_err *dm_vip_plan_parse(apr_pool_t *p, json_t *body, dm_vip_plan *out);

/* Validates and stores `plan` in its own transaction, with an audit entry
 * "vip_levels.update" (before and after) by staff_id from ip. */
dm_err *dm_vip_plan_replace(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                            const dm_vip_plan *plan, int cap_bp);

/* The highest level whose three thresholds `v` reaches (1 at least). */
int dm_vip_qualify(const dm_vip_plan *plan, const dm_volumes *v);

/* Adds (sign 1) or takes back (sign -1) a paid order of `amount_micros` by
 * `buyer_id`, whose upline (nearest first, n of them) is given: the
 * buyer's personal volume and paid orders, the referrer's direct paid
 * referrals when the buyer's paid orders go 0 -> 1 (or 1 -> 0), and every
 * ancestor's team volume. In the caller's open transaction. */
dm_err *dm_vip_count_order(dm_db *db, apr_pool_t *p, int64_t buyer_id, const int64_t *upline, int n,
                           int64_t amount_micros, int sign);

/* A refund of `part_micros` of order `order_id` by `buyer_id` (upline
 * nearest first, n of them): the part leaves the buyer's personal volume
 * and each ancestor's team volume; `last` (the order is now wholly
 * refunded) also takes it out of the buyer's paid orders and, when it was
 * the buyer's last, the referrer's direct paid referrals. Then the buyer
 * and each ancestor whose volumes before the refund reached its current
 * level and after it do not is lowered to the level they now reach,
 * audited "user.vip_lowered" (staff NULL, ip "system"; after: vip_level,
 * order_id, reason, which starts "order N <why>"; why NULL: "refunded").
 * In the caller's open transaction. */
dm_err *dm_vip_refund_order(dm_db *db, apr_pool_t *p, int64_t order_id, int64_t buyer_id,
                            const int64_t *upline, int n, int64_t part_micros, int last,
                            const char *why);

/* Re-evaluates the buyer and its upline (up to 10) against the plan and
 * raises each one whose volumes reach a higher level (never lowers). Call
 * it after dm_commission_pay, so the credits use the levels of the moment
 * of the order. In the caller's open transaction (DM_E_INTERNAL outside
 * one). */
dm_err *dm_vip_reevaluate(dm_db *db, apr_pool_t *p, int64_t buyer_id);

#endif
