"""E-mail over HTTP: templates (list, get, save with validation errors that
name their position, versions, restore, preview; audited; roles), members'
preferences, the RFC 8058 one-click unsubscribe (GET asks and changes
nothing, POST needs no cookie and never redirects), the staff's view of the
queue (filters, resend of a failed message, audited), the suppression list
fed by a mailer's signed delivery webhooks (bad signature 400 and nothing
changed, replay 200 and nothing changed), and the staff health page's mail
numbers, on a server without the cron daemon, so the queue stays as the
tests leave it; the test mailer tests/plugins/mail_recorder.c receives the
webhooks there.

Then delivery end to end, by the cron daemon's mail job: through
mailer-spool (the .eml files, their headers, a marketing message's
List-Unsubscribe and its one-click link), and through mailer-resend against
the Resend stand-in (the Idempotency-Key, and Svix-signed bounce webhooks:
suppressed; forged or stale 400 and nothing changed; replayed 200 no-op;
the next message to the address suppressed). SQL only reads, except where
a test stages a message (a failed one, a marketing one)."""
import base64
import email
import email.policy
import glob
import hashlib
import hmac
import json
import os
import struct
import sys
import time

import pytest
import requests

from conftest import (ROOT, Server, TESTPLUGINS, PLUGINS, assert_clean_log, bearer, error_of,
                      queued_mail, register_member, staff, tag)

sys.path.insert(0, os.path.join(ROOT, "tests", "standins"))
from resend_standin import ResendStandin  # noqa: E402

FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit webhook 100000/1s ip\n"
        "DeepMineRateLimit password-reset 10000/1m ip\n"
        "DeepMineRateLimit verify-email 10000/1m ip\n")
WEBHOOK_SECRET = "whsec-recorder-test"


@pytest.fixture(scope="module")
def srv():
    s = Server(mpm="event")
    s.write_local_conf(
        FAST + "DeepMineCron off\n" +
        'DeepMinePlugin mailer rec "%s/mail_recorder.so"\n' % TESTPLUGINS +
        'DeepMinePluginSet rec log "%s/rec.jsonl"\n' % s.var +
        'DeepMinePluginSet rec webhook_secret "%s"\n' % WEBHOOK_SECRET)
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.staff = {}
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def audit(s, action):
    r = staff(s, "owner").get(s.url + "/api/admin/audit", params={"action": action}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["entries"]


def unsubscribe_token(s, user_id, category="commission_digest"):
    """The token the platform signs (mail_prefs.c), minted from the
    server's secret key: libsodium's crypto_kdf (BLAKE2b, subkey 3,
    context "DeepMine") gives the unsubscribe key, then HMAC-SHA-256."""
    with open(os.path.join(s.var, "secret.key"), "rb") as f:
        master = f.read()
    key = hashlib.blake2b(b"", digest_size=32, key=master,
                          salt=struct.pack("<Q", 3) + b"\0" * 8,
                          person=b"DeepMine" + b"\0" * 8).digest()
    raw = struct.pack(">Q", user_id) + category.encode()
    mac = hmac.new(key, b"deepmine-unsubscribe-v1\0" + raw, hashlib.sha256).digest()
    import base64
    return base64.urlsafe_b64encode(raw + mac).rstrip(b"=").decode()


def prefs(s, h):
    r = requests.get(s.url + "/api/me/email-preferences", headers=h, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["email_preferences"]


# ---- templates ----

def test_templates_list_and_one_with_versions(srv):
    r = staff(srv, "support").get(srv.url + "/api/admin/email-templates", timeout=10)
    assert r.status_code == 200, r.text
    keys = {t["key"]: t for t in r.json()["templates"]}
    for k in ("email_verification", "password_reset", "welcome", "order_paid",
              "contract_started", "contract_expired", "commission_digest",
              "withdrawal_requested", "withdrawal_approved", "withdrawal_rejected",
              "kyc_approved", "kyc_rejected", "staff_alert"):
        assert k in keys, k
    assert keys["commission_digest"]["class"] == "marketing"
    assert keys["commission_digest"]["category"] == "commission_digest"
    assert keys["password_reset"]["class"] == "transactional"
    assert "text" not in keys["welcome"]
    r = staff(srv, "support").get(srv.url + "/api/admin/email-templates/order_paid", timeout=10)
    assert r.status_code == 200
    t = r.json()["template"]
    assert t["locale"] == "en" and t["version"] >= 1
    assert "{{amount_micros}}" in t["text"] and "amount_micros" in t["variables"]
    assert r.json()["versions"][0]["version"] == t["version"]
    assert staff(srv, "support").get(srv.url + "/api/admin/email-templates/nope",
                                     timeout=10).status_code == 404
    assert staff(srv, "support").get(srv.url + "/api/admin/email-templates/welcome",
                                     params={"locale": "fr"}, timeout=10).status_code == 404


def test_template_routes_need_staff_and_the_right_role(srv):
    assert requests.get(srv.url + "/api/admin/email-templates", timeout=10).status_code == 401
    for role in ("finance", "kyc"):
        r = staff(srv, role).get(srv.url + "/api/admin/email-templates", timeout=10)
        assert r.status_code == 403, (role, r.text)
    # support reads and previews, but only the owner changes what every
    # member receives
    r = staff(srv, "support").put(srv.url + "/api/admin/email-templates/welcome",
                                  json={"subject": "x", "text": "x", "html": ""}, timeout=10)
    assert r.status_code == 403
    r = staff(srv, "support").post(srv.url + "/api/admin/email-templates/welcome/restore",
                                   json={"version": 1}, timeout=10)
    assert r.status_code == 403


def test_template_errors_name_the_part_and_the_position(srv):
    owner = staff(srv, "owner")
    url = srv.url + "/api/admin/email-templates/withdrawal_rejected"
    before = owner.get(url, timeout=10).json()["template"]["version"]
    cases = [
        ({"subject": "Withdrawal {{id}}", "text": "Hello,\n  {{amount}} back", "html": ""},
         "text", 'unknown variable "amount" at line 2, column 3 (byte 9)'),
        ({"subject": "Withdrawal {{id}}", "text": "ok", "html": "<p>{{#if reason}}</p>"},
         "html", "{{#if}} is never closed with {{/if}} at line 1, column 4 (byte 3)"),
        ({"subject": "Withdrawal {{id}", "text": "ok", "html": ""},
         "subject", 'a "{{" without its "}}" at line 1, column 12 (byte 11)'),
        ({"subject": "Hi\r\nBcc: victim@example.com", "text": "ok", "html": ""},
         "subject", "line 1, column 3 (byte 2)"),
        ({"subject": "ok", "text": "{{/if}}", "html": ""},
         "text", "{{/if}} without its {{#if}} at line 1, column 1"),
        ({"subject": "ok", "text": "{{ first name }}", "html": ""},
         "text", "is not a tag this language knows at line 1, column 1"),
    ]
    for body, field, where in cases:
        r = owner.put(url, json=body, timeout=10)
        assert r.status_code == 400, (body, r.text)
        err = error_of(r)
        assert err["code"] == "invalid" and err["field"] == field, (body, err)
        assert where in err["message"], (where, err)
    r = owner.put(url, json={"subject": "x", "text": "x"}, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "html"
    r = owner.put(url, data="{", headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400 and error_of(r)["code"] == "bad_json"
    assert owner.get(url, timeout=10).json()["template"]["version"] == before
    assert owner.put(srv.url + "/api/admin/email-templates/nope",
                     json={"subject": "x", "text": "x", "html": ""}, timeout=10).status_code == 404


def test_template_save_versions_restore_and_audit(srv):
    owner = staff(srv, "owner")
    url = srv.url + "/api/admin/email-templates/kyc_rejected"
    first = owner.get(url, timeout=10).json()
    v1 = first["template"]
    body = {"subject": "Identity check: not approved",
            "text": "Sorry.{{#if reason}} {{reason}}{{else}} No reason given.{{/if}}",
            "html": "<p>Sorry.</p>", "version": v1["version"]}
    r = owner.put(url, json=body, timeout=10)
    assert r.status_code == 200, r.text
    saved = r.json()
    assert saved["template"]["version"] == v1["version"] + 1
    assert saved["template"]["subject"] == body["subject"]
    assert saved["template"]["updated_by"] is not None
    assert [v["version"] for v in saved["versions"]][:2] == [v1["version"] + 1, v1["version"]]
    # editing from a stale copy is refused
    r = owner.put(url, json=body, timeout=10)
    assert r.status_code == 409 and error_of(r)["code"] == "conflict"
    entries = audit(srv, "email_template.update")
    assert any(e["target_id"] == "kyc_rejected/en" for e in entries)
    # restore the first version: a new version with the old text
    r = owner.post(url + "/restore", json={"version": v1["version"]}, timeout=10)
    assert r.status_code == 200, r.text
    restored = r.json()["template"]
    assert restored["version"] == v1["version"] + 2
    assert restored["subject"] == v1["subject"] and restored["text"] == v1["text"]
    assert r.json()["versions"][0]["restored_from"] == v1["version"]
    assert any(e["target_id"] == "kyc_rejected/en" for e in audit(srv, "email_template.restore"))
    r = owner.post(url + "/restore", json={"version": 999}, timeout=10)
    assert r.status_code == 404
    r = owner.post(url + "/restore", json={}, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "version"


def test_preview_renders_samples_escapes_and_checks_edits(srv):
    support = staff(srv, "support")
    url = srv.url + "/api/admin/email-templates/order_paid/preview"
    r = support.post(url, json={}, timeout=10)
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["subject"] == "Payment received for order 1042"
    assert "250.00 USD" in p["text"] and "2026-12-25 07:00 UTC" in p["text"]
    assert p["headers"] == {}
    # an unsaved edit, with variables of the staff's choosing
    r = support.post(url, json={
        "subject": "Order {{order_id}} for {{package}}",
        "html": "<p>{{package}}</p>",
        "variables": {"package": "<script>x</script>\r\nBcc: a@b.c", "order_id": 7}},
        timeout=10)
    assert r.status_code == 200, r.text
    p = r.json()
    assert "\r" not in p["subject"] and "\n" not in p["subject"]
    assert p["subject"].startswith("Order 7 for <script>x</script>")
    assert p["html"] == "<p>&lt;script&gt;x&lt;/script&gt;\r\nBcc: a@b.c</p>"
    r = support.post(url, json={"text": "{{nope}}"}, timeout=10)
    assert r.status_code == 400
    err = error_of(r)
    assert err["field"] == "text" and "line 1, column 1" in err["message"]
    r = support.post(url, json={"variables": [1]}, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "variables"
    # marketing: the one-click headers, with a link that does nothing
    r = support.post(srv.url + "/api/admin/email-templates/commission_digest/preview", json={},
                     timeout=10)
    p = r.json()
    assert p["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert p["headers"]["List-Unsubscribe"] == \
        "<%s/api/email/unsubscribe?token=preview>" % srv.url
    assert "12.345678 USD" in p["text"]


# ---- preferences and unsubscribe ----

def test_preferences_get_and_put(srv):
    m = register_member(srv, "pref")
    h = bearer(m)
    assert prefs(srv, h) == {"commission_digest": True}
    r = requests.put(srv.url + "/api/me/email-preferences", headers=h,
                     json={"commission_digest": False}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["email_preferences"] == {"commission_digest": False}
    assert prefs(srv, h) == {"commission_digest": False}
    r = requests.put(srv.url + "/api/me/email-preferences", headers=h,
                     json={"newsletter": False}, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "newsletter"
    r = requests.put(srv.url + "/api/me/email-preferences", headers=h,
                     json={"commission_digest": "no"}, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "commission_digest"
    assert requests.get(srv.url + "/api/me/email-preferences", timeout=10).status_code == 401
    # a cookie session needs its CSRF token to change them
    b = requests.Session()
    b.headers["Origin"] = srv.url
    r = b.post(srv.url + "/api/auth/login",
               json={"email": m["user"]["email"], "password": "Glacier-Pumpkin-Orbit-42"},
               timeout=10)
    assert r.status_code == 200, r.text
    r = b.put(srv.url + "/api/me/email-preferences", json={"commission_digest": True}, timeout=10)
    assert r.status_code == 403 and error_of(r)["code"] == "csrf"
    r = b.put(srv.url + "/api/me/email-preferences", json={"commission_digest": True},
              headers={"X-CSRF-Token": b.cookies.get("dm_csrf")}, timeout=10)
    assert r.status_code == 200 and r.json()["email_preferences"]["commission_digest"] is True


def test_unsubscribe_get_asks_and_changes_nothing(srv):
    m = register_member(srv, "unsub")
    token = unsubscribe_token(srv, m["user"]["id"])
    r = requests.get(srv.url + "/api/email/unsubscribe", params={"token": token}, timeout=10,
                     allow_redirects=False)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert '<form method="post" action="/api/email/unsubscribe?token=%s">' % token in r.text
    assert 'name="List-Unsubscribe" value="One-Click"' in r.text
    assert r.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in r.headers
    assert prefs(srv, bearer(m)) == {"commission_digest": True}
    r = requests.get(srv.url + "/api/email/unsubscribe", params={"token": token[:-5]}, timeout=10)
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("text/html")
    assert prefs(srv, bearer(m)) == {"commission_digest": True}


def test_one_click_post_needs_no_cookie_and_never_redirects(srv):
    m = register_member(srv, "click")
    token = unsubscribe_token(srv, m["user"]["id"])
    url = srv.url + "/api/email/unsubscribe?token=" + token
    # form-urlencoded, as RFC 8058 shows it; no cookie, no CSRF token
    r = requests.post(url, data="List-Unsubscribe=One-Click", allow_redirects=False,
                      headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    assert r.status_code == 200, r.text
    assert "Location" not in r.headers
    assert r.json() == {"unsubscribed": True, "category": "commission_digest"}
    assert prefs(srv, bearer(m)) == {"commission_digest": False}
    # again: still fine (mail systems repeat); multipart/form-data too
    r = requests.post(url, files={"List-Unsubscribe": (None, "One-Click")},
                      allow_redirects=False, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["unsubscribed"] is True
    # a browser posting the page's form gets a page back
    r = requests.post(url, data={"List-Unsubscribe": "One-Click"},
                      headers={"Accept": "text/html,application/xhtml+xml"},
                      allow_redirects=False, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert "Unsubscribed" in r.text
    assert prefs(srv, bearer(m)) == {"commission_digest": False}


def test_one_click_post_refuses_bad_input_and_changes_nothing(srv):
    m = register_member(srv, "bad")
    token = unsubscribe_token(srv, m["user"]["id"])
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for body, tok, field in [("", token, "List-Unsubscribe"),
                             ("List-Unsubscribe=Yes", token, "List-Unsubscribe"),
                             ("List-Unsubscribe=One-Click", token[:-3] + "AAA", "token"),
                             ("List-Unsubscribe=One-Click", "", "token"),
                             ("List-Unsubscribe=One-Click", "%%%", "token")]:
        r = requests.post(srv.url + "/api/email/unsubscribe?token=" + tok, data=body,
                          headers=form, allow_redirects=False, timeout=10)
        assert r.status_code == 400, (body, tok, r.text)
        assert error_of(r)["field"] == field
    # a token for another category is not this one
    r = requests.post(srv.url + "/api/email/unsubscribe?token=" +
                      unsubscribe_token(srv, m["user"]["id"], "Bad-Category"),
                      data="List-Unsubscribe=One-Click", headers=form, timeout=10)
    assert r.status_code == 400
    assert prefs(srv, bearer(m)) == {"commission_digest": True}


# ---- the queue ----

def test_admin_email_list_filters_and_hides_variables(srv):
    m = register_member(srv, "list")
    email = m["user"]["email"]
    support = staff(srv, "support")
    r = support.get(srv.url + "/api/admin/email", params={"recipient": email}, timeout=10)
    assert r.status_code == 200, r.text
    msgs = r.json()["messages"]
    assert len(msgs) == 1 and r.json()["next_cursor"] is None
    msg = msgs[0]
    assert msg["template"] == "email_verification" and msg["status"] == "queued"
    assert msg["attempts"] == 0 and msg["next_attempt_at"]
    assert "variables" not in msg and "token" not in json.dumps(msg)
    r = support.get(srv.url + "/api/admin/email", params={"status": "queued", "limit": 1},
                    timeout=10)
    assert len(r.json()["messages"]) == 1 and r.json()["next_cursor"]
    r = support.get(srv.url + "/api/admin/email", params={"status": "lost"}, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "status"
    assert staff(srv, "finance").get(srv.url + "/api/admin/email", timeout=10).status_code == 403


def test_resend_of_a_failed_message_is_audited(srv):
    m = register_member(srv, "resend")
    email = m["user"]["email"]
    support = staff(srv, "support")
    [(mid,)] = srv.sql("SELECT id FROM mail_queue WHERE recipient = '%s'" % email)
    url = srv.url + "/api/admin/email/%d/resend" % mid
    r = support.post(url, timeout=10)
    assert r.status_code == 409, r.text  # queued, not failed
    srv.sql("UPDATE mail_queue SET status = 'failed', attempts = 10, last_error = 'boom' "
            "WHERE id = %d" % mid)
    r = support.post(url, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["message"]["status"] == "queued" and r.json()["message"]["attempts"] == 0
    assert any(e["target_id"] == str(mid) and e["before"]["last_error"] == "boom" and
               e["after"] == {"status": "queued"} for e in audit(srv, "email.resend"))
    assert support.post(srv.url + "/api/admin/email/999999/resend", timeout=10).status_code == 404
    assert support.post(srv.url + "/api/admin/email/x/resend", timeout=10).status_code == 404


def test_kyc_decisions_and_verification_queue_their_messages(srv):
    m = register_member(srv, "kycmail")
    uid, email = m["user"]["id"], m["user"]["email"]
    r = staff(srv, "kyc").patch(srv.url + "/api/admin/users/%d/kyc" % uid,
                                json={"status": "rejected"}, timeout=10)
    assert r.status_code == 200, r.text
    [variables] = queued_mail(srv, email, "email_verification")
    r = requests.post(srv.url + "/api/auth/verify-email", timeout=10,
                      json={"token": variables["token"]})
    assert r.status_code == 200, r.text
    rows = srv.sql("SELECT template FROM mail_queue WHERE recipient = '%s' ORDER BY id" % email)
    assert [t for (t,) in rows] == ["email_verification", "kyc_rejected", "welcome"]


# ---- delivery reports and the suppression list ----

def webhook(s, event, secret=WEBHOOK_SECRET, signature=None):
    body = json.dumps(event).encode()
    sig = signature if signature is not None else \
        hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return requests.post(s.url + "/api/webhooks/rec", data=body, timeout=10,
                         headers={"Content-Type": "application/json", "X-Test-Signature": sig})


def suppressions(s):
    r = staff(s, "support").get(s.url + "/api/admin/email-suppressions", timeout=10)
    assert r.status_code == 200, r.text
    return {x["email"]: x for x in r.json()["suppressions"]}


def test_bounce_webhook_suppresses_replay_and_forgery_change_nothing(srv):
    addr = "bounce-%s@example.com" % tag()
    event = {"id": "evt-" + tag(), "type": "bounced", "recipient": addr}
    srv.expect_log(r"DM00650: webhook for plugin rec refused: bad signature")
    # forged: 400, nothing recorded
    r = webhook(srv, event, secret="wrong")
    assert r.status_code == 400 and error_of(r)["code"] == "invalid"
    r = webhook(srv, event, signature="")
    assert r.status_code == 400
    assert addr not in suppressions(srv)
    assert srv.sql("SELECT COUNT(*) FROM mail_events WHERE event_id = '%s'" % event["id"]) == [(0,)]
    # genuine: suppressed
    r = webhook(srv, event)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": True, "duplicate": False}
    listed = suppressions(srv)[addr]
    assert listed["reason"] == "bounced" and listed["source"] == "rec"
    # replayed after staff removed the address: 200, and it stays removed
    r = staff(srv, "support").delete(srv.url + "/api/admin/email-suppressions/" + addr,
                                     timeout=10)
    assert r.status_code == 200, r.text
    assert any(e["target_id"] == addr for e in audit(srv, "email_suppression.remove"))
    r = webhook(srv, event)
    assert r.status_code == 200 and r.json()["duplicate"] is True
    assert addr not in suppressions(srv)
    r = staff(srv, "support").delete(srv.url + "/api/admin/email-suppressions/" + addr,
                                     timeout=10)
    assert r.status_code == 404


def test_complaint_and_delivery_reports(srv):
    addr = "spam-%s@Example.com" % tag()
    r = webhook(srv, {"id": "evt-" + tag(), "type": "complained", "recipient": addr})
    assert r.status_code == 200, r.text
    assert suppressions(srv)[addr]["reason"] == "complained"
    # a delivery report for a message we sent marks it
    m = register_member(srv, "deliv")
    [(mid,)] = srv.sql("SELECT id FROM mail_queue WHERE recipient = '%s'" % m["user"]["email"])
    srv.sql("UPDATE mail_queue SET status = 'sent', provider_message_id = 'pm-%d' WHERE id = %d"
            % (mid, mid))
    r = webhook(srv, {"id": "evt-" + tag(), "type": "delivered", "message_id": "pm-%d" % mid})
    assert r.status_code == 200, r.text
    r = staff(srv, "support").get(srv.url + "/api/admin/email",
                                  params={"recipient": m["user"]["email"]}, timeout=10)
    assert r.json()["messages"][0]["delivery"] == "delivered"
    # a bounce that names nobody is refused
    srv.expect_log(r"DM01010: webhook for mailer rec: verified event refused")
    r = webhook(srv, {"id": "evt-" + tag(), "type": "bounced", "message_id": "unknown"})
    assert r.status_code == 400


def test_webhook_routes_for_mailers(srv):
    # the spool mailer takes no webhooks; unknown names are 404 either way
    assert webhook_status(srv, "spool") == 404
    assert webhook_status(srv, "nosuch") == 404
    assert requests.get(srv.url + "/api/webhooks/rec", timeout=10).status_code == 405


def webhook_status(s, name):
    return requests.post(s.url + "/api/webhooks/" + name, data=b"{}", timeout=10).status_code


# ---- health ----

def test_admin_health_shows_mail_delivery(srv):
    r = staff(srv, "finance").get(srv.url + "/api/admin/health", timeout=10)
    assert r.status_code == 200, r.text
    h = r.json()
    assert h["status"] == "ok" and h["database"] == "ok"
    mail = h["mail"]
    for k in ("sent", "failed", "suppressed", "delivered", "bounced", "complained", "queued",
              "sending", "window_hours", "delivery_rate", "oldest_queued_at"):
        assert k in mail, k
    assert mail["window_hours"] == 24 and mail["queued"] >= 1
    assert requests.get(srv.url + "/api/admin/health", timeout=10).status_code == 401


# ---- delivery by the cron daemon ----

def wait_for(cond, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def status_of(s, key):
    rows = s.sql("SELECT status FROM mail_queue WHERE idempotency_key = '%s'" % key)
    return rows[0][0] if rows else None


def stage(s, to, template, variables, key):
    """A message as an event's transaction would queue it."""
    s.sql("INSERT INTO mail_queue (recipient, template, variables, idempotency_key, status, "
          "attempts, next_attempt_at, created_at, updated_at) VALUES ('%s', '%s', '%s', '%s', "
          "'queued', 0, 0, 0, 0)" % (to, template, json.dumps(variables), key))


def eml(s, key):
    """The spool's file for an idempotency key, parsed."""
    path = os.path.join(s.var, "mail", hashlib.sha256(key.encode()).hexdigest() + ".eml")
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return email.message_from_binary_file(f, policy=email.policy.default)


@pytest.fixture(scope="module")
def spool_srv():
    s = Server(mpm="event", local_conf=FAST).start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.staff = {}
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def test_registration_mail_reaches_the_spool_with_its_headers(spool_srv):
    s = spool_srv
    m = register_member(s, "spool")
    addr = m["user"]["email"]
    key = "verify:%d" % s.sql("SELECT id FROM email_tokens WHERE user_id = %d"
                              % m["user"]["id"])[0][0]
    msg = wait_for(lambda: eml(s, key), what="the verification e-mail in the spool")
    assert msg["From"] == "DeepMine <noreply@deepmine.localhost>"
    assert msg["To"] == addr
    assert msg["Subject"] == "Confirm your e-mail address"
    assert msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith(
        "@deepmine.localhost>")
    assert msg["List-Unsubscribe"] is None  # transactional
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "/verify-email?token=" in text and 'href="' in html
    wait_for(lambda: status_of(s, key) == "sent", what="the message recorded as sent")
    [(provider_id, sent_at)] = s.sql("SELECT provider_message_id, sent_at FROM mail_queue WHERE "
                                     "idempotency_key = '%s'" % key)
    assert provider_id == msg["Message-ID"] and sent_at > 0
    r = staff(s, "owner").get(s.url + "/api/admin/health", timeout=10)
    assert r.json()["mail"]["sent"] >= 1 and r.json()["mail"]["delivery_rate"] == 1.0


def test_marketing_mail_carries_one_click_unsubscribe_that_works(spool_srv):
    s = spool_srv
    m = register_member(s, "mkt")
    addr, h = m["user"]["email"], bearer(m)
    key = "commission_digest:%d:2026-11-24" % m["user"]["id"]
    stage(s, addr, "commission_digest",
          {"day": "2026-11-24", "count": 2, "total_micros": 1500000, "currency": "USD"}, key)
    msg = wait_for(lambda: eml(s, key), what="the digest in the spool")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    lu = msg["List-Unsubscribe"]
    url = lu.split("<", 1)[1].split(">", 1)[0]
    assert url.startswith(s.url + "/api/email/unsubscribe?token=")
    assert "<mailto:unsubscribe@deepmine.localhost?subject=unsubscribe%20" in lu
    assert "1.50 USD" in msg.get_body(("plain",)).get_content()
    assert url in msg.get_body(("plain",)).get_content()
    # what a mail provider does with it: POST, no cookie, no redirect
    r = requests.post(url, data="List-Unsubscribe=One-Click", allow_redirects=False,
                      headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    assert r.status_code == 200 and r.json()["unsubscribed"] is True
    assert prefs(s, h) == {"commission_digest": False}
    # the next digest is not sent; transactional mail still is
    key2 = "commission_digest:%d:2026-11-25" % m["user"]["id"]
    stage(s, addr, "commission_digest", {"day": "2026-11-25"}, key2)
    wait_for(lambda: status_of(s, key2) == "suppressed", what="the digest suppressed")
    assert eml(s, key2) is None


API_KEY = "re_test_mailq_0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(b"deepmine-mailq-webhook-secret-32").decode()


@pytest.fixture(scope="module")
def resend_srv():
    standin = ResendStandin(API_KEY, SECRET).start()
    s = Server(mpm="event")
    s.write_local_conf(
        FAST +
        'DeepMinePlugin mailer resend "%s/mailer-resend.so"\n' % PLUGINS +
        "DeepMinePluginSet resend api_key %s\n" % API_KEY +
        "DeepMinePluginSet resend api_url %s\n" % standin.url +
        "DeepMinePluginSet resend webhook_secret %s\n" % SECRET +
        "DeepMinePluginSet resend rate_per_second 50\n"
        "DeepMineMailer resend\n")
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.staff = {}
    s.standin = standin
    yield s
    s.stop()
    standin.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def resend_event(s, **spec):
    spec.setdefault("url", s.url + "/api/webhooks/resend")
    r = requests.post(s.standin.url + "/_standin/webhook", json=spec, timeout=20)
    assert r.status_code == 200, r.text
    return r.json()


def test_resend_delivery_and_svix_bounce_suppresses(resend_srv):
    s = resend_srv
    m = register_member(s, "rs")
    addr = m["user"]["email"]
    key = "verify:%d" % s.sql("SELECT id FROM email_tokens WHERE user_id = %d"
                              % m["user"]["id"])[0][0]
    wait_for(lambda: status_of(s, key) == "sent", what="the verification sent through Resend")
    emails = requests.get(s.standin.url + "/_standin/emails", timeout=10).json()
    sent = [e for e in emails if e["idempotency_key"] == key]
    assert len(sent) == 1
    assert sent[0]["body"]["to"] in (addr, [addr])
    assert sent[0]["body"]["from"] == "DeepMine <noreply@deepmine.localhost>"
    [(email_id,)] = s.sql("SELECT provider_message_id FROM mail_queue WHERE "
                          "idempotency_key = '%s'" % key)
    assert email_id == sent[0]["id"]

    s.expect_log(r"DM00650: webhook for plugin resend refused")
    # forged (another secret) and stale: 400, nothing recorded
    forged = resend_event(s, type="email.bounced", email_id=email_id, to=addr,
                          secret="whsec_" + base64.b64encode(b"x" * 32).decode())
    assert forged["status"] == 400, forged
    stale = resend_event(s, type="email.bounced", email_id=email_id, to=addr,
                         timestamp=int(time.time()) - 3600)
    assert stale["status"] == 400, stale
    assert s.sql("SELECT COUNT(*) FROM email_suppressions") == [(0,)]
    assert s.sql("SELECT COUNT(*) FROM mail_events") == [(0,)]
    # genuine: the address is suppressed, the message marked
    msg_id = "msg_" + tag()
    ok = resend_event(s, type="email.bounced", email_id=email_id, to=addr, msg_id=msg_id)
    assert ok["status"] == 200 and json.loads(ok["response"])["duplicate"] is False, ok
    assert s.sql("SELECT reason, source FROM email_suppressions WHERE email_key = '%s'"
                 % addr.lower()) == [("bounced", "resend")]
    assert s.sql("SELECT delivery FROM mail_queue WHERE idempotency_key = '%s'" % key) == \
        [("bounced",)]
    # Svix redelivers with the same id: acknowledged, nothing changes
    again = resend_event(s, type="email.bounced", email_id=email_id, to=addr, msg_id=msg_id)
    assert again["status"] == 200 and json.loads(again["response"])["duplicate"] is True
    assert s.sql("SELECT COUNT(*) FROM mail_events") == [(1,)]
    # the next message to the address is skipped
    r = requests.post(s.url + "/api/auth/password-reset", json={"email": addr}, timeout=10)
    assert r.status_code == 202, r.text
    [(reset_key,)] = s.sql("SELECT idempotency_key FROM mail_queue WHERE recipient = '%s' AND "
                           "template = 'password_reset'" % addr)
    wait_for(lambda: status_of(s, reset_key) == "suppressed", what="the reset suppressed")
    emails = requests.get(s.standin.url + "/_standin/emails", timeout=10).json()
    assert not [e for e in emails if e["idempotency_key"] == reset_key]


# ---- throughput to a local SMTP server ----

class SmtpSink:
    """aiosmtpd's handler: counts what it accepts."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.original_content)
        return "250 2.0.0 Ok: queued"


@pytest.fixture(scope="module")
def smtp_srv():
    from aiosmtpd.controller import Controller
    from conftest import free_port
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    s = Server(mpm="event")
    s.write_local_conf(
        FAST +
        'DeepMinePlugin mailer smtp "%s/mailer-smtp.so"\n' % PLUGINS +
        "DeepMinePluginSet smtp url smtp://127.0.0.1:%d\n" % controller.port +
        "DeepMineMailer smtp\n")
    s.start()
    s.sink = sink
    yield s
    s.stop()
    controller.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def test_queue_drains_every_message_once_to_local_smtp(smtp_srv):
    # The speed (at least 50 a second) is measured by `make bench`
    # (scripts/bench_mail.py), not asserted here.
    s, n = smtp_srv, 500
    s.sql("INSERT INTO mail_queue (recipient, template, variables, idempotency_key, status, "
          "attempts, next_attempt_at, created_at, updated_at) "
          "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < %d) "
          "SELECT 'bulk' || i || '@example.com', 'kyc_approved', '{}', 'bulk:' || i, 'queued', "
          "0, 0, 0, 0 FROM k" % n)
    wait_for(lambda: s.sql("SELECT COUNT(*) FROM mail_queue WHERE status = 'sent'")[0][0] == n,
             timeout=90, what="%d messages sent" % n)
    assert len(s.sink.messages) == n
    ids = {email.message_from_bytes(m)["Message-ID"] for m in s.sink.messages}
    assert len(ids) == n
