/*
 * mailq.h — putting messages on mail_queue. Always called inside the
 * transaction of the event that causes the message, so a rolled-back event
 * never e-mails; the idempotency key makes a retried event enqueue once.
 * Delivery (templates, the mailer plugin, retries) is the mailer job's.
 */
#ifndef DM_MAILQ_H
#define DM_MAILQ_H

#include <apr_pools.h>
#include <jansson.h>

#include "store/db.h"
#include "base/err.h"

/* vars: a JSON object of the template's variables (not consumed). A key
 * already queued is not an error: the message is queued once. */
dm_err *dm_mail_enqueue(dm_db *db, apr_pool_t *p, const char *recipient, const char *tmpl,
                        const json_t *vars, const char *idempotency_key);

/* As dm_mail_enqueue, with `secrets` (a JSON object of variables such as a
 * token or a link that carries one; not consumed) stored encrypted under
 * `key` (dm_keys.mail_seal): ChaCha20-Poly1305 with a random nonce, bound
 * to the recipient, template and idempotency key, in the variable
 * DM_MAIL_SEALED_VAR ("v1." base64url(nonce || ciphertext)). The mail job
 * opens it when it composes the message and removes it once the message is
 * sent, so the database never holds a usable token in clear. */
#define DM_MAIL_SEALED_VAR "sealed"
dm_err *dm_mail_enqueue_sealed(dm_db *db, apr_pool_t *p, const unsigned char *key,
                               const char *recipient, const char *tmpl, const json_t *vars,
                               const json_t *secrets, const char *idempotency_key);

/* Opens the sealed variables of a queued message into `vars` (which loses
 * DM_MAIL_SEALED_VAR). No sealed variable: nothing to do. DM_E_INVALID when
 * they cannot be opened (another secret key, a changed row). */
dm_err *dm_mail_unseal(apr_pool_t *p, const unsigned char *key, const char *recipient,
                       const char *tmpl, const char *idempotency_key, json_t *vars);

/* A "staff_alert" message to every active owner (and finance account when
 * with_finance), once per key and address ("staff_alert:<key>:<address>").
 * vars: the template's variables; it has "reason" and "detail" at least. */
dm_err *dm_mail_staff_alert(dm_db *db, apr_pool_t *p, int with_finance, const json_t *vars,
                            const char *key);

/* The same for another staff template (tmpl, e.g. "dispute_alert"): once
 * per key and address ("<tmpl>:<key>:<address>"). */
dm_err *dm_mail_staff_notice(dm_db *db, apr_pool_t *p, int with_finance, const char *tmpl,
                             const json_t *vars, const char *key);

#endif
