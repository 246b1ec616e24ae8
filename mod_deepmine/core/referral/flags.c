/*
 * flags.c — see flags.h. A flag names a pair of members; the only effect
 * of an unresolved flag is in commission.c's release query.
 */
#include "referral/flags.h"

#include <apr_strings.h>
#include <apr_time.h>
#include <string.h>

#include "base/clock.h"
#include "store/audit.h"
#include "base/json.h"
#include "base/validate.h"

#define REASON_MAX 100
#define PAGE_MAX 200

#define FLAG_COLUMNS                                                                               \
    "id, user_id, related_user_id, reason, status, created_at, resolved_by, resolved_at"

static int64_t opt_int(dm_stmt *st, int col)
{
    return dm_stmt_is_null(st, col) ? 0 : dm_stmt_int64(st, col);
}

static void read_flag(dm_stmt *st, apr_pool_t *p, dm_flag *f)
{
    f->id = dm_stmt_int64(st, 0);
    f->user_id = dm_stmt_int64(st, 1);
    f->related_user_id = opt_int(st, 2);
    f->reason = apr_pstrdup(p, dm_stmt_text(st, 3, NULL));
    f->status = apr_pstrdup(p, dm_stmt_text(st, 4, NULL));
    f->created_at = dm_stmt_int64(st, 5);
    f->resolved_by = opt_int(st, 6);
    f->resolved_at = opt_int(st, 7);
}

dm_err *dm_flags_raise(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t related_user_id,
                       const char *reason)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e;

    if (!dm_db_in_transaction(db)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "flags: raise runs in a transaction");
    }
    if (!reason || !*reason || strlen(reason) > REASON_MAX) {
        return dm_err_make(p, DM_E_INVALID, "reason", "a flag reason is 1 to %d bytes", REASON_MAX);
    }
    if ((e = dm_validate_text(p, "reason", reason, REASON_MAX, 0))) {
        return e;
    }
    e = dm_db_prepare(db, p,
                      "SELECT id FROM member_flags WHERE user_id = ? AND "
                      "COALESCE(related_user_id, 0) = ? AND reason = ? AND status = 'open'",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_int64(st, 2, related_user_id);
    dm_stmt_bind_text(st, 3, reason, strlen(reason));
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (e || row) {
        return e;
    }
    e = dm_db_prepare(db, p,
                      "INSERT INTO member_flags (user_id, related_user_id, reason, status, "
                      "created_at) VALUES (?, ?, ?, 'open', ?)",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    if (related_user_id > 0) {
        dm_stmt_bind_int64(st, 2, related_user_id);
    } else {
        dm_stmt_bind_null(st, 2);
    }
    dm_stmt_bind_text(st, 3, reason, strlen(reason));
    dm_stmt_bind_int64(st, 4, dm_now());
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

dm_err *dm_flags_check_registration(dm_db *db, apr_pool_t *p, int64_t user_id)
{
    dm_stmt *st;
    int row = 0;
    int64_t referrer = 0;
    /* Each member's registration is its first acceptance of the terms. */
    dm_err *e =
        dm_db_prepare(db, p,
                      "SELECT u.referrer_id FROM users u "
                      "JOIN legal_acceptances n ON n.id = (SELECT MIN(id) FROM legal_acceptances "
                      "WHERE user_id = u.id AND document = 'terms') "
                      "JOIN legal_acceptances r ON r.id = (SELECT MIN(id) FROM legal_acceptances "
                      "WHERE user_id = u.referrer_id AND document = 'terms') "
                      "WHERE u.id = ? AND n.ip = r.ip AND n.accepted_at - r.accepted_at <= ? "
                      "AND r.accepted_at - n.accepted_at <= ?",
                      &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_int64(st, 2, DM_FLAG_REGISTRATION_WINDOW);
    dm_stmt_bind_int64(st, 3, DM_FLAG_REGISTRATION_WINDOW);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        referrer = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    if (e || !referrer) {
        return e;
    }
    return dm_flags_raise(db, p, user_id, referrer, DM_FLAG_SAME_REGISTRATION_IP);
}

dm_err *dm_flags_list(dm_db *db, apr_pool_t *p, const char *status, int64_t cursor, int limit,
                      apr_array_header_t **rows, int64_t *next_cursor)
{
    dm_stmt *st;
    int row = 0, n = 0, i = 1;
    dm_err *e;

    *next_cursor = 0;
    *rows = apr_array_make(p, limit > 0 ? limit : 1, sizeof(dm_flag));
    if (limit < 1 || limit > PAGE_MAX) {
        return dm_err_make(p, DM_E_INVALID, "limit", "limit must be from 1 to %d", PAGE_MAX);
    }
    if (status && strcmp(status, "open") != 0 && strcmp(status, "cleared") != 0 &&
        strcmp(status, "confirmed") != 0) {
        return dm_err_make(p, DM_E_INVALID, "status", "status is open, cleared or confirmed");
    }
    e = dm_db_prepare(db, p,
                      status ? "SELECT " FLAG_COLUMNS " FROM member_flags WHERE status = ? AND "
                               "id < ? ORDER BY id DESC LIMIT ?"
                             : "SELECT " FLAG_COLUMNS " FROM member_flags WHERE id < ? "
                               "ORDER BY id DESC LIMIT ?",
                      &st);
    if (e) {
        return e;
    }
    if (status) {
        dm_stmt_bind_text(st, i++, status, strlen(status));
    }
    dm_stmt_bind_int64(st, i++, cursor > 0 ? cursor : INT64_MAX);
    dm_stmt_bind_int64(st, i, (int64_t)limit + 1);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        if (n == limit) {
            *next_cursor = APR_ARRAY_IDX(*rows, n - 1, dm_flag).id;
            break;
        }
        read_flag(st, p, apr_array_push(*rows));
        n++;
    }
    dm_stmt_done(st);
    return e;
}

json_t *dm_flag_json(apr_pool_t *p, const dm_flag *f)
{
    json_t *o = json_pack("{s:I,s:I,s:s,s:s,s:s}", "id", (json_int_t)f->id, "user_id",
                          (json_int_t)f->user_id, "reason", f->reason, "status", f->status,
                          "created_at", dm_json_time(p, f->created_at));

    json_object_set_new(o, "related_user_id",
                        f->related_user_id ? json_integer(f->related_user_id) : json_null());
    json_object_set_new(o, "resolved_by",
                        f->resolved_by ? json_integer(f->resolved_by) : json_null());
    json_object_set_new(o, "resolved_at", dm_json_time_or_null(p, f->resolved_at));
    return o;
}

static dm_err *load_flag(dm_db *db, apr_pool_t *p, int64_t id, dm_flag *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, "SELECT " FLAG_COLUMNS " FROM member_flags WHERE id = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        read_flag(st, p, out);
    }
    dm_stmt_done(st);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "no flag %" APR_INT64_T_FMT, (apr_int64_t)id);
    }
    return e;
}

static dm_err *resolve_txn(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                           int64_t flag_id, const char *status, dm_flag *out)
{
    dm_flag before;
    dm_stmt *st;
    int row;
    dm_err *e = load_flag(db, p, flag_id, &before);

    if (e) {
        return e;
    }
    if (strcmp(before.status, "open") != 0) {
        return dm_err_make(p, DM_E_CONFLICT, NULL, "flag %" APR_INT64_T_FMT " is already %s",
                           (apr_int64_t)flag_id, before.status);
    }
    e = dm_db_prepare(db, p,
                      "UPDATE member_flags SET status = ?, resolved_by = ?, resolved_at = ? "
                      "WHERE id = ? AND status = 'open'",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_text(st, 1, status, strlen(status));
    if (staff_id > 0) {
        dm_stmt_bind_int64(st, 2, staff_id);
    } else {
        dm_stmt_bind_null(st, 2);
    }
    dm_stmt_bind_int64(st, 3, dm_now());
    dm_stmt_bind_int64(st, 4, flag_id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e) {
        e = load_flag(db, p, flag_id, out);
    }
    if (!e) {
        e = dm_audit_write(
            db, p, staff_id, strcmp(status, "cleared") == 0 ? "flag.clear" : "flag.confirm", "flag",
            apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)flag_id),
            dm_json_own(p, dm_flag_json(p, &before)), dm_json_own(p, dm_flag_json(p, out)), ip);
    }
    return e;
}

dm_err *dm_flags_resolve(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                         int64_t flag_id, const char *status, dm_flag *out)
{
    dm_err *e;

    if (!status || (strcmp(status, "cleared") != 0 && strcmp(status, "confirmed") != 0)) {
        return dm_err_make(p, DM_E_INVALID, "status", "a flag is resolved as cleared or confirmed");
    }
    if ((e = dm_db_begin(db, p))) {
        return e;
    }
    e = resolve_txn(db, p, staff_id, ip, flag_id, status, out);
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}
