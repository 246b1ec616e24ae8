/*
 * Giving an APR allocator's free nodes back (core/base/aprmem.c): the module
 * calls it when a connection closes, so that the event MPM's recycled
 * connection pools do not keep their last requests' memory. It reads the
 * allocator's free lists through a copy of APR's layout: these tests fail
 * if the installed APR is laid out otherwise (the release would then
 * silently keep everything).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>

#include "base/aprmem.h"

/* An allocator with MaxMemFree's 256 KiB and a pool on it whose subpool
 * allocated and freed `kib` KiB in nodes of about 8 KiB: those nodes now
 * wait on the allocator's free lists. */
static apr_pool_t *pool_with_freed(apr_allocator_t **out, int kib)
{
    apr_allocator_t *a;
    apr_pool_t *p, *sub;

    assert_int_equal(apr_allocator_create(&a), APR_SUCCESS);
    apr_allocator_max_free_set(a, 256 * 1024);
    assert_int_equal(apr_pool_create_ex(&p, NULL, NULL, a), APR_SUCCESS);
    apr_allocator_owner_set(a, p);
    assert_int_equal(apr_pool_create(&sub, p), APR_SUCCESS);
    for (int i = 0; i < kib / 4; i++) {
        (void)apr_palloc(sub, 4000);
    }
    apr_pool_destroy(sub);
    *out = a;
    return p;
}

static void test_every_free_node_is_given_back(void **state)
{
    apr_allocator_t *a;
    apr_pool_t *p = pool_with_freed(&a, 64);
    apr_size_t released = 0;

    (void)state;
    assert_int_equal(dm_apr_allocator_release(a, &released), 1);
    /* the subpool's nodes: at least the 64 KiB it held */
    assert_true(released >= 64 * 1024);
    assert_true(released < 256 * 1024);
    /* nothing is left on the lists */
    assert_int_equal(dm_apr_allocator_release(a, &released), 1);
    assert_int_equal(released, 0);
    apr_pool_destroy(p);
}

static void test_after_release_nothing_freed_is_kept(void **state)
{
    apr_allocator_t *a;
    apr_pool_t *p = pool_with_freed(&a, 32), *sub;
    apr_size_t released = 0;

    (void)state;
    assert_int_equal(dm_apr_allocator_release(a, &released), 1);
    assert_true(released > 0);
    /* the limit stays at its lowest: a pool freed now keeps nothing */
    assert_int_equal(apr_pool_create(&sub, p), APR_SUCCESS);
    for (int i = 0; i < 16; i++) {
        (void)apr_palloc(sub, 4000);
    }
    apr_pool_destroy(sub);
    assert_int_equal(dm_apr_allocator_release(a, &released), 1);
    assert_int_equal(released, 0);
    apr_pool_destroy(p);
}

static void test_large_nodes_are_given_back_too(void **state)
{
    apr_allocator_t *a;
    apr_pool_t *p, *sub;
    apr_size_t released = 0;

    (void)state;
    assert_int_equal(apr_allocator_create(&a), APR_SUCCESS);
    apr_allocator_max_free_set(a, 1024 * 1024);
    assert_int_equal(apr_pool_create_ex(&p, NULL, NULL, a), APR_SUCCESS);
    apr_allocator_owner_set(a, p);
    assert_int_equal(apr_pool_create(&sub, p), APR_SUCCESS);
    (void)apr_palloc(sub, 40 * 1024);  /* a node of its own size (a list 1..19) */
    (void)apr_palloc(sub, 200 * 1024); /* one larger than the lists (slot 0) */
    apr_pool_destroy(sub);
    assert_int_equal(dm_apr_allocator_release(a, &released), 1);
    assert_true(released >= 240 * 1024);
    assert_int_equal(dm_apr_allocator_release(a, &released), 1);
    assert_int_equal(released, 0);
    apr_pool_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_free_node_is_given_back),
        cmocka_unit_test(test_after_release_nothing_freed_is_kept),
        cmocka_unit_test(test_large_nodes_are_given_back_too),
    };
    int rc;

    apr_initialize();
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_terminate();
    return rc;
}
