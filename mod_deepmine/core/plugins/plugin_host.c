/*
 * plugin_host.c — loads plugins through ABI v1 (deepmine/plugin.h) and gives
 * them the host table (see plugin_host.h for the life cycle).
 *
 * Invariants:
 * - Everything the host keeps lives in the pool given to dm_plugins_create:
 *   the loaded objects (apr_dso registers their dlclose on it), settings,
 *   memory handed out during init(). A plugin call's memory lives in the pool
 *   of its dm_call.
 * - fini() runs at most once per initialised plugin, and before any object
 *   is unloaded: it is a *pre*-cleanup of the create pool, and APR runs
 *   pre-cleanups before sub-pools and ordinary cleanups (dlclose among them).
 * - The host reads a field of a plugin structure only when the structure's
 *   size covers it (DM_HAS_FIELD), so a plugin built against an older minor
 *   loads, and so does one built against a newer minor.
 * - Nothing here outlives a fork: each HTTP request uses its own curl handle.
 *
 * Error codes: DM_E_INVALID when the configuration is wrong (kind, name,
 * duplicate, settings), DM_E_UNAVAILABLE when the plugin cannot be used as
 * it is (cannot be loaded, wrong ABI, incomplete tables, init refused).
 */
#include "plugins/plugin_host.h"

#include <apr_dso.h>
#include <apr_file_io.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "base/mime.h"

/* Limits of the host table (see deepmine/plugin.h). */
#define ALLOC_MAX ((size_t)16 * 1024 * 1024)
#define HTTP_BODY_MAX ((size_t)8 * 1024 * 1024)
#define HTTP_DEFAULT_TIMEOUT_MS 10000u
/* The longest wait a plugin may ask for with retry_after: a day. */
#define RETRY_AFTER_MAX 86400u
/* A file: setting holds a secret or a short value, never a document. */
#define SETTING_FILE_MAX ((apr_off_t)1024 * 1024)

/* DM_HAS_FIELD for a pointer already known not to be NULL: the macro's own
 * NULL test would make cppcheck suspect every dereference next to it. */
#define COVERS(ptr, type, field)                                                                   \
    ((size_t)(ptr)->size >= offsetof(type, field) + sizeof(((type *)0)->field))

struct dm_plugin_host {
    apr_pool_t *pool;
    apr_array_header_t *plugins; /* loaded *, in declaration order */
    apr_array_header_t *all;     /* dm_loaded_plugin *, the same, for dm_plugins_all */
    apr_hash_t *by_name;         /* configured name -> loaded * */
    apr_array_header_t *raw;     /* raw_setting, in the order given */
    const char *public_url;      /* the reserved setting _public_url, or NULL */
    int init_done;
};

/* The public record first, so a dm_loaded_plugin * is a loaded *. */
typedef struct loaded {
    dm_loaded_plugin pub;
    apr_dso_handle_t *dso; /* unloaded by the create pool's cleanup */
    apr_hash_t *settings;  /* key -> resolved value, filled by dm_plugins_init_all */
} loaded;

typedef struct raw_setting {
    const char *name;
    const char *key;
    const char *value;
} raw_setting;

struct dm_call {
    apr_pool_t *pool;
    const loaded *pl;
    int in_init;         /* setting_default is allowed */
    int retry_after_set; /* retry_after was called */
    uint32_t retry_after_s;
    const char *mime_refusal; /* why mime_message last returned NULL */
};

static const struct {
    const char *name;
    dm_plugin_kind kind;
} kinds[] = {
    {"payment", DM_PLUGIN_PAYMENT},
    {"kyc", DM_PLUGIN_KYC},
    {"mailer", DM_PLUGIN_MAILER},
};

const char *dm_plugin_kind_name(dm_plugin_kind kind)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (kinds[i].kind == kind) {
            return kinds[i].name;
        }
    }
    return "unknown";
}

static const char *status_name(dm_status st)
{
    switch (st) {
    case DM_OK:
        return "ok";
    case DM_ERR_INVALID:
        return "invalid";
    case DM_ERR_TEMPORARY:
        return "temporary error";
    case DM_ERR_PERMANENT:
        return "permanent error";
    case DM_ERR_UNSUPPORTED:
        return "unsupported";
    case DM_ERR_CONFIG:
        return "configuration error";
    case DM_ERR_INTERNAL:
        return "internal error";
    }
    return "unknown status";
}

/* APR's formatter (used here and by dm_err_make) knows no %zu: sizes are
 * printed with APR_SIZE_T_FMT. */
static void set_msg(dm_message *msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_msg(dm_message *msg, const char *fmt, ...)
{
    va_list ap;

    if (!msg) {
        return;
    }
    va_start(ap, fmt);
    apr_vsnprintf(msg->text, sizeof(msg->text), fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------------- */
/* The host table                                                          */
/* ---------------------------------------------------------------------- */

static void host_log(dm_call *call, dm_log_level level, const char *msg)
{
    dm_level l;

    switch (level) {
    case DM_LOG_ERROR:
        l = DM_L_ERR;
        break;
    case DM_LOG_WARN:
        l = DM_L_WARN;
        break;
    case DM_LOG_NOTICE:
        l = DM_L_NOTICE;
        break;
    case DM_LOG_INFO:
        l = DM_L_INFO;
        break;
    case DM_LOG_DEBUG:
        l = DM_L_DEBUG;
        break;
    default:
        /* A level the plugin should not use: make it visible rather than lose it. */
        l = DM_L_WARN;
        break;
    }
    dm_log(l, "DM00101: plugin %s: %s", call && call->pl ? call->pl->pub.name : "(unknown)",
           msg ? msg : "(null)");
}

static const char *host_setting(dm_call *call, const char *key)
{
    if (!call || !call->pl || !call->pl->settings || !key) {
        return NULL;
    }
    return apr_hash_get(call->pl->settings, key, APR_HASH_KEY_STRING);
}

static void *host_alloc(dm_call *call, size_t n)
{
    if (!call || !call->pool || n >= ALLOC_MAX) {
        return NULL;
    }
    return apr_palloc(call->pool, n ? n : 1);
}

/* ---- HTTP over libcurl ---- */

typedef struct body_chunk {
    struct body_chunk *next;
    size_t len;
    char data[];
} body_chunk;

typedef struct http_ctx {
    apr_pool_t *scratch; /* the received chunks; destroyed after the copy */
    apr_pool_t *pool;    /* the call's pool: response headers and body */
    body_chunk *head, *tail;
    size_t body_len;
    int too_large;
    apr_array_header_t *headers; /* dm_header, of the last response seen */
} http_ctx;

static size_t http_on_body(char *ptr, size_t size, size_t nmemb, void *baton)
{
    http_ctx *c = baton;
    size_t n = size * nmemb;
    body_chunk *ch;

    if (n > HTTP_BODY_MAX - c->body_len) {
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

static size_t http_on_header(char *ptr, size_t size, size_t nmemb, void *baton)
{
    http_ctx *c = baton;
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

/* The URL as messages show it: without user:password@ and without the query
 * string, either of which may carry a secret. */
static const char *url_for_messages(apr_pool_t *p, const char *url)
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

static dm_status host_http(dm_call *call, const dm_http_request *req, dm_http_response *resp,
                           dm_message *msg)
{
    CURL *curl = NULL;
    struct curl_slist *hdrs = NULL, *tmp;
    char errbuf[CURL_ERROR_SIZE];
    http_ctx c;
    const dm_header *req_headers = NULL;
    size_t n_req_headers = 0;
    dm_str body = {NULL, 0};
    uint32_t timeout_ms = 0;
    int has_expect = 0, send_body;
    const char *where;
    CURLcode rc;
    long status = 0;
    dm_status ret = DM_ERR_INTERNAL;

    memset(&c, 0, sizeof(c));
    if (!call || !call->pool || !req || !resp) {
        set_msg(msg, "http: called without a call, a request or a response");
        return DM_ERR_INVALID;
    }
    if (!COVERS(resp, dm_http_response, status)) {
        set_msg(msg, "http: dm_http_response.size (%u) does not cover status",
                (unsigned)resp->size);
        return DM_ERR_INVALID;
    }
    resp->status = 0;
    if (!COVERS(req, dm_http_request, url) || !req->url || !*req->url) {
        set_msg(msg, "http: the request has no url");
        return DM_ERR_INVALID;
    }
    if (!is_method(req->method)) {
        set_msg(msg, "http: \"%.32s\" is not an HTTP method", req->method ? req->method : "");
        return DM_ERR_INVALID;
    }
    if (COVERS(req, dm_http_request, n_headers)) {
        req_headers = req->headers;
        n_req_headers = req->headers ? req->n_headers : 0;
    }
    if (COVERS(req, dm_http_request, body)) {
        body = req->body;
        if (body.len && !body.ptr) {
            set_msg(msg, "http: the request body has a length but no bytes");
            return DM_ERR_INVALID;
        }
    }
    if (COVERS(req, dm_http_request, timeout_ms)) {
        timeout_ms = req->timeout_ms;
    }
    where = url_for_messages(call->pool, req->url);

    if (apr_pool_create(&c.scratch, call->pool) != APR_SUCCESS) {
        set_msg(msg, "http: out of memory");
        return DM_ERR_INTERNAL;
    }
    c.pool = call->pool;
    c.headers = apr_array_make(call->pool, 16, sizeof(dm_header));

    for (size_t i = 0; i < n_req_headers; i++) {
        const dm_header *h = &req_headers[i];
        if (!h->name.ptr || h->name.len == 0 || memchr(h->name.ptr, ':', h->name.len) ||
            memchr(h->name.ptr, ' ', h->name.len) || has_crlf(h->name.ptr, h->name.len) ||
            (h->value.len && (!h->value.ptr || has_crlf(h->value.ptr, h->value.len)))) {
            set_msg(msg,
                    "http: request header %" APR_SIZE_T_FMT
                    " is malformed (empty name, or CR, LF or NUL)",
                    (apr_size_t)i);
            ret = DM_ERR_INVALID;
            goto cleanup;
        }
        if (h->name.len == 6 && strncasecmp(h->name.ptr, "Expect", 6) == 0) {
            has_expect = 1;
        }
        tmp = curl_slist_append(hdrs, header_line(c.scratch, h));
        if (!tmp) {
            set_msg(msg, "http: out of memory");
            goto cleanup;
        }
        hdrs = tmp;
    }

    send_body = body.len > 0 || !strcmp(req->method, "POST") || !strcmp(req->method, "PUT") ||
                !strcmp(req->method, "PATCH");
    if (send_body && !has_expect) {
        /* No 100-continue round trip: providers answer at once. */
        tmp = curl_slist_append(hdrs, "Expect:");
        if (!tmp) {
            set_msg(msg, "http: out of memory");
            goto cleanup;
        }
        hdrs = tmp;
    }

    curl = curl_easy_init();
    if (!curl) {
        set_msg(msg, "http: cannot create a curl handle");
        goto cleanup;
    }
    errbuf[0] = '\0';
    curl_easy_setopt(curl, CURLOPT_URL, req->url);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                     (long)(timeout_ms ? timeout_ms : HTTP_DEFAULT_TIMEOUT_MS));
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT,
                     apr_psprintf(c.scratch, "mod_deepmine (plugin %s)", call->pl->pub.name));
    curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)HTTP_BODY_MAX);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, http_on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &c);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, http_on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &c);
    if (hdrs) {
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    }
    if (send_body) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.len);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.len ? body.ptr : "");
        if (strcmp(req->method, "POST") != 0) {
            curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
        }
    } else if (!strcmp(req->method, "HEAD")) {
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(req->method, "GET")) {
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
    }

    rc = curl_easy_perform(curl);
    if (c.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        set_msg(msg, "%s %s: the response body exceeds %" APR_SIZE_T_FMT " bytes", req->method,
                where, (apr_size_t)HTTP_BODY_MAX);
        ret = DM_ERR_TEMPORARY;
        goto cleanup;
    }
    if (rc != CURLE_OK) {
        set_msg(msg, "%s %s: %s%s%s", req->method, where, curl_easy_strerror(rc),
                errbuf[0] ? ": " : "", errbuf);
        ret = DM_ERR_TEMPORARY;
        goto cleanup;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    resp->status = (int)status;
    if (COVERS(resp, dm_http_response, body)) {
        char *buf = apr_palloc(call->pool, c.body_len + 1), *w = buf;
        for (body_chunk *ch = c.head; ch; ch = ch->next) {
            memcpy(w, ch->data, ch->len);
            w += ch->len;
        }
        *w = '\0';
        resp->body.ptr = buf;
        resp->body.len = c.body_len;
    }
    if (COVERS(resp, dm_http_response, n_headers)) {
        resp->headers = (const dm_header *)c.headers->elts;
        resp->n_headers = (size_t)c.headers->nelts;
    }
    ret = DM_OK;

cleanup:
    if (curl) {
        curl_easy_cleanup(curl);
    }
    curl_slist_free_all(hdrs);
    apr_pool_destroy(c.scratch);
    return ret;
}

/* ---- Crypto and encodings (libsodium) ---- */

static void host_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                             unsigned char out[32])
{
    /* The streaming API: crypto_auth_hmacsha256() itself takes only 32-byte
     * keys, while providers hand out keys of any length. */
    crypto_auth_hmacsha256_state st;

    crypto_auth_hmacsha256_init(&st, key, key_len);
    crypto_auth_hmacsha256_update(&st, data, len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof(st));
}

static void host_sha256(const void *data, size_t len, unsigned char out[32])
{
    crypto_hash_sha256(out, data, len);
}

static void host_random_bytes(void *buf, size_t len)
{
    randombytes_buf(buf, len);
}

static int host_equal_ct(const void *a, const void *b, size_t len)
{
    return len == 0 || sodium_memcmp(a, b, len) == 0;
}

static char *host_hex_encode(dm_call *call, const void *data, size_t len)
{
    char *out;

    if (len >= ALLOC_MAX / 2) {
        return NULL;
    }
    out = host_alloc(call, len * 2 + 1);
    if (out) {
        sodium_bin2hex(out, len * 2 + 1, data, len);
    }
    return out;
}

static char *host_base64_encode(dm_call *call, const void *data, size_t len)
{
    size_t n;
    char *out;

    if (len >= ALLOC_MAX / 4 * 3) {
        return NULL;
    }
    n = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
    out = host_alloc(call, n);
    if (out) {
        sodium_bin2base64(out, n, data, len, sodium_base64_VARIANT_ORIGINAL);
    }
    return out;
}

static unsigned char *host_base64_decode(dm_call *call, const char *b64, size_t len,
                                         size_t *out_len)
{
    unsigned char *out;
    size_t n = 0, max = len / 4 * 3 + 3;

    if ((!b64 && len) || max >= ALLOC_MAX) {
        return NULL;
    }
    out = host_alloc(call, max + 1);
    if (!out) {
        return NULL;
    }
    /* Strict: the original alphabet, padding required, no whitespace; with
     * b64_end NULL, libsodium refuses input it does not consume whole. */
    if (len && sodium_base642bin(out, max, b64, len, NULL, &n, NULL,
                                 sodium_base64_VARIANT_ORIGINAL) != 0) {
        return NULL;
    }
    out[n] = '\0';
    if (out_len) {
        *out_len = n;
    }
    return out;
}

/* ---- JSON (jansson) ---- */

/* Copies a string jansson allocated into call memory, then frees it. */
static char *take_dump(dm_call *call, char *text, size_t *out_len)
{
    char *out = NULL;
    size_t n;

    if (!text) {
        return NULL;
    }
    n = strlen(text);
    out = host_alloc(call, n + 1);
    if (out) {
        memcpy(out, text, n + 1);
        if (out_len) {
            *out_len = n;
        }
    }
    free(text);
    return out;
}

static json_t *json_walk(json_t *v, const char *path)
{
    const char *seg = path, *dot;

    if (!path || !*path) {
        return v;
    }
    while (v) {
        dot = strchr(seg, '.');
        size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
        if (n == 0) {
            return NULL;
        }
        if (json_is_object(v)) {
            char key[256];
            if (n >= sizeof(key)) {
                return NULL;
            }
            memcpy(key, seg, n);
            key[n] = '\0';
            v = json_object_get(v, key);
        } else if (json_is_array(v)) {
            size_t idx = 0;
            for (size_t i = 0; i < n; i++) {
                if (seg[i] < '0' || seg[i] > '9' || idx > (SIZE_MAX - 9) / 10) {
                    return NULL;
                }
                idx = idx * 10 + (size_t)(seg[i] - '0');
            }
            v = json_array_get(v, idx);
        } else {
            return NULL;
        }
        if (!dot) {
            return v;
        }
        seg = dot + 1;
    }
    return NULL;
}

static const char *host_json_get(dm_call *call, dm_str json, const char *path, size_t *out_len)
{
    json_t *root, *v;
    const char *out = NULL;

    if (!call || !json.ptr) {
        return NULL;
    }
    root = json_loadb(json.ptr, json.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!root) {
        return NULL;
    }
    v = json_walk(root, path);
    if (!v) {
        goto cleanup;
    }
    if (json_is_string(v)) {
        size_t n = json_string_length(v);
        char *s = host_alloc(call, n + 1);
        if (s) {
            memcpy(s, json_string_value(v), n);
            s[n] = '\0';
            if (out_len) {
                *out_len = n;
            }
        }
        out = s;
    } else {
        /* A number, true/false/null as its literal; a container compact. */
        out = take_dump(call, json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT), out_len);
    }

cleanup:
    json_decref(root);
    return out;
}

static char *host_json_quote(dm_call *call, dm_str s)
{
    json_t *v;
    char *out;

    if (!call || (!s.ptr && s.len)) {
        return NULL;
    }
    /* NULL for text that is not UTF-8: it has no JSON spelling. */
    v = json_stringn(s.ptr ? s.ptr : "", s.len);
    if (!v) {
        return NULL;
    }
    out = take_dump(call, json_dumps(v, JSON_ENCODE_ANY), NULL);
    json_decref(v);
    return out;
}

/* ---- E-mail (ABI 1.3) ---- */

static char *host_mime_message(dm_call *call, const struct dm_mail *mail, const char *message_id,
                               int64_t date, size_t *out_len)
{
    dm_mail m;
    char *out = NULL;
    dm_err *e;

    if (out_len) {
        *out_len = 0;
    }
    if (!call || !call->pool || !mail) {
        return NULL;
    }
    /* Only what the plugin's dm_mail covers; the rest stays empty. */
    memset(&m, 0, sizeof(m));
    memcpy(&m, mail, mail->size < sizeof(m) ? mail->size : sizeof(m));
    m.size = sizeof(m);
    if (!m.headers) {
        m.n_headers = 0;
    }
    e = dm_mime_build(call->pool, &m, message_id, date, &out, out_len);
    if (e) {
        call->mime_refusal = e->message;
        dm_log(DM_L_INFO, "plugin %s: message refused: %s", call->pl->pub.name, e->message);
        return NULL;
    }
    call->mime_refusal = NULL;
    return out;
}

static void host_retry_after(dm_call *call, uint32_t seconds)
{
    if (!call) {
        return;
    }
    call->retry_after_set = 1;
    call->retry_after_s = seconds > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : seconds;
}

static const char *host_message_id_for(dm_call *call, dm_str idempotency_key, dm_str from)
{
    if (!call || !call->pool || (idempotency_key.len && !idempotency_key.ptr) ||
        (from.len && !from.ptr)) {
        return NULL;
    }
    return dm_mime_message_id(call->pool, idempotency_key, from);
}

static void host_setting_default(dm_call *call, const char *key, const char *value)
{
    apr_pool_t *p;

    if (!call || !call->in_init || !call->pl || !key || !*key || key[0] == '_' || !value) {
        return;
    }
    if (apr_hash_get(call->pl->settings, key, APR_HASH_KEY_STRING)) {
        return; /* the configuration's value stands */
    }
    p = apr_hash_pool_get(call->pl->settings);
    apr_hash_set(call->pl->settings, apr_pstrdup(p, key), APR_HASH_KEY_STRING,
                 apr_pstrdup(p, value));
}

static const dm_host host_table = {
    .size = sizeof(dm_host),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .log = host_log,
    .setting = host_setting,
    .alloc = host_alloc,
    .http = host_http,
    .hmac_sha256 = host_hmac_sha256,
    .sha256 = host_sha256,
    .random_bytes = host_random_bytes,
    .equal_ct = host_equal_ct,
    .hex_encode = host_hex_encode,
    .base64_encode = host_base64_encode,
    .base64_decode = host_base64_decode,
    .json_get = host_json_get,
    .json_quote = host_json_quote,
    .mime_message = host_mime_message,
    .retry_after = host_retry_after,
    .message_id_for = host_message_id_for,
    .setting_default = host_setting_default,
};

/* ---------------------------------------------------------------------- */
/* Loading                                                                 */
/* ---------------------------------------------------------------------- */

static apr_status_t fini_cleanup(void *data)
{
    dm_plugins_fini_all(data);
    return APR_SUCCESS;
}

dm_err *dm_plugins_create(apr_pool_t *p, dm_plugin_host **out)
{
    static int curl_ready;
    dm_plugin_host *h;

    if (!curl_ready) {
        /* Not thread-safe, and need not be: configuration is read by one
         * thread, before any child is forked. */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                               "plugin host: libcurl cannot be initialised");
        }
        curl_ready = 1;
    }
    if (sodium_init() < 0) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                           "plugin host: libsodium cannot be initialised");
    }
    h = apr_pcalloc(p, sizeof(*h));
    h->pool = p;
    h->plugins = apr_array_make(p, 4, sizeof(loaded *));
    h->all = apr_array_make(p, 4, sizeof(dm_loaded_plugin *));
    h->by_name = apr_hash_make(p);
    h->raw = apr_array_make(p, 8, sizeof(raw_setting));
    /* A pre-cleanup: it runs before the cleanups that dlclose the objects. */
    apr_pool_pre_cleanup_register(p, h, fini_cleanup);
    *out = h;
    return NULL;
}

static int valid_name(const char *s)
{
    if (!s || !*s || strlen(s) > 64) {
        return 0;
    }
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.')) {
            return 0;
        }
    }
    return 1;
}

/* Since 1.1; absent from a descriptor built against 1.0. */
static int offers_health(const dm_plugin *d)
{
    return DM_HAS_FIELD(d, dm_plugin, health) && d->health != NULL;
}

/* Checks the ops table of `kind` in a descriptor the host may read: present,
 * and big enough to hold the functions every plugin of the kind must have. */
static const char *check_ops(apr_pool_t *p, const dm_plugin *d)
{
    if (!d->ops) {
        return apr_psprintf(p, "its descriptor has no %s function table",
                            dm_plugin_kind_name(d->kind));
    }
    switch (d->kind) {
    case DM_PLUGIN_PAYMENT: {
        const dm_payment_ops *o = d->ops;
        if (!COVERS(o, dm_payment_ops, parse_webhook)) {
            return apr_psprintf(p,
                                "its payment table is %u bytes, too small for "
                                "create_checkout and parse_webhook",
                                (unsigned)o->size);
        }
        if (!o->create_checkout || !o->parse_webhook) {
            return "its payment table lacks create_checkout or parse_webhook";
        }
        return NULL;
    }
    case DM_PLUGIN_KYC: {
        const dm_kyc_ops *o = d->ops;
        if (!COVERS(o, dm_kyc_ops, parse_webhook)) {
            return apr_psprintf(p,
                                "its kyc table is %u bytes, too small for start and "
                                "parse_webhook",
                                (unsigned)o->size);
        }
        if (!o->start || !o->parse_webhook) {
            return "its kyc table lacks start or parse_webhook";
        }
        return NULL;
    }
    case DM_PLUGIN_MAILER: {
        const dm_mailer_ops *o = d->ops;
        if (!COVERS(o, dm_mailer_ops, send)) {
            return apr_psprintf(p, "its mailer table is %u bytes, too small for send",
                                (unsigned)o->size);
        }
        if (!o->send) {
            return "its mailer table lacks send";
        }
        return NULL;
    }
    }
    return "it has an unknown kind";
}

dm_err *dm_plugins_declare(dm_plugin_host *h, const char *kind, const char *name, const char *path)
{
    apr_pool_t *p = h->pool;
    dm_plugin_kind k = 0;
    apr_dso_handle_t *dso = NULL;
    apr_dso_handle_sym_t sym;
    dm_plugin_entry_fn entry;
    const dm_plugin *d;
    const char *why;
    loaded *pl;
    dm_err *e = NULL;
    char buf[512];

    if (!valid_name(name)) {
        return dm_err_make(p, DM_E_INVALID, NULL,
                           "plugin \"%s\": the name must be 1 to 64 letters, digits, '-', '_' "
                           "or '.'",
                           name ? name : "");
    }
    if (!path || !*path) {
        return dm_err_make(p, DM_E_INVALID, NULL, "plugin \"%s\": no path to a .so given", name);
    }
    for (size_t i = 0; kind && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (!strcmp(kind, kinds[i].name)) {
            k = kinds[i].kind;
        }
    }
    if (!k) {
        return dm_err_make(p, DM_E_INVALID, NULL,
                           "plugin \"%s\" (%s): unknown kind \"%s\", expected payment, kyc or "
                           "mailer",
                           name, path, kind ? kind : "");
    }
    if (apr_hash_get(h->by_name, name, APR_HASH_KEY_STRING)) {
        return dm_err_make(p, DM_E_INVALID, NULL,
                           "plugin \"%s\" (%s): a plugin of that name is already declared", name,
                           path);
    }
    if (h->init_done) {
        return dm_err_make(p, DM_E_INVALID, NULL,
                           "plugin \"%s\" (%s): declared after the plugins were initialised", name,
                           path);
    }
    if (!strchr(path, '/')) {
        /* dlopen() would search the library path for a bare file name. */
        return dm_err_make(p, DM_E_INVALID, NULL,
                           "plugin \"%s\" (%s): give the path of the .so, not a bare file name",
                           name, path);
    }

    if (apr_dso_load(&dso, path, p) != APR_SUCCESS) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "plugin \"%s\" (%s): cannot load it: %s",
                           name, path, apr_dso_error(dso, buf, sizeof(buf)));
    }
    if (apr_dso_sym(&sym, dso, DM_PLUGIN_ENTRY_NAME) != APR_SUCCESS) {
        e = dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                        "plugin \"%s\" (%s): does not export " DM_PLUGIN_ENTRY_NAME ": %s", name,
                        path, apr_dso_error(dso, buf, sizeof(buf)));
        goto cleanup;
    }
    entry = (dm_plugin_entry_fn)sym;
    d = entry(&host_table);
    if (!d) {
        e = dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                        "plugin \"%s\" (%s): its entry returned no descriptor (it cannot run "
                        "with this host, ABI %d.%d)",
                        name, path, DM_PLUGIN_ABI_MAJOR, DM_PLUGIN_ABI_MINOR);
        goto cleanup;
    }
    if (d->abi_major != DM_PLUGIN_ABI_MAJOR) {
        e = dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                        "plugin \"%s\" (%s): built for plugin ABI %u, this host speaks ABI %d",
                        name, path, (unsigned)d->abi_major, DM_PLUGIN_ABI_MAJOR);
        goto cleanup;
    }
    if (d->size < DM_PLUGIN_SIZE_1_0) {
        e = dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                        "plugin \"%s\" (%s): its descriptor is %u bytes, smaller than the %u "
                        "bytes of ABI 1.0",
                        name, path, (unsigned)d->size, (unsigned)DM_PLUGIN_SIZE_1_0);
        goto cleanup;
    }
    if (d->kind != k) {
        if (!strcmp(dm_plugin_kind_name(d->kind), "unknown")) {
            e = dm_err_make(p, DM_E_INVALID, NULL,
                            "plugin \"%s\" (%s): is a plugin of unknown kind %d, declared as %s",
                            name, path, (int)d->kind, kind);
        } else {
            e = dm_err_make(p, DM_E_INVALID, NULL,
                            "plugin \"%s\" (%s): is a %s plugin, declared as %s", name, path,
                            dm_plugin_kind_name(d->kind), kind);
        }
        goto cleanup;
    }
    why = check_ops(p, d);
    if (why) {
        e = dm_err_make(p, DM_E_UNAVAILABLE, NULL, "plugin \"%s\" (%s): %s", name, path, why);
        goto cleanup;
    }

    pl = apr_pcalloc(p, sizeof(*pl));
    pl->pub.name = apr_pstrdup(p, name);
    pl->pub.path = apr_pstrdup(p, path);
    pl->pub.kind = k;
    pl->pub.desc = d;
    pl->dso = dso;
    pl->settings = apr_hash_make(p);
    *(loaded **)apr_array_push(h->plugins) = pl;
    *(dm_loaded_plugin **)apr_array_push(h->all) = &pl->pub;
    apr_hash_set(h->by_name, pl->pub.name, APR_HASH_KEY_STRING, pl);
    dm_log(DM_L_INFO, "plugin %s: %s %s %s from %s, built for ABI %u.%u, %s health check", name,
           kind, d->name ? d->name : "(unnamed)", d->version ? d->version : "(no version)", path,
           (unsigned)d->abi_major, (unsigned)d->abi_minor, offers_health(d) ? "with a" : "no");
    return NULL;

cleanup:
    apr_dso_unload(dso);
    return e;
}

dm_err *dm_plugins_set(dm_plugin_host *h, const char *name, const char *key, const char *value)
{
    raw_setting *s;

    if (!name || !*name || !key || !*key || !value) {
        return dm_err_make(h->pool, DM_E_INVALID, NULL,
                           "plugin \"%s\": a setting needs a plugin name, a key and a value",
                           name ? name : "");
    }
    if (key[0] == '_') {
        return dm_err_make(h->pool, DM_E_INVALID, NULL,
                           "plugin \"%s\": setting \"%s\": keys starting with '_' are reserved "
                           "for the server (_name, _public_url)",
                           name, key);
    }
    if (h->init_done) {
        return dm_err_make(h->pool, DM_E_INVALID, NULL,
                           "plugin \"%s\": setting \"%s\" given after the plugins were "
                           "initialised",
                           name, key);
    }
    s = apr_array_push(h->raw);
    s->name = apr_pstrdup(h->pool, name);
    s->key = apr_pstrdup(h->pool, key);
    s->value = apr_pstrdup(h->pool, value);
    return NULL;
}

/* Reads a file: setting (a secret, usually) whole; drops one trailing "\n". */
static dm_err *read_setting_file(apr_pool_t *p, const loaded *pl, const char *key, const char *path,
                                 const char **out)
{
    apr_file_t *f = NULL;
    apr_finfo_t fi;
    apr_status_t rv;
    apr_size_t got = 0;
    char *buf, ebuf[256];
    dm_err *e = NULL;

    rv = apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY, APR_OS_DEFAULT, p);
    if (rv == APR_SUCCESS) {
        rv = apr_file_info_get(&fi, APR_FINFO_TYPE | APR_FINFO_SIZE, f);
    }
    if (rv != APR_SUCCESS) {
        e = dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                        "plugin \"%s\" (%s): setting \"%s\": cannot read %s: %s", pl->pub.name,
                        pl->pub.path, key, path, apr_strerror(rv, ebuf, sizeof(ebuf)));
        goto cleanup;
    }
    if (fi.filetype != APR_REG || fi.size > SETTING_FILE_MAX) {
        e = dm_err_make(p, DM_E_INVALID, NULL,
                        "plugin \"%s\" (%s): setting \"%s\": %s is not a regular file of at "
                        "most 1 MiB",
                        pl->pub.name, pl->pub.path, key, path);
        goto cleanup;
    }
    buf = apr_palloc(p, (apr_size_t)fi.size + 1);
    if (fi.size > 0) {
        rv = apr_file_read_full(f, buf, (apr_size_t)fi.size, &got);
        if (rv != APR_SUCCESS && rv != APR_EOF) {
            e = dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                            "plugin \"%s\" (%s): setting \"%s\": cannot read %s: %s", pl->pub.name,
                            pl->pub.path, key, path, apr_strerror(rv, ebuf, sizeof(ebuf)));
            goto cleanup;
        }
    }
    if (memchr(buf, '\0', got)) {
        e = dm_err_make(p, DM_E_INVALID, NULL,
                        "plugin \"%s\" (%s): setting \"%s\": %s contains a NUL byte", pl->pub.name,
                        pl->pub.path, key, path);
        goto cleanup;
    }
    if (got > 0 && buf[got - 1] == '\n') {
        got--;
    }
    buf[got] = '\0';
    *out = buf;

cleanup:
    if (f) {
        apr_file_close(f);
    }
    return e;
}

static dm_err *resolve_setting(apr_pool_t *p, const loaded *pl, const raw_setting *s,
                               const char **out)
{
    if (!strncmp(s->value, "env:", 4)) {
        const char *var = s->value + 4, *v;
        if (!*var) {
            return dm_err_make(p, DM_E_INVALID, NULL,
                               "plugin \"%s\" (%s): setting \"%s\": \"env:\" names no variable",
                               pl->pub.name, pl->pub.path, s->key);
        }
        v = getenv(var);
        if (!v) {
            return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                               "plugin \"%s\" (%s): setting \"%s\": environment variable %s is "
                               "not set",
                               pl->pub.name, pl->pub.path, s->key, var);
        }
        *out = apr_pstrdup(p, v);
        return NULL;
    }
    if (!strncmp(s->value, "file:", 5)) {
        if (!s->value[5]) {
            return dm_err_make(p, DM_E_INVALID, NULL,
                               "plugin \"%s\" (%s): setting \"%s\": \"file:\" names no file",
                               pl->pub.name, pl->pub.path, s->key);
        }
        return read_setting_file(p, pl, s->key, s->value + 5, out);
    }
    *out = s->value;
    return NULL;
}

void dm_plugins_set_public_url(dm_plugin_host *h, const char *url)
{
    h->public_url = url && *url ? apr_pstrdup(h->pool, url) : NULL;
}

dm_err *dm_plugins_init_all(dm_plugin_host *h)
{
    apr_pool_t *p = h->pool;
    const raw_setting *raw = (const raw_setting *)h->raw->elts;
    loaded **pls = (loaded **)h->plugins->elts;
    dm_err *e;

    if (h->init_done) {
        return NULL;
    }
    /* 1. Settings: every one must name a declared plugin and resolve. */
    for (int i = 0; i < h->raw->nelts; i++) {
        loaded *pl = apr_hash_get(h->by_name, raw[i].name, APR_HASH_KEY_STRING);
        const char *v;
        if (!pl) {
            return dm_err_make(p, DM_E_INVALID, NULL,
                               "plugin \"%s\": setting \"%s\" is given, but no plugin of that "
                               "name is declared",
                               raw[i].name, raw[i].key);
        }
        e = resolve_setting(p, pl, &raw[i], &v);
        if (e) {
            return e;
        }
        apr_hash_set(pl->settings, raw[i].key, APR_HASH_KEY_STRING, v); /* the last one wins */
    }
    /* The reserved settings (ABI 1.2); dm_plugins_set refuses '_' keys, so
     * nothing in the configuration can shadow them. */
    for (int i = 0; i < h->plugins->nelts; i++) {
        apr_hash_set(pls[i]->settings, "_name", APR_HASH_KEY_STRING, pls[i]->pub.name);
        apr_hash_set(pls[i]->settings, "_public_url", APR_HASH_KEY_STRING, h->public_url);
    }
    /* 2. Required settings, for every plugin before any init() runs. */
    for (int i = 0; i < h->plugins->nelts; i++) {
        const char *const *req = pls[i]->pub.desc->required_settings;
        for (; req && *req; req++) {
            const char *v = apr_hash_get(pls[i]->settings, *req, APR_HASH_KEY_STRING);
            if (!v || !*v) {
                return dm_err_make(p, DM_E_INVALID, NULL,
                                   "plugin \"%s\" (%s): required setting \"%s\" is %s; add "
                                   "DeepMinePluginSet %s %s <value>",
                                   pls[i]->pub.name, pls[i]->pub.path, *req,
                                   v ? "empty" : "missing", pls[i]->pub.name, *req);
            }
        }
    }
    /* 3. init(), in declaration order. On a refusal the plugins already
     *    initialised stay so (a retry skips them) and are finished by the
     *    pool's cleanup, or by the caller. */
    for (int i = 0; i < h->plugins->nelts; i++) {
        loaded *pl = pls[i];
        const dm_plugin *d = pl->pub.desc;
        if (pl->pub.initialised) {
            continue;
        }
        if (d->init) {
            /* In the create pool: what init() allocates lives as long as the plugin. */
            dm_call *call = dm_plugins_call(h, &pl->pub, p);
            dm_message msg;
            dm_status st;

            memset(&msg, 0, sizeof(msg));
            call->in_init = 1;
            st = d->init(&host_table, call, &msg);
            call->in_init = 0;
            msg.text[sizeof(msg.text) - 1] = '\0';
            if (st != DM_OK) {
                return dm_err_make(p, st == DM_ERR_TEMPORARY ? DM_E_UNAVAILABLE : DM_E_INVALID,
                                   NULL, "plugin \"%s\" (%s): init failed (%s): %s", pl->pub.name,
                                   pl->pub.path, status_name(st),
                                   msg.text[0] ? msg.text : "no reason given");
            }
        }
        pl->pub.initialised = 1;
        dm_log(DM_L_NOTICE, "DM00100: plugin %s (%s %s %s) loaded (ABI %u.%u)", pl->pub.name,
               dm_plugin_kind_name(pl->pub.kind), d->name ? d->name : "(unnamed)",
               d->version ? d->version : "(no version)", (unsigned)d->abi_major,
               (unsigned)d->abi_minor);
    }
    h->init_done = 1;
    return NULL;
}

void dm_plugins_fini_all(dm_plugin_host *h)
{
    loaded **pls = (loaded **)h->plugins->elts;

    /* Reverse order: a plugin may have been set up on top of an earlier one. */
    for (int i = h->plugins->nelts - 1; i >= 0; i--) {
        loaded *pl = pls[i];
        if (!pl->pub.initialised) {
            continue;
        }
        pl->pub.initialised = 0;
        if (pl->pub.desc->fini) {
            pl->pub.desc->fini();
        }
        dm_log(DM_L_INFO, "plugin %s: finished", pl->pub.name);
    }
}

const dm_loaded_plugin *dm_plugins_get(const dm_plugin_host *h, const char *name)
{
    const loaded *pl = name ? apr_hash_get(h->by_name, name, APR_HASH_KEY_STRING) : NULL;
    return pl ? &pl->pub : NULL;
}

const apr_array_header_t *dm_plugins_all(const dm_plugin_host *h)
{
    return h->all;
}

dm_call *dm_plugins_call(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p)
{
    dm_call *call;

    /* Only records this host made: `pl` must be the head of a loaded. */
    if (!pl || apr_hash_get(h->by_name, pl->name, APR_HASH_KEY_STRING) != (const void *)pl) {
        return NULL;
    }
    call = apr_pcalloc(p, sizeof(*call));
    call->pool = p;
    call->pl = (const loaded *)pl;
    return call;
}

/* ---------------------------------------------------------------------- */
/* Calling plugins (ABI 1.2)                                               */
/* ---------------------------------------------------------------------- */

/* Headers the host sets on a plugin's page itself: a plugin may not replace
 * them (the security policy, the framing of the body) nor set cookies on
 * the site's origin. */
static const char *const host_owned_headers[] = {
    "Content-Type",
    "Content-Length",
    "Content-Encoding",
    "Transfer-Encoding",
    "Connection",
    "Keep-Alive",
    "Upgrade",
    "Trailer",
    "Set-Cookie",
    "Set-Cookie2",
    "Content-Security-Policy",
    "Content-Security-Policy-Report-Only",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "Referrer-Policy",
    "Strict-Transport-Security",
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Credentials",
    NULL,
};

/* A header name is an RFC 9110 token. */
static int is_token(dm_str s)
{
    static const char *const extra = "!#$%&'*+-.^_`|~";

    if (!s.ptr || s.len == 0 || s.len > 256) {
        return 0;
    }
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c != '\0' && strchr(extra, c)))) {
            return 0;
        }
    }
    return 1;
}

static int host_owns_header(dm_str name)
{
    for (const char *const *o = host_owned_headers; *o; o++) {
        if (strlen(*o) == name.len && strncasecmp(*o, name.ptr, name.len) == 0) {
            return 1;
        }
    }
    return 0;
}

/* A dm_str a plugin handed back: a length needs bytes. */
static int str_ok(dm_str s)
{
    return s.len == 0 || s.ptr != NULL;
}

static void end_msg(dm_message *msg)
{
    msg->text[sizeof(msg->text) - 1] = '\0';
}

int dm_plugins_offers_requests(const dm_loaded_plugin *pl)
{
    return pl && DM_HAS_FIELD(pl->desc, dm_plugin, handle_request) &&
           pl->desc->handle_request != NULL;
}

dm_status dm_plugins_handle_request(const dm_plugin_host *h, const dm_loaded_plugin *pl,
                                    apr_pool_t *p, const dm_plugin_request *req,
                                    dm_plugin_response *resp, dm_message *msg)
{
    dm_plugin_request in;
    dm_call *call;
    dm_status st;

    memset(msg, 0, sizeof(*msg));
    memset(resp, 0, sizeof(*resp));
    resp->size = sizeof(*resp);
    resp->status = 200;
    if (!pl || !pl->initialised || !dm_plugins_offers_requests(pl)) {
        set_msg(msg, "plugin %s serves no pages", pl ? pl->name : "(none)");
        return DM_ERR_UNSUPPORTED;
    }
    call = dm_plugins_call(h, pl, p);
    if (!call) {
        set_msg(msg, "plugin %s is not one this host loaded", pl->name);
        return DM_ERR_INTERNAL;
    }
    in = *req;
    in.size = sizeof(in);
    st = pl->desc->handle_request(call, &in, resp, msg);
    end_msg(msg);
    if (st != DM_OK) {
        if ((int)st < (int)DM_OK || (int)st > (int)DM_ERR_INTERNAL) {
            set_msg(msg, "plugin %s: handle_request returned the unknown status %d", pl->name,
                    (int)st);
            return DM_ERR_INTERNAL;
        }
        return st;
    }
    if (resp->status < 200 || resp->status > 599) {
        set_msg(msg, "plugin %s: handle_request answered the HTTP status %d", pl->name,
                resp->status);
        return DM_ERR_INTERNAL;
    }
    if (!str_ok(resp->content_type) || !str_ok(resp->body) ||
        has_crlf(resp->content_type.ptr, resp->content_type.len) ||
        (resp->n_headers && !resp->headers)) {
        set_msg(msg, "plugin %s: handle_request answered a malformed body or content type",
                pl->name);
        return DM_ERR_INTERNAL;
    }
    if (!resp->headers) {
        resp->n_headers = 0;
    }
    for (size_t i = 0; i < resp->n_headers; i++) {
        const dm_header *hd = &resp->headers[i];
        if (!is_token(hd->name) || !str_ok(hd->value) || has_crlf(hd->value.ptr, hd->value.len)) {
            set_msg(msg, "plugin %s: handle_request answered a malformed header %" APR_SIZE_T_FMT,
                    pl->name, (apr_size_t)i);
            return DM_ERR_INTERNAL;
        }
        if (host_owns_header(hd->name)) {
            set_msg(msg, "plugin %s: handle_request may not set the header %.*s", pl->name,
                    (int)hd->name.len, hd->name.ptr);
            return DM_ERR_INTERNAL;
        }
    }
    return DM_OK;
}

/* The kind's parse_webhook, or NULL (a mailer without delivery reports). */
static dm_status call_parse_webhook(const dm_loaded_plugin *pl, dm_call *call, dm_str body,
                                    const dm_header *headers, size_t n, dm_plugin_event *out,
                                    dm_message *msg)
{
    switch (pl->kind) {
    case DM_PLUGIN_PAYMENT: {
        const dm_payment_ops *o = pl->desc->ops;
        out->payment.size = sizeof(out->payment);
        return o->parse_webhook(call, body, headers, n, &out->payment, msg);
    }
    case DM_PLUGIN_KYC: {
        const dm_kyc_ops *o = pl->desc->ops;
        out->kyc.size = sizeof(out->kyc);
        return o->parse_webhook(call, body, headers, n, &out->kyc, msg);
    }
    case DM_PLUGIN_MAILER: {
        const dm_mailer_ops *o = pl->desc->ops;
        if (!COVERS(o, dm_mailer_ops, parse_webhook) || !o->parse_webhook) {
            set_msg(msg, "plugin %s receives no webhooks", pl->name);
            return DM_ERR_UNSUPPORTED;
        }
        out->mail.size = sizeof(out->mail);
        return o->parse_webhook(call, body, headers, n, &out->mail, msg);
    }
    }
    set_msg(msg, "plugin %s is of an unknown kind", pl->name);
    return DM_ERR_INTERNAL;
}

/* The event id of a filled event, and whether its strings are sound. */
static int event_ok(const dm_loaded_plugin *pl, const dm_plugin_event *ev, dm_str *id)
{
    switch (pl->kind) {
    case DM_PLUGIN_PAYMENT:
        *id = ev->payment.event_id;
        return str_ok(ev->payment.event_id) && str_ok(ev->payment.provider_ref) &&
               str_ok(ev->payment.order_id) && str_ok(ev->payment.currency) &&
               ev->payment.status >= DM_PAY_PAID && ev->payment.status <= DM_PAY_IGNORED;
    case DM_PLUGIN_KYC:
        *id = ev->kyc.event_id;
        return str_ok(ev->kyc.event_id) && str_ok(ev->kyc.member_id) && str_ok(ev->kyc.reason) &&
               ev->kyc.status >= DM_KYC_APPROVED && ev->kyc.status <= DM_KYC_PENDING;
    case DM_PLUGIN_MAILER:
        *id = ev->mail.event_id;
        return str_ok(ev->mail.event_id) && str_ok(ev->mail.message_id) &&
               str_ok(ev->mail.recipient) && ev->mail.type >= DM_MAIL_DELIVERED &&
               ev->mail.type <= DM_MAIL_OTHER;
    }
    return 0;
}

dm_status dm_plugins_webhook(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                             dm_str raw_body, const dm_header *headers, size_t n_headers,
                             dm_plugin_event *out, dm_message *msg)
{
    dm_call *call;
    dm_status st;
    dm_str id = {NULL, 0};

    memset(msg, 0, sizeof(*msg));
    memset(out, 0, sizeof(*out));
    if (!pl || !pl->initialised) {
        set_msg(msg, "plugin %s is not loaded", pl ? pl->name : "(none)");
        return DM_ERR_UNSUPPORTED;
    }
    call = dm_plugins_call(h, pl, p);
    if (!call) {
        set_msg(msg, "plugin %s is not one this host loaded", pl->name);
        return DM_ERR_INTERNAL;
    }
    if (!raw_body.ptr) {
        raw_body.ptr = "";
        raw_body.len = 0;
    }
    st = call_parse_webhook(pl, call, raw_body, headers, headers ? n_headers : 0, out, msg);
    end_msg(msg);
    if (st != DM_OK) {
        if ((int)st < (int)DM_OK || (int)st > (int)DM_ERR_INTERNAL) {
            set_msg(msg, "plugin %s: parse_webhook returned the unknown status %d", pl->name,
                    (int)st);
            return DM_ERR_INTERNAL;
        }
        return st;
    }
    if (!event_ok(pl, out, &id)) {
        set_msg(msg, "plugin %s: parse_webhook returned a malformed event", pl->name);
        return DM_ERR_INTERNAL;
    }
    if (id.len == 0) {
        set_msg(msg, "plugin %s: parse_webhook returned an event without an id", pl->name);
        return DM_ERR_INTERNAL;
    }
    return DM_OK;
}

/* ---------------------------------------------------------------------- */
/* Mailers (ABI 1.3)                                                       */
/* ---------------------------------------------------------------------- */

const char *dm_plugins_setting(const dm_loaded_plugin *pl, const char *key)
{
    /* pl comes from dm_plugins_get/dm_plugins_all: the head of a loaded. */
    const loaded *l = (const loaded *)pl;

    if (!pl || !key || !l->settings) {
        return NULL;
    }
    return apr_hash_get(l->settings, key, APR_HASH_KEY_STRING);
}

dm_status dm_plugins_send_mail(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                               const dm_mail *mail, const char **message_id,
                               uint32_t *retry_after_s, dm_message *msg)
{
    const dm_mailer_ops *o;
    dm_call *call;
    dm_mail m;
    dm_str id = {NULL, 0};
    dm_status st;

    memset(msg, 0, sizeof(*msg));
    *message_id = NULL;
    *retry_after_s = 0;
    if (!pl || !pl->initialised || pl->kind != DM_PLUGIN_MAILER) {
        set_msg(msg, "plugin %s is not a loaded mailer", pl ? pl->name : "(none)");
        return DM_ERR_UNSUPPORTED;
    }
    call = dm_plugins_call(h, pl, p);
    if (!call) {
        set_msg(msg, "plugin %s is not one this host loaded", pl->name);
        return DM_ERR_INTERNAL;
    }
    if (!mail) {
        set_msg(msg, "no message to send");
        return DM_ERR_INVALID;
    }
    m = *mail;
    m.size = sizeof(m);
    if (!m.headers) {
        m.n_headers = 0;
    }
    o = pl->desc->ops; /* check_ops made sure it covers send */
    st = o->send(call, &m, &id, msg);
    end_msg(msg);
    if ((int)st < (int)DM_OK || (int)st > (int)DM_ERR_INTERNAL) {
        set_msg(msg, "plugin %s: send returned the unknown status %d", pl->name, (int)st);
        return DM_ERR_INTERNAL;
    }
    if (st == DM_ERR_TEMPORARY && call->retry_after_set) {
        *retry_after_s = call->retry_after_s;
    }
    if (st != DM_OK) {
        /* The builder's reason is more precise than any plugin's summary. */
        if (st == DM_ERR_INVALID && call->mime_refusal) {
            set_msg(msg, "%s", call->mime_refusal);
        }
        if (!msg->text[0]) {
            set_msg(msg, "plugin %s: send failed (%s) without saying why", pl->name,
                    status_name(st));
        }
        return st;
    }
    if (!str_ok(id) || id.len == 0 || id.len > 998 || has_crlf(id.ptr, id.len)) {
        set_msg(msg, "plugin %s: send returned no usable message id", pl->name);
        return DM_ERR_INTERNAL;
    }
    *message_id = apr_pstrmemdup(p, id.ptr, id.len);
    return DM_OK;
}
