/* libFuzzer: access tokens through dm_jwt_verify and its reader of the
 * header and the claims. The first byte picks the mode:
 *   even: the rest is a token as a client sends it (never accepted);
 *   odd:  the rest is "<header JSON>\n<claims JSON>", signed here with the
 *         key, so the fuzzer reaches the claims reader past the MAC.
 * Must never crash; any refusal is DM_E_UNAUTHORIZED. The oracle is the
 * verifier it replaced (jansson trees, libsodium's base64), kept below:
 * whatever the new reader accepts, the old one accepted with the same
 * claims. (The reverse does not hold by design: the new reader refuses
 * shapes we never issue; docs/decisions.md "The token reader".) */
#include <apr_general.h>
#include <apr_strings.h>
#include <jansson.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/token.h"

static const int64_t NOW = 1795000000;

static unsigned char *old_b64(apr_pool_t *p, const char *s, size_t slen, size_t *len)
{
    unsigned char *out = apr_palloc(p, slen + 1);

    if (sodium_base642bin(out, slen + 1, s, slen, NULL, len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
        return NULL;
    }
    return out;
}

static int old_int(json_t *o, const char *k, int64_t *out)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v)) {
        return 0;
    }
    *out = json_integer_value(v);
    return 1;
}

/* The verifier before the reader (token.c until issue 16): 1 = accepted. */
static int old_verify(apr_pool_t *p, const unsigned char *key, const char *token, dm_claims *out)
{
    const char *dot1, *dot2, *alg, *typ, *sub;
    unsigned char *hdr, *body, *sig;
    size_t hlen, blen, slen;
    json_t *h, *c, *fam;
    char *end;
    int ok = 0;

    if (strlen(token) > 4096 || !(dot1 = strchr(token, '.')) || !(dot2 = strchr(dot1 + 1, '.')) ||
        strchr(dot2 + 1, '.')) {
        return 0;
    }
    hdr = old_b64(p, token, (size_t)(dot1 - token), &hlen);
    if (!hdr) {
        return 0;
    }
    h = json_loadb((const char *)hdr, hlen, JSON_REJECT_DUPLICATES, NULL);
    alg = json_string_value(json_object_get(h, "alg"));
    if (!json_is_object(h) || !alg || strcmp(alg, "HS256") != 0 || json_object_get(h, "crit")) {
        json_decref(h);
        return 0;
    }
    json_decref(h);
    sig = old_b64(p, dot2 + 1, strlen(dot2 + 1), &slen);
    if (!sig || slen != crypto_auth_hmacsha256_BYTES ||
        crypto_auth_hmacsha256_verify(sig, (const unsigned char *)token, (size_t)(dot2 - token),
                                      key) != 0) {
        return 0;
    }
    body = old_b64(p, dot1 + 1, (size_t)(dot2 - dot1 - 1), &blen);
    c = body ? json_loadb((const char *)body, blen, JSON_REJECT_DUPLICATES, NULL) : NULL;
    typ = json_string_value(json_object_get(c, "typ"));
    sub = json_string_value(json_object_get(c, "sub"));
    fam = json_object_get(c, "fam");
    if (json_is_object(c) && typ && strcmp(typ, "member") == 0 && sub &&
        old_int(c, "ver", &out->ver) && old_int(c, "iat", &out->iat) &&
        old_int(c, "nbf", &out->nbf) && old_int(c, "exp", &out->exp) &&
        (!fam || json_is_string(fam))) {
        out->fam = fam ? apr_pstrdup(p, json_string_value(fam)) : NULL;
        out->sub = (int64_t)apr_strtoi64(sub, &end, 10);
        ok = !*end && out->sub > 0 && out->nbf <= NOW + 5 && out->exp > NOW - 5;
    }
    json_decref(c);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    static dm_keys keys;
    apr_pool_t *p;
    const char *token;
    dm_claims got, want;
    dm_err *e;

    if (!ready) {
        unsigned char master[DM_KEY_BYTES];
        apr_initialize();
        if (sodium_init() < 0) {
            abort();
        }
        memset(master, 7, sizeof(master));
        dm_keys_derive(master, &keys);
        ready = 1;
    }
    if (size == 0) {
        return 0;
    }
    apr_pool_create(&p, NULL);
    if (data[0] % 2 == 0) {
        token = apr_pstrmemdup(p, (const char *)data + 1, size - 1);
    } else {
        const char *in = (const char *)data + 1;
        const char *nl = memchr(in, '\n', size - 1);
        size_t hl = nl ? (size_t)(nl - in) : size - 1;
        size_t cl = nl ? size - 1 - hl - 1 : 0;
        const char *signing =
            apr_pstrcat(p, dm_b64url(p, in, hl), ".", dm_b64url(p, nl ? nl + 1 : "", cl), NULL);
        unsigned char mac[crypto_auth_hmacsha256_BYTES];
        crypto_auth_hmacsha256(mac, (const unsigned char *)signing, strlen(signing), keys.jwt);
        token = apr_pstrcat(p, signing, ".", dm_b64url(p, mac, sizeof(mac)), NULL);
    }
    memset(&got, 0, sizeof(got));
    e = dm_jwt_verify(p, keys.jwt, token, "member", NOW, 5, &got);
    if (e && e->code != DM_E_UNAUTHORIZED) {
        abort();
    }
    if (!e) {
        memset(&want, 0, sizeof(want));
        if (!old_verify(p, keys.jwt, token, &want) || got.sub != want.sub || got.ver != want.ver ||
            got.iat != want.iat || got.nbf != want.nbf || got.exp != want.exp ||
            !got.fam != !want.fam || (got.fam && strcmp(got.fam, want.fam) != 0) ||
            strcmp(got.typ, "member") != 0) {
            abort();
        }
    }
    apr_pool_destroy(p);
    return 0;
}
