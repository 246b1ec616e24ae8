/*
 * routes/stats.c — the staff's statistics (GET /api/admin/stats, from the
 * daily rollup of core/staff/stats.c) and the CSV exports
 * (GET /api/admin/export/{users,orders,contracts,commissions,withdrawals,
 * transfers}.csv): each export takes its list endpoint's filters, pages
 * through the same core list function in batches on a pool cleared per
 * batch (constant memory whatever the row count), writes every row as the
 * list's JSON row in CSV (base/csv.h), and is audited before its first
 * byte ("export.<name>", the filters as "after"). Roles: routes/staff.c.
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>
#include <string.h>

#include "base/clock.h"
#include "base/confparse.h"
#include "base/csv.h"
#include "base/json.h"
#include "ledger/ledger.h"
#include "referral/commission.h"
#include "shop/orders.h"
#include "staff/member_admin.h"
#include "staff/stats.h"
#include "store/audit.h"
#include "withdrawals/withdrawals.h"

#define DAY 86400
#define MAX_TIME_FIELD 64
#define MAX_FILTER_FIELD 64
/* GET /api/admin/stats without a range: the last 30 days. */
#define DEFAULT_DAYS 30
/* Rows fetched per batch of an export (the lists' page maximum). */
#define EXPORT_BATCH 200

/* ---- statistics ---- */

static dm_err *time_arg(request_rec *r, const char *name, int64_t *out, int *set)
{
    const char *v = NULL;
    dm_err *e = dm_http_arg_max(r, name, MAX_TIME_FIELD, &v);

    *set = 0;
    if (e || !v) {
        return e;
    }
    *set = 1;
    return dm_json_parse_time(r->pool, name, v, out);
}

/* ?days=N (the last N days, today included) or ?from=&to= (times or
 * dates as the other endpoints take them), ?bucket=day|week|month. */
static int stats_get(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    const char *days_s = NULL, *bucket_s = NULL;
    long long days = DEFAULT_DAYS;
    int64_t from = 0, to = dm_now();
    int has_from = 0, has_to = 0;
    dm_stats_bucket bucket = DM_STATS_DAY;
    json_t *out = NULL;
    char *text = NULL;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_check_args(r, "days from to bucket");
    }
    if (!e) {
        e = dm_http_arg_max(r, "days", 8, &days_s);
    }
    if (!e && days_s && dm_parse_int(r->pool, days_s, 1, DM_STATS_MAX_DAYS, &days)) {
        e = dm_err_make(r->pool, DM_E_INVALID, "days", "days must be a whole number from 1 to %d",
                        DM_STATS_MAX_DAYS);
    }
    if (!e) {
        e = time_arg(r, "from", &from, &has_from);
    }
    if (!e) {
        e = time_arg(r, "to", &to, &has_to);
        if (!has_to) {
            to = dm_now();
        }
    }
    if (!e && days_s && has_from) {
        e = dm_err_make(r->pool, DM_E_INVALID, "days", "send days or from, not both");
    }
    if (!e && !has_from) {
        from = dm_day_floor(to) - (int64_t)(days - 1) * DAY;
    }
    if (!e) {
        e = dm_http_arg_max(r, "bucket", 16, &bucket_s);
    }
    if (!e) {
        e = dm_stats_parse_bucket(r->pool, bucket_s, &bucket);
    }
    if (!e) {
        e = dm_stats_get(db, r->pool, from, to, bucket, &out);
    }
    if (!e) {
        /* dm_http_send_json's text, the tree freed at once (not with the
         * request: ~1,300 numbers for 90 days) */
        text = json_dumps(out, DM_JSON_DUMP_FLAGS);
        json_decref(out);
    }
    /* the answer is written without the connection: others wait for it,
     * and a small answer (3.3 KiB for 90 days) is sent from the handler */
    dm_db_pool_release_scope(dm_g.db, r->pool);
    if (e) {
        return dm_http_error(r, e);
    }
    return dm_http_json_dumped(r, HTTP_OK, text);
}

/* ---- CSV exports ---- */

/* Every filter any export takes; each export reads those it names. */
typedef struct export_filter {
    const char *q, *status, *kind;
    int64_t user_id, beneficiary_id, buyer_id;
    dm_transfer_filter tf;
    json_t *seen; /* the filters given, for the audit row */
} export_filter;

typedef dm_err *export_fetch(dm_db *db, apr_pool_t *p, const export_filter *f, int64_t cursor,
                             apr_array_header_t **rows, int64_t *next);
typedef json_t *export_row(apr_pool_t *p, const void *row);

typedef struct export_def {
    const char *name;    /* the file: <name>.csv; audited export.<name> */
    const char *filters; /* the query parameters it takes (its list's) */
    const char *columns; /* the row JSON's keys, space-separated, in order */
    export_fetch *fetch;
    export_row *row;
} export_def;

static dm_err *fetch_users(dm_db *db, apr_pool_t *p, const export_filter *f, int64_t cursor,
                           apr_array_header_t **rows, int64_t *next)
{
    return dm_admin_users_search(db, p, f->q, f->status, cursor, EXPORT_BATCH, rows, next);
}
static json_t *row_user(apr_pool_t *p, const void *row)
{
    return dm_admin_user_row_json(p, row);
}

static dm_err *fetch_orders(dm_db *db, apr_pool_t *p, const export_filter *f, int64_t cursor,
                            apr_array_header_t **rows, int64_t *next)
{
    return dm_orders_list(db, p, f->user_id, f->status, cursor, EXPORT_BATCH, rows, next);
}
static json_t *row_order(apr_pool_t *p, const void *row)
{
    return dm_order_json(p, row, 1);
}

static dm_err *fetch_contracts(dm_db *db, apr_pool_t *p, const export_filter *f, int64_t cursor,
                               apr_array_header_t **rows, int64_t *next)
{
    return dm_contracts_list(db, p, f->user_id, f->status, cursor, EXPORT_BATCH, rows, next);
}
static json_t *row_contract(apr_pool_t *p, const void *row)
{
    return dm_contract_json(p, row, 1);
}

static dm_err *fetch_commissions(dm_db *db, apr_pool_t *p, const export_filter *f, int64_t cursor,
                                 apr_array_header_t **rows, int64_t *next)
{
    dm_commission_filter cf = {f->beneficiary_id, f->buyer_id, f->status};
    return dm_commission_admin_list(db, p, &cf, cursor, EXPORT_BATCH, rows, next);
}
static json_t *row_commission(apr_pool_t *p, const void *row)
{
    return dm_commission_staff_json(p, row);
}

static dm_err *fetch_withdrawals(dm_db *db, apr_pool_t *p, const export_filter *f, int64_t cursor,
                                 apr_array_header_t **rows, int64_t *next)
{
    return dm_wd_list(db, p, f->user_id, f->status, cursor, EXPORT_BATCH, rows, next);
}
static json_t *row_withdrawal(apr_pool_t *p, const void *row)
{
    return dm_wd_json(p, row, 1);
}

static dm_err *fetch_transfers(dm_db *db, apr_pool_t *p, const export_filter *f, int64_t cursor,
                               apr_array_header_t **rows, int64_t *next)
{
    return dm_ledger_transfers_list(db, p, &f->tf, cursor, EXPORT_BATCH, rows, next);
}
static json_t *row_transfer(apr_pool_t *p, const void *row)
{
    return dm_transfer_row_json(p, row);
}

static const export_def exports[] = {
    {"users", "q status",
     "id email name referral_code referrer_id status vip_level kyc_status created_at", fetch_users,
     row_user},
    {"orders", "status user_id", NULL, fetch_orders, row_order},
    {"contracts", "user_id status", NULL, fetch_contracts, row_contract},
    {"commissions", "beneficiary_id buyer_id status", NULL, fetch_commissions, row_commission},
    {"withdrawals", "status user_id", NULL, fetch_withdrawals, row_withdrawal},
    {"transfers", "kind account from to", NULL, fetch_transfers, row_transfer},
};

static dm_err *id_arg(request_rec *r, export_filter *f, const char *name, int64_t *out)
{
    const char *s = NULL;
    long long v = 0;
    dm_err *e = dm_http_arg_max(r, name, MAX_FILTER_FIELD, &s);

    if (e || !s) {
        return e;
    }
    if (dm_parse_int(r->pool, s, 1, INT64_MAX, &v)) {
        return dm_err_make(r->pool, DM_E_INVALID, name, "%s must be a positive number", name);
    }
    *out = (int64_t)v;
    json_object_set_new(f->seen, name, json_integer(v));
    return NULL;
}

static dm_err *text_arg(request_rec *r, export_filter *f, const char *name, apr_size_t max,
                        const char **out)
{
    dm_err *e = dm_http_arg_max(r, name, max, out);
    if (!e && *out) {
        json_object_set_new(f->seen, name, json_string(*out));
    }
    return e;
}

/* The filters of export `d` from the query (each read only when the
 * export takes it: dm_http_check_args has refused the rest). */
static dm_err *read_filters(request_rec *r, const export_def *d, export_filter *f)
{
    const char *from = NULL, *to = NULL;
    dm_err *e = NULL;

    memset(f, 0, sizeof(*f));
    f->seen = json_object();
    dm_json_own(r->pool, f->seen);
    e = text_arg(r, f, "q", 4 * DM_ADMIN_Q_MAX_CHARS, &f->q);
    if (!e) {
        e = text_arg(r, f, "status", MAX_FILTER_FIELD, &f->status);
    }
    if (!e) {
        e = id_arg(r, f, "user_id", &f->user_id);
    }
    if (!e) {
        e = id_arg(r, f, "beneficiary_id", &f->beneficiary_id);
    }
    if (!e) {
        e = id_arg(r, f, "buyer_id", &f->buyer_id);
    }
    if (!e) {
        e = text_arg(r, f, "kind", MAX_FILTER_FIELD, &f->tf.kind);
    }
    if (!e) {
        e = id_arg(r, f, "account", &f->tf.account_id);
    }
    if (!e) {
        e = text_arg(r, f, "from", MAX_TIME_FIELD, &from);
    }
    if (!e && from) {
        e = dm_json_parse_time(r->pool, "from", from, &f->tf.from);
        f->tf.has_from = 1;
    }
    if (!e) {
        e = text_arg(r, f, "to", MAX_TIME_FIELD, &to);
    }
    if (!e && to) {
        e = dm_json_parse_time(r->pool, "to", to, &f->tf.to);
        f->tf.has_to = 1;
    }
    (void)d;
    return e;
}

/* One JSON value as a CSV cell: numbers as they are, text through
 * dm_csv_text, null empty, anything else as its compact JSON text. */
static const char *json_cell(apr_pool_t *p, const json_t *v)
{
    size_t len;

    if (!v || json_is_null(v)) {
        return "";
    }
    if (json_is_integer(v)) {
        return apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)json_integer_value(v));
    }
    if (json_is_string(v)) {
        return dm_csv_text(p, json_string_value(v));
    }
    if (json_is_true(v) || json_is_false(v)) {
        return json_is_true(v) ? "true" : "false";
    }
    return dm_csv_text(p, dm_json_dump(p, v, &len));
}

/* The column names of export `d`: its list, or the keys of its first row
 * (the list endpoint's JSON, in its order). */
static apr_array_header_t *columns_of(apr_pool_t *p, const export_def *d, const json_t *first)
{
    apr_array_header_t *cols = apr_array_make(p, 16, sizeof(const char *));
    const char *key;
    json_t *v;

    if (d->columns) {
        char *last, *list = apr_pstrdup(p, d->columns);
        for (char *w = apr_strtok(list, " ", &last); w; w = apr_strtok(NULL, " ", &last)) {
            APR_ARRAY_PUSH(cols, const char *) = w;
        }
    } else if (first) {
        json_object_foreach((json_t *)first, key, v)
        {
            APR_ARRAY_PUSH(cols, const char *) = apr_pstrdup(p, key);
        }
    }
    return cols;
}

static void write_line(request_rec *r, apr_pool_t *p, const apr_array_header_t *cols,
                       const json_t *row)
{
    for (int i = 0; i < cols->nelts; i++) {
        const char *name = APR_ARRAY_IDX(cols, i, const char *);
        const char *cell = row ? json_cell(p, json_object_get(row, name)) : dm_csv_text(p, name);
        if (i) {
            ap_rputc(',', r);
        }
        ap_rputs(cell, r);
    }
    ap_rputs("\r\n", r);
}

static int export_csv(request_rec *r, const dm_route_match *m, const export_def *d)
{
    dm_db *db;
    dm_staff st;
    export_filter f;
    apr_pool_t *batch;
    apr_array_header_t *rows = NULL, *cols = NULL;
    int64_t cursor = 0, next = 0, count = 0;
    int first = 1;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_check_args(r, d->filters);
    }
    if (!e) {
        e = read_filters(r, d, &f);
    }
    /* The first batch before anything is sent: a bad filter is still a
     * 400 with the error shape. */
    apr_pool_create(&batch, r->pool);
    if (!e) {
        e = d->fetch(db, batch, &f, 0, &rows, &next);
    }
    if (!e) {
        e = dm_db_begin(db, r->pool);
        if (!e) {
            e = dm_audit_write(db, r->pool, st.id, apr_pstrcat(r->pool, "export.", d->name, NULL),
                               NULL, NULL, NULL, f.seen, r->useragent_ip);
        }
        e = e ? (dm_db_rollback(db), e) : dm_db_commit(db, r->pool);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    /* <name>-YYYY-MM-DD.csv: the day of the export */
    dm_http_csv_begin(
        r, apr_psprintf(r->pool, "%s-%.10s.csv", d->name, dm_json_time(r->pool, dm_now())));
    if (r->header_only) {
        return OK;
    }
    for (;;) {
        const char *elt = rows->elts;
        for (int i = 0; i < rows->nelts; i++, elt += rows->elt_size) {
            json_t *row = d->row(batch, elt);
            if (first) {
                cols = columns_of(r->pool, d, row);
                write_line(r, batch, cols, NULL);
                first = 0;
            }
            write_line(r, batch, cols, row);
            json_decref(row);
            count++;
        }
        if (first) { /* no row at all: the header alone */
            cols = columns_of(r->pool, d, NULL);
            if (cols->nelts) {
                write_line(r, batch, cols, NULL);
            }
            first = 0;
        }
        if (!next || r->connection->aborted) {
            break;
        }
        cursor = next;
        ap_rflush(r);
        apr_pool_clear(batch);
        e = d->fetch(db, batch, &f, cursor, &rows, &next);
        if (e) {
            /* The status is sent: cut the answer short so the client sees
             * an incomplete download, never a silently short file. */
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                          "DM01500: export %s stopped after %" APR_INT64_T_FMT " rows: %s", d->name,
                          (apr_int64_t)count, e->message);
            r->connection->keepalive = AP_CONN_CLOSE;
            r->connection->aborted = 1;
            break;
        }
    }
    apr_pool_destroy(batch);
    return OK;
}

#define EXPORT_ROUTE(fn, i)                                                                        \
    static int fn(request_rec *r, const dm_route_match *m)                                         \
    {                                                                                              \
        return export_csv(r, m, &exports[i]);                                                      \
    }
EXPORT_ROUTE(export_users, 0)
EXPORT_ROUTE(export_orders, 1)
EXPORT_ROUTE(export_contracts, 2)
EXPORT_ROUTE(export_commissions, 3)
EXPORT_ROUTE(export_withdrawals, 4)
EXPORT_ROUTE(export_transfers, 5)

const dm_route_def dm_routes_stats[] = {
    {"GET", "/api/admin/stats", stats_get},
    {"GET", "/api/admin/export/users.csv", export_users},
    {"GET", "/api/admin/export/orders.csv", export_orders},
    {"GET", "/api/admin/export/contracts.csv", export_contracts},
    {"GET", "/api/admin/export/commissions.csv", export_commissions},
    {"GET", "/api/admin/export/withdrawals.csv", export_withdrawals},
    {"GET", "/api/admin/export/transfers.csv", export_transfers},
    {NULL, NULL, NULL},
};
