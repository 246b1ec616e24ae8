"""Two-factor sign-in (RFC 6238 TOTP), sessions and the withdrawal
protections, through the real Apache on the fake clock (docs/security.md):
enrolment with codes computed here (Python's hmac, checked against the
RFC 6238 SHA-1 vectors), the login challenge, replayed and malformed
codes, recovery codes that work once, staff owners forced to enrol, a
password change that ends every other session, the list of logins, the
address book and its delay, withdrawals that need a code, and what staff
see per withdrawal. `deepminectl ledger verify` after every money
scenario."""
import base64
import calendar
import hashlib
import hmac
import json
import re
import struct
import time
import urllib.parse

import pytest
import requests

from conftest import (PASSWORD, Server, assert_clean_log, bearer, book_address, error_of,
                      queued_mail, register_member, staff, tag)

# An RFC 6238 test-vector time (2033-05-18T03:33:20Z): the platform starts there.
T0 = 2000000000
DELAY = 600  # DeepMineWithdrawalAddressDelay, shorter than an access token's 15 minutes
FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit login-2fa 10000/1m ip\n"
        "DeepMineRateLimit login-2fa-member 10000/1m member\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit password-reset 10000/1m ip\n"
        "DeepMineRateLimit verify-email 10000/1m ip\n"
        "DeepMineRateLimit confirm-address 10000/1m ip\n"
        "DeepMineWithdrawalLimits 1000 50000000 80000000\n"
        "DeepMineWithdrawalAddressDelay %d\n"
        "DeepMineStaff2FA required\n" % DELAY)
TRX = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
ETH = "0x52908400098527886E0F7030069857D2E4169EE7"
TRX2 = "TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7"  # used by one test only


def totp(secret_b32, t, digits=6):
    """RFC 6238 (HMAC-SHA1, 30 s steps) computed here, independently of the
    module."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", t // 30), hashlib.sha1).digest()
    off = mac[19] & 15
    value = (struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 10 ** digits
    return "%0*d" % (digits, value)


@pytest.fixture(scope="module")
def srv():
    s = Server(mpm="event", local_conf=FAST, clock=T0).start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.staff = {}
    s.address_delay = DELAY
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def login(s, email, password=PASSWORD):
    r = requests.post(s.url + "/api/auth/login", timeout=10,
                      json={"email": email, "password": password, "return_tokens": True})
    assert r.status_code == 200, r.text
    return r.json()


def login_2fa(s, challenge, code):
    return requests.post(s.url + "/api/auth/login/2fa", timeout=10,
                         json={"challenge": challenge, "code": code, "return_tokens": True})


def step_on(s):
    """Moves the fake clock to the start of the next 30-second step, so a
    new code is current."""
    s.set_clock(s.now - s.now % 30 + 30)


def enrol(s, h, prefix="/api/me"):
    """Enrols the caller (member Bearer headers, or a staff session when h
    is a requests.Session): (secret, recovery codes)."""
    post = h.post if isinstance(h, requests.Session) else \
        (lambda url, **kw: requests.post(url, headers=h, **kw))
    r = post(s.url + prefix + "/2fa/setup", timeout=10)
    assert r.status_code == 200, r.text
    secret = r.json()["secret"]
    step_on(s)
    r = post(s.url + prefix + "/2fa/enable", json={"code": totp(secret, s.now)}, timeout=10)
    assert r.status_code == 200, r.text
    return secret, r.json()["recovery_codes"]


def verified_member(s, funds=0):
    """A member with a verified e-mail, approved KYC and `funds`: (user,
    Bearer headers)."""
    body = register_member(s, "tf")
    user, h = body["user"], bearer(body)
    [variables] = queued_mail(s, user["email"], "email_verification")
    r = requests.post(s.url + "/api/auth/verify-email", timeout=10,
                      json={"token": variables["token"]})
    assert r.status_code == 200, r.text
    r = staff(s, "kyc").patch(s.url + "/api/admin/users/%d/kyc" % user["id"],
                              json={"status": "approved"}, timeout=10)
    assert r.status_code == 200, r.text
    if funds:
        s.ctl("ledger", "adjust", "--user", str(user["id"]), "--amount", str(funds),
              "--reason", "test funds")
    return user, h


def fresh_headers(s, user):
    """New Bearer headers (the fake clock may have outrun the old ones)."""
    return bearer(login(s, user["email"]))


def balance(s, h):
    r = requests.get(s.url + "/api/me", headers=h, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["user"]["balance_micros"]


def withdraw(s, h, amount, **extra):
    body = {"amount_micros": amount}
    body.update(extra)
    return requests.post(s.url + "/api/withdrawals", headers=h, json=body, timeout=10)


def verify_ledger(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def mails(s, template, email):
    return s.sql("SELECT COUNT(*) FROM mail_queue WHERE template = '%s' AND recipient = '%s'"
                 % (template, email))[0][0]


# ---- the arithmetic the tests rely on ----

def test_the_tests_totp_matches_the_rfc_6238_sha1_vectors():
    secret = base64.b32encode(b"12345678901234567890").decode()
    for t, want in [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
                    (1234567890, "89005924"), (2000000000, "69279037"),
                    (20000000000, "65353130")]:
        assert totp(secret, t, 8) == want, t


# ---- enrolment and login ----

def test_enrol_then_login_answers_a_challenge_a_code_completes(srv):
    body = register_member(srv, "tf")
    user, h = body["user"], bearer(body)
    r = requests.post(srv.url + "/api/me/2fa/enable", headers=h, json={"code": "123456"},
                      timeout=10)
    assert r.status_code == 409 and error_of(r)["code"] == "conflict"  # no setup yet
    r = requests.post(srv.url + "/api/me/2fa/setup", headers=h, timeout=10)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    setup = r.json()
    secret = setup["secret"]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)  # 160 bits
    uri = urllib.parse.urlparse(setup["otpauth_uri"])
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert urllib.parse.unquote(uri.path) == "/DeepMine:" + user["email"]
    assert urllib.parse.parse_qs(uri.query) == {
        "secret": [secret], "issuer": ["DeepMine"], "algorithm": ["SHA1"], "digits": ["6"],
        "period": ["30"]}
    # the secret is stored sealed, never in the clear
    [(pending,)] = srv.sql("SELECT pending_enc FROM twofa WHERE subject = 'member' AND "
                           "owner_id = %d" % user["id"])
    assert secret not in pending
    step_on(srv)
    code = totp(secret, srv.now)
    wrong = "%06d" % ((int(code) + 1) % 1000000)
    for bad in [wrong, code[:5], code + "1"]:
        r = requests.post(srv.url + "/api/me/2fa/enable", headers=h, json={"code": bad},
                          timeout=10)
        assert r.status_code == 400 and error_of(r)["code"] == "invalid_code", bad
        assert error_of(r)["field"] == "code"
    r = requests.post(srv.url + "/api/me/2fa/enable", headers=h, json={"code": code}, timeout=10)
    assert r.status_code == 200, r.text
    codes = r.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(re.fullmatch(r"[a-z2-9]{5}-[a-z2-9]{5}", c) for c in codes)
    # stored hashed only
    stored = [x for (x,) in srv.sql("SELECT code_hash FROM twofa_recovery WHERE owner_id = %d "
                                    "AND subject = 'member'" % user["id"])]
    assert len(stored) == 10 and not set(stored) & {c.replace("-", "") for c in codes}
    state = requests.get(srv.url + "/api/me/2fa", headers=h, timeout=10).json()["two_factor"]
    assert state["enabled"] is True and state["recovery_codes_left"] == 10
    assert mails(srv, "twofa_enabled", user["email"]) == 1
    assert mails(srv, "withdrawals_locked", user["email"]) == 1

    # the password alone gives a challenge, not a session
    r = requests.post(srv.url + "/api/auth/login", timeout=10,
                      json={"email": user["email"], "password": PASSWORD})
    assert r.status_code == 200, r.text
    ans = r.json()
    assert ans["two_factor_required"] is True and ans["expires_in"] == 300
    assert set(ans) == {"two_factor_required", "challenge", "expires_in"}
    assert "dm_session" not in r.headers.get("Set-Cookie", "")
    challenge = ans["challenge"]
    # the code of this step was spent by the enrolment: a replay
    r = login_2fa(srv, challenge, code)
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_code"
    # 5 and 7 digits are refused as such
    for bad in ["12345", "1234567"]:
        r = login_2fa(srv, challenge, bad)
        assert r.status_code == 400 and error_of(r)["code"] == "invalid_code"
        assert "exactly 6 digits" in error_of(r)["message"]
    step_on(srv)
    now_code = totp(secret, srv.now)
    r = login_2fa(srv, challenge, now_code)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == user["id"] and "dm_session=" in r.headers["Set-Cookie"]
    me = requests.get(srv.url + "/api/me", headers=bearer(r.json()), timeout=10)
    assert me.status_code == 200
    # a used challenge is dead; and the same code on a new challenge is a replay
    assert login_2fa(srv, challenge, now_code).status_code == 401
    again = login(srv, user["email"])["challenge"]
    r = login_2fa(srv, again, now_code)
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_code"
    # the step before and after are accepted (one step either side)
    r = login_2fa(srv, again, totp(secret, srv.now + 30))
    assert r.status_code == 200, r.text


def test_a_recovery_code_works_once_and_disable_needs_a_code(srv):
    body = register_member(srv, "tf")
    user, h = body["user"], bearer(body)
    secret, codes = enrol(srv, h)
    r = login_2fa(srv, login(srv, user["email"])["challenge"], codes[0].upper())
    assert r.status_code == 200, r.text
    r = login_2fa(srv, login(srv, user["email"])["challenge"], codes[0])
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_code"
    assert "recovery code" in error_of(r)["message"]
    h = bearer(login_2fa(srv, login(srv, user["email"])["challenge"], codes[1]).json())
    state = requests.get(srv.url + "/api/me/2fa", headers=h, timeout=10).json()["two_factor"]
    assert state["recovery_codes_left"] == 8
    # disable: a wrong code changes nothing; a recovery code turns it off
    r = requests.post(srv.url + "/api/me/2fa/disable", headers=h, json={"code": "000000"},
                      timeout=10)
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_code"
    r = requests.post(srv.url + "/api/me/2fa/disable", headers=h, json={}, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "code"
    assert srv.sql("SELECT COUNT(*) FROM twofa WHERE owner_id = %d AND subject = 'member' AND "
                   "secret_enc IS NOT NULL" % user["id"]) == [(1,)]
    r = requests.post(srv.url + "/api/me/2fa/disable", headers=h, json={"code": codes[2]},
                      timeout=10)
    assert r.status_code == 200 and r.json()["two_factor"]["enabled"] is False
    assert srv.sql("SELECT COUNT(*) FROM twofa_recovery WHERE owner_id = %d AND subject = "
                   "'member'" % user["id"]) == [(0,)]
    assert mails(srv, "twofa_disabled", user["email"]) == 1
    # the password alone is enough again
    assert "user" in login(srv, user["email"])


def test_a_challenge_dies_after_five_wrong_codes(srv):
    body = register_member(srv, "tf")
    user, h = body["user"], bearer(body)
    secret, _ = enrol(srv, h)
    challenge = login(srv, user["email"])["challenge"]
    step_on(srv)
    good = totp(secret, srv.now)
    wrong = "%06d" % ((int(good) + 500000) % 1000000)
    for _ in range(5):
        r = login_2fa(srv, challenge, wrong)
        assert r.status_code == 400 and error_of(r)["code"] == "invalid_code"
    r = login_2fa(srv, challenge, good)
    assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
    r = login_2fa(srv, "not-a-challenge", good)
    assert r.status_code == 401
    r = requests.post(srv.url + "/api/auth/login/2fa", json={"challenge": challenge}, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "code"
    r = requests.post(srv.url + "/api/auth/login/2fa", data="{", timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and error_of(r)["code"] == "bad_json"


def test_the_operator_resets_a_lost_enrolment_from_the_console(srv):
    body = register_member(srv, "tf")
    user, h = body["user"], bearer(body)
    enrol(srv, h)
    assert "challenge" in login(srv, user["email"])
    out = srv.ctl("twofa", "reset", "--member", str(user["id"])).stdout
    assert out.strip() == "two-factor sign-in removed from member %d" % user["id"]
    assert "user" in login(srv, user["email"])
    assert mails(srv, "twofa_disabled", user["email"]) == 1
    assert mails(srv, "withdrawals_locked", user["email"]) == 2  # enrolment, reset
    r = srv.ctl("twofa", "reset", "--member", str(user["id"]), check=False)
    assert r.returncode != 0 and "has no 2FA enrolment" in r.stderr
    r = srv.ctl("twofa", "reset", check=False)
    assert r.returncode != 0
    assert srv.sql("SELECT COUNT(*) FROM audit_log WHERE action = 'twofa.reset' AND "
                   "target_id = '%d'" % user["id"]) == [(1,)]


# ---- staff ----

def new_staff(s, role):
    email = "%s-%s@staff.example.com" % (role, tag())
    out = s.ctl("staff", "create", "--email", email, "--role", role).stdout
    password = re.search(r"^\s+password:\s+(\S+)$", out, re.M).group(1)
    b = requests.Session()
    b.headers["Origin"] = s.url
    return email, password, b


def test_staff_owner_is_forced_to_enrol_then_signs_in_with_a_code(srv):
    email, password, b = new_staff(srv, "owner")
    r = b.post(srv.url + "/api/admin/auth/login", json={"email": email, "password": password},
               timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["enrol_2fa_required"] is True
    b.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    # the restricted session may only enrol
    r = b.get(srv.url + "/api/admin/users", timeout=10)
    assert r.status_code == 403 and error_of(r)["code"] == "two_factor_enrolment_required"
    r = b.post(srv.url + "/api/admin/me/2fa/disable", json={"code": "123456"}, timeout=10)
    assert r.status_code == 403 and error_of(r)["code"] == "two_factor_enrolment_required"
    state = b.get(srv.url + "/api/admin/me/2fa", timeout=10).json()["two_factor"]
    assert state["enabled"] is False and state["required"] is True
    secret, codes = enrol(srv, b, "/api/admin/me")
    assert len(codes) == 10
    assert b.get(srv.url + "/api/admin/users", timeout=10).status_code == 200
    entries = b.get(srv.url + "/api/admin/audit", timeout=10,
                    params={"action": "staff.2fa.enable"}).json()["entries"]
    assert [e["action"] for e in entries][:1] == ["staff.2fa.enable"]
    # required for the owner: it cannot be turned off
    step_on(srv)
    r = b.post(srv.url + "/api/admin/me/2fa/disable", json={"code": totp(secret, srv.now)},
               timeout=10)
    assert r.status_code == 409 and "DeepMineStaff2FA required" in error_of(r)["message"]
    # the next login: a challenge, then a code
    b2 = requests.Session()
    b2.headers["Origin"] = srv.url
    r = b2.post(srv.url + "/api/admin/auth/login", json={"email": email, "password": password},
                timeout=10)
    assert r.status_code == 200 and r.json()["two_factor_required"] is True
    assert "dm_admin" not in r.headers.get("Set-Cookie", "")
    challenge = r.json()["challenge"]
    # a member's challenge endpoint does not take a staff challenge
    assert login_2fa(srv, challenge, totp(secret, srv.now + 30)).status_code == 401
    r = b2.post(srv.url + "/api/admin/auth/login/2fa", timeout=10,
                json={"challenge": challenge, "code": "1234567"})
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_code"
    step_on(srv)
    r = b2.post(srv.url + "/api/admin/auth/login/2fa", timeout=10,
                json={"challenge": challenge, "code": totp(secret, srv.now)})
    assert r.status_code == 200, r.text
    assert "enrol_2fa_required" not in r.json()
    b2.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    assert b2.get(srv.url + "/api/admin/users", timeout=10).status_code == 200


def test_staff_without_a_money_role_is_not_forced(srv):
    email, password, b = new_staff(srv, "support")
    r = b.post(srv.url + "/api/admin/auth/login", json={"email": email, "password": password},
               timeout=10)
    assert r.status_code == 200 and "enrol_2fa_required" not in r.json()
    b.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    assert b.get(srv.url + "/api/admin/users", timeout=10).status_code == 200
    state = b.get(srv.url + "/api/admin/me/2fa", timeout=10).json()["two_factor"]
    assert state == {"enabled": False, "enabled_at": None, "pending": False,
                     "recovery_codes_left": 0, "required": False}


def finance(s):
    """A finance session enrolled in 2FA (required for the role)."""
    if "finance2fa" not in s.staff:
        email, password, b = new_staff(s, "finance")
        r = b.post(s.url + "/api/admin/auth/login", timeout=10,
                   json={"email": email, "password": password})
        b.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        enrol(s, b, "/api/admin/me")
        s.staff["finance2fa"] = b
    return s.staff["finance2fa"]


# ---- password and sessions ----

def test_a_password_change_ends_every_other_session(srv):
    body = register_member(srv, "tf")
    user = body["user"]
    other = login(srv, user["email"])
    third = login(srv, user["email"])
    h = bearer(third)
    sessions = requests.get(srv.url + "/api/me/sessions", headers=h, timeout=10).json()
    assert len(sessions["sessions"]) == 3 and sessions["next_cursor"] is None
    s0 = sessions["sessions"][0]
    assert set(s0) == {"id", "created_at", "last_used_at", "ip", "user_agent", "current"}
    assert s0["ip"] == "127.0.0.1" and s0["user_agent"].startswith("python-requests")
    # the caller's own login, and only it, is marked current (its token's family)
    assert [x["current"] for x in sessions["sessions"]].count(True) == 1
    r = requests.post(srv.url + "/api/me/password", headers=h, timeout=10,
                      json={"current_password": "wrong-" + PASSWORD,
                            "new_password": "Another-Pumpkin-Orbit-43"})
    assert r.status_code == 400 and error_of(r)["field"] == "current_password"
    r = requests.post(srv.url + "/api/me/password", headers=h, timeout=10,
                      json={"current_password": PASSWORD, "new_password": "short"})
    assert r.status_code == 400 and error_of(r)["field"] == "new_password"
    r = requests.post(srv.url + "/api/me/password", headers=h, timeout=10,
                      json={"current_password": PASSWORD,
                            "new_password": "Another-Pumpkin-Orbit-43", "return_tokens": True})
    assert r.status_code == 200, r.text
    fresh = r.json()
    assert "dm_session=" in r.headers["Set-Cookie"]
    # every other login is over: refresh tokens and access tokens alike
    for old in [body, other, third]:
        r = requests.post(srv.url + "/api/auth/refresh", timeout=10,
                          json={"refresh_token": old["tokens"]["refresh_token"]})
        assert r.status_code == 401, r.text
        assert requests.get(srv.url + "/api/me", headers=bearer(old),
                            timeout=10).status_code == 401
    assert requests.get(srv.url + "/api/me", headers=bearer(fresh), timeout=10).status_code == 200
    r = requests.post(srv.url + "/api/auth/refresh", timeout=10,
                      json={"refresh_token": fresh["tokens"]["refresh_token"],
                            "return_tokens": True})
    assert r.status_code == 200
    left = requests.get(srv.url + "/api/me/sessions", headers=bearer(r.json()),
                        timeout=10).json()["sessions"]
    assert len(left) == 1
    assert mails(srv, "password_changed", user["email"]) == 1
    assert mails(srv, "withdrawals_locked", user["email"]) == 1
    # the old password no longer works, the new one does
    r = requests.post(srv.url + "/api/auth/login", timeout=10,
                      json={"email": user["email"], "password": PASSWORD})
    assert r.status_code == 401
    login(srv, user["email"], "Another-Pumpkin-Orbit-43")


def test_sessions_list_and_end_one(srv):
    body = register_member(srv, "tf")
    user, h = body["user"], bearer(body)
    second = login(srv, user["email"])
    rows = requests.get(srv.url + "/api/me/sessions", headers=h, timeout=10).json()["sessions"]
    assert len(rows) == 2
    [first_row] = [x for x in rows if x["id"] == min(y["id"] for y in rows)]
    [second_row] = [x for x in rows if x["id"] != first_row["id"]]
    r = requests.delete(srv.url + "/api/me/sessions/%d" % second_row["id"], headers=h, timeout=10)
    assert r.status_code == 200 and r.json() == {"id": second_row["id"], "ended": True}
    r = requests.post(srv.url + "/api/auth/refresh", timeout=10,
                      json={"refresh_token": second["tokens"]["refresh_token"]})
    assert r.status_code == 401
    rows = requests.get(srv.url + "/api/me/sessions", headers=h, timeout=10).json()["sessions"]
    assert [x["id"] for x in rows] == [first_row["id"]]
    r = requests.delete(srv.url + "/api/me/sessions/%d" % second_row["id"], headers=h, timeout=10)
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    # someone else's login is not found either
    stranger = register_member(srv, "tf")
    r = requests.delete(srv.url + "/api/me/sessions/%d" % first_row["id"],
                        headers=bearer(stranger), timeout=10)
    assert r.status_code == 404
    r = requests.delete(srv.url + "/api/me/sessions/abc", headers=h, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "id"
    r = requests.post(srv.url + "/api/auth/refresh", timeout=10,
                      json={"refresh_token": body["tokens"]["refresh_token"]})
    assert r.status_code == 200


# ---- the address book and withdrawals ----

def test_address_book_delay_under_the_fake_clock(srv):
    user, h = verified_member(srv, funds=100000)
    r = withdraw(srv, h, 5000, destination=TRX)
    assert r.status_code == 409, r.text
    err = error_of(r)
    assert err["code"] == "address_not_usable" and "POST /api/me/addresses" in err["message"]
    for bad, field in [({"address": "T123"}, "address"), ({"address": TRX, "network": "sol"},
                                                            "network"),
                       ({"address": TRX, "label": "a\u0007b"}, "label"), ({}, "address")]:
        r = requests.post(srv.url + "/api/me/addresses", headers=h, json=bad, timeout=10)
        assert r.status_code == 400 and error_of(r)["field"] == field, bad
    r = requests.post(srv.url + "/api/me/addresses", headers=h, timeout=10,
                      json={"address": TRX, "label": "my wallet"})
    assert r.status_code == 201, r.text
    entry = r.json()["address"]
    assert entry["status"] == "pending" and entry["network"] == "trc20" and \
        entry["usable"] is False and entry["label"] == "my wallet"
    r = requests.post(srv.url + "/api/me/addresses", headers=h, json={"address": TRX}, timeout=10)
    assert r.status_code == 409
    r = withdraw(srv, h, 5000, address_id=entry["id"])
    assert r.status_code == 409 and "not confirmed" in error_of(r)["message"]
    [variables] = queued_mail(srv, user["email"], "withdrawal_address_added")
    token = variables["token"]
    assert variables["url"].endswith("/confirm-address?token=" + token)
    # the token and its link wait in the queue sealed (docs/security.md)
    [(raw, status)] = srv.sql("SELECT variables, status FROM mail_queue WHERE template = "
                              "'withdrawal_address_added' AND recipient = '%s'" % user["email"])
    # (the mail job, every 5 s, may have sent it already and dropped the seal)
    assert token not in raw and (set(json.loads(raw)) >= {"sealed"} or status == "sent")
    r = requests.post(srv.url + "/api/auth/confirm-address", json={"token": token}, timeout=10)
    assert r.status_code == 200, r.text
    confirmed = r.json()["address"]
    assert confirmed["status"] == "confirmed" and confirmed["usable"] is False
    assert confirmed["usable_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                   time.gmtime(srv.now + DELAY))
    assert mails(srv, "withdrawal_address_confirmed", user["email"]) == 1
    r = requests.post(srv.url + "/api/auth/confirm-address", json={"token": token}, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "token"
    r = withdraw(srv, h, 5000, address_id=entry["id"])
    assert r.status_code == 409 and "can be used from" in error_of(r)["message"]
    srv.advance(DELAY - 1)
    assert withdraw(srv, h, 5000, destination=TRX).status_code == 409
    srv.advance(1)
    r = withdraw(srv, h, 5000, destination=TRX)
    assert r.status_code == 201, r.text
    r = withdraw(srv, h, 6000, address_id=entry["id"])
    assert r.status_code == 201, r.text
    assert r.json()["withdrawal"]["destination"] == TRX
    assert balance(srv, h) == 100000 - 11000
    rows = requests.get(srv.url + "/api/me/addresses", headers=h, timeout=10).json()["addresses"]
    assert [(x["id"], x["usable"]) for x in rows] == [(entry["id"], True)]
    # removed: no longer usable
    assert requests.delete(srv.url + "/api/me/addresses/%d" % entry["id"], headers=h,
                           timeout=10).status_code == 200
    assert requests.delete(srv.url + "/api/me/addresses/%d" % entry["id"], headers=h,
                           timeout=10).status_code == 404
    r = withdraw(srv, h, 5000, address_id=entry["id"])
    assert r.status_code == 409 and error_of(r)["code"] == "address_not_usable"
    assert balance(srv, h) == 100000 - 11000
    verify_ledger(srv)


def test_withdrawal_with_2fa_needs_a_current_code_and_security_changes_lock(srv):
    user, h = verified_member(srv, funds=200000)
    book_address(srv, h, ETH)
    secret, codes = enrol(srv, h)
    # turning 2FA on locked withdrawals for the delay
    r = withdraw(srv, h, 5000, destination=ETH, code=totp(secret, srv.now + 30))
    assert r.status_code == 409 and error_of(r)["code"] == "withdrawals_locked"
    srv.advance(DELAY + 1)
    h = bearer(login_2fa(srv, login(srv, user["email"])["challenge"],
                         totp(secret, srv.now)).json())
    r = withdraw(srv, h, 5000, destination=ETH)
    assert r.status_code == 403 and error_of(r)["code"] == "two_factor_required"
    step_on(srv)
    code = totp(secret, srv.now)
    for bad in ["%06d" % ((int(code) + 1) % 1000000), "12345", "1234567", codes[0]]:
        r = withdraw(srv, h, 5000, destination=ETH, code=bad)
        assert r.status_code == 400 and error_of(r)["code"] == "invalid_code", bad
    assert balance(srv, h) == 200000
    r = withdraw(srv, h, 5000, destination=ETH.lower(), network="erc20", code=code)
    assert r.status_code == 201, r.text
    # the same code again: a replay
    r = withdraw(srv, h, 5000, destination=ETH, code=code)
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_code"
    # a refused withdrawal (insufficient funds) does not spend the code
    step_on(srv)
    code = totp(secret, srv.now)
    r = withdraw(srv, h, 50000000, destination=ETH, code=code)
    assert r.status_code == 409 and error_of(r)["code"] == "conflict"
    r = withdraw(srv, h, 7000, destination=ETH, code=code)
    assert r.status_code == 201, r.text
    assert balance(srv, h) == 200000 - 12000
    verify_ledger(srv)

    # a password change locks withdrawals again
    r = requests.post(srv.url + "/api/me/password", headers=h, timeout=10,
                      json={"current_password": PASSWORD,
                            "new_password": "Another-Pumpkin-Orbit-43", "return_tokens": True})
    assert r.status_code == 200, r.text
    h = bearer(r.json())
    step_on(srv)
    r = withdraw(srv, h, 5000, destination=ETH, code=totp(secret, srv.now))
    assert r.status_code == 409 and error_of(r)["code"] == "withdrawals_locked"
    assert "paused until" in error_of(r)["message"]
    assert balance(srv, h) == 200000 - 12000
    verify_ledger(srv)


def test_a_password_reset_locks_withdrawals(srv):
    user, h = verified_member(srv, funds=50000)
    book_address(srv, h, TRX)
    r = requests.post(srv.url + "/api/auth/password-reset", json={"email": user["email"]},
                      timeout=10)
    assert r.status_code == 202
    [variables] = queued_mail(srv, user["email"], "password_reset")
    r = requests.post(srv.url + "/api/auth/password-reset/confirm", timeout=10,
                      json={"token": variables["token"],
                            "password": "Another-Pumpkin-Orbit-43"})
    assert r.status_code == 200, r.text
    h = bearer(login(srv, user["email"], "Another-Pumpkin-Orbit-43"))
    r = withdraw(srv, h, 5000, destination=TRX)
    assert r.status_code == 409 and error_of(r)["code"] == "withdrawals_locked"
    assert mails(srv, "password_changed", user["email"]) == 1
    srv.advance(DELAY + 1)
    h = bearer(login(srv, user["email"], "Another-Pumpkin-Orbit-43"))
    assert withdraw(srv, h, 5000, destination=TRX).status_code == 201
    verify_ledger(srv)


def test_staff_see_kyc_2fa_address_age_and_flags_per_withdrawal(srv):
    user, h = verified_member(srv, funds=100000)
    entry = book_address(srv, h, TRX2)
    secret, _ = enrol(srv, h)
    srv.advance(DELAY + 1)
    h = bearer(login_2fa(srv, login(srv, user["email"])["challenge"],
                         totp(secret, srv.now)).json())
    step_on(srv)
    r = withdraw(srv, h, 8000, address_id=entry["id"], code=totp(secret, srv.now))
    assert r.status_code == 201, r.text
    wd = r.json()["withdrawal"]
    assert "member_checks" not in wd
    fin = finance(srv)
    r = fin.get(srv.url + "/api/admin/withdrawals/%d" % wd["id"], timeout=10)
    assert r.status_code == 200, r.text
    checks = r.json()["withdrawal"]["member_checks"]
    confirmed = calendar.timegm(time.strptime(entry["confirmed_at"], "%Y-%m-%dT%H:%M:%SZ"))
    requested = calendar.timegm(time.strptime(r.json()["withdrawal"]["requested_at"],
                                              "%Y-%m-%dT%H:%M:%SZ"))
    assert checks == {"kyc_status": "approved", "two_factor": True, "address_id": entry["id"],
                      "address_added_at": entry["created_at"],
                      "address_confirmed_at": entry["confirmed_at"],
                      "address_age_seconds": int(requested - confirmed), "fraud_flags": []}
    assert checks["address_age_seconds"] > DELAY
    listed = [w for w in fin.get(srv.url + "/api/admin/withdrawals", timeout=10,
                                 params={"status": "pending", "limit": 200}).json()["withdrawals"]
              if w["id"] == wd["id"]]
    assert listed[0]["member_checks"] == checks
    # a second member withdrawing to the same address raises the shared-destination flag
    other, oh = verified_member(srv, funds=100000)
    book_address(srv, oh, TRX2)
    assert withdraw(srv, oh, 5000, destination=TRX2).status_code == 201
    checks = fin.get(srv.url + "/api/admin/withdrawals/%d" % wd["id"],
                     timeout=10).json()["withdrawal"]["member_checks"]
    assert checks["fraud_flags"] == ["same_withdrawal_destination"]
    assert staff(srv, "support").get(srv.url + "/api/admin/withdrawals/%d" % wd["id"],
                                     timeout=10).status_code == 403
    assert fin.get(srv.url + "/api/admin/withdrawals/999999", timeout=10).status_code == 404
    verify_ledger(srv)


# ---- rate limits ----

def test_code_attempts_are_rate_limited_per_member():
    s = Server(mpm="event", local_conf=FAST + "DeepMineRateLimit login-2fa-member 3/1h member\n",
               clock=T0).start()
    try:
        s.terms = s.get("/api/legal/terms").json()["version"]
        s.address_delay = DELAY
        body = register_member(s, "tf")
        user, h = body["user"], bearer(body)
        r = requests.post(s.url + "/api/me/2fa/setup", headers=h, timeout=10)
        secret = r.json()["secret"]
        step_on(s)
        r = requests.post(s.url + "/api/me/2fa/enable", headers=h, timeout=10,
                          json={"code": totp(secret, s.now)})
        assert r.status_code == 200, r.text
        challenge = login(s, user["email"])["challenge"]
        assert login_2fa(s, challenge, "000000").status_code == 400
        assert login_2fa(s, challenge, "000001").status_code == 400
        r = login_2fa(s, challenge, "000002")
        assert r.status_code == 429 and error_of(r)["code"] == "rate_limited"
        assert "Retry-After" in r.headers
        # the limit is the member's, from any address: a fresh challenge too
        r = login_2fa(s, login(s, user["email"])["challenge"], "000003")
        assert r.status_code == 429
    finally:
        s.stop()
        try:
            assert_clean_log(s)
        finally:
            s.cleanup()
