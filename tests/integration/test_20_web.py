"""The member app and the staff console (web/, built into build/web/ by
`make web`; docs/ui.md): how Apache serves them (deep links, CSP, caching,
compression) and, in Debian's Chromium driven by playwright-core
(tests/browser/*.mjs), every page at 375x667 and 1280x800 without a console
error, a CSP violation or a serious accessibility violation (axe-core),
the member journey from a referral link to a withdrawal, the staff
journey, and the first-load budget. Screenshots go to build/screenshots/.
The fake clock drives the accrual the earnings chart shows."""
import gzip
import json
import os
import re
import subprocess

import pytest
import requests

from conftest import (CTL, PASSWORD, ROOT, Server, assert_clean_log, book_address, error_of,
                      register_member, tag)

# 2026-11-25T10:00:00Z, a whole hour
T0 = 1795600800
HOUR = 3600
# a confirmed withdrawal address is usable a minute later; the tests step the
# fake clock over it
ADDRESS_DELAY = 60
FAST = ("DeepMineAccrualDelay 0\n"
        "DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit password-reset 10000/1m ip\n"
        "DeepMineRateLimit verify-email 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit confirm-address 10000/1m ip\n"
        "DeepMineRateLimit login-2fa 10000/1m ip\n"
        "DeepMineRateLimit login-2fa-member 10000/1m member\n"
        "DeepMineWithdrawalAddressDelay %d\n" % ADDRESS_DELAY)
BROWSER = os.path.join(ROOT, "tests", "browser")


@pytest.fixture(scope="module")
def srv():
    assert os.path.exists(os.path.join(ROOT, "build", "web", "index.html")), \
        "the pages are not built: make web (make deps installs what it needs)"
    s = Server(mpm="event", local_conf=FAST, clock=T0 + 60)
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.address_delay = ADDRESS_DELAY
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def staff_login(s, role):
    """(e-mail, password) of a new staff account of `role`."""
    email = "%s-%s@staff.example.com" % (role, tag())
    out = s.ctl("staff", "create", "--email", email, "--role", role).stdout
    return email, re.search(r"^\s+password:\s+(\S+)$", out, re.M).group(1)


def node(s, script, **extra):
    """Runs tests/browser/<script> against the server; its output is shown
    and its exit code decides."""
    cfg = {"url": s.url, "var": s.var, "db": s.db, "ctl": CTL, "clock_file": s.clock_file,
           "password": PASSWORD, "terms": s.terms}
    cfg.update(extra)
    env = dict(os.environ, DM_WEB_TEST=json.dumps(cfg))
    r = subprocess.run(["node", os.path.join(BROWSER, script)], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    print(r.stdout)
    assert r.returncode == 0, "%s failed:\n%s\n%s" % (script, r.stdout, r.stderr)
    return r.stdout


def bearer_of(s, email):
    r = requests.post(s.url + "/api/auth/login", timeout=10,
                      json={"email": email, "password": PASSWORD, "return_tokens": True})
    assert r.status_code == 200, r.text
    return {"Authorization": "Bearer " + r.json()["tokens"]["access_token"]}


def wait_accrual(s, hour):
    import time
    deadline = time.time() + 60
    while time.time() < deadline:
        rows = s.sql("SELECT status FROM job_runs WHERE job = 'accrual' AND period_start = %d"
                     % hour)
        if rows and rows[0][0] == "ok":
            return
        time.sleep(0.1)
    raise AssertionError("accrual of hour %d did not finish" % hour)


# ---- how Apache serves the pages (no browser) ------------------------------

PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
            "connect-src 'self'; font-src 'self'; manifest-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def test_deep_links_answer_the_apps_and_api_paths_stay_the_modules(srv):
    index = srv.get("/").text
    admin = srv.get("/admin/").text
    for path in ["/dashboard", "/orders/42", "/verify-email?token=abc", "/reset-password?token=x",
                 "/register?ref=ABC", "/no/such/page"]:
        r = srv.get(path)
        assert (r.status_code, r.text) == (200, index), path
    for path in ["/admin/users/7", "/admin/withdrawals", "/admin/login"]:
        r = srv.get(path)
        assert (r.status_code, r.text) == (200, admin), path
    assert "<title>DeepMine staff console</title>" in admin
    # the API keeps its JSON errors and its own headers
    r = srv.get("/api/no-such-thing")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    assert r.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert r.headers["Cache-Control"] == "no-store"
    assert "Content-Encoding" not in srv.get("/api/packages").headers
    # a missing asset is a 404, not the app's page
    assert srv.get("/assets/missing-ABCDEFGH.js").status_code == 404


def test_pages_carry_the_strict_csp_and_no_inline_code(srv):
    for path in ["/", "/admin/", "/dashboard", "/manifest.webmanifest"]:
        r = srv.get(path)
        assert r.headers["Content-Security-Policy"] == PAGE_CSP, path
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    for path in ["/", "/admin/"]:
        html = srv.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script in " + path
        assert "<style" not in html and " style=" not in html, "inline style in " + path
        assert "http://" not in html.replace(srv.url, "") and "https://" not in html


def test_hashed_assets_are_cached_a_year_the_rest_revalidates_and_all_is_compressed(srv):
    html = srv.get("/").text
    assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', html)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for a in assets:
        assert re.search(r"-[A-Z0-9]{8}\.(js|css)$", a), a
        r = srv.get(a, headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert r.headers["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in r.headers["Vary"]
    r = srv.get("/", headers={"Accept-Encoding": "gzip"})
    assert r.headers["Cache-Control"] == "no-cache" and r.headers["Content-Encoding"] == "gzip"
    etag = r.headers["ETag"]
    r = srv.get("/", headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert r.status_code == 304
    raw = requests.get(srv.url + "/", headers={"Accept-Encoding": "gzip"}, stream=True,
                       timeout=10).raw.read()
    assert gzip.decompress(raw).decode() == html


def test_the_app_is_installable(srv):
    r = srv.get("/manifest.webmanifest")
    assert r.headers["Content-Type"] == "application/manifest+json"
    m = r.json()
    assert m["start_url"] == "/dashboard" and m["display"] == "standalone"
    sizes = {i["sizes"] for i in m["icons"]}
    assert {"192x192", "512x512"} <= sizes
    for i in m["icons"]:
        r = srv.get(i["src"])
        assert r.status_code == 200 and r.headers["Content-Type"] == i["type"], i
    assert '<link rel="manifest" href="/manifest.webmanifest">' in srv.get("/").text


def test_every_string_the_code_names_is_in_the_english_file():
    r = subprocess.run(["node", os.path.join(BROWSER, "strings.mjs")], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


# ---- in the browser ---------------------------------------------------------

def test_every_page_is_clean_accessible_and_pictured_at_both_sizes(srv):
    # A referrer with a contract, a team member who bought (a held
    # commission), a day of accrual, a withdrawal; and a staff owner.
    ref = register_member(srv, "ref")["user"]
    srv.ctl("ledger", "adjust", "--user", str(ref["id"]), "--amount", "200000000",
            "--reason", "test credit")
    srv.sql("UPDATE users SET email_verified_at = %d WHERE id = %d" % (T0, ref["id"]))
    h = bearer_of(srv, ref["email"])
    r = srv.request("POST", "/api/orders", headers=h, json={"package_id": 2, "pay_from_balance": True})
    assert r.status_code == 201, r.text
    order = r.json()["order"]["id"]
    down = register_member(srv, "down", referral_code=ref["referral_code"])["user"]
    srv.ctl("ledger", "adjust", "--user", str(down["id"]), "--amount", "29000000",
            "--reason", "test credit")
    r = srv.request("POST", "/api/orders", headers=bearer_of(srv, down["email"]),
                    json={"package_id": 2, "pay_from_balance": True})
    assert r.status_code == 201, r.text
    owner = staff_login(srv, "owner")
    b = requests.Session()
    b.headers["Origin"] = srv.url
    r = b.post(srv.url + "/api/admin/auth/login", json={"email": owner[0], "password": owner[1]})
    b.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    r = b.patch(srv.url + "/api/admin/users/%d/kyc" % ref["id"], json={"status": "approved"})
    assert r.status_code == 200, r.text
    # five hours of accrual
    for _ in range(5):
        ended = srv.now - srv.now % HOUR
        srv.set_clock(ended + HOUR + 30)
        wait_accrual(srv, ended)
    book_address(srv, bearer_of(srv, ref["email"]), "T" + "9" * 33)
    r = srv.request("POST", "/api/withdrawals", headers=bearer_of(srv, ref["email"]),
                    json={"amount_micros": 20000000, "destination": "T" + "9" * 33})
    assert r.status_code == 201, r.text
    contract = srv.get("/api/contracts", headers=bearer_of(srv, ref["email"])).json()["contracts"][0]
    node(srv, "pages.mjs", member={"email": ref["email"], "id": ref["id"],
                                    "code": ref["referral_code"]},
         order=order, contract=contract["id"], staff={"email": owner[0], "password": owner[1]})


def test_member_and_staff_journeys_from_the_referral_link_to_the_paid_withdrawal(srv):
    ref = register_member(srv, "referrer")["user"]
    owner = staff_login(srv, "owner")
    node(srv, "journey.mjs", referrer={"email": ref["email"], "code": ref["referral_code"],
                                       "id": ref["id"]},
         staff={"email": owner[0], "password": owner[1]}, address_delay=ADDRESS_DELAY)
    r = srv.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_first_load_of_the_dashboard_stays_within_150_kb(srv):
    m = register_member(srv, "budget")["user"]
    srv.ctl("ledger", "adjust", "--user", str(m["id"]), "--amount", "29000000",
            "--reason", "test credit")
    r = srv.request("POST", "/api/orders", headers=bearer_of(srv, m["email"]),
                    json={"package_id": 2, "pay_from_balance": True})
    assert r.status_code == 201, r.text
    out = node(srv, "budget.mjs", member={"email": m["email"]})
    assert "dashboard shown at" in out


def test_identity_check_and_payment_methods_pages_from_upload_to_approval(srv):
    m = register_member(srv, "kyc")["user"]
    srv.sql("UPDATE users SET email_verified_at = %d WHERE id = %d" % (T0, m["id"]))
    owner = staff_login(srv, "owner")
    node(srv, "kyc.mjs", member={"email": m["email"], "id": m["id"]},
         staff={"email": owner[0], "password": owner[1]})


def test_security_page_two_factor_login_sessions_and_password_change(srv):
    # a member who may withdraw (confirmed e-mail, approved identity check,
    # funds), so the withdrawal form with its 2FA code field shows
    m = register_member(srv, "sec")["user"]
    srv.sql("UPDATE users SET email_verified_at = %d, kyc_status = 'approved' WHERE id = %d"
            % (T0, m["id"]))
    srv.ctl("ledger", "adjust", "--user", str(m["id"]), "--amount", "30000000",
            "--reason", "test credit")
    owner = staff_login(srv, "owner")
    node(srv, "security.mjs", member={"email": m["email"], "id": m["id"]},
         staff={"email": owner[0], "password": owner[1]}, address_delay=ADDRESS_DELAY)
    r = srv.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
