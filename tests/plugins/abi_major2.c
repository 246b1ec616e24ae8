/*
 * abi_major2 — a mailer that claims ABI major 2: the host must refuse it.
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

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = 2,
    .abi_minor = 0,
    .kind = DM_PLUGIN_MAILER,
    .name = "abi-major2",
    .version = "2.0.0",
    .ops = &ops,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *host)
{
    return &desc;
}
