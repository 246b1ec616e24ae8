/* Error mapping (API.md codes and statuses) and JSON input validation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <string.h>
#include <time.h>

#include "base/confparse.h"
#include "base/json.h"

static apr_pool_t *pool;

static int setup(void **state)
{
    (void)state;
    apr_pool_create(&pool, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool);
    return 0;
}

static void test_codes_map_to_api_names_and_statuses(void **state)
{
    static const struct {
        dm_code code;
        const char *name;
        int status;
    } want[] = {
        {DM_E_BAD_JSON, "bad_json", 400},
        {DM_E_INVALID, "invalid", 400},
        {DM_E_UNAUTHORIZED, "unauthorized", 401},
        {DM_E_FORBIDDEN, "forbidden", 403},
        {DM_E_CSRF, "csrf", 403},
        {DM_E_NOT_FOUND, "not_found", 404},
        {DM_E_METHOD_NOT_ALLOWED, "method_not_allowed", 405},
        {DM_E_CONFLICT, "conflict", 409},
        {DM_E_TOO_LARGE, "too_large", 413},
        {DM_E_RATE_LIMITED, "rate_limited", 429},
        {DM_E_UNAVAILABLE, "unavailable", 503},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_string_equal(dm_err_code_name(want[i].code), want[i].name);
        assert_int_equal(dm_err_http_status(want[i].code), want[i].status);
    }
}

static void test_error_body_has_contract_shape(void **state)
{
    dm_err *e = dm_err_make(pool, DM_E_INVALID, "email", "email is %s", "required");
    json_t *v;
    (void)state;
    v = json_loads(dm_err_to_json(pool, e), 0, NULL);
    assert_non_null(v);
    assert_string_equal(json_string_value(json_object_get(json_object_get(v, "error"), "code")),
                        "invalid");
    assert_string_equal(json_string_value(json_object_get(json_object_get(v, "error"), "message")),
                        "email is required");
    assert_string_equal(json_string_value(json_object_get(json_object_get(v, "error"), "field")),
                        "email");
    json_decref(v);
    /* no field member when there is no field */
    e = dm_err_make(pool, DM_E_NOT_FOUND, NULL, "gone");
    assert_null(strstr(dm_err_to_json(pool, e), "field"));
    /* invalid UTF-8 in a message never breaks the body */
    e = dm_err_make(pool, DM_E_INVALID, "x", "bad \xff\xfe");
    v = json_loads(dm_err_to_json(pool, e), 0, NULL);
    assert_non_null(v);
    json_decref(v);
}

static void expect_bad_json(const char *text)
{
    json_t *o = NULL;
    dm_err *e = dm_json_parse_object(pool, text, strlen(text), &o);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_BAD_JSON);
}

static void test_non_object_or_malformed_body_is_bad_json(void **state)
{
    (void)state;
    expect_bad_json("");
    expect_bad_json("{");
    expect_bad_json("[1,2]");
    expect_bad_json("\"text\"");
    expect_bad_json("42");
    expect_bad_json("null");
    expect_bad_json("{\"a\":1,\"a\":2}");
    expect_bad_json("{\"a\":\"\xff\"}");
    expect_bad_json("{\"a\":1} trailing");
    /* NUL inside a string is refused by the parser: no field ever holds one */
    expect_bad_json("{\"a\":\"x\\u0000y\"}");
}

static void test_field_getters_name_the_field(void **state)
{
    json_t *o = NULL;
    const char *s = NULL;
    int64_t i = 0;
    int b = 0, present = 0;
    const char *text = "{\"name\":\"x\",\"n\":5,\"big\":99,\"flag\":true,\"wrong\":\"5\","
                       "\"none\":null}";
    (void)state;
    assert_null(dm_json_parse_object(pool, text, strlen(text), &o));
    assert_null(dm_json_get_string(pool, o, "name", 1, 10, &s, NULL));
    assert_string_equal(s, "x");
    assert_null(dm_json_get_int64(pool, o, "n", 1, 1, 10, &i, NULL));
    assert_int_equal(i, 5);
    assert_null(dm_json_get_bool(pool, o, "flag", 1, &b, NULL));
    assert_true(b);

    dm_err *e = dm_json_get_string(pool, o, "missing", 1, 10, &s, NULL);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "missing");
    e = dm_json_get_int64(pool, o, "wrong", 1, 0, 10, &i, NULL);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "wrong");
    e = dm_json_get_int64(pool, o, "big", 1, 0, 10, &i, NULL);
    assert_string_equal(e->field, "big");
    e = dm_json_get_string(pool, o, "n", 1, 10, &s, NULL);
    assert_string_equal(e->field, "n");
    e = dm_json_get_string(pool, o, "name", 1, 0, &s, NULL);
    assert_string_equal(e->field, "name");
    e = dm_json_get_bool(pool, o, "n", 1, &b, NULL);
    assert_string_equal(e->field, "n");
    /* optional and absent (or null): no error, reported absent */
    assert_null(dm_json_get_string(pool, o, "none", 0, 10, &s, &present));
    assert_false(present);
}

static void test_int_parser_bounds(void **state)
{
    long long v = 0;
    (void)state;
    assert_null(dm_parse_int(pool, "1048576", 1, 1 << 30, &v));
    assert_int_equal(v, 1048576);
    assert_non_null(dm_parse_int(pool, "0", 1, 10, &v));
    assert_non_null(dm_parse_int(pool, "11", 1, 10, &v));
    assert_non_null(dm_parse_int(pool, "-1", 0, 10, &v));
    assert_non_null(dm_parse_int(pool, "+1", 0, 10, &v));
    assert_non_null(dm_parse_int(pool, "1M", 0, 10, &v));
    assert_non_null(dm_parse_int(pool, " 1", 0, 10, &v));
    assert_non_null(dm_parse_int(pool, "", 0, 10, &v));
    assert_non_null(dm_parse_int(pool, "99999999999999999999999", 0, 10, &v));
}

static void test_origin_and_url_parsers(void **state)
{
    const char *out = NULL;
    (void)state;
    assert_null(dm_parse_origin(pool, "https://Mine.Example.com", &out));
    assert_string_equal(out, "https://mine.example.com");
    assert_null(dm_parse_origin(pool, "http://127.0.0.1:8080", &out));
    assert_non_null(dm_parse_origin(pool, "https://mine.example.com/app", &out));
    assert_non_null(dm_parse_origin(pool, "ftp://mine.example.com", &out));
    assert_non_null(dm_parse_origin(pool, "mine.example.com", &out));
    assert_non_null(dm_parse_origin(pool, "https://u@mine.example.com", &out));
    assert_non_null(dm_parse_origin(pool, "https://mine.example.com?x=1", &out));
    assert_null(dm_parse_public_url(pool, "https://mine.example.com/shop/", &out));
    assert_string_equal(out, "https://mine.example.com/shop");
    assert_non_null(dm_parse_public_url(pool, "https://mine.example.com/#x", &out));
    assert_non_null(dm_parse_public_url(pool, "https://", &out));
    assert_non_null(dm_parse_public_url(pool, "https://a b.com", &out));
}

/* dm_json_time (its own civil-date arithmetic) agrees with gmtime_r +
 * strftime from 1970 to 9999, on day boundaries, leap days and a stride of
 * odd seconds. */
static void test_time_format_matches_strftime(void **state)
{
    static const int64_t fixed[] = {0,
                                    59,
                                    86399,
                                    86400,
                                    951782400 /* 2000-02-29 */,
                                    1709164800 /* 2024-02-29 */,
                                    2147483647,
                                    4102444800,
                                    253402300799 /* 9999-12-31T23:59:59 */};
    (void)state;
    for (int64_t t = 0, i = 0; t < 253402300799 || i < (int64_t)(sizeof(fixed) / sizeof(fixed[0]));
         t += 86399LL * 37 + 7919, i++) {
        int64_t v = i < (int64_t)(sizeof(fixed) / sizeof(fixed[0])) ? fixed[i] : t;
        time_t tt = (time_t)v;
        struct tm tm;
        char want[32];
        gmtime_r(&tt, &tm);
        strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%SZ", &tm);
        assert_string_equal(dm_json_time(pool, v), want);
    }
}

/* The direct writer escapes what JSON requires: jansson reads back every
 * string exactly, and numbers and times as written. */
static void test_jbuf_writes_what_jansson_reads(void **state)
{
    static const char *strings[] = {"plain",        "quote \" and \\ backslash", "tab\tnl\ncr\r",
                                    "\x01\x1f ctl", "caf\xc3\xa9 \xe2\x82\xac",  ""};
    dm_jbuf b;
    json_t *v;
    json_error_t err;
    (void)state;
    dm_jbuf_init(&b, pool, 8);
    dm_jbuf_lit(&b, "[");
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        dm_jbuf_str(&b, strings[i]);
        dm_jbuf_lit(&b, ",");
    }
    dm_jbuf_str(&b, NULL);
    dm_jbuf_lit(&b, ",");
    dm_jbuf_int(&b, INT64_MIN);
    dm_jbuf_lit(&b, ",");
    dm_jbuf_time(&b, 1795600800);
    dm_jbuf_lit(&b, "]");
    assert_int_equal(strlen(b.p), b.len);
    v = json_loadb(b.p, b.len, 0, &err);
    assert_non_null(v);
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        assert_string_equal(json_string_value(json_array_get(v, i)), strings[i]);
    }
    assert_true(json_is_null(json_array_get(v, 6)));
    assert_true(json_integer_value(json_array_get(v, 7)) == INT64_MIN);
    assert_string_equal(json_string_value(json_array_get(v, 8)), "2026-11-25T10:00:00Z");
    json_decref(v);
}

/* The direct writer's bytes are json_dumps's bytes for the same values:
 * answers moved from jansson trees to it keep every byte (cmp-checked). */
static void test_jbuf_writes_the_bytes_json_dumps_writes(void **state)
{
    static const char *strings[] = {"plain",
                                    "quote \" backslash \\ slash /",
                                    "tab\tnl\ncr\rbs\bff\f",
                                    "\x01\x02\x1b\x1f\x7f",
                                    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                                    "",
                                    "<script>&amp;'"};
    static const int64_t ints[] = {0, 1, -1, 42, 1000000, INT64_MAX, INT64_MIN, -9000000000};
    char all[33];
    dm_jbuf b;
    json_t *arr = json_array();
    const char *want;
    (void)state;
    for (int i = 1; i < 33; i++) {
        all[i - 1] = (char)i; /* every C0 control character and the space */
    }
    all[32] = '\0';
    dm_jbuf_init(&b, pool, 8);
    dm_jbuf_lit(&b, "[");
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        json_array_append_new(arr, json_string(strings[i]));
        dm_jbuf_str(&b, strings[i]);
        dm_jbuf_lit(&b, ",");
    }
    json_array_append_new(arr, json_string(all));
    dm_jbuf_str(&b, all);
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        json_array_append_new(arr, json_integer(ints[i]));
        dm_jbuf_lit(&b, ",");
        dm_jbuf_int(&b, ints[i]);
    }
    json_array_append_new(arr, json_true());
    json_array_append_new(arr, json_false());
    json_array_append_new(arr, json_null());
    dm_jbuf_lit(&b, ",");
    dm_jbuf_bool(&b, 7);
    dm_jbuf_lit(&b, ",");
    dm_jbuf_bool(&b, 0);
    dm_jbuf_lit(&b, ",");
    dm_jbuf_str(&b, NULL);
    dm_jbuf_lit(&b, "]");
    want = dm_json_dump(pool, dm_json_own(pool, arr), NULL);
    assert_string_equal(b.p, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes_map_to_api_names_and_statuses),
        cmocka_unit_test(test_error_body_has_contract_shape),
        cmocka_unit_test(test_non_object_or_malformed_body_is_bad_json),
        cmocka_unit_test(test_field_getters_name_the_field),
        cmocka_unit_test(test_int_parser_bounds),
        cmocka_unit_test(test_origin_and_url_parsers),
        cmocka_unit_test(test_time_format_matches_strftime),
        cmocka_unit_test(test_jbuf_writes_what_jansson_reads),
        cmocka_unit_test(test_jbuf_writes_the_bytes_json_dumps_writes),
    };
    apr_initialize();
    return cmocka_run_group_tests_name("errors_json_config", tests, setup, teardown);
}
