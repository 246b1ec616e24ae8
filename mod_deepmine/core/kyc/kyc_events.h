/*
 * kyc_events.h — what a KYC provider (a kyc plugin: Sumsub, iDenfy) says
 * about a member, applied to the member: the verified webhook event
 * (/api/webhooks/<name>) and the polling job's answer (kyc-poll) take the
 * one path dm_kyc_event_apply.
 *
 * Rules (docs/kyc.md, "Providers"):
 * - an event is applied once: (plugin, event id) is UNIQUE in kyc_events,
 *   a replay answers "duplicate" and changes nothing;
 * - a member's events are applied in the provider's time order
 *   (occurred_at_ms): one older than the newest applied for the member is
 *   recorded as stale and does nothing. An event without a time (0), and
 *   the start of a flow, are applied in arrival order and move nothing. So a late RED after a GREEN
 * revokes the approval, while a GREEN delivered after a newer RED does not restore it;
 * - approved, rejected, resubmission and expired always apply; needs
 *   review never undoes an approval; pending only opens a case (a member
 *   with no decision, or one asked to resubmit, or whose session expired);
 * - the provider's reference (applicant id, scanRef) is kept per member in
 *   kyc_provider_state, with since when the case is pending: the polling
 *   job asks the provider about cases pending longer than
 *   DeepMineKycPollAfter, each at most once per that age (or the plugin's
 *   setting poll_every_s when longer: iDenfy asks not to be polled often).
 * The member's status itself changes only through core/kyc's status
 * function (audit row, e-mail).
 */
#ifndef DM_KYC_EVENTS_H
#define DM_KYC_EVENTS_H

#include <apr_pools.h>
#include <stdint.h>

#include "base/err.h"
#include "deepmine/plugin.h"
#include "plugins/plugin_host.h"
#include "store/db.h"

#define DM_KYC_POLL_AFTER_DEFAULT_S 3600

typedef struct dm_kyc_applied {
    int duplicate;          /* the event was seen before: nothing done */
    const char *outcome;    /* applied | stale | recorded | ignored | unknown_member */
    const char *kyc_status; /* the member's users.kyc_status afterwards; NULL: no member */
} dm_kyc_applied;

/* Applies a verified event of KYC plugin `plugin` (its configured name).
 * source: "webhook", "poll" or "start". An empty event id is named from the
 * provider reference, status and time. DM_E_INVALID (field "member_id")
 * for a member id that is not a number. No transaction may be open on db.
 * Strings of out live in p. */
dm_err *dm_kyc_event_apply(dm_db *db, apr_pool_t *p, const char *plugin, const dm_kyc_event *ev,
                           const char *source, int64_t now, dm_kyc_applied *out);

/* A member started a provider's flow (POST /api/kyc/start): records the
 * plugin and its reference for the polling job and opens the case as
 * pending (the member's status becomes pending unless decided). */
dm_err *dm_kyc_provider_started(dm_db *db, apr_pool_t *p, const char *plugin, int64_t user_id,
                                const char *provider_ref, int64_t now);

/* DeepMineKycPollAfter: set by the host before it forks. */
void dm_kyc_poll_set_after(int64_t seconds);
int64_t dm_kyc_poll_after(void);

typedef struct dm_kyc_poll_stats {
    int64_t queried;  /* providers asked */
    int64_t applied;  /* answers that changed a member */
    int64_t failures; /* questions that failed (asked again next time) */
} dm_kyc_poll_stats;

/* One pass of the polling job at `now` (no transaction open on db). */
dm_err *dm_kyc_poll_run(dm_db *db, apr_pool_t *p, const dm_plugin_host *h, int64_t now,
                        dm_kyc_poll_stats *out);

#endif
