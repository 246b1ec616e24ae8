/* fixture.h — what the unit tests that need a database share: one
 * temporary directory per test program, and fresh databases in it, each
 * migrated to the latest schema. Linked into every test program. */
#ifndef DM_TEST_FIXTURE_H
#define DM_TEST_FIXTURE_H

#include <apr_pools.h>

#include "store/db.h"

/* Makes the program's directory, /tmp/dm-<name>-XXXXXX. 0, or -1 when it
 * cannot. Call from main after apr_initialize. */
int dm_fx_init(const char *name);

/* Removes the directory and everything in it. 0, or -1 when it cannot. */
int dm_fx_done(void);

/* The directory made by dm_fx_init. */
const char *dm_fx_dir(void);

/* A path in the directory that no earlier call returned:
 * <dir>/<stem><n>.db. */
const char *dm_fx_path(apr_pool_t *p, const char *stem);

/* Opens the database at path and migrates it to the latest version; the
 * test fails when either does not succeed. */
dm_db *dm_fx_open_migrated(apr_pool_t *p, const char *path);

/* A new migrated database at a new path (dm_fx_path(p, "db")). */
dm_db *dm_fx_db(apr_pool_t *p);

#endif
