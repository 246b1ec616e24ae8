/*
 * staff.c — see staff.h. Password hashing (slow, memory-hard) always runs
 * before a transaction starts, never while holding the write lock; every
 * write runs in one BEGIN IMMEDIATE transaction together with its audit
 * row.
 */
#include "staff/staff.h"

#include <apr_strings.h>
#include <apr_time.h>
#include <sodium.h>
#include <string.h>

#include "base/clock.h"
#include "store/audit.h"
#include "base/json.h"
#include "base/validate.h"
#include "members/twofa.h"
#include "mail/mailq.h"

/* No 0/O/o, 1/I/i/L/l: read aloud or copied by hand without mistakes.
 * 54 symbols, so 20 of them carry about 115 bits. */
static const char pw_alphabet[] = "ABCDEFGHJKMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789";
#define PW_ALPHABET_LEN (sizeof(pw_alphabet) - 1)

/* Longer than any password we hand out or any token we issue: refused
 * before any work. */
#define MAX_PASSWORD_BYTES 128
#define MAX_TOKEN_BYTES 128

#define STAFF_COLUMNS "id, email, role, status, created_at"

static void read_staff(dm_stmt *st, apr_pool_t *p, int c, dm_staff *out)
{
    out->id = dm_stmt_int64(st, c);
    out->email = apr_pstrdup(p, dm_stmt_text(st, c + 1, NULL));
    out->role = apr_pstrdup(p, dm_stmt_text(st, c + 2, NULL));
    out->status = apr_pstrdup(p, dm_stmt_text(st, c + 3, NULL));
    out->created_at = dm_stmt_int64(st, c + 4);
    out->enrol_only = 0;
}

static const char *id_text(apr_pool_t *p, int64_t id)
{
    return apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)id);
}

static dm_err *unauthorized(apr_pool_t *p)
{
    return dm_err_make(p, DM_E_UNAUTHORIZED, NULL, "wrong e-mail address or password");
}

unsigned dm_staff_role_bit(const char *role)
{
    static const struct {
        const char *name;
        unsigned bit;
    } roles[] = {
        {"owner", DM_ROLE_OWNER},
        {"finance", DM_ROLE_FINANCE},
        {"support", DM_ROLE_SUPPORT},
        {"kyc", DM_ROLE_KYC},
    };

    for (size_t i = 0; role && i < sizeof(roles) / sizeof(roles[0]); i++) {
        if (strcmp(role, roles[i].name) == 0) {
            return roles[i].bit;
        }
    }
    return 0;
}

json_t *dm_staff_json(const dm_staff *st)
{
    return json_pack("{s:I,s:s,s:s}", "id", (json_int_t)st->id, "email", st->email, "role",
                     st->role);
}

static const char *new_password(apr_pool_t *p)
{
    char *pw = apr_palloc(p, DM_STAFF_PASSWORD_LEN + 1);

    for (int i = 0; i < DM_STAFF_PASSWORD_LEN; i++) {
        pw[i] = pw_alphabet[randombytes_uniform((uint32_t)PW_ALPHABET_LEN)];
    }
    pw[DM_STAFF_PASSWORD_LEN] = '\0';
    return pw;
}

/* ---- creating accounts ---- */

typedef struct create_ctx {
    const char *email, *key, *role, *hash;
    int64_t actor;
    const char *ip;
    int only_first_owner; /* ensure-owner: nothing when an owner exists */
    int created;
    dm_staff *out;
} create_ctx;

static dm_err *count_owners(dm_db *db, apr_pool_t *p, int64_t *n)
{
    int found = 0;

    return dm_db_query_int64(db, p, "SELECT COUNT(*) FROM staff WHERE role = 'owner'", n, &found);
}

static dm_err *create_txn(dm_db *db, apr_pool_t *p, create_ctx *c)
{
    dm_stmt *st;
    int row = 0;
    int64_t now = dm_now(), owners = 0;
    json_t *after;
    dm_err *e;

    if (c->only_first_owner) {
        e = count_owners(db, p, &owners);
        if (e || owners > 0) {
            return e;
        }
    }
    e = dm_db_prepare(db, p,
                      "INSERT INTO staff (email, email_key, password_hash, role, status, "
                      "created_at, updated_at) VALUES (?, ?, ?, ?, 'active', ?, ?) "
                      "RETURNING " STAFF_COLUMNS,
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, c->email);
    dm_stmt_bind_str(st, 2, c->key);
    dm_stmt_bind_str(st, 3, c->hash);
    dm_stmt_bind_str(st, 4, c->role);
    dm_stmt_bind_int64(st, 5, now);
    dm_stmt_bind_int64(st, 6, now);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        read_staff(st, p, 0, c->out);
    }
    dm_stmt_done(st);
    if (e) {
        return e->code == DM_E_CONFLICT
                   ? dm_err_make(p, DM_E_CONFLICT, "email",
                                 "a staff account with this e-mail address exists")
                   : e;
    }
    if (!row) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "the staff account was not created");
    }
    after = dm_json_own(p, json_pack("{s:s,s:s,s:s}", "email", c->out->email, "role", c->out->role,
                                     "status", c->out->status));
    e = dm_audit_write(db, p, c->actor, "staff.create", "staff", id_text(p, c->out->id), NULL,
                       after, c->ip);
    if (!e) {
        c->created = 1;
    }
    return e;
}

static dm_err *create(dm_db *db, apr_pool_t *p, const dm_services *s, create_ctx *c,
                      const char *email, const char **password)
{
    const char *pw;
    dm_err *e = dm_validate_email(p, "email", email, &c->email, &c->key);

    if (e) {
        return e;
    }
    if (!dm_staff_role_bit(c->role)) {
        return dm_err_make(p, DM_E_INVALID, "role",
                           "the role must be one of owner, finance, support, kyc");
    }
    pw = new_password(p);
    e = dm_pw_hash(p, s->pw_limiter, &s->pw_params, pw, &c->hash);
    if (!e) {
        e = dm_db_begin(db, p);
    }
    if (e) {
        return e;
    }
    e = create_txn(db, p, c);
    if (e || !c->created) {
        dm_db_rollback(db);
        return e;
    }
    e = dm_db_commit(db, p);
    if (!e) {
        *password = pw;
    }
    return e;
}

dm_err *dm_staff_create(dm_db *db, apr_pool_t *p, const dm_services *s, int64_t actor,
                        const char *ip, const char *email, const char *role, dm_staff *out,
                        const char **password)
{
    create_ctx c;

    memset(&c, 0, sizeof(c));
    c.role = role;
    c.actor = actor;
    c.ip = ip;
    c.out = out;
    return create(db, p, s, &c, email, password);
}

dm_err *dm_staff_ensure_owner(dm_db *db, apr_pool_t *p, const dm_services *s, const char *email,
                              int *created, dm_staff *out, const char **password)
{
    create_ctx c;
    int64_t owners = 0;
    dm_err *e;

    *created = 0;
    /* A cheap look first, so the usual case (an owner exists) costs no
     * hashing; the transaction looks again before it writes. */
    e = count_owners(db, p, &owners);
    if (e || owners > 0) {
        return e;
    }
    memset(&c, 0, sizeof(c));
    c.role = "owner";
    c.only_first_owner = 1;
    c.out = out;
    e = create(db, p, s, &c, email, password);
    *created = !e && c.created;
    return e;
}

/* ---- sessions ---- */

typedef struct login_ctx {
    const dm_services *s;
    const dm_staff *st;
    const char *new_hash; /* a rehash of the password, or NULL */
    const char *token_hash;
    const char *ip;
    int64_t expires;
    int require_2fa;       /* DeepMineStaff2FA required */
    int allow_challenge;   /* 0: dm_staff_login, which cannot answer one */
    int enrol_only;        /* out: the session may only enrol */
    const char *challenge; /* out: 2FA is on, no session */
} login_ctx;

/* The session row (enrol_only or full) and its audit row. */
static dm_err *open_session(dm_db *db, apr_pool_t *p, const login_ctx *c, int two_factor)
{
    dm_stmt *st;
    int row = 0;
    json_t *after;
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO staff_sessions (staff_id, token_hash, ip, created_at, "
                              "expires_at, enrol_only) VALUES (?, ?, ?, ?, ?, ?)",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, c->st->id);
    dm_stmt_bind_str(st, 2, c->token_hash);
    dm_stmt_bind_str(st, 3, c->ip);
    dm_stmt_bind_int64(st, 4, dm_now());
    dm_stmt_bind_int64(st, 5, c->expires);
    dm_stmt_bind_int64(st, 6, c->enrol_only);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    after = dm_json_own(
        p, json_pack("{s:b,s:b}", "two_factor", two_factor, "enrol_only", c->enrol_only));
    return dm_audit_write(db, p, c->st->id, "staff.login", "staff", id_text(p, c->st->id), NULL,
                          after, c->ip);
}

int dm_staff_role_needs_2fa(const char *role)
{
    return role && (strcmp(role, "owner") == 0 || strcmp(role, "finance") == 0);
}

static dm_err *login_txn(dm_db *db, apr_pool_t *p, login_ctx *c)
{
    dm_stmt *st;
    int row = 0;
    int64_t now = dm_now();
    dm_2fa_state tf = {0};
    dm_err *e;

    if (c->new_hash) {
        e = dm_db_prepare(db, p, "UPDATE staff SET password_hash = ?, updated_at = ? WHERE id = ?",
                          &st);
        if (e) {
            return e;
        }
        dm_stmt_bind_str(st, 1, c->new_hash);
        dm_stmt_bind_int64(st, 2, now);
        dm_stmt_bind_int64(st, 3, c->st->id);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
        if (e) {
            return e;
        }
    }
    /* House-keeping: this account's ended sessions go at its next login. */
    e = dm_db_prepare(db, p, "DELETE FROM staff_sessions WHERE staff_id = ? AND expires_at <= ?",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, c->st->id);
    dm_stmt_bind_int64(st, 2, now);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e) {
        e = dm_2fa_state_get(db, p, DM_2FA_STAFF, c->st->id, &tf);
    }
    if (e) {
        return e;
    }
    if (tf.enabled) {
        if (!c->allow_challenge) {
            return dm_err_make(p, DM_E_TWO_FACTOR_REQUIRED, NULL,
                               "this staff account signs in with a two-factor code");
        }
        return dm_2fa_challenge_new(db, p, c->s->keys, DM_2FA_STAFF, c->st->id, c->ip,
                                    &c->challenge);
    }
    c->enrol_only = c->require_2fa && dm_staff_role_needs_2fa(c->st->role);
    return open_session(db, p, c, 0);
}

static dm_err *staff_login(dm_db *db, apr_pool_t *p, const dm_services *s, const char *email,
                           const char *password, const char *ip, login_ctx *c, dm_staff *out,
                           dm_staff_session *sess);

dm_err *dm_staff_login(dm_db *db, apr_pool_t *p, const dm_services *s, const char *email,
                       const char *password, const char *ip, dm_staff *out, dm_staff_session *sess)
{
    login_ctx c;

    memset(&c, 0, sizeof(c));
    return staff_login(db, p, s, email, password, ip, &c, out, sess);
}

dm_err *dm_staff_login_begin(dm_db *db, apr_pool_t *p, const dm_services *s, const char *email,
                             const char *password, const char *ip, int require_2fa, dm_staff *out,
                             dm_staff_session *sess, const char **challenge, int *enrol_only)
{
    login_ctx c;
    dm_err *e;

    memset(&c, 0, sizeof(c));
    c.require_2fa = require_2fa;
    c.allow_challenge = 1;
    sess->token = NULL;
    e = staff_login(db, p, s, email, password, ip, &c, out, sess);
    *challenge = e ? NULL : c.challenge;
    *enrol_only = e ? 0 : c.enrol_only;
    out->enrol_only = *enrol_only;
    return e;
}

static dm_err *staff_login(dm_db *db, apr_pool_t *p, const dm_services *s, const char *email,
                           const char *password, const char *ip, login_ctx *c, dm_staff *out,
                           dm_staff_session *sess)
{
    const char *norm, *key, *stored = NULL, *token;
    dm_stmt *st;
    int row = 0, ok = 0, rehash = 0;
    dm_err *e = dm_validate_email(p, "email", email, &norm, &key);

    if (e) {
        return e;
    }
    if (!s->keys) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "staff sessions need the secret key");
    }
    if (!password || strlen(password) > MAX_PASSWORD_BYTES) {
        return unauthorized(p);
    }
    e = dm_db_prepare(
        db, p, "SELECT " STAFF_COLUMNS ", password_hash FROM staff WHERE email_key = ?", &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, key);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        read_staff(st, p, 0, out);
        stored = apr_pstrdup(p, dm_stmt_text(st, 5, NULL));
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    if (!row) {
        /* The same work as a real check: timing tells nothing. A busy
         * server answers 503 here exactly as it would for a known one. */
        e = dm_pw_verify_dummy(p, s->pw_limiter, &s->pw_params, password);
        return e ? e : unauthorized(p);
    }
    e = dm_pw_verify(p, s->pw_limiter, &s->pw_params, stored, password, &ok, &rehash);
    if (e) {
        return e;
    }
    if (!ok) {
        return unauthorized(p);
    }
    if (strcmp(out->status, "active") != 0) {
        return dm_err_make(p, DM_E_FORBIDDEN, NULL, "this staff account is disabled");
    }
    c->s = s;
    c->st = out;
    c->ip = ip ? ip : DM_AUDIT_CONSOLE_IP;
    if (rehash) {
        e = dm_pw_hash(p, s->pw_limiter, &s->pw_params, password, &c->new_hash);
        if (e) {
            return e;
        }
    }
    token = dm_token_new(p);
    c->token_hash = dm_token_hash(p, s->keys->token_hash, token);
    c->expires = dm_now() + DM_STAFF_SESSION_TTL;
    e = dm_db_begin(db, p);
    if (e) {
        return e;
    }
    e = login_txn(db, p, c);
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    e = dm_db_commit(db, p);
    if (!e && !c->challenge) {
        sess->token = token;
        sess->expires = c->expires;
    }
    return e;
}

dm_err *dm_staff_authenticate(dm_db *db, apr_pool_t *p, const dm_services *s, const char *token,
                              dm_staff *out)
{
    dm_stmt *st;
    int row = 0, revoked = 0;
    int64_t expires = 0;
    dm_err *e;

    if (!token || !*token || strlen(token) > MAX_TOKEN_BYTES || !s->keys) {
        return dm_err_make(p, DM_E_UNAUTHORIZED, NULL, "log in as staff first");
    }
    e = dm_db_prepare(db, p,
                      "SELECT st.id, st.email, st.role, st.status, st.created_at, ss.expires_at, "
                      "ss.revoked_at IS NOT NULL, ss.enrol_only FROM staff_sessions ss "
                      "JOIN staff st ON st.id = ss.staff_id WHERE ss.token_hash = ?",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, dm_token_hash(p, s->keys->token_hash, token));
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        read_staff(st, p, 0, out);
        expires = dm_stmt_int64(st, 5);
        revoked = (int)dm_stmt_int64(st, 6);
        out->enrol_only = (int)dm_stmt_int64(st, 7);
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    if (!row || revoked || expires <= dm_now()) {
        return dm_err_make(p, DM_E_UNAUTHORIZED, NULL,
                           "the staff session has ended or is not valid; log in again");
    }
    if (strcmp(out->status, "active") != 0) {
        return dm_err_make(p, DM_E_FORBIDDEN, NULL, "this staff account is disabled");
    }
    return NULL;
}

static dm_err *logout_txn(dm_db *db, apr_pool_t *p, const char *hash, const char *ip)
{
    dm_stmt *st;
    int row = 0;
    int64_t id = 0, staff_id = 0, now = dm_now();
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT id, staff_id FROM staff_sessions WHERE token_hash = ? AND "
                              "revoked_at IS NULL AND expires_at > ?",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, hash);
    dm_stmt_bind_int64(st, 2, now);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        id = dm_stmt_int64(st, 0);
        staff_id = dm_stmt_int64(st, 1);
    }
    dm_stmt_done(st);
    if (e || !row) {
        return e;
    }
    e = dm_db_prepare(db, p, "UPDATE staff_sessions SET revoked_at = ? WHERE id = ?", &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, now);
    dm_stmt_bind_int64(st, 2, id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    return dm_audit_write(db, p, staff_id, "staff.logout", "staff", id_text(p, staff_id), NULL,
                          NULL, ip);
}

dm_err *dm_staff_logout(dm_db *db, apr_pool_t *p, const dm_services *s, const char *token,
                        const char *ip)
{
    dm_err *e;

    if (!token || !*token || strlen(token) > MAX_TOKEN_BYTES || !s->keys) {
        return NULL;
    }
    e = dm_db_begin(db, p);
    if (e) {
        return e;
    }
    e = logout_txn(db, p, dm_token_hash(p, s->keys->token_hash, token),
                   ip ? ip : DM_AUDIT_CONSOLE_IP);
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

dm_err *dm_staff_list(dm_db *db, apr_pool_t *p, apr_array_header_t **rows)
{
    dm_stmt *st;
    int row = 0;
    apr_array_header_t *list = apr_array_make(p, 8, sizeof(dm_staff));
    dm_err *e = dm_db_prepare(db, p, "SELECT " STAFF_COLUMNS " FROM staff ORDER BY id", &st);

    if (e) {
        return e;
    }
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        read_staff(st, p, 0, apr_array_push(list));
    }
    dm_stmt_done(st);
    if (!e) {
        *rows = list;
    }
    return e;
}

/* ---- two-factor sign-in ---- */

dm_err *dm_staff_login_2fa(dm_db *db, apr_pool_t *p, const dm_services *s, const char *challenge,
                           const char *code, const char *ip, dm_staff *out, dm_staff_session *sess)
{
    login_ctx c;
    dm_stmt *st;
    int row = 0;
    int64_t owner = 0;
    const char *token = dm_token_new(p);
    dm_err *e;

    if (!s->keys) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "staff sessions need the secret key");
    }
    memset(&c, 0, sizeof(c));
    c.s = s;
    c.st = out;
    c.ip = ip ? ip : DM_AUDIT_CONSOLE_IP;
    c.token_hash = dm_token_hash(p, s->keys->token_hash, token);
    c.expires = dm_now() + DM_STAFF_SESSION_TTL;
    e = dm_db_begin(db, p);
    if (e) {
        return e;
    }
    e = dm_2fa_challenge_take(db, p, s->keys, DM_2FA_STAFF, challenge, code, &owner);
    if (!e) {
        e = dm_db_prepare(db, p, "SELECT " STAFF_COLUMNS " FROM staff WHERE id = ?", &st);
    }
    if (!e) {
        dm_stmt_bind_int64(st, 1, owner);
        e = dm_stmt_step(st, p, &row);
        if (!e && row) {
            read_staff(st, p, 0, out);
        }
        dm_stmt_done(st);
        if (!e && !row) {
            e = dm_err_make(p, DM_E_UNAUTHORIZED, NULL, "log in again");
        }
    }
    if (!e && strcmp(out->status, "active") != 0) {
        e = dm_err_make(p, DM_E_FORBIDDEN, NULL, "this staff account is disabled");
    }
    if (!e) {
        e = open_session(db, p, &c, 1);
    }
    if (e) {
        dm_db_rollback(db);
        if (e->code == DM_E_INVALID_CODE) {
            dm_err *f = dm_2fa_challenge_failed(db, p, s->keys, DM_2FA_STAFF, challenge);
            return f ? f : e;
        }
        return e;
    }
    e = dm_db_commit(db, p);
    if (!e) {
        sess->token = token;
        sess->expires = c.expires;
    }
    return e;
}

dm_err *dm_staff_2fa_setup(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_staff *st,
                           const char **secret, const char **uri)
{
    return dm_2fa_setup(db, p, s->keys, DM_2FA_STAFF, st->id, st->email, secret, uri);
}

dm_err *dm_staff_2fa_enable(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_staff *st,
                            const char *code, const char *ip, apr_array_header_t **codes)
{
    dm_stmt *stmt;
    int row = 0;
    dm_err *e = dm_db_begin(db, p);

    if (e) {
        return e;
    }
    e = dm_2fa_enable(db, p, s->keys, DM_2FA_STAFF, st->id, code, codes);
    /* The account is enrolled: its restricted sessions become full ones. */
    if (!e) {
        e = dm_db_prepare(db, p, "UPDATE staff_sessions SET enrol_only = 0 WHERE staff_id = ?",
                          &stmt);
    }
    if (!e) {
        dm_stmt_bind_int64(stmt, 1, st->id);
        e = dm_stmt_step(stmt, p, &row);
        dm_stmt_done(stmt);
    }
    if (!e) {
        e = dm_audit_write(db, p, st->id, "staff.2fa.enable", "staff", id_text(p, st->id), NULL,
                           NULL, ip ? ip : DM_AUDIT_CONSOLE_IP);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

dm_err *dm_staff_2fa_disable(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_staff *st,
                             const char *code, const char *ip, int require_2fa)
{
    dm_err *e;

    if (require_2fa && dm_staff_role_needs_2fa(st->role)) {
        return dm_err_make(p, DM_E_CONFLICT, NULL,
                           "the %s role must keep two-factor sign-in on (DeepMineStaff2FA "
                           "required)",
                           st->role);
    }
    e = dm_db_begin(db, p);
    if (e) {
        return e;
    }
    e = dm_2fa_verify(db, p, s->keys, DM_2FA_STAFF, st->id, code, 1, NULL);
    if (!e) {
        e = dm_2fa_remove(db, p, DM_2FA_STAFF, st->id);
    }
    if (!e) {
        e = dm_audit_write(db, p, st->id, "staff.2fa.disable", "staff", id_text(p, st->id), NULL,
                           NULL, ip ? ip : DM_AUDIT_CONSOLE_IP);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

dm_err *dm_2fa_console_reset(dm_db *db, apr_pool_t *p, const char *subject, int64_t owner)
{
    dm_2fa_state tf = {0};
    int member = strcmp(subject, DM_2FA_MEMBER) == 0;
    dm_member m = {0};
    json_t *vars;
    dm_err *e = dm_db_begin(db, p);

    if (e) {
        return e;
    }
    e = dm_2fa_state_get(db, p, subject, owner, &tf);
    if (!e && !tf.enabled && !tf.pending) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "%s %" APR_INT64_T_FMT " has no 2FA enrolment",
                        subject, (apr_int64_t)owner);
    }
    if (!e) {
        e = dm_2fa_remove(db, p, subject, owner);
    }
    if (!e && member) {
        e = dm_member_get(db, p, owner, &m);
        if (!e) {
            vars = dm_json_own(p, json_pack("{s:s}", "email", m.email));
            e = dm_mail_enqueue(
                db, p, m.email, "twofa_disabled", vars,
                apr_psprintf(p, "twofa_disabled:%" APR_INT64_T_FMT ":%" APR_INT64_T_FMT ":console",
                             (apr_int64_t)owner, (apr_int64_t)dm_now()));
        }
        if (!e) {
            e = dm_member_lock_withdrawals(db, p, &m, "two-factor sign-in was reset by support",
                                           "2fa-reset");
        }
    }
    if (!e) {
        e = dm_audit_write(db, p, 0, "twofa.reset", member ? "user" : "staff", id_text(p, owner),
                           NULL, NULL, DM_AUDIT_CONSOLE_IP);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}
