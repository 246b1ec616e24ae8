/*
 * kyc_crypt.h — documents encrypted at rest.
 *
 * Each document gets a fresh random key and is encrypted with libsodium's
 * crypto_secretstream_xchacha20poly1305 in chunks of DM_KYC_CHUNK bytes
 * (the last chunk tagged FINAL), so every chunk is authenticated and a
 * truncated, reordered or altered object fails. The document key is then
 * wrapped (crypto_aead_xchacha20poly1305_ietf, a random nonce, the
 * object's storage key as associated data, so a wrapped key only opens
 * the object it was made for) under the *wrapping key*: derived with
 * crypto_kdf from the 32-byte DeepMineSecretKeyFile (context "DMkycDoc",
 * id 1). The secret is never in the database; the database keeps the
 * wrapped key, its nonce and the *key id* of the secret that wrapped it
 * (16 hex digits, derived the same way with id 2: names a secret, reveals
 * nothing of it).
 *
 * Object layout: secretstream header (24 bytes), then chunks of
 * DM_KYC_CHUNK + 17 bytes, the last one shorter (17 bytes of overhead
 * each). An empty document is never sealed.
 */
#ifndef DM_KYC_CRYPT_H
#define DM_KYC_CRYPT_H

#include <apr_pools.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define DM_KYC_CHUNK 65536
#define DM_KYC_KEY_ID_CHARS 16
#define DM_KYC_WRAPPED_BYTES 48 /* 32-byte key + 16-byte tag */
#define DM_KYC_NONCE_BYTES 24

/* The wrapping key and the key id of one secret. */
typedef struct dm_kyc_master {
    unsigned char wrap[32];
    char key_id[DM_KYC_KEY_ID_CHARS + 1];
} dm_kyc_master;

void dm_kyc_master_derive(const unsigned char secret[32], dm_kyc_master *out);

/* A sealed document: the object's bytes and what the row keeps. */
typedef struct dm_kyc_sealed {
    unsigned char *object; /* in the pool */
    size_t object_len;
    unsigned char wrapped[DM_KYC_WRAPPED_BYTES];
    unsigned char nonce[DM_KYC_NONCE_BYTES];
    char key_id[DM_KYC_KEY_ID_CHARS + 1];
} dm_kyc_sealed;

/* Size of the object sealing len bytes makes. */
size_t dm_kyc_sealed_size(size_t len);

/* Encrypts plain (len > 0) under a fresh key wrapped for storage_key. */
dm_err *dm_kyc_seal(apr_pool_t *p, const dm_kyc_master *m, const char *storage_key,
                    const void *plain, size_t len, dm_kyc_sealed *out);

/* Opens a whole object: the wrapped key (made under m: key_id must be
 * m's, else DM_E_UNAVAILABLE naming both ids), then every chunk. Any
 * failure (a wrong key, an altered, truncated or extended object) is
 * DM_E_INTERNAL "… failed its integrity check" and *plain is NULL: a
 * document is returned whole or not at all. */
dm_err *dm_kyc_open(apr_pool_t *p, const dm_kyc_master *m, const char *storage_key,
                    const char *key_id, const unsigned char *wrapped, size_t wrapped_len,
                    const unsigned char *nonce, size_t nonce_len, const unsigned char *object,
                    size_t object_len, unsigned char **plain, size_t *plain_len);

/* Re-wraps a document key made under `from` for `to` (rekey): *out gets
 * the new wrapped key and nonce. DM_E_INTERNAL when the old one does not
 * open. */
dm_err *dm_kyc_rewrap(apr_pool_t *p, const dm_kyc_master *from, const dm_kyc_master *to,
                      const char *storage_key, const unsigned char *wrapped, size_t wrapped_len,
                      const unsigned char *nonce, size_t nonce_len, dm_kyc_sealed *out);

#endif
