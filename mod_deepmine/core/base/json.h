/*
 * json.h — JSON in and out (jansson), with the error mapping of API.md:
 * unparsable or non-object bodies are `bad_json`; a missing field or a
 * field of the wrong type or range is `invalid` naming the field.
 * Every json_t handed out is released by a cleanup on the given pool.
 */
#ifndef DM_JSON_H
#define DM_JSON_H

#include <apr_pools.h>
#include <jansson.h>
#include <stdint.h>

#include "base/err.h"

/* Ties `v` to `p`: json_decref(v) runs when p is cleaned up. Returns v. */
json_t *dm_json_own(apr_pool_t *p, json_t *v);

/* Parses a request body that must be one JSON object. */
dm_err *dm_json_parse_object(apr_pool_t *p, const char *buf, size_t len, json_t **out);

/* Field getters. With required == 0 an absent field (or null) leaves *out
 * untouched and returns NULL; `*present` (may be NULL) says which. */
dm_err *dm_json_get_string(apr_pool_t *p, json_t *obj, const char *field, int required,
                           size_t max_len, const char **out, int *present);
dm_err *dm_json_get_int64(apr_pool_t *p, json_t *obj, const char *field, int required, int64_t min,
                          int64_t max, int64_t *out, int *present);
dm_err *dm_json_get_bool(apr_pool_t *p, json_t *obj, const char *field, int required, int *out,
                         int *present);

/* The flags of every answer's serialisation (json_dumps). */
#define DM_JSON_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))
/* Compact serialisation into p. */
char *dm_json_dump(apr_pool_t *p, const json_t *v, size_t *len);

/* A JSON text written straight into a growing buffer, for hot lists where
 * building a jansson tree per row costs more than the query (the member's
 * ledger statement). Strings are escaped as JSON requires (quote,
 * backslash, control characters) and exactly as json_dumps escapes them,
 * so the bytes equal what dm_json_dump wrote of the same values; bytes
 * >= 0x80 pass through, so callers hand it only text the platform
 * validated as UTF-8 when it was stored (jansson would drop such a value). */
typedef struct dm_jbuf {
    apr_pool_t *pool;
    char *p;
    size_t len, cap;
} dm_jbuf;

/* p NULL: the text is in malloc's memory, the caller's to free (an answer
 * hands it over to respond.c, dm_http_json_owned, so it is not a node of
 * the request's pool, which the connection's allocator keeps); b->p is
 * then NULL if memory ran out. */
void dm_jbuf_init(dm_jbuf *b, apr_pool_t *p, size_t hint);
/* A literal such as "{\"id\":" (its bytes as they are). */
void dm_jbuf_lit(dm_jbuf *b, const char *s);
/* s as a quoted JSON string, or null when s is NULL. */
void dm_jbuf_str(dm_jbuf *b, const char *s);
void dm_jbuf_int(dm_jbuf *b, int64_t v);
/* true or false */
void dm_jbuf_bool(dm_jbuf *b, int v);
/* dm_json_time's text, quoted. */
void dm_jbuf_time(dm_jbuf *b, int64_t unix_sec);

/* RFC 3339 UTC ("2026-11-25T07:00:00Z") of Unix seconds, into p. */
const char *dm_json_time(apr_pool_t *p, int64_t unix_sec);

/* dm_json_time, or JSON null for 0 ("not yet"). Caller owns the value. */
json_t *dm_json_time_or_null(apr_pool_t *p, int64_t unix_sec);

/* A hash rate stored in GH/s as the JSON number of TH/s: an integer when
 * whole, else exact to 0.001 (a double holds that for any sane rate). */
json_t *dm_json_ths(int64_t ghs);

/* The reverse, for input: an RFC 3339 time ("2026-11-25T07:00:00Z", a
 * fraction and a +hh:mm offset allowed, 'T' or a space between date and
 * time) or plain Unix seconds. DM_E_INVALID naming `field` otherwise. */
dm_err *dm_json_parse_time(apr_pool_t *p, const char *field, const char *s, int64_t *out);

#endif
