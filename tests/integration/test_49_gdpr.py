"""Members' data (issue 15) through the real Apache, on the fake clock:
GET /api/me/export (everything the platform holds, no secrets, as an
attachment, rate limited), the erasure (POST /api/me/delete -> the e-mailed
single-use link -> the erasure job after DeepMineErasureDelay, default 14
days; cancellable by the member; owners list, process and cancel requests,
audited), what must happen first (money, pending withdrawals, active
contracts: 409, nothing written), a replayed or expired link (400, nothing
changes), KYC documents deleted through the storage plugin unless the AML
retention holds them, `deepminectl ledger verify` after every erasure, and
the owners' daily digest (off by default)."""
import os

import pytest
import requests

from conftest import (Server, assert_clean_log, bearer, error_of, queued_mail, register_member,
                      staff)

T0 = 1795600800  # 2026-11-25T10:00:00Z (as test_17)
DAY = 86400
FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit verify-email 10000/1m ip\n"
        "DeepMineRateLimit erasure 10000/1m member\n"
        "DeepMineCron off\n")
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 40
EXPORT_KEYS = {"format", "generated_at", "profile", "legal_acceptances", "email_preferences",
               "accounts", "orders", "contracts", "statement", "commissions", "withdrawals",
               "kyc", "kyc_documents", "emails", "sessions", "erasure_requests", "referrals"}


@pytest.fixture(scope="module")
def srv():
    s = Server(mpm="event", local_conf=FAST, clock=T0 + 60).start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.staff = {}
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def member(s, **extra):
    body = register_member(s, "g", **extra)
    email = body["user"]["email"]
    [v] = queued_mail(s, email, "email_verification")
    r = requests.post(s.url + "/api/auth/verify-email", json={"token": v["token"]}, timeout=10)
    assert r.status_code == 200, r.text
    return body["user"]["id"], email, bearer(body), body


def adjust(s, uid, amount):
    s.ctl("ledger", "adjust", "--user", str(uid), "--amount", str(amount), "--reason", "test")


def verify_ledger(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stderr


def fresh(s, role):
    """A staff browser logged in now (the fake clock ends older sessions)."""
    s.staff.pop(role, None)
    return staff(s, role)


def run_job(s, name):
    r = fresh(s, "owner").post(s.url + "/api/admin/jobs/%s/run" % name, json={}, timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    return r.json()


def ask(s, h):
    return requests.post(s.url + "/api/me/delete", headers=h, json={}, timeout=10)


def confirm(s, token):
    return requests.post(s.url + "/api/me/delete/confirm", json={"token": token}, timeout=10)


def link_token(s, email, n=-1):
    mails = queued_mail(s, email, "erasure_confirm")
    assert mails, "no erasure_confirm mail"
    v = mails[n]
    assert v["url"].endswith("/confirm-erasure?token=" + v["token"])
    assert v["delay_days"] == 14 and v["expires_in_hours"] == 24
    return v["token"]


def status_of(s, rid):
    return s.sql("SELECT status FROM erasure_requests WHERE id = %d" % rid)[0][0]


# ---- the export ----

def test_export_holds_everything_about_the_member_and_no_secret(srv):
    parent_id, parent_email, ph, pbody = member(srv)
    child_id, child_email, _, _ = member(srv, referral_code=pbody["user"]["referral_code"])
    adjust(srv, parent_id, 2500000)
    r = requests.put(srv.url + "/api/kyc/documents/id_front", data=JPEG, timeout=30,
                     headers=dict(ph, **{"Content-Type": "image/jpeg"}))
    assert r.status_code == 200, r.text
    r = requests.get(srv.url + "/api/me/export", headers=ph, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Disposition"] == \
        'attachment; filename="deepmine-export-%d.json"' % parent_id
    assert r.headers["Content-Type"].startswith("application/json")
    x = r.json()
    assert set(x) == EXPORT_KEYS
    assert x["format"] == "deepmine-export/1"
    assert x["profile"]["id"] == parent_id and x["profile"]["email"] == parent_email
    assert x["profile"]["email_verified_at"] is not None and "password_hash" not in x["profile"]
    assert [a["document"] for a in x["legal_acceptances"]][:1] == ["terms"]
    assert [(a["kind"], a["balance_micros"]) for a in x["accounts"] if a["kind"] == "wallet"] \
        == [("wallet", 2500000)]
    [line] = [l for l in x["statement"] if l["account"] == "wallet"]
    assert line["amount_micros"] == 2500000 and line["currency"] == "USD"
    # referrals as /api/referrals shows them: masked
    [ref] = x["referrals"]
    assert ref["id"] == child_id and ref["level"] == 1
    assert ref["email"] == child_email[0] + "***@example.com"
    # KYC: the list, never the content nor the storage key
    [doc] = x["kyc_documents"]
    assert doc["kind"] == "id_front" and doc["size"] == len(JPEG)
    assert set(doc) == {"id", "kind", "content_type", "size", "sha256", "created_at"}
    assert x["kyc"]["status"] == "none"
    # e-mails: template, time, status; never the token
    assert [m["template"] for m in x["emails"]][:1] == ["email_verification"]
    assert all(set(m) == {"id", "template", "status", "created_at", "sent_at"}
               for m in x["emails"])
    assert len(x["sessions"]) == 1 and x["sessions"][0]["revoked_at"] is None
    text = r.text
    for secret in ("token_hash", "storage_key", "wrapped_key", "sealed", "$argon2"):
        assert secret not in text
    assert x["orders"] == [] and x["withdrawals"] == [] and x["erasure_requests"] == []
    verify_ledger(srv)


def test_export_is_rate_limited_per_member_5_an_hour(srv):
    _, _, h, _ = member(srv)
    for _ in range(5):
        assert requests.get(srv.url + "/api/me/export", headers=h, timeout=30).status_code == 200
    r = requests.get(srv.url + "/api/me/export", headers=h, timeout=30)
    assert r.status_code == 429 and error_of(r)["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) > 0
    # another member is not affected
    _, _, h2, _ = member(srv)
    assert requests.get(srv.url + "/api/me/export", headers=h2, timeout=30).status_code == 200


def test_export_needs_a_member_and_takes_no_parameters(srv):
    r = requests.get(srv.url + "/api/me/export", timeout=10)
    assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
    _, _, h, _ = member(srv)
    r = requests.get(srv.url + "/api/me/export?all=1", headers=h, timeout=10)
    assert r.status_code == 400 and error_of(r)["code"] == "invalid"


# ---- what must happen first ----

def test_erasure_refused_while_money_is_in_the_wallet_nothing_written(srv):
    uid, email, h, _ = member(srv)
    adjust(srv, uid, 5000000)
    r = ask(srv, h)
    assert r.status_code == 409, r.text
    err = error_of(r)
    assert err["code"] == "conflict"
    assert err["message"] == ("the account cannot be erased yet: the wallet holds 5.000000 USD: "
                              "withdraw it first")
    assert srv.sql("SELECT COUNT(*) FROM erasure_requests WHERE user_id = %d" % uid) == [(0,)]
    assert queued_mail(srv, email, "erasure_confirm") == []
    r = requests.get(srv.url + "/api/me/delete", headers=h, timeout=10)
    assert r.json() == {"erasure": None,
                        "blockers": ["the wallet holds 5.000000 USD: withdraw it first"]}


def test_erasure_refusal_lists_pending_withdrawals_and_active_contracts(srv):
    uid, _, h, _ = member(srv)
    srv.sql("INSERT INTO withdrawals (user_id, amount_micros, currency, network, destination, "
            "destination_key, status, requested_at) VALUES (%d, 1000000, 'USD', 'trc20', "
            "'TX', 'trc20:TX', 'pending', %d)" % (uid, srv.now))
    pkg, price = srv.sql("SELECT id, price_micros FROM packages LIMIT 1")[0]
    srv.sql("INSERT INTO orders (user_id, package_id, amount_micros, currency, status, gateway, "
            "created_at, paid_at, updated_at) VALUES (%d, %d, %d, 'USD', 'paid', 'sandbox', "
            "%d, %d, %d)" % (uid, pkg, price, srv.now, srv.now, srv.now))
    [(oid,)] = srv.sql("SELECT id FROM orders WHERE user_id = %d" % uid)
    srv.sql("INSERT INTO contracts (order_id, user_id, package_id, name, hashrate_ghs, "
            "price_micros, daily_yield_micros, duration_days, currency, started_at, expires_at) "
            "VALUES (%d, %d, %d, 'S19', 100, %d, 1000, 30, 'USD', %d, %d)"
            % (oid, uid, pkg, price, srv.now, srv.now + 30 * DAY))
    r = ask(srv, h)
    assert r.status_code == 409
    assert error_of(r)["message"] == ("the account cannot be erased yet: 1 withdrawal(s) "
                                      "pending: wait for the decision; 1 contract(s) still "
                                      "active: wait for the end of their term")
    assert srv.sql("SELECT COUNT(*) FROM erasure_requests WHERE user_id = %d" % uid) == [(0,)]


# ---- the whole flow ----

def test_erasure_confirmed_then_carried_out_after_14_days_keeps_the_ledger(srv):
    uid, email, h, _ = member(srv)
    adjust(srv, uid, 3000000)
    adjust(srv, uid, -3000000)
    r = requests.put(srv.url + "/api/kyc/documents/id_front", data=JPEG, timeout=30,
                     headers=dict(h, **{"Content-Type": "image/jpeg"}))
    assert r.status_code == 200, r.text
    [(key,)] = srv.sql("SELECT storage_key FROM kyc_documents WHERE user_id = %d" % uid)
    obj = os.path.join(srv.var, "storage", key)
    assert os.path.exists(obj)
    transfers_before = srv.sql("SELECT COUNT(*) FROM transfers")
    # a second factor and an address book entry (as enrolment and the book
    # leave them): both go with the account
    srv.sql("INSERT INTO twofa (subject, owner_id, secret_enc, enabled_at) VALUES "
            "('member', %d, 'x', %d)" % (uid, srv.now))
    srv.sql("INSERT INTO twofa_recovery (subject, owner_id, code_hash, created_at) VALUES "
            "('member', %d, 'h-%d', %d)" % (uid, uid, srv.now))
    srv.sql("INSERT INTO withdrawal_addresses (user_id, currency, network, address, "
            "address_key, label, created_at) VALUES (%d, 'USD', 'trc20', "
            "'TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t', 'tr7n', 'mine', %d)" % (uid, srv.now))
    r = ask(srv, h)
    assert r.status_code == 202, r.text
    x = r.json()["erasure"]
    assert x["status"] == "unconfirmed" and x["user_id"] == uid and x["due_at"] is None
    rid = x["id"]
    token = link_token(srv, email)
    r = confirm(srv, token)
    assert r.status_code == 200, r.text
    x = r.json()["erasure"]
    assert x["status"] == "scheduled" and x["email"] == ""
    confirmed = srv.now
    [(due,)] = srv.sql("SELECT due_at FROM erasure_requests WHERE id = %d" % rid)
    assert due == confirmed + 14 * DAY
    # replayed: nothing
    r = confirm(srv, token)
    assert r.status_code == 400 and error_of(r)["field"] == "token"
    assert srv.sql("SELECT due_at, status FROM erasure_requests WHERE id = %d" % rid) == \
        [(due, "scheduled")]
    # a second request while scheduled: 409
    r = ask(srv, h)
    assert r.status_code == 409 and "already scheduled" in error_of(r)["message"]
    # before the grace period ends: nothing happens
    srv.set_clock(due - 60)
    run_job(srv, "erasure")
    assert status_of(srv, rid) == "scheduled"
    assert srv.sql("SELECT email FROM users WHERE id = %d" % uid) == [(email,)]
    # after it: erased
    srv.set_clock(due + 3600)
    job = run_job(srv, "erasure")
    assert status_of(srv, rid) == "done"
    row = srv.sql("SELECT email, email_key, name, password_hash, status, marketing_opt_in "
                  "FROM users WHERE id = %d" % uid)
    tomb = "erased-%d@invalid" % uid
    assert row == [(tomb, tomb, None, "!erased", "suspended", 0)]
    assert srv.sql("SELECT COUNT(*) FROM refresh_tokens WHERE user_id = %d" % uid) == [(0,)]
    assert srv.sql("SELECT COUNT(*) FROM twofa WHERE owner_id = %d AND subject = 'member'"
                   % uid) == [(0,)]
    assert srv.sql("SELECT COUNT(*) FROM twofa_recovery WHERE owner_id = %d" % uid) == [(0,)]
    assert srv.sql("SELECT address, label FROM withdrawal_addresses WHERE user_id = %d"
                   % uid) == [("erased", None)]
    assert srv.sql("SELECT COUNT(*) FROM email_tokens WHERE user_id = %d AND used_at IS NULL"
                   % uid) == [(0,)]
    assert srv.sql("SELECT COUNT(*) FROM mail_queue WHERE recipient = '%s'" % email) == [(0,)]
    assert srv.sql("SELECT DISTINCT variables FROM mail_queue WHERE recipient = '%s'"
                   % tomb) == [("{}",)]
    assert srv.sql("SELECT DISTINCT ip FROM legal_acceptances WHERE user_id = %d" % uid) == \
        [("",)]
    # KYC documents (not held by the AML retention): rows and objects gone
    assert srv.sql("SELECT COUNT(*) FROM kyc_documents WHERE user_id = %d" % uid) == [(0,)]
    assert not os.path.exists(obj)
    # money history stays and verifies
    assert srv.sql("SELECT COUNT(*) FROM transfers") == transfers_before
    verify_ledger(srv)
    # the member can no longer log in; the old access token is dead
    r = requests.post(srv.url + "/api/auth/login", json={"email": email, "password": "x" * 12},
                      timeout=10)
    assert r.status_code == 401
    assert requests.get(srv.url + "/api/me", headers=h, timeout=10).status_code == 401
    # audited, by the job
    r = fresh(srv, "owner").get(srv.url + "/api/admin/audit", timeout=10,
                                params={"action": "member.erased", "target_type": "user",
                                        "target_id": str(uid)})
    [entry] = r.json()["entries"]
    assert entry["after"] == {"request": rid, "by": "job:erasure", "kyc_retained": False,
                              "kyc_documents_deleted": 1}
    assert job["status"] == "ok"


def test_expired_link_does_nothing(srv):
    uid, email, h, _ = member(srv)
    rid = ask(srv, h).json()["erasure"]["id"]
    token = link_token(srv, email)
    srv.advance(24 * 3600 + 1)
    r = confirm(srv, token)
    assert r.status_code == 400 and error_of(r)["field"] == "token"
    assert srv.sql("SELECT status, confirmed_at, due_at FROM erasure_requests WHERE id = %d"
                   % rid) == [("unconfirmed", None, None)]


def test_a_new_request_replaces_the_old_link(srv):
    uid, email, h, _ = member(srv)
    first = ask(srv, h).json()["erasure"]["id"]
    old = link_token(srv, email)
    second = ask(srv, h).json()["erasure"]["id"]
    assert status_of(srv, first) == "cancelled" and status_of(srv, second) == "unconfirmed"
    assert confirm(srv, old).status_code == 400
    assert confirm(srv, link_token(srv, email)).status_code == 200
    assert status_of(srv, second) == "scheduled"


def test_wrong_or_missing_token_is_400(srv):
    r = confirm(srv, "not-a-token")
    assert r.status_code == 400 and error_of(r)["field"] == "token"
    r = requests.post(srv.url + "/api/me/delete/confirm", json={}, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "token"
    r = requests.post(srv.url + "/api/me/delete/confirm", data="{", timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_member_cancels_and_the_job_leaves_the_account(srv):
    uid, email, h, _ = member(srv)
    rid = ask(srv, h).json()["erasure"]["id"]
    assert confirm(srv, link_token(srv, email)).status_code == 200
    r = requests.delete(srv.url + "/api/me/delete", headers=h, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["erasure"]["status"] == "cancelled"
    assert r.json()["erasure"]["finished_by"] == "member"
    r = requests.delete(srv.url + "/api/me/delete", headers=h, timeout=10)
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    srv.advance(15 * DAY)
    run_job(srv, "erasure")
    assert status_of(srv, rid) == "cancelled"
    assert srv.sql("SELECT email FROM users WHERE id = %d" % uid) == [(email,)]


def test_erasure_request_takes_no_fields(srv):
    _, _, h, _ = member(srv)
    r = requests.post(srv.url + "/api/me/delete", headers=h, json={"now": True}, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "now"


def test_money_arriving_during_the_grace_period_makes_the_job_wait(srv):
    uid, email, h, _ = member(srv)
    rid = ask(srv, h).json()["erasure"]["id"]
    assert confirm(srv, link_token(srv, email)).status_code == 200
    adjust(srv, uid, 1000000)
    srv.advance(15 * DAY)
    srv.expect_log(r"DM01682: erasure request %d waits: the account cannot be erased yet: "
                   r"the wallet holds 1\.000000 USD" % rid)
    run_job(srv, "erasure")
    assert status_of(srv, rid) == "scheduled"
    assert srv.sql("SELECT email FROM users WHERE id = %d" % uid) == [(email,)]
    verify_ledger(srv)


# ---- AML retention ----

def test_approved_identity_documents_stay_for_the_retention_job(srv):
    uid, email, h, _ = member(srv)
    r = requests.put(srv.url + "/api/kyc/documents/id_front", data=JPEG, timeout=30,
                     headers=dict(h, **{"Content-Type": "image/jpeg"}))
    assert r.status_code == 200
    srv.sql("UPDATE users SET kyc_status = 'approved' WHERE id = %d" % uid)
    srv.sql("INSERT OR IGNORE INTO kyc_cases (user_id, legal_name, updated_at) "
            "VALUES (%d, 'Ada', %d)" % (uid, srv.now))
    rid = ask(srv, h).json()["erasure"]["id"]
    r = fresh(srv, "owner").post(srv.url + "/api/admin/erasures/%d/process" % rid, json={},
                                 timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["erasure"]["status"] == "done"
    assert srv.sql("SELECT COUNT(*) FROM kyc_documents WHERE user_id = %d" % uid) == [(1,)]
    assert srv.sql("SELECT closed_at FROM kyc_cases WHERE user_id = %d" % uid) == [(srv.now,)]
    verify_ledger(srv)


# ---- staff ----

def test_owner_lists_processes_and_cancels_requests_audited(srv):
    uid, email, h, _ = member(srv)
    rid = ask(srv, h).json()["erasure"]["id"]
    owner = fresh(srv, "owner")
    r = owner.get(srv.url + "/api/admin/erasures", params={"status": "unconfirmed"}, timeout=10)
    assert r.status_code == 200, r.text
    assert rid in [x["id"] for x in r.json()["erasures"]]
    [row] = [x for x in r.json()["erasures"] if x["id"] == rid]
    assert row["email"] == email and row["user_id"] == uid
    r = owner.get(srv.url + "/api/admin/erasures", params={"status": "nope"}, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "status"
    # other roles: 403
    for role in ("finance", "support", "kyc"):
        r = fresh(srv, role).get(srv.url + "/api/admin/erasures", timeout=10)
        assert r.status_code == 403, role
        r = fresh(srv, role).post(srv.url + "/api/admin/erasures/%d/process" % rid, json={},
                                  timeout=10)
        assert r.status_code == 403, role
    assert status_of(srv, rid) == "unconfirmed"
    r = owner.post(srv.url + "/api/admin/erasures/%d/cancel" % rid, json={}, timeout=10)
    assert r.status_code == 200 and r.json()["erasure"]["status"] == "cancelled"
    r = owner.post(srv.url + "/api/admin/erasures/%d/cancel" % rid, json={}, timeout=10)
    assert r.status_code == 409 and error_of(r)["code"] == "conflict"
    r = owner.post(srv.url + "/api/admin/erasures/%d/process" % rid, json={}, timeout=10)
    assert r.status_code == 409
    r = owner.post(srv.url + "/api/admin/erasures/999999/process", json={}, timeout=10)
    assert r.status_code == 404
    r = owner.get(srv.url + "/api/admin/audit", timeout=10,
                  params={"action": "erasure.cancel", "target_type": "erasure",
                          "target_id": str(rid)})
    [entry] = r.json()["entries"]
    assert entry["after"]["status"] == "cancelled"
    assert srv.sql("SELECT email FROM users WHERE id = %d" % uid) == [(email,)]


# ---- the staff digest ----

def test_staff_digest_is_off_by_default(srv):
    run_job(srv, "staff-digest")
    assert srv.sql("SELECT COUNT(*) FROM mail_queue WHERE template = 'staff_digest'") == [(0,)]


def test_staff_digest_mails_owners_the_day_before(new_server):
    s = new_server(local_conf=FAST + "DeepMineStaffDigest on\n", clock=T0 + 60).start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.staff = {}
    staff(s, "finance")
    member(s)
    member(s)
    s.advance(DAY)
    owner = fresh(s, "owner")
    r = owner.post(s.url + "/api/admin/jobs/staff-digest/run", json={}, timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    rows = s.sql("SELECT recipient, variables FROM mail_queue WHERE template = 'staff_digest'")
    assert len(rows) == 1 and rows[0][0].startswith("owner-")
    import json
    v = json.loads(rows[0][1])
    assert v["day"] == "2026-11-25" and v["signups"] == 2 and v["revenue_micros"] == 0
    assert v["withdrawals_waiting"] == 0 and v["jobs_dead"] == 0
