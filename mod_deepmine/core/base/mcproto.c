/*
 * mcproto.c — see mcproto.h.
 *
 * A reply is parsed again from its first byte each time more bytes arrive:
 * replies are a few dozen bytes, and a parser without state is one a fuzzer
 * can drive with any split of the input.
 */
#include "base/mcproto.h"

#include <stdio.h>
#include <string.h>

static const char END[] = "END\r\n";
static const char DATA_END[] = "\r\nEND\r\n";

int dm_mc_key_ok(const char *key)
{
    size_t n = 0;

    if (!key) {
        return 0;
    }
    for (; key[n]; n++) {
        unsigned char c = (unsigned char)key[n];
        if (c <= ' ' || c >= 0x7f || n >= DM_MC_KEY_MAX) {
            return 0;
        }
    }
    return n > 0;
}

size_t dm_mc_format_gets(char *buf, size_t size, const char *key)
{
    int n;

    if (!buf || !dm_mc_key_ok(key)) {
        return 0;
    }
    n = snprintf(buf, size, "gets %s\r\n", key);
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

size_t dm_mc_format_store(char *buf, size_t size, const char *key, uint32_t exptime,
                          const char *value, size_t len, uint64_t cas)
{
    int n;

    if (!buf || !dm_mc_key_ok(key) || !value || len > DM_MC_VALUE_MAX || memchr(value, '\r', len) ||
        memchr(value, '\n', len)) {
        return 0;
    }
    if (cas) {
        n = snprintf(buf, size, "cas %s 0 %lu %zu %llu\r\n%.*s\r\n", key, (unsigned long)exptime,
                     len, (unsigned long long)cas, (int)len, value);
    } else {
        n = snprintf(buf, size, "add %s 0 %lu %zu\r\n%.*s\r\n", key, (unsigned long)exptime, len,
                     (int)len, value);
    }
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

/* The length of the first line (without its CRLF): -1 when none has ended
 * yet, -2 when a LF comes without its CR. */
static long line_length(const char *buf, size_t len)
{
    const char *lf = memchr(buf, '\n', len);

    if (!lf) {
        return -1;
    }
    if (lf == buf || lf[-1] != '\r') {
        return -2;
    }
    return (long)(lf - buf) - 1;
}

/* buf[0..avail) agrees with the start of `want` (avail may be shorter). */
static int agrees(const char *buf, size_t avail, const char *want, size_t want_len)
{
    return memcmp(buf, want, avail < want_len ? avail : want_len) == 0;
}

/* A decimal number of 1..20 digits, at most max. */
static int parse_num(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (n < 1 || n > 20) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9 || v > (max - d) / 10) {
            return 0;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

/* Splits line[0..n) at single spaces into exactly `want` non-empty fields. */
static int fields(const char *line, size_t n, size_t want, const char **f, size_t *fl)
{
    size_t k = 0, start = 0;

    for (size_t i = 0; i <= n; i++) {
        if (i == n || line[i] == ' ') {
            if (i == start || k == want) {
                return 0;
            }
            f[k] = line + start;
            fl[k] = i - start;
            k++;
            start = i + 1;
        }
    }
    return k == want;
}

dm_mc_parse dm_mc_parse_gets(const char *buf, size_t len, const char *key, dm_mc_item *out)
{
    const char *f[5];
    size_t fl[5];
    uint64_t flags, bytes, cas;
    size_t head, need, have;
    long ll;

    memset(out, 0, sizeof(*out));
    if (!buf || !key || len > DM_MC_REPLY_MAX) {
        return DM_MC_BAD;
    }
    ll = line_length(buf, len);
    if (ll == -2) {
        return DM_MC_BAD;
    }
    if (ll == -1) {
        /* Only the start of END or of a VALUE line can still come right. */
        return agrees(buf, len, END, sizeof(END) - 1) || agrees(buf, len, "VALUE ", 6) ? DM_MC_MORE
                                                                                       : DM_MC_BAD;
    }
    if ((size_t)ll == 3 && memcmp(buf, END, 3) == 0) {
        return len == 5 ? DM_MC_DONE : DM_MC_BAD;
    }
    if (!fields(buf, (size_t)ll, 5, f, fl) || fl[0] != 5 || memcmp(f[0], "VALUE", 5) != 0 ||
        fl[1] != strlen(key) || memcmp(f[1], key, fl[1]) != 0 ||
        !parse_num(f[2], fl[2], UINT32_MAX, &flags) ||
        !parse_num(f[3], fl[3], DM_MC_VALUE_MAX, &bytes) ||
        !parse_num(f[4], fl[4], UINT64_MAX, &cas) || cas == 0) {
        return DM_MC_BAD;
    }
    head = (size_t)ll + 2;
    need = head + (size_t)bytes + sizeof(DATA_END) - 1;
    if (len > need) {
        return DM_MC_BAD;
    }
    have = len - head;
    if (have > bytes &&
        !agrees(buf + head + bytes, have - (size_t)bytes, DATA_END, sizeof(DATA_END) - 1)) {
        return DM_MC_BAD;
    }
    if (len < need) {
        return DM_MC_MORE;
    }
    out->found = 1;
    out->flags = (uint32_t)flags;
    out->cas = cas;
    out->len = (size_t)bytes;
    memcpy(out->value, buf + head, (size_t)bytes);
    out->value[bytes] = '\0';
    return DM_MC_DONE;
}

dm_mc_parse dm_mc_parse_store(const char *buf, size_t len, dm_mc_stored *out)
{
    static const struct {
        const char *text;
        dm_mc_stored answer;
    } replies[] = {{"STORED\r\n", DM_MC_STORED},
                   {"NOT_STORED\r\n", DM_MC_NOT_STORED},
                   {"EXISTS\r\n", DM_MC_EXISTS},
                   {"NOT_FOUND\r\n", DM_MC_NOT_FOUND}};
    int prefix = 0;

    *out = 0;
    if (!buf) {
        return DM_MC_BAD;
    }
    for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
        size_t n = strlen(replies[i].text);
        if (len == n && memcmp(buf, replies[i].text, n) == 0) {
            *out = replies[i].answer;
            return DM_MC_DONE;
        }
        prefix |= len < n && memcmp(buf, replies[i].text, len) == 0;
    }
    return prefix ? DM_MC_MORE : DM_MC_BAD;
}
