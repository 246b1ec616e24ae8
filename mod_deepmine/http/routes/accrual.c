/*
 * routes/accrual.c — yield over HTTP: a member's earnings (daily totals
 * for a chart) and a contract's daily statement; staff record the mining
 * pool's payouts and read their reconciliation, and the owner sets the
 * commission plan on yield. Roles are in routes_admin.c's table. Thin:
 * core/earnings.c, core/pool_payouts.c and core/yield_commission.c do the
 * work; the accrual itself is a job (core/accrual.c).
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "base/clock.h"
#include "shop/earnings.h"
#include "base/json.h"
#include "ledger/ledger.h"
#include "shop/pool_payouts.h"
#include "referral/yield_commission.h"

#define MAX_TIME_FIELD 64
#define MAX_KIND_FIELD 16
#define DAY 86400
/* GET /api/earnings without from: the last 30 days. */
#define DEFAULT_DAYS 30

/* ?name= as a time (RFC 3339 or Unix seconds); *set 0 when absent. */
static dm_err *time_arg(request_rec *r, const char *name, int64_t *out, int *set)
{
    const char *v = dm_http_arg(r, name);

    *set = 0;
    if (!v || !*v) {
        return NULL;
    }
    if (strlen(v) > MAX_TIME_FIELD) {
        return dm_err_make(r->pool, DM_E_INVALID, name, "%s is not a time", name);
    }
    *set = 1;
    return dm_json_parse_time(r->pool, name, v, out);
}

/* ---- member ---- */

/* GET /api/earnings?from=&to=&bucket=day */
static int earnings(request_rec *r, const dm_route_match *rm)
{
    dm_db *db;
    dm_member m;
    const char *bucket = dm_http_arg(r, "bucket");
    int64_t from = 0, to = dm_now(), total = 0, end;
    int has_from = 0, has_to = 0;
    apr_array_header_t *days = NULL;
    json_t *arr;
    dm_err *e = dm_http_member_db(r, &db, &m);

    if (!e) {
        e = dm_http_check_args(r, "from to bucket");
    }
    if (!e && bucket && *bucket && strcmp(bucket, "day") != 0) {
        e = dm_err_make(r->pool, DM_E_INVALID, "bucket", "bucket is day (the only one so far)");
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
    if (!e && !has_from) {
        from = dm_day_floor(to) - (int64_t)(DEFAULT_DAYS - 1) * DAY;
    }
    if (!e) {
        e = dm_earnings_daily(db, r->pool, m.id, from, to, &days, &total);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    arr = json_array();
    for (int i = 0; i < days->nelts; i++) {
        json_array_append_new(
            arr, dm_earning_day_json(r->pool, &APR_ARRAY_IDX(days, i, dm_earning_day), 0, 0));
    }
    /* the days covered: [first day, day after the last) */
    end = APR_ARRAY_IDX(days, days->nelts - 1, dm_earning_day).day + DAY;
    return dm_http_send_json(r, HTTP_OK,
                             json_pack("{s:s,s:s,s:s,s:s,s:I,s:o}", "bucket", "day", "from",
                                       dm_json_time(r->pool, dm_day_floor(from)), "to",
                                       dm_json_time(r->pool, end), "currency", DM_LEDGER_CURRENCY,
                                       "total_micros", (json_int_t)total, "days", arr));
}

/* GET /api/contracts/{id}/statement?from=&to= — by default the contract's
 * whole life so far (its last DM_EARNINGS_MAX_DAYS days at most). */
static int statement(request_rec *r, const dm_route_match *rm)
{
    dm_db *db;
    dm_member m;
    dm_contract c;
    int64_t id = 0;
    int64_t from = 0, to = 0;
    int has_from = 0, has_to = 0, fixed;
    apr_array_header_t *days = NULL;
    json_t *arr, *cj;
    dm_err *e = dm_http_member_db(r, &db, &m);

    if (!e && dm_http_id_param(r, rm, "contract", &id)) {
        /* Not a number: no such contract (a path, not a field). */
        e = dm_err_make(r->pool, DM_E_NOT_FOUND, NULL, "no such contract");
    }
    if (!e) {
        e = dm_contract_get(db, r->pool, id, m.id, &c);
    }
    if (!e) {
        e = time_arg(r, "from", &from, &has_from);
    }
    if (!e) {
        e = time_arg(r, "to", &to, &has_to);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    if (!has_to) {
        to = dm_now() < c.expires_at ? dm_now() : c.expires_at;
        if (to <= (has_from ? from : c.started_at)) {
            to = (has_from ? from : c.started_at) + 1;
        }
    }
    if (!has_from) {
        from = c.started_at;
        if (dm_day_floor(to) - dm_day_floor(from) >= (int64_t)DM_EARNINGS_MAX_DAYS * DAY) {
            from = dm_day_floor(to) - (int64_t)(DM_EARNINGS_MAX_DAYS - 1) * DAY;
        }
    }
    e = dm_earnings_statement(db, r->pool, (int64_t)id, m.id, from, to, &c, &days);
    if (e) {
        return dm_http_error(r, e);
    }
    fixed = strcmp(c.yield_mode, DM_YIELD_FIXED) == 0;
    arr = json_array();
    for (int i = 0; i < days->nelts; i++) {
        json_array_append_new(
            arr, dm_earning_day_json(r->pool, &APR_ARRAY_IDX(days, i, dm_earning_day), 1, fixed));
    }
    cj = dm_contract_json(r->pool, &c, 0);
    return dm_http_send_json(r, HTTP_OK,
                             json_pack("{s:o,s:s,s:s,s:o}", "contract", cj, "from",
                                       dm_json_time(r->pool, dm_day_floor(from)), "to",
                                       dm_json_time(r->pool, to), "days", arr));
}

/* ---- staff: pool payouts ---- */

static int payout_record(request_rec *r, const dm_route_match *rm)
{
    dm_db *db;
    dm_staff st;
    json_t *b = NULL, *ps;
    const char *kind = NULL, *currency = DM_LEDGER_CURRENCY, *note = NULL, *when = NULL;
    int64_t start = 0, amount = 0;
    dm_pool_payout out;
    dm_err *e = dm_http_staff_db(r, rm, &db, &st);

    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "period_kind", 1, MAX_KIND_FIELD, &kind, NULL);
    }
    if (!e) {
        ps = json_object_get(b, "period_start");
        if (json_is_integer(ps)) {
            start = (int64_t)json_integer_value(ps);
        } else {
            e = dm_json_get_string(r->pool, b, "period_start", 1, MAX_TIME_FIELD, &when, NULL);
            if (!e) {
                e = dm_json_parse_time(r->pool, "period_start", when, &start);
            }
        }
    }
    if (!e) {
        e = dm_json_get_int64(r->pool, b, "amount_micros", 1, 1, INT64_MAX, &amount, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "currency", 0, 8, &currency, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "note", 0, 4 * DM_POOL_NOTE_MAX, &note, NULL);
    }
    if (!e) {
        e = dm_pool_payout_record(db, r->pool, st.id, r->useragent_ip, kind, start, amount,
                                  currency, note, &out);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_CREATED,
                                 json_pack("{s:o}", "payout", dm_pool_payout_json(r->pool, &out)));
}

static json_t *payout_row(apr_pool_t *p, const void *row, int staff_view)
{
    return dm_pool_payout_json(p, row);
}

static int payouts_list(request_rec *r, const dm_route_match *rm)
{
    dm_http_page pg;
    dm_err *e = dm_http_page_begin(r, rm, DM_HTTP_STAFF, NULL, &pg);

    if (!e) {
        e = dm_pool_payouts_list(pg.db, r->pool, pg.cursor, pg.limit, &pg.rows, &pg.next);
    }
    return dm_http_page_send(r, e, &pg, "pool_payouts", payout_row);
}

/* ---- owner: commissions on yield ---- */

static int yc_get(request_rec *r, const dm_route_match *rm)
{
    dm_db *db;
    dm_staff st;
    dm_yc_plan plan;
    dm_err *e = dm_http_staff_db(r, rm, &db, &st);

    if (!e) {
        e = dm_yc_plan_load(db, r->pool, &plan);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(
                   r, HTTP_OK,
                   dm_yc_plan_json(&plan, dm_conf_commission_cap_bp(dm_conf_get(r->server))));
}

static int yc_put(request_rec *r, const dm_route_match *rm)
{
    dm_db *db;
    dm_staff st;
    dm_yc_plan plan;
    json_t *b = NULL;
    int cap = dm_conf_commission_cap_bp(dm_conf_get(r->server));
    dm_err *e = dm_http_staff_db(r, rm, &db, &st);

    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_yc_plan_parse(r->pool, b, cap, &plan);
    }
    if (!e) {
        e = dm_yc_plan_replace(db, r->pool, st.id, r->useragent_ip, &plan, cap);
    }
    if (!e) {
        e = dm_yc_plan_load(db, r->pool, &plan);
    }
    return e ? dm_http_error(r, e) : dm_http_send_json(r, HTTP_OK, dm_yc_plan_json(&plan, cap));
}

const dm_route_def dm_routes_accrual[] = {
    {"GET", "/api/earnings", earnings},
    {"GET", "/api/contracts/{id}/statement", statement},
    {"POST", "/api/admin/pool-payouts", payout_record},
    {"GET", "/api/admin/pool-payouts", payouts_list},
    {"GET", "/api/admin/yield-commission-rates", yc_get},
    {"PUT", "/api/admin/yield-commission-rates", yc_put},
    {NULL, NULL, NULL},
};
