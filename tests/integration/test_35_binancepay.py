"""The Binance Pay plugin in a real Apache against its stand-in
(tests/standins/binancepay_standin.py): every API request signed as
Binance documents (the stand-in recomputes the HMAC-SHA512), create order
v3, webhooks RSA-signed with a key pair the stand-in made with openssl and
verified against the certificates endpoint (rotation included), one
contract per payment however often the webhook comes, forged / tampered /
stale webhooks refused with nothing changed, refunds full and partial,
Binance down on checkout → 503. `deepminectl ledger verify` after every
money scenario; the secret key never appears in the log.

Not here: disputes (Binance Pay has no dispute notifications) and the
janitor (the paycore branch's job; the plugin's query is unit-tested in
tests/unit/test_binancepay.c)."""
import concurrent.futures
import json
import os
import sys
import threading
import time
from decimal import Decimal

import pytest
import requests

from conftest import (PLUGINS, ROOT, Server, assert_clean_log, bearer, error_of,
                      register_member, staff)

sys.path.insert(0, os.path.join(ROOT, "tests", "standins"))
from binancepay_standin import (ORDER, REFUND, BinancePayStandin, KeyPair,  # noqa: E402
                                request_signature)

API_KEY = "bpTestApiKey0123456789abcdefghijklmnop"
SECRET = "bpTestSecret-9f8e7d6c5b4a39281706f5e4d3c2b1a0-only-for-tests"
LEVEL1 = [500, 200, 100, 50, 50, 25, 25, 25, 25, 25]
FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit webhook 100000/1m ip\n")


@pytest.fixture(scope="module")
def bp():
    """(server, stand-in): the plugin declared as "binancepay", its secret
    key in a file, its API pointed at the stand-in."""
    s = Server(mpm="event", local_conf="")
    sd = BinancePayStandin(API_KEY, SECRET, webhook_url=s.url + "/api/webhooks/binancepay")
    sd.start()
    secret_file = os.path.join(s.var, "binancepay.secret")
    with open(secret_file, "w") as f:
        f.write(SECRET + "\n")
    os.chmod(secret_file, 0o600)
    s.write_local_conf(FAST + (
        'DeepMinePlugin payment binancepay "%s/payment-binancepay.so"\n'
        "DeepMinePluginSet binancepay api_key %s\n"
        'DeepMinePluginSet binancepay secret_key "file:%s"\n'
        "DeepMinePluginSet binancepay api_url %s\n"
        "DeepMinePluginSet binancepay timeout_ms 2000\n"
        "DeepMinePluginSet binancepay cert_refresh_min_s 0\n") % (
            PLUGINS, API_KEY, secret_file, sd.url))
    s.ctl("capacity", "ensure", "--ghs", "1000000000", "--note", "test_35")
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.staff = {}
    s.packages = s.get("/api/packages").json()["packages"]
    yield s, sd
    s.stop()
    try:
        assert_clean_log(s)
        assert SECRET not in s.log_text()
    finally:
        sd.stop()
        s.cleanup()


def expect_checkout_failure(s):
    """The lines of a checkout Binance refused or did not answer."""
    s.expect_log(r"DM00701: order \d+: gateway binancepay could not create a checkout")
    s.expect_log(r"DM00020: POST /api/orders failed: the payment gateway could not start the "
                 r"payment: Binance Pay")

ACK = {"returnCode": "SUCCESS", "returnMessage": None}


def member(s, referral_code=None):
    extra = {"referral_code": referral_code} if referral_code else {}
    b = register_member(s, "bp", **extra)
    # a gateway that moves money needs a verified e-mail (docs/payments.md)
    s.sql("UPDATE users SET email_verified_at = 1 WHERE id = %d" % b["user"]["id"])
    return b["user"], bearer(b)


def verify(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def cheapest(s):
    return min(s.packages, key=lambda p: p["price_micros"])


def buy(s, headers, pkg=None):
    pkg = pkg or cheapest(s)
    r = requests.post(s.url + "/api/orders", headers=headers, timeout=15,
                      json={"package_id": pkg["id"], "gateway": "binancepay"})
    return r


def bought(s, sd, headers, pkg=None):
    """A pending order through Binance Pay: (order, prepayId)."""
    r = buy(s, headers, pkg)
    assert r.status_code == 201, r.text
    order = r.json()["order"]
    prepay = r.json()["checkout_url"].rsplit("/", 1)[1]
    assert r.json()["checkout_url"] == sd.url + "/checkout/" + prepay
    return order, prepay


def order_row(s, oid):
    [row] = s.sql("SELECT status, provider_ref, refunded_micros FROM orders WHERE id = %d" % oid)
    return row


def contracts_of(s, oid):
    return s.sql("SELECT status FROM contracts WHERE order_id = %d" % oid)


def transfers_of(s, oid):
    return s.sql("SELECT kind, amount_micros FROM transfers WHERE reference = 'order:%d' "
                 "ORDER BY id" % oid)


def events_of(s, prepay):
    return s.sql("SELECT event_id, status, amount_micros, currency, order_ref, outcome "
                 "FROM payment_events WHERE plugin = 'binancepay' AND provider_ref = '%s' "
                 "ORDER BY id" % prepay)


# ---- create order -------------------------------------------------------------


def test_create_order_is_signed_and_shaped_as_binance_documents(bp):
    s, sd = bp
    _, h = member(s)
    pkg = cheapest(s)
    order, prepay = bought(s, sd, h, pkg)
    req = sd.api_requests(ORDER)[-1]
    assert req["verdict"] is None
    hd = req["headers"]
    # the signature, recomputed here over the bytes the stand-in received
    assert hd["binancepay-signature"] == request_signature(
        SECRET, hd["binancepay-timestamp"], hd["binancepay-nonce"], req["body"].encode())
    assert hd["binancepay-certificate-sn"] == API_KEY
    assert len(hd["binancepay-nonce"]) == 32 and hd["binancepay-nonce"].isalpha()
    body = json.loads(req["body"], parse_float=Decimal)
    assert body == {
        "env": {"terminalType": "WEB"},
        "merchantTradeNo": str(order["id"]),
        "orderAmount": Decimal(pkg["price_micros"]) / 1000000,
        "currency": "USDT",
        "description": "Order %d" % order["id"],
        "goodsDetails": [{"goodsType": "02", "goodsCategory": "Z000",
                          "referenceGoodsId": str(order["id"]),
                          "goodsName": "Order %d" % order["id"]}],
        "passThroughInfo": str(order["id"]),
        "returnUrl": body["returnUrl"], "cancelUrl": body["cancelUrl"]}
    assert body["returnUrl"].startswith("http")
    assert order_row(s, order["id"]) == ("pending", prepay, 0)


def test_wrong_secret_is_refused_by_binance_and_the_order_is_clean(bp):
    s, sd = bp
    _, h = member(s)
    expect_checkout_failure(s)
    sd.secret_key, right = "another-secret", sd.secret_key
    try:
        r = buy(s, h)
    finally:
        sd.secret_key = right
    assert r.status_code == 409, r.text
    assert "400002" in error_of(r)["message"]
    assert SECRET not in r.text


# ---- paid --------------------------------------------------------------------


def test_paid_webhook_makes_one_contract_and_ten_levels_of_commissions(bp):
    s, sd = bp
    chain = [member(s)]
    for _ in range(11):
        chain.append(member(s, chain[-1][0]["referral_code"]))
    tip, tip_h = chain[-1]
    pkg = cheapest(s)
    order, prepay = bought(s, sd, tip_h, pkg)
    status, answer = sd.deliver(sd.pay(prepay))
    assert status == 200, answer
    assert order_row(s, order["id"])[0] == "paid"
    assert contracts_of(s, order["id"]) == [("active",)]
    assert transfers_of(s, order["id"])[0] == ("purchase", pkg["price_micros"])
    assert events_of(s, prepay) == [("PAY:%s:PAY_SUCCESS" % prepay, "paid", pkg["price_micros"],
                                     "USD", str(order["id"]), "paid")]
    for depth in range(1, 12):
        _, h = chain[-1 - depth]
        rows = requests.get(s.url + "/api/referrals/commissions", headers=h,
                            timeout=10).json()["commissions"]
        if depth > 10:
            assert rows == []
            continue
        [row] = rows
        assert (row["order_id"], row["depth"], row["amount_micros"]) == \
            (order["id"], depth, pkg["price_micros"] * LEVEL1[depth - 1] // 10000)
    verify(s)


def test_same_webhook_five_times_and_five_at_once_make_one_contract(bp):
    s, sd = bp
    _, h = member(s)
    order, prepay = bought(s, sd, h)
    body = sd.pay(prepay)
    headers = sd.sign(body)
    answers = [sd.deliver(body, headers) for _ in range(5)]
    assert [a[0] for a in answers] == [200] * 5
    # Binance's own answer every time (webhook_ack_body); one event recorded
    assert [json.loads(a[1]) for a in answers] == [ACK] * 5
    assert len(events_of(s, prepay)) == 1
    barrier = threading.Barrier(5)

    def one(_):
        barrier.wait()
        # each a fresh delivery: new timestamp, nonce and signature
        return sd.deliver(body)[0]
    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        assert list(ex.map(one, range(5))) == [200] * 5
    assert contracts_of(s, order["id"]) == [("active",)]
    assert len(transfers_of(s, order["id"])) == 1
    assert len(events_of(s, prepay)) == 1
    verify(s)


def test_webhooks_out_of_order_close_after_paid_changes_nothing(bp):
    s, sd = bp
    _, h = member(s)
    order, prepay = bought(s, sd, h)
    paid = sd.pay(prepay)
    closed = sd.notify(sd.orders[prepay], "PAY", "PAY_CLOSED")
    assert sd.deliver(paid)[0] == 200
    assert sd.deliver(closed)[0] == 200
    assert order_row(s, order["id"])[0] == "paid"
    assert [e[5] for e in events_of(s, prepay)] == ["paid", "already_paid"]
    assert contracts_of(s, order["id"]) == [("active",)]
    verify(s)


def test_closed_order_expires(bp):
    s, sd = bp
    _, h = member(s)
    order, prepay = bought(s, sd, h)
    assert sd.deliver(sd.close(prepay))[0] == 200
    assert order_row(s, order["id"])[0] == "expired"
    assert events_of(s, prepay) == [("PAY:%s:PAY_CLOSED" % prepay, "expired", 0, None,
                                     str(order["id"]), "expired")]
    assert contracts_of(s, order["id"]) == []
    verify(s)


def test_a_rotated_certificate_is_fetched_and_verifies(bp):
    s, sd = bp
    _, h = member(s)
    order, prepay = bought(s, sd, h)
    old = sd.key
    new = sd.rotate()
    assert new.serial != old.serial
    before = len(sd.api_requests("/binancepay/openapi/certificates"))
    assert sd.deliver(sd.pay(prepay))[0] == 200
    assert len(sd.api_requests("/binancepay/openapi/certificates")) == before + 1
    assert order_row(s, order["id"])[0] == "paid"
    verify(s)


# ---- refused webhooks -----------------------------------------------------------


def test_forged_tampered_stale_and_unknown_certificate_webhooks_change_nothing(bp):
    s, sd = bp
    _, h = member(s)
    order, prepay = bought(s, sd, h)
    body = sd.pay(prepay)
    stranger = KeyPair(sd.workdir)
    cases = {
        # signed by another key, naming Binance's certificate
        "forged": (body, sd.sign(body, key=stranger, serial=sd.key.serial)),
        # signed, then the amount changed
        "tampered": (body.replace(b'totalFee\\":', b'totalFee\\":1'), sd.sign(body)),
        # ten minutes old
        "stale": (body, sd.sign(body, ts=int(time.time() * 1000) - 600000)),
        # a certificate Binance does not list
        "unknown": (body, sd.sign(body, key=stranger)),
        "no signature": (body, {k: v for k, v in sd.sign(body).items()
                                if k != "BinancePay-Signature"}),
    }
    for name, (b, headers) in cases.items():
        status, answer = sd.deliver(b, headers)
        assert status == 400, (name, answer)
        assert json.loads(answer)["error"]["code"] == "invalid", (name, answer)
        s.expect_log(r"DM00650: .*binancepay")
    assert events_of(s, prepay) == []
    assert order_row(s, order["id"]) == ("pending", prepay, 0)
    assert contracts_of(s, order["id"]) == []
    verify(s)


def test_webhook_for_an_order_of_another_gateway_credits_nothing(bp):
    s, sd = bp
    _, h = member(s)
    r = requests.post(s.url + "/api/orders", headers=h, timeout=15,
                      json={"package_id": cheapest(s)["id"], "gateway": "sandbox"})
    assert r.status_code == 201, r.text
    sandbox_order = r.json()["order"]
    order, prepay = bought(s, sd, h)
    # a genuine Binance notification whose passThroughInfo names the other order
    sd.orders[prepay]["passThroughInfo"] = str(sandbox_order["id"])
    s.expect_log(r"DM00704: payment event binancepay/PAY:%s:PAY_SUCCESS names order %d of "
                 r"gateway sandbox" % (prepay, sandbox_order["id"]))
    status, answer = sd.deliver(sd.pay(prepay))
    assert status == 200, answer
    assert [e[5] for e in events_of(s, prepay)] == ["wrong_gateway"]
    assert order_row(s, sandbox_order["id"])[0] == "pending"
    assert contracts_of(s, sandbox_order["id"]) == []
    verify(s)


def test_webhook_answer_is_what_binance_expects(bp):
    s, sd = bp
    _, h = member(s)
    _, prepay = bought(s, sd, h)
    body = sd.pay(prepay)
    status, answer = sd.deliver(body)
    assert status == 200
    assert json.loads(answer) == {"returnCode": "SUCCESS", "returnMessage": None}
    # as application/json, and a redelivery gets the same answer
    r = requests.post(sd.webhook_url, data=body, headers=sd.sign(body), timeout=20)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert r.json() == ACK


# ---- refunds -------------------------------------------------------------------


def refund(s, oid, **body):
    return staff(s, "finance").post(s.url + "/api/admin/orders/%d/refund" % oid,
                                    json=dict({"reason": "test"}, **body), timeout=20)


def test_refund_partial_then_full_through_binance(bp):
    s, sd = bp
    _, h = member(s)
    pkg = cheapest(s)
    order, prepay = bought(s, sd, h, pkg)
    assert sd.deliver(sd.pay(prepay))[0] == 200
    part = pkg["price_micros"] // 4
    r = refund(s, order["id"], amount_micros=part, reason="a quarter back")
    # asked at Binance; the refund itself comes with its notification
    assert r.status_code == 202 and r.json()["refunded"] is False, r.text
    req = sd.api_requests(REFUND)[-1]
    assert req["verdict"] is None
    body = json.loads(req["body"], parse_float=Decimal)
    assert (body["prepayId"], body["refundAmount"]) == (prepay, Decimal(part) / 1000000)
    # the 1.0 refund call carries no reason; refund_ex (paycore) does
    assert body.get("refundReason") in (None, "a quarter back")
    assert 1 <= len(body["refundRequestId"]) <= 64 and body["refundRequestId"].isalnum()
    [(status, _)] = sd.flush()
    assert status == 200
    assert order_row(s, order["id"]) == ("paid", prepay, part)
    verify(s)
    r = refund(s, order["id"])
    assert r.status_code == 202, r.text
    assert json.loads(sd.api_requests(REFUND)[-1]["body"], parse_float=Decimal)[
        "refundAmount"] == Decimal(pkg["price_micros"] - part) / 1000000
    [(status, _)] = sd.flush()
    assert status == 200
    assert order_row(s, order["id"]) == ("refunded", prepay, pkg["price_micros"])
    assert contracts_of(s, order["id"]) == [("refunded",)]
    refunds = [e for e in events_of(s, prepay) if e[1] == "refunded"]
    assert [(e[2], e[3]) for e in refunds] == [(part, "USD"), (pkg["price_micros"] - part, "USD")]
    assert all(e[0].startswith("PAY_REFUND:%s:" % prepay) for e in refunds)
    verify(s)


def test_refund_refused_by_binance_changes_nothing(bp):
    s, sd = bp
    _, h = member(s)
    order, prepay = bought(s, sd, h)
    assert sd.deliver(sd.pay(prepay))[0] == 200
    sd.fail_next(REFUND, "fail")
    r = refund(s, order["id"])
    assert r.status_code == 409, r.text
    assert "400000" in error_of(r)["message"]
    s.expect_log(r"DM00705: order %d: gateway binancepay refused the refund" % order["id"])
    assert order_row(s, order["id"]) == ("paid", prepay, 0)
    verify(s)


# ---- Binance down ----------------------------------------------------------------


@pytest.mark.parametrize("how", [500, 429, "garbage", "timeout"])
def test_binance_down_on_checkout_is_503_and_a_clean_order(bp, how):
    s, sd = bp
    uid, h = member(s)
    expect_checkout_failure(s)
    sd.fail_next(ORDER, how)
    r = buy(s, h)
    assert r.status_code == 503, r.text
    assert error_of(r)["code"] == "unavailable"
    [(oid, status, ref)] = s.sql("SELECT id, status, provider_ref FROM orders WHERE user_id = %d"
                                 % uid["id"])
    # today's core fails the order; paycore keeps it pending without a
    # reference until it expires: either way nothing was sold
    assert ref is None and status in ("failed", "pending")
    assert contracts_of(s, oid) == [] and transfers_of(s, oid) == []
    verify(s)
