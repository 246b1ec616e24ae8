/*
 * call.c — the checks around one call into a plugin (see call.h).
 */
#include "plugins/call.h"

#include <apr_strings.h>
#include <stdarg.h>
#include <string.h>

void dm_call_msg(dm_message *msg, const char *fmt, ...)
{
    va_list ap;

    if (!msg) {
        return;
    }
    va_start(ap, fmt);
    apr_vsnprintf(msg->text, sizeof(msg->text), fmt, ap);
    va_end(ap);
}

const char *dm_call_status_name(dm_status st)
{
    switch (st) {
    case DM_OK:
        return "ok";
    case DM_ERR_INVALID:
        return "invalid";
    case DM_ERR_TEMPORARY:
        return "temporary error";
    case DM_ERR_PERMANENT:
        return "permanent error";
    case DM_ERR_UNSUPPORTED:
        return "unsupported";
    case DM_ERR_CONFIG:
        return "configuration error";
    case DM_ERR_INTERNAL:
        return "internal error";
    case DM_ERR_NOT_FOUND:
        return "not found";
    }
    return "unknown status";
}

int dm_call_str_ok(dm_str s)
{
    return s.len == 0 || s.ptr != NULL;
}

int dm_call_has_crlf(const char *s, size_t len)
{
    return s && (memchr(s, '\r', len) || memchr(s, '\n', len) || memchr(s, '\0', len));
}

dm_status dm_call_begin(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                        dm_plugin_kind kind, const char *what, dm_call **call, dm_message *msg)
{
    memset(msg, 0, sizeof(*msg));
    *call = NULL;
    if (!pl || !pl->initialised || (kind && pl->kind != kind)) {
        dm_call_msg(msg, "plugin %s is not a loaded %s", pl ? pl->name : "(none)", what);
        return DM_ERR_UNSUPPORTED;
    }
    *call = dm_plugins_call(h, pl, p);
    if (!*call) {
        dm_call_msg(msg, "plugin %s is not one this host loaded", pl->name);
        return DM_ERR_INTERNAL;
    }
    return DM_OK;
}

dm_status dm_call_end(const dm_loaded_plugin *pl, const char *fn, dm_status st, dm_message *msg)
{
    msg->text[sizeof(msg->text) - 1] = '\0';
    if ((int)st < (int)DM_OK || (int)st > (int)DM_ERR_NOT_FOUND) {
        dm_call_msg(msg, "plugin %s: %s returned the unknown status %d", pl->name, fn, (int)st);
        return DM_ERR_INTERNAL;
    }
    return st;
}
