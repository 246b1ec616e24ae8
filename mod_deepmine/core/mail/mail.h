/*
 * mail.h — delivering mail_queue (the messages dm_mail_enqueue put there in
 * the transactions of their events): the mail job, what staff see of the
 * queue, delivery reports from mailer webhooks, and the daily commission
 * digest.
 *
 * A message's life: queued → sending (claimed by a mail job run) → sent,
 * or back to queued with a later next_attempt_at (a temporary failure),
 * or failed (a permanent failure, or the last attempt), or suppressed
 * (the address is on the suppression list, or the member left the
 * message's marketing category). Staff may put a failed message back to
 * queued (resend).
 *
 * Exactly once, as far as a sender can make it: a run claims a batch in
 * one short transaction (status 'sending', attempts + 1) and sends outside
 * any transaction, then records the outcomes, the batch's together in one
 * transaction (at its end, before a wait for the mailer's rate, and once
 * the first has waited a second). A sender that dies between the
 * provider's acceptance and the record leaves the message in 'sending';
 * after DM_MAIL_SENDING_STALE seconds another run claims it again and
 * sends it with the same idempotency key, which the provider dedupes
 * (Resend's Idempotency-Key; for SMTP and the spool a Message-ID derived
 * from the key, so the copy is recognisably the same message). Every
 * outcome is recorded only if the row is still the one this run claimed
 * (status 'sending' and the attempt it claimed).
 */
#ifndef DM_MAIL_H
#define DM_MAIL_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "store/db.h"
#include "deepmine/plugin.h"
#include "base/err.h"
#include "jobs/jobs.h"

/* A 'sending' row older than this is a dead sender's: claimed again. */
#define DM_MAIL_SENDING_STALE 600
/* Attempts before a temporarily failing message is `failed`, unless the
 * mailer's setting max_attempts says otherwise (1..100). */
#define DM_MAIL_MAX_ATTEMPTS 10
/* Messages claimed per transaction, and how long one run keeps sending. */
#define DM_MAIL_BATCH 32
#define DM_MAIL_RUN_SECONDS 20
/* The back-off: BASE × 2^(attempts-1), at most MAX, then jitter. */
#define DM_MAIL_BACKOFF_BASE 60
#define DM_MAIL_BACKOFF_MAX (6 * 3600)

/* Seconds until the next attempt after `attempts` (>= 1) attempts, the
 * last of which failed temporarily: d = min(BASE × 2^(attempts-1), MAX),
 * then "equal jitter" — d/2 + (rnd mod (d/2 + 1)), so somewhere in
 * [d/2, d] — and never sooner than retry_after (the provider's
 * Retry-After; 0 when it said nothing). rnd is a random 32-bit number. */
int64_t dm_mail_backoff(int attempts, uint32_t retry_after, uint32_t rnd);

/* ---- the queue, for staff ---- */

typedef struct dm_mail_row {
    int64_t id;
    const char *recipient;
    const char *template_key;
    const char *status;
    int64_t attempts;
    int64_t next_attempt_at;
    const char *provider_message_id; /* may be NULL */
    const char *last_error;          /* may be NULL */
    const char *delivery;            /* delivered|bounced|complained from webhooks, or NULL */
    int64_t delivery_at;
    int64_t sent_at;
    int64_t created_at;
    int64_t updated_at;
} dm_mail_row;

/* Newest first, keyset on id; status and recipient (exact address, any
 * case) optional filters. The variables are never listed: they hold
 * password-reset links. */
dm_err *dm_mail_list(dm_db *db, apr_pool_t *p, const char *status, const char *recipient,
                     int64_t cursor, int limit, apr_array_header_t **rows, int64_t *next_cursor);

/* A failed message back to queued (attempts 0, due now), audited
 * "email.resend". DM_E_NOT_FOUND, or DM_E_CONFLICT when it is not failed. */
dm_err *dm_mail_resend(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip, int64_t id,
                       dm_mail_row *out);

json_t *dm_mail_row_json(apr_pool_t *p, const dm_mail_row *m);

typedef struct dm_mail_stats {
    int64_t window_s;
    int64_t sent, failed, suppressed;       /* finished in the window */
    int64_t delivered, bounced, complained; /* reported in the window */
    int64_t queued, sending;                /* now */
    int64_t oldest_queued_at;               /* 0: none queued */
} dm_mail_stats;

/* Counts over the `window_s` seconds before now. */
dm_err *dm_mail_stats_get(dm_db *db, apr_pool_t *p, int64_t window_s, dm_mail_stats *out);

/* {"window_hours","sent","failed","suppressed","delivered","bounced",
 * "complained","queued","sending","oldest_queued_at","delivery_rate"}:
 * delivery_rate is sent / (sent + failed), null when both are 0. */
json_t *dm_mail_stats_json(apr_pool_t *p, const dm_mail_stats *s);

/* ---- delivery reports ---- */

typedef struct dm_mail_event_result {
    int duplicate;   /* this (plugin, event id) was recorded before: nothing changed */
    int suppressed;  /* the event put its address on the suppression list */
    int64_t mail_id; /* the message it is about, 0 when not found */
} dm_mail_event_result;

/* Records a verified event of mailer plugin `plugin` once: bounced and
 * complained put the recipient (from the event, else from the message it
 * names) on the suppression list; every type except "other" is noted on
 * the message (delivery, delivery_at) when the provider message id finds
 * it. One transaction. DM_E_INVALID when a bounce or complaint names no
 * address at all. */
dm_err *dm_mail_event_record(dm_db *db, apr_pool_t *p, const char *plugin, const dm_mail_event *ev,
                             dm_mail_event_result *out);

/* ---- the jobs (rows in jobs_table.c) ---- */

/* "mail": sends due messages for up to DM_MAIL_RUN_SECONDS through the
 * mailer plugin env->mailer (or the only mailer loaded), at most the
 * mailer's setting rate_per_second (a token bucket; unset or 0: no
 * limit). Needs env->plugins and env->keys; env->public_url for links,
 * env->mail_from for the sender (NULL: the mailer's own `from`). */
dm_err *dm_mail_job(dm_job_ctx *ctx, dm_job_result *res);

/* "commission-digest": for the UTC day before ctx->period_start, one
 * commission_digest message per member who received commissions that day
 * and has not left the category (key commission_digest:<user>:<day>). */
dm_err *dm_mail_job_commission_digest(dm_job_ctx *ctx, dm_job_result *res);

/* ---- composing, shared by the job and the preview ---- */

typedef struct dm_mail_site {
    const unsigned char *unsubscribe_key; /* dm_keys.unsubscribe */
    const char *public_url;               /* may be NULL */
    const char *from;                     /* may be NULL */
} dm_mail_site;

/* What staff preview: a template's stored text, or the parts given
 * (subject/text/html non-NULL: an unsaved edit, checked like a save), with
 * the definition's sample variables, `variables` (an object, may be NULL)
 * over them, and site_url, recipient and, for marketing, an
 * unsubscribe_url and List-Unsubscribe that do nothing ("token=preview"). */
typedef struct dm_mail_preview_in {
    const char *key;
    const char *locale;
    const char *subject, *text, *html;
    const json_t *variables;
} dm_mail_preview_in;

typedef struct dm_mail_preview_out {
    const char *subject, *text, *html;
    const char *list_unsubscribe; /* marketing only, else NULL */
    int marketing;
} dm_mail_preview_out;

dm_err *dm_mail_preview(dm_db *db, apr_pool_t *p, const dm_mail_site *site,
                        const dm_mail_preview_in *in, dm_mail_preview_out *out);

#endif
