/*
 * monitor.c — typed calls into monitor plugins (see monitor.h). The loader
 * (check_ops in plugin_host.c) has made sure the table covers capture.
 */
#include "plugins/monitor.h"

#include "plugins/call.h"

#define PAUSE_MAX_S 86400u

dm_status dm_monitor_capture(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                             const dm_monitor_event *ev, uint32_t *pause_s, dm_message *msg)
{
    const dm_monitor_ops *o;
    dm_monitor_event e;
    dm_call *call;
    dm_status st;

    *pause_s = 0;
    st = dm_call_begin(h, pl, p, DM_PLUGIN_MONITOR, "monitor", &call, msg);
    if (st != DM_OK) {
        return st;
    }
    o = pl->desc->ops;
    e = *ev;
    e.size = sizeof(e);
    st = dm_call_end(pl, "capture", o->capture(call, &e, msg), msg);
    if (call->retry_after_set) {
        *pause_s = call->retry_after_s > PAUSE_MAX_S ? PAUSE_MAX_S : call->retry_after_s;
    }
    if (st != DM_OK && !msg->text[0]) {
        dm_call_msg(msg, "plugin %s: capture failed (%s) without saying why", pl->name,
                    dm_call_status_name(st));
    }
    return st;
}
