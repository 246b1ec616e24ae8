/*
 * db.h — the storage interface every domain file uses. No sqlite3 type
 * crosses it: db.c is the SQLite driver, and a PostgreSQL driver can sit
 * behind the same functions (ARCHITECTURE §3). SQL passed in is plain text
 * with `?` placeholders, written in the dialect both engines accept.
 *
 * A dm_db is one connection; it is used by one thread at a time (the pool
 * hands it out). Statements are prepared once per connection and cached,
 * keyed by their SQL text.
 */
#ifndef DM_DB_H
#define DM_DB_H

#include <apr_pools.h>
#include <stdint.h>

#include "base/err.h"

typedef struct dm_db dm_db;
typedef struct dm_stmt dm_stmt;

typedef struct dm_db_options {
    int busy_timeout_ms; /* 0: 5000 */
    int readonly;
} dm_db_options;

/* Process-wide SQLite settings; call once before any connection is opened
 * (later calls do nothing). Turns off SQLite's memory statistics, whose
 * global mutex every allocation of every connection would otherwise take. */
void dm_db_global_init(void);

/* Opens (creating if needed) with WAL, foreign keys and the busy timeout.
 * A postgresql:// or postgres:// URL, or a libpq key=value string, opens
 * a PostgreSQL connection instead (store/db_pg.h): same calls, same SQL.
 * The connection is closed when `p` is cleaned up, or by dm_db_close. */
dm_err *dm_db_open(apr_pool_t *p, const char *path, const dm_db_options *opt, dm_db **out);
void dm_db_close(dm_db *db);
/* 1 when `name` is a PostgreSQL connection string, 0 for a SQLite path. */
int dm_db_is_postgres(const char *name);
/* `name` as messages may show it: a path as it is, a PostgreSQL
 * connection string as key=value pairs without the password. */
const char *dm_db_display_name(apr_pool_t *p, const char *name);
/* A file that goes with the database `name` (test-only traces): the path
 * with `suffix` for SQLite; for PostgreSQL <host directory>/<dbname><suffix>
 * (a Unix-socket host), else NULL. */
const char *dm_db_sidecar_path(apr_pool_t *p, const char *name, const char *suffix);
/* The PostgreSQL connection string `conninfo` as a key='value' string,
 * with its dbname replaced by `dbname` (NULL: kept). for_tool 0: the
 * password kept as given (env:/file: too, for dm_db_open); for_tool 1:
 * the password left out and returned resolved in *password (NULL when
 * none), for a client program's PGPASSWORD (never its command line). */
dm_err *dm_db_pg_conninfo(apr_pool_t *p, const char *conninfo, const char *dbname, int for_tool,
                          const char **out, const char **password);
void dm_db_set_busy_timeout(dm_db *db, int ms);
/* The SQLite busy timeout in ms (0 on PostgreSQL). */
int dm_db_busy_timeout(const dm_db *db);
/* The path, or for PostgreSQL the connection string without its password. */
const char *dm_db_path(const dm_db *db);
/* "sqlite" or "postgresql": for store/ (migrations) and operator output;
 * domain code never asks (the difference lives in the driver). */
const char *dm_db_engine(const dm_db *db);

/* What the storage said last, for the whole server (base/metrics.h's
 * shared region): 0 writes go through, 1 a write was refused because the
 * disk or file is full, 2 an I/O error — until a commit succeeds again.
 * SQLITE_FULL and I/O errors reach callers as DM_E_UNAVAILABLE (503). */
int dm_db_storage_full(void);

/* Runs SQL text with no parameters and no rows (may hold several statements). */
dm_err *dm_db_exec(dm_db *db, apr_pool_t *p, const char *sql);

/* Throwaway bulk loads on this connection only (dm-benchgen): commits
 * without fsync (synchronous OFF), a page cache of cache_mib MiB,
 * temporary data in memory. A crash may lose recent commits: never on a
 * connection that writes business data. */
dm_err *dm_db_bulk_load_mode(dm_db *db, apr_pool_t *p, int cache_mib);

/* For a batch job's connection while it runs (the hourly accrual): 1 keeps
 * the statement journal (the pages a multi-row statement changes, kept so
 * a failing statement undoes only itself) and temporary tables in memory
 * instead of a temporary file; 0 goes back to the default. Its batches'
 * multi-row statements each change hundreds of pages, which went to a file
 * under /var/tmp page by page (half the accrual's writes). Only for bounded
 * statements: a sort of a whole table would be held in memory too. */
dm_err *dm_db_scratch_in_memory(dm_db *db, apr_pool_t *p, int on);

/* For a batch job's connection while it runs (the hourly accrual): its
 * page cache at most kib KiB instead of the connection's DM_DB_CACHE_KIB;
 * 0 goes back to that (SQLite frees the pages above it). Pages are taken
 * only as a statement needs them, so a small run holds no more than
 * before. Only a speed-up: nothing on PostgreSQL. */
dm_err *dm_db_cache_kib(dm_db *db, apr_pool_t *p, int kib);

/* Transactions: writes always start with BEGIN IMMEDIATE so a writer learns
 * at once (after the busy timeout) whether it may write. */
dm_err *dm_db_begin(dm_db *db, apr_pool_t *p);
dm_err *dm_db_commit(dm_db *db, apr_pool_t *p);
void dm_db_rollback(dm_db *db);
int dm_db_in_transaction(const dm_db *db);
/* 1 when this connection began a transaction that SQLite has since rolled
 * back by itself (a full disk, an I/O error): only a rollback is left. */
int dm_db_txn_lost(const dm_db *db);
/* on: commits leave the checkpoint they make due (the WAL grew long) for
 * later; dm_db_checkpoint_due runs it (once off again): a group commit's
 * leader answers its batch first (store/db_group.c). */
void dm_db_checkpoint_later(dm_db *db, int on);
void dm_db_checkpoint_due(dm_db *db);
/* The WAL's length in pages when the commits of db left it long enough for
 * a checkpoint, else 0 (then forgotten, so one caller runs it);
 * dm_db_checkpoint_run runs that checkpoint on db, which may be another
 * connection to the file: PASSIVE, or RESTART when the WAL is long (db.c). */
int dm_db_checkpoint_take(dm_db *db);
void dm_db_checkpoint_run(dm_db *db, int pages);
/* A PASSIVE checkpoint on db (it takes no write lock: writers go on
 * meanwhile): the WAL's length in pages when it began when every one of
 * them is back in the database, else 0 (and always 0 on PostgreSQL). */
int dm_db_checkpoint_copy(dm_db *db);

/* A cached prepared statement, reset and with bindings cleared. */
dm_err *dm_db_prepare(dm_db *db, apr_pool_t *p, const char *sql, dm_stmt **out);

/* Parameters are numbered from 1. */
void dm_stmt_bind_int64(dm_stmt *st, int idx, int64_t v);
void dm_stmt_bind_text(dm_stmt *st, int idx, const char *s, size_t len);
void dm_stmt_bind_null(dm_stmt *st, int idx);
/* A NUL-terminated string, or NULL when s is NULL. */
void dm_stmt_bind_str(dm_stmt *st, int idx, const char *s);
/* As dm_stmt_bind_str, without a copy on SQLite: s must stay unchanged
 * until dm_stmt_done (a string of the caller's pool, say). */
void dm_stmt_bind_str_kept(dm_stmt *st, int idx, const char *s);

/* One step: *row is 1 when a row is ready, 0 when done. A UNIQUE
 * violation maps to DM_E_CONFLICT, a busy database to DM_E_UNAVAILABLE.
 * Loop: while (!(e = dm_stmt_step(st, p, &row)) && row) { ... } */
dm_err *dm_stmt_step(dm_stmt *st, apr_pool_t *p, int *row);

/* Columns are numbered from 0. Text is valid until the next step/reset. */
int64_t dm_stmt_int64(dm_stmt *st, int col);
const char *dm_stmt_text(dm_stmt *st, int col, size_t *len);
int dm_stmt_is_null(dm_stmt *st, int col);
/* The result's column count, a column's name, and whether a row's value
 * is an integer (1), text (2), null (0) or other (3) (generic exports). */
int dm_stmt_column_count(dm_stmt *st);
const char *dm_stmt_column_name(dm_stmt *st, int col);
int dm_stmt_column_kind(dm_stmt *st, int col);
/* A copy of a text column in p, or NULL when the column is NULL. */
const char *dm_stmt_dup_text(dm_stmt *st, apr_pool_t *p, int col);

/* Returns the statement to the cache (reset, bindings cleared). */
void dm_stmt_done(dm_stmt *st);

/* Convenience: one int64 from a single-row query with no parameters;
 * `*found` is 0 when there was no row. */
dm_err *dm_db_query_int64(dm_db *db, apr_pool_t *p, const char *sql, int64_t *out, int *found);

/* Convenience: the first column of a single-row query with no parameters,
 * copied into `p`; `*out` is NULL when there was no row or the value is NULL. */
dm_err *dm_db_query_text(dm_db *db, apr_pool_t *p, const char *sql, const char **out);

/* Rows changed by the last INSERT/UPDATE/DELETE on this connection. */
int64_t dm_db_changes(dm_db *db);

/* Row id of the last INSERT on this connection. Write the INSERT with
 * `RETURNING id` (both engines): PostgreSQL has no row id, and its driver
 * answers the id the last INSERT … RETURNING id gave. */
int64_t dm_db_last_insert_id(dm_db *db);

/* A consistent copy of the database at src_path written to dest_path (a
 * new file, 0600), with SQLite's online backup API: one read transaction
 * on a connection of its own holds the snapshot (in WAL mode a reader
 * never blocks a writer, and the copy never restarts), pages_per_step
 * pages are copied per step (0: 256) with sleep_ms between steps (0: none)
 * so the copy's I/O stays in small pieces. dest_path must not exist. */
dm_err *dm_db_snapshot(apr_pool_t *p, const char *src_path, const char *dest_path,
                       int pages_per_step, int sleep_ms);

/* 1 in *held when another process holds the database at path open (an
 * open SQLite connection keeps a shared lock on the file in WAL mode: a
 * running server's connections do), 0 when this process could take it
 * exclusively (and let it go again). A missing file is not held. */
dm_err *dm_db_held_elsewhere(apr_pool_t *p, const char *path, int *held);

#endif
