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
 * (create_checkout), resp. refund one (refund or refund_ex, both optional),
 * resp. tell a payment's state (query, ABI 1.4, optional). */
int dm_payment_can_checkout(const dm_loaded_plugin *pl);
int dm_payment_can_refund(const dm_loaded_plugin *pl);
int dm_payment_can_query(const dm_loaded_plugin *pl);

/* How a payment method shows to members (GET /api/payment-methods): the
 * plugin's ABI 1.4 fields, else its configured name, "card", "*". kind is
 * one of card, crypto, wallet (anything else a plugin says becomes
 * "card"); currencies "*" or ISO codes separated by commas.
 * checkout_lifetime_s 0: the host's DeepMineCheckoutHold. */
typedef struct dm_payment_method {
    const char *name; /* configured name */
    const char *display_name;
    const char *kind;
    const char *currencies;
    uint32_t checkout_lifetime_s;
} dm_payment_method;

/* pl's method, in p; 0 when pl is not an initialised payment plugin. */
int dm_payment_method_info(const dm_loaded_plugin *pl, apr_pool_t *p, dm_payment_method *out);

/* 1 when `currency` (three capital letters) is among the method's. */
int dm_payment_method_takes(const dm_payment_method *m, const char *currency);

/* The body the provider expects in the 200 answer to a webhook we accepted
 * (ABI 1.5 webhook_ack_body: a printable static string of at most 4096
 * bytes), else NULL (the host's own JSON answer). */
const char *dm_payment_webhook_ack_body(const dm_loaded_plugin *pl);

/* 1 when pl is the development sandbox (plugin "payment-sandbox"), which
 * moves no money: the rules for real money (a verified e-mail before a
 * checkout) do not apply to it. */
int dm_payment_is_sandbox(const dm_loaded_plugin *pl);

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

typedef struct dm_payment_refund_in {
    const char *provider_ref;
    const char *payment_id; /* the identity that credited the order; NULL: none */
    int64_t amount_micros;
    const char *currency;
    const char *idempotency_key; /* the same key never refunds twice at the provider */
    const char *reason;          /* NULL: none */
} dm_payment_refund_in;

/* Asks the provider to refund `amount_micros` of the payment provider_ref;
 * the refund itself arrives later as a webhook event. refund_ex (ABI 1.4,
 * with the idempotency key and reason) when the plugin has it, else
 * refund. *refund_id (p memory, may be NULL) is the provider's id of the
 * refund when it gave one. DM_ERR_UNSUPPORTED when pl cannot refund. */
dm_status dm_payment_refund(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                            const dm_payment_refund_in *in, const char **refund_id,
                            dm_message *msg);

/* The provider's current state of provider_ref (ABI 1.4 query), as an
 * event checked like a webhook's (below) except that its event id may be
 * empty. DM_ERR_UNSUPPORTED when pl has no query. Event strings live in
 * p. */
dm_status dm_payment_query(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                           const char *provider_ref, dm_payment_event *out, dm_message *msg);

/* Verifies a webhook (raw body and every header) and parses its event.
 * DM_ERR_INVALID (the plugin's msg) for a body that fails verification;
 * DM_OK with a sound event: its strings have bytes for their lengths, its
 * status is known (DM_PAY_PAID .. DM_PAY_PENDING; the statuses of ABI 1.4
 * only from a plugin built for 1.4 or later), its review reason is known
 * and its event id is not empty (else DM_ERR_INTERNAL). The fields of ABI
 * 1.4 (payment_id, review_reason, detail) are read only from a plugin built
 * for 1.4 or later: an older one's are left empty. Event strings live in
 * p. */
dm_status dm_payment_parse_webhook(const dm_plugin_host *h, const dm_loaded_plugin *pl,
                                   apr_pool_t *p, dm_str raw_body, const dm_header *headers,
                                   size_t n_headers, dm_payment_event *out, dm_message *msg);

#endif
