"""The mailer plugins through the real plugin host, without the mail queue:
tests/plugins/mailer_driver.c loads them as Apache does
(dm_plugins_declare/set/init_all) and sends with dm_mailer_send or
verifies webhooks with dm_plugins_webhook.

- mailer-smtp against a real SMTP server (aiosmtpd) started here: the
  message as Python's email package reads it, stable Message-IDs, one
  connection for many sends, 5xx permanent and 4xx temporary, login,
  STARTTLS policy, refusals at start-up.
- mailer-resend against the Resend stand-in (tests/standins/): the request
  exactly as Resend documents it, idempotency, 429 with retry-after, quota,
  5xx, a wrong key; Svix webhook verification (good and bad signatures,
  stale and future timestamps, other signature versions), with signatures
  computed here independently of the stand-in.
"""
import base64
import email
import email.policy
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from conftest import BUILD, PLUGINS, ROOT, free_port

sys.path.insert(0, os.path.join(ROOT, "tests", "standins"))
from resend_standin import ResendStandin, svix_signature  # noqa: E402

DRIVER = os.path.join(BUILD, "unit", "mailer_driver")
FROM = "DeepMine <noreply@deepmine.example>"
SUBJECT = "Willkommen bei DeepMine \u2013 Ihr Konto ist bereit, Zo\u00eb!"
TO = "Zo\u00eb M\u00fcller <zoe@example.com>"
TEXT = "Hello Zo\u00eb,\nyour account is ready.\n"
HTML = "<p>Hello Zo\u00eb,</p><p>your account is ready.</p>\n"
UNSUB = ("<https://deepmine.example/u/tok42>, "
         "<mailto:unsubscribe+tok42@deepmine.example>")
HEADERS = [["List-Unsubscribe", UNSUB],
           ["List-Unsubscribe-Post", "List-Unsubscribe=One-Click"]]


def drive(plugins, ops):
    """Runs the driver; its JSON answer."""
    r = subprocess.run([DRIVER], input=json.dumps({"plugins": plugins, "ops": ops}),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def results(plugins, ops):
    out = drive(plugins, ops)
    assert out["init_error"] is None, out["init_error"]
    return out["results"]


def mail(key="welcome:42", **kw):
    m = {"to": TO, "subject": SUBJECT, "text": TEXT, "html": HTML, "headers": HEADERS,
         "idempotency_key": key}
    m.update(kw)
    return m


def send(name, m):
    return {"op": "send", "plugin": name, "mail": m}


def body_text(msg, kind):
    return msg.get_body((kind,)).get_content().replace("\r\n", "\n")


# ---------------------------------------------------------------------------
# mailer-smtp against aiosmtpd
# ---------------------------------------------------------------------------

class Recorder:
    """The SMTP server's handler: records messages and connections, and
    answers RCPT or DATA as a test says."""

    def __init__(self):
        self.messages = []
        self.connections = 0
        self.ehlos = 0
        self.rcpt_answers = {}
        self.data_answer = None

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.ehlos += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.rcpt_answers:
            return self.rcpt_answers[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_answer:
            return self.data_answer
        self.messages.append({"mail_from": envelope.mail_from,
                              "rcpt_tos": list(envelope.rcpt_tos),
                              "data": envelope.original_content, "peer": session.peer})
        return "250 2.0.0 Ok: queued"


class CountingSMTP(SMTP):
    def connection_made(self, transport):
        self.event_handler.connections += 1
        super().connection_made(transport)


class CountingController(Controller):
    def factory(self):
        return CountingSMTP(self.handler, **self.SMTP_kwargs)


def start_smtp(**kw):
    handler = Recorder()
    c = CountingController(handler, hostname="127.0.0.1", port=free_port(), **kw)
    c.start()
    # start() makes one connection of its own to see the server is up
    handler.connections = 0
    return c, handler


@pytest.fixture
def smtp():
    c, handler = start_smtp()
    handler.port = c.port
    yield handler
    c.stop()


def smtp_plugin(port, name="smtp", **settings):
    s = {"url": "smtp://127.0.0.1:%d" % port, "from": FROM, "timeout_ms": "10000"}
    s.update(settings)
    return {"kind": "mailer", "name": name, "path": os.path.join(PLUGINS, "mailer-smtp.so"),
            "settings": s}


def parsed(m):
    return email.message_from_bytes(m["data"], policy=email.policy.default)


def test_smtp_delivers_a_message_the_email_package_reads(smtp):
    r = results([smtp_plugin(smtp.port)], [send("smtp", mail())])[0]
    assert r["status"] == "ok", r
    assert len(smtp.messages) == 1
    got = smtp.messages[0]
    assert got["mail_from"] == "noreply@deepmine.example"
    assert got["rcpt_tos"] == ["zoe@example.com"]
    m = parsed(got)
    assert not m.defects and all(not p.defects for p in m.walk())
    assert m["From"].addresses[0].display_name == "DeepMine"
    assert m["From"].addresses[0].addr_spec == "noreply@deepmine.example"
    assert m["To"].addresses[0].display_name == "Zo\u00eb M\u00fcller"
    assert m["To"].addresses[0].addr_spec == "zoe@example.com"
    assert m["Subject"] == SUBJECT
    assert m["Message-ID"] == r["message_id"]
    assert m["List-Unsubscribe"] == UNSUB
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert abs(m["Date"].datetime.timestamp() - time.time()) < 60
    assert m.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in m.iter_parts()] == ["text/plain", "text/html"]
    assert body_text(m, "plain") == TEXT
    assert body_text(m, "html") == HTML
    # the raw message keeps to 78 columns and 7 bits
    assert all(len(line) <= 78 for line in got["data"].split(b"\r\n"))
    assert all(b < 0x80 for b in got["data"])


def test_smtp_message_id_is_stable_per_idempotency_key(smtp):
    key = "welcome:%d" % time.time_ns()
    ops = [send("smtp", mail(key)), send("smtp", mail(key)), send("smtp", mail(key + "x"))]
    first = results([smtp_plugin(smtp.port)], ops)
    again = results([smtp_plugin(smtp.port)], [send("smtp", mail(key))])
    ids = [parsed(m)["Message-ID"] for m in smtp.messages]
    assert [r["status"] for r in first + again] == ["ok"] * 4
    assert ids == [r["message_id"] for r in first + again]
    assert ids[0] == ids[1] == ids[3] != ids[2]
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    assert ids[0] == "<%s@deepmine.example>" % digest


def test_smtp_reuses_one_connection_for_many_sends(smtp):
    ops = [send("smtp", mail("reuse:%d" % i, subject="Message %d" % i)) for i in range(5)]
    out = results([smtp_plugin(smtp.port)], ops)
    assert [r["status"] for r in out] == ["ok"] * 5
    assert [parsed(m)["Subject"] for m in smtp.messages] == ["Message %d" % i for i in range(5)]
    assert smtp.connections == 1
    assert smtp.ehlos == 1
    assert len({m["peer"] for m in smtp.messages}) == 1


def test_smtp_5xx_replies_are_permanent_and_4xx_temporary(smtp):
    smtp.rcpt_answers = {"gone@example.com": "550 5.1.1 <gone@example.com>: no such user",
                         "bad@example.com": "553 5.1.3 Bad recipient address syntax",
                         "later@example.com": "451 4.3.0 Try again later",
                         "full@example.com": "452 4.2.2 Mailbox full",
                         "busy@example.com": "450 4.2.1 Mailbox busy"}
    ops = [send("smtp", mail(to=addr)) for addr in
           ["gone@example.com", "bad@example.com", "later@example.com", "full@example.com",
            "busy@example.com", "zoe@example.com"]]
    out = results([smtp_plugin(smtp.port)], ops)
    assert [r["status"] for r in out] == ["permanent", "permanent", "temporary", "temporary",
                                          "temporary", "ok"]
    assert "550 5.1.1 <gone@example.com>: no such user" in out[0]["message"]
    assert "refused the message for good" in out[0]["message"]
    assert "451 4.3.0 Try again later" in out[2]["message"]
    assert all(r["retry_after"] == 0 for r in out)
    assert all(r["message_id"] is None for r in out[:5])
    # libcurl ends the session (QUIT) after a refusal; the next send connects
    # again and gets through
    assert len(smtp.messages) == 1


def test_smtp_554_at_data_is_permanent(smtp):
    smtp.data_answer = "554 5.7.1 Message rejected as spam"
    r = results([smtp_plugin(smtp.port)], [send("smtp", mail())])[0]
    assert r["status"] == "permanent", r
    assert "554 5.7.1 Message rejected as spam" in r["message"]


def test_smtp_unreachable_server_is_temporary():
    r = results([smtp_plugin(free_port())], [send("smtp", mail())])[0]
    assert r["status"] == "temporary", r
    assert "cannot hand the message to the SMTP server" in r["message"]


def test_smtp_header_injection_never_reaches_the_wire(smtp):
    ops = [send("smtp", mail(subject="Hi\r\nBcc: victim@example.com")),
           send("smtp", mail(to="zoe@example.com\nBcc: victim@example.com")),
           send("smtp", mail(headers=[["List-Unsubscribe", "<https://x>\r\nBcc: v@x.example"]])),
           send("smtp", mail(headers=[["Subject", "second subject"]])),
           send("smtp", mail(to="zo\u00eb@example.com"))]
    out = results([smtp_plugin(smtp.port)], ops)
    assert [r["status"] for r in out] == ["invalid"] * 5
    assert "the subject contains a control character" in out[0]["message"]
    assert "the recipient (to) contains a control character" in out[1]["message"]
    assert "extra header List-Unsubscribe contains a control character" in out[2]["message"]
    assert "extra header Subject is one the mailer sets itself" in out[3]["message"]
    assert "plain ASCII address" in out[4]["message"]
    assert smtp.messages == [] and smtp.connections == 0


def test_smtp_lines_starting_with_a_dot_arrive_intact(smtp):
    text = "first\n.\n..two\n.hidden\nlast\n"
    r = results([smtp_plugin(smtp.port)], [send("smtp", mail(text=text, html=""))])[0]
    assert r["status"] == "ok", r
    m = parsed(smtp.messages[0])
    assert m.get_content_type() == "text/plain"
    assert m.get_content().replace("\r\n", "\n") == text


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_logs_in_and_a_refused_login_is_permanent():
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"mailer" and
              auth_data.password == b"s3cret")
        # handled=False: aiosmtpd answers 235 or 535 itself
        return AuthResult(success=ok, handled=False)

    c, handler = start_smtp(authenticator=authenticator, auth_require_tls=False,
                            auth_required=True)
    try:
        good = smtp_plugin(c.port, name="good", username="mailer", password="s3cret")
        bad = smtp_plugin(c.port, name="bad", username="mailer", password="wrong")
        out = results([good, bad], [send("good", mail()), send("bad", mail())])
    finally:
        c.stop()
    assert out[0]["status"] == "ok", out[0]
    assert out[1]["status"] == "permanent", out[1]
    assert "check username and password" in out[1]["message"]
    assert len(handler.messages) == 1


def test_smtp_starttls_required_without_starttls_is_temporary(smtp):
    r = results([smtp_plugin(smtp.port, starttls="required")], [send("smtp", mail())])[0]
    assert r["status"] == "temporary", r
    assert "SSL" in r["message"] or "STARTTLS" in r["message"], r
    assert smtp.messages == []


@pytest.mark.parametrize("settings,needle", [
    ({"starttls": "maybe"}, "starttls must be no, try or required"),
    ({"url": "http://127.0.0.1:25"}, "is not smtp://host[:port] or smtps://host[:port]"),
    ({"url": "smtp://mail.example.com:587", "starttls": "no", "username": "u",
      "password": "p"}, "a password would cross the network in clear"),
    ({"username": "u"}, "username and password go together"),
    ({"timeout_ms": "0"}, "timeout_ms must be a whole number"),
    ({"rate_per_second": "0"}, "rate_per_second must be a whole number from 1"),
    ({"verify_peer": "maybe"}, "verify_peer must be yes or no"),
    ({"url": ""}, 'required setting "url" is empty'),
])
def test_smtp_settings_are_checked_at_start(settings, needle):
    out = drive([smtp_plugin(2525, **settings)], [])
    assert out["init_error"] is not None and needle in out["init_error"], out


def test_smtp_rate_per_second_reaches_the_host(smtp):
    out = results([smtp_plugin(smtp.port, rate_per_second="5")],
                  [{"op": "setting", "plugin": "smtp", "key": "rate_per_second"}])
    assert out[0]["value"] == "5"
    out = results([smtp_plugin(smtp.port)],
                  [{"op": "setting", "plugin": "smtp", "key": "rate_per_second"}])
    assert out[0]["value"] is None


# ---------------------------------------------------------------------------
# mailer-resend against the Resend stand-in
# ---------------------------------------------------------------------------

API_KEY = "re_test_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
SECRET = "whsec_" + base64.b64encode(b"deepmine-test-webhook-secret-32b").decode()


@pytest.fixture(scope="module")
def standin_server():
    s = ResendStandin(API_KEY, SECRET).start()
    yield s
    s.stop()


@pytest.fixture
def standin(standin_server):
    standin_server.reset()
    return standin_server


def resend_plugin(standin, name="resend", **settings):
    s = {"api_key": API_KEY, "api_url": standin.url, "from": FROM,
         "webhook_secret": SECRET, "timeout_ms": "10000"}
    s.update(settings)
    return {"kind": "mailer", "name": name, "path": os.path.join(PLUGINS, "mailer-resend.so"),
            "settings": {k: v for k, v in s.items() if v is not None}}


def control(standin, path, body):
    r = requests.post(standin.url + path, json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def sent(standin):
    return requests.get(standin.url + "/_standin/requests", timeout=10).json()


def accepted(standin):
    return requests.get(standin.url + "/_standin/emails", timeout=10).json()


def test_resend_request_is_exactly_what_resend_documents(standin):
    r = results([resend_plugin(standin)], [send("resend", mail("welcome:7"))])[0]
    assert r["status"] == "ok", r
    reqs = sent(standin)
    assert len(reqs) == 1
    h = reqs[0]["headers"]
    assert h["authorization"] == "Bearer " + API_KEY
    assert h["content-type"] == "application/json"
    assert h["idempotency-key"] == "welcome:7"
    assert json.loads(reqs[0]["body"]) == {
        "from": FROM, "to": [TO], "subject": SUBJECT, "text": TEXT, "html": HTML,
        "headers": {"List-Unsubscribe": UNSUB,
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}}
    emails = accepted(standin)
    assert len(emails) == 1
    assert r["message_id"] == emails[0]["id"]
    assert r["retry_after"] == 0


def test_resend_one_body_only_is_sent_without_the_other(standin):
    out = results([resend_plugin(standin)],
                  [send("resend", mail("t1", html="", headers=[])),
                   send("resend", mail("t2", text=""))])
    assert [r["status"] for r in out] == ["ok", "ok"]
    bodies = [json.loads(q["body"]) for q in sent(standin)]
    assert "html" not in bodies[0] and bodies[0]["text"] == TEXT and "headers" not in bodies[0]
    assert "text" not in bodies[1] and bodies[1]["html"] == HTML


def test_resend_same_idempotency_key_is_one_email(standin):
    first = results([resend_plugin(standin)], [send("resend", mail("receipt:9"))])[0]
    again = results([resend_plugin(standin)], [send("resend", mail("receipt:9"))])[0]
    other = results([resend_plugin(standin)], [send("resend", mail("receipt:10"))])[0]
    assert first["status"] == again["status"] == other["status"] == "ok"
    assert first["message_id"] == again["message_id"] != other["message_id"]
    assert len(sent(standin)) == 3
    assert [e["idempotency_key"] for e in accepted(standin)] == ["receipt:9", "receipt:10"]


def test_resend_long_or_odd_keys_are_sent_as_their_digest(standin):
    long_key = "k" * 300
    odd_key = "caf\u00e9 key"
    out = results([resend_plugin(standin)],
                  [send("resend", mail(long_key)), send("resend", mail(odd_key))])
    assert [r["status"] for r in out] == ["ok", "ok"]
    keys = [q["headers"]["idempotency-key"] for q in sent(standin)]
    assert keys == ["sha256:" + hashlib.sha256(long_key.encode()).hexdigest(),
                    "sha256:" + hashlib.sha256(odd_key.encode()).hexdigest()]


def test_resend_429_is_temporary_with_its_retry_after(standin):
    control(standin, "/_standin/mode", {"status": 429, "count": 1, "retry_after": 7})
    out = results([resend_plugin(standin)],
                  [send("resend", mail("r1")), send("resend", mail("r1"))])
    assert out[0]["status"] == "temporary", out[0]
    assert out[0]["retry_after"] == 7
    assert "rate limiting (429 rate_limit_exceeded)" in out[0]["message"]
    assert out[1]["status"] == "ok" and out[1]["retry_after"] == 0
    assert len(accepted(standin)) == 1


def test_resend_429_without_retry_after_uses_ratelimit_reset(standin):
    control(standin, "/_standin/mode", {"status": 429, "count": 1})
    r = results([resend_plugin(standin)], [send("resend", mail("r2"))])[0]
    assert r["status"] == "temporary" and r["retry_after"] == 1, r


@pytest.mark.parametrize("name,word", [("daily_quota_exceeded", "daily"),
                                       ("monthly_quota_exceeded", "monthly")])
def test_resend_quota_is_temporary_for_an_hour(standin, name, word):
    control(standin, "/_standin/mode",
            {"status": 429, "count": 1, "name": name, "retry_after": 2})
    r = results([resend_plugin(standin)], [send("resend", mail("q"))])[0]
    assert r["status"] == "temporary", r
    assert r["retry_after"] == 3600
    assert "%s sending quota is used up" % word in r["message"]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_resend_5xx_is_temporary(standin, status):
    control(standin, "/_standin/mode", {"status": status, "count": 1})
    r = results([resend_plugin(standin)], [send("resend", mail("s"))])[0]
    assert r["status"] == "temporary", r
    assert r["retry_after"] == 0
    assert "Resend answered %d" % status in r["message"]


def test_resend_unreachable_is_temporary(standin):
    p = resend_plugin(standin, api_url="http://127.0.0.1:%d" % free_port())
    r = results([p], [send("resend", mail())])[0]
    assert r["status"] == "temporary", r


def test_resend_wrong_or_missing_key_is_permanent_and_says_check_api_key(standin):
    out = results([resend_plugin(standin, api_key="re_wrong_key_0000")],
                  [send("resend", mail())])
    assert out[0]["status"] == "permanent", out[0]
    assert "403 invalid_api_key" in out[0]["message"]
    assert "check api_key" in out[0]["message"]
    assert accepted(standin) == []


def test_resend_401_is_permanent_and_says_check_api_key(standin):
    control(standin, "/_standin/mode", {"status": 401, "count": 1, "name": "missing_api_key"})
    r = results([resend_plugin(standin)], [send("resend", mail())])[0]
    assert r["status"] == "permanent", r
    assert "401 missing_api_key" in r["message"] and "check api_key" in r["message"]


def test_standin_checks_requests_as_resend_does(standin):
    """The stand-in itself: what it refuses, and how it answers."""
    url = standin.url + "/emails"
    good = {"from": FROM, "to": ["zoe@example.com"], "subject": "Hi", "text": "Hi."}
    auth = {"Authorization": "Bearer " + API_KEY, "Idempotency-Key": "self-test"}

    def post(body=good, headers=auth, **kw):
        return requests.post(url, json=body, headers=headers, timeout=10, **kw)

    def refused(r, status, name):
        assert r.status_code == status, r.text
        body = r.json()
        assert set(body) == {"statusCode", "message", "name"}
        assert body["statusCode"] == status and body["name"] == name and body["message"]

    refused(post(headers={"Idempotency-Key": "x"}), 401, "missing_api_key")
    refused(post(headers=dict(auth, Authorization="Bearer re_other")), 403, "invalid_api_key")
    refused(requests.post(url, data=json.dumps(good), timeout=10,
                          headers=dict(auth, **{"Content-Type": "text/plain"})),
            400, "validation_error")
    refused(post({k: v for k, v in good.items() if k != "subject"}), 422,
            "missing_required_field")
    refused(post({k: v for k, v in good.items() if k != "text"}), 422, "validation_error")
    refused(post(dict(good, to=["a%d@example.com" % i for i in range(51)])), 422,
            "validation_error")
    refused(post(headers={"Authorization": auth["Authorization"]}), 400, "validation_error")
    refused(post(headers=dict(auth, **{"Idempotency-Key": "k" * 257})), 400,
            "invalid_idempotency_key")
    first = post()
    assert first.status_code == 200 and set(first.json()) == {"id"}
    assert post().json() == first.json()
    refused(post(dict(good, subject="Other")), 409, "invalid_idempotent_request")
    assert len(accepted(standin)) == 1


@pytest.mark.parametrize("status,name", [(422, "validation_error"), (400, "validation_error"),
                                         (404, "not_found"),
                                         (409, "invalid_idempotent_request")])
def test_resend_client_errors_are_permanent(standin, status, name):
    control(standin, "/_standin/mode", {"status": status, "count": 1, "name": name})
    r = results([resend_plugin(standin)], [send("resend", mail("c"))])[0]
    assert r["status"] == "permanent", r
    assert "%d %s" % (status, name) in r["message"]
    assert "check api_key" not in r["message"]


def test_resend_concurrent_idempotent_request_is_temporary(standin):
    control(standin, "/_standin/mode",
            {"status": 409, "count": 1, "name": "concurrent_idempotent_requests"})
    r = results([resend_plugin(standin)], [send("resend", mail("c"))])[0]
    assert r["status"] == "temporary" and r["retry_after"] == 1, r


def test_resend_refuses_injection_before_sending(standin):
    out = results([resend_plugin(standin)],
                  [send("resend", mail(subject="Hi\r\nBcc: victim@example.com")),
                   send("resend", mail(headers=[["From", "evil@example.com"]]))])
    assert [r["status"] for r in out] == ["invalid", "invalid"]
    assert "the subject contains a control character" in out[0]["message"]
    assert sent(standin) == []


def test_resend_rate_per_second_defaults_to_2_for_the_queue(standin):
    q = [{"op": "setting", "plugin": "resend", "key": "rate_per_second"}]
    assert results([resend_plugin(standin)], q)[0]["value"] == "2"
    assert results([resend_plugin(standin, rate_per_second="10")], q)[0]["value"] == "10"


@pytest.mark.parametrize("settings,needle", [
    ({"api_key": ""}, 'required setting "api_key" is empty'),
    ({"api_url": "http://api.resend.com"}, "api_url must start with https://"),
    ({"webhook_secret": "whsec_not-base64!"}, "webhook_secret must be Resend's signing secret"),
    ({"rate_per_second": "1.5"}, "rate_per_second must be a whole number"),
    ({"from": "nobody"}, "from must be an address"),
])
def test_resend_settings_are_checked_at_start(standin, settings, needle):
    out = drive([resend_plugin(standin, **settings)], [])
    assert out["init_error"] is not None and needle in out["init_error"], out


# ---- webhooks -------------------------------------------------------------

# Signed by hand (HMAC-SHA-256 in Python) with the secret, id, timestamp and
# body below; the same values and signature are Svix's own example in its
# manual-verification documentation.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = "1614265330"
VECTOR_BODY = '{"test": 2432232314}'
VECTOR_SIG = "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def own_svix_signature(secret, msg_id, ts, body):
    """The test's own Svix signature, not the stand-in's code."""
    key = base64.b64decode(secret.split("_", 1)[1])
    mac = hmac.new(key, ("%s.%s.%s" % (msg_id, ts, body)).encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def test_svix_signature_fixed_vector():
    assert own_svix_signature(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG
    assert svix_signature(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG


class Captured(BaseHTTPRequestHandler):
    """Receives the stand-in's webhook: raw body and every header."""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.server.got.append({"headers": [[k, v] for k, v in self.headers.items()],
                                "body": self.rfile.read(n).decode()})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def receiver():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Captured)
    httpd.got = []
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    httpd.url = "http://127.0.0.1:%d/api/webhooks/resend" % httpd.server_address[1]
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def webhook(standin, receiver, **spec):
    """Has the stand-in post a signed event; what the site received."""
    spec.setdefault("type", "email.delivered")
    spec.setdefault("email_id", "4ef9a417-02e9-4d39-ad75-9611e0fcc33c")
    spec.setdefault("to", "zoe@example.com")
    receiver.got.clear()
    out = control(standin, "/_standin/webhook", dict(spec, url=receiver.url))
    assert out["status"] == 200, out
    assert len(receiver.got) == 1
    return receiver.got[0]


def verify(standin, got, **settings):
    op = {"op": "webhook", "plugin": "resend", "body": got["body"], "headers": got["headers"]}
    return results([resend_plugin(standin, **settings)], [op])[0]


def header(got, name):
    return next(v for k, v in got["headers"] if k.lower() == name)


def test_standin_signs_webhooks_exactly_as_svix(standin, receiver):
    got = webhook(standin, receiver)
    sig = header(got, "svix-signature")
    assert sig == "v1," + own_svix_signature(SECRET, header(got, "svix-id"),
                                             header(got, "svix-timestamp"), got["body"])
    assert abs(int(header(got, "svix-timestamp")) - time.time()) < 30
    event = json.loads(got["body"])
    assert event["type"] == "email.delivered"
    assert event["data"]["email_id"] == "4ef9a417-02e9-4d39-ad75-9611e0fcc33c"


@pytest.mark.parametrize("etype,kind", [("email.delivered", "delivered"),
                                        ("email.bounced", "bounced"),
                                        ("email.complained", "complained"),
                                        ("email.opened", "other"),
                                        ("email.delivery_delayed", "other")])
def test_resend_webhook_with_a_good_signature_is_read(standin, receiver, etype, kind):
    got = webhook(standin, receiver, type=etype, to="ann@example.com")
    r = verify(standin, got)
    assert r["status"] == "ok", r
    assert r["type"] == kind
    assert r["event_id"] == header(got, "svix-id")
    assert r["message_id"] == "4ef9a417-02e9-4d39-ad75-9611e0fcc33c"
    assert r["recipient"] == "ann@example.com"


def test_resend_webhook_with_a_bad_signature_is_invalid(standin, receiver):
    got = webhook(standin, receiver)
    altered = dict(got, body=got["body"].replace("zoe@", "eve@"))
    r = verify(standin, altered)
    assert r["status"] == "invalid", r
    assert "signature does not match the body" in r["message"]
    other_secret = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    r = verify(standin, got, webhook_secret=other_secret)
    assert r["status"] == "invalid" and "does not match" in r["message"], r
    forged = webhook(standin, receiver, secret=other_secret)
    assert verify(standin, forged)["status"] == "invalid"


@pytest.mark.parametrize("offset,ok,needle", [(-301, False, "more than 300 s old"),
                                              (+303, False, "more than 300 s in the future"),
                                              (-250, True, None), (+250, True, None)])
def test_resend_webhook_timestamp_tolerance_both_ways(standin, receiver, offset, ok, needle):
    got = webhook(standin, receiver, timestamp=int(time.time()) + offset)
    r = verify(standin, got)
    if ok:
        assert r["status"] == "ok", r
    else:
        assert r["status"] == "invalid", r
        assert needle in r["message"]


def test_resend_webhook_other_signature_versions_are_ignored(standin, receiver):
    junk = ["v2," + base64.b64encode(b"x" * 32).decode(), "v1a,abc", "v0,whatever",
            "v1," + base64.b64encode(b"\0" * 32).decode()]
    got = webhook(standin, receiver, extra_signatures=junk)
    assert header(got, "svix-signature").count(" ") == 4
    assert verify(standin, got)["status"] == "ok"
    # the right signature under another version's name does not count
    sig = header(got, "svix-signature").split(" ")[-1]
    headers = [[k, "v2," + sig[3:] if k.lower() == "svix-signature" else v]
               for k, v in got["headers"]]
    r = verify(standin, dict(got, headers=headers))
    assert r["status"] == "invalid" and "no v1 signature" in r["message"], r


def test_resend_webhook_accepts_standard_webhooks_header_names(standin, receiver):
    got = webhook(standin, receiver)
    headers = [[k.lower().replace("svix-", "webhook-"), v] for k, v in got["headers"]]
    r = verify(standin, dict(got, headers=headers))
    assert r["status"] == "ok", r
    assert r["event_id"] == header(got, "svix-id")


def test_resend_webhook_without_signature_headers_or_secret(standin, receiver):
    got = webhook(standin, receiver)
    bare = [[k, v] for k, v in got["headers"] if k.lower() != "svix-signature"]
    r = verify(standin, dict(got, headers=bare))
    assert r["status"] == "invalid" and "svix-signature" in r["message"], r
    r = verify(standin, got, webhook_secret=None)
    assert r["status"] == "config" and "webhook_secret is not set" in r["message"], r


def test_resend_webhook_fixed_vector_matches_then_is_stale(standin):
    """Svix's example, verified by the plugin: the signature matches (the
    refusal is the 2021 timestamp, not the signature)."""
    op = {"op": "webhook", "plugin": "resend", "body": VECTOR_BODY,
          "headers": [["svix-id", VECTOR_ID], ["svix-timestamp", VECTOR_TS],
                      ["svix-signature", "v1," + VECTOR_SIG]]}
    r = results([resend_plugin(standin, webhook_secret=VECTOR_SECRET)], [op])[0]
    assert r["status"] == "invalid"
    assert "more than 300 s old" in r["message"], r
