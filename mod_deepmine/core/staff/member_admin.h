/*
 * admin_users.h — members as staff see them: full-text search (SQLite FTS5
 * over e-mail, name and referral code), the detail view with upline and
 * downline counts, suspension (audited in the same transaction), and the
 * one-off import of members from the old platform (deepminectl
 * import-users).
 */
#ifndef DM_ADMIN_USERS_H
#define DM_ADMIN_USERS_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "store/db.h"
#include "base/err.h"
#include "members/members.h"
#include "referral/referral.h"

/* The search box: at most this many bytes and words. */
#define DM_ADMIN_Q_MAX_CHARS 200
#define DM_ADMIN_Q_MAX_TERMS 16

typedef struct dm_admin_user_row {
    int64_t id;
    const char *email;
    const char *name; /* may be NULL */
    const char *referral_code;
    int64_t referrer_id; /* 0: none */
    const char *status;
    int vip_level;
    const char *kyc_status;
    int64_t created_at;
} dm_admin_user_row;

/* The FTS5 MATCH expression for a search box: each whitespace-separated
 * word becomes a quoted FTS5 string (a '"' doubled) with '*' appended, a
 * prefix search, and the words are ANDed. Whatever the input (quotes,
 * '*', NEAR(, '-', AND/OR/NOT, column filters), the expression is only
 * strings, so it never is a syntax error. NULL when q has no word. */
const char *dm_admin_fts_query(apr_pool_t *p, const char *q);

/* Members matching `q` (NULL or blank: all) and `status` (NULL: any;
 * else "active" or "suspended"), newest (highest id) first, keyset
 * paginated: `cursor` 0 for the first page, else the previous page's
 * *next_cursor (0 when there is no more). limit 1..200. Rows are
 * dm_admin_user_row. Bad q or status: DM_E_INVALID. */
dm_err *dm_admin_users_search(dm_db *db, apr_pool_t *p, const char *q, const char *status,
                              int64_t cursor, int limit, apr_array_header_t **rows,
                              int64_t *next_cursor);

json_t *dm_admin_user_row_json(apr_pool_t *p, const dm_admin_user_row *u);

typedef struct dm_admin_upline {
    int64_t id;
    const char *email;
} dm_admin_upline;

typedef struct dm_admin_user_detail {
    dm_member member;
    int upline_n;                               /* 0..10 */
    dm_admin_upline upline[DM_REFERRAL_LEVELS]; /* nearest first */
    dm_network network;
} dm_admin_user_detail;

/* DM_E_NOT_FOUND for an unknown id. */
dm_err *dm_admin_user_get(dm_db *db, apr_pool_t *p, int64_t id, dm_admin_user_detail *out);

/* {"user":{…},"upline":[{"level","id","email"}],"network":{"direct",
 * "total","levels"}} (caller owns it). */
json_t *dm_admin_user_detail_json(apr_pool_t *p, const dm_services *s,
                                  const dm_admin_user_detail *d);

/* Sets a member's status ("active" or "suspended") for staff `staff_id`
 * (0: the console) from `ip`: dm_member_set_suspended and an audit row
 * ("user.suspend" / "user.unsuspend", before/after status) in one
 * transaction. Suspending ends every live session of the member at its
 * next request. Setting the status it already has changes and records
 * nothing. *out gets the member afterwards. */
dm_err *dm_admin_user_set_status(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                                 int64_t user_id, const char *status, dm_member *out);

/* ---- import from the old platform ---- */

#define DM_IMPORT_TERMS_VERSION "imported"

typedef struct dm_import_report {
    int64_t rows;     /* data rows read */
    int64_t imported; /* members written (0 whenever a row is bad) */
    int64_t bad_line; /* 0, or the line of the first bad row */
} dm_import_report;

/* Imports a CSV (header "email,bcrypt_hash,referral_code,referrer_code,
 * created_at"; created_at RFC 3339 or Unix seconds; referrer_code empty
 * for none, else a member in the file or the database; rows in any order)
 * in one transaction: all rows or none. Members keep their bcrypt hash
 * (upgraded to argon2id at their first login), terms_version
 * DM_IMPORT_TERMS_VERSION, terms_accepted_at = created_at, and are placed
 * in the referral tree referrers first. A bad row is DM_E_INVALID with
 * field "line" and a message naming the line (rep->bad_line); nothing is
 * written then. Audited as "users.import" by the console, naming
 * `source`. */
dm_err *dm_admin_import_users(dm_db *db, apr_pool_t *p, const char *csv, size_t len,
                              const char *source, dm_import_report *rep);

/* Staff set a member's level by hand (1..10, up or down), in its own
 * transaction, audited "user.vip" (before/after); *out the member after. */
dm_err *dm_admin_user_set_vip(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                              int64_t user_id, int level, dm_member *out);

#endif
