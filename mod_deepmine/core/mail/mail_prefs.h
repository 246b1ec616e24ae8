/*
 * mail_prefs.h — who does not want, or cannot get, e-mail: members'
 * marketing preferences, the signed one-click unsubscribe links of RFC
 * 8058, and the suppression list fed by bounce and complaint reports.
 *
 * Rules:
 * - transactional messages (verification, reset, orders, withdrawals,
 *   KYC, staff alerts) ignore preferences; marketing messages belong to a
 *   category (email_template_defs.category) a member can leave. No row in
 *   email_preferences means subscribed.
 * - an unsubscribe token names a member and a category, signed with
 *   HMAC-SHA-256 under the derived key dm_keys.unsubscribe. It does not
 *   expire (a link in a year-old message must still work) and grants
 *   nothing but leaving that category.
 * - a suppressed address gets nothing at all, transactional included (a
 *   hard bounce will bounce again; a complaint means "stop"); staff can
 *   remove it.
 */
#ifndef DM_MAIL_PREFS_H
#define DM_MAIL_PREFS_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "store/db.h"
#include "base/err.h"
#include "base/token.h"

/* ---- preferences ---- */

/* {"<category>": true|false, …} for every category (caller owns it). */
dm_err *dm_mail_prefs_get(dm_db *db, apr_pool_t *p, int64_t user_id, json_t **out);

/* Applies `changes` ({"<category>": bool, …}; unknown categories and
 * non-booleans are DM_E_INVALID naming the key) in one transaction and
 * returns the preferences after, as dm_mail_prefs_get. */
dm_err *dm_mail_prefs_set(dm_db *db, apr_pool_t *p, int64_t user_id, const json_t *changes,
                          json_t **out);

/* *yes 1 unless the member left `category`. */
dm_err *dm_mail_subscribed(dm_db *db, apr_pool_t *p, int64_t user_id, const char *category,
                           int *yes);

/* ---- unsubscribe links ---- */

/* base64url(user id as 8 bytes big-endian || category || HMAC-SHA-256 of
 * "deepmine-unsubscribe-v1" || both under key). Categories are 1..32
 * bytes of [a-z0-9_]. */
const char *dm_unsub_token(apr_pool_t *p, const unsigned char key[DM_KEY_BYTES], int64_t user_id,
                           const char *category);

/* DM_E_INVALID ("token") unless the token is well-formed and its
 * signature matches (compared in constant time). */
dm_err *dm_unsub_verify(apr_pool_t *p, const unsigned char key[DM_KEY_BYTES], const char *token,
                        int64_t *user_id, const char **category);

/* Unsubscribes the member from the category (source "unsubscribe_link"),
 * in its own transaction; doing it again, or for a member who no longer
 * exists, changes nothing and is no error. */
dm_err *dm_unsub_apply(dm_db *db, apr_pool_t *p, int64_t user_id, const char *category);

/* The one-click body itself: dm_unsub_body_ok() in mail_oneclick.h. */

/* ---- suppressions ---- */

typedef struct dm_suppression {
    int64_t id;
    const char *email;
    const char *reason; /* bounced | complained | manual */
    const char *source; /* the plugin that reported it, or NULL */
    const char *event_id;
    int64_t created_at;
} dm_suppression;

/* The lookup key of an address: the whole address lower-cased (as
 * users.email_key). */
const char *dm_mail_address_key(apr_pool_t *p, const char *email);

/* *found 1 (and *out filled) when the address is suppressed. */
dm_err *dm_suppression_get(dm_db *db, apr_pool_t *p, const char *email, dm_suppression *out,
                           int *found);

/* In the caller's transaction. An address already listed keeps its first
 * entry; *added says whether a row was written. */
dm_err *dm_suppression_add(dm_db *db, apr_pool_t *p, const char *email, const char *reason,
                           const char *source, const char *event_id, int *added);

/* Newest first, keyset on id (cursor 0: first page); rows dm_suppression. */
dm_err *dm_suppression_list(dm_db *db, apr_pool_t *p, int64_t cursor, int limit,
                            apr_array_header_t **rows, int64_t *next_cursor);

/* Removes an address from the list, audited "email_suppression.remove",
 * in its own transaction. DM_E_NOT_FOUND when it is not listed. */
dm_err *dm_suppression_remove(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                              const char *email);

json_t *dm_suppression_json(apr_pool_t *p, const dm_suppression *s);

#endif
