/*
 * no_entry — exports no deepmine_plugin_entry: it has one, but hidden (it
 * forgot DM_PLUGIN_EXPORT), and exports a misnamed one instead.
 */
#include <deepmine/plugin.h>

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_MAILER,
    .name = "no-entry",
    .version = "1.0.0",
};

const dm_plugin *deepmine_plugin_entry(const dm_host *host);
const dm_plugin *deepmine_plugin_entry(const dm_host *host)
{
    return &desc;
}

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_init(const dm_host *host)
{
    return deepmine_plugin_entry(host);
}
