/*
 * host_services.h — private to core/plugins/: the host table (dm_host of
 * deepmine/plugin.h) every plugin is handed, at entry and at init(). Its
 * services are logging, settings, call memory, HTTP (http_client.h),
 * crypto and encodings (libsodium), JSON (jansson) and, since ABI 1.3, the
 * e-mail builder (base/mime.h).
 */
#ifndef DM_HOST_SERVICES_H
#define DM_HOST_SERVICES_H

#include <apr_pools.h>

#include "deepmine/plugin.h"
#include "base/err.h"

/* Readies what the services stand on (the HTTP client, libsodium): once,
 * at configuration time, before any fork. DM_E_UNAVAILABLE when it cannot. */
dm_err *dm_host_services_init(apr_pool_t *p);

/* The table; static, the same for every plugin. */
const dm_host *dm_host_services(void);

#endif
