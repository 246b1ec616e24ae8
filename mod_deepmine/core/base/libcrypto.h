/*
 * libcrypto.h — the few OpenSSL libcrypto functions the server calls
 * (RSA signature checks in rsa.c, HMAC-SHA1 in totp.c), loaded on first
 * use (dlopen) instead of linked: loading and relocating libcrypto cost
 * every process of the server 0.5–1.5 MiB of touched pages, and most
 * never call it (docs/decisions.md "Memory, fifth round").
 */
#ifndef DM_LIBCRYPTO_H
#define DM_LIBCRYPTO_H

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define DM_LIBCRYPTO_FUNCTIONS(X)                                                                  \
    X(BIO_new_mem_buf)                                                                             \
    X(BIO_ctrl)                                                                                    \
    X(BIO_free)                                                                                    \
    X(PEM_read_bio_PUBKEY)                                                                         \
    X(PEM_read_bio_X509)                                                                           \
    X(X509_get_pubkey)                                                                             \
    X(X509_free)                                                                                   \
    X(EVP_PKEY_get_base_id)                                                                        \
    X(EVP_PKEY_free)                                                                               \
    X(EVP_PKEY_CTX_set_rsa_padding)                                                                \
    X(EVP_MD_CTX_new)                                                                              \
    X(EVP_MD_CTX_free)                                                                             \
    X(EVP_MD_CTX_get_pkey_ctx)                                                                     \
    X(EVP_DigestVerifyInit)                                                                        \
    X(EVP_DigestVerify)                                                                            \
    X(EVP_sha256)                                                                                  \
    X(EVP_sha1)                                                                                    \
    X(HMAC)

/* One pointer per function, named as the function. */
typedef struct dm_libcrypto {
/* NOLINTNEXTLINE(bugprone-macro-parentheses): f names a member */
#define DM_LIBCRYPTO_MEMBER(f) __typeof__(f) *f;
    DM_LIBCRYPTO_FUNCTIONS(DM_LIBCRYPTO_MEMBER)
#undef DM_LIBCRYPTO_MEMBER
} dm_libcrypto;

/* The table, loaded once per process (thread-safe); NULL when libcrypto
 * cannot be loaded (said once in the error log, DM01902). */
const dm_libcrypto *dm_libcrypto_get(void);

#endif
