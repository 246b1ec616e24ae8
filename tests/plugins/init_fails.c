/*
 * init_fails — a mailer whose init() refuses its configuration.
 */
#include <deepmine/plugin.h>
#include <stdio.h>

static dm_status init(const dm_host *host, dm_call *call, dm_message *msg)
{
    snprintf(msg->text, sizeof(msg->text), "api_key is malformed");
    return DM_ERR_CONFIG;
}

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
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_MAILER,
    .name = "init-fails",
    .version = "1.0.0",
    .init = init,
    .ops = &ops,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *host)
{
    return &desc;
}
