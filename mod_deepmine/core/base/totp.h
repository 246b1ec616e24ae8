/*
 * totp.h — the arithmetic of RFC 6238 time-based one-time passwords
 * (HOTP of RFC 4226 over the 30-second step), HMAC-SHA1 from OpenSSL's
 * libcrypto (libsodium has no SHA-1), and RFC 4648 base32 without padding,
 * the form authenticator apps take a secret in. No storage and no policy
 * here: members/twofa.h decides which steps count and which were used.
 */
#ifndef DM_TOTP_H
#define DM_TOTP_H

#include <apr_pools.h>
#include <stddef.h>
#include <stdint.h>

#define DM_TOTP_PERIOD 30
#define DM_TOTP_DIGITS 6
#define DM_TOTP_SECRET_BYTES 20 /* 160 bits, RFC 4226's recommendation */

/* The step of Unix time t: floor(t / 30) (t before 1970 is step 0). */
int64_t dm_totp_step(int64_t t);

/* The HOTP value of `key` at counter `step`, truncated to `digits` (6..8)
 * decimal digits. Returns -1 when the HMAC could not be computed. */
long dm_totp_code(const unsigned char *key, size_t key_len, int64_t step, int digits);

/* Is `code` exactly DM_TOTP_DIGITS ASCII digits? */
int dm_totp_well_formed(const char *code);

/* The step in [step(now) - window, step(now) + window] whose code equals
 * `code` and that is later than `after` (the last step used: a code is
 * good once), or 0 when none. `code` must be well formed. */
int64_t dm_totp_match(const unsigned char *key, size_t key_len, const char *code, int64_t now,
                      int window, int64_t after);

/* RFC 4648 base32 (A-Z2-7), upper case, without '=' padding. */
const char *dm_base32_encode(apr_pool_t *p, const unsigned char *data, size_t len);

/* Decodes base32, case-insensitive, ignoring '=' padding, spaces and
 * hyphens. Returns 0 with *out and *out_len set, or -1 on any other character or
 * trailing bits that are not zero. */
int dm_base32_decode(apr_pool_t *p, const char *text, unsigned char **out, size_t *out_len);

#endif
