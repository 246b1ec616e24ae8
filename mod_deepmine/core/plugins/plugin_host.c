/*
 * plugin_host.c — the loader: loads plugins through ABI v1
 * (deepmine/plugin.h), checks their descriptors, keeps their settings and
 * runs their init() and fini() (see plugin_host.h for the life cycle). The
 * table of services they are handed is host_services.c; calling them is
 * the typed calls' job (payment.c, mailer.c, kyc.c, inbound.c).
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
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "plugins/call.h"
#include "plugins/host_services.h"

/* A file: setting holds a secret or a short value, never a document. */
#define SETTING_FILE_MAX ((apr_off_t)1024 * 1024)

struct dm_plugin_host {
    apr_pool_t *pool;
    apr_array_header_t *plugins; /* dm_plugin_loaded *, in declaration order */
    apr_array_header_t *all;     /* dm_loaded_plugin *, the same, for dm_plugins_all */
    apr_hash_t *by_name;         /* configured name -> dm_plugin_loaded * */
    apr_array_header_t *raw;     /* raw_setting, in the order given */
    const char *public_url;      /* the reserved setting _public_url, or NULL */
    int init_done;
};

typedef struct raw_setting {
    const char *name;
    const char *key;
    const char *value;
} raw_setting;

static const struct {
    const char *name;
    dm_plugin_kind kind;
} kinds[] = {
    {"payment", DM_PLUGIN_PAYMENT}, {"kyc", DM_PLUGIN_KYC},         {"mailer", DM_PLUGIN_MAILER},
    {"storage", DM_PLUGIN_STORAGE}, {"monitor", DM_PLUGIN_MONITOR},
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

static apr_status_t fini_cleanup(void *data)
{
    dm_plugins_fini_all(data);
    return APR_SUCCESS;
}

dm_err *dm_plugins_create(apr_pool_t *p, dm_plugin_host **out)
{
    dm_plugin_host *h;
    dm_err *e = dm_host_services_init(p);

    if (e) {
        return e;
    }
    h = apr_pcalloc(p, sizeof(*h));
    h->pool = p;
    h->plugins = apr_array_make(p, 4, sizeof(dm_plugin_loaded *));
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
        if (!DM_COVERS(o, dm_payment_ops, parse_webhook)) {
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
        if (!DM_COVERS(o, dm_kyc_ops, parse_webhook)) {
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
        if (!DM_COVERS(o, dm_mailer_ops, send)) {
            return apr_psprintf(p, "its mailer table is %u bytes, too small for send",
                                (unsigned)o->size);
        }
        if (!o->send) {
            return "its mailer table lacks send";
        }
        return NULL;
    }
    case DM_PLUGIN_STORAGE: {
        const dm_storage_ops *o = d->ops;
        if (!DM_COVERS(o, dm_storage_ops, list)) {
            return apr_psprintf(p,
                                "its storage table is %u bytes, too small for put, get, "
                                "remove and list",
                                (unsigned)o->size);
        }
        if (!o->put || !o->get || !o->remove || !o->list) {
            return "its storage table lacks put, get, remove or list";
        }
        return NULL;
    }
    case DM_PLUGIN_MONITOR: {
        const dm_monitor_ops *o = d->ops;
        if (!DM_COVERS(o, dm_monitor_ops, capture)) {
            return apr_psprintf(p, "its monitor table is %u bytes, too small for capture",
                                (unsigned)o->size);
        }
        if (!o->capture) {
            return "its monitor table lacks capture";
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
    dm_plugin_loaded *pl;
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
                           "plugin \"%s\" (%s): unknown kind \"%s\", expected payment, kyc, "
                           "mailer, storage or monitor",
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
    d = entry(dm_host_services());
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
    *(dm_plugin_loaded **)apr_array_push(h->plugins) = pl;
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
static dm_err *read_setting_file(apr_pool_t *p, const dm_plugin_loaded *pl, const char *key,
                                 const char *path, const char **out)
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

static dm_err *resolve_setting(apr_pool_t *p, const dm_plugin_loaded *pl, const raw_setting *s,
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
    dm_plugin_loaded **pls = (dm_plugin_loaded **)h->plugins->elts;
    dm_err *e;

    if (h->init_done) {
        return NULL;
    }
    /* 1. Settings: every one must name a declared plugin and resolve. */
    for (int i = 0; i < h->raw->nelts; i++) {
        dm_plugin_loaded *pl = apr_hash_get(h->by_name, raw[i].name, APR_HASH_KEY_STRING);
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
        dm_plugin_loaded *pl = pls[i];
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
            st = d->init(dm_host_services(), call, &msg);
            call->in_init = 0;
            msg.text[sizeof(msg.text) - 1] = '\0';
            if (st != DM_OK) {
                return dm_err_make(p, st == DM_ERR_TEMPORARY ? DM_E_UNAVAILABLE : DM_E_INVALID,
                                   NULL, "plugin \"%s\" (%s): init failed (%s): %s", pl->pub.name,
                                   pl->pub.path, dm_call_status_name(st),
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
    dm_plugin_loaded **pls = (dm_plugin_loaded **)h->plugins->elts;

    /* Reverse order: a plugin may have been set up on top of an earlier one. */
    for (int i = h->plugins->nelts - 1; i >= 0; i--) {
        dm_plugin_loaded *pl = pls[i];
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
    const dm_plugin_loaded *pl = name ? apr_hash_get(h->by_name, name, APR_HASH_KEY_STRING) : NULL;
    return pl ? &pl->pub : NULL;
}

const apr_array_header_t *dm_plugins_all(const dm_plugin_host *h)
{
    return h->all;
}

dm_call *dm_plugins_call(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p)
{
    dm_call *call;

    /* Only records this host made: `pl` must be the head of a dm_plugin_loaded. */
    if (!pl || apr_hash_get(h->by_name, pl->name, APR_HASH_KEY_STRING) != (const void *)pl) {
        return NULL;
    }
    call = apr_pcalloc(p, sizeof(*call));
    call->pool = p;
    call->pl = (const dm_plugin_loaded *)pl;
    return call;
}

const char *dm_plugins_setting(const dm_loaded_plugin *pl, const char *key)
{
    /* pl comes from dm_plugins_get/dm_plugins_all: the head of a dm_plugin_loaded. */
    const dm_plugin_loaded *l = (const dm_plugin_loaded *)pl;

    if (!pl || !key || !l->settings) {
        return NULL;
    }
    return apr_hash_get(l->settings, key, APR_HASH_KEY_STRING);
}

/* ---- what operators see (GET /api/admin/plugins) ---- */

void dm_plugins_describe(const dm_loaded_plugin *pl, dm_plugin_about *out)
{
    const dm_plugin *d = pl->desc;

    memset(out, 0, sizeof(*out));
    out->plugin_name = d && d->name ? d->name : pl->name;
    out->version = d && d->version ? d->version : "";
    out->abi_major = d ? d->abi_major : 0;
    out->abi_minor = d ? d->abi_minor : 0;
    out->has_health = d && offers_health(d);
}

dm_status dm_plugins_health(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                            dm_message *msg)
{
    dm_call *call = NULL;
    dm_status st = dm_call_begin(h, pl, p, 0, "plugin", &call, msg);

    if (st != DM_OK) {
        return st;
    }
    if (!offers_health(pl->desc)) {
        dm_call_msg(msg, "plugin %s offers no health check", pl->name);
        return DM_ERR_UNSUPPORTED;
    }
    return dm_call_end(pl, "health", pl->desc->health(call, msg), msg);
}
