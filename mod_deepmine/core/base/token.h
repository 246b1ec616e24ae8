/*
 * token.h — signed access tokens (JWT, HS256, `alg` pinned) and opaque
 * random tokens (refresh, e-mail, staff sessions) that are stored hashed.
 *
 * Keys: every key is derived from the 32-byte DeepMineSecretKeyFile with
 * libsodium's crypto_kdf under its own purpose id, so a leak of one derived
 * key (say, the token-hashing key) reveals nothing about another.
 */
#ifndef DM_TOKEN_H
#define DM_TOKEN_H

#include <apr_pools.h>
#include <stdint.h>

#include "base/err.h"

#define DM_KEY_BYTES 32

typedef enum dm_key_purpose {
    DM_KEY_JWT = 1,         /* access-token signatures */
    DM_KEY_TOKEN_HASH = 2,  /* hashing opaque tokens before storing them */
    DM_KEY_UNSUBSCRIBE = 3, /* signed unsubscribe links (mail) */
    DM_KEY_WEBHOOK = 4,     /* the sandbox payment plugin's own webhooks */
    DM_KEY_TOTP = 21        /* encrypting TOTP secrets at rest (members/twofa.h) */
} dm_key_purpose;

typedef struct dm_keys {
    unsigned char jwt[DM_KEY_BYTES];
    unsigned char token_hash[DM_KEY_BYTES];
    unsigned char unsubscribe[DM_KEY_BYTES];
    /* Encrypts the secrets that wait in mail_queue (mail/mailq.h). Derived
     * under a context of its own ("DMmailq1", subkey 1) rather than a
     * purpose id of "DeepMine", so no later purpose id can collide. */
    unsigned char mail_seal[DM_KEY_BYTES];
    unsigned char totp[DM_KEY_BYTES];
} dm_keys;

void dm_keys_derive(const unsigned char master[DM_KEY_BYTES], dm_keys *out);

typedef struct dm_claims {
    const char *typ;       /* "member" */
    int64_t sub;           /* member id */
    int64_t ver;           /* the member's token_version when issued */
    int64_t iat, nbf, exp; /* Unix seconds */
    const char *fam;       /* the refresh family (login) it belongs to; NULL:
                              none (signed without, verified as absent) */
} dm_claims;

/* A compact JWS: base64url(header).base64url(payload).base64url(HMAC). */
const char *dm_jwt_sign(apr_pool_t *p, const unsigned char key[DM_KEY_BYTES], const dm_claims *c);

/* Verifies signature, `alg` == "HS256" exactly, `typ` claim == want_typ,
 * nbf <= now + leeway, exp > now - leeway, `fam` a string when present
 * (out->fam NULL when absent). Any failure: DM_E_UNAUTHORIZED. */
dm_err *dm_jwt_verify(apr_pool_t *p, const unsigned char key[DM_KEY_BYTES], const char *token,
                      const char *want_typ, int64_t now, int64_t leeway, dm_claims *out);

/* 32 random bytes, base64url without padding (43 characters). */
const char *dm_token_new(apr_pool_t *p);

/* The stored form of an opaque token: hex HMAC-SHA-256 under the
 * token-hash key. */
const char *dm_token_hash(apr_pool_t *p, const unsigned char key[DM_KEY_BYTES], const char *token);

/* base64url without padding. */
const char *dm_b64url(apr_pool_t *p, const void *data, size_t len);

#endif
