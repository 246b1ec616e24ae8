/*
 * The loader of libraries used on first use (core/base/dynlib.c): libpq,
 * libcurl and libcrypto go through it, so its two refusals are what
 * DM01900–DM01902 report when a library is missing or too old.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "base/dynlib.h"

#define LIBC "libc.so.6"

static void test_every_name_found_fills_every_slot_in_order(void **state)
{
    static const char *const names[] = {"strlen", "memcmp"};
    void *slot[2] = {NULL, NULL};
    char err[128] = "untouched";
    size_t (*len)(const char *);
    int (*cmp)(const void *, const void *, size_t);

    (void)state;
    assert_int_equal(dm_dynlib_load(LIBC, names, slot, 2, err, sizeof(err)), 1);
    assert_string_equal(err, "");
    len = (size_t(*)(const char *))slot[0];
    cmp = (int (*)(const void *, const void *, size_t))slot[1];
    assert_int_equal(len("deepmine"), 8);
    assert_int_equal(cmp("ab", "ab", 2), 0);
}

static void test_a_missing_library_is_refused_with_its_name(void **state)
{
    static const char *const names[] = {"strlen"};
    void *slot[1] = {NULL};
    char err[256];

    (void)state;
    assert_int_equal(dm_dynlib_load("libdm-no-such-library.so.9", names, slot, 1, err, sizeof(err)),
                     0);
    assert_non_null(strstr(err, "cannot load libdm-no-such-library.so.9: "));
}

static void test_a_missing_function_is_refused_with_its_name(void **state)
{
    static const char *const names[] = {"strlen", "dm_no_such_function"};
    void *slot[2] = {NULL, NULL};
    char err[256];

    (void)state;
    assert_int_equal(dm_dynlib_load(LIBC, names, slot, 2, err, sizeof(err)), 0);
    assert_string_equal(err, LIBC " has no dm_no_such_function");
}

static void test_a_short_buffer_gets_a_cut_but_terminated_reason(void **state)
{
    static const char *const names[] = {"dm_no_such_function"};
    void *slot[1] = {NULL};
    char err[8];

    (void)state;
    assert_int_equal(dm_dynlib_load(LIBC, names, slot, 1, err, sizeof(err)), 0);
    assert_string_equal(err, "libc.so");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_name_found_fills_every_slot_in_order),
        cmocka_unit_test(test_a_missing_library_is_refused_with_its_name),
        cmocka_unit_test(test_a_missing_function_is_refused_with_its_name),
        cmocka_unit_test(test_a_short_buffer_gets_a_cut_but_terminated_reason),
    };

    return cmocka_run_group_tests_name("dynlib", tests, NULL, NULL) ? 1 : 0;
}
