/*
 * metrics.h — the platform's counters, gauges and histograms, counted for
 * the whole server (every Apache child and the cron daemon together) and
 * rendered in the Prometheus text format.
 *
 * The figures live in one region of shared memory that http/ creates
 * before the fork and hands to dm_metrics_attach; core code counts with
 * dm_metrics_inc & co. without knowing where the region comes from. A
 * process with no region attached (deepminectl, unit tests that do not
 * attach one) counts nothing: every call is then a cheap no-op.
 *
 * A series is a family (the enum below, fixed at build time so a scrape
 * lists every family, at 0 when nothing happened yet) and its label values.
 * Series are claimed in a bounded table with atomic operations only, so no
 * lock is taken on a request path; when the table is full, new series are
 * dropped and counted (deepmine_metrics_series_dropped_total).
 */
#ifndef DM_METRICS_H
#define DM_METRICS_H

#include <apr_pools.h>
#include <stddef.h>
#include <stdint.h>

typedef enum dm_metric {
    DM_M_HTTP_REQUESTS,         /* counter {route,method,class} */
    DM_M_HTTP_DURATION,         /* histogram {route,method,class} */
    DM_M_DB_POOL_IN_USE,        /* gauge, summed over children */
    DM_M_DB_POOL_WAITS,         /* counter: acquisitions that found the pool empty */
    DM_M_DB_POOL_TIMEOUTS,      /* counter: acquisitions that gave up */
    DM_M_DB_WRITE_LOCK_WAIT,    /* histogram: BEGIN IMMEDIATE until the write lock */
    DM_M_DB_WRITE_LOCK_TIMEOUT, /* counter: BEGIN IMMEDIATE that gave up (busy) */
    DM_M_DB_STORAGE_ERRORS,     /* counter {kind="full"|"io"} */
    DM_M_DB_STORAGE_FULL,       /* gauge: 1 full, 2 I/O errors, 0 writes go through */
    DM_M_PLUGIN_CALL_DURATION,  /* histogram {plugin,function} */
    DM_M_PLUGIN_CALL_ERRORS,    /* counter {plugin,function,status} */
    DM_M_WEBHOOKS_RECEIVED,     /* counter {plugin} */
    DM_M_WEBHOOKS_ACCEPTED,     /* counter {plugin} */
    DM_M_WEBHOOKS_REFUSED,      /* counter {plugin} */
    DM_M_RATE_LIMIT_REFUSED,    /* counter {rule} */
    DM_M_LOGIN_FAILURES,        /* counter {realm="member"|"staff"} */
    DM_M_TWOFA_FAILURES,        /* counter (no labels; the 2FA work counts it) */
    DM_M_JOB_RUNS,              /* counter {job,result=ok|failed|dead|waiting} */
    DM_M_JOB_DURATION,          /* histogram {job} */
    DM_M_JOB_LAST_SUCCESS,      /* gauge {job}: Unix time (read by cron/metrics_db.c) */
    DM_M_MAIL_SENT,             /* counter */
    DM_M_MAIL_FAILED,           /* counter */
    DM_M_MAIL_SUPPRESSED,       /* counter */
    DM_M_SERIES_DROPPED,        /* counter: series the full table could not hold */
    DM_M_RL_STORE_ERRORS,       /* counter: rate-limit checks memcached failed */
    DM_M_COUNT
} dm_metric;

typedef enum dm_metric_type {
    DM_METRIC_COUNTER,
    DM_METRIC_GAUGE,
    DM_METRIC_HISTOGRAM
} dm_metric_type;

/* The histogram buckets' upper bounds, in microseconds (rendered in
 * seconds); +Inf is the series' count. */
#define DM_METRICS_BUCKETS 12
extern const int64_t dm_metrics_bucket_us[DM_METRICS_BUCKETS];

/* The label text of one series, escaped, e.g. route="/api/x",method="GET". */
#define DM_METRICS_LABELS_MAX 200

/* The bytes a region for `series` series needs. */
size_t dm_metrics_region_size(unsigned series);
/* Makes a fresh region in mem (size bytes, as dm_metrics_region_size), which
 * must be zeroed, as a freshly created shared segment is. */
void dm_metrics_region_init(void *mem, size_t size, unsigned series);
/* True when mem holds a region of this build's layout for `series`. */
int dm_metrics_region_usable(const void *mem, size_t size, unsigned series);
/* This process counts into mem from now on (NULL: counts nothing). */
void dm_metrics_attach(void *mem);
/* Series in use in the attached region (0 when none is attached). */
unsigned dm_metrics_series_used(void);

/* The end of a label list: a pointer, as a variadic argument must be
 * (plain NULL may be an int 0). */
#define DM_ML_END ((const char *)NULL)

/* Counting. After the value come label name/value pairs, then DM_ML_END:
 *     dm_metrics_inc(DM_M_LOGIN_FAILURES, "realm", "member", DM_ML_END);
 * A value longer than the label text allows is cut; quotes, backslashes
 * and newlines are escaped. */
void dm_metrics_inc(dm_metric m, ...);
void dm_metrics_add(dm_metric m, int64_t v, ...);
/* Gauges: set to v, or move by v (+1 on take, -1 on give back). */
void dm_metrics_set(dm_metric m, int64_t v, ...);
/* Gauges: sets v and returns the value before (0 when none is attached). */
int64_t dm_metrics_swap(dm_metric m, int64_t v, ...);
/* A counter's or gauge's value (0 when none is attached or never set). */
int64_t dm_metrics_get(dm_metric m, ...);
/* Histograms: one observation of us microseconds. */
void dm_metrics_observe_us(dm_metric m, int64_t us, ...);

/* Microseconds of a monotonic clock, for durations. */
int64_t dm_metrics_now_us(void);

/* One family's name, type and help text. */
const char *dm_metrics_name(dm_metric m);
dm_metric_type dm_metrics_type(dm_metric m);

/* The whole attached region in the Prometheus text format (version
 * 0.0.4), appended to b: every family with # HELP and # TYPE, unlabelled
 * families at 0 when unused. */
typedef struct dm_metrics_buf {
    apr_pool_t *pool;
    char *data;
    size_t len;
    size_t cap;
} dm_metrics_buf;

void dm_metrics_buf_init(dm_metrics_buf *b, apr_pool_t *p);
void dm_metrics_printf(dm_metrics_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* # HELP and # TYPE lines of a family rendered outside the region (the
 * gauges read from the database at scrape time). */
void dm_metrics_header(dm_metrics_buf *b, const char *name, const char *type, const char *help);
/* A label value escaped for the text format, in p. */
const char *dm_metrics_escape(apr_pool_t *p, const char *value);
void dm_metrics_render(dm_metrics_buf *b);

#endif
