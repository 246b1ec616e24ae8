/*
 * token.c — see token.h. The JWT verifier is strict on purpose: the header
 * must decode to a JSON object whose alg is exactly "HS256" (so "none",
 * "HS512" or "hs256" are refused before any signature is computed), the
 * signature is compared in constant time, and the claims' types are checked.
 */
#include "base/token.h"

#include <apr_strings.h>
#include <jansson.h>
#include <sodium.h>
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

static unsigned char *b64url_decode(apr_pool_t *p, const char *s, size_t slen, size_t *len)
{
    unsigned char *out = apr_palloc(p, slen + 1);

    if (sodium_base642bin(out, slen + 1, s, slen, NULL, len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
        return NULL;
    }
    return out;
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

    crypto_auth_hmacsha256(mac, (const unsigned char *)signing, strlen(signing), key);
    return apr_pstrcat(p, signing, ".", dm_b64url(p, mac, sizeof(mac)), NULL);
}

static dm_err *unauthorized(apr_pool_t *p, const char *why)
{
    return dm_err_make(p, DM_E_UNAUTHORIZED, NULL, "%s", why);
}

static int get_int(json_t *o, const char *k, int64_t *out)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v)) {
        return 0;
    }
    *out = json_integer_value(v);
    return 1;
}

dm_err *dm_jwt_verify(apr_pool_t *p, const unsigned char key[DM_KEY_BYTES], const char *token,
                      const char *want_typ, int64_t now, int64_t leeway, dm_claims *out)
{
    const char *dot1, *dot2;
    unsigned char *hdr, *body, *sig;
    size_t hlen, blen, slen;
    json_t *h, *c;
    const char *alg, *typ, *sub;
    json_t *fam;
    char *end;

    if (!token || strlen(token) > 4096 || !(dot1 = strchr(token, '.')) ||
        !(dot2 = strchr(dot1 + 1, '.')) || strchr(dot2 + 1, '.')) {
        return unauthorized(p, "the access token is malformed");
    }
    hdr = b64url_decode(p, token, (size_t)(dot1 - token), &hlen);
    if (!hdr) {
        return unauthorized(p, "the access token is malformed");
    }
    h = dm_json_own(p, json_loadb((const char *)hdr, hlen, JSON_REJECT_DUPLICATES, NULL));
    alg = json_string_value(json_object_get(h, "alg"));
    if (!json_is_object(h) || !alg || strcmp(alg, "HS256") != 0 || json_object_get(h, "crit")) {
        return unauthorized(p, "the access token's algorithm is not accepted");
    }
    sig = b64url_decode(p, dot2 + 1, strlen(dot2 + 1), &slen);
    if (!sig || slen != crypto_auth_hmacsha256_BYTES ||
        crypto_auth_hmacsha256_verify(sig, (const unsigned char *)token, (size_t)(dot2 - token),
                                      key) != 0) {
        return unauthorized(p, "the access token's signature is not valid");
    }
    body = b64url_decode(p, dot1 + 1, (size_t)(dot2 - dot1 - 1), &blen);
    c = body ? dm_json_own(p, json_loadb((const char *)body, blen, JSON_REJECT_DUPLICATES, NULL))
             : NULL;
    typ = json_string_value(json_object_get(c, "typ"));
    sub = json_string_value(json_object_get(c, "sub"));
    if (!json_is_object(c) || !typ || strcmp(typ, want_typ) != 0 || !sub ||
        !get_int(c, "ver", &out->ver) || !get_int(c, "iat", &out->iat) ||
        !get_int(c, "nbf", &out->nbf) || !get_int(c, "exp", &out->exp)) {
        return unauthorized(p, "the access token's claims are not valid");
    }
    fam = json_object_get(c, "fam");
    if (fam && !json_is_string(fam)) {
        return unauthorized(p, "the access token's claims are not valid");
    }
    out->fam = fam ? apr_pstrdup(p, json_string_value(fam)) : NULL;
    out->sub = (int64_t)apr_strtoi64(sub, &end, 10);
    if (*end || out->sub <= 0) {
        return unauthorized(p, "the access token's subject is not valid");
    }
    if (out->nbf > now + leeway) {
        return unauthorized(p, "the access token is not valid yet");
    }
    if (out->exp <= now - leeway) {
        return unauthorized(p, "the access token has expired");
    }
    out->typ = apr_pstrdup(p, typ);
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
