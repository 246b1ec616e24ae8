/*
 * kyc_store.c — see kyc_store.h.
 */
#include "kyc/kyc_store.h"

#include "base/log.h"
#include "plugins/storage.h"

static dm_err *failed(apr_pool_t *p, const dm_kyc_plugin_store *s, const char *op, const char *key,
                      dm_status st, const dm_message *msg)
{
    if (st == DM_ERR_NOT_FOUND) {
        return dm_err_make(p, DM_E_NOT_FOUND, NULL, "no such object");
    }
    dm_log(DM_L_ERR, "DM01255: kyc: storage plugin %s: %s %s failed (%d): %s", s->plugin->name, op,
           key, (int)st, msg->text);
    return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                       "document storage is not available right now; try again later");
}

static dm_err *put(void *ctx, apr_pool_t *p, const char *key, const void *buf, size_t len)
{
    const dm_kyc_plugin_store *s = ctx;
    dm_message msg = {{0}};
    dm_status st = dm_storage_put_buffer(s->host, s->plugin, p, key, "application/octet-stream",
                                         buf, len, &msg);
    return st == DM_OK ? NULL : failed(p, s, "put", key, st, &msg);
}

static dm_err *get(void *ctx, apr_pool_t *p, const char *key, size_t max, void **buf, size_t *len)
{
    const dm_kyc_plugin_store *s = ctx;
    dm_message msg = {{0}};
    dm_status st = dm_storage_get_buffer(s->host, s->plugin, p, key, max, buf, len, &msg);
    if (st == DM_ERR_INVALID) {
        /* larger than the sealed document can be: not ours as stored */
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "the stored document %s failed its integrity check (size)", key);
    }
    return st == DM_OK ? NULL : failed(p, s, "get", key, st, &msg);
}

static dm_err *remove_(void *ctx, apr_pool_t *p, const char *key)
{
    const dm_kyc_plugin_store *s = ctx;
    dm_message msg = {{0}};
    dm_status st = dm_storage_remove(s->host, s->plugin, p, key, &msg);
    return st == DM_OK ? NULL : failed(p, s, "remove", key, st, &msg);
}

void dm_kyc_store_plugin(dm_kyc_plugin_store *out, const dm_plugin_host *h,
                         const dm_loaded_plugin *pl)
{
    out->store.ctx = out;
    out->store.put = put;
    out->store.get = get;
    out->store.remove = remove_;
    out->host = h;
    out->plugin = pl;
}
