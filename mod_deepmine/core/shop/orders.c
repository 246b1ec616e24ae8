/*
 * orders.c — see orders.h. The invariants: an order changes state only by
 * a guarded UPDATE whose row count is checked, a paid order has exactly
 * one payment transfer and one contract, and nothing here holds a write
 * transaction across a plugin call.
 */
#include "shop/orders.h"

#include <apr_strings.h>
#include <apr_time.h>
#include <string.h>

#include "base/clock.h"
#include "store/audit.h"
#include "store/db_group.h"
#include "shop/capacity.h"
#include "shop/catalogue.h"
#include "shop/janitor.h"
#include "shop/contracts.h"
#include "referral/commission.h"
#include "base/json.h"
#include "ledger/ledger.h"
#include "base/log.h"
#include "base/template.h"
#include "base/validate.h"
#include "mail/mailq.h"
#include "plugins/payment.h"
#include "referral/vip.h"
#include "shop/refunds.h"

#define SECONDS_PER_DAY 86400
#define REFUND_REASON_MAX_CHARS 500

#define ORDER_COLUMNS                                                                              \
    "id, user_id, package_id, amount_micros, currency, status, gateway, provider_ref, "            \
    "checkout_url, payment_transfer_id, created_at, paid_at, updated_at, refunded_micros, "        \
    "payment_id, dispute, review_reason, hold_until"

static const char *const order_statuses[] = {"pending", "paid",         "disputed", "failed",
                                             "expired", "needs_review", "refunded"};

static void read_order(dm_stmt *st, apr_pool_t *p, dm_order *o)
{
    o->id = dm_stmt_int64(st, 0);
    o->user_id = dm_stmt_int64(st, 1);
    o->package_id = dm_stmt_int64(st, 2);
    o->amount_micros = dm_stmt_int64(st, 3);
    o->currency = dm_stmt_dup_text(st, p, 4);
    o->status = dm_stmt_dup_text(st, p, 5);
    o->gateway = dm_stmt_dup_text(st, p, 6);
    o->provider_ref = dm_stmt_dup_text(st, p, 7);
    o->checkout_url = dm_stmt_dup_text(st, p, 8);
    o->payment_transfer_id = dm_stmt_is_null(st, 9) ? 0 : dm_stmt_int64(st, 9);
    o->created_at = dm_stmt_int64(st, 10);
    o->paid_at = dm_stmt_is_null(st, 11) ? 0 : dm_stmt_int64(st, 11);
    o->updated_at = dm_stmt_int64(st, 12);
    o->refunded_micros = dm_stmt_int64(st, 13);
    o->payment_id = dm_stmt_dup_text(st, p, 14);
    o->dispute = dm_stmt_dup_text(st, p, 15);
    o->review_reason = dm_stmt_dup_text(st, p, 16);
    o->hold_until = dm_stmt_is_null(st, 17) ? 0 : dm_stmt_int64(st, 17);
    /* A paid order with an open dispute shows, and is treated, as disputed:
     * no staff refund, no "paid" guard matches it. */
    if (o->dispute && strcmp(o->dispute, "open") == 0 && strcmp(o->status, "paid") == 0) {
        o->status = "disputed";
    }
}

/* One order by a query binding (id) or (gateway, provider_ref). */
static dm_err *order_by_id(dm_db *db, apr_pool_t *p, int64_t id, dm_order *out, int *found)
{
    dm_stmt *st;
    dm_err *e = dm_db_prepare(db, p, "SELECT " ORDER_COLUMNS " FROM orders WHERE id = ?", &st);

    *found = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, id);
    e = dm_stmt_step(st, p, found);
    if (!e && *found) {
        read_order(st, p, out);
    }
    dm_stmt_done(st);
    return e;
}

/* column: "provider_ref" or "payment_id" (never input). */
static dm_err *order_by_ref(dm_db *db, apr_pool_t *p, const char *column, const char *gateway,
                            dm_str ref, dm_order *out, int *found)
{
    dm_stmt *st;
    dm_err *e = dm_db_prepare(db, p,
                              strcmp(column, "payment_id") == 0
                                  ? "SELECT " ORDER_COLUMNS " FROM orders WHERE gateway = ? AND "
                                    "payment_id = ? ORDER BY id LIMIT 1"
                                  : "SELECT " ORDER_COLUMNS " FROM orders WHERE gateway = ? AND "
                                    "provider_ref = ? ORDER BY id LIMIT 1",
                              &st);

    *found = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_text(st, 1, gateway, strlen(gateway));
    dm_stmt_bind_text(st, 2, ref.ptr, ref.len);
    e = dm_stmt_step(st, p, found);
    if (!e && *found) {
        read_order(st, p, out);
    }
    dm_stmt_done(st);
    return e;
}

/* The package, which must be on sale, and room for it (capacity). Runs
 * inside the transaction that creates the order. */
static dm_err *sellable_package(dm_db *db, apr_pool_t *p, int64_t id, dm_package *pkg)
{
    dm_err *e = dm_catalogue_get(db, p, id, pkg);

    if (!e && !pkg->active) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL,
                        "package %" APR_INT64_T_FMT " is not on sale any more", (apr_int64_t)id);
    }
    if (!e) {
        e = dm_capacity_check(db, p, id);
    }
    return e;
}

static dm_err *insert_order(dm_db *db, apr_pool_t *p, int64_t user_id, const dm_package *pkg,
                            const char *gateway, int paid, dm_order *out)
{
    dm_stmt *st;
    int row = 0;
    int64_t now = dm_now();
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO orders (user_id, package_id, amount_micros, currency, "
                              "status, gateway, created_at, paid_at, updated_at) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_int64(st, 2, pkg->id);
    dm_stmt_bind_int64(st, 3, pkg->price_micros);
    dm_stmt_bind_str(st, 4, pkg->currency);
    dm_stmt_bind_str(st, 5, paid ? "paid" : "pending");
    dm_stmt_bind_str(st, 6, gateway);
    dm_stmt_bind_int64(st, 7, now);
    if (paid) {
        dm_stmt_bind_int64(st, 8, now);
    } else {
        dm_stmt_bind_null(st, 8);
    }
    dm_stmt_bind_int64(st, 9, now);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        memset(out, 0, sizeof(*out));
        out->id = dm_stmt_int64(st, 0);
        out->user_id = user_id;
        out->package_id = pkg->id;
        out->amount_micros = pkg->price_micros;
        out->currency = pkg->currency;
        out->status = paid ? "paid" : "pending";
        out->gateway = gateway;
        out->created_at = now;
        out->paid_at = paid ? now : 0;
        out->updated_at = now;
    }
    dm_stmt_done(st);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_INTERNAL, NULL, "orders: the insert returned no id");
    }
    return e;
}

/* A guarded state change: `to` only when the order is still `from`.
 * *changed says whether it happened. */
static dm_err *transition(dm_db *db, apr_pool_t *p, int64_t id, const char *from, const char *to,
                          int set_paid, int *changed)
{
    dm_stmt *st;
    int row = 0, n = 1;
    int64_t now = dm_now();
    dm_err *e =
        dm_db_prepare(db, p,
                      set_paid ? "UPDATE orders SET status = ?, paid_at = ?, updated_at = ? "
                                 "WHERE id = ? AND status = ?"
                               : "UPDATE orders SET status = ?, updated_at = ? "
                                 "WHERE id = ? AND status = ?",
                      &st);

    *changed = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, n++, to);
    if (set_paid) {
        dm_stmt_bind_int64(st, n++, now);
    }
    dm_stmt_bind_int64(st, n++, now);
    dm_stmt_bind_int64(st, n++, id);
    dm_stmt_bind_str(st, n, from);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e) {
        *changed = dm_db_changes(db) == 1;
    }
    return e;
}

static dm_err *set_payment_transfer(dm_db *db, apr_pool_t *p, int64_t order_id, int64_t transfer_id)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, "UPDATE orders SET payment_transfer_id = ? WHERE id = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, transfer_id);
    dm_stmt_bind_int64(st, 2, order_id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

static dm_err *member_email(dm_db *db, apr_pool_t *p, int64_t user_id, const char **email)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, "SELECT email FROM users WHERE id = ?", &st);

    *email = NULL;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        *email = dm_stmt_dup_text(st, p, 0);
    }
    dm_stmt_done(st);
    return e;
}

/* What follows a payment, in its transaction: contract, commissions, VIP
 * levels, the e-mails (the receipt, the contract's start). */
static dm_err *after_paid(dm_db *db, apr_pool_t *p, dm_order *o)
{
    dm_package pkg;
    dm_contract c;
    const char *email = NULL;
    json_t *vars;
    dm_err *e;

    memset(&c, 0, sizeof(c));
    e = dm_catalogue_get(db, p, o->package_id, &pkg);
    if (!e) {
        e = dm_contract_create(db, p, o, &pkg, &c);
    }
    if (!e) {
        e = dm_commission_pay_via(db, p, o->id, o->user_id, o->amount_micros, o->currency,
                                  o->gateway);
    }
    if (!e) {
        e = dm_vip_reevaluate(db, p, o->user_id);
    }
    if (!e) {
        e = member_email(db, p, o->user_id, &email);
    }
    if (e || !email) {
        return e;
    }
    vars = dm_json_own(p, json_object());
    json_object_set_new(vars, "order_id", json_integer(o->id));
    json_object_set_new(vars, "contract_id", json_integer(c.id));
    json_object_set_new(vars, "package", json_string(pkg.name));
    json_object_set_new(vars, "amount_micros", json_integer(o->amount_micros));
    json_object_set_new(vars, "currency", json_string(o->currency));
    json_object_set_new(vars, "expires_at", json_string(dm_json_time(p, c.expires_at)));
    e = dm_mail_enqueue(db, p, email, "order_paid", vars,
                        apr_psprintf(p, "order_paid:%" APR_INT64_T_FMT, (apr_int64_t)o->id));
    if (e) {
        return e;
    }
    vars = dm_json_own(p, json_object());
    json_object_set_new(vars, "contract_id", json_integer(c.id));
    json_object_set_new(vars, "order_id", json_integer(o->id));
    json_object_set_new(vars, "package", json_string(pkg.name));
    json_object_set_new(vars, "hashrate_ths", dm_json_ths(c.hashrate_ghs));
    json_object_set_new(vars, "daily_yield_micros", json_integer(c.daily_yield_micros));
    json_object_set_new(vars, "currency", json_string(c.currency));
    json_object_set_new(vars, "duration_days", json_integer(c.duration_days));
    json_object_set_new(vars, "started_at", json_string(dm_json_time(p, c.started_at)));
    json_object_set_new(vars, "expires_at", json_string(dm_json_time(p, c.expires_at)));
    return dm_mail_enqueue(
        db, p, email, "contract_started", vars,
        apr_psprintf(p, "contract_started:%" APR_INT64_T_FMT, (apr_int64_t)c.id));
}

/* A staff e-mail (template tmpl: staff_alert, or dispute_alert with the
 * gateway and `amount`) to every active owner and finance account, once
 * per `key`; logged in any case (a site without staff still has its log). */
static dm_err *staff_notice(dm_db *db, apr_pool_t *p, const dm_order *o, const char *tmpl,
                            const char *reason, int64_t amount, const char *detail, const char *key)
{
    json_t *vars = dm_json_own(p, json_object());

    dm_log(DM_L_NOTICE, "DM00700: order %" APR_INT64_T_FMT " needs staff attention (%s): %s",
           (apr_int64_t)o->id, reason, detail);
    json_object_set_new(vars, "order_id", json_integer(o->id));
    json_object_set_new(vars, "reason", json_string(reason));
    json_object_set_new(vars, "detail", json_string(detail));
    if (strcmp(tmpl, "dispute_alert") == 0) {
        json_object_set_new(vars, "gateway", json_string(o->gateway));
        json_object_set_new(vars, "amount_micros", json_integer(amount));
        json_object_set_new(vars, "currency", json_string(o->currency));
    }
    return dm_mail_staff_notice(db, p, 1, tmpl, vars, key);
}

static dm_err *staff_alert(dm_db *db, apr_pool_t *p, const dm_order *o, const char *reason,
                           const char *detail, const char *key)
{
    return staff_notice(db, p, o, "staff_alert", reason, 0, detail, key);
}

/* A dispute opened or lost: its own template (dispute_alert). */
static dm_err *dispute_alert(dm_db *db, apr_pool_t *p, const dm_order *o, const char *reason,
                             int64_t amount, const char *detail, const char *key)
{
    return staff_notice(db, p, o, "dispute_alert", reason, amount, detail, key);
}

/* ---- creating orders ---- */

static dm_err *payment_plugin(apr_pool_t *p, const dm_plugin_host *h, const char *gateway,
                              const dm_loaded_plugin **pl)
{
    *pl = dm_payment_plugin(h, gateway);
    if (!*pl) {
        return dm_err_make(p, DM_E_INVALID, "gateway", "no payment gateway named %s is loaded",
                           gateway ? gateway : "(none)");
    }
    return NULL;
}

static dm_err *fail_pending(dm_db *db, apr_pool_t *p, int64_t id)
{
    int changed = 0;
    dm_err *e = dm_db_begin(db, p);

    if (!e) {
        e = transition(db, p, id, "pending", "failed", 0, &changed);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

/* The rules a member meets before a gateway order (docs/payments.md
 * "Capacity holds"), inside the transaction that creates it (BEGIN
 * IMMEDIATE: two requests at once count each other): a verified e-mail for
 * a gateway that moves money, and fewer than DeepMinePendingOrders unpaid
 * gateway orders still holding capacity. */
static dm_err *may_order(dm_db *db, apr_pool_t *p, int64_t user_id, const dm_loaded_plugin *pl)
{
    dm_stmt *st;
    int row = 0, verified = 0;
    int64_t pending = 0;
    int max = dm_payment_rules_get()->pending_max;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT u.email_verified_at IS NOT NULL, (SELECT count(*) FROM "
                              "orders o WHERE o.user_id = u.id AND o.status = 'pending' AND "
                              "o.gateway <> ? AND (o.hold_until IS NULL OR o.hold_until > ?)) "
                              "FROM users u WHERE u.id = ?",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, DM_ORDER_GATEWAY_BALANCE);
    dm_stmt_bind_int64(st, 2, dm_now());
    dm_stmt_bind_int64(st, 3, user_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        verified = (int)dm_stmt_int64(st, 0);
        pending = dm_stmt_int64(st, 1);
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    if (!row) {
        return dm_err_make(p, DM_E_NOT_FOUND, NULL, "no such member");
    }
    if (!verified && !dm_payment_is_sandbox(pl)) {
        return dm_err_make(p, DM_E_FORBIDDEN, NULL,
                           "verify your e-mail address before paying through a gateway");
    }
    if (max > 0 && pending >= max) {
        return dm_err_make(p, DM_E_RATE_LIMITED, NULL,
                           "you have %" APR_INT64_T_FMT " unpaid orders waiting for payment (at "
                           "most %d): pay one or wait until its checkout expires",
                           (apr_int64_t)pending, max);
    }
    return NULL;
}

typedef struct pending_args {
    int64_t user_id;
    int64_t package_id;
    const dm_loaded_plugin *pl;
    dm_order *out;
} pending_args;

/* A checkout's pending order, in its transaction (dm_db_write_txn). */
static dm_err *pending_txn(dm_db *db, apr_pool_t *p, void *arg)
{
    pending_args *a = arg;
    dm_order *out = a->out;
    dm_package pkg;
    dm_stmt *st;
    int row = 0;
    dm_err *e = may_order(db, p, a->user_id, a->pl);

    if (!e) {
        e = sellable_package(db, p, a->package_id, &pkg);
    }
    if (!e) {
        e = insert_order(db, p, a->user_id, &pkg, a->pl->name, 0, out);
    }
    if (!e) {
        /* it holds capacity for its checkout's lifetime only */
        dm_payment_method m;
        int64_t life = dm_payment_rules_get()->checkout_hold_s;
        if (dm_payment_method_info(a->pl, p, &m) && m.checkout_lifetime_s) {
            life = m.checkout_lifetime_s;
        }
        out->hold_until = out->created_at + life;
        e = dm_db_prepare(db, p, "UPDATE orders SET hold_until = ? WHERE id = ?", &st);
        if (!e) {
            dm_stmt_bind_int64(st, 1, out->hold_until);
            dm_stmt_bind_int64(st, 2, out->id);
            e = dm_stmt_step(st, p, &row);
            dm_stmt_done(st);
        }
    }
    return e;
}

dm_err *dm_order_create_checkout(dm_db *db, apr_pool_t *p, const dm_plugin_host *h, int64_t user_id,
                                 const char *customer_email, int64_t package_id,
                                 const char *gateway, const char *return_url, dm_order *out)
{
    const dm_loaded_plugin *pl = NULL;
    dm_payment_checkout_in in;
    dm_payment_checkout_out res;
    dm_message msg;
    pending_args pa;
    dm_status rc;
    dm_stmt *st;
    const char *oid;
    int row = 0;
    dm_err *e;

    if (dm_db_in_transaction(db)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "orders: a checkout must not be created inside a transaction");
    }
    if (gateway && strcmp(gateway, DM_ORDER_GATEWAY_BALANCE) == 0) {
        return dm_err_make(p, DM_E_INVALID, "gateway",
                           "to pay from the balance, send pay_from_balance: true");
    }
    e = payment_plugin(p, h, gateway, &pl);
    if (e) {
        return e;
    }
    if (!dm_payment_can_checkout(pl)) {
        return dm_err_make(p, DM_E_INVALID, "gateway", "the gateway %s cannot take payments",
                           gateway);
    }

    /* 1. the pending order (holds its share of the capacity), committed;
     * other writers' work may share its commit (store/db_group.h) */
    pa.user_id = user_id;
    pa.package_id = package_id;
    pa.pl = pl;
    pa.out = out;
    e = dm_db_write_txn(db, p, pending_txn, &pa);
    if (e) {
        return e;
    }

    /* 2. the plugin, with no transaction open (it may call the network,
     * or this very server) */
    oid = apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)out->id);
    memset(&in, 0, sizeof(in));
    in.order_id = oid;
    in.amount_micros = out->amount_micros;
    in.currency = out->currency;
    in.success_url = return_url;
    in.cancel_url = return_url;
    in.customer_email = customer_email;
    rc = dm_payment_create_checkout(h, pl, p, &in, &res, &msg);
    if (rc != DM_OK) {
        dm_log(DM_L_NOTICE, "DM00701: order %s: gateway %s could not create a checkout (%d): %s",
               oid, pl->name, (int)rc, msg.text[0] ? msg.text : "no reason given");
        e = fail_pending(db, p, out->id);
        if (e) {
            return e;
        }
        out->status = "failed";
        return dm_err_make(p, rc == DM_ERR_TEMPORARY ? DM_E_UNAVAILABLE : DM_E_CONFLICT, NULL,
                           "the payment gateway could not start the payment: %s",
                           msg.text[0] ? msg.text : "no reason given");
    }

    /* 3. where to pay */
    out->provider_ref = res.provider_ref;
    out->checkout_url = res.redirect_url;
    e = dm_db_begin(db, p);
    if (!e) {
        e = dm_db_prepare(db, p,
                          "UPDATE orders SET provider_ref = ?, checkout_url = ?, updated_at = ? "
                          "WHERE id = ? AND provider_ref IS NULL",
                          &st);
    }
    if (!e) {
        dm_stmt_bind_str(st, 1, out->provider_ref);
        dm_stmt_bind_str(st, 2, out->checkout_url);
        dm_stmt_bind_int64(st, 3, dm_now());
        dm_stmt_bind_int64(st, 4, out->id);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

/* The payment of a paid order, whichever way it came: `from` (the member's
 * wallet, or the gateway's system account) -> sales under `key`, recorded
 * on the order, then everything a paid order brings (after_paid). */
static dm_err *post_payment(dm_db *db, apr_pool_t *p, dm_order *o, int64_t from, const char *key)
{
    dm_transfer_req req;
    dm_transfer t;
    int64_t sales = 0;
    int created = 0;
    dm_err *e = dm_ledger_system_account(db, p, DM_SYS_SALES, o->currency, &sales);

    if (e) {
        return e;
    }
    memset(&req, 0, sizeof(req));
    memset(&t, 0, sizeof(t));
    req.idempotency_key = key;
    req.debit_account_id = from;
    req.credit_account_id = sales;
    req.amount_micros = o->amount_micros;
    req.currency = o->currency;
    req.kind = DM_KIND_PURCHASE;
    req.reference = apr_psprintf(p, "order:%" APR_INT64_T_FMT, (apr_int64_t)o->id);
    e = dm_ledger_transfer(db, p, &req, &t, &created);
    if (!e) {
        o->payment_transfer_id = t.id;
        e = set_payment_transfer(db, p, o->id, t.id);
    }
    return e ? e : after_paid(db, p, o);
}

typedef struct balance_args {
    int64_t user_id;
    int64_t package_id;
    dm_order *out;
} balance_args;

/* The order paid from the wallet, in its transaction (dm_db_write_txn). */
static dm_err *pay_from_balance_txn(dm_db *db, apr_pool_t *p, void *arg)
{
    balance_args *a = arg;
    dm_order *out = a->out;
    dm_package pkg;
    int64_t wallet = 0;
    dm_err *e;

    memset(&pkg, 0, sizeof(pkg));
    pkg.currency = "";
    e = sellable_package(db, p, a->package_id, &pkg);
    if (!e) {
        e = insert_order(db, p, a->user_id, &pkg, DM_ORDER_GATEWAY_BALANCE, 1, out);
    }
    if (!e) {
        e = dm_ledger_member_account(db, p, a->user_id, DM_ACCOUNT_WALLET, pkg.currency, &wallet);
    }
    if (!e) {
        e = post_payment(
            db, p, out, wallet,
            apr_psprintf(p, "order:%" APR_INT64_T_FMT ":balance", (apr_int64_t)out->id));
    }
    /* The member reads this: their balance and the price, in money (read
     * before the rollback, which may take the new wallet away). */
    if (e && e->code == DM_E_CONFLICT && strstr(e->message, "insufficient")) {
        dm_account acc = {0};
        int64_t have = dm_ledger_account_get(db, p, wallet, &acc) ? 0 : acc.balance_micros;
        e = dm_err_make(p, DM_E_CONFLICT, NULL,
                        "insufficient balance: your balance is %s; this package costs %s",
                        dm_tmpl_money(p, have, pkg.currency),
                        dm_tmpl_money(p, pkg.price_micros, pkg.currency));
    }
    return e;
}

dm_err *dm_order_pay_from_balance(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t package_id,
                                  dm_order *out)
{
    balance_args a;

    memset(&a, 0, sizeof(a));
    a.user_id = user_id;
    a.package_id = package_id;
    a.out = out;
    /* other writers' work may share its commit (store/db_group.h) */
    return dm_db_write_txn(db, p, pay_from_balance_txn, &a);
}

/* ---- payment events ---- */

/* Our order id as a provider echoes it: a decimal number, else 0. */
static int64_t order_id_of(dm_str s)
{
    int64_t v = 0;

    if (!s.ptr || s.len == 0 || s.len > 18) {
        return 0;
    }
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9') {
            return 0;
        }
        v = v * 10 + (s.ptr[i] - '0');
    }
    return v;
}

static int str_is(dm_str s, const char *z)
{
    size_t n = z ? strlen(z) : 0;
    return z && s.len == n && (n == 0 || memcmp(s.ptr, z, n) == 0);
}

/* The payment identity of an event: its payment_id, else its provider
 * reference; NULL when it has neither. */
static const char *identity_of(apr_pool_t *p, const dm_payment_event *ev)
{
    if (ev->payment_id.len) {
        return apr_pstrmemdup(p, ev->payment_id.ptr, ev->payment_id.len);
    }
    return ev->provider_ref.len ? apr_pstrmemdup(p, ev->provider_ref.ptr, ev->provider_ref.len)
                                : NULL;
}

/* The order of gateway `plugin` other than `id` that payment identity
 * `pid` credited; 0: none. */
static dm_err *identity_owner(dm_db *db, apr_pool_t *p, const char *plugin, const char *pid,
                              int64_t id, int64_t *other)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(
        db, p, "SELECT id FROM orders WHERE gateway = ? AND payment_id = ? AND id != ?", &st);

    *other = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, plugin);
    dm_stmt_bind_str(st, 2, pid);
    dm_stmt_bind_int64(st, 3, id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        *other = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    return e;
}

/* Parks order o (status `from`) as needs_review for `reason`, alerting
 * staff with `detail` once per `key`. *outcome: `name`, or "no_change"
 * when the order moved meanwhile. */
static dm_err *park(dm_db *db, apr_pool_t *p, dm_order *o, const char *from, const char *reason,
                    const char *detail, const char *key, const char *name, const char **outcome)
{
    dm_stmt *st;
    int row = 0, changed = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "UPDATE orders SET status = 'needs_review', review_reason = ?, "
                              "updated_at = ? WHERE id = ? AND status = ?",
                              &st);

    *outcome = "no_change";
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, reason);
    dm_stmt_bind_int64(st, 2, dm_now());
    dm_stmt_bind_int64(st, 3, o->id);
    dm_stmt_bind_str(st, 4, from);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    changed = dm_db_changes(db) == 1;
    if (!changed) {
        return NULL;
    }
    *outcome = name;
    o->status = "needs_review";
    o->review_reason = reason;
    return staff_alert(db, p, o, reason, detail, key);
}

static dm_err *apply_paid(dm_db *db, apr_pool_t *p, const char *plugin, const dm_payment_event *ev,
                          dm_order *o, const char **outcome)
{
    const char *evid = apr_pstrmemdup(p, ev->event_id.ptr, ev->event_id.len);
    const char *key = apr_pstrcat(p, plugin, ":", evid, NULL);
    const char *pid = identity_of(p, ev);
    int64_t gw = 0, other = 0;
    int changed = 0;
    dm_err *e;

    /* The payment that credited this order, reported again (a webhook and
     * the janitor, a redelivery under another event id, the return page):
     * nothing to do. Only an explicit payment_id says so; without one a
     * second event may be a second payment, and staff look. */
    if (ev->payment_id.len && o->payment_id && strcmp(o->payment_id, pid) == 0) {
        *outcome = "already_paid";
        return NULL;
    }
    if (strcmp(o->status, "paid") == 0 || strcmp(o->status, "refunded") == 0 ||
        strcmp(o->status, "disputed") == 0 || strcmp(o->status, "needs_review") == 0) {
        /* Money arrived twice for one checkout: staff refund it. */
        *outcome = "duplicate_payment";
        return staff_alert(db, p, o, "duplicate_payment",
                           apr_psprintf(p,
                                        "event %s paid order %" APR_INT64_T_FMT
                                        " again (status %s); refund it at the gateway",
                                        key, (apr_int64_t)o->id, o->status),
                           key);
    }
    if (strcmp(o->status, "pending") != 0) {
        /* failed or expired: money that came late, never credited blindly */
        e = transition(db, p, o->id, o->status, "needs_review", 0, &changed);
        *outcome = changed ? "late_payment" : "no_change";
        return e || !changed ? e
                             : staff_alert(db, p, o, "late_payment",
                                           apr_psprintf(p, "event %s paid an order that was %s",
                                                        key, o->status),
                                           key);
    }
    if (ev->amount_micros != o->amount_micros || !str_is(ev->currency, o->currency) ||
        (o->provider_ref && ev->provider_ref.len && !str_is(ev->provider_ref, o->provider_ref))) {
        e = transition(db, p, o->id, "pending", "needs_review", 0, &changed);
        *outcome = changed ? "amount_mismatch" : "no_change";
        return e || !changed
                   ? e
                   : staff_alert(db, p, o, "amount_mismatch",
                                 apr_psprintf(p,
                                              "event %s paid %" APR_INT64_T_FMT " %.*s for %.*s; "
                                              "the order is %" APR_INT64_T_FMT " %s",
                                              key, (apr_int64_t)ev->amount_micros,
                                              (int)ev->currency.len,
                                              ev->currency.ptr ? ev->currency.ptr : "",
                                              (int)ev->provider_ref.len,
                                              ev->provider_ref.ptr ? ev->provider_ref.ptr : "",
                                              (apr_int64_t)o->amount_micros, o->currency),
                                 key);
    }
    /* Its hold ran out before the money came: it takes capacity if some is
     * left, else staff refund it (sold out while the buyer paid). */
    if (o->hold_until && o->hold_until <= dm_now()) {
        e = dm_capacity_check(db, p, o->package_id);
        if (e && e->code == DM_E_CONFLICT) {
            return park(db, p, o, "pending", "sold_out",
                        apr_psprintf(p,
                                     "event %s paid order %" APR_INT64_T_FMT
                                     " after its capacity hold ran out, and the package is sold "
                                     "out; refund the buyer at the gateway",
                                     key, (apr_int64_t)o->id),
                        key, "sold_out", outcome);
        }
        if (e) {
            return e;
        }
    }
    /* One payment identity credits one order. */
    if (pid) {
        e = identity_owner(db, p, plugin, pid, o->id, &other);
        if (e) {
            return e;
        }
        if (other) {
            return park(db, p, o, "pending", "payment_reused",
                        apr_psprintf(p,
                                     "event %s reports payment %s, which already credited order "
                                     "%" APR_INT64_T_FMT "; nothing was credited",
                                     key, pid, (apr_int64_t)other),
                        key, "payment_reused", outcome);
        }
    }
    e = transition(db, p, o->id, "pending", "paid", 1, &changed);
    if (e || !changed) {
        *outcome = "no_change";
        return e;
    }
    o->status = "paid";
    o->payment_id = pid;
    if (pid) {
        dm_stmt *st;
        int row = 0;
        e = dm_db_prepare(db, p, "UPDATE orders SET payment_id = ?, hold_until = NULL WHERE id = ?",
                          &st);
        if (e) {
            return e;
        }
        dm_stmt_bind_str(st, 1, pid);
        dm_stmt_bind_int64(st, 2, o->id);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
        if (e) {
            return e;
        }
    }
    e = dm_ledger_system_account(db, p, apr_pstrcat(p, DM_SYS_GATEWAY_PREFIX, plugin, NULL),
                                 o->currency, &gw);
    if (!e) {
        e = post_payment(db, p, o, gw, apr_pstrcat(p, "pay:", key, NULL));
    }
    *outcome = "paid";
    return e;
}

/* A refund the gateway reports: what is left of the order, or the event's
 * amount. More than is left (or another currency) is not posted: the
 * order is parked for staff. */
static dm_err *apply_refunded(dm_db *db, apr_pool_t *p, const char *plugin,
                              const dm_payment_event *ev, dm_order *o, const char **outcome)
{
    const char *key =
        apr_pstrcat(p, plugin, ":", apr_pstrmemdup(p, ev->event_id.ptr, ev->event_id.len), NULL);
    int64_t left = o->amount_micros - o->refunded_micros;
    int64_t amount = ev->amount_micros ? ev->amount_micros : left;
    dm_refund_req req;
    int applied = 0, complete = 0, changed = 0;
    dm_err *e;

    if (strcmp(o->status, "refunded") == 0) {
        *outcome = "already_refunded";
        return NULL;
    }
    if (strcmp(o->status, "paid") != 0) {
        *outcome = "not_paid";
        dm_log(DM_L_NOTICE,
               "DM00702: refund event %s for order %" APR_INT64_T_FMT
               " that is %s: nothing to reverse",
               key, (apr_int64_t)o->id, o->status);
        return NULL;
    }
    if (amount > left || (ev->currency.len && !str_is(ev->currency, o->currency))) {
        const char *why = amount > left ? "over_refund" : "refund_currency";
        e = transition(db, p, o->id, "paid", "needs_review", 0, &changed);
        *outcome = changed ? "needs_review" : "no_change";
        return e || !changed
                   ? e
                   : staff_alert(db, p, o, why,
                                 apr_psprintf(p,
                                              "event %s refunded %" APR_INT64_T_FMT " %.*s of "
                                              "order %" APR_INT64_T_FMT " (%" APR_INT64_T_FMT
                                              " %s) with %" APR_INT64_T_FMT
                                              " left to refund; nothing was posted, the order "
                                              "needs review",
                                              key, (apr_int64_t)amount, (int)ev->currency.len,
                                              ev->currency.ptr ? ev->currency.ptr : "",
                                              (apr_int64_t)o->id, (apr_int64_t)o->amount_micros,
                                              o->currency, (apr_int64_t)left),
                                 key);
    }
    memset(&req, 0, sizeof(req));
    req.amount_micros = amount;
    req.event = key;
    e = dm_refund_post(db, p, o, &req, &applied, &complete);
    *outcome = !applied ? "no_change" : complete ? "refunded" : "partial_refund";
    return e;
}

/* Sets the order's dispute to `to` when it is `from` (NULL: none or a
 * closed one) and the order is paid. *changed says whether it moved. */
static dm_err *set_dispute(dm_db *db, apr_pool_t *p, int64_t id, const char *from, const char *to,
                           int *changed)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              from ? "UPDATE orders SET dispute = ?, updated_at = ? "
                                     "WHERE id = ? AND status = 'paid' AND dispute = ?"
                                   : "UPDATE orders SET dispute = ?, updated_at = ? "
                                     "WHERE id = ? AND status = 'paid' AND "
                                     "(dispute IS NULL OR dispute != 'open')",
                              &st);

    *changed = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, to);
    dm_stmt_bind_int64(st, 2, dm_now());
    dm_stmt_bind_int64(st, 3, id);
    if (from) {
        dm_stmt_bind_str(st, 4, from);
    }
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e) {
        *changed = dm_db_changes(db) == 1;
    }
    return e;
}

/* The amount of an event in words for staff ("12500000 USD"). */
static const char *event_money(apr_pool_t *p, const dm_payment_event *ev, const dm_order *o)
{
    return apr_psprintf(p, "%" APR_INT64_T_FMT " %.*s", (apr_int64_t)ev->amount_micros,
                        ev->currency.len ? (int)ev->currency.len : (int)strlen(o->currency),
                        ev->currency.len ? ev->currency.ptr : o->currency);
}

/* A dispute (chargeback) opened, won or lost. Opened: the order shows as
 * disputed and its held commissions are not released (commission.c skips
 * them) until it closes. Won: released. Lost: the money went back — a
 * full refund of what is left (shop/refunds.h), whose clawbacks take the
 * commissions back. */
static dm_err *apply_dispute(dm_db *db, apr_pool_t *p, const char *plugin,
                             const dm_payment_event *ev, dm_order *o, const char **outcome)
{
    const char *key =
        apr_pstrcat(p, plugin, ":", apr_pstrmemdup(p, ev->event_id.ptr, ev->event_id.len), NULL);
    int changed = 0;
    int64_t was_refunded = 0;
    dm_err *e;

    if (ev->status == DM_PAY_DISPUTE_OPENED) {
        if (strcmp(o->status, "paid") != 0) {
            *outcome = strcmp(o->status, "disputed") == 0 ? "no_change" : "not_paid";
            return NULL;
        }
        e = set_dispute(db, p, o->id, NULL, "open", &changed);
        *outcome = changed ? "disputed" : "no_change";
        return e || !changed
                   ? e
                   : dispute_alert(db, p, o, "dispute_opened",
                                   ev->amount_micros ? ev->amount_micros : o->amount_micros,
                                   apr_psprintf(p,
                                                "event %s: the buyer disputed %s of order "
                                                "%" APR_INT64_T_FMT
                                                "; its commissions are held until the dispute "
                                                "closes. Answer the dispute at the provider.",
                                                key, event_money(p, ev, o), (apr_int64_t)o->id),
                                   key);
    }
    if (ev->status == DM_PAY_DISPUTE_WON) {
        e = set_dispute(db, p, o->id, "open", "won", &changed);
        *outcome = changed ? "dispute_won" : "no_change";
        if (changed) {
            o->status = "paid";
            o->dispute = "won";
        }
        return e;
    }
    /* lost: from an open dispute, or straight from paid when the opening
     * event never came */
    if (strcmp(o->status, "refunded") == 0) {
        *outcome = "already_refunded";
        return NULL;
    }
    if (strcmp(o->status, "paid") != 0 && strcmp(o->status, "disputed") != 0) {
        *outcome = "not_paid";
        return NULL;
    }
    e = set_dispute(db, p, o->id, strcmp(o->status, "disputed") == 0 ? "open" : NULL, "lost",
                    &changed);
    if (e || !changed) {
        *outcome = "no_change";
        return e;
    }
    o->status = "paid";
    o->dispute = "lost";
    was_refunded = o->refunded_micros;
    {
        dm_refund_req req;
        int applied = 0, complete = 0;
        memset(&req, 0, sizeof(req));
        req.amount_micros = o->amount_micros - o->refunded_micros;
        req.event = key;
        e = dm_refund_post(db, p, o, &req, &applied, &complete);
        if (e) {
            return e;
        }
        if (!applied) {
            return dm_err_make(p, DM_E_CONFLICT, NULL,
                               "order %" APR_INT64_T_FMT " moved while its dispute was lost",
                               (apr_int64_t)o->id);
        }
    }
    *outcome = "dispute_lost";
    return dispute_alert(db, p, o, "dispute_lost", o->amount_micros - was_refunded,
                         apr_psprintf(p,
                                      "event %s: the dispute of order %" APR_INT64_T_FMT
                                      " was lost; the order was refunded in full and its "
                                      "commissions taken back",
                                      key, (apr_int64_t)o->id),
                         key);
}

/* The plugin says money moved but not as asked (underpaid, overpaid, paid
 * after expiry, unknown currency): never credited; a pending, failed or
 * expired order is parked with the reason, and staff are alerted in any
 * case. */
static dm_err *apply_needs_review(dm_db *db, apr_pool_t *p, const char *plugin,
                                  const dm_payment_event *ev, dm_order *o, const char **outcome)
{
    static const char *const reasons[] = {
        "other", "underpaid", "overpaid", "paid_after_expiry", "unknown_currency", "other"};
    const char *key =
        apr_pstrcat(p, plugin, ":", apr_pstrmemdup(p, ev->event_id.ptr, ev->event_id.len), NULL);
    const char *reason = reasons[ev->review_reason <= DM_REVIEW_OTHER ? ev->review_reason : 0];
    const char *detail = apr_psprintf(
        p, "event %s: %s (%s, order %" APR_INT64_T_FMT " is %" APR_INT64_T_FMT " %s)%s%.*s", key,
        reason, event_money(p, ev, o), (apr_int64_t)o->id, (apr_int64_t)o->amount_micros,
        o->currency, ev->detail.len ? ": " : "", (int)ev->detail.len,
        ev->detail.ptr ? ev->detail.ptr : "");

    if (strcmp(o->status, "pending") == 0 || strcmp(o->status, "failed") == 0 ||
        strcmp(o->status, "expired") == 0) {
        return park(db, p, o, o->status, reason, detail, key, "needs_review", outcome);
    }
    *outcome = "review_noted";
    return staff_alert(db, p, o, reason, detail, key);
}

dm_err *dm_order_history_add(dm_db *db, apr_pool_t *p, int64_t order_id, const char *kind,
                             const char *source, const char *detail)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e =
        dm_db_prepare(db, p,
                      "INSERT INTO order_events (order_id, kind, source, detail, created_at) "
                      "VALUES (?, ?, ?, ?, ?)",
                      &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, order_id);
    dm_stmt_bind_str(st, 2, kind);
    dm_stmt_bind_str(st, 3, source);
    if (detail) {
        dm_stmt_bind_str(st, 4, detail);
    } else {
        dm_stmt_bind_null(st, 4);
    }
    dm_stmt_bind_int64(st, 5, dm_now());
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

static dm_err *apply_to_order(dm_db *db, apr_pool_t *p, const char *plugin,
                              const dm_payment_event *ev, dm_order *o, const char **outcome);

dm_err *dm_orders_apply_event(dm_db *db, apr_pool_t *p, const char *plugin,
                              const dm_payment_event *ev, const char **outcome)
{
    return dm_orders_apply_event_from(db, p, plugin, "webhook", ev, outcome);
}

dm_err *dm_orders_apply_event_from(dm_db *db, apr_pool_t *p, const char *plugin, const char *source,
                                   const dm_payment_event *ev, const char **outcome)
{
    dm_order o;
    int found = 0;
    int64_t id = order_id_of(ev->order_id);
    dm_err *e = NULL;

    *outcome = "ignored";
    if (!dm_db_in_transaction(db)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "orders: an event must be applied in the transaction recording it");
    }
    if (ev->status == DM_PAY_IGNORED) {
        return NULL;
    }
    if (id) {
        e = order_by_id(db, p, id, &o, &found);
    } else if (ev->order_id.len == 0) {
        /* a refund or dispute may name only the payment, or the checkout */
        if (ev->payment_id.len) {
            e = order_by_ref(db, p, "payment_id", plugin, ev->payment_id, &o, &found);
        }
        if (!e && !found && ev->provider_ref.len) {
            e = order_by_ref(db, p, "provider_ref", plugin, ev->provider_ref, &o, &found);
        }
    }
    if (e) {
        return e;
    }
    if (!found) {
        *outcome = "unknown_order";
        dm_log(DM_L_NOTICE,
               "DM00703: payment event %s/%.*s names no order of ours (order %.*s, "
               "reference %.*s): recorded, nothing else done",
               plugin, (int)ev->event_id.len, ev->event_id.ptr, (int)ev->order_id.len,
               ev->order_id.ptr ? ev->order_id.ptr : "", (int)ev->provider_ref.len,
               ev->provider_ref.ptr ? ev->provider_ref.ptr : "");
        return NULL;
    }
    if (strcmp(o.gateway, plugin) != 0) {
        *outcome = "wrong_gateway";
        dm_log(DM_L_NOTICE,
               "DM00704: payment event %s/%.*s names order %" APR_INT64_T_FMT
               " of gateway %s: recorded, nothing else done",
               plugin, (int)ev->event_id.len, ev->event_id.ptr, (apr_int64_t)o.id, o.gateway);
        return NULL;
    }
    e = apply_to_order(db, p, plugin, ev, &o, outcome);
    if (!e && strcmp(*outcome, "no_change") != 0 && strcmp(*outcome, "ignored") != 0) {
        e = dm_order_history_add(
            db, p, o.id, *outcome, source ? source : "webhook",
            apr_psprintf(p, "%s event %.*s (%s)", plugin, (int)ev->event_id.len,
                         ev->event_id.ptr ? ev->event_id.ptr : "", event_money(p, ev, &o)));
    }
    return e;
}

static dm_err *apply_to_order(dm_db *db, apr_pool_t *p, const char *plugin,
                              const dm_payment_event *ev, dm_order *o, const char **outcome)
{
    int changed = 0;
    dm_err *e;

    switch (ev->status) {
    case DM_PAY_PAID:
        return apply_paid(db, p, plugin, ev, o, outcome);
    case DM_PAY_FAILED:
    case DM_PAY_EXPIRED:
        e = transition(db, p, o->id, "pending", ev->status == DM_PAY_FAILED ? "failed" : "expired",
                       0, &changed);
        /* A decline or expiry of an order already paid changes nothing;
         * the outcome says why, so the gateway's page can tell the buyer. */
        *outcome = changed ? (ev->status == DM_PAY_FAILED ? "failed" : "expired")
                   : !strcmp(o->status, "paid") || !strcmp(o->status, "disputed") ? "already_paid"
                                                                                  : "no_change";
        return e;
    case DM_PAY_REFUNDED:
        return apply_refunded(db, p, plugin, ev, o, outcome);
    case DM_PAY_DISPUTE_OPENED:
    case DM_PAY_DISPUTE_WON:
    case DM_PAY_DISPUTE_LOST:
        return apply_dispute(db, p, plugin, ev, o, outcome);
    case DM_PAY_NEEDS_REVIEW:
        return apply_needs_review(db, p, plugin, ev, o, outcome);
    case DM_PAY_PENDING:
        /* seen, not settled: recorded in the history, nothing changes */
        *outcome = "pending";
        return NULL;
    case DM_PAY_IGNORED:
        break;
    }
    *outcome = "ignored";
    return NULL;
}

/* ---- staff refunds ---- */

static json_t *order_state(const dm_order *o)
{
    return json_pack("{s:s,s:I,s:I,s:s}", "status", o->status, "amount_micros",
                     (json_int_t)o->amount_micros, "refunded_micros",
                     (json_int_t)o->refunded_micros, "gateway", o->gateway);
}

static dm_err *refund_impl(dm_db *db, apr_pool_t *p, const dm_plugin_host *h, int64_t staff_id,
                           const char *ip, int64_t order_id, int64_t amount_micros,
                           const char *reason, const char *manual_ref, int manual, dm_order *out,
                           int *refunded);

dm_err *dm_order_refund(dm_db *db, apr_pool_t *p, const dm_plugin_host *h, int64_t staff_id,
                        const char *ip, int64_t order_id, int64_t amount_micros, const char *reason,
                        dm_order *out, int *refunded)
{
    return refund_impl(db, p, h, staff_id, ip, order_id, amount_micros, reason, NULL, 0, out,
                       refunded);
}

dm_err *dm_order_refund_manual(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                               int64_t order_id, int64_t amount_micros, const char *reason,
                               const char *provider_refund_ref, dm_order *out)
{
    int refunded = 0;
    return refund_impl(db, p, NULL, staff_id, ip, order_id, amount_micros, reason,
                       provider_refund_ref, 1, out, &refunded);
}

static dm_err *refund_impl(dm_db *db, apr_pool_t *p, const dm_plugin_host *h, int64_t staff_id,
                           const char *ip, int64_t order_id, int64_t amount_micros,
                           const char *reason, const char *manual_ref, int manual, dm_order *out,
                           int *refunded)
{
    const dm_loaded_plugin *pl = NULL;
    const char *target = apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)order_id);
    json_t *before, *after;
    dm_message msg;
    dm_status rc;
    dm_refund_req req;
    dm_payment_refund_in rin;
    int64_t left, was;
    int balance, now_posted, applied = 0, complete = 0;
    dm_err *e;

    *refunded = 0;
    if (dm_db_in_transaction(db)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "orders: a refund must not start inside a transaction");
    }
    if (!reason || !*reason) {
        return dm_err_make(p, DM_E_INVALID, "reason", "a refund needs a reason");
    }
    if ((e = dm_validate_text(p, "reason", reason, REFUND_REASON_MAX_CHARS, 0))) {
        return e;
    }
    if (manual_ref && *manual_ref &&
        (e = dm_validate_text(p, "provider_refund_ref", manual_ref, DM_PAYMENT_REF_MAX, 0))) {
        return e;
    }
    if (amount_micros < 0) {
        return dm_err_make(p, DM_E_INVALID, "amount_micros", "amount_micros must be positive");
    }
    e = dm_order_get(db, p, order_id, 0, out);
    if (e) {
        return e;
    }
    if (strcmp(out->status, "paid") != 0) {
        return dm_err_make(p, DM_E_CONFLICT, NULL,
                           "order %s is %s: only a paid order can be refunded", target,
                           out->status);
    }
    left = out->amount_micros - out->refunded_micros;
    if (amount_micros == 0) {
        amount_micros = left;
    }
    if (amount_micros > left) {
        return dm_err_make(p, DM_E_CONFLICT, NULL,
                           "order %s has %" APR_INT64_T_FMT
                           " micro-%s left to refund, not %" APR_INT64_T_FMT,
                           target, (apr_int64_t)left, out->currency, (apr_int64_t)amount_micros);
    }
    balance = strcmp(out->gateway, DM_ORDER_GATEWAY_BALANCE) == 0;
    if (manual && balance) {
        return dm_err_make(p, DM_E_INVALID, "manual",
                           "order %s was paid from the balance: refund it without manual", target);
    }
    /* a manual refund was made at the provider: posted here at once, like
     * a balance order's, without asking the plugin */
    now_posted = balance || manual;
    if (!now_posted) {
        pl = dm_payment_plugin(h, out->gateway);
        if (!dm_payment_can_refund(pl)) {
            return dm_err_make(p, DM_E_CONFLICT, NULL,
                               "the gateway %s cannot refund; refund order %s at the provider",
                               out->gateway, target);
        }
        if (!out->provider_ref) {
            return dm_err_make(p, DM_E_CONFLICT, NULL, "order %s has no gateway reference", target);
        }
    }
    before = dm_json_own(p, order_state(out));
    was = out->refunded_micros;

    /* Audited first, in its own transaction: the request is recorded even
     * if the gateway's answer is lost. A balance order is refunded in that
     * same transaction. */
    e = dm_db_begin(db, p);
    if (!e && now_posted) {
        dm_order now;
        e = dm_order_get(db, p, order_id, 0, &now);
        if (!e) {
            memset(&req, 0, sizeof(req));
            req.amount_micros = amount_micros;
            req.staff_id = staff_id;
            req.reason = reason;
            e = dm_refund_post(db, p, &now, &req, &applied, &complete);
        }
        if (!e && !applied) {
            e = dm_err_make(p, DM_E_CONFLICT, NULL, "order %s was refunded meanwhile", target);
        }
    }
    if (!e) {
        after = dm_json_own(p, json_pack("{s:s,s:I,s:s,s:s}", "status",
                                         now_posted ? (complete ? "refunded" : "paid") : "paid",
                                         "amount_micros", (json_int_t)amount_micros, "refund",
                                         manual    ? "manual"
                                         : balance ? "done"
                                                   : "requested",
                                         "reason", reason));
        if (manual) {
            json_object_set_new(after, "provider_refund_ref",
                                manual_ref && *manual_ref ? json_string(manual_ref) : json_null());
            e = dm_order_history_add(db, p, order_id, "refunded_manually", "staff",
                                     apr_psprintf(p, "%" APR_INT64_T_FMT " micros: %s",
                                                  (apr_int64_t)amount_micros, reason));
        }
    }
    if (!e) {
        e = dm_audit_write(db, p, staff_id, manual ? "order.refund_manual" : "order.refund",
                           "order", target, before, after, ip);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    e = dm_db_commit(db, p);
    if (e) {
        return e;
    }
    if (now_posted) {
        *refunded = 1;
        return dm_order_get(db, p, order_id, 0, out);
    }

    /* The gateway, with no transaction open: its refund webhook may reach
     * this server before the call returns. */
    memset(&rin, 0, sizeof(rin));
    rin.provider_ref = out->provider_ref;
    rin.payment_id = out->payment_id;
    rin.amount_micros = amount_micros;
    rin.currency = out->currency;
    /* the order and where its refunds stand: a retry of this same request
     * carries the same key, and the provider refunds it once */
    rin.idempotency_key =
        apr_psprintf(p, "dm-refund-%" APR_INT64_T_FMT "-%" APR_INT64_T_FMT "-%" APR_INT64_T_FMT,
                     (apr_int64_t)order_id, (apr_int64_t)was, (apr_int64_t)amount_micros);
    rin.reason = reason;
    rc = dm_payment_refund(h, pl, p, &rin, NULL, &msg);
    if (rc != DM_OK) {
        dm_log(DM_L_NOTICE, "DM00705: order %s: gateway %s refused the refund (%d): %s", target,
               out->gateway, (int)rc, msg.text[0] ? msg.text : "no reason given");
        return dm_err_make(p, rc == DM_ERR_TEMPORARY ? DM_E_UNAVAILABLE : DM_E_CONFLICT, NULL,
                           "the payment gateway did not refund: %s",
                           msg.text[0] ? msg.text : "no reason given");
    }
    e = dm_order_get(db, p, order_id, 0, out);
    if (!e) {
        /* its webhook came back already when the refunded total grew by it */
        *refunded = out->refunded_micros >= was + amount_micros;
    }
    return e;
}

/* ---- reading ---- */

dm_err *dm_order_get(dm_db *db, apr_pool_t *p, int64_t order_id, int64_t user_id, dm_order *out)
{
    int found = 0;
    dm_err *e = order_by_id(db, p, order_id, out, &found);

    if (!e && (!found || (user_id && out->user_id != user_id))) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "order %" APR_INT64_T_FMT " does not exist",
                        (apr_int64_t)order_id);
    }
    return e;
}

static int status_known(const char *s)
{
    for (size_t i = 0; i < sizeof(order_statuses) / sizeof(order_statuses[0]); i++) {
        if (strcmp(order_statuses[i], s) == 0) {
            return 1;
        }
    }
    return 0;
}

dm_err *dm_orders_list(dm_db *db, apr_pool_t *p, int64_t user_id, const char *status,
                       int64_t cursor, int limit, apr_array_header_t **rows, int64_t *next)
{
    dm_stmt *st;
    int row = 0, n = 1;
    dm_err *e;

    *next = 0;
    *rows = apr_array_make(p, limit > 0 ? limit : 1, sizeof(dm_order));
    if (limit < 1 || limit > DM_ORDERS_PAGE_MAX) {
        return dm_err_make(p, DM_E_INVALID, "limit", "limit must be 1 to %d", DM_ORDERS_PAGE_MAX);
    }
    if (status && !status_known(status)) {
        return dm_err_make(p, DM_E_INVALID, "status",
                           "status must be pending, paid, failed, expired, needs_review or "
                           "refunded");
    }
    /* One statement per filter, each served by its own index (a member's
     * orders by status: orders_user, a member has few). */
    if (user_id && status) {
        e = dm_db_prepare(db, p,
                          "SELECT " ORDER_COLUMNS " FROM orders WHERE user_id = ? AND status = ? "
                          "AND id < ? ORDER BY id DESC LIMIT ?",
                          &st);
    } else if (user_id) {
        e = dm_db_prepare(db, p,
                          "SELECT " ORDER_COLUMNS " FROM orders WHERE user_id = ? AND id < ? "
                          "ORDER BY id DESC LIMIT ?",
                          &st);
    } else if (status) {
        e = dm_db_prepare(db, p,
                          "SELECT " ORDER_COLUMNS " FROM orders WHERE status = ? AND id < ? "
                          "ORDER BY id DESC LIMIT ?",
                          &st);
    } else {
        e = dm_db_prepare(db, p,
                          "SELECT " ORDER_COLUMNS " FROM orders WHERE id < ? "
                          "ORDER BY id DESC LIMIT ?",
                          &st);
    }
    if (e) {
        return e;
    }
    if (user_id) {
        dm_stmt_bind_int64(st, n++, user_id);
    }
    if (status) {
        dm_stmt_bind_str(st, n++, status);
    }
    dm_stmt_bind_int64(st, n++, cursor > 0 ? cursor : INT64_MAX);
    dm_stmt_bind_int64(st, n, (int64_t)limit + 1);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        dm_order o;
        read_order(st, p, &o);
        if ((*rows)->nelts == limit) {
            *next = APR_ARRAY_IDX(*rows, limit - 1, dm_order).id;
            break;
        }
        APR_ARRAY_PUSH(*rows, dm_order) = o;
    }
    dm_stmt_done(st);
    return e;
}

/* ---- JSON ---- */

json_t *dm_order_json(apr_pool_t *p, const dm_order *o, int staff)
{
    json_t *j = json_object();

    json_object_set_new(j, "id", json_integer(o->id));
    json_object_set_new(j, "status", json_string(o->status));
    json_object_set_new(j, "amount_micros", json_integer(o->amount_micros));
    json_object_set_new(j, "currency", json_string(o->currency));
    json_object_set_new(j, "package_id", json_integer(o->package_id));
    json_object_set_new(j, "gateway", json_string(o->gateway));
    json_object_set_new(j, "created_at", dm_json_time_or_null(p, o->created_at));
    json_object_set_new(j, "paid_at", dm_json_time_or_null(p, o->paid_at));
    json_object_set_new(j, "refunded_micros", json_integer(o->refunded_micros));
    if (strcmp(o->status, "pending") == 0 && o->checkout_url) {
        json_object_set_new(j, "checkout_url", json_string(o->checkout_url));
    }
    if (staff) {
        json_object_set_new(j, "user_id", json_integer(o->user_id));
        json_object_set_new(j, "provider_ref",
                            o->provider_ref ? json_string(o->provider_ref) : json_null());
        json_object_set_new(j, "payment_transfer_id",
                            o->payment_transfer_id ? json_integer(o->payment_transfer_id)
                                                   : json_null());
        json_object_set_new(j, "updated_at", dm_json_time_or_null(p, o->updated_at));
    }
    return j;
}
