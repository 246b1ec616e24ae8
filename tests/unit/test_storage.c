/* Migrations (empty, current, edited, newer, concurrent), the connection
 * pool under threads, and the catalogue with its per-process cache. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "shop/catalogue.h"
#include "store/db.h"
#include "store/db_pool.h"
#include "store/migrate.h"
#include "fixture.h"

static apr_pool_t *pool;

static int64_t count(dm_db *db, const char *sql)
{
    int64_t v = -1;
    int found = 0;
    assert_null(dm_db_query_int64(db, pool, sql, &v, &found));
    return v;
}

static void test_migrate_empty_database_applies_all(void **state)
{
    dm_db *db = NULL;
    int applied = 0, version = 0;
    (void)state;
    assert_null(dm_db_open(pool, dm_fx_path(pool, "db"), NULL, &db));
    assert_null(dm_migrate_version(db, pool, &version));
    assert_int_equal(version, 0);
    assert_null(dm_migrate(db, pool, dm_migrations, dm_migrations_count, &applied, &version));
    assert_int_equal(applied, dm_migrations_count);
    assert_int_equal(version, dm_migrate_latest());
    assert_int_equal(count(db, "SELECT COUNT(*) FROM schema_migrations"), dm_migrations_count);
    assert_int_equal(count(db, "SELECT generation FROM catalogue_state"), 1);
}

static void test_migrate_current_database_applies_nothing(void **state)
{
    const char *path = dm_fx_path(pool, "db");
    dm_db *db = dm_fx_open_migrated(pool, path);
    int applied = -1, version = 0;
    (void)state;
    assert_null(dm_migrate(db, pool, dm_migrations, dm_migrations_count, &applied, &version));
    assert_int_equal(applied, 0);
    assert_int_equal(version, dm_migrate_latest());
}

static void test_migrate_refuses_edited_migration(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_migration *edited =
        apr_pmemdup(pool, dm_migrations, sizeof(dm_migration) * (size_t)dm_migrations_count);
    int applied = 0, version = 0;
    (void)state;
    edited[0].sql = "CREATE TABLE something_else (x INTEGER);";
    dm_err *e = dm_migrate(db, pool, edited, dm_migrations_count, &applied, &version);
    assert_non_null(e);
    assert_non_null(strstr(e->message, "changed after it was applied"));
    /* and nothing of the edited text ran */
    assert_int_equal(count(db, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'something_else'"),
                     0);
}

static void test_migrate_refuses_newer_database(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int applied = 0, version = 0;
    (void)state;
    assert_null(dm_db_exec(db, pool,
                           "INSERT INTO schema_migrations VALUES (999, '999_future.sql', 'x', 0)"));
    dm_err *e = dm_migrate(db, pool, dm_migrations, dm_migrations_count, &applied, &version);
    assert_non_null(e);
    assert_non_null(strstr(e->message, "newer than this build"));
}

static void test_migrate_failure_rolls_back_everything(void **state)
{
    dm_db *db = NULL;
    dm_migration list[2] = {
        {1, "001_ok.sql", "CREATE TABLE t_ok (x INTEGER);", NULL},
        {2, "002_bad.sql", "CREATE TABLE t_bad (x INTEGER); THIS IS NOT SQL;", NULL},
    };
    int applied = 0, version = 0;
    (void)state;
    assert_null(dm_db_open(pool, dm_fx_path(pool, "db"), NULL, &db));
    assert_non_null(dm_migrate(db, pool, list, 2, &applied, &version));
    assert_int_equal(applied, 0);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 't_%'"), 0);
}

/* A migration marked "-- dm:foreign-keys-off: <tables>" rebuilds a table
 * other tables reference (032 rebuilds transfers): it runs with foreign
 * keys off, its tables are checked before it commits, and the connection
 * has foreign keys on again afterwards. */
#define FK_PARENT                                                                                  \
    "CREATE TABLE parent (id INTEGER PRIMARY KEY, v TEXT UNIQUE);"                                 \
    "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id));"       \
    "INSERT INTO parent VALUES (1, 'a'), (2, 'b'); INSERT INTO child VALUES (10, 1), (11, 2);"
#define FK_REBUILD(keep)                                                                           \
    "-- dm:foreign-keys-off: parent child\n"                                                       \
    "CREATE TABLE parent_new (id INTEGER PRIMARY KEY, v TEXT);"                                    \
    "INSERT INTO parent_new SELECT id, v FROM parent WHERE " keep ";"                              \
    "DROP TABLE parent; ALTER TABLE parent_new RENAME TO parent;"

static void test_migrate_rebuilds_a_referenced_table_with_foreign_keys_off(void **state)
{
    dm_db *db = NULL;
    dm_migration list[2] = {
        {1, "001_parent.sql", FK_PARENT, NULL},
        {2, "002_rebuild.sql", FK_REBUILD("1"), NULL},
    };
    int applied = 0, version = 0;
    (void)state;
    assert_null(dm_db_open(pool, dm_fx_path(pool, "db"), NULL, &db));
    assert_null(dm_migrate(db, pool, list, 2, &applied, &version));
    assert_int_equal(applied, 2);
    assert_int_equal(
        count(db, "SELECT COUNT(*) FROM parent JOIN child ON child.parent_id = parent.id"), 2);
    assert_int_equal(count(db, "PRAGMA foreign_keys"), 1);
    /* foreign keys are enforced again on this connection */
    assert_non_null(dm_db_exec(db, pool, "INSERT INTO child VALUES (12, 3)"));
}

static void test_migrate_rebuild_leaving_a_broken_reference_rolls_back(void **state)
{
    dm_db *db = NULL;
    dm_migration first[1] = {{1, "001_parent.sql", FK_PARENT, NULL}};
    dm_migration list[2] = {
        {1, "001_parent.sql", FK_PARENT, NULL},
        {2, "002_rebuild.sql", FK_REBUILD("id <> 2"), NULL},
    };
    int applied = 0, version = 0;
    dm_err *e;
    (void)state;
    assert_null(dm_db_open(pool, dm_fx_path(pool, "db"), NULL, &db));
    assert_null(dm_migrate(db, pool, first, 1, &applied, &version));
    e = dm_migrate(db, pool, list, 2, &applied, &version);
    assert_non_null(e);
    assert_non_null(strstr(e->message, "table child row 11 referencing a missing row of parent"));
    assert_int_equal(applied, 0);
    assert_int_equal(count(db, "SELECT MAX(version) FROM schema_migrations"), 1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM parent"), 2);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'parent_new'"), 0);
    assert_int_equal(count(db, "PRAGMA foreign_keys"), 1);
}

typedef struct race {
    const char *path;
    int applied;
    int failed;
} race;

static void *APR_THREAD_FUNC migrate_thread(apr_thread_t *t, void *data)
{
    race *r = data;
    apr_pool_t *p;
    dm_db *db = NULL;
    int version = 0;
    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    if (dm_db_open(p, r->path, NULL, &db) ||
        dm_migrate(db, p, dm_migrations, dm_migrations_count, &r->applied, &version)) {
        r->failed = 1;
    }
    apr_pool_destroy(p);
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

static void test_two_migrators_at_once_apply_once(void **state)
{
    const char *path = dm_fx_path(pool, "db");
    race r[4];
    apr_thread_t *t[4];
    apr_status_t rv;
    dm_db *db = NULL;
    (void)state;
    for (int i = 0; i < 4; i++) {
        r[i].path = path;
        r[i].applied = 0;
        r[i].failed = 0;
        apr_thread_create(&t[i], NULL, migrate_thread, &r[i], pool);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        apr_thread_join(&rv, t[i]);
        assert_false(r[i].failed);
        total += r[i].applied;
    }
    assert_int_equal(total, dm_migrations_count);
    assert_null(dm_db_open(pool, path, NULL, &db));
    assert_int_equal(count(db, "SELECT COUNT(*) FROM schema_migrations"), dm_migrations_count);
}

/* ---- pool ---- */

typedef struct worker {
    dm_db_pool *dp;
    int rounds;
    int errors;
    volatile int *in_flight;
    volatile int *max_seen;
} worker;

static void *APR_THREAD_FUNC pool_thread(apr_thread_t *t, void *data)
{
    worker *w = data;
    apr_pool_t *p;
    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    for (int i = 0; i < w->rounds; i++) {
        apr_pool_t *scope;
        dm_db *db = NULL;
        int64_t v = 0;
        int found = 0;
        apr_pool_create(&scope, p);
        if (dm_db_pool_acquire(w->dp, scope, &db)) {
            w->errors++;
        } else {
            int now = __atomic_add_fetch(w->in_flight, 1, __ATOMIC_SEQ_CST);
            int seen = *w->max_seen;
            while (now > seen && !__atomic_compare_exchange_n(w->max_seen, &seen, now, 0,
                                                              __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            }
            if (dm_db_query_int64(db, scope, "SELECT COUNT(*) FROM packages", &v, &found)) {
                w->errors++;
            }
            if (i % 3 == 0) {
                /* left open on purpose: the pool must roll it back on release */
                if (dm_db_begin(db, scope)) {
                    w->errors++;
                }
            }
            __atomic_sub_fetch(w->in_flight, 1, __ATOMIC_SEQ_CST);
        }
        apr_pool_destroy(scope); /* releases the connection */
    }
    apr_pool_destroy(p);
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

static void test_pool_release_scope_gives_back_every_lease_once_rolled_back(void **state)
{
    const char *path = dm_fx_path(pool, "db");
    dm_db_pool *dp = NULL;
    apr_pool_t *scope, *other;
    dm_db *a = NULL, *b = NULL, *c = NULL;
    (void)state;
    dm_fx_open_migrated(pool, path);
    assert_null(dm_db_pool_create(pool, path, 0, 2, 0, &dp));
    apr_pool_create(&scope, pool);
    assert_null(dm_db_pool_acquire(dp, scope, &a));
    assert_null(dm_db_pool_acquire(dp, scope, &b));
    assert_null(dm_db_begin(a, scope)); /* left open: rolled back on the way back */
    /* one given back early, then borrowed again in the same scope */
    dm_db_pool_release(dp, scope, b);
    assert_int_equal(dm_db_pool_in_use(dp), 1);
    assert_null(dm_db_pool_acquire(dp, scope, &b));
    assert_int_equal(dm_db_pool_in_use(dp), 2);
    dm_db_pool_release_scope(dp, scope);
    assert_int_equal(dm_db_pool_in_use(dp), 0);
    /* both are free for another scope, outside a transaction */
    apr_pool_create(&other, pool);
    assert_null(dm_db_pool_acquire(dp, other, &c));
    assert_false(dm_db_in_transaction(c));
    assert_null(dm_db_pool_acquire(dp, other, &c));
    assert_false(dm_db_in_transaction(c));
    assert_int_equal(dm_db_pool_in_use(dp), 2);
    /* the first scope's end releases nothing a second time */
    apr_pool_destroy(scope);
    assert_int_equal(dm_db_pool_in_use(dp), 2);
    apr_pool_destroy(other);
    assert_int_equal(dm_db_pool_in_use(dp), 0);
}

static void test_pool_hands_out_at_most_max_under_threads(void **state)
{
    const char *path = dm_fx_path(pool, "db");
    dm_db_pool *dp = NULL;
    worker w[8];
    apr_thread_t *t[8];
    apr_status_t rv;
    volatile int in_flight = 0, max_seen = 0;
    (void)state;
    dm_fx_open_migrated(pool, path);
    assert_null(dm_db_pool_create(pool, path, 1, 3, 0, &dp));
    for (int i = 0; i < 8; i++) {
        w[i] = (worker){dp, 200, 0, &in_flight, &max_seen};
        apr_thread_create(&t[i], NULL, pool_thread, &w[i], pool);
    }
    for (int i = 0; i < 8; i++) {
        apr_thread_join(&rv, t[i]);
        assert_int_equal(w[i].errors, 0);
    }
    assert_true(max_seen >= 1);
    assert_true(max_seen <= 3);
    assert_int_equal(dm_db_pool_in_use(dp), 0);
    /* every connection came back outside a transaction: a write still works */
    apr_pool_t *scope;
    dm_db *db = NULL;
    apr_pool_create(&scope, pool);
    assert_null(dm_db_pool_acquire(dp, scope, &db));
    assert_false(dm_db_in_transaction(db));
    assert_null(dm_db_begin(db, scope));
    assert_null(dm_db_commit(db, scope));
    apr_pool_destroy(scope);
}

/* The connection given back last goes out first (its pages are warm). */
static void test_pool_hands_out_the_last_connection_given_back(void **state)
{
    const char *path = dm_fx_path(pool, "db");
    dm_db_pool *dp = NULL;
    apr_pool_t *sa, *sb, *sc;
    dm_db *a = NULL, *b = NULL, *c = NULL;
    (void)state;
    dm_fx_open_migrated(pool, path);
    assert_null(dm_db_pool_create(pool, path, 0, 3, 60, &dp));
    apr_pool_create(&sa, pool);
    apr_pool_create(&sb, pool);
    apr_pool_create(&sc, pool);
    assert_null(dm_db_pool_acquire(dp, sa, &a));
    assert_null(dm_db_pool_acquire(dp, sb, &b));
    assert_ptr_not_equal(a, b);
    dm_db_pool_release(dp, sa, a);
    dm_db_pool_release(dp, sb, b);
    assert_null(dm_db_pool_acquire(dp, sc, &c));
    assert_ptr_equal(c, b);
    assert_null(dm_db_pool_acquire(dp, sc, &c));
    assert_ptr_equal(c, a);
    assert_int_equal(dm_db_pool_in_use(dp), 2);
    apr_pool_destroy(sc);
    assert_int_equal(dm_db_pool_in_use(dp), 0);
    apr_pool_destroy(sa);
    apr_pool_destroy(sb);
}

typedef struct taker {
    dm_db_pool *dp;
    dm_db *got;
    int error;
    apr_time_t waited;
} taker;

static void *APR_THREAD_FUNC take_thread(apr_thread_t *t, void *data)
{
    taker *k = data;
    apr_pool_t *p;
    apr_time_t start = apr_time_now();
    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    k->error = dm_db_pool_acquire(k->dp, p, &k->got) != NULL;
    k->waited = apr_time_now() - start;
    apr_pool_destroy(p);
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

/* A thread waiting for the only connection gets it as soon as it is given
 * back: soon after (the stack, the waiter woken to look) and long after
 * (handed over directly), never after the pool's 5 s wait. */
static void test_pool_a_waiter_gets_the_connection_given_back(void **state)
{
    const char *path = dm_fx_path(pool, "db");
    dm_db_pool *dp = NULL;
    (void)state;
    dm_fx_open_migrated(pool, path);
    assert_null(dm_db_pool_create(pool, path, 1, 1, 60, &dp));
    for (int held_ms = 0; held_ms <= 50; held_ms += 50) {
        apr_pool_t *scope;
        dm_db *db = NULL;
        apr_thread_t *t;
        apr_status_t rv;
        taker k = {dp, NULL, 0, 0};
        apr_pool_create(&scope, pool);
        assert_null(dm_db_pool_acquire(dp, scope, &db));
        apr_thread_create(&t, NULL, take_thread, &k, pool);
        apr_sleep(apr_time_from_msec(held_ms));
        dm_db_pool_release(dp, scope, db);
        apr_thread_join(&rv, t);
        assert_int_equal(k.error, 0);
        assert_ptr_equal(k.got, db);
        assert_true(k.waited < apr_time_from_sec(2));
        assert_int_equal(dm_db_pool_in_use(dp), 0);
        apr_pool_destroy(scope);
    }
}

static void test_pool_refuses_bad_sizes(void **state)
{
    dm_db_pool *dp = NULL;
    (void)state;
    assert_non_null(dm_db_pool_create(pool, dm_fx_path(pool, "db"), 2, 1, 0, &dp));
    assert_non_null(dm_db_pool_create(pool, dm_fx_path(pool, "db"), 0, 0, 0, &dp));
}

/* ---- catalogue ---- */

static void test_demo_catalogue_seeds_six_once(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int inserted = 0;
    apr_array_header_t *list = NULL;
    (void)state;
    assert_null(dm_catalogue_seed_demo(db, pool, &inserted));
    assert_int_equal(inserted, 6);
    assert_null(dm_catalogue_seed_demo(db, pool, &inserted));
    assert_int_equal(inserted, 0);
    assert_null(dm_catalogue_list(db, pool, 1, &list));
    assert_int_equal(list->nelts, 6);
}

static void test_cache_renders_contract_fields_and_follows_changes(void **state)
{
    const char *path = dm_fx_path(pool, "db");
    dm_db *db = dm_fx_open_migrated(pool, path);
    dm_db_pool *dp = NULL;
    dm_catalogue_cache *c = NULL;
    dm_rendered a, b, one;
    int inserted = 0;
    (void)state;
    assert_null(dm_catalogue_seed_demo(db, pool, &inserted));
    assert_null(dm_db_pool_create(pool, path, 1, 2, 0, &dp));
    /* revalidate on every read: the test sees changes at once */
    assert_null(dm_catalogue_cache_create(pool, 0, &c));
    assert_null(dm_catalogue_cache_list(c, dp, pool, &a));

    json_t *v = json_loadb(a.body, a.len, 0, NULL);
    assert_non_null(v);
    json_t *pk = json_object_get(v, "packages");
    assert_int_equal(json_array_size(pk), 6);
    json_t *first = json_array_get(pk, 0);
    const char *fields[] = {
        "id",      "name", "hashrate_ths", "price_micros", "daily_yield_micros", "duration_days",
        "currency"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        assert_non_null(json_object_get(first, fields[i]));
    }
    assert_true(json_is_real(json_object_get(first, "hashrate_ths")));
    assert_true(json_real_value(json_object_get(first, "hashrate_ths")) == 0.5);
    assert_true(json_is_integer(json_object_get(json_array_get(pk, 1), "hashrate_ths")));
    assert_int_equal(json_integer_value(json_object_get(first, "price_micros")), 5000000);
    json_decref(v);
    assert_true(a.etag[0] == '"');

    /* same content, same ETag */
    assert_null(dm_catalogue_cache_list(c, dp, pool, &b));
    assert_string_equal(a.etag, b.etag);
    assert_memory_equal(a.body, b.body, a.len);

    /* a change made by another connection shows, with a new ETag */
    assert_null(dm_db_exec(db, pool, "UPDATE packages SET active = 0 WHERE id = 1"));
    assert_null(dm_catalogue_cache_list(c, dp, pool, &b));
    assert_string_not_equal(a.etag, b.etag);
    v = json_loadb(b.body, b.len, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(v, "packages")), 5);
    json_decref(v);

    /* one package; an inactive or unknown one is not found */
    assert_null(dm_catalogue_cache_one(c, dp, pool, 2, &one));
    assert_non_null(strstr(one.body, "\"package\":{\"id\":2"));
    assert_int_equal(dm_catalogue_cache_one(c, dp, pool, 1, &one)->code, DM_E_NOT_FOUND);
    assert_int_equal(dm_catalogue_cache_one(c, dp, pool, 999, &one)->code, DM_E_NOT_FOUND);
}

static void test_cache_within_interval_serves_snapshot(void **state)
{
    const char *path = dm_fx_path(pool, "db");
    dm_db *db = dm_fx_open_migrated(pool, path);
    dm_db_pool *dp = NULL;
    dm_catalogue_cache *c = NULL;
    dm_rendered a, b;
    int inserted = 0;
    (void)state;
    assert_null(dm_catalogue_seed_demo(db, pool, &inserted));
    assert_null(dm_db_pool_create(pool, path, 1, 2, 0, &dp));
    assert_null(dm_catalogue_cache_create(pool, apr_time_from_sec(3600), &c));
    assert_null(dm_catalogue_cache_list(c, dp, pool, &a));
    assert_null(dm_db_exec(db, pool, "UPDATE packages SET name = 'Renamed' WHERE id = 2"));
    assert_null(dm_catalogue_cache_list(c, dp, pool, &b));
    assert_string_equal(a.etag, b.etag); /* not yet revalidated */
    dm_catalogue_cache_invalidate(c);
    assert_null(dm_catalogue_cache_list(c, dp, pool, &b));
    assert_string_not_equal(a.etag, b.etag);
    assert_non_null(strstr(b.body, "Renamed"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_empty_database_applies_all),
        cmocka_unit_test(test_migrate_current_database_applies_nothing),
        cmocka_unit_test(test_migrate_refuses_edited_migration),
        cmocka_unit_test(test_migrate_refuses_newer_database),
        cmocka_unit_test(test_migrate_failure_rolls_back_everything),
        cmocka_unit_test(test_migrate_rebuilds_a_referenced_table_with_foreign_keys_off),
        cmocka_unit_test(test_migrate_rebuild_leaving_a_broken_reference_rolls_back),
        cmocka_unit_test(test_two_migrators_at_once_apply_once),
        cmocka_unit_test(test_pool_hands_out_at_most_max_under_threads),
        cmocka_unit_test(test_pool_release_scope_gives_back_every_lease_once_rolled_back),
        cmocka_unit_test(test_pool_hands_out_the_last_connection_given_back),
        cmocka_unit_test(test_pool_a_waiter_gets_the_connection_given_back),
        cmocka_unit_test(test_pool_refuses_bad_sizes),
        cmocka_unit_test(test_demo_catalogue_seeds_six_once),
        cmocka_unit_test(test_cache_renders_contract_fields_and_follows_changes),
        cmocka_unit_test(test_cache_within_interval_serves_snapshot),
    };
    int rc;
    apr_initialize();
    apr_pool_create(&pool, NULL);
    if (dm_fx_init("storage") != 0) {
        return 1;
    }
    rc = cmocka_run_group_tests_name("storage", tests, NULL, NULL);
    apr_pool_destroy(pool);
    if (dm_fx_done() != 0) {
        return 1;
    }
    return rc;
}
