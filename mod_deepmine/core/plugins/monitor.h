/*
 * monitor.h — calling monitor plugins, typed (ABI 1.5, dm_monitor_ops): the
 * only way the rest of the server (the cron daemon's drain of the error
 * queue, http/monitor.c) reaches a monitor's capture function.
 */
#ifndef DM_PLUGINS_MONITOR_H
#define DM_PLUGINS_MONITOR_H

#include <apr_pools.h>
#include <stdint.h>

#include "deepmine/plugin.h"
#include "plugins/plugin_host.h"

/* Hands one error event to a monitor plugin. DM_OK: sent (or deliberately
 * dropped by the plugin); DM_ERR_TEMPORARY: keep it and try again; any
 * other status: the event cannot be sent (msg says why). *pause_s gets how
 * long the plugin asked the host to send nothing more (its retry_after,
 * with any status; 0 when it did not ask), at most 86400. */
dm_status dm_monitor_capture(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                             const dm_monitor_event *ev, uint32_t *pause_s, dm_message *msg);

#endif
