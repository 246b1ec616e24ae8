/*
 * db_copy.h — copying a SQLite database into an empty PostgreSQL one
 * (deepminectl migrate-to-postgres). Both must be at the same schema
 * version; the target's schema comes from its own migrations.
 */
#ifndef DM_DB_COPY_H
#define DM_DB_COPY_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <stdint.h>

#include "base/err.h"
#include "store/db.h"

typedef struct dm_db_copied {
    const char *table;
    int64_t source_rows;
    int64_t target_rows;
} dm_db_copied;

/* 1 in *empty when the PostgreSQL database `db` has no table in its
 * schema (a database DeepMine never ran on). */
dm_err *dm_db_pg_is_empty(dm_db *db, apr_pool_t *p, int *empty);

/* Copies every row of every table of dst's schema (but
 * schema_migrations) from src, in one transaction of dst, tables in
 * foreign-key order and rows by their first column, with dst's triggers
 * off (the counters they keep are copied as they are). Then counts each
 * table on both sides: *tables gets a dm_db_copied per table. A table of
 * dst that src lacks is an error. */
dm_err *dm_db_copy_to_postgres(dm_db *src, dm_db *dst, apr_pool_t *p, apr_array_header_t **tables);

#endif
