/*
 * http_client.h — the one HTTP client of the server: a request to a
 * provider, its answer in a pool. libcurl is underneath, behind a small
 * table as mod_md keeps its client behind md_http_impl_t, so the host
 * table's http() (host_services.c) is built on it and so can be any later
 * host service that talks to a provider (a storage or monitor plugin host)
 * — without knowing curl.
 *
 * dm_http_client_perform checks the request (method, URL, headers, body)
 * before any implementation sees it, so every implementation refuses the
 * same requests with the same words.
 *
 * Invariants: one request, one handle; nothing is kept between requests,
 * so nothing outlives a fork. Only http and https, no redirect followed, a
 * response body of at most DM_HTTP_CLIENT_BODY_MAX bytes. Messages never
 * show the URL's user:password@ or query string (either may carry a
 * secret).
 */
#ifndef DM_HTTP_CLIENT_H
#define DM_HTTP_CLIENT_H

#include <apr_pools.h>
#include <stdint.h>

#include "deepmine/plugin.h"
#include "base/err.h"

#define DM_HTTP_CLIENT_BODY_MAX ((size_t)8 * 1024 * 1024)
#define DM_HTTP_CLIENT_TIMEOUT_MS 10000u

typedef struct dm_http_client_request {
    const char *method;       /* an upper-case token: "GET", "POST", … */
    const char *url;          /* NUL-terminated */
    const dm_header *headers; /* n_headers of them; an empty value is sent empty */
    size_t n_headers;
    dm_str body;            /* sent with POST, PUT and PATCH, and with any method when not empty */
    uint32_t timeout_ms;    /* 0: DM_HTTP_CLIENT_TIMEOUT_MS */
    const char *user_agent; /* NULL: "mod_deepmine" */
} dm_http_client_request;

typedef struct dm_http_client_response {
    int status;               /* the HTTP status */
    dm_str body;              /* pool memory, NUL-terminated after len bytes */
    const dm_header *headers; /* of the final response (not of a 100 Continue), pool memory */
    size_t n_headers;
} dm_http_client_response;

/* An implementation. perform gets a request dm_http_client_perform has
 * checked, and fills resp in p. */
typedef struct dm_http_client_impl {
    const char *name;
    /* Once per process, at configuration time (before any fork). */
    dm_err *(*init)(apr_pool_t *p);
    dm_err *(*perform)(apr_pool_t *p, const dm_http_client_request *req,
                       dm_http_client_response *resp);
} dm_http_client_impl;

/* libcurl: the implementation in use unless dm_http_client_use says else. */
extern const dm_http_client_impl dm_http_client_curl;

/* Puts another implementation in place (a test's stand-in); NULL puts
 * libcurl back. Call it before dm_http_client_init. */
void dm_http_client_use(const dm_http_client_impl *impl);

/* Initialises the implementation in use; DM_E_UNAVAILABLE when it cannot. */
dm_err *dm_http_client_init(apr_pool_t *p);

/* Sends one request and waits for its answer (any HTTP status is an
 * answer). Errors, in p:
 *   DM_E_INVALID      the request is malformed: no URL, a method that is not
 *                     an upper-case token, a header with an empty name or a
 *                     CR, LF or NUL, a body length without bytes
 *                     ("http: …");
 *   DM_E_UNAVAILABLE  no answer: connection, TLS, timeout, a protocol other
 *                     than http(s), a body over DM_HTTP_CLIENT_BODY_MAX
 *                     ("<METHOD> <url for messages>: …");
 *   DM_E_INTERNAL     out of memory. */
dm_err *dm_http_client_perform(apr_pool_t *p, const dm_http_client_request *req,
                               dm_http_client_response *resp);

/* The URL as messages show it: without user:password@ and without the query
 * string or fragment. */
const char *dm_http_client_url_for_messages(apr_pool_t *p, const char *url);

#endif
