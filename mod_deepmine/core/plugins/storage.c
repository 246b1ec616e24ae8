/*
 * storage.c — typed calls into storage plugins (see storage.h).
 *
 * The loader (check_ops in plugin_host.c) has made sure that a storage
 * plugin's table covers put, get, remove and list and that all four are
 * set. Every callback a plugin receives is the host's own wrapper around
 * the caller's: it counts bytes and keeps the first failure, so that what
 * the plugin did can be checked against what the caller asked for.
 */
#include "plugins/storage.h"

#include <apr_strings.h>
#include <string.h>

#include "plugins/call.h"

static const dm_storage_ops *ops_of(const dm_loaded_plugin *pl)
{
    return pl->desc->ops;
}

static int key_byte_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' ||
           c == '.' || c == '_' || c == '-';
}

/* The rules of storage.h; a prefix may end with "/" and be empty. */
static int name_ok(const char *s, int as_prefix)
{
    size_t n = s ? strnlen(s, DM_STORAGE_KEY_MAX + 1) : 0;
    size_t seg = 0; /* start of the current segment */

    if (!s || n > DM_STORAGE_KEY_MAX || (n == 0 && !as_prefix)) {
        return 0;
    }
    if (n == 0) {
        return 1;
    }
    if (s[0] == '/' || strstr(s, "..") || strstr(s, "//")) {
        return 0;
    }
    for (size_t i = 0; i <= n; i++) {
        if (i < n && !key_byte_ok(s[i])) {
            return 0;
        }
        if (i == n || s[i] == '/') {
            if (i - seg == 1 && s[seg] == '.') {
                return 0;
            }
            seg = i + 1;
        }
    }
    return as_prefix || s[n - 1] != '/';
}

int dm_storage_key_ok(const char *key)
{
    return name_ok(key, 0);
}

int dm_storage_prefix_ok(const char *prefix)
{
    return name_ok(prefix, 1);
}

const dm_loaded_plugin *dm_storage_plugin(const dm_plugin_host *h, const char *name,
                                          const char **why)
{
    const apr_array_header_t *all;
    const dm_loaded_plugin *only = NULL;
    int n = 0;

    *why = NULL;
    if (!h) {
        *why = "no plugins are loaded";
        return NULL;
    }
    if (name && *name) {
        const dm_loaded_plugin *pl = dm_plugins_get(h, name);
        if (!pl || pl->kind != DM_PLUGIN_STORAGE || !pl->initialised) {
            *why = "the configured storage (DeepMineStorage) is not a loaded storage plugin";
            return NULL;
        }
        return pl;
    }
    all = dm_plugins_all(h);
    for (int i = 0; all && i < all->nelts; i++) {
        const dm_loaded_plugin *pl = APR_ARRAY_IDX(all, i, const dm_loaded_plugin *);
        if (pl->kind == DM_PLUGIN_STORAGE && pl->initialised) {
            only = pl;
            n++;
        }
    }
    if (n != 1) {
        *why = n ? "several storage plugins are loaded and DeepMineStorage chooses none"
                 : "no storage plugin is loaded";
        return NULL;
    }
    return only;
}

/* ---- put ---- */

typedef struct put_source {
    dm_storage_read_fn read;
    void *ctx;
    int64_t left;
    dm_status st;    /* the first failure, sticky */
    const char *why; /* what went wrong with the source, NULL: its own status */
} put_source;

static dm_status put_read(void *v, void *buf, size_t cap, size_t *got)
{
    put_source *s = v;
    size_t want, n = 0;
    dm_status st;

    *got = 0;
    if (s->st != DM_OK) {
        return s->st;
    }
    if (!buf || cap == 0) {
        s->why = "the plugin asked for bytes into no buffer";
        return s->st = DM_ERR_INTERNAL;
    }
    if (s->left == 0) {
        /* The end: the source must say so too. */
        char probe;
        st = s->read(s->ctx, &probe, 1, &n);
        if (st != DM_OK) {
            return s->st = st;
        }
        if (n > 0) {
            s->why = "the source gave more bytes than the announced length";
            return s->st = DM_ERR_INVALID;
        }
        return DM_OK;
    }
    want = (uint64_t)s->left < (uint64_t)cap ? (size_t)s->left : cap;
    st = s->read(s->ctx, buf, want, &n);
    if (st != DM_OK) {
        return s->st = st;
    }
    if (n > want) {
        s->why = "the source gave more bytes than asked for";
        return s->st = DM_ERR_INTERNAL;
    }
    if (n == 0) {
        s->why = "the source ended before the announced length";
        return s->st = DM_ERR_INVALID;
    }
    s->left -= (int64_t)n;
    *got = n;
    return DM_OK;
}

dm_status dm_storage_put(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                         const char *key, const char *content_type, int64_t length,
                         dm_storage_read_fn read, void *ctx, dm_message *msg)
{
    dm_call *call;
    put_source src;
    dm_status st;

    st = dm_call_begin(h, pl, p, DM_PLUGIN_STORAGE, "storage", &call, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!dm_storage_key_ok(key)) {
        dm_call_msg(msg, "storage key is not valid (letters, digits and \"/._-\" only)");
        return DM_ERR_INVALID;
    }
    if (length < 0 || !read) {
        dm_call_msg(msg, "storage put of %s without a length or a source", key);
        return DM_ERR_INVALID;
    }
    if (!content_type || !*content_type ||
        dm_call_has_crlf(content_type, strnlen(content_type, 256)) ||
        strnlen(content_type, 256) > 255) {
        content_type = "application/octet-stream";
    }
    memset(&src, 0, sizeof(src));
    src.read = read;
    src.ctx = ctx;
    src.left = length;
    st = ops_of(pl)->put(call, key, content_type, length, put_read, &src, msg);
    st = dm_call_end(pl, "put", st, msg);
    if (src.st != DM_OK) {
        /* The source failed: its status wins, whatever the plugin said. */
        if (st == DM_OK) {
            dm_call_msg(msg, "plugin %s: put of %s returned ok after its source failed", pl->name,
                        key);
            return DM_ERR_INTERNAL;
        }
        if (src.why) {
            dm_call_msg(msg, "storage put of %s aborted: %s", key, src.why);
        }
        return src.st;
    }
    if (st != DM_OK) {
        if (!msg->text[0]) {
            dm_call_msg(msg, "plugin %s: put of %s failed (%s) without saying why", pl->name, key,
                        dm_call_status_name(st));
        }
        return st;
    }
    if (src.left != 0) {
        dm_call_msg(msg, "plugin %s: put of %s returned ok without reading every byte", pl->name,
                    key);
        return DM_ERR_INTERNAL;
    }
    return DM_OK;
}

typedef struct mem_source {
    const unsigned char *buf;
    size_t len, off;
} mem_source;

static dm_status mem_read(void *v, void *buf, size_t cap, size_t *got)
{
    mem_source *m = v;
    size_t n = m->len - m->off < cap ? m->len - m->off : cap;

    if (n) {
        memcpy(buf, m->buf + m->off, n);
    }
    m->off += n;
    *got = n;
    return DM_OK;
}

dm_status dm_storage_put_buffer(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                                const char *key, const char *content_type, const void *buf,
                                size_t len, dm_message *msg)
{
    mem_source m = {buf, buf ? len : 0, 0};

    return dm_storage_put(h, pl, p, key, content_type, (int64_t)m.len, mem_read, &m, msg);
}

/* ---- get ---- */

typedef struct get_sink {
    dm_storage_write_fn write;
    void *ctx;
    int64_t got;
    dm_status st; /* the sink's first failure, sticky */
} get_sink;

static dm_status get_write(void *v, const void *buf, size_t len)
{
    get_sink *s = v;
    dm_status st;

    if (s->st != DM_OK) {
        return s->st;
    }
    if (len == 0) {
        return DM_OK;
    }
    if (!buf) {
        return s->st = DM_ERR_INTERNAL;
    }
    st = s->write(s->ctx, buf, len);
    if (st != DM_OK) {
        return s->st = st;
    }
    s->got += (int64_t)len;
    return DM_OK;
}

dm_status dm_storage_get(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                         const char *key, dm_storage_write_fn write, void *ctx, int64_t *size,
                         dm_message *msg)
{
    dm_call *call;
    get_sink sink;
    int64_t announced = -1;
    dm_status st;

    if (size) {
        *size = 0;
    }
    st = dm_call_begin(h, pl, p, DM_PLUGIN_STORAGE, "storage", &call, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!dm_storage_key_ok(key)) {
        dm_call_msg(msg, "storage key is not valid (letters, digits and \"/._-\" only)");
        return DM_ERR_INVALID;
    }
    if (!write) {
        dm_call_msg(msg, "storage get of %s without a sink", key);
        return DM_ERR_INVALID;
    }
    memset(&sink, 0, sizeof(sink));
    sink.write = write;
    sink.ctx = ctx;
    st = ops_of(pl)->get(call, key, get_write, &sink, &announced, msg);
    st = dm_call_end(pl, "get", st, msg);
    if (sink.st != DM_OK) {
        if (!msg->text[0] || st == DM_OK) {
            dm_call_msg(msg, "storage get of %s stopped by its reader (%s)", key,
                        dm_call_status_name(sink.st));
        }
        return sink.st;
    }
    if (st == DM_ERR_NOT_FOUND) {
        if (!msg->text[0]) {
            dm_call_msg(msg, "no object %s", key);
        }
        return st;
    }
    if (st != DM_OK) {
        if (!msg->text[0]) {
            dm_call_msg(msg, "plugin %s: get of %s failed (%s) without saying why", pl->name, key,
                        dm_call_status_name(st));
        }
        return st;
    }
    if (announced >= 0 && announced != sink.got) {
        dm_call_msg(
            msg, "plugin %s: get of %s delivered %" APR_INT64_T_FMT " bytes of %" APR_INT64_T_FMT,
            pl->name, key, sink.got, announced);
        return DM_ERR_INTERNAL;
    }
    if (size) {
        *size = sink.got;
    }
    return DM_OK;
}

typedef struct mem_sink {
    apr_pool_t *p;
    char *buf;
    size_t len, cap, max;
} mem_sink;

static dm_status mem_write(void *v, const void *buf, size_t len)
{
    mem_sink *m = v;

    if (len > m->max - m->len) {
        return DM_ERR_INVALID;
    }
    if (m->len + len + 1 > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        char *nb;
        while (cap < m->len + len + 1) {
            cap *= 2;
        }
        nb = apr_palloc(m->p, cap);
        if (m->len) {
            memcpy(nb, m->buf, m->len);
        }
        m->buf = nb;
        m->cap = cap;
    }
    memcpy(m->buf + m->len, buf, len);
    m->len += len;
    return DM_OK;
}

dm_status dm_storage_get_buffer(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                                const char *key, size_t max, void **buf, size_t *len,
                                dm_message *msg)
{
    mem_sink m = {p, NULL, 0, 0, max};
    dm_status st;

    *buf = NULL;
    *len = 0;
    st = dm_storage_get(h, pl, p, key, mem_write, &m, NULL, msg);
    if (st == DM_ERR_INVALID && m.len <= max && dm_storage_key_ok(key) && msg->text[0] &&
        strstr(msg->text, "stopped by its reader")) {
        dm_call_msg(msg, "object %s is larger than %" APR_SIZE_T_FMT " bytes", key, max);
    }
    if (st != DM_OK) {
        return st;
    }
    if (!m.buf) {
        m.buf = apr_palloc(p, 1);
    }
    m.buf[m.len] = '\0';
    *buf = m.buf;
    *len = m.len;
    return DM_OK;
}

/* ---- remove ---- */

dm_status dm_storage_remove(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                            const char *key, dm_message *msg)
{
    dm_call *call;
    dm_status st;

    st = dm_call_begin(h, pl, p, DM_PLUGIN_STORAGE, "storage", &call, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!dm_storage_key_ok(key)) {
        dm_call_msg(msg, "storage key is not valid (letters, digits and \"/._-\" only)");
        return DM_ERR_INVALID;
    }
    st = dm_call_end(pl, "remove", ops_of(pl)->remove(call, key, msg), msg);
    if (st == DM_ERR_NOT_FOUND) {
        /* The ABI says ok; a plugin that says otherwise means the same. */
        memset(msg, 0, sizeof(*msg));
        return DM_OK;
    }
    if (st != DM_OK && !msg->text[0]) {
        dm_call_msg(msg, "plugin %s: remove of %s failed (%s) without saying why", pl->name, key,
                    dm_call_status_name(st));
    }
    return st;
}

/* ---- list ---- */

typedef struct list_sink {
    dm_storage_each_fn each;
    void *ctx;
    const char *prefix;
    size_t prefix_len;
    char prev[DM_STORAGE_KEY_MAX + 1];
    int have_prev;
    dm_status st;    /* first failure, sticky */
    const char *why; /* the plugin's fault, NULL: the caller's each */
} list_sink;

static dm_status list_each(void *v, const char *key, int64_t size, int64_t mtime)
{
    list_sink *s = v;
    dm_status st;

    if (s->st != DM_OK) {
        return s->st;
    }
    if (!dm_storage_key_ok(key) || strncmp(key, s->prefix, s->prefix_len) != 0 || size < 0) {
        s->why = "listed a malformed key, one outside the prefix, or a negative size";
        return s->st = DM_ERR_INTERNAL;
    }
    if (s->have_prev && strcmp(s->prev, key) >= 0) {
        s->why = "listed keys out of order";
        return s->st = DM_ERR_INTERNAL;
    }
    memcpy(s->prev, key, strlen(key) + 1);
    s->have_prev = 1;
    st = s->each(s->ctx, key, size, mtime);
    if (st != DM_OK) {
        return s->st = st;
    }
    return DM_OK;
}

dm_status dm_storage_list(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                          const char *prefix, dm_storage_each_fn each, void *ctx, dm_message *msg)
{
    dm_call *call;
    list_sink *sink;
    dm_status st;

    st = dm_call_begin(h, pl, p, DM_PLUGIN_STORAGE, "storage", &call, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!prefix) {
        prefix = "";
    }
    if (!dm_storage_prefix_ok(prefix)) {
        dm_call_msg(msg, "storage prefix is not valid (letters, digits and \"/._-\" only)");
        return DM_ERR_INVALID;
    }
    if (!each) {
        dm_call_msg(msg, "storage list without a callback");
        return DM_ERR_INVALID;
    }
    sink = apr_pcalloc(p, sizeof(*sink));
    sink->each = each;
    sink->ctx = ctx;
    sink->prefix = prefix;
    sink->prefix_len = strlen(prefix);
    st = dm_call_end(pl, "list", ops_of(pl)->list(call, prefix, list_each, sink, msg), msg);
    if (sink->st != DM_OK) {
        if (sink->why) {
            dm_call_msg(msg, "plugin %s: %s", pl->name, sink->why);
        } else if (!msg->text[0] || st == DM_OK) {
            dm_call_msg(msg, "storage list stopped by its caller (%s)",
                        dm_call_status_name(sink->st));
        }
        return sink->st;
    }
    if (st != DM_OK && !msg->text[0]) {
        dm_call_msg(msg, "plugin %s: list failed (%s) without saying why", pl->name,
                    dm_call_status_name(st));
    }
    return st;
}
