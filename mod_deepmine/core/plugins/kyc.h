/*
 * kyc.h — calling KYC plugins, typed, in the shape of payment.h and
 * mailer.h: parse_webhook (through inbound.h, the webhook route) and query
 * (ABI 1.5, the polling job); start comes with the member's routes. Not
 * to be confused with core/kyc/, the domain that decides a member's KYC
 * status.
 */
#ifndef DM_PLUGINS_KYC_H
#define DM_PLUGINS_KYC_H

#include <apr_pools.h>

#include "deepmine/plugin.h"
#include "plugins/plugin_host.h"

/* Verifies a KYC provider's webhook (raw body and every header) and parses
 * its event. DM_ERR_INVALID (the plugin's msg) for a body that fails
 * verification; DM_OK with a sound event: its strings have bytes for their
 * lengths, its status is known (DM_KYC_APPROVED .. DM_KYC_IGNORED), its
 * event id is not empty and, unless the status is DM_KYC_IGNORED, neither
 * is its member id (else DM_ERR_INTERNAL). Event strings live in p; the
 * 1.5 fields are 0/empty for an older plugin. */
dm_status dm_kyc_parse_webhook(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                               dm_str raw_body, const dm_header *headers, size_t n_headers,
                               dm_kyc_event *out, dm_message *msg);

/* The KYC provider in use: the initialised KYC plugin named `name`
 * (DeepMineKycProvider), or, when name is NULL, the only KYC plugin loaded
 * (none or several: NULL). Name "manual": NULL (staff review documents). */
const dm_loaded_plugin *dm_kyc_plugin(const dm_plugin_host *h, const char *name);

/* Starts the provider's verification flow for member_id (our member id as
 * a decimal string: the provider's externalUserId / clientId) with the
 * member's e-mail. DM_OK: exactly one of *url and *token is set (the
 * other NULL), *provider_ref may be NULL; NUL-terminated, in p. Another
 * status with msg from the plugin; DM_ERR_INTERNAL for a malformed
 * answer (neither or both of url and token). */
dm_status dm_kyc_start(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                       const char *member_id, const char *email, const char **url,
                       const char **token, const char **provider_ref, dm_message *msg);

/* 1 when the plugin has query (ABI 1.5, not NULL). */
int dm_kyc_can_query(const dm_loaded_plugin *pl);

/* The provider's current verdict on member_id's verification provider_ref,
 * checked as parse_webhook's event is (an empty event id is allowed: the
 * caller names it). DM_ERR_UNSUPPORTED without query. */
dm_status dm_kyc_query(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                       const char *member_id, const char *provider_ref, dm_kyc_event *out,
                       dm_message *msg);

#endif
