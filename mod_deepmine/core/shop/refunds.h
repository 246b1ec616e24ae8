/*
 * refunds.h — what a refund does to an order, in full or in part
 * (docs/commissions.md "Refunds"): a refund undoes the purchase.
 *
 * Each refund of `part` out of what was still unrefunded (`left`) of a
 * paid order posts, in the caller's transaction:
 * - a refund transfer of `part` from sales back to whoever paid (the
 *   member's wallet, or the gateway's account);
 * - the clawbacks, of everything the purchase brought that is still kept,
 *   floor(kept x part / left): the purchase commissions (commission.h:
 *   from held while held, else the wallet), the yield credited on the
 *   contract and the yield commissions paid on that yield (from the
 *   wallets). A wallet that is not enough goes below zero: a debt;
 * - the volumes and VIP levels (vip.h: a level only the refunded volume
 *   justified goes down).
 * The refund that reaches the price takes back all that is left (so parts
 * that sum to the price claw back exactly everything), refunds the order
 * and ends the contract. Before that the contract runs on its remaining
 * share, (price - refunded) / price, for every hour that ends after the
 * refund (DeepMinePartialRefund prorate, the default; its released hash
 * rate is for sale again), or ends at once (end-contract).
 *
 * Exactly once: the order's refunded total is moved by a guarded UPDATE
 * (… WHERE status = 'paid' AND refunded_micros = <as read>), and every
 * key names the refunded total it brings the order to.
 */
#ifndef DM_REFUNDS_H
#define DM_REFUNDS_H

#include <apr_pools.h>
#include <stdint.h>

#include "base/err.h"
#include "store/db.h"

struct dm_order;

typedef enum dm_partial_refund_mode {
    DM_PARTIAL_REFUND_PRORATE = 0,     /* the contract runs on its remaining share */
    DM_PARTIAL_REFUND_END_CONTRACT = 1 /* the contract ends at the first partial refund */
} dm_partial_refund_mode;

/* Set by the host before it forks (DeepMinePartialRefund); read-only
 * afterwards. Default: prorate. */
void dm_refund_set_partial_mode(dm_partial_refund_mode mode);
dm_partial_refund_mode dm_refund_partial_mode(void);

/* "prorate" or "end-contract" into *mode: 0; anything else: -1. */
int dm_refund_mode_parse(const char *s, dm_partial_refund_mode *mode);

typedef struct dm_refund_req {
    int64_t amount_micros; /* 1 .. what is left of the order */
    const char *event;     /* a gateway's event: "<plugin>:<event id>"; NULL: a staff refund */
    int64_t staff_id;      /* a staff refund: who (0: the console) */
    const char *reason;    /* a staff refund: why (may be NULL) */
} dm_refund_req;

/* Posts one refund of order `o`, as read in the caller's open transaction
 * (status and refunded_micros). *applied 0: the order is no longer paid,
 * or its refunded total moved since it was read — nothing written.
 * *complete 1: this refund reached the price (the order is refunded, the
 * contract ended). An amount <= 0 or more than what is left is
 * DM_E_INVALID (field amount_micros). Any other error: roll back. */
dm_err *dm_refund_post(dm_db *db, apr_pool_t *p, const struct dm_order *o, const dm_refund_req *req,
                       int *applied, int *complete);

#endif
