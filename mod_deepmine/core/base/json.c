/*
 * json.c — see json.h.
 */
#include "base/json.h"

#include <apr_strings.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static apr_status_t json_cleanup(void *data)
{
    json_decref((json_t *)data);
    return APR_SUCCESS;
}

json_t *dm_json_own(apr_pool_t *p, json_t *v)
{
    if (v) {
        apr_pool_cleanup_register(p, v, json_cleanup, apr_pool_cleanup_null);
    }
    return v;
}

dm_err *dm_json_parse_object(apr_pool_t *p, const char *buf, size_t len, json_t **out)
{
    json_error_t jerr;
    json_t *v;

    if (len == 0) {
        return dm_err_make(p, DM_E_BAD_JSON, NULL, "the request body must be a JSON object");
    }
    /* REJECT_DUPLICATES: {"a":1,"a":2} is ambiguous, so refuse it. */
    v = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v) {
        return dm_err_make(p, DM_E_BAD_JSON, NULL, "malformed JSON at line %d column %d: %s",
                           jerr.line, jerr.column, jerr.text);
    }
    dm_json_own(p, v);
    if (!json_is_object(v)) {
        return dm_err_make(p, DM_E_BAD_JSON, NULL, "the request body must be a JSON object");
    }
    *out = v;
    return NULL;
}

static json_t *field_of(json_t *obj, const char *field, int *present)
{
    json_t *v = json_object_get(obj, field);
    if (json_is_null(v)) {
        v = NULL;
    }
    if (present) {
        *present = v != NULL;
    }
    return v;
}

dm_err *dm_json_get_string(apr_pool_t *p, json_t *obj, const char *field, int required,
                           size_t max_len, const char **out, int *present)
{
    json_t *v = field_of(obj, field, present);

    if (!v) {
        return required ? dm_err_make(p, DM_E_INVALID, field, "%s is required", field) : NULL;
    }
    if (!json_is_string(v)) {
        return dm_err_make(p, DM_E_INVALID, field, "%s must be a string", field);
    }
    if (json_string_length(v) > max_len) {
        return dm_err_make(p, DM_E_INVALID, field, "%s is longer than %" APR_SIZE_T_FMT " bytes",
                           field, (apr_size_t)max_len);
    }
    *out = apr_pstrmemdup(p, json_string_value(v), json_string_length(v));
    return NULL;
}

dm_err *dm_json_get_int64(apr_pool_t *p, json_t *obj, const char *field, int required, int64_t min,
                          int64_t max, int64_t *out, int *present)
{
    json_t *v = field_of(obj, field, present);
    json_int_t i;

    if (!v) {
        return required ? dm_err_make(p, DM_E_INVALID, field, "%s is required", field) : NULL;
    }
    if (!json_is_integer(v)) {
        return dm_err_make(p, DM_E_INVALID, field, "%s must be an integer", field);
    }
    i = json_integer_value(v);
    if (i < min || i > max) {
        return dm_err_make(p, DM_E_INVALID, field,
                           "%s must be between %" APR_INT64_T_FMT " and %" APR_INT64_T_FMT, field,
                           (apr_int64_t)min, (apr_int64_t)max);
    }
    *out = (int64_t)i;
    return NULL;
}

dm_err *dm_json_get_bool(apr_pool_t *p, json_t *obj, const char *field, int required, int *out,
                         int *present)
{
    json_t *v = field_of(obj, field, present);

    if (!v) {
        return required ? dm_err_make(p, DM_E_INVALID, field, "%s is required", field) : NULL;
    }
    if (!json_is_boolean(v)) {
        return dm_err_make(p, DM_E_INVALID, field, "%s must be true or false", field);
    }
    *out = json_is_true(v);
    return NULL;
}

char *dm_json_dump(apr_pool_t *p, const json_t *v, size_t *len)
{
    char *text = json_dumps(v, DM_JSON_DUMP_FLAGS);
    char *out;

    if (!text) {
        if (len) {
            *len = 4;
        }
        return apr_pstrdup(p, "null");
    }
    out = apr_pstrdup(p, text);
    if (len) {
        *len = strlen(out);
    }
    free(text);
    return out;
}

/* "YYYY-MM-DDTHH:MM:SSZ" of Unix seconds into out[21] (20 characters and
 * a NUL), for years 0 to 9999; the civil date from the day count as in
 * H. Hinnant's "chrono-compatible low-level date algorithms". */
static void format_time(int64_t t, char out[21])
{
    int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    int64_t secs = t - days * 86400;
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    int v[6];

    y += m <= 2;
    if (y < 0 || y > 9999) {
        memcpy(out, "0000-01-01T00:00:00Z", 21);
        return;
    }
    v[0] = (int)y;
    v[1] = (int)m;
    v[2] = (int)d;
    v[3] = (int)(secs / 3600);
    v[4] = (int)(secs / 60 % 60);
    v[5] = (int)(secs % 60);
    out[0] = (char)('0' + v[0] / 1000);
    out[1] = (char)('0' + v[0] / 100 % 10);
    out[2] = (char)('0' + v[0] / 10 % 10);
    out[3] = (char)('0' + v[0] % 10);
    for (int i = 1; i < 6; i++) {
        out[3 + 3 * (i - 1) + 1] = "--T::"[i - 1];
        out[3 + 3 * (i - 1) + 2] = (char)('0' + v[i] / 10);
        out[3 + 3 * (i - 1) + 3] = (char)('0' + v[i] % 10);
    }
    out[19] = 'Z';
    out[20] = '\0';
}

const char *dm_json_time(apr_pool_t *p, int64_t unix_sec)
{
    char buf[21];

    format_time(unix_sec, buf);
    return apr_pstrmemdup(p, buf, 20);
}

void dm_jbuf_init(dm_jbuf *b, apr_pool_t *p, size_t hint)
{
    b->pool = p;
    b->cap = hint > 64 ? hint : 64;
    b->p = p ? apr_palloc(p, b->cap) : malloc(b->cap);
    b->len = 0;
}

static void dm_jbuf_raw(dm_jbuf *b, const char *s, size_t n)
{
    if (!b->p) {
        return; /* malloc's memory ran out: the caller sees NULL */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap * 2;
        char *np;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        if (b->pool) {
            np = apr_palloc(b->pool, cap);
            memcpy(np, b->p, b->len);
        } else if (!(np = realloc(b->p, cap))) {
            free(b->p);
            b->p = NULL;
            b->len = 0;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void dm_jbuf_lit(dm_jbuf *b, const char *s)
{
    dm_jbuf_raw(b, s, strlen(s));
}

/* The escapes jansson's json_dumps writes (\b, \f, upper-case \u00XX),
 * so an answer moved from a jansson tree to this writer keeps its bytes. */
void dm_jbuf_str(dm_jbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t from = 0, i;

    if (!s) {
        dm_jbuf_raw(b, "null", 4);
        return;
    }
    dm_jbuf_raw(b, "\"", 1);
    for (i = 0; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t n = 2;
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        dm_jbuf_raw(b, s + from, i - from);
        from = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        dm_jbuf_raw(b, esc, n);
    }
    dm_jbuf_raw(b, s + from, i - from);
    dm_jbuf_raw(b, "\"", 1);
}

void dm_jbuf_int(dm_jbuf *b, int64_t v)
{
    char buf[24];
    char *end = buf + sizeof(buf), *c = end;
    /* the magnitude as unsigned: -INT64_MIN does not fit in int64_t */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    do {
        *--c = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        *--c = '-';
    }
    dm_jbuf_raw(b, c, (size_t)(end - c));
}

void dm_jbuf_bool(dm_jbuf *b, int v)
{
    if (v) {
        dm_jbuf_raw(b, "true", 4);
    } else {
        dm_jbuf_raw(b, "false", 5);
    }
}

void dm_jbuf_time(dm_jbuf *b, int64_t unix_sec)
{
    char buf[23];

    buf[0] = '"';
    format_time(unix_sec, buf + 1);
    buf[21] = '"';
    dm_jbuf_raw(b, buf, 22);
}

json_t *dm_json_time_or_null(apr_pool_t *p, int64_t unix_sec)
{
    return unix_sec ? json_string(dm_json_time(p, unix_sec)) : json_null();
}

json_t *dm_json_ths(int64_t ghs)
{
    return ghs % 1000 == 0 ? json_integer(ghs / 1000) : json_real((double)ghs / 1000.0);
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

dm_err *dm_json_parse_time(apr_pool_t *p, const char *field, const char *s, int64_t *out)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, oh = 0, om = 0;
    size_t len = s ? strlen(s) : 0, i;

    if (len > 0 && len <= 12 && strspn(s, "0123456789") == len) {
        *out = (int64_t)apr_atoi64(s);
        return NULL;
    }
    if (len < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &sec)) {
        return dm_err_make(p, DM_E_INVALID, field,
                           "%s must be an RFC 3339 time (2026-11-25T07:00:00Z) or Unix seconds",
                           field);
    }
    i = 19;
    if (s[i] == '.') {
        for (i++; s[i] >= '0' && s[i] <= '9'; i++) {
        }
    }
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if ((s[i] == '+' || s[i] == '-') && digits(s + i + 1, 2, &oh) && s[i + 3] == ':' &&
               digits(s + i + 4, 2, &om) && oh < 24 && om < 60) {
        if (s[i] == '-') {
            oh = -oh;
            om = -om;
        }
        i += 6;
    } else {
        return dm_err_make(p, DM_E_INVALID, field, "%s needs a time zone (Z or +hh:mm)", field);
    }
    if (s[i] || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
        (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) || h > 23 ||
        mi > 59 || sec > 60) {
        return dm_err_make(p, DM_E_INVALID, field, "%s is not a valid RFC 3339 time", field);
    }
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + (sec == 60 ? 59 : sec) -
           (int64_t)oh * 3600 - (int64_t)om * 60;
    return NULL;
}
