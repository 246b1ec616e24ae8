/*
 * capacity.c — see capacity.h. Writes only `capacity` (and audit_log);
 * reads contracts and orders (sql/005) to know what is sold.
 */
#include "shop/capacity.h"

#include <apr_strings.h>
#include <apr_time.h>
#include <string.h>

#include "base/clock.h"
#include "store/audit.h"
#include "base/json.h"
#include "base/validate.h"

#define HISTORY_MAX 200

static void read_row(dm_stmt *st, apr_pool_t *p, dm_capacity_row *c)
{
    c->id = dm_stmt_int64(st, 0);
    c->hashrate_ghs = dm_stmt_int64(st, 1);
    c->note = dm_stmt_dup_text(st, p, 2);
    c->set_by = dm_stmt_is_null(st, 3) ? 0 : dm_stmt_int64(st, 3);
    c->created_at = dm_stmt_int64(st, 4);
}

dm_err *dm_capacity_current(dm_db *db, apr_pool_t *p, dm_capacity_row *out, int *found)
{
    dm_stmt *st;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT id, hashrate_ghs, note, set_by, created_at FROM capacity "
                              "ORDER BY id DESC LIMIT 1",
                              &st);

    *found = 0;
    if (e) {
        return e;
    }
    e = dm_stmt_step(st, p, found);
    if (!e && *found) {
        read_row(st, p, out);
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_capacity_history(dm_db *db, apr_pool_t *p, int limit, apr_array_header_t **rows)
{
    dm_stmt *st;
    int row = 0;
    apr_array_header_t *list = apr_array_make(p, 8, sizeof(dm_capacity_row));
    dm_err *e;

    if (limit < 1 || limit > HISTORY_MAX) {
        return dm_err_make(p, DM_E_INVALID, "limit", "limit must be 1 to %d", HISTORY_MAX);
    }
    e = dm_db_prepare(db, p,
                      "SELECT id, hashrate_ghs, note, set_by, created_at FROM capacity "
                      "ORDER BY id DESC LIMIT ?",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, limit);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        read_row(st, p, apr_array_push(list));
    }
    dm_stmt_done(st);
    if (!e) {
        *rows = list;
    }
    return e;
}

static dm_err *insert_row(dm_db *db, apr_pool_t *p, int64_t staff_id, int64_t ghs, const char *note,
                          dm_capacity_row *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO capacity (hashrate_ghs, note, set_by, created_at) "
                              "VALUES (?, ?, ?, ?) RETURNING id, hashrate_ghs, note, set_by, "
                              "created_at",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, ghs);
    if (note) {
        dm_stmt_bind_text(st, 2, note, strlen(note));
    } else {
        dm_stmt_bind_null(st, 2);
    }
    if (staff_id) {
        dm_stmt_bind_int64(st, 3, staff_id);
    } else {
        dm_stmt_bind_null(st, 3);
    }
    dm_stmt_bind_int64(st, 4, dm_now());
    memset(out, 0, sizeof(*out));
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        read_row(st, p, out);
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *check_args(apr_pool_t *p, int64_t ghs, const char *note)
{
    if (ghs < 0 || ghs > DM_CAPACITY_MAX_GHS) {
        return dm_err_make(p, DM_E_INVALID, "hashrate_ths",
                           "capacity must be 0 to 1000000000 TH/s");
    }
    return note ? dm_validate_text(p, "note", note, DM_CAPACITY_NOTE_MAX, 0) : NULL;
}

static dm_err *set_txn(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip, int64_t ghs,
                       const char *note, dm_capacity_row *out)
{
    dm_capacity_row before;
    int found = 0;
    json_t *b = NULL, *a;
    dm_err *e;

    memset(&before, 0, sizeof(before));
    e = dm_capacity_current(db, p, &before, &found);

    if (!e) {
        e = insert_row(db, p, staff_id, ghs, note, out);
    }
    if (e) {
        return e;
    }
    if (found) {
        b = dm_json_own(p, dm_capacity_row_json(p, &before));
    }
    a = dm_json_own(p, dm_capacity_row_json(p, out));
    return dm_audit_write(db, p, staff_id, "capacity.set", "capacity",
                          apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)out->id), b, a, ip);
}

dm_err *dm_capacity_set(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                        int64_t hashrate_ghs, const char *note, dm_capacity_row *out)
{
    dm_err *e = check_args(p, hashrate_ghs, note);

    if (!e) {
        e = dm_db_begin(db, p);
    }
    if (e) {
        return e;
    }
    e = set_txn(db, p, staff_id, ip, hashrate_ghs, note, out);
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

dm_err *dm_capacity_ensure(dm_db *db, apr_pool_t *p, int64_t hashrate_ghs, const char *note,
                           int *set)
{
    dm_capacity_row cur;
    int found = 0;
    dm_err *e = check_args(p, hashrate_ghs, note);

    memset(&cur, 0, sizeof(cur));
    *set = 0;
    if (!e) {
        e = dm_db_begin(db, p);
    }
    if (e) {
        return e;
    }
    e = dm_capacity_current(db, p, &cur, &found);
    if (!e && !found) {
        e = set_txn(db, p, 0, NULL, hashrate_ghs, note, &cur);
        *set = !e;
    }
    if (e) {
        dm_db_rollback(db);
        *set = 0;
        return e;
    }
    return dm_db_commit(db, p);
}

dm_err *dm_capacity_sold(dm_db *db, apr_pool_t *p, int64_t *sold_ghs)
{
    dm_stmt *st;
    int row = 0;
    /* Two sums in one read; both tables are sql/005's (orders engineer). A
     * partly refunded contract holds only its remaining share (013). */
    dm_err *e =
        dm_db_prepare(db, p,
                      "SELECT (SELECT COALESCE(SUM(hashrate_ghs - released_ghs), 0) FROM contracts "
                      "        WHERE status = 'active' AND expires_at > ?1) + "
                      "       (SELECT COALESCE(SUM(k.hashrate_ghs), 0) FROM orders o "
                      "        JOIN packages k ON k.id = o.package_id WHERE o.status = 'pending' "
                      "        AND (o.hold_until IS NULL OR o.hold_until > ?1))",
                      &st);

    if (e) {
        return e;
    }
    /* a pending order holds its share only until its checkout's lifetime
     * ends (hold_until, shop/orders.c); NULL: an order from before holds */
    dm_stmt_bind_int64(st, 1, dm_now());
    e = dm_stmt_step(st, p, &row);
    *sold_ghs = (!e && row) ? dm_stmt_int64(st, 0) : 0;
    dm_stmt_done(st);
    return e;
}

dm_err *dm_capacity_available(dm_db *db, apr_pool_t *p, int64_t *available_ghs)
{
    dm_capacity_row cur;
    int found = 0;
    int64_t sold = 0;
    dm_err *e = dm_capacity_current(db, p, &cur, &found);

    *available_ghs = 0;
    if (!e && found) {
        e = dm_capacity_sold(db, p, &sold);
    }
    if (!e && found && cur.hashrate_ghs > sold) {
        *available_ghs = cur.hashrate_ghs - sold;
    }
    return e;
}

dm_err *dm_capacity_check(dm_db *db, apr_pool_t *p, int64_t package_id)
{
    dm_stmt *st;
    int row = 0;
    int64_t need = 0, available = 0;
    dm_err *e = dm_db_prepare(db, p, "SELECT hashrate_ghs FROM packages WHERE id = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, package_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        need = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "package %" APR_INT64_T_FMT " does not exist",
                        (apr_int64_t)package_id);
    }
    if (!e) {
        e = dm_capacity_available(db, p, &available);
    }
    if (!e && need > available) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL,
                        "sold out: package %" APR_INT64_T_FMT " needs %" APR_INT64_T_FMT
                        " GH/s and %" APR_INT64_T_FMT " GH/s of capacity is left",
                        (apr_int64_t)package_id, (apr_int64_t)need, (apr_int64_t)available);
    }
    return e;
}

json_t *dm_capacity_row_json(apr_pool_t *p, const dm_capacity_row *c)
{
    json_t *o = json_object();

    json_object_set_new(o, "id", json_integer(c->id));
    json_object_set_new(o, "hashrate_ths", dm_json_ths(c->hashrate_ghs));
    json_object_set_new(o, "hashrate_ghs", json_integer(c->hashrate_ghs));
    json_object_set_new(o, "note", c->note ? json_string(c->note) : json_null());
    json_object_set_new(o, "set_by", c->set_by ? json_integer(c->set_by) : json_null());
    json_object_set_new(o, "created_at", json_string(dm_json_time(p, c->created_at)));
    return o;
}
