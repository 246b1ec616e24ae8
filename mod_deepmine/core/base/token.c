/*
 * token.c — see token.h. The JWT verifier is strict on purpose: the header
 * must decode to a JSON object whose alg is exactly "HS256" (so "none",
 * "HS512" or "hs256" are refused before any signature is computed), the
 * signature is compared in constant time, and the claims' types are checked.
 * Both parts are read by a small reader of the flat objects we issue, not
 * parsed into jansson trees: it is on every authenticated request.
 */
#include "base/token.h"

#include <apr_strings.h>
#include <jansson.h>
#include <sodium.h>
#include <stdint.h>
#include <string.h>

#include "base/json.h"

void dm_keys_derive(const unsigned char master[DM_KEY_BYTES], dm_keys *out)
{
    static const char ctx[crypto_kdf_CONTEXTBYTES] = {'D', 'e', 'e', 'p', 'M', 'i', 'n', 'e'};

    crypto_kdf_derive_from_key(out->jwt, sizeof(out->jwt), DM_KEY_JWT, ctx, master);
    crypto_kdf_derive_from_key(out->token_hash, sizeof(out->token_hash), DM_KEY_TOKEN_HASH, ctx,
                               master);
    crypto_kdf_derive_from_key(out->unsubscribe, sizeof(out->unsubscribe), DM_KEY_UNSUBSCRIBE, ctx,
                               master);
    {
        static const char mail_ctx[crypto_kdf_CONTEXTBYTES] = {'D', 'M', 'm', 'a',
                                                               'i', 'l', 'q', '1'};
        crypto_kdf_derive_from_key(out->mail_seal, sizeof(out->mail_seal), 1, mail_ctx, master);
    }
    crypto_kdf_derive_from_key(out->totp, sizeof(out->totp), DM_KEY_TOTP, ctx, master);
}

const char *dm_b64url(apr_pool_t *p, const void *data, size_t len)
{
    size_t n = sodium_base64_encoded_len(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = apr_palloc(p, n);

    sodium_bin2base64(out, n, data, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return out;
}

/* HMAC-SHA-256 under a JWT key. The key's inner and outer pads are hashed
 * once per thread and key, not on every token: two of the eight SHA-256
 * blocks an access token costs. */
static void jwt_mac(const unsigned char key[DM_KEY_BYTES], const unsigned char *in, size_t len,
                    unsigned char out[crypto_auth_hmacsha256_BYTES])
{
    static __thread struct {
        int ready;
        unsigned char key[DM_KEY_BYTES];
        crypto_auth_hmacsha256_state keyed;
    } cache;
    crypto_auth_hmacsha256_state st;

    if (!cache.ready || sodium_memcmp(cache.key, key, DM_KEY_BYTES) != 0) {
        crypto_auth_hmacsha256_init(&cache.keyed, key, DM_KEY_BYTES);
        memcpy(cache.key, key, DM_KEY_BYTES);
        cache.ready = 1;
    }
    st = cache.keyed;
    crypto_auth_hmacsha256_update(&st, in, len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof(st));
}

const char *dm_jwt_sign(apr_pool_t *p, const unsigned char key[DM_KEY_BYTES], const dm_claims *c)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    unsigned char jti[12];
    json_t *claims;

    /* jti: every token distinct, even two issued in the same second */
    randombytes_buf(jti, sizeof(jti));
    claims = json_pack(
        "{s:s,s:s,s:s,s:I,s:I,s:I,s:I}", "jti", dm_b64url(p, jti, sizeof(jti)), "typ", c->typ,
        "sub", apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)c->sub), "ver", (json_int_t)c->ver,
        "iat", (json_int_t)c->iat, "nbf", (json_int_t)c->nbf, "exp", (json_int_t)c->exp);
    size_t plen;
    const char *payload, *signing;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];

    /* the login it belongs to: revoked with its refresh family */
    if (c->fam) {
        json_object_set_new(claims, "fam", json_string(c->fam));
    }
    payload = dm_json_dump(p, dm_json_own(p, claims), &plen);
    signing = apr_pstrcat(p, dm_b64url(p, header, sizeof(header) - 1), ".",
                          dm_b64url(p, payload, plen), NULL);

    jwt_mac(key, (const unsigned char *)signing, strlen(signing), mac);
    return apr_pstrcat(p, signing, ".", dm_b64url(p, mac, sizeof(mac)), NULL);
}

static dm_err *unauthorized(apr_pool_t *p, const char *why)
{
    return dm_err_make(p, DM_E_UNAUTHORIZED, NULL, "%s", why);
}

/* ---- the reader of our own token parts ----
 *
 * The header and the claims are flat JSON objects of known members (see
 * token.h). Instead of a JSON tree per request, one pass reads such an
 * object into a table of expected fields. It accepts what JSON allows in
 * the shape we issue: insignificant whitespace and any member order. It
 * refuses, as malformed, everything we never issue: unknown and duplicate
 * members, escapes and bytes outside printable ASCII in strings, numbers
 * that are not integers or do not fit in 64 bits, true/false/null, nested
 * objects and arrays, and anything after the closing brace but whitespace
 * (docs/decisions.md "The token reader"). */

typedef enum { TF_STR, TF_INT } tf_kind;

typedef struct tok_field {
    const char *name;
    tf_kind kind;
    int seen;
    const char *s; /* TF_STR: into the decoded part, not NUL-terminated */
    size_t slen;
    int64_t i; /* TF_INT */
} tok_field;

typedef struct tok_in {
    const char *c, *end;
} tok_in;

static void skip_ws(tok_in *in)
{
    while (in->c < in->end &&
           (*in->c == ' ' || *in->c == '\t' || *in->c == '\n' || *in->c == '\r')) {
        in->c++;
    }
}

/* A string of printable ASCII but '"' and '\\' (so no escape to decode):
 * *s and *len point into the input. */
static int read_str(tok_in *in, const char **s, size_t *len)
{
    const char *from;

    if (in->c >= in->end || *in->c != '"') {
        return 0;
    }
    from = ++in->c;
    while (in->c < in->end && *in->c != '"') {
        unsigned char ch = (unsigned char)*in->c;
        if (ch < 0x20 || ch > 0x7e || ch == '\\') {
            return 0;
        }
        in->c++;
    }
    if (in->c >= in->end) {
        return 0;
    }
    *s = from;
    *len = (size_t)(in->c - from);
    in->c++;
    return 1;
}

/* A JSON integer: -?(0|[1-9][0-9]*), no fraction, no exponent, within
 * int64 (as jansson reads it: a larger one is refused, not clamped). */
static int read_int(tok_in *in, int64_t *out)
{
    int neg = 0;
    uint64_t v = 0, limit;
    const char *first;

    if (in->c < in->end && *in->c == '-') {
        neg = 1;
        in->c++;
    }
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    first = in->c;
    while (in->c < in->end && *in->c >= '0' && *in->c <= '9') {
        unsigned d = (unsigned)(*in->c - '0');
        if (v > (limit - d) / 10) {
            return 0;
        }
        v = v * 10 + d;
        in->c++;
    }
    if (in->c == first || (*first == '0' && in->c - first > 1)) {
        return 0;
    }
    if (in->c < in->end && (*in->c == '.' || *in->c == 'e' || *in->c == 'E')) {
        return 0;
    }
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return 1;
}

/* Reads the flat object text[0..len) into f[0..n). 0 when it is not one
 * of the shape above. Presence of required fields is the caller's. */
static int read_flat_object(const char *text, size_t len, tok_field *f, int n)
{
    tok_in in = {text, text + len};

    skip_ws(&in);
    if (in.c >= in.end || *in.c++ != '{') {
        return 0;
    }
    skip_ws(&in);
    if (in.c < in.end && *in.c == '}') {
        in.c++;
    } else {
        for (;;) {
            const char *key;
            size_t klen;
            tok_field *hit = NULL;

            if (!read_str(&in, &key, &klen)) {
                return 0;
            }
            for (int i = 0; i < n; i++) {
                if (strlen(f[i].name) == klen && memcmp(f[i].name, key, klen) == 0) {
                    hit = &f[i];
                    break;
                }
            }
            if (!hit || hit->seen) {
                return 0; /* unknown or duplicate member */
            }
            hit->seen = 1;
            skip_ws(&in);
            if (in.c >= in.end || *in.c++ != ':') {
                return 0;
            }
            skip_ws(&in);
            if (hit->kind == TF_STR ? !read_str(&in, &hit->s, &hit->slen)
                                    : !read_int(&in, &hit->i)) {
                return 0;
            }
            skip_ws(&in);
            if (in.c < in.end && *in.c == ',') {
                in.c++;
                skip_ws(&in);
                continue;
            }
            if (in.c < in.end && *in.c == '}') {
                in.c++;
                break;
            }
            return 0;
        }
    }
    skip_ws(&in);
    return in.c == in.end;
}

static int str_is(const tok_field *f, const char *want)
{
    return f->seen && strlen(want) == f->slen && memcmp(f->s, want, f->slen) == 0;
}

/* The subject: a member id as we write it, 1 to INT64_MAX in decimal
 * without sign, space or leading zero. */
static int read_sub(const tok_field *f, int64_t *out)
{
    tok_in in = {f->s, f->s + f->slen};

    return f->slen > 0 && f->s[0] != '-' && read_int(&in, out) && in.c == in.end && *out > 0;
}

/* The value of a base64url digit, or -1. */
static int b64url_digit(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

/* Decodes base64url without padding, s[0..slen), into out[0..cap): 0 when
 * it is not that or does not fit. As strict as libsodium's decoder, which
 * it replaces here for speed (token parts are not secret, and the MAC is
 * still compared in constant time): no padding, no other character, a
 * length of 1 mod 4 refused, and the unused bits of the last digit zero,
 * so a part has exactly one spelling. */
static int b64url_into(unsigned char *out, size_t cap, const char *s, size_t slen, size_t *len)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t n = 0;

    for (size_t i = 0; i < slen; i++) {
        int d = b64url_digit((unsigned char)s[i]);
        if (d < 0) {
            return 0;
        }
        acc = (acc << 6) | (uint32_t)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap) {
                return 0;
            }
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits > 4 || (acc & ((1u << bits) - 1)) != 0) {
        return 0;
    }
    *len = n;
    return 1;
}

#define DM_TOKEN_MAX 4096

enum { H_ALG, H_TYP, H_COUNT };
enum { C_JTI, C_TYP, C_SUB, C_VER, C_IAT, C_NBF, C_EXP, C_FAM, C_COUNT };

dm_err *dm_jwt_verify(apr_pool_t *p, const unsigned char key[DM_KEY_BYTES], const char *token,
                      const char *want_typ, int64_t now, int64_t leeway, dm_claims *out)
{
    /* a part of a token of at most DM_TOKEN_MAX characters decodes to at
     * most 3/4 of that */
    unsigned char part[DM_TOKEN_MAX / 4 * 3 + 3];
    unsigned char sig[crypto_auth_hmacsha256_BYTES + 3];
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    tok_field h[H_COUNT] = {{"alg", TF_STR, 0, NULL, 0, 0}, {"typ", TF_STR, 0, NULL, 0, 0}};
    tok_field c[C_COUNT] = {
        {"jti", TF_STR, 0, NULL, 0, 0}, {"typ", TF_STR, 0, NULL, 0, 0},
        {"sub", TF_STR, 0, NULL, 0, 0}, {"ver", TF_INT, 0, NULL, 0, 0},
        {"iat", TF_INT, 0, NULL, 0, 0}, {"nbf", TF_INT, 0, NULL, 0, 0},
        {"exp", TF_INT, 0, NULL, 0, 0}, {"fam", TF_STR, 0, NULL, 0, 0},
    };
    const char *dot1, *dot2;
    size_t tlen, len, slen;

    if (!token || (tlen = strnlen(token, DM_TOKEN_MAX + 1)) > DM_TOKEN_MAX ||
        !(dot1 = memchr(token, '.', tlen)) ||
        !(dot2 = memchr(dot1 + 1, '.', tlen - (size_t)(dot1 + 1 - token))) ||
        memchr(dot2 + 1, '.', tlen - (size_t)(dot2 + 1 - token))) {
        return unauthorized(p, "the access token is malformed");
    }
    if (!b64url_into(part, sizeof(part), token, (size_t)(dot1 - token), &len)) {
        return unauthorized(p, "the access token is malformed");
    }
    /* alg pinned before any signature is computed: "none", "HS512" or
     * "hs256" never reach the HMAC; a "crit" (or any other) member is
     * refused with the rest of the shapes we never issue */
    if (!read_flat_object((const char *)part, len, h, H_COUNT) || !str_is(&h[H_ALG], "HS256")) {
        return unauthorized(p, "the access token's algorithm is not accepted");
    }
    if (!b64url_into(sig, sizeof(sig), dot2 + 1, tlen - (size_t)(dot2 + 1 - token), &slen) ||
        slen != crypto_auth_hmacsha256_BYTES) {
        return unauthorized(p, "the access token's signature is not valid");
    }
    jwt_mac(key, (const unsigned char *)token, (size_t)(dot2 - token), mac);
    /* in constant time, as crypto_auth_hmacsha256_verify compares */
    if (crypto_verify_32(sig, mac) != 0) {
        return unauthorized(p, "the access token's signature is not valid");
    }
    if (!b64url_into(part, sizeof(part), dot1 + 1, (size_t)(dot2 - dot1 - 1), &len) ||
        !read_flat_object((const char *)part, len, c, C_COUNT) || !str_is(&c[C_TYP], want_typ) ||
        !c[C_SUB].seen || !c[C_VER].seen || !c[C_IAT].seen || !c[C_NBF].seen || !c[C_EXP].seen) {
        return unauthorized(p, "the access token's claims are not valid");
    }
    out->ver = c[C_VER].i;
    out->iat = c[C_IAT].i;
    out->nbf = c[C_NBF].i;
    out->exp = c[C_EXP].i;
    out->fam = c[C_FAM].seen ? apr_pstrmemdup(p, c[C_FAM].s, c[C_FAM].slen) : NULL;
    if (!read_sub(&c[C_SUB], &out->sub)) {
        return unauthorized(p, "the access token's subject is not valid");
    }
    if (out->nbf > now + leeway) {
        return unauthorized(p, "the access token is not valid yet");
    }
    if (out->exp <= now - leeway) {
        return unauthorized(p, "the access token has expired");
    }
    out->typ = want_typ;
    return NULL;
}

const char *dm_token_new(apr_pool_t *p)
{
    unsigned char raw[32];

    randombytes_buf(raw, sizeof(raw));
    return dm_b64url(p, raw, sizeof(raw));
}

const char *dm_token_hash(apr_pool_t *p, const unsigned char key[DM_KEY_BYTES], const char *token)
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    char *hex = apr_palloc(p, sizeof(mac) * 2 + 1);

    crypto_auth_hmacsha256(mac, (const unsigned char *)token, strlen(token), key);
    sodium_bin2hex(hex, sizeof(mac) * 2 + 1, mac, sizeof(mac));
    return hex;
}
