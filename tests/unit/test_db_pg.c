/* The PostgreSQL driver's pure parts: placeholder translation, the
 * SQLSTATE -> dm_err mapping, what names a PostgreSQL database, and the
 * side file of a database. (The driver against a live server runs in the
 * integration suites under DM_ENGINE=postgresql.) */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <stdlib.h>
#include <string.h>

#include "store/db.h"
#include "store/db_pg.h"

static apr_pool_t *pool;

static const char *tr(const char *sql, int *n)
{
    return dm_pg_translate(pool, sql, n);
}

static void test_question_marks_become_numbered_parameters_once(void **state)
{
    int n = -1;
    (void)state;
    assert_string_equal(tr("SELECT 1", &n), "SELECT 1");
    assert_int_equal(n, 0);
    assert_string_equal(tr("SELECT a FROM t WHERE b = ? AND c IN (?, ?) LIMIT ?", &n),
                        "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3) LIMIT $4");
    assert_int_equal(n, 4);
}

static void test_numbered_parameters_keep_their_numbers_and_reuse(void **state)
{
    int n = -1;
    (void)state;
    /* SQLite's rule: a bare ? after ?N is N + 1 */
    assert_string_equal(tr("VALUES (?1, ?2, ?2, ?7, ?)", &n), "VALUES ($1, $2, $2, $7, $8)");
    assert_int_equal(n, 8);
    assert_string_equal(tr("x = ?12", &n), "x = $12");
    assert_int_equal(n, 12);
}

static void test_question_marks_in_quotes_and_comments_stay(void **state)
{
    int n = -1;
    (void)state;
    assert_string_equal(tr("SELECT '?', 'it''s ?', \"q?\" -- ?\n, ? /* ? */ , ?", &n),
                        "SELECT '?', 'it''s ?', \"q?\" -- ?\n, $1 /* ? */ , $2");
    assert_int_equal(n, 2);
}

static void test_sqlite_only_text_is_rewritten(void **state)
{
    int n = -1;
    (void)state;
    assert_string_equal(tr("SELECT 1 FROM t INDEXED BY t_idx WHERE a = ?", &n),
                        "SELECT 1 FROM t WHERE a = $1");
    assert_string_equal(tr("SELECT u.id FROM users_fts JOIN users u ON u.id = users_fts.rowid "
                           "WHERE users_fts MATCH ? AND users_fts.rowid < ?",
                           &n),
                        "SELECT u.id FROM users_fts JOIN users u ON u.id = users_fts.rowid WHERE "
                        "dm_fts_match(users_fts.email, users_fts.name, users_fts.referral_code, "
                        "$1) AND users_fts.rowid < $2");
    assert_int_equal(n, 2);
}

static void test_sqlstates_map_to_the_errors_sqlite_gives(void **state)
{
    (void)state;
    assert_int_equal(dm_pg_err_code("23505"), DM_E_CONFLICT);    /* unique_violation */
    assert_int_equal(dm_pg_err_code("40001"), DM_E_UNAVAILABLE); /* serialization */
    assert_int_equal(dm_pg_err_code("40P01"), DM_E_UNAVAILABLE); /* deadlock */
    assert_int_equal(dm_pg_err_code("55P03"), DM_E_UNAVAILABLE); /* lock timeout */
    assert_int_equal(dm_pg_err_code("57014"), DM_E_UNAVAILABLE); /* statement timeout */
    assert_int_equal(dm_pg_err_code("08006"), DM_E_UNAVAILABLE); /* connection failure */
    assert_int_equal(dm_pg_err_code("57P01"), DM_E_UNAVAILABLE); /* admin shutdown */
    assert_int_equal(dm_pg_err_code("53100"), DM_E_UNAVAILABLE); /* disk full */
    assert_int_equal(dm_pg_err_code(NULL), DM_E_UNAVAILABLE);    /* no answer at all */
    assert_int_equal(dm_pg_err_code("23514"), DM_E_INTERNAL);    /* check violation */
    assert_int_equal(dm_pg_err_code("42601"), DM_E_INTERNAL);    /* syntax error */
}

static void test_urls_and_key_value_strings_name_postgresql_paths_do_not(void **state)
{
    (void)state;
    assert_true(dm_db_is_postgres("postgresql://dm@db.example.com/deepmine"));
    assert_true(dm_db_is_postgres("postgres://dm@/deepmine?host=/run/postgresql"));
    assert_true(dm_db_is_postgres("host=/run/postgresql dbname=deepmine"));
    assert_false(dm_db_is_postgres("/var/lib/deepmine/deepmine.db"));
    assert_false(dm_db_is_postgres("var/deepmine.db"));
    assert_false(dm_db_is_postgres("/srv/a=b/deepmine.db"));
    assert_false(dm_db_is_postgres(":memory:"));
}

static void test_side_file_is_beside_the_file_or_the_socket(void **state)
{
    (void)state;
    assert_string_equal(dm_db_sidecar_path(pool, "/v/deepmine.db", ".ticks"),
                        "/v/deepmine.db.ticks");
    assert_string_equal(dm_db_sidecar_path(pool, "postgresql://dm@/dm_1?host=/tmp/pg", ".ticks"),
                        "/tmp/pg/dm_1.ticks");
    assert_string_equal(dm_db_sidecar_path(pool, "host=/tmp/pg dbname=dm_2", ".t"),
                        "/tmp/pg/dm_2.t");
    assert_null(dm_db_sidecar_path(pool, "host=db.example.com dbname=dm", ".ticks"));
}

static void test_messages_name_a_database_without_its_password(void **state)
{
    (void)state;
    assert_string_equal(dm_db_display_name(pool, "/v/deepmine.db"), "/v/deepmine.db");
    assert_string_equal(dm_db_display_name(pool, "postgresql://dm:s3cret@db.example.com/deepmine"),
                        "user=dm dbname=deepmine host=db.example.com");
    assert_string_equal(dm_db_display_name(pool, "host=/run/pg dbname=d password=s3cret"),
                        "dbname=d host=/run/pg");
}

static void test_a_client_program_gets_the_password_apart_from_its_connection_string(void **state)
{
    const char *ci = NULL, *pw = NULL;
    (void)state;
    setenv("DM_TEST_PG_PASSWORD", "s3cret value", 1);
    /* for pg_dump/pg_restore: no password in the string, resolved apart */
    assert_null(dm_db_pg_conninfo(pool,
                                  "postgresql://dm@db.example.com/deepmine?password=env:DM_TEST_PG_"
                                  "PASSWORD",
                                  NULL, 1, &ci, &pw));
    assert_string_equal(ci, "user='dm' dbname='deepmine' host='db.example.com'");
    assert_string_equal(pw, "s3cret value");
    /* another dbname, the password kept as given (for dm_db_open) */
    assert_null(dm_db_pg_conninfo(pool, "host=/run/pg dbname=d password=env:DM_TEST_PG_PASSWORD",
                                  "dm_verify_1", 0, &ci, &pw));
    assert_string_equal(ci,
                        "password='env:DM_TEST_PG_PASSWORD' dbname='dm_verify_1' host='/run/pg'");
    assert_null(pw);
    /* quotes and backslashes in a value are escaped */
    assert_null(dm_db_pg_conninfo(pool, "host=/run/pg dbname='it\\'s'", NULL, 1, &ci, &pw));
    assert_string_equal(ci, "dbname='it\\'s' host='/run/pg'");
    assert_null(pw);
}

static void test_a_password_variable_that_is_not_set_is_refused_before_connecting(void **state)
{
    dm_db *db = NULL;
    dm_err *e;
    (void)state;
    unsetenv("DM_TEST_NO_SUCH_PASSWORD");
    e = dm_db_open(pool, "host=/nonexistent dbname=x password=env:DM_TEST_NO_SUCH_PASSWORD", NULL,
                   &db);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_non_null(strstr(e->message, "DM_TEST_NO_SUCH_PASSWORD"));
    /* no server there: unavailable, with the address but never the password */
    setenv("DM_TEST_PG_PASSWORD", "s3cret-value", 1);
    e = dm_db_open(pool, "host=/nonexistent dbname=x password=env:DM_TEST_PG_PASSWORD", NULL, &db);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_UNAVAILABLE);
    assert_null(strstr(e->message, "s3cret-value"));
    assert_non_null(strstr(e->message, "dbname=x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_question_marks_become_numbered_parameters_once),
        cmocka_unit_test(test_numbered_parameters_keep_their_numbers_and_reuse),
        cmocka_unit_test(test_question_marks_in_quotes_and_comments_stay),
        cmocka_unit_test(test_sqlite_only_text_is_rewritten),
        cmocka_unit_test(test_sqlstates_map_to_the_errors_sqlite_gives),
        cmocka_unit_test(test_urls_and_key_value_strings_name_postgresql_paths_do_not),
        cmocka_unit_test(test_side_file_is_beside_the_file_or_the_socket),
        cmocka_unit_test(test_messages_name_a_database_without_its_password),
        cmocka_unit_test(test_a_password_variable_that_is_not_set_is_refused_before_connecting),
        cmocka_unit_test(test_a_client_program_gets_the_password_apart_from_its_connection_string),
    };
    int rc;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_pool_destroy(pool);
    apr_terminate();
    return rc;
}
