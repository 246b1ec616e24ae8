/*
 * earnings.c — see earnings.h. Both reads are one indexed query: the
 * member's contracts (contracts_user) joined with each one's days
 * (contract_days' key), so the cost follows what the member owns.
 */
#include "shop/earnings.h"

#include <apr_strings.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"

#define DAY 86400

/* [from, to) as whole days: *first the day holding from, *end the first
 * day not covered. */
static dm_err *day_range(apr_pool_t *p, int64_t from, int64_t to, int64_t *first, int64_t *end)
{
    if (to <= from) {
        return dm_err_make(p, DM_E_INVALID, "to", "to must be later than from");
    }
    *first = dm_day_floor(from);
    *end = dm_day_floor(to) == to ? to : dm_day_floor(to) + DAY;
    if ((*end - *first) / DAY > DM_EARNINGS_MAX_DAYS) {
        return dm_err_make(p, DM_E_INVALID, "to", "a range covers at most %d days",
                           DM_EARNINGS_MAX_DAYS);
    }
    return NULL;
}

dm_err *dm_earnings_daily(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t from, int64_t to,
                          apr_array_header_t **days, int64_t *total_micros)
{
    int64_t first = 0, end = 0;
    dm_stmt *st;
    int row = 0;
    dm_err *e = day_range(p, from, to, &first, &end);

    *total_micros = 0;
    *days = apr_array_make(p, 32, sizeof(dm_earning_day));
    if (e) {
        return e;
    }
    for (int64_t d = first; d < end; d += DAY) {
        dm_earning_day *x = apr_array_push(*days);
        memset(x, 0, sizeof(*x));
        x->day = d;
    }
    e = dm_db_prepare(db, p,
                      "SELECT d.day, SUM(d.hash_seconds), SUM(d.share_micros), SUM(d.fee_micros), "
                      "SUM(d.credit_micros) FROM contracts c "
                      "JOIN contract_days d ON d.contract_id = c.id "
                      "WHERE c.user_id = ? AND d.day >= ? AND d.day < ? GROUP BY d.day",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_int64(st, 2, first);
    dm_stmt_bind_int64(st, 3, end);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        int64_t i = (dm_stmt_int64(st, 0) - first) / DAY;
        dm_earning_day *x;
        if (i < 0 || i >= (*days)->nelts) {
            continue;
        }
        x = &APR_ARRAY_IDX(*days, i, dm_earning_day);
        x->hash_seconds = dm_stmt_int64(st, 1);
        x->share_micros = dm_stmt_int64(st, 2);
        x->fee_micros = dm_stmt_int64(st, 3);
        x->credit_micros = dm_stmt_int64(st, 4);
        *total_micros += x->credit_micros;
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_earnings_statement(dm_db *db, apr_pool_t *p, int64_t contract_id, int64_t user_id,
                              int64_t from, int64_t to, dm_contract *contract,
                              apr_array_header_t **days)
{
    int64_t first = 0, end = 0;
    dm_stmt *st;
    int row = 0;
    dm_err *e = day_range(p, from, to, &first, &end);

    *days = apr_array_make(p, 32, sizeof(dm_earning_day));
    if (!e) {
        e = dm_contract_get(db, p, contract_id, user_id, contract);
    }
    if (!e) {
        e = dm_db_prepare(db, p,
                          "SELECT day, hashrate_ghs, hash_seconds, share_micros, fee_micros, "
                          "credit_micros FROM contract_days WHERE contract_id = ? AND day >= ? "
                          "AND day < ? ORDER BY day",
                          &st);
    }
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, contract_id);
    dm_stmt_bind_int64(st, 2, first);
    dm_stmt_bind_int64(st, 3, end);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        dm_earning_day *x = apr_array_push(*days);
        x->day = dm_stmt_int64(st, 0);
        x->hashrate_ghs = dm_stmt_int64(st, 1);
        x->hash_seconds = dm_stmt_int64(st, 2);
        x->share_micros = dm_stmt_int64(st, 3);
        x->fee_micros = dm_stmt_int64(st, 4);
        x->credit_micros = dm_stmt_int64(st, 5);
    }
    dm_stmt_done(st);
    return e;
}

json_t *dm_earning_day_json(apr_pool_t *p, const dm_earning_day *d, int with_contract, int fixed)
{
    json_t *o = json_object();

    json_object_set_new(o, "day", json_string(dm_json_time(p, d->day)));
    if (with_contract) {
        json_object_set_new(o, "hashrate_ths", dm_json_ths(d->hashrate_ghs));
    }
    json_object_set_new(o, "hash_seconds", json_integer(d->hash_seconds));
    if (with_contract) {
        /* a member's daily totals mix both modes: no pool share there */
        json_object_set_new(o, "pool_share_micros",
                            fixed ? json_null() : json_integer(d->share_micros));
    }
    json_object_set_new(o, "fee_micros", fixed ? json_null() : json_integer(d->fee_micros));
    json_object_set_new(o, "credit_micros", json_integer(d->credit_micros));
    return o;
}
