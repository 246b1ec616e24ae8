/*
 * desc_small — a descriptor whose size is below DM_PLUGIN_SIZE_1_0: no
 * version of ABI 1 was ever that small, so the host must refuse it.
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
    .size = DM_PLUGIN_SIZE_1_0 - sizeof(void *),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = 0,
    .kind = DM_PLUGIN_MAILER,
    .name = "desc-small",
    .version = "1.0.0",
    .ops = &ops,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *host)
{
    return &desc;
}
