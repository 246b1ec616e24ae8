/*
 * host_services.c — the host table handed to plugins (see host_services.h
 * and the contract of each function in deepmine/plugin.h).
 *
 * Invariants:
 * - Memory a service hands a plugin lives in the pool of its dm_call: the
 *   call's pool, or the plugin's own during init().
 * - A service reads a field of a plugin structure (dm_http_request,
 *   dm_http_response, dm_mail) only when the structure's size covers it, so
 *   plugins built against an older or a newer minor are served alike.
 * - jansson's and libsodium's own allocations never leave a service: they
 *   are copied into call memory and freed on the way out.
 */
#include "base/rsa.h"
#include "plugins/host_services.h"

#include <apr_hash.h>
#include <apr_strings.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mime.h"
#include "plugins/call.h"
#include "plugins/http_client.h"

/* Limits of the host table (see deepmine/plugin.h). */
#define ALLOC_MAX ((size_t)16 * 1024 * 1024)
/* The longest wait a plugin may ask for with retry_after: a day. */
#define RETRY_AFTER_MAX 86400u

dm_err *dm_host_services_init(apr_pool_t *p)
{
    dm_err *e = dm_http_client_init(p);

    if (e) {
        return e;
    }
    if (sodium_init() < 0) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                           "plugin host: libsodium cannot be initialised");
    }
    return NULL;
}

/* ---- logging, settings, memory ---- */

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

/* ---- HTTP (http_client.h) ---- */

static dm_status host_http(dm_call *call, const dm_http_request *req, dm_http_response *resp,
                           dm_message *msg)
{
    dm_http_client_request in;
    dm_http_client_response out;
    dm_err *e;

    if (!call || !call->pool || !req || !resp) {
        dm_call_msg(msg, "http: called without a call, a request or a response");
        return DM_ERR_INVALID;
    }
    if (!DM_COVERS(resp, dm_http_response, status)) {
        dm_call_msg(msg, "http: dm_http_response.size (%u) does not cover status",
                    (unsigned)resp->size);
        return DM_ERR_INVALID;
    }
    resp->status = 0;
    if (!DM_COVERS(req, dm_http_request, url) || !req->url || !*req->url) {
        dm_call_msg(msg, "http: the request has no url");
        return DM_ERR_INVALID;
    }
    /* Only what the plugin's dm_http_request covers; the rest stays empty. */
    memset(&in, 0, sizeof(in));
    in.method = req->method;
    in.url = req->url;
    if (DM_COVERS(req, dm_http_request, n_headers) && req->headers) {
        in.headers = req->headers;
        in.n_headers = req->n_headers;
    }
    if (DM_COVERS(req, dm_http_request, body)) {
        in.body = req->body;
    }
    if (DM_COVERS(req, dm_http_request, timeout_ms)) {
        in.timeout_ms = req->timeout_ms;
    }
    in.user_agent = apr_psprintf(call->pool, "mod_deepmine (plugin %s)", call->pl->pub.name);

    e = dm_http_client_perform(call->pool, &in, &out);
    if (e) {
        dm_call_msg(msg, "%s", e->message);
        return e->code == DM_E_INVALID       ? DM_ERR_INVALID
               : e->code == DM_E_UNAVAILABLE ? DM_ERR_TEMPORARY
                                             : DM_ERR_INTERNAL;
    }
    resp->status = out.status;
    if (DM_COVERS(resp, dm_http_response, body)) {
        resp->body = out.body;
    }
    if (DM_COVERS(resp, dm_http_response, n_headers)) {
        resp->headers = out.headers;
        resp->n_headers = out.n_headers;
    }
    return DM_OK;
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

static void host_hmac_sha512(const void *key, size_t key_len, const void *data, size_t len,
                             unsigned char out[64])
{
    crypto_auth_hmacsha512_state st;

    crypto_auth_hmacsha512_init(&st, key, key_len);
    crypto_auth_hmacsha512_update(&st, data, len);
    crypto_auth_hmacsha512_final(&st, out);
    sodium_memzero(&st, sizeof(st));
}

static void host_sha512(const void *data, size_t len, unsigned char out[64])
{
    crypto_hash_sha512(out, data, len);
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

static apr_status_t json_root_free(void *root)
{
    json_decref(root);
    return APR_SUCCESS;
}

/* json's tree: the call's last one when the text is the same bytes, else
 * parsed now (and kept with the call's pool). NULL when it is not JSON. */
static json_t *parsed_json(dm_call *call, dm_str json)
{
    json_t *root;

    if (call->json_root && call->json_len == json.len &&
        (json.len == 0 || memcmp(call->json_text, json.ptr, json.len) == 0)) {
        return call->json_root;
    }
    root = json_loadb(json.ptr, json.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!root) {
        return NULL;
    }
    if (call->json_root) { /* one tree per call at a time */
        apr_pool_cleanup_kill(call->pool, call->json_root, json_root_free);
        json_decref(call->json_root);
    }
    apr_pool_cleanup_register(call->pool, root, json_root_free, apr_pool_cleanup_null);
    call->json_text = apr_pmemdup(call->pool, json.ptr, json.len ? json.len : 1);
    call->json_len = json.len;
    call->json_root = root;
    return root;
}

static const char *host_json_get(dm_call *call, dm_str json, const char *path, size_t *out_len)
{
    json_t *root, *v;
    const char *out = NULL;

    if (!call || !json.ptr) {
        return NULL;
    }
    root = parsed_json(call, json);
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
    .rsa_sha256_verify = dm_rsa_sha256_verify,
    .hmac_sha512 = host_hmac_sha512,
    .sha512 = host_sha512,
};

const dm_host *dm_host_services(void)
{
    return &host_table;
}
