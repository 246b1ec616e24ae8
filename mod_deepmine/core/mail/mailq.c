/*
 * mailq.c — see mailq.h.
 */
#include "mail/mailq.h"

#include <apr_strings.h>
#include <apr_tables.h>
#include <sodium.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/token.h"

dm_err *dm_mail_enqueue(dm_db *db, apr_pool_t *p, const char *recipient, const char *tmpl,
                        const json_t *vars, const char *idempotency_key)
{
    dm_stmt *st;
    size_t vlen;
    const char *vtext = dm_json_dump(p, vars, &vlen);
    int64_t now = dm_now();
    int row;
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO mail_queue (recipient, template, variables, "
                              "idempotency_key, status, attempts, next_attempt_at, created_at, "
                              "updated_at) VALUES (?, ?, ?, ?, 'queued', 0, ?, ?, ?) "
                              "ON CONFLICT (idempotency_key) DO NOTHING",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_text(st, 1, recipient, strlen(recipient));
    dm_stmt_bind_text(st, 2, tmpl, strlen(tmpl));
    dm_stmt_bind_text(st, 3, vtext, vlen);
    dm_stmt_bind_text(st, 4, idempotency_key, strlen(idempotency_key));
    dm_stmt_bind_int64(st, 5, now);
    dm_stmt_bind_int64(st, 6, now);
    dm_stmt_bind_int64(st, 7, now);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

/* What the ciphertext is bound to: moving it to another row, recipient or
 * template makes it fail to open. */
static const char *seal_ad(apr_pool_t *p, const char *recipient, const char *tmpl,
                           const char *idempotency_key, size_t *len)
{
    const char *ad = apr_pstrcat(p, "deepmine-mail-v1", "\n", recipient, "\n", tmpl, "\n",
                                 idempotency_key, NULL);
    *len = strlen(ad);
    return ad;
}

dm_err *dm_mail_enqueue_sealed(dm_db *db, apr_pool_t *p, const unsigned char *key,
                               const char *recipient, const char *tmpl, const json_t *vars,
                               const json_t *secrets, const char *idempotency_key)
{
    enum { NONCE = crypto_aead_chacha20poly1305_ietf_NPUBBYTES };
    size_t plen, adlen;
    const char *plain = dm_json_dump(p, secrets, &plen);
    const char *ad = seal_ad(p, recipient, tmpl, idempotency_key, &adlen);
    unsigned char *box = apr_palloc(p, NONCE + plen + crypto_aead_chacha20poly1305_ietf_ABYTES);
    unsigned long long clen = 0;
    json_t *all = dm_json_own(p, json_deep_copy(vars));

    randombytes_buf(box, NONCE);
    crypto_aead_chacha20poly1305_ietf_encrypt(box + NONCE, &clen, (const unsigned char *)plain,
                                              plen, (const unsigned char *)ad, adlen, NULL, box,
                                              key);
    json_object_set_new(
        all, DM_MAIL_SEALED_VAR,
        json_string(apr_pstrcat(p, "v1.", dm_b64url(p, box, NONCE + (size_t)clen), NULL)));
    return dm_mail_enqueue(db, p, recipient, tmpl, all, idempotency_key);
}

dm_err *dm_mail_unseal(apr_pool_t *p, const unsigned char *key, const char *recipient,
                       const char *tmpl, const char *idempotency_key, json_t *vars)
{
    enum { NONCE = crypto_aead_chacha20poly1305_ietf_NPUBBYTES };
    const char *sealed = json_string_value(json_object_get(vars, DM_MAIL_SEALED_VAR));
    size_t blen = 0, adlen;
    unsigned long long mlen = 0;
    unsigned char *box, *plain;
    const char *ad;
    json_t *secrets, *v;
    const char *k;

    if (!json_object_get(vars, DM_MAIL_SEALED_VAR)) {
        return NULL;
    }
    if (!sealed || strncmp(sealed, "v1.", 3) != 0) {
        return dm_err_make(p, DM_E_INVALID, NULL, "the message's sealed variables are malformed");
    }
    box = apr_palloc(p, strlen(sealed) + 1);
    if (sodium_base642bin(box, strlen(sealed) + 1, sealed + 3, strlen(sealed + 3), NULL, &blen,
                          NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        blen < NONCE + crypto_aead_chacha20poly1305_ietf_ABYTES) {
        return dm_err_make(p, DM_E_INVALID, NULL, "the message's sealed variables are malformed");
    }
    ad = seal_ad(p, recipient, tmpl, idempotency_key, &adlen);
    plain = apr_palloc(p, blen);
    if (crypto_aead_chacha20poly1305_ietf_decrypt(plain, &mlen, NULL, box + NONCE, blen - NONCE,
                                                  (const unsigned char *)ad, adlen, box,
                                                  key) != 0) {
        return dm_err_make(p, DM_E_INVALID, NULL,
                           "the message's sealed variables cannot be opened (another "
                           "DeepMineSecretKeyFile, or a changed row)");
    }
    secrets = dm_json_own(p, json_loadb((const char *)plain, (size_t)mlen, 0, NULL));
    sodium_memzero(plain, blen);
    if (!json_is_object(secrets)) {
        return dm_err_make(p, DM_E_INVALID, NULL, "the message's sealed variables are malformed");
    }
    json_object_del(vars, DM_MAIL_SEALED_VAR);
    json_object_foreach(secrets, k, v)
    {
        json_object_set(vars, k, v);
    }
    return NULL;
}

dm_err *dm_mail_staff_alert(dm_db *db, apr_pool_t *p, int with_finance, const json_t *vars,
                            const char *key)
{
    return dm_mail_staff_notice(db, p, with_finance, "staff_alert", vars, key);
}

dm_err *dm_mail_staff_notice(dm_db *db, apr_pool_t *p, int with_finance, const char *tmpl,
                             const json_t *vars, const char *key)
{
    dm_stmt *st;
    int row = 0;
    apr_array_header_t *to = apr_array_make(p, 4, sizeof(const char *));
    dm_err *e =
        dm_db_prepare(db, p,
                      with_finance ? "SELECT email FROM staff WHERE role IN ('owner', 'finance') "
                                     "AND status = 'active' ORDER BY id"
                                   : "SELECT email FROM staff WHERE role = 'owner' AND "
                                     "status = 'active' ORDER BY id",
                      &st);

    if (e) {
        return e;
    }
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        APR_ARRAY_PUSH(to, const char *) = apr_pstrdup(p, dm_stmt_text(st, 0, NULL));
    }
    dm_stmt_done(st);
    for (int i = 0; !e && i < to->nelts; i++) {
        const char *addr = APR_ARRAY_IDX(to, i, const char *);
        e = dm_mail_enqueue(db, p, addr, tmpl, vars, apr_psprintf(p, "%s:%s:%s", tmpl, key, addr));
    }
    return e;
}
