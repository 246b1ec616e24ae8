/*
 * inbound.h — what reaches a plugin from outside, whatever its kind: the
 * pages it serves itself under /api/plugins/<name>/ (ABI 1.2
 * handle_request) and the webhooks its provider posts to
 * /api/webhooks/<name> (handed to payment.h, mailer.h or kyc.h by kind).
 * The route file http/routes/plugins.c is its one caller in the server.
 *
 * These read a descriptor field only when the plugin's size covers it, fill
 * the size of what they hand in, check what comes back (a string with a
 * length but no bytes, a status out of range) and always leave msg
 * NUL-terminated. Memory the plugin hands back lives in `p`.
 */
#ifndef DM_PLUGINS_INBOUND_H
#define DM_PLUGINS_INBOUND_H

#include <apr_pools.h>

#include "deepmine/plugin.h"
#include "plugins/plugin_host.h"

/* 1 when the plugin answers requests under /api/plugins/<name>/ (its
 * descriptor is 1.2 or later and handle_request is not NULL). */
int dm_plugins_offers_requests(const dm_loaded_plugin *pl);

/* Calls handle_request. DM_ERR_UNSUPPORTED when the plugin has none;
 * DM_ERR_INTERNAL (msg says why) when its answer is malformed: a status
 * outside 200..599, a body or header without bytes, a header name that is
 * not a token, CR/LF/NUL in a value, or a header the host sets itself. */
dm_status dm_plugins_handle_request(const dm_plugin_host *h, const dm_loaded_plugin *pl,
                                    apr_pool_t *p, const dm_plugin_request *req,
                                    dm_plugin_response *resp, dm_message *msg);

/* A webhook event of any kind: which member is filled follows the plugin's
 * kind. */
typedef union dm_plugin_event {
    dm_payment_event payment;
    dm_kyc_event kyc;
    dm_mail_event mail;
} dm_plugin_event;

/* Hands the raw body and headers of a webhook to the parse_webhook of the
 * plugin's kind, which verifies and parses it. DM_ERR_UNSUPPORTED when the
 * kind has no webhooks for this plugin (a mailer without parse_webhook);
 * DM_ERR_INVALID (the plugin's msg) for a body that fails verification;
 * DM_OK with `out` filled for a verified event, whose event id is never
 * empty (else DM_ERR_INTERNAL). */
dm_status dm_plugins_webhook(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                             dm_str raw_body, const dm_header *headers, size_t n_headers,
                             dm_plugin_event *out, dm_message *msg);

#endif
