/*
 * log.c — the core's logging sink (see log.h). Default: stderr, so the CLI
 * and unit tests need no set-up.
 */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>

static void stderr_sink(void *baton, dm_level level, const char *msg)
{
    static const char *names[] = {"", "", "", "error", "warn", "notice", "info", "debug"};
    (void)baton;
    fprintf(stderr, "deepmine %s: %s\n", names[level >= 0 && level <= 7 ? level : 3], msg);
}

static dm_log_sink_fn *sink = stderr_sink;
static void *sink_baton;
static dm_level sink_min = DM_L_NOTICE;

void dm_log_set_sink(dm_log_sink_fn *fn, void *baton)
{
    sink = fn ? fn : stderr_sink;
    sink_baton = baton;
    /* An injected sink filters by itself (Apache's LogLevel). */
    sink_min = fn ? DM_L_DEBUG : DM_L_NOTICE;
}

void dm_log(dm_level level, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;

    if (level > sink_min) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    sink(sink_baton, level, buf);
}

static __thread const char *contexts[2];

void dm_log_context_set(dm_log_ctx which, const char *value)
{
    if ((unsigned)which < sizeof(contexts) / sizeof(contexts[0])) {
        contexts[which] = value;
    }
}

const char *dm_log_context(dm_log_ctx which)
{
    return (unsigned)which < sizeof(contexts) / sizeof(contexts[0]) ? contexts[which] : NULL;
}
