/*
 * contract_bulk.h — bench populations of active contracts (dm-benchgen
 * contracts). For each member given, an order and its contract with the
 * rows a sale from the wallet writes (dm_order_pay_from_balance): the
 * order paid through "balance", the contract with the package's terms as
 * sold. Minus the payment: no transfer (payment_transfer_id stays NULL),
 * no commissions, no e-mails — the contracts are granted, not sold, so
 * the ledger is untouched. Rows go many to a statement.
 * tests/unit/test_bulk.c compares them, column by column, with the rows of
 * real sales.
 */
#ifndef DM_CONTRACT_BULK_H
#define DM_CONTRACT_BULK_H

#include <apr_pools.h>
#include <stdint.h>

#include "base/err.h"
#include "shop/catalogue.h"
#include "store/db.h"

/* n orders and contracts of package `pkg`, the k-th for user_ids[k], all
 * made, paid and started at `started` (Unix seconds). Ids are MAX(id) + 1
 * onwards, in the caller's transaction. The members must exist; the
 * capacity is not checked (bench data). */
dm_err *dm_contract_bulk_insert(dm_db *db, apr_pool_t *p, const dm_package *pkg, int64_t started,
                                const int64_t *user_ids, int n);

#endif
