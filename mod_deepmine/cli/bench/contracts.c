/*
 * contracts.c — dm-benchgen contracts: active contracts for the accrual
 * benchmark, over the members that exist. Core's contract bulk path
 * writes the orders and contracts; the wallets come from the ledger,
 * which alone writes accounts.
 */
#include <apr_strings.h>
#include <apr_time.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"
#include "bench.h"
#include "ledger/ledger.h"
#include "members/member_bulk.h"
#include "shop/catalogue.h"
#include "shop/contract_bulk.h"

#define GENC_BATCH 100000 /* contracts (or wallets) per transaction */

/* The first active package of the yield mode in the platform currency. */
static dm_err *package_of(dm_cli *c, const char *mode, dm_package *pkg)
{
    apr_array_header_t *pkgs = NULL;
    dm_err *e = dm_catalogue_list(c->db, c->pool, 1, &pkgs);

    for (int i = 0; !e && i < pkgs->nelts; i++) {
        const dm_package *k = &APR_ARRAY_IDX(pkgs, i, dm_package);
        if (strcmp(k->yield_mode, mode) == 0 && strcmp(k->currency, DM_LEDGER_CURRENCY) == 0) {
            *pkg = *k;
            return NULL;
        }
    }
    return e ? e
             : dm_err_make(c->pool, DM_E_NOT_FOUND, NULL,
                           "no active %s-yield package in %s (seed-demo has both)", mode,
                           DM_LEDGER_CURRENCY);
}

/* Every member who gets a contract has a wallet before the accrual runs,
 * as a member who bought one has (the accrual would make it otherwise,
 * which is not what the bench measures). */
static dm_err *wallets(dm_cli *c, const apr_array_header_t *members, int64_t count)
{
    int64_t n = count < members->nelts ? count : members->nelts;
    apr_pool_t *tmp;
    dm_err *e = NULL;

    apr_pool_create(&tmp, c->pool);
    for (int64_t i = 0; !e && i < n; i += GENC_BATCH) {
        e = dm_db_begin(c->db, c->pool);
        for (int64_t j = i; !e && j < i + GENC_BATCH && j < n; j++) {
            int64_t id = 0;
            e = dm_ledger_member_account(c->db, tmp, APR_ARRAY_IDX(members, j, int64_t),
                                         DM_ACCOUNT_WALLET, DM_LEDGER_CURRENCY, &id);
            if (!e && (j & 1023) == 0) {
                apr_pool_clear(tmp);
            }
        }
        if (!e) {
            e = dm_db_commit(c->db, c->pool);
        } else {
            dm_db_rollback(c->db);
        }
    }
    e = dm_err_copy(c->pool, e);
    apr_pool_destroy(tmp);
    return e;
}

/* `count` contracts, the k-th for member k mod members, in transactions
 * of GENC_BATCH. */
static dm_err *contracts(dm_cli *c, const dm_package *pkg, int64_t started,
                         const apr_array_header_t *members, int64_t count)
{
    int64_t *ids = apr_palloc(c->pool, sizeof(int64_t) * GENC_BATCH);
    dm_err *e = NULL;

    for (int64_t k = 0; !e && k < count; k += GENC_BATCH) {
        int rows = count - k < GENC_BATCH ? (int)(count - k) : GENC_BATCH;
        for (int j = 0; j < rows; j++) {
            ids[j] = APR_ARRAY_IDX(members, (k + j) % members->nelts, int64_t);
        }
        e = dm_db_begin(c->db, c->pool);
        if (!e) {
            e = dm_contract_bulk_insert(c->db, c->pool, pkg, started, ids, rows);
        }
        if (!e) {
            e = dm_db_commit(c->db, c->pool);
        } else {
            dm_db_rollback(c->db);
        }
    }
    return e;
}

int dm_bench_contracts(dm_cli *c)
{
    const char *mode = dm_cli_opt(c, "mode");
    int64_t count = 0, started = dm_now() - 86400;
    apr_array_header_t *members = NULL;
    apr_time_t t0 = apr_time_now();
    dm_package pkg;
    int rc;
    dm_err *e;

    if (!mode) {
        mode = DM_YIELD_FIXED;
    }
    if (dm_cli_opt_int64(c, "count", 1, &count) != 1 ||
        dm_cli_opt_time(c, "started", &started) < 0 ||
        (strcmp(mode, DM_YIELD_FIXED) != 0 && strcmp(mode, DM_YIELD_POOL) != 0)) {
        return dm_cli_usage(c);
    }
    rc = dm_cli_open(c, 1);
    if (rc != DM_CLI_OK) {
        return rc;
    }
    memset(&pkg, 0, sizeof(pkg));
    e = dm_db_bulk_load_mode(c->db, c->pool, 256);
    if (!e) {
        e = package_of(c, mode, &pkg);
    }
    if (!e) {
        e = dm_member_ids(c->db, c->pool, 1, &members);
    }
    if (!e && members->nelts == 0) {
        e = dm_err_make(c->pool, DM_E_NOT_FOUND, NULL, "no members: run dm-benchgen members first");
    }
    if (!e) {
        e = wallets(c, members, count);
    }
    if (!e) {
        e = contracts(c, &pkg, started, members, count);
    }
    if (e) {
        return dm_cli_fail(c, e);
    }
    printf("contracts: %" APR_INT64_T_FMT " %s-yield contract(s) of package %" APR_INT64_T_FMT
           " (%s) over %d member(s), started %s, in %.2f s\n",
           (apr_int64_t)count, mode, (apr_int64_t)pkg.id, pkg.name, members->nelts,
           dm_json_time(c->pool, started), (double)(apr_time_now() - t0) / APR_USEC_PER_SEC);
    return DM_CLI_OK;
}
