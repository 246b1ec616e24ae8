/*
 * staff.h — staff accounts, kept apart from members: their own table, their
 * own opaque sessions (the dm_admin cookie, never a member JWT), and roles.
 *
 * Roles: owner (everything), finance, support, kyc; what each may do is the
 * table of routes in http/routes_admin.c. Accounts are created from the
 * console (deepminectl) with a random one-time password shown once. A
 * session is an opaque token stored hashed (under the token-hash key) for
 * DM_STAFF_SESSION_TTL seconds, revoked at logout. Logins and logouts are
 * written to the audit log like every other staff action.
 */
#ifndef DM_STAFF_H
#define DM_STAFF_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "store/db.h"
#include "base/err.h"
#include "members/members.h"

#define DM_STAFF_SESSION_TTL (8 * 3600)
#define DM_STAFF_PASSWORD_LEN 20

/* Role bits, for tables of who may do what. */
#define DM_ROLE_OWNER 0x1u
#define DM_ROLE_FINANCE 0x2u
#define DM_ROLE_SUPPORT 0x4u
#define DM_ROLE_KYC 0x8u
#define DM_ROLE_ANY (DM_ROLE_OWNER | DM_ROLE_FINANCE | DM_ROLE_SUPPORT | DM_ROLE_KYC)

typedef struct dm_staff {
    int64_t id;
    const char *email;
    const char *role;   /* "owner" | "finance" | "support" | "kyc" */
    const char *status; /* "active" | "disabled" */
    int64_t created_at;
    int enrol_only; /* dm_staff_authenticate: the session may only enrol in 2FA */
} dm_staff;

typedef struct dm_staff_session {
    const char *token; /* for the dm_admin cookie; only its hash is stored */
    int64_t expires;   /* Unix seconds */
} dm_staff_session;

/* The bit of a role name, 0 for anything else. */
unsigned dm_staff_role_bit(const char *role);

/* Creates an active account with a random password of DM_STAFF_PASSWORD_LEN
 * characters from an unambiguous alphabet, returned in *password (shown
 * once; only its argon2id hash is kept). Audited as "staff.create" by
 * `actor` (0: the console) from `ip` (NULL: the console). A bad address or
 * role is DM_E_INVALID ("email" / "role"); an existing address
 * DM_E_CONFLICT. */
dm_err *dm_staff_create(dm_db *db, apr_pool_t *p, const dm_services *s, int64_t actor,
                        const char *ip, const char *email, const char *role, dm_staff *out,
                        const char **password);

/* Creates an owner only when no owner account exists (checked and created
 * in one transaction): *created 1 with *out and *password filled, else 0
 * and nothing written. */
dm_err *dm_staff_ensure_owner(dm_db *db, apr_pool_t *p, const dm_services *s, const char *email,
                              int *created, dm_staff *out, const char **password);

/* Wrong e-mail or password: DM_E_UNAUTHORIZED, in the same time for an
 * unknown address (a dummy verification). A disabled account with the
 * right password: DM_E_FORBIDDEN. On success a new session. */
dm_err *dm_staff_login(dm_db *db, apr_pool_t *p, const dm_services *s, const char *email,
                       const char *password, const char *ip, dm_staff *out, dm_staff_session *sess);

/* The staff login with two-factor sign-in (docs/security.md). After the
 * password: when the account has 2FA on, no session but *challenge (for
 * dm_staff_login_2fa); else, when `require_2fa` and the role is owner or
 * finance (DeepMineStaff2FA required), a session that may only enrol
 * (*enrol_only 1) until dm_staff_2fa_enable; else a full session.
 * Errors as dm_staff_login. dm_staff_login itself refuses an account with
 * 2FA on (DM_E_TWO_FACTOR_REQUIRED) and never requires enrolment. */
dm_err *dm_staff_login_begin(dm_db *db, apr_pool_t *p, const dm_services *s, const char *email,
                             const char *password, const char *ip, int require_2fa, dm_staff *out,
                             dm_staff_session *sess, const char **challenge, int *enrol_only);

/* The second step: a live challenge and a current TOTP or unused recovery
 * code give a full session (audited "staff.login"). DM_E_UNAUTHORIZED for
 * a dead challenge, DM_E_INVALID_CODE for a wrong or replayed code. */
dm_err *dm_staff_login_2fa(dm_db *db, apr_pool_t *p, const dm_services *s, const char *challenge,
                           const char *code, const char *ip, dm_staff *out, dm_staff_session *sess);

/* Does `role` have to use 2FA under DeepMineStaff2FA required? */
int dm_staff_role_needs_2fa(const char *role);

/* Staff enrolment (members/twofa.h): setup; enable (then every session of
 * the account may do everything; audited "staff.2fa.enable"); disable
 * with a code (audited "staff.2fa.disable"), refused (DM_E_CONFLICT) when
 * `require_2fa` and the role needs it. */
dm_err *dm_staff_2fa_setup(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_staff *st,
                           const char **secret, const char **uri);
dm_err *dm_staff_2fa_enable(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_staff *st,
                            const char *code, const char *ip, apr_array_header_t **codes);
dm_err *dm_staff_2fa_disable(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_staff *st,
                             const char *code, const char *ip, int require_2fa);

/* The operator's way out for an account that lost its authenticator and
 * its recovery codes (deepminectl twofa reset): removes the enrolment of
 * member or staff `owner` (subject DM_2FA_MEMBER / DM_2FA_STAFF), audited
 * "twofa.reset" as the console. A member is e-mailed ("twofa_disabled") and
 * their withdrawals paused, as when they turn it off. DM_E_NOT_FOUND when
 * the account has no enrolment. */
dm_err *dm_2fa_console_reset(dm_db *db, apr_pool_t *p, const char *subject, int64_t owner);

/* The staff member of a live session: DM_E_UNAUTHORIZED for an unknown,
 * expired or revoked token, DM_E_FORBIDDEN for a disabled account. */
dm_err *dm_staff_authenticate(dm_db *db, apr_pool_t *p, const dm_services *s, const char *token,
                              dm_staff *out);

/* Revokes the session of `token` (audited as "staff.logout"); an unknown or
 * already ended session is not an error. */
dm_err *dm_staff_logout(dm_db *db, apr_pool_t *p, const dm_services *s, const char *token,
                        const char *ip);

/* Every account, by id. Rows are dm_staff. */
dm_err *dm_staff_list(dm_db *db, apr_pool_t *p, apr_array_header_t **rows);

/* {"id","email","role"} (caller owns it). */
json_t *dm_staff_json(const dm_staff *st);

#endif
