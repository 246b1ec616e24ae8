/*
 * payment.h — calling payment plugins, typed: the only way the rest of the
 * server (shop/orders.c, the webhook route through inbound.h) reaches a
 * payment plugin's functions.
 *
 * Each call checks that the handle is an initialised payment plugin, reads
 * a function only when the plugin's table covers it, hands the plugin
 * structures of the size this host knows, and checks what comes back; msg
 * is always NUL-terminated, and says why on every failure. Statuses are
 * the plugin's (deepmine/plugin.h): DM_ERR_TEMPORARY means "try again
 * later", and a status the plugin made up becomes DM_ERR_INTERNAL.
 */
#ifndef DM_PLUGINS_PAYMENT_H
#define DM_PLUGINS_PAYMENT_H

#include <apr_pools.h>
#include <stdint.h>

#include "deepmine/plugin.h"
#include "plugins/plugin_host.h"

/* The longest provider reference and checkout URL the host accepts. */
#define DM_PAYMENT_REF_MAX 255
#define DM_PAYMENT_URL_MAX 2048

/* The initialised payment plugin configured as `name`, else NULL. */
const dm_loaded_plugin *dm_payment_plugin(const dm_plugin_host *h, const char *name);

/* 1 when pl is an initialised payment plugin that can start a payment
 * (create_checkout), resp. refund one (refund is optional). */
int dm_payment_can_checkout(const dm_loaded_plugin *pl);
int dm_payment_can_refund(const dm_loaded_plugin *pl);

typedef struct dm_payment_checkout_in {
    const char *order_id; /* our order id */
    int64_t amount_micros;
    const char *currency;       /* ISO 4217, upper case */
    const char *success_url;    /* NULL: none */
    const char *cancel_url;     /* NULL: none */
    const char *customer_email; /* NULL: none */
} dm_payment_checkout_in;

typedef struct dm_payment_checkout_out {
    const char *redirect_url; /* where the buyer pays; p memory */
    const char *provider_ref; /* the provider's id of the payment; p memory */
} dm_payment_checkout_out;

/* Starts a payment at the provider. DM_OK with out filled: a provider_ref
 * of 1..DM_PAYMENT_REF_MAX bytes without control characters and a
 * redirect_url of 1..DM_PAYMENT_URL_MAX bytes (a plugin answering anything
 * else gets DM_ERR_INTERNAL, "create_checkout returned a malformed
 * result"). DM_ERR_UNSUPPORTED when pl cannot take payments. */
dm_status dm_payment_create_checkout(const dm_plugin_host *h, const dm_loaded_plugin *pl,
                                     apr_pool_t *p, const dm_payment_checkout_in *in,
                                     dm_payment_checkout_out *out, dm_message *msg);

/* Asks the provider to refund `amount_micros` of the payment provider_ref;
 * the refund itself arrives later as a webhook event. DM_ERR_UNSUPPORTED
 * when pl cannot refund. */
dm_status dm_payment_refund(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                            const char *provider_ref, int64_t amount_micros, const char *currency,
                            dm_message *msg);

/* Verifies a webhook (raw body and every header) and parses its event.
 * DM_ERR_INVALID (the plugin's msg) for a body that fails verification;
 * DM_OK with a sound event: its strings have bytes for their lengths, its
 * status is known and its event id is not empty (else DM_ERR_INTERNAL).
 * Event strings live in p. */
dm_status dm_payment_parse_webhook(const dm_plugin_host *h, const dm_loaded_plugin *pl,
                                   apr_pool_t *p, dm_str raw_body, const dm_header *headers,
                                   size_t n_headers, dm_payment_event *out, dm_message *msg);

#endif
