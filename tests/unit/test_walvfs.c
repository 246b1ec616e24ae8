/* The WAL's writes gathered (store/walvfs.h): whatever is written through
 * the VFS, a connection of SQLite's own VFS sees every commit the moment it
 * returns, and the WAL file, recovered from scratch by SQLite (a copy of
 * the database and its WAL, as after a crash), holds exactly the committed
 * rows — so every frame's bytes and checksums are what SQLite wrote. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_strings.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "store/walvfs.h"
#include "fixture.h"

static apr_pool_t *pool;

/* The writes the default VFS makes, counted through SQLite's own system
 * call override (the VFS over it forwards xSetSystemCall to it). The unix
 * VFS writes with pwrite or pwrite64, or lseek and write, by build. */
static long long writes_made;
static sqlite3_syscall_ptr real_pwrite, real_pwrite64, real_write;

static ssize_t counted_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    writes_made++;
    return ((ssize_t(*)(int, const void *, size_t, off_t))real_pwrite)(fd, buf, n, off);
}

static ssize_t counted_pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    writes_made++;
    return ((ssize_t(*)(int, const void *, size_t, off_t))real_pwrite64)(fd, buf, n, off);
}

static ssize_t counted_write(int fd, const void *buf, size_t n)
{
    writes_made++;
    return ((ssize_t(*)(int, const void *, size_t))real_write)(fd, buf, n);
}

static void count_writes(int on)
{
    sqlite3_vfs *unix_vfs = sqlite3_vfs_find("unix");
    static const char *const names[] = {"pwrite", "pwrite64", "write"};
    sqlite3_syscall_ptr *reals[] = {&real_pwrite, &real_pwrite64, &real_write};
    sqlite3_syscall_ptr counted[] = {(sqlite3_syscall_ptr)counted_pwrite,
                                     (sqlite3_syscall_ptr)counted_pwrite64,
                                     (sqlite3_syscall_ptr)counted_write};
    int i;

    assert_non_null(unix_vfs);
    for (i = 0; i < 3; i++) {
        if (on) {
            *reals[i] = unix_vfs->xGetSystemCall(unix_vfs, names[i]);
            if (*reals[i]) {
                assert_int_equal(unix_vfs->xSetSystemCall(unix_vfs, names[i], counted[i]),
                                 SQLITE_OK);
            }
        } else if (*reals[i]) {
            assert_int_equal(unix_vfs->xSetSystemCall(unix_vfs, names[i], *reals[i]), SQLITE_OK);
        }
    }
}

/* Frames in a WAL file (of 4 KiB pages) */
static long long wal_frames(const char *path)
{
    apr_finfo_t fi;

    assert_int_equal(apr_stat(&fi, apr_pstrcat(pool, path, "-wal", NULL), APR_FINFO_SIZE, pool),
                     APR_SUCCESS);
    return fi.size <= 32 ? 0 : (long long)(fi.size - 32) / (24 + 4096);
}

static sqlite3 *open_with(const char *path, const char *vfs)
{
    sqlite3 *h = NULL;

    assert_int_equal(sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
                     SQLITE_OK);
    assert_int_equal(sqlite3_exec(h,
                                  "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                                  "PRAGMA wal_autocheckpoint=0",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    return h;
}

static void exec(sqlite3 *h, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(h, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK) {
        fail_msg("%s: %s", sql, msg ? msg : "?");
    }
}

static int64_t one(sqlite3 *h, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v;

    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static const char *text(sqlite3 *h, apr_pool_t *p, const char *sql)
{
    sqlite3_stmt *st = NULL;
    const char *v;

    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = apr_pstrdup(p, (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return v;
}

/* The database and its WAL copied (the WAL not checkpointed), opened with
 * SQLite's own VFS: it rebuilds the WAL index from the frames alone. */
static sqlite3 *recovered_copy(const char *path)
{
    const char *copy = dm_fx_path(pool, "copy");

    assert_int_equal(apr_file_copy(path, copy, APR_FPROT_FILE_SOURCE_PERMS, pool), APR_SUCCESS);
    assert_int_equal(apr_file_copy(apr_pstrcat(pool, path, "-wal", NULL),
                                   apr_pstrcat(pool, copy, "-wal", NULL),
                                   APR_FPROT_FILE_SOURCE_PERMS, pool),
                     APR_SUCCESS);
    return open_with(copy, NULL);
}

static void test_each_commit_is_seen_at_once_and_survives_recovery(void **state)
{
    const char *path = dm_fx_path(pool, "commits");
    const char *vfs = dm_walvfs_name();
    long long frames0, made, asked;
    sqlite3 *w, *r, *c;
    int i;

    (void)state;
    assert_non_null(vfs);
    w = open_with(path, vfs);
    r = open_with(path, NULL);
    exec(w, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB, n INTEGER)");
    frames0 = wal_frames(path);
    writes_made = 0;
    count_writes(1);
    for (i = 1; i <= 300; i++) {
        /* three pages and more per commit */
        exec(w, "BEGIN IMMEDIATE");
        exec(w, "INSERT INTO t (v, n) VALUES (randomblob(6000), 0)");
        exec(w, "UPDATE t SET n = n + 1 WHERE k = 1");
        exec(w, "COMMIT");
        assert_int_equal(one(r, "SELECT COUNT(*) FROM t"), i);
        assert_int_equal(one(r, "SELECT n FROM t WHERE k = 1"), i);
    }
    count_writes(0);
    made = writes_made;
    /* SQLite asks for two writes per frame (its header, then its page);
     * gathered, fewer than half of those reach the system */
    asked = 2 * (wal_frames(path) - frames0);
    assert_true(asked >= 300 * 2 * 3);
    assert_true(made > 0);
    assert_true(made * 2 < asked);
    c = recovered_copy(path);
    assert_int_equal(one(c, "SELECT COUNT(*) FROM t"), 300);
    assert_int_equal(one(c, "SELECT n FROM t WHERE k = 1"), 300);
    assert_int_equal(one(c, "SELECT SUM(length(v)) FROM t"), 300 * 6000);
    assert_string_equal(text(c, pool, "PRAGMA integrity_check"), "ok");
    sqlite3_close(c);
    sqlite3_close(r);
    sqlite3_close(w);
}

/* A transaction larger than its page cache writes frames before its
 * commit, then writes some of those pages again in place, and SQLite reads
 * those frames back to re-do their checksums at commit. */
static void test_a_transaction_larger_than_its_cache_commits_whole(void **state)
{
    const char *path = dm_fx_path(pool, "spill");
    sqlite3 *w, *r, *c;

    (void)state;
    w = open_with(path, dm_walvfs_name());
    r = open_with(path, NULL);
    exec(w, "PRAGMA cache_size=10");
    exec(w, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB, n INTEGER)");
    exec(w, "BEGIN IMMEDIATE");
    exec(w, "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 3000) "
            "INSERT INTO t (k, v, n) SELECT i, randomblob(400), i FROM s");
    exec(w, "UPDATE t SET n = n * 2");
    exec(w, "UPDATE t SET n = n + 1 WHERE k % 7 = 0");
    assert_int_equal(one(r, "SELECT COUNT(*) FROM t"), 0);
    exec(w, "COMMIT");
    assert_int_equal(one(r, "SELECT COUNT(*) FROM t"), 3000);
    assert_int_equal(one(r, "SELECT SUM(n) FROM t"), 3000 * 3001 + 3000 / 7);
    c = recovered_copy(path);
    assert_int_equal(one(c, "SELECT COUNT(*) FROM t"), 3000);
    assert_int_equal(one(c, "SELECT SUM(n) FROM t"), 3000 * 3001 + 3000 / 7);
    assert_int_equal(one(c, "SELECT SUM(length(v)) FROM t"), 3000 * 400);
    assert_string_equal(text(c, pool, "PRAGMA integrity_check"), "ok");
    sqlite3_close(c);
    /* a rolled-back transaction leaves nothing behind */
    exec(w, "BEGIN IMMEDIATE");
    exec(w, "UPDATE t SET n = 0");
    exec(w, "ROLLBACK");
    assert_int_equal(one(r, "SELECT SUM(n) FROM t"), 3000 * 3001 + 3000 / 7);
    /* and after a checkpoint that resets the WAL, writes start again at its
     * head */
    exec(w, "PRAGMA wal_checkpoint(TRUNCATE)");
    exec(w, "UPDATE t SET n = 1 WHERE k = 1");
    assert_int_equal(one(r, "SELECT n FROM t WHERE k = 1"), 1);
    c = recovered_copy(path);
    assert_int_equal(one(c, "SELECT n FROM t WHERE k = 1"), 1);
    assert_string_equal(text(c, pool, "PRAGMA integrity_check"), "ok");
    sqlite3_close(c);
    sqlite3_close(r);
    sqlite3_close(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_commit_is_seen_at_once_and_survives_recovery),
        cmocka_unit_test(test_a_transaction_larger_than_its_cache_commits_whole),
    };
    int rc;
    apr_initialize();
    apr_pool_create(&pool, NULL);
    if (dm_fx_init("walvfs") != 0) {
        return 1;
    }
    rc = cmocka_run_group_tests_name("walvfs", tests, NULL, NULL);
    apr_pool_destroy(pool);
    if (dm_fx_done() != 0) {
        return 1;
    }
    return rc;
}
