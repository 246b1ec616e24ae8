/*
 * log.h — logging injected into core (after mod_md's md_log): core never
 * knows whether it runs inside Apache or deepminectl. The host sets the sink
 * once; messages at notice or above carry a unique DMnnnnn number in the
 * text, checked by scripts/check-log-numbers.sh.
 */
#ifndef DM_LOG_H
#define DM_LOG_H

#include <apr_pools.h>

typedef enum dm_level {
    DM_L_ERR = 3,
    DM_L_WARN = 4,
    DM_L_NOTICE = 5,
    DM_L_INFO = 6,
    DM_L_DEBUG = 7
} dm_level;

typedef void dm_log_sink_fn(void *baton, dm_level level, const char *msg);

void dm_log_set_sink(dm_log_sink_fn *fn, void *baton);

void dm_log(dm_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* What the current thread is doing, for error reports (the monitor plugins
 * of docs/operations.md): the job it runs and the plugin it is calling.
 * The jobs runner and the plugin calls set and clear them; the values must
 * outlive the work (job names and plugin names are static or pool-long).
 * NULL: none. */
typedef enum dm_log_ctx { DM_LOG_CTX_JOB = 0, DM_LOG_CTX_PLUGIN = 1 } dm_log_ctx;

void dm_log_context_set(dm_log_ctx which, const char *value);
const char *dm_log_context(dm_log_ctx which);

#endif
