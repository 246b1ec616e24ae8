/*
 * orders.h — orders, and what a verified payment event does to them and
 * to the contracts they buy (shop/contracts.h).
 *
 * An order fixes its package's price when it is made. It is paid either
 * from the member's wallet, in the one transaction that creates it, or
 * through a payment plugin: the plugin's create_checkout is called with no
 * transaction open, and its verified webhook reaches
 * dm_orders_apply_event inside the transaction that records the event
 * (core/payments.c), so the event row and everything it causes commit or
 * roll back together.
 *
 * Exactly once: every state change is a guarded UPDATE (… WHERE status =
 * 'pending' / 'paid') whose row count is checked, ledger keys are derived
 * from the order or the event, and a contract is UNIQUE per order. A
 * replayed event changes nothing (payment_events catches the same event
 * id), and a second, different "paid" event for a paid order is recorded
 * as 'duplicate_payment' for staff — never a second contract.
 */
#ifndef DM_ORDERS_H
#define DM_ORDERS_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "store/db.h"
#include "deepmine/plugin.h"
#include "base/err.h"
#include "plugins/plugin_host.h"
#include "shop/contracts.h"

/* The gateway name of orders paid from the wallet. */
#define DM_ORDER_GATEWAY_BALANCE "balance"
#define DM_ORDERS_PAGE_MAX 200

typedef struct dm_order {
    int64_t id;
    int64_t user_id;
    int64_t package_id;
    int64_t amount_micros;
    const char *currency;
    const char *status;          /* pending|paid|disputed|failed|expired|needs_review|refunded
                                  * (disputed: paid, with a dispute open) */
    const char *gateway;         /* plugin name or "balance" */
    const char *provider_ref;    /* NULL until the checkout exists */
    const char *checkout_url;    /* NULL likewise */
    int64_t payment_transfer_id; /* 0: not paid */
    int64_t created_at;
    int64_t paid_at; /* 0: not paid */
    int64_t updated_at;
    int64_t refunded_micros;   /* refunded so far (shop/refunds.h); <= amount_micros */
    const char *payment_id;    /* the payment identity that credited it; NULL: none */
    const char *dispute;       /* NULL | open | won | lost */
    const char *review_reason; /* why it needs review; NULL: none given */
    int64_t hold_until;        /* a pending order holds capacity until then; 0: no hold */
} dm_order;

/* A checkout order: `gateway` must name a loaded, initialised payment
 * plugin with create_checkout (else DM_E_INVALID, field "gateway"); the
 * package must exist (DM_E_NOT_FOUND) and be active (DM_E_CONFLICT); the
 * capacity must allow it (dm_capacity_check: DM_E_CONFLICT "sold out").
 * The pending order is committed first, then the plugin is called with no
 * transaction open (db must not be in one), then its reference and URL
 * are stored. A plugin failure marks the order failed and is
 * DM_E_UNAVAILABLE. `customer_email` and `return_url` may be NULL. */
dm_err *dm_order_create_checkout(dm_db *db, apr_pool_t *p, const dm_plugin_host *h, int64_t user_id,
                                 const char *customer_email, int64_t package_id,
                                 const char *gateway, const char *return_url, dm_order *out);

/* Buys package `package_id` from member `user_id`'s wallet in ONE
 * transaction: order (paid), transfer wallet -> sales, contract,
 * commissions, VIP re-evaluation, the order_paid e-mail. Insufficient
 * balance is DM_E_CONFLICT and writes nothing; errors as above. */
dm_err *dm_order_pay_from_balance(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t package_id,
                                  dm_order *out);

/* Acts on a verified event of payment plugin `plugin`. MUST run inside
 * the transaction that records the event (core/payments.c); returns in
 * *outcome what was done, for payment_events.outcome:
 * - paid: "paid"; "already_paid" (the same payment identity — the event's
 *   payment_id — reported again: nothing to do); "duplicate_payment" (a
 *   different payment of a paid order: staff alerted); "payment_reused"
 *   (the payment identity already credited another order: parked,
 *   alerted); "amount_mismatch"; "late_payment"; "sold_out" (the order's
 *   capacity hold ran out and nothing is left: parked, alerted);
 * - "failed", "expired", "already_paid" (a decline of a paid order);
 * - refunds: "refunded" (the refund reached the price), "partial_refund"
 *   (a part was refunded: the order stays paid), "needs_review" (a refund
 *   of more than is left, or in another currency: nothing posted, the
 *   order parked, staff alerted), "already_refunded", "not_paid";
 * - disputes: "disputed" (opened: commissions held, staff alerted),
 *   "dispute_won" (released), "dispute_lost" (refunded in full, as a
 *   refund: shop/refunds.h);
 * - "needs_review" (the plugin's review: parked with its reason, alerted,
 *   nothing credited), "pending" (recorded, nothing changes);
 * - "unknown_order", "wrong_gateway", "no_change", "ignored".
 * Each outcome that is not one of the last four is written to the order's
 * history (order_events, with the source: "webhook", "janitor", ...). An
 * error means: roll back (the provider retries). */
dm_err *dm_orders_apply_event(dm_db *db, apr_pool_t *p, const char *plugin,
                              const dm_payment_event *ev, const char **outcome);
dm_err *dm_orders_apply_event_from(dm_db *db, apr_pool_t *p, const char *plugin, const char *source,
                                   const dm_payment_event *ev, const char **outcome);

/* Appends to order `order_id`'s history (order_events), in the caller's
 * transaction. detail may be NULL. */
dm_err *dm_order_history_add(dm_db *db, apr_pool_t *p, int64_t order_id, const char *kind,
                             const char *source, const char *detail);

/* A staff refund of `amount_micros` of a paid order (0: all that is left
 * to refund), audited ("order.refund", with the amount and the reason) by
 * `staff_id` from `ip`. Paid from the balance: refunded at once (one
 * transaction, shop/refunds.h). Through a gateway: the plugin's refund is
 * asked for that amount with no transaction open, and the refund is
 * posted when its refund webhook arrives (the sandbox delivers it before
 * refund returns); *refunded says whether it was posted on return.
 * DM_E_INVALID: no reason (1-500 characters, field "reason"), a negative
 * amount; DM_E_NOT_FOUND (no order); DM_E_CONFLICT (not paid, more than
 * is left to refund, or the plugin cannot refund); DM_E_UNAVAILABLE (the
 * plugin failed). db must not be in a transaction. */
dm_err *dm_order_refund(dm_db *db, apr_pool_t *p, const dm_plugin_host *h, int64_t staff_id,
                        const char *ip, int64_t order_id, int64_t amount_micros, const char *reason,
                        dm_order *out, int *refunded);

/* A manual refund (docs/payments.md "Manual refunds"): staff refunded
 * `amount_micros` (0: all that is left) of a paid gateway order at the
 * provider themselves (its plugin has no refund, or the provider's store
 * refuses API refunds). Posted at once by the refund rules
 * (shop/refunds.h), audited ("order.refund_manual", with the amount, the
 * reason and the provider's id of the refund when given), noted in the
 * order's history. The plugin is not asked. A balance order is
 * DM_E_INVALID (field manual); the errors of dm_order_refund otherwise. */
dm_err *dm_order_refund_manual(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                               int64_t order_id, int64_t amount_micros, const char *reason,
                               const char *provider_refund_ref, dm_order *out);

/* One order; DM_E_NOT_FOUND when absent, or when user_id != 0 and the
 * order is someone else's. */
dm_err *dm_order_get(dm_db *db, apr_pool_t *p, int64_t order_id, int64_t user_id, dm_order *out);

/* Newest first, keyset paginated on id (cursor 0: first page; *next 0:
 * no more). user_id 0: everyone's; status NULL: any (an unknown status is
 * DM_E_INVALID, field "status"); both filters apply together. Rows are
 * dm_order. */
dm_err *dm_orders_list(dm_db *db, apr_pool_t *p, int64_t user_id, const char *status,
                       int64_t cursor, int limit, apr_array_header_t **rows, int64_t *next);

/* JSON as the API shows it (caller owns it); `staff` adds user_id,
 * provider_ref, payment_transfer_id. */
json_t *dm_order_json(apr_pool_t *p, const dm_order *o, int staff);

#endif
