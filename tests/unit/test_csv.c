/*
 * The cells of the staff's CSV exports (core/base/csv.c): RFC 4180 quoting
 * and the prefix that keeps a spreadsheet from running a cell as a formula.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>

#include "base/csv.h"

static apr_pool_t *pool;

static void test_plain_text_is_written_as_it_is(void **state)
{
    (void)state;
    assert_string_equal(dm_csv_text(pool, "alice@example.com"), "alice@example.com");
    assert_string_equal(dm_csv_text(pool, "Zoë 1+1=2"), "Zoë 1+1=2");
    assert_string_equal(dm_csv_text(pool, ""), "");
    assert_string_equal(dm_csv_text(pool, NULL), "");
}

static void test_separators_quotes_and_line_breaks_are_quoted_quotes_doubled(void **state)
{
    (void)state;
    assert_string_equal(dm_csv_text(pool, "a,b"), "\"a,b\"");
    assert_string_equal(dm_csv_text(pool, "say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_string_equal(dm_csv_text(pool, "two\nlines"), "\"two\nlines\"");
    assert_string_equal(dm_csv_text(pool, "cr\rhere"), "\"cr\rhere\"");
}

static void test_formula_starts_get_a_leading_quote(void **state)
{
    (void)state;
    assert_string_equal(dm_csv_text(pool, "=1+1"), "'=1+1");
    assert_string_equal(dm_csv_text(pool, "+31 20 555"), "'+31 20 555");
    assert_string_equal(dm_csv_text(pool, "-2"), "'-2");
    assert_string_equal(dm_csv_text(pool, "@SUM(A1)"), "'@SUM(A1)");
    assert_string_equal(dm_csv_text(pool, "\tx"), "'\tx");
    /* CR is also a line break: prefixed and quoted */
    assert_string_equal(dm_csv_text(pool, "\rx"), "\"'\rx\"");
    /* only the first character counts */
    assert_string_equal(dm_csv_text(pool, "a=b"), "a=b");
}

static void test_a_hyperlink_formula_is_prefixed_and_quoted(void **state)
{
    (void)state;
    assert_string_equal(dm_csv_text(pool, "=HYPERLINK(\"http://evil.example\",\"click, here\")"),
                        "\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"click, here\"\")\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_text_is_written_as_it_is),
        cmocka_unit_test(test_separators_quotes_and_line_breaks_are_quoted_quotes_doubled),
        cmocka_unit_test(test_formula_starts_get_a_leading_quote),
        cmocka_unit_test(test_a_hyperlink_formula_is_prefixed_and_quoted),
    };
    int failed;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    failed = cmocka_run_group_tests_name("csv", tests, NULL, NULL);
    apr_pool_destroy(pool);
    apr_terminate();
    return failed ? 1 : 0;
}
