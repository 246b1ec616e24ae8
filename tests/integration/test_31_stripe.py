"""The Stripe payment plugin in a real Apache against the Stripe stand-in
(tests/standins/stripe_standin.py), with Stripe's own Node SDK as an
independent client: a Checkout Session exactly as Stripe documents it (form
body, Bearer key, Idempotency-Key), paid → contract and ten levels of
commissions; the same webhook five times and five at once → one contract;
forged, stale and tampered webhooks → 400 and nothing changed; SDK-signed
webhooks accepted; expiry; staff refunds partial then full through the
Refunds API; Stripe down on checkout → 503 and no half-made order; an
amount Stripe cannot charge refused before any request; secrets never in
the log. `deepminectl ledger verify` after every money scenario.

Delayed (async) payments pending then paid or failed; disputes won and
lost. The janitor (query) waits for paycore's janitor job."""
import concurrent.futures
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

import pytest
import requests

from conftest import (PLUGINS, ROOT, Server, assert_clean_log, bearer, error_of,
                      register_member)

sys.path.insert(0, os.path.join(ROOT, "tests", "standins"))
from stripe_standin import StripeStandin  # noqa: E402

SECRET_KEY = "sk_test_51DeepMine" + "a1b2c3d4e5f6a7b8c9d0" * 3
WEBHOOK_SECRET = "whsec_" + "5f2c9e7a1b3d4c6e8f0a2b4c6d8e0f1a"
SDK = os.path.join(ROOT, "tests", "sdk")
LEVEL1 = [500, 200, 100, 50, 50, 25, 25, 25, 25, 25]
FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit webhook 100000/1m ip\n")


def write_secret(s, name, value):
    path = os.path.join(s.var, name)
    with open(path, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)
    return path


@pytest.fixture(scope="module")
def env():
    s = Server(mpm="event")
    st = StripeStandin(SECRET_KEY, WEBHOOK_SECRET, s.url + "/api/webhooks/stripe").start()
    key_file = write_secret(s, "stripe-secret-key", SECRET_KEY)
    wh_file = write_secret(s, "stripe-webhook-secret", WEBHOOK_SECRET)
    s.write_local_conf(FAST + (
        "DeepMinePlugin payment stripe %s/payment-stripe.so\n"
        'DeepMinePluginSet stripe secret_key "file:%s"\n'
        'DeepMinePluginSet stripe webhook_secret "file:%s"\n'
        "DeepMinePluginSet stripe api_base %s\n"
        "DeepMinePluginSet stripe timeout_ms 1500\n") % (PLUGINS, key_file, wh_file, st.url))
    s.ctl("capacity", "ensure", "--ghs", "1000000000", "--note", "test_31")
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.staff = {}
    s.packages = s.get("/api/packages").json()["packages"]
    s.standin = st
    yield s
    s.stop()
    st.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


@pytest.fixture
def srv(env):
    env.standin.reset()
    return env


# ---- helpers -----------------------------------------------------------------


def member(s, referral_code=None):
    extra = {"referral_code": referral_code} if referral_code else {}
    b = register_member(s, "st", **extra)
    # a gateway that moves money needs a verified e-mail (docs/payments.md)
    s.sql("UPDATE users SET email_verified_at = 1 WHERE id = %d" % b["user"]["id"])
    return b["user"], bearer(b)


def verify(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def cheapest(s):
    return min(s.packages, key=lambda p: p["price_micros"])


def stripe_order(s, headers, package=None):
    """A pending order through the stripe gateway: (order, checkout URL)."""
    package = package or cheapest(s)
    r = s.request("POST", "/api/orders", headers=headers,
                  json={"package_id": package["id"], "gateway": "stripe"}, timeout=20)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["order"]["status"] == "pending"
    return body["order"], body["checkout_url"]


def order_of(s, headers, oid):
    r = s.get("/api/orders/%d" % oid, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["order"]


def control(s, path, body=None):
    r = requests.post(s.standin.url + path, json=body or {}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def standin_requests(s, path=None):
    reqs = requests.get(s.standin.url + "/_standin/requests", timeout=10).json()
    return [q for q in reqs if path is None or q["path"] == path]


def contracts_of(s, oid):
    return s.sql("SELECT status FROM contracts WHERE order_id = %d" % oid)


def event_rows(s, event_id):
    return s.sql("SELECT status, amount_micros, currency, order_ref, outcome FROM payment_events "
                 "WHERE plugin = 'stripe' AND event_id = '%s'" % event_id)


def sign(body, t=None, secret=WEBHOOK_SECRET):
    """Stripe's scheme, computed here with Python's hmac (independently of
    the plugin and of the stand-in)."""
    t = int(time.time()) if t is None else t
    return "t=%d,v1=%s" % (t, hmac.new(secret.encode(), b"%d." % t + body,
                                       hashlib.sha256).hexdigest())


def post_webhook(s, body, sig, **kw):
    headers = {"Content-Type": "application/json", "Stripe-Signature": sig,
               "Connection": "close"}
    return requests.post(s.url + "/api/webhooks/stripe", data=body, headers=headers,
                         timeout=20, **kw)


def session_id(checkout_url):
    return checkout_url.rsplit("/", 1)[1]


def held_event(s, sid):
    """Pays session sid with delivery on hold: the checkout.session.completed
    event Stripe would send, not yet sent."""
    control(s, "/_standin/delivery", {"mode": "hold"})
    out = control(s, "/_standin/pay/" + sid)
    assert out["held"] is True
    control(s, "/_standin/delivery", {"mode": "normal"})
    with s.standin.lock:
        s.standin.held = []
    return out["event"]


def node(cmd):
    r = subprocess.run(["node", os.path.join(SDK, "stripe_client.js"), json.dumps(cmd)],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, NODE_PATH=os.path.join(SDK, "node_modules")))
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def staff_refund(s, oid, **body):
    from conftest import staff
    body.setdefault("reason", "customer asked")
    return staff(s, "finance").post(s.url + "/api/admin/orders/%d/refund" % oid, json=body,
                                    timeout=20)


# ---- checkout ------------------------------------------------------------------


def test_checkout_session_is_created_as_stripe_documents_it(srv):
    user, h = member(srv)
    pkg = cheapest(srv)
    order, url = stripe_order(srv, h, pkg)
    assert url.startswith(srv.standin.url + "/c/pay/cs_test_"), url
    [q] = standin_requests(srv, "/v1/checkout/sessions")
    assert q["method"] == "POST"
    hd = {k.lower(): v for k, v in q["headers"].items()}
    assert hd["authorization"] == "Bearer " + SECRET_KEY
    assert hd["content-type"] == "application/x-www-form-urlencoded"
    key = hd["idempotency-key"]
    assert re.fullmatch(r"dm-co-[0-9a-f]{64}", key), key
    form = urllib.parse.parse_qs(q["body"], strict_parsing=True)
    oid = str(order["id"])
    assert pkg["price_micros"] == 5000000, pkg
    expires = int(form.pop("expires_at")[0])
    assert 1800 < expires - time.time() <= 1860
    assert form == {
        "mode": ["payment"],
        "line_items[0][price_data][currency]": ["usd"],
        "line_items[0][price_data][unit_amount]": ["500"],
        "line_items[0][price_data][product_data][name]": ["Order " + oid],
        "line_items[0][quantity]": ["1"],
        "client_reference_id": [oid],
        "metadata[order_id]": [oid],
        "payment_intent_data[metadata][order_id]": [oid],
        "success_url": [srv.url + "/"],
        "cancel_url": [srv.url + "/"],
        "customer_email": [user["email"]],
    }
    # the order remembers the session
    assert srv.sql("SELECT provider_ref FROM orders WHERE id = %d" % order["id"]) == \
        [(session_id(url),)]
    # the same key again is the same session (what a retried create gets)
    r = requests.post(srv.standin.url + "/v1/checkout/sessions", data=q["body"], timeout=10,
                      headers={"Authorization": "Bearer " + SECRET_KEY, "Idempotency-Key": key,
                               "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["id"] == session_id(url)
    assert r.headers["Idempotent-Replayed"] == "true"


def test_an_amount_stripe_cannot_charge_is_refused_before_any_request(srv):
    srv.expect_log(r"DM00701: order \d+: gateway stripe could not create a checkout")
    _, h = member(srv)
    pkg = cheapest(srv)
    srv.sql("UPDATE packages SET price_micros = 5000001 WHERE id = %d" % pkg["id"])
    try:
        r = srv.request("POST", "/api/orders", headers=h,
                        json={"package_id": pkg["id"], "gateway": "stripe"})
    finally:
        srv.sql("UPDATE packages SET price_micros = 5000000 WHERE id = %d" % pkg["id"])
    assert r.status_code == 409, r.text
    err = error_of(r)
    assert err["code"] == "conflict"
    assert "not a whole number of the currency's smallest unit" in err["message"], err
    assert standin_requests(srv, "/v1/checkout/sessions") == []
    verify(srv)


@pytest.mark.parametrize("mode", [{"status": 500}, {"timeout": 3}, {"garbage": True}],
                         ids=["500", "timeout", "garbage"])
def test_stripe_down_on_checkout_is_503_and_no_half_made_order(srv, mode):
    user, h = member(srv)
    control(srv, "/_standin/mode", dict(mode, count=1))
    r = srv.request("POST", "/api/orders", headers=h, timeout=20,
                    json={"package_id": cheapest(srv)["id"], "gateway": "stripe"})
    assert r.status_code == 503, r.text
    assert error_of(r)["code"] == "unavailable"
    rows = srv.sql("SELECT status, provider_ref FROM orders WHERE user_id = %d" % user["id"])
    assert len(rows) == 1 and rows[0][1] is None, rows
    # paycore keeps it pending until it expires; main fails it at once
    assert rows[0][0] in ("failed", "pending"), rows
    assert srv.sql("SELECT COUNT(*) FROM contracts WHERE user_id = %d" % user["id"]) == [(0,)]
    srv.expect_log(r"DM00701: order \d+: gateway stripe could not create a checkout")
    srv.expect_log(r"DM00020: POST /api/orders failed: the payment gateway could not start the "
                   r"payment: Stripe (answered|did not answer) the checkout session")
    verify(srv)


def test_a_member_without_a_verified_email_cannot_order_through_stripe(srv):
    b = register_member(srv, "nv")
    h = bearer(b)
    r = srv.request("POST", "/api/orders", headers=h,
                    json={"package_id": cheapest(srv)["id"], "gateway": "stripe"})
    assert r.status_code == 403, r.text
    err = error_of(r)
    assert (err["code"], err["message"]) == \
        ("forbidden", "verify your e-mail address before paying through a gateway")
    assert srv.sql("SELECT COUNT(*) FROM orders WHERE user_id = %d" % b["user"]["id"]) == [(0,)]
    assert standin_requests(srv, "/v1/checkout/sessions") == []


def test_payment_methods_name_stripe_as_a_card_gateway(srv):
    r = requests.get(srv.url + "/api/payment-methods", timeout=10)
    assert r.status_code == 200, r.text
    assert {"name": "stripe", "display_name": "Card (Stripe)", "kind": "card",
            "currencies": [], "any_currency": True, "sandbox": False} in r.json()["methods"]


# ---- paid ------------------------------------------------------------------------


def test_paid_session_makes_a_contract_and_ten_levels_of_commissions(srv):
    chain = [member(srv)]
    for _ in range(11):
        chain.append(member(srv, chain[-1][0]["referral_code"]))
    buyer, h = chain[-1]
    order, url = stripe_order(srv, h)
    out = control(srv, "/_standin/pay/" + session_id(url))
    assert out["status"] == 200, out
    assert json.loads(out["response"])["outcome"] == "paid"
    ev = out["event"]
    assert event_rows(srv, ev["id"]) == [("paid", 5000000, "USD", str(order["id"]), "paid")]
    got = order_of(srv, h, order["id"])
    assert got["status"] == "paid"
    assert contracts_of(srv, order["id"]) == [("active",)]
    price = order["amount_micros"]
    for d in range(1, 12):
        _, uh = chain[-1 - d]
        rows = requests.get(srv.url + "/api/referrals/commissions", headers=uh,
                            timeout=10).json()["commissions"]
        if d > 10:
            assert rows == []
            continue
        [row] = rows
        assert (row["order_id"], row["depth"], row["amount_micros"]) == \
            (order["id"], d, price * LEVEL1[d - 1] // 10000)
    verify(srv)


def test_same_webhook_five_times_then_five_at_once_make_one_contract(srv):
    _, h = member(srv)
    order, url = stripe_order(srv, h)
    event = held_event(srv, session_id(url))
    answers = [control(srv, "/_standin/deliver", {"event": event}) for _ in range(5)]
    assert [a["status"] for a in answers] == [200] * 5
    assert [json.loads(a["response"])["duplicate"] for a in answers] == \
        [False, True, True, True, True]
    assert contracts_of(srv, order["id"]) == [("active",)]
    assert len(event_rows(srv, event["id"])) == 1

    _, h2 = member(srv)
    order2, url2 = stripe_order(srv, h2)
    event2 = held_event(srv, session_id(url2))
    body = json.dumps(event2).encode()
    sig = sign(body)
    barrier = threading.Barrier(5)

    def one(_):
        barrier.wait()
        return post_webhook(srv, body, sig)

    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        got = list(ex.map(one, range(5)))
    assert [g.status_code for g in got] == [200] * 5, [g.text for g in got]
    assert sorted(g.json()["duplicate"] for g in got) == [False, True, True, True, True]
    assert contracts_of(srv, order2["id"]) == [("active",)]
    assert order_of(srv, h2, order2["id"])["status"] == "paid"
    verify(srv)


def test_several_v1_signatures_one_of_them_right_are_accepted(srv):
    _, h = member(srv)
    order, url = stripe_order(srv, h)
    event = held_event(srv, session_id(url))
    out = control(srv, "/_standin/deliver", {
        "event": event, "extra_v1": ["whsec_rotated_away_0123456789abcdef"]})
    assert out["signature"].count("v1=") == 2
    assert out["status"] == 200, out
    assert json.loads(out["response"])["outcome"] == "paid"
    verify(srv)


def test_forged_stale_and_tampered_webhooks_are_400_and_change_nothing(srv):
    _, h = member(srv)
    order, url = stripe_order(srv, h)
    event = held_event(srv, session_id(url))
    body = json.dumps(event).encode()
    now = int(time.time())
    cases = [
        ("forged", body, sign(body, secret="whsec_not_the_endpoint_secret"),
         "does not match the body"),
        ("stale", body, sign(body, t=now - 301), "more than 300 s old"),
        ("future", body, sign(body, t=now + 301), "more than 300 s in the future"),
        ("tampered", body.replace(b'"amount_total": 500', b'"amount_total": 5'), sign(body),
         "does not match the body"),
        ("no v1", body, "t=%d" % now, "no v1 signature"),
        ("v0 only", body, "t=%d,v0=%s" % (now, sign(body).split("v1=")[1]), "no v1 signature"),
        ("no t", body, "v1=" + sign(body).split("v1=")[1], "no valid timestamp"),
    ]
    assert b'"amount_total": 500' in body
    for name, sent, sig, why in cases:
        r = post_webhook(srv, sent, sig)
        assert r.status_code == 400, (name, r.text)
        err = error_of(r)
        assert err["code"] == "invalid" and why in err["message"], (name, err)
        assert WEBHOOK_SECRET not in r.text
    r = requests.post(srv.url + "/api/webhooks/stripe", data=body, timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "no Stripe-Signature header" in error_of(r)["message"]
    assert event_rows(srv, event["id"]) == []
    assert order_of(srv, h, order["id"])["status"] == "pending"
    assert contracts_of(srv, order["id"]) == []
    srv.expect_log(r"DM00650: webhook for plugin stripe refused")
    verify(srv)


def test_a_webhook_signed_by_stripes_own_sdk_is_accepted(srv):
    srv.expect_log(r"DM00650: webhook for plugin stripe refused: the Stripe-Signature timestamp")
    _, h = member(srv)
    order, url = stripe_order(srv, h)
    event = held_event(srv, session_id(url))
    payload = json.dumps(event, indent=2)
    header = node({"op": "sign", "payload": payload, "secret": WEBHOOK_SECRET})["header"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header), header
    r = post_webhook(srv, payload.encode(), header)
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "paid"
    # and a stale one from the SDK is refused
    stale = node({"op": "sign", "payload": payload, "secret": WEBHOOK_SECRET,
                  "timestamp": int(time.time()) - 400})["header"]
    r = post_webhook(srv, payload.encode(), stale)
    assert r.status_code == 400 and "more than 300 s old" in error_of(r)["message"]
    assert contracts_of(srv, order["id"]) == [("active",)]
    verify(srv)


def test_unknown_event_types_are_200_and_change_nothing(srv):
    evid = "evt_test_" + uuid.uuid4().hex
    body = json.dumps({"id": evid, "object": "event", "type": "customer.created",
                       "data": {"object": {"id": "cus_test_1", "object": "customer"}},
                       "livemode": False, "created": int(time.time())}).encode()
    r = post_webhook(srv, body, sign(body))
    assert r.status_code == 200, r.text
    assert r.json() == {"received": True, "duplicate": False, "outcome": "ignored"}
    assert event_rows(srv, evid) == [("ignored", 0, None, None, "ignored")]


def test_an_expired_session_expires_the_order(srv):
    _, h = member(srv)
    order, url = stripe_order(srv, h)
    out = control(srv, "/_standin/expire/" + session_id(url))
    assert out["status"] == 200, out
    assert json.loads(out["response"])["outcome"] == "expired"
    assert order_of(srv, h, order["id"])["status"] == "expired"
    assert contracts_of(srv, order["id"]) == []
    verify(srv)


def test_a_delayed_payment_is_pending_until_stripe_says_it_succeeded(srv):
    _, h = member(srv)
    order, url = stripe_order(srv, h)
    sid = session_id(url)
    out = control(srv, "/_standin/pay/" + sid, {"async": True})
    assert out["event"]["data"]["object"]["payment_status"] == "unpaid"
    assert out["status"] == 200 and json.loads(out["response"])["outcome"] == "pending"
    assert order_of(srv, h, order["id"])["status"] == "pending"
    assert contracts_of(srv, order["id"]) == []
    out = control(srv, "/_standin/async/" + sid, {"succeeded": True})
    assert out["status"] == 200 and json.loads(out["response"])["outcome"] == "paid"
    assert order_of(srv, h, order["id"])["status"] == "paid"
    assert contracts_of(srv, order["id"]) == [("active",)]
    verify(srv)


def test_a_delayed_payment_that_fails_fails_the_order(srv):
    _, h = member(srv)
    order, url = stripe_order(srv, h)
    sid = session_id(url)
    control(srv, "/_standin/pay/" + sid, {"async": True})
    out = control(srv, "/_standin/async/" + sid, {"succeeded": False})
    assert out["status"] == 200 and json.loads(out["response"])["outcome"] == "failed"
    assert order_of(srv, h, order["id"])["status"] == "failed"
    assert contracts_of(srv, order["id"]) == []
    verify(srv)


def paid_order(srv):
    _, h = member(srv)
    order, url = stripe_order(srv, h)
    paid = control(srv, "/_standin/pay/" + session_id(url))
    assert json.loads(paid["response"])["outcome"] == "paid"
    return h, order, paid["event"]["data"]["object"]["payment_intent"]


def test_a_dispute_won_keeps_the_order_paid(srv):
    srv.expect_log(r"DM00700: order \d+ needs staff attention \(dispute_opened\)")
    h, order, pi = paid_order(srv)
    opened = control(srv, "/_standin/dispute", {"payment_intent": pi})
    d = opened["delivery"]
    assert d["status"] == 200 and json.loads(d["response"])["outcome"] == "disputed", d
    assert order_of(srv, h, order["id"])["status"] == "disputed"
    d = control(srv, "/_standin/dispute/%s/close" % opened["id"], {"status": "won"})
    assert d["status"] == 200 and json.loads(d["response"])["outcome"] == "dispute_won", d
    assert order_of(srv, h, order["id"])["status"] == "paid"
    assert contracts_of(srv, order["id"]) == [("active",)]
    verify(srv)


def test_a_dispute_lost_refunds_the_order(srv):
    srv.expect_log(r"DM00700: order \d+ needs staff attention \(dispute_(opened|lost)\)")
    h, order, pi = paid_order(srv)
    opened = control(srv, "/_standin/dispute", {"payment_intent": pi})
    assert json.loads(opened["delivery"]["response"])["outcome"] == "disputed"
    d = control(srv, "/_standin/dispute/%s/close" % opened["id"], {"status": "lost"})
    assert d["status"] == 200 and json.loads(d["response"])["outcome"] == "dispute_lost", d
    got = order_of(srv, h, order["id"])
    assert (got["status"], got["refunded_micros"]) == ("refunded", 5000000)
    assert contracts_of(srv, order["id"]) == [("refunded",)]
    verify(srv)


# ---- refunds -----------------------------------------------------------------------


def test_staff_refunds_part_then_the_rest_through_the_refunds_api(srv):
    _, h = member(srv)
    order, url = stripe_order(srv, h)
    paid = control(srv, "/_standin/pay/" + session_id(url))
    pi = paid["event"]["data"]["object"]["payment_intent"]
    assert pi.startswith("pi_test_")

    control(srv, "/_standin/delivery", {"mode": "hold"})
    r = staff_refund(srv, order["id"], amount_micros=1250000, reason="a quarter back")
    assert r.status_code == 202, r.text
    assert r.json()["refunded"] is False
    [q] = standin_requests(srv, "/v1/refunds")
    hd = {k.lower(): v for k, v in q["headers"].items()}
    assert hd["authorization"] == "Bearer " + SECRET_KEY
    assert hd["content-type"] == "application/x-www-form-urlencoded"
    # the host's refund key (order, refunded so far, amount), as Stripe's key
    assert hd["idempotency-key"] == "dm-rf-dm-refund-%d-0-1250000" % order["id"]
    assert urllib.parse.parse_qs(q["body"]) == {
        "payment_intent": [pi], "amount": ["125"], "metadata[reason]": ["a quarter back"]}
    # the paid event's payment intent is the order's: no lookup first
    assert [(x["method"], x["path"]) for x in standin_requests(srv)] == \
        [("POST", "/v1/checkout/sessions"), ("POST", "/v1/refunds")]
    [d] = control(srv, "/_standin/release")
    assert d["status"] == 200, d
    assert d["event"]["type"] == "charge.refunded"
    assert d["event"]["data"]["previous_attributes"]["amount_refunded"] == 0
    assert json.loads(d["response"])["outcome"] == "partial_refund"
    got = order_of(srv, h, order["id"])
    assert (got["status"], got["refunded_micros"]) == ("paid", 1250000)
    verify(srv)

    control(srv, "/_standin/delivery", {"mode": "hold"})
    r = staff_refund(srv, order["id"])
    assert r.status_code == 202, r.text
    q = standin_requests(srv, "/v1/refunds")[-1]
    assert q["headers"]["idempotency-key"] == "dm-rf-dm-refund-%d-1250000-3750000" % order["id"]
    assert urllib.parse.parse_qs(q["body"]) == {
        "payment_intent": [pi], "amount": ["375"], "metadata[reason]": ["customer asked"]}
    [d] = control(srv, "/_standin/release")
    assert d["event"]["data"]["object"]["amount_refunded"] == 500
    assert d["event"]["data"]["previous_attributes"]["amount_refunded"] == 125
    assert json.loads(d["response"])["outcome"] == "refunded"
    got = order_of(srv, h, order["id"])
    assert (got["status"], got["refunded_micros"]) == ("refunded", 5000000)
    assert contracts_of(srv, order["id"]) == [("refunded",)]
    # nothing left: Stripe would refuse, and so does the site
    r = staff_refund(srv, order["id"])
    assert r.status_code == 409, r.text
    verify(srv)


# ---- the stand-in against Stripe's own SDK -------------------------------------------


def test_stripes_sdk_creates_a_session_and_a_refund_on_the_standin(srv):
    ref = "sdk-" + uuid.uuid4().hex[:8]
    params = {
        "mode": "payment",
        "line_items": [{"price_data": {"currency": "jpy", "unit_amount": 1250,
                                       "product_data": {"name": "Order " + ref}},
                        "quantity": 1}],
        "client_reference_id": ref, "metadata": {"order_id": ref},
        "success_url": "https://shop.example/", "cancel_url": "https://shop.example/",
        "expires_at": int(time.time()) + 3600,
    }
    out = node({"op": "checkout", "port": srv.standin.port, "key": SECRET_KEY,
                "params": params, "idempotencyKey": "sdk-" + uuid.uuid4().hex})
    first = out["first"]
    assert first["id"].startswith("cs_test_") and first["amount_total"] == 1250
    assert out["again"]["id"] == first["id"] and out["read"]["id"] == first["id"]
    [q, _] = standin_requests(srv, "/v1/checkout/sessions")
    assert q["method"] == "POST"
    hd = {k.lower(): v for k, v in q["headers"].items()}
    assert hd["authorization"] == "Bearer " + SECRET_KEY
    assert hd["content-type"] == "application/x-www-form-urlencoded"
    # the SDK's webhook reaches the site: no such order there, recorded
    paid = control(srv, "/_standin/pay/" + first["id"])
    assert paid["status"] == 200 and json.loads(paid["response"])["outcome"] == "unknown_order"
    pi = paid["event"]["data"]["object"]["payment_intent"]
    control(srv, "/_standin/delivery", {"mode": "drop"})
    out = node({"op": "refund", "port": srv.standin.port, "key": SECRET_KEY,
                "params": {"payment_intent": pi, "amount": 250},
                "idempotencyKey": "sdk-" + uuid.uuid4().hex})
    assert out["first"]["id"].startswith("re_test_") and out["first"]["amount"] == 250
    assert out["again"]["id"] == out["first"]["id"]
    listed = node({"op": "list", "port": srv.standin.port, "key": SECRET_KEY,
                   "params": {"payment_intent": pi, "limit": 1}})
    assert [x["id"] for x in listed["data"]] == [first["id"]]
    control(srv, "/_standin/delivery", {"mode": "normal"})
    srv.expect_log(r"DM00703: payment event stripe/evt_test_\w+ names no order of ours")


def test_the_standin_refuses_what_stripe_refuses(srv):
    base = srv.standin.url
    ok = {"Authorization": "Bearer " + SECRET_KEY, "Idempotency-Key": uuid.uuid4().hex,
          "Content-Type": "application/x-www-form-urlencoded"}
    r = requests.post(base + "/v1/checkout/sessions", data="mode=payment", timeout=10,
                      headers=dict(ok, Authorization="Bearer sk_test_wrong"))
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
    r = requests.post(base + "/v1/checkout/sessions", json={"mode": "payment"}, timeout=10,
                      headers={k: v for k, v in ok.items() if k != "Content-Type"})
    assert r.status_code == 400
    r = requests.post(base + "/v1/checkout/sessions", data="mode=payment", timeout=10,
                      headers=ok)
    assert r.status_code == 400 and r.json()["error"]["param"] == "line_items"
    r = requests.post(base + "/v1/checkout/sessions", data="mode=payment", timeout=10,
                      headers={k: v for k, v in ok.items() if k != "Idempotency-Key"})
    assert r.status_code == 400 and "Idempotency-Key" in r.json()["error"]["message"]


# ---- secrets ---------------------------------------------------------------------------


def test_secrets_never_reach_the_log(env):
    text = env.log_text()
    assert "payment-stripe" in text  # the plugin did log (loaded)
    assert SECRET_KEY not in text and SECRET_KEY[8:] not in text
    assert WEBHOOK_SECRET not in text and WEBHOOK_SECRET[6:] not in text


# ---- the janitor ------------------------------------------------------------------------


T0 = 1800000000  # the fake clock's start (2027-01-15)


def wait_for(cond, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture(scope="module")
def clocked():
    """A server on the fake clock (the janitor is due when the clock moves)
    with its own stand-in."""
    s = Server(mpm="event", clock=T0)
    st = StripeStandin(SECRET_KEY, WEBHOOK_SECRET, s.url + "/api/webhooks/stripe").start()
    key_file = write_secret(s, "stripe-secret-key", SECRET_KEY)
    wh_file = write_secret(s, "stripe-webhook-secret", WEBHOOK_SECRET)
    s.write_local_conf(FAST + "DeepMinePaymentSettle 600\n" + (
        "DeepMinePlugin payment stripe %s/payment-stripe.so\n"
        'DeepMinePluginSet stripe secret_key "file:%s"\n'
        'DeepMinePluginSet stripe webhook_secret "file:%s"\n'
        "DeepMinePluginSet stripe api_base %s\n") % (PLUGINS, key_file, wh_file, st.url))
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.packages = s.get("/api/packages").json()["packages"]
    s.standin = st
    yield s
    s.stop()
    st.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def test_the_janitor_settles_a_held_back_webhook_once(clocked):
    s = clocked
    _, h = member(s)
    order, url = stripe_order(s, h)
    sid = session_id(url)
    control(s, "/_standin/delivery", {"mode": "hold"})
    assert control(s, "/_standin/pay/" + sid)["held"] is True
    assert order_of(s, h, order["id"])["status"] == "pending"
    s.advance(601)
    wait_for(lambda: s.sql("SELECT COUNT(*) FROM payment_events WHERE source = 'janitor' AND "
                           "order_ref = '%d'" % order["id"])[0][0] > 0, "the janitor")
    assert order_of(s, h, order["id"])["status"] == "paid"
    assert contracts_of(s, order["id"]) == [("active",)]
    gets = [q for q in standin_requests(s) if q["path"] == "/v1/checkout/sessions/" + sid]
    assert gets and all(q["method"] == "GET" for q in gets)
    [(pid,)] = s.sql("SELECT payment_id FROM orders WHERE id = %d" % order["id"])
    assert pid.startswith("pi_test_")
    # Stripe's webhook comes after all: the same payment, nothing more
    [d] = control(s, "/_standin/release")
    assert d["status"] == 200 and json.loads(d["response"])["outcome"] == "already_paid", d
    assert contracts_of(s, order["id"]) == [("active",)]
    assert s.sql("SELECT COUNT(*) FROM transfers WHERE kind = 'purchase' AND "
                 "reference = 'order:%d'" % order["id"]) == [(1,)]
    verify(s)
