/*
 * twofa.h — two-factor sign-in (RFC 6238 TOTP) for members and staff, and
 * the protections that follow security changes.
 *
 * One enrolment per account (subject "member" or "staff" + id): setup
 * draws a secret and keeps it pending; enable checks a first code against
 * it, turns it on and hands out DM_2FA_RECOVERY_CODES single-use recovery
 * codes (shown once, stored hashed); disable needs a code. The secret is
 * stored encrypted (XChaCha20-Poly1305 under a key derived from
 * DeepMineSecretKeyFile, bound to its account), never in the clear.
 *
 * A code is accepted for the current 30-second step or one either side,
 * and only for a step later than the last one accepted (replay): the guarded
 * UPDATE of last_step makes two concurrent uses of one code yield one
 * success. Login with 2FA on answers a challenge (an opaque token, stored
 * hashed, DM_2FA_CHALLENGE_TTL seconds, DM_2FA_CHALLENGE_TRIES wrong codes)
 * that a code exchanges for a session (members.h, staff.h).
 *
 * A password change or reset and a 2FA change lock the member's withdrawals
 * for the protection delay (DeepMineWithdrawalAddressDelay, the same delay
 * a new withdrawal address waits) and e-mail the member.
 */
#ifndef DM_TWOFA_H
#define DM_TWOFA_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <stdint.h>

#include "base/err.h"
#include "base/token.h"
#include "members/members.h"
#include "store/db.h"

#define DM_2FA_RECOVERY_CODES 10
#define DM_2FA_CHALLENGE_TTL 300
#define DM_2FA_CHALLENGE_TRIES 5
#define DM_2FA_WINDOW 1 /* steps accepted either side of now */
#define DM_2FA_ISSUER "DeepMine"
#define DM_PROTECT_DEFAULT_DELAY (24 * 3600)

/* "member" or "staff": whose enrolment. */
#define DM_2FA_MEMBER "member"
#define DM_2FA_STAFF "staff"

/* The protection delay (seconds, >= 0): how long a confirmed address waits
 * and how long a security change locks withdrawals. Set once at start-up
 * (DeepMineWithdrawalAddressDelay); default DM_PROTECT_DEFAULT_DELAY. */
void dm_protect_set_delay(int64_t seconds);
int64_t dm_protect_delay(void);

typedef struct dm_2fa_state {
    int enabled;
    int64_t enabled_at; /* 0: off */
    int pending;        /* a setup waits for its first code */
    int recovery_left;  /* unused recovery codes */
} dm_2fa_state;

dm_err *dm_2fa_state_get(dm_db *db, apr_pool_t *p, const char *subject, int64_t owner,
                         dm_2fa_state *out);

/* Draws a new secret for `owner` and keeps it pending (replacing an older
 * pending one), in its own transaction. *secret: base32 for typing in;
 * *uri: the otpauth:// URI for a QR code, labelled "DeepMine:<account>".
 * DM_E_CONFLICT when 2FA is already on. */
dm_err *dm_2fa_setup(dm_db *db, apr_pool_t *p, const dm_keys *keys, const char *subject,
                     int64_t owner, const char *account, const char **secret, const char **uri);

/* In the caller's transaction: checks `code` against the pending secret
 * and turns 2FA on; *codes (const char *) gets the recovery codes, in the
 * clear this once. DM_E_CONFLICT when no setup is pending or 2FA is
 * already on; DM_E_INVALID_CODE for a wrong or malformed code. */
dm_err *dm_2fa_enable(dm_db *db, apr_pool_t *p, const dm_keys *keys, const char *subject,
                      int64_t owner, const char *code, apr_array_header_t **codes);

/* In the caller's transaction: accepts a current TOTP code (not used
 * before: last_step moves on) or, when allow_recovery, an unused recovery
 * code (then spent; *used_recovery 1). DM_E_INVALID_CODE otherwise (a
 * code of other than 6 digits included); DM_E_CONFLICT when 2FA is off. */
dm_err *dm_2fa_verify(dm_db *db, apr_pool_t *p, const dm_keys *keys, const char *subject,
                      int64_t owner, const char *code, int allow_recovery, int *used_recovery);

/* In the caller's transaction: turns 2FA off (secret and recovery codes
 * deleted). The caller has verified a code. */
dm_err *dm_2fa_remove(dm_db *db, apr_pool_t *p, const char *subject, int64_t owner);

/* In the caller's transaction: a new login challenge for `owner`. */
dm_err *dm_2fa_challenge_new(dm_db *db, apr_pool_t *p, const dm_keys *keys, const char *subject,
                             int64_t owner, const char *ip, const char **token);

/* Whose live challenge `token` is (for per-account rate limits), without
 * using it. DM_E_UNAUTHORIZED when unknown, used, expired or worn out. */
dm_err *dm_2fa_challenge_owner(dm_db *db, apr_pool_t *p, const dm_keys *keys, const char *subject,
                               const char *token, int64_t *owner);

/* In the caller's transaction: checks `code` for the live challenge
 * `token` (dm_2fa_verify, recovery codes allowed) and spends the
 * challenge. *owner gets its account. On DM_E_INVALID_CODE the caller
 * rolls back and calls dm_2fa_challenge_failed. */
dm_err *dm_2fa_challenge_take(dm_db *db, apr_pool_t *p, const dm_keys *keys, const char *subject,
                              const char *token, const char *code, int64_t *owner);

/* Counts one wrong code against the challenge, in its own transaction. */
dm_err *dm_2fa_challenge_failed(dm_db *db, apr_pool_t *p, const dm_keys *keys, const char *subject,
                                const char *token);

/* ---- members ---- */

/* In the caller's transaction: locks member m's withdrawals until now +
 * the protection delay (never shortening a longer lock) and queues the
 * "withdrawals_locked" e-mail naming `reason` ("your password was
 * changed"); `event` makes its idempotency key. */
dm_err *dm_member_lock_withdrawals(dm_db *db, apr_pool_t *p, const dm_member *m, const char *reason,
                                   const char *event);

/* The enrolment steps of member m, each in its own transaction; enable and
 * disable lock withdrawals and e-mail the member ("twofa_enabled",
 * "twofa_disabled"). Disable takes a TOTP or a recovery code. */
dm_err *dm_member_2fa_setup(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_member *m,
                            const char **secret, const char **uri);
dm_err *dm_member_2fa_enable(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_member *m,
                             const char *code, apr_array_header_t **codes);
dm_err *dm_member_2fa_disable(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_member *m,
                              const char *code);

#endif
