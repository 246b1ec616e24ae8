/*
 * stats.c — GET /api/admin/stats from the daily rollup (stats.h).
 */
#include "staff/stats.h"

#include <apr_strings.h>
#include <apr_tables.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/json.h"

#define DAY 86400

dm_err *dm_stats_parse_bucket(apr_pool_t *p, const char *s, dm_stats_bucket *out)
{
    if (!s || strcmp(s, "day") == 0) {
        *out = DM_STATS_DAY;
    } else if (strcmp(s, "week") == 0) {
        *out = DM_STATS_WEEK;
    } else if (strcmp(s, "month") == 0) {
        *out = DM_STATS_MONTH;
    } else {
        return dm_err_make(p, DM_E_INVALID, "bucket", "bucket must be day, week or month");
    }
    return NULL;
}

/* The first day of the bucket holding `day` (a UTC midnight). */
static int64_t bucket_start(int64_t day, dm_stats_bucket b)
{
    struct tm tm;
    time_t t = (time_t)day;

    if (b == DM_STATS_WEEK) {
        /* 1970-01-01 was a Thursday: Monday is 3 days later in the cycle. */
        int64_t n = day / DAY;
        return (n - ((n + 3) % 7)) * DAY;
    }
    if (b == DM_STATS_MONTH) {
        gmtime_r(&t, &tm);
        return day - (int64_t)(tm.tm_mday - 1) * DAY;
    }
    return day;
}

/* "YYYY-MM-DD" of a day into buf[16] (json_string copies it). */
static const char *day_text(char buf[16], int64_t day)
{
    struct tm tm;
    time_t t = (time_t)day;

    gmtime_r(&t, &tm);
    apr_snprintf(buf, 16, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    return buf;
}

/* Per-day values, indexed by day - first. */

enum { S_SIGNUPS, S_ORDERS, S_WD_N, S_STARTED, S_ENDED, S_GHS_UP, S_GHS_DOWN, S_N };
enum { M_REVENUE, M_COMMISSIONS, M_WD_REQ, M_WD_PAID, M_N };
static const char *const money_names[M_N] = {"revenue_micros", "commissions_micros",
                                             "withdrawals_requested_micros",
                                             "withdrawals_paid_micros"};

typedef struct currency_series {
    const char *code;
    int64_t *v[M_N];
} currency_series;

static dm_err *add_checked(apr_pool_t *p, int64_t *acc, int64_t v)
{
    if (__builtin_add_overflow(*acc, v, acc)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "a statistic overflows 64 bits");
    }
    return NULL;
}

/* JSON array of the bucketed flow `v` (n days from day `first`). */
static dm_err *flow_json(apr_pool_t *p, const int64_t *v, int n, int64_t first, dm_stats_bucket b,
                         json_t **out)
{
    json_t *a = json_array();
    int64_t acc = 0, cur = bucket_start(first, b);
    dm_err *e = NULL;

    for (int i = 0; i < n && !e; i++) {
        int64_t bs = bucket_start(first + (int64_t)i * DAY, b);
        if (bs != cur) {
            json_array_append_new(a, json_integer(acc));
            acc = 0;
            cur = bs;
        }
        e = add_checked(p, &acc, v[i]);
    }
    json_array_append_new(a, json_integer(acc));
    if (e) {
        json_decref(a);
        return e;
    }
    *out = a;
    return NULL;
}

/* JSON array of the level `v` at the end of each bucket. */
static json_t *level_json(const int64_t *v, int n, int64_t first, dm_stats_bucket b)
{
    json_t *a = json_array();

    for (int i = 0; i < n; i++) {
        int last = i == n - 1 || bucket_start(first + (int64_t)(i + 1) * DAY, b) !=
                                     bucket_start(first + (int64_t)i * DAY, b);
        if (last) {
            json_array_append_new(a, json_integer(v[i]));
        }
    }
    return a;
}

/* The day series live in malloc's memory, freed before dm_stats_get
 * returns, not in the request's pool: ten or more series of up to 366 days
 * took a staff request's pool past its first node, a node the connection's
 * allocator then keeps for as long as the connection is open. */
static currency_series *currency_of(apr_pool_t *p, apr_array_header_t *cs, const char *code, int n)
{
    for (int i = 0; i < cs->nelts; i++) {
        currency_series *c = &APR_ARRAY_IDX(cs, i, currency_series);
        if (strcmp(c->code, code) == 0) {
            return c;
        }
    }
    int64_t *v = calloc((size_t)M_N * (size_t)n, sizeof(int64_t));
    if (!v) {
        return NULL;
    }
    currency_series *c = apr_array_push(cs);
    c->code = apr_pstrdup(p, code);
    for (int k = 0; k < M_N; k++) {
        c->v[k] = v + (size_t)k * (size_t)n;
    }
    return c;
}

static dm_err *stats_get(dm_db *db, apr_pool_t *p, int64_t from, int64_t to, dm_stats_bucket bucket,
                         apr_array_header_t *cs, int64_t **series, json_t **out)
{
    int64_t first = dm_day_floor(from), last = dm_day_floor(to);
    int64_t active = 0, ghs = 0, cap = 0;
    int n, row = 0;
    int64_t *s[S_N], *lv_active, *lv_ghs, *lv_cap;
    char day[16];
    json_t *o = NULL, *money, *a;
    dm_stmt *st;
    dm_err *e;

    *out = NULL;
    if (last < first) {
        return dm_err_make(p, DM_E_INVALID, "to", "to must not be before from");
    }
    if ((last - first) / DAY + 1 > DM_STATS_MAX_DAYS) {
        return dm_err_make(p, DM_E_INVALID, "from", "the range is longer than %d days",
                           DM_STATS_MAX_DAYS);
    }
    n = (int)((last - first) / DAY) + 1;
    *series = calloc((size_t)(S_N + 3) * (size_t)n, sizeof(int64_t));
    if (!*series) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "out of memory for the statistics");
    }
    for (int k = 0; k < S_N; k++) {
        s[k] = *series + (size_t)k * (size_t)n;
    }
    lv_active = *series + (size_t)S_N * (size_t)n;
    lv_ghs = lv_active + n;
    lv_cap = lv_ghs + n;

    /* The levels before the range: every change up to its first day (a
     * row per day since the first sale). */
    e = dm_db_prepare(db, p,
                      "SELECT COALESCE(SUM(contracts_started - contracts_ended), 0), "
                      "COALESCE(SUM(ghs_started - ghs_ended), 0) FROM stats_daily "
                      "WHERE currency = '' AND day < ?",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, first);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        active = dm_stmt_int64(st, 0);
        ghs = dm_stmt_int64(st, 1);
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }

    e = dm_db_prepare(db, p,
                      "SELECT day, currency, signups, orders_paid, revenue_micros, "
                      "commissions_micros, withdrawals_requested, withdrawals_requested_micros, "
                      "withdrawals_paid_micros, contracts_started, contracts_ended, ghs_started, "
                      "ghs_ended FROM stats_daily WHERE day >= ? AND day <= ? "
                      "ORDER BY currency, day",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, first);
    dm_stmt_bind_int64(st, 2, last);
    while (!e && !(e = dm_stmt_step(st, p, &row)) && row) {
        int i = (int)((dm_stmt_int64(st, 0) - first) / DAY);
        const char *cur = dm_stmt_text(st, 1, NULL);
        if (i < 0 || i >= n) {
            continue;
        }
        if (!cur || !*cur) {
            s[S_SIGNUPS][i] += dm_stmt_int64(st, 2);
            s[S_STARTED][i] += dm_stmt_int64(st, 9);
            s[S_ENDED][i] += dm_stmt_int64(st, 10);
            s[S_GHS_UP][i] += dm_stmt_int64(st, 11);
            s[S_GHS_DOWN][i] += dm_stmt_int64(st, 12);
            continue;
        }
        currency_series *c = currency_of(p, cs, cur, n);
        if (!c) {
            e = dm_err_make(p, DM_E_INTERNAL, NULL, "out of memory for the statistics");
            break;
        }
        s[S_ORDERS][i] += dm_stmt_int64(st, 3);
        s[S_WD_N][i] += dm_stmt_int64(st, 6);
        c->v[M_REVENUE][i] = dm_stmt_int64(st, 4);
        c->v[M_COMMISSIONS][i] = dm_stmt_int64(st, 5);
        c->v[M_WD_REQ][i] = dm_stmt_int64(st, 7);
        c->v[M_WD_PAID][i] = dm_stmt_int64(st, 8);
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }

    /* Capacity: the newest row set before the end of each day (a short
     * history, read in order). */
    e = dm_db_prepare(db, p,
                      "SELECT hashrate_ghs, created_at FROM capacity ORDER BY created_at, id", &st);
    if (e) {
        return e;
    }
    {
        int i = 0;
        while (!(e = dm_stmt_step(st, p, &row)) && row) {
            int64_t at = dm_stmt_int64(st, 1);
            for (; i < n && first + (int64_t)(i + 1) * DAY <= at; i++) {
                lv_cap[i] = cap;
            }
            cap = dm_stmt_int64(st, 0);
        }
        for (; i < n; i++) {
            lv_cap[i] = cap;
        }
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    for (int i = 0; i < n; i++) {
        active += s[S_STARTED][i] - s[S_ENDED][i];
        ghs += s[S_GHS_UP][i] - s[S_GHS_DOWN][i];
        lv_active[i] = active;
        lv_ghs[i] = ghs;
    }

    o = json_object();
    json_object_set_new(o, "from", json_string(day_text(day, first)));
    json_object_set_new(o, "to", json_string(day_text(day, last)));
    json_object_set_new(o, "bucket",
                        json_string(bucket == DM_STATS_DAY    ? "day"
                                    : bucket == DM_STATS_WEEK ? "week"
                                                              : "month"));
    a = json_array();
    for (int i = 0; i < n; i++) {
        int64_t d = first + (int64_t)i * DAY;
        if (i == 0 || bucket_start(d, bucket) != bucket_start(d - DAY, bucket)) {
            json_array_append_new(a, json_string(day_text(day, d)));
        }
    }
    json_object_set_new(o, "buckets", a);
    {
        static const struct {
            const char *name;
            int k;
        } flows[] = {
            {"signups", S_SIGNUPS}, {"orders_paid", S_ORDERS}, {"withdrawals_requested", S_WD_N}};
        for (size_t f = 0; f < sizeof(flows) / sizeof(flows[0]) && !e; f++) {
            e = flow_json(p, s[flows[f].k], n, first, bucket, &a);
            if (!e) {
                json_object_set_new(o, flows[f].name, a);
            }
        }
    }
    json_object_set_new(o, "contracts_active", level_json(lv_active, n, first, bucket));
    json_object_set_new(o, "hashrate_sold_ghs", level_json(lv_ghs, n, first, bucket));
    json_object_set_new(o, "capacity_ghs", level_json(lv_cap, n, first, bucket));
    money = json_object();
    for (int c = 0; c < cs->nelts && !e; c++) {
        currency_series *cur = &APR_ARRAY_IDX(cs, c, currency_series);
        json_t *m = json_object();
        for (int k = 0; k < M_N && !e; k++) {
            e = flow_json(p, cur->v[k], n, first, bucket, &a);
            if (!e) {
                json_object_set_new(m, money_names[k], a);
            }
        }
        json_object_set_new(money, cur->code, m);
    }
    json_object_set_new(o, "currencies", money);
    if (e) {
        json_decref(o);
        return e;
    }
    *out = o;
    return NULL;
}

dm_err *dm_stats_get(dm_db *db, apr_pool_t *p, int64_t from, int64_t to, dm_stats_bucket bucket,
                     json_t **out)
{
    apr_array_header_t *cs = apr_array_make(p, 2, sizeof(currency_series));
    int64_t *series = NULL;
    dm_err *e = stats_get(db, p, from, to, bucket, cs, &series, out);

    free(series);
    for (int c = 0; c < cs->nelts; c++) {
        free(APR_ARRAY_IDX(cs, c, currency_series).v[0]);
    }
    return e;
}
