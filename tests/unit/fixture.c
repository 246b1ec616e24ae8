/* fixture.c — see fixture.h. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fixture.h"

#include <apr_strings.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/migrate.h"

static char dir[64];
static int serial;

int dm_fx_init(const char *name)
{
    snprintf(dir, sizeof(dir), "/tmp/dm-%s-XXXXXX", name);
    return mkdtemp(dir) ? 0 : -1;
}

int dm_fx_done(void)
{
    char cmd[96];

    if (!dir[0]) {
        return 0;
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

const char *dm_fx_dir(void)
{
    return dir;
}

const char *dm_fx_path(apr_pool_t *p, const char *stem)
{
    return apr_psprintf(p, "%s/%s%d.db", dir, stem, ++serial);
}

dm_db *dm_fx_open_migrated(apr_pool_t *p, const char *path)
{
    dm_db *db = NULL;
    int applied = 0, version = 0;

    assert_null(dm_db_open(p, path, NULL, &db));
    assert_null(dm_migrate(db, p, dm_migrations, dm_migrations_count, &applied, &version));
    return db;
}

dm_db *dm_fx_db(apr_pool_t *p)
{
    return dm_fx_open_migrated(p, dm_fx_path(p, "db"));
}
