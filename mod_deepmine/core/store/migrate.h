/*
 * migrate.h — schema migrations: the numbered files of sql/, embedded in the
 * binary at build time (scripts/embed-sql.sh), applied in order in one
 * BEGIN IMMEDIATE transaction, so two processes starting at once serialise
 * on the database's write lock and the second finds the work done (on
 * PostgreSQL: the writers' advisory lock dm_db_begin takes). Where the
 * engines differ, sql/pg/<name> is the same migration for PostgreSQL; the
 * checksum is of the text the engine ran.
 */
#ifndef DM_MIGRATE_H
#define DM_MIGRATE_H

#include "store/db.h"

typedef struct dm_migration {
    int version;
    const char *name; /* file name, e.g. "001_init.sql" */
    const char *sql;
    const char *pg_sql; /* sql/pg/<name>: the text PostgreSQL runs; NULL: sql */
} dm_migration;

/* The migrations built into this binary, ascending by version. */
extern const dm_migration dm_migrations[];
extern const int dm_migrations_count;

/* Applies every migration of `list` not yet recorded in schema_migrations.
 * Refuses when an applied migration's text changed (checksum) or when the
 * database has a version this build does not know. `*applied` gets how many
 * ran, `*version` the schema version after. */
dm_err *dm_migrate(dm_db *db, apr_pool_t *p, const dm_migration *list, int n, int *applied,
                   int *version);

/* The highest applied version (0 on an empty database). */
dm_err *dm_migrate_version(dm_db *db, apr_pool_t *p, int *version);

/* The same, in one indexed read where schema_migrations exists (a
 * migrated database: every server's, after start-up); on any error it
 * answers as dm_migrate_version does. For GET /api/health, which
 * dm_migrate_version's look into sqlite_master cost a scan per request. */
dm_err *dm_migrate_version_fast(dm_db *db, apr_pool_t *p, int *version);

/* The version this build brings (the highest of dm_migrations). */
int dm_migrate_latest(void);

#endif
