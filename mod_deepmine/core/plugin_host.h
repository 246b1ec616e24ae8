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
#include "err.h"

typedef struct dm_plugin_host dm_plugin_host;

typedef struct dm_loaded_plugin {
    const char *name;   /* as configured (DeepMinePlugin's <name>) */
    const char *path;
    dm_plugin_kind kind;
    const dm_plugin *desc; /* the plugin's descriptor */
    int initialised;
} dm_loaded_plugin;

dm_err *dm_plugins_create(apr_pool_t *p, dm_plugin_host **out);

/* kind is "payment", "kyc" or "mailer". */
dm_err *dm_plugins_declare(dm_plugin_host *h, const char *kind, const char *name,
                           const char *path);

/* value may be "env:VAR" or "file:/path" (resolved at init; a file's one
 * trailing newline is dropped). A later setting of the same key wins. */
dm_err *dm_plugins_set(dm_plugin_host *h, const char *name, const char *key, const char *value);

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

#endif
