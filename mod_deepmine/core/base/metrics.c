/*
 * metrics.c — the series table behind metrics.h.
 *
 * The region is a header and `series` slots, found by open addressing on a
 * hash of (family, label text). A slot is claimed with one compare-and-swap
 * (free → claiming), filled, then published (ready) with a release store;
 * from then on it is never moved or freed, so a counter update is a hash,
 * a short probe and one atomic add — no lock on a request path. A process
 * that dies while claiming leaves a slot that stays "claiming": it is
 * skipped, never waited on for long.
 *
 * Offsets only, no pointers, inside the region: children map it at the
 * same address today, but nothing here relies on that.
 */
#include "base/metrics.h"

#include <apr_strings.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define REGION_MAGIC 0x444d4d31u /* "DMM1" */
/* Changes whenever the slot layout or the family list changes, so a region
 * that survived a graceful restart into a new build is made afresh. */
#define REGION_VERSION ((uint32_t)(sizeof(slot) * 131u + DM_M_COUNT * 7u + DM_METRICS_BUCKETS))
/* How many slots a lookup probes before it gives up (the table is then
 * nearly full: the series is dropped and counted). */
#define MAX_PROBE 64
/* Spins while another process fills a slot, before it is skipped. */
#define MAX_SPIN 1000

enum { SLOT_FREE = 0, SLOT_CLAIMING = 1, SLOT_READY = 2 };

typedef struct slot {
    uint32_t state;
    uint32_t family;
    uint64_t hash;
    char labels[DM_METRICS_LABELS_MAX];
    int64_t value; /* counter, gauge; a histogram's count */
    int64_t sum_us;
    int64_t buckets[DM_METRICS_BUCKETS]; /* not cumulative */
} slot;

typedef struct region {
    uint32_t magic;
    uint32_t version;
    uint32_t series;
    uint32_t pad;
    int64_t used;
    int64_t dropped;
    slot slots[];
} region;

const int64_t dm_metrics_bucket_us[DM_METRICS_BUCKETS] = {
    1000, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};

static const struct {
    const char *name;
    dm_metric_type type;
    const char *help;
} families[DM_M_COUNT] = {
    [DM_M_HTTP_REQUESTS] = {"deepmine_http_requests_total", DM_METRIC_COUNTER,
                            "API requests answered, by route pattern, method and status class."},
    [DM_M_HTTP_DURATION] = {"deepmine_http_request_duration_seconds", DM_METRIC_HISTOGRAM,
                            "Time to answer an API request, by route pattern, method and status "
                            "class."},
    [DM_M_DB_POOL_IN_USE] = {"deepmine_db_pool_connections_in_use", DM_METRIC_GAUGE,
                             "Database connections handed out, summed over every child."},
    [DM_M_DB_POOL_WAITS] = {"deepmine_db_pool_waits_total", DM_METRIC_COUNTER,
                            "Requests that found every pooled connection of their child in use "
                            "and waited."},
    [DM_M_DB_POOL_TIMEOUTS] = {"deepmine_db_pool_timeouts_total", DM_METRIC_COUNTER,
                               "Requests that waited for a pooled connection in vain (503)."},
    [DM_M_DB_WRITE_LOCK_WAIT] = {"deepmine_db_write_lock_wait_seconds", DM_METRIC_HISTOGRAM,
                                 "Time a writer waited for the database write lock."},
    [DM_M_DB_WRITE_LOCK_TIMEOUT] = {"deepmine_db_write_lock_timeouts_total", DM_METRIC_COUNTER,
                                    "Writers that gave up waiting for the write lock (busy)."},
    [DM_M_DB_STORAGE_ERRORS] = {"deepmine_db_storage_errors_total", DM_METRIC_COUNTER,
                                "Database statements refused by the storage: kind full (disk "
                                "or file full) or io (I/O error)."},
    [DM_M_DB_STORAGE_FULL] = {"deepmine_db_storage_refusing_writes", DM_METRIC_GAUGE,
                              "1 while the database's storage is full, 2 while it fails with I/O "
                              "errors, 0 once a write goes through again."},
    [DM_M_PLUGIN_CALL_DURATION] = {"deepmine_plugin_call_duration_seconds", DM_METRIC_HISTOGRAM,
                                   "Time spent in a plugin function, by plugin and function."},
    [DM_M_PLUGIN_CALL_ERRORS] = {"deepmine_plugin_call_errors_total", DM_METRIC_COUNTER,
                                 "Plugin calls that did not return ok, by plugin, function and "
                                 "status."},
    [DM_M_WEBHOOKS_RECEIVED] = {"deepmine_webhooks_received_total", DM_METRIC_COUNTER,
                                "Webhooks received, by plugin."},
    [DM_M_WEBHOOKS_ACCEPTED] = {"deepmine_webhooks_accepted_total", DM_METRIC_COUNTER,
                                "Webhooks answered 2xx, by plugin."},
    [DM_M_WEBHOOKS_REFUSED] = {"deepmine_webhooks_refused_total", DM_METRIC_COUNTER,
                               "Webhooks refused (4xx or 5xx), by plugin."},
    [DM_M_RATE_LIMIT_REFUSED] = {"deepmine_rate_limit_refusals_total", DM_METRIC_COUNTER,
                                 "Requests refused with 429 by the rate limiter, by rule."},
    [DM_M_LOGIN_FAILURES] = {"deepmine_login_failures_total", DM_METRIC_COUNTER,
                             "Failed logins, by realm (member or staff)."},
    [DM_M_TWOFA_FAILURES] = {"deepmine_twofa_failures_total", DM_METRIC_COUNTER,
                             "Wrong second-factor codes."},
    [DM_M_JOB_RUNS] = {"deepmine_job_runs_total", DM_METRIC_COUNTER,
                       "Job runs finished by this server's cron daemon, by job and result."},
    [DM_M_JOB_DURATION] = {"deepmine_job_duration_seconds", DM_METRIC_HISTOGRAM,
                           "Duration of job runs, by job."},
    [DM_M_JOB_LAST_SUCCESS] = {NULL, DM_METRIC_GAUGE, NULL},
    [DM_M_MAIL_SENT] = {"deepmine_mail_sent_total", DM_METRIC_COUNTER,
                        "Messages the mailer plugin accepted."},
    [DM_M_MAIL_FAILED] = {"deepmine_mail_failed_total", DM_METRIC_COUNTER,
                          "Messages given up after their last attempt."},
    [DM_M_MAIL_SUPPRESSED] = {"deepmine_mail_suppressed_total", DM_METRIC_COUNTER,
                              "Messages not sent because the address is suppressed."},
    [DM_M_SERIES_DROPPED] = {"deepmine_metrics_series_dropped_total", DM_METRIC_COUNTER,
                             "Updates lost because the metrics table had no room for a new "
                             "series."},
    [DM_M_RL_STORE_ERRORS] = {"deepmine_rate_limit_store_errors_total", DM_METRIC_COUNTER,
                              "Rate-limit checks that could not reach memcached "
                              "(DeepMineRateLimitStore memcache)."},
};

static region *attached;

size_t dm_metrics_region_size(unsigned series)
{
    return sizeof(region) + (size_t)series * sizeof(slot);
}

void dm_metrics_region_init(void *mem, size_t size, unsigned series)
{
    region *rg = mem;

    /* The slots are zero already (a fresh shared segment): writing them
     * would make every page of the 1.3 MiB region resident in the parent,
     * where nothing reads it. Only the header is written. */
    (void)size;
    memset(rg, 0, sizeof(*rg));
    rg->series = series;
    rg->version = REGION_VERSION;
    __atomic_store_n(&rg->magic, REGION_MAGIC, __ATOMIC_RELEASE);
}

int dm_metrics_region_usable(const void *mem, size_t size, unsigned series)
{
    const region *rg = mem;

    return mem && size >= dm_metrics_region_size(series) && rg->magic == REGION_MAGIC &&
           rg->version == REGION_VERSION && rg->series == series;
}

void dm_metrics_attach(void *mem)
{
    attached = mem;
}

unsigned dm_metrics_series_used(void)
{
    return attached ? (unsigned)__atomic_load_n(&attached->used, __ATOMIC_RELAXED) : 0;
}

int64_t dm_metrics_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *dm_metrics_name(dm_metric m)
{
    return families[m].name;
}

dm_metric_type dm_metrics_type(dm_metric m)
{
    return families[m].type;
}

/* Appends value to out[*len..] escaped (\\, \", \n), never past cap - 1. */
static void escape_into(char *out, size_t cap, size_t *len, const char *value)
{
    for (const char *s = value; *s; s++) {
        char esc = 0;
        if (*s == '\\' || *s == '"') {
            esc = *s;
        } else if (*s == '\n') {
            esc = 'n';
        }
        if (*len + (esc ? 2 : 1) >= cap) {
            break;
        }
        if (esc) {
            out[(*len)++] = '\\';
            out[(*len)++] = esc;
        } else {
            out[(*len)++] = *s;
        }
    }
    out[*len] = '\0';
}

static void append(char *out, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);

    if (*len + n >= cap) {
        n = cap - 1 - *len;
    }
    memcpy(out + *len, s, n);
    *len += n;
    out[*len] = '\0';
}

/* name="value",… from the NULL-terminated pairs in ap. */
static void labels_from(char *out, va_list ap)
{
    size_t len = 0;
    const char *name;

    out[0] = '\0';
    while ((name = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        if (len) {
            append(out, DM_METRICS_LABELS_MAX, &len, ",");
        }
        append(out, DM_METRICS_LABELS_MAX, &len, name);
        append(out, DM_METRICS_LABELS_MAX, &len, "=\"");
        /* Room is kept for the closing quote. */
        escape_into(out, DM_METRICS_LABELS_MAX - 1, &len, value ? value : "");
        append(out, DM_METRICS_LABELS_MAX, &len, "\"");
    }
}

static uint64_t hash_of(dm_metric m, const char *labels)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)m;

    for (const unsigned char *s = (const unsigned char *)labels; *s; s++) {
        h = (h ^ *s) * 1099511628211ULL;
    }
    return h;
}

/* The slot of (m, labels), claimed when new; NULL when none is attached
 * or the table has no room. */
static slot *series_get(dm_metric m, const char *labels)
{
    region *rg = attached;
    uint64_t h;

    if (!rg || (unsigned)m >= DM_M_COUNT) {
        return NULL;
    }
    h = hash_of(m, labels);
    for (unsigned i = 0; i < MAX_PROBE && i < rg->series; i++) {
        slot *s = &rg->slots[(h + i) % rg->series];
        uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
        if (st == SLOT_FREE) {
            uint32_t expect = SLOT_FREE;
            if (__atomic_compare_exchange_n(&s->state, &expect, SLOT_CLAIMING, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                s->family = (uint32_t)m;
                s->hash = h;
                apr_cpystrn(s->labels, labels, sizeof(s->labels));
                __atomic_store_n(&s->state, SLOT_READY, __ATOMIC_RELEASE);
                __atomic_add_fetch(&rg->used, 1, __ATOMIC_RELAXED);
                return s;
            }
            st = expect;
        }
        for (int spin = 0; st == SLOT_CLAIMING && spin < MAX_SPIN; spin++) {
            sched_yield();
            st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
        }
        if (st == SLOT_READY && s->hash == h && s->family == (uint32_t)m &&
            strcmp(s->labels, labels) == 0) {
            return s;
        }
    }
    __atomic_add_fetch(&rg->dropped, 1, __ATOMIC_RELAXED);
    return NULL;
}

static void add_v(dm_metric m, int64_t v, va_list ap)
{
    char labels[DM_METRICS_LABELS_MAX];
    slot *s;

    if (!attached) {
        return;
    }
    labels_from(labels, ap);
    s = series_get(m, labels);
    if (s) {
        __atomic_add_fetch(&s->value, v, __ATOMIC_RELAXED);
    }
}

void dm_metrics_inc(dm_metric m, ...)
{
    va_list ap;

    va_start(ap, m);
    add_v(m, 1, ap);
    va_end(ap);
}

void dm_metrics_add(dm_metric m, int64_t v, ...)
{
    va_list ap;

    va_start(ap, v);
    add_v(m, v, ap);
    va_end(ap);
}

void dm_metrics_set(dm_metric m, int64_t v, ...)
{
    char labels[DM_METRICS_LABELS_MAX];
    va_list ap;
    slot *s;

    if (!attached) {
        return;
    }
    va_start(ap, v);
    labels_from(labels, ap);
    va_end(ap);
    s = series_get(m, labels);
    if (s) {
        __atomic_store_n(&s->value, v, __ATOMIC_RELAXED);
    }
}

int64_t dm_metrics_swap(dm_metric m, int64_t v, ...)
{
    char labels[DM_METRICS_LABELS_MAX];
    va_list ap;
    slot *s;

    if (!attached) {
        return 0;
    }
    va_start(ap, v);
    labels_from(labels, ap);
    va_end(ap);
    s = series_get(m, labels);
    return s ? __atomic_exchange_n(&s->value, v, __ATOMIC_ACQ_REL) : 0;
}

int64_t dm_metrics_get(dm_metric m, ...)
{
    char labels[DM_METRICS_LABELS_MAX];
    va_list ap;
    slot *s;

    if (!attached) {
        return 0;
    }
    va_start(ap, m);
    labels_from(labels, ap);
    va_end(ap);
    s = series_get(m, labels);
    return s ? __atomic_load_n(&s->value, __ATOMIC_ACQUIRE) : 0;
}

void dm_metrics_observe_us(dm_metric m, int64_t us, ...)
{
    char labels[DM_METRICS_LABELS_MAX];
    va_list ap;
    slot *s;

    if (!attached) {
        return;
    }
    va_start(ap, us);
    labels_from(labels, ap);
    va_end(ap);
    s = series_get(m, labels);
    if (!s) {
        return;
    }
    if (us < 0) {
        us = 0;
    }
    for (int i = 0; i < DM_METRICS_BUCKETS; i++) {
        if (us <= dm_metrics_bucket_us[i]) {
            __atomic_add_fetch(&s->buckets[i], 1, __ATOMIC_RELAXED);
            break;
        }
    }
    __atomic_add_fetch(&s->sum_us, us, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->value, 1, __ATOMIC_RELAXED);
}

/* ---- the text format ---- */

void dm_metrics_buf_init(dm_metrics_buf *b, apr_pool_t *p)
{
    b->pool = p;
    b->cap = 16384;
    b->len = 0;
    b->data = apr_palloc(p, b->cap);
    b->data[0] = '\0';
}

void dm_metrics_printf(dm_metrics_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        {
            size_t cap = b->cap * 2 + (size_t)n;
            char *bigger = apr_palloc(b->pool, cap);
            memcpy(bigger, b->data, b->len + 1);
            b->data = bigger;
            b->cap = cap;
        }
    }
}

void dm_metrics_header(dm_metrics_buf *b, const char *name, const char *type, const char *help)
{
    dm_metrics_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

const char *dm_metrics_escape(apr_pool_t *p, const char *value)
{
    size_t cap = strlen(value) * 2 + 1, len = 0;
    char *out = apr_palloc(p, cap);

    out[0] = '\0';
    escape_into(out, cap, &len, value);
    return out;
}

/* Microseconds as seconds with no trailing zeros: 5000 → "0.005". */
static const char *seconds(char *buf, size_t cap, int64_t us)
{
    int n = snprintf(buf, cap, "%lld.%06lld", (long long)(us / 1000000), (long long)(us % 1000000));

    while (n > 0 && buf[n - 1] == '0') {
        buf[--n] = '\0';
    }
    if (n > 0 && buf[n - 1] == '.') {
        buf[--n] = '\0';
    }
    return buf;
}

static void render_histogram(dm_metrics_buf *b, const char *name, const slot *s)
{
    const char *sep = s->labels[0] ? "," : "";
    int64_t cum = 0, count = __atomic_load_n(&s->value, __ATOMIC_RELAXED);
    char num[32];

    for (int i = 0; i < DM_METRICS_BUCKETS; i++) {
        cum += __atomic_load_n(&s->buckets[i], __ATOMIC_RELAXED);
        /* Updates land one field at a time: a bucket may run ahead of the
         * count read first; the text format wants them monotonic. */
        if (cum > count) {
            count = cum;
        }
        dm_metrics_printf(b, "%s_bucket{%s%sle=\"%s\"} %lld\n", name, s->labels, sep,
                          seconds(num, sizeof(num), dm_metrics_bucket_us[i]), (long long)cum);
    }
    dm_metrics_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %lld\n", name, s->labels, sep,
                      (long long)count);
    dm_metrics_printf(b, "%s_sum%s%s%s %s\n", name, s->labels[0] ? "{" : "", s->labels,
                      s->labels[0] ? "}" : "",
                      seconds(num, sizeof(num), __atomic_load_n(&s->sum_us, __ATOMIC_RELAXED)));
    dm_metrics_printf(b, "%s_count%s%s%s %lld\n", name, s->labels[0] ? "{" : "", s->labels,
                      s->labels[0] ? "}" : "", (long long)count);
}

void dm_metrics_render(dm_metrics_buf *b)
{
    static const char *type_names[] = {"counter", "gauge", "histogram"};
    region *rg = attached;

    for (int f = 0; f < DM_M_COUNT; f++) {
        const char *name = families[f].name;
        int any = 0;
        if (!name) {
            continue; /* kept here, rendered by its reader */
        }
        dm_metrics_header(b, name, type_names[families[f].type], families[f].help);
        if (f == DM_M_SERIES_DROPPED) {
            dm_metrics_printf(
                b, "%s %lld\n", name,
                (long long)(rg ? __atomic_load_n(&rg->dropped, __ATOMIC_RELAXED) : 0));
            continue;
        }
        for (unsigned i = 0; rg && i < rg->series; i++) {
            const slot *s = &rg->slots[i];
            if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SLOT_READY ||
                s->family != (uint32_t)f) {
                continue;
            }
            any = 1;
            if (families[f].type == DM_METRIC_HISTOGRAM) {
                render_histogram(b, name, s);
            } else {
                dm_metrics_printf(b, "%s%s%s%s %lld\n", name, s->labels[0] ? "{" : "", s->labels,
                                  s->labels[0] ? "}" : "",
                                  (long long)__atomic_load_n(&s->value, __ATOMIC_RELAXED));
            }
        }
        /* Families that take no labels read 0 before their first update. */
        if (!any &&
            (f == DM_M_DB_POOL_IN_USE || f == DM_M_DB_POOL_WAITS || f == DM_M_DB_POOL_TIMEOUTS ||
             f == DM_M_DB_WRITE_LOCK_TIMEOUT || f == DM_M_DB_STORAGE_FULL ||
             f == DM_M_TWOFA_FAILURES || f == DM_M_MAIL_SENT || f == DM_M_MAIL_FAILED ||
             f == DM_M_MAIL_SUPPRESSED || f == DM_M_RL_STORE_ERRORS)) {
            dm_metrics_printf(b, "%s 0\n", name);
        }
    }
}
