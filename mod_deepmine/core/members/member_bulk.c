/*
 * member_bulk.c — see member_bulk.h. The users rows go ROWS to a
 * statement: inside a transaction every statement that writes users_fts
 * makes FTS5 flush its pending terms (a statement savepoint), which costs
 * ~50 us a row when rows go one by one. The statement's text depends only
 * on the number of rows, never on input.
 */
#include "members/member_bulk.h"

#include <apr_strings.h>
#include <string.h>

#include "base/clock.h"
#include "base/validate.h"
#include "members/members.h"
#include "referral/referral.h"

#define ROWS 2048 /* users rows per statement (USER_PARAMS each) */
#define USER_PARAMS 10
#define CODE_TRIES 5 /* a statement of ROWS fresh codes, drawn again on a collision */

struct dm_member_bulk {
    dm_db *db;
    apr_pool_t *pool;
    apr_pool_t *tmp; /* cleared after each statement */
    dm_member_bulk_spec spec;
    dm_referral_bulk *tree;
    int64_t last_id; /* the last id given in this transaction; 0: read MAX(id) */
    int n;           /* members buffered */
    int64_t ids[ROWS], refs[ROWS];
};

dm_err *dm_member_bulk_begin(dm_db *db, apr_pool_t *p, const dm_member_bulk_spec *spec,
                             dm_member_bulk **out)
{
    dm_member_bulk *b = apr_pcalloc(p, sizeof(*b));

    b->db = db;
    b->pool = p;
    b->spec = *spec;
    apr_pool_create(&b->tmp, p);
    *out = b;
    return spec->per_row ? NULL : dm_referral_bulk_begin(db, p, &b->tree);
}

/* The member's e-mail address and its key, normalised as registration
 * normalises them. */
static dm_err *address(dm_member_bulk *b, int64_t id, const char **email, const char **key)
{
    const char *raw = apr_psprintf(b->tmp, "%s%" APR_INT64_T_FMT "@%s", b->spec.email_prefix,
                                   (apr_int64_t)id, b->spec.email_domain);

    return dm_validate_email(b->tmp, "email", raw, email, key);
}

/* The users rows of the buffered members, in one statement: the columns
 * dm_member_insert writes, the others left to their defaults as there. */
static const char *users_sql(apr_pool_t *p, int rows)
{
    static const char head[] = "INSERT INTO users (id, email, email_key, password_hash, "
                               "referral_code, referrer_id, terms_version, terms_accepted_at, "
                               "created_at, updated_at) VALUES ";
    static const char row[] = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    apr_array_header_t *parts = apr_array_make(p, 2 * rows + 1, sizeof(const char *));

    APR_ARRAY_PUSH(parts, const char *) = head;
    for (int i = 0; i < rows; i++) {
        APR_ARRAY_PUSH(parts, const char *) = i ? ", " : "";
        APR_ARRAY_PUSH(parts, const char *) = row;
    }
    return apr_array_pstrcat(p, parts, 0);
}

static dm_err *insert_users(dm_member_bulk *b, int64_t now)
{
    const char *sql = users_sql(b->tmp, b->n), *hash = b->spec.password_hash;
    const char *version = b->spec.terms->version;
    dm_err *e = NULL;

    for (int tries = 0; tries < CODE_TRIES; tries++) {
        dm_stmt *st = NULL;
        int row = 0;
        e = dm_db_prepare(b->db, b->tmp, sql, &st);
        for (int j = 0; !e && j < b->n; j++) {
            const char *email = NULL, *key = NULL;
            int k = j * USER_PARAMS;
            e = address(b, b->ids[j], &email, &key);
            if (e) {
                break;
            }
            dm_stmt_bind_int64(st, k + 1, b->ids[j]);
            dm_stmt_bind_text(st, k + 2, email, strlen(email));
            dm_stmt_bind_text(st, k + 3, key, strlen(key));
            dm_stmt_bind_text(st, k + 4, hash, strlen(hash));
            dm_stmt_bind_text(st, k + 5, dm_referral_code_new(b->tmp), DM_REFERRAL_CODE_LEN);
            if (b->refs[j]) {
                dm_stmt_bind_int64(st, k + 6, b->refs[j]);
            } else {
                dm_stmt_bind_null(st, k + 6);
            }
            dm_stmt_bind_text(st, k + 7, version, strlen(version));
            dm_stmt_bind_int64(st, k + 8, now);
            dm_stmt_bind_int64(st, k + 9, now);
            dm_stmt_bind_int64(st, k + 10, now);
        }
        if (!e) {
            e = dm_stmt_step(st, b->tmp, &row);
        }
        if (st) {
            dm_stmt_done(st);
        }
        /* A conflict is most likely a referral code already taken: new
         * codes and again (an address taken fails every time, and is
         * reported). */
        if (!e || e->code != DM_E_CONFLICT) {
            break;
        }
    }
    return e;
}

/* The buffered members: their users rows, then each one's place in the
 * tree and terms record, in id order (a referrer before the members
 * under it). */
static dm_err *write_buffer(dm_member_bulk *b)
{
    int64_t now = dm_now();
    dm_err *e = b->n ? insert_users(b, now) : NULL;

    for (int j = 0; !e && j < b->n; j++) {
        e = dm_referral_bulk_add(b->tree, b->ids[j], b->refs[j]);
        if (!e) {
            e = dm_legal_record_acceptance(b->db, b->tmp, b->ids[j], b->spec.terms, b->spec.ip);
        }
    }
    b->n = 0;
    e = dm_err_copy(b->pool, e);
    apr_pool_clear(b->tmp);
    return e;
}

/* One member through registration's own function. */
static dm_err *insert_one(dm_member_bulk *b, int64_t id, int64_t referrer)
{
    dm_member_new m;
    int64_t got = 0;
    dm_err *e;

    memset(&m, 0, sizeof(m));
    m.id = id;
    m.password_hash = b->spec.password_hash;
    m.referrer_id = referrer;
    m.terms = b->spec.terms;
    m.ip = b->spec.ip;
    e = address(b, id, &m.email, &m.email_key);
    if (!e) {
        e = dm_member_insert(b->db, b->tmp, &m, &got);
    }
    e = dm_err_copy(b->pool, e);
    apr_pool_clear(b->tmp);
    return e;
}

dm_err *dm_member_bulk_add(dm_member_bulk *b, int64_t referrer_id, int64_t *id)
{
    dm_err *e;

    if (!dm_db_in_transaction(b->db)) {
        return dm_err_make(b->pool, DM_E_INVALID, NULL, "dm_member_bulk_add needs a transaction");
    }
    if (!b->last_id) {
        int found = 0;
        /* under the write lock: nobody else inserts until the commit */
        e = dm_db_query_int64(b->db, b->pool, "SELECT COALESCE(MAX(id), 0) FROM users", &b->last_id,
                              &found);
        if (e) {
            return e;
        }
    }
    *id = ++b->last_id;
    if (b->spec.per_row) {
        return insert_one(b, *id, referrer_id);
    }
    b->ids[b->n] = *id;
    b->refs[b->n] = referrer_id;
    return ++b->n == ROWS ? write_buffer(b) : NULL;
}

dm_err *dm_member_bulk_flush(dm_member_bulk *b)
{
    dm_err *e = b->spec.per_row ? NULL : write_buffer(b);

    if (!e && !b->spec.per_row) {
        e = dm_referral_bulk_flush(b->tree);
    }
    b->last_id = 0; /* the next transaction reads MAX(id) again */
    return e;
}

dm_err *dm_member_bulk_finish(dm_member_bulk *b, int64_t *changed)
{
    *changed = 0;
    return b->spec.per_row ? NULL : dm_referral_rebuild_counts(b->db, b->pool, changed);
}

dm_err *dm_member_ids(dm_db *db, apr_pool_t *p, int active_only, apr_array_header_t **ids)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e =
        dm_db_prepare(db, p,
                      active_only ? "SELECT id FROM users WHERE status = 'active' ORDER BY id"
                                  : "SELECT id FROM users ORDER BY id",
                      &st);

    if (e) {
        return e;
    }
    *ids = apr_array_make(p, 1024, sizeof(int64_t));
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        APR_ARRAY_PUSH(*ids, int64_t) = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    return e;
}
