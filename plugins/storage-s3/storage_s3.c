/*
 * storage-s3 — a storage plugin for any S3-compatible object store (AWS S3,
 * Cloudflare R2, MinIO, …), signed with AWS Signature Version 4 by
 * libcurl's CURLOPT_AWS_SIGV4 (PROVIDERS.md §9; the README lists the facts
 * relied on and their sources).
 *
 * Why libcurl directly and not the host's http(): objects are streamed —
 * a put reads its body through the host's read callback while uploading,
 * a get hands each chunk to the host's write callback as it arrives —
 * and the host's http() takes and returns whole bodies in memory
 * (docs/decisions.md, "storage-s3 links libcurl").
 *
 * Invariants:
 * - All or nothing is S3's: a PUT creates the object only when the whole
 *   Content-Length body arrived. When the source fails, the upload is
 *   aborted (CURL_READFUNC_ABORT) and the server sees a short body; when
 *   the connection drops, likewise. The plugin never sends a shorter body
 *   with a matching Content-Length.
 * - A body of at most `buffer_bytes` (default 8 MiB) is read first and
 *   sent with its real SHA-256 as x-amz-content-sha256, so the store
 *   checks its integrity; a larger one is streamed with UNSIGNED-PAYLOAD
 *   (TLS protects it on the way). Either way the header is ours, so every
 *   curl since 7.86 signs the same thing.
 * - Objects live under "<prefix><key>" in `bucket`; list strips the prefix
 *   and skips objects whose names are not valid keys (a shared bucket may
 *   hold others).
 * - Per-instance state lives in the settings, read on every call; one curl
 *   easy handle per call, made after Apache forked. The only static is
 *   the host table.
 */
#include <curl/curl.h>
#include <deepmine/plugin.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define S3_VERSION "1.0.0"
#define KEY_MAX 512
#define ERR_BODY_MAX 8192
/* S3's limit for one PUT (multipart uploads are not implemented). */
#define SINGLE_PUT_MAX ((int64_t)5 * 1024 * 1024 * 1024)
#define BUFFER_DEFAULT ((int64_t)8 * 1024 * 1024)
#define BUFFER_MAX ((int64_t)15 * 1024 * 1024) /* host->alloc's promise is 16 MiB */
#define LIST_PAGES_MAX 100000
/* A page of 1000 keys (max-keys) of at most 512 bytes, with their sizes,
 * times, ETags and storage classes, fits easily. */
#define LIST_BODY_MAX ((size_t)4 * 1024 * 1024)

static const dm_host *host;

static void set_msg(dm_message *msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_msg(dm_message *msg, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg->text, sizeof(msg->text), fmt, ap);
    va_end(ap);
}

/* ---- settings ---- */

typedef struct s3cfg {
    char scheme[8];     /* "http" or "https" */
    char hostport[256]; /* "s3.eu-west-1.amazonaws.com", "127.0.0.1:9000" */
    const char *region, *bucket, *akid, *secret, *token, *prefix;
    int path_style;
    int64_t buffer_bytes;
} s3cfg;

static int bucket_ok(const char *b)
{
    size_t n = b ? strlen(b) : 0;

    if (n < 3 || n > 63) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-')) {
            return 0;
        }
    }
    return b[0] != '.' && b[0] != '-' && b[n - 1] != '.' && b[n - 1] != '-';
}

static int prefix_ok(const char *p)
{
    for (; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '/' || c == '.' || c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

static int plain(const char *s)
{
    for (; s && *s; s++) {
        if ((unsigned char)*s < 0x21 || (unsigned char)*s == 0x7f || *s == ':') {
            return 0;
        }
    }
    return 1;
}

/* Reads and checks every setting; DM_ERR_CONFIG with a sentence. */
static dm_status load_cfg(dm_call *call, s3cfg *c, dm_message *msg)
{
    const char *ep = host->setting(call, "endpoint");
    const char *ps = host->setting(call, "path_style");
    const char *bb = host->setting(call, "buffer_bytes");
    const char *rest, *end;
    size_t n;

    memset(c, 0, sizeof(*c));
    c->region = host->setting(call, "region");
    c->bucket = host->setting(call, "bucket");
    c->akid = host->setting(call, "access_key_id");
    c->secret = host->setting(call, "secret_access_key");
    c->token = host->setting(call, "session_token");
    c->prefix = host->setting(call, "prefix");
    if (!c->region || !*c->region) {
        c->region = "us-east-1";
    }
    if (!c->prefix) {
        c->prefix = "";
    }
    if (!ep || !*ep) {
        set_msg(msg, "the setting endpoint is not set (e.g. https://s3.eu-west-1.amazonaws.com)");
        return DM_ERR_CONFIG;
    }
    if (!strncmp(ep, "https://", 8)) {
        strcpy(c->scheme, "https");
        rest = ep + 8;
    } else if (!strncmp(ep, "http://", 7)) {
        strcpy(c->scheme, "http");
        rest = ep + 7;
    } else {
        set_msg(msg, "endpoint must start with https:// (or http://)");
        return DM_ERR_CONFIG;
    }
    end = rest + strcspn(rest, "/?#");
    n = (size_t)(end - rest);
    if (n == 0 || n >= sizeof(c->hostport) || (*end && strcmp(end, "/") != 0) ||
        memchr(rest, '@', n)) {
        set_msg(msg, "endpoint must be a scheme and a host[:port] only, without a path");
        return DM_ERR_CONFIG;
    }
    memcpy(c->hostport, rest, n);
    c->hostport[n] = '\0';
    if (!bucket_ok(c->bucket)) {
        set_msg(msg, "bucket must be 3 to 63 lower-case letters, digits, dots and hyphens");
        return DM_ERR_CONFIG;
    }
    if (!c->akid || !*c->akid || !plain(c->akid)) {
        set_msg(msg, "access_key_id is not set or not printable");
        return DM_ERR_CONFIG;
    }
    if (!c->secret || !*c->secret) {
        set_msg(msg, "secret_access_key is not set");
        return DM_ERR_CONFIG;
    }
    if (!plain(c->region) || strchr(c->region, '/')) {
        set_msg(msg, "region is not a region name");
        return DM_ERR_CONFIG;
    }
    if (!prefix_ok(c->prefix) || c->prefix[0] == '/' || strstr(c->prefix, "..") ||
        strlen(c->prefix) > 256) {
        set_msg(msg, "prefix may hold letters, digits and \"/._-\" only, no \"..\", no leading "
                     "\"/\", at most 256 bytes");
        return DM_ERR_CONFIG;
    }
    if (!ps || !*ps || !strcmp(ps, "no")) {
        c->path_style = 0;
    } else if (!strcmp(ps, "yes")) {
        c->path_style = 1;
    } else {
        set_msg(msg, "path_style must be yes or no");
        return DM_ERR_CONFIG;
    }
    c->buffer_bytes = BUFFER_DEFAULT;
    if (bb && *bb) {
        char *e = NULL;
        long long v = strtoll(bb, &e, 10);
        if (!e || *e || v < 0 || v > BUFFER_MAX) {
            set_msg(msg, "buffer_bytes must be a number of bytes from 0 to %lld",
                    (long long)BUFFER_MAX);
            return DM_ERR_CONFIG;
        }
        c->buffer_bytes = v;
    }
    if (c->token && !plain(c->token)) {
        set_msg(msg, "session_token is not printable");
        return DM_ERR_CONFIG;
    }
    return DM_OK;
}

/* "<scheme>://<host>/<bucket>/<prefix><key>" or the virtual-host form;
 * key NULL: the bucket itself. */
static char *url_of(dm_call *call, const s3cfg *c, const char *key, const char *query)
{
    size_t n = strlen(c->hostport) + strlen(c->bucket) + strlen(c->prefix) +
               (key ? strlen(key) : 0) + (query ? strlen(query) : 0) + 32;
    char *u = host->alloc(call, n);

    if (!u) {
        return NULL;
    }
    if (c->path_style) {
        snprintf(u, n, "%s://%s/%s/%s%s%s%s", c->scheme, c->hostport, c->bucket,
                 key ? c->prefix : "", key ? key : "", query ? "?" : "", query ? query : "");
    } else {
        snprintf(u, n, "%s://%s.%s/%s%s%s%s", c->scheme, c->bucket, c->hostport,
                 key ? c->prefix : "", key ? key : "", query ? "?" : "", query ? query : "");
    }
    return u;
}

/* ---- one request ---- */

typedef struct xfer {
    CURL *curl;
    /* upload: first the buffered head, then the host's source */
    const unsigned char *head;
    size_t head_len, head_off;
    dm_storage_read_fn read;
    void *rctx;
    dm_status read_st;
    /* download */
    dm_storage_write_fn write;
    void *wctx;
    int64_t *size_out;
    int size_told;
    int delivered; /* a chunk reached the host */
    dm_status write_st;
    /* the body of a non-2xx answer (or of a list) */
    char *body;
    size_t body_len, body_cap;
    int body_overflow;
} xfer;

static size_t on_read(char *buf, size_t size, size_t nitems, void *v)
{
    xfer *x = v;
    size_t cap = size * nitems, got = 0;
    dm_status st;

    if (x->head_off < x->head_len) {
        size_t n = x->head_len - x->head_off < cap ? x->head_len - x->head_off : cap;
        memcpy(buf, x->head + x->head_off, n);
        x->head_off += n;
        return n;
    }
    if (!x->read) {
        return 0;
    }
    st = x->read(x->rctx, buf, cap, &got);
    if (st != DM_OK) {
        x->read_st = st;
        return CURL_READFUNC_ABORT;
    }
    return got;
}

static int keep_body(xfer *x, const char *buf, size_t len)
{
    if (len > x->body_cap - x->body_len) {
        x->body_overflow = 1;
        return 0;
    }
    memcpy(x->body + x->body_len, buf, len);
    x->body_len += len;
    x->body[x->body_len] = '\0';
    return 1;
}

static size_t on_write(char *buf, size_t size, size_t nmemb, void *v)
{
    xfer *x = v;
    size_t len = size * nmemb;
    long status = 0;

    curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300 && x->write) {
        if (!x->size_told) {
            curl_off_t cl = -1;
            curl_easy_getinfo(x->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
            if (x->size_out && cl >= 0) {
                *x->size_out = (int64_t)cl;
            }
            x->size_told = 1;
        }
        x->delivered = 1;
        x->write_st = x->write(x->wctx, buf, len);
        return x->write_st == DM_OK ? len : 0;
    }
    /* An error document (or a list page): kept up to its cap. */
    if (!keep_body(x, buf, len) && !(status >= 200 && status < 300)) {
        return len; /* an over-long error body: keep its start, read on */
    }
    return x->body_overflow ? 0 : len;
}

/* The text of the first <tag>…</tag> after *from in body (XML entities
 * decoded), or NULL; *from moves past it. */
static char *xml_text(dm_call *call, const char *body, const char *end_of_body, const char **from,
                      const char *tag)
{
    char open[64], close[64];
    const char *s, *e;
    char *out, *o;

    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    s = strstr(*from, open);
    if (!s || s >= end_of_body) {
        return NULL;
    }
    s += strlen(open);
    e = strstr(s, close);
    if (!e || e > end_of_body) {
        return NULL;
    }
    *from = e + strlen(close);
    out = host->alloc(call, (size_t)(e - s) + 1);
    if (!out) {
        return NULL;
    }
    for (o = out; s < e;) {
        if (*s != '&') {
            *o++ = *s++;
            continue;
        }
        if (!strncmp(s, "&amp;", 5)) {
            *o++ = '&';
            s += 5;
        } else if (!strncmp(s, "&lt;", 4)) {
            *o++ = '<';
            s += 4;
        } else if (!strncmp(s, "&gt;", 4)) {
            *o++ = '>';
            s += 4;
        } else if (!strncmp(s, "&quot;", 6)) {
            *o++ = '"';
            s += 6;
        } else if (!strncmp(s, "&apos;", 6)) {
            *o++ = '\'';
            s += 6;
        } else if (s[1] == '#') {
            /* &#NN; or &#xHH;: only ASCII is meaningful in a key; else '?' */
            char *semi = NULL;
            long v = s[2] == 'x' ? strtol(s + 3, &semi, 16) : strtol(s + 2, &semi, 10);
            if (!semi || semi >= e || *semi != ';') {
                *o++ = *s++;
                continue;
            }
            *o++ = v > 0 && v < 128 ? (char)v : '?';
            s = semi + 1;
        } else {
            *o++ = *s++;
        }
    }
    *o = '\0';
    return out;
}

/* A status and a message for a response that is not 2xx. */
static dm_status answer_error(dm_call *call, const s3cfg *c, const char *what, long status,
                              const xfer *x, dm_message *msg)
{
    const char *from = x->body ? x->body : "";
    const char *end = from + x->body_len;
    const char *code = x->body ? xml_text(call, from, end, &from, "Code") : NULL;
    const char *text;

    from = x->body ? x->body : "";
    text = x->body ? xml_text(call, from, end, &from, "Message") : NULL;
    if (!code) {
        code = "";
    }
    if (!text) {
        text = "";
    }
    if (status == 403 && (!strcmp(code, "SignatureDoesNotMatch") ||
                          !strcmp(code, "InvalidAccessKeyId") || !strcmp(code, "AccessDenied") ||
                          !strcmp(code, "InvalidToken") || !strcmp(code, "ExpiredToken"))) {
        set_msg(msg,
                "%s: the store refused our credentials (%s): check access_key_id, "
                "secret_access_key and region",
                what, code);
        return DM_ERR_CONFIG;
    }
    if (status == 404 && !strcmp(code, "NoSuchBucket")) {
        set_msg(msg, "%s: the bucket %s does not exist at %s (NoSuchBucket)", what, c->bucket,
                c->hostport);
        return DM_ERR_CONFIG;
    }
    if (status == 404 && (!strcmp(code, "NoSuchKey") || !*code)) {
        set_msg(msg, "%s: no such object", what);
        return DM_ERR_NOT_FOUND;
    }
    if (status == 301 || (status == 400 && !strcmp(code, "AuthorizationHeaderMalformed")) ||
        !strcmp(code, "PermanentRedirect")) {
        set_msg(msg, "%s: the bucket is in another region or needs another endpoint (%ld %s)", what,
                status, code);
        return DM_ERR_CONFIG;
    }
    set_msg(msg, "%s: the store answered %ld%s%s%s%.120s", what, status, *code ? " " : "", code,
            *text ? ": " : "", text);
    if (status == 429 || status >= 500 || !strcmp(code, "SlowDown") ||
        !strcmp(code, "RequestTimeout")) {
        return DM_ERR_TEMPORARY;
    }
    return status == 403 ? DM_ERR_CONFIG : DM_ERR_PERMANENT;
}

/* Appends a header line; 0 when out of memory (the list is kept). */
static int add_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);

    if (!n) {
        return 0;
    }
    *list = n;
    return 1;
}

/* Runs one request. method "GET", "PUT", "DELETE"; for PUT, x holds the
 * body and upload_len its length; payload_hash is x-amz-content-sha256's
 * value. *status_out is the HTTP status (0: none). */
static dm_status s3_request(dm_call *call, const s3cfg *c, const char *what, const char *method,
                            const char *url, xfer *x, int64_t upload_len, const char *content_type,
                            const char *payload_hash, long *status_out, dm_message *msg)
{
    struct curl_slist *hdrs = NULL;
    char line[512], sigv4[160];
    int ok;
    CURLcode rc;
    long status = 0;
    dm_status st = DM_OK;

    *status_out = 0;
    if (!url) {
        set_msg(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    x->curl = curl_easy_init();
    if (!x->curl) {
        set_msg(msg, "cannot make a curl handle");
        return DM_ERR_TEMPORARY;
    }
    if (!x->body_cap) {
        x->body_cap = ERR_BODY_MAX;
    }
    x->body = host->alloc(call, x->body_cap + 1);
    if (!x->body) {
        curl_easy_cleanup(x->curl);
        set_msg(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    x->body[0] = '\0';
    snprintf(line, sizeof(line), "x-amz-content-sha256: %s", payload_hash);
    ok = add_header(&hdrs, line);
    if (content_type) {
        snprintf(line, sizeof(line), "Content-Type: %s", content_type);
        ok = ok && add_header(&hdrs, line);
    }
    if (c->token && *c->token) {
        size_t n = strlen(c->token) + 32;
        char *t = host->alloc(call, n);
        if (t) {
            snprintf(t, n, "x-amz-security-token: %s", c->token);
        }
        ok = ok && t && add_header(&hdrs, t);
    }
    /* (No "Expect:" to turn 100-continue off: curl 7.88 signs an emptied
     * header it then does not send, and every store refuses the signature.) */
    if (!ok) {
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(x->curl);
        set_msg(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:s3", c->region);
    curl_easy_setopt(x->curl, CURLOPT_URL, url);
    curl_easy_setopt(x->curl, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(x->curl, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(x->curl, CURLOPT_AWS_SIGV4, sigv4);
    curl_easy_setopt(x->curl, CURLOPT_USERNAME, c->akid);
    curl_easy_setopt(x->curl, CURLOPT_PASSWORD, c->secret);
    curl_easy_setopt(x->curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(x->curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    /* No total timeout (objects may be large): a transfer slower than one
     * byte a second for 30 s is dead. */
    curl_easy_setopt(x->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(x->curl, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(x->curl, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(x->curl, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->curl, CURLOPT_USERAGENT, "deepmine-storage-s3/" S3_VERSION);
    if (!strcmp(method, "PUT")) {
        curl_easy_setopt(x->curl, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(x->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)upload_len);
        curl_easy_setopt(x->curl, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(x->curl, CURLOPT_READDATA, x);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(x->curl, CURLOPT_CUSTOMREQUEST, method);
    }
    rc = curl_easy_perform(x->curl);
    curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
    *status_out = status;
    if (x->read_st != DM_OK) {
        set_msg(msg, "%s: aborted, its source failed", what);
        st = x->read_st;
    } else if (x->write_st != DM_OK) {
        set_msg(msg, "%s: stopped by its reader", what);
        st = x->write_st;
    } else if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && x->body_overflow)) {
        set_msg(msg, "%s: the connection to %s failed: %s", what, c->hostport,
                curl_easy_strerror(rc));
        st = DM_ERR_TEMPORARY;
    } else if (status < 200 || status >= 300) {
        st = answer_error(call, c, what, status, x, msg);
    } else if (x->body_overflow) {
        set_msg(msg, "%s: the answer is longer than %zu bytes", what, x->body_cap);
        st = DM_ERR_PERMANENT;
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(x->curl);
    x->curl = NULL;
    return st;
}

/* ---- the plugin's functions ---- */

static dm_status s3_put(dm_call *call, const char *key, const char *content_type, int64_t length,
                        dm_storage_read_fn read, void *ctx, dm_message *msg)
{
    s3cfg c;
    xfer x;
    unsigned char *buf = NULL, digest[32];
    size_t have = 0;
    const char *hash = "UNSIGNED-PAYLOAD";
    char what[KEY_MAX + 32];
    long status;
    dm_status st = load_cfg(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    snprintf(what, sizeof(what), "put %s", key);
    if (length > SINGLE_PUT_MAX) {
        set_msg(msg, "%s: %lld bytes is over S3's single PUT limit of 5 GiB", what,
                (long long)length);
        return DM_ERR_INVALID;
    }
    memset(&x, 0, sizeof(x));
    /* A body that fits the buffer is read first and sent with its hash. */
    if (length <= c.buffer_bytes) {
        buf = host->alloc(call, (size_t)length + 1);
        if (!buf) {
            set_msg(msg, "out of memory");
            return DM_ERR_TEMPORARY;
        }
        for (;;) {
            size_t got = 0;
            /* one byte more than announced: a longer source is caught */
            st = read(ctx, buf + have, (size_t)length + 1 - have, &got);
            if (st != DM_OK) {
                set_msg(msg, "%s: aborted, its source failed", what);
                return st;
            }
            if (got == 0) {
                break;
            }
            have += got;
            if (have > (size_t)length) {
                set_msg(msg, "%s: the source gave more than %lld bytes", what, (long long)length);
                return DM_ERR_INVALID;
            }
        }
        if (have != (size_t)length) {
            set_msg(msg, "%s: the source gave %zu of %lld bytes", what, have, (long long)length);
            return DM_ERR_INVALID;
        }
        host->sha256(buf, have, digest);
        hash = host->hex_encode(call, digest, sizeof(digest));
        if (!hash) {
            set_msg(msg, "out of memory");
            return DM_ERR_TEMPORARY;
        }
        x.head = buf;
        x.head_len = have;
    } else {
        x.read = read;
        x.rctx = ctx;
    }
    st = s3_request(call, &c, what, "PUT", url_of(call, &c, key, NULL), &x, length,
                    content_type ? content_type : "application/octet-stream", hash, &status, msg);
    if (st == DM_ERR_NOT_FOUND) {
        set_msg(msg, "%s: the store answered 404 to a PUT", what);
        st = DM_ERR_CONFIG;
    }
    return st;
}

static dm_status s3_get(dm_call *call, const char *key, dm_storage_write_fn write, void *ctx,
                        int64_t *size_out, dm_message *msg)
{
    s3cfg c;
    xfer x;
    char what[KEY_MAX + 32];
    long status;
    dm_status st = load_cfg(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    snprintf(what, sizeof(what), "get %s", key);
    memset(&x, 0, sizeof(x));
    x.write = write;
    x.wctx = ctx;
    x.size_out = size_out;
    /* e3b0…: the SHA-256 of the empty body of a GET */
    st = s3_request(call, &c, what, "GET", url_of(call, &c, key, NULL), &x, 0, NULL,
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", &status,
                    msg);
    if (st == DM_OK && !x.size_told && size_out) {
        *size_out = 0; /* an empty object: no chunk came */
    }
    return st;
}

static dm_status s3_remove(dm_call *call, const char *key, dm_message *msg)
{
    s3cfg c;
    xfer x;
    char what[KEY_MAX + 32];
    long status;
    dm_status st = load_cfg(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    snprintf(what, sizeof(what), "remove %s", key);
    memset(&x, 0, sizeof(x));
    st = s3_request(call, &c, what, "DELETE", url_of(call, &c, key, NULL), &x, 0, NULL,
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", &status,
                    msg);
    if (st == DM_ERR_NOT_FOUND) {
        msg->text[0] = '\0';
        return DM_OK;
    }
    return st;
}

/* n decimal digits at s, or -1. */
static int digits(const char *s, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* "2026-12-06T10:00:00.000Z" → Unix seconds; 0 when unreadable. */
static int64_t iso_time(const char *s)
{
    struct tm tm;
    int y, mo, d, h, mi, se;

    if (!s || strlen(s) < 19 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':') {
        return 0;
    }
    y = digits(s, 4);
    mo = digits(s + 5, 2);
    d = digits(s + 8, 2);
    h = digits(s + 11, 2);
    mi = digits(s + 14, 2);
    se = digits(s + 17, 2);
    if (y < 0 || mo < 1 || d < 1 || h < 0 || mi < 0 || se < 0) {
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    return (int64_t)timegm(&tm);
}

static int key_ok(const char *k)
{
    size_t n = strlen(k);

    if (n == 0 || n > KEY_MAX || k[0] == '/' || k[n - 1] == '/' || strstr(k, "..") ||
        strstr(k, "//") || !strcmp(k, ".") || !strncmp(k, "./", 2) || strstr(k, "/./") ||
        (n >= 2 && !strcmp(k + n - 2, "/."))) {
        return 0;
    }
    return prefix_ok(k);
}

static dm_status s3_list(dm_call *call, const char *prefix, dm_storage_each_fn each, void *ctx,
                         dm_message *msg)
{
    s3cfg c;
    char *full, *enc, *token_enc = NULL, *query;
    const char *token = NULL;
    size_t plen;
    CURL *esc;
    dm_status st = load_cfg(call, &c, msg);

    if (st != DM_OK) {
        return st;
    }
    plen = strlen(c.prefix);
    full = host->alloc(call, plen + strlen(prefix) + 1);
    esc = curl_easy_init();
    if (!full || !esc) {
        if (esc) {
            curl_easy_cleanup(esc);
        }
        set_msg(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    strcpy(full, c.prefix);
    strcat(full, prefix);
    enc = curl_easy_escape(esc, full, 0);
    for (int page = 0; st == DM_OK && page < LIST_PAGES_MAX; page++) {
        xfer x;
        long status;
        const char *from, *end;
        const char *truncated, *next;
        char *item;
        size_t qn;

        if (!enc) {
            set_msg(msg, "out of memory");
            st = DM_ERR_TEMPORARY;
            break;
        }
        /* The canonical query: names sorted, values percent-encoded. */
        qn = strlen(enc) + (token_enc ? strlen(token_enc) : 0) + 64;
        query = host->alloc(call, qn);
        if (!query) {
            set_msg(msg, "out of memory");
            st = DM_ERR_TEMPORARY;
            break;
        }
        snprintf(query, qn, "%s%s%slist-type=2&max-keys=1000&prefix=%s",
                 token_enc ? "continuation-token=" : "", token_enc ? token_enc : "",
                 token_enc ? "&" : "", enc);
        memset(&x, 0, sizeof(x));
        x.body_cap = LIST_BODY_MAX;
        st = s3_request(call, &c, "list", "GET", url_of(call, &c, NULL, query), &x, 0, NULL,
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", &status,
                        msg);
        if (st == DM_ERR_NOT_FOUND) {
            set_msg(msg, "list: the store answered 404 (no such bucket?)");
            st = DM_ERR_CONFIG;
        }
        if (st != DM_OK) {
            break;
        }
        if (!strstr(x.body, "<ListBucketResult")) {
            set_msg(msg, "list: the store's answer is not a ListBucketResult");
            st = DM_ERR_PERMANENT;
            break;
        }
        end = x.body + x.body_len;
        from = x.body;
        while (st == DM_OK && (item = xml_text(call, x.body, end, &from, "Contents")) != NULL) {
            const char *f = item, *iend = item + strlen(item);
            const char *k = xml_text(call, item, iend, &f, "Key");
            const char *sz, *lm;
            f = item;
            sz = xml_text(call, item, iend, &f, "Size");
            f = item;
            lm = xml_text(call, item, iend, &f, "LastModified");
            if (!k || strncmp(k, c.prefix, plen) != 0 || !key_ok(k + plen) ||
                strncmp(k + plen, prefix, strlen(prefix)) != 0) {
                continue; /* not one of ours */
            }
            st = each(ctx, k + plen, sz ? strtoll(sz, NULL, 10) : 0, iso_time(lm));
            if (st != DM_OK) {
                set_msg(msg, "list stopped by its caller");
            }
        }
        if (st != DM_OK) {
            break;
        }
        from = x.body;
        truncated = xml_text(call, x.body, end, &from, "IsTruncated");
        if (!truncated || strcmp(truncated, "true") != 0) {
            break;
        }
        from = x.body;
        next = xml_text(call, x.body, end, &from, "NextContinuationToken");
        if (!next || !*next || (token && !strcmp(next, token))) {
            set_msg(msg, "list: the store says there is more but gives no new token");
            st = DM_ERR_PERMANENT;
            break;
        }
        token = next;
        if (token_enc) {
            curl_free(token_enc);
        }
        token_enc = curl_easy_escape(esc, token, 0);
    }
    if (token_enc) {
        curl_free(token_enc);
    }
    if (enc) {
        curl_free(enc);
    }
    curl_easy_cleanup(esc);
    return st;
}

/* ---- the plugin ---- */

static const char *const required[] = {"endpoint", "bucket", "access_key_id", "secret_access_key",
                                       NULL};

static dm_status s3_init(const dm_host *h, dm_call *call, dm_message *msg)
{
    s3cfg c;
    const curl_version_info_data *v;
    dm_status st;

    host = h;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        set_msg(msg, "libcurl cannot start");
        return DM_ERR_INTERNAL;
    }
    v = curl_version_info(CURLVERSION_NOW);
    if (!v || v->version_num < 0x075600) {
        set_msg(msg,
                "storage-s3 needs libcurl 7.86 or later (CURLOPT_AWS_SIGV4 with our own "
                "x-amz-content-sha256); this one is %s",
                v ? v->version : "unknown");
        return DM_ERR_CONFIG;
    }
    st = load_cfg(call, &c, msg);
    if (st != DM_OK) {
        return st;
    }
    h->log(call, DM_LOG_INFO,
           c.path_style ? "objects in an S3 bucket (path style)"
                        : "objects in an S3 bucket (virtual-host style)");
    return DM_OK;
}

static void s3_fini(void)
{
    curl_global_cleanup();
}

static dm_status s3_health(dm_call *call, dm_message *msg)
{
    s3cfg c;
    return load_cfg(call, &c, msg);
}

static const dm_storage_ops ops = {
    .size = sizeof(dm_storage_ops),
    .put = s3_put,
    .get = s3_get,
    .remove = s3_remove,
    .list = s3_list,
};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_STORAGE,
    .name = "storage-s3",
    .version = S3_VERSION,
    .required_settings = required,
    .init = s3_init,
    .fini = s3_fini,
    .ops = &ops,
    .health = s3_health,
    .handle_request = NULL,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *h)
{
    if (!DM_HAS_FIELD(h, dm_host, hex_encode)) {
        return NULL;
    }
    return &desc;
}
