/*
 * commissions.c — deepminectl commissions release [--now T]: moves due
 * held commissions to the wallets (the cron daemon does it hourly). --now
 * pretends the clock says so, for tests and for catching up after
 * downtime. deepminectl commissions forfeit (--commission ID | --user ID)
 * --reason TEXT: staff's forfeit (docs/commissions.md), as the console.
 */
#include <apr_strings.h>
#include <stdio.h>

#include "base/clock.h"
#include "commands.h"
#include "referral/commission.h"

int dm_cmd_commissions_release(dm_cli *c)
{
    int64_t now = dm_now(), released = 0;
    int rc;
    dm_err *e;

    if (dm_cli_opt_int64(c, "now", 1, &now) < 0) {
        return dm_cli_usage(c);
    }
    rc = dm_cli_open(c, 1);
    if (rc != DM_CLI_OK) {
        return rc;
    }
    e = dm_commission_release_due(c->db, c->pool, now, &released);
    if (e) {
        return dm_cli_fail(c, e);
    }
    printf("commissions release: %" APR_INT64_T_FMT " commission(s) released\n",
           (apr_int64_t)released);
    return DM_CLI_OK;
}

int dm_cmd_commissions_forfeit(dm_cli *c)
{
    int64_t commission = 0, user = 0, count = 0, amount = 0;
    const char *reason = dm_cli_opt(c, "reason");
    int has_c = dm_cli_opt_int64(c, "commission", 1, &commission);
    int has_u = dm_cli_opt_int64(c, "user", 1, &user);
    dm_commission_row row;
    int rc;
    dm_err *e;

    if (has_c < 0 || has_u < 0 || has_c + has_u != 1 || !reason) {
        return dm_cli_usage(c);
    }
    rc = dm_cli_open(c, 1);
    if (rc != DM_CLI_OK) {
        return rc;
    }
    if (has_c) {
        e = dm_commission_forfeit(c->db, c->pool, 0, NULL, commission, reason, &row);
        if (!e) {
            printf("commissions forfeit: commission %" APR_INT64_T_FMT " (%" APR_INT64_T_FMT
                   " micro-%s) forfeited\n",
                   (apr_int64_t)row.id, (apr_int64_t)(row.amount_micros - row.clawed_micros),
                   row.currency);
        }
    } else {
        e = dm_commission_forfeit_member(c->db, c->pool, 0, NULL, user, reason, &count, &amount);
        if (!e) {
            printf("commissions forfeit: member %" APR_INT64_T_FMT ": %" APR_INT64_T_FMT
                   " commission(s), %" APR_INT64_T_FMT " micros forfeited\n",
                   (apr_int64_t)user, (apr_int64_t)count, (apr_int64_t)amount);
        }
    }
    return e ? dm_cli_fail(c, e) : DM_CLI_OK;
}
