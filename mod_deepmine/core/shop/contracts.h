/*
 * contracts.h — the mining contracts orders buy: a paid order has exactly
 * one (UNIQUE order_id), created in the transaction that pays it, with the
 * package's terms copied as sold. The accrual credits them by the hour
 * (shop/accrual.h); members read them and their statements.
 */
#ifndef DM_CONTRACTS_H
#define DM_CONTRACTS_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "base/err.h"
#include "shop/catalogue.h"
#include "store/db.h"

struct dm_order;

#define DM_CONTRACTS_PAGE_MAX 200

typedef struct dm_contract {
    int64_t id;
    int64_t order_id;
    int64_t user_id;
    int64_t package_id;
    /* the package's terms as sold */
    const char *name;
    int64_t hashrate_ghs;
    int64_t price_micros;
    int64_t daily_yield_micros;
    int64_t duration_days;
    const char *currency;
    int64_t started_at;
    int64_t expires_at;
    const char *status;     /* active|ended|expired|refunded */
    int64_t ended_at;       /* 0: not ended */
    const char *yield_mode; /* DM_YIELD_POOL | DM_YIELD_FIXED, as sold */
    int64_t fee_bp;         /* pool mode's maintenance fee, as sold */
    int64_t earned_micros;  /* the sum of its yield credits (core/accrual.c) */
    /* refunds (shop/refunds.h): the part of price_micros refunded, the hash
     * rate given back to capacity, what was taken back of earned_micros */
    int64_t refunded_micros;
    int64_t released_ghs;
    int64_t yield_clawed_micros;
} dm_contract;

/* Creates the contract of paid order `o` with package `pkg`'s terms copied
 * (the price is the order's: fixed when the order was made), starting now.
 * In the caller's transaction. */
dm_err *dm_contract_create(dm_db *db, apr_pool_t *p, const struct dm_order *o,
                           const dm_package *pkg, dm_contract *c);

/* One contract; DM_E_NOT_FOUND when absent, or when user_id != 0 and the
 * contract is someone else's. */
dm_err *dm_contract_get(dm_db *db, apr_pool_t *p, int64_t contract_id, int64_t user_id,
                        dm_contract *out);

/* The contract of an order; *found 0 when there is none. */
dm_err *dm_contract_of_order(dm_db *db, apr_pool_t *p, int64_t order_id, dm_contract *out,
                             int *found);

/* Newest first, keyset paginated on id (cursor 0: first page; *next 0:
 * no more); user_id 0: everyone's; status NULL: any, else one of
 * active|ended|expired|refunded (anything else DM_E_INVALID "status").
 * Rows are dm_contract. */
dm_err *dm_contracts_list(dm_db *db, apr_pool_t *p, int64_t user_id, const char *status,
                          int64_t cursor, int limit, apr_array_header_t **rows, int64_t *next);

/* With yield_mode, fee_bp, earned_micros, refunded_micros and
 * yield_clawed_micros. */
json_t *dm_contract_json(apr_pool_t *p, const dm_contract *c, int staff);

#endif
