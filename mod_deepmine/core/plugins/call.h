/*
 * call.h — private to core/plugins/: a loaded plugin as the host keeps it,
 * the context of one call into a plugin, and the checks every typed call
 * (payment.c, mailer.c, kyc.c, inbound.c) wraps around a plugin function.
 *
 * Nothing outside core/plugins/ includes this header (make check-includes):
 * the rest of the server reaches plugins only through the typed calls, so
 * the size checks and the checks of what a plugin hands back are written
 * once, here and in those files.
 */
#ifndef DM_PLUGINS_CALL_H
#define DM_PLUGINS_CALL_H

#include <apr_dso.h>
#include <apr_hash.h>
#include <stddef.h>

#include "plugins/plugin_host.h"

/* DM_HAS_FIELD for a pointer already known not to be NULL: the macro's own
 * NULL test would make cppcheck suspect every dereference next to it. */
#define DM_COVERS(ptr, type, field)                                                                \
    ((size_t)(ptr)->size >= offsetof(type, field) + sizeof(((type *)0)->field))

/* The public record first, so a dm_loaded_plugin * from dm_plugins_get is
 * a dm_plugin_loaded *. */
typedef struct dm_plugin_loaded {
    dm_loaded_plugin pub;
    apr_dso_handle_t *dso; /* unloaded by the create pool's cleanup */
    apr_hash_t *settings;  /* key -> resolved value, filled by dm_plugins_init_all */
} dm_plugin_loaded;

struct dm_call {
    apr_pool_t *pool;
    const dm_plugin_loaded *pl;
    int in_init;         /* setting_default is allowed */
    int retry_after_set; /* retry_after was called */
    uint32_t retry_after_s;
    const char *mime_refusal; /* why mime_message last returned NULL */
    /* json_get's last parsed text (a copy) and its tree (a json_t *, freed
     * with the pool): a plugin reading several fields of one body parses
     * it once. */
    const char *json_text;
    size_t json_len;
    void *json_root;
};

/* Writes msg (when not NULL). APR's formatter knows no %zu: sizes are
 * printed with APR_SIZE_T_FMT. */
void dm_call_msg(dm_message *msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "ok", "temporary error", … for messages. */
const char *dm_call_status_name(dm_status st);

/* A dm_str a plugin handed back is sound: a length needs bytes. */
int dm_call_str_ok(dm_str s);

/* s holds a CR, LF or NUL within len bytes. */
int dm_call_has_crlf(const char *s, size_t len);

/* Starts a typed call: clears msg, checks that pl is an initialised plugin
 * of `kind` (0: of any kind) and one this host loaded, and makes its call
 * context in p. DM_OK with *call set; else DM_ERR_UNSUPPORTED ("plugin x is
 * not a loaded <what>") or DM_ERR_INTERNAL, with msg. */
dm_status dm_call_begin(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                        dm_plugin_kind kind, const char *what, dm_call **call, dm_message *msg);

/* What a plugin function `fn` returned: msg NUL-terminated, and a status
 * outside the enum turned into DM_ERR_INTERNAL ("plugin x: fn returned the
 * unknown status n"). */
dm_status dm_call_end(const dm_loaded_plugin *pl, const char *fn, dm_status st, dm_message *msg);

#endif
