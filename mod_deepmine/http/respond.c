/*
 * respond.c — the only place that writes API answers: JSON bodies, the error
 * shape of API.md, security headers, validators (ETag/304), and the bounded
 * reading of request bodies.
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>
#include <http_request.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <util_script.h>

#include "base/confparse.h"
#include "base/json.h"

static void base_headers(request_rec *r)
{
    apr_table_t *h = r->headers_out;

    apr_table_setn(h, "X-Content-Type-Options", "nosniff");
    apr_table_setn(h, "Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'");
    apr_table_setn(h, "Referrer-Policy", "strict-origin-when-cross-origin");
    if (dm_conf_get(r->server)->public_url &&
        strncmp(dm_conf_get(r->server)->public_url, "https://", 8) == 0) {
        apr_table_setn(h, "Strict-Transport-Security", "max-age=31536000; includeSubDomains");
    }
}

/* True when the client announced a body that was not read to its end. */
static int body_unread(request_rec *r)
{
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    int announced =
        apr_table_get(r->headers_in, "Transfer-Encoding") != NULL || (cl && strcmp(cl, "0") != 0);

    return announced && !apr_table_get(r->notes, "dm-body-read");
}

/* The largest body dm_http_json sends from the handler (write_body): with
 * its headers it fits a fresh TCP connection's send buffer (16 KiB), so
 * the write does not wait for the client. */
#define DM_FLUSH_MAX 8192

/* The answer's body to the output filters. ap_rwrite would copy it into an
 * 8 KiB heap bucket of the connection's allocator, which keeps that node
 * for the connection's next request (about 2 MiB at 256 connections): the
 * body goes down as it is instead, a pool bucket on the request's pool
 * (every caller's body lives at least that long: in r->pool, static, or
 * the process's), or `owned`, a malloc'd body, as a heap bucket that frees
 * it once written (the core may hold an answer until the connection's
 * write completion; the request's pool outlives it). A request whose body
 * was announced and not read keeps ap_rwrite's order: its headers are
 * made when the handler is done, after Apache discarded that body (which
 * may end the keep-alive). */
static void write_body(request_rec *r, const char *body, apr_size_t len, char *owned)
{
    conn_rec *c = r->connection;
    apr_bucket_brigade *bb;
    apr_bucket *b;

    if (r->header_only || len == 0) {
        free(owned);
        return;
    }
    if (body_unread(r)) {
        ap_rwrite(body, (int)len, r);
        free(owned);
        return;
    }
    bb = apr_brigade_create(r->pool, c->bucket_alloc);
    b = owned ? apr_bucket_heap_create(owned, len, free, c->bucket_alloc)
              : apr_bucket_pool_create(body, len, r->pool, c->bucket_alloc);
    APR_BRIGADE_INSERT_TAIL(bb, b);
    /* A small answer of a handler that holds no pooled connection is sent
     * now, as Apache's static handler sends a file: the core would
     * otherwise keep it until the request is logged and its pool gone, and
     * look for the client's next request (one read) before writing this
     * answer, when that request cannot have come yet; the connection then
     * goes back to the listener (two epoll_ctl, a wake-up, a switch per
     * request). Sent first, the answer reaches the client while this
     * thread finishes the request, and its next request is often there
     * when the thread looks (docs/decisions.md "The read path, ninth
     * round"). A larger answer, or one written while a connection is held,
     * still waits for the MPM's write completion: a slow reader holds no
     * thread, no connection. */
    if (len <= DM_FLUSH_MAX && !dm_db_pool_scope_holds(r->pool)) {
        /* counted first: a scrape after this answer finds it */
        dm_http_metrics_count_now(r);
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(c->bucket_alloc));
    }
    /* The answer is whole: its end goes with it, so the filters run once
     * (as for ap_rwrite's buffered body at the handler's end; Apache then
     * sends no second end, r->eos_sent). */
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(c->bucket_alloc));
    (void)ap_pass_brigade(r->output_filters, bb);
}

static int write_json(request_rec *r, int status, const char *body, apr_size_t len, char *owned)
{
    r->status = status;
    ap_set_content_type(r, "application/json; charset=utf-8");
    ap_set_content_length(r, (apr_off_t)len);
    write_body(r, body, len, owned);
    return OK;
}

/* dm_http_json for a body in r->pool, static or the process's (NULL
 * owned), or a malloc'd one that the answer takes over (owned == body). */
static int json_answer(request_rec *r, int status, const char *body, apr_size_t len, char *owned)
{
    base_headers(r);
    if (!apr_table_get(r->headers_out, "Cache-Control")) {
        apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    }
    return write_json(r, status, body, len, owned);
}

int dm_http_json(request_rec *r, int status, const char *body, apr_size_t len)
{
    return json_answer(r, status, body, len, NULL);
}

int dm_http_json_owned(request_rec *r, int status, char *body, apr_size_t len)
{
    return json_answer(r, status, body, len, body);
}

int dm_http_html(request_rec *r, int status, const char *body, apr_size_t len)
{
    /* The API's own headers: "default-src 'none'" still lets a page's
     * form post back (form-action does not fall back to default-src). */
    base_headers(r);
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    r->status = status;
    ap_set_content_type(r, "text/html; charset=utf-8");
    ap_set_content_length(r, (apr_off_t)len);
    write_body(r, body, len, NULL);
    return OK;
}

void dm_http_csv_begin(request_rec *r, const char *filename)
{
    base_headers(r);
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    apr_table_setn(r->headers_out, "Content-Disposition",
                   apr_psprintf(r->pool, "attachment; filename=\"%s\"", filename));
    r->status = HTTP_OK;
    ap_set_content_type(r, "text/csv; charset=utf-8; header=present");
}

int dm_http_error(request_rec *r, const dm_err *e)
{
    const char *body = dm_err_to_json(r->pool, e);
    int status = dm_err_http_status(e->code);

    if (status >= 500 && !apr_table_get(r->notes, DM_NOTE_REPORTED)) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "DM00020: %s %s failed: %s", r->method, r->uri,
                      e->message);
    }
    if (body_unread(r)) {
        /* Answer without reading the rest of the body (it may be huge, or
         * never come): the connection cannot be reused after that. */
        r->connection->keepalive = AP_CONN_CLOSE;
    }
    /* Every 503 says when to come back (webhook senders retry on it);
     * the rate limiter and others may have set their own. */
    if (status == HTTP_SERVICE_UNAVAILABLE && !apr_table_get(r->err_headers_out, "Retry-After") &&
        !apr_table_get(r->headers_out, "Retry-After")) {
        apr_table_setn(r->err_headers_out, "Retry-After",
                       dm_db_storage_full() ? DM_STORAGE_RETRY_AFTER : "5");
    }
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    return dm_http_json(r, status, body, strlen(body));
}

int dm_http_fail(request_rec *r, dm_code code, const char *field, const char *msg)
{
    return dm_http_error(r, dm_err_make(r->pool, code, field, "%s", msg));
}

int dm_http_cached_json(request_rec *r, const dm_rendered *doc)
{
    int rc;

    base_headers(r);
    apr_table_setn(r->headers_out, "ETag", doc->etag);
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    rc = ap_meets_conditions(r);
    if (rc != OK) {
        /* 304 Not Modified (or 412): Apache sends it with our headers. */
        return rc;
    }
    return write_json(r, HTTP_OK, doc->body, doc->len, NULL);
}

/* application/x-www-form-urlencoded: '+' is a space, then %XX. (Apache's
 * ap_args_to_table leaves '+' as is.) NULL when the escapes are bad. */
static char *form_decode(apr_pool_t *p, const char *s, apr_size_t len)
{
    char *out = apr_pstrmemdup(p, s, len);

    for (char *c = out; *c; c++) {
        if (*c == '+') {
            *c = ' ';
        }
    }
    return ap_unescape_url(out) == OK ? out : NULL;
}

const char *dm_http_arg(request_rec *r, const char *name)
{
    const char *a = r->args;
    size_t nlen = strlen(name);

    while (a && *a) {
        const char *amp = strchr(a, '&');
        apr_size_t len = amp ? (apr_size_t)(amp - a) : strlen(a);
        const char *eq = memchr(a, '=', len);
        apr_size_t klen = eq ? (apr_size_t)(eq - a) : len;
        const char *key = form_decode(r->pool, a, klen);
        if (key && strlen(key) == nlen && strcmp(key, name) == 0) {
            /* the first occurrence wins; an undecodable value reads as "" */
            const char *v = eq ? form_decode(r->pool, eq + 1, len - klen - 1) : "";
            return v ? v : "";
        }
        a = amp ? amp + 1 : NULL;
    }
    return NULL;
}

dm_err *dm_http_arg_max(request_rec *r, const char *name, apr_size_t max, const char **out)
{
    const char *v = dm_http_arg(r, name);

    *out = (v && *v) ? v : NULL;
    if (*out && strlen(*out) > max) {
        return dm_err_make(r->pool, DM_E_INVALID, name,
                           "%s is longer than %" APR_SIZE_T_FMT " bytes", name, max);
    }
    return NULL;
}

dm_err *dm_http_paging(request_rec *r, int *limit, int64_t *cursor)
{
    const char *l = dm_http_arg(r, "limit");
    const char *c = dm_http_arg(r, "cursor");
    long long v = 0;

    *limit = 50;
    *cursor = 0;
    if (l) {
        if (dm_parse_int(r->pool, l, 1, 200, &v)) {
            return dm_err_make(r->pool, DM_E_INVALID, "limit",
                               "limit must be a whole number from 1 to 200");
        }
        *limit = (int)v;
    }
    if (c && *c) {
        if (dm_parse_int(r->pool, c, 1, INT64_MAX, &v)) {
            return dm_err_make(r->pool, DM_E_INVALID, "cursor",
                               "cursor must be a next_cursor value from a previous page");
        }
        *cursor = (int64_t)v;
    }
    return NULL;
}

dm_err *dm_http_id_param(request_rec *r, const dm_route_match *m, const char *what, int64_t *id)
{
    long long v = 0;
    const char *s = apr_table_get(m->params, "id");

    if (!s || dm_parse_int(r->pool, s, 1, INT64_MAX, &v)) {
        return what ? dm_err_make(r->pool, DM_E_INVALID, "id",
                                  "the %s id must be a positive number", what)
                    : dm_err_make(r->pool, DM_E_INVALID, "id", "the id must be a positive number");
    }
    *id = (int64_t)v;
    return NULL;
}

dm_err *dm_http_check_length(request_rec *r)
{
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_off_t max = dm_conf_max_body(dm_conf_get(r->server));
    apr_off_t n;
    char *end;

    if (cl && (apr_strtoff(&n, cl, &end, 10) != APR_SUCCESS || *end || n > max)) {
        return dm_err_make(r->pool, DM_E_TOO_LARGE, NULL,
                           "the request body is larger than %" APR_OFF_T_FMT " bytes", max);
    }
    return NULL;
}

/* A body read ahead by dm_http_prefetch_body: what the handler's
 * dm_http_read_body then returns, its error included. */
typedef struct body_ahead {
    dm_err *e;
    const char *buf;
    apr_size_t len;
} body_ahead;

#define DM_BODY_AHEAD_KEY "dm_body_ahead"

static dm_err *read_body_now(request_rec *r, const char **out, apr_size_t *out_len);

void dm_http_prefetch_body(request_rec *r)
{
    body_ahead *b;

    if (!ap_request_has_body(r)) {
        return;
    }
    b = apr_pcalloc(r->pool, sizeof(*b));
    b->e = read_body_now(r, &b->buf, &b->len);
    apr_pool_userdata_setn(b, DM_BODY_AHEAD_KEY, NULL, r->pool);
}

dm_err *dm_http_read_body(request_rec *r, const char **out, apr_size_t *out_len)
{
    void *data = NULL;

    apr_pool_userdata_get(&data, DM_BODY_AHEAD_KEY, r->pool);
    if (data) {
        const body_ahead *b = data;
        *out = b->e ? "" : b->buf;
        *out_len = b->e ? 0 : b->len;
        return b->e;
    }
    return read_body_now(r, out, out_len);
}

static dm_err *read_body_now(request_rec *r, const char **out, apr_size_t *out_len)
{
    apr_off_t max = dm_conf_max_body(dm_conf_get(r->server));
    apr_size_t cap = 4096, used = 0;
    char *buf;
    long got;
    dm_err *e = dm_http_check_length(r);

    *out = "";
    *out_len = 0;
    if (e) {
        return e;
    }
    if (ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK) != OK) {
        return dm_err_make(r->pool, DM_E_INVALID, NULL, "the request body could not be read");
    }
    if (!ap_should_client_block(r)) {
        apr_table_setn(r->notes, "dm-body-read", "1");
        return NULL;
    }
    buf = apr_palloc(r->pool, cap + 1);
    for (;;) {
        if (used == cap) {
            /* Grow, but never beyond the limit + 1 byte (to see "too large"). */
            apr_size_t ncap = cap * 2 > (apr_size_t)max + 1 ? (apr_size_t)max + 1 : cap * 2;
            char *nbuf;
            if (ncap <= cap) {
                return dm_err_make(r->pool, DM_E_TOO_LARGE, NULL,
                                   "the request body is larger than %" APR_OFF_T_FMT " bytes", max);
            }
            nbuf = apr_palloc(r->pool, ncap + 1);
            memcpy(nbuf, buf, used);
            buf = nbuf;
            cap = ncap;
        }
        got = ap_get_client_block(r, buf + used, cap - used);
        if (got == 0) {
            break;
        }
        if (got < 0) {
            return dm_err_make(r->pool, DM_E_INVALID, NULL, "the request body could not be read");
        }
        used += (apr_size_t)got;
        if ((apr_off_t)used > max) {
            return dm_err_make(r->pool, DM_E_TOO_LARGE, NULL,
                               "the request body is larger than %" APR_OFF_T_FMT " bytes", max);
        }
    }
    buf[used] = '\0';
    apr_table_setn(r->notes, "dm-body-read", "1");
    *out = buf;
    *out_len = used;
    return NULL;
}

dm_err *dm_http_read_json(request_rec *r, json_t **out)
{
    const char *body;
    apr_size_t len;
    dm_err *e = dm_http_read_body(r, &body, &len);

    return e ? e : dm_json_parse_object(r->pool, body, len, out);
}

int dm_http_send_json(request_rec *r, int status, json_t *o)
{
    /* dm_json_dump's text, handed over as it is: no copy in r->pool (a
     * statistics answer of a few KiB would take the request's pool to a
     * second 8 KiB node, kept by the connection's allocator). */
    return dm_http_json_dumped(r, status, json_dumps(dm_json_own(r->pool, o), DM_JSON_DUMP_FLAGS));
}

int dm_http_json_dumped(request_rec *r, int status, char *text)
{
    if (!text) {
        return dm_http_error(r, dm_err_make(r->pool, DM_E_INTERNAL, NULL,
                                            "the answer could not be written (out of memory)"));
    }
    return json_answer(r, status, text, strlen(text), text);
}

json_t *dm_http_cursor_json(apr_pool_t *p, int64_t next)
{
    return next ? json_string(apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)next))
                : json_null();
}

/* 1 when `name` is one of the space-separated words of `list`. */
static int word_in(const char *list, const char *name, apr_size_t nlen)
{
    const char *w = list;

    while (w && *w) {
        apr_size_t wl = strcspn(w, " ");
        if (wl == nlen && strncmp(w, name, nlen) == 0) {
            return 1;
        }
        w += wl;
        w += strspn(w, " ");
    }
    return 0;
}

dm_err *dm_http_check_args(request_rec *r, const char *allowed)
{
    const char *a = r->args;

    while (a && *a) {
        const char *amp = strchr(a, '&');
        apr_size_t len = amp ? (apr_size_t)(amp - a) : strlen(a);
        const char *eq = memchr(a, '=', len);
        apr_size_t klen = eq ? (apr_size_t)(eq - a) : len;
        const char *key = form_decode(r->pool, a, klen);
        if (len > 0 && (!key || !word_in(allowed, key, strlen(key)))) {
            const char *shown = key ? key : apr_pstrmemdup(r->pool, a, klen);
            if (strlen(shown) > 64) {
                shown = apr_pstrcat(r->pool, apr_pstrmemdup(r->pool, shown, 64), "…", NULL);
            }
            return dm_err_make(r->pool, DM_E_INVALID, shown,
                               "unknown query parameter \"%s\"; this endpoint takes %s", shown,
                               (allowed && *allowed) ? allowed : "none");
        }
        a = amp ? amp + 1 : NULL;
    }
    return NULL;
}

dm_err *dm_http_page_begin(request_rec *r, const dm_route_match *m, dm_http_caller who,
                           const char *filters, dm_http_page *pg)
{
    dm_err *e;

    memset(pg, 0, sizeof(*pg));
    pg->who = who;
    e = who == DM_HTTP_STAFF ? dm_http_staff_db(r, m, &pg->db, &pg->staff)
                             : dm_http_member_db(r, &pg->db, &pg->member);
    if (!e) {
        e = dm_http_check_args(r, (filters && *filters)
                                      ? apr_pstrcat(r->pool, "limit cursor ", filters, NULL)
                                      : "limit cursor");
    }
    if (!e) {
        e = dm_http_paging(r, &pg->limit, &pg->cursor);
    }
    return e;
}

int dm_http_page_send(request_rec *r, dm_err *e, const dm_http_page *pg, const char *plural,
                      dm_http_row_json *row_json)
{
    json_t *arr;
    const char *elt;

    if (e) {
        return dm_http_error(r, e);
    }
    arr = json_array();
    elt = pg->rows->elts;
    for (int i = 0; i < pg->rows->nelts; i++, elt += pg->rows->elt_size) {
        json_array_append_new(arr, row_json(r->pool, elt, pg->who == DM_HTTP_STAFF));
    }
    return dm_http_send_json(
        r, HTTP_OK,
        json_pack("{s:o,s:o}", plural, arr, "next_cursor", dm_http_cursor_json(r->pool, pg->next)));
}
