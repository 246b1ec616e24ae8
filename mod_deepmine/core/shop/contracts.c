/*
 * contracts.c — see contracts.h. The only writer of new `contracts` rows;
 * the accrual (accrual.c) moves earned_micros and the expiry job the
 * status.
 */
#include "shop/contracts.h"

#include <apr_strings.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"
#include "shop/orders.h"

#define SECONDS_PER_DAY 86400

#define CONTRACT_COLUMNS                                                                           \
    "id, order_id, user_id, package_id, name, hashrate_ghs, price_micros, daily_yield_micros, "    \
    "duration_days, currency, started_at, expires_at, status, ended_at, yield_mode, fee_bp, "      \
    "earned_micros, refunded_micros, released_ghs, yield_clawed_micros"

static void read_contract(dm_stmt *st, apr_pool_t *p, dm_contract *c)
{
    c->id = dm_stmt_int64(st, 0);
    c->order_id = dm_stmt_int64(st, 1);
    c->user_id = dm_stmt_int64(st, 2);
    c->package_id = dm_stmt_int64(st, 3);
    c->name = dm_stmt_dup_text(st, p, 4);
    c->hashrate_ghs = dm_stmt_int64(st, 5);
    c->price_micros = dm_stmt_int64(st, 6);
    c->daily_yield_micros = dm_stmt_int64(st, 7);
    c->duration_days = dm_stmt_int64(st, 8);
    c->currency = dm_stmt_dup_text(st, p, 9);
    c->started_at = dm_stmt_int64(st, 10);
    c->expires_at = dm_stmt_int64(st, 11);
    c->status = dm_stmt_dup_text(st, p, 12);
    c->ended_at = dm_stmt_is_null(st, 13) ? 0 : dm_stmt_int64(st, 13);
    c->yield_mode =
        strcmp(dm_stmt_text(st, 14, NULL), DM_YIELD_POOL) == 0 ? DM_YIELD_POOL : DM_YIELD_FIXED;
    c->fee_bp = dm_stmt_int64(st, 15);
    c->earned_micros = dm_stmt_int64(st, 16);
    c->refunded_micros = dm_stmt_int64(st, 17);
    c->released_ghs = dm_stmt_int64(st, 18);
    c->yield_clawed_micros = dm_stmt_int64(st, 19);
}

dm_err *dm_contract_create(dm_db *db, apr_pool_t *p, const struct dm_order *o,
                           const dm_package *pkg, dm_contract *c)
{
    dm_stmt *st;
    int row = 0;
    int64_t now = dm_now(), span = 0, expires = 0;
    dm_err *e;

    if (__builtin_mul_overflow(pkg->duration_days, (int64_t)SECONDS_PER_DAY, &span) ||
        __builtin_add_overflow(now, span, &expires)) {
        return dm_err_make(p, DM_E_INVALID, "duration_days",
                           "package %" APR_INT64_T_FMT " has a duration that overflows",
                           (apr_int64_t)pkg->id);
    }
    e = dm_db_prepare(db, p,
                      "INSERT INTO contracts (order_id, user_id, package_id, name, hashrate_ghs, "
                      "price_micros, daily_yield_micros, duration_days, currency, started_at, "
                      "expires_at, status, yield_mode, fee_bp) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?) RETURNING id",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, o->id);
    dm_stmt_bind_int64(st, 2, o->user_id);
    dm_stmt_bind_int64(st, 3, pkg->id);
    dm_stmt_bind_str(st, 4, pkg->name);
    dm_stmt_bind_int64(st, 5, pkg->hashrate_ghs);
    dm_stmt_bind_int64(st, 6, o->amount_micros);
    dm_stmt_bind_int64(st, 7, pkg->daily_yield_micros);
    dm_stmt_bind_int64(st, 8, pkg->duration_days);
    dm_stmt_bind_str(st, 9, o->currency);
    dm_stmt_bind_int64(st, 10, now);
    dm_stmt_bind_int64(st, 11, expires);
    dm_stmt_bind_str(st, 12, pkg->yield_mode);
    dm_stmt_bind_int64(st, 13, pkg->fee_bp);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        memset(c, 0, sizeof(*c));
        c->id = dm_stmt_int64(st, 0);
        c->order_id = o->id;
        c->user_id = o->user_id;
        c->package_id = pkg->id;
        c->name = pkg->name;
        c->hashrate_ghs = pkg->hashrate_ghs;
        c->price_micros = o->amount_micros;
        c->daily_yield_micros = pkg->daily_yield_micros;
        c->duration_days = pkg->duration_days;
        c->currency = o->currency;
        c->started_at = now;
        c->expires_at = expires;
        c->status = "active";
        c->yield_mode = pkg->yield_mode;
        c->fee_bp = pkg->fee_bp;
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_contract_get(dm_db *db, apr_pool_t *p, int64_t contract_id, int64_t user_id,
                        dm_contract *out)
{
    dm_stmt *st;
    int found = 0;
    dm_err *e =
        dm_db_prepare(db, p, "SELECT " CONTRACT_COLUMNS " FROM contracts WHERE id = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, contract_id);
    e = dm_stmt_step(st, p, &found);
    if (!e && found) {
        read_contract(st, p, out);
    }
    dm_stmt_done(st);
    if (!e && (!found || (user_id && out->user_id != user_id))) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "contract %" APR_INT64_T_FMT " does not exist",
                        (apr_int64_t)contract_id);
    }
    return e;
}

dm_err *dm_contract_of_order(dm_db *db, apr_pool_t *p, int64_t order_id, dm_contract *out,
                             int *found)
{
    dm_stmt *st;
    dm_err *e =
        dm_db_prepare(db, p, "SELECT " CONTRACT_COLUMNS " FROM contracts WHERE order_id = ?", &st);

    *found = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, order_id);
    e = dm_stmt_step(st, p, found);
    if (!e && *found) {
        read_contract(st, p, out);
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_contracts_list(dm_db *db, apr_pool_t *p, int64_t user_id, const char *status,
                          int64_t cursor, int limit, apr_array_header_t **rows, int64_t *next)
{
    static const char *const statuses[] = {"active", "ended", "expired", "refunded", NULL};
    dm_stmt *st;
    int row = 0, n = 1;
    dm_err *e;

    *next = 0;
    *rows = apr_array_make(p, limit > 0 ? limit : 1, sizeof(dm_contract));
    if (limit < 1 || limit > DM_CONTRACTS_PAGE_MAX) {
        return dm_err_make(p, DM_E_INVALID, "limit", "limit must be 1 to %d",
                           DM_CONTRACTS_PAGE_MAX);
    }
    if (status) {
        int ok = 0;
        for (int i = 0; statuses[i]; i++) {
            ok |= strcmp(statuses[i], status) == 0;
        }
        if (!ok) {
            return dm_err_make(p, DM_E_INVALID, "status",
                               "status must be active, ended, expired or refunded");
        }
    }
    /* (user_id, id) and (status, id) are indexed: contracts_user,
     * contracts_status. */
    e = dm_db_prepare(db, p,
                      apr_pstrcat(p, "SELECT " CONTRACT_COLUMNS " FROM contracts WHERE ",
                                  user_id ? "user_id = ? AND " : "",
                                  status ? "status = ? AND " : "",
                                  "id < ? ORDER BY id DESC LIMIT ?", NULL),
                      &st);
    if (e) {
        return e;
    }
    if (user_id) {
        dm_stmt_bind_int64(st, n++, user_id);
    }
    if (status) {
        dm_stmt_bind_str(st, n++, status);
    }
    dm_stmt_bind_int64(st, n++, cursor > 0 ? cursor : INT64_MAX);
    dm_stmt_bind_int64(st, n, (int64_t)limit + 1);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        if ((*rows)->nelts == limit) {
            *next = APR_ARRAY_IDX(*rows, limit - 1, dm_contract).id;
            break;
        }
        read_contract(st, p, apr_array_push(*rows));
    }
    dm_stmt_done(st);
    return e;
}

json_t *dm_contract_json(apr_pool_t *p, const dm_contract *c, int staff)
{
    json_t *j = json_object();

    json_object_set_new(j, "id", json_integer(c->id));
    json_object_set_new(j, "order_id", json_integer(c->order_id));
    json_object_set_new(j, "package_id", json_integer(c->package_id));
    json_object_set_new(j, "name", json_string(c->name));
    json_object_set_new(j, "hashrate_ths", dm_json_ths(c->hashrate_ghs));
    json_object_set_new(j, "price_micros", json_integer(c->price_micros));
    json_object_set_new(j, "daily_yield_micros", json_integer(c->daily_yield_micros));
    json_object_set_new(j, "duration_days", json_integer(c->duration_days));
    json_object_set_new(j, "currency", json_string(c->currency));
    json_object_set_new(j, "started_at", dm_json_time_or_null(p, c->started_at));
    json_object_set_new(j, "expires_at", dm_json_time_or_null(p, c->expires_at));
    json_object_set_new(j, "status", json_string(c->status));
    json_object_set_new(j, "ended_at", dm_json_time_or_null(p, c->ended_at));
    json_object_set_new(j, "yield_mode", json_string(c->yield_mode));
    json_object_set_new(j, "fee_bp", json_integer(c->fee_bp));
    json_object_set_new(j, "earned_micros", json_integer(c->earned_micros));
    json_object_set_new(j, "refunded_micros", json_integer(c->refunded_micros));
    json_object_set_new(j, "yield_clawed_micros", json_integer(c->yield_clawed_micros));
    if (staff) {
        json_object_set_new(j, "user_id", json_integer(c->user_id));
    }
    return j;
}
