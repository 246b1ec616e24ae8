/*
 * validate.c — see validate.h. One strict UTF-8 decoder (written here, so
 * that "valid" means the same thing for every field) and the validators
 * built on it. Messages are sentences that name the field and what is wrong,
 * and never echo the input (it may be anything, including invalid UTF-8).
 */
#include "base/validate.h"

#include <apr_strings.h>
#include <stdint.h>
#include <string.h>

/* Decodes one code point at s[*i] (i < len); advances *i. 0 on an invalid
 * sequence: a stray continuation byte, a lead byte that cannot start a
 * sequence (C0, C1, F5-FF), a truncated sequence, an overlong form, a
 * surrogate (U+D800-DFFF) or a value above U+10FFFF. */
static int utf8_next(const unsigned char *s, size_t len, size_t *i, uint32_t *cp)
{
    unsigned char c = s[*i];
    size_t n;
    uint32_t v, min;

    if (c < 0x80) {
        *cp = c;
        (*i)++;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        n = 1;
        v = c & 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 2;
        v = c & 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 3;
        v = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len - *i - 1 < n) {
        return 0;
    }
    for (size_t k = 1; k <= n; k++) {
        unsigned char cc = s[*i + k];
        if ((cc & 0xc0) != 0x80) {
            return 0;
        }
        v = (v << 6) | (cc & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
        return 0;
    }
    *cp = v;
    *i += n + 1;
    return 1;
}

int dm_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    uint32_t cp;

    while (i < len) {
        if (!utf8_next(u, len, &i, &cp)) {
            return 0;
        }
    }
    return 1;
}

size_t dm_utf8_length(const char *s, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80) {
            n++;
        }
    }
    return n;
}

/* C0, DEL and C1 controls. */
static int is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

int dm_has_control_bytes(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            return 1;
        }
    }
    return 0;
}

int dm_utf8_has_control(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    uint32_t cp;

    while (i < len) {
        if (!utf8_next(u, len, &i, &cp)) {
            /* not UTF-8: the bytes alone decide */
            return dm_has_control_bytes(s, len);
        }
        if (is_control(cp)) {
            return 1;
        }
    }
    return 0;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static const char *label(const char *field)
{
    return field ? field : "value";
}

/* Copies `in` without surrounding ASCII white space; *len gets its length. */
static char *trimmed(apr_pool_t *p, const char *in, size_t *len)
{
    const char *b = in, *e = in + strlen(in);

    while (b < e && is_space(*b)) {
        b++;
    }
    while (e > b && is_space(e[-1])) {
        e--;
    }
    *len = (size_t)(e - b);
    return apr_pstrmemdup(p, b, *len);
}

/* The checks shared by the text validators: valid UTF-8, no controls (but
 * \n and \t when allow_newlines; U+2028/2029, which are newlines too, only
 * then), at most max_chars code points. */
static dm_err *check_text(apr_pool_t *p, const char *field, const char *s, size_t len,
                          size_t max_chars, int allow_newlines)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, n = 0;
    uint32_t cp;

    /* Printable ASCII (most keys and references) is one character a byte,
     * valid and without controls: counted without decoding. The first
     * other byte hands over to the decoding loop below, from there on. */
    while (i < len && u[i] >= 0x20 && u[i] < 0x7f) {
        i++;
        n++;
    }
    while (i < len) {
        if (!utf8_next(u, len, &i, &cp)) {
            return dm_err_make(p, DM_E_INVALID, field, "%s is not valid UTF-8 text", label(field));
        }
        if (allow_newlines ? (is_control(cp) && cp != '\n' && cp != '\t')
                           : (is_control(cp) || cp == 0x2028 || cp == 0x2029)) {
            return dm_err_make(p, DM_E_INVALID, field,
                               allow_newlines
                                   ? "%s must not contain control characters"
                                   : "%s must be a single line without control characters",
                               label(field));
        }
        n++;
    }
    if (n > max_chars) {
        return dm_err_make(p, DM_E_INVALID, field,
                           "%s must be at most %" APR_SIZE_T_FMT " characters", label(field),
                           max_chars);
    }
    return NULL;
}

dm_err *dm_validate_text(apr_pool_t *p, const char *field, const char *in, size_t max_chars,
                         int allow_newlines)
{
    if (!in) {
        return dm_err_make(p, DM_E_INVALID, field, "%s is required", label(field));
    }
    return check_text(p, field, in, strlen(in), max_chars, allow_newlines);
}

dm_err *dm_validate_address_line(apr_pool_t *p, const char *field, const char *in, const char **out)
{
    size_t len;
    char *s;
    dm_err *e;

    if (!in) {
        return dm_err_make(p, DM_E_INVALID, field, "%s is required", label(field));
    }
    s = trimmed(p, in, &len);
    if (len == 0) {
        return dm_err_make(p, DM_E_INVALID, field, "%s is required", label(field));
    }
    if ((e = check_text(p, field, s, len, 200, 0))) {
        return e;
    }
    *out = s;
    return NULL;
}

/*
 * Which code points a person's name may hold. Unicode's letter categories
 * would need tables; this cheap rule accepts every script's letters and
 * marks and refuses what is plainly not part of a name:
 *   - ASCII: letters, space, apostrophe, hyphen, dot (no digits, no other
 *     punctuation);
 *   - U+0080-U+00BF (C1 controls, Latin-1 punctuation and symbols): refused;
 *   - from U+00C0 on: accepted (Latin-1 letters onwards, combining marks
 *     U+0300-U+036F, every other script), except × U+00D7, ÷ U+00F7, and
 *     the blocks of punctuation, symbols, invisible and private-use code
 *     points listed in name_refused[];
 *   - U+2019 (’) is accepted although it lies in General Punctuation: it is
 *     the typographic apostrophe that phone keyboards put in O’Brien.
 */
static const struct {
    uint32_t lo, hi;
} name_refused[] = {
    {0x00d7, 0x00d7},    {0x00f7, 0x00f7}, /* × ÷ */
    {0x2000, 0x206f},                      /* General Punctuation: spaces, bidi, ZW* */
    {0x20a0, 0x20cf},                      /* currency symbols */
    {0x2190, 0x2bff},                      /* arrows, maths, technical, boxes, dingbats */
    {0x2e00, 0x2e7f},                      /* supplemental punctuation */
    {0x3000, 0x303f},                      /* CJK symbols and punctuation */
    {0xe000, 0xf8ff},                      /* private use */
    {0xfe00, 0xfe0f},                      /* variation selectors */
    {0xfeff, 0xfeff},                      /* zero-width no-break space (BOM) */
    {0xfff0, 0xffff},                      /* specials, U+FFFD, non-characters */
    {0x1f000, 0x1faff},                    /* emoji, pictographs, game symbols */
    {0xe0000, 0x10ffff},                   /* tags, variation selectors supp., private use */
};

static int name_char_ok(uint32_t cp)
{
    if (cp < 0x80) {
        return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == ' ' || cp == '\'' ||
               cp == '-' || cp == '.';
    }
    if (cp < 0xc0) {
        return 0;
    }
    if (cp == 0x2019) {
        return 1;
    }
    for (size_t k = 0; k < sizeof(name_refused) / sizeof(name_refused[0]); k++) {
        if (cp >= name_refused[k].lo && cp <= name_refused[k].hi) {
            return 0;
        }
    }
    return 1;
}

/* A letter for the "at least one letter" rule: not a separator, not a
 * combining mark. */
static int name_char_is_letter(uint32_t cp)
{
    if (cp < 0x80) {
        return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
    }
    return cp != 0x2019 && !(cp >= 0x0300 && cp <= 0x036f) && name_char_ok(cp);
}

dm_err *dm_validate_name(apr_pool_t *p, const char *field, const char *in, const char **out)
{
    const unsigned char *u;
    size_t len, i = 0, n = 0;
    int letters = 0;
    uint32_t cp;
    char *s;

    if (!in) {
        return dm_err_make(p, DM_E_INVALID, field, "%s is required", label(field));
    }
    s = trimmed(p, in, &len);
    if (len == 0) {
        return dm_err_make(p, DM_E_INVALID, field, "%s is required", label(field));
    }
    u = (const unsigned char *)s;
    while (i < len) {
        if (!utf8_next(u, len, &i, &cp)) {
            return dm_err_make(p, DM_E_INVALID, field, "%s is not valid UTF-8 text", label(field));
        }
        if (!name_char_ok(cp)) {
            return dm_err_make(p, DM_E_INVALID, field,
                               "%s may contain only letters, spaces, apostrophes, hyphens and "
                               "dots",
                               label(field));
        }
        letters |= name_char_is_letter(cp);
        n++;
    }
    if (n > 100) {
        return dm_err_make(p, DM_E_INVALID, field, "%s must be at most 100 characters",
                           label(field));
    }
    if (!letters) {
        return dm_err_make(p, DM_E_INVALID, field, "%s must contain at least one letter",
                           label(field));
    }
    *out = s;
    return NULL;
}

dm_err *dm_validate_phone(apr_pool_t *p, const char *field, const char *in, const char **out)
{
    size_t len, digits = 0;
    int plus = 0;
    char *s, *buf;

    if (!in) {
        return dm_err_make(p, DM_E_INVALID, field, "%s is required", label(field));
    }
    s = trimmed(p, in, &len);
    if (len == 0) {
        return dm_err_make(p, DM_E_INVALID, field, "%s is required", label(field));
    }
    /* "+" and at most 15 digits; anything longer is refused before it fits. */
    buf = apr_palloc(p, 17);
    for (const char *c = s; *c; c++) {
        if (*c == ' ' || *c == '.' || *c == '-' || *c == '(' || *c == ')') {
            continue;
        }
        if (!plus) {
            if (*c != '+') {
                return dm_err_make(p, DM_E_INVALID, field,
                                   "%s must start with + and the country code", label(field));
            }
            plus = 1;
            continue;
        }
        if (*c < '0' || *c > '9') {
            return dm_err_make(p, DM_E_INVALID, field,
                               "%s may contain only digits after the +, with optional spaces, "
                               "dots, dashes and parentheses",
                               label(field));
        }
        if (digits == 0 && *c == '0') {
            return dm_err_make(p, DM_E_INVALID, field,
                               "%s must not start with 0 after the + (the country code)",
                               label(field));
        }
        if (digits == 15) {
            return dm_err_make(p, DM_E_INVALID, field, "%s must have 8 to 15 digits", label(field));
        }
        buf[1 + digits++] = *c;
    }
    if (!plus) {
        return dm_err_make(p, DM_E_INVALID, field, "%s must start with + and the country code",
                           label(field));
    }
    if (digits < 8) {
        return dm_err_make(p, DM_E_INVALID, field, "%s must have 8 to 15 digits", label(field));
    }
    buf[0] = '+';
    buf[1 + digits] = '\0';
    *out = buf;
    return NULL;
}

/* RFC 5322 atext. */
static int is_atext(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static dm_err *check_local_part(apr_pool_t *p, const char *field, const char *s, size_t len)
{
    if (s[0] == '"') {
        /* A quoted string: printable ASCII; " and \ only as \" and \\. (RFC
         * 5321 allows a backslash before any printable character, but that
         * only spells the character itself.) */
        if (len < 2 || s[len - 1] != '"') {
            return dm_err_make(p, DM_E_INVALID, field,
                               "the part before @ in %s has an unterminated quote", label(field));
        }
        for (size_t i = 1; i < len - 1; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c == '\\' && i + 1 < len - 1 && (s[i + 1] == '"' || s[i + 1] == '\\')) {
                i++;
            } else if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
                return dm_err_make(p, DM_E_INVALID, field,
                                   "the quoted part before @ in %s may contain only printable "
                                   "ASCII characters, with \" and \\ written as \\\" and \\\\",
                                   label(field));
            }
        }
        return NULL;
    }
    if (s[0] == '.' || s[len - 1] == '.') {
        return dm_err_make(p, DM_E_INVALID, field,
                           "the part before @ in %s must not start or end with a dot",
                           label(field));
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (s[i + 1] == '.') {
                return dm_err_make(p, DM_E_INVALID, field,
                                   "the part before @ in %s must not contain two dots in a row",
                                   label(field));
            }
        } else if (c == '@') {
            return dm_err_make(p, DM_E_INVALID, field, "%s must contain exactly one @",
                               label(field));
        } else if (!is_atext(c)) {
            return dm_err_make(p, DM_E_INVALID, field,
                               "the part before @ in %s may contain only ASCII letters, digits, "
                               "dots and !#$%%&'*+-/=?^_`{|}~ (or be in double quotes)",
                               label(field));
        }
    }
    return NULL;
}

static int is_ldh(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* d is lower-cased already. */
static dm_err *check_domain(apr_pool_t *p, const char *field, const char *d, size_t len)
{
    size_t labels = 0, start = 0;
    int tld_digits = 1;

    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)d[i] >= 0x80) {
            return dm_err_make(p, DM_E_INVALID, field,
                               "the part after @ in %s must be ASCII: write an internationalised "
                               "domain in its punycode (xn--) form",
                               label(field));
        }
    }
    /* Labels end at each dot and at the end; the length limits of RFC 5321
     * for the whole domain (255) are implied by the 254 of the address. */
    for (size_t i = 0; i <= len; i++) {
        if (i < len && d[i] != '.') {
            if (!is_ldh(d[i])) {
                return dm_err_make(p, DM_E_INVALID, field,
                                   "the part after @ in %s is not a valid domain: only letters, "
                                   "digits, hyphens and dots are allowed",
                                   label(field));
            }
            continue;
        }
        if (i == start || i - start > 63) {
            return dm_err_make(p, DM_E_INVALID, field,
                               "the part after @ in %s is not a valid domain: each part between "
                               "dots must be 1 to 63 characters",
                               label(field));
        }
        if (d[start] == '-' || d[i - 1] == '-') {
            return dm_err_make(p, DM_E_INVALID, field,
                               "the part after @ in %s is not a valid domain: a part between "
                               "dots must not start or end with a hyphen",
                               label(field));
        }
        tld_digits = 1;
        for (size_t k = start; k < i; k++) {
            if (d[k] < '0' || d[k] > '9') {
                tld_digits = 0;
                break;
            }
        }
        labels++;
        start = i + 1;
    }
    if (labels < 2) {
        return dm_err_make(p, DM_E_INVALID, field,
                           "the part after @ in %s is not a valid domain: it needs at least one "
                           "dot, as in example.com",
                           label(field));
    }
    if (tld_digits) {
        return dm_err_make(p, DM_E_INVALID, field,
                           "the part after @ in %s is not a valid domain: its last part must not "
                           "be all digits",
                           label(field));
    }
    return NULL;
}

dm_err *dm_validate_email(apr_pool_t *p, const char *field, const char *in, const char **normalised,
                          const char **key)
{
    const unsigned char *u;
    size_t len, i = 0, local_len;
    uint32_t cp;
    char *s, *at, *k;
    dm_err *e;

    if (!in) {
        return dm_err_make(p, DM_E_INVALID, field, "%s is required", label(field));
    }
    s = trimmed(p, in, &len);
    if (len == 0) {
        return dm_err_make(p, DM_E_INVALID, field, "%s is required", label(field));
    }
    u = (const unsigned char *)s;
    while (i < len) {
        if (!utf8_next(u, len, &i, &cp)) {
            return dm_err_make(p, DM_E_INVALID, field, "%s is not valid UTF-8 text", label(field));
        }
        if (is_control(cp)) {
            return dm_err_make(p, DM_E_INVALID, field, "%s must not contain control characters",
                               label(field));
        }
    }
    /* The last @ separates: a quoted local part may itself hold an @. */
    at = strrchr(s, '@');
    if (!at) {
        return dm_err_make(p, DM_E_INVALID, field, "%s must contain exactly one @", label(field));
    }
    local_len = (size_t)(at - s);
    if (local_len == 0) {
        return dm_err_make(p, DM_E_INVALID, field, "the part before @ in %s is empty",
                           label(field));
    }
    if (at[1] == '\0') {
        return dm_err_make(p, DM_E_INVALID, field, "the part after @ in %s is empty", label(field));
    }
    if (len > 254) {
        return dm_err_make(p, DM_E_INVALID, field, "%s must be at most 254 characters",
                           label(field));
    }
    if (local_len > 64) {
        return dm_err_make(p, DM_E_INVALID, field,
                           "the part before @ in %s must be at most 64 characters", label(field));
    }
    if ((e = check_local_part(p, field, s, local_len))) {
        return e;
    }
    for (char *c = at + 1; *c; c++) {
        if (*c >= 'A' && *c <= 'Z') {
            *c = (char)(*c - 'A' + 'a');
        }
    }
    if ((e = check_domain(p, field, at + 1, len - local_len - 1))) {
        return e;
    }
    k = apr_pstrmemdup(p, s, len);
    for (char *c = k; *c; c++) {
        if (*c >= 'A' && *c <= 'Z') {
            *c = (char)(*c - 'A' + 'a');
        }
    }
    *normalised = s;
    *key = k;
    return NULL;
}
