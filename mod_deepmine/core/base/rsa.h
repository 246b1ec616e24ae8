/*
 * rsa.h — RSA-SHA256 (PKCS#1 v1.5) signature verification with a PEM key,
 * through OpenSSL's libcrypto (libsodium has no RSA). Binance Pay signs its
 * webhooks this way; plugins reach it through the host table
 * (dm_host.rsa_sha256_verify, ABI 1.4).
 */
#ifndef DM_RSA_H
#define DM_RSA_H

#include <stddef.h>

/* 1 when `sig` is a valid RSA-SHA256 PKCS#1 v1.5 signature of `data` under
 * `pem` (a PUBLIC KEY or CERTIFICATE block), 0 when it is
 * not, -1 when pem holds no RSA public key. Never reads past the lengths
 * given; thread-safe. */
int dm_rsa_sha256_verify(const char *pem, size_t pem_len, const void *data, size_t len,
                         const void *sig, size_t sig_len);

#endif
