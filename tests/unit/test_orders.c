/* Orders and contracts: creating an order (price fixed, package on sale,
 * gateway loaded), paying from the balance in one transaction (and
 * writing nothing when the balance is short), and every payment event
 * applied through payments.c exactly once: paid, replayed, paid twice,
 * amount mismatch, failed, expired, refunded, unknown order.
 *
 * Needs $DM_PLUGINS (payment-sandbox.so): checkouts go through the real
 * plugin. Its create_checkout needs no network. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shop/capacity.h"
#include "shop/catalogue.h"
#include "store/db.h"
#include "ledger/ledger.h"
#include "base/log.h"
#include "store/migrate.h"
#include "shop/orders.h"
#include "shop/payments.h"
#include "plugins/plugin_host.h"
#include "fixture.h"

#define SECRET "whsec_unit_orders_0123456789abcdef0123456789"
#define PRICE 29000000

static apr_pool_t *pool;
static dm_plugin_host *host;
static dm_db *db;
static int serial;
static int64_t pkg_id, buyer;

static void quiet_sink(void *baton, dm_level level, const char *msg)
{
    (void)baton;
    (void)level;
    (void)msg;
}

static int64_t count(const char *sql)
{
    int64_t v = -1;
    int found = 0;
    assert_null(dm_db_query_int64(db, pool, sql, &v, &found));
    return v;
}

static void exec(const char *sql)
{
    assert_null(dm_db_exec(db, pool, sql));
}

static int64_t new_member(void)
{
    dm_stmt *st = NULL;
    int row = 0;
    int64_t id = 0;
    const char *email = apr_psprintf(pool, "o%d@example.com", ++serial);
    const char *code = apr_psprintf(pool, "O%07d", serial);

    assert_null(dm_db_prepare(db, pool,
                              "INSERT INTO users (email, email_key, password_hash, referral_code, "
                              "terms_version, terms_accepted_at, created_at, updated_at) "
                              "VALUES (?, ?, 'x', ?, 'v1', 0, 0, 0) RETURNING id",
                              &st));
    dm_stmt_bind_text(st, 1, email, strlen(email));
    dm_stmt_bind_text(st, 2, email, strlen(email));
    dm_stmt_bind_text(st, 3, code, strlen(code));
    assert_null(dm_stmt_step(st, pool, &row));
    assert_true(row);
    id = dm_stmt_int64(st, 0);
    dm_stmt_done(st);
    return id;
}

static void credit(int64_t user, int64_t amount)
{
    dm_transfer t;
    int created = 0;
    assert_null(
        dm_ledger_adjust(db, pool, 0, NULL, user, amount, "test credit", NULL, &t, &created));
}

static int64_t wallet(int64_t user)
{
    dm_balances b;
    assert_null(dm_ledger_member_balances(db, pool, user, "USD", &b));
    return b.wallet_micros;
}

static void assert_ledger_sound(void)
{
    dm_ledger_report rep;
    assert_null(dm_ledger_verify(db, pool, &rep));
    if (!rep.ok) {
        fail_msg("ledger verify: %s", rep.problem ? rep.problem : "?");
    }
    assert_int_equal(rep.total_micros, 0);
}

static dm_str S(const char *s)
{
    dm_str out = {s, s ? strlen(s) : 0};
    return out;
}

/* Records (and so applies) an event; returns its outcome. */
static const char *deliver(const char *event_id, dm_payment_event_status status,
                           const char *order_id, const char *provider_ref, int64_t amount,
                           const char *currency, int *duplicate)
{
    dm_payment_event ev;
    dm_payment_recorded rec;
    dm_stmt *st;
    int row = 0;
    const char *outcome = NULL;

    memset(&ev, 0, sizeof(ev));
    ev.size = sizeof(ev);
    ev.event_id = S(event_id);
    ev.status = status;
    ev.order_id = S(order_id);
    ev.provider_ref = S(provider_ref);
    ev.amount_micros = amount;
    ev.currency = S(currency);
    assert_null(dm_payment_event_record(db, pool, "sandbox", &ev, "{}", 2, &rec));
    if (duplicate) {
        *duplicate = rec.duplicate;
    }
    assert_null(dm_db_prepare(db, pool, "SELECT outcome FROM payment_events WHERE id = ?", &st));
    dm_stmt_bind_int64(st, 1, rec.id);
    assert_null(dm_stmt_step(st, pool, &row));
    assert_true(row);
    if (!dm_stmt_is_null(st, 0)) {
        outcome = apr_pstrdup(pool, dm_stmt_text(st, 0, NULL));
    }
    dm_stmt_done(st);
    return outcome;
}

static const char *oid(const dm_order *o)
{
    return apr_psprintf(pool, "%" APR_INT64_T_FMT, (apr_int64_t)o->id);
}

static void checkout(dm_order *o)
{
    assert_null(dm_order_create_checkout(db, pool, host, buyer, "buyer@example.com", pkg_id,
                                         "sandbox", "http://shop.example/", o));
}

static const char *status_of(int64_t order_id)
{
    dm_order o;
    assert_null(dm_order_get(db, pool, order_id, 0, &o));
    return o.status;
}

static int setup(void **state)
{
    dm_package pkg = {0,  "Starter 5 TH/s", 5000, PRICE, 1100000, 30, "USD", 1,
                      10, DM_YIELD_FIXED,   0};
    dm_capacity_row cap;
    const char *dirp = getenv("DM_PLUGINS");

    (void)state;
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    db = dm_fx_db(pool);
    assert_null(dm_capacity_set(db, pool, 0, NULL, 1000000000, "unit", &cap));
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_catalogue_insert(db, pool, &pkg));
    assert_null(dm_db_commit(db, pool));
    pkg_id = pkg.id;
    buyer = new_member();
    if (!dirp) {
        fail_msg("DM_PLUGINS is not set: point it at the built plugins");
    }
    assert_null(dm_plugins_create(pool, &host));
    assert_null(dm_plugins_declare(host, "payment", "sandbox",
                                   apr_psprintf(pool, "%s/payment-sandbox.so", dirp)));
    assert_null(dm_plugins_set(host, "sandbox", "enabled", "yes"));
    assert_null(dm_plugins_set(host, "sandbox", "webhook_secret", SECRET));
    dm_plugins_set_public_url(host, "http://127.0.0.1:9");
    assert_null(dm_plugins_init_all(host));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool);
    return 0;
}

/* ---- creating orders ---- */

static void test_checkout_order_is_pending_with_price_fixed_and_checkout_url(void **state)
{
    dm_order o, again;
    (void)state;

    checkout(&o);
    assert_string_equal(o.status, "pending");
    assert_int_equal(o.amount_micros, PRICE);
    assert_string_equal(o.gateway, "sandbox");
    assert_non_null(strstr(o.checkout_url, "/api/plugins/sandbox/checkout/"));
    assert_int_equal(strncmp(o.provider_ref, "cs_sbx_", 7), 0);
    /* a later price change does not touch the order */
    exec("UPDATE packages SET price_micros = 1");
    assert_null(dm_order_get(db, pool, o.id, buyer, &again));
    assert_int_equal(again.amount_micros, PRICE);
    assert_string_equal(again.provider_ref, o.provider_ref);
    assert_string_equal(again.checkout_url, o.checkout_url);
    /* someone else's order is not found */
    assert_int_equal(dm_order_get(db, pool, o.id, buyer + 1000, &again)->code, DM_E_NOT_FOUND);
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), 0);
}

static void test_order_refusals(void **state)
{
    dm_order o;
    dm_err *e;
    (void)state;

    e = dm_order_create_checkout(db, pool, host, buyer, NULL, pkg_id, "nope", NULL, &o);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "gateway");
    e = dm_order_create_checkout(db, pool, host, buyer, NULL, pkg_id + 99, "sandbox", NULL, &o);
    assert_int_equal(e->code, DM_E_NOT_FOUND);
    exec("UPDATE packages SET active = 0");
    e = dm_order_create_checkout(db, pool, host, buyer, NULL, pkg_id, "sandbox", NULL, &o);
    assert_int_equal(e->code, DM_E_CONFLICT);
    e = dm_order_pay_from_balance(db, pool, buyer, pkg_id, &o);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_int_equal(count("SELECT COUNT(*) FROM orders"), 0);
}

/* ---- paying from the balance ---- */

static void test_pay_from_balance_is_one_transaction_with_contract(void **state)
{
    dm_order o;
    dm_contract c;
    int found = 0;
    (void)state;

    credit(buyer, PRICE + 1000);
    assert_null(dm_order_pay_from_balance(db, pool, buyer, pkg_id, &o));
    assert_string_equal(o.status, "paid");
    assert_string_equal(o.gateway, "balance");
    assert_true(o.payment_transfer_id > 0);
    assert_int_equal(wallet(buyer), 1000);
    assert_int_equal(count("SELECT balance_micros FROM accounts WHERE code = 'sales'"), PRICE);
    assert_null(dm_contract_of_order(db, pool, o.id, &c, &found));
    assert_true(found);
    assert_string_equal(c.status, "active");
    assert_string_equal(c.name, "Starter 5 TH/s");
    assert_int_equal(c.hashrate_ghs, 5000);
    assert_int_equal(c.price_micros, PRICE);
    assert_int_equal(c.daily_yield_micros, 1100000);
    assert_int_equal(c.duration_days, 30);
    assert_int_equal(c.expires_at - c.started_at, 30 * 86400);
    assert_int_equal(count("SELECT COUNT(*) FROM mail_queue WHERE template = 'order_paid'"), 1);
    assert_ledger_sound();
}

static void test_insufficient_balance_is_409_and_writes_nothing(void **state)
{
    dm_order o;
    dm_err *e;
    int64_t transfers, mails;
    (void)state;

    credit(buyer, PRICE - 1);
    transfers = count("SELECT COUNT(*) FROM transfers");
    mails = count("SELECT COUNT(*) FROM mail_queue");
    e = dm_order_pay_from_balance(db, pool, buyer, pkg_id, &o);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_non_null(strstr(e->message, "insufficient balance"));
    assert_int_equal(count("SELECT COUNT(*) FROM orders"), 0);
    assert_int_equal(count("SELECT COUNT(*) FROM contracts"), 0);
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), transfers);
    assert_int_equal(count("SELECT COUNT(*) FROM mail_queue"), mails);
    assert_int_equal(wallet(buyer), PRICE - 1);
    assert_false(dm_db_in_transaction(db));
    assert_ledger_sound();
}

/* ---- payment events ---- */

static void test_paid_event_pays_once_and_replays_change_nothing(void **state)
{
    dm_order o;
    dm_contract c;
    int found = 0, dup = 0;
    (void)state;

    checkout(&o);
    assert_string_equal(deliver("evt_1", DM_PAY_PAID, oid(&o), o.provider_ref, PRICE, "USD", &dup),
                        "paid");
    assert_false(dup);
    assert_string_equal(status_of(o.id), "paid");
    assert_null(dm_contract_of_order(db, pool, o.id, &c, &found));
    assert_true(found);
    assert_string_equal(c.status, "active");
    assert_int_equal(
        count("SELECT COUNT(*) FROM transfers WHERE idempotency_key = 'pay:sandbox:evt_1'"), 1);
    assert_int_equal(count("SELECT balance_micros FROM accounts WHERE code = 'gateway:sandbox'"),
                     -PRICE);
    /* the same event again: nothing */
    for (int i = 0; i < 3; i++) {
        deliver("evt_1", DM_PAY_PAID, oid(&o), o.provider_ref, PRICE, "USD", &dup);
        assert_true(dup);
    }
    /* another payment of the same checkout: recorded for staff, no contract */
    assert_string_equal(deliver("evt_2", DM_PAY_PAID, oid(&o), o.provider_ref, PRICE, "USD", NULL),
                        "duplicate_payment");
    assert_int_equal(count("SELECT COUNT(*) FROM contracts"), 1);
    assert_int_equal(count("SELECT COUNT(*) FROM transfers WHERE kind = 'purchase'"), 1);
    assert_int_equal(count("SELECT COUNT(*) FROM mail_queue WHERE template = 'order_paid'"), 1);
    assert_ledger_sound();
}

static void test_amount_or_currency_mismatch_needs_review_never_credits(void **state)
{
    dm_order a, b;
    (void)state;

    exec("INSERT INTO staff (email, email_key, password_hash, role, created_at, updated_at) "
         "VALUES ('fin@example.com', 'fin@example.com', 'x', 'finance', 0, 0)");
    checkout(&a);
    checkout(&b);
    assert_string_equal(
        deliver("evt_a", DM_PAY_PAID, oid(&a), a.provider_ref, PRICE - 1, "USD", NULL),
        "amount_mismatch");
    assert_string_equal(deliver("evt_b", DM_PAY_PAID, oid(&b), b.provider_ref, PRICE, "EUR", NULL),
                        "amount_mismatch");
    assert_string_equal(status_of(a.id), "needs_review");
    assert_string_equal(status_of(b.id), "needs_review");
    assert_int_equal(count("SELECT COUNT(*) FROM contracts"), 0);
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), 0);
    assert_int_equal(count("SELECT COUNT(*) FROM mail_queue WHERE template = 'staff_alert' AND "
                           "recipient = 'fin@example.com'"),
                     2);
    /* a correct payment later does not credit a parked order either */
    assert_string_equal(deliver("evt_a2", DM_PAY_PAID, oid(&a), a.provider_ref, PRICE, "USD", NULL),
                        "duplicate_payment");
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), 0);
    assert_ledger_sound();
}

static void test_failed_and_expired_only_from_pending(void **state)
{
    dm_order a, b;
    (void)state;

    checkout(&a);
    checkout(&b);
    assert_string_equal(
        deliver("evt_f", DM_PAY_FAILED, oid(&a), a.provider_ref, PRICE, "USD", NULL), "failed");
    assert_string_equal(deliver("evt_x", DM_PAY_EXPIRED, oid(&b), b.provider_ref, 0, "", NULL),
                        "expired");
    assert_string_equal(status_of(a.id), "failed");
    assert_string_equal(status_of(b.id), "expired");
    /* a second decline changes nothing */
    assert_string_equal(
        deliver("evt_f2", DM_PAY_FAILED, oid(&a), a.provider_ref, PRICE, "USD", NULL), "no_change");
    /* paid after a decline: parked for staff, not credited */
    assert_string_equal(deliver("evt_p", DM_PAY_PAID, oid(&a), a.provider_ref, PRICE, "USD", NULL),
                        "late_payment");
    assert_string_equal(status_of(a.id), "needs_review");
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), 0);
    assert_int_equal(count("SELECT COUNT(*) FROM contracts"), 0);
}

static void test_refund_event_ends_contract_and_reverses_payment_once(void **state)
{
    dm_order o;
    dm_contract c;
    int found = 0;
    (void)state;

    checkout(&o);
    deliver("evt_pay", DM_PAY_PAID, oid(&o), o.provider_ref, PRICE, "USD", NULL);
    /* the sandbox's refund event carries only the checkout reference */
    assert_string_equal(
        deliver("evt_ref", DM_PAY_REFUNDED, NULL, o.provider_ref, PRICE, "USD", NULL), "refunded");
    assert_string_equal(status_of(o.id), "refunded");
    assert_null(dm_contract_of_order(db, pool, o.id, &c, &found));
    assert_string_equal(c.status, "refunded");
    assert_true(c.ended_at > 0);
    assert_int_equal(count("SELECT COUNT(*) FROM transfers WHERE kind = 'refund' AND "
                           "reverses_transfer_id IS NOT NULL"),
                     1);
    assert_int_equal(count("SELECT balance_micros FROM accounts WHERE code = 'sales'"), 0);
    assert_int_equal(count("SELECT balance_micros FROM accounts WHERE code = 'gateway:sandbox'"),
                     0);
    assert_string_equal(
        deliver("evt_ref2", DM_PAY_REFUNDED, NULL, o.provider_ref, PRICE, "USD", NULL),
        "already_refunded");
    assert_int_equal(count("SELECT COUNT(*) FROM transfers WHERE kind = 'refund'"), 1);
    assert_ledger_sound();
}

static void test_events_for_unknown_orders_are_recorded_only(void **state)
{
    (void)state;

    assert_string_equal(deliver("evt_u1", DM_PAY_PAID, "999999", "cs_x", PRICE, "USD", NULL),
                        "unknown_order");
    assert_string_equal(deliver("evt_u2", DM_PAY_PAID, "ord-abc", "cs_x", PRICE, "USD", NULL),
                        "unknown_order");
    assert_string_equal(deliver("evt_u3", DM_PAY_REFUNDED, NULL, "cs_nope", PRICE, "USD", NULL),
                        "unknown_order");
    assert_int_equal(count("SELECT COUNT(*) FROM payment_events"), 3);
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), 0);
}

static void test_event_for_another_gateways_order_changes_nothing(void **state)
{
    dm_order o;
    (void)state;

    credit(buyer, PRICE);
    assert_null(dm_order_pay_from_balance(db, pool, buyer, pkg_id, &o));
    assert_string_equal(deliver("evt_g", DM_PAY_REFUNDED, oid(&o), NULL, PRICE, "USD", NULL),
                        "wrong_gateway");
    assert_string_equal(status_of(o.id), "paid");
}

static void test_staff_refund_of_balance_order_restores_wallet_and_is_audited(void **state)
{
    dm_order o, r;
    int refunded = 0;
    (void)state;

    credit(buyer, PRICE);
    assert_null(dm_order_pay_from_balance(db, pool, buyer, pkg_id, &o));
    assert_int_equal(wallet(buyer), 0);
    assert_null(dm_order_refund(db, pool, host, 0, NULL, o.id, 0, "test", &r, &refunded));
    assert_true(refunded);
    assert_string_equal(r.status, "refunded");
    assert_int_equal(wallet(buyer), PRICE);
    assert_int_equal(count("SELECT COUNT(*) FROM contracts WHERE status = 'refunded'"), 1);
    assert_int_equal(count("SELECT COUNT(*) FROM audit_log WHERE action = 'order.refund'"), 1);
    /* again: the order is no longer paid */
    assert_int_equal(dm_order_refund(db, pool, host, 0, NULL, o.id, 0, "test", &r, &refunded)->code,
                     DM_E_CONFLICT);
    assert_ledger_sound();
}

static void test_lists_are_newest_first_and_paged(void **state)
{
    dm_order o[3];
    apr_array_header_t *rows;
    int64_t next = 0;
    (void)state;

    for (int i = 0; i < 3; i++) {
        checkout(&o[i]);
    }
    assert_null(dm_orders_list(db, pool, buyer, NULL, 0, 2, &rows, &next));
    assert_int_equal(rows->nelts, 2);
    assert_int_equal(APR_ARRAY_IDX(rows, 0, dm_order).id, o[2].id);
    assert_int_equal(next, o[1].id);
    assert_null(dm_orders_list(db, pool, buyer, NULL, next, 2, &rows, &next));
    assert_int_equal(rows->nelts, 1);
    assert_int_equal(next, 0);
    assert_null(dm_orders_list(db, pool, 0, "pending", 0, 50, &rows, &next));
    assert_int_equal(rows->nelts, 3);
    assert_null(dm_orders_list(db, pool, 0, "paid", 0, 50, &rows, &next));
    assert_int_equal(rows->nelts, 0);
    assert_int_equal(dm_orders_list(db, pool, 0, "bogus", 0, 50, &rows, &next)->code, DM_E_INVALID);
    assert_null(dm_orders_list(db, pool, buyer + 1000, NULL, 0, 50, &rows, &next));
    assert_int_equal(rows->nelts, 0);
}

/* ---- ABI 1.4 statuses, payment identity ---- */

/* deliver() with the fields of ABI 1.4. */
static const char *deliver14(const char *event_id, dm_payment_event_status status,
                             const char *order_id, const char *payment_id, int64_t amount,
                             dm_payment_review_reason why)
{
    dm_payment_event ev;
    dm_payment_recorded rec;

    memset(&ev, 0, sizeof(ev));
    ev.size = sizeof(ev);
    ev.event_id = S(event_id);
    ev.status = status;
    ev.order_id = S(order_id);
    ev.payment_id = S(payment_id);
    ev.amount_micros = amount;
    ev.currency = S("USD");
    ev.review_reason = why;
    ev.detail = S(why ? "paid 9.50 of 10.00" : NULL);
    assert_null(dm_payment_event_record(db, pool, "sandbox", &ev, "{}", 2, &rec));
    assert_false(rec.duplicate);
    return rec.outcome;
}

static void staff_member(void)
{
    exec("INSERT INTO staff (email, email_key, password_hash, role, created_at, updated_at) "
         "VALUES ('fin@example.com', 'fin@example.com', 'x', 'finance', 0, 0)");
}

static int64_t alerts(const char *reason)
{
    return count(apr_psprintf(pool,
                              "SELECT COUNT(*) FROM mail_queue WHERE template = '%s' AND "
                              "json_extract(variables, '$.reason') = '%s'",
                              /* disputes have a template of their own */
                              strncmp(reason, "dispute_", 8) == 0 ? "dispute_alert" : "staff_alert",
                              reason));
}

static void test_one_payment_identity_credits_one_order_once(void **state)
{
    dm_order a, b;
    (void)state;

    staff_member();
    checkout(&a);
    checkout(&b);
    assert_string_equal(deliver14("e1", DM_PAY_PAID, oid(&a), "pi_1", PRICE, 0), "paid");
    /* the same payment, reported again under other event ids (redelivery,
     * return page, janitor): nothing to do, nobody alerted */
    assert_string_equal(deliver14("e2", DM_PAY_PAID, oid(&a), "pi_1", PRICE, 0), "already_paid");
    assert_string_equal(deliver14("janitor:1", DM_PAY_PAID, oid(&a), "pi_1", PRICE, 0),
                        "already_paid");
    /* that payment reported for another order: never a second credit */
    assert_string_equal(deliver14("e3", DM_PAY_PAID, oid(&b), "pi_1", PRICE, 0), "payment_reused");
    assert_string_equal(status_of(b.id), "needs_review");
    /* a different payment of the paid order: a duplicate for staff */
    assert_string_equal(deliver14("e4", DM_PAY_PAID, oid(&a), "pi_2", PRICE, 0),
                        "duplicate_payment");
    assert_int_equal(count("SELECT COUNT(*) FROM contracts"), 1);
    assert_int_equal(count("SELECT COUNT(*) FROM transfers WHERE kind = 'purchase'"), 1);
    assert_int_equal(count(apr_psprintf(pool,
                                        "SELECT COUNT(*) FROM orders WHERE payment_id = 'pi_1' "
                                        "AND id = %" APR_INT64_T_FMT,
                                        (apr_int64_t)a.id)),
                     1);
    assert_int_equal(alerts("payment_reused"), 1);
    assert_int_equal(alerts("duplicate_payment"), 1);
    /* the history says where each outcome came from */
    assert_int_equal(count(apr_psprintf(pool,
                                        "SELECT COUNT(*) FROM order_events WHERE order_id = "
                                        "%" APR_INT64_T_FMT " AND source = 'webhook'",
                                        (apr_int64_t)a.id)),
                     4);
    /* and the UNIQUE index refuses a second order with that identity */
    assert_non_null(dm_db_exec(db, pool,
                               apr_psprintf(pool,
                                            "UPDATE orders SET payment_id = 'pi_1' WHERE id = "
                                            "%" APR_INT64_T_FMT,
                                            (apr_int64_t)b.id)));
    assert_ledger_sound();
}

static void test_dispute_opened_then_won_keeps_the_sale(void **state)
{
    dm_order o, now;
    (void)state;

    staff_member();
    checkout(&o);
    assert_string_equal(deliver14("p1", DM_PAY_PAID, oid(&o), "pi_d", PRICE, 0), "paid");
    assert_string_equal(deliver14("d1", DM_PAY_DISPUTE_OPENED, oid(&o), "pi_d", PRICE, 0),
                        "disputed");
    assert_string_equal(status_of(o.id), "disputed");
    assert_int_equal(alerts("dispute_opened"), 1);
    /* opened again (another event id): nothing more */
    assert_string_equal(deliver14("d1b", DM_PAY_DISPUTE_OPENED, oid(&o), "pi_d", PRICE, 0),
                        "no_change");
    /* no staff refund while the provider decides */
    {
        int refunded = 0;
        dm_err *e = dm_order_refund(db, pool, host, 0, NULL, o.id, 0, "asked", &now, &refunded);
        assert_non_null(e);
        assert_int_equal(e->code, DM_E_CONFLICT);
    }
    assert_string_equal(deliver14("d2", DM_PAY_DISPUTE_WON, NULL, "pi_d", PRICE, 0), "dispute_won");
    assert_null(dm_order_get(db, pool, o.id, 0, &now));
    assert_string_equal(now.status, "paid");
    assert_string_equal(now.dispute, "won");
    assert_int_equal(now.refunded_micros, 0);
    assert_int_equal(count("SELECT COUNT(*) FROM contracts WHERE status = 'active'"), 1);
    assert_int_equal(count("SELECT COUNT(*) FROM transfers WHERE kind = 'refund'"), 0);
    assert_ledger_sound();
}

static void test_dispute_lost_is_a_full_refund_once(void **state)
{
    dm_order o, now;
    (void)state;

    staff_member();
    checkout(&o);
    assert_string_equal(deliver14("p1", DM_PAY_PAID, oid(&o), "pi_l", PRICE, 0), "paid");
    assert_string_equal(deliver14("d1", DM_PAY_DISPUTE_OPENED, oid(&o), "pi_l", PRICE, 0),
                        "disputed");
    assert_string_equal(deliver14("d2", DM_PAY_DISPUTE_LOST, oid(&o), "pi_l", PRICE, 0),
                        "dispute_lost");
    assert_null(dm_order_get(db, pool, o.id, 0, &now));
    assert_string_equal(now.status, "refunded");
    assert_string_equal(now.dispute, "lost");
    /* the member is told the money went back, once */
    assert_int_equal(count("SELECT COUNT(*) FROM mail_queue WHERE template = 'order_refunded' AND "
                           "json_extract(variables, '$.fully_refunded') = 1"),
                     1);
    assert_int_equal(now.refunded_micros, PRICE);
    assert_int_equal(count("SELECT COUNT(*) FROM contracts WHERE status = 'refunded'"), 1);
    assert_int_equal(count("SELECT COALESCE(SUM(amount_micros), 0) FROM order_refunds"), PRICE);
    assert_int_equal(alerts("dispute_lost"), 1);
    /* lost again, or a refund event after it: nothing more */
    assert_string_equal(deliver14("d3", DM_PAY_DISPUTE_LOST, oid(&o), "pi_l", PRICE, 0),
                        "already_refunded");
    assert_int_equal(count("SELECT COUNT(*) FROM order_refunds"), 1);
    assert_int_equal(count("SELECT balance_micros FROM accounts WHERE code = 'gateway:sandbox'"),
                     0);
    assert_ledger_sound();
}

static void test_needs_review_parks_the_order_with_its_reason_and_credits_nothing(void **state)
{
    dm_order o, now;
    (void)state;

    staff_member();
    checkout(&o);
    assert_string_equal(
        deliver14("r1", DM_PAY_NEEDS_REVIEW, oid(&o), "inv_1", PRICE - 500000, DM_REVIEW_UNDERPAID),
        "needs_review");
    assert_null(dm_order_get(db, pool, o.id, 0, &now));
    assert_string_equal(now.status, "needs_review");
    assert_string_equal(now.review_reason, "underpaid");
    assert_int_equal(alerts("underpaid"), 1);
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), 0);
    assert_int_equal(count("SELECT COUNT(*) FROM contracts"), 0);
    assert_int_equal(
        count("SELECT COUNT(*) FROM payment_events WHERE review_reason = 'underpaid' AND "
              "detail = 'paid 9.50 of 10.00' AND payment_id = 'inv_1'"),
        1);
    /* a paid event later does not credit a parked order */
    assert_string_equal(deliver14("r2", DM_PAY_PAID, oid(&o), "inv_1", PRICE, 0),
                        "duplicate_payment");
    assert_int_equal(count("SELECT COUNT(*) FROM transfers"), 0);
    assert_ledger_sound();
}

static void test_pending_event_is_recorded_and_changes_nothing(void **state)
{
    dm_order o;
    (void)state;

    checkout(&o);
    assert_string_equal(deliver14("w1", DM_PAY_PENDING, oid(&o), "inv_2", PRICE, 0), "pending");
    assert_string_equal(status_of(o.id), "pending");
    assert_int_equal(count(apr_psprintf(pool,
                                        "SELECT COUNT(*) FROM order_events WHERE order_id = "
                                        "%" APR_INT64_T_FMT " AND kind = 'pending'",
                                        (apr_int64_t)o.id)),
                     1);
    assert_string_equal(deliver14("w2", DM_PAY_PAID, oid(&o), "inv_2", PRICE, 0), "paid");
    assert_int_equal(count("SELECT COUNT(*) FROM contracts"), 1);
    assert_ledger_sound();
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_checkout_order_is_pending_with_price_fixed_and_checkout_url),
        T(test_order_refusals),
        T(test_pay_from_balance_is_one_transaction_with_contract),
        T(test_insufficient_balance_is_409_and_writes_nothing),
        T(test_paid_event_pays_once_and_replays_change_nothing),
        T(test_amount_or_currency_mismatch_needs_review_never_credits),
        T(test_failed_and_expired_only_from_pending),
        T(test_refund_event_ends_contract_and_reverses_payment_once),
        T(test_events_for_unknown_orders_are_recorded_only),
        T(test_event_for_another_gateways_order_changes_nothing),
        T(test_staff_refund_of_balance_order_restores_wallet_and_is_audited),
        T(test_lists_are_newest_first_and_paged),
        T(test_one_payment_identity_credits_one_order_once),
        T(test_dispute_opened_then_won_keeps_the_sale),
        T(test_dispute_lost_is_a_full_refund_once),
        T(test_needs_review_parks_the_order_with_its_reason_and_credits_nothing),
        T(test_pending_event_is_recorded_and_changes_nothing),
    };
    int failed;

    apr_initialize();
    if (sodium_init() < 0 || dm_fx_init("orders") != 0) {
        return 1;
    }
    dm_log_set_sink(quiet_sink, NULL);
    failed = cmocka_run_group_tests_name("orders", tests, NULL, NULL);
    apr_terminate();
    return failed ? 1 : 0;
}
