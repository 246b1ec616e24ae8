/*
 * Plugin host: loading and refusing plugins (ABI, kind, tables), settings
 * (env:, file:, required), init/fini, the host table's functions, and the
 * mailer-spool plugin writing .eml files.
 *
 * Needs the built test plugins in $DM_TESTPLUGINS (tests/plugins) and the
 * real plugins in $DM_PLUGINS (the .so files built from plugins/).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_dso.h>
#include <apr_general.h>
#include <apr_strings.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "plugins/mailer.h"
#include "plugins/plugin_host.h"

static apr_pool_t *pool;
static dm_plugin_host *host;

/* ---- helpers ---- */

static dm_str S(const char *s)
{
    dm_str out = {s, strlen(s)};
    return out;
}

static const char *plugin_path(const char *env, const char *file)
{
    const char *dir = getenv(env);
    if (!dir) {
        fail_msg("%s is not set: point it at the built plugins", env);
    }
    return apr_psprintf(pool, "%s/%s.so", dir, file);
}

static const char *tp(const char *name)
{
    return plugin_path("DM_TESTPLUGINS", name);
}

static const char *rp(const char *name)
{
    return plugin_path("DM_PLUGINS", name);
}

/* The ABI minor as a string literal, for expected log lines. */
#define STR(x) #x
#define XSTR(x) STR(x)

/* Every log line, for the assertions on numbered lines. */
static char logbuf[65536];

static void capture_sink(void *baton, dm_level level, const char *msg)
{
    size_t used = strlen(logbuf);
    (void)baton;
    snprintf(logbuf + used, sizeof(logbuf) - used, "[%d] %s\n", (int)level, msg);
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!haystack || !strstr(haystack, needle)) {
        fail_msg("expected \"%s\" to contain \"%s\"", haystack ? haystack : "(null)", needle);
    }
}

/* A refusal: the error names the plugin and says the reason. */
static void assert_refused(dm_err *e, dm_code code, const char *name, const char *reason)
{
    if (!e) {
        fail_msg("expected a refusal of plugin \"%s\" (%s)", name, reason);
    }
    assert_int_equal(e->code, code);
    assert_contains(e->message, apr_psprintf(pool, "plugin \"%s\"", name));
    assert_contains(e->message, reason);
}

static int setup(void **state)
{
    (void)state;
    logbuf[0] = '\0';
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    assert_null(dm_plugins_create(pool, &host));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool);
    return 0;
}

/* ---- declaring: refusals ---- */

static void test_unknown_kind_is_refused(void **state)
{
    (void)state;
    assert_refused(dm_plugins_declare(host, "backup", "st", tp("kind_payment")), DM_E_INVALID, "st",
                   "unknown kind \"backup\", expected payment, kyc, mailer, storage or monitor");
    assert_null(dm_plugins_get(host, "st"));
}

static void test_duplicate_name_is_refused(void **state)
{
    (void)state;
    assert_null(dm_plugins_declare(host, "mailer", "m", tp("abi_newer")));
    assert_refused(dm_plugins_declare(host, "mailer", "m", tp("abi_older")), DM_E_INVALID, "m",
                   "a plugin of that name is already declared");
    assert_int_equal(dm_plugins_all(host)->nelts, 1);
}

static void test_invalid_name_is_refused(void **state)
{
    (void)state;
    assert_refused(dm_plugins_declare(host, "mailer", "two words", tp("abi_newer")), DM_E_INVALID,
                   "two words", "the name must be");
}

static void test_missing_file_is_refused_with_dlerror(void **state)
{
    const char *path = tp("does_not_exist");
    dm_err *e;
    (void)state;
    e = dm_plugins_declare(host, "mailer", "ghost", path);
    assert_refused(e, DM_E_UNAVAILABLE, "ghost", "cannot load it: ");
    assert_contains(e->message, path);
    assert_contains(e->message, "No such file or directory");
}

static void test_bare_file_name_is_refused(void **state)
{
    (void)state;
    assert_refused(dm_plugins_declare(host, "mailer", "bare", "mailer-spool.so"), DM_E_INVALID,
                   "bare", "give the path of the .so");
}

static void test_missing_entry_symbol_is_refused(void **state)
{
    (void)state;
    assert_refused(dm_plugins_declare(host, "mailer", "ne", tp("no_entry")), DM_E_UNAVAILABLE, "ne",
                   "does not export deepmine_plugin_entry");
}

static void test_entry_returning_null_is_refused(void **state)
{
    (void)state;
    assert_refused(dm_plugins_declare(host, "mailer", "en", tp("entry_null")), DM_E_UNAVAILABLE,
                   "en", "its entry returned no descriptor");
}

static void test_descriptor_smaller_than_1_0_is_refused(void **state)
{
    (void)state;
    assert_refused(dm_plugins_declare(host, "mailer", "ds", tp("desc_small")), DM_E_UNAVAILABLE,
                   "ds",
                   apr_psprintf(pool, "its descriptor is %u bytes, smaller than the %u bytes",
                                (unsigned)(DM_PLUGIN_SIZE_1_0 - sizeof(void *)),
                                (unsigned)DM_PLUGIN_SIZE_1_0));
}

static void test_other_abi_major_is_refused(void **state)
{
    const char *path = tp("abi_major2");
    dm_err *e;
    (void)state;
    e = dm_plugins_declare(host, "mailer", "m2", path);
    assert_non_null(e);
    assert_string_equal(e->message,
                        apr_psprintf(pool,
                                     "plugin \"m2\" (%s): built for plugin ABI 2, this host "
                                     "speaks ABI 1",
                                     path));
    assert_null(dm_plugins_get(host, "m2"));
}

static void test_kind_mismatch_is_refused(void **state)
{
    (void)state;
    assert_refused(dm_plugins_declare(host, "payment", "pm", tp("abi_newer")), DM_E_INVALID, "pm",
                   "is a mailer plugin, declared as payment");
    assert_refused(dm_plugins_declare(host, "kyc", "pk", tp("kind_payment")), DM_E_INVALID, "pk",
                   "is a payment plugin, declared as kyc");
}

static void test_incomplete_function_table_is_refused(void **state)
{
    (void)state;
    setenv("DM_TEST_BAD_OPS", "null", 1);
    assert_refused(dm_plugins_declare(host, "mailer", "bo1", tp("bad_ops")), DM_E_UNAVAILABLE,
                   "bo1", "its descriptor has no mailer function table");
    setenv("DM_TEST_BAD_OPS", "small", 1);
    assert_refused(dm_plugins_declare(host, "mailer", "bo2", tp("bad_ops")), DM_E_UNAVAILABLE,
                   "bo2",
                   apr_psprintf(pool, "its mailer table is %u bytes, too small for send",
                                (unsigned)offsetof(dm_mailer_ops, send)));
    setenv("DM_TEST_BAD_OPS", "nosend", 1);
    assert_refused(dm_plugins_declare(host, "mailer", "bo3", tp("bad_ops")), DM_E_UNAVAILABLE,
                   "bo3", "its mailer table lacks send");
    unsetenv("DM_TEST_BAD_OPS");
    assert_int_equal(dm_plugins_all(host)->nelts, 0);
}

/* ---- declaring: what loads ---- */

static void test_older_minor_loads_and_has_no_health(void **state)
{
    const dm_loaded_plugin *pl;
    (void)state;
    assert_null(dm_plugins_declare(host, "mailer", "old", tp("abi_older")));
    assert_null(dm_plugins_init_all(host));
    pl = dm_plugins_get(host, "old");
    assert_non_null(pl);
    assert_int_equal(pl->desc->abi_minor, 0);
    assert_int_equal(pl->desc->size, DM_PLUGIN_SIZE_1_0);
    assert_false(DM_HAS_FIELD(pl->desc, dm_plugin, health));
    assert_true(pl->initialised);
}

static void test_newer_minor_loads(void **state)
{
    const dm_loaded_plugin *pl;
    (void)state;
    assert_null(dm_plugins_declare(host, "mailer", "new", tp("abi_newer")));
    assert_null(dm_plugins_init_all(host));
    pl = dm_plugins_get(host, "new");
    assert_non_null(pl);
    assert_int_equal(pl->desc->abi_minor, DM_PLUGIN_ABI_MINOR + 1);
    assert_true(pl->desc->size > sizeof(dm_plugin));
    assert_true(DM_HAS_FIELD(pl->desc, dm_plugin, health));
    assert_string_equal(pl->name, "new");
    assert_string_equal(pl->desc->name, "abi-newer");
    assert_int_equal(pl->kind, DM_PLUGIN_MAILER);
}

static void test_payment_plugin_loads_and_is_called(void **state)
{
    const dm_loaded_plugin *pl;
    const dm_payment_ops *ops;
    dm_payment_checkout in = {.size = sizeof(in)};
    dm_payment_checkout_result out = {.size = sizeof(out)};
    dm_message msg = {{0}};
    dm_call *call;
    (void)state;
    assert_null(dm_plugins_declare(host, "payment", "pay", tp("kind_payment")));
    assert_null(dm_plugins_init_all(host));
    pl = dm_plugins_get(host, "pay");
    assert_int_equal(pl->kind, DM_PLUGIN_PAYMENT);
    assert_string_equal(dm_plugin_kind_name(pl->kind), "payment");
    call = dm_plugins_call(host, pl, pool);
    assert_non_null(call);
    ops = pl->desc->ops;
    assert_int_equal(ops->create_checkout(call, &in, &out, &msg), DM_ERR_UNSUPPORTED);
    assert_string_equal(msg.text, "kind_payment takes no payments");
}

static void test_plugins_are_listed_in_declaration_order(void **state)
{
    const apr_array_header_t *all;
    (void)state;
    assert_null(dm_plugins_declare(host, "mailer", "b", tp("abi_newer")));
    assert_null(dm_plugins_declare(host, "payment", "a", tp("kind_payment")));
    all = dm_plugins_all(host);
    assert_int_equal(all->nelts, 2);
    assert_string_equal(APR_ARRAY_IDX(all, 0, dm_loaded_plugin *)->name, "b");
    assert_string_equal(APR_ARRAY_IDX(all, 1, dm_loaded_plugin *)->name, "a");
    assert_null(dm_plugins_get(host, "c"));
}

/* ---- settings and init ---- */

static void test_setting_for_undeclared_plugin_is_refused(void **state)
{
    (void)state;
    assert_null(dm_plugins_set(host, "nobody", "api_key", "x"));
    assert_refused(dm_plugins_init_all(host), DM_E_INVALID, "nobody",
                   "setting \"api_key\" is given, but no plugin of that name is declared");
}

static void test_missing_required_setting_is_refused(void **state)
{
    (void)state;
    assert_null(dm_plugins_declare(host, "mailer", "ns", tp("needs_setting")));
    assert_refused(dm_plugins_init_all(host), DM_E_INVALID, "ns",
                   "required setting \"api_key\" is missing");
    assert_false(dm_plugins_get(host, "ns")->initialised);
}

static void test_literal_setting_reaches_init(void **state)
{
    (void)state;
    /* Settings may come before the declaration; the last one wins. */
    assert_null(dm_plugins_set(host, "ns", "api_key", "sk_wrong"));
    assert_null(dm_plugins_declare(host, "mailer", "ns", tp("needs_setting")));
    assert_null(dm_plugins_set(host, "ns", "api_key", "sk_test_4242"));
    assert_null(dm_plugins_init_all(host));
    assert_true(dm_plugins_get(host, "ns")->initialised);
}

static void test_env_setting_is_resolved(void **state)
{
    (void)state;
    setenv("DM_TEST_API_KEY", "sk_test_4242", 1);
    assert_null(dm_plugins_declare(host, "mailer", "ns", tp("needs_setting")));
    assert_null(dm_plugins_set(host, "ns", "api_key", "env:DM_TEST_API_KEY"));
    assert_null(dm_plugins_init_all(host));
    unsetenv("DM_TEST_API_KEY");
}

static void test_unset_env_variable_is_refused(void **state)
{
    (void)state;
    unsetenv("DM_TEST_NO_SUCH_VAR");
    assert_null(dm_plugins_declare(host, "mailer", "ns", tp("needs_setting")));
    assert_null(dm_plugins_set(host, "ns", "api_key", "env:DM_TEST_NO_SUCH_VAR"));
    assert_refused(dm_plugins_init_all(host), DM_E_UNAVAILABLE, "ns",
                   "environment variable DM_TEST_NO_SUCH_VAR is not set");
}

static const char *write_temp_file(const char *content)
{
    char *path = apr_pstrdup(pool, "/tmp/dm-test-setting-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
    return path;
}

static void test_file_setting_drops_one_trailing_newline(void **state)
{
    const char *path = write_temp_file("sk_test_4242\n");
    (void)state;
    assert_null(dm_plugins_declare(host, "mailer", "ns", tp("needs_setting")));
    assert_null(dm_plugins_set(host, "ns", "api_key", apr_pstrcat(pool, "file:", path, NULL)));
    assert_null(dm_plugins_init_all(host));
    unlink(path);
}

static void test_file_setting_keeps_a_second_newline(void **state)
{
    const char *path = write_temp_file("sk_test_4242\n\n");
    (void)state;
    assert_null(dm_plugins_declare(host, "mailer", "ns", tp("needs_setting")));
    assert_null(dm_plugins_set(host, "ns", "api_key", apr_pstrcat(pool, "file:", path, NULL)));
    assert_refused(dm_plugins_init_all(host), DM_E_INVALID, "ns",
                   "api_key is \"sk_test_4242\n\", expected");
    unlink(path);
}

static void test_unreadable_file_setting_is_refused(void **state)
{
    (void)state;
    assert_null(dm_plugins_declare(host, "mailer", "ns", tp("needs_setting")));
    assert_null(dm_plugins_set(host, "ns", "api_key", "file:/nonexistent/dm-secret"));
    assert_refused(dm_plugins_init_all(host), DM_E_UNAVAILABLE, "ns",
                   "setting \"api_key\": cannot read /nonexistent/dm-secret: No such file");
}

static void test_init_failure_is_refused_with_the_plugins_message(void **state)
{
    (void)state;
    assert_null(dm_plugins_declare(host, "mailer", "bad", tp("init_fails")));
    assert_refused(dm_plugins_init_all(host), DM_E_INVALID, "bad",
                   "init failed (configuration error): api_key is malformed");
    assert_false(dm_plugins_get(host, "bad")->initialised);
}

static void test_init_logs_a_numbered_notice(void **state)
{
    (void)state;
    assert_null(dm_plugins_declare(host, "mailer", "ns", tp("needs_setting")));
    assert_null(dm_plugins_set(host, "ns", "api_key", "sk_test_4242"));
    assert_null(dm_plugins_init_all(host));
    assert_contains(logbuf,
                    "[5] DM00100: plugin ns (mailer needs-setting 1.0.0) loaded (ABI 1." XSTR(
                        DM_PLUGIN_ABI_MINOR) ")");
}

static void test_fini_runs_once(void **state)
{
    apr_pool_t *p;
    dm_plugin_host *h;
    (void)state;
    unsetenv("DM_TEST_FINI_COUNT");
    apr_pool_create(&p, pool);
    assert_null(dm_plugins_create(p, &h));
    assert_null(dm_plugins_declare(h, "mailer", "ns", tp("needs_setting")));
    assert_null(dm_plugins_set(h, "ns", "api_key", "sk_test_4242"));
    assert_null(dm_plugins_init_all(h));
    assert_null(getenv("DM_TEST_FINI_COUNT"));
    dm_plugins_fini_all(h);
    assert_string_equal(getenv("DM_TEST_FINI_COUNT"), "1");
    assert_false(dm_plugins_get(h, "ns")->initialised);
    /* The pool's cleanup runs fini_all again: fini must not run twice. */
    apr_pool_destroy(p);
    assert_string_equal(getenv("DM_TEST_FINI_COUNT"), "1");
    unsetenv("DM_TEST_FINI_COUNT");
}

static void test_fini_runs_when_the_pool_goes(void **state)
{
    apr_pool_t *p;
    dm_plugin_host *h;
    (void)state;
    unsetenv("DM_TEST_FINI_COUNT");
    apr_pool_create(&p, pool);
    assert_null(dm_plugins_create(p, &h));
    assert_null(dm_plugins_declare(h, "mailer", "ns", tp("needs_setting")));
    assert_null(dm_plugins_set(h, "ns", "api_key", "sk_test_4242"));
    assert_null(dm_plugins_init_all(h));
    apr_pool_destroy(p); /* fini is in the .so: it must run before the dlclose */
    assert_string_equal(getenv("DM_TEST_FINI_COUNT"), "1");
    unsetenv("DM_TEST_FINI_COUNT");
}

static void test_changes_after_init_are_refused(void **state)
{
    (void)state;
    assert_null(dm_plugins_declare(host, "mailer", "new", tp("abi_newer")));
    assert_null(dm_plugins_init_all(host));
    assert_refused(dm_plugins_set(host, "new", "k", "v"), DM_E_INVALID, "new",
                   "after the plugins were initialised");
    assert_refused(dm_plugins_declare(host, "mailer", "old", tp("abi_older")), DM_E_INVALID, "old",
                   "after the plugins were initialised");
}

/* ---- the host table, through the host_probe plugin ---- */

static const dm_host *probe_slot;

static dm_call *probe(void)
{
    char slot[32];

    probe_slot = NULL;
    snprintf(slot, sizeof(slot), "%p", (void *)&probe_slot); /* APR's %p is another thing */
    assert_null(dm_plugins_declare(host, "mailer", "probe", tp("host_probe")));
    assert_null(dm_plugins_set(host, "probe", "slot", slot));
    assert_null(dm_plugins_init_all(host));
    assert_non_null(probe_slot);
    return dm_plugins_call(host, dm_plugins_get(host, "probe"), pool);
}

static void test_host_table_is_versioned(void **state)
{
    (void)state;
    probe();
    assert_int_equal(probe_slot->size, sizeof(dm_host));
    assert_int_equal(probe_slot->abi_major, DM_PLUGIN_ABI_MAJOR);
    assert_int_equal(probe_slot->abi_minor, DM_PLUGIN_ABI_MINOR);
}

static void test_host_log_is_prefixed_and_numbered(void **state)
{
    dm_call *call;
    (void)state;
    call = probe();
    probe_slot->log(call, DM_LOG_WARN, "provider answered 503");
    assert_contains(logbuf, "[4] DM00101: plugin probe: provider answered 503");
}

static void test_host_setting_and_alloc(void **state)
{
    dm_call *call;
    (void)state;
    call = probe();
    assert_non_null(probe_slot->setting(call, "slot"));
    assert_null(probe_slot->setting(call, "nothing"));
    assert_non_null(probe_slot->alloc(call, 0));
    assert_non_null(probe_slot->alloc(call, 1000));
    assert_null(probe_slot->alloc(call, (size_t)16 * 1024 * 1024));
    assert_null(probe_slot->alloc(call, SIZE_MAX));
}

static const char *hex(const unsigned char *b, size_t n)
{
    char *out = apr_palloc(pool, n * 2 + 1);
    for (size_t i = 0; i < n; i++) {
        sprintf(out + 2 * i, "%02x", b[i]);
    }
    out[n * 2] = '\0';
    return out;
}

static void test_hmac_sha256_matches_rfc4231(void **state)
{
    unsigned char key[131], out[32];
    const char *data6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    (void)state;
    probe();
    /* Test case 1: a 20-byte key. */
    memset(key, 0x0b, 20);
    probe_slot->hmac_sha256(key, 20, "Hi There", 8, out);
    assert_string_equal(hex(out, 32),
                        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    /* Test case 2: a 4-byte key. */
    probe_slot->hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, out);
    assert_string_equal(hex(out, 32),
                        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* Test case 6: a key longer than the block. */
    memset(key, 0xaa, sizeof(key));
    probe_slot->hmac_sha256(key, sizeof(key), data6, strlen(data6), out);
    assert_string_equal(hex(out, 32),
                        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

static void test_sha256_hex_and_equal_ct(void **state)
{
    unsigned char out[32], r1[16] = {0}, r2[16] = {0};
    dm_call *call;
    (void)state;
    call = probe();
    probe_slot->sha256("abc", 3, out);
    assert_string_equal(probe_slot->hex_encode(call, out, 32),
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_string_equal(probe_slot->hex_encode(call, "", 0), "");
    assert_true(probe_slot->equal_ct("secret", "secret", 6));
    assert_false(probe_slot->equal_ct("secret", "secreT", 6));
    probe_slot->random_bytes(r1, sizeof(r1));
    probe_slot->random_bytes(r2, sizeof(r2));
    assert_memory_not_equal(r1, r2, sizeof(r1));
}

static void test_base64_is_the_padded_original_variant_and_strict(void **state)
{
    dm_call *call;
    unsigned char *d;
    size_t n = 99;
    (void)state;
    call = probe();
    assert_string_equal(probe_slot->base64_encode(call, "foobar", 6), "Zm9vYmFy");
    assert_string_equal(probe_slot->base64_encode(call, "fo", 2), "Zm8=");
    assert_string_equal(probe_slot->base64_encode(call, "\xfb\xff", 2), "+/8=");
    assert_string_equal(probe_slot->base64_encode(call, "", 0), "");
    d = probe_slot->base64_decode(call, "Zm8=", 4, &n);
    assert_non_null(d);
    assert_int_equal(n, 2);
    assert_memory_equal(d, "fo", 2);
    d = probe_slot->base64_decode(call, "+/8=", 4, &n);
    assert_non_null(d);
    assert_memory_equal(d, "\xfb\xff", 2);
    d = probe_slot->base64_decode(call, "", 0, &n);
    assert_non_null(d);
    assert_int_equal(n, 0);
    assert_null(probe_slot->base64_decode(call, "Zm8", 3, &n));    /* padding missing */
    assert_null(probe_slot->base64_decode(call, "Zm8=Zg", 6, &n)); /* data after padding */
    assert_null(probe_slot->base64_decode(call, "Zm 8=", 5, &n));  /* whitespace */
    assert_null(probe_slot->base64_decode(call, "-_8=", 4, &n));   /* URL-safe alphabet */
    assert_null(probe_slot->base64_decode(call, "Zm8=!", 5, &n));  /* trailing garbage */
}

static const char *get(dm_call *call, const char *json, const char *path, size_t *len)
{
    dm_str s = {json, strlen(json)};
    return probe_slot->json_get(call, s, path, len);
}

static void test_json_get_follows_dotted_paths(void **state)
{
    const char *doc = "{\"data\":{\"object\":{\"id\":\"evt_1\",\"amount\":1250,\"paid\":true,"
                      "\"none\":null,\"ratio\":0.5,\"s\":\"a\\\"b\\u00e9\\u0000z\"}},"
                      "\"items\":[{\"name\":\"x\"},{\"name\":\"y\",\"tags\":[]}]}";
    dm_call *call;
    size_t n = 0;
    (void)state;
    call = probe();
    assert_string_equal(get(call, doc, "data.object.id", &n), "evt_1");
    assert_int_equal(n, 5);
    assert_string_equal(get(call, doc, "data.object.amount", NULL), "1250");
    assert_string_equal(get(call, doc, "data.object.paid", NULL), "true");
    assert_string_equal(get(call, doc, "data.object.none", NULL), "null");
    assert_string_equal(get(call, doc, "data.object.ratio", NULL), "0.5");
    assert_string_equal(get(call, doc, "items.1.name", NULL), "y");
    assert_string_equal(get(call, doc, "items.1", NULL), "{\"name\":\"y\",\"tags\":[]}");
    assert_string_equal(get(call, doc, "items.1.tags", NULL), "[]");
    /* Strings come back unescaped, with their length (a NUL included). */
    assert_memory_equal(get(call, doc, "data.object.s", &n), "a\"b\xc3\xa9\0z", 7);
    assert_int_equal(n, 7);
    assert_null(get(call, doc, "data.nope", NULL));
    assert_null(get(call, doc, "items.2", NULL));
    assert_null(get(call, doc, "items.x", NULL));
    assert_null(get(call, doc, "data..object", NULL));
    assert_null(get(call, doc, "data.object.id.more", NULL));
    assert_null(get(call, "{not json", "a", NULL));
    assert_string_equal(get(call, "42", "", NULL), "42");
}

static void test_json_quote_escapes(void **state)
{
    dm_call *call;
    dm_str s = {"a\"b\\c\n\xc3\xa9", 8};
    dm_str bad = {"\xff\xfe", 2};
    dm_str nul = {"a\0b", 3};
    (void)state;
    call = probe();
    assert_string_equal(probe_slot->json_quote(call, s), "\"a\\\"b\\\\c\\n\xc3\xa9\"");
    assert_string_equal(probe_slot->json_quote(call, nul), "\"a\\u0000b\"");
    assert_null(probe_slot->json_quote(call, bad));
}

/* ---- HTTP, against a small server on a thread ---- */

static int srv_fd = -1;
static int srv_port;
static pthread_t srv_thread;

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static const char *header_of(const char *req, const char *name)
{
    static char val[256];
    char pat[64];
    const char *p, *e;
    snprintf(pat, sizeof(pat), "\r\n%s: ", name);
    p = strstr(req, pat);
    if (!p) {
        return "";
    }
    p += strlen(pat);
    e = strstr(p, "\r\n");
    snprintf(val, sizeof(val), "%.*s", (int)(e - p), p);
    return val;
}

/* One request per connection. Paths: /echo (201, the request echoed), /big
 * and /bigchunked (9 MiB, with and without Content-Length), /slow (answers
 * after a second). */
static void *serve(void *arg)
{
    static char req[65536];
    (void)arg;
    for (;;) {
        int c = accept(srv_fd, NULL, NULL);
        size_t got = 0, clen = 0, hlen;
        char method[16] = "", path[256] = "", head[1024];
        char *end;
        if (c < 0) {
            return NULL; /* shut down */
        }
        while (got < sizeof(req) - 1) {
            ssize_t n = recv(c, req + got, sizeof(req) - 1 - got, 0);
            if (n <= 0) {
                break;
            }
            got += (size_t)n;
            req[got] = '\0';
            end = strstr(req, "\r\n\r\n");
            if (end) {
                hlen = (size_t)(end + 4 - req);
                clen = (size_t)atol(header_of(req, "Content-Length"));
                if (got >= hlen + clen) {
                    break;
                }
            }
        }
        req[got] = '\0';
        end = strstr(req, "\r\n\r\n");
        sscanf(req, "%15s %255s", method, path);
        if (!strncmp(path, "/echo", 5) && end) {
            int n = snprintf(head, sizeof(head),
                             "HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\n"
                             "X-Echo-Method: %s\r\nX-Echo-Path: %s\r\nX-Echo-Sig: %s\r\n"
                             "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                             method, path, header_of(req, "X-Sig"), clen);
            send_all(c, head, (size_t)n);
            send_all(c, end + 4, clen);
        } else if (!strncmp(path, "/big", 4)) {
            static char chunk[65536];
            memset(chunk, 'a', sizeof(chunk));
            if (!strcmp(path, "/big")) {
                send_all(c, head,
                         (size_t)snprintf(head, sizeof(head),
                                          "HTTP/1.1 200 OK\r\n"
                                          "Content-Length: 9437184\r\n\r\n"));
            } else {
                send_all(c, head,
                         (size_t)snprintf(head, sizeof(head),
                                          "HTTP/1.1 200 OK\r\n"
                                          "Connection: close\r\n\r\n"));
            }
            for (int i = 0; i < 144; i++) {
                send_all(c, chunk, sizeof(chunk));
            }
        } else if (!strcmp(path, "/slow")) {
            sleep(1);
            send_all(c, head,
                     (size_t)snprintf(head, sizeof(head), "HTTP/1.1 204 No Content\r\n\r\n"));
        }
        close(c);
    }
}

static int http_group_setup(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof(a);
    (void)state;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    srv_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (srv_fd < 0 || bind(srv_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(srv_fd, 8) != 0 || getsockname(srv_fd, (struct sockaddr *)&a, &len) != 0) {
        return -1;
    }
    srv_port = ntohs(a.sin_port);
    return pthread_create(&srv_thread, NULL, serve, NULL);
}

static int http_group_teardown(void **state)
{
    (void)state;
    shutdown(srv_fd, SHUT_RDWR);
    pthread_join(srv_thread, NULL);
    close(srv_fd);
    return 0;
}

static const char *url(const char *path)
{
    return apr_psprintf(pool, "http://127.0.0.1:%d%s", srv_port, path);
}

static const char *resp_header(const dm_http_response *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        if (r->headers[i].name.len == strlen(name) &&
            !strncasecmp(r->headers[i].name.ptr, name, r->headers[i].name.len)) {
            return r->headers[i].value.ptr;
        }
    }
    return NULL;
}

static void test_http_post_sends_headers_and_body(void **state)
{
    dm_header hs[] = {{{"X-Sig", 5}, {"t=1,v1=abc", 10}},
                      {{"Content-Type", 12}, {"application/json", 16}}};
    dm_http_request req = {.size = sizeof(req),
                           .method = "POST",
                           .headers = hs,
                           .n_headers = 2,
                           .body = {"{\"a\":1}", 7}};
    dm_http_response resp = {.size = sizeof(resp)};
    dm_message msg = {{0}};
    dm_call *call;
    (void)state;
    call = probe();
    req.url = url("/echo?secret=1");
    assert_int_equal(probe_slot->http(call, &req, &resp, &msg), DM_OK);
    assert_int_equal(resp.status, 201);
    assert_int_equal(resp.body.len, 7);
    assert_string_equal(resp.body.ptr, "{\"a\":1}");
    assert_string_equal(resp_header(&resp, "X-Echo-Method"), "POST");
    assert_string_equal(resp_header(&resp, "X-Echo-Path"), "/echo?secret=1");
    assert_string_equal(resp_header(&resp, "X-Echo-Sig"), "t=1,v1=abc");
    assert_string_equal(resp_header(&resp, "content-type"), "text/plain");
}

static void test_http_other_methods(void **state)
{
    dm_http_request req = {.size = sizeof(req), .method = "GET"};
    dm_http_response resp = {.size = sizeof(resp)};
    dm_message msg = {{0}};
    dm_call *call;
    (void)state;
    call = probe();
    req.url = url("/echo");
    assert_int_equal(probe_slot->http(call, &req, &resp, &msg), DM_OK);
    assert_string_equal(resp_header(&resp, "X-Echo-Method"), "GET");
    assert_int_equal(resp.body.len, 0);
    req.method = "DELETE";
    assert_int_equal(probe_slot->http(call, &req, &resp, &msg), DM_OK);
    assert_string_equal(resp_header(&resp, "X-Echo-Method"), "DELETE");
    req.method = "PUT";
    req.body.ptr = "x=1";
    req.body.len = 3;
    assert_int_equal(probe_slot->http(call, &req, &resp, &msg), DM_OK);
    assert_string_equal(resp_header(&resp, "X-Echo-Method"), "PUT");
    assert_string_equal(resp.body.ptr, "x=1");
}

static void test_http_network_errors_are_temporary(void **state)
{
    dm_http_request req = {.size = sizeof(req), .method = "GET"};
    dm_http_response resp = {.size = sizeof(resp)};
    dm_message msg = {{0}};
    dm_call *call;
    int fd;
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    (void)state;
    call = probe();
    /* A port nobody listens on: bind one, note it, close it. */
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    req.url = apr_psprintf(pool, "http://user:pw@127.0.0.1:%d/x?token=hidden", ntohs(a.sin_port));
    assert_int_equal(probe_slot->http(call, &req, &resp, &msg), DM_ERR_TEMPORARY);
    assert_int_equal(resp.status, 0);
    assert_contains(msg.text, apr_psprintf(pool, "GET http://127.0.0.1:%d/x: ", ntohs(a.sin_port)));
    assert_null(strstr(msg.text, "hidden"));
    assert_null(strstr(msg.text, "pw"));

    req.url = url("/slow");
    req.timeout_ms = 200;
    assert_int_equal(probe_slot->http(call, &req, &resp, &msg), DM_ERR_TEMPORARY);
    assert_contains(msg.text, "Timeout");
}

static void test_http_response_body_is_limited_to_8_mib(void **state)
{
    dm_http_request req = {.size = sizeof(req), .method = "GET"};
    dm_http_response resp = {.size = sizeof(resp)};
    dm_message msg = {{0}};
    dm_call *call;
    (void)state;
    call = probe();
    req.url = url("/big");
    assert_int_equal(probe_slot->http(call, &req, &resp, &msg), DM_ERR_TEMPORARY);
    assert_contains(msg.text, "the response body exceeds 8388608 bytes");
    req.url = url("/bigchunked");
    assert_int_equal(probe_slot->http(call, &req, &resp, &msg), DM_ERR_TEMPORARY);
    assert_contains(msg.text, "the response body exceeds 8388608 bytes");
}

static void test_http_refuses_bad_requests(void **state)
{
    dm_header inj[] = {{{"X-A", 3}, {"1\r\nX-B: 2", 9}}};
    dm_http_request req = {.size = sizeof(req), .method = "GET"};
    dm_http_response resp = {.size = sizeof(resp)};
    dm_message msg = {{0}};
    dm_call *call;
    (void)state;
    call = probe();
    req.url = url("/echo");
    req.headers = inj;
    req.n_headers = 1;
    assert_int_equal(probe_slot->http(call, &req, &resp, &msg), DM_ERR_INVALID);
    assert_contains(msg.text, "request header 0 is malformed");
    req.n_headers = 0;
    req.method = "get me";
    assert_int_equal(probe_slot->http(call, &req, &resp, &msg), DM_ERR_INVALID);
    req.method = "GET";
    req.url = "file:///etc/passwd";
    assert_int_equal(probe_slot->http(call, &req, &resp, &msg), DM_ERR_TEMPORARY);
    assert_contains(msg.text, "Unsupported protocol");
}

/* ---- ABI 1.3: the e-mail functions of the host table ---- */

static void test_host_mime_message_builds_or_refuses(void **state)
{
    dm_call *call;
    dm_mail m = {.size = sizeof(m)};
    char *out;
    size_t len = 99;
    (void)state;
    call = probe();
    m.from = S("DeepMine <noreply@deepmine.example>");
    m.to = S("zoe@example.com");
    m.subject = S("Hello");
    m.text = S("Hi.\n");
    out = probe_slot->mime_message(call, &m, "abc@deepmine.example", 0, &len);
    assert_non_null(out);
    assert_int_equal(strlen(out), len);
    assert_true(strncmp(out, "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n", 39) == 0);
    assert_contains(out, "\r\nMessage-ID: <abc@deepmine.example>\r\n");

    /* Header injection: NULL, nothing to send. */
    m.subject = S("Hello\r\nBcc: victim@example.com");
    assert_null(probe_slot->mime_message(call, &m, "abc@deepmine.example", 0, &len));
    assert_int_equal(len, 0);
    assert_contains(logbuf, "plugin probe: message refused: the subject contains a control");

    /* A plugin built against an older dm_mail: the host reads only what its
     * size covers (here not the headers, whose pointer is garbage). */
    m.subject = S("Hello");
    m.size = offsetof(dm_mail, headers);
    m.headers = (const dm_header *)(uintptr_t)1;
    m.n_headers = 5;
    out = probe_slot->mime_message(call, &m, "abc@deepmine.example", 0, &len);
    assert_non_null(out);
    assert_contains(out, "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain");
}

static void test_host_message_id_for_is_stable_per_key(void **state)
{
    dm_call *call;
    const char *a, *b, *c;
    (void)state;
    call = probe();
    a = probe_slot->message_id_for(call, S("welcome:42"), S("DeepMine <noreply@deepmine.example>"));
    b = probe_slot->message_id_for(call, S("welcome:42"), S("noreply@deepmine.example"));
    c = probe_slot->message_id_for(call, S("welcome:43"), S("noreply@deepmine.example"));
    assert_non_null(a);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_int_equal(strlen(a), 32 + strlen("@deepmine.example"));
    assert_string_equal(a + 32, "@deepmine.example");
}

static void test_setting_default_fills_unset_settings_in_init_only(void **state)
{
    const dm_loaded_plugin *pl;
    dm_call *call;
    (void)state;
    call = probe();
    pl = dm_plugins_get(host, "probe");
    assert_string_equal(dm_plugins_setting(pl, "probe_default"), "from-init");
    assert_string_equal(probe_slot->setting(call, "probe_default"), "from-init");
    /* A configured value and the reserved ones stand. */
    assert_string_not_equal(dm_plugins_setting(pl, "slot"), "overwritten");
    assert_string_equal(dm_plugins_setting(pl, "_name"), "probe");
    /* After init, nothing changes. */
    probe_slot->setting_default(call, "late", "x");
    assert_null(dm_plugins_setting(pl, "late"));
    assert_null(dm_plugins_setting(pl, "nothing"));
    assert_null(dm_plugins_setting(NULL, "slot"));
}

static void test_configured_setting_beats_the_plugins_default(void **state)
{
    char slot[32];
    (void)state;
    snprintf(slot, sizeof(slot), "%p", (void *)&probe_slot);
    assert_null(dm_plugins_declare(host, "mailer", "probe", tp("host_probe")));
    assert_null(dm_plugins_set(host, "probe", "slot", slot));
    assert_null(dm_plugins_set(host, "probe", "probe_default", "configured"));
    assert_null(dm_plugins_init_all(host));
    assert_string_equal(dm_plugins_setting(dm_plugins_get(host, "probe"), "probe_default"),
                        "configured");
}

/* One host_probe per send mode, all initialised together. */
static const dm_loaded_plugin *send_probe(const char *mode)
{
    char slot[32];
    const char *name = apr_pstrcat(pool, "p_", mode, NULL);
    snprintf(slot, sizeof(slot), "%p", (void *)&probe_slot);
    assert_null(dm_plugins_declare(host, "mailer", name, tp("host_probe")));
    assert_null(dm_plugins_set(host, name, "slot", slot));
    assert_null(dm_plugins_set(host, name, "send", mode));
    return dm_plugins_get(host, name);
}

static void test_send_mail_passes_ids_and_retry_after_and_checks_answers(void **state)
{
    const dm_loaded_plugin *ok, *tmp, *huge, *silent, *no_id, *crlf_id, *bad, *build, *pay;
    dm_mail m = {.size = sizeof(m)};
    const char *id = "x";
    uint32_t retry = 99;
    dm_message msg;
    (void)state;
    ok = send_probe("ok");
    tmp = send_probe("temporary");
    huge = send_probe("huge_retry");
    silent = send_probe("temporary_silent");
    no_id = send_probe("no_id");
    crlf_id = send_probe("crlf_id");
    bad = send_probe("bad_status");
    build = send_probe("build");
    assert_null(dm_plugins_declare(host, "payment", "pay", tp("kind_payment")));
    assert_null(dm_plugins_init_all(host));
    pay = dm_plugins_get(host, "pay");
    m.from = S("noreply@deepmine.example");
    m.to = S("zoe@example.com");
    m.subject = S("Hi");
    m.text = S("Hi.");

    assert_int_equal(dm_mailer_send(host, ok, pool, &m, &id, &retry, &msg), DM_OK);
    assert_string_equal(id, "<probe-id>");
    assert_int_equal(retry, 0);

    assert_int_equal(dm_mailer_send(host, tmp, pool, &m, &id, &retry, &msg), DM_ERR_TEMPORARY);
    assert_null(id);
    assert_int_equal(retry, 7);
    assert_string_equal(msg.text, "slow down");
    assert_int_equal(dm_mailer_send(host, huge, pool, &m, &id, &retry, &msg), DM_ERR_TEMPORARY);
    assert_int_equal(retry, 86400); /* capped at a day */
    assert_int_equal(dm_mailer_send(host, silent, pool, &m, &id, &retry, &msg), DM_ERR_TEMPORARY);
    assert_int_equal(retry, 0);
    assert_contains(msg.text, "send failed (temporary error) without saying why");

    assert_int_equal(dm_mailer_send(host, no_id, pool, &m, &id, &retry, &msg), DM_ERR_INTERNAL);
    assert_contains(msg.text, "plugin p_no_id: send returned no usable message id");
    assert_int_equal(dm_mailer_send(host, crlf_id, pool, &m, &id, &retry, &msg), DM_ERR_INTERNAL);
    assert_contains(msg.text, "no usable message id");
    assert_int_equal(dm_mailer_send(host, bad, pool, &m, &id, &retry, &msg), DM_ERR_INTERNAL);
    assert_contains(msg.text, "unknown status 42");

    assert_int_equal(dm_mailer_send(host, build, pool, &m, &id, &retry, &msg), DM_OK);
    assert_string_equal(id, "<built>");
    /* The builder's precise reason replaces the plugin's summary. */
    m.to = S("Eve <eve@example.com>\nBcc: victim@example.com");
    assert_int_equal(dm_mailer_send(host, build, pool, &m, &id, &retry, &msg), DM_ERR_INVALID);
    assert_string_equal(msg.text,
                        "the recipient (to) contains a control character (CR, LF, TAB, NUL, …)");

    assert_int_equal(dm_mailer_send(host, pay, pool, &m, &id, &retry, &msg), DM_ERR_UNSUPPORTED);
    assert_contains(msg.text, "not a loaded mailer");
}

/* ---- mailer-spool ---- */

static const char *make_temp_dir(void)
{
    char *d = apr_pstrdup(pool, "/tmp/dm-spool-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void remove_dir(const char *d)
{
    DIR *dir = opendir(d);
    struct dirent *de;
    while (dir && (de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            unlink(apr_pstrcat(pool, d, "/", de->d_name, NULL));
        }
    }
    if (dir) {
        closedir(dir);
    }
    rmdir(d);
}

/* Files in d (all of them, dot files included), and the last one's name. */
static int count_files(const char *d, const char **last)
{
    DIR *dir = opendir(d);
    struct dirent *de;
    int n = 0;
    while (dir && (de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            n++;
            if (last) {
                *last = apr_pstrcat(pool, d, "/", de->d_name, NULL);
            }
        }
    }
    if (dir) {
        closedir(dir);
    }
    return n;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = apr_palloc(pool, 1 << 20);
    size_t n;
    assert_non_null(f);
    n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static const dm_loaded_plugin *spool(const char *name, const char *dir)
{
    assert_null(dm_plugins_declare(host, "mailer", name, rp("mailer-spool")));
    assert_null(dm_plugins_set(host, name, "dir", dir));
    assert_null(dm_plugins_set(host, name, "from", "DeepMine <noreply@deepmine.example>"));
    return dm_plugins_get(host, name);
}

static const char *SUBJECT =
    "Willkommen bei DeepMine \xe2\x80\x93 Ihr Konto ist bereit, Zo\xc3\xab!";

static dm_status send_one(const dm_loaded_plugin *pl, const char *key, dm_str *mid, dm_message *msg)
{
    static const dm_header extra[] = {
        {{"List-Unsubscribe", 16}, {"<https://deepmine.example/u/42>", 31}}};
    dm_mail m = {.size = sizeof(m)};
    m.to = S("Zo\xc3\xab M\xc3\xbcller <zoe@example.com>");
    m.subject = S(SUBJECT);
    m.text = S("Hello Zo\xc3\xab,\nyour account is ready.\n");
    m.html = S("<p>Hello Zo&euml;,</p><p>your account is ready.</p>\n");
    m.headers = extra;
    m.n_headers = 1;
    m.idempotency_key = S(key);
    return ((const dm_mailer_ops *)pl->desc->ops)
        ->send(dm_plugins_call(host, pl, pool), &m, mid, msg);
}

static void test_spool_writes_one_eml_per_idempotency_key(void **state)
{
    const char *dir = make_temp_dir(), *file = NULL, *eml;
    const dm_loaded_plugin *pl;
    dm_str mid = {0}, mid2 = {0};
    dm_message msg = {{0}};
    (void)state;
    pl = spool("spool", dir);
    assert_null(dm_plugins_init_all(host));

    assert_int_equal(send_one(pl, "welcome:42", &mid, &msg), DM_OK);
    assert_int_equal(count_files(dir, &file), 1);
    assert_contains(file, ".eml");
    assert_true(mid.len > 2 && mid.ptr[0] == '<' && mid.ptr[mid.len - 1] == '>');
    assert_contains(apr_pstrmemdup(pool, mid.ptr, mid.len), "@deepmine.example>");

    /* The same key again: the file is replaced, the Message-ID is the same. */
    assert_int_equal(send_one(pl, "welcome:42", &mid2, &msg), DM_OK);
    assert_int_equal(count_files(dir, NULL), 1);
    assert_int_equal(mid.len, mid2.len);
    assert_memory_equal(mid.ptr, mid2.ptr, mid.len);

    eml = slurp(file);
    assert_contains(eml, "\r\nFrom: DeepMine <noreply@deepmine.example>\r\n");
    assert_contains(eml, "\r\nTo: =?UTF-8?B?");
    assert_contains(eml, "?= <zoe@example.com>\r\n");
    assert_contains(eml, "\r\nSubject: =?UTF-8?B?");
    assert_contains(eml, apr_psprintf(pool, "\r\nMessage-ID: %.*s\r\n", (int)mid.len, mid.ptr));
    assert_contains(eml, "\r\nList-Unsubscribe: <https://deepmine.example/u/42>\r\n");
    assert_contains(eml, "Content-Type: multipart/alternative; boundary=\"=_dm_");
    assert_contains(eml, "Content-Type: text/plain; charset=UTF-8");
    assert_contains(eml, "Content-Type: text/html; charset=UTF-8");
    assert_contains(eml, "Hello Zo=C3=AB,\r\nyour account is ready.\r\n");
    assert_true(strncmp(eml, "Date: ", 6) == 0);

    /* Another key: another file. */
    assert_int_equal(send_one(pl, "welcome:43", &mid2, &msg), DM_OK);
    assert_int_equal(count_files(dir, NULL), 2);
    remove_dir(dir);
}

/* A real MIME parser reads it back (skipped when python3 is absent). */
static void test_spool_eml_parses_as_mime(void **state)
{
    const char *dir = make_temp_dir(), *file = NULL, *cmd;
    const dm_loaded_plugin *pl;
    dm_str mid;
    dm_message msg = {{0}};
    int rc;
    (void)state;
    if (access("/usr/bin/python3", X_OK) != 0) {
        remove_dir(dir);
        skip();
    }
    pl = spool("spool", dir);
    assert_null(dm_plugins_init_all(host));
    assert_int_equal(send_one(pl, "k", &mid, &msg), DM_OK);
    count_files(dir, &file);
    cmd = apr_psprintf(
        pool,
        "/usr/bin/python3 - '%s' <<'EOF'\n"
        "import sys, email, email.policy\n"
        "m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)\n"
        "assert m['Subject'] == 'Willkommen bei DeepMine \\u2013 Ihr Konto ist bereit, "
        "Zo\\u00eb!', m['Subject']\n"
        "assert m['To'].addresses[0].display_name == 'Zo\\u00eb M\\u00fcller'\n"
        "assert m['To'].addresses[0].addr_spec == 'zoe@example.com'\n"
        "assert m.get_content_type() == 'multipart/alternative'\n"
        "parts = [p.get_content_type() for p in m.iter_parts()]\n"
        "assert parts == ['text/plain', 'text/html'], parts\n"
        "assert m.get_body(('plain',)).get_content() == "
        "'Hello Zo\\u00eb,\\nyour account is ready.\\n'\n"
        "assert 'your account is ready' in m.get_body(('html',)).get_content()\n"
        "assert not m.defects, m.defects\n"
        "assert all(len(l) <= 78 for l in open(sys.argv[1], 'rb').read().split(b'\\r\\n'))\n"
        "EOF",
        file);
    rc = system(cmd);
    assert_int_equal(rc, 0);
    remove_dir(dir);
}

static void test_spool_text_only_and_refusals(void **state)
{
    const char *dir = make_temp_dir(), *file = NULL, *eml;
    const dm_loaded_plugin *pl;
    const dm_mailer_ops *ops;
    dm_header from_hdr[] = {{{"from", 4}, {"x@y.z", 5}}};
    dm_mail m = {.size = sizeof(m)};
    dm_str mid;
    dm_message msg = {{0}};
    dm_call *call;
    const char *id = NULL;
    uint32_t retry = 0;
    (void)state;
    pl = spool("spool", dir);
    assert_null(dm_plugins_init_all(host));
    ops = pl->desc->ops;
    call = dm_plugins_call(host, pl, pool);

    m.to = S("a@example.com");
    m.subject = S("Plain");
    m.text = S("only text");
    m.idempotency_key = S("t1");
    assert_int_equal(ops->send(call, &m, &mid, &msg), DM_OK);
    count_files(dir, &file);
    eml = slurp(file);
    assert_contains(eml, "\r\nSubject: Plain\r\n");
    assert_contains(eml, "\r\nContent-Type: text/plain; charset=UTF-8\r\n");
    assert_null(strstr(eml, "multipart"));

    /* Refusals, through the host as the mail queue sends: the builder's
     * reason reaches the caller, and nothing is written. */
    m.subject = S("Bad\r\nBcc: victim@example.com");
    assert_int_equal(dm_mailer_send(host, pl, pool, &m, &id, &retry, &msg), DM_ERR_INVALID);
    assert_contains(msg.text, "the subject contains a control character");
    assert_null(id);
    m.subject = S("ok");
    m.headers = from_hdr;
    m.n_headers = 1;
    assert_int_equal(dm_mailer_send(host, pl, pool, &m, &id, &retry, &msg), DM_ERR_INVALID);
    assert_contains(msg.text, "extra header From is one the mailer sets itself");
    m.n_headers = 0;
    m.to = S("");
    assert_int_equal(dm_mailer_send(host, pl, pool, &m, &id, &retry, &msg), DM_ERR_INVALID);
    assert_contains(msg.text, "no recipient");
    assert_int_equal(retry, 0);
    assert_int_equal(count_files(dir, NULL), 1);

    /* 1.1: the health check, read only because the descriptor covers it. */
    assert_true(DM_HAS_FIELD(pl->desc, dm_plugin, health));
    assert_int_equal(pl->desc->health(call, &msg), DM_OK);
    remove_dir(dir);
}

static void test_spool_needs_a_writable_dir(void **state)
{
    (void)state;
    assert_null(dm_plugins_declare(host, "mailer", "spool", rp("mailer-spool")));
    assert_refused(dm_plugins_init_all(host), DM_E_INVALID, "spool",
                   "required setting \"dir\" is missing; add DeepMinePluginSet spool dir <value>");
}

static void test_spool_refuses_a_missing_dir(void **state)
{
    (void)state;
    spool("spool", "/nonexistent/spool");
    assert_refused(dm_plugins_init_all(host), DM_E_INVALID, "spool",
                   "init failed (configuration error): dir /nonexistent/spool: No such file or "
                   "directory");
}

/* mailer-spool needs the 1.3 host functions: an older host's table gets a
 * sentence from init (not a silent refusal from the entry). */
static const char *old_host_setting(dm_call *call, const char *key)
{
    (void)call;
    return strcmp(key, "dir") == 0 ? "/tmp" : NULL;
}

static void test_spool_refuses_a_host_older_than_1_3(void **state)
{
    apr_dso_handle_t *dso = NULL;
    apr_dso_handle_sym_t sym;
    dm_host old;
    const dm_plugin *d;
    dm_message msg = {{0}};
    (void)state;
    memset(&old, 0, sizeof(old));
    old.size = DM_HOST_SIZE_1_2;
    old.abi_major = 1;
    old.abi_minor = 2;
    old.setting = old_host_setting;
    assert_int_equal(apr_dso_load(&dso, rp("mailer-spool"), pool), APR_SUCCESS);
    assert_int_equal(apr_dso_sym(&sym, dso, DM_PLUGIN_ENTRY_NAME), APR_SUCCESS);
    d = ((dm_plugin_entry_fn)sym)(&old);
    assert_non_null(d);
    assert_int_equal(d->init(&old, NULL, &msg), DM_ERR_CONFIG);
    assert_contains(msg.text, "needs a server of plugin ABI 1.3 or later");
    assert_contains(msg.text, "this one speaks 1.2");
    apr_dso_unload(dso);
}

/* The same .so under two names keeps two configurations. */
static void test_spool_declared_twice_keeps_two_dirs(void **state)
{
    const char *d1 = make_temp_dir(), *d2 = make_temp_dir();
    const dm_loaded_plugin *a, *b;
    dm_str mid;
    dm_message msg = {{0}};
    (void)state;
    a = spool("spool_a", d1);
    b = spool("spool_b", d2);
    assert_null(dm_plugins_init_all(host));
    assert_int_equal(send_one(a, "one", &mid, &msg), DM_OK);
    assert_int_equal(send_one(b, "two", &mid, &msg), DM_OK);
    assert_int_equal(send_one(b, "three", &mid, &msg), DM_OK);
    assert_int_equal(count_files(d1, NULL), 1);
    assert_int_equal(count_files(d2, NULL), 2);
    remove_dir(d1);
    remove_dir(d2);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_unknown_kind_is_refused),
        T(test_duplicate_name_is_refused),
        T(test_invalid_name_is_refused),
        T(test_missing_file_is_refused_with_dlerror),
        T(test_bare_file_name_is_refused),
        T(test_missing_entry_symbol_is_refused),
        T(test_entry_returning_null_is_refused),
        T(test_descriptor_smaller_than_1_0_is_refused),
        T(test_other_abi_major_is_refused),
        T(test_kind_mismatch_is_refused),
        T(test_incomplete_function_table_is_refused),
        T(test_older_minor_loads_and_has_no_health),
        T(test_newer_minor_loads),
        T(test_payment_plugin_loads_and_is_called),
        T(test_plugins_are_listed_in_declaration_order),
        T(test_setting_for_undeclared_plugin_is_refused),
        T(test_missing_required_setting_is_refused),
        T(test_literal_setting_reaches_init),
        T(test_env_setting_is_resolved),
        T(test_unset_env_variable_is_refused),
        T(test_file_setting_drops_one_trailing_newline),
        T(test_file_setting_keeps_a_second_newline),
        T(test_unreadable_file_setting_is_refused),
        T(test_init_failure_is_refused_with_the_plugins_message),
        T(test_init_logs_a_numbered_notice),
        T(test_fini_runs_once),
        T(test_fini_runs_when_the_pool_goes),
        T(test_changes_after_init_are_refused),
        T(test_host_table_is_versioned),
        T(test_host_log_is_prefixed_and_numbered),
        T(test_host_setting_and_alloc),
        T(test_hmac_sha256_matches_rfc4231),
        T(test_sha256_hex_and_equal_ct),
        T(test_base64_is_the_padded_original_variant_and_strict),
        T(test_json_get_follows_dotted_paths),
        T(test_json_quote_escapes),
        T(test_spool_writes_one_eml_per_idempotency_key),
        T(test_spool_eml_parses_as_mime),
        T(test_spool_text_only_and_refusals),
        T(test_spool_needs_a_writable_dir),
        T(test_spool_refuses_a_missing_dir),
        T(test_spool_declared_twice_keeps_two_dirs),
        T(test_spool_refuses_a_host_older_than_1_3),
        T(test_host_mime_message_builds_or_refuses),
        T(test_host_message_id_for_is_stable_per_key),
        T(test_setting_default_fills_unset_settings_in_init_only),
        T(test_configured_setting_beats_the_plugins_default),
        T(test_send_mail_passes_ids_and_retry_after_and_checks_answers),
    };
    const struct CMUnitTest http_tests[] = {
        T(test_http_post_sends_headers_and_body),  T(test_http_other_methods),
        T(test_http_network_errors_are_temporary), T(test_http_response_body_is_limited_to_8_mib),
        T(test_http_refuses_bad_requests),
    };
    int failed;

    apr_initialize();
    signal(SIGPIPE, SIG_IGN);
    dm_log_set_sink(capture_sink, NULL);
    failed = cmocka_run_group_tests_name("plugin_host", tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("plugin_host_http", http_tests, http_group_setup,
                                          http_group_teardown);
    apr_terminate();
    return failed ? 1 : 0;
}
