/*
 * abi_older — a mailer built against ABI 1.0: its descriptor ends before
 * `health`, exactly as the 1.0 header declared it. The host must load it
 * and never read past its size.
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

/* dm_plugin as plugin.h 1.0 declared it. */
struct plugin_1_0 {
    uint32_t size;
    uint16_t abi_major;
    uint16_t abi_minor;
    dm_plugin_kind kind;
    const char *name;
    const char *version;
    const char *const *required_settings;
    dm_status (*init)(const dm_host *host, dm_call *call, dm_message *msg);
    void (*fini)(void);
    const void *ops;
};

_Static_assert(sizeof(struct plugin_1_0) == DM_PLUGIN_SIZE_1_0, "the 1.0 layout");

static const struct plugin_1_0 desc = {
    .size = sizeof(struct plugin_1_0),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = 0,
    .kind = DM_PLUGIN_MAILER,
    .name = "abi-older",
    .version = "0.1.0",
    .ops = &ops,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *host)
{
    return (const dm_plugin *)&desc;
}
