/*
 * janitor.c — see janitor.h. The invariant: the janitor never decides what
 * a payment did; it asks the plugin and hands the answer to the path every
 * webhook takes, so a webhook racing it credits once (payment_events'
 * UNIQUE event id and the orders' UNIQUE payment identity), and it never
 * holds a transaction across a plugin call.
 */
#include "shop/janitor.h"

#include <apr_strings.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "plugins/payment.h"
#include "shop/orders.h"
#include "shop/payments.h"

#define JANITOR_BATCH 200

static dm_payment_rules rules = {DM_PAYMENT_SETTLE_DEFAULT_S, DM_CHECKOUT_HOLD_DEFAULT_S,
                                 DM_PENDING_ORDERS_DEFAULT};

void dm_payment_rules_set(const dm_payment_rules *r)
{
    rules = *r;
}

const dm_payment_rules *dm_payment_rules_get(void)
{
    return &rules;
}

typedef struct due_order {
    int64_t id;
    const char *gateway;
    const char *provider_ref; /* NULL: no checkout */
    int64_t hold_until;       /* created_at + the hold when none was stored */
} due_order;

static dm_err *due_batch(dm_db *db, apr_pool_t *p, int64_t now, int64_t after, int limit,
                         apr_array_header_t *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT id, gateway, provider_ref, "
                              "COALESCE(hold_until, created_at + ?) FROM orders "
                              "WHERE status = 'pending' AND gateway != 'balance' AND "
                              "created_at <= ? AND id > ? ORDER BY id LIMIT ?",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, rules.checkout_hold_s);
    dm_stmt_bind_int64(st, 2, now - rules.settle_s);
    dm_stmt_bind_int64(st, 3, after);
    dm_stmt_bind_int64(st, 4, limit);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        due_order *d = apr_array_push(out);
        d->id = dm_stmt_int64(st, 0);
        d->gateway = dm_stmt_dup_text(st, p, 1);
        d->provider_ref = dm_stmt_dup_text(st, p, 2);
        d->hold_until = dm_stmt_int64(st, 3);
    }
    dm_stmt_done(st);
    return e;
}

/* pending -> expired, with its history, in one transaction. */
static dm_err *expire(dm_db *db, apr_pool_t *p, int64_t id, const char *why, int *changed)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_begin(db, p);

    *changed = 0;
    if (!e) {
        e = dm_db_prepare(db, p,
                          "UPDATE orders SET status = 'expired', hold_until = NULL, updated_at = ? "
                          "WHERE id = ? AND status = 'pending'",
                          &st);
    }
    if (!e) {
        dm_stmt_bind_int64(st, 1, dm_now());
        dm_stmt_bind_int64(st, 2, id);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    if (!e) {
        *changed = dm_db_changes(db) == 1;
        if (*changed) {
            e = dm_order_history_add(db, p, id, "expired", "janitor", why);
        }
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

static dm_str str_of(const char *s)
{
    dm_str out = {s, s ? strlen(s) : 0};
    return out;
}

/* The plugin's answer for one order, through the webhook's path. */
static dm_err *settle(dm_db *db, apr_pool_t *p, const dm_loaded_plugin *pl, const dm_plugin_host *h,
                      const due_order *d, dm_janitor_stats *out)
{
    dm_payment_event ev;
    dm_payment_recorded rec;
    dm_message msg;
    const char *oid = apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)d->id);
    const char *ident, *raw;
    dm_status rc = dm_payment_query(h, pl, p, d->provider_ref, &ev, &msg);
    dm_err *e;

    if (rc != DM_OK) {
        out->failures++;
        dm_log(DM_L_NOTICE,
               "DM01011: janitor: gateway %s could not tell the state of order %s (%d): %s",
               d->gateway, oid, (int)rc, msg.text[0] ? msg.text : "no reason given");
        return NULL;
    }
    out->queried++;
    /* The answer is about this order and this checkout. */
    if (ev.order_id.len == 0) {
        ev.order_id = str_of(oid);
    }
    if (ev.provider_ref.len == 0) {
        ev.provider_ref = str_of(d->provider_ref);
    }
    ident = ev.payment_id.len ? apr_pstrmemdup(p, ev.payment_id.ptr, ev.payment_id.len)
                              : d->provider_ref;
    if (ev.event_id.len == 0) {
        /* one event per (order, state, payment): asking again changes
         * nothing, a state that moves is a new event */
        ev.event_id = str_of(apr_psprintf(p, "janitor:%s:%d:%.120s", oid, (int)ev.status, ident));
    }
    raw = apr_psprintf(p,
                       "{\"source\":\"janitor\",\"order\":%s,\"status\":%d,\"amount_micros\":"
                       "%" APR_INT64_T_FMT "}",
                       oid, (int)ev.status, (apr_int64_t)ev.amount_micros);
    e = dm_payment_event_record_from(db, p, pl->name, "janitor", &ev, raw, strlen(raw), &rec);
    if (e) {
        out->failures++;
        dm_log(DM_L_NOTICE, "DM01012: janitor: the answer about order %s could not be recorded: %s",
               oid, e->message);
        return NULL;
    }
    if (!rec.duplicate && rec.outcome && strcmp(rec.outcome, "pending") != 0 &&
        strcmp(rec.outcome, "no_change") != 0 && strcmp(rec.outcome, "ignored") != 0) {
        out->settled++;
    }
    return NULL;
}

dm_err *dm_janitor_run(dm_db *db, apr_pool_t *p, const dm_plugin_host *h, int64_t now,
                       int64_t limit, dm_janitor_stats *out)
{
    int64_t after = 0, seen = 0;
    dm_err *e = NULL;

    memset(out, 0, sizeof(*out));
    if (dm_db_in_transaction(db)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "janitor: must not run inside a transaction");
    }
    for (;;) {
        apr_pool_t *sub;
        apr_array_header_t *due;
        int n = JANITOR_BATCH;
        if (limit > 0 && limit - seen < n) {
            n = (int)(limit - seen);
        }
        if (n <= 0) {
            break;
        }
        apr_pool_create(&sub, p);
        due = apr_array_make(sub, n, sizeof(due_order));
        e = due_batch(db, sub, now, after, n, due);
        for (int i = 0; !e && i < due->nelts; i++) {
            const due_order *d = &APR_ARRAY_IDX(due, i, due_order);
            const dm_loaded_plugin *pl = dm_payment_plugin(h, d->gateway);
            apr_pool_t *one;
            int changed = 0;
            after = d->id;
            seen++;
            apr_pool_create(&one, sub);
            if (!d->provider_ref) {
                if (d->hold_until <= now) {
                    e = expire(db, one, d->id,
                               "no checkout was created before its lifetime ran out", &changed);
                    out->expired += changed;
                }
            } else if (dm_payment_can_query(pl)) {
                e = settle(db, one, pl, h, d, out);
            } else if (d->hold_until + rules.settle_s <= now) {
                e = expire(db, one, d->id,
                           pl ? "the gateway cannot be asked; its checkout's lifetime ran out"
                              : "its gateway is not loaded; its checkout's lifetime ran out",
                           &changed);
                out->expired += changed;
            }
            apr_pool_destroy(one);
        }
        n = due->nelts;
        if (e) {
            e = dm_err_make(p, e->code, e->field, "%s", e->message);
        }
        apr_pool_destroy(sub);
        if (e || n == 0) {
            break;
        }
    }
    return e;
}
