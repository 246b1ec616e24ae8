/*
 * payments.h — what the server does with a verified payment event.
 *
 * The webhook route (http/routes_plugins.c) hands the raw body and headers
 * to the payment plugin, which verifies and normalises them
 * (dm_plugins_webhook); only then does the event reach this file. It is
 * recorded, once per (plugin, provider event id), and acted on
 * (dm_orders_apply_event: order paid, contract, commissions …) in the same
 * transaction, whose outcome is kept on the event's row.
 */
#ifndef DM_PAYMENTS_H
#define DM_PAYMENTS_H

#include <apr_pools.h>
#include <stdint.h>

#include "store/db.h"
#include "store/db_pool.h"
#include "deepmine/plugin.h"
#include "base/err.h"

/* The longest event id, order reference and provider reference kept. */
#define DM_PAYMENT_REF_MAX 255

typedef struct dm_payment_recorded {
    int64_t id;          /* payment_events.id of the row (the earlier one on a duplicate) */
    int duplicate;       /* 1 when the event was already recorded: nothing changed */
    const char *outcome; /* what was done (payment_events.outcome; for a duplicate, what
                          * the first delivery did), NULL while that one is unfinished */
} dm_payment_recorded;

/* Records a verified event of payment plugin `plugin` (its configured
 * name) with the exact bytes that were verified, in its own BEGIN
 * IMMEDIATE transaction (db must not be in one). A replayed or concurrently
 * delivered event (same plugin and event id) changes nothing and comes back
 * with duplicate = 1. DM_E_INVALID when the plugin's event is unusable (an
 * id or reference over DM_PAYMENT_REF_MAX bytes or with control
 * characters, a negative amount, a currency that is not three capital
 * letters). */
dm_err *dm_payment_event_record(dm_db *db, apr_pool_t *p, const char *plugin,
                                const dm_payment_event *ev, const char *raw_body, size_t raw_len,
                                dm_payment_recorded *out);

/* The same, for an event that did not come as a webhook: `source` is
 * "webhook", "janitor" (the answer of the plugin's query, shop/janitor.h)
 * or "return" (the buyer's return page); it is kept on the event's row
 * and in the order's history. */
dm_err *dm_payment_event_record_from(dm_db *db, apr_pool_t *p, const char *plugin,
                                     const char *source, const dm_payment_event *ev,
                                     const char *raw_body, size_t raw_len,
                                     dm_payment_recorded *out);

/* dm_payment_event_record for a caller that holds no connection: the event
 * is recorded through one of pool's, or, once the process writes through
 * its writer connection (store/db_group.h), without holding any while it
 * waits for its commit (dm_db_pool_write_txn). */
dm_err *dm_payment_event_record_pooled(dm_db_pool *pool, apr_pool_t *p, const char *plugin,
                                       const dm_payment_event *ev, const char *raw_body,
                                       size_t raw_len, dm_payment_recorded *out);

#endif
