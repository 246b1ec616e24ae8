/*
 * http_client.c — the checks every request passes (dm_http_client_perform)
 * and the libcurl implementation behind them (see http_client.h).
 *
 * curl objects live only inside one perform: the easy handle and the header
 * list are released on the one way out, the received chunks live in a
 * scratch pool destroyed there too, and what the caller keeps (body,
 * headers) is copied into its pool.
 *
 * libcurl is loaded (dlopen) and initialised on the first request, not
 * linked: with its TLS, Kerberos, LDAP… libraries and OpenSSL's
 * initialisation it cost every process of the server a few MiB of
 * touched pages, though most never send a request (docs/decisions.md
 * "Memory, fifth round"). The module calls it only through the table lc.
 */
#include "plugins/http_client.h"

#include <apr_strings.h>
#include <apr_tables.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* curl.h's type-checking macros would expand the table's member names. */
#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>

#include "base/dynlib.h"
#include "base/log.h"

static const dm_http_client_impl *impl = &dm_http_client_curl;

void dm_http_client_use(const dm_http_client_impl *i)
{
    impl = i ? i : &dm_http_client_curl;
}

dm_err *dm_http_client_init(apr_pool_t *p)
{
    return impl->init ? impl->init(p) : NULL;
}

/* ---- the checks, whatever the implementation ---- */

static int is_method(const char *m)
{
    if (!m || !*m || strlen(m) > 16) {
        return 0;
    }
    for (; *m; m++) {
        if (*m < 'A' || *m > 'Z') {
            return 0;
        }
    }
    return 1;
}

static int has_crlf(const char *s, size_t len)
{
    return s && (memchr(s, '\r', len) || memchr(s, '\n', len) || memchr(s, '\0', len));
}

const char *dm_http_client_url_for_messages(apr_pool_t *p, const char *url)
{
    const char *scheme = strstr(url, "://");
    size_t end = strcspn(url, "?#");

    if (scheme && (size_t)(scheme - url) < end) {
        const char *auth = scheme + 3;
        size_t auth_len = strcspn(auth, "/?#");
        const char *at = memchr(auth, '@', auth_len);
        if (at) {
            return apr_pstrcat(p, apr_pstrmemdup(p, url, (apr_size_t)(auth - url)),
                               apr_pstrmemdup(p, at + 1, (apr_size_t)(url + end - (at + 1))), NULL);
        }
    }
    return apr_pstrmemdup(p, url, end);
}

dm_err *dm_http_client_perform(apr_pool_t *p, const dm_http_client_request *req,
                               dm_http_client_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    if (!req->url || !*req->url) {
        return dm_err_make(p, DM_E_INVALID, NULL, "http: the request has no url");
    }
    if (!is_method(req->method)) {
        return dm_err_make(p, DM_E_INVALID, NULL, "http: \"%.32s\" is not an HTTP method",
                           req->method ? req->method : "");
    }
    if (req->body.len && !req->body.ptr) {
        return dm_err_make(p, DM_E_INVALID, NULL,
                           "http: the request body has a length but no bytes");
    }
    for (size_t i = 0; req->headers && i < req->n_headers; i++) {
        const dm_header *h = &req->headers[i];
        if (!h->name.ptr || h->name.len == 0 || memchr(h->name.ptr, ':', h->name.len) ||
            memchr(h->name.ptr, ' ', h->name.len) || has_crlf(h->name.ptr, h->name.len) ||
            (h->value.len && (!h->value.ptr || has_crlf(h->value.ptr, h->value.len)))) {
            return dm_err_make(p, DM_E_INVALID, NULL,
                               "http: request header %" APR_SIZE_T_FMT
                               " is malformed (empty name, or CR, LF or NUL)",
                               (apr_size_t)i);
        }
    }
    return impl->perform(p, req, resp);
}

/* ---- libcurl ---- */

typedef struct body_chunk {
    struct body_chunk *next;
    size_t len;
    char data[];
} body_chunk;

typedef struct curl_ctx {
    apr_pool_t *scratch; /* the received chunks; destroyed after the copy */
    apr_pool_t *pool;    /* the caller's pool: response headers and body */
    body_chunk *head, *tail;
    size_t body_len;
    int too_large;
    apr_array_header_t *headers; /* dm_header, of the last response seen */
} curl_ctx;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *baton)
{
    curl_ctx *c = baton;
    size_t n = size * nmemb;
    body_chunk *ch;

    if (n > DM_HTTP_CLIENT_BODY_MAX - c->body_len) {
        c->too_large = 1;
        return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    }
    ch = apr_palloc(c->scratch, sizeof(*ch) + n);
    ch->next = NULL;
    ch->len = n;
    memcpy(ch->data, ptr, n);
    if (c->tail) {
        c->tail->next = ch;
    } else {
        c->head = ch;
    }
    c->tail = ch;
    c->body_len += n;
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *baton)
{
    curl_ctx *c = baton;
    size_t n = size * nmemb;
    const char *colon, *end = ptr + n, *v;
    dm_header *h;

    /* A status line starts a new header block (after a 100 Continue, or
     * an interim response): only the last block is the response's. */
    if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) {
        apr_array_clear(c->headers);
        return n;
    }
    colon = memchr(ptr, ':', n);
    if (!colon || colon == ptr) {
        return n; /* the blank line ending the block, or an obsolete fold */
    }
    while (end > colon + 1 &&
           (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }
    v = colon + 1;
    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }
    h = apr_array_push(c->headers);
    h->name.ptr = apr_pstrmemdup(c->pool, ptr, (apr_size_t)(colon - ptr));
    h->name.len = (size_t)(colon - ptr);
    h->value.ptr = apr_pstrmemdup(c->pool, v, (apr_size_t)(end - v));
    h->value.len = (size_t)(end - v);
    return n;
}

/* A header line for curl: "Name: value", or "Name;" for an empty value
 * (curl reads "Name:" as "remove this header"). */
static const char *header_line(apr_pool_t *p, const dm_header *h)
{
    if (h->value.len == 0) {
        return apr_psprintf(p, "%.*s;", (int)h->name.len, h->name.ptr);
    }
    return apr_psprintf(p, "%.*s: %.*s", (int)h->name.len, h->name.ptr, (int)h->value.len,
                        h->value.ptr);
}

/* ---- libcurl, loaded on first use ---- */

#define DM_LIBCURL_SONAME "libcurl.so.4"

/* The libcurl functions this file calls, and the table that holds them. */
#define LC_FUNCTIONS(X)                                                                            \
    X(curl_global_init)                                                                            \
    X(curl_easy_init)                                                                              \
    X(curl_easy_setopt)                                                                            \
    X(curl_easy_perform)                                                                           \
    X(curl_easy_getinfo)                                                                           \
    X(curl_easy_strerror)                                                                          \
    X(curl_easy_cleanup)                                                                           \
    X(curl_slist_append)                                                                           \
    X(curl_slist_free_all)

static struct {
/* NOLINTNEXTLINE(bugprone-macro-parentheses): f names a member */
#define LC_MEMBER(f) __typeof__(f) *f;
    LC_FUNCTIONS(LC_MEMBER)
#undef LC_MEMBER
} lc;

static pthread_once_t lc_once = PTHREAD_ONCE_INIT;
static char lc_error[256]; /* why libcurl cannot be used; empty when it can */

static const char *const lc_names[] = {LC_FUNCTIONS(DM_DYNLIB_NAME)};

static void lc_load(void)
{
    void *slot[DM_DYNLIB_COUNT(lc_names)];
    size_t i = 0;

    if (!dm_dynlib_load(DM_LIBCURL_SONAME, lc_names, slot, DM_DYNLIB_COUNT(lc_names), lc_error,
                        sizeof(lc_error))) {
        goto fail;
    }
/* NOLINTNEXTLINE(bugprone-macro-parentheses): f names a member */
#define LC_SET(f) lc.f = (__typeof__(lc.f))slot[i++];
    LC_FUNCTIONS(LC_SET)
#undef LC_SET
    if (lc.curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(lc_error, sizeof(lc_error), "libcurl cannot be initialised");
        goto fail;
    }
    return;

fail:
    dm_log(DM_L_ERR, "DM01900: http: %s: no outgoing HTTP request can be sent", lc_error);
}

/* Loads and initialises libcurl once per process (thread-safe); the error
 * says why it cannot be used. */
static dm_err *lc_ready(apr_pool_t *p)
{
    pthread_once(&lc_once, lc_load);
    if (lc_error[0]) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "http: %s", lc_error);
    }
    return NULL;
}

static dm_err *curl_perform(apr_pool_t *p, const dm_http_client_request *req,
                            dm_http_client_response *resp)
{
    CURL *curl = NULL;
    struct curl_slist *hdrs = NULL, *tmp;
    char errbuf[CURL_ERROR_SIZE];
    curl_ctx c;
    int has_expect = 0, send_body;
    const char *where = dm_http_client_url_for_messages(p, req->url);
    CURLcode rc;
    long status = 0;
    dm_err *e = lc_ready(p);

    if (e) {
        return e;
    }
    memset(&c, 0, sizeof(c));
    if (apr_pool_create(&c.scratch, p) != APR_SUCCESS) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "http: out of memory");
    }
    c.pool = p;
    c.headers = apr_array_make(p, 16, sizeof(dm_header));

    for (size_t i = 0; req->headers && i < req->n_headers; i++) {
        const dm_header *h = &req->headers[i];
        if (h->name.len == 6 && strncasecmp(h->name.ptr, "Expect", 6) == 0) {
            has_expect = 1;
        }
        tmp = lc.curl_slist_append(hdrs, header_line(c.scratch, h));
        if (!tmp) {
            e = dm_err_make(p, DM_E_INTERNAL, NULL, "http: out of memory");
            goto cleanup;
        }
        hdrs = tmp;
    }
    send_body = req->body.len > 0 || !strcmp(req->method, "POST") || !strcmp(req->method, "PUT") ||
                !strcmp(req->method, "PATCH");
    if (send_body && !has_expect) {
        /* No 100-continue round trip: providers answer at once. */
        tmp = lc.curl_slist_append(hdrs, "Expect:");
        if (!tmp) {
            e = dm_err_make(p, DM_E_INTERNAL, NULL, "http: out of memory");
            goto cleanup;
        }
        hdrs = tmp;
    }

    curl = lc.curl_easy_init();
    if (!curl) {
        e = dm_err_make(p, DM_E_INTERNAL, NULL, "http: cannot create a curl handle");
        goto cleanup;
    }
    errbuf[0] = '\0';
    lc.curl_easy_setopt(curl, CURLOPT_URL, req->url);
    lc.curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    lc.curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    lc.curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                        (long)(req->timeout_ms ? req->timeout_ms : DM_HTTP_CLIENT_TIMEOUT_MS));
#if LIBCURL_VERSION_NUM >= 0x075500
    lc.curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    lc.curl_easy_setopt(curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    lc.curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    lc.curl_easy_setopt(curl, CURLOPT_USERAGENT,
                        req->user_agent ? req->user_agent : "mod_deepmine");
    lc.curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)DM_HTTP_CLIENT_BODY_MAX);
    lc.curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    lc.curl_easy_setopt(curl, CURLOPT_WRITEDATA, &c);
    lc.curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    lc.curl_easy_setopt(curl, CURLOPT_HEADERDATA, &c);
    if (hdrs) {
        lc.curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    }
    if (send_body) {
        lc.curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body.len);
        lc.curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req->body.len ? req->body.ptr : "");
        if (strcmp(req->method, "POST") != 0) {
            lc.curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
        }
    } else if (!strcmp(req->method, "HEAD")) {
        lc.curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(req->method, "GET")) {
        lc.curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    } else {
        lc.curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
    }

    rc = lc.curl_easy_perform(curl);
    if (c.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        e = dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                        "%s %s: the response body exceeds %" APR_SIZE_T_FMT " bytes", req->method,
                        where, (apr_size_t)DM_HTTP_CLIENT_BODY_MAX);
        goto cleanup;
    }
    if (rc != CURLE_OK) {
        e = dm_err_make(p, DM_E_UNAVAILABLE, NULL, "%s %s: %s%s%s", req->method, where,
                        lc.curl_easy_strerror(rc), errbuf[0] ? ": " : "", errbuf);
        goto cleanup;
    }
    lc.curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    resp->status = (int)status;
    {
        char *buf = apr_palloc(p, c.body_len + 1), *w = buf;
        for (const body_chunk *ch = c.head; ch; ch = ch->next) {
            memcpy(w, ch->data, ch->len);
            w += ch->len;
        }
        *w = '\0';
        resp->body.ptr = buf;
        resp->body.len = c.body_len;
    }
    resp->headers = (const dm_header *)c.headers->elts;
    resp->n_headers = (size_t)c.headers->nelts;

cleanup:
    if (curl) {
        lc.curl_easy_cleanup(curl);
    }
    lc.curl_slist_free_all(hdrs);
    apr_pool_destroy(c.scratch);
    return e;
}

const dm_http_client_impl dm_http_client_curl = {
    .name = "libcurl",
    .init = NULL, /* loaded on the first request: lc_ready */
    .perform = curl_perform,
};
