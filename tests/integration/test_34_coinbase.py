"""The Coinbase Commerce plugin in a real Apache against its stand-in
(tests/standins/coinbase_standin.py): a gateway order creates a
fixed_price charge carrying our order id; a confirmed charge pays the order
once (contract, ten levels of commissions) however often and in whatever
order its webhooks come; a webhook is only a hint, so one whose charge is
not confirmed when re-read pays nothing; paid_at pending counts a pending
charge; under- and overpayment and payment after expiry park the order
for review with the reason; failed and expired charges end the order;
forged, tampered and unsigned webhooks are refused before anything is read
or changed; Coinbase down on checkout is 503 `unavailable` and a clean
order, down on the re-read is 503 so Coinbase redelivers; the official
coinbase-commerce-node SDK verifies the stand-in's signatures and is
accepted by it; no secret reaches a log line. `deepminectl ledger verify`
runs after every money scenario."""
import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import requests

from conftest import (PLUGINS, ROOT, Server, assert_clean_log, bearer, error_of, register_member,
                      staff)

sys.path.insert(0, os.path.join(ROOT, "tests", "standins"))
from coinbase_standin import CoinbaseStandin, signature  # noqa: E402

API_KEY = "cc-it-api-key-7f3c9a1e5b2d4f60"
SECRET = "cc-it-webhook-secret-0a9b8c7d6e5f4a3b"
SDK = os.path.join(ROOT, "tests", "sdk", "node_modules")
LEVEL1 = [500, 200, 100, 50, 50, 25, 25, 25, 25, 25]
FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit webhook 100000/1m ip\n")


def plugin_conf(s, name, api_base, paid_at=None):
    key = os.path.join(s.var, "coinbase-api-key")
    secret = os.path.join(s.var, "coinbase-webhook-secret")
    for path, value in ((key, API_KEY), (secret, SECRET)):
        with open(path, "w") as f:
            f.write(value + "\n")
        os.chmod(path, 0o600)
    out = ("DeepMinePlugin payment %s \"%s/payment-coinbase.so\"\n"
           "DeepMinePluginSet %s api_key \"file:%s\"\n"
           "DeepMinePluginSet %s webhook_secret \"file:%s\"\n"
           "DeepMinePluginSet %s api_base %s\n"
           "DeepMinePluginSet %s timeout_ms 1000\n"
           % (name, PLUGINS, name, key, name, secret, name, api_base, name))
    if paid_at:
        out += "DeepMinePluginSet %s paid_at %s\n" % (name, paid_at)
    return out


@pytest.fixture(scope="module")
def cb():
    """A server with the gateway `coinbase` (paid_at confirmed, the default)
    and `cbpending` (paid_at pending), both on one stand-in."""
    standin = CoinbaseStandin(API_KEY, SECRET, hang_s=3.0).start()
    s = Server(mpm="event", local_conf=FAST)
    s.write_local_conf(FAST + plugin_conf(s, "coinbase", standin.url) +
                       plugin_conf(s, "cbpending", standin.url, "pending"))
    standin.webhook_url = s.url + "/api/webhooks/coinbase"
    s.start()
    s.standin = standin
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.packages = s.get("/api/packages").json()["packages"]
    yield s
    s.stop()
    standin.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


@pytest.fixture(autouse=True)
def webhook_target(cb):
    """Webhooks go to the `coinbase` gateway unless a test says otherwise."""
    cb.standin.webhook_url = cb.url + "/api/webhooks/coinbase"
    yield


def member(s, referral_code=None):
    extra = {"referral_code": referral_code} if referral_code else {}
    b = register_member(s, "cb", **extra)
    # a gateway that moves money needs a verified e-mail (docs/payments.md)
    s.sql("UPDATE users SET email_verified_at = 1 WHERE id = %d" % b["user"]["id"])
    return b["user"], bearer(b)


def verify(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def cheapest(s):
    return min(s.packages, key=lambda p: p["price_micros"])


def order(s, headers, gateway="coinbase", pkg=None):
    """A gateway order: (order, charge code)."""
    pkg = pkg or cheapest(s)
    r = requests.post(s.url + "/api/orders", headers=headers, timeout=15,
                      json={"package_id": pkg["id"], "gateway": gateway})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["order"]["status"] == "pending"
    [(ref,)] = s.sql("SELECT provider_ref FROM orders WHERE id = %d" % body["order"]["id"])
    assert body["checkout_url"] == "%s/pay/%s" % (s.standin.url, ref)
    return body["order"], ref


def status_of(s, oid):
    [(st,)] = s.sql("SELECT status FROM orders WHERE id = %d" % oid)
    return st


def contracts(s, oid):
    return s.sql("SELECT status FROM contracts WHERE order_id = %d" % oid)


def transfers(s, oid):
    return s.sql("SELECT kind, amount_micros FROM transfers WHERE reference = 'order:%d' "
                 "ORDER BY id" % oid)


def events(s, code):
    return s.sql("SELECT event_id, status, outcome, payment_id FROM payment_events "
                 "WHERE provider_ref = '%s' ORDER BY id" % code)


def answer(delivery):
    assert delivery["status"] == 200, delivery
    return json.loads(delivery["answer"])


# ---- creating the charge ----------------------------------------------------


def test_checkout_creates_a_fixed_price_charge_carrying_the_order(cb):
    _, h = member(cb)
    pkg = cheapest(cb)
    o, code = order(cb, h, pkg=pkg)
    [req] = [r for r in cb.standin.requests if r["method"] == "POST" and
             json.loads(r["body"]).get("metadata", {}).get("order_id") == str(o["id"])]
    assert req["path"] == "/charges"
    assert req["headers"]["x-cc-api-key"] == API_KEY
    assert req["headers"]["x-cc-version"] == "2018-03-22"
    assert req["headers"]["content-type"] == "application/json"
    body = json.loads(req["body"])
    assert body == {
        "name": "Order %d" % o["id"], "description": "Order %d" % o["id"],
        "pricing_type": "fixed_price",
        "local_price": {"amount": "%d.%02d" % (pkg["price_micros"] // 1000000,
                                               pkg["price_micros"] % 1000000 // 10000),
                        "currency": "USD"},
        "metadata": {"order_id": str(o["id"])},
        "redirect_url": cb.url + "/", "cancel_url": cb.url + "/"}
    assert cb.standin.charges[code]["pricing"]["local"]["currency"] == "USD"


# ---- paid, once ---------------------------------------------------------------


def test_confirmed_charge_pays_once_with_contract_and_ten_levels(cb):
    chain = [member(cb)]
    for _ in range(11):
        chain.append(member(cb, chain[-1][0]["referral_code"]))
    buyer, h = chain[-1]
    pkg = cheapest(cb)
    o, code = order(cb, h, pkg=pkg)
    [d] = cb.standin.move(code, "confirmed")
    assert answer(d) == {"received": True, "duplicate": False, "outcome": "paid"}
    assert status_of(cb, o["id"]) == "paid"
    assert contracts(cb, o["id"]) == [("active",)]
    assert transfers(cb, o["id"])[0] == ("purchase", pkg["price_micros"])
    rows = cb.sql("SELECT depth, beneficiary_id, amount_micros FROM commissions "
                  "WHERE order_id = %d ORDER BY depth" % o["id"])
    assert rows == [(d, chain[-1 - d][0]["id"], pkg["price_micros"] * LEVEL1[d - 1] // 10000)
                    for d in range(1, 11)]
    [(evid, st, outcome, pid)] = events(cb, code)
    event_id = json.loads(d["body"])["event"]["id"]
    assert (evid, st, outcome, pid) == (event_id + "/paid", "paid", "paid", code)
    [(payment_id,)] = cb.sql("SELECT payment_id FROM orders WHERE id = %d" % o["id"])
    assert payment_id == code
    verify(cb)


def test_same_webhook_five_times_and_five_at_once_make_one_contract(cb):
    _, h = member(cb)
    o, code = order(cb, h)
    assert cb.standin.move(code, "confirmed", webhook="hold") == []
    [body] = cb.standin.held
    cb.standin.held = []
    first = answer(cb.standin.deliver(body))
    assert first == {"received": True, "duplicate": False, "outcome": "paid"}
    for _ in range(4):
        assert answer(cb.standin.deliver(body)) == \
            {"received": True, "duplicate": True, "outcome": "paid"}
    barrier = threading.Barrier(5)

    def one(_):
        barrier.wait()
        return cb.standin.deliver(body)
    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        answers = [answer(d) for d in ex.map(one, range(5))]
    assert all(a["duplicate"] is True for a in answers), answers
    assert contracts(cb, o["id"]) == [("active",)]
    assert len(transfers(cb, o["id"])) == 1
    assert len(events(cb, code)) == 1
    verify(cb)


def test_five_concurrent_first_deliveries_make_one_contract(cb):
    _, h = member(cb)
    o, code = order(cb, h)
    cb.standin.move(code, "confirmed", webhook="hold")
    [body] = cb.standin.held
    cb.standin.held = []
    barrier = threading.Barrier(5)

    def one(_):
        barrier.wait()
        return cb.standin.deliver(body)
    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        answers = [answer(d) for d in ex.map(one, range(5))]
    assert sorted(a["duplicate"] for a in answers) == [False, True, True, True, True]
    assert contracts(cb, o["id"]) == [("active",)]
    assert len(transfers(cb, o["id"])) == 1
    verify(cb)


def test_webhooks_out_of_order_and_twice_credit_once(cb):
    _, h = member(cb)
    o, code = order(cb, h)
    cb.standin.move(code, "pending", webhook="hold")
    cb.standin.move(code, "confirmed", webhook="hold")
    # confirmed arrives first, then pending: the pending event's re-read
    # sees the charge completed, the same payment: nothing more
    confirmed, pending = cb.standin.flush(reverse=True)
    assert answer(confirmed)["outcome"] == "paid"
    assert answer(pending) == {"received": True, "duplicate": False, "outcome": "already_paid"}
    # a further event, delivered twice: the same payment, never a second credit
    for d in cb.standin.move(code, "confirmed", webhook="twice"):
        assert answer(d)["outcome"] == "already_paid"

    assert contracts(cb, o["id"]) == [("active",)]
    assert len(transfers(cb, o["id"])) == 1
    assert status_of(cb, o["id"]) == "paid"
    verify(cb)


def test_webhook_whose_charge_is_not_confirmed_pays_nothing(cb):
    _, h = member(cb)
    o, code = order(cb, h)
    # correctly signed, claims COMPLETED; the charge is NEW
    [d] = cb.standin.fake(code, "charge:confirmed")
    assert answer(d) == {"received": True, "duplicate": False, "outcome": "pending"}
    assert status_of(cb, o["id"]) == "pending"
    assert contracts(cb, o["id"]) == [] and transfers(cb, o["id"]) == []
    fake_id = json.loads(d["body"])["event"]["id"]
    assert events(cb, code) == [(fake_id + "/pending", "pending", "pending", code)]
    # the plugin re-read the charge through its API
    gets = [r for r in cb.standin.requests if r["method"] == "GET" and
            r["path"] == "/charges/" + code]
    assert len(gets) == 1
    assert gets[0]["headers"]["x-cc-api-key"] == API_KEY
    assert gets[0]["headers"]["x-cc-version"] == "2018-03-22"
    # pending with paid_at confirmed: still not paid
    cb.standin.move(code, "pending")
    assert status_of(cb, o["id"]) == "pending"
    # the real confirmation pays; the fake body replayed now sees the truth
    cb.standin.move(code, "confirmed")
    assert status_of(cb, o["id"]) == "paid"
    assert answer(cb.standin.deliver(d["body"].encode()))["outcome"] == "already_paid"
    assert contracts(cb, o["id"]) == [("active",)]
    verify(cb)


def test_paid_at_pending_counts_a_pending_charge(cb):
    _, h = member(cb)
    cb.standin.webhook_url = cb.url + "/api/webhooks/cbpending"
    o, code = order(cb, h, gateway="cbpending")
    [d] = cb.standin.move(code, "pending")
    assert answer(d)["outcome"] == "paid"
    assert status_of(cb, o["id"]) == "paid"
    assert contracts(cb, o["id"]) == [("active",)]
    [d] = cb.standin.move(code, "confirmed")
    assert answer(d)["outcome"] == "already_paid"
    assert len(transfers(cb, o["id"])) == 1
    verify(cb)


# ---- not paid, or not as asked ----------------------------------------------------


@pytest.mark.parametrize("move,final", [("failed", "failed"), ("expired", "expired")])
def test_failed_and_expired_charges_end_the_order(cb, move, final):
    _, h = member(cb)
    o, code = order(cb, h)
    [d] = cb.standin.move(code, move)
    assert answer(d)["outcome"] == final
    assert status_of(cb, o["id"]) == final
    assert contracts(cb, o["id"]) == [] and transfers(cb, o["id"]) == []
    verify(cb)


@pytest.mark.parametrize("move,reason", [("underpaid", "underpaid"), ("overpaid", "overpaid"),
                                         ("delayed", "paid_after_expiry")])
def test_under_over_and_late_payment_need_review(cb, move, reason):
    cb.expect_log(r"DM00700: order \d+ needs staff attention \((underpaid|overpaid|paid_after_expiry)\)")
    _, h = member(cb)
    o, code = order(cb, h)
    # overpaid is sent as charge:confirmed: the re-read charge decides
    [d] = cb.standin.move(code, move)
    assert answer(d)["outcome"] == "needs_review"
    [(st, why)] = cb.sql("SELECT status, review_reason FROM orders WHERE id = %d" % o["id"])
    assert (st, why) == ("needs_review", reason)
    [(_, evst, _, pid)] = events(cb, code)
    assert (evst, pid) == ("needs_review", code)
    assert contracts(cb, o["id"]) == [] and transfers(cb, o["id"]) == []
    verify(cb)


# ---- refused ----------------------------------------------------------------------


def test_forged_tampered_and_unsigned_webhooks_are_refused_unread(cb):
    cb.expect_log(r"DM00650: webhook for plugin coinbase refused")
    _, h = member(cb)
    o, code = order(cb, h)
    cb.standin.move(code, "confirmed", webhook="hold")
    [body] = cb.standin.held
    cb.standin.held = []
    gets_before = len([r for r in cb.standin.requests if r["method"] == "GET"])
    tampered = body.replace(b'"charge:confirmed"', b'"charge:confirmed" ')
    cases = [
        ("wrong secret", body, signature(SECRET + "x", body)),
        ("tampered", tampered, signature(SECRET, body)),
        ("upper-case hex", body, signature(SECRET, body).upper()),
        ("no signature", body, None),
    ]
    for name, sent, sig in cases:
        headers = {"Content-Type": "application/json"}
        if sig:
            headers["X-CC-Webhook-Signature"] = sig
        r = requests.post(cb.url + "/api/webhooks/coinbase", data=sent, headers=headers,
                          timeout=15)
        assert r.status_code == 400, (name, r.text)
        err = error_of(r)
        assert err["code"] == "invalid", name
        assert "X-CC-Webhook-Signature" in err["message"], (name, err)
    assert len([r for r in cb.standin.requests if r["method"] == "GET"]) == gets_before
    assert events(cb, code) == []
    assert status_of(cb, o["id"]) == "pending"
    verify(cb)


def test_unknown_event_types_are_200_and_change_nothing(cb):
    _, h = member(cb)
    o, code = order(cb, h)
    [d] = cb.standin.send("charge:created", dict(cb.standin.charges[code]))
    assert answer(d)["outcome"] == "ignored"
    [d] = cb.standin.send("charge:something_new", dict(cb.standin.charges[code]))
    assert answer(d)["outcome"] == "ignored"
    assert status_of(cb, o["id"]) == "pending"


def test_webhook_for_a_charge_coinbase_does_not_have_is_refused(cb):
    cb.expect_log(r"DM00650: webhook for plugin coinbase refused: Coinbase Commerce has no charge")
    body = cb.standin.make_event("charge:confirmed", {"code": "NOSUCH01", "id": "x"})
    r = requests.post(cb.url + "/api/webhooks/coinbase", data=body, timeout=15,
                      headers={"Content-Type": "application/json",
                               "X-CC-Webhook-Signature": signature(SECRET, body)})
    assert r.status_code == 400
    assert error_of(r)["message"] == "Coinbase Commerce has no charge NOSUCH01"


# ---- bad days -----------------------------------------------------------------------


@pytest.mark.parametrize("how", [500, "timeout", "garbage"])
def test_coinbase_down_on_checkout_is_503_and_a_clean_order(cb, how):
    cb.expect_log(r"DM00701: order \d+: gateway coinbase could not create a checkout")
    cb.expect_log(r"DM00020: POST /api/orders failed: the payment gateway could not start the "
                  r"payment: Coinbase Commerce (answered HTTP 500 on create charge|did not answer "
                  r"POST /charges|answered the new charge with something that is not a charge)")
    user, h = member(cb)
    cb.standin.fail_next("create", how)
    r = requests.post(cb.url + "/api/orders", headers=h, timeout=30,
                      json={"package_id": cheapest(cb)["id"], "gateway": "coinbase"})
    assert r.status_code == 503, r.text
    assert error_of(r)["code"] == "unavailable"
    [(oid, st, ref)] = cb.sql("SELECT id, status, provider_ref FROM orders WHERE user_id = %d"
                              % user["id"])
    assert ref is None and st == "failed"
    assert contracts(cb, oid) == [] and transfers(cb, oid) == []
    verify(cb)


def test_coinbase_down_on_the_re_read_is_503_and_the_redelivery_pays(cb):
    cb.expect_log(r"DM00654: webhook for plugin coinbase cannot be verified now: Coinbase "
                  r"Commerce answered HTTP 503 on read charge")
    cb.expect_log(r"DM00020: POST /api/webhooks/coinbase failed: the webhook cannot be handled now")
    _, h = member(cb)
    o, code = order(cb, h)
    cb.standin.fail_next("get", 503)
    [d] = cb.standin.move(code, "confirmed")
    assert d["status"] == 503
    assert status_of(cb, o["id"]) == "pending" and events(cb, code) == []
    [again] = cb.standin.redeliver()
    assert json.loads(again["body"])["attempt_number"] == 2
    assert answer(again)["outcome"] == "paid"
    assert contracts(cb, o["id"]) == [("active",)]
    verify(cb)


# ---- the janitor ---------------------------------------------------------------------


def test_dropped_webhook_is_settled_once_by_the_janitor(new_server):
    """A server on a fake clock: the confirmed webhook never comes; past
    DeepMinePaymentSettle the janitor asks query (GET /charges/{code}) and
    pays the order; the webhook arriving late changes nothing."""
    standin = CoinbaseStandin(API_KEY, SECRET).start()
    try:
        s = new_server(clock=1800000000)
        s.write_local_conf(FAST + "DeepMinePaymentSettle 600\n" +
                           plugin_conf(s, "coinbase", standin.url))
        standin.webhook_url = s.url + "/api/webhooks/coinbase"
        s.standin = standin
        s.start()
        s.terms = s.get("/api/legal/terms").json()["version"]
        s.packages = s.get("/api/packages").json()["packages"]
        _, h = member(s)
        o, code = order(s, h)
        assert standin.move(code, "confirmed", webhook="drop") == []
        assert status_of(s, o["id"]) == "pending"
        s.advance(601)
        deadline = time.time() + 30
        while time.time() < deadline and status_of(s, o["id"]) == "pending":
            time.sleep(0.1)
        assert status_of(s, o["id"]) == "paid"
        assert s.sql("SELECT status, outcome, source, payment_id FROM payment_events "
                     "WHERE provider_ref = '%s'" % code) == [("paid", "paid", "janitor", code)]
        assert len([r for r in standin.requests if r["method"] == "GET" and
                    r["path"] == "/charges/" + code]) == 1
        # the dropped webhook, delivered after all
        [dropped] = [d for d in standin.deliveries if d.get("dropped")]
        assert answer(standin.deliver(dropped["body"].encode()))["outcome"] == "already_paid"
        assert contracts(s, o["id"]) == [("active",)]
        assert len(transfers(s, o["id"])) == 1
        verify(s)
        assert API_KEY not in s.log_text() and SECRET not in s.log_text()
    finally:
        standin.stop()


# ---- the official SDK as an independent client ------------------------------------

NODE_CHECK = r"""
const fs = require('fs');
const {Client, Webhook, resources: {Charge}, errors} = require('coinbase-commerce-node');
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const out = {verified: [], refused: []};
for (const d of input.deliveries) {
  out.verified.push(Webhook.verifyEventBody(d.body, d.signature, input.secret).type);
  try { Webhook.verifyEventBody(d.body, d.signature, input.secret + 'x'); out.refused.push(false); }
  catch (e) { out.refused.push(e instanceof errors.SignatureVerificationError); }
}
Client.init(input.api_key, input.base + '/');
Charge.create({name: 'SDK charge', description: 'from coinbase-commerce-node',
               pricing_type: 'fixed_price', local_price: {amount: '7.25', currency: 'EUR'},
               metadata: {order_id: 'sdk-1'}}, (err, charge) => {
  if (err) { console.error(String(err)); process.exit(2); }
  out.created = {code: charge.code, amount: charge.pricing.local.amount};
  Charge.retrieve(charge.code, (err2, again) => {
    if (err2) { console.error(String(err2)); process.exit(3); }
    out.retrieved = again.code;
    process.stdout.write(JSON.stringify(out));
  });
});
"""


def test_official_sdk_verifies_the_standins_signatures_and_is_accepted_by_it(cb):
    _, h = member(cb)
    _, code = order(cb, h)
    cb.standin.move(code, "pending")
    cb.standin.move(code, "confirmed")
    sent = [d for d in cb.standin.deliveries if d.get("signature")][-2:]
    env = dict(os.environ, NODE_PATH=SDK)
    r = subprocess.run(["node", "-e", NODE_CHECK], env=env, capture_output=True, text=True,
                       timeout=60, input=json.dumps({
                           "deliveries": [{"body": d["body"], "signature": d["signature"]}
                                          for d in sent],
                           "secret": SECRET, "api_key": API_KEY, "base": cb.standin.url}))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["verified"] == ["charge:pending", "charge:confirmed"]
    assert out["refused"] == [True, True]
    assert out["created"]["amount"] == "7.25"
    assert out["retrieved"] == out["created"]["code"]
    [sdk_req] = [q for q in cb.standin.requests if q["method"] == "POST" and
                 json.loads(q["body"]).get("metadata", {}).get("order_id") == "sdk-1"]
    assert sdk_req["headers"]["x-cc-version"] == "2018-03-22"


# ---- secrets --------------------------------------------------------------------------


def test_no_secret_in_the_log_or_the_events(cb):
    # run last in the module: every scenario above has logged by now
    text = cb.log_text()
    assert "coinbase" in text
    assert API_KEY not in text and SECRET not in text
    for (raw,) in cb.sql("SELECT raw_body FROM payment_events"):
        assert API_KEY not in raw and SECRET not in raw


# ---- manual refunds, the statement (Commerce has no refund API) ---------------


def refund(s, oid, **body):
    body.setdefault("reason", "refunded in the Coinbase dashboard")
    return staff(s, "finance").post(s.url + "/api/admin/orders/%d/refund" % oid, json=body,
                                    timeout=20)


def test_coinbase_cannot_refund_so_staff_record_manual_refunds(cb):
    """No refund function: a refund through the plugin is 409; staff refund
    in Coinbase's dashboard and record it (manual: true), posted at once by
    the refund rules, audited with the reason, the member told each time."""
    sponsor, _ = member(cb)
    buyer, h = member(cb, sponsor["referral_code"])
    pkg = cheapest(cb)
    o, code = order(cb, h, pkg=pkg)
    [d] = cb.standin.move(code, "confirmed")
    assert answer(d)["outcome"] == "paid"
    price = pkg["price_micros"]
    r = refund(cb, o["id"])
    assert r.status_code == 409, r.text
    assert error_of(r)["message"] == ("the gateway coinbase cannot refund; refund order %d at "
                                      "the provider" % o["id"])
    # bad input: nothing written
    for body, field in (({"manual": True, "amount_micros": price + 1}, None),
                        ({"provider_refund_ref": "x"}, "provider_refund_ref"),
                        ({"manual": "yes"}, "manual")):
        r = refund(cb, o["id"], **body)
        assert r.status_code in (400, 409), r.text
        if field:
            assert error_of(r)["field"] == field
    assert cb.sql("SELECT COUNT(*) FROM order_refunds WHERE order_id = %d" % o["id"]) == [(0,)]

    quarter = price // 4
    r = refund(cb, o["id"], manual=True, amount_micros=quarter, reason="a quarter, ticket 12",
               provider_refund_ref="0xabc123")
    assert r.status_code == 200, r.text
    assert r.json()["refunded"] is True
    assert (r.json()["order"]["status"], r.json()["order"]["refunded_micros"]) == ("paid", quarter)
    [(action, after)] = cb.sql("SELECT action, after_json FROM audit_log WHERE target_type = 'order' "
                               "AND target_id = '%d'" % o["id"])
    assert action == "order.refund_manual"
    assert json.loads(after) == {"status": "paid", "amount_micros": quarter, "refund": "manual",
                                 "reason": "a quarter, ticket 12",
                                 "provider_refund_ref": "0xabc123"}
    # the rest, without an amount
    r = refund(cb, o["id"], manual=True)
    assert r.status_code == 200 and r.json()["order"]["status"] == "refunded", r.text
    assert cb.sql("SELECT amount_micros, source, event, reason FROM order_refunds WHERE "
                  "order_id = %d ORDER BY id" % o["id"]) == [
        (quarter, "staff", None, "a quarter, ticket 12"),
        (price - quarter, "staff", None, "refunded in the Coinbase dashboard")]
    assert contracts(cb, o["id"]) == [("refunded",)]
    assert cb.sql("SELECT status FROM commissions WHERE order_id = %d" % o["id"]) == \
        [("clawed_back",)]
    assert cb.sql("SELECT kind, source FROM order_events WHERE order_id = %d AND "
                  "kind = 'refunded_manually'" % o["id"]) == [("refunded_manually", "staff")] * 2
    # the member was told twice: a part, then the whole
    assert cb.sql("SELECT recipient, json_extract(variables, '$.amount_micros'), "
                  "json_extract(variables, '$.refunded_micros'), "
                  "json_extract(variables, '$.fully_refunded') FROM mail_queue WHERE "
                  "template = 'order_refunded' AND json_extract(variables, '$.order_id') = %d "
                  "ORDER BY id" % o["id"]) == [
        (buyer["email"], quarter, quarter, 0), (buyer["email"], price - quarter, price, 1)]
    # nothing left: a third is 409
    assert refund(cb, o["id"], manual=True).status_code == 409
    verify(cb)

    # the member's statement: the purchase and both refunds, at the gateway
    r = requests.get(cb.url + "/api/ledger", headers=h, timeout=10)
    assert r.status_code == 200, r.text
    lines = [(t["kind"], t["amount_micros"], t["account"], t["reference"])
             for t in r.json()["transfers"]]
    ref = "order:%d" % o["id"]
    assert lines == [("refund", price - quarter, "gateway", ref),
                     ("refund", quarter, "gateway", ref),
                     ("purchase", -price, "gateway", ref)]
    # paged one line at a time: the same lines, none twice
    seen, cursor = [], None
    while True:
        q = {"limit": 1} if cursor is None else {"limit": 1, "cursor": cursor}
        page = requests.get(cb.url + "/api/ledger", headers=h, params=q, timeout=10).json()
        seen += [(t["kind"], t["amount_micros"]) for t in page["transfers"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [(k, a) for (k, a, _, _) in lines]
    # the wallet did not move
    assert requests.get(cb.url + "/api/me", headers=h, timeout=10).json()["user"][
        "balance_micros"] == 0


def test_a_balance_order_cannot_be_refunded_manually(cb):
    _, h = member(cb)
    pkg = cheapest(cb)
    uid = requests.get(cb.url + "/api/me", headers=h, timeout=10).json()["user"]["id"]
    cb.ctl("ledger", "adjust", "--user", str(uid), "--amount", str(pkg["price_micros"]),
           "--reason", "test credit")
    r = requests.post(cb.url + "/api/orders", headers=h, timeout=15,
                      json={"package_id": pkg["id"], "pay_from_balance": True})
    assert r.status_code == 201, r.text
    oid = r.json()["order"]["id"]
    r = refund(cb, oid, manual=True)
    assert r.status_code == 400 and error_of(r)["field"] == "manual", r.text
    assert cb.sql("SELECT COUNT(*) FROM order_refunds WHERE order_id = %d" % oid) == [(0,)]
    verify(cb)
