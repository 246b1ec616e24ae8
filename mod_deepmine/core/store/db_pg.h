/*
 * db_pg.h — the PostgreSQL driver behind db.h (libpq). Private to store/:
 * db.c dispatches to these when dm_db_open was given a PostgreSQL
 * connection string; domain code never sees them.
 *
 * A dm_pg is one libpq connection; statements are translated (`?`, `?N`
 * -> `$N`) and prepared (PQprepare) once per connection, at their first
 * step, and cached by db.c's statement cache.
 */
#ifndef DM_DB_PG_H
#define DM_DB_PG_H

#include <apr_pools.h>
#include <stdint.h>

#include "base/err.h"
#include "store/db.h"

typedef struct dm_pg dm_pg;
typedef struct dm_pg_stmt dm_pg_stmt;

/* 1 when `s` names a PostgreSQL database: a postgresql:// or postgres://
 * URL, or a libpq key=value string (a '=' before any '/'); 0 for a path. */
int dm_pg_is_conninfo(const char *s);

/* Connects; `password=env:NAME` / `password=file:PATH` (in a key=value
 * string, or as the URL's ?password= parameter) read the password from
 * the environment or a file. Sets the statement and lock timeouts. */
dm_err *dm_pg_open(apr_pool_t *p, const char *conninfo, const dm_db_options *opt, dm_pg **out);
void dm_pg_close(dm_pg *pg);
/* The connection string as key=value pairs without any password. */
const char *dm_pg_redact(apr_pool_t *p, const char *conninfo);
/* <host>/<dbname><suffix> for a Unix-socket host, else NULL (db.h). */
const char *dm_pg_sidecar_path(apr_pool_t *p, const char *conninfo, const char *suffix);
/* The connection string with any password left out, for messages. */
const char *dm_pg_display(const dm_pg *pg);
void dm_pg_set_busy_timeout(dm_pg *pg, int ms);
dm_err *dm_pg_exec(dm_pg *pg, apr_pool_t *p, const char *sql);
dm_err *dm_pg_bulk_load_mode(dm_pg *pg, apr_pool_t *p);
dm_err *dm_pg_begin(dm_pg *pg, apr_pool_t *p);
dm_err *dm_pg_commit(dm_pg *pg, apr_pool_t *p);
void dm_pg_rollback(dm_pg *pg);
int dm_pg_in_transaction(const dm_pg *pg);

dm_err *dm_pg_prepare(dm_pg *pg, apr_pool_t *p, const char *sql, dm_pg_stmt **out);
void dm_pg_bind_int64(dm_pg_stmt *st, int idx, int64_t v);
void dm_pg_bind_text(dm_pg_stmt *st, int idx, const char *s, size_t len);
void dm_pg_bind_null(dm_pg_stmt *st, int idx);
dm_err *dm_pg_step(dm_pg_stmt *st, apr_pool_t *p, int *row);
int64_t dm_pg_int64(dm_pg_stmt *st, int col);
const char *dm_pg_text(dm_pg_stmt *st, int col, size_t *len);
int dm_pg_is_null(dm_pg_stmt *st, int col);
int dm_pg_column_count(dm_pg_stmt *st);
const char *dm_pg_column_name(dm_pg_stmt *st, int col);
int dm_pg_column_kind(dm_pg_stmt *st, int col);
void dm_pg_done(dm_pg_stmt *st);
int64_t dm_pg_changes(dm_pg *pg);
int64_t dm_pg_last_insert_id(dm_pg *pg);

/* ---- exposed for the unit tests ---- */

/* The SQL text PostgreSQL is given for `sql`: `?` and `?N` placeholders
 * (outside quotes and comments) as `$N`, SQLite's FTS5 MATCH on users_fts
 * as dm_fts_match(). *nparams: the highest parameter number. */
const char *dm_pg_translate(apr_pool_t *p, const char *sql, int *nparams);

/* The dm_err code for a SQLSTATE (DM_E_CONFLICT for 23505, DM_E_UNAVAILABLE
 * for busy, lost-connection and full-disk states, DM_E_INTERNAL else). */
dm_code dm_pg_err_code(const char *sqlstate);

/* Shared with db.c: counts (and logs once) storage that refuses writes. */
void dm_db_storage_failed(const char *kind, const char *msg);

#endif
