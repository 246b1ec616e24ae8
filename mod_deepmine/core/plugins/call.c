/*
 * call.c — the checks around one call into a plugin (see call.h).
 */
#include "plugins/call.h"

#include "base/log.h"

#include <apr_strings.h>
#include <stdarg.h>
#include <string.h>

#include "base/metrics.h"

/* When this thread's current plugin call began (dm_call_begin), for its
 * latency in dm_call_end: calls into plugins do not nest. */
static __thread int64_t call_started_us;

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
    /* Lines logged during the call name the plugin in error reports. */
    dm_log_context_set(DM_LOG_CTX_PLUGIN, pl->name);
    call_started_us = dm_metrics_now_us();
    return DM_OK;
}

/* The status as a metric label value. */
static const char *status_label(dm_status st)
{
    static const char *names[] = {"ok",          "invalid", "temporary", "permanent",
                                  "unsupported", "config",  "internal",  "not_found"};
    unsigned i = (unsigned)st;

    return i < sizeof(names) / sizeof(names[0]) ? names[i] : "unknown";
}

dm_status dm_call_end(const dm_loaded_plugin *pl, const char *fn, dm_status st, dm_message *msg)
{
    msg->text[sizeof(msg->text) - 1] = '\0';
    dm_log_context_set(DM_LOG_CTX_PLUGIN, NULL);
    if (call_started_us) {
        dm_metrics_observe_us(DM_M_PLUGIN_CALL_DURATION, dm_metrics_now_us() - call_started_us,
                              "plugin", pl->name, "function", fn, DM_ML_END);
        call_started_us = 0;
    }
    if (st != DM_OK) {
        dm_metrics_inc(DM_M_PLUGIN_CALL_ERRORS, "plugin", pl->name, "function", fn, "status",
                       status_label(st), DM_ML_END);
    }
    if ((int)st < (int)DM_OK || (int)st > (int)DM_ERR_NOT_FOUND) {
        dm_call_msg(msg, "plugin %s: %s returned the unknown status %d", pl->name, fn, (int)st);
        return DM_ERR_INTERNAL;
    }
    return st;
}
