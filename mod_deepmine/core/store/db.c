/*
 * db.c — the SQLite driver behind db.h.
 *
 * Invariants: every connection has WAL, foreign_keys=ON and a busy timeout;
 * statements are prepared once per connection (cache keyed by SQL text) and
 * always returned reset; a connection never goes back to the pool inside a
 * transaction (db_pool.c rolls back).
 */
#include "store/db.h"

#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/metrics.h"

/* The page cache of one connection, in KiB (PRAGMA cache_size=-N). */
#ifndef DM_DB_CACHE_KIB
#define DM_DB_CACHE_KIB 512
#endif
#define DM_DB_STR2(x) #x
#define DM_DB_STR(x) DM_DB_STR2(x)
#define DM_DB_CACHE_KIB_STR DM_DB_STR(DM_DB_CACHE_KIB)

struct dm_db {
    sqlite3 *handle;
    apr_pool_t *pool;
    apr_hash_t *stmts; /* sql text -> dm_stmt */
    const char *path;
    int in_txn;
};

struct dm_stmt {
    dm_db *db;
    sqlite3_stmt *st;
    const char *sql;
};

/* Counts a refusal by the storage; the first after a success is logged
 * (the state is shared by every process: see dm_db_storage_full). */
static void storage_failed(const char *kind, const char *msg)
{
    dm_metrics_inc(DM_M_DB_STORAGE_ERRORS, "kind", kind, DM_ML_END);
    if (dm_metrics_swap(DM_M_DB_STORAGE_FULL, strcmp(kind, "full") == 0 ? 1 : 2, DM_ML_END) == 0) {
        dm_log(DM_L_ERR,
               "DM01550: the database's storage refuses writes (%s: %s): writes answer 503 "
               "until space or the disk is back",
               kind, msg);
    }
}

int dm_db_storage_full(void)
{
    return (int)dm_metrics_get(DM_M_DB_STORAGE_FULL, DM_ML_END);
}

__attribute__((returns_nonnull)) static dm_err *sqlite_err(apr_pool_t *p, sqlite3 *h, int rc,
                                                           const char *what)
{
    int ext = h ? sqlite3_extended_errcode(h) : rc;
    const char *msg = h ? sqlite3_errmsg(h) : sqlite3_errstr(rc);

    if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return dm_err_make(p, DM_E_CONFLICT, NULL, "%s: already exists", what);
    }
    if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "database busy, try again (%s)", what);
    }
    /* Storage that refuses writes is the server's condition, not the
     * request's fault: 503 with Retry-After, so clients and webhook senders
     * try again once space (or the disk) is back. */
    if ((rc & 0xff) == SQLITE_FULL || (ext & 0xff) == SQLITE_FULL) {
        storage_failed("full", msg);
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                           "the database's storage is full; try again later");
    }
    if ((rc & 0xff) == SQLITE_IOERR || (ext & 0xff) == SQLITE_IOERR) {
        storage_failed("io", msg);
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                           "the database's storage failed to read or write; try again later");
    }
    return dm_err_make(p, DM_E_INTERNAL, NULL, "database error in %s: %s", what, msg);
}

static apr_status_t db_cleanup(void *data)
{
    dm_db *db = data;
    apr_hash_index_t *hi;

    if (!db->handle) {
        return APR_SUCCESS;
    }
    for (hi = apr_hash_first(NULL, db->stmts); hi; hi = apr_hash_next(hi)) {
        dm_stmt *st = apr_hash_this_val(hi);
        sqlite3_finalize(st->st);
    }
    apr_hash_clear(db->stmts);
    sqlite3_close_v2(db->handle);
    db->handle = NULL;
    return APR_SUCCESS;
}

void dm_db_global_init(void)
{
    static int done;

    if (!done) {
        /* SQLITE_MISUSE after sqlite3_initialize: then it is simply too late */
        sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
        done = 1;
    }
}

/* A new database file is created here, mode 0600, before SQLite sees it:
 * SQLite would create it 0644 (less the umask), and its -wal and -shm
 * files take the mode of the database file. The file holds password
 * hashes and queued mail; nobody but the server's user reads it. An
 * existing file is left alone (the module refuses one others can read). */
static void create_private(const char *path)
{
    int fd;

    if (!*path || *path == ':' || strncmp(path, "file:", 5) == 0) {
        return;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
        close(fd);
    }
}

dm_err *dm_db_open(apr_pool_t *p, const char *path, const dm_db_options *opt, dm_db **out)
{
    dm_db *db = apr_pcalloc(p, sizeof(*db));
    int flags = SQLITE_OPEN_NOMUTEX;
    int rc;
    dm_err *e;

    flags |=
        (opt && opt->readonly) ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    db->pool = p;
    db->path = apr_pstrdup(p, path);
    db->stmts = apr_hash_make(p);
    if (!(opt && opt->readonly)) {
        create_private(path);
    }
    rc = sqlite3_open_v2(path, &db->handle, flags, NULL);
    if (rc != SQLITE_OK) {
        e = dm_err_make(p, DM_E_UNAVAILABLE, NULL, "cannot open database %s: %s", path,
                        db->handle ? sqlite3_errmsg(db->handle) : sqlite3_errstr(rc));
        sqlite3_close_v2(db->handle);
        return e;
    }
    apr_pool_cleanup_register(p, db, db_cleanup, apr_pool_cleanup_null);
    sqlite3_busy_timeout(db->handle, (opt && opt->busy_timeout_ms) ? opt->busy_timeout_ms : 5000);
    sqlite3_extended_result_codes(db->handle, 1);
    if (!(opt && opt->readonly)) {
        /* Switching a new file to WAL takes a lock without calling the busy
         * handler, so two processes opening a fresh database at once can
         * see SQLITE_BUSY here: retry for as long as the busy timeout. */
        int waited_ms = 0, limit_ms = (opt && opt->busy_timeout_ms) ? opt->busy_timeout_ms : 5000;
        while ((e = dm_db_exec(db, p, "PRAGMA journal_mode=WAL")) != NULL &&
               e->code == DM_E_UNAVAILABLE && waited_ms < limit_ms) {
            apr_sleep(apr_time_from_msec(10));
            waited_ms += 10;
        }
        if (e) {
            dm_db_close(db);
            return e;
        }
    }
    /* No mmap (SQLite's default): each mapping of the file counts the pages
     * it touched in the process's RSS once per connection, so a child with
     * 32 pooled connections counted the hot part of the database 32 times.
     * Pages a connection has not cached are pread() from the kernel's page
     * cache instead. Each connection caches at most DM_DB_CACHE_KIB of
     * pages (docs/configuration.md "Sizing Apache for DeepMine"). */
    e = dm_db_exec(db, p,
                   "PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL; "
                   "PRAGMA cache_size=-" DM_DB_CACHE_KIB_STR);
    if (e) {
        dm_db_close(db);
        return e;
    }
    *out = db;
    return NULL;
}

void dm_db_close(dm_db *db)
{
    if (db) {
        apr_pool_cleanup_run(db->pool, db, db_cleanup);
    }
}

void dm_db_set_busy_timeout(dm_db *db, int ms)
{
    sqlite3_busy_timeout(db->handle, ms);
}

const char *dm_db_path(const dm_db *db)
{
    return db->path;
}

dm_err *dm_db_exec(dm_db *db, apr_pool_t *p, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db->handle, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK) {
        dm_err *e = sqlite_err(p, db->handle, rc, apr_pstrndup(p, sql, 40));
        if (msg && e->code == DM_E_INTERNAL) {
            e->message = apr_psprintf(p, "database error: %s", msg);
        }
        sqlite3_free(msg);
        return e;
    }
    return NULL;
}

dm_err *dm_db_bulk_load_mode(dm_db *db, apr_pool_t *p, int cache_mib)
{
    /* PRAGMA takes no parameters; the text holds a number, never input */
    return dm_db_exec(db, p,
                      apr_psprintf(p,
                                   "PRAGMA synchronous=OFF; PRAGMA cache_size=-%d; "
                                   "PRAGMA temp_store=MEMORY",
                                   cache_mib > 0 ? cache_mib * 1024 : 2000));
}

dm_err *dm_db_begin(dm_db *db, apr_pool_t *p)
{
    int64_t t0 = dm_metrics_now_us();
    dm_err *e = dm_db_exec(db, p, "BEGIN IMMEDIATE");

    dm_metrics_observe_us(DM_M_DB_WRITE_LOCK_WAIT, dm_metrics_now_us() - t0, DM_ML_END);
    if (!e) {
        db->in_txn = 1;
    } else if (e->code == DM_E_UNAVAILABLE && strncmp(e->message, "database busy", 13) == 0) {
        dm_metrics_inc(DM_M_DB_WRITE_LOCK_TIMEOUT, DM_ML_END);
    }
    return e;
}

dm_err *dm_db_commit(dm_db *db, apr_pool_t *p)
{
    dm_err *e = dm_db_exec(db, p, "COMMIT");
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    db->in_txn = 0;
    /* A write went through: whatever refused writes before is over. */
    if (dm_metrics_get(DM_M_DB_STORAGE_FULL, DM_ML_END) != 0 &&
        dm_metrics_swap(DM_M_DB_STORAGE_FULL, 0, DM_ML_END) != 0) {
        dm_log(DM_L_NOTICE, "DM01551: the database's storage accepts writes again");
    }
    return NULL;
}

void dm_db_rollback(dm_db *db)
{
    if (!sqlite3_get_autocommit(db->handle)) {
        sqlite3_exec(db->handle, "ROLLBACK", NULL, NULL, NULL);
    }
    db->in_txn = 0;
}

int dm_db_in_transaction(const dm_db *db)
{
    return db->in_txn || !sqlite3_get_autocommit(db->handle);
}

dm_err *dm_db_prepare(dm_db *db, apr_pool_t *p, const char *sql, dm_stmt **out)
{
    dm_stmt *st = apr_hash_get(db->stmts, sql, APR_HASH_KEY_STRING);
    int rc;

    if (!st) {
        st = apr_pcalloc(db->pool, sizeof(*st));
        st->db = db;
        st->sql = apr_pstrdup(db->pool, sql);
        rc = sqlite3_prepare_v3(db->handle, sql, -1, SQLITE_PREPARE_PERSISTENT, &st->st, NULL);
        if (rc != SQLITE_OK) {
            return sqlite_err(p, db->handle, rc, "prepare");
        }
        apr_hash_set(db->stmts, st->sql, APR_HASH_KEY_STRING, st);
    }
    *out = st;
    return NULL;
}

void dm_stmt_bind_int64(dm_stmt *st, int idx, int64_t v)
{
    sqlite3_bind_int64(st->st, idx, v);
}

void dm_stmt_bind_text(dm_stmt *st, int idx, const char *s, size_t len)
{
    sqlite3_bind_text64(st->st, idx, s, len, SQLITE_TRANSIENT, SQLITE_UTF8);
}

void dm_stmt_bind_null(dm_stmt *st, int idx)
{
    sqlite3_bind_null(st->st, idx);
}

void dm_stmt_bind_str(dm_stmt *st, int idx, const char *s)
{
    if (s) {
        dm_stmt_bind_text(st, idx, s, strlen(s));
    } else {
        dm_stmt_bind_null(st, idx);
    }
}

dm_err *dm_stmt_step(dm_stmt *st, apr_pool_t *p, int *row)
{
    int rc = sqlite3_step(st->st);

    *row = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        return NULL;
    }
    return sqlite_err(p, st->db->handle, rc, "query");
}

int64_t dm_stmt_int64(dm_stmt *st, int col)
{
    return sqlite3_column_int64(st->st, col);
}

const char *dm_stmt_text(dm_stmt *st, int col, size_t *len)
{
    const char *t = (const char *)sqlite3_column_text(st->st, col);
    if (len) {
        *len = (size_t)sqlite3_column_bytes(st->st, col);
    }
    return t ? t : "";
}

const char *dm_stmt_dup_text(dm_stmt *st, apr_pool_t *p, int col)
{
    size_t len = 0;
    const char *s;

    if (dm_stmt_is_null(st, col)) {
        return NULL;
    }
    s = dm_stmt_text(st, col, &len);
    return apr_pstrmemdup(p, s, len);
}

int dm_stmt_column_count(dm_stmt *st)
{
    return sqlite3_column_count(st->st);
}

const char *dm_stmt_column_name(dm_stmt *st, int col)
{
    return sqlite3_column_name(st->st, col);
}

int dm_stmt_column_kind(dm_stmt *st, int col)
{
    switch (sqlite3_column_type(st->st, col)) {
    case SQLITE_NULL:
        return 0;
    case SQLITE_INTEGER:
        return 1;
    case SQLITE_TEXT:
        return 2;
    default:
        return 3;
    }
}

int dm_stmt_is_null(dm_stmt *st, int col)
{
    return sqlite3_column_type(st->st, col) == SQLITE_NULL;
}

void dm_stmt_done(dm_stmt *st)
{
    sqlite3_reset(st->st);
    sqlite3_clear_bindings(st->st);
}

dm_err *dm_db_query_int64(dm_db *db, apr_pool_t *p, const char *sql, int64_t *out, int *found)
{
    dm_stmt *st = NULL;
    dm_err *e = dm_db_prepare(db, p, sql, &st);
    int row = 0;

    *found = 0;
    if (e) {
        return e;
    }
    e = dm_stmt_step(st, p, &row);
    if (!e && row && !dm_stmt_is_null(st, 0)) {
        *out = dm_stmt_int64(st, 0);
        *found = 1;
    }
    dm_stmt_done(st);
    return e;
}

int64_t dm_db_changes(dm_db *db)
{
    return sqlite3_changes64(db->handle);
}

int64_t dm_db_last_insert_id(dm_db *db)
{
    return sqlite3_last_insert_rowid(db->handle);
}

dm_err *dm_db_snapshot(apr_pool_t *p, const char *src_path, const char *dest_path,
                       int pages_per_step, int sleep_ms)
{
    sqlite3 *src = NULL, *dst = NULL;
    sqlite3_backup *bk = NULL;
    dm_err *e = NULL;
    int rc, fd;

    fd = open(dest_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "cannot create %s: %s", dest_path,
                           strerror(errno));
    }
    close(fd);
    rc = sqlite3_open_v2(src_path, &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(src, 5000);
        /* the snapshot: a read transaction held for the whole copy */
        rc = sqlite3_exec(src, "BEGIN; SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        e = sqlite_err(p, src, rc, "snapshot (source)");
        goto cleanup;
    }
    rc = sqlite3_open_v2(dest_path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        e = sqlite_err(p, dst, rc, "snapshot (copy)");
        goto cleanup;
    }
    /* a scratch file: no journal and no fsync of its own (the backup's
     * SHA-256 checks it end to end); a flush of the whole copy at once
     * would hold up the device, and with it every writer's commit */
    sqlite3_exec(dst, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF", NULL, NULL, NULL);
    bk = sqlite3_backup_init(dst, "main", src, "main");
    if (!bk) {
        e = sqlite_err(p, dst, sqlite3_errcode(dst), "snapshot (backup)");
        goto cleanup;
    }
    for (;;) {
        rc = sqlite3_backup_step(bk, pages_per_step > 0 ? pages_per_step : 256);
        if (rc == SQLITE_DONE) {
            break;
        }
        if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
            e = sqlite_err(p, dst, rc, "snapshot (step)");
            goto cleanup;
        }
        if (sleep_ms > 0 || rc != SQLITE_OK) {
            apr_sleep(apr_time_from_msec(sleep_ms > 0 ? sleep_ms : 5));
        }
    }
    rc = sqlite3_backup_finish(bk);
    bk = NULL;
    if (rc != SQLITE_OK) {
        e = sqlite_err(p, dst, rc, "snapshot (finish)");
    }
cleanup:
    if (bk) {
        sqlite3_backup_finish(bk);
    }
    if (src) {
        sqlite3_exec(src, "COMMIT", NULL, NULL, NULL);
        sqlite3_close_v2(src);
    }
    if (dst) {
        sqlite3_close_v2(dst);
    }
    if (e) {
        unlink(dest_path);
    }
    return e;
}

dm_err *dm_db_held_elsewhere(apr_pool_t *p, const char *path, int *held)
{
    sqlite3 *h = NULL;
    int rc;

    *held = 0;
    if (access(path, F_OK) != 0) {
        return NULL;
    }
    rc = sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        /* every connection in WAL mode holds a shared lock on the file while
         * open; an exclusive one is ours only when nobody else has it open */
        rc = sqlite3_exec(h, "PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT", NULL, NULL,
                          NULL);
    }
    if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
        *held = 1;
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK) {
        dm_err *e = sqlite_err(p, h, rc, "lock check");
        sqlite3_close_v2(h);
        return e;
    }
    sqlite3_close_v2(h);
    return NULL;
}
