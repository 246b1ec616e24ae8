/*
 * twofa.c — see twofa.h. Secrets are sealed with
 * crypto_aead_xchacha20poly1305_ietf under the DM_KEY_TOTP key, with the
 * account ("member:7") as associated data, so a sealed secret copied to
 * another row does not open. Stored as base64(nonce || ciphertext).
 */
#include "members/twofa.h"

#include <apr_strings.h>
#include <sodium.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/totp.h"
#include "mail/mailq.h"

#define RECOVERY_ALPHABET "abcdefghjkmnpqrstuvwxyz23456789"
#define RECOVERY_LEN 10 /* shown as xxxxx-xxxxx */
#define MAX_CODE_FIELD 32

static int64_t protect_delay = DM_PROTECT_DEFAULT_DELAY;

void dm_protect_set_delay(int64_t seconds)
{
    protect_delay = seconds >= 0 ? seconds : DM_PROTECT_DEFAULT_DELAY;
}

int64_t dm_protect_delay(void)
{
    return protect_delay;
}

static const char *account_ad(apr_pool_t *p, const char *subject, int64_t owner)
{
    return apr_psprintf(p, "dm2fa:%s:%" APR_INT64_T_FMT, subject, (apr_int64_t)owner);
}

static const char *seal(apr_pool_t *p, const dm_keys *keys, const char *subject, int64_t owner,
                        const unsigned char *secret, size_t len)
{
    size_t n = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
    unsigned char *buf = apr_palloc(p, n + len + crypto_aead_xchacha20poly1305_ietf_ABYTES);
    unsigned long long clen = 0;
    const char *ad = account_ad(p, subject, owner);
    size_t b64 = sodium_base64_encoded_len(n + len + crypto_aead_xchacha20poly1305_ietf_ABYTES,
                                           sodium_base64_VARIANT_ORIGINAL);
    char *out = apr_palloc(p, b64);

    randombytes_buf(buf, n);
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        buf + n, &clen, secret, len, (const unsigned char *)ad, strlen(ad), NULL, buf, keys->totp);
    sodium_bin2base64(out, b64, buf, n + (size_t)clen, sodium_base64_VARIANT_ORIGINAL);
    return out;
}

static dm_err *unseal(apr_pool_t *p, const dm_keys *keys, const char *subject, int64_t owner,
                      const char *sealed, unsigned char **secret, size_t *len)
{
    size_t n = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, blen = 0;
    size_t cap = sealed ? strlen(sealed) : 0;
    unsigned char *buf = apr_palloc(p, cap + 1), *out;
    unsigned long long mlen = 0;
    const char *ad = account_ad(p, subject, owner);

    if (!sealed ||
        sodium_base642bin(buf, cap + 1, sealed, cap, NULL, &blen, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        blen < n + crypto_aead_xchacha20poly1305_ietf_ABYTES) {
        dm_log(DM_L_ERR, "DM01350: the stored 2FA secret of %s %" APR_INT64_T_FMT " is malformed",
               subject, (apr_int64_t)owner);
        return dm_err_make(p, DM_E_INTERNAL, NULL, "the two-factor secret cannot be read");
    }
    out = apr_palloc(p, blen);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, NULL, buf + n, blen - n,
                                                   (const unsigned char *)ad, strlen(ad), buf,
                                                   keys->totp) != 0) {
        dm_log(DM_L_ERR,
               "DM01351: the stored 2FA secret of %s %" APR_INT64_T_FMT
               " does not decrypt (was DeepMineSecretKeyFile replaced?)",
               subject, (apr_int64_t)owner);
        return dm_err_make(p, DM_E_INTERNAL, NULL, "the two-factor secret cannot be read");
    }
    *secret = out;
    *len = (size_t)mlen;
    return NULL;
}

/* ---- the row ---- */

typedef struct row2fa {
    int found;
    const char *secret_enc;
    const char *pending_enc;
    int64_t enabled_at;
    int64_t last_step;
} row2fa;

static dm_err *load(dm_db *db, apr_pool_t *p, const char *subject, int64_t owner, row2fa *r)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT secret_enc, pending_enc, enabled_at, last_step FROM twofa "
                              "WHERE subject = ? AND owner_id = ?",
                              &st);

    memset(r, 0, sizeof(*r));
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, subject);
    dm_stmt_bind_int64(st, 2, owner);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        r->found = 1;
        r->secret_enc = dm_stmt_dup_text(st, p, 0);
        r->pending_enc = dm_stmt_dup_text(st, p, 1);
        r->enabled_at = dm_stmt_is_null(st, 2) ? 0 : dm_stmt_int64(st, 2);
        r->last_step = dm_stmt_int64(st, 3);
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *exec_owner(dm_db *db, apr_pool_t *p, const char *sql, const char *subject,
                          int64_t owner)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, sql, &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, subject);
    dm_stmt_bind_int64(st, 2, owner);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

dm_err *dm_2fa_state_get(dm_db *db, apr_pool_t *p, const char *subject, int64_t owner,
                         dm_2fa_state *out)
{
    row2fa r = {0};
    dm_stmt *st;
    int row = 0;
    dm_err *e = load(db, p, subject, owner, &r);

    memset(out, 0, sizeof(*out));
    if (e) {
        return e;
    }
    out->enabled = r.secret_enc != NULL;
    out->enabled_at = out->enabled ? r.enabled_at : 0;
    out->pending = !out->enabled && r.pending_enc != NULL;
    e = dm_db_prepare(db, p,
                      "SELECT COUNT(*) FROM twofa_recovery WHERE subject = ? AND owner_id = ? "
                      "AND used_at IS NULL",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, subject);
    dm_stmt_bind_int64(st, 2, owner);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        out->recovery_left = (int)dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    return e;
}

/* ---- enrolment ---- */

/* Percent-encodes everything but unreserved characters (RFC 3986). */
static const char *uri_escape(apr_pool_t *p, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = apr_palloc(p, strlen(s) * 3 + 1), *o = out;

    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
            *c == '-' || *c == '.' || *c == '_' || *c == '~') {
            *o++ = (char)*c;
        } else {
            *o++ = '%';
            *o++ = hex[*c >> 4];
            *o++ = hex[*c & 15];
        }
    }
    *o = '\0';
    return out;
}

dm_err *dm_2fa_setup(dm_db *db, apr_pool_t *p, const dm_keys *keys, const char *subject,
                     int64_t owner, const char *account, const char **secret, const char **uri)
{
    unsigned char raw[DM_TOTP_SECRET_BYTES];
    row2fa r = {0};
    dm_stmt *st;
    int row = 0;
    const char *sealed, *b32;
    dm_err *e;

    randombytes_buf(raw, sizeof(raw));
    b32 = dm_base32_encode(p, raw, sizeof(raw));
    sealed = seal(p, keys, subject, owner, raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    e = dm_db_begin(db, p);
    if (e) {
        return e;
    }
    e = load(db, p, subject, owner, &r);
    if (!e && r.secret_enc) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL,
                        "two-factor sign-in is already on; turn it off first to enrol again");
    }
    if (!e) {
        e = dm_db_prepare(db, p,
                          "INSERT INTO twofa (subject, owner_id, pending_enc, pending_at) "
                          "VALUES (?, ?, ?, ?) ON CONFLICT (subject, owner_id) DO UPDATE SET "
                          "pending_enc = excluded.pending_enc, pending_at = excluded.pending_at",
                          &st);
    }
    if (!e) {
        dm_stmt_bind_str(st, 1, subject);
        dm_stmt_bind_int64(st, 2, owner);
        dm_stmt_bind_str(st, 3, sealed);
        dm_stmt_bind_int64(st, 4, dm_now());
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    e = dm_db_commit(db, p);
    if (!e) {
        const char *label = uri_escape(p, apr_pstrcat(p, DM_2FA_ISSUER ":", account, NULL));
        *secret = b32;
        *uri = apr_psprintf(p,
                            "otpauth://totp/%s?secret=%s&issuer=%s&algorithm=SHA1&digits=%d&"
                            "period=%d",
                            label, b32, DM_2FA_ISSUER, DM_TOTP_DIGITS, DM_TOTP_PERIOD);
    }
    return e;
}

static dm_err *wrong_code(apr_pool_t *p)
{
    return dm_err_make(p, DM_E_INVALID_CODE, "code",
                       "the code is wrong, expired or was already used");
}

static dm_err *check_shape(apr_pool_t *p, const char *code, int allow_recovery)
{
    if (!code || !*code || strlen(code) > MAX_CODE_FIELD) {
        return dm_err_make(p, DM_E_INVALID_CODE, "code", "a code is required");
    }
    if (dm_totp_well_formed(code)) {
        return NULL;
    }
    if (strspn(code, "0123456789") == strlen(code)) {
        return dm_err_make(p, DM_E_INVALID_CODE, "code",
                           "an authenticator code has exactly %d digits", DM_TOTP_DIGITS);
    }
    return allow_recovery
               ? NULL
               : dm_err_make(p, DM_E_INVALID_CODE, "code",
                             "enter the %d-digit code of your authenticator app", DM_TOTP_DIGITS);
}

/* Moves last_step to `step` unless a use of this or a later step came
 * first (guarded: two concurrent uses of one code, one wins). */
static dm_err *spend_step(dm_db *db, apr_pool_t *p, const char *subject, int64_t owner,
                          int64_t step)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "UPDATE twofa SET last_step = ? WHERE subject = ? AND owner_id = ? "
                              "AND last_step < ?",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, step);
    dm_stmt_bind_str(st, 2, subject);
    dm_stmt_bind_int64(st, 3, owner);
    dm_stmt_bind_int64(st, 4, step);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e && dm_db_changes(db) != 1) {
        e = wrong_code(p);
    }
    return e;
}

/* A recovery code as stored: lower case, without separators. */
static const char *recovery_norm(apr_pool_t *p, const char *code)
{
    char *out = apr_palloc(p, strlen(code) + 1), *o = out;

    for (const char *c = code; *c; c++) {
        if (*c == '-' || *c == ' ') {
            continue;
        }
        *o++ = (*c >= 'A' && *c <= 'Z') ? (char)(*c - 'A' + 'a') : *c;
    }
    *o = '\0';
    return out;
}

static dm_err *new_recovery_codes(dm_db *db, apr_pool_t *p, const dm_keys *keys,
                                  const char *subject, int64_t owner, apr_array_header_t **codes)
{
    apr_array_header_t *list = apr_array_make(p, DM_2FA_RECOVERY_CODES, sizeof(const char *));
    dm_err *e = exec_owner(db, p, "DELETE FROM twofa_recovery WHERE subject = ? AND owner_id = ?",
                           subject, owner);

    for (int i = 0; !e && i < DM_2FA_RECOVERY_CODES; i++) {
        char raw[RECOVERY_LEN + 1];
        dm_stmt *st;
        int row = 0;
        for (int k = 0; k < RECOVERY_LEN; k++) {
            raw[k] = RECOVERY_ALPHABET[randombytes_uniform(sizeof(RECOVERY_ALPHABET) - 1)];
        }
        raw[RECOVERY_LEN] = '\0';
        e = dm_db_prepare(db, p,
                          "INSERT INTO twofa_recovery (subject, owner_id, code_hash, created_at) "
                          "VALUES (?, ?, ?, ?)",
                          &st);
        if (e) {
            break;
        }
        dm_stmt_bind_str(st, 1, subject);
        dm_stmt_bind_int64(st, 2, owner);
        dm_stmt_bind_str(st, 3, dm_token_hash(p, keys->token_hash, raw));
        dm_stmt_bind_int64(st, 4, dm_now());
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
        APR_ARRAY_PUSH(list, const char *) = apr_psprintf(p, "%.5s-%s", raw, raw + 5);
    }
    if (!e) {
        *codes = list;
    }
    return e;
}

dm_err *dm_2fa_enable(dm_db *db, apr_pool_t *p, const dm_keys *keys, const char *subject,
                      int64_t owner, const char *code, apr_array_header_t **codes)
{
    row2fa r = {0};
    unsigned char *secret = NULL;
    size_t len = 0;
    int64_t step;
    dm_stmt *st;
    int row = 0;
    dm_err *e = check_shape(p, code, 0);

    if (!e) {
        e = load(db, p, subject, owner, &r);
    }
    if (!e && r.secret_enc) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL, "two-factor sign-in is already on");
    }
    if (!e && !r.pending_enc) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL,
                        "no enrolment is in progress: start with the setup step");
    }
    if (!e) {
        e = unseal(p, keys, subject, owner, r.pending_enc, &secret, &len);
    }
    if (e) {
        return e;
    }
    step = dm_totp_match(secret, len, code, dm_now(), DM_2FA_WINDOW, 0);
    sodium_memzero(secret, len);
    if (!step) {
        return wrong_code(p);
    }
    e = dm_db_prepare(db, p,
                      "UPDATE twofa SET secret_enc = pending_enc, pending_enc = NULL, "
                      "pending_at = NULL, enabled_at = ?, last_step = ? WHERE subject = ? AND "
                      "owner_id = ? AND secret_enc IS NULL",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, dm_now());
    dm_stmt_bind_int64(st, 2, step);
    dm_stmt_bind_str(st, 3, subject);
    dm_stmt_bind_int64(st, 4, owner);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e && dm_db_changes(db) != 1) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL, "two-factor sign-in is already on");
    }
    return e ? e : new_recovery_codes(db, p, keys, subject, owner, codes);
}

dm_err *dm_2fa_verify(dm_db *db, apr_pool_t *p, const dm_keys *keys, const char *subject,
                      int64_t owner, const char *code, int allow_recovery, int *used_recovery)
{
    row2fa r = {0};
    unsigned char *secret = NULL;
    size_t len = 0;
    int64_t step;
    dm_stmt *st;
    int row = 0;
    dm_err *e = check_shape(p, code, allow_recovery);

    if (used_recovery) {
        *used_recovery = 0;
    }
    if (!e) {
        e = load(db, p, subject, owner, &r);
    }
    if (!e && !r.secret_enc) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL, "two-factor sign-in is not on");
    }
    if (e) {
        return e;
    }
    if (dm_totp_well_formed(code)) {
        e = unseal(p, keys, subject, owner, r.secret_enc, &secret, &len);
        if (e) {
            return e;
        }
        step = dm_totp_match(secret, len, code, dm_now(), DM_2FA_WINDOW, r.last_step);
        sodium_memzero(secret, len);
        return step ? spend_step(db, p, subject, owner, step) : wrong_code(p);
    }
    e = dm_db_prepare(db, p,
                      "UPDATE twofa_recovery SET used_at = ? WHERE code_hash = ? AND subject = ? "
                      "AND owner_id = ? AND used_at IS NULL",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, dm_now());
    dm_stmt_bind_str(st, 2, dm_token_hash(p, keys->token_hash, recovery_norm(p, code)));
    dm_stmt_bind_str(st, 3, subject);
    dm_stmt_bind_int64(st, 4, owner);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e && dm_db_changes(db) != 1) {
        return dm_err_make(p, DM_E_INVALID_CODE, "code",
                           "the recovery code is wrong or was already used");
    }
    if (!e && used_recovery) {
        *used_recovery = 1;
    }
    return e;
}

dm_err *dm_2fa_remove(dm_db *db, apr_pool_t *p, const char *subject, int64_t owner)
{
    dm_err *e =
        exec_owner(db, p, "DELETE FROM twofa WHERE subject = ? AND owner_id = ?", subject, owner);

    return e ? e
             : exec_owner(db, p, "DELETE FROM twofa_recovery WHERE subject = ? AND owner_id = ?",
                          subject, owner);
}

/* ---- login challenges ---- */

dm_err *dm_2fa_challenge_new(dm_db *db, apr_pool_t *p, const dm_keys *keys, const char *subject,
                             int64_t owner, const char *ip, const char **token)
{
    dm_stmt *st;
    int row = 0;
    int64_t now = dm_now();
    const char *t = dm_token_new(p);
    /* House-keeping: this account's spent and expired challenges go. */
    dm_err *e = dm_db_prepare(db, p,
                              "DELETE FROM twofa_challenges WHERE subject = ? AND owner_id = ? "
                              "AND (used_at IS NOT NULL OR expires_at <= ?)",
                              &st);

    if (!e) {
        dm_stmt_bind_str(st, 1, subject);
        dm_stmt_bind_int64(st, 2, owner);
        dm_stmt_bind_int64(st, 3, now);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    if (!e) {
        e = dm_db_prepare(db, p,
                          "INSERT INTO twofa_challenges (subject, owner_id, token_hash, ip, "
                          "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                          &st);
    }
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, subject);
    dm_stmt_bind_int64(st, 2, owner);
    dm_stmt_bind_str(st, 3, dm_token_hash(p, keys->token_hash, t));
    dm_stmt_bind_str(st, 4, ip);
    dm_stmt_bind_int64(st, 5, now);
    dm_stmt_bind_int64(st, 6, now + DM_2FA_CHALLENGE_TTL);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e) {
        *token = t;
    }
    return e;
}

static dm_err *find_challenge(dm_db *db, apr_pool_t *p, const dm_keys *keys, const char *subject,
                              const char *token, int64_t *id, int64_t *owner)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e;

    if (!token || !*token || strlen(token) > 128) {
        return dm_err_make(p, DM_E_UNAUTHORIZED, "challenge", "the challenge is missing");
    }
    e = dm_db_prepare(db, p,
                      "SELECT id, owner_id FROM twofa_challenges WHERE token_hash = ? AND "
                      "subject = ? AND used_at IS NULL AND expires_at > ? AND failures < ?",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, dm_token_hash(p, keys->token_hash, token));
    dm_stmt_bind_str(st, 2, subject);
    dm_stmt_bind_int64(st, 3, dm_now());
    dm_stmt_bind_int64(st, 4, DM_2FA_CHALLENGE_TRIES);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        *id = dm_stmt_int64(st, 0);
        *owner = dm_stmt_int64(st, 1);
    }
    dm_stmt_done(st);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_UNAUTHORIZED, "challenge",
                        "the sign-in challenge has expired or was used; log in again");
    }
    return e;
}

dm_err *dm_2fa_challenge_owner(dm_db *db, apr_pool_t *p, const dm_keys *keys, const char *subject,
                               const char *token, int64_t *owner)
{
    int64_t id = 0;
    return find_challenge(db, p, keys, subject, token, &id, owner);
}

dm_err *dm_2fa_challenge_take(dm_db *db, apr_pool_t *p, const dm_keys *keys, const char *subject,
                              const char *token, const char *code, int64_t *owner)
{
    int64_t id = 0;
    dm_stmt *st;
    int row = 0;
    dm_err *e = find_challenge(db, p, keys, subject, token, &id, owner);

    if (!e) {
        e = dm_2fa_verify(db, p, keys, subject, *owner, code, 1, NULL);
    }
    if (!e) {
        e = dm_db_prepare(
            db, p, "UPDATE twofa_challenges SET used_at = ? WHERE id = ? AND used_at IS NULL", &st);
    }
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, dm_now());
    dm_stmt_bind_int64(st, 2, id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e && dm_db_changes(db) != 1) {
        e = dm_err_make(p, DM_E_UNAUTHORIZED, "challenge",
                        "the sign-in challenge has expired or was used; log in again");
    }
    return e;
}

dm_err *dm_2fa_challenge_failed(dm_db *db, apr_pool_t *p, const dm_keys *keys, const char *subject,
                                const char *token)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_begin(db, p);

    if (e) {
        return e;
    }
    e = dm_db_prepare(db, p,
                      "UPDATE twofa_challenges SET failures = failures + 1 WHERE token_hash = ? "
                      "AND subject = ?",
                      &st);
    if (!e) {
        dm_stmt_bind_str(st, 1, dm_token_hash(p, keys->token_hash, token));
        dm_stmt_bind_str(st, 2, subject);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

/* ---- members ---- */

dm_err *dm_member_lock_withdrawals(dm_db *db, apr_pool_t *p, const dm_member *m, const char *reason,
                                   const char *event)
{
    dm_stmt *st;
    int row = 0;
    int64_t now = dm_now(), until = now + protect_delay;
    json_t *vars;
    dm_err *e = dm_db_prepare(db, p,
                              "UPDATE users SET withdrawals_locked_until = "
                              "MAX(withdrawals_locked_until, ?) WHERE id = ?",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, until);
    dm_stmt_bind_int64(st, 2, m->id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (e || protect_delay == 0) {
        return e;
    }
    vars = dm_json_own(p, json_pack("{s:s,s:s,s:s}", "email", m->email, "reason", reason, "until",
                                    dm_json_time(p, until)));
    return dm_mail_enqueue(db, p, m->email, "withdrawals_locked", vars,
                           apr_psprintf(p, "wd-lock:%" APR_INT64_T_FMT ":%s:%" APR_INT64_T_FMT,
                                        (apr_int64_t)m->id, event, (apr_int64_t)now));
}

static dm_err *member_mail(dm_db *db, apr_pool_t *p, const dm_member *m, const char *tmpl)
{
    json_t *vars = dm_json_own(p, json_pack("{s:s}", "email", m->email));

    return dm_mail_enqueue(db, p, m->email, tmpl, vars,
                           apr_psprintf(p, "%s:%" APR_INT64_T_FMT ":%" APR_INT64_T_FMT, tmpl,
                                        (apr_int64_t)m->id, (apr_int64_t)dm_now()));
}

dm_err *dm_member_2fa_setup(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_member *m,
                            const char **secret, const char **uri)
{
    return dm_2fa_setup(db, p, s->keys, DM_2FA_MEMBER, m->id, m->email, secret, uri);
}

dm_err *dm_member_2fa_enable(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_member *m,
                             const char *code, apr_array_header_t **codes)
{
    dm_err *e = dm_db_begin(db, p);

    if (e) {
        return e;
    }
    e = dm_2fa_enable(db, p, s->keys, DM_2FA_MEMBER, m->id, code, codes);
    if (!e) {
        e = member_mail(db, p, m, "twofa_enabled");
    }
    if (!e) {
        e = dm_member_lock_withdrawals(db, p, m, "two-factor sign-in was turned on", "2fa-on");
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

dm_err *dm_member_2fa_disable(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_member *m,
                              const char *code)
{
    dm_err *e = dm_db_begin(db, p);

    if (e) {
        return e;
    }
    e = dm_2fa_verify(db, p, s->keys, DM_2FA_MEMBER, m->id, code, 1, NULL);
    if (!e) {
        e = dm_2fa_remove(db, p, DM_2FA_MEMBER, m->id);
    }
    if (!e) {
        e = member_mail(db, p, m, "twofa_disabled");
    }
    if (!e) {
        e = dm_member_lock_withdrawals(db, p, m, "two-factor sign-in was turned off", "2fa-off");
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}
