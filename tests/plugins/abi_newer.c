/*
 * abi_newer — a mailer built against a future minor (DM_PLUGIN_ABI_MINOR+1):
 * its descriptor is bigger, with a field this host does not know. It must
 * load: the host reads only the fields it knows.
 */
#include <deepmine/plugin.h>

static dm_status send_mail(dm_call *call, const dm_mail *mail, dm_str *message_id, dm_message *msg)
{
    return DM_ERR_UNSUPPORTED;
}

static const dm_mailer_ops ops = {
    .size = sizeof(dm_mailer_ops),
    .send = send_mail,
};

/* What a descriptor of ABI 1.(MINOR+1) could look like. */
struct future_plugin {
    dm_plugin base;
    int (*future_hook)(dm_call *call);
};

static const struct future_plugin desc = {
    .base =
        {
            .size = sizeof(struct future_plugin),
            .abi_major = DM_PLUGIN_ABI_MAJOR,
            .abi_minor = DM_PLUGIN_ABI_MINOR + 1,
            .kind = DM_PLUGIN_MAILER,
            .name = "abi-newer",
            .version = "9.9.9",
            .ops = &ops,
        },
    .future_hook = 0,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *host)
{
    return &desc.base;
}
