"""Hardening (issue 13, "Defects found when the platform was attacked";
docs/security.md "Hardening"): private files under VAR and a refusal to
start on a database others can read, tokens that wait in the mail queue
encrypted and are gone once sent, an access log without query strings, slow
clients cut by mod_reqtimeout, TRACE off, access tokens that end with their
login (logout, refresh-token reuse), the Origin rule for Bearer writes, and
e-mail verification on a rate rule of its own."""
import json
import os
import re
import socket
import stat
import subprocess
import threading
import time

import pytest
import requests

from conftest import (CTL, Server, assert_clean_log, bearer, error_of, queued_mail, register_member,
                      tag)

# Cheap hashing; the auth rules keep their defaults (the rate-limit test
# counts on them), registration is roomy.
FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n")


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


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def wait_for(cond, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


# ---- files ----

def test_database_wal_shm_and_logs_are_readable_by_the_server_only(srv):
    register_member(srv, "modes")  # a write: the WAL and the shared memory exist
    for name in ("deepmine.db", "deepmine.db-wal", "deepmine.db-shm",
                 "logs/access.log", "logs/error.log", "httpd.conf"):
        path = os.path.join(srv.var, name)
        assert mode_of(path) & 0o077 == 0, "%s is mode %o" % (name, mode_of(path))
    for name in ("", "logs", "mail", "run"):
        path = os.path.join(srv.var, name)
        # searchable (o+x) at most, as gen-conf.sh leaves the path to VAR
        assert mode_of(path) & 0o066 == 0, "%s/ is mode %o" % (name, mode_of(path))


def test_console_creates_a_private_database(tmp_path):
    db = str(tmp_path / "fresh.db")
    r = subprocess.run([CTL, "--db", db, "migrate"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert mode_of(db) == 0o600


def test_start_is_refused_on_a_database_others_can_read(new_server):
    s = new_server()
    os.chmod(s.db, 0o644)
    s.expect_log(r"DM01400|AH00016")
    s.start(wait=False)
    out, _ = s.proc.communicate(timeout=60)
    assert s.proc.returncode != 0
    text = out + s.log_text()
    assert "DM01400: database file %s is readable by everyone" % s.db in text, text
    s.proc = None
    # closed again, it starts
    os.chmod(s.db, 0o600)
    s.start()
    assert s.get("/api/health").status_code == 200


# ---- the mail queue ----

def test_queued_tokens_are_encrypted_and_gone_once_sent(srv):
    m = register_member(srv, "seal")
    email, uid = m["user"]["email"], m["user"]["id"]
    [(raw, status)] = srv.sql("SELECT variables, status FROM mail_queue WHERE recipient = '%s' "
                               "AND template = 'email_verification'" % email)
    [opened] = queued_mail(srv, email, "email_verification")
    token = opened["token"]
    assert len(token) == 43 and opened["url"].endswith("/verify-email?token=" + token)
    # what a copy of the database shows: no token, no link
    assert token not in raw and "verify-email" not in raw
    # sealed while queued (the mail job, every 5 s, may have sent it already)
    assert set(json.loads(raw)) == ({"email", "expires_in_hours", "sealed"}
                                    if status != "sent" else {"email", "expires_in_hours"})
    key = "verify:%d" % srv.sql("SELECT id FROM email_tokens WHERE user_id = %d" % uid)[0][0]
    wait_for(lambda: srv.sql("SELECT status FROM mail_queue WHERE idempotency_key = '%s'"
                             % key) == [("sent",)], what="the verification message sent")
    [(after,)] = srv.sql("SELECT variables FROM mail_queue WHERE idempotency_key = '%s'" % key)
    assert json.loads(after) == {"email": email, "expires_in_hours": 48}
    # the token itself still works
    r = requests.post(srv.url + "/api/auth/verify-email", json={"token": token}, timeout=10)
    assert r.status_code == 200, r.text


# ---- the access log ----

def test_access_log_records_paths_without_query_strings(srv):
    secret = "SeCrEt" + tag()
    r = srv.get("/api/email/unsubscribe?token=" + secret)
    assert r.status_code in (400, 404), r.status_code
    srv.get("/api/health?probe=" + secret)
    srv.stop()  # flushes BufferedLogs
    with open(os.path.join(srv.var, "logs", "access.log")) as f:
        text = f.read()
    srv.start()
    assert secret not in text
    assert '"GET /api/email/unsubscribe HTTP/1.1" %d ' % r.status_code in text
    assert '"GET /api/health HTTP/1.1" 200 ' in text


# ---- TRACE ----

@pytest.mark.parametrize("path", ["/api/health", "/api/me", "/"])
def test_trace_is_refused_and_echoes_no_cookie(srv, path):
    cookie = "dm_session=" + "c" * 40 + tag()
    r = srv.request("TRACE", path, headers={"Cookie": cookie})
    assert r.status_code == 405
    assert cookie not in r.text and "message/http" not in r.headers.get("Content-Type", "")


# ---- slow clients ----

def event_max_request_workers(srv):
    """MaxRequestWorkers of the generated configuration's event MPM."""
    with open(os.path.join(srv.var, "httpd.conf")) as f:
        block = re.search(r"<IfModule mpm_event_module>(.*?)</IfModule>", f.read(), re.S).group(1)
    return int(re.search(r"MaxRequestWorkers\s+(\d+)", block).group(1))


def test_slow_body_clients_do_not_starve_a_normal_request(srv):
    """MaxRequestWorkers + 6 connections each send a member's write whose
    1000-byte body comes one byte a second; without mod_reqtimeout they
    hold every worker for 1000 s and /api/health waits for a worker past
    its client's timeout. With it each is cut 20 s into its body (408), and
    the health check is served."""
    slow = event_max_request_workers(srv) + 6
    m = register_member(srv, "slow")
    auth = bearer(m)["Authorization"]
    head = ("PUT /api/me/email-preferences HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Authorization: %s\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n" % auth).encode()
    stop = threading.Event()
    cut = []

    def trickle():
        try:
            c = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        except OSError:
            return
        try:
            c.sendall(head)
            for _ in range(1000):
                if stop.wait(1):
                    return
                c.sendall(b" ")
        except OSError:
            cut.append(1)  # the server closed the connection
        finally:
            c.close()

    # the worker table full for a moment is what this test provokes (Apache
    # says so as AH00484/AH03490, or as AH10159 when its maintenance sees the
    # idle threads fall within MinSpareThreads of the maximum first)
    srv.expect_log(r"AH00484|AH03490|AH10159")
    threads = [threading.Thread(target=trickle, daemon=True) for _ in range(slow)]
    for t in threads:
        t.start()
    time.sleep(3)  # let them all take a worker
    try:
        r = requests.get(srv.url + "/api/health", timeout=120)
        assert r.status_code == 200
        # and every slow client is cut (those that waited for a worker
        # once they have one), long before its 1000 s body is through
        for t in threads:
            t.join(timeout=120)
    finally:
        stop.set()
    assert len(cut) == slow


# ---- access tokens end with their login ----

def me(s, h):
    return requests.get(s.url + "/api/me", headers=h, timeout=10)


def test_logout_ends_the_access_token_at_the_next_request(srv):
    m = register_member(srv, "out")
    h = bearer(m)
    assert me(srv, h).status_code == 200
    r = requests.post(srv.url + "/api/auth/logout", timeout=10,
                      json={"refresh_token": m["tokens"]["refresh_token"],
                            "return_tokens": True})
    assert r.status_code == 200, r.text
    r = me(srv, h)
    assert r.status_code == 401
    assert error_of(r)["message"] == "the session has ended; log in again"
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="deepmine"'


def test_refresh_token_reuse_ends_every_access_token_of_the_login(srv):
    m = register_member(srv, "reuse")
    first = bearer(m)
    r = requests.post(srv.url + "/api/auth/refresh", timeout=10,
                      json={"refresh_token": m["tokens"]["refresh_token"],
                            "return_tokens": True})
    assert r.status_code == 200, r.text
    second = bearer(r.json())
    assert me(srv, first).status_code == 200 and me(srv, second).status_code == 200
    # another login of the same member is not touched
    r = requests.post(srv.url + "/api/auth/login", timeout=10,
                      json={"email": m["user"]["email"], "password": "Glacier-Pumpkin-Orbit-42",
                            "return_tokens": True})
    assert r.status_code == 200, r.text
    other = bearer(r.json())
    # the first refresh token again: theft detected, the login revoked
    srv.expect_log(r"DM00400")
    r = requests.post(srv.url + "/api/auth/refresh", timeout=10,
                      json={"refresh_token": m["tokens"]["refresh_token"],
                            "return_tokens": True})
    assert r.status_code == 401
    assert me(srv, first).status_code == 401
    assert me(srv, second).status_code == 401
    assert me(srv, other).status_code == 200


def test_an_access_token_without_its_login_is_refused(srv):
    """A token signed without the family claim (as before this version)
    is refused: the refresh token gets one that has it."""
    import base64
    import hashlib
    import hmac
    import struct
    m = register_member(srv, "nofam")
    with open(os.path.join(srv.var, "secret.key"), "rb") as f:
        master = f.read()
    key = hashlib.blake2b(b"", digest_size=32, key=master,
                          salt=struct.pack("<Q", 1) + b"\0" * 8,
                          person=b"DeepMine" + b"\0" * 8).digest()

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    now = int(time.time())
    payload = json.loads(base64.urlsafe_b64decode(
        m["tokens"]["access_token"].split(".")[1] + "=="))
    claims = {"jti": "x", "typ": "member", "sub": str(m["user"]["id"]), "ver": payload["ver"],
              "iat": now, "nbf": now, "exp": now + 900}
    signing = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
    tok = signing + "." + b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())
    assert me(srv, {"Authorization": "Bearer " + tok}).status_code == 401
    # the same claims with the login's family claim pass: the key is right
    claims["fam"] = payload["fam"]
    signing = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
    tok = signing + "." + b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())
    assert me(srv, {"Authorization": "Bearer " + tok}).status_code == 200


# ---- the Origin rule ----

def test_bearer_writes_from_a_foreign_origin_are_refused(srv):
    m = register_member(srv, "origin")
    h = bearer(m)
    body = {"commission_digest": False}
    r = requests.put(srv.url + "/api/me/email-preferences", json=body, timeout=10,
                     headers=dict(h, Origin="https://evil.example"))
    assert r.status_code == 403
    assert error_of(r)["code"] == "csrf"
    assert error_of(r)["message"] == "requests from https://evil.example are not allowed"
    assert requests.get(srv.url + "/api/me/email-preferences", headers=h,
                        timeout=10).json()["email_preferences"]["commission_digest"] is True
    # no Origin (a native client) and our own origin are fine
    r = requests.put(srv.url + "/api/me/email-preferences", json=body, headers=h, timeout=10)
    assert r.status_code == 200, r.text
    r = requests.put(srv.url + "/api/me/email-preferences", json={"commission_digest": True},
                     timeout=10, headers=dict(h, Origin=srv.url))
    assert r.status_code == 200, r.text
    # reads are not writes: a foreign Origin may read with a Bearer token
    r = requests.get(srv.url + "/api/me", timeout=10, headers=dict(h, Origin="https://evil.example"))
    assert r.status_code == 200


# ---- rate rules ----

def test_a_second_member_verifies_after_another_used_up_password_reset(new_server):
    s = new_server(local_conf="DeepMinePasswordHash 1 8\n").start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    a = register_member(s, "ra")
    b = register_member(s, "rb")
    for _ in range(3):
        r = requests.post(s.url + "/api/auth/password-reset", json={"email": a["user"]["email"]},
                          timeout=10)
        assert r.status_code == 202, r.text
    r = requests.post(s.url + "/api/auth/password-reset", json={"email": a["user"]["email"]},
                      timeout=10)
    assert r.status_code == 429
    assert r.headers["RateLimit-Policy"] == '"password-reset";q=3;w=3600'
    [v] = queued_mail(s, b["user"]["email"], "email_verification")
    r = requests.post(s.url + "/api/auth/verify-email", json={"token": v["token"]}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["RateLimit-Policy"] == '"verify-email";q=10;w=3600'
    # a reset link works too, on the verification rule
    reset = queued_mail(s, a["user"]["email"], "password_reset")[-1]
    r = requests.post(s.url + "/api/auth/password-reset/confirm", timeout=10,
                      json={"token": reset["token"], "password": "Another-Long-Passphrase-7"})
    assert r.status_code == 200, r.text
    assert r.headers["RateLimit-Policy"] == '"verify-email";q=10;w=3600'
    # verify-email: 10 an hour per address, failed attempts included
    for i in range(8):
        r = requests.post(s.url + "/api/auth/verify-email", json={"token": "x" * 43}, timeout=10)
        assert r.status_code == 400, (i, r.text)
    r = requests.post(s.url + "/api/auth/verify-email", json={"token": "x" * 43}, timeout=10)
    assert r.status_code == 429
