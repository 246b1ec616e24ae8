/*
 * pool_payouts.c — deepminectl pool-payouts record | list: the mining
 * pool's output per hour or day. `record` is audited as the console's,
 * and the pool-accrual job is asked to share it out (docs/operations.md).
 */
#include <apr_strings.h>
#include <stdio.h>

#include "base/json.h"
#include "commands.h"
#include "ledger/ledger.h"
#include "shop/pool_payouts.h"

static void payout_line(apr_pool_t *p, const dm_pool_payout *r)
{
    printf("%-6" APR_INT64_T_FMT " %-4s %-20s %14" APR_INT64_T_FMT " %s", (apr_int64_t)r->id,
           r->period_kind, dm_json_time(p, r->period_start), (apr_int64_t)r->amount_micros,
           r->currency);
    if (r->distributed_at) {
        printf("  distributed: credits %" APR_INT64_T_FMT " + fee %" APR_INT64_T_FMT
               " + remainder %" APR_INT64_T_FMT " over %" APR_INT64_T_FMT " contract(s)%s\n",
               (apr_int64_t)r->credits_micros, (apr_int64_t)r->fee_micros,
               (apr_int64_t)r->remainder_micros, (apr_int64_t)r->contracts,
               r->credits_micros + r->fee_micros + r->remainder_micros == r->amount_micros
                   ? ""
                   : "  DOES NOT BALANCE");
    } else {
        printf("  pending\n");
    }
}

int dm_cmd_pool_payouts_list(dm_cli *c)
{
    apr_array_header_t *rows = NULL;
    int64_t next = 0;
    int rc = dm_cli_open(c, 1);
    dm_err *e;

    if (rc != DM_CLI_OK) {
        return rc;
    }
    e = dm_pool_payouts_list(c->db, c->pool, 0, DM_POOL_PAGE_MAX, &rows, &next);
    if (e) {
        return dm_cli_fail(c, e);
    }
    for (int i = 0; i < rows->nelts; i++) {
        payout_line(c->pool, &APR_ARRAY_IDX(rows, i, dm_pool_payout));
    }
    return DM_CLI_OK;
}

int dm_cmd_pool_payouts_record(dm_cli *c)
{
    const char *kind = dm_cli_opt(c, "kind"), *note = dm_cli_opt(c, "note");
    int64_t period = 0, amount = 0;
    dm_pool_payout r;
    int rc;
    dm_err *e;

    if (!kind || dm_cli_opt_time(c, "period", &period) != 1 || !period ||
        dm_cli_opt_int64(c, "amount", INT64_MIN, &amount) != 1 || !amount) {
        return dm_cli_usage(c);
    }
    rc = dm_cli_open(c, 1);
    if (rc != DM_CLI_OK) {
        return rc;
    }
    e = dm_pool_payout_record(c->db, c->pool, 0, NULL, kind, period, amount, DM_LEDGER_CURRENCY,
                              note, &r);
    if (e) {
        return dm_cli_fail(c, e);
    }
    printf("pool payout %" APR_INT64_T_FMT " recorded: %s of %s, %" APR_INT64_T_FMT
           " micros %s; the pool-accrual job distributes it\n",
           (apr_int64_t)r.id, r.period_kind, dm_json_time(c->pool, r.period_start),
           (apr_int64_t)r.amount_micros, r.currency);
    return DM_CLI_OK;
}
