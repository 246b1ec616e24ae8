/*
 * host_probe — hands the host table to the unit test, so the test can call
 * host functions exactly as a plugin does. The test passes the address of
 * a `const dm_host *` variable as the setting "slot" (printf's %p); init()
 * stores the host table's address there. Test-only: a real plugin never
 * writes through a pointer it was given as text.
 */
#include <deepmine/plugin.h>
#include <stdio.h>

static const char *const required[] = {"slot", NULL};

static dm_status init(const dm_host *host, dm_call *call, dm_message *msg)
{
    void *slot = NULL;

    if (sscanf(host->setting(call, "slot"), "%p", &slot) != 1 || !slot) {
        snprintf(msg->text, sizeof(msg->text), "slot is not an address");
        return DM_ERR_CONFIG;
    }
    *(const dm_host **)slot = host;
    return DM_OK;
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
    .name = "host-probe",
    .version = "1.0.0",
    .required_settings = required,
    .init = init,
    .ops = &ops,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *host)
{
    return &desc;
}
