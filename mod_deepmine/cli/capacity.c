/*
 * capacity.c — deepminectl capacity show | set | ensure: the hash power
 * for sale. `set` records a new figure (audited as the console's);
 * `ensure` only when none exists (scripts/run.sh's demo figure).
 */
#include <apr_strings.h>
#include <stdio.h>

#include "commands.h"
#include "shop/capacity.h"

int dm_cmd_capacity_show(dm_cli *c)
{
    dm_capacity_row cur;
    int found = 0, rc = dm_cli_open(c, 1);
    int64_t sold = 0;
    dm_err *e;

    if (rc != DM_CLI_OK) {
        return rc;
    }
    e = dm_capacity_current(c->db, c->pool, &cur, &found);
    if (!e) {
        e = dm_capacity_sold(c->db, c->pool, &sold);
    }
    if (e) {
        return dm_cli_fail(c, e);
    }
    if (!found) {
        printf("capacity: none recorded — nothing can be sold (sold: %" APR_INT64_T_FMT " GH/s)\n",
               (apr_int64_t)sold);
        return DM_CLI_OK;
    }
    printf("capacity: %" APR_INT64_T_FMT " GH/s, sold %" APR_INT64_T_FMT " GH/s%s%s\n",
           (apr_int64_t)cur.hashrate_ghs, (apr_int64_t)sold, cur.note ? " — " : "",
           cur.note ? cur.note : "");
    return DM_CLI_OK;
}

/* set (ensure == 0) or ensure. */
static int record(dm_cli *c, int ensure)
{
    const char *note = dm_cli_opt(c, "note");
    int64_t ghs = 0;
    int set = 0, rc;
    dm_capacity_row row;
    dm_err *e;

    if (dm_cli_opt_int64(c, "ghs", 0, &ghs) != 1) {
        return dm_cli_usage(c);
    }
    rc = dm_cli_open(c, 1);
    if (rc != DM_CLI_OK) {
        return rc;
    }
    if (ensure) {
        e = dm_capacity_ensure(c->db, c->pool, ghs, note ? note : "demo capacity", &set);
    } else {
        e = dm_capacity_set(c->db, c->pool, 0, NULL, ghs, note, &row);
        set = 1;
    }
    if (e) {
        return dm_cli_fail(c, e);
    }
    printf(set ? "capacity: %" APR_INT64_T_FMT " GH/s recorded\n"
               : "capacity: already recorded, nothing changed (wanted %" APR_INT64_T_FMT " GH/s)\n",
           (apr_int64_t)ghs);
    return DM_CLI_OK;
}

int dm_cmd_capacity_set(dm_cli *c)
{
    return record(c, 0);
}

int dm_cmd_capacity_ensure(dm_cli *c)
{
    return record(c, 1);
}
