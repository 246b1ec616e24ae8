/*
 * kyc_store.h — the documents' dm_kyc_store over a storage plugin
 * (plugins/storage.h): whole objects in and out, plugin failures turned
 * into errors a client may see (503, the plugin's words only in the log).
 */
#ifndef DM_KYC_STORE_H
#define DM_KYC_STORE_H

#include "kyc/kyc_docs.h"
#include "plugins/plugin_host.h"

typedef struct dm_kyc_plugin_store {
    dm_kyc_store store; /* first: &x.store is what dm_kyc_env takes */
    const dm_plugin_host *host;
    const dm_loaded_plugin *plugin;
} dm_kyc_plugin_store;

/* Fills out for plugin pl of host h. */
void dm_kyc_store_plugin(dm_kyc_plugin_store *out, const dm_plugin_host *h,
                         const dm_loaded_plugin *pl);

#endif
