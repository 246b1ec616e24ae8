/*
 * payments.c — see payments.h. The invariant: a provider event is recorded
 * at most once per plugin, and whatever is done because of it happens in
 * the transaction that records it, so a replay, a retry or two concurrent
 * deliveries of one event act exactly once.
 */
#include "shop/payments.h"

#include <apr_strings.h>
#include <apr_time.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/validate.h"
#include "shop/orders.h"
#include "store/db_group.h"
#include "store/db_pool.h"

/* "paid", "failed", "refunded", "expired", "ignored"; NULL when unknown. */
static const char *dm_payment_status_name(dm_payment_event_status st)
{
    switch (st) {
    case DM_PAY_PAID:
        return "paid";
    case DM_PAY_FAILED:
        return "failed";
    case DM_PAY_REFUNDED:
        return "refunded";
    case DM_PAY_EXPIRED:
        return "expired";
    case DM_PAY_IGNORED:
        return "ignored";
    case DM_PAY_DISPUTE_OPENED:
        return "dispute_opened";
    case DM_PAY_DISPUTE_WON:
        return "dispute_won";
    case DM_PAY_DISPUTE_LOST:
        return "dispute_lost";
    case DM_PAY_NEEDS_REVIEW:
        return "needs_review";
    case DM_PAY_PENDING:
        return "pending";
    }
    return NULL;
}

/* An id or reference as a provider sends it: bounded, no control bytes. */
static int ref_ok(dm_str s)
{
    if (s.len > DM_PAYMENT_REF_MAX || (s.len && !s.ptr)) {
        return 0;
    }
    return !dm_has_control_bytes(s.ptr, s.len);
}

static int currency_ok(dm_str s)
{
    if (s.len == 0) {
        return 1; /* an event may carry no amount (ignored types) */
    }
    if (s.len != 3 || !s.ptr) {
        return 0;
    }
    for (size_t i = 0; i < 3; i++) {
        if (s.ptr[i] < 'A' || s.ptr[i] > 'Z') {
            return 0;
        }
    }
    return 1;
}

static void bind_str_or_null_if_empty(dm_stmt *st, int idx, dm_str s)
{
    if (s.len) {
        dm_stmt_bind_text(st, idx, s.ptr, s.len);
    } else {
        dm_stmt_bind_null(st, idx);
    }
}

static dm_err *check_event(apr_pool_t *p, const dm_payment_event *ev)
{
    if (ev->event_id.len == 0 || !ref_ok(ev->event_id)) {
        return dm_err_make(p, DM_E_INVALID, "event_id",
                           "the event id must be 1 to %d bytes without control characters",
                           DM_PAYMENT_REF_MAX);
    }
    if (!ref_ok(ev->order_id)) {
        return dm_err_make(p, DM_E_INVALID, "order_id",
                           "the order id must be at most %d bytes without control characters",
                           DM_PAYMENT_REF_MAX);
    }
    if (!ref_ok(ev->provider_ref)) {
        return dm_err_make(p, DM_E_INVALID, "provider_ref",
                           "the provider reference must be at most %d bytes without control "
                           "characters",
                           DM_PAYMENT_REF_MAX);
    }
    if (!dm_payment_status_name(ev->status)) {
        return dm_err_make(p, DM_E_INVALID, "status", "unknown event status %d", (int)ev->status);
    }
    if (ev->amount_micros < 0) {
        return dm_err_make(p, DM_E_INVALID, "amount_micros", "the amount must not be negative");
    }
    if (!ref_ok(ev->payment_id)) {
        return dm_err_make(p, DM_E_INVALID, "payment_id",
                           "the payment id must be at most %d bytes without control characters",
                           DM_PAYMENT_REF_MAX);
    }
    if (ev->detail.len > 500 ||
        (ev->detail.len &&
         (!ev->detail.ptr || dm_has_control_bytes(ev->detail.ptr, ev->detail.len)))) {
        return dm_err_make(p, DM_E_INVALID, "detail",
                           "the detail must be at most 500 bytes without control characters");
    }
    if (ev->review_reason < DM_REVIEW_NONE || ev->review_reason > DM_REVIEW_OTHER) {
        return dm_err_make(p, DM_E_INVALID, "review_reason", "unknown review reason %d",
                           (int)ev->review_reason);
    }
    if (!currency_ok(ev->currency)) {
        return dm_err_make(p, DM_E_INVALID, "currency",
                           "the currency must be three capital letters (ISO 4217)");
    }
    return NULL;
}

static const char *review_name(dm_payment_review_reason r)
{
    switch (r) {
    case DM_REVIEW_UNDERPAID:
        return "underpaid";
    case DM_REVIEW_OVERPAID:
        return "overpaid";
    case DM_REVIEW_PAID_AFTER_EXPIRY:
        return "paid_after_expiry";
    case DM_REVIEW_UNKNOWN_CURRENCY:
        return "unknown_currency";
    case DM_REVIEW_OTHER:
        return "other";
    case DM_REVIEW_NONE:
        break;
    }
    return NULL;
}

dm_err *dm_payment_event_record(dm_db *db, apr_pool_t *p, const char *plugin,
                                const dm_payment_event *ev, const char *raw_body, size_t raw_len,
                                dm_payment_recorded *out)
{
    return dm_payment_event_record_from(db, p, plugin, "webhook", ev, raw_body, raw_len, out);
}

/* What one event's transaction needs and gives (dm_db_write_txn). */
typedef struct record_args {
    const char *plugin;
    const char *source;
    const dm_payment_event *ev;
    const char *raw_body;
    size_t raw_len;
    dm_payment_recorded *out;
    const char *outcome; /* the event's outcome once applied */
} record_args;

/* The event's transaction: recorded (or found recorded), then applied. Runs
 * under dm_db_write_txn, possibly with other events in one commit, and
 * possibly twice (dm_db_pool_write_txn): every output is set afresh. */
static dm_err *record_txn(dm_db *db, apr_pool_t *p, void *arg)
{
    record_args *a = arg;
    const dm_payment_event *ev = a->ev;
    dm_payment_recorded *out = a->out;
    const char *review;
    dm_stmt *st = NULL;
    int row = 0;
    dm_err *e;

    memset(out, 0, sizeof(*out));
    a->outcome = NULL;

    /* ON CONFLICT DO NOTHING rather than a SELECT first: two deliveries of
     * one event racing on two children both reach this line, and the
     * UNIQUE (plugin, event_id) index lets exactly one of them insert. */
    e = dm_db_prepare(db, p,
                      "INSERT INTO payment_events (plugin, event_id, status, order_ref, "
                      "provider_ref, amount_micros, currency, raw_body, received_at, "
                      "payment_id, review_reason, detail, source) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                      "ON CONFLICT (plugin, event_id) DO NOTHING RETURNING id",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_text(st, 1, a->plugin, strlen(a->plugin));
    dm_stmt_bind_text(st, 2, ev->event_id.ptr, ev->event_id.len);
    dm_stmt_bind_text(st, 3, dm_payment_status_name(ev->status),
                      strlen(dm_payment_status_name(ev->status)));
    bind_str_or_null_if_empty(st, 4, ev->order_id);
    bind_str_or_null_if_empty(st, 5, ev->provider_ref);
    dm_stmt_bind_int64(st, 6, ev->amount_micros);
    bind_str_or_null_if_empty(st, 7, ev->currency);
    dm_stmt_bind_text(st, 8, a->raw_body ? a->raw_body : "", a->raw_body ? a->raw_len : 0);
    dm_stmt_bind_int64(st, 9, dm_now());
    bind_str_or_null_if_empty(st, 10, ev->payment_id);
    review = review_name(ev->review_reason);
    if (review) {
        dm_stmt_bind_text(st, 11, review, strlen(review));
    } else {
        dm_stmt_bind_null(st, 11);
    }
    bind_str_or_null_if_empty(st, 12, ev->detail);
    dm_stmt_bind_text(st, 13, a->source, strlen(a->source));
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        out->id = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    if (dm_db_changes(db) == 0) {
        int found = 0;
        out->duplicate = 1;
        e = dm_db_prepare(
            db, p, "SELECT id, outcome FROM payment_events WHERE plugin = ? AND event_id = ?", &st);
        if (e) {
            return e;
        }
        dm_stmt_bind_text(st, 1, a->plugin, strlen(a->plugin));
        dm_stmt_bind_text(st, 2, ev->event_id.ptr, ev->event_id.len);
        e = dm_stmt_step(st, p, &found);
        if (!e && found) {
            out->id = dm_stmt_int64(st, 0);
            out->outcome = dm_stmt_dup_text(st, p, 1);
        }
        dm_stmt_done(st);
        /* Nothing to do: the first delivery did (or is doing) the work. */
        return e;
    }

    /* Act on the event in this same transaction (core/orders.c), then
     * note what was done on the event's row: the event and its effects
     * commit together, or neither does and the provider retries. */
    e = dm_orders_apply_event_from(db, p, a->plugin, a->source, ev, &a->outcome);
    if (e) {
        dm_log(DM_L_ERR, "DM00706: payment event %s/%.*s could not be applied: %s", a->plugin,
               (int)ev->event_id.len, ev->event_id.ptr, e->message);
        return e;
    }
    e = dm_db_prepare(db, p, "UPDATE payment_events SET processed_at = ?, outcome = ? WHERE id = ?",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, dm_now());
    dm_stmt_bind_text(st, 2, a->outcome, strlen(a->outcome));
    dm_stmt_bind_int64(st, 3, out->id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

/* The event recorded through db, or (pool given) through a connection of
 * pool that the call holds only if it must (dm_db_pool_write_txn). */
static dm_err *record_event(dm_db *db, dm_db_pool *pool, apr_pool_t *p, const char *plugin,
                            const char *source, const dm_payment_event *ev, const char *raw_body,
                            size_t raw_len, dm_payment_recorded *out)
{
    record_args a;
    dm_err *e;

    memset(out, 0, sizeof(*out));
    if (!source || (strcmp(source, "webhook") != 0 && strcmp(source, "janitor") != 0 &&
                    strcmp(source, "return") != 0)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "payments: unknown event source");
    }
    if (!plugin || !*plugin) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "payments: an event needs its plugin's name");
    }
    e = check_event(p, ev);
    if (e) {
        return e;
    }
    memset(&a, 0, sizeof(a));
    a.plugin = plugin;
    a.source = source;
    a.ev = ev;
    a.raw_body = raw_body;
    a.raw_len = raw_len;
    a.out = out;
    /* One event, one transaction of its own as far as it can tell; other
     * events' may share its commit (store/db_group.h). */
    e = pool ? dm_db_pool_write_txn(pool, p, record_txn, &a)
             : dm_db_write_txn(db, p, record_txn, &a);
    if (e) {
        return e;
    }
    if (out->duplicate) {
        dm_log(DM_L_INFO, "payment event %s/%.*s received again: nothing changed", plugin,
               (int)ev->event_id.len, ev->event_id.ptr);
        return NULL;
    }
    out->outcome = a.outcome;
    dm_log(DM_L_INFO, "payment event %s/%.*s recorded as #%" APR_INT64_T_FMT ": %s, %s", plugin,
           (int)ev->event_id.len, ev->event_id.ptr, (apr_int64_t)out->id,
           dm_payment_status_name(ev->status), a.outcome);
    return NULL;
}

dm_err *dm_payment_event_record_from(dm_db *db, apr_pool_t *p, const char *plugin,
                                     const char *source, const dm_payment_event *ev,
                                     const char *raw_body, size_t raw_len, dm_payment_recorded *out)
{
    return record_event(db, NULL, p, plugin, source, ev, raw_body, raw_len, out);
}

dm_err *dm_payment_event_record_pooled(dm_db_pool *pool, apr_pool_t *p, const char *plugin,
                                       const dm_payment_event *ev, const char *raw_body,
                                       size_t raw_len, dm_payment_recorded *out)
{
    return record_event(NULL, pool, p, plugin, "webhook", ev, raw_body, raw_len, out);
}
