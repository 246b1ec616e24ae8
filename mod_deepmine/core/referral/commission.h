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
 * - release also waits while the beneficiary is suspended;
 * - a clawback takes each credit back from held if still held, else from
 *   the wallet with the commission_clawback kind (which may leave a debt);
 *   a refund of part of an order takes back the same part of what each
 *   credit still has: floor(kept x part / left), `left` being what was
 *   unrefunded before it, and the refund that reaches the amount takes
 *   back all that is left — so parts that sum to the amount take back
 *   exactly every credit.
 *   a forfeited credit (staff moved it from held to the
 *   forfeited_commissions system account) is neither released nor clawed
 *   back.
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
/* Gateways (payment plugins) that may have a hold of their own, and the
 * longest name (a plugin name's). */
#define DM_COMMISSION_HOLD_GATEWAYS 32
#define DM_COMMISSION_GATEWAY_MAX 64

/* Splits paid order `order_id` of `amount_micros` in `currency` by
 * `buyer_id` over the buyer's upline, and counts its volume (vip.h). In
 * the caller's open transaction (DM_E_INTERNAL outside one); the caller
 * then calls dm_vip_reevaluate. Paying an order again is a no-op;
 * paying a clawed-back order is DM_E_CONFLICT. */
dm_err *dm_commission_pay(dm_db *db, apr_pool_t *p, int64_t order_id, int64_t buyer_id,
                          int64_t amount_micros, const char *currency);

/* dm_commission_pay for an order paid through `gateway` (the payment
 * plugin's name, "balance" or NULL): the credits are held for that
 * gateway's hold (dm_commission_hold_for). */
dm_err *dm_commission_pay_via(dm_db *db, apr_pool_t *p, int64_t order_id, int64_t buyer_id,
                              int64_t amount_micros, const char *currency, const char *gateway);

/* A refund of `part_micros` of paid order `order_id`: of each of its
 * credits still kept (amount - clawed) it takes back floor(kept x part /
 * left), where left = the order's amount minus what was refunded before;
 * part == left takes back everything left and marks the order refunded.
 * From held while a credit is held, else from the wallet (a debt if it is
 * not enough). Keys clawback:<order>:<depth> when the whole order is
 * refunded at once, else clawback:<order>:<depth>:<refunded total after>.
 * The part leaves the volumes too, and the buyer and its upline are
 * re-evaluated (dm_vip_refund_order, which may lower a level; `why` goes
 * in its audit entry, NULL for a plain "order N refunded"). In the
 * caller's open transaction; an order never paid (or refunded already)
 * is a no-op; part <= 0 or more than left is DM_E_INVALID. */
dm_err *dm_commission_refund(dm_db *db, apr_pool_t *p, int64_t order_id, int64_t part_micros,
                             const char *why);

/* dm_commission_refund of everything not yet refunded: every commission of
 * `order_id` not yet clawed back, and the order's volume. In the caller's
 * open transaction; again is a no-op; an order never paid is a no-op. */
dm_err *dm_commission_clawback(dm_db *db, apr_pool_t *p, int64_t order_id);

/* The default hold period in seconds (default 14 days), set once by the
 * host (DeepMineCommissionHold <days>) before serving; setting it forgets
 * every gateway's own hold, which the host then sets again. */
void dm_commission_set_hold(int64_t seconds);
int64_t dm_commission_hold(void);

/* A gateway's own hold (DeepMineCommissionHold <days> <plugin>), set by
 * the host after dm_commission_set_hold; a later call for the same gateway
 * replaces it. -1 (nothing set) for a name of 0 or more than
 * DM_COMMISSION_GATEWAY_MAX bytes, or when DM_COMMISSION_HOLD_GATEWAYS
 * gateways already have one. */
int dm_commission_set_hold_for(const char *gateway, int64_t seconds);

/* The hold of an order paid through `gateway`: its own, else the default
 * (balance-paid orders, gateways without one, NULL). */
int64_t dm_commission_hold_for(const char *gateway);

/* Moves every held commission whose release_at <= now, whose beneficiary
 * is active, and whose buyer no open or confirmed flag names, to the
 * beneficiary's wallet (key
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
    const char *status;    /* held | available | clawed_back | forfeited */
    int64_t clawed_micros; /* taken back by partial refunds so far */
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

/* Staff's filters; 0 / NULL does not filter. */
typedef struct dm_commission_filter {
    int64_t beneficiary_id;
    int64_t buyer_id;   /* the member whose purchase made the credit */
    const char *status; /* held | available | clawed_back | forfeited */
} dm_commission_filter;

/* Every member's credits matching `f`, newest first, paginated as
 * dm_commission_list; an unknown status is DM_E_INVALID ("status"). */
dm_err *dm_commission_admin_list(dm_db *db, apr_pool_t *p, const dm_commission_filter *f,
                                 int64_t cursor, int limit, apr_array_header_t **rows,
                                 int64_t *next_cursor);

json_t *dm_commission_row_json(apr_pool_t *p, const dm_commission_row *c);
/* The member's JSON plus "beneficiary_id" and "buyer_id". */
json_t *dm_commission_staff_json(apr_pool_t *p, const dm_commission_row *c);

/* Forfeits held commission `commission_id`: moves it from the
 * beneficiary's held account to the forfeited_commissions system account
 * (key forfeit:<id>, kind commission_forfeit) and marks it `forfeited`, in
 * its own transaction with an audit entry "commission.forfeit" (target
 * the commission; after: transfer_id, amount_micros, currency, reason) by
 * staff_id (0: the console) from ip (NULL: console). Only for what a
 * forfeit is for: a held commission whose beneficiary is suspended, or
 * whose buyer a confirmed flag names; DM_E_CONFLICT otherwise (and for a
 * commission no longer held, so a forfeit happens once). DM_E_NOT_FOUND;
 * reason 1..500 characters (DM_E_INVALID, field "reason"). *out: the row
 * after. A forfeited commission is never released nor clawed back. */
dm_err *dm_commission_forfeit(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                              int64_t commission_id, const char *reason, dm_commission_row *out);

/* Forfeits every held commission of suspended member `user_id`, as
 * dm_commission_forfeit does one (one audit entry each), in one
 * transaction. DM_E_NOT_FOUND (no member), DM_E_CONFLICT (the member is not
 * suspended). *count and *amount_micros: what was forfeited (0 and 0 when
 * nothing was held; the amount of those in the platform currency). */
dm_err *dm_commission_forfeit_member(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                                     int64_t user_id, const char *reason, int64_t *count,
                                     int64_t *amount_micros);

#endif
