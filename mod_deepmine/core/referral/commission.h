/*
 * commission.h — the 10-level commission split of a paid order, its
 * clawback on refund, and the release of held commissions after the hold
 * period (docs/commissions.md).
 *
 * Invariants:
 * - an order is split at most once: each credit has the ledger key
 *   comm:<order>:<depth> and a commissions row UNIQUE(order_id, depth), so
 *   paying again changes nothing;
 * - a credit is floor(A * rate(level, depth) / 10000), the level being the
 *   ancestor's at the moment of the split; suspended ancestors and zero
 *   amounts are skipped;
 * - a credit goes to the ancestor's held account; release moves it to the
 *   wallet once release_at has passed, unless an open or confirmed fraud
 *   flag (flags.h) names the buyer (on either side): a flagged member's
 *   purchase holds every credit it made, at every depth;
 * - a clawback takes each credit back from held if still held, else from
 *   the wallet with the commission_clawback kind (which may leave a debt).
 */
#ifndef DM_COMMISSION_H
#define DM_COMMISSION_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "store/db.h"
#include "base/err.h"

#define DM_COMMISSION_DEFAULT_HOLD_DAYS 14

/* Splits paid order `order_id` of `amount_micros` in `currency` by
 * `buyer_id` over the buyer's upline, and counts its volume (vip.h). In
 * the caller's open transaction (DM_E_INTERNAL outside one); the caller
 * then calls dm_vip_reevaluate. Paying an order again is a no-op;
 * paying a clawed-back order is DM_E_CONFLICT. */
dm_err *dm_commission_pay(dm_db *db, apr_pool_t *p, int64_t order_id, int64_t buyer_id,
                          int64_t amount_micros, const char *currency);

/* Takes back every commission of `order_id` not yet clawed back, and the
 * order's volume. In the caller's open transaction; again is a no-op; an
 * order never paid is a no-op. */
dm_err *dm_commission_clawback(dm_db *db, apr_pool_t *p, int64_t order_id);

/* The hold period in seconds (default 14 days), set once by the host
 * (DeepMineCommissionHold) before serving. */
void dm_commission_set_hold(int64_t seconds);
int64_t dm_commission_hold(void);

/* Moves every held commission whose release_at <= now, and whose buyer no
 * open or confirmed flag names, to the beneficiary's wallet (key
 * release:<commission id>). Runs its own transaction (or the caller's if
 * one is open). *released: how many. */
dm_err *dm_commission_release_due(dm_db *db, apr_pool_t *p, int64_t now, int64_t *released);

typedef struct dm_commission_row {
    int64_t id;
    int64_t order_id;
    int64_t beneficiary_id;
    int64_t source_user_id;
    const char *source_masked_email;
    int64_t amount_micros;
    const char *currency;
    const char *status; /* held | available | clawed_back */
    int64_t release_at;
    int64_t created_at;
    int depth;
    int rate_bp;
    int vip_level;
} dm_commission_row;

/* A member's credits, newest first, keyset paginated on id (cursor 0:
 * first page; *next_cursor 0: no more). limit 1..200. */
dm_err *dm_commission_list(dm_db *db, apr_pool_t *p, int64_t beneficiary_id, int64_t cursor,
                           int limit, apr_array_header_t **rows, int64_t *next_cursor);

json_t *dm_commission_row_json(apr_pool_t *p, const dm_commission_row *c);

#endif
