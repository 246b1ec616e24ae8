/*
 * The e-mail builder (core/mime.c) that every mailer plugin sends through
 * the host table: header order and encoding, encoded-words, body encodings
 * that decode back to the input, folding, single part or
 * multipart/alternative, stable Message-IDs, and the refusal of header
 * injection. Decoders here are written from the RFCs, independently of the
 * builder; one test also hands a message to Python's email package.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/mime.h"

static apr_pool_t *pool;

/* 2023-11-14T22:13:20Z */
#define DATE 1700000000
#define DATE_TEXT "Tue, 14 Nov 2023 22:13:20 +0000"

static dm_str S(const char *s)
{
    dm_str out = {s, strlen(s)};
    return out;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!haystack || !strstr(haystack, needle)) {
        fail_msg("expected \"%s\" to contain \"%s\"", haystack ? haystack : "(null)", needle);
    }
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool);
    return 0;
}

static dm_mail mail(void)
{
    dm_mail m;
    memset(&m, 0, sizeof(m));
    m.size = sizeof(m);
    m.from = S("DeepMine <noreply@deepmine.example>");
    m.to = S("zoe@example.com");
    m.subject = S("Your account is ready");
    m.text = S("Hello,\nyour account is ready.\n");
    return m;
}

static char *build(const dm_mail *m)
{
    char *out = NULL;
    size_t len = 0;
    dm_err *e = dm_mime_build(pool, m, "0123abcd@deepmine.example", DATE, &out, &len);
    if (e) {
        fail_msg("refused: %s", e->message);
    }
    assert_non_null(out);
    assert_int_equal(strlen(out), len);
    return out;
}

/* The build is refused, with nothing out, and a reason containing `why`. */
static void assert_refused(const dm_mail *m, const char *why)
{
    char *out = (char *)"untouched";
    size_t len = 99;
    dm_err *e = dm_mime_build(pool, m, "0123abcd@deepmine.example", DATE, &out, &len);
    if (!e) {
        fail_msg("expected a refusal (%s), got:\n%s", why, out);
    }
    assert_int_equal(e->code, DM_E_INVALID);
    assert_contains(e->message, why);
    assert_null(out);
    assert_int_equal(len, 0);
}

/* The header section (up to the first empty line), and the rest. */
static char *headers_of(const char *msg)
{
    const char *end = strstr(msg, "\r\n\r\n");
    assert_non_null(end);
    return apr_pstrmemdup(pool, msg, (apr_size_t)(end - msg + 2));
}

/* The value of header `name` (first occurrence), unfolded, raw. */
static char *raw_header(const char *msg, const char *name)
{
    const char *h = headers_of(msg), *p = h;
    size_t n = strlen(name);
    char *out, *w;

    for (;;) {
        if (!strncasecmp(p, name, n) && p[n] == ':') {
            break;
        }
        p = strstr(p, "\r\n");
        if (!p || p[2] == '\0') {
            return NULL;
        }
        p += 2;
    }
    p += n + 1;
    /* Leading folding white space is not part of the value. */
    while (*p == ' ' || *p == '\t' ||
           (p[0] == '\r' && p[1] == '\n' && (p[2] == ' ' || p[2] == '\t'))) {
        p += *p == '\r' ? 2 : 1;
    }
    out = w = apr_palloc(pool, strlen(p) + 1);
    while (*p) {
        if (p[0] == '\r' && p[1] == '\n') {
            if (p[2] != ' ' && p[2] != '\t') {
                break;
            }
            p += 2; /* unfold: the CRLF goes, the whitespace stays */
            continue;
        }
        *w++ = *p++;
    }
    *w = '\0';
    return out;
}

/* RFC 2047 decoding of B-encoded UTF-8 words; whitespace between two
 * adjacent encoded-words is dropped (6.2). */
static char *decode_words(const char *v)
{
    char *out = apr_palloc(pool, strlen(v) + 1), *w = out;
    const char *p = v;
    int last_was_word = 0;

    while (*p) {
        if (!strncmp(p, "=?UTF-8?B?", 10)) {
            const char *end = strstr(p + 10, "?=");
            size_t n = 0;
            assert_non_null(end);
            assert_int_equal(sodium_base642bin((unsigned char *)w, strlen(v), p + 10,
                                               (size_t)(end - p - 10), NULL, &n, NULL,
                                               sodium_base64_VARIANT_ORIGINAL),
                             0);
            w += n;
            p = end + 2;
            last_was_word = 1;
            continue;
        }
        if (last_was_word && *p == ' ') {
            const char *q = p;
            while (*q == ' ') {
                q++;
            }
            if (!strncmp(q, "=?UTF-8?B?", 10)) {
                p = q;
                continue;
            }
        }
        last_was_word = 0;
        *w++ = *p++;
    }
    *w = '\0';
    return out;
}

/* RFC 2045 6.7 quoted-printable decoding; CRLF stays CRLF. */
static char *decode_qp(const char *s, size_t n)
{
    char *out = apr_palloc(pool, n + 1), *w = out;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=' && i + 2 < n && s[i + 1] == '\r' && s[i + 2] == '\n') {
            i += 2; /* soft break */
        } else if (s[i] == '=') {
            unsigned int c;
            assert_true(i + 2 < n);
            assert_int_equal(sscanf(s + i + 1, "%2X", &c), 1);
            *w++ = (char)c;
            i += 2;
        } else {
            *w++ = s[i];
        }
    }
    *w = '\0';
    return out;
}

static char *decode_b64_lines(const char *s, size_t n)
{
    unsigned char *out = apr_palloc(pool, n + 1);
    size_t len = 0;
    assert_int_equal(
        sodium_base642bin(out, n, s, n, "\r\n", &len, NULL, sodium_base64_VARIANT_ORIGINAL), 0);
    out[len] = '\0';
    return (char *)out;
}

/* The body after the first empty line of `part`, up to `end` (or its end). */
static const char *body_of(const char *part, const char *end, size_t *n)
{
    const char *b = strstr(part, "\r\n\r\n");
    assert_non_null(b);
    b += 4;
    *n = end ? (size_t)(end - b) : strlen(b);
    return b;
}

/* "\n" and "\r\n" both become "\r\n": what a decoded text part holds. */
static char *crlf(const char *s)
{
    char *out = apr_palloc(pool, strlen(s) * 2 + 1), *w = out;
    for (const char *p = s; *p; p++) {
        if (*p == '\n' && (p == s || p[-1] != '\r')) {
            *w++ = '\r';
        }
        *w++ = *p;
    }
    *w = '\0';
    return out;
}

static void assert_lines_within(const char *msg, size_t max)
{
    const char *p = msg;
    while (*p) {
        const char *e = strstr(p, "\r\n");
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > max) {
            fail_msg("a line of %u characters (max %u): %.*s", (unsigned)n, (unsigned)max, (int)n,
                     p);
        }
        if (memchr(p, '\n', n) || memchr(p, '\r', n)) {
            fail_msg("a bare CR or LF in: %.*s", (int)n, p);
        }
        if (!e) {
            break;
        }
        p = e + 2;
    }
}

/* ---- headers ---- */

static void test_headers_come_in_order_with_crlf_line_ends(void **state)
{
    dm_mail m = mail();
    static const dm_header extra[] = {
        {{"List-Unsubscribe", 16}, {"<https://deepmine.example/u/42>", 31}},
        {{"List-Unsubscribe-Post", 21}, {"List-Unsubscribe=One-Click", 26}},
    };
    char *msg;
    const char *order[] = {"Date: " DATE_TEXT "\r\n",
                           "From: DeepMine <noreply@deepmine.example>\r\n",
                           "To: zoe@example.com\r\n",
                           "Subject: Your account is ready\r\n",
                           "Message-ID: <0123abcd@deepmine.example>\r\n",
                           "MIME-Version: 1.0\r\n",
                           "List-Unsubscribe: <https://deepmine.example/u/42>\r\n",
                           "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
                           "Content-Type: text/plain; charset=UTF-8\r\n",
                           "Content-Transfer-Encoding: quoted-printable\r\n\r\n"};
    const char *at;
    (void)state;
    m.headers = extra;
    m.n_headers = 2;
    msg = build(&m);
    at = msg;
    assert_true(strncmp(msg, "Date: ", 6) == 0);
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        const char *next = strstr(at, order[i]);
        if (!next) {
            fail_msg("\"%s\" missing or out of order in:\n%s", order[i], msg);
        }
        at = next + strlen(order[i]);
    }
    /* The text's own final line break ends the message: no empty line is added. */
    assert_string_equal(msg + strlen(msg) - 24, "your account is ready.\r\n");
    assert_lines_within(msg, 78);
}

static void test_date_is_rfc5322_in_utc(void **state)
{
    char out[32];
    (void)state;
    assert_true(dm_mime_date(0, out));
    assert_string_equal(out, "Thu, 01 Jan 1970 00:00:00 +0000");
    assert_true(dm_mime_date(DATE, out));
    assert_string_equal(out, DATE_TEXT);
    assert_true(dm_mime_date(951782400, out)); /* a leap day */
    assert_string_equal(out, "Tue, 29 Feb 2000 00:00:00 +0000");
    assert_false(dm_mime_date(-1, out));
    assert_false(dm_mime_date(253402300800LL, out));
}

static void test_non_ascii_subject_and_display_names_are_encoded_words(void **state)
{
    dm_mail m = mail();
    const char *subject = "Willkommen bei DeepMine \xe2\x80\x93 Ihr Konto ist bereit, Zo\xc3\xab!";
    char *msg, *v;
    (void)state;
    m.from = S("D\xc3\xa9\x65pMine \xe2\x9b\x8f <noreply@deepmine.example>");
    m.to = S("Zo\xc3\xab M\xc3\xbcller <zoe@example.com>");
    m.subject = S(subject);
    msg = build(&m);

    v = raw_header(msg, "Subject");
    assert_true(strncmp(v, "=?UTF-8?B?", 10) == 0);
    assert_string_equal(decode_words(v), subject);
    v = raw_header(msg, "To");
    assert_string_equal(decode_words(v), "Zo\xc3\xab M\xc3\xbcller <zoe@example.com>");
    assert_contains(v, "?= <zoe@example.com>");
    v = raw_header(msg, "From");
    assert_string_equal(decode_words(v),
                        "D\xc3\xa9\x65pMine \xe2\x9b\x8f <noreply@deepmine.example>");
    /* Raw bytes above 0x7F appear nowhere in the message. */
    for (const char *p = msg; *p; p++) {
        assert_true((unsigned char)*p < 0x80);
    }
    assert_lines_within(msg, 78);
}

static void test_non_ascii_extra_header_value_is_encoded(void **state)
{
    dm_mail m = mail();
    static const dm_header extra[] = {{{"X-Campaign", 10}, {"Fr\xc3\xbchling", 9}}};
    char *msg;
    (void)state;
    m.headers = extra;
    m.n_headers = 1;
    msg = build(&m);
    assert_string_equal(decode_words(raw_header(msg, "X-Campaign")), "Fr\xc3\xbchling");
}

static void test_ascii_subject_that_looks_encoded_is_encoded(void **state)
{
    dm_mail m = mail();
    char *msg;
    (void)state;
    m.subject = S("Prices =?UTF-8?B?w6k=?= unchanged");
    msg = build(&m);
    assert_true(strncmp(raw_header(msg, "Subject"), "=?UTF-8?B?", 10) == 0);
    assert_string_equal(decode_words(raw_header(msg, "Subject")),
                        "Prices =?UTF-8?B?w6k=?= unchanged");
}

static void test_display_name_with_specials_is_quoted(void **state)
{
    dm_mail m = mail();
    char *msg;
    (void)state;
    m.to = S("Doe, John \"JD\" <john@example.com>");
    m.from = S("\"DeepMine, Support\" <support@deepmine.example>");
    msg = build(&m);
    assert_string_equal(raw_header(msg, "To"), "\"Doe, John \\\"JD\\\"\" <john@example.com>");
    assert_string_equal(raw_header(msg, "From"),
                        "\"DeepMine, Support\" <support@deepmine.example>");
}

static void test_long_headers_are_folded_within_78(void **state)
{
    dm_mail m = mail();
    char subject[400], name[200];
    static dm_header extra[1];
    char *msg, *v;
    (void)state;
    subject[0] = '\0';
    for (int i = 0; i < 30; i++) {
        strcat(subject, i ? " word" : "Subject");
    }
    m.subject = S(subject);
    /* 60 two-byte characters: several encoded-words over several lines. */
    name[0] = '\0';
    for (int i = 0; i < 60; i++) {
        strcat(name, "\xc3\xa9");
    }
    m.to = S(apr_pstrcat(pool, name, " <zoe@example.com>", NULL));
    extra[0].name = S("List-Unsubscribe");
    extra[0].value = S("<https://deepmine.example/unsubscribe/0123456789abcdef0123456789abcdef>, "
                       "<mailto:unsubscribe+0123456789abcdef0123456789abcdef@deepmine.example>");
    m.headers = extra;
    m.n_headers = 1;
    msg = build(&m);
    assert_lines_within(msg, 78);
    /* Unfolding gives the values back. */
    assert_string_equal(raw_header(msg, "Subject"), subject);
    assert_string_equal(raw_header(msg, "List-Unsubscribe"), extra[0].value.ptr);
    v = raw_header(msg, "To");
    assert_string_equal(decode_words(v), apr_pstrcat(pool, name, " <zoe@example.com>", NULL));
    assert_contains(headers_of(msg), "\r\nSubject: Subject word");
    assert_contains(headers_of(msg), "\r\n word");
}

static void test_long_word_in_a_structured_header_is_refused(void **state)
{
    dm_mail m = mail();
    static dm_header extra[1];
    char *v = apr_palloc(pool, 1200);
    (void)state;
    memset(v, 'a', 1199);
    v[1199] = '\0';
    extra[0].name = S("X-Token");
    extra[0].value = S(v);
    m.headers = extra;
    m.n_headers = 1;
    assert_refused(&m, "extra header X-Token has a word too long");
    /* The same in the (unstructured) subject is encoded instead. */
    m.n_headers = 0;
    m.subject = S(v);
    assert_lines_within(build(&m), 78);
}

/* ---- bodies ---- */

static void test_mostly_ascii_body_is_quoted_printable_and_round_trips(void **state)
{
    dm_mail m = mail();
    const char *text = "Hello Zo\xc3\xab,\nyour account is ready. = sign, trailing space \n"
                       "A very long line that goes on and on and on and on and on and on and on "
                       "and on and on and on and on and on.\n\tTabbed.\nLast line";
    const char *b;
    size_t n;
    char *msg;
    (void)state;
    m.text = S(text);
    msg = build(&m);
    assert_contains(headers_of(msg), "Content-Type: text/plain; charset=UTF-8\r\n");
    assert_contains(msg, "Content-Transfer-Encoding: quoted-printable\r\n");
    assert_contains(msg, "Hello Zo=C3=AB,\r\n");
    assert_contains(msg, "space=20\r\n");
    assert_null(strstr(msg, "multipart"));
    b = body_of(msg, NULL, &n);
    /* A single part ends with a line break; the decoded text is the input. */
    assert_true(n >= 2 && b[n - 2] == '\r' && b[n - 1] == '\n');
    assert_string_equal(decode_qp(b, n - 2), crlf(text));
    assert_lines_within(b, 76);
}

static void test_mostly_non_ascii_body_is_base64_and_round_trips(void **state)
{
    dm_mail m = mail();
    /* Russian: nearly every byte is above 0x7F. */
    const char *text = "\xd0\x97\xd0\xb4\xd1\x80\xd0\xb0\xd0\xb2\xd1\x81\xd1\x82\xd0\xb2\xd1\x83"
                       "\xd0\xb9\xd1\x82\xd0\xb5!\n\xd0\x92\xd0\xb0\xd1\x88 \xd0\xb0\xd0\xba\xd0"
                       "\xba\xd0\xb0\xd1\x83\xd0\xbd\xd1\x82 \xd0\xb3\xd0\xbe\xd1\x82\xd0\xbe\xd0"
                       "\xb2. \xd0\x92\xd0\xb0\xd1\x88 \xd0\xb0\xd0\xba\xd0\xba\xd0\xb0\xd1\x83"
                       "\xd0\xbd\xd1\x82 \xd0\xb3\xd0\xbe\xd1\x82\xd0\xbe\xd0\xb2.\n";
    const char *b;
    size_t n;
    char *msg;
    (void)state;
    m.text = S(text);
    msg = build(&m);
    assert_contains(msg, "Content-Transfer-Encoding: base64\r\n");
    b = body_of(msg, NULL, &n);
    assert_lines_within(b, 76);
    assert_string_equal(decode_b64_lines(b, n), crlf(text));
}

static void test_both_bodies_make_multipart_alternative_text_first(void **state)
{
    dm_mail m = mail();
    const char *html = "<p>Hello,</p><p>your account is ready.</p>";
    char *msg, *boundary, *delim;
    const char *ct, *p1, *p2, *end, *b;
    size_t n;
    (void)state;
    m.html = S(html);
    msg = build(&m);
    ct = raw_header(msg, "Content-Type");
    assert_true(strncmp(ct, "multipart/alternative; boundary=\"=_dm_", 38) == 0);
    boundary = apr_pstrndup(pool, ct + 33, strcspn(ct + 33, "\""));
    delim = apr_pstrcat(pool, "\r\n--", boundary, "\r\n", NULL);
    p1 = strstr(msg, delim);
    assert_non_null(p1);
    p1 += strlen(delim);
    p2 = strstr(p1, delim);
    assert_non_null(p2);
    end = strstr(p2 + strlen(delim), apr_pstrcat(pool, "\r\n--", boundary, "--\r\n", NULL));
    assert_non_null(end);
    assert_true(strncmp(p1, "Content-Type: text/plain; charset=UTF-8\r\n", 41) == 0);
    assert_true(strncmp(p2 + strlen(delim), "Content-Type: text/html; charset=UTF-8\r\n", 40) == 0);
    /* The CRLF before a delimiter is the delimiter's: the parts decode to
     * exactly the inputs. */
    b = body_of(p1, p2, &n);
    assert_string_equal(decode_qp(b, n), crlf(m.text.ptr));
    b = body_of(p2 + strlen(delim), end, &n);
    assert_string_equal(decode_qp(b, n), html);
    /* Nothing after the close delimiter; the boundary appears only as delimiters. */
    assert_string_equal(end + strlen(boundary) + 8, "");
    assert_lines_within(msg, 78);
}

static void test_html_only_is_a_single_html_part(void **state)
{
    dm_mail m = mail();
    char *msg;
    (void)state;
    m.text = S("");
    m.html = S("<p>Hi</p>");
    msg = build(&m);
    assert_string_equal(raw_header(msg, "Content-Type"), "text/html; charset=UTF-8");
    assert_null(strstr(msg, "multipart"));
    assert_true(strstr(msg, "\r\n\r\n<p>Hi</p>\r\n") != NULL);
}

/* ---- refusals ---- */

static void test_cr_lf_and_controls_in_header_fields_are_refused(void **state)
{
    static const char *const bad[] = {"a\r\nBcc: victim@example.com",
                                      "a\nBcc: v@example.com",
                                      "a\rb",
                                      "tab\there",
                                      "nul",
                                      "del\x7f"};
    dm_mail m;
    dm_header h[1];
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dm_str v = S(bad[i]);
        if (i == 4) {
            v.len = 4; /* "nul" and its terminating NUL */
        }
        m = mail();
        m.subject = v;
        assert_refused(&m, "the subject contains a control character");
        m = mail();
        m.from = v;
        assert_refused(&m, "the sender (from) contains a control character");
        m = mail();
        m.to = v;
        assert_refused(&m, "the recipient (to) contains a control character");
        m = mail();
        h[0].name = S("X-Note");
        h[0].value = v;
        m.headers = h;
        m.n_headers = 1;
        assert_refused(&m, "extra header X-Note contains a control character");
        h[0].name = v;
        h[0].value = S("x");
        assert_refused(&m, "extra header 0 has a malformed name");
    }
    /* A display name that tries to close the address early. */
    m = mail();
    m.to = S("Eve <eve@example.com>\r\nBcc: <victim@example.com>");
    assert_refused(&m, "control character");
}

static void test_header_names_builder_writes_cannot_be_added(void **state)
{
    static const char *const own[] = {
        "Date",       "from",         "TO",           "Subject",
        "message-id", "MIME-Version", "Content-Type", "content-transfer-encoding"};
    dm_mail m = mail();
    dm_header h[2] = {{{"X-Fine", 6}, {"yes", 3}}, {{NULL, 0}, {"x", 1}}};
    (void)state;
    m.headers = h;
    m.n_headers = 2;
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
        h[1].name = S(own[i]);
        assert_refused(&m, "is one the mailer sets itself");
    }
    h[1].name = S("Reply-To");
    assert_non_null(build(&m));
}

static void test_addresses_must_be_plain_ascii(void **state)
{
    static const char *const bad[] = {
        "zo\xc3\xab@example.com",
        "Zo\xc3\xab <zo\xc3\xab@example.com>",
        "user@b\xc3\xbc\x63her.example",
        "no-at-sign.example.com",
        "a@b, c@d",
        "Name <a@b",
        "@example.com",
        "a@",
        "a..b@example.com",
        "\"quoted local\"@example.com",
        "Name <>",
        "a@[127.0.0.1]",
    };
    dm_mail m;
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        m = mail();
        m.to = S(bad[i]);
        assert_refused(&m, "the recipient (to) is not an address");
        m = mail();
        m.from = S(bad[i]);
        assert_refused(&m, "the sender (from) is not an address");
    }
    m = mail();
    m.to = S("");
    assert_refused(&m, "no recipient");
    m = mail();
    m.from = S("");
    assert_refused(&m, "no sender");
}

static void test_invalid_utf8_message_id_and_bodies_are_refused(void **state)
{
    dm_mail m = mail();
    char *out;
    dm_err *e;
    (void)state;
    m.subject = S("broken \xc3");
    assert_refused(&m, "the subject is not UTF-8");
    m.subject = S("overlong \xc0\xaf");
    assert_refused(&m, "the subject is not UTF-8");
    m = mail();
    e = dm_mime_build(pool, &m, "<x@y>", DATE, &out, NULL);
    assert_non_null(e);
    assert_contains(e->message, "Message-ID");
    e = dm_mime_build(pool, &m, "no-at-sign", DATE, &out, NULL);
    assert_non_null(e);
    e = dm_mime_build(pool, &m, "a b@c", DATE, &out, NULL);
    assert_non_null(e);
    e = dm_mime_build(pool, &m, "a@b", -5, &out, NULL);
    assert_non_null(e);
    assert_contains(e->message, "date");
    m.text.ptr = NULL;
    assert_refused(&m, "a body has a length but no bytes");
}

/* ---- Message-IDs ---- */

static void test_message_id_is_stable_per_key_and_reveals_nothing(void **state)
{
    unsigned char digest[32];
    char hex[65];
    const char *a, *b, *c;
    (void)state;
    a = dm_mime_message_id(pool, S("welcome:42"), S("DeepMine <noreply@DeepMine.example>"));
    b = dm_mime_message_id(pool, S("welcome:42"), S("DeepMine <noreply@DeepMine.example>"));
    c = dm_mime_message_id(pool, S("welcome:43"), S("DeepMine <noreply@DeepMine.example>"));
    crypto_hash_sha256(digest, (const unsigned char *)"welcome:42", 10);
    sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
    assert_string_equal(a, apr_psprintf(pool, "%.32s@DeepMine.example", hex));
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    /* Without a plain sender domain: a fixed one. */
    assert_string_equal(dm_mime_message_id(pool, S("welcome:42"), S("not an address")),
                        apr_psprintf(pool, "%.32s@deepmine.invalid", hex));
    /* Without a key: random, so two differ. */
    assert_string_not_equal(dm_mime_message_id(pool, S(""), S("a@b.example")),
                            dm_mime_message_id(pool, S(""), S("a@b.example")));
}

static void test_split_address(void **state)
{
    dm_str name, addr;
    (void)state;
    assert_true(dm_mime_split_address(S("  Name Here <a.b+c@x-y.example>  "), &name, &addr));
    assert_int_equal(name.len, 9);
    assert_memory_equal(name.ptr, "Name Here", 9);
    assert_int_equal(addr.len, 17);
    assert_memory_equal(addr.ptr, "a.b+c@x-y.example", 17);
    assert_true(dm_mime_split_address(S("a@b.example"), &name, &addr));
    assert_int_equal(name.len, 0);
    assert_int_equal(addr.len, 11);
    assert_false(dm_mime_split_address(S("a@b.example>"), &name, &addr));
}

/* ---- a real MIME parser reads it back ---- */

static void test_python_email_parses_it_without_defects(void **state)
{
    dm_mail m = mail();
    static const dm_header extra[] = {
        {{"List-Unsubscribe", 16}, {"<https://deepmine.example/u/42>", 31}}};
    char path[] = "/tmp/dm-mime-XXXXXX";
    char *msg, *cmd;
    FILE *f;
    int fd;
    (void)state;
    if (access("/usr/bin/python3", X_OK) != 0) {
        skip();
    }
    m.from = S("D\xc3\xa9\x65pMine <noreply@deepmine.example>");
    m.to = S("Zo\xc3\xab M\xc3\xbcller <zoe@example.com>");
    m.subject = S("Willkommen \xe2\x80\x93 Ihr Konto ist bereit, Zo\xc3\xab!");
    m.text = S("Hello Zo\xc3\xab,\nyour account is ready.\n");
    m.html = S("<p>\xd0\x97\xd0\xb4\xd1\x80\xd0\xb0\xd0\xb2\xd1\x81\xd1\x82\xd0\xb2\xd1\x83\xd0"
               "\xb9\xd1\x82\xd0\xb5</p>\n");
    m.headers = extra;
    m.n_headers = 1;
    msg = build(&m);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "wb");
    fputs(msg, f);
    fclose(f);
    cmd = apr_psprintf(
        pool,
        "/usr/bin/python3 - '%s' <<'EOF'\n"
        "import sys, email, email.policy\n"
        "raw = open(sys.argv[1], 'rb').read()\n"
        "m = email.message_from_bytes(raw, policy=email.policy.default)\n"
        "assert m['Subject'] == 'Willkommen \\u2013 Ihr Konto ist bereit, Zo\\u00eb!', "
        "m['Subject']\n"
        "assert m['From'].addresses[0].display_name == 'D\\u00e9epMine'\n"
        "assert m['To'].addresses[0].display_name == 'Zo\\u00eb M\\u00fcller'\n"
        "assert m['To'].addresses[0].addr_spec == 'zoe@example.com'\n"
        "assert m['Message-ID'] == '<0123abcd@deepmine.example>'\n"
        "assert m['List-Unsubscribe'] == '<https://deepmine.example/u/42>'\n"
        "assert m['Date'].datetime.timestamp() == 1700000000\n"
        "assert m.get_content_type() == 'multipart/alternative'\n"
        "parts = [(p.get_content_type(), p['Content-Transfer-Encoding']) for p in "
        "m.iter_parts()]\n"
        "assert parts == [('text/plain', 'quoted-printable'), ('text/html', 'base64')], parts\n"
        "body = lambda t: m.get_body((t,)).get_content().replace('\\r\\n', '\\n')\n"
        "assert body('plain') == 'Hello Zo\\u00eb,\\nyour account is ready.\\n'\n"
        "assert body('html') == "
        "'<p>\\u0417\\u0434\\u0440\\u0430\\u0432\\u0441\\u0442\\u0432\\u0443\\u0439\\u0442\\u0435"
        "</p>\\n'\n"
        "assert not m.defects and all(not p.defects for p in m.walk()), m.defects\n"
        "EOF",
        path);
    if (system(cmd) != 0) {
        fail_msg("Python's email package disagrees; the message is in %s", path);
    }
    unlink(path);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_headers_come_in_order_with_crlf_line_ends),
        T(test_date_is_rfc5322_in_utc),
        T(test_non_ascii_subject_and_display_names_are_encoded_words),
        T(test_non_ascii_extra_header_value_is_encoded),
        T(test_ascii_subject_that_looks_encoded_is_encoded),
        T(test_display_name_with_specials_is_quoted),
        T(test_long_headers_are_folded_within_78),
        T(test_long_word_in_a_structured_header_is_refused),
        T(test_mostly_ascii_body_is_quoted_printable_and_round_trips),
        T(test_mostly_non_ascii_body_is_base64_and_round_trips),
        T(test_both_bodies_make_multipart_alternative_text_first),
        T(test_html_only_is_a_single_html_part),
        T(test_cr_lf_and_controls_in_header_fields_are_refused),
        T(test_header_names_builder_writes_cannot_be_added),
        T(test_addresses_must_be_plain_ascii),
        T(test_invalid_utf8_message_id_and_bodies_are_refused),
        T(test_message_id_is_stable_per_key_and_reveals_nothing),
        T(test_split_address),
        T(test_python_email_parses_it_without_defects),
    };
    int failed;

    apr_initialize();
    if (sodium_init() < 0) {
        return 1;
    }
    failed = cmocka_run_group_tests_name("mime", tests, NULL, NULL);
    apr_terminate();
    return failed ? 1 : 0;
}
