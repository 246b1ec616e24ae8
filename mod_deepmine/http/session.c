/*
 * session.c — who is calling: member sessions from the Authorization header
 * or the dm_session cookie, the session cookies themselves, CSRF (double
 * submit + Origin) for cookie-authenticated writes, and CORS for the
 * origins of DeepMineAllowedOrigin.
 */
#include "base/clock.h"
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>
#include <sodium.h>
#include <strings.h>

#include "base/confparse.h"

static int is_write(request_rec *r)
{
    return r->method_number == M_POST || r->method_number == M_PUT || r->method_number == M_PATCH ||
           r->method_number == M_DELETE;
}

const char *dm_http_cookie(request_rec *r, const char *name)
{
    const char *header = apr_table_get(r->headers_in, "Cookie");
    size_t nlen = strlen(name);

    while (header && *header) {
        while (*header == ' ' || *header == ';') {
            header++;
        }
        const char *end = strchr(header, ';');
        size_t len = end ? (size_t)(end - header) : strlen(header);
        if (len > nlen && strncmp(header, name, nlen) == 0 && header[nlen] == '=') {
            const char *v = apr_pstrmemdup(r->pool, header + nlen + 1, len - nlen - 1);
            return *v ? v : NULL;
        }
        header = end;
    }
    return NULL;
}

/* Secure may be dropped only for a plain-http public URL on loopback (make
 * run); everything else gets Secure cookies. */
static int secure_cookies(request_rec *r)
{
    const char *u = dm_conf_get(r->server)->public_url;

    if (!u || strncasecmp(u, "http://", 7) != 0) {
        return 1;
    }
    u += 7;
    return !(strncmp(u, "127.", 4) == 0 || strncasecmp(u, "localhost", 9) == 0 ||
             strncmp(u, "[::1]", 5) == 0);
}

/* The one cookie writer, for member and staff cookies alike. */
void dm_http_set_cookie(request_rec *r, const char *name, const char *value, const char *path,
                        long max_age, int http_only, const char *samesite)
{
    apr_table_add(r->err_headers_out, "Set-Cookie",
                  apr_psprintf(r->pool, "%s=%s; Path=%s; Max-Age=%ld; SameSite=%s%s%s", name, value,
                               path, max_age, samesite, http_only ? "; HttpOnly" : "",
                               secure_cookies(r) ? "; Secure" : ""));
}

static void set_cookie(request_rec *r, const char *name, const char *value, const char *path,
                       long max_age, int http_only)
{
    dm_http_set_cookie(r, name, value, path, max_age, http_only, "Lax");
}

void dm_http_set_session_cookies(request_rec *r, const dm_session *s)
{
    apr_time_t now = (apr_time_t)dm_now();

    set_cookie(r, "dm_session", s->access_token, "/api", (long)(s->access_expires - now), 1);
    set_cookie(r, "dm_refresh", s->refresh_token, "/api/auth", (long)(s->refresh_expires - now), 1);
    /* Readable by the page's scripts, which echo it in X-CSRF-Token. */
    set_cookie(r, "dm_csrf", s->csrf_token, "/", (long)(s->refresh_expires - now), 0);
}

void dm_http_clear_session_cookies(request_rec *r)
{
    set_cookie(r, "dm_session", "", "/api", 0, 1);
    set_cookie(r, "dm_refresh", "", "/api/auth", 0, 1);
    set_cookie(r, "dm_csrf", "", "/", 0, 0);
}

/* The request's Origin, else the origin of its Referer; NULL if neither. */
static const char *request_origin(request_rec *r)
{
    const char *o = apr_table_get(r->headers_in, "Origin");
    const char *ref = apr_table_get(r->headers_in, "Referer");
    const char *scheme_end, *slash;

    if (o) {
        return o;
    }
    if (!ref || !(scheme_end = strstr(ref, "://"))) {
        return NULL;
    }
    slash = strchr(scheme_end + 3, '/');
    return slash ? apr_pstrmemdup(r->pool, ref, (apr_size_t)(slash - ref)) : ref;
}

static int dm_http_origin_allowed(request_rec *r, const char *origin)
{
    const dm_conf *c = dm_conf_get(r->server);
    const char *norm;

    if (!origin || dm_parse_origin(r->pool, origin, &norm)) {
        return 0;
    }
    if (c->public_url) {
        /* the public URL's own origin: scheme://host[:port] */
        const char *u = c->public_url;
        const char *p = strstr(u, "://");
        const char *slash = p ? strchr(p + 3, '/') : NULL;
        const char *own = slash ? apr_pstrmemdup(r->pool, u, (apr_size_t)(slash - u)) : u;
        if (strcasecmp(own, norm) == 0) {
            return 1;
        }
    }
    for (int i = 0; c->allowed_origins && i < c->allowed_origins->nelts; i++) {
        if (strcmp(APR_ARRAY_IDX(c->allowed_origins, i, const char *), norm) == 0) {
            return 1;
        }
    }
    return 0;
}

dm_err *dm_http_check_origin(request_rec *r)
{
    const char *o;

    if (!is_write(r)) {
        return NULL;
    }
    o = request_origin(r);
    if (o && !dm_http_origin_allowed(r, o)) {
        return dm_err_make(r->pool, DM_E_CSRF, NULL, "requests from %s are not allowed", o);
    }
    return NULL;
}

dm_err *dm_http_check_csrf(request_rec *r)
{
    const char *cookie = dm_http_cookie(r, "dm_csrf");
    const char *header = apr_table_get(r->headers_in, "X-CSRF-Token");
    const char *o = request_origin(r);

    if (!is_write(r)) {
        return NULL;
    }
    if (!cookie || !header || strlen(cookie) != strlen(header) ||
        sodium_memcmp(cookie, header, strlen(cookie)) != 0) {
        return dm_err_make(r->pool, DM_E_CSRF, NULL,
                           "the X-CSRF-Token header must equal the dm_csrf cookie");
    }
    if (!o || !dm_http_origin_allowed(r, o)) {
        return dm_err_make(r->pool, DM_E_CSRF, NULL,
                           "this request must come from an allowed origin");
    }
    return NULL;
}

/* The request's access token (Bearer or session cookie), with the Origin
 * and CSRF checks that go with how it came. */
static dm_err *request_token(request_rec *r, const char **token)
{
    const char *auth = apr_table_get(r->headers_in, "Authorization");
    dm_err *e;

    *token = NULL;
    if (auth) {
        if (strncasecmp(auth, "Bearer ", 7) != 0) {
            e = dm_err_make(r->pool, DM_E_UNAUTHORIZED, NULL,
                            "the Authorization header must be \"Bearer <token>\"");
        } else {
            /* A write carrying a foreign Origin is refused with a Bearer
             * token too (docs/decisions.md "Origin applies to Bearer
             * writes"): no browser attaches our token cross-site by
             * itself, but a page that obtained one must not write from an
             * origin the operator did not allow. */
            *token = auth + 7;
            e = dm_http_check_origin(r);
        }
    } else {
        *token = dm_http_cookie(r, "dm_session");
        if (*token && (e = dm_http_check_csrf(r)) != NULL) {
            return e;
        }
        e = NULL;
    }
    /* Every 401 names the scheme, a request with no token at all too
     * (RFC 6750 section 3; docs/api.md). */
    if (!e && !*token) {
        e = dm_err_make(r->pool, DM_E_UNAUTHORIZED, NULL, "log in first");
    }
    return e;
}

/* The checks before the database: the token's form, origin, CSRF,
 * signature and claims. */
static dm_err *member_claims(request_rec *r, dm_claims *c)
{
    const char *token = NULL;
    dm_err *e = request_token(r, &token);

    return e ? e : dm_member_token_check(r->pool, &dm_g.svc, token, c);
}

/* The authenticated member's note (the access log's) and its count
 * against the "api" rate limit. */
static dm_err *member_limit(request_rec *r, const dm_member *m)
{
    const char *id = apr_psprintf(r->pool, "%" APR_INT64_T_FMT, (apr_int64_t)m->id);

    apr_table_setn(r->notes, "dm-member", id);
    return dm_http_rate_limit(r, "api", id);
}

/* The checks with the database: the member, then the rate limit. */
static dm_err *member_load(request_rec *r, dm_db *db, const dm_claims *c, dm_member *m)
{
    dm_err *e = dm_member_authenticate_claims(db, r->pool, c, m);

    return e ? e : member_limit(r, m);
}

static dm_err *unauthorized_scheme(request_rec *r, dm_err *e)
{
    if (e && e->code == DM_E_UNAUTHORIZED) {
        apr_table_setn(r->err_headers_out, "WWW-Authenticate", "Bearer realm=\"deepmine\"");
    }
    return e;
}

dm_err *dm_http_member(request_rec *r, dm_db *db, dm_member *m)
{
    dm_claims c;
    dm_err *e = member_claims(r, &c);

    return unauthorized_scheme(r, e ? e : member_load(r, db, &c, m));
}

/* The token is checked before a pooled connection is taken: its HMAC and
 * claims need none, and a connection held for them is one the other
 * threads wait for (docs/decisions.md "The pool held for less"). */
dm_err *dm_http_member_db(request_rec *r, dm_db **db, dm_member *m)
{
    dm_claims c;
    dm_err *e = member_claims(r, &c);

    if (!e) {
        e = dm_db_pool_acquire(dm_g.db, r->pool, db);
        if (!e) {
            e = member_load(r, *db, &c, m);
        }
    }
    return unauthorized_scheme(r, e);
}

/* The rate limit is in shared memory (or memcached): no connection is held
 * while it is counted (docs/decisions.md "The network read, tenth round"). */
dm_err *dm_http_member_read(request_rec *r, dm_http_member_read_fn read, void *baton, dm_member *m)
{
    dm_claims c;
    dm_db *db;
    dm_err *e = member_claims(r, &c);

    if (!e) {
        e = dm_db_pool_acquire(dm_g.db, r->pool, &db);
        if (!e) {
            e = read(db, r->pool, &c, m, baton);
            dm_db_pool_release(dm_g.db, r->pool, db);
        }
    }
    if (!e) {
        e = member_limit(r, m);
    }
    return unauthorized_scheme(r, e);
}

int dm_http_cors(request_rec *r, const char *allow_methods)
{
    const char *origin = apr_table_get(r->headers_in, "Origin");

    apr_table_mergen(r->err_headers_out, "Vary", "Origin");
    if (!origin || !dm_http_origin_allowed(r, origin)) {
        return 0;
    }
    apr_table_setn(r->err_headers_out, "Access-Control-Allow-Origin", origin);
    apr_table_setn(r->err_headers_out, "Access-Control-Allow-Credentials", "true");
    if (allow_methods) {
        apr_table_setn(r->err_headers_out, "Access-Control-Allow-Methods", allow_methods);
        apr_table_setn(r->err_headers_out, "Access-Control-Allow-Headers",
                       "Content-Type, X-CSRF-Token, Authorization");
        apr_table_setn(r->err_headers_out, "Access-Control-Max-Age", "600");
    } else {
        apr_table_setn(r->err_headers_out, "Access-Control-Expose-Headers",
                       "ETag, Retry-After, RateLimit, RateLimit-Policy");
    }
    return 1;
}
