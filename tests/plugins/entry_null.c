/*
 * entry_null — an entry that returns no descriptor, as a plugin does when
 * the host table is too small for its needs.
 */
#include <deepmine/plugin.h>

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *host)
{
    return NULL;
}
