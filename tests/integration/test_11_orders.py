"""Orders and contracts end to end in a real Apache with the sandbox
gateway: buying from the balance (and 409 with nothing written when it is
short), buying through the sandbox's checkout page, webhooks replayed and
delivered concurrently (one contract), an amount mismatch (needs_review,
no transfer), a decline (failed), a staff refund (contract refunded,
payment reversed), and the member's and staff's views. `deepminectl ledger
verify` runs after every money scenario."""
import concurrent.futures
import hashlib
import hmac
import json
import os
import re
import threading
import time
import uuid

import pytest
import requests

from conftest import (PASSWORD, Server, assert_clean_log, bearer, error_of, mail_count,
                      register_member, staff, tag)

FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit webhook 100000/1m ip\n")


@pytest.fixture(scope="module")
def srv():
    s = Server(mpm="event", local_conf=FAST)
    s.ctl("capacity", "ensure", "--ghs", "1000000000", "--note", "test_11")
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.staff = {}
    s.packages = s.get("/api/packages").json()["packages"]
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()




def member(s):
    """A new member: (id, Bearer headers)."""
    body = register_member(s, "o")
    return body["user"]["id"], bearer(body)




def credit(s, user, amount):
    s.ctl("ledger", "adjust", "--user", str(user), "--amount", str(amount),
          "--reason", "test credit")


def assert_ledger_verifies(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def wallet(s, headers):
    r = s.get("/api/me", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["user"]["balance_micros"]


def buy(s, headers, package_id, **how):
    return s.request("POST", "/api/orders", headers=headers,
                     json=dict(package_id=package_id, **how))


def order_of(s, headers, oid):
    r = s.get("/api/orders/%d" % oid, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["order"]


def contracts(s, headers):
    r = s.get("/api/contracts", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["contracts"]


def secret_of(s):
    with open(os.path.join(s.var, "sandbox-webhook.secret")) as f:
        return f.read().rstrip("\n")


def sign(secret, body, t=None):
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    return "t=%d,v1=%s" % (t, mac)


def deliver(s, body, **kw):
    headers = {"Content-Type": "application/json", "Connection": "close",
               "Sandbox-Signature": sign(secret_of(s), body)}
    return requests.post(s.url + "/api/webhooks/sandbox", data=body, headers=headers,
                         timeout=15, **kw)


def paid_event(order, amount, currency="USD", provider_ref="cs_sbx_manual"):
    return json.dumps({
        "id": "evt_it11_%s" % uuid.uuid4().hex, "type": "checkout.paid",
        "created": int(time.time()),
        "data": {"object": {"id": provider_ref, "order_id": str(order),
                            "amount_micros": amount, "currency": currency}}},
        separators=(",", ":")).encode()


def sandbox_order(s, headers, package):
    r = buy(s, headers, package["id"], gateway="sandbox")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["order"]["status"] == "pending"
    assert body["order"]["amount_micros"] == package["price_micros"]
    assert body["checkout_url"].startswith(s.url + "/api/plugins/sandbox/checkout/")
    return body["order"], body["checkout_url"]


def transfers_for(s, oid):
    return s.sql("SELECT kind, amount_micros, reverses_transfer_id FROM transfers "
                 "WHERE reference = 'order:%d' ORDER BY id" % oid)


def contract_rows(s, oid):
    return s.sql("SELECT status FROM contracts WHERE order_id = %d" % oid)


# ---- buying from the balance ----------------------------------------------


def test_buy_with_balance_makes_an_active_contract(srv):
    uid, h = member(srv)
    pkg = srv.packages[1]
    credit(srv, uid, pkg["price_micros"] + 1000000)
    r = buy(srv, h, pkg["id"], pay_from_balance=True)
    assert r.status_code == 201, r.text
    order = r.json()["order"]
    assert "checkout_url" not in r.json()
    assert (order["status"], order["amount_micros"], order["currency"], order["package_id"]) == \
        ("paid", pkg["price_micros"], "USD", pkg["id"])
    assert wallet(srv, h) == 1000000
    [c] = contracts(srv, h)
    assert (c["package_id"], c["name"], c["hashrate_ths"], c["status"], c["earned_micros"]) == \
        (pkg["id"], pkg["name"], pkg["hashrate_ths"], "active", 0)
    assert c["price_micros"] == pkg["price_micros"]
    assert c["daily_yield_micros"] == pkg["daily_yield_micros"]
    assert c["duration_days"] == pkg["duration_days"]
    assert transfers_for(srv, order["id"]) == [("purchase", pkg["price_micros"], None)]
    assert mail_count(srv, "order_paid", order_id=order["id"]) == 1
    assert_ledger_verifies(srv)


def test_insufficient_balance_is_409_and_writes_nothing(srv):
    uid, h = member(srv)
    pkg = srv.packages[0]
    credit(srv, uid, pkg["price_micros"] - 1)
    before = srv.sql("SELECT COUNT(*) FROM transfers")
    r = buy(srv, h, pkg["id"], pay_from_balance=True)
    assert r.status_code == 409, r.text
    err = error_of(r)
    assert err["code"] == "conflict"
    # the member reads money, not micro-units and account names
    assert pkg["price_micros"] == 5000000, pkg
    assert err["message"] == \
        "insufficient balance: your balance is 4.999999 USD; this package costs 5.00 USD"
    assert srv.sql("SELECT COUNT(*) FROM orders WHERE user_id = %d" % uid) == [(0,)]
    assert srv.sql("SELECT COUNT(*) FROM contracts WHERE user_id = %d" % uid) == [(0,)]
    assert srv.sql("SELECT COUNT(*) FROM transfers") == before
    assert wallet(srv, h) == pkg["price_micros"] - 1
    assert_ledger_verifies(srv)


def test_order_requests_are_checked(srv):
    _, h = member(srv)
    pid = srv.packages[0]["id"]
    for body in [{"package_id": pid}, {"package_id": pid, "gateway": "sandbox",
                                       "pay_from_balance": True}]:
        r = srv.request("POST", "/api/orders", headers=h, json=body)
        assert r.status_code == 400 and error_of(r)["code"] == "invalid", r.text
    r = buy(srv, h, pid, gateway="nope")
    assert r.status_code == 400 and error_of(r)["field"] == "gateway"
    r = buy(srv, h, 999999, gateway="sandbox")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    last = srv.packages[-1]["id"]
    srv.sql("UPDATE packages SET active = 0 WHERE id = %d" % last)
    try:
        r = buy(srv, h, last, gateway="sandbox")
        assert r.status_code == 409 and error_of(r)["code"] == "conflict", r.text
    finally:
        srv.sql("UPDATE packages SET active = 1 WHERE id = %d" % last)
    r = srv.request("POST", "/api/orders", json={"package_id": pid, "gateway": "sandbox"})
    assert r.status_code == 401


# ---- buying through the sandbox -------------------------------------------


def test_buy_through_sandbox_checkout_page(srv):
    _, h = member(srv)
    pkg = srv.packages[2]
    order, url = sandbox_order(srv, h, pkg)
    page = requests.get(url, timeout=10)
    assert page.status_code == 200 and "Pay" in page.text
    r = requests.post(url + "/pay", timeout=15)
    assert r.status_code == 200 and "Payment accepted" in r.text, r.text
    got = order_of(srv, h, order["id"])
    assert got["status"] == "paid" and got["paid_at"]
    [c] = contracts(srv, h)
    assert (c["order_id"], c["name"], c["hashrate_ths"], c["price_micros"], c["status"]) == \
        (order["id"], pkg["name"], pkg["hashrate_ths"], pkg["price_micros"], "active")
    assert transfers_for(srv, order["id"]) == [("purchase", pkg["price_micros"], None)]
    assert srv.sql("SELECT outcome FROM payment_events WHERE order_ref = '%d'" % order["id"]) == \
        [("paid",)]
    assert_ledger_verifies(srv)


def test_same_paid_webhook_five_times_and_concurrently_makes_one_contract(srv):
    _, h = member(srv)
    pkg = srv.packages[0]
    order, url = sandbox_order(srv, h, pkg)
    assert requests.post(url + "/pay", timeout=15).status_code == 200
    [(raw,)] = srv.sql("SELECT raw_body FROM payment_events WHERE order_ref = '%d'" % order["id"])
    body = raw.encode()
    for _ in range(5):
        r = deliver(srv, body)
        assert r.status_code == 200 and r.json()["duplicate"] is True, r.text
    barrier = threading.Barrier(5)

    def one(_):
        barrier.wait()
        return deliver(srv, body)
    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        answers = list(ex.map(one, range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    assert contract_rows(srv, order["id"]) == [("active",)]
    assert len(transfers_for(srv, order["id"])) == 1
    assert_ledger_verifies(srv)


def test_five_concurrent_payments_of_one_checkout_make_one_contract(srv):
    """Five different paid events (five presses of Pay): one contract, the
    other four recorded as duplicate payments for staff to refund."""
    _, h = member(srv)
    order, url = sandbox_order(srv, h, srv.packages[0])
    srv.expect_log(r"DM00700: order %d needs staff attention \(duplicate_payment\)" % order["id"])
    barrier = threading.Barrier(5)

    def one(_):
        barrier.wait()
        return requests.post(url + "/pay", timeout=20, headers={"Connection": "close"})
    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        answers = list(ex.map(one, range(5)))
    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    outcomes = sorted(o for (o,) in srv.sql(
        "SELECT outcome FROM payment_events WHERE order_ref = '%d'" % order["id"]))
    assert outcomes == ["duplicate_payment"] * 4 + ["paid"]
    assert contract_rows(srv, order["id"]) == [("active",)]
    assert len(transfers_for(srv, order["id"])) == 1
    assert_ledger_verifies(srv)


def test_amount_mismatch_parks_the_order_and_credits_nothing(srv):
    _, h = member(srv)
    pkg = srv.packages[1]
    order, _ = sandbox_order(srv, h, pkg)
    srv.expect_log(r"DM00700: order %d needs staff attention \(amount_mismatch\)" % order["id"])
    r = deliver(srv, paid_event(order["id"], pkg["price_micros"] - 1))
    assert r.status_code == 200, r.text
    assert order_of(srv, h, order["id"])["status"] == "needs_review"
    assert contract_rows(srv, order["id"]) == []
    assert transfers_for(srv, order["id"]) == []
    assert_ledger_verifies(srv)


def test_decline_fails_the_order(srv):
    _, h = member(srv)
    order, url = sandbox_order(srv, h, srv.packages[0])
    r = requests.post(url + "/decline", timeout=15)
    assert r.status_code == 200 and "Payment declined" in r.text
    assert order_of(srv, h, order["id"])["status"] == "failed"
    assert contract_rows(srv, order["id"]) == []
    assert_ledger_verifies(srv)


def test_decline_after_pay_says_the_checkout_is_already_paid(srv):
    _, h = member(srv)
    order, url = sandbox_order(srv, h, srv.packages[0])
    assert requests.post(url + "/pay", timeout=15).status_code == 200
    r = requests.post(url + "/decline", timeout=15)
    assert r.status_code == 200
    assert "<h1>Already paid</h1>" in r.text and "Payment declined" not in r.text
    assert "the order stays paid" in r.text
    assert order_of(srv, h, order["id"])["status"] == "paid"
    assert contract_rows(srv, order["id"]) == [("active",)]
    outcomes = sorted(o for (o,) in srv.sql(
        "SELECT outcome FROM payment_events WHERE order_ref = '%d'" % order["id"]))
    assert outcomes == ["already_paid", "paid"]
    assert_ledger_verifies(srv)


def test_staff_refund_ends_the_contract_and_reverses_the_payment(srv):
    _, h = member(srv)
    pkg = srv.packages[0]
    order, url = sandbox_order(srv, h, pkg)
    assert requests.post(url + "/pay", timeout=15).status_code == 200
    path = "/api/admin/orders/%d/refund" % order["id"]
    r = staff(srv, "support").post(srv.url + path, timeout=15)
    assert r.status_code == 403, r.text
    r = staff(srv, "finance").post(srv.url + path, json={"reason": "test"}, timeout=20)
    assert r.status_code == 200, r.text
    assert r.json()["refunded"] is True and r.json()["order"]["status"] == "refunded"
    assert order_of(srv, h, order["id"])["status"] == "refunded"
    [c] = contracts(srv, h)
    assert c["status"] == "refunded" and c["ended_at"] is not None
    # the refund reverses exactly the purchase: same amount, the accounts
    # swapped (sales back to the gateway's account)
    rows = srv.sql("SELECT id, kind, amount_micros, debit_account_id, credit_account_id, "
                   "reverses_transfer_id, idempotency_key FROM transfers "
                   "WHERE reference = 'order:%d' ORDER BY id" % order["id"])
    assert [r[1:3] for r in rows] == [("purchase", pkg["price_micros"]),
                                      ("refund", pkg["price_micros"])]
    (pid, _, _, p_debit, p_credit, _, _), (_, _, _, r_debit, r_credit, reverses, key) = rows
    assert (r_debit, r_credit, reverses, key) == \
        (p_credit, p_debit, pid, "refund:%d" % order["id"])
    code = dict(srv.sql("SELECT id, code FROM accounts WHERE id IN (%d, %d)"
                        % (p_debit, p_credit)))
    assert (code[p_debit], code[p_credit]) == ("gateway:sandbox", "sales")
    assert srv.sql("SELECT COUNT(*) FROM audit_log WHERE action = 'order.refund' AND "
                   "target_id = '%d'" % order["id"]) == [(1,)]
    # again: not paid any more
    r = staff(srv, "finance").post(srv.url + path, json={"reason": "test"}, timeout=15)
    assert r.status_code == 409 and error_of(r)["code"] == "conflict"
    assert_ledger_verifies(srv)


def test_staff_refund_of_a_balance_order_restores_the_wallet(srv):
    uid, h = member(srv)
    pkg = srv.packages[0]
    credit(srv, uid, pkg["price_micros"])
    order = buy(srv, h, pkg["id"], pay_from_balance=True).json()["order"]
    assert wallet(srv, h) == 0
    r = staff(srv, "owner").post(srv.url + "/api/admin/orders/%d/refund" % order["id"],
                                 json={"reason": "test"}, timeout=15)
    assert r.status_code == 200 and r.json()["refunded"] is True, r.text
    assert wallet(srv, h) == pkg["price_micros"]
    assert_ledger_verifies(srv)


# ---- views ------------------------------------------------------------------


def test_orders_are_mine_only_and_listed_newest_first(srv):
    _, h = member(srv)
    _, other = member(srv)
    first, _ = sandbox_order(srv, h, srv.packages[0])
    second, _ = sandbox_order(srv, h, srv.packages[1])
    r = srv.get("/api/orders", headers=h, params={"limit": 1})
    assert r.status_code == 200
    page = r.json()
    assert [o["id"] for o in page["orders"]] == [second["id"]] and page["next_cursor"]
    r = srv.get("/api/orders", headers=h, params={"cursor": page["next_cursor"]})
    assert [o["id"] for o in r.json()["orders"]] == [first["id"]]
    assert r.json()["next_cursor"] is None
    r = srv.get("/api/orders/%d" % first["id"], headers=other)
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    assert srv.get("/api/orders", headers=other).json() == {"orders": [], "next_cursor": None}


def test_admin_lists_orders_and_contracts_by_role(srv):
    _, h = member(srv)
    order, url = sandbox_order(srv, h, srv.packages[0])
    requests.post(url + "/pay", timeout=15)
    for role in ["owner", "finance", "support"]:
        r = staff(srv, role).get(srv.url + "/api/admin/orders", params={"status": "paid"},
                                 timeout=10)
        assert r.status_code == 200, (role, r.text)
        rows = r.json()["orders"]
        assert all(o["status"] == "paid" for o in rows)
        assert any(o["id"] == order["id"] and o["user_id"] for o in rows)
        r = staff(srv, role).get(srv.url + "/api/admin/contracts", timeout=10)
        assert r.status_code == 200
        assert any(c["order_id"] == order["id"] for c in r.json()["contracts"])
    r = staff(srv, "kyc").get(srv.url + "/api/admin/orders", timeout=10)
    assert r.status_code == 403
    r = staff(srv, "owner").get(srv.url + "/api/admin/orders", params={"status": "bogus"},
                                timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "status"


def test_sold_out_is_409_before_checkout_and_writes_nothing(new_server):
    """Hash power the operator does not have is never sold: with a capacity
    below the smallest package, both ways of paying are refused."""
    s = new_server(local_conf=FAST)
    s.ctl("capacity", "set", "--ghs", "100", "--note", "tiny")  # < 0.5 TH/s
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    _, h = member(s)
    pkg = s.get("/api/packages").json()["packages"][0]
    assert pkg["sold_out"] is True
    for extra in ({"gateway": "sandbox"}, {"pay_from_balance": True}):
        body = dict({"package_id": pkg["id"]}, **extra)
        r = requests.post(s.url + "/api/orders", json=body, headers=h, timeout=10)
        assert r.status_code == 409, r.text
        err = error_of(r)
        assert err["code"] == "conflict" and "sold out" in err["message"], err
    assert s.sql("SELECT COUNT(*) FROM orders") == [(0,)]
