/*
 * rsa.c — see rsa.h. One EVP_DigestVerify over the whole message; the key
 * is read afresh on every call (a provider rotates its certificate, and a
 * webhook's verification is not the hot path of anything).
 */
#include "base/rsa.h"

#include <limits.h>
#include <openssl/rsa.h>

#include "base/libcrypto.h"

static EVP_PKEY *read_key(const dm_libcrypto *lc, const char *pem, size_t pem_len)
{
    BIO *b;
    EVP_PKEY *k = NULL;

    if (!pem || pem_len == 0 || pem_len > INT_MAX) {
        return NULL;
    }
    b = lc->BIO_new_mem_buf(pem, (int)pem_len);
    if (!b) {
        return NULL;
    }
    k = lc->PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    if (!k) {
        X509 *cert;
        (void)lc->BIO_ctrl(b, BIO_CTRL_RESET, 0, NULL); /* BIO_reset */
        cert = lc->PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (cert) {
            k = lc->X509_get_pubkey(cert);
            lc->X509_free(cert);
        }
    }
    lc->BIO_free(b);
    if (k && lc->EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
        lc->EVP_PKEY_free(k);
        k = NULL;
    }
    return k;
}

int dm_rsa_sha256_verify(const char *pem, size_t pem_len, const void *data, size_t len,
                         const void *sig, size_t sig_len)
{
    const dm_libcrypto *lc = dm_libcrypto_get();
    EVP_PKEY *k = lc ? read_key(lc, pem, pem_len) : NULL;
    EVP_MD_CTX *ctx;
    int ok = 0;

    if (!lc) {
        return 0; /* nothing can be verified: refused (DM01902 says why) */
    }
    if (!k) {
        return -1;
    }
    ctx = lc->EVP_MD_CTX_new();
    if (ctx && sig && sig_len > 0 && (data || len == 0) &&
        lc->EVP_DigestVerifyInit(ctx, NULL, lc->EVP_sha256(), NULL, k) == 1) {
        EVP_PKEY_CTX *pctx = lc->EVP_MD_CTX_get_pkey_ctx(ctx);
        if (pctx && lc->EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1) {
            ok = lc->EVP_DigestVerify(ctx, sig, sig_len, data ? data : (const void *)"", len) == 1;
        }
    }
    lc->EVP_MD_CTX_free(ctx);
    lc->EVP_PKEY_free(k);
    return ok;
}
