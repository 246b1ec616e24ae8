"""The BTCPay Server payment plugin (plugins/payment-btcpay) in a real Apache
against its stand-in (tests/standins/btcpay_standin.py): the Greenfield
create-invoice request as BTCPay documents it, a settled invoice paying the
order (contract and ten levels of commissions), the same delivery five
times and five at once and BTCPay's redeliveries recorded once, forged /
tampered / stale / foreign deliveries refused with nothing changed, expired
and invalid invoices, BTCPay down on checkout (503 `unavailable`, no
reference), refunds full and partial through the refund endpoint (a pull
payment) and refused when the key may not refund, and no secret in the log.
The signatures the tests send are computed here with Python's hmac,
independently of the plugin and of the stand-in. `deepminectl ledger
verify` runs after every money scenario.
Pending (InvoiceReceivedPayment, InvoiceProcessing) is recorded and pays
nothing; partial, over and late payments are needs_review and credit
nothing."""
import concurrent.futures
import hashlib
import hmac
import json
import os
import sys
import threading
import time

import pytest
import requests

from conftest import ROOT, Server, assert_clean_log, bearer, error_of, register_member, staff

sys.path.insert(0, os.path.join(ROOT, "tests", "standins"))
from btcpay_standin import BTCPayStandin  # noqa: E402

API_KEY = "3b8f0c1d2e4a5968778695a4b3c2d1e0f9e8d7c6"
STORE = "7Qm2gXcFZ1pLkW9sYtRbN3vH5jD8eA4uC6xV0oT2iKq"
SECRET = "wh-secret-4f1b2c3d9e8a7b6c5d4e3f2a1b0c9d8e"
PLUGIN = "btcpay"
FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit webhook 100000/1m ip\n")
# BTCPay's webhook with the events that settle an invoice; the pending and
# needs_review tests subscribe to every event.
SETTLING_EVENTS = ["InvoiceSettled", "InvoiceExpired", "InvoiceInvalid"]


def write_secret(s, name, value):
    path = os.path.join(s.var, name)
    with open(path, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)
    return path


@pytest.fixture(scope="module")
def srv():
    s = Server(mpm="event")
    bt = BTCPayStandin(API_KEY, STORE, SECRET, s.url + "/api/webhooks/" + PLUGIN)
    key_file = write_secret(s, "btcpay-api.key", API_KEY)
    secret_file = write_secret(s, "btcpay-webhook.secret", SECRET)
    s.write_local_conf(FAST + (
        "DeepMinePlugin payment {p} {so}\n"
        "DeepMinePluginSet {p} server_url {url}\n"
        "DeepMinePluginSet {p} store_id {store}\n"
        "DeepMinePluginSet {p} api_key \"file:{key}\"\n"
        "DeepMinePluginSet {p} webhook_secret \"file:{secret}\"\n"
        "DeepMinePluginSet {p} timeout_ms 3000\n").format(
            p=PLUGIN, so=os.path.join(ROOT, "build", "plugins", "payment-btcpay.so"),
            url=bt.url, store=STORE, key=key_file, secret=secret_file))
    s.start()
    s.bt = bt
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.staff = {}
    s.packages = s.get("/api/packages").json()["packages"]
    yield s
    s.stop()
    bt.close()
    try:
        assert_clean_log(s)
        text = s.log_text()
        assert API_KEY not in text and SECRET not in text, "a secret is in the error log"
    finally:
        s.cleanup()


@pytest.fixture
def bt(srv):
    srv.bt.reset()
    srv.bt.events = list(SETTLING_EVENTS)
    return srv.bt


# ---- helpers ----------------------------------------------------------------


def sig(body, secret=SECRET):
    """BTCPay-Sig, computed here: sha256=<hex HMAC-SHA-256(secret, body)>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(s, body, signature=None, **kw):
    headers = {"Content-Type": "application/json", "Connection": "close",
               "BTCPay-Sig": sig(body) if signature is None else signature}
    return requests.post(s.url + "/api/webhooks/" + PLUGIN, data=body, headers=headers,
                         timeout=15, **kw)


def assert_ledger_verifies(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def member(s, referral_code=None):
    extra = {"referral_code": referral_code} if referral_code else {}
    b = register_member(s, "b", **extra)
    # a gateway that moves money needs a verified e-mail (docs/payments.md)
    s.sql("UPDATE users SET email_verified_at = 1 WHERE id = %d" % b["user"]["id"])
    return b["user"], bearer(b)


def order_row(s, oid):
    [row] = s.sql("SELECT status, provider_ref, gateway FROM orders WHERE id = %d" % oid)
    return row


def transfers_for(s, oid):
    return s.sql("SELECT kind, amount_micros FROM transfers WHERE reference = 'order:%d' "
                 "ORDER BY id" % oid)


def contract_rows(s, oid):
    return s.sql("SELECT status FROM contracts WHERE order_id = %d" % oid)


def events_of(s, ref):
    return s.sql("SELECT event_id, status, amount_micros, currency, order_ref, outcome "
                 "FROM payment_events WHERE plugin = '%s' AND provider_ref = '%s' ORDER BY id"
                 % (PLUGIN, ref))


def btcpay_order(s, headers, pkg):
    r = s.request("POST", "/api/orders", headers=headers,
                  json={"package_id": pkg["id"], "gateway": PLUGIN})
    assert r.status_code == 201, r.text
    body = r.json()
    order = body["order"]
    assert order["status"] == "pending" and order["amount_micros"] == pkg["price_micros"]
    status, ref, gateway = order_row(s, order["id"])
    assert (status, gateway) == ("pending", PLUGIN)
    assert body["checkout_url"] == "%s/i/%s" % (s.bt.url, ref)
    return order, ref


def amount_str(micros):
    units, frac = divmod(micros, 1000000)
    f = ("%06d" % frac).rstrip("0")
    return "%d.%s" % (units, f.ljust(2, "0"))


def invoice_event(s, invoice_id, type_, delivery="d-manual-1", **extra):
    ev = {"deliveryId": delivery, "webhookId": "wh1", "originalDeliveryId": delivery,
          "isRedelivery": False, "type": type_, "timestamp": int(time.time()),
          "storeId": STORE, "invoiceId": invoice_id}
    ev.update(extra)
    return json.dumps(ev).encode()


# ---- checkout ----------------------------------------------------------------


def test_checkout_creates_a_greenfield_invoice_with_our_order_id(srv, bt):
    _, h = member(srv)
    pkg = srv.packages[1]
    order, ref = btcpay_order(srv, h, pkg)
    [req] = [r for r in bt.requests if r["method"] == "POST"]
    assert req["path"] == "/api/v1/stores/%s/invoices" % STORE
    assert req["headers"]["Authorization"] == "token " + API_KEY
    assert req["headers"]["Content-Type"] == "application/json"
    body = json.loads(req["body"])
    assert body == {"amount": amount_str(pkg["price_micros"]), "currency": pkg["currency"],
                    "metadata": {"orderId": str(order["id"])},
                    "checkout": {"expirationMinutes": 15, "redirectURL": srv.url + "/"}}
    assert bt.invoices[ref]["metadata"]["orderId"] == str(order["id"])
    page = requests.get("%s/i/%s" % (bt.url, ref), timeout=10)
    assert page.status_code == 200 and "Pay (full)" in page.text


@pytest.mark.parametrize("how", [500, "garbage", "timeout"])
def test_btcpay_down_on_checkout_is_503_and_leaves_no_reference(srv, bt, how):
    srv.expect_log(r"DM00701: order \d+: gateway btcpay could not create a checkout")
    _, h = member(srv)
    bt.fail(how)
    srv.expect_log(r"DM00020: POST /api/orders failed: the payment gateway could not start")
    r = srv.request("POST", "/api/orders", headers=h, timeout=20,
                    json={"package_id": srv.packages[0]["id"], "gateway": PLUGIN})
    assert r.status_code == 503, r.text
    assert error_of(r)["code"] == "unavailable"
    [(oid, status, ref)] = srv.sql(
        "SELECT id, status, provider_ref FROM orders WHERE user_id = (SELECT user_id FROM "
        "orders ORDER BY id DESC LIMIT 1) ORDER BY id DESC LIMIT 1")
    assert ref is None and status != "paid"
    assert transfers_for(srv, oid) == [] and contract_rows(srv, oid) == []
    assert_ledger_verifies(srv)


# ---- paid ----------------------------------------------------------------------


def test_settled_invoice_pays_the_order_contract_and_ten_commissions(srv, bt):
    chain = [member(srv)]
    for _ in range(10):
        chain.append(member(srv, chain[-1][0]["referral_code"]))
    buyer, h = chain[-1]
    pkg = srv.packages[2]
    order, ref = btcpay_order(srv, h, pkg)
    r = requests.post("%s/i/%s/pay" % (bt.url, ref), data={"how": "full"}, timeout=30)
    assert r.status_code == 200, r.text
    [d] = [d for d in bt.deliveries if d["event"]["type"] == "InvoiceSettled"]
    assert d["status"] == 200, d
    # the stand-in signed as computed here
    assert d["signature"] == sig(d["body"])
    assert order_row(srv, order["id"])[0] == "paid"
    assert contract_rows(srv, order["id"]) == [("active",)]
    kinds = transfers_for(srv, order["id"])
    assert kinds[0] == ("purchase", pkg["price_micros"])
    assert [k for k, _ in kinds[1:]] == ["commission"] * 10
    assert srv.sql("SELECT COUNT(*), COUNT(DISTINCT depth), COUNT(DISTINCT beneficiary_id) "
                   "FROM commissions WHERE order_id = %d" % order["id"]) == [(10, 10, 10)]
    assert events_of(srv, ref) == [(d["event"]["deliveryId"], "paid", pkg["price_micros"],
                                    pkg["currency"], str(order["id"]), "paid")]
    assert_ledger_verifies(srv)


def test_same_delivery_five_times_five_at_once_and_redelivered_makes_one_contract(srv, bt):
    _, h = member(srv)
    order, ref = btcpay_order(srv, h, srv.packages[0])
    [ev] = bt.settle(ref)
    [first] = bt.deliveries
    assert first["status"] == 200
    for _ in range(5):
        r = deliver(srv, first["body"])
        assert r.status_code == 200 and r.json()["duplicate"] is True, r.text
    barrier = threading.Barrier(5)

    def one(_):
        barrier.wait()
        return deliver(srv, first["body"])
    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        answers = list(ex.map(one, range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    # BTCPay's redeliveries: new deliveryId, isRedelivery, originalDeliveryId
    for _ in range(2):
        again = bt.redeliver(ev["deliveryId"])
        assert again["event"]["deliveryId"] != ev["deliveryId"]
        assert again["status"] == 200 and json.loads(again["answer"])["duplicate"] is True
    assert [e[0] for e in events_of(srv, ref)] == [ev["deliveryId"]]
    assert contract_rows(srv, order["id"]) == [("active",)]
    assert len(transfers_for(srv, order["id"])) == 1
    assert_ledger_verifies(srv)


def test_a_dropped_delivery_then_its_redelivery_pays_once(srv, bt):
    _, h = member(srv)
    order, ref = btcpay_order(srv, h, srv.packages[0])
    bt.drop_next = 1
    [ev] = bt.settle(ref)
    assert order_row(srv, order["id"])[0] == "pending"
    bt.duplicate_next = 1
    rec = bt.redeliver(ev["deliveryId"])
    assert rec["status"] == 200
    assert order_row(srv, order["id"])[0] == "paid"
    assert [e[0] for e in events_of(srv, ref)] == [ev["deliveryId"]]
    assert len(transfers_for(srv, order["id"])) == 1
    assert_ledger_verifies(srv)


def test_held_deliveries_sent_in_reverse_order_leave_the_order_paid(srv, bt):
    """BTCPay's InvoiceExpired for an invoice later paid arrives after the
    InvoiceSettled: the expiry of a paid order changes nothing."""
    _, h = member(srv)
    order, ref = btcpay_order(srv, h, srv.packages[0])
    bt.hold = True
    bt.expire(ref)
    bt.settle(ref)
    answers = bt.flush(reverse=True)
    assert [a["event"]["type"] for a in answers] == ["InvoiceSettled", "InvoiceExpired"]
    assert [a["status"] for a in answers] == [200, 200]
    assert order_row(srv, order["id"])[0] == "paid"
    assert sorted(e[5] for e in events_of(srv, ref)) == ["already_paid", "paid"]
    assert_ledger_verifies(srv)


# ---- refused -------------------------------------------------------------------


def test_forged_tampered_stale_and_foreign_deliveries_are_refused(srv, bt):
    srv.expect_log(r"DM00650: webhook for plugin btcpay refused")
    _, h = member(srv)
    pkg = srv.packages[0]
    order, ref = btcpay_order(srv, h, pkg)
    bt.invoices[ref]["status"] = "Settled"
    good = invoice_event(srv, ref, "InvoiceSettled", delivery="d-forged-1")
    cases = [
        ("no header", good, ""),
        ("wrong secret", good, sig(good, "not-the-secret-0123456789")),
        ("tampered", good.replace(b"d-forged-1", b"d-forged-2"), sig(good)),
        ("not sha256=", good, sig(good).replace("sha256=", "sha1=")),
        ("short", good, sig(good)[:-2]),
        ("stale", invoice_event(srv, ref, "InvoiceSettled", delivery="d-old",
                                timestamp=int(time.time()) - 8 * 86400), None),
        ("other store", invoice_event(srv, ref, "InvoiceSettled", delivery="d-store",
                                      storeId="AnotherStore"), None),
        ("unknown invoice", invoice_event(srv, "NoSuchInvoice", "InvoiceSettled",
                                          delivery="d-unknown"), None),
    ]
    for what, body, signature in cases:
        if signature == "":
            r = requests.post(srv.url + "/api/webhooks/" + PLUGIN, data=body, timeout=15,
                              headers={"Content-Type": "application/json"})
        else:
            r = deliver(srv, body, signature)
        assert r.status_code == 400, (what, r.text)
        assert error_of(r)["code"] == "invalid", what
    assert events_of(srv, ref) == []
    assert order_row(srv, order["id"])[0] == "pending"
    assert transfers_for(srv, order["id"]) == []
    # the genuine one, signed here, is accepted
    r = deliver(srv, good)
    assert r.status_code == 200 and r.json()["outcome"] == "paid", r.text
    assert_ledger_verifies(srv)


def test_unknown_event_types_are_200_and_change_nothing(srv, bt):
    _, h = member(srv)
    order, ref = btcpay_order(srv, h, srv.packages[0])
    for type_ in ("InvoiceCreated", "PayoutCreated"):
        r = deliver(srv, invoice_event(srv, ref, type_, delivery="d-" + type_))
        assert r.status_code == 200 and r.json()["outcome"] == "ignored", r.text
    assert order_row(srv, order["id"])[0] == "pending"
    assert [e[1] for e in events_of(srv, ref)] == ["ignored", "ignored"]


def test_btcpay_unreachable_while_verifying_is_503_so_btcpay_redelivers(srv, bt):
    _, h = member(srv)
    order, ref = btcpay_order(srv, h, srv.packages[0])
    bt.invoices[ref]["status"] = "Settled"
    bt.fail(500, path_prefix="/api/v1/stores/%s/invoices/%s" % (STORE, ref))
    srv.expect_log(r"DM00654: webhook for plugin %s cannot be verified now" % PLUGIN)
    srv.expect_log(r"DM00020: POST /api/webhooks/%s failed: the webhook cannot be handled now"
                   % PLUGIN)
    body = invoice_event(srv, ref, "InvoiceSettled", delivery="d-later")
    r = deliver(srv, body)
    assert r.status_code == 503 and error_of(r)["code"] == "unavailable"
    assert events_of(srv, ref) == [] and order_row(srv, order["id"])[0] == "pending"
    r = deliver(srv, body)
    assert r.status_code == 200 and r.json()["outcome"] == "paid"
    assert_ledger_verifies(srv)


# ---- expired, invalid ---------------------------------------------------------


def test_expired_invoice_expires_the_order(srv, bt):
    _, h = member(srv)
    order, ref = btcpay_order(srv, h, srv.packages[0])
    bt.expire(ref)
    assert order_row(srv, order["id"])[0] == "expired"
    assert [e[1] for e in events_of(srv, ref)] == ["expired"]
    assert transfers_for(srv, order["id"]) == []
    assert_ledger_verifies(srv)


def test_invalid_invoice_fails_the_order(srv, bt):
    _, h = member(srv)
    order, ref = btcpay_order(srv, h, srv.packages[0])
    bt.invalidate(ref)
    assert order_row(srv, order["id"])[0] == "failed"
    assert [e[1] for e in events_of(srv, ref)] == ["failed"]
    assert_ledger_verifies(srv)


# ---- refunds -------------------------------------------------------------------


def paid_order(srv, bt, pkg):
    _, h = member(srv)
    order, ref = btcpay_order(srv, h, pkg)
    bt.settle(ref)
    assert order_row(srv, order["id"])[0] == "paid"
    return order, ref


def refund(srv, oid, **body):
    body.setdefault("reason", "customer asked")
    return staff(srv, "finance").post(srv.url + "/api/admin/orders/%d/refund" % oid, json=body,
                                      timeout=30)


def test_full_refund_makes_a_pull_payment_and_refunds_the_order(srv, bt):
    pkg = srv.packages[0]
    order, ref = paid_order(srv, bt, pkg)
    r = refund(srv, order["id"])
    assert r.status_code == 200, r.text
    assert r.json()["refunded"] is True and r.json()["order"]["status"] == "refunded"
    [req] = [q for q in bt.requests if q["path"].endswith("/refund")]
    assert req["path"] == "/api/v1/stores/%s/invoices/%s/refund" % (STORE, ref)
    assert req["headers"]["Authorization"] == "token " + API_KEY
    assert json.loads(req["body"]) == {
        "name": "Refund " + ref, "description": "customer asked", "paymentMethod": "BTC-CHAIN",
        "refundVariant": "Custom", "customAmount": amount_str(pkg["price_micros"]),
        "customCurrency": pkg["currency"]}
    [pp] = bt.pull_payments.values()
    assert pp["invoiceId"] == ref
    evs = events_of(srv, ref)
    assert [(e[0], e[1], e[2]) for e in evs[1:]] == [
        ("refund-" + pp["id"], "refunded", pkg["price_micros"])]
    assert contract_rows(srv, order["id"]) == [("refunded",)]
    assert [k for k, _ in transfers_for(srv, order["id"])] == ["purchase", "refund"]
    assert_ledger_verifies(srv)


def test_partial_refund_refunds_that_amount_only(srv, bt):
    pkg = max(srv.packages, key=lambda p: p["price_micros"])
    order, ref = paid_order(srv, bt, pkg)
    part = pkg["price_micros"] // 4
    r = refund(srv, order["id"], amount_micros=part)
    assert r.status_code == 200, r.text
    [pp] = bt.pull_payments.values()
    assert pp["amount"] == amount_str(part)
    assert order_row(srv, order["id"])[0] == "paid"
    assert srv.sql("SELECT refunded_micros FROM orders WHERE id = %d" % order["id"]) == [(part,)]
    assert transfers_for(srv, order["id"]) == [("purchase", pkg["price_micros"]),
                                               ("refund", part)]
    assert_ledger_verifies(srv)


def test_refund_the_key_may_not_make_is_refused_for_a_manual_refund(srv, bt):
    order, ref = paid_order(srv, bt, srv.packages[0])
    bt.can_refund = False
    srv.expect_log(r"DM00705: order %d: gateway %s refused the refund" % (order["id"], PLUGIN))
    r = refund(srv, order["id"])
    assert r.status_code == 409, r.text
    assert "manual refund" in error_of(r)["message"]
    assert order_row(srv, order["id"])[0] == "paid"
    assert bt.pull_payments == {}
    assert [k for k, _ in transfers_for(srv, order["id"])] == ["purchase"]
    assert_ledger_verifies(srv)


# ---- pending and needs_review (the host passes them on with paycore) -----------


def test_received_and_processing_are_recorded_pending_not_paid(srv, bt):
    bt.events = None
    _, h = member(srv)
    order, ref = btcpay_order(srv, h, srv.packages[0])
    bt.pay(ref, "full", confirm=False)
    assert [e[1] for e in events_of(srv, ref)] == ["pending", "pending"]
    assert order_row(srv, order["id"])[0] == "pending"
    assert transfers_for(srv, order["id"]) == []
    bt.settle(ref)
    assert order_row(srv, order["id"])[0] == "paid"
    assert_ledger_verifies(srv)


@pytest.mark.parametrize("how", ["partial", "over", "after_expiry"])
def test_partial_over_and_late_payments_need_review_and_credit_nothing(srv, bt, how):
    srv.expect_log(r"DM00700: order \d+ needs staff attention \((underpaid|overpaid|paid_after_expiry)\)")
    bt.events = None
    _, h = member(srv)
    order, ref = btcpay_order(srv, h, srv.packages[0])
    bt.pay(ref, how)
    if how == "partial":
        bt.expire(ref)
    assert order_row(srv, order["id"])[0] == "needs_review"
    assert "needs_review" in [e[1] for e in events_of(srv, ref)]
    assert contract_rows(srv, order["id"]) == []
    assert transfers_for(srv, order["id"]) == []
    assert_ledger_verifies(srv)
