/*
 * pool_payouts.c — see pool_payouts.h. The overlap rule is checked inside
 * the recording transaction (BEGIN IMMEDIATE: no other writer between the
 * check and the insert), against both kinds: an hour payout meets the day
 * payout of its day, a day payout meets any hour payout inside it.
 */
#include "shop/pool_payouts.h"

#include <apr_strings.h>
#include <string.h>

#include "store/audit.h"
#include "base/clock.h"
#include "jobs/jobs.h"
#include "base/json.h"
#include "ledger/ledger.h"
#include "base/validate.h"

#define HOUR 3600
#define DAY 86400

#define PAYOUT_COLUMNS                                                                             \
    "id, period_kind, period_start, period_end, amount_micros, currency, note, recorded_by, "      \
    "created_at, distributed_at, contracts, hash_seconds, credits_micros, fee_micros, "            \
    "remainder_micros"

static int64_t opt_int(dm_stmt *st, int col)
{
    return dm_stmt_is_null(st, col) ? 0 : dm_stmt_int64(st, col);
}

static void read_payout(dm_stmt *st, apr_pool_t *p, dm_pool_payout *r)
{
    r->id = dm_stmt_int64(st, 0);
    r->period_kind = strcmp(dm_stmt_text(st, 1, NULL), "day") == 0 ? "day" : "hour";
    r->period_start = dm_stmt_int64(st, 2);
    r->period_end = dm_stmt_int64(st, 3);
    r->amount_micros = dm_stmt_int64(st, 4);
    r->currency = apr_pstrdup(p, dm_stmt_text(st, 5, NULL));
    r->note = dm_stmt_dup_text(st, p, 6);
    r->recorded_by = opt_int(st, 7);
    r->created_at = dm_stmt_int64(st, 8);
    r->distributed_at = opt_int(st, 9);
    r->contracts = opt_int(st, 10);
    r->hash_seconds = opt_int(st, 11);
    r->credits_micros = opt_int(st, 12);
    r->fee_micros = opt_int(st, 13);
    r->remainder_micros = opt_int(st, 14);
}

/* Any payout whose period meets [start, end): the same-kind row and the
 * other kind's, in one indexed range read (a day payout starts at most
 * a day before anything it could meet). */
static dm_err *overlapping(dm_db *db, apr_pool_t *p, int64_t start, int64_t end,
                           dm_pool_payout *out, int *found)
{
    dm_stmt *st;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT " PAYOUT_COLUMNS " FROM pool_payouts "
                              "WHERE period_start > ? AND period_start < ? AND period_end > ? "
                              "ORDER BY period_start LIMIT 1",
                              &st);

    *found = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, start - DAY);
    dm_stmt_bind_int64(st, 2, end);
    dm_stmt_bind_int64(st, 3, start);
    e = dm_stmt_step(st, p, found);
    if (!e && *found) {
        read_payout(st, p, out);
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *check_input(apr_pool_t *p, const char *kind, int64_t start, int64_t amount,
                           const char *currency, const char *note, int64_t *end)
{
    int64_t len;
    dm_err *e;

    if (!kind || (strcmp(kind, "hour") != 0 && strcmp(kind, "day") != 0)) {
        return dm_err_make(p, DM_E_INVALID, "period_kind", "period_kind is hour or day");
    }
    len = strcmp(kind, "day") == 0 ? DAY : HOUR;
    if (start <= 0 || start % len != 0) {
        return dm_err_make(
            p, DM_E_INVALID, "period_start", "period_start must be the start of a UTC %s (e.g. %s)",
            kind, dm_json_time(p, len == DAY ? dm_day_floor(dm_now()) : dm_hour_floor(dm_now())));
    }
    *end = start + len;
    if (*end > dm_now()) {
        return dm_err_make(p, DM_E_INVALID, "period_start",
                           "the %s starting %s has not ended yet: record the pool's payout once "
                           "it has",
                           kind, dm_json_time(p, start));
    }
    if (amount <= 0) {
        return dm_err_make(p, DM_E_INVALID, "amount_micros",
                           "amount_micros is the payout in micro-units, more than zero");
    }
    if (!currency || strcmp(currency, DM_LEDGER_CURRENCY) != 0) {
        return dm_err_make(p, DM_E_INVALID, "currency", "payouts are in the platform currency, %s",
                           DM_LEDGER_CURRENCY);
    }
    if (note && (e = dm_validate_text(p, "note", note, DM_POOL_NOTE_MAX, 0))) {
        return e;
    }
    return NULL;
}

/* Asks the daemon for the pool-accrual period that distributes the
 * payout, so a waiting hour is caught up within seconds, not at its next
 * re-check. Best effort: the re-check finds it anyway. */
static dm_err *nudge(dm_db *db, apr_pool_t *p, const dm_pool_payout *r)
{
    return dm_job_request(db, p, "pool-accrual", r->period_end - HOUR, "pool payout recorded");
}

static dm_err *record_txn(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                          dm_pool_payout *r)
{
    dm_pool_payout other;
    dm_stmt *st;
    int found = 0, row = 0;
    json_t *after;
    dm_err *e = overlapping(db, p, r->period_start, r->period_end, &other, &found);

    if (!e && found) {
        return dm_err_make(p, DM_E_CONFLICT, "period_start",
                           "the %s payout of %s (%s) already covers this period; an hour and a "
                           "day payout may not overlap",
                           other.period_kind, dm_json_time(p, other.period_start),
                           other.distributed_at ? "distributed" : "not distributed yet");
    }
    if (!e) {
        e = dm_db_prepare(db, p,
                          "INSERT INTO pool_payouts (period_kind, period_start, period_end, "
                          "amount_micros, currency, note, recorded_by, created_at) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                          &st);
    }
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, r->period_kind);
    dm_stmt_bind_int64(st, 2, r->period_start);
    dm_stmt_bind_int64(st, 3, r->period_end);
    dm_stmt_bind_int64(st, 4, r->amount_micros);
    dm_stmt_bind_str(st, 5, r->currency);
    dm_stmt_bind_str(st, 6, r->note);
    if (staff_id) {
        dm_stmt_bind_int64(st, 7, staff_id);
    } else {
        dm_stmt_bind_null(st, 7);
    }
    dm_stmt_bind_int64(st, 8, r->created_at);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        r->id = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    after = dm_json_own(p, dm_pool_payout_json(p, r));
    e = dm_audit_write(db, p, staff_id, "pool_payout.record", "pool_payout",
                       apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)r->id), NULL, after, ip);
    return e ? e : nudge(db, p, r);
}

dm_err *dm_pool_payout_record(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                              const char *kind, int64_t period_start, int64_t amount_micros,
                              const char *currency, const char *note, dm_pool_payout *out)
{
    int64_t end = 0;
    dm_err *e = check_input(p, kind, period_start, amount_micros, currency, note, &end);

    if (e) {
        return e;
    }
    memset(out, 0, sizeof(*out));
    out->period_kind = strcmp(kind, "day") == 0 ? "day" : "hour";
    out->period_start = period_start;
    out->period_end = end;
    out->amount_micros = amount_micros;
    out->currency = currency;
    out->note = note && *note ? note : NULL;
    out->recorded_by = staff_id;
    out->created_at = dm_now();
    if ((e = dm_db_begin(db, p))) {
        return e;
    }
    e = record_txn(db, p, staff_id, ip, out);
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

dm_err *dm_pool_payout_covering(dm_db *db, apr_pool_t *p, int64_t hour, dm_pool_payout *out,
                                int *found)
{
    dm_stmt *st;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT " PAYOUT_COLUMNS " FROM pool_payouts "
                              "WHERE (period_kind = 'hour' AND period_start = ?) "
                              "OR (period_kind = 'day' AND period_start = ?) "
                              "ORDER BY id LIMIT 1",
                              &st);

    *found = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, hour);
    dm_stmt_bind_int64(st, 2, dm_day_floor(hour));
    e = dm_stmt_step(st, p, found);
    if (!e && *found) {
        read_payout(st, p, out);
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_pool_payout_mark_distributed(dm_db *db, apr_pool_t *p, const dm_pool_payout *r)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e;

    if (r->credits_micros + r->fee_micros + r->remainder_micros != r->amount_micros) {
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "pool payout %" APR_INT64_T_FMT " does not balance: %" APR_INT64_T_FMT
                           " + %" APR_INT64_T_FMT " + %" APR_INT64_T_FMT " != %" APR_INT64_T_FMT,
                           (apr_int64_t)r->id, (apr_int64_t)r->credits_micros,
                           (apr_int64_t)r->fee_micros, (apr_int64_t)r->remainder_micros,
                           (apr_int64_t)r->amount_micros);
    }
    e = dm_db_prepare(db, p,
                      "UPDATE pool_payouts SET distributed_at = ?, contracts = ?, "
                      "hash_seconds = ?, credits_micros = ?, fee_micros = ?, remainder_micros = ? "
                      "WHERE id = ? AND distributed_at IS NULL",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, r->distributed_at);
    dm_stmt_bind_int64(st, 2, r->contracts);
    dm_stmt_bind_int64(st, 3, r->hash_seconds);
    dm_stmt_bind_int64(st, 4, r->credits_micros);
    dm_stmt_bind_int64(st, 5, r->fee_micros);
    dm_stmt_bind_int64(st, 6, r->remainder_micros);
    dm_stmt_bind_int64(st, 7, r->id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e && dm_db_changes(db) != 1) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL,
                        "pool payout %" APR_INT64_T_FMT " was distributed already",
                        (apr_int64_t)r->id);
    }
    return e;
}

dm_err *dm_pool_payouts_list(dm_db *db, apr_pool_t *p, int64_t cursor, int limit,
                             apr_array_header_t **rows, int64_t *next)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e;

    *next = 0;
    *rows = apr_array_make(p, limit > 0 ? limit : 1, sizeof(dm_pool_payout));
    if (limit < 1 || limit > DM_POOL_PAGE_MAX) {
        return dm_err_make(p, DM_E_INVALID, "limit", "limit must be 1 to %d", DM_POOL_PAGE_MAX);
    }
    e = dm_db_prepare(db, p,
                      "SELECT " PAYOUT_COLUMNS " FROM pool_payouts WHERE id < ? "
                      "ORDER BY id DESC LIMIT ?",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, cursor > 0 ? cursor : INT64_MAX);
    dm_stmt_bind_int64(st, 2, (int64_t)limit + 1);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        if ((*rows)->nelts == limit) {
            *next = APR_ARRAY_IDX(*rows, limit - 1, dm_pool_payout).id;
            break;
        }
        read_payout(st, p, apr_array_push(*rows));
    }
    dm_stmt_done(st);
    return e;
}

json_t *dm_pool_payout_json(apr_pool_t *p, const dm_pool_payout *r)
{
    json_t *o = json_object();

    json_object_set_new(o, "id", json_integer(r->id));
    json_object_set_new(o, "period_kind", json_string(r->period_kind));
    json_object_set_new(o, "period_start", json_string(dm_json_time(p, r->period_start)));
    json_object_set_new(o, "period_end", json_string(dm_json_time(p, r->period_end)));
    json_object_set_new(o, "amount_micros", json_integer(r->amount_micros));
    json_object_set_new(o, "currency", json_string(r->currency));
    json_object_set_new(o, "note", r->note ? json_string(r->note) : json_null());
    json_object_set_new(o, "recorded_by",
                        r->recorded_by ? json_integer(r->recorded_by) : json_null());
    json_object_set_new(o, "created_at", dm_json_time_or_null(p, r->created_at));
    json_object_set_new(o, "status", json_string(r->distributed_at ? "distributed" : "pending"));
    json_object_set_new(o, "distributed_at", dm_json_time_or_null(p, r->distributed_at));
    if (r->distributed_at) {
        json_object_set_new(
            o, "reconciliation",
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:b}", "contracts", (json_int_t)r->contracts,
                      "hash_seconds", (json_int_t)r->hash_seconds, "credits_micros",
                      (json_int_t)r->credits_micros, "fee_micros", (json_int_t)r->fee_micros,
                      "remainder_micros", (json_int_t)r->remainder_micros, "balanced",
                      r->credits_micros + r->fee_micros + r->remainder_micros == r->amount_micros));
    } else {
        json_object_set_new(o, "reconciliation", json_null());
    }
    return o;
}
