/*
 * rsa.c — see rsa.h. One EVP_DigestVerify over the whole message; the key
 * is read afresh on every call (a provider rotates its certificate, and a
 * webhook's verification is not the hot path of anything).
 */
#include "base/rsa.h"

#include <limits.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

static EVP_PKEY *read_key(const char *pem, size_t pem_len)
{
    BIO *b;
    EVP_PKEY *k = NULL;

    if (!pem || pem_len == 0 || pem_len > INT_MAX) {
        return NULL;
    }
    b = BIO_new_mem_buf(pem, (int)pem_len);
    if (!b) {
        return NULL;
    }
    k = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    if (!k) {
        X509 *cert;
        (void)BIO_reset(b);
        cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (cert) {
            k = X509_get_pubkey(cert);
            X509_free(cert);
        }
    }
    BIO_free(b);
    if (k && EVP_PKEY_base_id(k) != EVP_PKEY_RSA) {
        EVP_PKEY_free(k);
        k = NULL;
    }
    return k;
}

int dm_rsa_sha256_verify(const char *pem, size_t pem_len, const void *data, size_t len,
                         const void *sig, size_t sig_len)
{
    EVP_PKEY *k = read_key(pem, pem_len);
    EVP_MD_CTX *ctx;
    int ok = 0;

    if (!k) {
        return -1;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx && sig && sig_len > 0 && (data || len == 0) &&
        EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k) == 1) {
        EVP_PKEY_CTX *pctx = EVP_MD_CTX_get_pkey_ctx(ctx);
        if (pctx && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1) {
            ok = EVP_DigestVerify(ctx, sig, sig_len, data ? data : (const void *)"", len) == 1;
        }
    }
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(k);
    return ok;
}
