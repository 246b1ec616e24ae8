/*
 * confparse.c — see confparse.h.
 */
#include "base/confparse.h"

#include "base/validate.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_uri.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *dm_parse_int(apr_pool_t *p, const char *s, long long min, long long max, long long *out)
{
    char *end;
    long long v;

    if (!s || !apr_isdigit(*s)) {
        return apr_psprintf(
            p, "'%s' is not a whole number between %" APR_INT64_T_FMT " and %" APR_INT64_T_FMT,
            s ? s : "", (apr_int64_t)min, (apr_int64_t)max);
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max) {
        return apr_psprintf(
            p, "'%s' is not a whole number between %" APR_INT64_T_FMT " and %" APR_INT64_T_FMT, s,
            (apr_int64_t)min, (apr_int64_t)max);
    }
    *out = v;
    return NULL;
}

static const char *parse_http_url(apr_pool_t *p, const char *s, apr_uri_t *u)
{
    if (!s || !*s || apr_uri_parse(p, s, u) != APR_SUCCESS || !u->scheme || !u->hostname ||
        !*u->hostname) {
        return apr_psprintf(p, "'%s' is not an absolute http(s) URL", s ? s : "");
    }
    if (strcasecmp(u->scheme, "http") != 0 && strcasecmp(u->scheme, "https") != 0) {
        return apr_psprintf(p, "'%s' must use http or https", s);
    }
    if (u->query || u->fragment || u->user || u->password) {
        return apr_psprintf(p, "'%s' must not carry a query, fragment or user name", s);
    }
    if (u->port_str && (!*u->port_str || u->port == 0)) {
        return apr_psprintf(p, "'%s' has an invalid port", s);
    }
    if (strchr(s, ' ') || dm_has_control_bytes(s, strlen(s))) {
        return apr_psprintf(p, "'%s' contains spaces or control characters", s);
    }
    return NULL;
}

const char *dm_parse_origin(apr_pool_t *p, const char *s, const char **out)
{
    apr_uri_t u = {0};
    const char *err = parse_http_url(p, s, &u);

    if (err) {
        return err;
    }
    if (u.path && *u.path) {
        return apr_psprintf(p, "'%s' is not an origin: scheme://host[:port] without a path", s);
    }
    *out = apr_pstrdup(p, s);
    for (char *c = (char *)*out; *c; c++) {
        *c = (char)apr_tolower(*c);
    }
    return NULL;
}

const char *dm_parse_public_url(apr_pool_t *p, const char *s, const char **out)
{
    apr_uri_t u = {0};
    const char *err = parse_http_url(p, s, &u);
    size_t n;

    if (err) {
        return err;
    }
    n = strlen(s);
    while (n > 0 && s[n - 1] == '/') {
        n--;
    }
    *out = apr_pstrmemdup(p, s, n);
    return NULL;
}
