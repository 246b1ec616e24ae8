/*
 * Backups (ops/backup.h) through the real storage-local plugin: a round
 * trip gives back the very database (its SHA-256, its rows); a flipped
 * byte of the object, an edited manifest, a truncated object and a backup
 * made under another secret are refused with a sentence saying why;
 * retention keeps the newest of each hour/day/week asked for; a database
 * another connection holds is seen as held, and swap-in refuses it.
 *
 * Needs the built plugins in $DM_PLUGINS.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "fixture.h"
#include "ops/backup.h"
#include "plugins/plugin_host.h"
#include "store/db.h"

static apr_pool_t *pool;
static dm_backup_store store;
static dm_backup_keys keys, foreign;
static const char *sdir;

#define T0 1796126400 /* 2026-12-01T12:00:00Z, a Tuesday */

static void quiet(void *baton, dm_level level, const char *msg)
{
    (void)baton;
    (void)level;
    (void)msg;
}

static int setup(void **state)
{
    const char *plugins = getenv("DM_PLUGINS");
    dm_plugin_host *host;
    unsigned char a[32], b[32];

    (void)state;
    assert_non_null(plugins);
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    sdir = apr_pstrcat(pool, dm_fx_dir(), "/store", NULL);
    assert_int_equal(mkdir(sdir, 0700), 0);
    assert_null(dm_plugins_create(pool, &host));
    assert_null(dm_plugins_declare(host, "storage", "files",
                                   apr_psprintf(pool, "%s/storage-local.so", plugins)));
    assert_null(dm_plugins_set(host, "files", "dir", sdir));
    assert_null(dm_plugins_init_all(host));
    store.host = host;
    store.pl = dm_plugins_get(host, "files");
    assert_non_null(store.pl);
    memset(a, 7, sizeof(a));
    memset(b, 8, sizeof(b));
    dm_backup_keys_derive(a, &keys);
    dm_backup_keys_derive(b, &foreign);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool);
    return 0;
}

/* A migrated database with 300 rows of 1 KiB of random bytes in a table of
 * its own (several chunks even compressed); its path. */
static const char *populated(apr_pool_t *p, dm_db **keep_open)
{
    dm_db *db = dm_fx_db(p);

    assert_null(dm_db_exec(db, p,
                           "CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB);"
                           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                           "WHERE i < 300) INSERT INTO blobs (b) SELECT randomblob(1024) FROM n"));
    if (keep_open) {
        *keep_open = db;
    } else {
        dm_db_close(db);
    }
    return dm_db_path(db);
}

static void clear_store(void)
{
    apr_array_header_t *all;
    assert_null(dm_backup_list(pool, &store, &keys, &all));
    for (int i = 0; i < all->nelts; i++) {
        assert_null(dm_backup_remove(pool, &store, APR_ARRAY_IDX(all, i, dm_backup_info).id));
    }
}

static int64_t blob_rows(apr_pool_t *p, const char *path)
{
    dm_db *db;
    int64_t n = -1;
    int found = 0;

    assert_null(dm_db_open(p, path, NULL, &db));
    assert_null(dm_db_query_int64(db, p, "SELECT count(*) FROM blobs", &n, &found));
    dm_db_close(db);
    return n;
}

static void test_round_trip_gives_back_the_same_database(void **state)
{
    apr_pool_t *p;
    dm_backup_info made, got;
    apr_array_header_t *all;
    const char *path, *copy;

    (void)state;
    apr_pool_create(&p, pool);
    clear_store();
    path = populated(p, NULL);
    assert_null(dm_backup_create(p, &store, &keys, path, T0, &made));
    assert_int_equal(strncmp(made.id, "20261201T120000Z-", 17), 0);
    assert_true(made.object_bytes > DM_BACKUP_CHUNK);
    assert_null(dm_backup_list(p, &store, &keys, &all));
    assert_int_equal(all->nelts, 1);
    assert_string_equal(APR_ARRAY_IDX(all, 0, dm_backup_info).id, made.id);
    assert_int_equal(APR_ARRAY_IDX(all, 0, dm_backup_info).created, T0);

    copy = apr_pstrcat(p, path, ".copy", NULL);
    assert_null(dm_backup_fetch(p, &store, &keys, made.id, copy, &got));
    assert_string_equal(got.sha256, made.sha256);
    assert_int_equal(got.total_rows, made.total_rows);
    assert_int_equal(blob_rows(p, copy), 300);
    /* the copy has no WAL beside it: the file alone is the database */
    assert_int_not_equal(access(apr_pstrcat(p, copy, "-wal", NULL), F_OK), 0);
    /* and verify (newest, no id) says the same */
    assert_null(dm_backup_verify(p, &store, &keys, NULL, path, &got));
    assert_string_equal(got.id, made.id);
    apr_pool_destroy(p);
}

/* Overwrites one byte of the stored object (storage-local keeps it as a
 * file named by its key). */
static void poke(apr_pool_t *p, const char *key, long off, int xor_with)
{
    const char *file = apr_pstrcat(p, sdir, "/", key, NULL);
    int fd = open(file, O_RDWR);
    unsigned char c;

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, off), 1);
    c ^= (unsigned char)xor_with;
    assert_int_equal(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

static void expect_refused(apr_pool_t *p, const dm_backup_keys *k, const char *id,
                           const char *because)
{
    const char *dest = dm_fx_path(p, "refused");
    dm_err *e = dm_backup_fetch(p, &store, k, id, dest, NULL);

    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    if (!strstr(e->message, because)) {
        fail_msg("refusal \"%s\" does not say \"%s\"", e->message, because);
    }
    assert_int_not_equal(access(dest, F_OK), 0); /* nothing left behind */
}

static void test_a_flipped_byte_of_the_object_is_refused(void **state)
{
    apr_pool_t *p;
    dm_backup_info made;

    (void)state;
    apr_pool_create(&p, pool);
    clear_store();
    assert_null(dm_backup_create(p, &store, &keys, populated(p, NULL), T0, &made));
    poke(p, apr_pstrcat(p, "backups/", made.id, ".dmb", NULL), 30000, 0x01);
    expect_refused(p, &keys, made.id, "fails its authentication");
    poke(p, apr_pstrcat(p, "backups/", made.id, ".dmb", NULL), 30000, 0x01); /* undone */
    assert_null(dm_backup_verify(p, &store, &keys, made.id, dm_fx_path(p, "v"), NULL));
    apr_pool_destroy(p);
}

static void test_an_edited_manifest_is_refused(void **state)
{
    apr_pool_t *p;
    dm_backup_info made;
    const char *file;
    char *text;
    FILE *f;
    long len;

    (void)state;
    apr_pool_create(&p, pool);
    clear_store();
    assert_null(dm_backup_create(p, &store, &keys, populated(p, NULL), T0, &made));
    file = apr_pstrcat(p, sdir, "/backups/", made.id, ".json", NULL);
    f = fopen(file, "r+");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    text = apr_pcalloc(p, (apr_size_t)len + 1);
    fseek(f, 0, SEEK_SET);
    assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
    /* "blobs": 300 → 301 */
    char *at = strstr(text, "\"blobs\": 300");
    assert_non_null(at);
    at[11] = '1';
    fseek(f, 0, SEEK_SET);
    assert_int_equal(fwrite(text, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    expect_refused(p, &keys, made.id, "does not match its HMAC");
    apr_pool_destroy(p);
}

static void test_a_truncated_object_is_refused(void **state)
{
    apr_pool_t *p;
    dm_backup_info made;
    const char *file;

    (void)state;
    apr_pool_create(&p, pool);
    clear_store();
    assert_null(dm_backup_create(p, &store, &keys, populated(p, NULL), T0, &made));
    file = apr_pstrcat(p, sdir, "/backups/", made.id, ".dmb", NULL);
    /* whole chunks only: what is left still authenticates, chunk by chunk */
    assert_int_equal(truncate(file, 24 + (DM_BACKUP_CHUNK + 17)), 0);
    expect_refused(p, &keys, made.id, "truncated");
    apr_pool_destroy(p);
}

static void test_a_backup_under_another_secret_is_refused(void **state)
{
    apr_pool_t *p;
    dm_backup_info made;
    apr_array_header_t *all;

    (void)state;
    apr_pool_create(&p, pool);
    clear_store();
    assert_null(dm_backup_create(p, &store, &foreign, populated(p, NULL), T0, &made));
    expect_refused(p, &keys, made.id, "made under another secret key");
    /* listed as unusable, never pruned by this server */
    assert_null(dm_backup_list(p, &store, &keys, &all));
    assert_int_equal(all->nelts, 1);
    assert_int_equal(APR_ARRAY_IDX(all, 0, dm_backup_info).created, 0);
    assert_null(dm_backup_remove(p, &store, made.id));
    apr_pool_destroy(p);
}

static void test_retention_keeps_the_newest_of_each_hour_day_and_week(void **state)
{
    apr_pool_t *p;
    apr_array_header_t *all;
    const char *path;
    int64_t deleted = 0;
    static const int64_t at[] = {T0 - 86400, T0 - 3600 * 2, T0 - 3600, T0};

    (void)state;
    apr_pool_create(&p, pool);
    clear_store();
    path = populated(p, NULL);
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        assert_null(dm_backup_create(p, &store, &keys, path, at[i], NULL));
    }
    /* 2 hourly (T0, T0-1h) + 2 daily (T0, the day before) + 1 weekly (T0) */
    assert_null(dm_backup_prune(p, &store, &keys, 2, 2, 1, &deleted));
    assert_int_equal(deleted, 1);
    assert_null(dm_backup_list(p, &store, &keys, &all));
    assert_int_equal(all->nelts, 3);
    assert_int_equal(APR_ARRAY_IDX(all, 0, dm_backup_info).created, T0 - 86400);
    assert_int_equal(APR_ARRAY_IDX(all, 1, dm_backup_info).created, T0 - 3600);
    assert_int_equal(APR_ARRAY_IDX(all, 2, dm_backup_info).created, T0);
    /* 1 1 1: only the newest */
    assert_null(dm_backup_prune(p, &store, &keys, 1, 1, 1, &deleted));
    assert_int_equal(deleted, 2);
    assert_null(dm_backup_list(p, &store, &keys, &all));
    assert_int_equal(all->nelts, 1);
    assert_int_equal(APR_ARRAY_IDX(all, 0, dm_backup_info).created, T0);
    apr_pool_destroy(p);
}

static void test_a_database_held_open_is_not_swapped(void **state)
{
    apr_pool_t *p;
    dm_db *db = NULL;
    dm_backup_info made;
    const char *path, *fresh;
    int held = -1;
    dm_err *e;

    (void)state;
    apr_pool_create(&p, pool);
    clear_store();
    path = populated(p, &db);
    assert_null(dm_db_held_elsewhere(p, path, &held));
    assert_int_equal(held, 1);
    assert_null(dm_backup_create(p, &store, &keys, path, T0, &made));
    fresh = dm_fx_path(p, "fresh");
    assert_null(dm_backup_fetch(p, &store, &keys, made.id, fresh, NULL));
    e = dm_backup_swap_in(p, fresh, path, 1);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_non_null(strstr(e->message, "stop Apache first"));
    dm_db_close(db);
    assert_null(dm_db_held_elsewhere(p, path, &held));
    assert_int_equal(held, 0);
    /* not held, but there: only with force */
    e = dm_backup_swap_in(p, fresh, path, 0);
    assert_non_null(e);
    assert_non_null(strstr(e->message, "only with --force"));
    assert_null(dm_backup_swap_in(p, fresh, path, 1));
    assert_int_equal(access(apr_pstrcat(p, path, ".pre-restore", NULL), F_OK), 0);
    assert_int_equal(blob_rows(p, path), 300);
    apr_pool_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_gives_back_the_same_database),
        cmocka_unit_test(test_a_flipped_byte_of_the_object_is_refused),
        cmocka_unit_test(test_an_edited_manifest_is_refused),
        cmocka_unit_test(test_a_truncated_object_is_refused),
        cmocka_unit_test(test_a_backup_under_another_secret_is_refused),
        cmocka_unit_test(test_retention_keeps_the_newest_of_each_hour_day_and_week),
        cmocka_unit_test(test_a_database_held_open_is_not_swapped),
    };
    int rc;

    apr_initialize();
    dm_log_set_sink(quiet, NULL);
    if (dm_fx_init("backup") != 0) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, setup, teardown);
    dm_fx_done();
    apr_terminate();
    return rc;
}
