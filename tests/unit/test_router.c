/* Router: literal and placeholder matching, 404, 405 with Allow, HEAD. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <string.h>

#include "base/router.h"

static apr_pool_t *pool;
static dm_router *r;
static const int LIST = 1, ONE = 2, CREATE = 3, HEALTH = 4, NESTED = 5;

static int setup(void **state)
{
    (void)state;
    apr_pool_create(&pool, NULL);
    r = dm_router_create(pool);
    assert_null(dm_router_add(r, "GET", "/api/health", &HEALTH));
    assert_null(dm_router_add(r, "GET", "/api/packages", &LIST));
    assert_null(dm_router_add(r, "POST", "/api/packages", &CREATE));
    assert_null(dm_router_add(r, "GET", "/api/packages/{id}", &ONE));
    assert_null(dm_router_add(r, "GET", "/api/users/{user}/documents/{doc}", &NESTED));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool);
    return 0;
}

static void test_literal_route_matches_exactly(void **state)
{
    dm_route_match m;
    (void)state;
    assert_null(dm_router_match(r, pool, "GET", "/api/health", &m));
    assert_ptr_equal(m.data, &HEALTH);
    assert_string_equal(m.pattern, "/api/health");
}

static void test_placeholder_captures_segment(void **state)
{
    dm_route_match m;
    (void)state;
    assert_null(dm_router_match(r, pool, "GET", "/api/packages/42", &m));
    assert_ptr_equal(m.data, &ONE);
    assert_string_equal(apr_table_get(m.params, "id"), "42");
    assert_null(dm_router_match(r, pool, "GET", "/api/users/7/documents/selfie", &m));
    assert_ptr_equal(m.data, &NESTED);
    assert_string_equal(apr_table_get(m.params, "user"), "7");
    assert_string_equal(apr_table_get(m.params, "doc"), "selfie");
}

static void test_method_selects_route(void **state)
{
    dm_route_match m;
    (void)state;
    assert_null(dm_router_match(r, pool, "POST", "/api/packages", &m));
    assert_ptr_equal(m.data, &CREATE);
}

static void test_head_is_served_by_get(void **state)
{
    dm_route_match m;
    (void)state;
    assert_null(dm_router_match(r, pool, "HEAD", "/api/packages", &m));
    assert_ptr_equal(m.data, &LIST);
}

static void test_unknown_path_is_404(void **state)
{
    dm_route_match m;
    dm_err *e;
    (void)state;
    e = dm_router_match(r, pool, "GET", "/api/nothing", &m);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_NOT_FOUND);
    /* a trailing slash, a doubled slash or an extra segment is another path */
    assert_int_equal(dm_router_match(r, pool, "GET", "/api/packages/", &m)->code, DM_E_NOT_FOUND);
    assert_int_equal(dm_router_match(r, pool, "GET", "/api//packages", &m)->code, DM_E_NOT_FOUND);
    assert_int_equal(dm_router_match(r, pool, "GET", "/api/packages/1/x", &m)->code,
                     DM_E_NOT_FOUND);
    assert_int_equal(dm_router_match(r, pool, "GET", "relative", &m)->code, DM_E_NOT_FOUND);
    assert_int_equal(dm_router_match(r, pool, "GET", "", &m)->code, DM_E_NOT_FOUND);
}

static void test_wrong_method_is_405_with_allow(void **state)
{
    dm_route_match m;
    dm_err *e;
    (void)state;
    e = dm_router_match(r, pool, "DELETE", "/api/packages", &m);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_METHOD_NOT_ALLOWED);
    assert_string_equal(m.allow, "GET, HEAD, POST");
    e = dm_router_match(r, pool, "PUT", "/api/packages/3", &m);
    assert_int_equal(e->code, DM_E_METHOD_NOT_ALLOWED);
    assert_string_equal(m.allow, "GET, HEAD");
}

static void test_malformed_patterns_are_refused(void **state)
{
    (void)state;
    assert_non_null(dm_router_add(r, "GET", "api/x", &LIST));
    assert_non_null(dm_router_add(r, "GET", "/api/{}", &LIST));
    assert_non_null(dm_router_add(r, "GET", "/api/{id", &LIST));
    assert_non_null(dm_router_add(r, "GET", "/api/x{id}", &LIST));
    assert_non_null(dm_router_add(r, "GET", "/api//x", &LIST));
    /* the same method and pattern twice */
    assert_int_equal(dm_router_add(r, "GET", "/api/health", &LIST)->code, DM_E_CONFLICT);
}

static void test_too_many_segments_is_404_not_overflow(void **state)
{
    dm_route_match m;
    char path[400] = "";
    (void)state;
    for (int i = 0; i < 40; i++) {
        strcat(path, "/a");
    }
    assert_int_equal(dm_router_match(r, pool, "GET", path, &m)->code, DM_E_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_route_matches_exactly),
        cmocka_unit_test(test_placeholder_captures_segment),
        cmocka_unit_test(test_method_selects_route),
        cmocka_unit_test(test_head_is_served_by_get),
        cmocka_unit_test(test_unknown_path_is_404),
        cmocka_unit_test(test_wrong_method_is_405_with_allow),
        cmocka_unit_test(test_malformed_patterns_are_refused),
        cmocka_unit_test(test_too_many_segments_is_404_not_overflow),
    };
    apr_initialize();
    return cmocka_run_group_tests_name("router", tests, setup, teardown);
}
