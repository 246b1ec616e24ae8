/*
 * audit.c — see audit.h. The one invariant: a row is written only inside
 * the transaction of the action it records.
 */
#include "store/audit.h"

#include <apr_strings.h>
#include <apr_time.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"

#define AUDIT_LIMIT_MAX 200

#define AUDIT_SELECT                                                                               \
    "SELECT a.id, a.staff_id, s.email, a.action, a.target_type, a.target_id, a.before_json, "      \
    "a.after_json, a.ip, a.created_at FROM audit_log a LEFT JOIN staff s ON s.id = a.staff_id "

dm_err *dm_audit_write(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *action,
                       const char *target_type, const char *target_id, const json_t *before,
                       const json_t *after, const char *ip)
{
    dm_stmt *st;
    int row = 0;
    size_t len;
    const char *text;
    dm_err *e;

    if (!dm_db_in_transaction(db)) {
        /* A bug in the caller: an audit row outside the action's
         * transaction could record an action that never happened. */
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "audit: %s must be written inside the action's transaction",
                           action ? action : "(no action)");
    }
    if (!action || !*action) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "audit: an entry needs an action");
    }
    e = dm_db_prepare(db, p,
                      "INSERT INTO audit_log (staff_id, action, target_type, target_id, "
                      "before_json, after_json, ip, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                      "RETURNING id",
                      &st);
    if (e) {
        return e;
    }
    if (staff_id > 0) {
        dm_stmt_bind_int64(st, 1, staff_id);
    } else {
        dm_stmt_bind_null(st, 1);
    }
    dm_stmt_bind_str(st, 2, action);
    dm_stmt_bind_str(st, 3, target_type);
    dm_stmt_bind_str(st, 4, target_id);
    if (before) {
        text = dm_json_dump(p, before, &len);
        dm_stmt_bind_text(st, 5, text, len);
    } else {
        dm_stmt_bind_null(st, 5);
    }
    if (after) {
        text = dm_json_dump(p, after, &len);
        dm_stmt_bind_text(st, 6, text, len);
    } else {
        dm_stmt_bind_null(st, 6);
    }
    dm_stmt_bind_str(st, 7, ip ? ip : DM_AUDIT_CONSOLE_IP);
    dm_stmt_bind_int64(st, 8, dm_now());
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

dm_err *dm_audit_list(dm_db *db, apr_pool_t *p, const dm_audit_filter *f, int64_t cursor, int limit,
                      apr_array_header_t **rows, int64_t *next_cursor)
{
    static const dm_audit_filter none = {NULL, NULL, NULL};
    dm_stmt *st;
    int row = 0, i = 1;
    const char *sql;
    apr_array_header_t *list;
    dm_err *e;

    f = f ? f : &none;
    *next_cursor = 0;
    if (limit < 1 || limit > AUDIT_LIMIT_MAX) {
        return dm_err_make(p, DM_E_INVALID, "limit", "limit must be from 1 to %d", AUDIT_LIMIT_MAX);
    }
    if (f->target_id && !f->target_type) {
        return dm_err_make(p, DM_E_INVALID, "target_id", "target_id needs target_type");
    }
    /* Three texts rather than "? IS NULL OR …" so a target filter uses the
     * (target_type, target_id, id) index; without one, the walk is the
     * rowid backwards. */
    if (f->target_id) {
        sql = AUDIT_SELECT "WHERE a.target_type = ? AND a.target_id = ? AND a.id < ? "
                           "AND (? IS NULL OR a.action = ?) ORDER BY a.id DESC LIMIT ?";
    } else if (f->target_type) {
        sql = AUDIT_SELECT "WHERE a.target_type = ? AND a.id < ? "
                           "AND (? IS NULL OR a.action = ?) ORDER BY a.id DESC LIMIT ?";
    } else {
        sql = AUDIT_SELECT "WHERE a.id < ? AND (? IS NULL OR a.action = ?) "
                           "ORDER BY a.id DESC LIMIT ?";
    }
    e = dm_db_prepare(db, p, sql, &st);
    if (e) {
        return e;
    }
    if (f->target_type) {
        dm_stmt_bind_str(st, i++, f->target_type);
    }
    if (f->target_id) {
        dm_stmt_bind_str(st, i++, f->target_id);
    }
    dm_stmt_bind_int64(st, i++, cursor > 0 ? cursor : INT64_MAX);
    dm_stmt_bind_str(st, i++, f->action);
    dm_stmt_bind_str(st, i++, f->action);
    /* one more than asked: whether there is a next page */
    dm_stmt_bind_int64(st, i, (int64_t)limit + 1);
    list = apr_array_make(p, limit, sizeof(dm_audit_entry));
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        dm_audit_entry *a;
        if (list->nelts == limit) {
            *next_cursor = APR_ARRAY_IDX(list, list->nelts - 1, dm_audit_entry).id;
            break;
        }
        a = apr_array_push(list);
        a->id = dm_stmt_int64(st, 0);
        a->staff_id = dm_stmt_is_null(st, 1) ? 0 : dm_stmt_int64(st, 1);
        a->staff_email = dm_stmt_dup_text(st, p, 2);
        a->action = apr_pstrdup(p, dm_stmt_text(st, 3, NULL));
        a->target_type = dm_stmt_dup_text(st, p, 4);
        a->target_id = dm_stmt_dup_text(st, p, 5);
        a->before_json = dm_stmt_dup_text(st, p, 6);
        a->after_json = dm_stmt_dup_text(st, p, 7);
        a->ip = apr_pstrdup(p, dm_stmt_text(st, 8, NULL));
        a->created_at = dm_stmt_int64(st, 9);
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    *rows = list;
    return NULL;
}

/* Stored JSON text back as a value (null when absent). */
static json_t *stored_json(const char *text)
{
    json_t *v;

    if (!text) {
        return json_null();
    }
    v = json_loads(text, JSON_DECODE_ANY, NULL);
    return v ? v : json_string(text);
}

json_t *dm_audit_entry_json(apr_pool_t *p, const dm_audit_entry *a)
{
    json_t *o = json_object();

    json_object_set_new(o, "id", json_integer(a->id));
    json_object_set_new(o, "staff",
                        a->staff_id ? json_pack("{s:I,s:s?}", "id", (json_int_t)a->staff_id,
                                                "email", a->staff_email)
                                    : json_null());
    json_object_set_new(o, "action", json_string(a->action));
    json_object_set_new(o, "target_type",
                        a->target_type ? json_string(a->target_type) : json_null());
    json_object_set_new(o, "target_id", a->target_id ? json_string(a->target_id) : json_null());
    json_object_set_new(o, "before", stored_json(a->before_json));
    json_object_set_new(o, "after", stored_json(a->after_json));
    json_object_set_new(o, "ip", json_string(a->ip));
    json_object_set_new(o, "created_at", json_string(dm_json_time(p, a->created_at)));
    return o;
}
