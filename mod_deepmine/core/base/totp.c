/*
 * totp.c — see totp.h. Codes are compared in constant time (sodium_memcmp
 * over the formatted digits), so the time of a wrong guess says nothing
 * about how close it was.
 */
#include "base/totp.h"

#include <apr_strings.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "base/libcrypto.h"

static const char B32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

int64_t dm_totp_step(int64_t t)
{
    return t > 0 ? t / DM_TOTP_PERIOD : 0;
}

long dm_totp_code(const unsigned char *key, size_t key_len, int64_t step, int digits)
{
    unsigned char msg[8], mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    uint64_t c = (uint64_t)step;
    uint32_t bin;
    unsigned off;
    long mod = 1;
    const dm_libcrypto *lc = dm_libcrypto_get();

    if (!lc || digits < 6 || digits > 8 || !key || key_len == 0 || key_len > 1024) {
        return -1;
    }
    for (int i = 7; i >= 0; i--) {
        msg[i] = (unsigned char)(c & 0xff);
        c >>= 8;
    }
    if (!lc->HMAC(lc->EVP_sha1(), key, (int)key_len, msg, sizeof(msg), mac, &mac_len) ||
        mac_len != 20) {
        return -1;
    }
    /* RFC 4226 section 5.3: dynamic truncation. */
    off = mac[19] & 0x0f;
    bin = ((uint32_t)(mac[off] & 0x7f) << 24) | ((uint32_t)mac[off + 1] << 16) |
          ((uint32_t)mac[off + 2] << 8) | (uint32_t)mac[off + 3];
    for (int i = 0; i < digits; i++) {
        mod *= 10;
    }
    return (long)(bin % (uint32_t)mod);
}

int dm_totp_well_formed(const char *code)
{
    if (!code || strlen(code) != DM_TOTP_DIGITS) {
        return 0;
    }
    for (const char *c = code; *c; c++) {
        if (*c < '0' || *c > '9') {
            return 0;
        }
    }
    return 1;
}

int64_t dm_totp_match(const unsigned char *key, size_t key_len, const char *code, int64_t now,
                      int window, int64_t after)
{
    int64_t step = dm_totp_step(now), found = 0;

    if (!dm_totp_well_formed(code)) {
        return 0;
    }
    for (int64_t s = step - window; s <= step + window; s++) {
        char want[24];
        long v = dm_totp_code(key, key_len, s, DM_TOTP_DIGITS);
        if (v < 0 || s <= after || s < 1) {
            continue;
        }
        snprintf(want, sizeof(want), "%06ld", v);
        /* every step is computed and compared: no early exit */
        if (sodium_memcmp(want, code, DM_TOTP_DIGITS) == 0 && !found) {
            found = s;
        }
    }
    return found;
}

const char *dm_base32_encode(apr_pool_t *p, const unsigned char *data, size_t len)
{
    char *out = apr_palloc(p, (len * 8 + 4) / 5 + 1);
    size_t n = 0;
    unsigned buf = 0;
    int bits = 0;

    for (size_t i = 0; i < len; i++) {
        buf = (buf << 8) | data[i];
        bits += 8;
        while (bits >= 5) {
            out[n++] = B32[(buf >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0) {
        out[n++] = B32[(buf << (5 - bits)) & 31];
    }
    out[n] = '\0';
    return out;
}

int dm_base32_decode(apr_pool_t *p, const char *text, unsigned char **out, size_t *out_len)
{
    size_t len = text ? strlen(text) : 0, n = 0;
    unsigned char *o = apr_palloc(p, len * 5 / 8 + 1);
    unsigned buf = 0;
    int bits = 0;

    if (!text) {
        return -1;
    }
    for (const char *c = text; *c; c++) {
        const char *pos;
        char u = (*c >= 'a' && *c <= 'z') ? (char)(*c - 'a' + 'A') : *c;
        if (u == '=' || u == ' ' || u == '-') {
            continue;
        }
        pos = strchr(B32, u);
        if (!pos || u == '\0') {
            return -1;
        }
        buf = ((buf << 5) | (unsigned)(pos - B32)) & 0xfff;
        bits += 5;
        if (bits >= 8) {
            o[n++] = (unsigned char)((buf >> (bits - 8)) & 0xff);
            bits -= 8;
        }
    }
    /* leftover bits must be the zero padding of the last character */
    if (bits >= 5 || (buf & ((1u << bits) - 1)) != 0) {
        return -1;
    }
    *out = o;
    *out_len = n;
    return 0;
}
