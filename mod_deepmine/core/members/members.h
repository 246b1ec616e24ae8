/*
 * members.h — member accounts and their sessions: registration (with the
 * referral placement and the terms record, in one transaction), login with
 * rehash-on-login, refresh-token rotation with reuse detection, logout,
 * access-token authentication, e-mail verification, password reset, and
 * acceptance of new terms.
 *
 * Access tokens are JWTs for DM_ACCESS_TTL seconds that carry the member's
 * token_version: suspending a member or resetting the password bumps it, so
 * live tokens stop working at the next request. Refresh tokens are opaque,
 * stored hashed, live DM_REFRESH_TTL, and are rotated on every use; a family
 * is one login, and presenting an already-rotated token revokes the family.
 */
#ifndef DM_MEMBERS_H
#define DM_MEMBERS_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "store/db.h"
#include "base/err.h"
#include "base/json.h"
#include "members/legal.h"
#include "members/password.h"
#include "referral/referral.h"
#include "base/token.h"

#define DM_ACCESS_TTL (15 * 60)
#define DM_REFRESH_TTL (30 * 24 * 3600)
#define DM_VERIFY_TTL (48 * 3600)
#define DM_RESET_TTL (3600)

/* What the member functions need from their host, set up once. */
typedef struct dm_services {
    const dm_keys *keys;
    dm_pw_limiter *pw_limiter; /* may be NULL (CLI) */
    dm_pw_params pw_params;
    const dm_legal *legal;
    const char *public_url; /* links in e-mails */
} dm_services;

typedef struct dm_member {
    int64_t id;
    const char *email;
    const char *name;
    const char *referral_code;
    int64_t referrer_id; /* 0: none */
    int vip_level;
    const char *status; /* "active" | "suspended" */
    int64_t token_version;
    int64_t email_verified_at; /* 0: not verified */
    const char *kyc_status;
    const char *terms_version;
    int64_t created_at;
    /* Ledger balances in the platform currency, filled by dm_member_get
     * (and login); 0 elsewhere. balance_micros < 0 is a debt. */
    int64_t balance_micros;
    int64_t held_micros;
} dm_member;

typedef struct dm_session {
    const char *access_token;
    int64_t access_expires;
    const char *refresh_token;
    int64_t refresh_expires;
    const char *csrf_token;
    const char *family; /* the refresh family (login) the tokens belong to */
    /* Inputs, optional (zero the struct first): where the login comes
     * from, recorded with its refresh tokens (GET /api/me/sessions). */
    const char *ip;
    const char *user_agent;
    /* Set by dm_member_login instead of a session when 2FA is on: the
     * challenge dm_member_login_2fa exchanges, with a code, for one. */
    const char *challenge;
} dm_session;

typedef struct dm_register_req {
    const char *email;
    const char *password;
    const char *referral_code; /* NULL: none */
    int accept_terms;
    const char *terms_version;
    const char *ip;
} dm_register_req;

dm_err *dm_member_register(dm_db *db, apr_pool_t *p, const dm_services *s,
                           const dm_register_req *req, dm_member *out, dm_session *sess);

/* The rows that make a member, as registration writes them once it has
 * checked the request: the users row (with a fresh referral code, drawn
 * again on a collision), its place in the referral tree
 * (dm_referral_attach) and the record of its acceptance of `terms`, all
 * at dm_now(), in the caller's transaction. Nothing is validated here:
 * registration validates first; bulk loads (members/member_bulk.h) write
 * the same rows their own faster way, and a unit test holds them equal. */
typedef struct dm_member_new {
    int64_t id; /* 0: the next id (registration); else this one */
    const char *email;
    const char *email_key;
    const char *password_hash;
    int64_t referrer_id; /* 0: a root */
    const dm_legal_doc *terms;
    const char *ip; /* recorded with the acceptance */
} dm_member_new;

dm_err *dm_member_insert(dm_db *db, apr_pool_t *p, const dm_member_new *m, int64_t *id);

/* Wrong e-mail or password: DM_E_UNAUTHORIZED (the same answer for both,
 * in the same time). Suspended: DM_E_FORBIDDEN. */
dm_err *dm_member_login(dm_db *db, apr_pool_t *p, const dm_services *s, const char *email,
                        const char *password, const char *ip, dm_member *out, dm_session *sess);

/* The second step of a login with 2FA on: `challenge` (from
 * dm_member_login) and a current TOTP code or an unused recovery code give
 * the session. DM_E_UNAUTHORIZED for a dead challenge (expired, used, or
 * DM_2FA_CHALLENGE_TRIES wrong codes), DM_E_INVALID_CODE for a wrong,
 * malformed or replayed code (counted against the challenge). */
dm_err *dm_member_login_2fa(dm_db *db, apr_pool_t *p, const dm_services *s, const char *challenge,
                            const char *code, dm_member *out, dm_session *sess);

/* Member `user_id` changes the password: `current` must be right
 * (DM_E_INVALID naming "current_password"), `password` must pass the
 * policy. One transaction: the new hash, token_version bumped, every
 * refresh family revoked, a new family for the caller (*sess: the new
 * session), withdrawals locked (twofa.h) and "password_changed" e-mailed. */
dm_err *dm_member_change_password(dm_db *db, apr_pool_t *p, const dm_services *s, int64_t user_id,
                                  const char *current, const char *password, dm_member *out,
                                  dm_session *sess);

/* One login of a member, as GET /api/me/sessions lists it: a refresh
 * family that still has a live token. id is the family's first token row
 * (the family's own id never leaves the server). */
typedef struct dm_login_session {
    int64_t id;
    const char *family; /* internal: matched against the caller's family */
    int64_t created_at;
    int64_t last_used_at; /* the newest rotation */
    const char *ip;       /* of the newest rotation; may be NULL */
    const char *user_agent;
} dm_login_session;

/* The member's live logins, most recently used first (dm_login_session). */
dm_err *dm_member_sessions(dm_db *db, apr_pool_t *p, int64_t user_id, apr_array_header_t **rows);

/* GET /api/me/sessions's JSON of one login: {"id","created_at",
 * "last_used_at","ip","user_agent","current"}; current when its family is
 * `current_family` (NULL: unknown, every login false). */
json_t *dm_login_session_json(apr_pool_t *p, const dm_login_session *ls,
                              const char *current_family);

/* Ends login `id` of member `user_id` (its family revoked);
 * DM_E_NOT_FOUND when it is not one of the member's live logins. */
dm_err *dm_member_session_end(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t id);

dm_err *dm_member_refresh(dm_db *db, apr_pool_t *p, const dm_services *s, const char *refresh_token,
                          dm_member *out, dm_session *sess);

/* Revokes the family of `refresh_token`; an unknown token is not an error. */
dm_err *dm_member_logout(dm_db *db, apr_pool_t *p, const dm_services *s, const char *refresh_token);

/* The login (refresh family) a valid access token belongs to (its `fam`
 * claim), for telling the caller's own session in a list; NULL for a token
 * that does not verify or carries none. */
const char *dm_member_token_family(apr_pool_t *p, const dm_services *s, const char *token);

/* Verifies an access token and loads its member: DM_E_UNAUTHORIZED for a
 * bad, expired or outdated (token_version) token or one whose login (refresh
 * family) was revoked by logout or refresh-token reuse, DM_E_FORBIDDEN when
 * suspended. */
dm_err *dm_member_authenticate(dm_db *db, apr_pool_t *p, const dm_services *s,
                               const char *access_token, dm_member *out);
/* dm_member_authenticate in two steps: the token's signature and claims
 * (no database), then its member (the database). A caller that takes a
 * pooled connection does the first before taking it. */
dm_err *dm_member_token_check(apr_pool_t *p, const dm_services *s, const char *access_token,
                              dm_claims *c);
dm_err *dm_member_authenticate_claims(dm_db *db, apr_pool_t *p, const dm_claims *c, dm_member *out);
/* dm_member_authenticate_claims for GET /api/referrals/network: the
 * member's referral counters (dm_referral_network's) read in the same
 * statement, and of the member only what authentication needs (id, status,
 * token_version; the other fields 0 or NULL). The same errors. */
dm_err *dm_member_authenticate_network(dm_db *db, apr_pool_t *p, const dm_claims *c, dm_member *out,
                                       dm_network *net);

dm_err *dm_member_get(dm_db *db, apr_pool_t *p, int64_t id, dm_member *out);

dm_err *dm_member_verify_email(dm_db *db, apr_pool_t *p, const dm_services *s, const char *token);

/* Always succeeds for a well-formed address (no account probing); queues a
 * reset e-mail when the account exists. */
dm_err *dm_member_reset_request(dm_db *db, apr_pool_t *p, const dm_services *s, const char *email,
                                const char *ip);

/* Sets the new password and revokes every session of the member. */
dm_err *dm_member_reset_confirm(dm_db *db, apr_pool_t *p, const dm_services *s, const char *token,
                                const char *password);

dm_err *dm_member_accept_terms(dm_db *db, apr_pool_t *p, const dm_services *s, int64_t user_id,
                               const char *version, const char *ip);

/* Suspends (1) or reinstates (0); suspending bumps token_version and
 * revokes every refresh token. In the caller's transaction if one is open. */
dm_err *dm_member_set_suspended(dm_db *db, apr_pool_t *p, int64_t user_id, int suspended);

/* The public JSON of a member (GET /api/me's "user"). Caller owns it.
 * Read back from dm_member_write's bytes: one list of fields. */
json_t *dm_member_json(apr_pool_t *p, const dm_services *s, const dm_member *m);

/* The same object written straight into b (GET /api/me, on every
 * request), byte for byte what dm_json_dump makes of dm_member_json (a
 * unit test holds the two together: the writer escapes as jansson does). */
void dm_member_write(dm_jbuf *b, const dm_services *s, const dm_member *m);

#endif
