/*
 * mime.c — the RFC 5322 / MIME text of one e-mail (see mime.h), shared by
 * every mailer plugin through the host table.
 *
 * Invariants:
 * - Every header value is checked before anything is written: control
 *   characters (CR and LF above all: header injection), bytes that are not
 *   UTF-8, addresses that are not plain ASCII, extra headers that would
 *   replace the builder's own. A refused message produces no output.
 * - Bodies are always transfer-encoded, so no body line can look like a
 *   header, a boundary or (after SMTP dot-stuffing) the end of DATA. The
 *   boundary starts with "=_", which neither encoding can produce: QP writes
 *   '=' only as "=3D" or a soft break, base64 writes '=' only as padding at
 *   the very end of a part and never '_'.
 * - The message is built in a scratch sub-pool and copied once into the
 *   caller's pool, so its growth does not stay behind in the caller's pool.
 */
#include "base/mime.h"

#include "base/validate.h"

#include <apr_strings.h>
#include <sodium.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* RFC 2047 6.1: a line holding encoded-words is at most 76 characters; each
 * word spends 12 on "=?UTF-8?B?" and "?=", the rest on base64. */
#define LINE_MAX_WORDS 76
#define WORD_OVERHEAD 12
/* RFC 5322 2.1.1: lines SHOULD stay within 78 characters, MUST within 998. */
#define LINE_SOFT_MAX 78
#define LINE_HARD_MAX 998
/* RFC 2045 6.7 and 6.8: encoded body lines are at most 76 characters. */
#define QP_LINE_MAX 76
#define B64_LINE_BYTES 57 /* 57 bytes are 76 base64 characters */
#define HEADER_NAME_MAX 76
#define MESSAGE_ID_MAX 250
#define FALLBACK_DOMAIN "deepmine.invalid"

/* ---- a growable buffer in a scratch pool ---- */

typedef struct mbuf {
    apr_pool_t *pool;
    char *p;
    size_t len, cap;
} mbuf;

static void mb_add(mbuf *b, const char *s, size_t n)
{
    if (n == 0) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        /* The old block stays in the scratch pool until the build ends. */
        p = apr_palloc(b->pool, cap);
        if (b->len) {
            memcpy(p, b->p, b->len);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void mb_str(mbuf *b, const char *s)
{
    mb_add(b, s, strlen(s));
}

/* ---- checks ---- */

static int is_ascii(dm_str s)
{
    for (size_t i = 0; i < s.len; i++) {
        if ((unsigned char)s.ptr[i] >= 0x80) {
            return 0;
        }
    }
    return 1;
}

/* Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
 * past U+10FFFF. */
static int is_utf8(dm_str s)
{
    const unsigned char *u = (const unsigned char *)s.ptr;
    size_t i = 0;

    while (i < s.len) {
        unsigned char c = u[i];
        size_t need;
        unsigned int cp, min;

        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            need = 1, cp = c & 0x1Fu, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2, cp = c & 0x0Fu, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3, cp = c & 0x07u, min = 0x10000;
        } else {
            return 0;
        }
        if (s.len - i <= need) {
            return 0;
        }
        for (size_t k = 1; k <= need; k++) {
            if ((u[i + k] & 0xC0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (u[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return 0;
        }
        i += need + 1;
    }
    return 1;
}

/* A header value we may write: no control character, well-formed UTF-8. */
static const char *value_problem(dm_str s)
{
    if (s.len && !s.ptr) {
        return "has a length but no bytes";
    }
    if (dm_has_control_bytes(s.ptr, s.len)) {
        return "contains a control character (CR, LF, TAB, NUL, …)";
    }
    if (!is_utf8(s)) {
        return "is not UTF-8";
    }
    return NULL;
}

static int is_atext(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* local@domain: a dot-atom local part (no quoted strings) and a host name
 * of letters, digits, '-' and '.' (no address literals). */
static int plain_addr_spec(dm_str a)
{
    const char *at = NULL;
    size_t local, domain;

    if (a.len == 0 || a.len > 254) {
        return 0;
    }
    for (size_t i = 0; i < a.len; i++) {
        if (a.ptr[i] == '@') {
            at = a.ptr + i;
        }
    }
    if (!at) {
        return 0;
    }
    local = (size_t)(at - a.ptr);
    domain = a.len - local - 1;
    if (local == 0 || local > 64 || domain == 0 || a.ptr[0] == '.' || at[-1] == '.' ||
        at[1] == '.' || a.ptr[a.len - 1] == '.') {
        return 0;
    }
    for (size_t i = 0; i < local; i++) {
        char c = a.ptr[i];
        if (!(is_atext(c) || (c == '.' && a.ptr[i + 1] != '.'))) {
            return 0;
        }
    }
    for (size_t i = 0; i < domain; i++) {
        char c = at[1 + i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || (c == '.' && at[2 + i] != '.'))) {
            return 0;
        }
    }
    return 1;
}

static dm_str trim(dm_str s)
{
    while (s.len && (s.ptr[0] == ' ' || s.ptr[0] == '\t')) {
        s.ptr++;
        s.len--;
    }
    while (s.len && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t')) {
        s.len--;
    }
    return s;
}

int dm_mime_split_address(dm_str a, dm_str *name, dm_str *addr)
{
    const char *lt = NULL;

    a = trim(a);
    name->ptr = a.ptr;
    name->len = 0;
    *addr = a;
    if (!a.ptr || a.len == 0) {
        return 0;
    }
    if (a.ptr[a.len - 1] == '>') {
        for (size_t i = a.len - 1; i > 0; i--) {
            if (a.ptr[i - 1] == '<') {
                lt = a.ptr + i - 1;
                break;
            }
        }
        if (!lt) {
            return 0;
        }
        addr->ptr = lt + 1;
        addr->len = (size_t)(a.ptr + a.len - 1 - addr->ptr);
        name->len = (size_t)(lt - a.ptr);
        *name = trim(*name);
    }
    return plain_addr_spec(*addr);
}

/* ---- header writing ---- */

/* Unstructured text as RFC 2047 encoded-words ("=?UTF-8?B?...?="), folding
 * between words so that no line passes 76 characters, never splitting a
 * UTF-8 sequence. *col is the current column. */
static void put_words(mbuf *b, dm_str s, size_t *col)
{
    char b64[LINE_MAX_WORDS + 1];
    size_t at = 0;

    while (at < s.len) {
        size_t room = *col < LINE_MAX_WORDS ? LINE_MAX_WORDS - *col : 0, take, most;

        if (room < WORD_OVERHEAD + 8) {
            /* Not even a 4-byte character fits here: fold first. */
            mb_str(b, "\r\n ");
            *col = 1;
            room = LINE_MAX_WORDS - 1;
        }
        most = (room - WORD_OVERHEAD) / 4 * 3;
        take = s.len - at < most ? s.len - at : most;
        if (at + take < s.len) {
            size_t cut = take;
            /* Back off to the start of a character (not a continuation byte). */
            while (cut > 0 && ((unsigned char)s.ptr[at + cut] & 0xC0) == 0x80) {
                cut--;
            }
            if (cut > 0) {
                take = cut;
            }
        }
        sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)s.ptr + at, take,
                          sodium_base64_VARIANT_ORIGINAL);
        mb_str(b, "=?UTF-8?B?");
        mb_str(b, b64);
        mb_str(b, "?=");
        *col += WORD_OVERHEAD + strlen(b64);
        at += take;
        if (at < s.len) {
            mb_str(b, "\r\n ");
            *col = 1;
        }
    }
}

/* ASCII text folded before spaces to keep lines within 78 characters where
 * the words allow (RFC 5322 2.2.3). Returns the longest line written. */
static size_t put_folded(mbuf *b, dm_str s, size_t *col)
{
    size_t i = 0, longest = *col;

    while (i < s.len) {
        size_t j = i + 1;
        while (j < s.len && s.ptr[j] != ' ') {
            j++;
        }
        if (s.ptr[i] == ' ' && *col + (j - i) > LINE_SOFT_MAX && *col > 1) {
            mb_str(b, "\r\n");
            *col = 0;
        }
        mb_add(b, s.ptr + i, j - i);
        *col += j - i;
        if (*col > longest) {
            longest = *col;
        }
        i = j;
    }
    return longest;
}

static int contains(dm_str s, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= s.len; i++) {
        if (memcmp(s.ptr + i, needle, n) == 0) {
            return 1;
        }
    }
    return 0;
}

/* "Name: value" for an unstructured value (Subject) or an extra header.
 * ASCII is folded as is; non-ASCII becomes encoded-words. A Subject that
 * holds "=?" (which a reader would decode) or a word too long for one line
 * is encoded too; an extra header may be structured (List-Unsubscribe), so
 * there a line over 998 characters is refused instead. 0 on refusal. */
static int put_text(mbuf *b, dm_str name, dm_str value, int unstructured)
{
    size_t col = name.len + 2, mark;

    mb_add(b, name.ptr, name.len);
    mb_str(b, ":");
    if (value.len == 0) {
        mb_str(b, "\r\n");
        return 1;
    }
    mark = b->len;
    if (is_ascii(value) && !(unstructured && contains(value, "=?"))) {
        const char *sp = memchr(value.ptr, ' ', value.len);
        size_t first = sp ? (size_t)(sp - value.ptr) : value.len;
        if (col + first > LINE_SOFT_MAX && 1 + first <= LINE_SOFT_MAX) {
            /* The first word fits on a line of its own only: fold right
             * after the colon (a field body may start with folding space). */
            mb_str(b, "\r\n ");
            col = 1;
        } else {
            mb_str(b, " ");
        }
        if (put_folded(b, value, &col) <= LINE_HARD_MAX) {
            mb_str(b, "\r\n");
            return 1;
        }
        if (!unstructured) {
            return 0;
        }
        b->len = mark; /* start over, encoded */
    }
    mb_str(b, " ");
    col = name.len + 2;
    put_words(b, value, &col);
    mb_str(b, "\r\n");
    return 1;
}

/* A display name as written, quotes removed and quoted pairs resolved. */
static dm_str display_text(apr_pool_t *p, dm_str name)
{
    dm_str out = name;

    if (name.len >= 2 && name.ptr[0] == '"' && name.ptr[name.len - 1] == '"') {
        char *t = apr_palloc(p, name.len);
        size_t n = 0;
        for (size_t i = 1; i + 1 < name.len; i++) {
            if (name.ptr[i] == '\\' && i + 2 < name.len) {
                i++;
            }
            t[n++] = name.ptr[i];
        }
        out.ptr = t;
        out.len = n;
    }
    return out;
}

/* An address header (From, To): "addr" or "Name <addr>", the name as atoms,
 * a quoted string, or encoded-words when it is not ASCII. 0 on refusal. */
static int put_address(apr_pool_t *scratch, mbuf *b, const char *header, dm_str a)
{
    dm_str name, addr, disp;
    size_t col = strlen(header) + 2;

    if (!dm_mime_split_address(a, &name, &addr)) {
        return 0;
    }
    disp = display_text(scratch, name);
    mb_str(b, header);
    mb_str(b, ": ");
    if (disp.len == 0) {
        mb_add(b, addr.ptr, addr.len);
        mb_str(b, "\r\n");
        return 1;
    }
    if (is_ascii(disp)) {
        int atoms = 1;
        char *phrase, *w;
        dm_str line;
        for (size_t i = 0; i < disp.len; i++) {
            if (!is_atext(disp.ptr[i]) && disp.ptr[i] != ' ') {
                atoms = 0;
            }
        }
        /* At worst every character escaped, plus quotes, " <", addr, ">". */
        phrase = apr_palloc(scratch, disp.len * 2 + addr.len + 6);
        w = phrase;
        if (!atoms) {
            *w++ = '"';
        }
        for (size_t i = 0; i < disp.len; i++) {
            if (!atoms && (disp.ptr[i] == '"' || disp.ptr[i] == '\\')) {
                *w++ = '\\';
            }
            *w++ = disp.ptr[i];
        }
        if (!atoms) {
            *w++ = '"';
        }
        *w++ = ' ';
        *w++ = '<';
        memcpy(w, addr.ptr, addr.len);
        w += addr.len;
        *w++ = '>';
        line.ptr = phrase;
        line.len = (size_t)(w - phrase);
        if (put_folded(b, line, &col) > LINE_HARD_MAX) {
            return 0;
        }
        mb_str(b, "\r\n");
        return 1;
    }
    put_words(b, disp, &col);
    if (col + addr.len + 3 > LINE_SOFT_MAX) {
        mb_str(b, "\r\n");
    }
    mb_str(b, " <");
    mb_add(b, addr.ptr, addr.len);
    mb_str(b, ">\r\n");
    return 1;
}

int dm_mime_date(int64_t t, char out[32])
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t tt = (time_t)t;
    struct tm tm;

    /* 253402300799 is 9999-12-31T23:59:59Z: RFC 5322 years have 4 digits. */
    if (t < 0 || t > 253402300799LL || !gmtime_r(&tt, &tm)) {
        return 0;
    }
    /* Not strftime: its names follow the locale. */
    apr_snprintf(out, 32, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
                 months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return 1;
}

/* id-left "@" id-right of RFC 5322 3.6.4, kept to visible ASCII. */
static int valid_message_id(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    const char *at = id ? strrchr(id, '@') : NULL;

    if (n == 0 || n > MESSAGE_ID_MAX || !at || at == id || at[1] == '\0') {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c <= 32 || c >= 127 || c == '<' || c == '>' || c == '"' || c == '\\' || c == '(' ||
            c == ')' || c == ',' || c == ';' || c == ':' || c == '[' || c == ']') {
            return 0;
        }
    }
    return 1;
}

/* Headers the builder writes itself: an extra header may not replace them. */
static const char *const builder_headers[] = {
    "Date",       "From",         "To",           "Subject",
    "Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
    NULL,
};

/* An RFC 5322 field name: visible ASCII except ':'. */
static int valid_header_name(dm_str n)
{
    if (!n.ptr || n.len == 0 || n.len > HEADER_NAME_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n.len; i++) {
        unsigned char c = (unsigned char)n.ptr[i];
        if (c < 33 || c > 126 || c == ':') {
            return 0;
        }
    }
    return 1;
}

/* ---- bodies ---- */

/* Quoted-printable (RFC 2045 6.7): line breaks ("\n" or "\r\n") become CRLF,
 * lines are kept to 76 characters with soft breaks, whitespace before a
 * break is encoded. Adds no final break. */
static void put_qp(mbuf *b, dm_str s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t col = 0;

    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        char enc[3];
        size_t w;
        int at_eol;

        if (c == '\r' && i + 1 < s.len && s.ptr[i + 1] == '\n') {
            continue;
        }
        if (c == '\n') {
            mb_str(b, "\r\n");
            col = 0;
            continue;
        }
        at_eol = i + 1 == s.len || s.ptr[i + 1] == '\n' ||
                 (s.ptr[i + 1] == '\r' && i + 2 < s.len && s.ptr[i + 2] == '\n');
        if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !at_eol)) {
            enc[0] = (char)c;
            w = 1;
        } else {
            enc[0] = '=';
            enc[1] = hex[c >> 4];
            enc[2] = hex[c & 15];
            w = 3;
        }
        /* Room is kept for the '=' of a soft break. */
        if (col + w > QP_LINE_MAX - 1) {
            mb_str(b, "=\r\n");
            col = 0;
        }
        mb_add(b, enc, w);
        col += w;
    }
}

/* Base64 (RFC 2045 6.8) of the text with its line breaks made CRLF first
 * (the canonical form of a text type), 76 characters a line. Adds no final
 * break. */
static void put_base64(apr_pool_t *scratch, mbuf *b, dm_str s)
{
    char *canon = apr_palloc(scratch, s.len * 2 + 1), line[80];
    size_t n = 0;

    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] == '\n' && (i == 0 || s.ptr[i - 1] != '\r')) {
            canon[n++] = '\r';
        }
        canon[n++] = s.ptr[i];
    }
    for (size_t at = 0; at < n; at += B64_LINE_BYTES) {
        size_t take = n - at < B64_LINE_BYTES ? n - at : B64_LINE_BYTES;
        if (at) {
            mb_str(b, "\r\n");
        }
        sodium_bin2base64(line, sizeof(line), (const unsigned char *)canon + at, take,
                          sodium_base64_VARIANT_ORIGINAL);
        mb_str(b, line);
    }
}

/* Quoted-printable keeps mostly-ASCII text readable and small; past one
 * byte in six above 0x7F it outgrows base64 (each such byte costs three
 * characters against base64's four for three bytes). */
static int wants_base64(dm_str s)
{
    size_t high = 0;

    for (size_t i = 0; i < s.len; i++) {
        if ((unsigned char)s.ptr[i] >= 0x80) {
            high++;
        }
    }
    return high * 6 > s.len;
}

/* The part's own headers, a blank line, the encoded body (no final break). */
static void put_part(apr_pool_t *scratch, mbuf *b, const char *type, dm_str body)
{
    int b64 = wants_base64(body);

    mb_str(b, "Content-Type: ");
    mb_str(b, type);
    mb_str(b, "; charset=UTF-8\r\nContent-Transfer-Encoding: ");
    mb_str(b, b64 ? "base64\r\n\r\n" : "quoted-printable\r\n\r\n");
    if (b64) {
        put_base64(scratch, b, body);
    } else {
        put_qp(b, body);
    }
}

/* ---- the message ---- */

static dm_err *check_mail(apr_pool_t *p, const dm_mail *m, const char *message_id, int64_t date)
{
    const struct {
        const char *field;
        dm_str value;
    } fields[] = {
        {"the sender (from)", m->from},
        {"the recipient (to)", m->to},
        {"the subject", m->subject},
    };
    dm_str name, addr;
    const char *why;

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        why = value_problem(fields[i].value);
        if (why) {
            return dm_err_make(p, DM_E_INVALID, NULL, "%s %s", fields[i].field, why);
        }
    }
    if (m->from.len == 0) {
        return dm_err_make(p, DM_E_INVALID, "from", "the message has no sender (from)");
    }
    if (m->to.len == 0) {
        return dm_err_make(p, DM_E_INVALID, "to", "the message has no recipient (to)");
    }
    if (!dm_mime_split_address(m->from, &name, &addr)) {
        return dm_err_make(p, DM_E_INVALID, "from",
                           "the sender (from) is not an address of the form local@domain or "
                           "Name <local@domain> with a plain ASCII address (internationalised "
                           "addresses need SMTPUTF8)");
    }
    if (!dm_mime_split_address(m->to, &name, &addr)) {
        return dm_err_make(p, DM_E_INVALID, "to",
                           "the recipient (to) is not an address of the form local@domain or "
                           "Name <local@domain> with a plain ASCII address (internationalised "
                           "addresses need SMTPUTF8)");
    }
    if ((m->text.len && !m->text.ptr) || (m->html.len && !m->html.ptr)) {
        return dm_err_make(p, DM_E_INVALID, NULL, "a body has a length but no bytes");
    }
    if (m->text.len > DM_MIME_BODY_MAX || m->html.len > DM_MIME_BODY_MAX) {
        return dm_err_make(p, DM_E_INVALID, NULL, "a body is larger than %u bytes",
                           (unsigned)DM_MIME_BODY_MAX);
    }
    if (m->n_headers && !m->headers) {
        return dm_err_make(p, DM_E_INVALID, NULL, "the extra headers have a count but no array");
    }
    for (size_t i = 0; i < m->n_headers; i++) {
        const dm_header *h = &m->headers[i];
        if (!valid_header_name(h->name)) {
            return dm_err_make(p, DM_E_INVALID, NULL,
                               "extra header %u has a malformed name (1 to 76 visible ASCII "
                               "characters, no ':', no control character)",
                               (unsigned)i);
        }
        why = value_problem(h->value);
        if (why) {
            return dm_err_make(p, DM_E_INVALID, NULL, "extra header %.*s %s", (int)h->name.len,
                               h->name.ptr, why);
        }
        for (const char *const *s = builder_headers; *s; s++) {
            if (strlen(*s) == h->name.len && !strncasecmp(*s, h->name.ptr, h->name.len)) {
                return dm_err_make(p, DM_E_INVALID, NULL,
                                   "extra header %s is one the mailer sets itself", *s);
            }
        }
    }
    if (!valid_message_id(message_id)) {
        return dm_err_make(p, DM_E_INVALID, NULL,
                           "the Message-ID must be left@right in visible ASCII, without angle "
                           "brackets");
    }
    if (date < 0) {
        return dm_err_make(p, DM_E_INVALID, NULL, "the date is before 1970");
    }
    return NULL;
}

dm_err *dm_mime_build(apr_pool_t *p, const dm_mail *mail, const char *message_id, int64_t date,
                      char **out, size_t *out_len)
{
    static const dm_str subject_name = {"Subject", 7};
    apr_pool_t *scratch = NULL;
    unsigned char rnd[12];
    char date_text[32], boundary[48], rnd_hex[25];
    dm_err *e;
    mbuf b;
    int has_text, has_html;

    *out = NULL;
    if (out_len) {
        *out_len = 0;
    }
    e = check_mail(p, mail, message_id, date);
    if (e) {
        return e;
    }
    if (!dm_mime_date(date, date_text)) {
        return dm_err_make(p, DM_E_INVALID, NULL, "the date cannot be written (after 9999)");
    }
    if (apr_pool_create(&scratch, p) != APR_SUCCESS) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "out of memory");
    }
    memset(&b, 0, sizeof(b));
    b.pool = scratch;

    mb_str(&b, "Date: ");
    mb_str(&b, date_text);
    mb_str(&b, "\r\n");
    if (!put_address(scratch, &b, "From", mail->from)) {
        e = dm_err_make(p, DM_E_INVALID, "from", "the sender's display name is too long");
        goto cleanup;
    }
    if (!put_address(scratch, &b, "To", mail->to)) {
        e = dm_err_make(p, DM_E_INVALID, "to", "the recipient's display name is too long");
        goto cleanup;
    }
    put_text(&b, subject_name, mail->subject, 1); /* unstructured: never refused */
    mb_str(&b, "Message-ID: <");
    mb_str(&b, message_id);
    mb_str(&b, ">\r\nMIME-Version: 1.0\r\n");
    for (size_t i = 0; i < mail->n_headers; i++) {
        const dm_header *h = &mail->headers[i];
        if (!put_text(&b, h->name, h->value, 0)) {
            e = dm_err_make(p, DM_E_INVALID, NULL,
                            "extra header %.*s has a word too long for a line of %d characters",
                            (int)h->name.len, h->name.ptr, LINE_HARD_MAX);
            goto cleanup;
        }
    }

    has_text = mail->text.len > 0;
    has_html = mail->html.len > 0;
    if (has_text && has_html) {
        randombytes_buf(rnd, sizeof(rnd));
        sodium_bin2hex(rnd_hex, sizeof(rnd_hex), rnd, sizeof(rnd));
        apr_snprintf(boundary, sizeof(boundary), "=_dm_%s", rnd_hex);
        mb_str(&b, "Content-Type: multipart/alternative; boundary=\"");
        mb_str(&b, boundary);
        mb_str(&b, "\"\r\n\r\nThis is a multi-part message in MIME format.\r\n");
        /* The CRLF before each "--boundary" belongs to the delimiter
         * (RFC 2046 5.1.1), not to the part before it. Text first, HTML
         * last: readers prefer the last alternative they can show. */
        mb_str(&b, "--");
        mb_str(&b, boundary);
        mb_str(&b, "\r\n");
        put_part(scratch, &b, "text/plain", mail->text);
        mb_str(&b, "\r\n--");
        mb_str(&b, boundary);
        mb_str(&b, "\r\n");
        put_part(scratch, &b, "text/html", mail->html);
        mb_str(&b, "\r\n--");
        mb_str(&b, boundary);
        mb_str(&b, "--\r\n");
    } else {
        put_part(scratch, &b, has_html ? "text/html" : "text/plain",
                 has_html ? mail->html : mail->text);
        /* The message ends with a line break: the body's own, or one more. */
        if (b.len < 2 || b.p[b.len - 2] != '\r' || b.p[b.len - 1] != '\n') {
            mb_str(&b, "\r\n");
        }
    }
    *out = apr_pstrmemdup(p, b.p, b.len);
    if (out_len) {
        *out_len = b.len;
    }

cleanup:
    apr_pool_destroy(scratch);
    return e;
}

const char *dm_mime_message_id(apr_pool_t *p, dm_str idempotency_key, dm_str from)
{
    unsigned char digest[crypto_hash_sha256_BYTES];
    char hex[crypto_hash_sha256_BYTES * 2 + 1];
    dm_str name, addr;
    const char *domain = FALLBACK_DOMAIN;

    if (idempotency_key.len && idempotency_key.ptr) {
        crypto_hash_sha256(digest, (const unsigned char *)idempotency_key.ptr, idempotency_key.len);
    } else {
        randombytes_buf(digest, sizeof(digest));
    }
    sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
    if (from.ptr && dm_mime_split_address(from, &name, &addr)) {
        /* plain_addr_spec allowed one '@' of interest: the last. */
        const char *at = addr.ptr + addr.len;
        while (at > addr.ptr && at[-1] != '@') {
            at--;
        }
        domain = apr_pstrmemdup(p, at, (apr_size_t)(addr.ptr + addr.len - at));
    }
    /* 128 bits of the hash: unique enough, and reveals nothing of the key. */
    return apr_psprintf(p, "%.32s@%s", hex, domain);
}
