"""The core of the payment gateways (issue 12) through the real Apache and
the sandbox plugin: the ABI 1.4 statuses (disputes opened, won and lost,
needs_review for an under/over payment), one payment identity credits once,
and the janitor settling a checkout whose webhook was dropped — alone, and
racing the late webhook. `deepminectl ledger verify` ends every scenario."""
import concurrent.futures
import os
import shutil
import threading

import pytest
import requests

from conftest import (Server, assert_clean_log, bearer, register_member, staff)

T0 = 1800000000  # the fake clock's start (2027-01-15)

FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit webhook 100000/1m ip\n"
        "DeepMineCommissionHold 0\n"
        "DeepMinePaymentSettle 600\n"
        "DeepMinePluginSet sandbox test_endpoints yes\n")


def wait_for(cond, timeout=30, what="condition"):
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture(scope="module")
def srv():
    s = Server(mpm="event", local_conf="", clock=T0)
    state = os.path.join(s.var, "sandbox-state")
    os.makedirs(state)
    if os.getuid() == 0:
        shutil.chown(state, "www-data", "www-data")
    s.write_local_conf(FAST + "DeepMinePluginSet sandbox state_dir %s\n" % state)
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.staff = {}
    s.packages = s.get("/api/packages").json()["packages"]
    staff(s, "finance")  # someone to alert
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def member(s, **extra):
    body = register_member(s, "pc", **extra)
    return body, bearer(body)


def sandbox_order(s, headers, package):
    r = s.request("POST", "/api/orders", headers=headers,
                  json={"package_id": package["id"], "gateway": "sandbox"})
    assert r.status_code == 201, r.text
    return r.json()["order"], r.json()["checkout_url"]


def order_row(s, oid):
    [row] = s.sql("SELECT status, dispute, review_reason, payment_id, refunded_micros "
                  "FROM orders WHERE id = %d" % oid)
    return row


def provider_ref(s, oid):
    return s.sql("SELECT provider_ref FROM orders WHERE id = %d" % oid)[0][0]


def purchases(s, oid):
    return s.sql("SELECT COUNT(*) FROM transfers WHERE kind = 'purchase' AND "
                 "reference = 'order:%d'" % oid)[0][0]


def contracts_of(s, oid):
    return [r[0] for r in s.sql("SELECT status FROM contracts WHERE order_id = %d" % oid)]


def assert_ledger_verifies(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def plugin_post(s, what, body):
    r = requests.post(s.url + "/api/plugins/sandbox/" + what, json=body, timeout=20,
                      headers={"Connection": "close"})
    assert r.status_code == 200, r.text
    return r.json()


def ran_since(s, job, interval):
    """The interval job ran its slot of the fake clock's now (quiet jobs
    keep no job_runs row when they found nothing to do; job_state's cursor
    is the last slot run)."""
    rows = s.sql("SELECT cursor FROM job_state WHERE job = '%s'" % job)
    return bool(rows) and rows[0][0] is not None and rows[0][0] >= s.now // interval * interval


def janitor_round(s, oid):
    """Moves the fake clock past DeepMinePaymentSettle; the daemon's janitor
    asks the sandbox about order oid on its next run."""
    s.advance(601)
    wait_for(lambda: s.sql("SELECT COUNT(*) FROM payment_events WHERE source = 'janitor' "
                           "AND order_ref = '%d'" % oid)[0][0] > 0, what="the janitor")


def test_a_dropped_webhook_is_settled_once_by_the_janitor(srv):
    _, h = member(srv)
    pkg = srv.packages[0]
    order, url = sandbox_order(srv, h, pkg)
    r = requests.post(url + "/pay-quietly", timeout=15)
    assert r.status_code == 200 and "webhook was withheld" in r.text
    assert order_row(srv, order["id"])[0] == "pending"
    janitor_round(srv, order["id"])
    status, _, _, pid, _ = order_row(srv, order["id"])
    assert status == "paid" and pid.startswith("py_sbx_")
    assert contracts_of(srv, order["id"]) == ["active"]
    assert purchases(srv, order["id"]) == 1
    assert srv.sql("SELECT outcome FROM payment_events WHERE source = 'janitor' AND "
                   "order_ref = '%d'" % order["id"]) == [("paid",)]
    assert srv.sql("SELECT kind, source FROM order_events WHERE order_id = %d"
                   % order["id"]) == [("paid", "janitor")]
    # the webhook arrives after all: the same payment, nothing more
    assert plugin_post(srv, "redeliver", {"provider_ref": provider_ref(srv, order["id"])}) == \
        {"status": 200, "outcome": "already_paid"}
    assert purchases(srv, order["id"]) == 1
    assert contracts_of(srv, order["id"]) == ["active"]
    assert_ledger_verifies(srv)


def test_janitor_racing_the_late_webhook_makes_one_contract(srv):
    _, h = member(srv)
    order, url = sandbox_order(srv, h, srv.packages[0])
    assert requests.post(url + "/pay-quietly", timeout=15).status_code == 200
    ref = provider_ref(srv, order["id"])
    barrier = threading.Barrier(5)

    def late(_):
        barrier.wait()
        return plugin_post(srv, "redeliver", {"provider_ref": ref})["outcome"]
    srv.advance(601)  # the janitor is due now, while five webhooks arrive
    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        outcomes = sorted(ex.map(late, range(5)))
    wait_for(lambda: ran_since(srv, "payment-janitor", 60), what="a janitor run")
    # whoever came first credited; the janitor asks only about a pending
    # order, so it recorded one event or none
    rows = srv.sql("SELECT source, outcome FROM payment_events WHERE order_ref = '%d'"
                   % order["id"])
    assert sorted(o for (src, o) in rows if src == "webhook") == outcomes
    assert len([1 for (src, _) in rows if src == "janitor"]) <= 1
    every = sorted(o for (_, o) in rows)
    assert every.count("paid") == 1
    assert set(every) == {"paid", "already_paid"}
    assert outcomes.count("paid") <= 1
    assert purchases(srv, order["id"]) == 1
    assert contracts_of(srv, order["id"]) == ["active"]
    assert_ledger_verifies(srv)


def commissions_of(s, oid):
    return [r[0] for r in s.sql("SELECT status FROM commissions WHERE order_id = %d "
                                "ORDER BY depth" % oid)]


def test_dispute_holds_commissions_until_won(srv):
    top, _ = member(srv)
    sponsor, _ = member(srv, referral_code=top["user"]["referral_code"])
    buyer, h = member(srv, referral_code=sponsor["user"]["referral_code"])
    # every test registers from 127.0.0.1: the same-IP flags would hold
    # these commissions on their own; cleared, only the dispute holds them
    srv.sql("UPDATE member_flags SET status = 'cleared' WHERE user_id = %d OR "
            "related_user_id = %d" % (buyer["user"]["id"], buyer["user"]["id"]))
    order, url = sandbox_order(srv, h, srv.packages[0])
    assert requests.post(url + "/pay", timeout=15).status_code == 200
    ref = provider_ref(srv, order["id"])
    pid = order_row(srv, order["id"])[3]
    assert commissions_of(srv, order["id"]) == ["held", "held"]
    ans = plugin_post(srv, "dispute", {"provider_ref": ref, "payment_id": pid,
                                       "status": "opened", "amount_micros": order["amount_micros"]})
    assert ans == {"status": 200, "outcome": "disputed"}
    srv.expect_log(r"DM00700: order %d needs staff attention \(dispute_opened\)" % order["id"])
    assert srv.get("/api/orders/%d" % order["id"], headers=h).json()["order"]["status"] == \
        "disputed"
    # hold 0: the release job would free it now, but the dispute holds it
    srv.advance(3600)
    wait_for(lambda: ran_since(srv, "commission-release", 600), what="a commission release")
    assert commissions_of(srv, order["id"]) == ["held", "held"]
    # the dispute alert (its own template) to the finance account
    assert srv.sql("SELECT template, json_extract(variables, '$.amount_micros'), "
                   "json_extract(variables, '$.gateway') FROM mail_queue WHERE "
                   "json_extract(variables, '$.reason') = 'dispute_opened' AND "
                   "json_extract(variables, '$.order_id') = %d" % order["id"]) == \
        [("dispute_alert", order["amount_micros"], "sandbox")]
    ans = plugin_post(srv, "dispute", {"provider_ref": ref, "payment_id": pid,
                                       "status": "won", "amount_micros": order["amount_micros"]})
    assert ans == {"status": 200, "outcome": "dispute_won"}
    assert order_row(srv, order["id"])[:2] == ("paid", "won")
    srv.advance(3600)
    wait_for(lambda: commissions_of(srv, order["id"]) == ["available", "available"],
             what="the release")
    assert contracts_of(srv, order["id"]) == ["active"]
    assert_ledger_verifies(srv)


def test_dispute_lost_refunds_the_order_and_takes_the_commissions_back(srv):
    sponsor, _ = member(srv)
    buyer, h = member(srv, referral_code=sponsor["user"]["referral_code"])
    order, url = sandbox_order(srv, h, srv.packages[0])
    assert requests.post(url + "/pay", timeout=15).status_code == 200
    ref = provider_ref(srv, order["id"])
    srv.expect_log(r"DM00700: order %d needs staff attention \(dispute_(opened|lost)\)"
                   % order["id"])
    for how, outcome in (("opened", "disputed"), ("lost", "dispute_lost"),
                         ("lost", "already_refunded")):
        ans = plugin_post(srv, "dispute", {"provider_ref": ref, "status": how,
                                           "amount_micros": order["amount_micros"]})
        assert ans == {"status": 200, "outcome": outcome}
    status, dispute, _, _, refunded = order_row(srv, order["id"])
    assert (status, dispute, refunded) == ("refunded", "lost", order["amount_micros"])
    assert contracts_of(srv, order["id"]) == ["refunded"]
    assert commissions_of(srv, order["id"]) == ["clawed_back"]
    assert srv.sql("SELECT COUNT(*) FROM order_refunds WHERE order_id = %d"
                   % order["id"])[0][0] == 1
    # staff: the dispute alert when opened and when lost; the member: one
    # refund notice for the whole price
    assert srv.sql("SELECT json_extract(variables, '$.reason') FROM mail_queue WHERE "
                   "template = 'dispute_alert' AND json_extract(variables, '$.order_id') = %d "
                   "ORDER BY id" % order["id"]) == [("dispute_opened",), ("dispute_lost",)]
    assert srv.sql("SELECT recipient, json_extract(variables, '$.amount_micros'), "
                   "json_extract(variables, '$.fully_refunded') FROM mail_queue WHERE "
                   "template = 'order_refunded' AND json_extract(variables, '$.order_id') = %d"
                   % order["id"]) == [(buyer["user"]["email"], order["amount_micros"], 1)]
    assert_ledger_verifies(srv)


@pytest.mark.parametrize("how,reason", [("underpay", "underpaid"), ("overpay", "overpaid")])
def test_under_or_over_payment_needs_review_and_credits_nothing(srv, how, reason):
    _, h = member(srv)
    order, url = sandbox_order(srv, h, srv.packages[0])
    srv.expect_log(r"DM00700: order %d needs staff attention \(%s\)" % (order["id"], reason))
    r = requests.post(url + "/" + how, timeout=15)
    assert r.status_code == 200, r.text
    status, _, why, pid, _ = order_row(srv, order["id"])
    assert (status, why, pid) == ("needs_review", reason, None)
    assert purchases(srv, order["id"]) == 0
    assert contracts_of(srv, order["id"]) == []
    [(detail,)] = srv.sql("SELECT detail FROM payment_events WHERE order_ref = '%d'"
                          % order["id"])
    assert detail == "expected %d" % order["amount_micros"]
    assert srv.sql("SELECT COUNT(*) FROM mail_queue WHERE template = 'staff_alert' AND "
                   "json_extract(variables, '$.reason') = '%s' AND "
                   "json_extract(variables, '$.order_id') = %d" % (reason, order["id"]))[0][0] == 1
    assert_ledger_verifies(srv)


# ---- payment methods, the pending cap, the janitor's expiries (issue 12) ----


def test_payment_methods_lists_the_enabled_gateways_to_anyone(srv):
    r = requests.get(srv.url + "/api/payment-methods", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"methods": [{"name": "sandbox", "display_name": "Sandbox (no money moves)",
                                     "kind": "card", "currencies": [], "any_currency": True,
                                     "sandbox": True}]}


def test_a_member_may_hold_at_most_three_unpaid_orders_then_429(srv):
    _, h = member(srv)
    pkg = srv.packages[0]
    held = [sandbox_order(srv, h, pkg)[0]["id"] for _ in range(3)]
    before = srv.sql("SELECT COUNT(*) FROM orders")[0][0]
    r = srv.request("POST", "/api/orders", headers=h,
                    json={"package_id": pkg["id"], "gateway": "sandbox"})
    assert r.status_code == 429, r.text
    err = r.json()["error"]
    assert err["code"] == "rate_limited"
    assert err["message"] == ("you have 3 unpaid orders waiting for payment (at most 3): pay "
                              "one or wait until its checkout expires")
    assert srv.sql("SELECT COUNT(*) FROM orders")[0][0] == before
    # paying from the balance is not a pending gateway order: not capped
    r = srv.request("POST", "/api/orders", headers=h,
                    json={"package_id": pkg["id"], "pay_from_balance": True})
    assert r.status_code == 409 and "insufficient balance" in r.json()["error"]["message"]
    # one paid: room for one more
    url = srv.sql("SELECT checkout_url FROM orders WHERE id = %d" % held[0])[0][0]
    assert requests.post(url + "/pay", timeout=15).status_code == 200
    sandbox_order(srv, h, pkg)
    assert srv.request("POST", "/api/orders", headers=h,
                       json={"package_id": pkg["id"], "gateway": "sandbox"}).status_code == 429
    assert_ledger_verifies(srv)


def test_five_orders_at_once_leave_exactly_three_pending(srv):
    _, h = member(srv)
    pkg = srv.packages[0]
    barrier = threading.Barrier(5)

    def one(_):
        barrier.wait()
        return srv.request("POST", "/api/orders", headers=h,
                           json={"package_id": pkg["id"], "gateway": "sandbox"}).status_code
    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        codes = sorted(ex.map(one, range(5)))
    assert codes == [201, 201, 201, 429, 429]


def test_an_order_without_a_checkout_is_expired_once_its_hold_ran_out(srv):
    """The server stopped between the order and the gateway's answer: no
    provider reference. The janitor expires it after the checkout hold
    (DeepMineCheckoutHold, 1800 s), not before."""
    _, h = member(srv)
    order, _ = sandbox_order(srv, h, srv.packages[0])
    srv.sql("UPDATE orders SET provider_ref = NULL, checkout_url = NULL WHERE id = %d"
            % order["id"])
    hold = srv.sql("SELECT hold_until - created_at FROM orders WHERE id = %d" % order["id"])[0][0]
    assert hold == 1800
    srv.advance(601)  # settled-due, but the hold has not run out
    wait_for(lambda: ran_since(srv, "payment-janitor", 60), what="a janitor run")
    assert order_row(srv, order["id"])[0] == "pending"
    srv.advance(1200)  # 1801 s: past the hold
    wait_for(lambda: order_row(srv, order["id"])[0] == "expired", what="the expiry")
    assert srv.sql("SELECT kind, source, detail FROM order_events WHERE order_id = %d"
                   % order["id"]) == [("expired", "janitor",
                                       "no checkout was created before its lifetime ran out")]
    assert srv.sql("SELECT COUNT(*) FROM payment_events WHERE order_ref = '%d'"
                   % order["id"])[0][0] == 0
    assert purchases(srv, order["id"]) == 0
    assert_ledger_verifies(srv)


def test_an_order_of_a_gateway_that_cannot_be_asked_expires_after_hold_and_settle(srv):
    """A gateway without query (here: one no longer loaded) is never asked:
    its order is expired once its hold and DeepMinePaymentSettle (600 s)
    have both passed, i.e. at created_at + 2400 s."""
    _, h = member(srv)
    order, _ = sandbox_order(srv, h, srv.packages[0])
    srv.sql("UPDATE orders SET gateway = 'retired' WHERE id = %d" % order["id"])
    srv.advance(1801)  # past the hold, not past hold + settle
    wait_for(lambda: ran_since(srv, "payment-janitor", 60), what="a janitor run")
    assert order_row(srv, order["id"])[0] == "pending"
    srv.advance(600)
    wait_for(lambda: order_row(srv, order["id"])[0] == "expired", what="the expiry")
    assert srv.sql("SELECT kind, source, detail FROM order_events WHERE order_id = %d"
                   % order["id"]) == [("expired", "janitor",
                                       "its gateway is not loaded; its checkout's lifetime "
                                       "ran out")]
    assert purchases(srv, order["id"]) == 0
    assert_ledger_verifies(srv)
