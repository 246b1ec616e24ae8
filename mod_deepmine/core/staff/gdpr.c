/*
 * gdpr.c — members' data: the export and the erasure (gdpr.h).
 *
 * The export is a list of (section, query) pairs turned into JSON column
 * by column: integers stay integers, columns named *_at are RFC 3339 times
 * (null when unset). Referrals come through referral.h, masked as
 * /api/referrals shows them. KYC documents are listed, never read.
 *
 * The erasure keeps every id and every money row (accounts, transfers,
 * orders, contracts, commissions, withdrawals' amounts) so the ledger still
 * verifies, and replaces what identifies the person: the users row becomes
 * a tombstone, sessions, tokens, preferences go, mail rows lose their
 * address and variables, legal acceptances their IP address, withdrawals
 * their destination. KYC documents go through the storage plugin unless
 * the AML retention holds them (an approved member: the case is closed now
 * and kyc-retention deletes them when DeepMineKycRetention ends).
 */
#include "staff/gdpr.h"

#include <apr_strings.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/token.h"
#include "ledger/ledger.h"
#include "mail/mailq.h"
#include "referral/referral.h"
#include "store/audit.h"

/* ---- export ---- */

typedef struct section {
    const char *name;
    const char *sql; /* ?1 is the member's id */
    int single;      /* one object (or null) instead of an array */
} section;

static const section sections[] = {
    {"profile",
     "SELECT id, email, name, referral_code, referrer_id, vip_level, status, "
     "email_verified_at, kyc_status, marketing_opt_in, terms_version, terms_accepted_at, "
     "created_at, updated_at FROM users WHERE id = ?1",
     1},
    {"legal_acceptances",
     "SELECT document, version, content_hash, ip, accepted_at FROM legal_acceptances "
     "WHERE user_id = ?1 ORDER BY id",
     0},
    {"email_preferences",
     "SELECT category, subscribed, source, updated_at FROM email_preferences "
     "WHERE user_id = ?1 ORDER BY category",
     0},
    {"accounts",
     "SELECT id, kind, currency, balance_micros, created_at FROM accounts WHERE user_id = ?1 "
     "ORDER BY id",
     0},
    {"orders",
     "SELECT id, package_id, amount_micros, refunded_micros, currency, status, gateway, "
     "created_at, paid_at, updated_at FROM orders WHERE user_id = ?1 ORDER BY id",
     0},
    {"contracts",
     "SELECT id, order_id, package_id, name, hashrate_ghs, price_micros, daily_yield_micros, "
     "duration_days, currency, status, refunded_micros, started_at, expires_at, ended_at "
     "FROM contracts WHERE user_id = ?1 ORDER BY id",
     0},
    /* every ledger line on the member's accounts, signed as the account
     * sees it (a move between the member's own wallet and held account is
     * two lines, one per account) */
    {"statement",
     "SELECT t.id AS transfer_id, a.kind AS account, t.kind, t.reference, t.currency, "
     "CASE WHEN t.credit_account_id = a.id THEN t.amount_micros ELSE -t.amount_micros END "
     "AS amount_micros, t.created_at FROM accounts a JOIN transfers t "
     "ON t.credit_account_id = a.id OR t.debit_account_id = a.id "
     "WHERE a.user_id = ?1 ORDER BY t.id, a.id",
     0},
    {"commissions",
     "SELECT id, order_id, depth, amount_micros, clawed_micros, currency, rate_bp, vip_level, "
     "status, release_at, created_at FROM commissions WHERE beneficiary_id = ?1 ORDER BY id",
     0},
    {"withdrawals",
     "SELECT id, amount_micros, currency, network, destination, status, txid, reason, "
     "requested_at, decided_at FROM withdrawals WHERE user_id = ?1 ORDER BY id",
     0},
    {"kyc",
     "SELECT u.kyc_status AS status, c.legal_name, c.date_of_birth, c.country, "
     "c.address_line1, c.address_line2, c.city, c.postal_code, c.provider, c.reason, "
     "c.submitted_at, c.decided_at, c.closed_at, c.updated_at FROM users u "
     "LEFT JOIN kyc_cases c ON c.user_id = u.id WHERE u.id = ?1",
     1},
    {"kyc_documents",
     "SELECT id, kind, content_type, size, sha256, created_at FROM kyc_documents "
     "WHERE user_id = ?1 ORDER BY id",
     0},
    /* what was sent, never its variables (tokens, links) */
    {"emails",
     "SELECT q.id, q.template, q.status, q.created_at, q.sent_at FROM mail_queue q "
     "JOIN users u ON u.email = q.recipient WHERE u.id = ?1 ORDER BY q.id",
     0},
    /* one line per login (refresh family); token hashes never */
    {"sessions",
     "SELECT MIN(created_at) AS created_at, MAX(expires_at) AS expires_at, "
     "COUNT(*) - 1 AS refreshes, MAX(revoked_at) AS revoked_at FROM refresh_tokens "
     "WHERE user_id = ?1 GROUP BY family_id ORDER BY MIN(id)",
     0},
    {"erasure_requests",
     "SELECT id, status, requested_at, confirmed_at, due_at, finished_at FROM "
     "erasure_requests WHERE user_id = ?1 ORDER BY id",
     0},
};

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static json_t *row_json(apr_pool_t *p, dm_stmt *st)
{
    json_t *o = json_object();
    int n = dm_stmt_column_count(st);

    for (int i = 0; i < n; i++) {
        const char *name = dm_stmt_column_name(st, i);
        int kind = dm_stmt_column_kind(st, i);
        json_t *v;
        if (kind == 0) {
            v = json_null();
        } else if (kind == 1 && ends_with(name, "_at")) {
            v = dm_json_time_or_null(p, dm_stmt_int64(st, i));
        } else if (kind == 1) {
            v = json_integer((json_int_t)dm_stmt_int64(st, i));
        } else {
            size_t len = 0;
            const char *s = dm_stmt_text(st, i, &len);
            v = json_stringn(s ? s : "", len);
        }
        json_object_set_new(o, name, v ? v : json_null());
    }
    return o;
}

static dm_err *run_section(dm_db *db, apr_pool_t *p, const section *sec, int64_t user_id,
                           json_t **out)
{
    dm_stmt *st;
    int row = 0;
    json_t *arr = sec->single ? NULL : json_array();
    json_t *one = NULL;
    dm_err *e = dm_db_prepare(db, p, sec->sql, &st);

    *out = NULL;
    if (e) {
        json_decref(arr);
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        if (sec->single) {
            one = row_json(p, st);
            break;
        }
        json_array_append_new(arr, row_json(p, st));
    }
    dm_stmt_done(st);
    if (e) {
        json_decref(arr);
        json_decref(one);
        return e;
    }
    *out = sec->single ? (one ? one : json_null()) : arr;
    return NULL;
}

static dm_err *referrals_json(dm_db *db, apr_pool_t *p, int64_t user_id, json_t *out)
{
    dm_err *e = NULL;

    for (int level = 1; !e && level <= DM_REFERRAL_LEVELS; level++) {
        int64_t cursor = 0, next = 0;
        do {
            apr_array_header_t *rows = NULL;
            e = dm_referral_list_level(db, p, user_id, level, cursor, 200, &rows, &next);
            for (int i = 0; !e && i < rows->nelts; i++) {
                const dm_referral_row *r = &APR_ARRAY_IDX(rows, i, dm_referral_row);
                json_array_append_new(
                    out, json_pack("{s:I,s:i,s:s,s:s,s:i}", "id", (json_int_t)r->id, "level", level,
                                   "email", r->masked_email, "joined_at",
                                   dm_json_time(p, r->joined_at), "vip_level", r->vip_level));
            }
            cursor = next;
        } while (!e && next);
    }
    return e;
}

dm_err *dm_gdpr_export(dm_db *db, apr_pool_t *p, int64_t user_id, json_t **out)
{
    json_t *o = dm_json_own(p, json_object());
    json_t *refs = json_array();
    dm_err *e = NULL;

    *out = NULL;
    json_object_set_new(o, "format", json_string("deepmine-export/1"));
    json_object_set_new(o, "generated_at", json_string(dm_json_time(p, dm_now())));
    for (size_t i = 0; !e && i < sizeof(sections) / sizeof(sections[0]); i++) {
        json_t *v = NULL;
        e = run_section(db, p, &sections[i], user_id, &v);
        if (!e) {
            json_object_set_new(o, sections[i].name, v);
        }
    }
    if (!e) {
        e = referrals_json(db, p, user_id, refs);
    }
    json_object_set_new(o, "referrals", refs);
    if (!e) {
        *out = o;
    }
    return e;
}

/* ---- blockers ---- */

dm_err *dm_gdpr_blockers(dm_db *db, apr_pool_t *p, int64_t user_id, apr_array_header_t **out)
{
    dm_stmt *st;
    int row = 0;
    apr_array_header_t *a = apr_array_make(p, 4, sizeof(const char *));
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT kind, currency, balance_micros FROM accounts "
                              "WHERE user_id = ? AND balance_micros <> 0 ORDER BY id",
                              &st);

    *out = a;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        const char *kind = dm_stmt_dup_text(st, p, 0);
        const char *cur = dm_stmt_dup_text(st, p, 1);
        int64_t bal = dm_stmt_int64(st, 2);
        const char *amount =
            apr_psprintf(p, "%s%" APR_INT64_T_FMT ".%06" APR_INT64_T_FMT " %s", bal < 0 ? "-" : "",
                         (apr_int64_t)((bal < 0 ? -bal : bal) / 1000000),
                         (apr_int64_t)((bal < 0 ? -bal : bal) % 1000000), cur);
        APR_ARRAY_PUSH(a, const char *) =
            strcmp(kind, "held") == 0
                ? apr_psprintf(p,
                               "%s of commissions are still held: wait for their release and "
                               "withdraw them",
                               amount)
            : bal > 0 ? apr_psprintf(p, "the wallet holds %s: withdraw it first", amount)
                      : apr_psprintf(p, "the wallet owes %s: settle the debt first", amount);
    }
    dm_stmt_done(st);
    if (!e) {
        e = dm_db_prepare(db, p,
                          "SELECT (SELECT COUNT(*) FROM withdrawals WHERE user_id = ?1 AND "
                          "status = 'pending'), (SELECT COUNT(*) FROM contracts WHERE "
                          "user_id = ?1 AND status = 'active')",
                          &st);
    }
    if (!e) {
        dm_stmt_bind_int64(st, 1, user_id);
        e = dm_stmt_step(st, p, &row);
        if (!e && row && dm_stmt_int64(st, 0) > 0) {
            APR_ARRAY_PUSH(a, const char *) =
                apr_psprintf(p, "%" APR_INT64_T_FMT " withdrawal(s) pending: wait for the decision",
                             (apr_int64_t)dm_stmt_int64(st, 0));
        }
        if (!e && row && dm_stmt_int64(st, 1) > 0) {
            APR_ARRAY_PUSH(a, const char *) =
                apr_psprintf(p,
                             "%" APR_INT64_T_FMT " contract(s) still active: wait for the end "
                             "of their term",
                             (apr_int64_t)dm_stmt_int64(st, 1));
        }
        dm_stmt_done(st);
    }
    return e;
}

static dm_err *blocked_error(apr_pool_t *p, apr_array_header_t *b)
{
    const char *msg = "the account cannot be erased yet: ";

    for (int i = 0; i < b->nelts; i++) {
        msg = apr_pstrcat(p, msg, i ? "; " : "", APR_ARRAY_IDX(b, i, const char *), NULL);
    }
    return dm_err_make(p, DM_E_CONFLICT, NULL, "%s", msg);
}

/* ---- requests ---- */

#define ERASURE_COLS                                                                               \
    "x.id, x.user_id, u.email, x.status, x.requested_at, COALESCE(x.confirmed_at, 0), "            \
    "COALESCE(x.due_at, 0), COALESCE(x.finished_at, 0), x.finished_by FROM erasure_requests x "    \
    "JOIN users u ON u.id = x.user_id "

static void read_erasure(dm_stmt *st, apr_pool_t *p, dm_erasure *x)
{
    x->id = dm_stmt_int64(st, 0);
    x->user_id = dm_stmt_int64(st, 1);
    x->email = dm_stmt_dup_text(st, p, 2);
    x->status = dm_stmt_dup_text(st, p, 3);
    x->requested_at = dm_stmt_int64(st, 4);
    x->confirmed_at = dm_stmt_int64(st, 5);
    x->due_at = dm_stmt_int64(st, 6);
    x->finished_at = dm_stmt_int64(st, 7);
    x->finished_by = dm_stmt_dup_text(st, p, 8);
}

json_t *dm_erasure_json(apr_pool_t *p, const dm_erasure *x)
{
    json_t *o = json_pack("{s:I,s:I,s:s,s:s,s:s}", "id", (json_int_t)x->id, "user_id",
                          (json_int_t)x->user_id, "email", x->email ? x->email : "", "status",
                          x->status, "requested_at", dm_json_time(p, x->requested_at));
    json_object_set_new(o, "confirmed_at", dm_json_time_or_null(p, x->confirmed_at));
    json_object_set_new(o, "due_at", dm_json_time_or_null(p, x->due_at));
    json_object_set_new(o, "finished_at", dm_json_time_or_null(p, x->finished_at));
    json_object_set_new(o, "finished_by",
                        x->finished_by ? json_string(x->finished_by) : json_null());
    return o;
}

static dm_err *get_where(dm_db *db, apr_pool_t *p, const char *where, int64_t v, dm_erasure *out,
                         int *found)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, apr_pstrcat(p, "SELECT " ERASURE_COLS, where, NULL), &st);

    *found = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, v);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        read_erasure(st, p, out);
        *found = 1;
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_gdpr_current(dm_db *db, apr_pool_t *p, int64_t user_id, dm_erasure *out, int *found)
{
    return get_where(db, p, "WHERE x.user_id = ? ORDER BY x.id DESC LIMIT 1", user_id, out, found);
}

dm_err *dm_gdpr_get(dm_db *db, apr_pool_t *p, int64_t id, dm_erasure *out)
{
    int found = 0;
    dm_err *e = get_where(db, p, "WHERE x.id = ?", id, out, &found);

    if (!e && !found) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "no erasure request %" APR_INT64_T_FMT,
                        (apr_int64_t)id);
    }
    return e;
}

dm_err *dm_gdpr_list(dm_db *db, apr_pool_t *p, const char *status, int64_t cursor, int limit,
                     apr_array_header_t **rows, int64_t *next)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT " ERASURE_COLS "WHERE (?1 = 0 OR x.id < ?1) AND "
                              "(?2 IS NULL OR x.status = ?2) ORDER BY x.id DESC LIMIT ?3",
                              &st);

    *rows = apr_array_make(p, limit > 0 ? limit : 1, sizeof(dm_erasure));
    *next = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, cursor);
    dm_stmt_bind_str(st, 2, status);
    dm_stmt_bind_int64(st, 3, (int64_t)limit + 1);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        dm_erasure x = {0};
        if ((*rows)->nelts == limit) {
            *next = APR_ARRAY_IDX(*rows, limit - 1, dm_erasure).id;
            break;
        }
        read_erasure(st, p, &x);
        APR_ARRAY_PUSH(*rows, dm_erasure) = x;
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *exec_ids(dm_db *db, apr_pool_t *p, const char *sql, int64_t a, int64_t b)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, sql, &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, a);
    if (strstr(sql, "?2")) {
        dm_stmt_bind_int64(st, 2, b);
    }
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

dm_err *dm_gdpr_request(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_member *m,
                        int64_t delay, dm_erasure *out)
{
    apr_array_header_t *blockers;
    dm_erasure cur = {0};
    int found = 0;
    int64_t now = dm_now(), id = 0;
    const char *token = dm_token_new(p);
    dm_stmt *st;
    int row = 0;
    json_t *vars, *secrets;
    dm_err *e = dm_db_begin(db, p);

    if (!e) {
        e = dm_gdpr_current(db, p, m->id, &cur, &found);
    }
    if (!e && found && strcmp(cur.status, "scheduled") == 0) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL,
                        "an erasure is already scheduled for %s; cancel it with DELETE "
                        "/api/me/delete",
                        dm_json_time(p, cur.due_at));
    }
    if (!e) {
        e = dm_gdpr_blockers(db, p, m->id, &blockers);
    }
    if (!e && blockers->nelts) {
        e = blocked_error(p, blockers);
    }
    if (!e) {
        /* a new link replaces the one before */
        e = exec_ids(db, p,
                     "UPDATE erasure_requests SET status = 'cancelled', finished_at = ?2, "
                     "finished_by = 'superseded' WHERE user_id = ?1 AND status = 'unconfirmed'",
                     m->id, now);
    }
    if (!e) {
        e = dm_db_prepare(db, p,
                          "INSERT INTO erasure_requests (user_id, status, token_hash, "
                          "token_expires_at, requested_at) VALUES (?, 'unconfirmed', ?, ?, ?) "
                          "RETURNING id",
                          &st);
    }
    if (!e) {
        dm_stmt_bind_int64(st, 1, m->id);
        dm_stmt_bind_str(st, 2, dm_token_hash(p, s->keys->token_hash, token));
        dm_stmt_bind_int64(st, 3, now + DM_ERASURE_LINK_TTL);
        dm_stmt_bind_int64(st, 4, now);
        e = dm_stmt_step(st, p, &row);
        if (!e && row) {
            id = dm_stmt_int64(st, 0);
        }
        dm_stmt_done(st);
    }
    if (!e) {
        vars = dm_json_own(p, json_pack("{s:s,s:I,s:I}", "email", m->email, "expires_in_hours",
                                        (json_int_t)(DM_ERASURE_LINK_TTL / 3600), "delay_days",
                                        (json_int_t)((delay + 86399) / 86400)));
        secrets = dm_json_own(p, json_pack("{s:s,s:s}", "token", token, "url",
                                           apr_pstrcat(p, s->public_url ? s->public_url : "",
                                                       "/confirm-erasure?token=", token, NULL)));
        e = dm_mail_enqueue_sealed(db, p, s->keys->mail_seal, m->email, "erasure_confirm", vars,
                                   secrets,
                                   apr_psprintf(p, "erasure:%" APR_INT64_T_FMT, (apr_int64_t)id));
    }
    if (!e) {
        e = dm_gdpr_get(db, p, id, out);
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
    }
    return e;
}

dm_err *dm_gdpr_confirm(dm_db *db, apr_pool_t *p, const dm_services *s, const char *token,
                        int64_t delay, dm_erasure *out)
{
    dm_stmt *st;
    int row = 0;
    int64_t now = dm_now(), id = 0;
    dm_err *e;

    if (!token || !*token || strlen(token) > 200) {
        return dm_err_make(p, DM_E_INVALID, "token", "the link carries no valid token");
    }
    e = dm_db_begin(db, p);
    if (!e) {
        e = dm_db_prepare(db, p,
                          "UPDATE erasure_requests SET status = 'scheduled', confirmed_at = ?1, "
                          "due_at = ?2 WHERE token_hash = ?3 AND status = 'unconfirmed' AND "
                          "confirmed_at IS NULL AND token_expires_at > ?1 RETURNING id",
                          &st);
    }
    if (!e) {
        dm_stmt_bind_int64(st, 1, now);
        dm_stmt_bind_int64(st, 2, now + delay);
        dm_stmt_bind_str(st, 3, dm_token_hash(p, s->keys->token_hash, token));
        e = dm_stmt_step(st, p, &row);
        if (!e && row) {
            id = dm_stmt_int64(st, 0);
        }
        dm_stmt_done(st);
    }
    if (!e && !id) {
        e = dm_err_make(p, DM_E_INVALID, "token",
                        "this link is not valid: it was already used, has expired, was "
                        "cancelled, or is wrong");
    }
    if (!e) {
        e = dm_gdpr_get(db, p, id, out);
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
    }
    return e;
}

dm_err *dm_gdpr_cancel(dm_db *db, apr_pool_t *p, int64_t request_id, int64_t user_id,
                       const char *by, int64_t staff_id, const char *ip, dm_erasure *out)
{
    dm_stmt *st;
    int row = 0;
    int64_t id = 0;
    dm_err *e = dm_db_begin(db, p);

    if (!e) {
        e = dm_db_prepare(db, p,
                          "UPDATE erasure_requests SET status = 'cancelled', finished_at = ?1, "
                          "finished_by = ?2 WHERE status IN ('unconfirmed', 'scheduled') AND "
                          "(?3 = 0 OR id = ?3) AND (?4 = 0 OR user_id = ?4) RETURNING id",
                          &st);
    }
    if (!e) {
        dm_stmt_bind_int64(st, 1, dm_now());
        dm_stmt_bind_str(st, 2, by);
        dm_stmt_bind_int64(st, 3, request_id);
        dm_stmt_bind_int64(st, 4, user_id);
        while (!(e = dm_stmt_step(st, p, &row)) && row) {
            id = dm_stmt_int64(st, 0);
        }
        dm_stmt_done(st);
    }
    if (!e && !id) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "there is no open erasure request to cancel");
    }
    if (!e) {
        e = dm_gdpr_get(db, p, id, out);
    }
    if (!e && staff_id) {
        e = dm_audit_write(db, p, staff_id, "erasure.cancel", "erasure",
                           apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)id), NULL,
                           dm_json_own(p, dm_erasure_json(p, out)), ip);
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
    }
    return e;
}

/* ---- the erasure ---- */

/* The member's personal data, tombstoned; ?1 the member, ?2 now. Ids and
 * money rows stay (the ledger must still verify). */
static const char *const erase_sql[] = {
    "UPDATE users SET email = 'erased-' || id || '@invalid', "
    "email_key = 'erased-' || id || '@invalid', name = NULL, password_hash = '!erased', "
    "status = 'suspended', token_version = token_version + 1, marketing_opt_in = 0, "
    "updated_at = ?2 WHERE id = ?1",
    "DELETE FROM refresh_tokens WHERE user_id = ?1",
    /* spent, not deleted: the mail queue's idempotency keys name token
     * ids ("verify:<id>"), and a deleted highest id would be reused */
    "UPDATE email_tokens SET used_at = COALESCE(used_at, ?2) WHERE user_id = ?1",
    "DELETE FROM email_preferences WHERE user_id = ?1",
    "UPDATE legal_acceptances SET ip = '' WHERE user_id = ?1",
    "UPDATE withdrawals SET destination = 'erased', destination_key = 'erased:' || id "
    "WHERE user_id = ?1",
    "UPDATE member_flags SET reason = 'erased' WHERE user_id = ?1 OR related_user_id = ?1",
    NULL,
};

/* 2FA (sql/021_twofa.sql): the member's second factor, recovery codes and
 * login challenges, and the withdrawal address book's destinations (the
 * withdrawals themselves keep their rows, their destination blanked above);
 * ?1 the member. */
static const char *const erase_twofa_sql[] = {
    "DELETE FROM twofa WHERE subject = 'member' AND owner_id = ?1",
    "DELETE FROM twofa_recovery WHERE subject = 'member' AND owner_id = ?1",
    "DELETE FROM twofa_challenges WHERE subject = 'member' AND owner_id = ?1",
    "UPDATE withdrawal_addresses SET address = 'erased', label = NULL WHERE user_id = ?1",
    "UPDATE withdrawal_addresses SET token_hash = NULL, address_key = id WHERE user_id = ?1",
    "UPDATE withdrawal_addresses SET deleted_at = COALESCE(deleted_at, ?2) WHERE user_id = ?1",
    NULL,
};

/* The identity case's details, when the AML retention does not hold them. */
static const char *const erase_kyc_sql[] = {
    "UPDATE kyc_cases SET legal_name = NULL, date_of_birth = NULL, country = NULL, "
    "address_line1 = NULL, address_line2 = NULL, city = NULL, postal_code = NULL, "
    "provider_ref = NULL, closed_at = COALESCE(closed_at, ?2), updated_at = ?2 "
    "WHERE user_id = ?1",
    "DELETE FROM kyc_documents WHERE user_id = ?1",
    NULL,
};

static dm_err *run_list(dm_db *db, apr_pool_t *p, const char *const *list, int64_t uid, int64_t now)
{
    dm_err *e = NULL;

    for (int i = 0; !e && list[i]; i++) {
        e = exec_ids(db, p, list[i], uid, now);
    }
    return e;
}

dm_err *dm_gdpr_erase(dm_db *db, apr_pool_t *p, const dm_kyc_store *store, int64_t id,
                      const char *by, int64_t staff_id, const char *ip, dm_erasure *out)
{
    dm_erasure x = {0};
    apr_array_header_t *blockers, *keys = apr_array_make(p, 4, sizeof(const char *));
    dm_stmt *st;
    int row = 0, aml_hold = 0;
    int64_t now = dm_now();
    const char *old_email = NULL;
    dm_err *e = dm_db_begin(db, p);

    if (!e) {
        e = dm_gdpr_get(db, p, id, &x);
    }
    if (!e && strcmp(x.status, "scheduled") != 0 &&
        !(staff_id && strcmp(x.status, "unconfirmed") == 0)) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL, "erasure request %" APR_INT64_T_FMT " is %s",
                        (apr_int64_t)id, x.status);
    }
    if (!e) {
        e = dm_gdpr_blockers(db, p, x.user_id, &blockers);
    }
    if (!e && blockers->nelts) {
        e = blocked_error(p, blockers);
    }
    if (!e) {
        old_email = x.email;
        /* AML: an approved identity keeps its documents and details until
         * DeepMineKycRetention after the closure (kyc-retention deletes
         * them); so does a case under review, which staff must finish. */
        e = dm_db_prepare(
            db, p, "SELECT kyc_status IN ('approved', 'pending', 'review') FROM users WHERE id = ?",
            &st);
    }
    if (!e) {
        dm_stmt_bind_int64(st, 1, x.user_id);
        e = dm_stmt_step(st, p, &row);
        aml_hold = !e && row && dm_stmt_int64(st, 0);
        dm_stmt_done(st);
    }
    if (!e && !aml_hold && store) {
        e = dm_db_prepare(db, p, "SELECT storage_key FROM kyc_documents WHERE user_id = ?", &st);
        if (!e) {
            dm_stmt_bind_int64(st, 1, x.user_id);
            while (!(e = dm_stmt_step(st, p, &row)) && row) {
                APR_ARRAY_PUSH(keys, const char *) = dm_stmt_dup_text(st, p, 0);
            }
            dm_stmt_done(st);
        }
        if (!e) {
            e = run_list(db, p, erase_kyc_sql, x.user_id, now);
        }
    } else if (!e) {
        /* held (or no store to delete through): the case is closed now, so
         * the retention clock runs from the erasure */
        e = exec_ids(db, p,
                     "UPDATE kyc_cases SET closed_at = COALESCE(closed_at, ?2), updated_at = ?2 "
                     "WHERE user_id = ?1",
                     x.user_id, now);
    }
    if (!e) {
        /* the mail log keeps what was sent and when, not to whom nor with
         * what (before the users row loses the address) */
        e = dm_db_prepare(db, p,
                          "UPDATE mail_queue SET recipient = 'erased-' || ?1 || '@invalid', "
                          "variables = '{}', last_error = NULL WHERE recipient = ?2",
                          &st);
        if (!e) {
            dm_stmt_bind_int64(st, 1, x.user_id);
            dm_stmt_bind_str(st, 2, old_email);
            e = dm_stmt_step(st, p, &row);
            dm_stmt_done(st);
        }
    }
    if (!e) {
        e = run_list(db, p, erase_sql, x.user_id, now);
    }
    if (!e) {
        e = run_list(db, p, erase_twofa_sql, x.user_id, now);
    }
    if (!e) {
        e = exec_ids(db, p,
                     "UPDATE erasure_requests SET status = 'done', finished_at = ?2 WHERE id = ?1",
                     id, now);
    }
    if (!e) {
        e = dm_db_prepare(db, p, "UPDATE erasure_requests SET finished_by = ? WHERE id = ?", &st);
        if (!e) {
            dm_stmt_bind_str(st, 1, by);
            dm_stmt_bind_int64(st, 2, id);
            e = dm_stmt_step(st, p, &row);
            dm_stmt_done(st);
        }
    }
    if (!e) {
        e = dm_audit_write(db, p, staff_id, "member.erased", "user",
                           apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)x.user_id), NULL,
                           dm_json_own(p, json_pack("{s:I,s:s,s:b,s:i}", "request", (json_int_t)id,
                                                    "by", by, "kyc_retained", aml_hold || !store,
                                                    "kyc_documents_deleted", keys->nelts)),
                           ip);
    }
    if (!e) {
        e = dm_gdpr_get(db, p, id, out);
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    /* the rows are gone: now the objects (an orphan is harmless: its key is
     * wrapped in no row any more) */
    for (int i = 0; store && i < keys->nelts; i++) {
        const char *k = APR_ARRAY_IDX(keys, i, const char *);
        dm_err *r = store->remove(store->ctx, p, k);
        if (r) {
            dm_log(DM_L_WARN, "DM01680: erasure: KYC object %s not removed: %s", k, r->message);
        }
    }
    dm_log(DM_L_NOTICE, "DM01681: erasure request %" APR_INT64_T_FMT " done by %s", (apr_int64_t)id,
           by);
    return NULL;
}

dm_err *dm_gdpr_erase_due(dm_db *db, apr_pool_t *p, const dm_kyc_store *store, int64_t now,
                          int64_t *done)
{
    dm_stmt *st;
    int row = 0;
    apr_array_header_t *ids = apr_array_make(p, 16, sizeof(int64_t));
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT id FROM erasure_requests WHERE status = 'scheduled' AND "
                              "due_at <= ? ORDER BY due_at, id LIMIT 200",
                              &st);

    *done = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, now);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        APR_ARRAY_PUSH(ids, int64_t) = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    for (int i = 0; !e && i < ids->nelts; i++) {
        dm_erasure x = {0};
        int64_t id = APR_ARRAY_IDX(ids, i, int64_t);
        dm_err *r = dm_gdpr_erase(db, p, store, id, "job:erasure", 0, NULL, &x);
        if (r && r->code == DM_E_CONFLICT) {
            dm_log(DM_L_WARN, "DM01682: erasure request %" APR_INT64_T_FMT " waits: %s",
                   (apr_int64_t)id, r->message);
        } else if (r) {
            e = r;
        } else {
            (*done)++;
        }
    }
    return e;
}

/* ---- the staff digest ---- */

dm_err *dm_gdpr_staff_digest(dm_db *db, apr_pool_t *p, int64_t now, int64_t *sent)
{
    int64_t day_end = now - now % 86400, day_start = day_end - 86400;
    const char *day = apr_pstrndup(p, dm_json_time(p, day_start), 10);
    dm_stmt *st;
    int row = 0;
    json_t *vars = NULL;
    apr_array_header_t *owners = apr_array_make(p, 4, sizeof(const char *));
    dm_err *e = dm_db_prepare(
        db, p,
        "SELECT (SELECT COUNT(*) FROM users WHERE created_at >= ?1 AND created_at < ?2), "
        "(SELECT COALESCE(SUM(amount_micros), 0) FROM orders WHERE paid_at >= ?1 AND "
        "paid_at < ?2), "
        "(SELECT COUNT(*) FROM orders WHERE status = 'needs_review'), "
        "(SELECT COUNT(*) FROM users WHERE kyc_status IN ('pending', 'review')), "
        "(SELECT COUNT(*) FROM withdrawals WHERE status = 'pending'), "
        "(SELECT COUNT(*) FROM job_runs WHERE status = 'dead'), "
        "(SELECT COALESCE(SUM(failures), 0) FROM job_runs WHERE started_at >= ?1 AND "
        "started_at < ?2)",
        &st);

    *sent = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, day_start);
    dm_stmt_bind_int64(st, 2, day_end);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        vars = dm_json_own(p, json_pack("{s:s,s:I,s:I,s:s,s:I,s:I,s:I,s:I,s:I}", "day", day,
                                        "signups", (json_int_t)dm_stmt_int64(st, 0),
                                        "revenue_micros", (json_int_t)dm_stmt_int64(st, 1),
                                        "currency", DM_LEDGER_CURRENCY, "orders_review",
                                        (json_int_t)dm_stmt_int64(st, 2), "kyc_waiting",
                                        (json_int_t)dm_stmt_int64(st, 3), "withdrawals_waiting",
                                        (json_int_t)dm_stmt_int64(st, 4), "jobs_dead",
                                        (json_int_t)dm_stmt_int64(st, 5), "errors",
                                        (json_int_t)dm_stmt_int64(st, 6)));
    }
    dm_stmt_done(st);
    if (!e) {
        e = dm_db_prepare(db, p,
                          "SELECT email FROM staff WHERE role = 'owner' AND status = 'active' "
                          "ORDER BY id",
                          &st);
    }
    if (!e) {
        while (!(e = dm_stmt_step(st, p, &row)) && row) {
            APR_ARRAY_PUSH(owners, const char *) = dm_stmt_dup_text(st, p, 0);
        }
        dm_stmt_done(st);
    }
    if (!e) {
        e = dm_db_begin(db, p);
    }
    for (int i = 0; !e && vars && i < owners->nelts; i++) {
        const char *to = APR_ARRAY_IDX(owners, i, const char *);
        e = dm_mail_enqueue(db, p, to, "staff_digest", vars,
                            apr_psprintf(p, "staff-digest:%s:%s", day, to));
        if (!e) {
            (*sent)++;
        }
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e && dm_db_in_transaction(db)) {
        dm_db_rollback(db);
    }
    return e;
}
