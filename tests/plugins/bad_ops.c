/*
 * bad_ops — a mailer whose function table is wrong in the way the
 * environment variable DM_TEST_BAD_OPS says: "null" (no table), "small"
 * (a size that does not cover send) or "nosend" (send is NULL). The host
 * must refuse each.
 */
#include <deepmine/plugin.h>
#include <stdlib.h>
#include <string.h>

static dm_status send_mail(dm_call *call, const dm_mail *mail, dm_str *message_id, dm_message *msg)
{
    return DM_ERR_UNSUPPORTED;
}

static const dm_mailer_ops small_ops = {
    .size = offsetof(dm_mailer_ops, send),
    .send = send_mail,
};

static const dm_mailer_ops nosend_ops = {
    .size = sizeof(dm_mailer_ops),
    .send = NULL,
};

static dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_MAILER,
    .name = "bad-ops",
    .version = "1.0.0",
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *host)
{
    const char *how = getenv("DM_TEST_BAD_OPS");

    if (how && !strcmp(how, "small")) {
        desc.ops = &small_ops;
    } else if (how && !strcmp(how, "nosend")) {
        desc.ops = &nosend_ops;
    } else {
        desc.ops = NULL;
    }
    return &desc;
}
