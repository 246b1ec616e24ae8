/*
 * members.c — see members.h. Every write runs in one BEGIN IMMEDIATE
 * transaction; password hashing (slow, memory-hard) always happens before
 * the transaction starts, never while holding the write lock.
 */
#include "members/members.h"

#include <apr_strings.h>
#include <apr_time.h>
#include <string.h>

#include "base/clock.h"
#include "referral/flags.h"
#include "base/json.h"
#include "ledger/ledger.h"
#include "base/log.h"
#include "mail/mailq.h"
#include "members/twofa.h"
#include "referral/referral.h"
#include "base/validate.h"
#include "store/db_group.h"

#define USER_COLUMNS                                                                               \
    "id, email, name, referral_code, referrer_id, vip_level, status, token_version, "              \
    "email_verified_at, kyc_status, terms_version, created_at"

/* The member's wallet and held balances in the platform currency (NULL,
 * read as 0, before the ledger made the account): two point lookups in
 * accounts_member, in the same statement as the member row, so GET /api/me
 * stays one read. Both parameters are the currency. */
#define BALANCE_COLUMNS                                                                            \
    "(SELECT balance_micros FROM accounts WHERE user_id = users.id AND kind = 'wallet' AND "       \
    "currency = ?), (SELECT balance_micros FROM accounts WHERE user_id = users.id AND "            \
    "kind = 'held' AND currency = ?)"

/* Leeway for clock differences between nodes when checking nbf/exp. */
#define DM_CLOCK_LEEWAY 5

static void read_member(dm_stmt *st, apr_pool_t *p, int c, dm_member *m)
{
    m->id = dm_stmt_int64(st, c + 0);
    m->email = apr_pstrdup(p, dm_stmt_text(st, c + 1, NULL));
    m->name = dm_stmt_dup_text(st, p, c + 2);
    m->referral_code = apr_pstrdup(p, dm_stmt_text(st, c + 3, NULL));
    m->referrer_id = dm_stmt_is_null(st, c + 4) ? 0 : dm_stmt_int64(st, c + 4);
    m->vip_level = (int)dm_stmt_int64(st, c + 5);
    m->status = apr_pstrdup(p, dm_stmt_text(st, c + 6, NULL));
    m->token_version = dm_stmt_int64(st, c + 7);
    m->email_verified_at = dm_stmt_is_null(st, c + 8) ? 0 : dm_stmt_int64(st, c + 8);
    m->kyc_status = apr_pstrdup(p, dm_stmt_text(st, c + 9, NULL));
    m->terms_version = apr_pstrdup(p, dm_stmt_text(st, c + 10, NULL));
    m->created_at = dm_stmt_int64(st, c + 11);
    m->balance_micros = 0;
    m->held_micros = 0;
}

/* The two BALANCE_COLUMNS from column c on. */
static void read_balances(dm_stmt *st, int c, dm_member *m)
{
    m->balance_micros = dm_stmt_int64(st, c);
    m->held_micros = dm_stmt_int64(st, c + 1);
}

dm_err *dm_member_get(dm_db *db, apr_pool_t *p, int64_t id, dm_member *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(
        db, p, "SELECT " USER_COLUMNS ", " BALANCE_COLUMNS " FROM users WHERE id = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, DM_LEDGER_CURRENCY);
    dm_stmt_bind_str(st, 2, DM_LEDGER_CURRENCY);
    dm_stmt_bind_int64(st, 3, id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        read_member(st, p, 0, out);
        read_balances(st, 12, out);
    }
    dm_stmt_done(st);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "no such member");
    }
    return e;
}

void dm_member_write(dm_jbuf *b, const dm_services *s, const dm_member *m)
{
    dm_jbuf_lit(b, "{\"id\":");
    dm_jbuf_int(b, m->id);
    dm_jbuf_lit(b, ",\"email\":");
    dm_jbuf_str(b, m->email);
    dm_jbuf_lit(b, ",\"name\":");
    dm_jbuf_str(b, m->name);
    dm_jbuf_lit(b, ",\"referral_code\":");
    dm_jbuf_str(b, m->referral_code);
    dm_jbuf_lit(b, ",\"vip_level\":");
    dm_jbuf_int(b, m->vip_level);
    /* The wallet (negative: a debt from a clawback) and the commissions
     * held for the refund window, as dm_member_get read them. */
    dm_jbuf_lit(b, ",\"balance_micros\":");
    dm_jbuf_int(b, m->balance_micros);
    dm_jbuf_lit(b, ",\"held_micros\":");
    dm_jbuf_int(b, m->held_micros);
    dm_jbuf_lit(b, ",\"currency\":");
    dm_jbuf_str(b, DM_LEDGER_CURRENCY);
    dm_jbuf_lit(b, ",\"kyc_status\":");
    dm_jbuf_str(b, m->kyc_status);
    dm_jbuf_lit(b, ",\"email_verified\":");
    dm_jbuf_bool(b, m->email_verified_at != 0);
    dm_jbuf_lit(b, ",\"created_at\":");
    dm_jbuf_time(b, m->created_at);
    dm_jbuf_lit(b, ",\"status\":");
    dm_jbuf_str(b, m->status);
    dm_jbuf_lit(b, ",\"terms_version\":");
    dm_jbuf_str(b, m->terms_version);
    dm_jbuf_lit(b, ",\"terms_outdated\":");
    dm_jbuf_bool(b, s->legal && strcmp(m->terms_version, s->legal->terms.version) != 0);
    dm_jbuf_lit(b, "}");
}

/* The one list of the member's fields is dm_member_write's (GET /api/me
 * writes it on every request); the jansson object for answers that embed
 * the member is read back from those bytes, so the two cannot drift. The
 * strings were validated as UTF-8 when stored; should one not be, the
 * answer carries an empty object rather than none. */
json_t *dm_member_json(apr_pool_t *p, const dm_services *s, const dm_member *m)
{
    dm_jbuf b;
    json_t *o;

    dm_jbuf_init(&b, p, 512);
    dm_member_write(&b, s, m);
    o = json_loadb(b.p, b.len, JSON_REJECT_DUPLICATES, NULL);
    return o ? o : json_object();
}

/* ---- sessions ---- */

static dm_err *issue_access(apr_pool_t *p, const dm_services *s, const dm_member *m,
                            dm_session *sess)
{
    dm_claims c;
    int64_t now = dm_now();

    c.typ = "member";
    c.sub = m->id;
    c.ver = m->token_version;
    c.iat = now;
    c.nbf = now;
    c.exp = now + DM_ACCESS_TTL;
    c.fam = sess->family;
    sess->access_token = dm_jwt_sign(p, s->keys->jwt, &c);
    sess->access_expires = c.exp;
    sess->csrf_token = dm_token_new(p);
    return NULL;
}

/* Inserts a refresh token of `family` (a new family when NULL). */
static dm_err *insert_refresh(dm_db *db, apr_pool_t *p, const dm_services *s, int64_t user_id,
                              const char *family, dm_session *sess)
{
    dm_stmt *st;
    int row;
    int64_t now = dm_now();
    const char *token = dm_token_new(p);
    const char *hash = dm_token_hash(p, s->keys->token_hash, token);
    dm_err *e =
        dm_db_prepare(db, p,
                      "INSERT INTO refresh_tokens (user_id, family_id, token_hash, "
                      "created_at, expires_at, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      &st);

    if (e) {
        return e;
    }
    family = family ? family : dm_token_new(p);
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_str(st, 2, family);
    dm_stmt_bind_str(st, 3, hash);
    dm_stmt_bind_int64(st, 4, now);
    dm_stmt_bind_int64(st, 5, now + DM_REFRESH_TTL);
    dm_stmt_bind_str(st, 6, sess->ip);
    /* a user agent is shown, not parsed: bounded, never the whole header */
    if (sess->user_agent) {
        size_t n = strnlen(sess->user_agent, 256);
        while (n > 0 && n < strlen(sess->user_agent) &&
               ((unsigned char)sess->user_agent[n] & 0xc0) == 0x80) {
            n--; /* not in the middle of a UTF-8 sequence */
        }
        dm_stmt_bind_text(st, 7, sess->user_agent, n);
    } else {
        dm_stmt_bind_null(st, 7);
    }
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e) {
        sess->refresh_token = token;
        sess->refresh_expires = now + DM_REFRESH_TTL;
        sess->family = family;
    }
    return e;
}

/* fn in a write transaction; other threads' writes may share its commit
 * (store/db_group.h). */
static dm_err *run_in_txn(dm_db *db, apr_pool_t *p, dm_db_txn_fn fn, void *baton)
{
    return dm_db_write_txn(db, p, fn, baton);
}

static dm_err *exec_bind_ids(dm_db *db, apr_pool_t *p, const char *sql, int64_t a, int64_t b)
{
    dm_stmt *st;
    int row;
    dm_err *e = dm_db_prepare(db, p, sql, &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, a);
    dm_stmt_bind_int64(st, 2, b);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

/* A single-use e-mail token, and its message on the queue. */
static dm_err *email_token(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_member *m,
                           const char *purpose, int64_t ttl)
{
    dm_stmt *st;
    int row = 0;
    int64_t now = dm_now(), id = 0;
    const char *token = dm_token_new(p);
    int verify = strcmp(purpose, "verify") == 0;
    json_t *vars, *secrets;
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO email_tokens (user_id, purpose, token_hash, created_at, "
                              "expires_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, m->id);
    dm_stmt_bind_str(st, 2, purpose);
    dm_stmt_bind_str(st, 3, dm_token_hash(p, s->keys->token_hash, token));
    dm_stmt_bind_int64(st, 4, now);
    dm_stmt_bind_int64(st, 5, now + ttl);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        id = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    /* The token and the link that carries it wait in the queue encrypted
     * (a copy of the database must not yield a working token). */
    vars = dm_json_own(
        p, json_pack("{s:s,s:I}", "email", m->email, "expires_in_hours", (json_int_t)(ttl / 3600)));
    secrets = dm_json_own(
        p, json_pack("{s:s,s:s}", "token", token, "url",
                     apr_pstrcat(p, s->public_url ? s->public_url : "",
                                 verify ? "/verify-email?token=" : "/reset-password?token=", token,
                                 NULL)));
    return dm_mail_enqueue_sealed(
        db, p, s->keys->mail_seal, m->email, verify ? "email_verification" : "password_reset", vars,
        secrets, apr_psprintf(p, "%s:%" APR_INT64_T_FMT, purpose, (apr_int64_t)id));
}

/* ---- registration ---- */

typedef struct reg_ctx {
    const dm_services *s;
    const dm_register_req *req;
    const char *email, *email_key, *hash, *code;
    dm_member *out;
    dm_session *sess;
} reg_ctx;

static dm_err *find_referrer(dm_db *db, apr_pool_t *p, const char *code, int64_t *id)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, "SELECT id FROM users WHERE referral_code = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, code);
    e = dm_stmt_step(st, p, &row);
    *id = (!e && row) ? dm_stmt_int64(st, 0) : 0;
    dm_stmt_done(st);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_INVALID, "referral_code", "no member has this referral code");
    }
    return e;
}

static dm_err *email_taken(dm_db *db, apr_pool_t *p, const char *key)
{
    int64_t n = 0;
    int found;
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, "SELECT COUNT(*) FROM users WHERE email_key = ?", &st);

    (void)found;
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, key);
    e = dm_stmt_step(st, p, &row);
    n = (!e && row) ? dm_stmt_int64(st, 0) : 0;
    dm_stmt_done(st);
    if (!e && n) {
        e = dm_err_make(p, DM_E_CONFLICT, "email", "an account with this e-mail address exists");
    }
    return e;
}

dm_err *dm_member_insert(dm_db *db, apr_pool_t *p, const dm_member_new *m, int64_t *id)
{
    int64_t now = dm_now();
    dm_err *e = NULL;
    dm_stmt *st;
    int row = 0;

    *id = 0;
    /* The referral code is random: on the rare collision, draw again. */
    for (int attempt = 0; !e && !*id && attempt < 8; attempt++) {
        e = dm_db_prepare(db, p,
                          "INSERT INTO users (id, email, email_key, password_hash, referral_code, "
                          "referrer_id, terms_version, terms_accepted_at, created_at, "
                          "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                          &st);
        if (e) {
            break;
        }
        if (m->id) {
            dm_stmt_bind_int64(st, 1, m->id);
        } else {
            dm_stmt_bind_null(st, 1);
        }
        dm_stmt_bind_str(st, 2, m->email);
        dm_stmt_bind_str(st, 3, m->email_key);
        dm_stmt_bind_str(st, 4, m->password_hash);
        dm_stmt_bind_str(st, 5, dm_referral_code_new(p));
        if (m->referrer_id) {
            dm_stmt_bind_int64(st, 6, m->referrer_id);
        } else {
            dm_stmt_bind_null(st, 6);
        }
        dm_stmt_bind_str(st, 7, m->terms->version);
        dm_stmt_bind_int64(st, 8, now);
        dm_stmt_bind_int64(st, 9, now);
        dm_stmt_bind_int64(st, 10, now);
        e = dm_stmt_step(st, p, &row);
        if (!e && row) {
            *id = dm_stmt_int64(st, 0);
        }
        dm_stmt_done(st);
        if (e && e->code == DM_E_CONFLICT) {
            e = NULL; /* the caller checked the address: it was the code */
        }
    }
    if (!e && !*id) {
        e = dm_err_make(p, DM_E_UNAVAILABLE, NULL, "could not allocate a referral code, try again");
    }
    if (!e) {
        e = dm_referral_attach(db, p, *id, m->referrer_id);
    }
    if (!e) {
        e = dm_legal_record_acceptance(db, p, *id, m->terms, m->ip);
    }
    return e;
}

static dm_err *register_txn(dm_db *db, apr_pool_t *p, void *baton)
{
    reg_ctx *c = baton;
    dm_member_new m;
    int64_t id = 0;
    dm_err *e = NULL;

    memset(&m, 0, sizeof(m));
    if (c->code) {
        e = find_referrer(db, p, c->code, &m.referrer_id);
    }
    if (!e) {
        e = email_taken(db, p, c->email_key);
    }
    if (!e) {
        m.email = c->email;
        m.email_key = c->email_key;
        m.password_hash = c->hash;
        m.terms = &c->s->legal->terms;
        m.ip = c->req->ip;
        e = dm_member_insert(db, p, &m, &id);
    }
    if (!e) {
        e = dm_member_get(db, p, id, c->out);
    }
    if (!e) {
        e = email_token(db, p, c->s, c->out, "verify", DM_VERIFY_TTL);
    }
    if (!e) {
        e = insert_refresh(db, p, c->s, id, NULL, c->sess);
    }
    if (!e) {
        e = dm_flags_check_registration(db, p, id);
    }
    return e;
}

dm_err *dm_member_register(dm_db *db, apr_pool_t *p, const dm_services *s,
                           const dm_register_req *req, dm_member *out, dm_session *sess)
{
    reg_ctx c;
    dm_err *e;

    memset(&c, 0, sizeof(c));
    c.s = s;
    c.req = req;
    c.out = out;
    c.sess = sess;
    e = dm_validate_email(p, "email", req->email, &c.email, &c.email_key);
    if (e) {
        return e;
    }
    if (!req->accept_terms) {
        return dm_err_make(p, DM_E_INVALID, "accept_terms",
                           "the terms of service must be accepted (accept_terms: true)");
    }
    if (!req->terms_version || strcmp(req->terms_version, s->legal->terms.version) != 0) {
        return dm_err_make(p, DM_E_INVALID, "terms_version",
                           "the current terms of service are version %s; read and accept those",
                           s->legal->terms.version);
    }
    if (req->referral_code && *req->referral_code &&
        !dm_referral_code_parse(p, req->referral_code, &c.code)) {
        return dm_err_make(p, DM_E_INVALID, "referral_code", "this is not a referral code");
    }
    e = dm_pw_policy_check(p, req->password, c.email);
    if (!e) {
        e = dm_pw_hash(p, s->pw_limiter, &s->pw_params, req->password, &c.hash);
    }
    if (!e) {
        e = run_in_txn(db, p, register_txn, &c);
    }
    if (!e) {
        e = issue_access(p, s, out, sess);
    }
    return e;
}

/* ---- login ---- */

typedef struct login_ctx {
    const dm_services *s;
    dm_member *m;
    dm_session *sess;
    const char *new_hash;
} login_ctx;

static dm_err *login_txn(dm_db *db, apr_pool_t *p, void *baton)
{
    login_ctx *c = baton;
    dm_2fa_state tf = {0};
    dm_err *e = NULL;

    if (c->new_hash) {
        dm_stmt *st;
        int row;
        e = dm_db_prepare(db, p, "UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?",
                          &st);
        if (e) {
            return e;
        }
        dm_stmt_bind_str(st, 1, c->new_hash);
        dm_stmt_bind_int64(st, 2, dm_now());
        dm_stmt_bind_int64(st, 3, c->m->id);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    if (!e) {
        e = dm_2fa_state_get(db, p, DM_2FA_MEMBER, c->m->id, &tf);
    }
    /* With 2FA on, the password alone opens no session: a challenge. */
    if (!e && tf.enabled) {
        return dm_2fa_challenge_new(db, p, c->s->keys, DM_2FA_MEMBER, c->m->id, c->sess->ip,
                                    &c->sess->challenge);
    }
    if (!e) {
        e = insert_refresh(db, p, c->s, c->m->id, NULL, c->sess);
    }
    return e;
}

/* 403 for a member who is not active (suspended): the login, the second
 * factor, the refresh and every authenticated read say it the same way. */
static dm_err *not_active(apr_pool_t *p, const char *status)
{
    return strcmp(status, "active") != 0
               ? dm_err_make(p, DM_E_FORBIDDEN, NULL, "this account is suspended")
               : NULL;
}

dm_err *dm_member_login(dm_db *db, apr_pool_t *p, const dm_services *s, const char *email,
                        const char *password, const char *ip, dm_member *out, dm_session *sess)
{
    const char *norm, *key, *stored = NULL;
    dm_stmt *st;
    int row = 0, ok = 0, rehash = 0;
    login_ctx c;
    dm_err *e = dm_validate_email(p, "email", email, &norm, &key);

    (void)ip;
    if (e) {
        return e;
    }
    if (strlen(password) > 128) {
        return dm_err_make(p, DM_E_UNAUTHORIZED, NULL, "wrong e-mail address or password");
    }
    e = dm_db_prepare(db, p,
                      "SELECT " USER_COLUMNS ", password_hash, " BALANCE_COLUMNS
                      " FROM users WHERE email_key = ?",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, DM_LEDGER_CURRENCY);
    dm_stmt_bind_str(st, 2, DM_LEDGER_CURRENCY);
    dm_stmt_bind_str(st, 3, key);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        read_member(st, p, 0, out);
        stored = apr_pstrdup(p, dm_stmt_text(st, 12, NULL));
        read_balances(st, 13, out);
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    if (!stored) {
        /* Same cost, same slot rules as a real check: no account probing
         * by timing or by which answer comes under load. */
        e = dm_pw_verify_dummy(p, s->pw_limiter, &s->pw_params, password);
        return e ? e : dm_err_make(p, DM_E_UNAUTHORIZED, NULL, "wrong e-mail address or password");
    }
    e = dm_pw_verify(p, s->pw_limiter, &s->pw_params, stored, password, &ok, &rehash);
    if (e) {
        return e;
    }
    if (!ok) {
        return dm_err_make(p, DM_E_UNAUTHORIZED, NULL, "wrong e-mail address or password");
    }
    if ((e = not_active(p, out->status))) {
        return e;
    }
    memset(&c, 0, sizeof(c));
    c.s = s;
    c.m = out;
    c.sess = sess;
    if (rehash) {
        /* An imported bcrypt hash (or old argon2 parameters): upgrade now
         * that the password is known to be right. */
        e = dm_pw_hash(p, s->pw_limiter, &s->pw_params, password, &c.new_hash);
        if (e) {
            return e;
        }
    }
    sess->challenge = NULL;
    e = run_in_txn(db, p, login_txn, &c);
    if (!e && !sess->challenge) {
        e = issue_access(p, s, out, sess);
    }
    return e;
}

typedef struct login2_ctx {
    const dm_services *s;
    const char *challenge, *code;
    dm_member *m;
    dm_session *sess;
} login2_ctx;

static dm_err *login_2fa_txn(dm_db *db, apr_pool_t *p, void *baton)
{
    login2_ctx *c = baton;
    int64_t owner = 0;
    dm_err *e =
        dm_2fa_challenge_take(db, p, c->s->keys, DM_2FA_MEMBER, c->challenge, c->code, &owner);

    if (!e) {
        e = dm_member_get(db, p, owner, c->m);
    }
    if (!e) {
        e = not_active(p, c->m->status);
    }
    return e ? e : insert_refresh(db, p, c->s, owner, NULL, c->sess);
}

dm_err *dm_member_login_2fa(dm_db *db, apr_pool_t *p, const dm_services *s, const char *challenge,
                            const char *code, dm_member *out, dm_session *sess)
{
    login2_ctx c;
    dm_err *e;

    c.s = s;
    c.challenge = challenge;
    c.code = code;
    c.m = out;
    c.sess = sess;
    e = run_in_txn(db, p, login_2fa_txn, &c);
    if (e && e->code == DM_E_INVALID_CODE) {
        dm_err *f = dm_2fa_challenge_failed(db, p, s->keys, DM_2FA_MEMBER, challenge);
        return f ? f : e;
    }
    if (!e) {
        e = issue_access(p, s, out, sess);
    }
    return e;
}

/* ---- refresh and logout ---- */

typedef struct refresh_ctx {
    const dm_services *s;
    const char *hash;
    dm_member *m;
    dm_session *sess;
    int reused; /* set when a rotated token came back: the family is revoked */
} refresh_ctx;

static dm_err *revoke_family(dm_db *db, apr_pool_t *p, const char *family)
{
    dm_stmt *st;
    int row;
    dm_err *e = dm_db_prepare(db, p,
                              "UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND "
                              "revoked_at IS NULL",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, dm_now());
    dm_stmt_bind_str(st, 2, family);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

static dm_err *refresh_txn(dm_db *db, apr_pool_t *p, void *baton)
{
    refresh_ctx *c = baton;
    dm_stmt *st;
    int row = 0;
    int64_t id = 0, user = 0, expires = 0, now = dm_now();
    int rotated = 0, revoked = 0;
    const char *family = NULL;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT id, user_id, family_id, expires_at, rotated_at IS NOT NULL, "
                              "revoked_at IS NOT NULL FROM refresh_tokens WHERE token_hash = ?",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, c->hash);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        id = dm_stmt_int64(st, 0);
        user = dm_stmt_int64(st, 1);
        family = apr_pstrdup(p, dm_stmt_text(st, 2, NULL));
        expires = dm_stmt_int64(st, 3);
        rotated = (int)dm_stmt_int64(st, 4);
        revoked = (int)dm_stmt_int64(st, 5);
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    if (!row) {
        return dm_err_make(p, DM_E_UNAUTHORIZED, NULL, "the refresh token is not valid");
    }
    if (rotated) {
        /* A token that was already exchanged came back: someone else holds
         * this family. End the whole login. (Committed by the caller.) */
        c->reused = 1;
        return revoke_family(db, p, family);
    }
    e = dm_member_get(db, p, user, c->m);
    if (e) {
        return e;
    }
    /* Suspension revokes the tokens too; say why the session ended. */
    if ((e = not_active(p, c->m->status))) {
        return e;
    }
    if (revoked || expires <= now) {
        return dm_err_make(p, DM_E_UNAUTHORIZED, NULL, "the session has ended; log in again");
    }
    e = exec_bind_ids(
        db, p, "UPDATE refresh_tokens SET rotated_at = ? WHERE id = ? AND rotated_at IS NULL", now,
        id);
    if (!e && dm_db_changes(db) != 1) {
        return dm_err_make(p, DM_E_UNAUTHORIZED, NULL, "the refresh token is not valid");
    }
    return e ? e : insert_refresh(db, p, c->s, user, family, c->sess);
}

dm_err *dm_member_refresh(dm_db *db, apr_pool_t *p, const dm_services *s, const char *refresh_token,
                          dm_member *out, dm_session *sess)
{
    refresh_ctx c;
    dm_err *e;

    if (!refresh_token || !*refresh_token || strlen(refresh_token) > 128) {
        return dm_err_make(p, DM_E_UNAUTHORIZED, NULL, "no refresh token");
    }
    memset(&c, 0, sizeof(c));
    c.s = s;
    c.hash = dm_token_hash(p, s->keys->token_hash, refresh_token);
    c.m = out;
    c.sess = sess;
    e = run_in_txn(db, p, refresh_txn, &c);
    if (!e && c.reused) {
        dm_log(DM_L_WARN,
               "DM00400: a rotated refresh token was presented again; its login was revoked "
               "(possible token theft)");
        return dm_err_make(p, DM_E_UNAUTHORIZED, NULL,
                           "this refresh token was already used; the session was ended");
    }
    if (!e) {
        e = issue_access(p, s, out, sess);
    }
    return e;
}

typedef struct logout_ctx {
    const char *hash;
} logout_ctx;

static dm_err *logout_txn(dm_db *db, apr_pool_t *p, void *baton)
{
    logout_ctx *c = baton;
    dm_stmt *st;
    int row = 0;
    const char *family = NULL;
    dm_err *e =
        dm_db_prepare(db, p, "SELECT family_id FROM refresh_tokens WHERE token_hash = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, c->hash);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        family = apr_pstrdup(p, dm_stmt_text(st, 0, NULL));
    }
    dm_stmt_done(st);
    return (e || !family) ? e : revoke_family(db, p, family);
}

dm_err *dm_member_logout(dm_db *db, apr_pool_t *p, const dm_services *s, const char *refresh_token)
{
    logout_ctx c;

    if (!refresh_token || !*refresh_token || strlen(refresh_token) > 128) {
        return NULL;
    }
    c.hash = dm_token_hash(p, s->keys->token_hash, refresh_token);
    return run_in_txn(db, p, logout_txn, &c);
}

/* The authentication read: the member's status and token version and
 * whether the login `family` still holds a refresh token that was not
 * revoked (one seek in a partial index of live rows: logout and
 * refresh-token reuse revoke the whole family, and its access tokens stop
 * working at their next request), then, in the same statement, the
 * caller's own columns (`columns`, from column AUTH_COLUMNS on) with its
 * `joins` after "FROM users": a member request reads what it answers with
 * in the read that authenticates it. The family is not matched to the
 * member: both come from the same signed token, and family ids are 256-bit
 * random. Parameters: the family, the columns' own, the member's id. */
#define AUTH_SQL(columns, joins)                                                                   \
    "SELECT users.id, users.status, users.token_version, EXISTS (SELECT 1 FROM refresh_tokens "    \
    "INDEXED BY refresh_tokens_live_family WHERE family_id = ? AND revoked_at IS NULL)" columns    \
    " FROM users" joins " WHERE users.id = ?"
#define AUTH_COLUMNS 4

/* One caller's read: its AUTH_SQL text, how many parameters its columns
 * take (bound by `bind` from index 2 on), and the reader of its columns. */
typedef struct auth_read {
    const char *sql;
    int params;
    void (*bind)(dm_stmt *st, int idx);
    void (*read)(dm_stmt *st, apr_pool_t *p, int col, dm_member *m, void *baton);
} auth_read;

/* The member's fields other than the three authentication needs are the
 * caller's read's (0 and NULL when it reads none). */
static dm_err *member_auth(dm_db *db, apr_pool_t *p, const dm_claims *c, const auth_read *ar,
                           void *baton, dm_member *out)
{
    dm_stmt *st;
    int row = 0, live = 0;
    dm_err *e = dm_db_prepare(db, p, ar->sql, &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, c->fam);
    if (ar->bind) {
        ar->bind(st, 2);
    }
    dm_stmt_bind_int64(st, 2 + ar->params, c->sub);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        memset(out, 0, sizeof(*out));
        out->id = dm_stmt_int64(st, 0);
        out->status = apr_pstrdup(p, dm_stmt_text(st, 1, NULL));
        out->token_version = dm_stmt_int64(st, 2);
        live = dm_stmt_int64(st, 3) != 0;
        if (ar->read) {
            ar->read(st, p, AUTH_COLUMNS, out, baton);
        }
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    if (!row) {
        return dm_err_make(p, DM_E_UNAUTHORIZED, NULL, "the access token is not valid");
    }
    /* Status first: a suspended member (whose suspension also bumped the
     * token version) is told so, with 403, not merely logged out. */
    if ((e = not_active(p, out->status))) {
        return e;
    }
    if (out->token_version != c->ver || !live) {
        return dm_err_make(p, DM_E_UNAUTHORIZED, NULL, "the session has ended; log in again");
    }
    return NULL;
}

/* The whole member and its balances, as dm_member_get (GET /api/me stays
 * one read). */
static void bind_currency(dm_stmt *st, int idx)
{
    dm_stmt_bind_str(st, idx, DM_LEDGER_CURRENCY);
    dm_stmt_bind_str(st, idx + 1, DM_LEDGER_CURRENCY);
}

static void read_whole(dm_stmt *st, apr_pool_t *p, int col, dm_member *m, void *baton)
{
    (void)baton;
    read_member(st, p, col, m);
    read_balances(st, col + 12, m);
}

static const auth_read auth_whole = {AUTH_SQL(", " USER_COLUMNS ", " BALANCE_COLUMNS, ""), 2,
                                     bind_currency, read_whole};

/* The member's referral counters, and of the member only what
 * authentication needs. */
static void read_network(dm_stmt *st, apr_pool_t *p, int col, dm_member *m, void *baton)
{
    (void)p;
    (void)m;
    dm_referral_network_read(st, col, baton);
}

static const auth_read auth_network = {
    AUTH_SQL(DM_REFERRAL_NETWORK_COLUMNS, DM_REFERRAL_NETWORK_JOIN), 0, NULL, read_network};

dm_err *dm_member_token_check(apr_pool_t *p, const dm_services *s, const char *access_token,
                              dm_claims *c)
{
    dm_err *e =
        dm_jwt_verify(p, s->keys->jwt, access_token, "member", dm_now(), DM_CLOCK_LEEWAY, c);

    if (e) {
        return e;
    }
    /* Every member access token names its login (tokens from before the
     * family claim are refused: the refresh token gets a new one). */
    if (!c->fam) {
        return dm_err_make(p, DM_E_UNAUTHORIZED, NULL, "the session has ended; log in again");
    }
    return NULL;
}

dm_err *dm_member_authenticate_claims(dm_db *db, apr_pool_t *p, const dm_claims *c, dm_member *out)
{
    return member_auth(db, p, c, &auth_whole, NULL, out);
}

dm_err *dm_member_authenticate_network(dm_db *db, apr_pool_t *p, const dm_claims *c, dm_member *out,
                                       dm_network *net)
{
    return member_auth(db, p, c, &auth_network, net, out);
}

dm_err *dm_member_authenticate(dm_db *db, apr_pool_t *p, const dm_services *s,
                               const char *access_token, dm_member *out)
{
    dm_claims c;
    dm_err *e = dm_member_token_check(p, s, access_token, &c);

    return e ? e : dm_member_authenticate_claims(db, p, &c, out);
}

/* ---- e-mail tokens ---- */

typedef struct use_token_ctx {
    const dm_services *s;
    const char *purpose;
    const char *hash;
    const char *new_password_hash; /* reset only */
    const char *password;          /* reset: for the policy check */
    int64_t user_id;
} use_token_ctx;

/* Finds and consumes a single-use token; *user gets its member. */
static dm_err *consume_token(dm_db *db, apr_pool_t *p, const char *purpose, const char *hash,
                             int64_t *user)
{
    dm_stmt *st;
    int row = 0;
    int64_t id = 0, expires = 0, now = dm_now();
    int used = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT id, user_id, expires_at, used_at IS NOT NULL FROM "
                              "email_tokens WHERE token_hash = ? AND purpose = ?",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, hash);
    dm_stmt_bind_str(st, 2, purpose);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        id = dm_stmt_int64(st, 0);
        *user = dm_stmt_int64(st, 1);
        expires = dm_stmt_int64(st, 2);
        used = (int)dm_stmt_int64(st, 3);
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    if (!row || used || expires <= now) {
        return dm_err_make(p, DM_E_INVALID, "token",
                           "this link is not valid: it was already used, has expired, or is wrong");
    }
    e = exec_bind_ids(db, p, "UPDATE email_tokens SET used_at = ? WHERE id = ? AND used_at IS NULL",
                      now, id);
    if (!e && dm_db_changes(db) != 1) {
        e = dm_err_make(p, DM_E_INVALID, "token", "this link was already used");
    }
    return e;
}

static dm_err *verify_txn(dm_db *db, apr_pool_t *p, void *baton)
{
    use_token_ctx *c = baton;
    dm_member m;
    dm_err *e = consume_token(db, p, "verify", c->hash, &c->user_id);

    if (!e) {
        e = exec_bind_ids(db, p,
                          "UPDATE users SET email_verified_at = COALESCE(email_verified_at, ?) "
                          "WHERE id = ?",
                          dm_now(), c->user_id);
    }
    if (!e) {
        e = dm_member_get(db, p, c->user_id, &m);
    }
    if (!e) {
        /* once per member, however many verification links they use */
        json_t *vars = dm_json_own(
            p, json_pack("{s:s,s:s}", "email", m.email, "referral_code", m.referral_code));
        e = dm_mail_enqueue(db, p, m.email, "welcome", vars,
                            apr_psprintf(p, "welcome:%" APR_INT64_T_FMT, (apr_int64_t)m.id));
    }
    return e;
}

dm_err *dm_member_verify_email(dm_db *db, apr_pool_t *p, const dm_services *s, const char *token)
{
    use_token_ctx c;

    if (!token || !*token || strlen(token) > 128) {
        return dm_err_make(p, DM_E_INVALID, "token", "the token is missing or malformed");
    }
    memset(&c, 0, sizeof(c));
    c.hash = dm_token_hash(p, s->keys->token_hash, token);
    return run_in_txn(db, p, verify_txn, &c);
}

typedef struct reset_req_ctx {
    const dm_services *s;
    const char *key;
} reset_req_ctx;

static dm_err *reset_request_txn(dm_db *db, apr_pool_t *p, void *baton)
{
    reset_req_ctx *c = baton;
    dm_stmt *st;
    int row = 0;
    dm_member m = {0};
    dm_err *e = dm_db_prepare(db, p, "SELECT " USER_COLUMNS " FROM users WHERE email_key = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, c->key);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        read_member(st, p, 0, &m);
    }
    dm_stmt_done(st);
    if (e || !row || strcmp(m.status, "active") != 0) {
        return e; /* unknown or suspended: nothing to send, and nothing to tell */
    }
    return email_token(db, p, c->s, &m, "reset", DM_RESET_TTL);
}

dm_err *dm_member_reset_request(dm_db *db, apr_pool_t *p, const dm_services *s, const char *email,
                                const char *ip)
{
    reset_req_ctx c;
    const char *norm;
    dm_err *e = dm_validate_email(p, "email", email, &norm, &c.key);

    (void)ip;
    if (e) {
        return e;
    }
    c.s = s;
    return run_in_txn(db, p, reset_request_txn, &c);
}

/* What follows every password change, in its transaction: the e-mail
 * saying so, and withdrawals locked for the protection delay. */
static dm_err *password_changed(dm_db *db, apr_pool_t *p, int64_t user_id, const char *ip,
                                const char *reason, const char *event)
{
    dm_member m = {0};
    json_t *vars;
    dm_err *e = dm_member_get(db, p, user_id, &m);

    if (e) {
        return e;
    }
    vars = dm_json_own(p, json_pack("{s:s}", "email", m.email));
    if (ip) {
        json_object_set_new(vars, "ip", json_string(ip));
    }
    e = dm_mail_enqueue(db, p, m.email, "password_changed", vars,
                        apr_psprintf(p, "password_changed:%" APR_INT64_T_FMT ":%" APR_INT64_T_FMT,
                                     (apr_int64_t)user_id, (apr_int64_t)dm_now()));
    return e ? e : dm_member_lock_withdrawals(db, p, &m, reason, event);
}

static dm_err *reset_confirm_txn(dm_db *db, apr_pool_t *p, void *baton)
{
    use_token_ctx *c = baton;
    dm_stmt *st;
    int row;
    int64_t now = dm_now();
    dm_err *e = consume_token(db, p, "reset", c->hash, &c->user_id);

    if (e) {
        return e;
    }
    e = dm_db_prepare(db, p,
                      "UPDATE users SET password_hash = ?, token_version = token_version + 1, "
                      "updated_at = ? WHERE id = ?",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, c->new_password_hash);
    dm_stmt_bind_int64(st, 2, now);
    dm_stmt_bind_int64(st, 3, c->user_id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e) {
        e = exec_bind_ids(db, p,
                          "UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND "
                          "revoked_at IS NULL",
                          now, c->user_id);
    }
    return e ? e : password_changed(db, p, c->user_id, NULL, "a password reset was used", "reset");
}

/* The member a reset token belongs to, without consuming it (for the
 * password policy, which needs the e-mail address). */
static dm_err *peek_token_member(dm_db *db, apr_pool_t *p, const char *hash, dm_member *m)
{
    dm_stmt *st;
    int row = 0;
    int64_t user = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT user_id FROM email_tokens WHERE token_hash = ? AND purpose = "
                              "'reset' AND used_at IS NULL AND expires_at > ?",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, hash);
    dm_stmt_bind_int64(st, 2, dm_now());
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        user = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    if (!row) {
        return dm_err_make(p, DM_E_INVALID, "token",
                           "this link is not valid: it was already used, has expired, or is wrong");
    }
    return dm_member_get(db, p, user, m);
}

dm_err *dm_member_reset_confirm(dm_db *db, apr_pool_t *p, const dm_services *s, const char *token,
                                const char *password)
{
    use_token_ctx c;
    dm_member m;
    dm_err *e;

    if (!token || !*token || strlen(token) > 128) {
        return dm_err_make(p, DM_E_INVALID, "token", "the token is missing or malformed");
    }
    memset(&c, 0, sizeof(c));
    c.hash = dm_token_hash(p, s->keys->token_hash, token);
    e = peek_token_member(db, p, c.hash, &m);
    if (!e) {
        e = dm_pw_policy_check(p, password, m.email);
    }
    if (!e) {
        e = dm_pw_hash(p, s->pw_limiter, &s->pw_params, password, &c.new_password_hash);
    }
    return e ? e : run_in_txn(db, p, reset_confirm_txn, &c);
}

typedef struct terms_ctx {
    const dm_services *s;
    int64_t user_id;
    const char *ip;
} terms_ctx;

static dm_err *terms_txn(dm_db *db, apr_pool_t *p, void *baton)
{
    terms_ctx *c = baton;
    dm_stmt *st;
    int row;
    int64_t now = dm_now();
    dm_err *e = dm_db_prepare(db, p,
                              "UPDATE users SET terms_version = ?, terms_accepted_at = ?, "
                              "updated_at = ? WHERE id = ?",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, c->s->legal->terms.version);
    dm_stmt_bind_int64(st, 2, now);
    dm_stmt_bind_int64(st, 3, now);
    dm_stmt_bind_int64(st, 4, c->user_id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e ? e : dm_legal_record_acceptance(db, p, c->user_id, &c->s->legal->terms, c->ip);
}

dm_err *dm_member_accept_terms(dm_db *db, apr_pool_t *p, const dm_services *s, int64_t user_id,
                               const char *version, const char *ip)
{
    terms_ctx c;

    if (!version || strcmp(version, s->legal->terms.version) != 0) {
        return dm_err_make(p, DM_E_INVALID, "terms_version",
                           "the current terms of service are version %s", s->legal->terms.version);
    }
    c.s = s;
    c.user_id = user_id;
    c.ip = ip;
    return run_in_txn(db, p, terms_txn, &c);
}

dm_err *dm_member_set_suspended(dm_db *db, apr_pool_t *p, int64_t user_id, int suspended)
{
    dm_stmt *st;
    int row;
    int64_t now = dm_now();
    dm_err *e = dm_db_prepare(db, p,
                              "UPDATE users SET status = ?, token_version = token_version + ?, "
                              "updated_at = ? WHERE id = ?",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, suspended ? "suspended" : "active");
    dm_stmt_bind_int64(st, 2, suspended ? 1 : 0);
    dm_stmt_bind_int64(st, 3, now);
    dm_stmt_bind_int64(st, 4, user_id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e && dm_db_changes(db) != 1) {
        return dm_err_make(p, DM_E_NOT_FOUND, NULL, "no such member");
    }
    if (!e && suspended) {
        e = exec_bind_ids(db, p,
                          "UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND "
                          "revoked_at IS NULL",
                          now, user_id);
    }
    return e;
}

/* ---- password change and the list of logins ---- */

typedef struct chpw_ctx {
    const dm_services *s;
    int64_t user_id;
    const char *hash;
    dm_session *sess;
} chpw_ctx;

static dm_err *change_password_txn(dm_db *db, apr_pool_t *p, void *baton)
{
    chpw_ctx *c = baton;
    dm_stmt *st;
    int row = 0;
    int64_t now = dm_now();
    dm_err *e = dm_db_prepare(db, p,
                              "UPDATE users SET password_hash = ?, token_version = token_version "
                              "+ 1, updated_at = ? WHERE id = ?",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, c->hash);
    dm_stmt_bind_int64(st, 2, now);
    dm_stmt_bind_int64(st, 3, c->user_id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    /* Every login ends (a thief's too); the caller gets a fresh one. */
    if (!e) {
        e = exec_bind_ids(db, p,
                          "UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND "
                          "revoked_at IS NULL",
                          now, c->user_id);
    }
    if (!e) {
        e = insert_refresh(db, p, c->s, c->user_id, NULL, c->sess);
    }
    return e ? e
             : password_changed(db, p, c->user_id, c->sess->ip, "your password was changed",
                                "password");
}

dm_err *dm_member_change_password(dm_db *db, apr_pool_t *p, const dm_services *s, int64_t user_id,
                                  const char *current, const char *password, dm_member *out,
                                  dm_session *sess)
{
    dm_stmt *st;
    int row = 0, ok = 0, rehash = 0;
    const char *stored = NULL;
    chpw_ctx c;
    dm_member m = {0};
    dm_err *e = dm_member_get(db, p, user_id, &m);

    if (e) {
        return e;
    }
    if (!current || strlen(current) > 128) {
        return dm_err_make(p, DM_E_INVALID, "current_password", "the current password is wrong");
    }
    e = dm_db_prepare(db, p, "SELECT password_hash FROM users WHERE id = ?", &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        stored = apr_pstrdup(p, dm_stmt_text(st, 0, NULL));
    }
    dm_stmt_done(st);
    if (!e && !stored) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "no such member");
    }
    if (!e) {
        e = dm_pw_verify(p, s->pw_limiter, &s->pw_params, stored, current, &ok, &rehash);
    }
    if (!e && !ok) {
        e = dm_err_make(p, DM_E_INVALID, "current_password", "the current password is wrong");
    }
    if (!e) {
        e = dm_pw_policy_check(p, password, m.email);
    }
    if (e) {
        return e;
    }
    memset(&c, 0, sizeof(c));
    c.s = s;
    c.user_id = user_id;
    c.sess = sess;
    e = dm_pw_hash(p, s->pw_limiter, &s->pw_params, password, &c.hash);
    if (!e) {
        e = run_in_txn(db, p, change_password_txn, &c);
    }
    if (!e) {
        e = dm_member_get(db, p, user_id, out);
    }
    if (!e) {
        e = issue_access(p, s, out, sess);
    }
    return e;
}

dm_err *dm_member_sessions(dm_db *db, apr_pool_t *p, int64_t user_id, apr_array_header_t **rows)
{
    dm_stmt *st;
    int row = 0;
    apr_array_header_t *list = apr_array_make(p, 4, sizeof(dm_login_session));
    /* A family is live while it has a token neither rotated nor revoked
     * nor expired; its newest row says where it was last used. */
    dm_err *e = dm_db_prepare(
        db, p,
        "SELECT MIN(t.id), t.family_id, MIN(t.created_at), MAX(t.created_at), "
        "(SELECT n.ip FROM refresh_tokens n WHERE n.family_id = t.family_id ORDER BY n.id DESC "
        "LIMIT 1), (SELECT n.user_agent FROM refresh_tokens n WHERE n.family_id = t.family_id "
        "ORDER BY n.id DESC LIMIT 1) FROM refresh_tokens t WHERE t.user_id = ? "
        "GROUP BY t.family_id HAVING SUM(t.revoked_at IS NULL AND t.rotated_at IS NULL AND "
        "t.expires_at > ?) > 0 ORDER BY MAX(t.id) DESC LIMIT 200",
        &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_int64(st, 2, dm_now());
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        dm_login_session *ls = apr_array_push(list);
        ls->id = dm_stmt_int64(st, 0);
        ls->family = apr_pstrdup(p, dm_stmt_text(st, 1, NULL));
        ls->created_at = dm_stmt_int64(st, 2);
        ls->last_used_at = dm_stmt_int64(st, 3);
        ls->ip = dm_stmt_dup_text(st, p, 4);
        ls->user_agent = dm_stmt_dup_text(st, p, 5);
    }
    dm_stmt_done(st);
    if (!e) {
        *rows = list;
    }
    return e;
}

json_t *dm_login_session_json(apr_pool_t *p, const dm_login_session *ls, const char *current_family)
{
    json_t *o = json_object(), *ua = ls->user_agent ? json_string(ls->user_agent) : NULL;

    json_object_set_new(o, "id", json_integer(ls->id));
    json_object_set_new(o, "created_at", json_string(dm_json_time(p, ls->created_at)));
    json_object_set_new(o, "last_used_at", json_string(dm_json_time(p, ls->last_used_at)));
    json_object_set_new(o, "ip", ls->ip ? json_string(ls->ip) : json_null());
    /* a user agent that is not UTF-8 is shown as unknown */
    json_object_set_new(o, "user_agent", ua ? ua : json_null());
    json_object_set_new(o, "current",
                        json_boolean(current_family && strcmp(current_family, ls->family) == 0));
    return o;
}

typedef struct end_ctx {
    int64_t user_id, id;
} end_ctx;

static dm_err *session_end_txn(dm_db *db, apr_pool_t *p, void *baton)
{
    end_ctx *c = baton;
    dm_stmt *st;
    int row = 0;
    const char *family = NULL;
    dm_err *e = dm_db_prepare(
        db, p, "SELECT family_id FROM refresh_tokens WHERE id = ? AND user_id = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, c->id);
    dm_stmt_bind_int64(st, 2, c->user_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        family = apr_pstrdup(p, dm_stmt_text(st, 0, NULL));
    }
    dm_stmt_done(st);
    if (!e && family) {
        e = revoke_family(db, p, family);
        if (!e && dm_db_changes(db) == 0) {
            family = NULL; /* already ended */
        }
    }
    if (!e && !family) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "no such session");
    }
    return e;
}

dm_err *dm_member_session_end(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t id)
{
    end_ctx c;

    c.user_id = user_id;
    c.id = id;
    return run_in_txn(db, p, session_end_txn, &c);
}

const char *dm_member_token_family(apr_pool_t *p, const dm_services *s, const char *token)
{
    dm_claims c;

    if (!token || dm_jwt_verify(p, s->keys->jwt, token, "member", dm_now(), DM_CLOCK_LEEWAY, &c)) {
        return NULL;
    }
    return c.fam;
}
