/*
 * ledger.c — deepminectl ledger verify | show | adjust. verify recomputes
 * every balance from the transfers (every money test ends with it);
 * adjust is the operator's audited repair tool (docs/operations.md).
 */
#include <apr_strings.h>
#include <stdio.h>

#include "commands.h"
#include "ledger/ledger.h"
#include "members/members.h"

int dm_cmd_ledger_verify(dm_cli *c)
{
    dm_ledger_report rep;
    int rc = dm_cli_open(c, 0);
    dm_err *e;

    if (rc != DM_CLI_OK) {
        return rc;
    }
    e = dm_ledger_verify(c->db, c->pool, &rep);
    if (e) {
        return dm_cli_fail(c, e);
    }
    if (!rep.ok) {
        if (rep.account_id) {
            fprintf(stderr,
                    "ledger verify: FAILED at account %" APR_INT64_T_FMT " (%s): %s: stored "
                    "%" APR_INT64_T_FMT ", expected %" APR_INT64_T_FMT " from its transfers\n",
                    (apr_int64_t)rep.account_id, rep.account_name, rep.problem,
                    (apr_int64_t)rep.stored_micros, (apr_int64_t)rep.expected_micros);
        } else {
            fprintf(stderr, "ledger verify: FAILED: %s\n", rep.problem);
        }
        return DM_CLI_FAIL;
    }
    printf("ledger verify: ok: %" APR_INT64_T_FMT " accounts, %" APR_INT64_T_FMT
           " transfers, total %" APR_INT64_T_FMT " (every balance matches its transfers)\n",
           (apr_int64_t)rep.accounts, (apr_int64_t)rep.transfers, (apr_int64_t)rep.total_micros);
    return DM_CLI_OK;
}

int dm_cmd_ledger_show(dm_cli *c)
{
    dm_member m;
    dm_balances b;
    int64_t user = 0;
    int rc;
    dm_err *e;

    if (dm_cli_opt_int64(c, "user", 1, &user) != 1) {
        return dm_cli_usage(c);
    }
    rc = dm_cli_open(c, 0);
    if (rc != DM_CLI_OK) {
        return rc;
    }
    e = dm_member_get(c->db, c->pool, user, &m);
    if (!e) {
        e = dm_ledger_member_balances(c->db, c->pool, user, DM_LEDGER_CURRENCY, &b);
    }
    if (e) {
        return dm_cli_fail(c, e);
    }
    printf("member %" APR_INT64_T_FMT " <%s>\n", (apr_int64_t)m.id, m.email);
    printf("  wallet  %s %s (%" APR_INT64_T_FMT " micros)%s\n",
           dm_cli_amount(c->pool, b.wallet_micros), DM_LEDGER_CURRENCY,
           (apr_int64_t)b.wallet_micros,
           b.wallet_micros < 0 ? " — a debt: later credits settle it first" : "");
    printf("  held    %s %s (%" APR_INT64_T_FMT " micros)\n", dm_cli_amount(c->pool, b.held_micros),
           DM_LEDGER_CURRENCY, (apr_int64_t)b.held_micros);
    return DM_CLI_OK;
}

int dm_cmd_ledger_adjust(dm_cli *c)
{
    const char *reason = dm_cli_opt(c, "reason"), *key = dm_cli_opt(c, "key");
    int64_t user = 0, amount = 0;
    dm_transfer t;
    dm_balances b;
    int created = 0, rc;
    dm_err *e;

    if (dm_cli_opt_int64(c, "user", 1, &user) != 1 ||
        dm_cli_opt_int64(c, "amount", INT64_MIN, &amount) != 1 || !reason) {
        return dm_cli_usage(c);
    }
    rc = dm_cli_open(c, 1);
    if (rc != DM_CLI_OK) {
        return rc;
    }
    e = dm_ledger_adjust(c->db, c->pool, 0, NULL, user, amount, reason, key, &t, &created);
    if (!e) {
        e = dm_ledger_member_balances(c->db, c->pool, user, DM_LEDGER_CURRENCY, &b);
    }
    if (e) {
        return dm_cli_fail(c, e);
    }
    printf(created ? "adjustment posted: transfer %" APR_INT64_T_FMT "\n"
                   : "adjustment already posted as transfer %" APR_INT64_T_FMT
                     "; nothing changed\n",
           (apr_int64_t)t.id);
    printf("  idempotency key: %s\n", t.idempotency_key);
    printf("  member %" APR_INT64_T_FMT " wallet: %s%s %s, now %s %s\n", (apr_int64_t)user,
           t.credit_account_id == b.wallet_account_id ? "+" : "-",
           dm_cli_amount(c->pool, t.amount_micros), t.currency,
           dm_cli_amount(c->pool, b.wallet_micros), DM_LEDGER_CURRENCY);
    return DM_CLI_OK;
}
