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
#include "store/db_pg.h"
#include "store/walvfs.h"
#include "store/wlock.h"

/* WAL pages after which a commit's connection checkpoints (SQLite's own
 * default), once it has let the next writer in (see wal_hook). */
#define DM_DB_CHECKPOINT_PAGES 1000
/* WAL pages past which the checkpoint also restarts the WAL (RESTART: it
 * waits for the readers still on the old frames, at most
 * DM_DB_WAL_RESTART_WAIT_MS, then the next writer starts the WAL at its
 * first frame). Under steady writes with readers always in flight the
 * PASSIVE checkpoints copy the frames back but the WAL never starts over:
 * it grew to 400,000 frames in the bench's webhooks, and its index (the
 * -shm file, 32 KiB per 4,096 frames) with it, 3.2 MiB resident in every
 * process that reads it (docs/decisions.md "Memory, seventh round"). */
#define DM_DB_WAL_RESTART_PAGES 16384
#define DM_DB_WAL_RESTART_WAIT_MS 10

/* Slots of the statement cache's front, found by the SQL text's address
 * (a power of two). */
#define DM_DB_FAST_SLOTS 128

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
    /* In front of stmts: the statement last prepared from the text at this
     * address (SQL is mostly a string literal, so its address is stable).
     * A hit is confirmed by comparing the text, so text built at run time
     * at a reused address still finds its own statement. Hashing the whole
     * text for every statement was 4 % of a paid-order webhook. */
    struct dm_db_fast {
        const char *sql;
        struct dm_stmt *st;
    } fast[DM_DB_FAST_SLOTS];
    const char *path;
    int in_txn;
    dm_pg *pg;      /* non-NULL: a PostgreSQL connection (db_pg.c), handle NULL */
    int busy_ms;    /* the busy timeout, also the longest wait for the writer lock */
    int wal_pages;  /* the WAL's size after this connection's last commit */
    int wl_tried;   /* the writer lock was looked for (opened once, on first write) */
    int wl_held;    /* this connection holds the writer lock */
    int ckpt_later; /* after_write leaves a due checkpoint to dm_db_checkpoint_due */
    dm_wlock *wl;   /* NULL: no writer lock (in-memory database, no futex) */
};

struct dm_stmt {
    dm_db *db;
    sqlite3_stmt *st;
    const char *sql;
    dm_pg_stmt *pg;  /* on a PostgreSQL connection */
    int holds_wlock; /* an autocommit write stepped to a row: released at done */
};

/* Counts a refusal by the storage; the first after a success is logged
 * (the state is shared by every process: see dm_db_storage_full). */
void dm_db_storage_failed(const char *kind, const char *msg)
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
        dm_db_storage_failed("full", msg);
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                           "the database's storage is full; try again later");
    }
    if ((rc & 0xff) == SQLITE_IOERR || (ext & 0xff) == SQLITE_IOERR) {
        dm_db_storage_failed("io", msg);
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
    if (db->wl_held) {
        dm_wlock_release(db->wl);
        db->wl_held = 0;
    }
    dm_wlock_close(db->wl);
    db->wl = NULL;
    for (hi = apr_hash_first(NULL, db->stmts); hi; hi = apr_hash_next(hi)) {
        dm_stmt *st = apr_hash_this_val(hi);
        sqlite3_finalize(st->st);
    }
    apr_hash_clear(db->stmts);
    memset(db->fast, 0, sizeof(db->fast));
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

/* SQLite calls this after each commit with the WAL's size. Its default
 * hook checkpoints right there, inside the commit, while the writer lock
 * (ours) is still held and every other writer waits out the fsyncs; this
 * one only notes the size, and after_write checkpoints once the lock is
 * passed on. Same threshold, same PASSIVE checkpoint: nothing about
 * durability changes, only who waits for it. */
static int wal_hook(void *arg, sqlite3 *h, const char *name, int pages)
{
    dm_db *db = arg;
    (void)h;
    (void)name;
    db->wal_pages = pages;
    return SQLITE_OK;
}

/* Takes the writer lock before a write (see store/wlock.h): 1 when held
 * now, 0 when there is none or the wait timed out (then SQLite's lock and
 * busy handler decide alone, as before the queue). */
static int writer_lock(dm_db *db)
{
    unsigned holder = 0;

    if (!db->wl_tried) {
        const char *why = NULL;
        db->wl_tried = 1;
        db->wl = dm_wlock_open(db->pool, db->path, &why);
        if (!db->wl && why) {
            dm_log(DM_L_WARN,
                   "DM01800: no writer queue for %s (%s): writers wait in SQLite's busy "
                   "handler",
                   db->path, why);
        }
    }
    if (!db->wl) {
        return 0;
    }
    if (dm_wlock_acquire(db->wl, db->busy_ms, &holder)) {
        db->wl_held = 1;
        return 1;
    }
    dm_log(DM_L_WARN, "DM01801: waited %d ms for the writer lock of %s (held by pid %u)",
           db->busy_ms, db->path, holder);
    return 0;
}

/* A checkpoint of the WAL on db, whose length was pages at the last commit:
 * PASSIVE; then, once the WAL is long (DM_DB_WAL_RESTART_PAGES) and every
 * frame of it is back in the database, RESTART, which waits at most
 * DM_DB_WAL_RESTART_WAIT_MS for the writer of the moment and for the
 * readers still on the old frames, so that the next writer starts the WAL
 * at its first frame. The copying is done by the PASSIVE pass, without the
 * write lock, so writers wait only for that short RESTART; one that times
 * out has done no more than a PASSIVE one. SQLITE_BUSY (another connection
 * is checkpointing) is fine either way. */
static void checkpoint(dm_db *db, int pages)
{
    int frames = 0, copied = 0;

    if (sqlite3_wal_checkpoint_v2(db->handle, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames, &copied) ==
            SQLITE_OK &&
        pages >= DM_DB_WAL_RESTART_PAGES && frames > 0 && copied == frames) {
        sqlite3_busy_timeout(db->handle, DM_DB_WAL_RESTART_WAIT_MS);
        sqlite3_wal_checkpoint_v2(db->handle, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
        sqlite3_busy_timeout(db->handle, db->busy_ms);
    }
}

/* After a commit or a rollback: the next writer goes in, then this
 * connection checkpoints if its commit left the WAL long (wal_hook). */
static void after_write(dm_db *db)
{
    if (db->wl_held) {
        db->wl_held = 0;
        dm_wlock_release(db->wl);
    }
    if (db->wal_pages >= DM_DB_CHECKPOINT_PAGES && !db->ckpt_later) {
        int pages = db->wal_pages;
        db->wal_pages = 0;
        checkpoint(db, pages);
    }
}

dm_err *dm_db_open(apr_pool_t *p, const char *path, const dm_db_options *opt, dm_db **out)
{
    dm_db *db = apr_pcalloc(p, sizeof(*db));
    int flags = SQLITE_OPEN_NOMUTEX;
    int rc;
    dm_err *e;

    if (dm_pg_is_conninfo(path)) {
        db->pool = p;
        db->stmts = apr_hash_make(p);
        e = dm_pg_open(p, path, opt, &db->pg);
        if (e) {
            return e;
        }
        db->path = dm_pg_display(db->pg);
        *out = db;
        return NULL;
    }
    flags |=
        (opt && opt->readonly) ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    db->pool = p;
    db->path = apr_pstrdup(p, path);
    db->stmts = apr_hash_make(p);
    if (!(opt && opt->readonly)) {
        create_private(path);
    }
    /* through walvfs: a WAL frame's two writes, and a commit's frames,
     * written with one call (store/walvfs.h) */
    rc = sqlite3_open_v2(path, &db->handle, flags, dm_walvfs_name());
    if (rc != SQLITE_OK) {
        e = dm_err_make(p, DM_E_UNAVAILABLE, NULL, "cannot open database %s: %s", path,
                        db->handle ? sqlite3_errmsg(db->handle) : sqlite3_errstr(rc));
        sqlite3_close_v2(db->handle);
        return e;
    }
    apr_pool_cleanup_register(p, db, db_cleanup, apr_pool_cleanup_null);
    db->busy_ms = (opt && opt->busy_timeout_ms) ? opt->busy_timeout_ms : 5000;
    sqlite3_busy_timeout(db->handle, db->busy_ms);
    sqlite3_wal_hook(db->handle, wal_hook, db);
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

int dm_db_is_postgres(const char *name)
{
    return dm_pg_is_conninfo(name);
}

const char *dm_db_display_name(apr_pool_t *p, const char *name)
{
    return dm_pg_is_conninfo(name) ? dm_pg_redact(p, name) : name;
}

const char *dm_db_sidecar_path(apr_pool_t *p, const char *name, const char *suffix)
{
    if (dm_pg_is_conninfo(name)) {
        return dm_pg_sidecar_path(p, name, suffix);
    }
    return apr_pstrcat(p, name, suffix, NULL);
}

void dm_db_close(dm_db *db)
{
    if (db && db->pg) {
        dm_pg_close(db->pg);
    } else if (db) {
        apr_pool_cleanup_run(db->pool, db, db_cleanup);
    }
}

void dm_db_set_busy_timeout(dm_db *db, int ms)
{
    if (db->pg) {
        dm_pg_set_busy_timeout(db->pg, ms);
        return;
    }
    db->busy_ms = ms;
    sqlite3_busy_timeout(db->handle, ms);
}

int dm_db_busy_timeout(const dm_db *db)
{
    return db->pg ? 0 : db->busy_ms;
}

const char *dm_db_engine(const dm_db *db)
{
    return db->pg ? "postgresql" : "sqlite";
}

const char *dm_db_path(const dm_db *db)
{
    return db->path;
}

dm_err *dm_db_exec(dm_db *db, apr_pool_t *p, const char *sql)
{
    char *msg = NULL;
    int rc;

    if (db->pg) {
        return dm_pg_exec(db->pg, p, sql);
    }
    rc = sqlite3_exec(db->handle, sql, NULL, NULL, &msg);
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
    if (db->pg) {
        return dm_pg_bulk_load_mode(db->pg, p);
    }
    /* PRAGMA takes no parameters; the text holds a number, never input */
    return dm_db_exec(db, p,
                      apr_psprintf(p,
                                   "PRAGMA synchronous=OFF; PRAGMA cache_size=-%d; "
                                   "PRAGMA temp_store=MEMORY",
                                   cache_mib > 0 ? cache_mib * 1024 : 2000));
}

dm_err *dm_db_scratch_in_memory(dm_db *db, apr_pool_t *p, int on)
{
    if (db->pg) {
        return NULL; /* a SQLite setting: PostgreSQL has no statement journal file */
    }
    return dm_db_exec(db, p, on ? "PRAGMA temp_store=MEMORY" : "PRAGMA temp_store=DEFAULT");
}

dm_err *dm_db_cache_kib(dm_db *db, apr_pool_t *p, int kib)
{
    if (db->pg) {
        return NULL; /* a SQLite setting: the server keeps PostgreSQL's buffers */
    }
    /* PRAGMA takes no parameters; the text holds a number, never input */
    return dm_db_exec(db, p,
                      apr_psprintf(p, "PRAGMA cache_size=-%d", kib > 0 ? kib : DM_DB_CACHE_KIB));
}

dm_err *dm_db_begin(dm_db *db, apr_pool_t *p)
{
    int64_t t0;
    dm_err *e;

    if (db->pg) {
        return dm_pg_begin(db->pg, p);
    }
    t0 = dm_metrics_now_us();

    /* Writers queue on the writer lock, then SQLite's own lock is free at
     * once (unless a process outside the queue writes): its busy handler
     * is only the fallback. A wait on the queue that timed out tries
     * SQLite's lock once, without waiting again. */
    if (db->in_txn || writer_lock(db) || !db->wl) {
        e = dm_db_exec(db, p, "BEGIN IMMEDIATE");
    } else {
        sqlite3_busy_timeout(db->handle, 0);
        e = dm_db_exec(db, p, "BEGIN IMMEDIATE");
        sqlite3_busy_timeout(db->handle, db->busy_ms);
    }
    dm_metrics_observe_us(DM_M_DB_WRITE_LOCK_WAIT, dm_metrics_now_us() - t0, DM_ML_END);
    if (!e) {
        db->in_txn = 1;
    } else {
        if (!db->in_txn) {
            after_write(db);
        }
        if (e->code == DM_E_UNAVAILABLE && strncmp(e->message, "database busy", 13) == 0) {
            dm_metrics_inc(DM_M_DB_WRITE_LOCK_TIMEOUT, DM_ML_END);
        }
    }
    return e;
}

dm_err *dm_db_commit(dm_db *db, apr_pool_t *p)
{
    dm_err *e = db->pg ? dm_pg_commit(db->pg, p) : dm_db_exec(db, p, "COMMIT");
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    db->in_txn = 0;
    after_write(db);
    /* A write went through: whatever refused writes before is over. */
    if (dm_metrics_get(DM_M_DB_STORAGE_FULL, DM_ML_END) != 0 &&
        dm_metrics_swap(DM_M_DB_STORAGE_FULL, 0, DM_ML_END) != 0) {
        dm_log(DM_L_NOTICE, "DM01551: the database's storage accepts writes again");
    }
    return NULL;
}

void dm_db_rollback(dm_db *db)
{
    if (db->pg) {
        dm_pg_rollback(db->pg);
        db->in_txn = 0;
        return;
    }
    if (!sqlite3_get_autocommit(db->handle)) {
        sqlite3_exec(db->handle, "ROLLBACK", NULL, NULL, NULL);
    }
    db->in_txn = 0;
    after_write(db);
}

int dm_db_in_transaction(const dm_db *db)
{
    if (db->pg) {
        return dm_pg_in_transaction(db->pg);
    }
    return db->in_txn || !sqlite3_get_autocommit(db->handle);
}

void dm_db_checkpoint_later(dm_db *db, int on)
{
    db->ckpt_later = on;
}

void dm_db_checkpoint_due(dm_db *db)
{
    if (!db->pg && !db->ckpt_later) {
        after_write(db);
    }
}

int dm_db_checkpoint_take(dm_db *db)
{
    int pages = db->wal_pages;

    if (db->pg || pages < DM_DB_CHECKPOINT_PAGES) {
        return 0;
    }
    db->wal_pages = 0;
    return pages;
}

void dm_db_checkpoint_run(dm_db *db, int pages)
{
    if (!db->pg) {
        checkpoint(db, pages);
    }
}

int dm_db_checkpoint_copy(dm_db *db)
{
    int frames = 0, copied = 0;

    if (db->pg || sqlite3_wal_checkpoint_v2(db->handle, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames,
                                            &copied) != SQLITE_OK) {
        return 0;
    }
    return copied == frames && frames > 0 ? frames : 0;
}

int dm_db_txn_lost(const dm_db *db)
{
    return !db->pg && db->in_txn && sqlite3_get_autocommit(db->handle);
}

dm_err *dm_db_prepare(dm_db *db, apr_pool_t *p, const char *sql, dm_stmt **out)
{
    struct dm_db_fast *f = &db->fast[((uintptr_t)sql >> 3) & (DM_DB_FAST_SLOTS - 1)];
    dm_stmt *st;
    int rc;

    if (f->sql == sql && strcmp(f->st->sql, sql) == 0) {
        *out = f->st;
        return NULL;
    }
    st = apr_hash_get(db->stmts, sql, APR_HASH_KEY_STRING);
    if (!st) {
        st = apr_pcalloc(db->pool, sizeof(*st));
        st->db = db;
        st->sql = apr_pstrdup(db->pool, sql);
        if (db->pg) {
            dm_err *e = dm_pg_prepare(db->pg, p, sql, &st->pg);
            if (e) {
                return e;
            }
            apr_hash_set(db->stmts, st->sql, APR_HASH_KEY_STRING, st);
            *out = st;
            return NULL;
        }
        rc = sqlite3_prepare_v3(db->handle, sql, -1, SQLITE_PREPARE_PERSISTENT, &st->st, NULL);
        if (rc != SQLITE_OK) {
            return sqlite_err(p, db->handle, rc, "prepare");
        }
        apr_hash_set(db->stmts, st->sql, APR_HASH_KEY_STRING, st);
    }
    f->sql = sql;
    f->st = st;
    *out = st;
    return NULL;
}

void dm_stmt_bind_int64(dm_stmt *st, int idx, int64_t v)
{
    if (st->pg) {
        dm_pg_bind_int64(st->pg, idx, v);
        return;
    }
    sqlite3_bind_int64(st->st, idx, v);
}

void dm_stmt_bind_text(dm_stmt *st, int idx, const char *s, size_t len)
{
    if (st->pg) {
        dm_pg_bind_text(st->pg, idx, s, len);
        return;
    }
    sqlite3_bind_text64(st->st, idx, s, len, SQLITE_TRANSIENT, SQLITE_UTF8);
}

void dm_stmt_bind_null(dm_stmt *st, int idx)
{
    if (st->pg) {
        dm_pg_bind_null(st->pg, idx);
        return;
    }
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

void dm_stmt_bind_str_kept(dm_stmt *st, int idx, const char *s)
{
    if (!s || st->pg) {
        dm_stmt_bind_str(st, idx, s);
        return;
    }
    /* SQLITE_STATIC: SQLite reads s until the bindings are cleared
     * (dm_stmt_done), which the caller's promise covers */
    sqlite3_bind_text64(st->st, idx, s, strlen(s), SQLITE_STATIC, SQLITE_UTF8);
}

/* A write outside a transaction is a transaction of its own: it queues on
 * the writer lock like dm_db_begin's. */
static int autocommit_write(dm_stmt *st)
{
    return !st->db->in_txn && !st->holds_wlock && !sqlite3_stmt_readonly(st->st) &&
           sqlite3_get_autocommit(st->db->handle) && !sqlite3_stmt_busy(st->st);
}

dm_err *dm_stmt_step(dm_stmt *st, apr_pool_t *p, int *row)
{
    dm_db *db = st->db;
    int rc, queued = 0;

    if (st->pg) {
        return dm_pg_step(st->pg, p, row);
    }
    if (autocommit_write(st)) {
        queued = 1;
        if (!writer_lock(db) && db->wl) {
            sqlite3_busy_timeout(db->handle, 0);
            queued = 2;
        }
    }
    rc = sqlite3_step(st->st);
    if (queued == 2) {
        sqlite3_busy_timeout(db->handle, db->busy_ms);
    }
    if (queued) {
        if (rc == SQLITE_ROW) {
            st->holds_wlock = 1; /* committed at the reset: dm_stmt_done */
        } else {
            after_write(db);
        }
    }
    *row = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        return NULL;
    }
    return sqlite_err(p, db->handle, rc, "query");
}

int64_t dm_stmt_int64(dm_stmt *st, int col)
{
    if (st->pg) {
        return dm_pg_int64(st->pg, col);
    }
    return sqlite3_column_int64(st->st, col);
}

const char *dm_stmt_text(dm_stmt *st, int col, size_t *len)
{
    const char *t;

    if (st->pg) {
        return dm_pg_text(st->pg, col, len);
    }
    t = (const char *)sqlite3_column_text(st->st, col);
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
    if (st->pg) {
        return dm_pg_column_count(st->pg);
    }
    return sqlite3_column_count(st->st);
}

const char *dm_stmt_column_name(dm_stmt *st, int col)
{
    if (st->pg) {
        return dm_pg_column_name(st->pg, col);
    }
    return sqlite3_column_name(st->st, col);
}

int dm_stmt_column_kind(dm_stmt *st, int col)
{
    if (st->pg) {
        return dm_pg_column_kind(st->pg, col);
    }
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
    if (st->pg) {
        return dm_pg_is_null(st->pg, col);
    }
    return sqlite3_column_type(st->st, col) == SQLITE_NULL;
}

void dm_stmt_done(dm_stmt *st)
{
    if (st->pg) {
        dm_pg_done(st->pg);
        return;
    }
    sqlite3_reset(st->st);
    sqlite3_clear_bindings(st->st);
    if (st->holds_wlock) {
        st->holds_wlock = 0;
        after_write(st->db);
    }
}

dm_err *dm_db_query_int64(dm_db *db, apr_pool_t *p, const char *sql, int64_t *out, int *found)
{
    dm_stmt *st = NULL;
    dm_err *e = dm_db_prepare(db, p, sql, &st);
    int row = 0;

    *found = 0;
    if (e || !st) { /* (!st: for the analyzer, which doubts sqlite_err) */
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

dm_err *dm_db_query_text(dm_db *db, apr_pool_t *p, const char *sql, const char **out)
{
    dm_stmt *st = NULL;
    dm_err *e = dm_db_prepare(db, p, sql, &st);
    int row = 0;

    *out = NULL;
    if (e || !st) { /* as in dm_db_query_int64 */
        return e;
    }
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        *out = dm_stmt_dup_text(st, p, 0);
    }
    dm_stmt_done(st);
    return e;
}

int64_t dm_db_changes(dm_db *db)
{
    if (db->pg) {
        return dm_pg_changes(db->pg);
    }
    return sqlite3_changes64(db->handle);
}

int64_t dm_db_last_insert_id(dm_db *db)
{
    if (db->pg) {
        return dm_pg_last_insert_id(db->pg);
    }
    return sqlite3_last_insert_rowid(db->handle);
}

dm_err *dm_db_snapshot(apr_pool_t *p, const char *src_path, const char *dest_path,
                       int pages_per_step, int sleep_ms)
{
    sqlite3 *src = NULL, *dst = NULL;
    sqlite3_backup *bk = NULL;
    dm_err *e = NULL;
    int rc, fd;

    if (dm_pg_is_conninfo(src_path)) {
        return dm_err_make(p, DM_E_INVALID, NULL,
                           "a PostgreSQL database is copied with pg_dump, not a file snapshot");
    }
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
    if (dm_pg_is_conninfo(path) || access(path, F_OK) != 0) {
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
