"""Staff: accounts made with deepminectl, login/logout with the dm_admin
cookie, the wall between member and staff credentials, the role table,
member search (FTS5), detail with upline and counts, suspension that ends
a member's live session, the audit log, CSRF, and the import of members
from the old platform with bcrypt hashes upgraded at their first login."""
import os
import re
import uuid
import warnings

import pytest
import requests

from conftest import Server, assert_clean_log, error_of

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
    s.staff = {}
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def tag():
    return uuid.uuid4().hex[:10]


def create_staff(s, role, email=None):
    email = email or "%s-%s@staff.example.com" % (role, tag())
    r = s.ctl("staff", "create", "--email", email, "--role", role)
    out = dict(re.findall(r"^\s+(email|role|password):\s+(\S+)$", r.stdout, re.M))
    assert out["role"] == role and out["email"] == email, r.stdout
    assert len(out["password"]) == 20 and not set(out["password"]) & set("0O1Il"), out
    return email, out["password"]


def staff_browser(s, email, password):
    b = requests.Session()
    b.headers["Origin"] = s.url
    r = b.post(s.url + "/api/admin/auth/login", json={"email": email, "password": password},
               timeout=10)
    assert r.status_code == 200, r.text
    b.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    b.login_answer = r
    return b


def staff(s, role):
    """A logged-in staff browser of `role`, one per role per server."""
    if role not in s.staff:
        s.staff[role] = staff_browser(s, *create_staff(s, role))
    return s.staff[role]


def register(s, email=None, **extra):
    body = {"email": email or "m%s@example.com" % tag(), "password": PASSWORD,
            "accept_terms": True, "terms_version": s.terms, "return_tokens": True}
    body.update(extra)
    r = requests.post(s.url + "/api/auth/register", json=body, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def audit(s, **params):
    r = staff(s, "owner").get(s.url + "/api/admin/audit", params=params)
    assert r.status_code == 200, r.text
    return r.json()


# ---- sessions ----

def test_login_answers_staff_and_sets_strict_admin_cookie(srv):
    email, password = create_staff(srv, "owner")
    b = staff_browser(srv, email.upper(), password)
    body = b.login_answer.json()
    assert set(body) == {"staff", "csrf_token"}
    assert body["staff"]["email"] == email and body["staff"]["role"] == "owner"
    assert isinstance(body["staff"]["id"], int)
    raw = b.login_answer.raw.headers.getlist("Set-Cookie")
    admin = [c for c in raw if c.startswith("dm_admin=")][0]
    csrf = [c for c in raw if c.startswith("dm_csrf=")][0]
    assert "HttpOnly" in admin and "SameSite=Strict" in admin
    assert "Path=/api/admin;" in admin and "Max-Age=28800" in admin
    # public URL is http on loopback here: no Secure (see session.c)
    assert "Secure" not in admin
    assert "HttpOnly" not in csrf and "Path=/;" in csrf
    assert b.cookies.get("dm_csrf") == body["csrf_token"]
    # only the hash of the session token is stored
    token = b.cookies.get("dm_admin")
    assert len(token) == 43
    assert srv.sql("SELECT COUNT(*) FROM staff_sessions WHERE token_hash = '%s'" % token) == [(0,)]
    assert b.get(srv.url + "/api/admin/users").status_code == 200
    assert any(e["action"] == "staff.login" and e["staff"]["email"] == email
               for e in audit(srv, action="staff.login")["entries"])


def test_wrong_password_and_unknown_email_look_the_same(srv):
    email, password = create_staff(srv, "support")
    a = requests.post(srv.url + "/api/admin/auth/login",
                      json={"email": email, "password": password + "x"})
    b = requests.post(srv.url + "/api/admin/auth/login",
                      json={"email": "nobody-%s@example.com" % tag(), "password": password})
    assert a.status_code == b.status_code == 401
    assert error_of(a) == error_of(b)
    assert "dm_admin" not in a.cookies
    for body in [{}, {"email": email}, {"email": 5, "password": "x"}]:
        r = requests.post(srv.url + "/api/admin/auth/login", json=body)
        assert r.status_code == 400 and error_of(r)["code"] == "invalid", body


def test_disabled_staff_account_is_403_at_login_and_on_live_session(srv):
    email, password = create_staff(srv, "kyc")
    b = staff_browser(srv, email, password)
    srv.sql("UPDATE staff SET status = 'disabled' WHERE email = '%s'" % email)
    r = requests.post(srv.url + "/api/admin/auth/login", json={"email": email, "password": password})
    assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
    r = b.get(srv.url + "/api/admin/users")
    assert r.status_code == 403


def test_logout_revokes_the_session_and_clears_the_cookie(srv):
    b = staff_browser(srv, *create_staff(srv, "finance"))
    token = b.cookies.get("dm_admin")
    r = b.post(srv.url + "/api/admin/auth/logout")
    assert r.status_code == 200 and r.json() == {"logged_out": True}
    cleared = [c for c in r.raw.headers.getlist("Set-Cookie") if c.startswith("dm_admin=")][0]
    assert "Max-Age=0" in cleared
    r = requests.get(srv.url + "/api/admin/users", cookies={"dm_admin": token})
    assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
    # a second logout (no session) is fine
    assert requests.post(srv.url + "/api/admin/auth/logout").status_code == 200
    assert audit(srv, action="staff.logout")["entries"]


def test_no_session_and_garbage_sessions_are_401(srv):
    for cookies in [{}, {"dm_admin": "x"}, {"dm_admin": "a" * 43}, {"dm_admin": "a" * 5000}]:
        r = requests.get(srv.url + "/api/admin/users", cookies=cookies)
        assert r.status_code == 401, cookies
        assert error_of(r)["code"] == "unauthorized"


# ---- member and staff credentials never cross ----

def test_member_token_on_staff_route_is_401(srv):
    m = register(srv)
    access = m["tokens"]["access_token"]
    for kw in [{"headers": {"Authorization": "Bearer " + access}},
               {"cookies": {"dm_session": access}},
               {"cookies": {"dm_admin": access}}]:
        r = requests.get(srv.url + "/api/admin/users", **kw)
        assert r.status_code == 401, kw
        assert error_of(r)["code"] == "unauthorized"
    # a member's browser session (cookies + CSRF) on a staff write
    b = requests.Session()
    b.headers["Origin"] = srv.url
    r = b.post(srv.url + "/api/auth/login", json={"email": m["user"]["email"], "password": PASSWORD})
    assert r.status_code == 200
    r = b.patch(srv.url + "/api/admin/users/%d" % m["user"]["id"], json={"status": "suspended"},
                headers={"X-CSRF-Token": b.cookies.get("dm_csrf")})
    assert r.status_code == 401
    assert srv.sql("SELECT status FROM users WHERE id = %d" % m["user"]["id"]) == [("active",)]


def test_staff_session_never_acts_as_member(srv):
    token = staff(srv, "owner").cookies.get("dm_admin")
    for kw in [{"headers": {"Authorization": "Bearer " + token}},
               {"cookies": {"dm_session": token}},
               {"cookies": {"dm_admin": token}}]:
        r = requests.get(srv.url + "/api/me", **kw)
        assert r.status_code == 401, kw
        assert error_of(r)["code"] == "unauthorized"


# ---- roles ----

def test_role_table_finance_reads_but_cannot_suspend(srv):
    m = register(srv)["user"]
    uid = m["id"]
    fin = staff(srv, "finance")
    assert fin.get(srv.url + "/api/admin/users").status_code == 200
    assert fin.get(srv.url + "/api/admin/users/%d" % uid).status_code == 200
    r = fin.patch(srv.url + "/api/admin/users/%d" % uid, json={"status": "suspended"})
    assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
    assert "finance" in error_of(r)["message"]
    r = fin.get(srv.url + "/api/admin/audit")
    assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
    kyc = staff(srv, "kyc")
    assert kyc.get(srv.url + "/api/admin/users/%d" % uid).status_code == 200
    assert kyc.patch(srv.url + "/api/admin/users/%d" % uid,
                     json={"status": "suspended"}).status_code == 403
    assert kyc.get(srv.url + "/api/admin/audit").status_code == 403
    sup = staff(srv, "support")
    assert sup.get(srv.url + "/api/admin/audit").status_code == 403
    r = sup.patch(srv.url + "/api/admin/users/%d" % uid, json={"status": "suspended"})
    assert r.status_code == 200 and r.json()["user"]["status"] == "suspended"
    r = sup.patch(srv.url + "/api/admin/users/%d" % uid, json={"status": "active"})
    assert r.status_code == 200 and r.json()["user"]["status"] == "active"
    # nothing of the refused attempts reached the audit log
    entries = audit(srv, target_type="user", target_id=str(uid))["entries"]
    assert [e["staff"]["email"] for e in entries] == [sup.login_answer.json()["staff"]["email"]] * 2


def test_csrf_missing_or_foreign_origin_on_patch_is_403_csrf(srv):
    uid = register(srv)["user"]["id"]
    own = staff(srv, "owner")
    url = srv.url + "/api/admin/users/%d" % uid
    for headers in [{"X-CSRF-Token": None}, {"X-CSRF-Token": "wrong"},
                    {"Origin": "http://evil.example"}, {"Origin": None}]:
        r = own.patch(url, json={"status": "suspended"}, headers=headers)
        assert r.status_code == 403 and error_of(r)["code"] == "csrf", headers
    assert srv.sql("SELECT status FROM users WHERE id = %d" % uid) == [("active",)]
    # a staff login from a foreign page is refused too
    r = requests.post(srv.url + "/api/admin/auth/login", headers={"Origin": "http://evil.example"},
                      json={"email": "x@example.com", "password": "y"})
    assert r.status_code == 403 and error_of(r)["code"] == "csrf"


# ---- search ----

def test_search_by_email_prefix_referral_code_and_name(srv):
    t = tag()
    users = [register(srv, email="%s.alpha%d@search.example.com" % (t, i))["user"]
             for i in range(3)]
    srv.sql("UPDATE users SET name = 'Zoë Quartermain' WHERE id = %d" % users[1]["id"])
    own = staff(srv, "owner")

    def ids(**params):
        r = own.get(srv.url + "/api/admin/users", params=params)
        assert r.status_code == 200, r.text
        return [u["id"] for u in r.json()["users"]]

    want = [u["id"] for u in reversed(users)]  # newest first
    assert ids(q=t) == want
    assert set(want) <= set(ids(q=t[:5], limit=200))
    assert ids(q=users[2]["referral_code"]) == [users[2]["id"]]
    assert ids(q=users[2]["referral_code"].lower()[:6]) == [users[2]["id"]]
    assert ids(q="quartermain") == [users[1]["id"]]
    assert ids(q="zoe quarter") == [users[1]["id"]]  # diacritics folded, words ANDed
    assert ids(q="%s alpha0" % t) == [users[0]["id"]]
    assert ids(q="%s@search" % users[0]["email"].split("@")[0]) == [users[0]["id"]]
    # one row has everything staff search shows
    r = own.get(srv.url + "/api/admin/users", params={"q": users[1]["referral_code"]}).json()
    row = r["users"][0]
    assert set(row) == {"id", "email", "name", "referral_code", "referrer_id", "status",
                        "vip_level", "kyc_status", "created_at"}
    assert row["name"] == "Zoë Quartermain" and r["next_cursor"] is None
    # status filter
    srv.sql("UPDATE users SET status = 'suspended' WHERE id = %d" % users[0]["id"])
    try:
        assert ids(q=t, status="suspended") == [users[0]["id"]]
        assert ids(q=t, status="active") == [users[2]["id"], users[1]["id"]]
        assert users[0]["id"] in ids(status="suspended", limit=200)
    finally:
        srv.sql("UPDATE users SET status = 'active' WHERE id = %d" % users[0]["id"])


def test_search_pages_with_keyset_cursor(srv):
    t = tag()
    made = [register(srv, email="%s%d@pages.example.com" % (t, i))["user"]["id"] for i in range(5)]
    own = staff(srv, "owner")
    seen, cursor = [], None
    for _ in range(10):
        params = {"q": t, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = own.get(srv.url + "/api/admin/users", params=params).json()
        seen += [u["id"] for u in page["users"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str) and len(page["users"]) == 2
    assert seen == sorted(made, reverse=True)
    # without q: every member, newest first
    page = own.get(srv.url + "/api/admin/users", params={"limit": 3}).json()
    got = [u["id"] for u in page["users"]]
    assert got == sorted(got, reverse=True) and page["next_cursor"] == str(got[-1])


def test_search_with_fts_metacharacters_never_errors(srv):
    own = staff(srv, "owner")
    for q in ['"', '""', '*', '"abc', 'NEAR(', 'NEAR(a b)', '-', '-abc', 'a OR b', 'AND',
              'NOT x', 'email:foo', '^abc', '(', ')', '{email}: x', "'; DROP TABLE users; --",
              'a"b*c', '\u00e9\u00e8', '\U0001F600', 'a' * 200, ' '.join(['w'] * 16)]:
        r = own.get(srv.url + "/api/admin/users", params={"q": q})
        assert r.status_code == 200, (q, r.text)
        assert isinstance(r.json()["users"], list)
    assert srv.sql("SELECT COUNT(*) FROM users")[0][0] > 0


def test_search_input_errors_name_the_field(srv):
    own = staff(srv, "owner")
    for params, field in [({"status": "banned"}, "status"), ({"limit": "0"}, "limit"),
                          ({"limit": "201"}, "limit"), ({"cursor": "abc"}, "cursor"),
                          ({"q": "a" * 201}, "q"), ({"q": " ".join(["w"] * 17)}, "q"),
                          ({"q": "a\x01b"}, "q")]:
        r = own.get(srv.url + "/api/admin/users", params=params)
        assert r.status_code == 400, params
        err = error_of(r)
        assert err["code"] == "invalid" and err["field"] == field, (params, err)


# ---- detail ----

def test_detail_has_upline_and_downline_counts(srv):
    a = register(srv)["user"]
    b = register(srv, referral_code=a["referral_code"])["user"]
    c = register(srv, referral_code=b["referral_code"])["user"]
    d = register(srv, referral_code=b["referral_code"])["user"]
    own = staff(srv, "owner")

    def detail(u):
        r = own.get(srv.url + "/api/admin/users/%d" % u["id"])
        assert r.status_code == 200, r.text
        return r.json()

    da = detail(a)
    assert set(da) == {"user", "upline", "network", "contracts", "contracts_next_cursor",
                       "orders", "orders_next_cursor"}
    assert da["contracts"] == [] and da["orders"] == [] and da["contracts_next_cursor"] is None
    assert da["user"]["id"] == a["id"] and da["user"]["referrer_id"] is None
    assert da["user"]["status"] == "active" and da["upline"] == []
    assert da["network"] == {"direct": 1, "total": 3, "levels": [1, 2] + [0] * 8}
    dc = detail(c)
    assert dc["user"]["referrer_id"] == b["id"]
    assert dc["upline"] == [{"level": 1, "id": b["id"], "email": b["email"]},
                            {"level": 2, "id": a["id"], "email": a["email"]}]
    assert dc["network"]["total"] == 0
    db_ = detail(b)
    assert db_["network"]["direct"] == 2 and len(db_["upline"]) == 1
    assert detail(d)["upline"][1]["id"] == a["id"]
    r = own.get(srv.url + "/api/admin/users/999999999")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    for bad in ["abc", "0", "-1", "1e3"]:
        r = own.get(srv.url + "/api/admin/users/" + bad)
        assert r.status_code == 400 and error_of(r)["field"] == "id", bad


def test_detail_upline_stops_at_ten_levels(srv):
    chain = [register(srv)["user"]]
    for _ in range(11):
        chain.append(register(srv, referral_code=chain[-1]["referral_code"])["user"])
    r = staff(srv, "support").get(srv.url + "/api/admin/users/%d" % chain[-1]["id"]).json()
    assert [u["id"] for u in r["upline"]] == [u["id"] for u in reversed(chain[1:-1])]
    assert len(r["upline"]) == 10
    top = staff(srv, "support").get(srv.url + "/api/admin/users/%d" % chain[0]["id"]).json()
    assert top["network"]["levels"] == [1] * 10 and top["network"]["total"] == 11


# ---- suspension ----

def test_suspend_ends_the_members_live_session_at_the_next_request(srv):
    m = register(srv)
    uid = m["user"]["id"]
    h = {"Authorization": "Bearer " + m["tokens"]["access_token"]}
    assert requests.get(srv.url + "/api/me", headers=h).status_code == 200
    own = staff(srv, "owner")
    r = own.patch(srv.url + "/api/admin/users/%d" % uid, json={"status": "suspended"})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["status"] == "suspended"
    # the very next request with the live access token is refused, and
    # so is a refresh: 403, the account is suspended
    r = requests.get(srv.url + "/api/me", headers=h)
    assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
    r = requests.post(srv.url + "/api/auth/refresh",
                      json={"refresh_token": m["tokens"]["refresh_token"]})
    assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
    r = requests.post(srv.url + "/api/auth/login",
                      json={"email": m["user"]["email"], "password": PASSWORD})
    assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
    # suspending again changes and records nothing
    n = len(audit(srv, target_type="user", target_id=str(uid))["entries"])
    r = own.patch(srv.url + "/api/admin/users/%d" % uid, json={"status": "suspended"})
    assert r.status_code == 200
    assert len(audit(srv, target_type="user", target_id=str(uid))["entries"]) == n == 1
    # unsuspend: the member logs in again
    r = own.patch(srv.url + "/api/admin/users/%d" % uid, json={"status": "active"})
    assert r.status_code == 200 and r.json()["user"]["status"] == "active"
    r = requests.post(srv.url + "/api/auth/login",
                      json={"email": m["user"]["email"], "password": PASSWORD,
                            "return_tokens": True})
    assert r.status_code == 200
    h = {"Authorization": "Bearer " + r.json()["tokens"]["access_token"]}
    assert requests.get(srv.url + "/api/me", headers=h).status_code == 200
    # the audit log has both, newest first, with before/after, who and where
    entries = audit(srv, target_type="user", target_id=str(uid))["entries"]
    assert [e["action"] for e in entries] == ["user.unsuspend", "user.suspend"]
    unsus, sus = entries
    assert sus["before"] == {"status": "active"} and sus["after"] == {"status": "suspended"}
    assert unsus["before"] == {"status": "suspended"} and unsus["after"] == {"status": "active"}
    owner_staff = own.login_answer.json()["staff"]
    assert sus["staff"] == {"id": owner_staff["id"], "email": owner_staff["email"]}
    assert sus["ip"] == "127.0.0.1" and sus["target_type"] == "user"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", sus["created_at"])


def test_patch_input_errors(srv):
    uid = register(srv)["user"]["id"]
    own = staff(srv, "owner")
    url = srv.url + "/api/admin/users/%d" % uid
    for body, code, field in [({"status": "banned"}, "invalid", "status"),
                              ({}, "invalid", "status"), ({"status": 1}, "invalid", "status")]:
        r = own.patch(url, json=body)
        assert r.status_code == 400, body
        err = error_of(r)
        assert err["code"] == code and err["field"] == field, (body, err)
    r = own.patch(url, data="{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and error_of(r)["code"] == "bad_json"
    r = own.patch(srv.url + "/api/admin/users/999999999", json={"status": "suspended"})
    assert r.status_code == 404
    r = own.delete(url)
    assert r.status_code == 405 and "PATCH" in r.headers["Allow"]


# ---- audit ----

def test_audit_lists_newest_first_with_cursor_and_filters(srv):
    own = staff(srv, "owner")
    uid = register(srv)["user"]["id"]
    for status in ["suspended", "active", "suspended", "active"]:
        assert own.patch(srv.url + "/api/admin/users/%d" % uid,
                         json={"status": status}).status_code == 200
    first = audit(srv, target_type="user", target_id=str(uid), limit=3)
    assert len(first["entries"]) == 3 and first["next_cursor"]
    rest = audit(srv, target_type="user", target_id=str(uid), limit=3,
                 cursor=first["next_cursor"])
    assert len(rest["entries"]) == 1 and rest["next_cursor"] is None
    ids = [e["id"] for e in first["entries"] + rest["entries"]]
    assert ids == sorted(ids, reverse=True)
    sus = audit(srv, action="user.suspend", target_type="user", target_id=str(uid))["entries"]
    assert len(sus) == 2 and all(e["action"] == "user.suspend" for e in sus)
    every = audit(srv, limit=200)["entries"]
    assert every == sorted(every, key=lambda e: -e["id"])
    # staff accounts made at the console are there, by nobody
    made = audit(srv, action="staff.create")["entries"]
    assert made and all(e["staff"] is None and e["ip"] == "console" for e in made)
    assert {"email", "role"} <= set(made[0]["after"])
    r = own.get(srv.url + "/api/admin/audit", params={"target_id": "5"})
    assert r.status_code == 400 and error_of(r)["field"] == "target_id"


# ---- import from the old platform ----

def bcrypt(password):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))


def codes(n):
    alphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
    raw = uuid.uuid4().int
    out = []
    for _ in range(n):
        c = ""
        for _ in range(8):
            raw, k = divmod(raw, len(alphabet))
            c += alphabet[k]
        out.append(c)
        raw = uuid.uuid4().int
    return out


def write_csv(tmp_path, rows, name="old.csv"):
    path = tmp_path / name
    path.write_text("email,bcrypt_hash,referral_code,referrer_code,created_at\n" +
                    "".join(",".join(r) + "\n" for r in rows))
    os.chmod(path, 0o644)
    return str(path)


def test_import_users_round_trip_upgrades_bcrypt_at_login(srv, tmp_path):
    t = tag()
    parent_code, child_code = codes(2)
    pw_child = "Old-Platform-Secret-9"
    parent_email = "parent-%s@old.example.com" % t
    child_email = "child-%s@old.example.com" % t
    hash_child = bcrypt(pw_child)
    assert hash_child.startswith("$2b$") and len(hash_child) == 60
    # the referral comes first in the file: the import orders them
    path = write_csv(tmp_path, [
        [child_email, hash_child, child_code.lower(), parent_code, "2021-03-04T05:06:07Z"],
        [parent_email, bcrypt("Parent-Secret-77").replace("$2b$", "$2y$", 1), parent_code, "",
         "1577836800"],
    ])
    r = srv.ctl("import-users", path)
    assert "2 member(s) imported" in r.stdout, r.stdout + r.stderr
    rows = srv.sql("SELECT u.email, u.password_hash, u.referral_code, p.email, u.terms_version, "
                   "u.created_at, u.terms_accepted_at FROM users u LEFT JOIN users p "
                   "ON p.id = u.referrer_id WHERE u.email = '%s'" % child_email)
    assert rows == [(child_email, hash_child, child_code, parent_email, "imported", 1614834367,
                     1614834367)]
    # found by staff search, placed under its referrer
    own = staff(srv, "owner")
    found = own.get(srv.url + "/api/admin/users", params={"q": child_code}).json()["users"]
    assert [u["email"] for u in found] == [child_email]
    d = own.get(srv.url + "/api/admin/users/%d" % found[0]["id"]).json()
    assert [u["email"] for u in d["upline"]] == [parent_email]
    # the import is in the audit log
    e = audit(srv, action="users.import")["entries"][0]
    assert e["staff"] is None and e["after"]["members"] == 2

    # the member logs in with the old password; the hash becomes argon2id
    r = requests.post(srv.url + "/api/auth/login", json={"email": child_email, "password": pw_child})
    assert r.status_code == 200, r.text
    stored = srv.sql("SELECT password_hash FROM users WHERE email = '%s'" % child_email)[0][0]
    assert stored.startswith("$argon2id$")
    r = requests.post(srv.url + "/api/auth/login", json={"email": child_email, "password": pw_child})
    assert r.status_code == 200
    r = requests.post(srv.url + "/api/auth/login",
                      json={"email": child_email, "password": pw_child + "x"})
    assert r.status_code == 401
    # the $2y$ hash verifies too
    r = requests.post(srv.url + "/api/auth/login",
                      json={"email": parent_email, "password": "Parent-Secret-77"})
    assert r.status_code == 200, r.text


def test_import_users_is_all_or_nothing_and_names_the_first_bad_line(srv, tmp_path):
    before = srv.sql("SELECT COUNT(*) FROM users")[0][0]
    good_hash = bcrypt("Whatever-Secret-123")
    a, b, c = codes(3)
    cases = [
        ([["ok-%s@x.example.com" % tag(), good_hash, a, "", "1577836800"],
          ["bad-%s@x.example.com" % tag(), "$1$notbcrypt", b, "", "1577836800"]],
         "line 3", "bcrypt_hash"),
        ([["not-an-email", good_hash, a, "", "1577836800"]], "line 2", "email"),
        ([["x-%s@x.example.com" % tag(), good_hash, "0OIL0OIL", "", "1577836800"]], "line 2",
         "referral_code"),
        ([["x-%s@x.example.com" % tag(), good_hash, a, b, "1577836800"]], "line 2",
         "referrer_code"),
        ([["x-%s@x.example.com" % tag(), good_hash, a, b, "1577836800"],
          ["y-%s@x.example.com" % tag(), good_hash, b, a, "1577836800"]], "line 2", "cycle"),
        ([["x-%s@x.example.com" % tag(), good_hash, a, "", "yesterday"]], "line 2", "created_at"),
        ([["x-%s@x.example.com" % tag(), good_hash, a, ""]], "line 2", "5 fields"),
        ([["dup-%s@x.example.com" % t, good_hash, code, "", "1577836800"]
          for t, code in [("same", a), ("same", b)]], "line 3", "repeats line 2"),
    ]
    for rows, where, what in cases:
        path = write_csv(tmp_path, rows)
        r = srv.ctl("import-users", path, check=False)
        assert r.returncode == 1, (rows, r.stdout)
        assert where in r.stderr and what in r.stderr, (rows, r.stderr)
        assert "nothing imported" in r.stderr
    assert srv.sql("SELECT COUNT(*) FROM users")[0][0] == before
    # an address that is already a member
    existing = register(srv)["user"]["email"]
    path = write_csv(tmp_path, [[existing, good_hash, c, "", "1577836800"]])
    r = srv.ctl("import-users", path, check=False)
    assert r.returncode == 1 and "exists" in r.stderr
    # a wrong header
    p = tmp_path / "bad-header.csv"
    p.write_text("mail,hash\n")
    r = srv.ctl("import-users", str(p), check=False)
    assert r.returncode == 1 and "line 1" in r.stderr
    r = srv.ctl("import-users", check=False)
    assert r.returncode == 2


def test_ensure_owner_creates_only_the_first_owner(new_server):
    s = new_server(local_conf=FAST)
    r = s.ctl("staff", "ensure-owner", "--email", "owner@deepmine.local")
    assert "owner@deepmine.local" in r.stdout and "password:" in r.stdout
    password = re.search(r"password:\s+(\S+)", r.stdout).group(1)
    again = s.ctl("staff", "ensure-owner", "--email", "owner@deepmine.local")
    assert again.stdout == ""
    listing = s.ctl("staff", "list").stdout
    assert listing.count("owner@deepmine.local") == 1
    s.start()
    b = staff_browser(s, "owner@deepmine.local", password)
    assert b.login_answer.json()["staff"]["role"] == "owner"
    for args in [("staff",), ("staff", "create", "--email", "x@example.com"),
                 ("staff", "create", "--role", "owner"), ("staff", "bogus")]:
        assert s.ctl(*args, check=False).returncode == 2, args
    bad = s.ctl("staff", "create", "--email", "x@example.com", "--role", "boss", check=False)
    assert bad.returncode == 1 and "role" in bad.stderr
