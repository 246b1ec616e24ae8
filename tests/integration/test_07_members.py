"""Members: register -> verify -> login -> me -> refresh -> logout, with
cookies and CSRF, refresh rotation and reuse detection, password reset,
terms versions, and bad input of every kind stored or refused cleanly."""
import json
import os
import uuid

import pytest
import requests

from conftest import Server, assert_clean_log, error_of, queued_mail

# Cheap hashing and roomy limits: these tests are about the flows, not the
# limiter (test_06) or the hashing cost.
FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit password-reset 10000/1m ip\n"
        "DeepMineRateLimit verify-email 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n")
PASSWORD = "Glacier-Pumpkin-Orbit-42"


@pytest.fixture(scope="module")
def srv():
    s = Server(mpm="event", local_conf=FAST).start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def new_email():
    return "m%s@Example.COM" % uuid.uuid4().hex[:12]


def register(s, email=None, password=PASSWORD, session=None, **extra):
    body = {"email": email or new_email(), "password": password,
            "accept_terms": True, "terms_version": s.terms}
    body.update(extra)
    http = session or requests
    return http.post(s.url + "/api/auth/register", json=body, timeout=10)


def browser(s):
    """A requests session that behaves like the site's own page."""
    b = requests.Session()
    b.headers["Origin"] = s.url
    return b


def csrf(b):
    return {"X-CSRF-Token": b.cookies.get("dm_csrf")}


def queued(s, email, template):
    return queued_mail(s, email, template)


def test_legal_documents_have_version_hash_and_text(srv):
    for doc in ("terms", "privacy"):
        r = srv.get("/api/legal/" + doc)
        assert r.status_code == 200
        body = r.json()
        assert body["document"] == doc
        assert body["version"] == "2026-11-01"
        assert len(body["content_hash"]) == 64
        assert "Version:" not in body["text"] and len(body["text"]) > 50
    assert srv.get("/api/legal/cookies").status_code == 404


def test_full_flow_register_verify_login_me_refresh_logout(srv):
    b = browser(srv)
    email = new_email()
    r = register(srv, email, session=b)
    assert r.status_code == 201, r.text
    user = r.json()["user"]
    assert user["email"] == email[:email.index("@")] + "@example.com"
    assert user["email_verified"] is False
    assert len(user["referral_code"]) == 8
    assert not set(user["referral_code"]) & set("0O1IL")
    assert user["vip_level"] == 1 and user["balance_micros"] == 0
    assert user["terms_outdated"] is False
    # cookies as the contract says
    cookies = r.headers.get("Set-Cookie")
    raw = r.raw.headers.getlist("Set-Cookie")
    session = [c for c in raw if c.startswith("dm_session=")][0]
    refresh = [c for c in raw if c.startswith("dm_refresh=")][0]
    csrf_c = [c for c in raw if c.startswith("dm_csrf=")][0]
    assert "HttpOnly" in session and "SameSite=Lax" in session and "Path=/api;" in session
    assert "HttpOnly" in refresh and "Path=/api/auth;" in refresh
    assert "HttpOnly" not in csrf_c and "Path=/;" in csrf_c
    assert cookies  # requests folded them
    # the legal record
    rows = srv.sql("SELECT document, version, ip FROM legal_acceptances la JOIN users u "
                   "ON u.id = la.user_id WHERE u.id = %d" % user["id"])
    assert rows == [("terms", srv.terms, "127.0.0.1")]

    # me with the cookie
    me = b.get(srv.url + "/api/me")
    assert me.status_code == 200 and me.json()["user"]["id"] == user["id"]
    assert me.headers["Cache-Control"] == "no-store"

    # verify the e-mail with the queued token
    msgs = queued(srv, user["email"], "email_verification")
    assert len(msgs) == 1 and msgs[0]["token"] in msgs[0]["url"]
    r = b.post(srv.url + "/api/auth/verify-email", json={"token": msgs[0]["token"]})
    assert r.status_code == 200
    assert b.get(srv.url + "/api/me").json()["user"]["email_verified"] is True
    # single use
    r = b.post(srv.url + "/api/auth/verify-email", json={"token": msgs[0]["token"]})
    assert r.status_code == 400 and error_of(r)["field"] == "token"

    # refresh rotates both tokens (cookie + CSRF)
    old_refresh = b.cookies.get("dm_refresh")
    old_session = b.cookies.get("dm_session")
    r = b.post(srv.url + "/api/auth/refresh", headers=csrf(b))
    assert r.status_code == 200, r.text
    assert b.cookies.get("dm_refresh") != old_refresh
    assert b.cookies.get("dm_session") != old_session
    assert b.get(srv.url + "/api/me").status_code == 200

    # logout revokes the family and clears cookies
    r = b.post(srv.url + "/api/auth/logout", headers=csrf(b))
    assert r.status_code == 200
    assert not b.cookies.get("dm_session")
    # the cookie is gone, so this presents the rotated token again: a reuse
    srv.expect_log("DM00400: a rotated refresh token was presented again")
    r = requests.post(srv.url + "/api/auth/refresh",
                      json={"refresh_token": b.cookies.get("dm_refresh") or old_refresh})
    assert r.status_code == 401

    # and log in again
    r = b.post(srv.url + "/api/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200
    assert b.get(srv.url + "/api/me").json()["user"]["id"] == user["id"]


def test_bearer_tokens_for_non_browser_clients(srv):
    r = register(srv, return_tokens=True)
    t = r.json()["tokens"]
    assert t["token_type"] == "Bearer" and t["expires_in"] == 900
    h = {"Authorization": "Bearer " + t["access_token"]}
    assert requests.get(srv.url + "/api/me", headers=h).status_code == 200
    # a write with Bearer needs no CSRF token
    r = requests.post(srv.url + "/api/me/accept-terms", headers=h,
                      json={"terms_version": srv.terms})
    assert r.status_code == 200
    # refresh with the body token
    r = requests.post(srv.url + "/api/auth/refresh",
                      json={"refresh_token": t["refresh_token"], "return_tokens": True})
    assert r.status_code == 200
    assert r.json()["tokens"]["refresh_token"] != t["refresh_token"]
    # garbage tokens
    for bad in ["Bearer x.y.z", "Bearer ", "Basic abc", "Bearer " + t["access_token"] + "x"]:
        r = requests.get(srv.url + "/api/me", headers={"Authorization": bad})
        assert r.status_code == 401, bad
        assert error_of(r)["code"] == "unauthorized"
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="deepmine"', bad


def test_every_member_401_names_the_bearer_scheme_even_without_a_token(srv):
    for path in ["/api/me", "/api/ledger", "/api/contracts", "/api/referrals/network"]:
        r = requests.get(srv.url + path)
        assert r.status_code == 401, path
        assert error_of(r) == {"code": "unauthorized", "message": "log in first"}
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="deepmine"', path


def test_refresh_token_reuse_revokes_the_family(srv):
    t = register(srv, return_tokens=True).json()["tokens"]
    first = requests.post(srv.url + "/api/auth/refresh",
                          json={"refresh_token": t["refresh_token"], "return_tokens": True})
    assert first.status_code == 200
    newer = first.json()["tokens"]["refresh_token"]
    # the thief replays the old one: refused, and the whole family dies
    replay = requests.post(srv.url + "/api/auth/refresh", json={"refresh_token": t["refresh_token"]})
    assert replay.status_code == 401
    r = requests.post(srv.url + "/api/auth/refresh", json={"refresh_token": newer})
    assert r.status_code == 401
    srv.expect_log("DM00400")


def test_duplicate_email_is_409_case_insensitively(srv):
    email = new_email()
    assert register(srv, email).status_code == 201
    r = register(srv, email.upper())
    assert r.status_code == 409
    err = error_of(r)
    assert err["code"] == "conflict" and err["field"] == "email"


def test_referral_code_places_member_and_unknown_code_is_400(srv):
    parent = register(srv, return_tokens=True).json()
    code = parent["user"]["referral_code"]
    child = register(srv, referral_code=code.lower())
    assert child.status_code == 201
    h = {"Authorization": "Bearer " + parent["tokens"]["access_token"]}
    net = requests.get(srv.url + "/api/referrals/network", headers=h).json()
    assert net["direct"] == 1 and net["total"] == 1 and net["levels"][0] == 1
    lst = requests.get(srv.url + "/api/referrals?level=1", headers=h).json()
    assert len(lst["referrals"]) == 1
    assert "***@example.com" in lst["referrals"][0]["email"]
    before = srv.sql("SELECT COUNT(*) FROM users")[0][0]
    for bad in ["ZZZZZZZZ", "not a code!", "x" * 64]:
        r = register(srv, referral_code=bad)
        assert r.status_code == 400, bad
        assert error_of(r)["field"] == "referral_code"
    assert srv.sql("SELECT COUNT(*) FROM users")[0][0] == before


def test_registration_input_errors_name_the_field(srv):
    cases = [
        ({"email": "not-an-email"}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "password12"}, "password"),
        ({"accept_terms": False}, "accept_terms"),
        ({"terms_version": "1999-01-01"}, "terms_version"),
        ({"email": 12}, "email"),
        ({"accept_terms": "yes"}, "accept_terms"),
    ]
    before = srv.sql("SELECT COUNT(*) FROM users")[0][0]
    for extra, field in cases:
        body = {"email": new_email(), "password": PASSWORD, "accept_terms": True,
                "terms_version": srv.terms}
        body.update(extra)
        r = requests.post(srv.url + "/api/auth/register", json=body)
        assert r.status_code == 400, (extra, r.text)
        assert error_of(r)["field"] == field, (extra, r.text)
    # the password may not contain the e-mail's local part
    r = register(srv, "glacierpumpkin@example.com", password="xGlacierPumpkin-Orbit-42")
    assert r.status_code == 400 and error_of(r)["field"] == "password"
    r = requests.post(srv.url + "/api/auth/register", data="{not json")
    assert r.status_code == 400 and error_of(r)["code"] == "bad_json"
    r = requests.post(srv.url + "/api/auth/register", data="[]")
    assert r.status_code == 400 and error_of(r)["code"] == "bad_json"
    assert srv.sql("SELECT COUNT(*) FROM users")[0][0] == before


def test_sql_metacharacters_and_10kb_strings_never_500(srv):
    evil = ["' OR 1=1 --", "\"; DROP TABLE users; --", "a\\' UNION SELECT *", "%_%",
            "\u202e\u0000", "x" * 10240, "é" * 5000]
    before = srv.sql("SELECT COUNT(*) FROM users")[0][0]
    for v in evil:
        for field in ("email", "password", "referral_code", "terms_version"):
            body = {"email": new_email(), "password": PASSWORD, "accept_terms": True,
                    "terms_version": srv.terms, field: v}
            r = requests.post(srv.url + "/api/auth/register", json=body)
            assert r.status_code < 500, (field, v[:20], r.status_code)
            assert r.status_code in (201, 400, 409), r.text
        r = requests.post(srv.url + "/api/auth/login", json={"email": v, "password": v})
        assert r.status_code in (400, 401), r.text
        r = requests.post(srv.url + "/api/auth/password-reset", json={"email": v})
        assert r.status_code in (202, 400)
    # a quote in a valid e-mail is stored as typed, not interpreted
    odd = "o'brien+%s@example.com" % uuid.uuid4().hex[:6]
    r = register(srv, odd)
    assert r.status_code == 201 and r.json()["user"]["email"] == odd
    assert srv.sql("SELECT COUNT(*) FROM users")[0][0] >= before + 1
    assert srv.sql("SELECT COUNT(*) FROM users WHERE email = '%s'" % odd.replace("'", "''"))[0][0] == 1


def test_login_wrong_password_and_unknown_email_look_the_same(srv):
    email = new_email()
    register(srv, email)
    a = requests.post(srv.url + "/api/auth/login", json={"email": email, "password": "Wrong-Pass-123"})
    b = requests.post(srv.url + "/api/auth/login",
                      json={"email": "nobody-%s@example.com" % uuid.uuid4().hex[:6],
                            "password": "Wrong-Pass-123"})
    assert a.status_code == b.status_code == 401
    assert error_of(a) == error_of(b)


def test_csrf_missing_wrong_or_foreign_origin_is_403(srv):
    b = browser(srv)
    assert register(srv, session=b).status_code == 201
    url = srv.url + "/api/me/accept-terms"
    body = {"terms_version": srv.terms}
    r = b.post(url, json=body)                                  # no token
    assert r.status_code == 403 and error_of(r)["code"] == "csrf"
    r = b.post(url, json=body, headers={"X-CSRF-Token": "wrong"})
    assert r.status_code == 403 and error_of(r)["code"] == "csrf"
    r = b.post(url, json=body, headers=dict(csrf(b), Origin="https://evil.example"))
    assert r.status_code == 403 and error_of(r)["code"] == "csrf"
    nohdr = requests.Session()
    nohdr.cookies = b.cookies
    r = nohdr.post(url, json=body, headers=csrf(b))             # no Origin at all
    assert r.status_code == 403 and error_of(r)["code"] == "csrf"
    r = b.post(url, json=body, headers=csrf(b))                 # all right
    assert r.status_code == 200
    # a foreign origin cannot even log in (login CSRF)
    r = requests.post(srv.url + "/api/auth/login", json={"email": "a@b.co", "password": "x"},
                      headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and error_of(r)["code"] == "csrf"


def test_cors_preflight_and_simple_answers(new_server):
    s = new_server(local_conf=FAST + "DeepMineAllowedOrigin https://app.example.com\n").start()
    r = s.request("OPTIONS", "/api/auth/login",
                  headers={"Origin": "https://app.example.com",
                           "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "X-CSRF-Token" in r.headers["Access-Control-Allow-Headers"]
    r = s.request("OPTIONS", "/api/auth/login",
                  headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204 and "Access-Control-Allow-Origin" not in r.headers
    r = s.get("/api/packages", headers={"Origin": "https://app.example.com"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Origin" in r.headers["Vary"]
    r = s.get("/api/packages", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers


def test_password_reset_always_202_and_completed_reset_ends_sessions(srv):
    email = new_email()
    t = register(srv, email, return_tokens=True).json()["tokens"]
    for who in (email, "nobody-%s@example.com" % uuid.uuid4().hex[:6]):
        r = requests.post(srv.url + "/api/auth/password-reset", json={"email": who})
        assert r.status_code == 202 and r.json() == {"accepted": True}
    norm = email[:email.index("@")] + "@example.com"
    msgs = queued(srv, norm, "password_reset")
    assert len(msgs) == 1
    r = requests.post(srv.url + "/api/auth/password-reset/confirm",
                      json={"token": msgs[0]["token"], "password": "short"})
    assert r.status_code == 400 and error_of(r)["field"] == "password"
    r = requests.post(srv.url + "/api/auth/password-reset/confirm",
                      json={"token": msgs[0]["token"], "password": "Another-Fine-Passphrase-7"})
    assert r.status_code == 200
    # every old session is gone: access token and refresh token
    h = {"Authorization": "Bearer " + t["access_token"]}
    assert requests.get(srv.url + "/api/me", headers=h).status_code == 401
    assert requests.post(srv.url + "/api/auth/refresh",
                         json={"refresh_token": t["refresh_token"]}).status_code == 401
    # the token is single use; the new password works, the old does not
    r = requests.post(srv.url + "/api/auth/password-reset/confirm",
                      json={"token": msgs[0]["token"], "password": "Yet-Another-Passphrase-8"})
    assert r.status_code == 400
    assert requests.post(srv.url + "/api/auth/login",
                         json={"email": email, "password": PASSWORD}).status_code == 401
    assert requests.post(srv.url + "/api/auth/login",
                         json={"email": email,
                               "password": "Another-Fine-Passphrase-7"}).status_code == 200


def test_suspended_member_is_locked_out_at_the_next_request(srv):
    t = register(srv, return_tokens=True).json()
    h = {"Authorization": "Bearer " + t["tokens"]["access_token"]}
    assert requests.get(srv.url + "/api/me", headers=h).status_code == 200
    # what the admin suspend does (tested end to end in test_08_admin)
    srv.sql("UPDATE users SET status = 'suspended', token_version = token_version + 1 "
            "WHERE id = %d" % t["user"]["id"])
    r = requests.get(srv.url + "/api/me", headers=h)
    assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
    r = requests.post(srv.url + "/api/auth/login",
                      json={"email": t["user"]["email"], "password": PASSWORD})
    assert r.status_code == 403
    r = requests.post(srv.url + "/api/auth/refresh",
                      json={"refresh_token": t["tokens"]["refresh_token"]})
    assert r.status_code == 403


def test_network_refuses_a_token_as_me_does(srv):
    """GET /api/referrals/network authenticates in its own statement (with
    the counters): the same refusals as /api/me, in the same order."""
    def both(h):
        return [requests.get(srv.url + p, headers=h) for p in ("/api/me", "/api/referrals/network")]

    ended = register(srv, return_tokens=True).json()["tokens"]
    h = {"Authorization": "Bearer " + ended["access_token"]}
    assert [r.status_code for r in both(h)] == [200, 200]
    assert requests.post(srv.url + "/api/auth/logout",
                         json={"refresh_token": ended["refresh_token"]}).status_code == 200
    outdated = register(srv, return_tokens=True).json()
    srv.sql("UPDATE users SET token_version = token_version + 1 WHERE id = %d"
            % outdated["user"]["id"])
    suspended = register(srv, return_tokens=True).json()
    srv.sql("UPDATE users SET status = 'suspended', token_version = token_version + 1 "
            "WHERE id = %d" % suspended["user"]["id"])
    for t, status, code, message in [
            (ended, 401, "unauthorized", "the session has ended; log in again"),
            (outdated["tokens"], 401, "unauthorized", "the session has ended; log in again"),
            (suspended["tokens"], 403, "forbidden", "this account is suspended")]:
        me, net = both({"Authorization": "Bearer " + t["access_token"]})
        for r in (me, net):
            assert r.status_code == status and error_of(r) == {"code": code, "message": message}
            assert r.headers.get("WWW-Authenticate") == (
                'Bearer realm="deepmine"' if status == 401 else None)
        assert net.content == me.content
    # a member without a counters row (none is missing in practice) reads zeros
    lone = register(srv, return_tokens=True).json()
    srv.sql("DELETE FROM referral_counts WHERE user_id = %d" % lone["user"]["id"])
    net = requests.get(srv.url + "/api/referrals/network",
                       headers={"Authorization": "Bearer " + lone["tokens"]["access_token"]})
    assert net.status_code == 200
    assert net.json() == {"direct": 0, "total": 0, "levels": [0] * 10}


def test_new_terms_version_makes_terms_outdated_until_accepted(new_server, tmp_path):
    legal = tmp_path / "legal"
    legal.mkdir()
    from conftest import ROOT
    for doc in ("terms", "privacy"):
        (legal / (doc + ".md")).write_text(open(os.path.join(ROOT, "conf", "legal",
                                                             doc + ".md")).read())
    os.chmod(str(tmp_path), 0o755)
    os.chmod(str(legal), 0o755)
    s = new_server(local_conf=FAST + 'DeepMineLegalDir "%s"\n' % legal).start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    t = register(s, return_tokens=True).json()["tokens"]
    h = {"Authorization": "Bearer " + t["access_token"]}
    assert requests.get(s.url + "/api/me", headers=h).json()["user"]["terms_outdated"] is False
    # the operator publishes new terms and restarts
    (legal / "terms.md").write_text("Version: 2027-01-01\n\nNew terms of service, longer text.\n")
    s.stop()
    s.start()
    me = requests.get(s.url + "/api/me", headers=h).json()["user"]
    assert me["terms_outdated"] is True
    r = requests.post(s.url + "/api/me/accept-terms", headers=h, json={"terms_version": s.terms})
    assert r.status_code == 400 and error_of(r)["field"] == "terms_version"
    r = requests.post(s.url + "/api/me/accept-terms", headers=h,
                      json={"terms_version": "2027-01-01"})
    assert r.status_code == 200 and r.json()["user"]["terms_outdated"] is False
    # registration must now name the new version
    r = register(s)
    assert r.status_code == 400 and error_of(r)["field"] == "terms_version"


def test_referral_list_paginates_and_validates(srv):
    parent = register(srv, return_tokens=True).json()
    code = parent["user"]["referral_code"]
    for _ in range(5):
        assert register(srv, referral_code=code).status_code == 201
    h = {"Authorization": "Bearer " + parent["tokens"]["access_token"]}
    page1 = requests.get(srv.url + "/api/referrals?level=1&limit=2", headers=h).json()
    assert len(page1["referrals"]) == 2 and page1["next_cursor"]
    ids = [m["id"] for m in page1["referrals"]]
    assert ids == sorted(ids, reverse=True)
    page2 = requests.get(srv.url + "/api/referrals?level=1&limit=2&cursor=" + page1["next_cursor"],
                         headers=h).json()
    assert not set(ids) & {m["id"] for m in page2["referrals"]}
    for bad, field in [("level=0", "level"), ("level=11", "level"), ("level=x", "level"),
                       ("limit=0", "limit"), ("limit=201", "limit"), ("cursor=-4", "cursor")]:
        r = requests.get(srv.url + "/api/referrals?" + bad, headers=h)
        assert r.status_code == 400 and error_of(r)["field"] == field, bad
    assert requests.get(srv.url + "/api/referrals/network").status_code == 401
