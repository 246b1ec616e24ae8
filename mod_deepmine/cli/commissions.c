/*
 * commissions.c — deepminectl commissions release [--now T]: moves due
 * held commissions to the wallets (the cron daemon does it hourly). --now
 * pretends the clock says so, for tests and for catching up after
 * downtime.
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
