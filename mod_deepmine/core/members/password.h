/*
 * password.h — password hashing (argon2id through libsodium's
 * crypto_pwhash_str), verification of hashes imported from the old platform
 * (bcrypt $2b$/$2y$ through crypt_r), the rehash-on-login rule, and the
 * password policy (length, the e-mail's local part, libpwquality's
 * dictionary and similarity checks).
 *
 * Hashing is memory-hard on purpose, so a process runs at most `max` hashes
 * at once (a dm_pw_limiter); the rest wait up to `wait_ms`, then get
 * DM_E_UNAVAILABLE (503) — a login storm cannot exhaust memory.
 */
#ifndef DM_PASSWORD_H
#define DM_PASSWORD_H

#include <apr_pools.h>
#include <stddef.h>

#include "base/err.h"

typedef struct dm_pw_params {
    unsigned long long opslimit; /* 0: crypto_pwhash_OPSLIMIT_INTERACTIVE */
    size_t memlimit;             /* bytes; 0: crypto_pwhash_MEMLIMIT_INTERACTIVE */
} dm_pw_params;

typedef struct dm_pw_limiter dm_pw_limiter;

/* max >= 1 concurrent hashes per process; wait_ms how long a caller waits
 * for a slot. Thread-safe; lives in p. */
dm_err *dm_pw_limiter_create(apr_pool_t *p, int max, int wait_ms, dm_pw_limiter **out);

/* argon2id hash of `password` (NUL-terminated) into *out (pool p).
 * lim may be NULL (no cap: CLI, tests). */
dm_err *dm_pw_hash(apr_pool_t *p, dm_pw_limiter *lim, const dm_pw_params *params,
                   const char *password, const char **out);

/* Checks `password` against `stored` (argon2id, or bcrypt $2a$/$2b$/$2y$).
 * *ok is 1 on a match. *needs_rehash is 1 when the stored hash should be
 * replaced (bcrypt, or argon2id with other parameters than `params`).
 * Unknown hash formats are a mismatch, never an error. */
dm_err *dm_pw_verify(apr_pool_t *p, dm_pw_limiter *lim, const dm_pw_params *params,
                     const char *stored, const char *password, int *ok, int *needs_rehash);

/* A fixed-cost verification against a dummy hash, for unknown accounts, so
 * a login's timing does not reveal whether an address is registered. It
 * takes a limiter slot like a real check, so it fails (DM_E_UNAVAILABLE)
 * exactly when a real check would: return that error as for a known
 * account, or a busy server tells which addresses are registered. */
dm_err *dm_pw_verify_dummy(apr_pool_t *p, dm_pw_limiter *lim, const dm_pw_params *params,
                           const char *password);

/* The policy: at least 10 characters (UTF-8 code points), at most 128
 * bytes, valid UTF-8 without control characters, must not contain the
 * e-mail's local part (case-insensitive, when that is 3+ characters), and
 * must pass libpwquality (dictionary, similarity to the e-mail). A failure
 * is DM_E_INVALID with field "password" and the library's reason. */
dm_err *dm_pw_policy_check(apr_pool_t *p, const char *password, const char *email);

#endif
