/* Group commit (store/db_group.h): each caller's work commits or is undone
 * alone, whichever other callers share its transaction, and each caller
 * gets its own error. Threads on connections of their own write at once;
 * whether they were batched or not, the rows must be exactly those of the
 * calls that succeeded. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <pthread.h>
#include <unistd.h>
#include <string.h>

#include "store/db.h"
#include "store/db_group.h"
#include "store/db_pool.h"
#include "fixture.h"

#define THREADS 8
#define CALLS 60

static apr_pool_t *pool;
static int64_t key_base = 1000; /* the concurrent test's first key */

typedef struct work {
    int64_t key;
    int fail;      /* 1: inserts, then returns DM_E_CONFLICT */
    int duplicate; /* 1: inserts, then inserts a key that exists */
} work;

static dm_err *insert_key(dm_db *db, apr_pool_t *p, int64_t key)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, "INSERT INTO g (k) VALUES (?)", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, key);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

static dm_err *work_fn(dm_db *db, apr_pool_t *p, void *arg)
{
    const work *w = arg;
    dm_err *e = insert_key(db, p, w->key);

    if (!e && w->fail) {
        return dm_err_make(p, DM_E_CONFLICT, "key", "refused %" APR_INT64_T_FMT,
                           (apr_int64_t)w->key);
    }
    if (!e && w->duplicate) {
        e = insert_key(db, p, 0); /* key 0 exists: a constraint error */
    }
    return e;
}

static int64_t count(dm_db *db, const char *sql)
{
    int64_t n = -1;
    int found = 0;

    assert_null(dm_db_query_int64(db, pool, sql, &n, &found));
    assert_true(found);
    return n;
}

static const char *path_made(void)
{
    static const char *path;
    dm_db *db;

    if (!path) {
        path = dm_fx_path(pool, "group");
        db = dm_fx_open_migrated(pool, path);
        assert_null(dm_db_exec(db, pool, "CREATE TABLE g (k INTEGER PRIMARY KEY)"));
        assert_null(dm_db_exec(db, pool, "INSERT INTO g (k) VALUES (0)"));
        dm_db_close(db);
    }
    return path;
}

static void test_one_caller_commits_its_work_or_none_of_it(void **state)
{
    dm_db *db;
    work ok = {1, 0, 0}, refused = {2, 1, 0}, dup = {3, 0, 1};
    dm_err *e;

    (void)state;
    assert_null(dm_db_open(pool, path_made(), NULL, &db));
    assert_null(dm_db_write_txn(db, pool, work_fn, &ok));
    e = dm_db_write_txn(db, pool, work_fn, &refused);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_string_equal(e->message, "refused 2");
    e = dm_db_write_txn(db, pool, work_fn, &dup);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_false(dm_db_in_transaction(db));
    assert_int_equal(count(db, "SELECT COUNT(*) FROM g WHERE k IN (1, 2, 3)"), 1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM g WHERE k = 1"), 1);
    dm_db_close(db);
}

typedef struct thread_arg {
    int id;
    int errors;       /* calls that returned an error */
    int wrong_errors; /* errors that were not this call's own */
} thread_arg;

/* One call's outcome counted: an error must be its own refusal (a failing
 * call's message, a duplicate's conflict), a success must be neither. */
static void tally(thread_arg *t, const work *w, const dm_err *e, apr_pool_t *cp)
{
    if (e) {
        t->errors++;
        if (!(w->fail || w->duplicate) || e->code != DM_E_CONFLICT ||
            (w->fail && strcmp(e->message, apr_psprintf(cp, "refused %" APR_INT64_T_FMT,
                                                        (apr_int64_t)w->key)) != 0)) {
            t->wrong_errors++;
        }
    } else if (w->fail || w->duplicate) {
        t->wrong_errors++;
    }
}

static void *writer(void *arg)
{
    thread_arg *t = arg;
    apr_pool_t *p;
    dm_db *db = NULL;

    apr_pool_create(&p, NULL);
    if (dm_db_open(p, path_made(), NULL, &db)) {
        t->wrong_errors = -1;
        return NULL;
    }
    dm_db_set_busy_timeout(db, 30000);
    for (int i = 0; i < CALLS; i++) {
        apr_pool_t *cp;
        work w;
        apr_pool_create(&cp, p);
        w.key = key_base + (int64_t)t->id * CALLS + i;
        w.fail = i % 5 == 1;
        w.duplicate = i % 7 == 3;
        tally(t, &w, dm_db_write_txn(db, cp, work_fn, &w), cp);
        apr_pool_destroy(cp);
    }
    dm_db_close(db);
    apr_pool_destroy(p);
    return NULL;
}

static void test_concurrent_callers_keep_exactly_the_rows_of_the_calls_that_succeeded(void **state)
{
    pthread_t th[THREADS];
    thread_arg args[THREADS];
    int64_t expected = 0;
    dm_db *db;

    (void)state;
    memset(args, 0, sizeof(args));
    path_made();
    for (int i = 0; i < THREADS; i++) {
        args[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, writer, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].wrong_errors, 0);
    }
    for (int i = 0; i < CALLS; i++) {
        expected += !(i % 5 == 1 || i % 7 == 3);
    }
    assert_null(dm_db_open(pool, path_made(), NULL, &db));
    assert_int_equal(
        count(db, apr_psprintf(pool, "SELECT COUNT(*) FROM g WHERE k >= %d", (int)key_base)),
        expected * THREADS);
    /* none of a refused call's rows is there */
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(args[i].errors, CALLS - expected);
        for (int c = 0; c < CALLS; c++) {
            const char *sql = apr_psprintf(pool, "SELECT COUNT(*) FROM g WHERE k = %d",
                                           (int)key_base + i * CALLS + c);
            assert_int_equal(count(db, sql), (c % 5 == 1 || c % 7 == 3) ? 0 : 1);
        }
    }
    dm_db_close(db);
}

/* The server's way (dm_db_group_own_connection): leaders run batches on
 * one writer connection of the process; the same rows, the same errors. */
static void
test_a_writer_connection_keeps_exactly_the_rows_of_the_calls_that_succeeded(void **state)
{
    apr_pool_t *owner;
    dm_db *db;

    /* the single caller's keys again */
    assert_null(dm_db_open(pool, path_made(), NULL, &db));
    assert_null(dm_db_exec(db, pool, "DELETE FROM g WHERE k IN (1, 2, 3)"));
    dm_db_close(db);
    apr_pool_create(&owner, pool);
    dm_db_group_own_connection(owner);
    key_base = 100000;
    test_one_caller_commits_its_work_or_none_of_it(state);
    test_concurrent_callers_keep_exactly_the_rows_of_the_calls_that_succeeded(state);
    dm_db_group_own_connection(NULL);
    apr_pool_destroy(owner);
}

/* A database file deleted and made again under the process (as a test
 * does between cases): the writer connection is opened again on the new
 * file, never writing to the old one it still holds open. */
static void test_a_writer_connection_follows_a_file_made_again(void **state)
{
    apr_pool_t *owner;
    const char *path = dm_fx_path(pool, "group-again");
    work first = {7, 0, 0}, second = {8, 0, 0};
    dm_db *db;

    (void)state;
    apr_pool_create(&owner, pool);
    dm_db_group_own_connection(owner);
    db = dm_fx_open_migrated(pool, path);
    assert_null(dm_db_exec(db, pool, "CREATE TABLE g (k INTEGER PRIMARY KEY)"));
    assert_null(dm_db_write_txn(db, pool, work_fn, &first));
    dm_db_close(db);
    /* the writer connection still has these open */
    assert_int_equal(unlink(path), 0);
    (void)unlink(apr_pstrcat(pool, path, "-wal", NULL));
    (void)unlink(apr_pstrcat(pool, path, "-shm", NULL));
    db = dm_fx_open_migrated(pool, path);
    assert_null(dm_db_exec(db, pool, "CREATE TABLE g (k INTEGER PRIMARY KEY)"));
    assert_null(dm_db_write_txn(db, pool, work_fn, &second));
    assert_int_equal(count(db, "SELECT COUNT(*) FROM g WHERE k = 7"), 0);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM g WHERE k = 8"), 1);
    dm_db_close(db);
    dm_db_group_own_connection(NULL);
    apr_pool_destroy(owner);
}

/* dm_db_pool_write_txn's callers hold no connection: each thread writes
 * through a pool of POOL_MAX, fewer than the threads. */
#define POOL_MAX 2

typedef struct pool_thread_arg {
    dm_db_pool *dbp;
    thread_arg t;
} pool_thread_arg;

static void *pool_writer(void *arg)
{
    pool_thread_arg *pa = arg;
    thread_arg *t = &pa->t;
    apr_pool_t *p;

    apr_pool_create(&p, NULL);
    for (int i = 0; i < CALLS; i++) {
        apr_pool_t *cp;
        work w;
        apr_pool_create(&cp, p);
        w.key = key_base + (int64_t)t->id * CALLS + i;
        w.fail = i % 5 == 1;
        w.duplicate = i % 7 == 3;
        tally(t, &w, dm_db_pool_write_txn(pa->dbp, cp, work_fn, &w), cp);
        /* every connection it may have borrowed given back */
        if (dm_db_pool_in_use(pa->dbp) > POOL_MAX) {
            t->wrong_errors++;
        }
        apr_pool_destroy(cp);
    }
    apr_pool_destroy(p);
    return NULL;
}

/* Through the pool, before the writer connection is open (a connection
 * borrowed for the call) and after (none held while queued): the same
 * rows, the same errors, every connection given back. */
static void
test_writers_through_the_pool_keep_exactly_the_rows_of_the_calls_that_succeeded(void **state)
{
    apr_pool_t *owner;
    pthread_t th[THREADS];
    pool_thread_arg args[THREADS];
    int64_t expected = 0;
    dm_db_pool *dbp;
    dm_db *db;
    work first = {50, 0, 0}, refused = {51, 1, 0};
    dm_err *e;

    (void)state;
    path_made();
    apr_pool_create(&owner, pool);
    assert_null(dm_db_pool_create(owner, path_made(), 0, POOL_MAX, 0, &dbp));
    /* no writer connection in this process: a borrowed one */
    assert_null(dm_db_pool_write_txn(dbp, pool, work_fn, &first));
    e = dm_db_pool_write_txn(dbp, pool, work_fn, &refused);
    assert_non_null(e);
    assert_string_equal(e->message, "refused 51");
    assert_int_equal(dm_db_pool_in_use(dbp), 0);
    dm_db_group_own_connection(owner);
    key_base = 200000;
    memset(args, 0, sizeof(args));
    for (int i = 0; i < THREADS; i++) {
        args[i].dbp = dbp;
        args[i].t.id = i;
        assert_int_equal(pthread_create(&th[i], NULL, pool_writer, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].t.wrong_errors, 0);
    }
    assert_int_equal(dm_db_pool_in_use(dbp), 0);
    for (int i = 0; i < CALLS; i++) {
        expected += !(i % 5 == 1 || i % 7 == 3);
    }
    assert_null(dm_db_open(pool, path_made(), NULL, &db));
    assert_int_equal(count(db, "SELECT COUNT(*) FROM g WHERE k IN (50, 51)"), 1);
    assert_int_equal(
        count(db, apr_psprintf(pool, "SELECT COUNT(*) FROM g WHERE k >= %d", (int)key_base)),
        expected * THREADS);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(args[i].t.errors, CALLS - expected);
        for (int c = 0; c < CALLS; c++) {
            const char *sql = apr_psprintf(pool, "SELECT COUNT(*) FROM g WHERE k = %d",
                                           (int)key_base + i * CALLS + c);
            assert_int_equal(count(db, sql), (c % 5 == 1 || c % 7 == 3) ? 0 : 1);
        }
    }
    dm_db_close(db);
    dm_db_group_own_connection(NULL);
    apr_pool_destroy(owner);
}

/* Once the writer connection is open, a write through the pool needs none
 * of the pool's connections: it commits while the only one is held (by a
 * caller that would wait 5 s and fail, had it borrowed one). */
static void test_a_write_through_the_pool_needs_no_free_connection(void **state)
{
    apr_pool_t *owner, *held;
    dm_db_pool *dbp;
    dm_db *db, *mine;
    work opens = {60, 0, 0}, w = {61, 0, 0};
    apr_time_t t0;

    (void)state;
    apr_pool_create(&owner, pool);
    apr_pool_create(&held, pool);
    assert_null(dm_db_pool_create(owner, path_made(), 0, 1, 0, &dbp));
    dm_db_group_own_connection(owner);
    assert_null(dm_db_pool_write_txn(dbp, pool, work_fn, &opens)); /* opens it */
    assert_null(dm_db_pool_acquire(dbp, held, &mine));
    t0 = apr_time_now();
    assert_null(dm_db_pool_write_txn(dbp, pool, work_fn, &w));
    assert_true(apr_time_now() - t0 < apr_time_from_sec(2));
    assert_int_equal(dm_db_pool_in_use(dbp), 1);
    assert_int_equal(count(mine, "SELECT COUNT(*) FROM g WHERE k IN (60, 61)"), 2);
    apr_pool_destroy(held);
    assert_null(dm_db_open(pool, path_made(), NULL, &db));
    assert_int_equal(count(db, "SELECT COUNT(*) FROM g WHERE k = 61"), 1);
    dm_db_close(db);
    dm_db_group_own_connection(NULL);
    apr_pool_destroy(owner);
}

/* dm_db_checkpoint_copy (the accrual's checkpoint thread): a PASSIVE pass
 * on a connection of its own copies back what was committed while another
 * connection holds the write lock, and returns the WAL's length it copied;
 * the writer commits after it, and the next pass copies that too. */
static void test_a_checkpoint_copy_goes_on_beside_a_writer(void **state)
{
    const char *path = dm_fx_path(pool, "group-copy");
    dm_db *w, *c;
    int first, second;

    (void)state;
    assert_null(dm_db_open(pool, path, NULL, &w));
    assert_null(dm_db_open(pool, path, NULL, &c));
    assert_null(dm_db_exec(w, pool, "CREATE TABLE g (k INTEGER PRIMARY KEY)"));
    assert_null(insert_key(w, pool, 1));
    assert_null(dm_db_begin(w, pool));
    assert_null(insert_key(w, pool, 2));
    first = dm_db_checkpoint_copy(c); /* the writer's transaction still open */
    assert_true(first > 0);
    assert_null(dm_db_commit(w, pool));
    second = dm_db_checkpoint_copy(c);
    assert_true(second > first);
    assert_int_equal(count(c, "SELECT COUNT(*) FROM g"), 2);
    dm_db_close(c);
    dm_db_close(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_caller_commits_its_work_or_none_of_it),
        cmocka_unit_test(test_concurrent_callers_keep_exactly_the_rows_of_the_calls_that_succeeded),
        cmocka_unit_test(
            test_a_writer_connection_keeps_exactly_the_rows_of_the_calls_that_succeeded),
        cmocka_unit_test(test_a_writer_connection_follows_a_file_made_again),
        cmocka_unit_test(
            test_writers_through_the_pool_keep_exactly_the_rows_of_the_calls_that_succeeded),
        cmocka_unit_test(test_a_write_through_the_pool_needs_no_free_connection),
        cmocka_unit_test(test_a_checkpoint_copy_goes_on_beside_a_writer),
    };
    int rc;
    apr_initialize();
    apr_pool_create(&pool, NULL);
    if (dm_fx_init("db_group") != 0) {
        return 1;
    }
    rc = cmocka_run_group_tests_name("db_group", tests, NULL, NULL);
    apr_pool_destroy(pool);
    if (dm_fx_done() != 0) {
        return 1;
    }
    return rc;
}
