/*
 * contract_bulk.c — see contract_bulk.h. ROWS orders to a statement, then
 * their ROWS contracts; the statements' text depends only on the number
 * of rows.
 */
#include "shop/contract_bulk.h"

#include <apr_strings.h>
#include <apr_tables.h>
#include <string.h>

#include "shop/orders.h"

#define ROWS 500 /* rows per statement */
#define ORDER_PARAMS 8
#define CONTRACT_PARAMS 14
#define SECONDS_PER_DAY 86400

static const char *rows_sql(apr_pool_t *p, const char *head, const char *row, int rows)
{
    apr_array_header_t *parts = apr_array_make(p, 2 * rows + 1, sizeof(const char *));

    APR_ARRAY_PUSH(parts, const char *) = head;
    for (int i = 0; i < rows; i++) {
        APR_ARRAY_PUSH(parts, const char *) = i ? ", " : "";
        APR_ARRAY_PUSH(parts, const char *) = row;
    }
    return apr_array_pstrcat(p, parts, 0);
}

/* Runs a statement whose parameters `bind` has set; returns its error. */
static dm_err *step_done(dm_stmt *st, apr_pool_t *p)
{
    int row = 0;
    dm_err *e = dm_stmt_step(st, p, &row);

    dm_stmt_done(st);
    return e;
}

/* The orders as insert_order (orders.c) writes a paid balance order. */
static dm_err *insert_orders(dm_db *db, apr_pool_t *p, const dm_package *pkg, int64_t started,
                             int64_t first, const int64_t *users, int rows)
{
    dm_stmt *st;
    dm_err *e = dm_db_prepare(
        db, p,
        rows_sql(p,
                 "INSERT INTO orders (id, user_id, package_id, amount_micros, currency, status, "
                 "gateway, created_at, paid_at, updated_at) VALUES ",
                 "(?, ?, ?, ?, ?, 'paid', '" DM_ORDER_GATEWAY_BALANCE "', ?, ?, ?)", rows),
        &st);

    if (e) {
        return e;
    }
    for (int j = 0; j < rows; j++) {
        int k = j * ORDER_PARAMS;
        dm_stmt_bind_int64(st, k + 1, first + j);
        dm_stmt_bind_int64(st, k + 2, users[j]);
        dm_stmt_bind_int64(st, k + 3, pkg->id);
        dm_stmt_bind_int64(st, k + 4, pkg->price_micros);
        dm_stmt_bind_str(st, k + 5, pkg->currency);
        dm_stmt_bind_int64(st, k + 6, started);
        dm_stmt_bind_int64(st, k + 7, started);
        dm_stmt_bind_int64(st, k + 8, started);
    }
    return step_done(st, p);
}

/* The contracts as create_contract (orders.c) writes them. */
static dm_err *insert_contracts(dm_db *db, apr_pool_t *p, const dm_package *pkg, int64_t started,
                                int64_t expires, int64_t first, int64_t first_order,
                                const int64_t *users, int rows)
{
    const char *mode = pkg->yield_mode ? pkg->yield_mode : DM_YIELD_FIXED;
    dm_stmt *st;
    dm_err *e = dm_db_prepare(
        db, p,
        rows_sql(p,
                 "INSERT INTO contracts (id, order_id, user_id, package_id, name, hashrate_ghs, "
                 "price_micros, daily_yield_micros, duration_days, currency, started_at, "
                 "expires_at, status, yield_mode, fee_bp) VALUES ",
                 "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?)", rows),
        &st);

    if (e) {
        return e;
    }
    for (int j = 0; j < rows; j++) {
        int k = j * CONTRACT_PARAMS;
        dm_stmt_bind_int64(st, k + 1, first + j);
        dm_stmt_bind_int64(st, k + 2, first_order + j);
        dm_stmt_bind_int64(st, k + 3, users[j]);
        dm_stmt_bind_int64(st, k + 4, pkg->id);
        dm_stmt_bind_str(st, k + 5, pkg->name);
        dm_stmt_bind_int64(st, k + 6, pkg->hashrate_ghs);
        dm_stmt_bind_int64(st, k + 7, pkg->price_micros);
        dm_stmt_bind_int64(st, k + 8, pkg->daily_yield_micros);
        dm_stmt_bind_int64(st, k + 9, pkg->duration_days);
        dm_stmt_bind_str(st, k + 10, pkg->currency);
        dm_stmt_bind_int64(st, k + 11, started);
        dm_stmt_bind_int64(st, k + 12, expires);
        dm_stmt_bind_str(st, k + 13, mode);
        dm_stmt_bind_int64(st, k + 14, pkg->fee_bp);
    }
    return step_done(st, p);
}

dm_err *dm_contract_bulk_insert(dm_db *db, apr_pool_t *p, const dm_package *pkg, int64_t started,
                                const int64_t *user_ids, int n)
{
    int64_t orders = 0, contracts = 0, span = 0, expires = 0;
    int found = 0;
    apr_pool_t *tmp;
    dm_err *e;

    if (__builtin_mul_overflow(pkg->duration_days, (int64_t)SECONDS_PER_DAY, &span) ||
        __builtin_add_overflow(started, span, &expires)) {
        return dm_err_make(p, DM_E_INVALID, "duration_days",
                           "package %" APR_INT64_T_FMT " has a duration that overflows",
                           (apr_int64_t)pkg->id);
    }
    if (!dm_db_in_transaction(db)) {
        return dm_err_make(p, DM_E_INVALID, NULL, "dm_contract_bulk_insert needs a transaction");
    }
    /* under the write lock: nobody else inserts until the commit */
    e = dm_db_query_int64(db, p, "SELECT COALESCE(MAX(id), 0) FROM orders", &orders, &found);
    if (!e) {
        e = dm_db_query_int64(db, p, "SELECT COALESCE(MAX(id), 0) FROM contracts", &contracts,
                              &found);
    }
    apr_pool_create(&tmp, p);
    for (int k = 0; !e && k < n; k += ROWS) {
        int rows = n - k < ROWS ? n - k : ROWS;
        e = insert_orders(db, tmp, pkg, started, orders + 1 + k, user_ids + k, rows);
        if (!e) {
            e = insert_contracts(db, tmp, pkg, started, expires, contracts + 1 + k, orders + 1 + k,
                                 user_ids + k, rows);
        }
        e = dm_err_copy(p, e);
        apr_pool_clear(tmp);
    }
    apr_pool_destroy(tmp);
    return e;
}
