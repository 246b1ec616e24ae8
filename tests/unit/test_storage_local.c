/*
 * The storage-local plugin through the real plugin host (dm_plugins_declare/
 * set/init_all and the typed calls of plugins/storage.h), and the host's own
 * checks around every storage call: the key rules, a source that gives more
 * or fewer bytes than announced, a source that fails (nothing is left under
 * the key, an older object stays), streamed gets, list order; and, with the
 * test plugin storage_liar (tests/plugins/), that the host catches a plugin
 * breaking the contract.
 *
 * Needs the built plugins in $DM_PLUGINS and the test plugins in
 * $DM_TESTPLUGINS.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "plugins/plugin_host.h"
#include "plugins/storage.h"

static apr_pool_t *pool;
static dm_plugin_host *host;
static const dm_loaded_plugin *local;
static char dir[256];

static void quiet(void *baton, dm_level level, const char *msg)
{
    (void)baton;
    (void)level;
    (void)msg;
}

static void rm_tree(const char *path)
{
    struct stat sb;
    DIR *d;
    const struct dirent *e;

    if (lstat(path, &sb) != 0 || !S_ISDIR(sb.st_mode) || !(d = opendir(path))) {
        unlink(path);
        return;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            rm_tree(apr_psprintf(pool, "%s/%s", path, e->d_name));
        }
    }
    closedir(d);
    rmdir(path);
}

static int setup(void **state)
{
    const char *plugins = getenv("DM_PLUGINS");

    (void)state;
    assert_non_null(plugins);
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    snprintf(dir, sizeof(dir), "/tmp/dm-storage-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_null(dm_plugins_create(pool, &host));
    assert_null(dm_plugins_declare(host, "storage", "files",
                                   apr_psprintf(pool, "%s/storage-local.so", plugins)));
    assert_null(dm_plugins_set(host, "files", "dir", dir));
    assert_null(dm_plugins_init_all(host));
    local = dm_plugins_get(host, "files");
    assert_non_null(local);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rm_tree(dir);
    apr_pool_destroy(pool);
    return 0;
}

/* Every file under dir (relative names), sorted, joined by spaces. */
static const char *files_in(const char *sub)
{
    const char *path = sub ? apr_psprintf(pool, "%s/%s", dir, sub) : dir;
    DIR *d = opendir(path);
    const struct dirent *e;
    apr_array_header_t *names = apr_array_make(pool, 8, sizeof(const char *));
    const char *out = "";

    if (!d) {
        return "(none)";
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            APR_ARRAY_PUSH(names, const char *) = apr_pstrdup(pool, e->d_name);
        }
    }
    closedir(d);
    qsort(names->elts, (size_t)names->nelts, sizeof(const char *),
          (int (*)(const void *, const void *))strcmp);
    for (int i = 0; i < names->nelts; i++) {
        out = apr_pstrcat(pool, out, i ? " " : "", APR_ARRAY_IDX(names, i, const char *), NULL);
    }
    return out;
}

static void put_s(const char *key, const char *text)
{
    dm_message msg;
    assert_int_equal(
        dm_storage_put_buffer(host, local, pool, key, "text/plain", text, strlen(text), &msg),
        DM_OK);
}

static const char *get_s(const char *key, dm_status *st_out)
{
    dm_message msg;
    void *buf = NULL;
    size_t len = 0;
    dm_status st = dm_storage_get_buffer(host, local, pool, key, 1 << 20, &buf, &len, &msg);

    if (st_out) {
        *st_out = st;
    }
    return st == DM_OK ? apr_pstrmemdup(pool, buf, len) : NULL;
}

static void test_key_rules_letters_digits_and_slash_dot_underscore_dash_only(void **state)
{
    (void)state;
    assert_true(dm_storage_key_ok("kyc/42/id_front.bin"));
    assert_true(dm_storage_key_ok("backups/2026-12-06T10-00Z.db.gz"));
    assert_true(dm_storage_key_ok(".hidden"));
    assert_false(dm_storage_key_ok(""));
    assert_false(dm_storage_key_ok(NULL));
    assert_false(dm_storage_key_ok("/etc/passwd"));
    assert_false(dm_storage_key_ok("a/../b"));
    assert_false(dm_storage_key_ok(".."));
    assert_false(dm_storage_key_ok("a..b"));
    assert_false(dm_storage_key_ok("a//b"));
    assert_false(dm_storage_key_ok("a/./b"));
    assert_false(dm_storage_key_ok("a/"));
    assert_false(dm_storage_key_ok("a b"));
    assert_false(dm_storage_key_ok("a~b"));
    assert_false(dm_storage_key_ok("a\\b"));
    assert_false(dm_storage_key_ok("caf\xc3\xa9"));
    {
        char longkey[DM_STORAGE_KEY_MAX + 2];
        memset(longkey, 'k', sizeof(longkey));
        longkey[DM_STORAGE_KEY_MAX] = '\0';
        assert_true(dm_storage_key_ok(longkey));
        longkey[DM_STORAGE_KEY_MAX] = 'k';
        longkey[DM_STORAGE_KEY_MAX + 1] = '\0';
        assert_false(dm_storage_key_ok(longkey));
    }
    assert_true(dm_storage_prefix_ok(""));
    assert_true(dm_storage_prefix_ok("kyc/"));
    assert_true(dm_storage_prefix_ok("kyc/4"));
    assert_false(dm_storage_prefix_ok("/kyc"));
    assert_false(dm_storage_prefix_ok("../"));
}

static void test_a_bad_key_never_reaches_the_plugin(void **state)
{
    dm_message msg;
    (void)state;
    assert_int_equal(
        dm_storage_put_buffer(host, local, pool, "../escape", "text/plain", "x", 1, &msg),
        DM_ERR_INVALID);
    assert_string_equal(msg.text, "storage key is not valid (letters, digits and \"/._-\" only)");
    assert_int_equal(dm_storage_remove(host, local, pool, "/abs", &msg), DM_ERR_INVALID);
    assert_string_equal(files_in(NULL), "");
}

static void
test_put_then_get_gives_the_same_bytes_and_nested_keys_make_private_directories(void **state)
{
    struct stat sb;
    (void)state;
    put_s("kyc/42/id_front", "front");
    assert_string_equal(get_s("kyc/42/id_front", NULL), "front");
    assert_int_equal(stat(apr_psprintf(pool, "%s/kyc", dir), &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(stat(apr_psprintf(pool, "%s/kyc/42", dir), &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(stat(apr_psprintf(pool, "%s/kyc/42/id_front", dir), &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_string_equal(files_in("kyc/42"), "id_front");
}

static void test_put_replaces_an_object_whole(void **state)
{
    (void)state;
    put_s("a", "first version, long");
    put_s("a", "second");
    assert_string_equal(get_s("a", NULL), "second");
    assert_string_equal(files_in(NULL), "a");
}

/* A source of `give` bytes of 'x', failing with `fail_at` (>= 0) bytes given. */
typedef struct source {
    size_t give, given;
    long fail_at;
} source;

static dm_status source_read(void *ctx, void *buf, size_t cap, size_t *got)
{
    source *s = ctx;
    size_t n = s->give - s->given < cap ? s->give - s->given : cap;

    if (s->fail_at >= 0 && s->given >= (size_t)s->fail_at) {
        *got = 0;
        return DM_ERR_TEMPORARY;
    }
    if (s->fail_at >= 0 && s->given + n > (size_t)s->fail_at) {
        n = (size_t)s->fail_at - s->given;
    }
    memset(buf, 'x', n);
    s->given += n;
    *got = n;
    return DM_OK;
}

static void test_a_source_shorter_than_announced_leaves_no_object(void **state)
{
    source src = {100, 0, -1};
    dm_message msg;
    dm_status st;
    (void)state;
    assert_int_equal(dm_storage_put(host, local, pool, "docs/short", "application/pdf", 200,
                                    source_read, &src, &msg),
                     DM_ERR_INVALID);
    assert_string_equal(msg.text, "storage put of docs/short aborted: the source ended before the "
                                  "announced length");
    assert_null(get_s("docs/short", &st));
    assert_int_equal(st, DM_ERR_NOT_FOUND);
    assert_string_equal(files_in("docs"), "");
}

static void test_a_source_longer_than_announced_leaves_no_object(void **state)
{
    source src = {300, 0, -1};
    dm_message msg;
    dm_status st;
    (void)state;
    assert_int_equal(dm_storage_put(host, local, pool, "docs/long", "application/pdf", 200,
                                    source_read, &src, &msg),
                     DM_ERR_INVALID);
    assert_string_equal(msg.text,
                        "storage put of docs/long aborted: the source gave more bytes than the "
                        "announced length");
    assert_null(get_s("docs/long", &st));
    assert_int_equal(st, DM_ERR_NOT_FOUND);
    assert_string_equal(files_in("docs"), "");
}

static void test_a_failing_source_keeps_the_older_object_and_leaves_no_temporary_file(void **state)
{
    /* 200 KiB: more than one chunk is written before the failure. */
    source src = {200 * 1024, 0, 150 * 1024};
    dm_message msg;
    (void)state;
    put_s("docs/keep", "old");
    assert_int_equal(
        dm_storage_put(host, local, pool, "docs/keep", NULL, 200 * 1024, source_read, &src, &msg),
        DM_ERR_TEMPORARY);
    assert_string_equal(get_s("docs/keep", NULL), "old");
    assert_string_equal(files_in("docs"), "keep");
}

typedef struct chunks {
    int n;
    size_t total;
} chunks;

static dm_status count_chunks(void *ctx, const void *buf, size_t len)
{
    chunks *c = ctx;
    const char *b = buf;
    for (size_t i = 0; i < len; i++) {
        if (b[i] != 'x') {
            return DM_ERR_INTERNAL;
        }
    }
    c->n++;
    c->total += len;
    return DM_OK;
}

static void test_get_streams_a_large_object_in_chunks_with_its_size_first(void **state)
{
    source src = {1024 * 1024 + 7, 0, -1};
    chunks c = {0, 0};
    int64_t size = 0;
    dm_message msg;
    (void)state;
    assert_int_equal(dm_storage_put(host, local, pool, "big", "application/octet-stream",
                                    1024 * 1024 + 7, source_read, &src, &msg),
                     DM_OK);
    assert_int_equal(dm_storage_get(host, local, pool, "big", count_chunks, &c, &size, &msg),
                     DM_OK);
    assert_int_equal(size, 1024 * 1024 + 7);
    assert_int_equal(c.total, 1024 * 1024 + 7);
    assert_int_equal(c.n, 17); /* 64 KiB chunks */
}

static void test_a_large_object_is_stored_whole_and_its_removal_leaves_no_file(void **state)
{
    /* over two 8 MB write-behind pieces and a remainder; removed in pieces */
    int64_t n = 2 * 8 * 1024 * 1024 + 7;
    source src = {(size_t)n, 0, -1};
    chunks c = {0, 0};
    int64_t size = 0;
    dm_status st;
    dm_message msg;
    (void)state;
    assert_int_equal(dm_storage_put(host, local, pool, "backups/big", "application/octet-stream", n,
                                    source_read, &src, &msg),
                     DM_OK);
    assert_int_equal(
        dm_storage_get(host, local, pool, "backups/big", count_chunks, &c, &size, &msg), DM_OK);
    assert_int_equal(size, n);
    assert_int_equal(c.total, n);
    assert_string_equal(files_in("backups"), "big");
    assert_int_equal(dm_storage_remove(host, local, pool, "backups/big", &msg), DM_OK);
    assert_null(get_s("backups/big", &st));
    assert_int_equal(st, DM_ERR_NOT_FOUND);
    assert_string_equal(files_in("backups"), "");
}

static void test_an_empty_object_is_an_object(void **state)
{
    dm_message msg;
    (void)state;
    assert_int_equal(dm_storage_put_buffer(host, local, pool, "empty", NULL, "", 0, &msg), DM_OK);
    assert_string_equal(get_s("empty", NULL), "");
}

static void test_get_of_a_missing_object_is_not_found(void **state)
{
    dm_status st;
    (void)state;
    assert_null(get_s("nothing/here", &st));
    assert_int_equal(st, DM_ERR_NOT_FOUND);
    assert_null(get_s("nothing", &st));
    assert_int_equal(st, DM_ERR_NOT_FOUND);
}

static void test_get_buffer_refuses_an_object_over_its_limit(void **state)
{
    dm_message msg;
    void *buf = NULL;
    size_t len = 0;
    (void)state;
    put_s("ten", "0123456789");
    assert_int_equal(dm_storage_get_buffer(host, local, pool, "ten", 9, &buf, &len, &msg),
                     DM_ERR_INVALID);
    assert_string_equal(msg.text, "object ten is larger than 9 bytes");
    assert_null(buf);
}

static void test_remove_deletes_and_a_missing_object_is_ok(void **state)
{
    dm_message msg;
    dm_status st;
    (void)state;
    put_s("kyc/1/selfie", "s");
    assert_int_equal(dm_storage_remove(host, local, pool, "kyc/1/selfie", &msg), DM_OK);
    assert_null(get_s("kyc/1/selfie", &st));
    assert_int_equal(st, DM_ERR_NOT_FOUND);
    assert_int_equal(dm_storage_remove(host, local, pool, "kyc/1/selfie", &msg), DM_OK);
    assert_int_equal(dm_storage_remove(host, local, pool, "no/such/dir", &msg), DM_OK);
}

static dm_status collect(void *ctx, const char *key, int64_t size, int64_t mtime)
{
    char **out = ctx;
    (void)mtime;
    *out = apr_psprintf(pool, "%s%s%s=%" APR_INT64_T_FMT, *out, **out ? " " : "", key, size);
    return DM_OK;
}

static void test_list_gives_keys_under_the_prefix_in_byte_order(void **state)
{
    char *out = "";
    dm_message msg;
    (void)state;
    put_s("a/b", "12");
    put_s("a-c", "123");
    put_s("a/a/z", "1");
    put_s("b", "");
    put_s("a0", "1234");
    assert_int_equal(dm_storage_list(host, local, pool, "", collect, &out, &msg), DM_OK);
    /* '-' < '/' < '0': a-c before a/…, a/… before a0 */
    assert_string_equal(out, "a-c=3 a/a/z=1 a/b=2 a0=4 b=0");
    out = "";
    assert_int_equal(dm_storage_list(host, local, pool, "a/", collect, &out, &msg), DM_OK);
    assert_string_equal(out, "a/a/z=1 a/b=2");
    out = "";
    assert_int_equal(dm_storage_list(host, local, pool, "a/a", collect, &out, &msg), DM_OK);
    assert_string_equal(out, "a/a/z=1");
    out = "";
    assert_int_equal(dm_storage_list(host, local, pool, "a", collect, &out, &msg), DM_OK);
    assert_string_equal(out, "a-c=3 a/a/z=1 a/b=2 a0=4");
    out = "";
    assert_int_equal(dm_storage_list(host, local, pool, "zz/", collect, &out, &msg), DM_OK);
    assert_string_equal(out, "");
}

static void test_list_skips_temporary_files_and_links(void **state)
{
    char *out = "";
    dm_message msg;
    FILE *f;
    (void)state;
    put_s("real", "r");
    f = fopen(apr_psprintf(pool, "%s/.put~0011223344556677", dir), "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(symlink("/etc/passwd", apr_psprintf(pool, "%s/link", dir)), 0);
    assert_int_equal(dm_storage_list(host, local, pool, "", collect, &out, &msg), DM_OK);
    assert_string_equal(out, "real=1");
    {
        dm_status st;
        assert_null(get_s("link", &st));
        assert_int_equal(st, DM_ERR_NOT_FOUND);
    }
}

static void test_the_only_storage_plugin_is_found_and_a_wrong_name_is_explained(void **state)
{
    const char *why = NULL;
    (void)state;
    assert_ptr_equal(dm_storage_plugin(host, NULL, &why), local);
    assert_ptr_equal(dm_storage_plugin(host, "files", &why), local);
    assert_null(dm_storage_plugin(host, "nope", &why));
    assert_string_equal(why,
                        "the configured storage (DeepMineStorage) is not a loaded storage plugin");
}

/* ---- the host's checks, against a lying plugin ---- */

static const dm_loaded_plugin *liar(const char *what)
{
    const char *dirp = getenv("DM_TESTPLUGINS");
    const char *name = apr_psprintf(pool, "liar_%s", what);

    assert_non_null(dirp);
    assert_null(
        dm_plugins_declare(host, "storage", name, apr_psprintf(pool, "%s/storage_liar.so", dirp)));
    assert_null(dm_plugins_set(host, name, "lie", what));
    assert_null(dm_plugins_init_all(host));
    return dm_plugins_get(host, name);
}

static int liar_setup(void **state)
{
    (void)state;
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    assert_null(dm_plugins_create(pool, &host));
    return 0;
}

static int liar_teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool);
    return 0;
}

static void test_a_plugin_that_stores_without_reading_every_byte_is_an_internal_error(void **state)
{
    dm_message msg;
    const dm_loaded_plugin *pl = liar("short_read");
    (void)state;
    assert_int_equal(dm_storage_put_buffer(host, pl, pool, "k", NULL, "0123456789", 10, &msg),
                     DM_ERR_INTERNAL);
    assert_string_equal(msg.text,
                        "plugin liar_short_read: put of k returned ok without reading every byte");
}

static void test_a_plugin_that_ignores_an_aborted_source_is_an_internal_error(void **state)
{
    source src = {100, 0, 5};
    dm_message msg;
    const dm_loaded_plugin *pl = liar("ignore_abort");
    (void)state;
    assert_int_equal(dm_storage_put(host, pl, pool, "k", NULL, 100, source_read, &src, &msg),
                     DM_ERR_INTERNAL);
    assert_string_equal(msg.text,
                        "plugin liar_ignore_abort: put of k returned ok after its source failed");
}

static void test_a_get_delivering_less_than_it_announced_is_an_internal_error(void **state)
{
    dm_message msg;
    void *buf;
    size_t len;
    const dm_loaded_plugin *pl = liar("short_get");
    (void)state;
    assert_int_equal(dm_storage_get_buffer(host, pl, pool, "k", 100, &buf, &len, &msg),
                     DM_ERR_INTERNAL);
    assert_string_equal(msg.text, "plugin liar_short_get: get of k delivered 4 bytes of 10");
}

static void test_a_list_out_of_order_outside_its_prefix_or_with_a_bad_key_is_refused(void **state)
{
    static const char *const lies[] = {"unordered", "outside", "bad_key"};
    static const char *const why[] = {
        "plugin liar_unordered: listed keys out of order",
        "plugin liar_outside: listed a malformed key, one outside the prefix, or a negative size",
        "plugin liar_bad_key: listed a malformed key, one outside the prefix, or a negative size"};
    (void)state;
    for (size_t i = 0; i < 3; i++) {
        char *out = "";
        dm_message msg;
        const dm_loaded_plugin *pl;
        assert_null(dm_plugins_create(pool, &host));
        pl = liar(lies[i]);
        assert_int_equal(dm_storage_list(host, pl, pool, "p/", collect, &out, &msg),
                         DM_ERR_INTERNAL);
        assert_string_equal(msg.text, why[i]);
    }
}

static void test_a_made_up_status_becomes_internal(void **state)
{
    dm_message msg;
    const dm_loaded_plugin *pl = liar("status");
    (void)state;
    assert_int_equal(dm_storage_remove(host, pl, pool, "k", &msg), DM_ERR_INTERNAL);
    assert_string_equal(msg.text, "plugin liar_status: remove returned the unknown status 42");
}

static void test_an_honest_list_passes_the_checks(void **state)
{
    char *out = "";
    dm_message msg;
    const dm_loaded_plugin *pl = liar("none");
    (void)state;
    assert_int_equal(dm_storage_list(host, pl, pool, "p/", collect, &out, &msg), DM_OK);
    assert_string_equal(out, "p/a=1 p/b=2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_rules_letters_digits_and_slash_dot_underscore_dash_only),
        cmocka_unit_test_setup_teardown(test_a_bad_key_never_reaches_the_plugin, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_put_then_get_gives_the_same_bytes_and_nested_keys_make_private_directories, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_put_replaces_an_object_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_source_shorter_than_announced_leaves_no_object,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_source_longer_than_announced_leaves_no_object, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_failing_source_keeps_the_older_object_and_leaves_no_temporary_file, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_get_streams_a_large_object_in_chunks_with_its_size_first, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_large_object_is_stored_whole_and_its_removal_leaves_no_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_empty_object_is_an_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_of_a_missing_object_is_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_buffer_refuses_an_object_over_its_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_remove_deletes_and_a_missing_object_is_ok, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_list_gives_keys_under_the_prefix_in_byte_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_list_skips_temporary_files_and_links, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_the_only_storage_plugin_is_found_and_a_wrong_name_is_explained, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_plugin_that_stores_without_reading_every_byte_is_an_internal_error, liar_setup,
            liar_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_plugin_that_ignores_an_aborted_source_is_an_internal_error, liar_setup,
            liar_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_get_delivering_less_than_it_announced_is_an_internal_error, liar_setup,
            liar_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_list_out_of_order_outside_its_prefix_or_with_a_bad_key_is_refused, liar_setup,
            liar_teardown),
        cmocka_unit_test_setup_teardown(test_a_made_up_status_becomes_internal, liar_setup,
                                        liar_teardown),
        cmocka_unit_test_setup_teardown(test_an_honest_list_passes_the_checks, liar_setup,
                                        liar_teardown),
    };

    apr_initialize();
    dm_log_set_sink(quiet, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
