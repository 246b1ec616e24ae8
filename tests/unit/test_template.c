/* The e-mail template language: substitution and escaping per part,
 * {{#if}}/{{else}}, errors with their positions at save time, the money
 * and time helpers, and header injection through a subject variable. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <string.h>

#include "base/template.h"

static apr_pool_t *pool;

static json_t *vars(const char *json)
{
    json_error_t err;
    json_t *v = json_loads(json, JSON_ALLOW_NUL, &err);
    if (!v) {
        fail_msg("bad test JSON %s: %s", json, err.text);
    }
    return v;
}

/* Renders src in mode with the variables of a JSON text. */
static const char *render(dm_tmpl_mode mode, const char *src, const char *json)
{
    dm_tmpl *t = NULL;
    const char *out = NULL;
    json_t *v = vars(json);
    dm_err *e = dm_tmpl_parse(pool, "text", src, strlen(src), mode, &t);

    if (e) {
        fail_msg("parse of %s failed: %s", src, e->message);
    }
    e = dm_tmpl_render(pool, t, v, &out, NULL);
    json_decref(v);
    if (e) {
        fail_msg("render of %s failed: %s", src, e->message);
    }
    return out;
}

/* The error of parsing (and checking against `declared`, comma-separated). */
static dm_err *check(const char *field, dm_tmpl_mode mode, const char *src, const char *declared)
{
    apr_array_header_t *names = apr_array_make(pool, 4, sizeof(const char *));
    char *list = apr_pstrdup(pool, declared), *last = NULL;

    for (char *tok = apr_strtok(list, ",", &last); tok; tok = apr_strtok(NULL, ",", &last)) {
        APR_ARRAY_PUSH(names, const char *) = tok;
    }
    return dm_tmpl_check(pool, field, src, strlen(src), mode, names);
}

static void assert_invalid_at(dm_err *e, const char *field, const char *where)
{
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, field);
    if (!strstr(e->message, where)) {
        fail_msg("\"%s\" does not say \"%s\"", e->message, where);
    }
}

static void test_variables_are_substituted(void **state)
{
    (void)state;
    assert_string_equal(render(DM_TMPL_TEXT, "Hello {{name}}, {{ name }}!", "{\"name\":\"Ada\"}"),
                        "Hello Ada, Ada!");
    assert_string_equal(render(DM_TMPL_TEXT, "no tags at all", "{}"), "no tags at all");
    assert_string_equal(render(DM_TMPL_TEXT, "", "{}"), "");
    assert_string_equal(render(DM_TMPL_TEXT, "a }} b } c {", "{}"), "a }} b } c {");
}

static void test_html_part_escapes_values_but_not_the_template(void **state)
{
    (void)state;
    assert_string_equal(
        render(DM_TMPL_HTML, "<b>{{x}}</b>", "{\"x\":\"<script>alert('1')</script> & \\\"q\\\"\"}"),
        "<b>&lt;script&gt;alert(&#39;1&#39;)&lt;/script&gt; &amp; &quot;q&quot;</b>");
    /* attribute context: quotes are escaped too */
    assert_string_equal(
        render(DM_TMPL_HTML, "<a href=\"{{u}}\">", "{\"u\":\"x\\\" onclick=\\\"y\"}"),
        "<a href=\"x&quot; onclick=&quot;y\">");
}

static void test_text_part_writes_values_as_they_are(void **state)
{
    (void)state;
    assert_string_equal(render(DM_TMPL_TEXT, "{{x}}", "{\"x\":\"<b>&amp;</b>\\nnext\"}"),
                        "<b>&amp;</b>\nnext");
}

static void test_subject_values_cannot_add_header_lines(void **state)
{
    const char *s;
    (void)state;
    s = render(DM_TMPL_HEADER, "Hi {{name}}",
               "{\"name\":\"Eve\\r\\nBcc: victim@example.com\\r\\n\\r\\nbody\"}");
    assert_null(strchr(s, '\r'));
    assert_null(strchr(s, '\n'));
    assert_string_equal(s, "Hi Eve  Bcc: victim@example.com    body");
    s = render(DM_TMPL_HEADER, "{{x}}", "{\"x\":\"a\\u0000b\\tc\\u007fd\"}");
    assert_string_equal(s, "a b c d");
}

static void test_subject_template_with_a_line_break_is_refused(void **state)
{
    (void)state;
    assert_invalid_at(check("subject", DM_TMPL_HEADER, "Hello\r\nBcc: x@example.com", ""),
                      "subject", "line 1, column 6 (byte 5)");
}

static void test_if_shows_its_part_only_when_true(void **state)
{
    const char *src = "a{{#if x}}[{{x}}]{{/if}}b";
    (void)state;
    assert_string_equal(render(DM_TMPL_TEXT, src, "{\"x\":\"yes\"}"), "a[yes]b");
    assert_string_equal(render(DM_TMPL_TEXT, src, "{}"), "ab");
    assert_string_equal(render(DM_TMPL_TEXT, src, "{\"x\":null}"), "ab");
    assert_string_equal(render(DM_TMPL_TEXT, src, "{\"x\":\"\"}"), "ab");
    assert_string_equal(render(DM_TMPL_TEXT, src, "{\"x\":0}"), "ab");
    assert_string_equal(render(DM_TMPL_TEXT, src, "{\"x\":false}"), "ab");
    assert_string_equal(render(DM_TMPL_TEXT, src, "{\"x\":[]}"), "ab");
    assert_string_equal(render(DM_TMPL_TEXT, src, "{\"x\":{}}"), "ab");
    assert_string_equal(render(DM_TMPL_TEXT, src, "{\"x\":7}"), "a[7]b");
    assert_string_equal(render(DM_TMPL_TEXT, src, "{\"x\":true}"), "a[yes]b");
}

static void test_else_and_nesting(void **state)
{
    const char *src = "{{#if a}}A{{#if b}}B{{else}}b{{/if}}{{else}}{{#if b}}x{{else}}y{{/if}}"
                      "{{/if}}.";
    (void)state;
    assert_string_equal(render(DM_TMPL_TEXT, src, "{\"a\":1,\"b\":1}"), "AB.");
    assert_string_equal(render(DM_TMPL_TEXT, src, "{\"a\":1,\"b\":0}"), "Ab.");
    assert_string_equal(render(DM_TMPL_TEXT, src, "{\"a\":0,\"b\":1}"), "x.");
    assert_string_equal(render(DM_TMPL_TEXT, src, "{\"a\":0,\"b\":0}"), "y.");
    assert_string_equal(render(DM_TMPL_TEXT, "{{#if a}}{{else}}{{/if}}", "{}"), "");
    assert_string_equal(render(DM_TMPL_TEXT, "{{#if a}}{{/if}}{{#if a}}z{{/if}}", "{\"a\":1}"),
                        "z");
}

static void test_unknown_variable_is_an_error_with_its_position(void **state)
{
    dm_err *e;
    (void)state;
    e = check("text", DM_TMPL_TEXT, "Hello {{name}},\n\nyour {{nmae}} is", "name");
    assert_invalid_at(e, "text", "unknown variable \"nmae\" at line 3, column 6 (byte 22)");
    /* an if's variable must be declared too */
    e = check("html", DM_TMPL_HTML, "{{#if secret}}x{{/if}}", "name");
    assert_invalid_at(e, "html", "unknown variable \"secret\" at line 1, column 1 (byte 0)");
    assert_null(check("text", DM_TMPL_TEXT, "{{#if name}}{{name}}{{/if}}", "name"));
}

static void test_syntax_errors_name_their_position(void **state)
{
    (void)state;
    assert_invalid_at(check("text", DM_TMPL_TEXT, "ab\n{{#if x}}c", "x"), "text",
                      "{{#if}} is never closed with {{/if}} at line 2, column 1 (byte 3)");
    assert_invalid_at(check("text", DM_TMPL_TEXT, "x{{/if}}", "x"), "text",
                      "{{/if}} without its {{#if}} at line 1, column 2 (byte 1)");
    assert_invalid_at(check("text", DM_TMPL_TEXT, "{{else}}", "x"), "text",
                      "{{else}} outside {{#if}} at line 1, column 1");
    assert_invalid_at(check("text", DM_TMPL_TEXT, "{{#if x}}{{else}}{{else}}{{/if}}", "x"), "text",
                      "a second {{else}} in one {{#if}} at line 1, column 18");
    assert_invalid_at(check("text", DM_TMPL_TEXT, "hi {{name", "name"), "text",
                      "a \"{{\" without its \"}}\" at line 1, column 4 (byte 3)");
    assert_invalid_at(check("text", DM_TMPL_TEXT, "{{first name}}", "name"), "text",
                      "\"{{first name}}\" is not a tag this language knows at line 1, column 1");
    assert_invalid_at(check("text", DM_TMPL_TEXT, "{{> partial}}", "x"), "text",
                      "is not a tag this language knows");
    assert_invalid_at(check("text", DM_TMPL_TEXT, "{{#if}}x{{/if}}", "x"), "text",
                      "{{#if}} needs a variable name");
    assert_invalid_at(check("text", DM_TMPL_TEXT, "{{#if a-b}}x{{/if}}", "x"), "text",
                      "\"a-b\" is not a variable name");
    assert_invalid_at(check("text", DM_TMPL_TEXT, "{{#each x}}{{/each}}", "x"), "text",
                      "is not a tag this language knows");
    assert_invalid_at(check("text", DM_TMPL_TEXT, "{{}}", "x"), "text",
                      "is not a tag this language knows");
    assert_invalid_at(check("text", DM_TMPL_TEXT, "{{{x}}}", "x"), "text",
                      "is not a tag this language knows");
}

static void test_nesting_is_bounded(void **state)
{
    char src[1024] = "";
    (void)state;
    for (int i = 0; i < DM_TMPL_MAX_DEPTH; i++) {
        strcat(src, "{{#if x}}");
    }
    for (int i = 0; i < DM_TMPL_MAX_DEPTH; i++) {
        strcat(src, "{{/if}}");
    }
    assert_null(check("text", DM_TMPL_TEXT, src, "x"));
    assert_invalid_at(
        check("text", DM_TMPL_TEXT, apr_pstrcat(pool, "{{#if x}}", src, "{{/if}}", NULL), "x"),
        "text", "nested deeper than");
}

static void test_nul_bytes_and_oversized_templates_are_refused(void **state)
{
    dm_tmpl *t;
    char *big = apr_palloc(pool, DM_TMPL_MAX_BYTES + 2);
    dm_err *e;
    (void)state;
    e = dm_tmpl_parse(pool, "text", "ab\0c", 4, DM_TMPL_TEXT, &t);
    assert_invalid_at(e, "text", "a NUL byte at line 1, column 3");
    memset(big, 'a', DM_TMPL_MAX_BYTES + 1);
    big[DM_TMPL_MAX_BYTES + 1] = '\0';
    e = dm_tmpl_parse(pool, "html", big, DM_TMPL_MAX_BYTES + 1, DM_TMPL_HTML, &t);
    assert_invalid_at(e, "html", "longer than");
    assert_null(dm_tmpl_parse(pool, "html", big, DM_TMPL_MAX_BYTES, DM_TMPL_HTML, &t));
    e = dm_tmpl_parse(pool, "subject", big, DM_TMPL_SUBJECT_MAX + 1, DM_TMPL_HEADER, &t);
    assert_invalid_at(e, "subject", "longer than");
}

static void test_money_helper(void **state)
{
    (void)state;
    assert_string_equal(dm_tmpl_money(pool, 12345678, "USD"), "12.345678 USD");
    assert_string_equal(dm_tmpl_money(pool, 100000000, "USD"), "100.00 USD");
    assert_string_equal(dm_tmpl_money(pool, 1500000, "EUR"), "1.50 EUR");
    assert_string_equal(dm_tmpl_money(pool, 1, NULL), "0.000001 USD");
    assert_string_equal(dm_tmpl_money(pool, 0, ""), "0.00 USD");
    assert_string_equal(dm_tmpl_money(pool, -1500000, "USD"), "-1.50 USD");
    assert_string_equal(dm_tmpl_money(pool, INT64_MIN, "USD"), "-9223372036854.775808 USD");
    assert_string_equal(dm_tmpl_money(pool, INT64_MAX, "USD"), "9223372036854.775807 USD");
}

static void test_money_and_times_are_formatted_by_name(void **state)
{
    (void)state;
    assert_string_equal(render(DM_TMPL_TEXT, "{{amount_micros}}",
                               "{\"amount_micros\":250000000,\"currency\":\"EUR\"}"),
                        "250.00 EUR");
    assert_string_equal(render(DM_TMPL_TEXT, "{{amount_micros}}", "{\"amount_micros\":12345678}"),
                        "12.345678 USD");
    /* a _micros name that holds no integer is shown as it is */
    assert_string_equal(render(DM_TMPL_TEXT, "{{x_micros}}", "{\"x_micros\":\"n/a\"}"), "n/a");
    assert_string_equal(
        render(DM_TMPL_TEXT, "{{expires_at}}", "{\"expires_at\":\"2026-11-25T07:00:00Z\"}"),
        "2026-11-25 07:00 UTC");
    assert_string_equal(render(DM_TMPL_TEXT, "{{paid_at}}", "{\"paid_at\":1795590000}"),
                        dm_tmpl_time(pool, 1795590000));
    assert_string_equal(dm_tmpl_time(pool, 0), "1970-01-01 00:00 UTC");
    assert_string_equal(render(DM_TMPL_TEXT, "{{seen_at}}", "{\"seen_at\":\"yesterday\"}"),
                        "yesterday");
    assert_string_equal(render(DM_TMPL_TEXT, "{{id}}", "{\"id\":42}"), "42");
}

static void test_other_values(void **state)
{
    (void)state;
    assert_string_equal(render(DM_TMPL_TEXT, "[{{a}}][{{b}}][{{c}}][{{d}}]",
                               "{\"a\":true,\"b\":false,\"c\":null,\"d\":[1,\"x\"]}"),
                        "[yes][no][][[1,\"x\"]]");
    assert_string_equal(render(DM_TMPL_TEXT, "{{ths}}", "{\"ths\":1.5}"), "1.5");
    assert_string_equal(render(DM_TMPL_TEXT, "[{{missing}}]", "{}"), "[]");
    assert_string_equal(render(DM_TMPL_HTML, "{{d}}", "{\"d\":{\"k\":\"<\"}}"),
                        "{&quot;k&quot;:&quot;&lt;&quot;}");
}

static void test_rendering_is_bounded(void **state)
{
    dm_tmpl *t;
    const char *out;
    char *big = apr_palloc(pool, 600 * 1024 + 1);
    json_t *v;
    dm_err *e;
    (void)state;
    memset(big, 'x', 600 * 1024);
    big[600 * 1024] = '\0';
    v = json_pack("{s:s}", "x", big);
    assert_null(dm_tmpl_parse(pool, "text", "{{x}}{{x}}", 10, DM_TMPL_TEXT, &t));
    e = dm_tmpl_render(pool, t, v, &out, NULL);
    json_decref(v);
    assert_invalid_at(e, "text", "longer than");
}

static void test_vars_lists_each_name_once(void **state)
{
    dm_tmpl *t;
    apr_array_header_t *names;
    const char *src = "{{b}}{{#if a}}{{b}}{{c}}{{/if}}{{a}}";
    (void)state;
    assert_null(dm_tmpl_parse(pool, "text", src, strlen(src), DM_TMPL_TEXT, &t));
    names = dm_tmpl_vars(pool, t);
    assert_int_equal(names->nelts, 3);
    assert_string_equal(APR_ARRAY_IDX(names, 0, const char *), "b");
    assert_string_equal(APR_ARRAY_IDX(names, 1, const char *), "a");
    assert_string_equal(APR_ARRAY_IDX(names, 2, const char *), "c");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_variables_are_substituted),
        cmocka_unit_test(test_html_part_escapes_values_but_not_the_template),
        cmocka_unit_test(test_text_part_writes_values_as_they_are),
        cmocka_unit_test(test_subject_values_cannot_add_header_lines),
        cmocka_unit_test(test_subject_template_with_a_line_break_is_refused),
        cmocka_unit_test(test_if_shows_its_part_only_when_true),
        cmocka_unit_test(test_else_and_nesting),
        cmocka_unit_test(test_unknown_variable_is_an_error_with_its_position),
        cmocka_unit_test(test_syntax_errors_name_their_position),
        cmocka_unit_test(test_nesting_is_bounded),
        cmocka_unit_test(test_nul_bytes_and_oversized_templates_are_refused),
        cmocka_unit_test(test_money_helper),
        cmocka_unit_test(test_money_and_times_are_formatted_by_name),
        cmocka_unit_test(test_other_values),
        cmocka_unit_test(test_rendering_is_bounded),
        cmocka_unit_test(test_vars_lists_each_name_once),
    };
    int rc;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_pool_destroy(pool);
    apr_terminate();
    return rc;
}
