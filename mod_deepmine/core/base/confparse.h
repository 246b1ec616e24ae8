/*
 * confparse.h — the value parsers behind the DeepMine* directives, kept out
 * of http/ so they are unit-tested and shared with deepminectl.
 * Each returns NULL when the value is good, else a sentence saying what is
 * wrong (allocated in p), which the directive prefixes with its name.
 */
#ifndef DM_CONFPARSE_H
#define DM_CONFPARSE_H

#include <apr_pools.h>

/* A decimal integer in [min, max], no sign, no spaces, no suffix. */
const char *dm_parse_int(apr_pool_t *p, const char *s, long long min, long long max,
                         long long *out);

/* An origin: http(s)://host[:port] with nothing after (no path, query,
 * fragment or user info). `*out` is the origin lower-cased. */
const char *dm_parse_origin(apr_pool_t *p, const char *s, const char **out);

/* An http(s) URL with a host and no query, fragment or user info; `*out`
 * is it without trailing slashes, so paths can be appended. */
const char *dm_parse_public_url(apr_pool_t *p, const char *s, const char **out);

#endif
