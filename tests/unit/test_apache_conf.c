/* Reading one directive out of an Apache configuration (base/apache_conf.c,
 * what deepminectl --config uses): the last occurrence wins, across
 * Include and IncludeOptional; quotes, continuation lines, comments,
 * ${NAME}; a relative value under the last ServerRoot; missing includes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/apache_conf.h"

static apr_pool_t *pool;
static char dir[] = "/tmp/dm-unit-conf-XXXXXX";

static const char *write_file(const char *name, const char *text)
{
    const char *path = apr_pstrcat(pool, dir, "/", name, NULL);
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static dm_apache_directive find(const char *conf, int path, int *found)
{
    dm_apache_directive d = {0};

    assert_null(dm_apache_conf_find(pool, conf, "DeepMineDatabase", path, &d, found));
    return d;
}

static void test_the_last_occurrence_wins_across_an_optional_include(void **state)
{
    int found = 0;
    dm_apache_directive d;
    (void)state;
    const char *local = write_file("a-local.conf", "# the operator's own\n"
                                                   "deepminedatabase \"/srv/dm/live.db\"\n");
    const char *conf = write_file("a.conf", apr_psprintf(pool,
                                                         "ServerRoot \"%s\"\n"
                                                         "<IfModule deepmine_module>\n"
                                                         "    DeepMineDatabase \"/var/first.db\"\n"
                                                         "</IfModule>\n"
                                                         "IncludeOptional \"%s\"\n"
                                                         "IncludeOptional \"%s/not-there.conf\"\n",
                                                         dir, local, dir));
    d = find(conf, 1, &found);
    assert_int_equal(found, 1);
    assert_string_equal(d.value, "/srv/dm/live.db");
    assert_string_equal(d.file, local);
    assert_int_equal(d.line, 2);
}

static void test_a_relative_value_is_under_the_last_server_root(void **state)
{
    int found = 0;
    dm_apache_directive d;
    (void)state;
    const char *conf = write_file("b.conf", "ServerRoot /etc/first\n"
                                            "DeepMineDatabase var/dm.db\n"
                                            "ServerRoot \"/opt/deep mine/\"\n");
    d = find(conf, 1, &found);
    assert_int_equal(found, 1);
    assert_string_equal(d.value, "/opt/deep mine/var/dm.db");
    d = find(conf, 0, &found);
    assert_string_equal(d.value, "var/dm.db");
    /* no ServerRoot: the directory of the top file */
    conf = write_file("b2.conf", "DeepMineDatabase dm.db\n");
    d = find(conf, 1, &found);
    assert_string_equal(d.value, apr_pstrcat(pool, dir, "/dm.db", NULL));
}

static void test_quotes_continuations_comments_and_variables(void **state)
{
    int found = 0;
    dm_apache_directive d;
    (void)state;
    setenv("DM_UNIT_DB_DIR", "/from/env", 1);
    const char *conf = write_file("c.conf", "# DeepMineDatabase /commented/out.db\n"
                                            "Define dbname 'with \\' quote.db'\n"
                                            "DeepMineDatabase \\\n"
                                            "    \"${DM_UNIT_DB_DIR}/${dbname}\"\n"
                                            "DeepMineDatabaseX /not/this/one.db\n");
    d = find(conf, 1, &found);
    assert_int_equal(found, 1);
    assert_string_equal(d.value, "/from/env/with ' quote.db");
    assert_int_equal(d.line, 3);
    conf = write_file("c2.conf", "DeepMineSecretKeyFile /k\n");
    d = find(conf, 1, &found);
    assert_int_equal(found, 0);
}

static void test_wildcard_and_directory_includes_are_read_in_name_order(void **state)
{
    int found = 0;
    dm_apache_directive d;
    (void)state;
    const char *sub = apr_pstrcat(pool, dir, "/mods", NULL);
    assert_int_equal(mkdir(sub, 0755), 0);
    write_file("mods/20-b.conf", "DeepMineDatabase /b.db\n");
    write_file("mods/10-a.conf", "DeepMineDatabase /a.db\n");
    write_file("mods/30-c.load", "DeepMineDatabase /c.db\n");
    const char *conf = write_file("d.conf", apr_psprintf(pool,
                                                         "ServerRoot %s\n"
                                                         "IncludeOptional mods/*.conf\n",
                                                         dir));
    d = find(conf, 1, &found);
    assert_string_equal(d.value, "/b.db");
    conf = write_file("d2.conf", apr_psprintf(pool,
                                              "ServerRoot %s\n"
                                              "Include mods\n",
                                              dir));
    d = find(conf, 1, &found);
    assert_string_equal(d.value, "/c.db"); /* a directory: every file */
}

static void test_a_missing_include_is_an_error_naming_it(void **state)
{
    int found = 0;
    dm_apache_directive d;
    dm_err *e;
    (void)state;
    const char *conf = write_file("e.conf", apr_psprintf(pool,
                                                         "DeepMineDatabase /x.db\n"
                                                         "Include %s/nowhere.conf\n",
                                                         dir));
    e = dm_apache_conf_find(pool, conf, "DeepMineDatabase", 1, &d, &found);
    assert_non_null(e);
    assert_non_null(strstr(e->message, "nowhere.conf"));
    assert_non_null(strstr(e->message, "e.conf:2"));
    conf = write_file("e2.conf", apr_psprintf(pool, "Include %s/nothing-*.conf\n", dir));
    e = dm_apache_conf_find(pool, conf, "DeepMineDatabase", 1, &d, &found);
    assert_non_null(e);
    e = dm_apache_conf_find(pool, apr_pstrcat(pool, dir, "/absent.conf", NULL), "DeepMineDatabase",
                            1, &d, &found);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_UNAVAILABLE);
}

static void test_an_include_loop_stops_with_an_error(void **state)
{
    int found = 0;
    dm_apache_directive d;
    dm_err *e;
    (void)state;
    const char *conf = apr_pstrcat(pool, dir, "/loop.conf", NULL);
    write_file("loop.conf", apr_psprintf(pool, "Include %s\n", conf));
    e = dm_apache_conf_find(pool, conf, "DeepMineDatabase", 1, &d, &found);
    assert_non_null(e);
    assert_non_null(strstr(e->message, "loop"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_last_occurrence_wins_across_an_optional_include),
        cmocka_unit_test(test_a_relative_value_is_under_the_last_server_root),
        cmocka_unit_test(test_quotes_continuations_comments_and_variables),
        cmocka_unit_test(test_wildcard_and_directory_includes_are_read_in_name_order),
        cmocka_unit_test(test_a_missing_include_is_an_error_naming_it),
        cmocka_unit_test(test_an_include_loop_stops_with_an_error),
    };
    int rc;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    if (!mkdtemp(dir)) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (system(apr_psprintf(pool, "rm -rf '%s'", dir)) != 0) {
        rc = 1;
    }
    apr_terminate();
    return rc;
}
