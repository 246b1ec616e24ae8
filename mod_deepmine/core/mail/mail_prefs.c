/*
 * mail_prefs.c — see mail_prefs.h.
 */
#include "mail/mail_prefs.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <sodium.h>
#include <string.h>
#include <strings.h>

#include "store/audit.h"
#include "base/clock.h"
#include "base/json.h"

#define CATEGORY_MAX 32
#define UNSUB_CONTEXT "deepmine-unsubscribe-v1"

static int category_ok(const char *s, size_t n)
{
    if (n == 0 || n > CATEGORY_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            return 0;
        }
    }
    return 1;
}

/* ---- preferences ---- */

/* The marketing categories that exist (from the template definitions),
 * const char *, sorted. */
static dm_err *dm_mail_categories(dm_db *db, apr_pool_t *p, apr_array_header_t **out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT DISTINCT category FROM email_template_defs WHERE category "
                              "IS NOT NULL ORDER BY category",
                              &st);

    *out = apr_array_make(p, 4, sizeof(const char *));
    if (e) {
        return e;
    }
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        APR_ARRAY_PUSH(*out, const char *) = dm_stmt_dup_text(st, p, 0);
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_mail_subscribed(dm_db *db, apr_pool_t *p, int64_t user_id, const char *category,
                           int *yes)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT subscribed FROM email_preferences WHERE user_id = ? AND "
                              "category = ?",
                              &st);

    *yes = 1;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_str(st, 2, category);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        *yes = dm_stmt_int64(st, 0) != 0;
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_mail_prefs_get(dm_db *db, apr_pool_t *p, int64_t user_id, json_t **out)
{
    apr_array_header_t *cats;
    dm_err *e = dm_mail_categories(db, p, &cats);
    json_t *o = dm_json_own(p, json_object());

    for (int i = 0; !e && i < cats->nelts; i++) {
        const char *c = APR_ARRAY_IDX(cats, i, const char *);
        int yes = 1;
        e = dm_mail_subscribed(db, p, user_id, c, &yes);
        json_object_set_new(o, c, json_boolean(yes));
    }
    *out = e ? NULL : json_incref(o);
    return e;
}

/* In the open transaction. */
static dm_err *set_one(dm_db *db, apr_pool_t *p, int64_t user_id, const char *category,
                       int subscribed, const char *source)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO email_preferences (user_id, category, subscribed, "
                              "source, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, "
                              "category) DO UPDATE SET subscribed = excluded.subscribed, source = "
                              "excluded.source, updated_at = excluded.updated_at WHERE "
                              "email_preferences.subscribed <> excluded.subscribed",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_str(st, 2, category);
    dm_stmt_bind_int64(st, 3, subscribed ? 1 : 0);
    dm_stmt_bind_str(st, 4, source);
    dm_stmt_bind_int64(st, 5, dm_now());
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

dm_err *dm_mail_prefs_set(dm_db *db, apr_pool_t *p, int64_t user_id, const json_t *changes,
                          json_t **out)
{
    apr_array_header_t *cats;
    const char *k;
    json_t *v;
    dm_err *e = dm_mail_categories(db, p, &cats);

    if (e) {
        return e;
    }
    if (!json_is_object(changes)) {
        return dm_err_make(p, DM_E_BAD_JSON, NULL, "the body must be a JSON object");
    }
    /* every key checked before anything is written */
    json_object_foreach((json_t *)changes, k, v)
    {
        int known = 0;
        for (int i = 0; i < cats->nelts && !known; i++) {
            known = strcmp(APR_ARRAY_IDX(cats, i, const char *), k) == 0;
        }
        if (!known) {
            return dm_err_make(p, DM_E_INVALID, apr_pstrdup(p, k),
                               "there is no e-mail category named %s", k);
        }
        if (!json_is_boolean(v)) {
            return dm_err_make(p, DM_E_INVALID, apr_pstrdup(p, k), "%s must be true or false", k);
        }
    }
    e = dm_db_begin(db, p);
    if (e) {
        return e;
    }
    json_object_foreach((json_t *)changes, k, v)
    {
        e = set_one(db, p, user_id, k, json_is_true(v), "member");
        if (e) {
            break;
        }
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_mail_prefs_get(db, p, user_id, out);
}

/* ---- unsubscribe links ---- */

static void unsub_mac(const unsigned char key[DM_KEY_BYTES], const unsigned char *raw, size_t n,
                      unsigned char mac[crypto_auth_hmacsha256_BYTES])
{
    crypto_auth_hmacsha256_state s;

    crypto_auth_hmacsha256_init(&s, key, DM_KEY_BYTES);
    crypto_auth_hmacsha256_update(&s, (const unsigned char *)UNSUB_CONTEXT,
                                  sizeof(UNSUB_CONTEXT)); /* with its NUL: a separator */
    crypto_auth_hmacsha256_update(&s, raw, n);
    crypto_auth_hmacsha256_final(&s, mac);
    sodium_memzero(&s, sizeof(s));
}

const char *dm_unsub_token(apr_pool_t *p, const unsigned char key[DM_KEY_BYTES], int64_t user_id,
                           const char *category)
{
    size_t clen = strlen(category);
    unsigned char buf[8 + CATEGORY_MAX + crypto_auth_hmacsha256_BYTES];
    uint64_t u = (uint64_t)user_id;

    if (clen > CATEGORY_MAX) {
        clen = CATEGORY_MAX; /* never: categories are checked on the way in */
    }
    for (int i = 0; i < 8; i++) {
        buf[i] = (unsigned char)(u >> (56 - 8 * i));
    }
    for (size_t i = 0; i < clen; i++) {
        buf[8 + i] = (unsigned char)category[i]; /* bytes, not a C string */
    }
    unsub_mac(key, buf, 8 + clen, buf + 8 + clen);
    return dm_b64url(p, buf, 8 + clen + crypto_auth_hmacsha256_BYTES);
}

dm_err *dm_unsub_verify(apr_pool_t *p, const unsigned char key[DM_KEY_BYTES], const char *token,
                        int64_t *user_id, const char **category)
{
    unsigned char buf[8 + CATEGORY_MAX + crypto_auth_hmacsha256_BYTES + 4];
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    size_t n = 0, clen;
    uint64_t u = 0;
    dm_err *bad = dm_err_make(p, DM_E_INVALID, "token",
                              "this unsubscribe link is not valid (it may be cut short)");

    if (!token || strlen(token) > 2 * sizeof(buf) ||
        sodium_base642bin(buf, sizeof(buf), token, strlen(token), NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        n < 8 + 1 + crypto_auth_hmacsha256_BYTES ||
        n > 8 + CATEGORY_MAX + crypto_auth_hmacsha256_BYTES) {
        return bad;
    }
    clen = n - 8 - crypto_auth_hmacsha256_BYTES;
    unsub_mac(key, buf, 8 + clen, mac);
    if (crypto_verify_32(mac, buf + 8 + clen) != 0 || !category_ok((const char *)buf + 8, clen)) {
        return bad;
    }
    for (int i = 0; i < 8; i++) {
        u = (u << 8) | buf[i];
    }
    if (u == 0 || u > (uint64_t)INT64_MAX) {
        return bad;
    }
    *user_id = (int64_t)u;
    *category = apr_pstrmemdup(p, (const char *)buf + 8, clen);
    return NULL;
}

dm_err *dm_unsub_apply(dm_db *db, apr_pool_t *p, int64_t user_id, const char *category)
{
    int64_t exists = 0;
    int found = 0;
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_begin(db, p);

    if (e) {
        return e;
    }
    e = dm_db_prepare(db, p, "SELECT COUNT(*) FROM users WHERE id = ?", &st);
    if (!e) {
        dm_stmt_bind_int64(st, 1, user_id);
        e = dm_stmt_step(st, p, &row);
        if (!e && row) {
            exists = dm_stmt_int64(st, 0);
            found = 1;
        }
        dm_stmt_done(st);
    }
    if (!e && found && exists) {
        e = set_one(db, p, user_id, category, 0, "unsubscribe_link");
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
    }
    return e;
}

/* ---- suppressions ---- */

const char *dm_mail_address_key(apr_pool_t *p, const char *email)
{
    size_t a = 0, n = strlen(email);
    char *k;

    while (a < n && apr_isspace(email[a])) {
        a++;
    }
    while (n > a && apr_isspace(email[n - 1])) {
        n--;
    }
    k = apr_pstrmemdup(p, email + a, n - a);
    for (char *c = k; *c; c++) {
        *c = (char)apr_tolower(*c);
    }
    return k;
}

#define SUPP_COLS "id, email, reason, source, event_id, created_at"

static void read_supp(dm_stmt *st, apr_pool_t *p, dm_suppression *s)
{
    s->id = dm_stmt_int64(st, 0);
    s->email = dm_stmt_dup_text(st, p, 1);
    s->reason = dm_stmt_dup_text(st, p, 2);
    s->source = dm_stmt_dup_text(st, p, 3);
    s->event_id = dm_stmt_dup_text(st, p, 4);
    s->created_at = dm_stmt_int64(st, 5);
}

dm_err *dm_suppression_get(dm_db *db, apr_pool_t *p, const char *email, dm_suppression *out,
                           int *found)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(
        db, p, "SELECT " SUPP_COLS " FROM email_suppressions WHERE email_key = ?", &st);

    *found = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, dm_mail_address_key(p, email));
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        read_supp(st, p, out);
        *found = 1;
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_suppression_add(dm_db *db, apr_pool_t *p, const char *email, const char *reason,
                           const char *source, const char *event_id, int *added)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO email_suppressions (email_key, email, reason, source, "
                              "event_id, created_at) VALUES (?, ?, ?, ?, ?, ?) "
                              "ON CONFLICT (email_key) DO NOTHING",
                              &st);

    *added = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, dm_mail_address_key(p, email));
    dm_stmt_bind_str(st, 2, email);
    dm_stmt_bind_str(st, 3, reason);
    if (source) {
        dm_stmt_bind_str(st, 4, source);
    } else {
        dm_stmt_bind_null(st, 4);
    }
    if (event_id) {
        dm_stmt_bind_str(st, 5, event_id);
    } else {
        dm_stmt_bind_null(st, 5);
    }
    dm_stmt_bind_int64(st, 6, dm_now());
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e) {
        *added = dm_db_changes(db) == 1;
    }
    return e;
}

dm_err *dm_suppression_list(dm_db *db, apr_pool_t *p, int64_t cursor, int limit,
                            apr_array_header_t **rows, int64_t *next_cursor)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT " SUPP_COLS " FROM email_suppressions WHERE id < ? "
                              "ORDER BY id DESC LIMIT ?",
                              &st);

    *rows = apr_array_make(p, limit > 0 ? limit : 1, sizeof(dm_suppression));
    *next_cursor = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, cursor > 0 ? cursor : INT64_MAX);
    dm_stmt_bind_int64(st, 2, (int64_t)limit + 1);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        if ((*rows)->nelts == limit) {
            *next_cursor = APR_ARRAY_IDX(*rows, limit - 1, dm_suppression).id;
            break;
        }
        read_supp(st, p, apr_array_push(*rows));
    }
    dm_stmt_done(st);
    return e;
}

json_t *dm_suppression_json(apr_pool_t *p, const dm_suppression *s)
{
    return json_pack("{s:s,s:s,s:o,s:o,s:s}", "email", s->email, "reason", s->reason, "source",
                     s->source ? json_string(s->source) : json_null(), "event_id",
                     s->event_id ? json_string(s->event_id) : json_null(), "created_at",
                     dm_json_time(p, s->created_at));
}

dm_err *dm_suppression_remove(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                              const char *email)
{
    dm_suppression s;
    dm_stmt *st;
    int found = 0, row = 0;
    dm_err *e = dm_db_begin(db, p);

    if (e) {
        return e;
    }
    e = dm_suppression_get(db, p, email, &s, &found);
    if (!e && !found) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "%s is not on the suppression list", email);
    }
    if (!e) {
        e = dm_db_prepare(db, p, "DELETE FROM email_suppressions WHERE id = ?", &st);
    }
    if (!e) {
        dm_stmt_bind_int64(st, 1, s.id);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    if (!e) {
        json_t *before = dm_json_own(p, dm_suppression_json(p, &s));
        e = dm_audit_write(db, p, staff_id, "email_suppression.remove", "email_suppression",
                           s.email, before, NULL, ip);
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
    }
    return e;
}
