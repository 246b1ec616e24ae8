/*
 * janitor.h — the payment janitor (docs/payments.md "The janitor"), and the
 * process-wide payment rules it and the checkout read.
 *
 * A webhook can be lost. Every pending gateway order older than
 * DeepMinePaymentSettle (default 15 minutes) that has a provider reference
 * is asked about through its plugin's query (ABI 1.4), and the answer goes
 * through the very path a webhook takes (dm_payment_event_record_from,
 * source "janitor"): one payment identity credits once, whichever reports
 * it first. An order whose checkout was never created (no reference: the
 * server died between the order and the plugin's answer) is expired once
 * its checkout lifetime has passed, as is an order of a plugin without
 * query once its lifetime and the settle delay have passed (a payment that
 * still arrives is a late payment: needs_review, never lost).
 */
#ifndef DM_JANITOR_H
#define DM_JANITOR_H

#include <apr_pools.h>
#include <stdint.h>

#include "base/err.h"
#include "plugins/plugin_host.h"
#include "store/db.h"

#define DM_PAYMENT_SETTLE_DEFAULT_S (15 * 60)
#define DM_CHECKOUT_HOLD_DEFAULT_S (30 * 60)
#define DM_PENDING_ORDERS_DEFAULT 3

typedef struct dm_payment_rules {
    int64_t settle_s;        /* DeepMinePaymentSettle */
    int64_t checkout_hold_s; /* DeepMineCheckoutHold: a checkout's lifetime when the plugin
                                says none */
    int pending_max;         /* DeepMinePendingOrders: unpaid gateway orders per member */
} dm_payment_rules;

/* Set by the host before it forks; read-only afterwards. */
void dm_payment_rules_set(const dm_payment_rules *r);
const dm_payment_rules *dm_payment_rules_get(void);

typedef struct dm_janitor_stats {
    int64_t queried;  /* orders asked about */
    int64_t settled;  /* of those, moved by the answer (paid, failed, expired, ...) */
    int64_t expired;  /* expired without a query (no reference, or no query) */
    int64_t failures; /* queries that failed (tried again next run) */
} dm_janitor_stats;

/* One pass over the orders due at `now`, at most `limit` of them (0: all),
 * with no transaction open on db; each order's outcome is committed on its
 * own. A plugin failure is counted, logged and left for the next run. */
dm_err *dm_janitor_run(dm_db *db, apr_pool_t *p, const dm_plugin_host *h, int64_t now,
                       int64_t limit, dm_janitor_stats *out);

#endif
