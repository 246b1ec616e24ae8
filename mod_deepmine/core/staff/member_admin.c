/*
 * admin_users.c — see admin_users.h.
 *
 * Search: the FTS5 MATCH expression is built from the search box by
 * quoting every word (so no input is ever FTS5 syntax) and is bound as a
 * parameter like any other value. Pages are keyset on id, descending.
 *
 * Import: the whole file is parsed and checked before anything is written,
 * inside the one transaction that then writes it, so a bad row (or a
 * concurrent registration taking an address) leaves the database as it was.
 * Referrers are inserted before the members they refer (Kahn's algorithm
 * over the file's referrer links); a cycle in the file is a bad row.
 */
#include "staff/member_admin.h"

#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "store/audit.h"
#include "base/json.h"
#include "base/validate.h"
#include "referral/vip.h"

#define SEARCH_LIMIT_MAX 200

#define ROW_COLUMNS                                                                                \
    "u.id, u.email, u.name, u.referral_code, u.referrer_id, u.status, u.vip_level, "               \
    "u.kyc_status, u.created_at"

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* ---- search ---- */

const char *dm_admin_fts_query(apr_pool_t *p, const char *q)
{
    char *out, *w;
    int terms = 0;

    if (!q) {
        return NULL;
    }
    /* worst case: every byte a '"' (doubled), plus quotes, '*' and a space
     * per word */
    out = w = apr_palloc(p, strlen(q) * 5 + 1);
    while (*q) {
        while (is_space(*q)) {
            q++;
        }
        if (!*q) {
            break;
        }
        if (terms++) {
            *w++ = ' ';
        }
        *w++ = '"';
        for (; *q && !is_space(*q); q++) {
            if (*q == '"') {
                *w++ = '"';
            }
            *w++ = *q;
        }
        *w++ = '"';
        *w++ = '*';
    }
    *w = '\0';
    return terms ? out : NULL;
}

static int count_terms(const char *q)
{
    int n = 0, in_word = 0;

    for (; q && *q; q++) {
        if (is_space(*q)) {
            in_word = 0;
        } else if (!in_word) {
            in_word = 1;
            n++;
        }
    }
    return n;
}

static void read_row(dm_stmt *st, apr_pool_t *p, dm_admin_user_row *u)
{
    u->id = dm_stmt_int64(st, 0);
    u->email = apr_pstrdup(p, dm_stmt_text(st, 1, NULL));
    u->name = dm_stmt_dup_text(st, p, 2);
    u->referral_code = apr_pstrdup(p, dm_stmt_text(st, 3, NULL));
    u->referrer_id = dm_stmt_is_null(st, 4) ? 0 : dm_stmt_int64(st, 4);
    u->status = apr_pstrdup(p, dm_stmt_text(st, 5, NULL));
    u->vip_level = (int)dm_stmt_int64(st, 6);
    u->kyc_status = apr_pstrdup(p, dm_stmt_text(st, 7, NULL));
    u->created_at = dm_stmt_int64(st, 8);
}

static dm_err *check_status(apr_pool_t *p, const char *status)
{
    if (status && strcmp(status, "active") != 0 && strcmp(status, "suspended") != 0) {
        return dm_err_make(p, DM_E_INVALID, "status", "status must be \"active\" or \"suspended\"");
    }
    return NULL;
}

dm_err *dm_admin_users_search(dm_db *db, apr_pool_t *p, const char *q, const char *status,
                              int64_t cursor, int limit, apr_array_header_t **rows,
                              int64_t *next_cursor)
{
    const char *match = NULL, *sql;
    dm_stmt *st;
    int row = 0, i = 1;
    apr_array_header_t *list;
    dm_err *e;

    *next_cursor = 0;
    if (limit < 1 || limit > SEARCH_LIMIT_MAX) {
        return dm_err_make(p, DM_E_INVALID, "limit", "limit must be from 1 to %d",
                           SEARCH_LIMIT_MAX);
    }
    if ((e = check_status(p, status))) {
        return e;
    }
    if (q) {
        e = dm_validate_text(p, "q", q, DM_ADMIN_Q_MAX_CHARS, 0);
        if (e) {
            return e;
        }
        if (count_terms(q) > DM_ADMIN_Q_MAX_TERMS) {
            return dm_err_make(p, DM_E_INVALID, "q", "search for at most %d words",
                               DM_ADMIN_Q_MAX_TERMS);
        }
        match = dm_admin_fts_query(p, q);
    }
    /* One text per shape, so each can use its index: the FTS index with
     * rowid order, users_status (status, id), or the rowid itself. */
    if (match && status) {
        sql = "SELECT " ROW_COLUMNS " FROM users_fts JOIN users u ON u.id = users_fts.rowid "
              "WHERE users_fts MATCH ? AND users_fts.rowid < ? AND u.status = ? "
              "ORDER BY users_fts.rowid DESC LIMIT ?";
    } else if (match) {
        sql = "SELECT " ROW_COLUMNS " FROM users_fts JOIN users u ON u.id = users_fts.rowid "
              "WHERE users_fts MATCH ? AND users_fts.rowid < ? "
              "ORDER BY users_fts.rowid DESC LIMIT ?";
    } else if (status) {
        sql = "SELECT " ROW_COLUMNS " FROM users u WHERE u.id < ? AND u.status = ? "
              "ORDER BY u.id DESC LIMIT ?";
    } else {
        sql = "SELECT " ROW_COLUMNS " FROM users u WHERE u.id < ? ORDER BY u.id DESC LIMIT ?";
    }
    e = dm_db_prepare(db, p, sql, &st);
    if (e) {
        return e;
    }
    if (match) {
        dm_stmt_bind_str(st, i++, match);
    }
    dm_stmt_bind_int64(st, i++, cursor > 0 ? cursor : INT64_MAX);
    if (status) {
        dm_stmt_bind_str(st, i++, status);
    }
    /* one more than asked: whether there is a next page */
    dm_stmt_bind_int64(st, i, (int64_t)limit + 1);
    list = apr_array_make(p, limit, sizeof(dm_admin_user_row));
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        if (list->nelts == limit) {
            *next_cursor = APR_ARRAY_IDX(list, list->nelts - 1, dm_admin_user_row).id;
            break;
        }
        read_row(st, p, apr_array_push(list));
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    *rows = list;
    return NULL;
}

json_t *dm_admin_user_row_json(apr_pool_t *p, const dm_admin_user_row *u)
{
    json_t *o = json_object();

    json_object_set_new(o, "id", json_integer(u->id));
    json_object_set_new(o, "email", json_string(u->email));
    json_object_set_new(o, "name", u->name ? json_string(u->name) : json_null());
    json_object_set_new(o, "referral_code", json_string(u->referral_code));
    json_object_set_new(o, "referrer_id",
                        u->referrer_id ? json_integer(u->referrer_id) : json_null());
    json_object_set_new(o, "status", json_string(u->status));
    json_object_set_new(o, "vip_level", json_integer(u->vip_level));
    json_object_set_new(o, "kyc_status", json_string(u->kyc_status));
    json_object_set_new(o, "created_at", json_string(dm_json_time(p, u->created_at)));
    return o;
}

/* ---- detail ---- */

dm_err *dm_admin_user_get(dm_db *db, apr_pool_t *p, int64_t id, dm_admin_user_detail *out)
{
    int64_t ids[DM_REFERRAL_LEVELS];
    dm_err *e;

    memset(out, 0, sizeof(*out));
    e = dm_member_get(db, p, id, &out->member);
    if (!e) {
        e = dm_referral_upline(db, p, id, ids, &out->upline_n);
    }
    if (!e) {
        e = dm_referral_network(db, p, id, &out->network);
    }
    for (int i = 0; !e && i < out->upline_n; i++) {
        dm_stmt *st;
        int row = 0;
        out->upline[i].id = ids[i];
        e = dm_db_prepare(db, p, "SELECT email FROM users WHERE id = ?", &st);
        if (e) {
            break;
        }
        dm_stmt_bind_int64(st, 1, ids[i]);
        e = dm_stmt_step(st, p, &row);
        out->upline[i].email = (!e && row) ? apr_pstrdup(p, dm_stmt_text(st, 0, NULL)) : NULL;
        dm_stmt_done(st);
    }
    return e;
}

json_t *dm_admin_user_detail_json(apr_pool_t *p, const dm_services *s,
                                  const dm_admin_user_detail *d)
{
    json_t *user = dm_member_json(p, s, &d->member);
    json_t *upline = json_array(), *levels = json_array();

    json_object_set_new(user, "referrer_id",
                        d->member.referrer_id ? json_integer(d->member.referrer_id) : json_null());
    for (int i = 0; i < d->upline_n; i++) {
        json_array_append_new(upline,
                              json_pack("{s:i,s:I,s:s?}", "level", i + 1, "id",
                                        (json_int_t)d->upline[i].id, "email", d->upline[i].email));
    }
    for (int i = 0; i < DM_REFERRAL_LEVELS; i++) {
        json_array_append_new(levels, json_integer(d->network.levels[i]));
    }
    return json_pack("{s:o,s:o,s:{s:I,s:I,s:o}}", "user", user, "upline", upline, "network",
                     "direct", (json_int_t)d->network.levels[0], "total",
                     (json_int_t)d->network.total, "levels", levels);
}

/* ---- suspension ---- */

static dm_err *set_status_txn(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                              int64_t user_id, const char *status, dm_member *out)
{
    dm_member before;
    json_t *b, *a;
    int suspend = strcmp(status, "suspended") == 0;
    dm_err *e = dm_member_get(db, p, user_id, &before);

    if (e) {
        return e;
    }
    if (strcmp(before.status, status) == 0) {
        *out = before;
        return NULL;
    }
    e = dm_member_set_suspended(db, p, user_id, suspend);
    if (e) {
        return e;
    }
    b = dm_json_own(p, json_pack("{s:s}", "status", before.status));
    a = dm_json_own(p, json_pack("{s:s}", "status", status));
    e = dm_audit_write(db, p, staff_id, suspend ? "user.suspend" : "user.unsuspend", "user",
                       apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)user_id), b, a, ip);
    return e ? e : dm_member_get(db, p, user_id, out);
}

dm_err *dm_admin_user_set_status(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                                 int64_t user_id, const char *status, dm_member *out)
{
    dm_err *e;

    if (!status) {
        return dm_err_make(p, DM_E_INVALID, "status", "status must be \"active\" or \"suspended\"");
    }
    if ((e = check_status(p, status))) {
        return e;
    }
    e = dm_db_begin(db, p);
    if (e) {
        return e;
    }
    e = set_status_txn(db, p, staff_id, ip, user_id, status, out);
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

/* ---- import ---- */

#define IMPORT_FIELDS 5
#define BCRYPT_LEN 60

static const char *const import_header[IMPORT_FIELDS] = {"email", "bcrypt_hash", "referral_code",
                                                         "referrer_code", "created_at"};

typedef struct imp_row {
    int64_t line;
    int nfields;
    const char *field[IMPORT_FIELDS];
    const char *email, *key, *hash, *code, *ref_code;
    int64_t created_at;
    int referrer_row;              /* index of the referrer's row in the file, -1: none there */
    int64_t referrer_db_id;        /* the referrer already in the database, 0: none */
    int64_t id;                    /* once inserted */
    const char *err;               /* why this row is bad, or NULL */
    int first_child, next_sibling; /* the file's referral links, -1 terminated */
} imp_row;

typedef struct csv_reader {
    const char *s, *end;
    int64_t line;
} csv_reader;

/* One record into fields[] (at most IMPORT_FIELDS kept, *n counts all).
 * Returns 1 for a record, 0 at the end, -1 for malformed quoting (*err). */
static int csv_record(apr_pool_t *p, csv_reader *r, const char **fields, int *n, int64_t *line,
                      const char **err)
{
    apr_array_header_t *buf = apr_array_make(p, 64, 1);

    /* skip blank lines */
    while (r->s < r->end && (*r->s == '\n' || *r->s == '\r')) {
        if (*r->s == '\n') {
            r->line++;
        }
        r->s++;
    }
    if (r->s >= r->end) {
        return 0;
    }
    *line = r->line;
    *n = 0;
    for (;;) {
        int quoted = r->s < r->end && *r->s == '"';
        apr_array_clear(buf);
        if (quoted) {
            r->s++;
            for (;;) {
                if (r->s >= r->end) {
                    *err = "a quoted field is not closed";
                    return -1;
                }
                if (*r->s == '"') {
                    if (r->s + 1 < r->end && r->s[1] == '"') {
                        *(char *)apr_array_push(buf) = '"';
                        r->s += 2;
                        continue;
                    }
                    r->s++;
                    break;
                }
                if (*r->s == '\n') {
                    r->line++;
                }
                *(char *)apr_array_push(buf) = *r->s++;
            }
            if (r->s < r->end && *r->s != ',' && *r->s != '\n' && *r->s != '\r') {
                *err = "text after a closing quote";
                return -1;
            }
        } else {
            while (r->s < r->end && *r->s != ',' && *r->s != '\n' && *r->s != '\r') {
                if (*r->s == '"') {
                    *err = "a quote inside an unquoted field";
                    return -1;
                }
                *(char *)apr_array_push(buf) = *r->s++;
            }
        }
        if (memchr(buf->elts, '\0', (size_t)buf->nelts)) {
            *err = "a NUL byte in a field";
            return -1;
        }
        if (*n < IMPORT_FIELDS) {
            fields[*n] = apr_pstrmemdup(p, buf->elts, (apr_size_t)buf->nelts);
        }
        (*n)++;
        if (r->s < r->end && *r->s == ',') {
            r->s++;
            continue;
        }
        break;
    }
    if (r->s < r->end && *r->s == '\r') {
        r->s++;
    }
    if (r->s < r->end && *r->s == '\n') {
        r->s++;
        r->line++;
    }
    return 1;
}

static char *trim(char *s)
{
    char *e;

    while (is_space(*s)) {
        s++;
    }
    e = s + strlen(s);
    while (e > s && is_space(e[-1])) {
        *--e = '\0';
    }
    return s;
}

/* created_at of an imported row: RFC 3339 or Unix seconds, from 1970 to
 * a day from now. */
static const char *parse_time(apr_pool_t *p, const char *s, int64_t *out)
{
    int64_t t = 0;
    dm_err *e = dm_json_parse_time(p, "created_at", s, &t);

    if (e) {
        return e->message;
    }
    if (t <= 0 || t > dm_now() + 86400) {
        return "created_at is out of range (1970 to now)";
    }
    *out = t;
    return NULL;
}

/* "$2b$12$" + 53 characters of bcrypt's base64 alphabet. */
static int bcrypt_shape(const char *h)
{
    int cost;

    if (strlen(h) != BCRYPT_LEN || h[0] != '$' || h[1] != '2' ||
        (h[2] != 'a' && h[2] != 'b' && h[2] != 'y') || h[3] != '$' || h[4] < '0' || h[4] > '9' ||
        h[5] < '0' || h[5] > '9' || h[6] != '$') {
        return 0;
    }
    cost = (h[4] - '0') * 10 + (h[5] - '0');
    if (cost < 4 || cost > 31) {
        return 0;
    }
    return strspn(h + 7, "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") ==
           BCRYPT_LEN - 7;
}

/* Checks of one row on its own. */
static const char *check_row(apr_pool_t *p, imp_row *r)
{
    dm_err *e;

    if (r->nfields != IMPORT_FIELDS) {
        return apr_psprintf(p, "expected %d fields, found %d", IMPORT_FIELDS, r->nfields);
    }
    for (int i = 0; i < IMPORT_FIELDS; i++) {
        r->field[i] = trim((char *)r->field[i]);
    }
    e = dm_validate_email(p, "email", r->field[0], &r->email, &r->key);
    if (e) {
        return e->message;
    }
    if (!bcrypt_shape(r->field[1])) {
        return "bcrypt_hash must be a 60-character $2a$, $2b$ or $2y$ hash";
    }
    r->hash = r->field[1];
    if (!dm_referral_code_parse(p, r->field[2], &r->code)) {
        return "referral_code is not a referral code (8 characters, no 0/O/1/I/L)";
    }
    if (*r->field[3]) {
        if (!dm_referral_code_parse(p, r->field[3], &r->ref_code)) {
            return "referrer_code is not a referral code";
        }
        if (strcmp(r->ref_code, r->code) == 0) {
            return "a member cannot refer itself";
        }
    }
    return parse_time(p, r->field[4], &r->created_at);
}

static dm_err *lookup_id(dm_db *db, apr_pool_t *p, const char *sql, const char *v, int64_t *id)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, sql, &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, v);
    e = dm_stmt_step(st, p, &row);
    *id = (!e && row) ? dm_stmt_int64(st, 0) : 0;
    dm_stmt_done(st);
    return e;
}

/* Checks against earlier rows and the database; links referrers. */
static dm_err *check_links(dm_db *db, apr_pool_t *p, apr_array_header_t *rows)
{
    apr_hash_t *keys = apr_hash_make(p), *codes = apr_hash_make(p);
    imp_row *r = (imp_row *)rows->elts;
    int64_t id;
    dm_err *e;

    for (int i = 0; i < rows->nelts; i++) {
        imp_row *other;
        r[i].referrer_row = -1;
        r[i].first_child = r[i].next_sibling = -1;
        if (r[i].err) {
            continue;
        }
        if ((other = apr_hash_get(keys, r[i].key, APR_HASH_KEY_STRING))) {
            r[i].err = apr_psprintf(p, "the e-mail address repeats line %" APR_INT64_T_FMT,
                                    (apr_int64_t)other->line);
            continue;
        }
        if ((other = apr_hash_get(codes, r[i].code, APR_HASH_KEY_STRING))) {
            r[i].err = apr_psprintf(p, "the referral code repeats line %" APR_INT64_T_FMT,
                                    (apr_int64_t)other->line);
            continue;
        }
        apr_hash_set(keys, r[i].key, APR_HASH_KEY_STRING, &r[i]);
        apr_hash_set(codes, r[i].code, APR_HASH_KEY_STRING, &r[i]);
        if ((e = lookup_id(db, p, "SELECT id FROM users WHERE email_key = ?", r[i].key, &id))) {
            return e;
        }
        if (id) {
            r[i].err = "a member with this e-mail address exists";
            continue;
        }
        if ((e = lookup_id(db, p, "SELECT id FROM users WHERE referral_code = ?", r[i].code,
                           &id))) {
            return e;
        }
        if (id) {
            r[i].err = "a member already has this referral code";
        }
    }
    /* Referrers: in the file (any line) or in the database. */
    for (int i = 0; i < rows->nelts; i++) {
        imp_row *ref;
        if (r[i].err || !r[i].ref_code) {
            continue;
        }
        ref = apr_hash_get(codes, r[i].ref_code, APR_HASH_KEY_STRING);
        if (ref) {
            r[i].referrer_row = (int)(ref - r);
            r[i].next_sibling = ref->first_child;
            ref->first_child = i;
            continue;
        }
        if ((e = lookup_id(db, p, "SELECT id FROM users WHERE referral_code = ?", r[i].ref_code,
                           &id))) {
            return e;
        }
        if (id) {
            r[i].referrer_db_id = id;
        } else {
            r[i].err = apr_psprintf(
                p, "referrer_code %s is neither in the file nor a member's code", r[i].ref_code);
        }
    }
    return NULL;
}

/* Referrers before referrals: a breadth-first walk from the rows whose
 * referrer is outside the file. Rows never reached are on a cycle. */
static int *import_order(apr_pool_t *p, apr_array_header_t *rows)
{
    imp_row *r = (imp_row *)rows->elts;
    int *order = apr_palloc(p, sizeof(int) * (size_t)(rows->nelts + 1));
    int head = 0, tail = 0;

    for (int i = 0; i < rows->nelts; i++) {
        if (r[i].referrer_row < 0) {
            order[tail++] = i;
        }
    }
    while (head < tail) {
        for (int c = r[order[head++]].first_child; c >= 0; c = r[c].next_sibling) {
            order[tail++] = c;
        }
    }
    if (tail < rows->nelts) {
        char *seen = apr_pcalloc(p, (size_t)rows->nelts);
        for (int i = 0; i < tail; i++) {
            seen[order[i]] = 1;
        }
        for (int i = 0; i < rows->nelts; i++) {
            if (!seen[i]) {
                r[i].err = "the referrer codes of this row and others form a cycle";
            }
        }
        return NULL;
    }
    return order;
}

static dm_err *insert_row(dm_db *db, apr_pool_t *p, imp_row *rows, imp_row *r, int64_t now)
{
    dm_stmt *st;
    int row = 0;
    int64_t referrer = r->referrer_row >= 0 ? rows[r->referrer_row].id : r->referrer_db_id;
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO users (email, email_key, password_hash, referral_code, "
                              "referrer_id, terms_version, terms_accepted_at, created_at, "
                              "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, r->email);
    dm_stmt_bind_str(st, 2, r->key);
    dm_stmt_bind_str(st, 3, r->hash);
    dm_stmt_bind_str(st, 4, r->code);
    if (referrer) {
        dm_stmt_bind_int64(st, 5, referrer);
    } else {
        dm_stmt_bind_null(st, 5);
    }
    dm_stmt_bind_str(st, 6, DM_IMPORT_TERMS_VERSION);
    dm_stmt_bind_int64(st, 7, r->created_at);
    dm_stmt_bind_int64(st, 8, r->created_at);
    dm_stmt_bind_int64(st, 9, now);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        r->id = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_INTERNAL, NULL, "line %" APR_INT64_T_FMT ": not inserted",
                        (apr_int64_t)r->line);
    }
    return e ? e : dm_referral_attach(db, p, r->id, referrer);
}

static dm_err *read_file(apr_pool_t *p, const char *csv, size_t len, apr_array_header_t **out,
                         int64_t *bad_line, const char **bad)
{
    csv_reader rd = {csv, csv + len, 1};
    const char *fields[IMPORT_FIELDS], *err = NULL;
    apr_array_header_t *rows = apr_array_make(p, 64, sizeof(imp_row));
    int n = 0, rc;
    int64_t line = 0;

    *out = rows;

    /* a UTF-8 byte order mark, as spreadsheets write */
    if (len >= 3 && memcmp(csv, "\xEF\xBB\xBF", 3) == 0) {
        rd.s += 3;
    }
    rc = csv_record(p, &rd, fields, &n, &line, &err);
    if (rc <= 0) {
        *bad_line = rc < 0 ? line : 1;
        *bad = rc < 0 ? err : "the file is empty (a header row is expected)";
        return NULL;
    }
    for (int i = 0; i < IMPORT_FIELDS; i++) {
        if (n != IMPORT_FIELDS || strcasecmp(trim((char *)fields[i]), import_header[i]) != 0) {
            *bad_line = line;
            *bad = "the header must be email,bcrypt_hash,referral_code,referrer_code,created_at";
            return NULL;
        }
    }
    while ((rc = csv_record(p, &rd, fields, &n, &line, &err)) != 0) {
        imp_row *r = apr_array_push(rows);
        memset(r, 0, sizeof(*r));
        r->line = line;
        if (rc < 0) {
            /* unreadable from here on: this row is bad, an earlier one may
             * be the first bad row */
            r->err = err;
            break;
        }
        r->nfields = n;
        memcpy(r->field, fields, sizeof(fields));
    }
    return NULL;
}

static dm_err *import_txn(dm_db *db, apr_pool_t *p, apr_array_header_t *rows, const char *source,
                          dm_import_report *rep, const char **bad)
{
    imp_row *r = (imp_row *)rows->elts;
    int *order = NULL;
    int64_t now = dm_now();
    dm_err *e;

    for (int i = 0; i < rows->nelts; i++) {
        if (!r[i].err) {
            r[i].err = check_row(p, &r[i]);
        }
    }
    e = check_links(db, p, rows);
    if (e) {
        return e;
    }
    for (int i = 0; i < rows->nelts && !rep->bad_line; i++) {
        if (r[i].err) {
            rep->bad_line = r[i].line;
            *bad = r[i].err;
        }
    }
    if (!rep->bad_line && !(order = import_order(p, rows))) {
        for (int i = 0; i < rows->nelts && !rep->bad_line; i++) {
            if (r[i].err) {
                rep->bad_line = r[i].line;
                *bad = r[i].err;
            }
        }
    }
    if (rep->bad_line || !order) {
        return NULL;
    }
    for (int k = 0; k < rows->nelts; k++) {
        e = insert_row(db, p, r, &r[order[k]], now);
        if (e) {
            return e;
        }
    }
    rep->imported = rows->nelts;
    return dm_audit_write(db, p, 0, "users.import", NULL, NULL, NULL,
                          dm_json_own(p, json_pack("{s:I,s:s}", "members", (json_int_t)rows->nelts,
                                                   "source", source ? source : "")),
                          DM_AUDIT_CONSOLE_IP);
}

dm_err *dm_admin_import_users(dm_db *db, apr_pool_t *p, const char *csv, size_t len,
                              const char *source, dm_import_report *rep)
{
    apr_array_header_t *rows = NULL;
    const char *bad = NULL;
    dm_err *e;

    memset(rep, 0, sizeof(*rep));
    e = read_file(p, csv, len, &rows, &rep->bad_line, &bad);
    if (!e && !rep->bad_line) {
        rep->rows = rows->nelts;
        e = dm_db_begin(db, p);
        if (e) {
            return e;
        }
        e = import_txn(db, p, rows, source, rep, &bad);
        if (e || rep->bad_line) {
            dm_db_rollback(db);
            rep->imported = 0;
        } else {
            e = dm_db_commit(db, p);
            if (e) {
                rep->imported = 0;
            }
        }
    }
    if (!e && rep->bad_line) {
        e = dm_err_make(p, DM_E_INVALID, "line", "line %" APR_INT64_T_FMT ": %s",
                        (apr_int64_t)rep->bad_line, bad);
    }
    return e;
}

dm_err *dm_admin_user_set_vip(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                              int64_t user_id, int level, dm_member *out)
{
    dm_member before;
    dm_stmt *st;
    int row;
    dm_err *e;

    if (level < 1 || level > DM_VIP_LEVELS) {
        return dm_err_make(p, DM_E_INVALID, "vip_level", "vip_level is 1 to %d", DM_VIP_LEVELS);
    }
    if ((e = dm_db_begin(db, p))) {
        return e;
    }
    e = dm_member_get(db, p, user_id, &before);
    if (!e) {
        e = dm_db_prepare(db, p, "UPDATE users SET vip_level = ?, updated_at = ? WHERE id = ?",
                          &st);
    }
    if (!e) {
        dm_stmt_bind_int64(st, 1, level);
        dm_stmt_bind_int64(st, 2, dm_now());
        dm_stmt_bind_int64(st, 3, user_id);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    if (!e) {
        e = dm_audit_write(db, p, staff_id, "user.vip", "user",
                           apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)user_id),
                           dm_json_own(p, json_pack("{s:i}", "vip_level", before.vip_level)),
                           dm_json_own(p, json_pack("{s:i}", "vip_level", level)), ip);
    }
    if (!e) {
        e = dm_member_get(db, p, user_id, out);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}
