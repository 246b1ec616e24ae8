/*
 * kyc_crypt.c — see kyc_crypt.h.
 */
#include "kyc/kyc_crypt.h"

#include <sodium.h>
#include <string.h>

#define HEADER_BYTES crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define OVERHEAD crypto_secretstream_xchacha20poly1305_ABYTES

static const char kdf_ctx[crypto_kdf_CONTEXTBYTES] = {'D', 'M', 'k', 'y', 'c', 'D', 'o', 'c'};

void dm_kyc_master_derive(const unsigned char secret[32], dm_kyc_master *out)
{
    unsigned char id[DM_KYC_KEY_ID_CHARS / 2];

    crypto_kdf_derive_from_key(out->wrap, sizeof(out->wrap), 1, kdf_ctx, secret);
    /* crypto_kdf wants at least 16 bytes out; the id is the first 8 */
    {
        unsigned char full[crypto_kdf_BYTES_MIN];
        crypto_kdf_derive_from_key(full, sizeof(full), 2, kdf_ctx, secret);
        memcpy(id, full, sizeof(id));
        sodium_memzero(full, sizeof(full));
    }
    sodium_bin2hex(out->key_id, sizeof(out->key_id), id, sizeof(id));
}

size_t dm_kyc_sealed_size(size_t len)
{
    size_t chunks = len / DM_KYC_CHUNK + (len % DM_KYC_CHUNK ? 1 : 0);
    return HEADER_BYTES + len + chunks * OVERHEAD;
}

static int wrap_key(const dm_kyc_master *m, const char *storage_key, const unsigned char key[32],
                    unsigned char wrapped[DM_KYC_WRAPPED_BYTES],
                    unsigned char nonce[DM_KYC_NONCE_BYTES])
{
    unsigned long long n = 0;

    randombytes_buf(nonce, DM_KYC_NONCE_BYTES);
    return crypto_aead_xchacha20poly1305_ietf_encrypt(wrapped, &n, key, 32,
                                                      (const unsigned char *)storage_key,
                                                      strlen(storage_key), NULL, nonce, m->wrap);
}

static int unwrap_key(const dm_kyc_master *m, const char *storage_key, const unsigned char *wrapped,
                      size_t wrapped_len, const unsigned char *nonce, size_t nonce_len,
                      unsigned char key[32])
{
    unsigned long long n = 0;

    if (wrapped_len != DM_KYC_WRAPPED_BYTES || nonce_len != DM_KYC_NONCE_BYTES) {
        return -1;
    }
    return crypto_aead_xchacha20poly1305_ietf_decrypt(key, &n, NULL, wrapped, wrapped_len,
                                                      (const unsigned char *)storage_key,
                                                      strlen(storage_key), nonce, m->wrap);
}

dm_err *dm_kyc_seal(apr_pool_t *p, const dm_kyc_master *m, const char *storage_key,
                    const void *plain, size_t len, dm_kyc_sealed *out)
{
    crypto_secretstream_xchacha20poly1305_state state;
    unsigned char key[32];
    const unsigned char *in = plain;
    unsigned char *o;
    size_t off = 0;

    memset(out, 0, sizeof(*out));
    if (len == 0) {
        return dm_err_make(p, DM_E_INVALID, "body", "the document is empty");
    }
    out->object_len = dm_kyc_sealed_size(len);
    out->object = apr_palloc(p, out->object_len);
    crypto_secretstream_xchacha20poly1305_keygen(key);
    crypto_secretstream_xchacha20poly1305_init_push(&state, out->object, key);
    o = out->object + HEADER_BYTES;
    while (off < len) {
        size_t n = len - off > DM_KYC_CHUNK ? DM_KYC_CHUNK : len - off;
        unsigned char tag = off + n == len ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0;
        unsigned long long clen = 0;
        crypto_secretstream_xchacha20poly1305_push(&state, o, &clen, in + off, n, NULL, 0, tag);
        o += clen;
        off += n;
    }
    if (wrap_key(m, storage_key, key, out->wrapped, out->nonce) != 0) {
        sodium_memzero(key, sizeof(key));
        return dm_err_make(p, DM_E_INTERNAL, NULL, "could not wrap a document key");
    }
    sodium_memzero(key, sizeof(key));
    sodium_memzero(&state, sizeof(state));
    memcpy(out->key_id, m->key_id, sizeof(out->key_id));
    return NULL;
}

static dm_err *integrity(apr_pool_t *p, const char *storage_key, const char *what)
{
    return dm_err_make(p, DM_E_INTERNAL, NULL,
                       "the stored document %s failed its integrity check (%s); it is not served",
                       storage_key, what);
}

dm_err *dm_kyc_open(apr_pool_t *p, const dm_kyc_master *m, const char *storage_key,
                    const char *key_id, const unsigned char *wrapped, size_t wrapped_len,
                    const unsigned char *nonce, size_t nonce_len, const unsigned char *object,
                    size_t object_len, unsigned char **plain, size_t *plain_len)
{
    crypto_secretstream_xchacha20poly1305_state state;
    unsigned char key[32];
    unsigned char *buf, *o;
    size_t off = HEADER_BYTES;
    unsigned char tag = 0;
    dm_err *e = NULL;

    *plain = NULL;
    *plain_len = 0;
    if (!key_id || strcmp(key_id, m->key_id) != 0) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                           "the document %s is wrapped under secret key id %s, this server's "
                           "DeepMineSecretKeyFile is key id %s (finish `deepminectl kyc rekey`)",
                           storage_key, key_id ? key_id : "?", m->key_id);
    }
    if (unwrap_key(m, storage_key, wrapped, wrapped_len, nonce, nonce_len, key) != 0) {
        return integrity(p, storage_key, "its key does not unwrap");
    }
    if (object_len < HEADER_BYTES + OVERHEAD ||
        crypto_secretstream_xchacha20poly1305_init_pull(&state, object, key) != 0) {
        sodium_memzero(key, sizeof(key));
        return integrity(p, storage_key, "no stream header");
    }
    sodium_memzero(key, sizeof(key));
    buf = apr_palloc(p, object_len);
    o = buf;
    while (off < object_len) {
        size_t n =
            object_len - off > DM_KYC_CHUNK + OVERHEAD ? DM_KYC_CHUNK + OVERHEAD : object_len - off;
        unsigned long long mlen = 0;
        if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
            e = integrity(p, storage_key, "bytes after the final chunk");
            break;
        }
        if (n < OVERHEAD || crypto_secretstream_xchacha20poly1305_pull(
                                &state, o, &mlen, &tag, object + off, n, NULL, 0) != 0) {
            e = integrity(p, storage_key, "a chunk does not authenticate");
            break;
        }
        o += mlen;
        off += n;
    }
    if (!e && tag != crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
        e = integrity(p, storage_key, "truncated");
    }
    sodium_memzero(&state, sizeof(state));
    if (e) {
        sodium_memzero(buf, object_len);
        return e;
    }
    *plain = buf;
    *plain_len = (size_t)(o - buf);
    return NULL;
}

dm_err *dm_kyc_rewrap(apr_pool_t *p, const dm_kyc_master *from, const dm_kyc_master *to,
                      const char *storage_key, const unsigned char *wrapped, size_t wrapped_len,
                      const unsigned char *nonce, size_t nonce_len, dm_kyc_sealed *out)
{
    unsigned char key[32];
    int rc;

    memset(out, 0, sizeof(*out));
    if (unwrap_key(from, storage_key, wrapped, wrapped_len, nonce, nonce_len, key) != 0) {
        return integrity(p, storage_key, "its key does not unwrap under the old secret");
    }
    rc = wrap_key(to, storage_key, key, out->wrapped, out->nonce);
    sodium_memzero(key, sizeof(key));
    if (rc != 0) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "could not wrap a document key");
    }
    memcpy(out->key_id, to->key_id, sizeof(out->key_id));
    return NULL;
}
