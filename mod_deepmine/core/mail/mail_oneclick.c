/*
 * mail_oneclick.c — see mail_oneclick.h. Bounded by construction: every
 * scan stays inside body[0..len), decoded names and values are copied into
 * small fixed buffers (longer ones cannot be the words we look for).
 */
#include "mail/mail_oneclick.h"

#include <apr_lib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int hex_value(char c)
{
    return apr_isdigit(c) ? c - '0' : apr_tolower(c) - 'a' + 10;
}

/* x-www-form-urlencoded: decodes '+' and %XX of s[0..n) into out (at most
 * cap-1 bytes); 0 when malformed or too long. */
static int form_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (k + 1 >= cap) {
            return 0;
        }
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= n || !apr_isxdigit(s[i + 1]) || !apr_isxdigit(s[i + 2])) {
                return 0;
            }
            c = (char)(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
            i += 2;
        }
        out[k++] = c;
    }
    out[k] = '\0';
    return 1;
}

static int urlencoded_ok(const char *body, size_t len)
{
    size_t i = 0;

    while (i < len) {
        const char *amp = memchr(body + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - body) : len;
        const char *eq = memchr(body + i, '=', end - i);
        char k[32], v[32];
        if (eq && form_decode(body + i, (size_t)(eq - body) - i, k, sizeof(k)) &&
            form_decode(eq + 1, end - (size_t)(eq + 1 - body), v, sizeof(v)) &&
            strcmp(k, "List-Unsubscribe") == 0 && strcmp(v, "One-Click") == 0) {
            return 1;
        }
        i = end + 1;
    }
    return 0;
}

static const char *find_bytes(const char *h, size_t hn, const char *n, size_t nn)
{
    if (nn == 0 || hn < nn) {
        return NULL;
    }
    for (size_t i = 0; i + nn <= hn; i++) {
        if (h[i] == n[0] && memcmp(h + i, n, nn) == 0) {
            return h + i;
        }
    }
    return NULL;
}

/* The boundary parameter of a multipart Content-Type, into out. */
static int boundary_of(const char *ct, char *out, size_t cap)
{
    const char *b = ct ? strcasestr(ct, "boundary=") : NULL;
    size_t n = 0;

    if (!b) {
        return 0;
    }
    b += 9;
    if (*b == '"') {
        const char *q = strchr(b + 1, '"');
        if (!q) {
            return 0;
        }
        n = (size_t)(q - b - 1);
        b++;
    } else {
        n = strcspn(b, "; \t");
    }
    if (n == 0 || n > 70 || n + 1 > cap) {
        return 0;
    }
    memcpy(out, b, n);
    out[n] = '\0';
    return 1;
}

static int multipart_ok(const char *ct, const char *body, size_t len)
{
    char boundary[80], delim[84];
    size_t dlen;
    const char *at, *end = body + len;

    if (!boundary_of(ct, boundary, sizeof(boundary))) {
        return 0;
    }
    dlen = (size_t)snprintf(delim, sizeof(delim), "--%s", boundary);
    at = find_bytes(body, len, delim, dlen);
    while (at) {
        const char *part = at + dlen, *hdr_end, *next, *content;
        size_t sep = 4;
        if (end - part >= 2 && part[0] == '-' && part[1] == '-') {
            return 0; /* the closing delimiter */
        }
        next = find_bytes(part, (size_t)(end - part), delim, dlen);
        if (!next) {
            return 0;
        }
        hdr_end = find_bytes(part, (size_t)(next - part), "\r\n\r\n", 4);
        if (!hdr_end) {
            hdr_end = find_bytes(part, (size_t)(next - part), "\n\n", 2);
            sep = 2;
        }
        if (hdr_end) {
            size_t hlen = (size_t)(hdr_end - part);
            size_t clen;
            content = hdr_end + sep;
            clen = (size_t)(next - content);
            while (clen > 0 && (content[clen - 1] == '\n' || content[clen - 1] == '\r' ||
                                content[clen - 1] == ' ')) {
                clen--;
            }
            if (find_bytes(part, hlen, "name=\"List-Unsubscribe\"", 23) && clen == 9 &&
                memcmp(content, "One-Click", 9) == 0) {
                return 1;
            }
        }
        at = next;
    }
    return 0;
}

int dm_unsub_body_ok(const char *content_type, const char *body, size_t len)
{
    if (!body) {
        return 0;
    }
    if (content_type && strncasecmp(content_type, "multipart/form-data", 19) == 0) {
        return multipart_ok(content_type, body, len);
    }
    return urlencoded_ok(body, len);
}
