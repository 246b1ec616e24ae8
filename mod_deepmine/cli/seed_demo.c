/*
 * seed_demo.c — deepminectl seed-demo: the demo catalogue (make run, the
 * tests), on a database it migrates first.
 */
#include <stdio.h>

#include "commands.h"
#include "shop/catalogue.h"

int dm_cmd_seed_demo(dm_cli *c)
{
    int inserted = 0, rc = dm_cli_open(c, 1);
    dm_err *e;

    if (rc != DM_CLI_OK) {
        return rc;
    }
    e = dm_catalogue_seed_demo(c->db, c->pool, &inserted);
    if (e) {
        return dm_cli_fail(c, e);
    }
    printf(inserted ? "demo catalogue: %d packages added\n"
                    : "demo catalogue: the catalogue is not empty, nothing added\n",
           inserted);
    return DM_CLI_OK;
}
