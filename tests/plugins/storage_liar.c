/*
 * storage_liar — a storage plugin that breaks the storage contract in the
 * way its setting `lie` says, so the host's checks in core/plugins/storage.c
 * can be seen to catch each lie (tests/unit/test_storage_local.c):
 *   lie=short_read   put returns DM_OK after reading only the first chunk;
 *   lie=ignore_abort put keeps going and returns DM_OK after read failed;
 *   lie=short_get    get announces 10 bytes and delivers 4;
 *   lie=unordered    list gives "b" before "a";
 *   lie=outside      list gives a key outside the prefix;
 *   lie=bad_key      list gives "../x";
 *   lie=status       remove returns the made-up status 42.
 */
#include <deepmine/plugin.h>
#include <string.h>

static const dm_host *host;

static int lie(dm_call *call, const char *what)
{
    const char *l = host->setting(call, "lie");
    return l && !strcmp(l, what);
}

static dm_status liar_put(dm_call *call, const char *key, const char *content_type, int64_t length,
                          dm_storage_read_fn read, void *ctx, dm_message *msg)
{
    char buf[4];
    size_t got = 0;

    if (lie(call, "short_read")) {
        (void)read(ctx, buf, sizeof(buf), &got);
        return DM_OK;
    }
    for (;;) {
        dm_status st = read(ctx, buf, sizeof(buf), &got);
        if (st != DM_OK) {
            if (lie(call, "ignore_abort")) {
                return DM_OK;
            }
            return st;
        }
        if (got == 0) {
            return DM_OK;
        }
    }
}

static dm_status liar_get(dm_call *call, const char *key, dm_storage_write_fn write, void *ctx,
                          int64_t *size_out, dm_message *msg)
{
    if (size_out) {
        *size_out = 10;
    }
    return write(ctx, "four", lie(call, "short_get") ? 4 : 10);
}

static dm_status liar_remove(dm_call *call, const char *key, dm_message *msg)
{
    return lie(call, "status") ? (dm_status)42 : DM_OK;
}

static dm_status liar_list(dm_call *call, const char *prefix, dm_storage_each_fn each, void *ctx,
                           dm_message *msg)
{
    dm_status st;

    if (lie(call, "unordered")) {
        st = each(ctx, "p/b", 1, 0);
        return st != DM_OK ? st : each(ctx, "p/a", 1, 0);
    }
    if (lie(call, "outside")) {
        return each(ctx, "q/a", 1, 0);
    }
    if (lie(call, "bad_key")) {
        return each(ctx, "../x", 1, 0);
    }
    st = each(ctx, "p/a", 1, 0);
    return st != DM_OK ? st : each(ctx, "p/b", 2, 0);
}

static dm_status liar_init(const dm_host *h, dm_call *call, dm_message *msg)
{
    host = h;
    return DM_OK;
}

static const dm_storage_ops ops = {
    .size = sizeof(dm_storage_ops),
    .put = liar_put,
    .get = liar_get,
    .remove = liar_remove,
    .list = liar_list,
};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_STORAGE,
    .name = "storage_liar",
    .version = "1.0.0",
    .init = liar_init,
    .ops = &ops,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *h)
{
    return &desc;
}
