/*
 * mailer.h — calling mailer plugins, typed: the only way the rest of the
 * server (the mail queue in mail/mail.c, the webhook route through
 * inbound.h) reaches a mailer's functions. The same checks as payment.h:
 * the handle is an initialised mailer, a function is read only when the
 * plugin's table covers it, what comes back is checked, msg is always
 * NUL-terminated.
 */
#ifndef DM_PLUGINS_MAILER_H
#define DM_PLUGINS_MAILER_H

#include <apr_pools.h>
#include <stdint.h>

#include "deepmine/plugin.h"
#include "plugins/plugin_host.h"

/* 1 when pl is an initialised mailer that receives delivery reports (its
 * table has parse_webhook: a provider's API does, SMTP and a spool do not). */
int dm_mailer_has_webhooks(const dm_loaded_plugin *pl);

/* Sends one message through a mailer plugin. DM_OK with *message_id (p memory);
 * DM_ERR_TEMPORARY with *retry_after_s set when the plugin said (else 0);
 * other statuses as the plugin returned them, with msg.
 * More precisely: DM_ERR_UNSUPPORTED when pl is not an initialised mailer;
 * DM_ERR_INVALID with the message builder's reason when the plugin's
 * mime_message refused the input (header injection, a non-ASCII address,
 * an extra header the builder writes itself); DM_ERR_INTERNAL when the
 * plugin answers an unknown status or DM_OK without a usable message id
 * (empty, over 998 bytes, or with CR, LF or NUL). retry_after_s is at most
 * 86400. msg is never empty on failure. */
dm_status dm_mailer_send(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                         const dm_mail *mail, const char **message_id, uint32_t *retry_after_s,
                         dm_message *msg);

/* Verifies a delivery report (raw body and every header) and parses it.
 * DM_ERR_UNSUPPORTED when the mailer receives none (dm_mailer_has_webhooks);
 * DM_ERR_INVALID (the plugin's msg) for a body that fails verification;
 * DM_OK with a sound event: its strings have bytes for their lengths, its
 * type is known and its event id is not empty (else DM_ERR_INTERNAL).
 * Event strings live in p. */
dm_status dm_mailer_parse_webhook(const dm_plugin_host *h, const dm_loaded_plugin *pl,
                                  apr_pool_t *p, dm_str raw_body, const dm_header *headers,
                                  size_t n_headers, dm_mail_event *out, dm_message *msg);

#endif
