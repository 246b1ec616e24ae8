/*
 * plugin_host.h — loading plugins through ABI v1 (deepmine/plugin.h) and
 * the host table they are given.
 *
 * Life cycle, as the Apache glue drives it:
 *   1. dm_plugins_declare() for each `DeepMinePlugin <kind> <name> <path>`
 *      (at config parse time: the .so is loaded, the entry symbol found, the
 *      descriptor's ABI major, size and kind checked — errors come back to
 *      the directive, so Apache names the file and line);
 *   2. dm_plugins_set() for each `DeepMinePluginSet <name> <key> <value>`
 *      (any order relative to 1.);
 *   3. dm_plugins_init_all() once the whole configuration is read: unknown
 *      plugin names in settings, `env:`/`file:` values, required settings,
 *      then each plugin's init();
 *   4. dm_plugins_fini_all() (a cleanup of the pool given to create).
 * Every refusal is a dm_err whose message names the plugin and the reason.
 */
#ifndef DM_PLUGIN_HOST_H
#define DM_PLUGIN_HOST_H

#include <apr_pools.h>
#include <apr_tables.h>

#include "deepmine/plugin.h"
#include "base/err.h"

typedef struct dm_plugin_host dm_plugin_host;

typedef struct dm_loaded_plugin {
    const char *name; /* as configured (DeepMinePlugin's <name>) */
    const char *path;
    dm_plugin_kind kind;
    const dm_plugin *desc; /* the plugin's descriptor */
    int initialised;
} dm_loaded_plugin;

dm_err *dm_plugins_create(apr_pool_t *p, dm_plugin_host **out);

/* kind is "payment", "kyc" or "mailer". */
dm_err *dm_plugins_declare(dm_plugin_host *h, const char *kind, const char *name, const char *path);

/* value may be "env:VAR" or "file:/path" (resolved at init; a file's one
 * trailing newline is dropped). A later setting of the same key wins. Keys
 * starting with '_' are reserved for the host (see below) and refused. */
dm_err *dm_plugins_set(dm_plugin_host *h, const char *name, const char *key, const char *value);

/* The site's public base URL (DeepMinePublicURL), or NULL: from init on,
 * every plugin reads it as its reserved setting "_public_url" (and its own
 * configured name as "_name"). Call before dm_plugins_init_all. */
void dm_plugins_set_public_url(dm_plugin_host *h, const char *url);

dm_err *dm_plugins_init_all(dm_plugin_host *h);
void dm_plugins_fini_all(dm_plugin_host *h);

/* NULL when no plugin of that name is loaded. */
const dm_loaded_plugin *dm_plugins_get(const dm_plugin_host *h, const char *name);

/* All loaded plugins in declaration order (array of dm_loaded_plugin *). */
const apr_array_header_t *dm_plugins_all(const dm_plugin_host *h);

/* A call context for one plugin call: memory handed out through the host
 * table's alloc() lives in `p`. */
dm_call *dm_plugins_call(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p);

const char *dm_plugin_kind_name(dm_plugin_kind kind);

/* ---- Calling plugins safely (ABI 1.2 and later) ----
 * These read a descriptor field only when the plugin's size covers it, fill
 * the size of what they hand in, check what comes back (a string with a
 * length but no bytes, a status out of range) and always leave msg
 * NUL-terminated. Memory the plugin hands back lives in `p`. */

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

/* ---- Mailers (ABI 1.3) ---- */

/* A setting of a loaded plugin (pl from dm_plugins_get or dm_plugins_all),
 * after dm_plugins_init_all: the configured value with env:/file:
 * resolved, else the default the plugin gave in init (setting_default),
 * else NULL. Host memory, valid as long as the plugin. The mail queue reads
 * a mailer's "rate_per_second" through it. */
const char *dm_plugins_setting(const dm_loaded_plugin *pl, const char *key);

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
dm_status dm_plugins_send_mail(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                               const dm_mail *mail, const char **message_id,
                               uint32_t *retry_after_s, dm_message *msg);

#endif
