/* Validators (validate.h): strict UTF-8, e-mail, E.164 phone, person names,
 * address lines and generic text. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <string.h>

#include "base/validate.h"

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

/* n copies of s */
static char *rep(const char *s, int n)
{
    size_t l = strlen(s);
    char *out = apr_palloc(pool, l * (size_t)n + 1);

    for (int i = 0; i < n; i++) {
        memcpy(out + l * (size_t)i, s, l);
    }
    out[l * (size_t)n] = '\0';
    return out;
}

/* e is DM_E_INVALID for `field`, and its message contains `words`. */
static void assert_invalid(const dm_err *e, const char *field, const char *words)
{
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, field);
    if (!strstr(e->message, words)) {
        fail_msg("message \"%s\" does not contain \"%s\"", e->message, words);
    }
}

static int utf8_ok(const char *s)
{
    return dm_utf8_valid(s, strlen(s));
}

/* ---- UTF-8 ---- */

static void test_utf8_accepts_every_sequence_length_and_the_edges(void **state)
{
    (void)state;
    assert_true(utf8_ok(""));
    assert_true(utf8_ok("plain ASCII ~"));
    assert_true(utf8_ok("\xc2\x80"));         /* U+0080, smallest 2-byte */
    assert_true(utf8_ok("caf\xc3\xa9"));      /* é */
    assert_true(utf8_ok("\xe0\xa0\x80"));     /* U+0800, smallest 3-byte */
    assert_true(utf8_ok("\xe2\x82\xac"));     /* € */
    assert_true(utf8_ok("\xed\x9f\xbf"));     /* U+D7FF, just below the surrogates */
    assert_true(utf8_ok("\xee\x80\x80"));     /* U+E000, just above them */
    assert_true(utf8_ok("\xf0\x9d\x84\x9e")); /* 𝄞 */
    assert_true(utf8_ok("\xf4\x8f\xbf\xbf")); /* U+10FFFF */
}

static void test_utf8_refuses_overlong_forms(void **state)
{
    (void)state;
    assert_false(utf8_ok("\xc0\xaf"));         /* '/' in 2 bytes */
    assert_false(utf8_ok("\xc1\xbf"));         /* U+007F in 2 bytes */
    assert_false(utf8_ok("\xc0\x80"));         /* NUL in 2 bytes ("modified UTF-8") */
    assert_false(utf8_ok("\xe0\x80\xaf"));     /* '/' in 3 bytes */
    assert_false(utf8_ok("\xe0\x9f\xbf"));     /* U+07FF in 3 bytes */
    assert_false(utf8_ok("\xf0\x80\x80\xaf")); /* '/' in 4 bytes */
    assert_false(utf8_ok("\xf0\x8f\xbf\xbf")); /* U+FFFF in 4 bytes */
}

static void test_utf8_refuses_surrogates_and_code_points_above_10ffff(void **state)
{
    (void)state;
    assert_false(utf8_ok("\xed\xa0\x80"));             /* U+D800 */
    assert_false(utf8_ok("\xed\xbf\xbf"));             /* U+DFFF */
    assert_false(utf8_ok("\xed\xa0\xbd\xed\xb8\x80")); /* CESU-8 pair for an emoji */
    assert_false(utf8_ok("\xf4\x90\x80\x80"));         /* U+110000 */
    assert_false(utf8_ok("\xf5\x80\x80\x80"));
    assert_false(utf8_ok("\xf8\x88\x80\x80\x80")); /* old 5-byte form */
    assert_false(utf8_ok("\xff"));
    assert_false(utf8_ok("\xfe"));
}

static void test_utf8_refuses_truncated_sequences_and_stray_continuation_bytes(void **state)
{
    (void)state;
    assert_false(utf8_ok("\xc3"));
    assert_false(utf8_ok("\xe2\x82"));
    assert_false(utf8_ok("\xf0\x9d\x84"));
    assert_false(utf8_ok("ab\xe2\x82"));
    assert_false(utf8_ok("\xe2\x82z")); /* the sequence is cut by an ASCII byte */
    assert_false(utf8_ok("\xc3\xc3\xa9"));
    assert_false(utf8_ok("\x80"));
    assert_false(utf8_ok("a\xbf"));
    /* the length argument is honoured: a sequence cut by it is truncated */
    assert_false(dm_utf8_valid("\xc3\xa9", 1));
    assert_true(dm_utf8_valid("\xc3\xa9", 2));
}

static void test_utf8_length_counts_code_points_not_bytes(void **state)
{
    (void)state;
    assert_int_equal(dm_utf8_length("", 0), 0);
    assert_int_equal(dm_utf8_length("abc", 3), 3);
    assert_int_equal(dm_utf8_length("caf\xc3\xa9", 5), 4);
    assert_int_equal(dm_utf8_length("\xe2\x82\xac\xf0\x9d\x84\x9e", 7), 2);
}

/* ---- e-mail ---- */

static const char *email_ok(const char *in, const char **key)
{
    const char *norm = NULL, *k = NULL;
    dm_err *e = dm_validate_email(pool, "email", in, &norm, &k);

    if (e) {
        fail_msg("\"%s\" refused: %s", in, e->message);
    }
    if (key) {
        *key = k;
    }
    return norm;
}

static void email_bad(const char *in, const char *words)
{
    const char *norm = NULL, *key = NULL;

    assert_invalid(dm_validate_email(pool, "email", in, &norm, &key), "email", words);
}

static void test_email_is_trimmed_domain_lowercased_key_all_lowercased(void **state)
{
    const char *key = NULL;
    (void)state;
    assert_string_equal(email_ok("  John.Doe@Example.COM ", &key), "John.Doe@example.com");
    assert_string_equal(key, "john.doe@example.com");
    assert_string_equal(email_ok("\tA@B.example\r\n", &key), "A@b.example");
    assert_string_equal(key, "a@b.example");
}

static void test_email_needs_exactly_one_at(void **state)
{
    (void)state;
    email_bad("john.example.com", "exactly one @");
    email_bad("john@doe@example.com", "exactly one @");
    email_bad("@example.com", "part before @");
    email_bad("john@", "part after @");
    email_bad("", "required");
    email_bad("   ", "required");
    assert_invalid(
        dm_validate_email(pool, "email", NULL, &(const char *){NULL}, &(const char *){NULL}),
        "email", "required");
}

static void test_email_local_part_is_at_most_64_octets(void **state)
{
    (void)state;
    email_ok(apr_pstrcat(pool, rep("a", 64), "@example.com", NULL), NULL);
    email_bad(apr_pstrcat(pool, rep("a", 65), "@example.com", NULL), "at most 64");
}

static void test_email_address_is_at_most_254_octets(void **state)
{
    /* 64 + 1 + 189 = 254: labels of 63, 63, 59 and "com" (3 dots) */
    const char *dom254 =
        apr_pstrcat(pool, rep("b", 63), ".", rep("c", 63), ".", rep("d", 57), ".com", NULL);
    const char *dom255 =
        apr_pstrcat(pool, rep("b", 63), ".", rep("c", 63), ".", rep("d", 58), ".com", NULL);
    const char *a254 = apr_pstrcat(pool, rep("a", 64), "@", dom254, NULL);
    const char *a255 = apr_pstrcat(pool, rep("a", 64), "@", dom255, NULL);
    (void)state;
    assert_int_equal(strlen(a254), 254);
    assert_int_equal(strlen(a255), 255);
    email_ok(a254, NULL);
    email_bad(a255, "at most 254");
    /* a 10 KB input is refused, not scanned into trouble */
    email_bad(apr_pstrcat(pool, rep("a", 10240), "@example.com", NULL), "at most 254");
    email_bad(apr_pstrcat(pool, "a@", rep("b.", 5120), "com", NULL), "at most 254");
}

static void test_email_dot_atom_local_part_rules(void **state)
{
    (void)state;
    email_ok("first.last@example.com", NULL);
    email_ok("user+tag@example.com", NULL);
    email_ok("!#$%&'*+-/=?^_`{|}~@example.com", NULL);
    email_bad(".john@example.com", "start or end with a dot");
    email_bad("john.@example.com", "start or end with a dot");
    email_bad("jo..hn@example.com", "two dots in a row");
    email_bad("jo hn@example.com", "may contain only");
    email_bad("jo,hn@example.com", "may contain only");
    email_bad("jo(hn)@example.com", "may contain only");
    email_bad("j\xc3\xb6rg@example.com", "may contain only"); /* jörg */
}

static void test_email_quoted_local_part_rules(void **state)
{
    const char *key = NULL;
    (void)state;
    assert_string_equal(email_ok("\"John Doe\"@Example.com", &key), "\"John Doe\"@example.com");
    assert_string_equal(key, "\"john doe\"@example.com");
    email_ok("\"a@b\"@example.com", NULL);
    email_ok("\"a\\\"b\"@example.com", NULL); /* "a\"b" */
    email_ok("\"a\\\\b\"@example.com", NULL); /* "a\\b" */
    email_ok("\"..\"@example.com", NULL);
    email_bad("\"ab@example.com", "unterminated quote");
    email_bad("\"@example.com", "unterminated quote");
    email_bad("\"a\"b\"@example.com", "printable ASCII");
    email_bad("\"a\\b\"@example.com", "printable ASCII");
    email_bad("\"a\\\"@example.com", "printable ASCII"); /* the escape eats the closing quote */
    email_bad("\"caf\xc3\xa9\"@example.com", "printable ASCII");
}

static void test_email_domain_is_ldh_labels_with_a_dot_and_a_non_numeric_tld(void **state)
{
    (void)state;
    email_ok("a@mail.example.co.uk", NULL);
    email_ok("a@xn--bcher-kva.example", NULL);
    email_ok("a@3com.com", NULL);
    email_ok(apr_pstrcat(pool, "a@", rep("x", 63), ".com", NULL), NULL);
    email_bad(apr_pstrcat(pool, "a@", rep("x", 64), ".com", NULL), "1 to 63");
    email_bad("a@localhost", "at least one dot");
    email_bad("a@example.123", "all digits");
    email_bad("a@192.168.0.1", "all digits");
    email_bad("a@[192.168.0.1]", "not a valid domain");
    email_bad("a@-example.com", "hyphen");
    email_bad("a@example-.com", "hyphen");
    email_bad("a@example..com", "1 to 63");
    email_bad("a@.example.com", "1 to 63");
    email_bad("a@example.com.", "1 to 63");
    email_bad("a@exa_mple.com", "not a valid domain");
    email_bad("a@exa mple.com", "not a valid domain");
}

static void test_email_idn_in_utf8_is_refused_asking_for_punycode(void **state)
{
    (void)state;
    email_bad("a@b\xc3\xbc"
              "cher.example",
              "punycode (xn--)");
}

static void test_email_refuses_control_characters_and_invalid_utf8(void **state)
{
    (void)state;
    email_bad("jo\x01hn@example.com", "control characters");
    email_bad("john@exam\tple.com", "control characters");
    email_bad("john@example.com\x7f", "control characters");
    email_bad("jo\xc2\x85hn@example.com", "control characters"); /* U+0085 NEL */
    email_bad("jo\xc0\xafhn@example.com", "UTF-8");
    email_bad("john@example.com\xed\xa0\x80", "UTF-8");
    email_bad("john@example.co\xe2\x82", "UTF-8");
}

/* ---- phone ---- */

static const char *phone_ok(const char *in)
{
    const char *out = NULL;
    dm_err *e = dm_validate_phone(pool, "phone", in, &out);

    if (e) {
        fail_msg("\"%s\" refused: %s", in, e->message);
    }
    return out;
}

static void phone_bad(const char *in, const char *words)
{
    const char *out = NULL;

    assert_invalid(dm_validate_phone(pool, "phone", in, &out), "phone", words);
}

static void test_phone_is_e164_with_separators_dropped(void **state)
{
    (void)state;
    assert_string_equal(phone_ok("+44 20 7946 0958"), "+442079460958");
    assert_string_equal(phone_ok("+1 (555) 010-9999"), "+15550109999");
    assert_string_equal(phone_ok(" +33.1.23.45.67.89 "), "+33123456789");
    assert_string_equal(phone_ok("+12345678"), "+12345678");               /* 8 digits */
    assert_string_equal(phone_ok("+123456789012345"), "+123456789012345"); /* 15 */
}

static void test_phone_refuses_what_e164_does_not_allow(void **state)
{
    (void)state;
    phone_bad("020 7946 0958", "start with +");
    phone_bad("0044 20 7946 0958", "start with +");
    phone_bad("+0 20 7946 0958", "not start with 0");
    phone_bad("+1234567", "8 to 15 digits");
    phone_bad("+1234567890123456", "8 to 15 digits");
    phone_bad("+", "8 to 15 digits");
    phone_bad("+44 20 7946 095x", "only digits");
    phone_bad("+44+20 7946 0958", "only digits");
    phone_bad("+44 20/7946 0958", "only digits");
    phone_bad("+44 20\x01 7946 0958", "only digits");
    phone_bad("+44 \xd9\xa2\xd9\xa0 7946 0958", "only digits"); /* Arabic-Indic digits */
    phone_bad("", "required");
    phone_bad(rep(" ", 10240), "required");
    phone_bad(apr_pstrcat(pool, "+", rep("1", 10240), NULL), "8 to 15 digits");
    phone_bad(apr_pstrcat(pool, "+1", rep(" ", 10240), NULL), "8 to 15 digits");
}

/* ---- names ---- */

static const char *name_ok(const char *in)
{
    const char *out = NULL;
    dm_err *e = dm_validate_name(pool, "first_name", in, &out);

    if (e) {
        fail_msg("\"%s\" refused: %s", in, e->message);
    }
    return out;
}

static void name_bad(const char *in, const char *words)
{
    const char *out = NULL;

    assert_invalid(dm_validate_name(pool, "first_name", in, &out), "first_name", words);
}

static void test_name_accepts_letters_of_any_script_marks_and_name_punctuation(void **state)
{
    (void)state;
    assert_string_equal(name_ok("  Ann  "), "Ann");
    name_ok("Jean-Luc Picard");
    name_ok("J. R. R. Tolkien");
    name_ok("O'Brien");
    name_ok("O\xe2\x80\x99"
            "Brien");                             /* O’Brien, typographic apostrophe */
    name_ok("Zo\xc3\xab \xc3\x85ngstr\xc3\xb6m"); /* Zoë Ångström */
    name_ok("Zoe\xcc\x88");                       /* e + combining diaeresis */
    name_ok("\xd0\x92\xd0\xbb\xd0\xb0\xd0\xb4\xd0\xb8\xd0\xbc\xd0\xb8\xd1\x80"); /* Владимир */
    name_ok("\xe6\x9d\x8e\xe5\xb0\x8f\xe9\xbe\x8d");                             /* 李小龍 */
    name_ok("\xd9\x85\xd8\xad\xd9\x85\xd8\xaf");                                 /* محمد */
    name_ok("\xe0\xa4\xb0\xe0\xa4\xbe\xe0\xa4\x9c"); /* राज (with a vowel sign) */
    name_ok("\xc3\x80");                             /* À, the first of the range */
}

static void test_name_refuses_digits_symbols_and_invisible_characters(void **state)
{
    (void)state;
    name_bad("R2-D2", "only letters");
    name_bad("Ann!", "only letters");
    name_bad("Ann, Lee", "only letters");
    name_bad("Ann_Lee", "only letters");
    name_bad("<script>", "only letters");
    name_bad("Ann \xc3\x97 Bob", "only letters");     /* × */
    name_bad("Ann \xc3\xb7 Bob", "only letters");     /* ÷ */
    name_bad("Ann\xc2\xa0Lee", "only letters");       /* no-break space */
    name_bad("Ann\xc2\xa9", "only letters");          /* © */
    name_bad("Ann\xe2\x80\x8bLee", "only letters");   /* zero-width space */
    name_bad("Ann\xe2\x80\xaeLee", "only letters");   /* right-to-left override */
    name_bad("Ann \xe2\x82\xac", "only letters");     /* € */
    name_bad("Ann \xe2\x86\x92", "only letters");     /* → */
    name_bad("Ann\xe3\x80\x82", "only letters");      /* 。 */
    name_bad("Ann\xef\xb8\x8f", "only letters");      /* variation selector-16 */
    name_bad("Ann\xef\xbf\xbd", "only letters");      /* U+FFFD */
    name_bad("Ann \xf0\x9f\x98\x80", "only letters"); /* 😀 */
    name_bad("Ann\xee\x80\x80", "only letters");      /* private use */
}

static void test_name_refuses_control_characters_and_invalid_utf8(void **state)
{
    (void)state;
    name_bad("Ann\nLee", "only letters");
    name_bad("Ann\x01", "only letters");
    name_bad("Ann\x7f", "only letters");
    name_bad("Ann\xc2\x85", "only letters");
    name_bad("Ann\xc0\xaf", "UTF-8");
    name_bad("Ann\xed\xa0\x80", "UTF-8");
    name_bad("Ann\xc3", "UTF-8");
}

static void test_name_is_1_to_100_code_points_with_a_letter(void **state)
{
    (void)state;
    name_ok(rep("a", 100));
    name_ok(rep("\xc3\xa9", 100)); /* 100 code points, 200 bytes */
    name_bad(rep("a", 101), "at most 100");
    name_bad(rep("\xc3\xa9", 101), "at most 100");
    name_bad(rep("a", 10240), "at most 100");
    name_bad("", "required");
    name_bad(" \t ", "required");
    name_bad("-", "at least one letter");
    name_bad("'. -", "at least one letter");
    assert_invalid(dm_validate_name(pool, "first_name", NULL, &(const char *){NULL}), "first_name",
                   "required");
}

/* ---- address lines ---- */

static const char *addr_ok(const char *in)
{
    const char *out = NULL;
    dm_err *e = dm_validate_address_line(pool, "address1", in, &out);

    if (e) {
        fail_msg("\"%s\" refused: %s", in, e->message);
    }
    return out;
}

static void addr_bad(const char *in, const char *words)
{
    const char *out = NULL;

    assert_invalid(dm_validate_address_line(pool, "address1", in, &out), "address1", words);
}

static void test_address_line_is_one_trimmed_line_of_1_to_200_code_points(void **state)
{
    (void)state;
    assert_string_equal(addr_ok("  10 Downing Street \n"), "10 Downing Street");
    addr_ok("Flat 3, 5 Rue de l'\xc3\x89glise #2/B");
    addr_ok("\xe6\x9d\xb1\xe4\xba\xac\xe9\x83\xbd 1-2-3"); /* 東京都 1-2-3 */
    addr_ok(rep("a", 200));
    addr_ok(rep("\xc3\xa9", 200));
    addr_bad(rep("a", 201), "at most 200");
    addr_bad(rep("a", 10240), "at most 200");
    addr_bad("", "required");
    addr_bad("  ", "required");
}

static void test_address_line_refuses_newlines_controls_and_invalid_utf8(void **state)
{
    (void)state;
    addr_bad("10 Downing St\nLondon", "single line");
    addr_bad("10 Downing St\r\nLondon", "single line");
    addr_bad("10\tDowning St", "single line");
    addr_bad("10 Downing St\x1b[31m", "single line");
    addr_bad("10 Downing St\xe2\x80\xa8London", "single line"); /* U+2028 */
    addr_bad("10 Downing St\xc2\x9b", "single line");           /* U+009B CSI */
    addr_bad("10 Downing St\xc0\xaf", "UTF-8");
    addr_bad("10 Downing St\xed\xb0\x80", "UTF-8");
}

/* ---- generic text ---- */

static void test_text_limits_code_points_and_controls(void **state)
{
    (void)state;
    assert_null(dm_validate_text(pool, "note", "", 5, 0));
    assert_null(dm_validate_text(pool, "note", "h\xc3\xa9llo", 5, 0)); /* 5 code points */
    assert_invalid(dm_validate_text(pool, "note", "h\xc3\xa9llo!", 5, 0), "note", "at most 5");
    assert_null(dm_validate_text(pool, "note", "line 1\nline 2\tx", 100, 1));
    assert_invalid(dm_validate_text(pool, "note", "line 1\nline 2", 100, 0), "note", "single line");
    assert_invalid(dm_validate_text(pool, "note", "a\tb", 100, 0), "note", "single line");
    assert_invalid(dm_validate_text(pool, "note", "line 1\r\nline 2", 100, 1), "note",
                   "control characters");
    assert_invalid(dm_validate_text(pool, "note", "bell\x07", 100, 1), "note",
                   "control characters");
    assert_invalid(dm_validate_text(pool, "note", "a\xc2\x80", 100, 1), "note",
                   "control characters");
    assert_invalid(dm_validate_text(pool, "note", "a\xc0\xaf", 100, 1), "note", "UTF-8");
    assert_invalid(dm_validate_text(pool, "note", "a\xf4\x90\x80\x80", 100, 1), "note", "UTF-8");
    assert_invalid(dm_validate_text(pool, "note", rep("x", 10240), 10239, 1), "note",
                   "at most 10239");
    assert_null(dm_validate_text(pool, "note", rep("x", 10240), 10240, 1));
    assert_invalid(dm_validate_text(pool, "note", NULL, 10, 1), "note", "required");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_accepts_every_sequence_length_and_the_edges),
        cmocka_unit_test(test_utf8_refuses_overlong_forms),
        cmocka_unit_test(test_utf8_refuses_surrogates_and_code_points_above_10ffff),
        cmocka_unit_test(test_utf8_refuses_truncated_sequences_and_stray_continuation_bytes),
        cmocka_unit_test(test_utf8_length_counts_code_points_not_bytes),
        cmocka_unit_test(test_email_is_trimmed_domain_lowercased_key_all_lowercased),
        cmocka_unit_test(test_email_needs_exactly_one_at),
        cmocka_unit_test(test_email_local_part_is_at_most_64_octets),
        cmocka_unit_test(test_email_address_is_at_most_254_octets),
        cmocka_unit_test(test_email_dot_atom_local_part_rules),
        cmocka_unit_test(test_email_quoted_local_part_rules),
        cmocka_unit_test(test_email_domain_is_ldh_labels_with_a_dot_and_a_non_numeric_tld),
        cmocka_unit_test(test_email_idn_in_utf8_is_refused_asking_for_punycode),
        cmocka_unit_test(test_email_refuses_control_characters_and_invalid_utf8),
        cmocka_unit_test(test_phone_is_e164_with_separators_dropped),
        cmocka_unit_test(test_phone_refuses_what_e164_does_not_allow),
        cmocka_unit_test(test_name_accepts_letters_of_any_script_marks_and_name_punctuation),
        cmocka_unit_test(test_name_refuses_digits_symbols_and_invisible_characters),
        cmocka_unit_test(test_name_refuses_control_characters_and_invalid_utf8),
        cmocka_unit_test(test_name_is_1_to_100_code_points_with_a_letter),
        cmocka_unit_test(test_address_line_is_one_trimmed_line_of_1_to_200_code_points),
        cmocka_unit_test(test_address_line_refuses_newlines_controls_and_invalid_utf8),
        cmocka_unit_test(test_text_limits_code_points_and_controls),
    };
    apr_initialize();
    return cmocka_run_group_tests_name("validate", tests, setup, teardown);
}
