"""The PayPal plugin (plugins/payment-paypal) in a real Apache against the
PayPal stand-in (tests/standins/paypal_standin.py): a purchase creates an
Orders v2 order as PayPal documents it; the buyer's return captures it and
pays the order (contract, 10 levels of commissions); the approval and
capture webhooks for that same capture change nothing more; webhooks
alone (return page never seen), redelivered, concurrent or out of order
make one contract; forged, tampered, stale or foreign webhooks are 400 with
nothing recorded (PayPal's postback says FAILURE, or the plugin refuses
before asking); refunds full and partial go through PayPal and come back
as webhooks; PayPal down on checkout is 503 with a clean order; the access
token is cached and renewed on 401; no secret reaches the log.
`deepminectl ledger verify` after every money scenario."""
import concurrent.futures
import json
import os
import re
import sys
import threading
import time

import pytest
import requests

from conftest import ROOT, PLUGINS, Server, assert_clean_log, bearer, error_of, register_member

sys.path.insert(0, os.path.join(ROOT, "tests", "standins"))
from paypal_standin import PayPalStandin, now_rfc3339  # noqa: E402

CLIENT_ID = "AeStandinClientId-0123456789"
CLIENT_SECRET = "EStandinSecret-" + "s3cr3t" * 8
WEBHOOK_ID = "8PT597110X687430LKGECATA"
USD = 1000000
FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit webhook 100000/1m ip\n"
        # one child process: the token cache is per process, so its counts
        # are exact
        "<IfModule mpm_event_module>\n"
        "    StartServers 1\n    ServerLimit 1\n    ThreadsPerChild 32\n"
        "    MaxRequestWorkers 32\n"
        "    MinSpareThreads 1\n    MaxSpareThreads 64\n"
        "</IfModule>\n")


def plugin_conf(standin, var, **extra):
    secret = os.path.join(var, "paypal-client.secret")
    with open(secret, "w") as f:
        f.write(CLIENT_SECRET + "\n")
    os.chmod(secret, 0o600)
    settings = {"client_id": CLIENT_ID, "client_secret": '"file:%s"' % secret,
                "webhook_id": WEBHOOK_ID, "api_base": standin.url, "timeout_ms": "2000"}
    settings.update(extra)
    lines = ['DeepMinePlugin payment paypal "%s/payment-paypal.so"' % PLUGINS]
    lines += ["DeepMinePluginSet paypal %s %s" % kv for kv in settings.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def pp():
    st = PayPalStandin(CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID).start()
    s = Server(mpm="event", seed=True)
    s.write_local_conf(FAST + plugin_conf(st, s.var))
    s.start()
    st.webhook_url = s.url + "/api/webhooks/paypal"
    s.standin = st
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.packages = s.get("/api/packages").json()["packages"]
    yield s
    s.stop()
    st.stop()
    try:
        assert_clean_log(s)
        log = s.log_text()
        # no secret in any log line: the client secret, its Basic form, and
        # every access token the stand-in issued
        assert CLIENT_SECRET not in log
        for tok in st.tokens:
            assert tok not in log
    finally:
        s.cleanup()


@pytest.fixture
def standin(pp):
    pp.standin.take_outbox()
    pp.standin.failures.clear()
    return pp.standin


# ---- helpers ----------------------------------------------------------------

def member(s, referral_code=None):
    extra = {"referral_code": referral_code} if referral_code else {}
    b = register_member(s, "pp", **extra)
    # a gateway that moves money needs a verified e-mail (docs/payments.md)
    s.sql("UPDATE users SET email_verified_at = 1 WHERE id = %d" % b["user"]["id"])
    return b["user"], bearer(b)


def cheapest(s):
    return min(s.packages, key=lambda p: p["price_micros"])


def buy(s, headers, pkg=None):
    pkg = pkg or cheapest(s)
    r = s.request("POST", "/api/orders", headers=headers,
                  json={"package_id": pkg["id"], "gateway": "paypal"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["order"]["status"] == "pending"
    return body["order"], body["checkout_url"]


def order_of(s, oid):
    [(status, ref, refunded)] = s.sql(
        "SELECT status, provider_ref, refunded_micros FROM orders WHERE id = %d" % oid)
    return status, ref, refunded


def contracts(s, oid):
    return s.sql("SELECT status FROM contracts WHERE order_id = %d" % oid)


def purchases(s, oid):
    return s.sql("SELECT kind, amount_micros FROM transfers WHERE reference = 'order:%d' "
                 "AND kind IN ('purchase', 'refund') "
                 "ORDER BY id" % oid)


def events(s, oid):
    return s.sql("SELECT event_id, status, outcome FROM payment_events WHERE plugin = 'paypal' "
                 "AND order_ref = '%d' ORDER BY id" % oid)


def assert_ledger_verifies(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def capture_id(standin, ppid):
    return standin.orders[ppid]["capture_id"]


def webhook(s, standin, event, **kw):
    return standin.send_event(event, **kw)


# ---- checkout ---------------------------------------------------------------

def test_checkout_creates_an_orders_v2_order_as_paypal_documents(pp, standin):
    _, h = member(pp)
    pkg = cheapest(pp)
    order, url = buy(pp, h, pkg)
    status, ref, _ = order_of(pp, order["id"])
    assert status == "pending" and url == standin.url + "/checkoutnow?token=" + ref
    [create] = [r for r in standin.requests
                if r["path"] == "/v2/checkout/orders" and
                json.loads(r["body"])["purchase_units"][0]["custom_id"] == str(order["id"])]
    hd, body = create["headers"], json.loads(create["body"])
    assert hd["authorization"].startswith("Bearer A21AA")
    assert hd["content-type"] == "application/json"
    assert re.fullmatch(r"dm-order-%d-[0-9a-f]{24}" % order["id"], hd["paypal-request-id"])
    assert body["intent"] == "CAPTURE"
    [unit] = body["purchase_units"]
    assert unit["amount"] == {"currency_code": "USD",
                              "value": "%d.%02d" % (pkg["price_micros"] // USD,
                                                    pkg["price_micros"] % USD // 10000)}
    assert (unit["custom_id"], unit["reference_id"]) == (str(order["id"]), str(order["id"]))
    ctx = body["payment_source"]["paypal"]["experience_context"]
    assert ctx["return_url"] == "%s/api/plugins/paypal/return?order=%d" % (pp.url, order["id"])
    assert ctx["cancel_url"] == "%s/orders/%d" % (pp.url, order["id"])
    assert (ctx["user_action"], ctx["shipping_preference"]) == ("PAY_NOW", "NO_SHIPPING")
    # the token came from the documented client-credentials call
    [tok] = [r for r in standin.requests if r["path"] == "/v1/oauth2/token"][:1]
    assert tok["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert tok["body"] == "grant_type=client_credentials"


def test_payment_methods_and_the_plugin_refuse_a_missing_setting(new_server):
    st = PayPalStandin(CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID)
    s = new_server(seed=False)
    conf = plugin_conf(st, s.var).replace(
        "DeepMinePluginSet paypal webhook_id %s\n" % WEBHOOK_ID, "")
    s.write_local_conf(conf)
    r = s.configtest()
    out = r.stdout + r.stderr + s.log_text()
    assert r.returncode != 0 and "webhook_id" in out, out
    st.httpd.server_close()


# ---- the buyer's return and the webhooks for the same capture -----------------

def test_return_page_captures_pays_with_ten_levels_then_webhooks_change_nothing(pp, standin):
    chain = [member(pp)]
    for _ in range(10):
        chain.append(member(pp, chain[-1][0]["referral_code"]))
    buyer, h = chain[-1]
    pkg = cheapest(pp)
    order, _ = buy(pp, h, pkg)
    _, ref, _ = order_of(pp, order["id"])
    back = standin.approve(ref)
    assert back.startswith("%s/api/plugins/paypal/return?order=%d&token=%s&PayerID=" %
                           (pp.url, order["id"], ref))
    r = requests.get(back, allow_redirects=False, timeout=20)
    assert r.status_code == 303, r.text
    assert r.headers["Location"] == "%s/orders/%d" % (pp.url, order["id"])
    cap = capture_id(standin, ref)
    assert order_of(pp, order["id"])[0] == "paid"
    assert contracts(pp, order["id"]) == [("active",)]
    assert purchases(pp, order["id"]) == [("purchase", pkg["price_micros"])]
    rows = pp.sql("SELECT depth, beneficiary_id FROM commissions WHERE order_id = %d "
                  "ORDER BY depth" % order["id"])
    assert [d for d, _ in rows] == list(range(1, 11))
    assert [b for _, b in rows] == [u["id"] for u, _ in reversed(chain[:-1])]
    assert events(pp, order["id"]) == [("CAPTURE-%s-COMPLETED" % cap, "paid", "paid")]
    # the capture was made with the order's request id
    [c] = [x for x in standin.requests if x["path"] == "/v2/checkout/orders/%s/capture" % ref]
    assert c["headers"]["paypal-request-id"] == "dm-capture-" + ref
    # PayPal's own webhooks arrive: CHECKOUT.ORDER.APPROVED (the plugin
    # captures again, PayPal answers the same capture) and
    # PAYMENT.CAPTURE.COMPLETED: the same payment, one contract
    answers = standin.deliver()
    assert [a[0] for a in answers] == [200, 200], answers
    assert [json.loads(a[1])["duplicate"] for a in answers] == [True, True]
    assert events(pp, order["id"]) == [("CAPTURE-%s-COMPLETED" % cap, "paid", "paid")]
    assert contracts(pp, order["id"]) == [("active",)]
    assert len(purchases(pp, order["id"])) == 1
    assert_ledger_verifies(pp)


def test_webhooks_alone_pay_when_the_buyer_never_returns(pp, standin):
    _, h = member(pp)
    order, _ = buy(pp, h)
    _, ref, _ = order_of(pp, order["id"])
    standin.approve(ref)
    [approved] = standin.outbox()
    assert approved["event_type"] == "CHECKOUT.ORDER.APPROVED"
    status, body = standin.deliver()[0]
    assert status == 200 and json.loads(body)["outcome"] == "paid", body
    cap = capture_id(standin, ref)
    # the capture's own webhook, queued by the capture, twice
    answers = standin.deliver(times=2)
    assert [(a[0], json.loads(a[1])["duplicate"]) for a in answers] == [(200, True)] * 2
    assert order_of(pp, order["id"])[0] == "paid"
    assert contracts(pp, order["id"]) == [("active",)]
    assert events(pp, order["id"]) == [("CAPTURE-%s-COMPLETED" % cap, "paid", "paid")]
    assert_ledger_verifies(pp)


def test_same_capture_webhook_five_times_and_five_at_once_makes_one_contract(pp, standin):
    _, h = member(pp)
    order, _ = buy(pp, h)
    _, ref, _ = order_of(pp, order["id"])
    standin.approve(ref)
    standin.take_outbox()  # the approval webhook is lost
    r = requests.get(pp.url + "/api/plugins/paypal/return?order=%d&token=%s" %
                     (order["id"], ref), allow_redirects=False, timeout=20)
    assert r.status_code == 303
    [completed] = standin.take_outbox()
    for _ in range(5):
        status, body = webhook(pp, standin, completed)
        assert status == 200 and json.loads(body)["duplicate"] is True, body
    barrier = threading.Barrier(5)

    def one(_):
        barrier.wait()
        return webhook(pp, standin, completed)
    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        answers = list(ex.map(one, range(5)))
    assert [a[0] for a in answers] == [200] * 5, answers
    assert contracts(pp, order["id"]) == [("active",)]
    assert len(purchases(pp, order["id"])) == 1
    assert len(events(pp, order["id"])) == 1
    assert_ledger_verifies(pp)


def test_capture_webhook_before_the_approval_webhook_makes_one_contract(pp, standin):
    _, h = member(pp)
    order, _ = buy(pp, h)
    _, ref, _ = order_of(pp, order["id"])
    standin.approve(ref)
    approved = standin.take_outbox()
    # the capture happens (a return the site's answer to was lost): the
    # completed webhook is delivered first, the approval last
    status, _ = standin.capture(ref)
    assert status == 201
    completed = standin.take_outbox()
    answers = [webhook(pp, standin, e) for e in completed + approved]
    assert [a[0] for a in answers] == [200, 200], answers
    assert [json.loads(a[1])["outcome"] for a in answers] == ["paid", "paid"]
    assert [json.loads(a[1])["duplicate"] for a in answers] == [False, True]
    assert contracts(pp, order["id"]) == [("active",)]
    assert_ledger_verifies(pp)


# ---- refused webhooks ---------------------------------------------------------

def test_forged_tampered_stale_and_foreign_webhooks_are_400_and_change_nothing(pp, standin):
    pp.expect_log(r"DM00650: webhook for plugin paypal refused")
    _, h = member(pp)
    order, _ = buy(pp, h)
    _, ref, _ = order_of(pp, order["id"])
    standin.approve(ref)
    standin.take_outbox()
    standin.capture(ref)
    [completed] = standin.take_outbox()
    body = json.dumps(completed, separators=(",", ":")).encode()
    tampered = body.replace(b'"value":"', b'"value":"1')
    old = now_rfc3339(time.time() - 5 * 86400)
    cases = [
        ("forged signature", {}, {"PAYPAL-TRANSMISSION-SIG": "Zm9yZ2Vk"}, None,
         "verification_status FAILURE"),
        ("tampered body", {}, {}, tampered, "verification_status FAILURE"),
        ("signed for another webhook", {"webhook_id": "OTHERWEBHOOK1"}, {}, None,
         "verification_status FAILURE"),
        ("unknown transmission", {}, {"PAYPAL-TRANSMISSION-ID": "0000-not-sent"}, None,
         "verification_status FAILURE"),
        ("stale transmission", {"transmission_time": old}, {}, None, "s old"),
        ("no signature header", {}, {"PAYPAL-TRANSMISSION-SIG": None}, None,
         "no PAYPAL-TRANSMISSION-SIG header"),
        ("forged return event", {}, {"PAYPAL-TRANSMISSION-SIG": None,
                                     "DeepMine-PayPal-Return": "t=%d,v1=%s" %
                                     (time.time(), "0" * 64)}, None,
         "does not match the body"),
    ]
    for name, sign_kw, headers, sent, why in cases:
        status, answer = standin.send_event(completed, body=sent, headers=headers, **sign_kw)
        assert status == 400, (name, answer)
        err = json.loads(answer)["error"]
        assert err["code"] == "invalid" and why in err["message"], (name, err)
    assert events(pp, order["id"]) == []
    assert order_of(pp, order["id"])[0] == "pending"
    assert contracts(pp, order["id"]) == []
    assert_ledger_verifies(pp)
    # the genuine delivery still pays
    status, answer = webhook(pp, standin, completed)
    assert status == 200 and json.loads(answer)["outcome"] == "paid", answer
    assert_ledger_verifies(pp)


def test_unknown_event_types_are_200_and_change_nothing(pp, standin):
    ev = standin.event("PAYMENT.SALE.COMPLETED", "sale", {"id": "80F85758S3080410K"})
    status, answer = webhook(pp, standin, ev)
    assert status == 200, answer
    assert json.loads(answer) == {"received": True, "duplicate": False, "outcome": "ignored"}
    assert pp.sql("SELECT status, order_ref FROM payment_events WHERE event_id = '%s'" %
                  ev["id"]) == [("ignored", None)]


def test_return_page_without_approval_leaves_the_order_pending(pp, standin):
    _, h = member(pp)
    order, _ = buy(pp, h)
    _, ref, _ = order_of(pp, order["id"])
    r = requests.get(pp.url + "/api/plugins/paypal/return?order=%d&token=%s" %
                     (order["id"], ref), allow_redirects=False, timeout=20)
    assert r.status_code == 303
    assert r.headers["Location"] == "%s/orders/%d" % (pp.url, order["id"])
    assert order_of(pp, order["id"])[0] == "pending"
    r = requests.get(pp.url + "/api/plugins/paypal/return?order=%d" % order["id"], timeout=20)
    assert r.status_code == 400 and "no order token" in r.text
    r = requests.post(pp.url + "/api/plugins/paypal/return?token=X", timeout=20)
    assert r.status_code == 405 and r.headers["Allow"] == "GET"
    r = requests.get(pp.url + "/api/plugins/paypal/elsewhere", timeout=20)
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"


# ---- refunds -----------------------------------------------------------------

def paid_order(s, standin, pkg=None):
    _, h = member(s)
    order, _ = buy(s, h, pkg)
    _, ref, _ = order_of(s, order["id"])
    standin.approve(ref)
    standin.take_outbox()
    r = requests.get(s.url + "/api/plugins/paypal/return?order=%d&token=%s" %
                     (order["id"], ref), allow_redirects=False, timeout=20)
    assert r.status_code == 303
    standin.take_outbox()
    assert order_of(s, order["id"])[0] == "paid"
    return order, ref


def test_partial_then_full_refund_through_paypal(pp, standin):
    pkg = max(pp.packages, key=lambda p: p["price_micros"])
    order, ref = paid_order(pp, standin, pkg)
    cap = capture_id(standin, ref)
    fin = staff_session(pp, "finance")
    path = "/api/admin/orders/%d/refund" % order["id"]
    r = fin.post(pp.url + path, json={"reason": "partial", "amount_micros": 2 * USD}, timeout=20)
    # asked of PayPal; done when its webhook comes back
    assert r.status_code == 202 and r.json()["refunded"] is False, r.text
    [req] = [x for x in standin.requests if x["path"] == "/v2/payments/captures/%s/refund" % cap]
    assert json.loads(req["body"]) == {"amount": {"value": "2.00", "currency_code": "USD"}}
    # the host's idempotency key (refund_ex), sent as PayPal-Request-Id
    assert req["headers"]["paypal-request-id"].startswith("dm-refund-%d-" % order["id"])
    [refunded] = standin.outbox()
    assert refunded["event_type"] == "PAYMENT.CAPTURE.REFUNDED"
    status, answer = standin.deliver()[0]
    assert status == 200 and json.loads(answer)["outcome"] == "partial_refund", answer
    assert order_of(pp, order["id"]) == ("paid", ref, 2 * USD)
    r = fin.post(pp.url + path, json={"reason": "the rest"}, timeout=20)
    assert r.status_code == 202, r.text
    status, answer = standin.deliver()[0]
    assert status == 200 and json.loads(answer)["outcome"] == "refunded", answer
    assert order_of(pp, order["id"]) == ("refunded", ref, pkg["price_micros"])
    assert standin.captures[cap]["status"] == "REFUNDED"
    assert contracts(pp, order["id"]) == [("refunded",)]
    assert [k for k, _ in purchases(pp, order["id"])] == ["purchase", "refund", "refund"]
    assert_ledger_verifies(pp)


def test_dispute_opened_then_won_releases_the_order(pp, standin):
    pp.expect_log(r"DM00700: order \d+ needs staff attention \(dispute_opened\)")
    order, ref = paid_order(pp, standin)
    cap = capture_id(standin, ref)
    did = standin.open_dispute(cap)
    [(status, answer)] = standin.deliver()
    assert status == 200, answer
    # (the API shows a paid order with an open dispute as "disputed")
    assert pp.sql("SELECT status, dispute FROM orders WHERE id = %d" % order["id"]) == \
        [("paid", "open")]
    assert json.loads(answer)["outcome"] == "disputed"
    assert pp.sql("SELECT event_id, status FROM payment_events WHERE plugin = 'paypal' AND "
                  "event_id LIKE 'DISPUTE-%%' AND order_ref = '%d'" % order["id"]) == \
        [("DISPUTE-%s-CREATED" % did, "dispute_opened")]
    standin.resolve_dispute(did, "RESOLVED_SELLER_FAVOUR")
    [(status, answer)] = standin.deliver()
    assert status == 200, answer
    assert pp.sql("SELECT status, dispute FROM orders WHERE id = %d" % order["id"]) == \
        [("paid", "won")]
    assert contracts(pp, order["id"]) == [("active",)]
    assert_ledger_verifies(pp)


def test_dispute_lost_refunds_the_order(pp, standin):
    pp.expect_log(r"DM00700: order \d+ needs staff attention \(dispute_(opened|lost)\)")
    order, ref = paid_order(pp, standin)
    did = standin.open_dispute(capture_id(standin, ref))
    standin.deliver()
    standin.resolve_dispute(did, "RESOLVED_BUYER_FAVOUR")
    [(status, answer)] = standin.deliver()
    assert status == 200, answer
    assert pp.sql("SELECT status, dispute FROM orders WHERE id = %d" % order["id"]) == \
        [("refunded", "lost")]
    assert contracts(pp, order["id"]) == [("refunded",)]
    assert [k for k, _ in purchases(pp, order["id"])] == ["purchase", "refund"]
    assert_ledger_verifies(pp)


def staff_session(s, role):
    from conftest import staff
    return staff(s, role)


# ---- PayPal down, tokens --------------------------------------------------------

@pytest.mark.parametrize("status", [500, 0])
def test_paypal_down_on_checkout_is_503_and_a_clean_order(pp, standin, status):
    pp.expect_log(r"DM00701: order \d+: gateway paypal could not create a checkout")
    _, h = member(pp)
    pkg = cheapest(pp)
    pp.expect_log(r"DM00020: POST /api/orders failed: the payment gateway could not start the "
                  r"payment: PayPal (answered HTTP 500 on|did not answer) POST /v2/checkout/orders")
    standin.fail("/v2/checkout/orders", status=status, count=1)
    before = pp.sql("SELECT COUNT(*) FROM transfers")
    r = pp.request("POST", "/api/orders", headers=h, timeout=20,
                   json={"package_id": pkg["id"], "gateway": "paypal"})
    assert r.status_code == 503, r.text
    assert error_of(r)["code"] == "unavailable"
    [(oid, st, ref)] = pp.sql("SELECT id, status, provider_ref FROM orders WHERE user_id = "
                              "(SELECT id FROM users WHERE email = '%s')" %
                              requests.get(pp.url + "/api/me", headers=h, timeout=10)
                              .json()["user"]["email"])
    assert (st, ref) == ("failed", None)
    assert contracts(pp, oid) == []
    assert pp.sql("SELECT COUNT(*) FROM transfers") == before
    assert_ledger_verifies(pp)


def test_token_is_cached_and_renewed_once_after_a_401(pp, standin):
    # (a new member each time: a member may hold only a few unpaid orders)
    buy(pp, member(pp)[1])  # a token exists in the one child now
    n = standin.token_requests
    for _ in range(3):
        buy(pp, member(pp)[1])
    assert standin.token_requests == n
    standin.revoke_tokens()
    buy(pp, member(pp)[1])
    assert standin.token_requests == n + 1
    buy(pp, member(pp)[1])
    assert standin.token_requests == n + 1


# ---- the janitor (paycore) --------------------------------------------------------

def test_janitor_captures_an_approved_order_whose_webhooks_were_dropped(new_server):
    st = PayPalStandin(CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID).start()
    try:
        s = new_server(clock=int(time.time()))
        s.write_local_conf(FAST + "DeepMinePaymentSettle 600\n" +
                           plugin_conf(st, s.var))
        s.start()
        st.webhook_url = s.url + "/api/webhooks/paypal"
        s.terms = s.get("/api/legal/terms").json()["version"]
        s.packages = s.get("/api/packages").json()["packages"]
        _, h = member(s)
        order, _ = buy(s, h)
        _, ref, _ = order_of(s, order["id"])
        st.approve(ref)
        assert [e["event_type"] for e in st.take_outbox()] == ["CHECKOUT.ORDER.APPROVED"]
        # the buyer never comes back and the webhook is dropped: the janitor
        # asks PayPal (query), finds the order approved, captures and pays
        s.advance(601)
        deadline = time.time() + 30
        while time.time() < deadline and order_of(s, order["id"])[0] != "paid":
            time.sleep(0.1)
        cap = capture_id(st, ref)
        assert order_of(s, order["id"])[0] == "paid"
        assert s.sql("SELECT event_id, source, outcome FROM payment_events WHERE "
                     "order_ref = '%d'" % order["id"]) == \
            [("CAPTURE-%s-COMPLETED" % cap, "janitor", "paid")]
        # the capture's webhook, late: the same payment
        [(status, answer)] = st.deliver()
        assert status == 200 and json.loads(answer)["duplicate"] is True, answer
        assert contracts(s, order["id"]) == [("active",)]
        assert len(purchases(s, order["id"])) == 1
        assert_ledger_verifies(s)
    finally:
        st.stop()
