/*
 * migrate.c — deepminectl migrate | status: the schema.
 */
#include <stdio.h>
#include <unistd.h>

#include "commands.h"
#include "shop/catalogue.h"
#include "store/migrate.h"

int dm_cmd_migrate(dm_cli *c)
{
    int applied = 0, version = 0;
    int rc = dm_cli_open(c, 0);
    dm_err *e;

    if (rc != DM_CLI_OK) {
        return rc;
    }
    e = dm_migrate(c->db, c->pool, dm_migrations, dm_migrations_count, &applied, &version);
    if (e) {
        return dm_cli_fail(c, e);
    }
    printf("schema version %d (%d migration(s) applied)\n", version, applied);
    return DM_CLI_OK;
}

/* Exit 1 when migrations are pending (or there is no database): scripts
 * and monitoring can ask. */
int dm_cmd_status(dm_cli *c)
{
    int version = 0, rc = dm_cli_db_path(c);
    int64_t total = 0, active = 0;
    dm_err *e;

    if (rc != DM_CLI_OK) {
        return rc;
    }
    /* (an unnamed one: dm_cli_open says so, with a hint) */
    if (c->db_named && !dm_db_is_postgres(c->db_path) && access(c->db_path, F_OK) != 0) {
        fprintf(stderr, "%s: no database at %s\n", c->tool->name, c->db_path);
        return DM_CLI_FAIL;
    }
    rc = dm_cli_open(c, 0);
    if (rc != DM_CLI_OK) {
        return rc;
    }
    e = dm_migrate_version(c->db, c->pool, &version);
    if (e) {
        return dm_cli_fail(c, e);
    }
    printf("database:       %s\n", c->db_path);
    printf("schema version: %d (this build: %d)%s\n", version, dm_migrate_latest(),
           version < dm_migrate_latest() ? " — run `deepminectl migrate`" : "");
    if (version > 0) {
        e = dm_catalogue_count(c->db, c->pool, &total, &active);
        if (e) {
            return dm_cli_fail(c, e);
        }
        printf("packages:       %lld (%lld active)\n", (long long)total, (long long)active);
    }
    return version == dm_migrate_latest() ? DM_CLI_OK : DM_CLI_FAIL;
}
