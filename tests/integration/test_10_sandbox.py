"""The sandbox payment plugin in a real Apache, through ABI 1.2: it refuses
to load unless enabled and warns at every start; its checkout page is served
under /api/plugins/sandbox/; Pay and Decline post a signed webhook to
/api/webhooks/sandbox, and only a verified event is recorded, once."""
import concurrent.futures
import hashlib
import hmac
import json
import os
import re
import signal
import stat
import threading
import time
import uuid

import pytest
import requests

from conftest import SANDBOX_WARNING, Server, assert_clean_log, error_of

MAX_BODY = 65536
LOCAL = ("DeepMinePluginSet sandbox test_endpoints yes\n"
         "DeepMineMaxBody %d\n" % MAX_BODY)


@pytest.fixture(scope="module", params=["event", "prefork"])
def sbx(request):
    """A server whose sandbox has its test endpoint on, once per MPM."""
    s = Server(mpm=request.param, local_conf=LOCAL).start()
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def secret_of(s):
    with open(os.path.join(s.var, "sandbox-webhook.secret")) as f:
        return f.read().rstrip("\n")


def sign(secret, body, t=None):
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    return "t=%d,v1=%s" % (t, mac)


def create_checkout(s, order, amount=12500000, currency="USD"):
    r = s.request("POST", "/api/plugins/sandbox/checkout",
                  json={"order_id": order, "amount_micros": amount, "currency": currency})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["url"].startswith(s.url + "/api/plugins/sandbox/checkout/"), body
    return body["url"], body["provider_ref"]


def events(s, where, *cols):
    cols = cols or ("status", "amount_micros", "currency", "order_ref")
    return s.sql("SELECT %s FROM payment_events WHERE %s ORDER BY id" % (", ".join(cols), where))


def event_body(event_id, order="ord-it", amount=5000000):
    return json.dumps({
        "id": event_id, "type": "checkout.paid", "created": int(time.time()),
        "data": {"object": {"id": "cs_sbx_it", "order_id": order,
                            "amount_micros": amount, "currency": "USD"}}},
        separators=(",", ":")).encode()


def deliver(s, body, sig, **kw):
    headers = {"Content-Type": "application/json", "Sandbox-Signature": sig}
    return s.request("POST", "/api/webhooks/sandbox", data=body, headers=headers, **kw)


# ---- loading ----------------------------------------------------------


def test_sandbox_refuses_to_load_without_enabled_yes(new_server):
    s = new_server(seed=False)
    s.write_local_conf("DeepMinePluginSet sandbox enabled no\n")
    r = s.configtest()
    out = r.stdout + r.stderr + s.log_text()
    assert r.returncode != 0, out
    assert '"sandbox"' in out and "DM00011" in out
    assert "must never run in production" in out
    assert "DeepMinePluginSet sandbox enabled yes" in out


def test_sandbox_warns_at_every_start(new_server):
    s = new_server().start()
    line = re.compile(r"\[deepmine:warn\].*" + SANDBOX_WARNING + ".*never enable this in production")
    first = len(line.findall(s.log_text()))
    assert first >= 1, s.log_text()
    # a graceful restart is a start too
    s.proc.send_signal(signal.SIGUSR1)
    deadline = time.time() + 15
    while time.time() < deadline and len(line.findall(s.log_text())) <= first:
        time.sleep(0.1)
    assert len(line.findall(s.log_text())) > first, s.log_text()


def test_generated_config_gives_the_sandbox_a_private_secret(new_server):
    s = new_server(seed=False)
    path = os.path.join(s.var, "sandbox-webhook.secret")
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    # the user who generates the configuration owns it, the one who starts
    # Apache (root, when root: only the parent reads it), never the user
    # the children run as
    assert st.st_uid == os.geteuid()
    assert len(secret_of(s)) >= 32
    conf = open(s.conf).read()
    assert "DeepMinePluginSet sandbox enabled yes" in conf
    assert 'DeepMinePluginSet sandbox webhook_secret "file:%s"' % path in conf
    assert "DeepMinePluginSet spool dir" in conf


def test_test_endpoint_is_off_by_default(new_server):
    s = new_server().start()
    r = s.request("POST", "/api/plugins/sandbox/checkout",
                  json={"order_id": "x", "amount_micros": 1000000})
    assert r.status_code == 404
    assert error_of(r)["code"] == "not_found"


# ---- the checkout page ------------------------------------------------


def test_checkout_page_renders_with_the_order_escaped(sbx):
    url, ref = create_checkout(sbx, 'ord-<b>"1"</b>&')
    r = requests.get(url, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "form-action 'self'" in csp
    assert "script-src" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "Pay 12.50 USD" in r.text
    assert "ord-&lt;b&gt;&quot;1&quot;&lt;/b&gt;&amp;" in r.text
    assert "<b>" not in r.text
    assert ref in r.text
    token = url.rsplit("/", 1)[1]
    assert 'action="%s/pay"' % token in r.text
    assert 'action="%s/decline"' % token in r.text


def test_tampered_or_unknown_checkout_is_a_400_page(sbx):
    url, _ = create_checkout(sbx, "ord-tamper")
    base, token = url.rsplit("/", 1)
    bad = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    r = requests.get(base + "/" + bad, timeout=10)
    assert r.status_code == 400 and "not one of ours" in r.text
    r = requests.post(base + "/" + bad + "/pay", timeout=10)
    assert r.status_code == 400
    assert events(sbx, "order_ref = 'ord-tamper'") == []


def test_plugin_pages_of_unknown_plugins_are_404(sbx):
    for path in ["/api/plugins/nope/checkout/x", "/api/plugins/spool/x",
                 "/api/plugins/sandbox/nothing/here"]:
        r = sbx.get(path)
        assert r.status_code == 404, (path, r.text)
        assert error_of(r)["code"] == "not_found"


# ---- Pay and Decline ---------------------------------------------------


def no_order_of_ours(s, order):
    """The notice a paid or failed event naming `order` (no order of the
    platform's: these tests drive the plugin alone) logs, expected."""
    s.expect_log(r"DM00703: payment event sandbox/\S+ names no order of ours \(order %s," % order)


def test_pay_records_a_paid_event(sbx):
    no_order_of_ours(sbx, "ord-pay-1")
    url, ref = create_checkout(sbx, "ord-pay-1", 12500000)
    # as a browser's form post would send it
    r = requests.post(url + "/pay", data="", timeout=15, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Origin": sbx.url})
    assert r.status_code == 200, r.text
    assert "Payment accepted" in r.text and "webhook answered HTTP 200" in r.text
    rows = events(sbx, "provider_ref = '%s'" % ref,
                  "plugin", "status", "amount_micros", "currency", "order_ref", "raw_body",
                  "processed_at", "outcome")
    assert len(rows) == 1, rows
    plugin, status, amount, currency, order, raw, processed, outcome = rows[0]
    assert (plugin, status, amount, currency, order) == \
        ("sandbox", "paid", 12500000, "USD", "ord-pay-1")
    assert json.loads(raw)["type"] == "checkout.paid"
    # "ord-pay-1" is no order of ours: recorded, and nothing else (test_11)
    assert processed is not None and outcome == "unknown_order"


def test_decline_records_a_failed_event(sbx):
    no_order_of_ours(sbx, "ord-decline-1")
    url, ref = create_checkout(sbx, "ord-decline-1", 3000000)
    r = requests.post(url + "/decline", timeout=15)
    assert r.status_code == 200, r.text
    assert "Payment declined" in r.text
    assert events(sbx, "provider_ref = '%s'" % ref) == [("failed", 3000000, "USD", "ord-decline-1")]


# ---- webhooks posted by hand --------------------------------------------


def test_replayed_webhook_answers_200_and_changes_nothing(sbx):
    no_order_of_ours(sbx, "ord-it")
    event_id = "evt_it_%s" % uuid.uuid4().hex
    body = event_body(event_id)
    sig = sign(secret_of(sbx), body)
    r = deliver(sbx, body, sig)
    assert r.status_code == 200, r.text
    # the outcome says what was done (here: no order of ours), on a replay
    # what the first delivery did
    assert r.json() == {"received": True, "duplicate": False, "outcome": "unknown_order"}
    for _ in range(5):
        r = deliver(sbx, body, sig)
        assert r.status_code == 200, r.text
        assert r.json() == {"received": True, "duplicate": True, "outcome": "unknown_order"}
    assert events(sbx, "event_id = '%s'" % event_id) == [("paid", 5000000, "USD", "ord-it")]


def test_concurrent_deliveries_make_one_row(sbx):
    no_order_of_ours(sbx, "ord-race")
    event_id = "evt_it_%s" % uuid.uuid4().hex
    body = event_body(event_id, order="ord-race")
    sig = sign(secret_of(sbx), body)
    barrier = threading.Barrier(5)

    def one(_):
        barrier.wait()
        return requests.post(sbx.url + "/api/webhooks/sandbox", data=body, timeout=15,
                             headers={"Content-Type": "application/json",
                                      "Sandbox-Signature": sig, "Connection": "close"})

    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        answers = list(ex.map(one, range(5)))
    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True, True, True]
    assert len(events(sbx, "event_id = '%s'" % event_id)) == 1


def test_unverified_webhooks_are_400_and_not_recorded(sbx):
    logged = len(sbx.log_text())
    secret = secret_of(sbx)
    event_id = "evt_it_%s" % uuid.uuid4().hex
    body = event_body(event_id)
    now = int(time.time())
    cases = [
        ("wrong secret", sign(secret + "x", body), body, "does not match the body"),
        ("stale timestamp", sign(secret, body, now - 301), body, "more than 300 s old"),
        ("tampered body", sign(secret, body), body.replace(b"5000000", b"9000000"),
         "does not match the body"),
        ("no v1", "t=%d" % now, body, "no v1 signature"),
    ]
    for name, sig, sent, why in cases:
        r = deliver(sbx, sent, sig)
        assert r.status_code == 400, (name, r.text)
        err = error_of(r)
        assert err["code"] == "invalid" and why in err["message"], (name, err)
    r = sbx.request("POST", "/api/webhooks/sandbox", data=body,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "no Sandbox-Signature header" in error_of(r)["message"]
    assert events(sbx, "event_id = '%s'" % event_id) == []
    # each refusal is a money alert (a wrong secret refuses every payment)
    assert len(re.findall(r"DM00650: webhook for plugin sandbox refused",
                          sbx.log_text()[logged:])) == 5
    sbx.expect_log(r"DM00650: webhook for plugin sandbox refused: (the Sandbox-Signature does not "
                   r"match the body|the Sandbox-Signature timestamp is more than 300 s old|"
                   r"Sandbox-Signature has no v1 signature|no Sandbox-Signature header)")


def test_webhooks_of_unknown_plugins_or_other_kinds_are_404(sbx):
    body = event_body("evt_it_404")
    for name in ["nope", "spool"]:
        r = sbx.request("POST", "/api/webhooks/%s" % name, data=body,
                        headers={"Sandbox-Signature": sign(secret_of(sbx), body)})
        assert r.status_code == 404, (name, r.text)
        assert error_of(r)["code"] == "not_found"
    r = sbx.get("/api/webhooks/sandbox")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    assert events(sbx, "event_id = 'evt_it_404'") == []


def test_webhook_body_over_max_body_is_413(sbx):
    body = b"{" + b" " * MAX_BODY + b"}"
    r = deliver(sbx, body, sign(secret_of(sbx), body))
    assert r.status_code == 413, r.text
    assert error_of(r)["code"] == "too_large"

    def chunks():  # no Content-Length: cut off while reading
        for _ in range(MAX_BODY // 4096 + 2):
            yield b" " * 4096
    r = sbx.request("POST", "/api/webhooks/sandbox", data=chunks(),
                    headers={"Sandbox-Signature": "t=1,v1=00"})
    assert r.status_code == 413, r.text
    assert error_of(r)["code"] == "too_large"
