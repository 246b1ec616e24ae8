/*
 * plugin_host.h — the loader: plugins loaded through ABI v1
 * (deepmine/plugin.h), their settings, and the handle (dm_loaded_plugin)
 * every call into a plugin takes.
 *
 * core/plugins/ is split by job:
 *   plugin_host.c    this loader and the settings;
 *   host_services.c  the host table (dm_host) handed to every plugin;
 *   http_client.c    the HTTP client behind the host table's http();
 *   payment.h        typed calls into payment plugins (dm_payment_*),
 *   mailer.h         into mailers (dm_mailer_*),
 *   kyc.h            into KYC plugins (dm_kyc_*),
 *   storage.h        into storage plugins (dm_storage_*),
 *   inbound.h        pages and webhooks of a plugin of any kind;
 *   call.c           the checks every typed call shares (folder-private).
 * Only core/plugins/ reads a descriptor or calls a plugin's function
 * (make check-includes fails otherwise): a new kind (storage, monitor)
 * gets a <kind>.h/.c of the same shape as payment.h — a lookup and a
 * capability test on the handle, one call per plugin function taking plain
 * C and APR types, dm_status plus a dm_message out.
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
    const dm_plugin *desc; /* the plugin's descriptor: read in core/plugins/ only */
    int initialised;
} dm_loaded_plugin;

dm_err *dm_plugins_create(apr_pool_t *p, dm_plugin_host **out);

/* kind is "payment", "kyc", "mailer", "storage" or "monitor". */
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
 * table's alloc() lives in `p`. For core/plugins/ (and tests that call a
 * plugin's function directly): everyone else uses the typed calls. */
dm_call *dm_plugins_call(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p);

const char *dm_plugin_kind_name(dm_plugin_kind kind);

/* A setting of a loaded plugin (pl from dm_plugins_get or dm_plugins_all),
 * after dm_plugins_init_all: the configured value with env:/file:
 * resolved, else the default the plugin gave in init (setting_default),
 * else NULL. Host memory, valid as long as the plugin. The mail queue reads
 * a mailer's "rate_per_second" through it. */
const char *dm_plugins_setting(const dm_loaded_plugin *pl, const char *key);

#endif
