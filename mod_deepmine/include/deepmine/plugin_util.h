/*
 * deepmine/plugin_util.h — small helpers every plugin wrote again: a
 * message into dm_message, a dm_str compared with a C string, a request
 * header found by name, a bounded decimal number, a control-character
 * check. Header-only (static inline), over the types of
 * deepmine/plugin.h and the C library alone: a plugin that includes it
 * links against nothing more, and the ABI does not change.
 */
#ifndef DEEPMINE_PLUGIN_UTIL_H
#define DEEPMINE_PLUGIN_UTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <deepmine/plugin.h>

/* Formats into msg->text (always NUL-terminated, cut to its size). */
static inline void dm_msg_set(dm_message *msg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static inline void dm_msg_set(dm_message *msg, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg->text, sizeof(msg->text), fmt, ap);
    va_end(ap);
}

/* 1 when s holds exactly the bytes of lit (a string without bytes is
 * equal to nothing). */
static inline int dm_str_eq(dm_str s, const char *lit)
{
    return s.ptr && s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

/* The first of the n headers hs named `name` (ASCII case-insensitive), or
 * NULL. */
static inline const dm_header *dm_header_find(const dm_header *hs, size_t n, const char *name)
{
    size_t len = strlen(name);

    for (size_t i = 0; hs && i < n; i++) {
        if (hs[i].name.len == len && hs[i].name.ptr &&
            strncasecmp(hs[i].name.ptr, name, len) == 0) {
            return &hs[i];
        }
    }
    return NULL;
}

/* 1 when the n bytes at s hold a control character (below 0x20, or DEL):
 * what must never reach a header, a URL or a log line. */
static inline int dm_has_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            return 1;
        }
    }
    return 0;
}

/* A whole decimal number of n bytes (no sign, at most 12 digits) within
 * [min, max] into *out: 1, else 0 and *out untouched. For settings and
 * header values such as Retry-After. */
static inline int dm_parse_long(const char *s, size_t n, long min, long max, long *out)
{
    long v = 0;

    if (!s || n == 0 || n > 12) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max) {
        return 0;
    }
    *out = v;
    return 1;
}

#endif
