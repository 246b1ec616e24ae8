"""Hourly yield accrual through the real Apache and its cron daemon, under
the fake clock (DeepMineTestMode + DeepMineClockFile, DeepMineAccrualDelay
0): a fixed-yield purchase whose wallet grows by exactly the prorated
amount each hour; a pool-yield hour that waits for its payout and is
caught up when staff record it (credits, fee and remainder exact, the
reconciliation balanced); a re-run of a past hour that changes nothing;
commissions on yield; the earnings chart and the contract statement; the
package terms in the catalogue and the admin; expiry with its e-mail.
`deepminectl ledger verify` runs after every money test."""
import calendar
import json
import re
import time

import pytest
import requests

from conftest import PASSWORD, Server, assert_clean_log, error_of, register_member, rfc3339, tag

# 2026-11-25T10:00:00Z, a whole hour
T0 = 1795600800
HOUR = 3600
DAY = 86400
FAST = ("DeepMineAccrualDelay 0\n"
        "DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n")


@pytest.fixture(scope="module")
def srv():
    s = Server(mpm="event", local_conf=FAST, clock=T0 + 60)
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.logins = {}
    s.packages = {p["name"].split()[0]: p for p in s.get("/api/packages").json()["packages"]}
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def wait_for(cond, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def unix(text):
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


# ---- who ------------------------------------------------------------------

def member(s, **extra):
    """A new member: (id, e-mail, referral code)."""
    body = register_member(s, "y", **extra)
    return body["user"]["id"], body["user"]["email"], body["user"]["referral_code"]


def login(s, email):
    """Fresh Bearer headers (the fake clock expires access tokens)."""
    r = requests.post(s.url + "/api/auth/login", timeout=10,
                      json={"email": email, "password": PASSWORD, "return_tokens": True})
    assert r.status_code == 200, r.text
    return {"Authorization": "Bearer " + r.json()["tokens"]["access_token"]}


def staff(s, role):
    """A freshly logged-in staff browser of `role` (one account per role)."""
    if role not in s.logins:
        email = "%s-%s@staff.example.com" % (role, tag())
        out = s.ctl("staff", "create", "--email", email, "--role", role).stdout
        s.logins[role] = (email, re.search(r"^\s+password:\s+(\S+)$", out, re.M).group(1))
    email, password = s.logins[role]
    b = requests.Session()
    b.headers["Origin"] = s.url
    r = b.post(s.url + "/api/admin/auth/login", json={"email": email, "password": password},
               timeout=10)
    assert r.status_code == 200, r.text
    b.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return b


# ---- money ----------------------------------------------------------------

def credit(s, user, amount):
    s.ctl("ledger", "adjust", "--user", str(user), "--amount", str(amount),
          "--reason", "test credit")


def assert_ledger_verifies(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def wallet(s, email):
    r = s.get("/api/me", headers=login(s, email))
    assert r.status_code == 200, r.text
    return r.json()["user"]["balance_micros"]


def buy(s, user, email, name):
    """Buys package `name` (first word) from the balance: the contract."""
    pkg = s.packages[name]
    credit(s, user, pkg["price_micros"])
    h = login(s, email)
    r = s.request("POST", "/api/orders", headers=h,
                  json={"package_id": pkg["id"], "pay_from_balance": True})
    assert r.status_code == 201, r.text
    oid = r.json()["order"]["id"]
    [c] = [c for c in contracts(s, email) if c["order_id"] == oid]
    return c


def contracts(s, email):
    r = s.get("/api/contracts", headers=login(s, email))
    assert r.status_code == 200, r.text
    return r.json()["contracts"]


def fixed_credit(daily, start, a, b):
    """The ARCHITECTURE rule: floor(D x (b - s) / 86400) - floor(D x (a - s) / 86400)."""
    return daily * (b - start) // DAY - daily * (a - start) // DAY


def hour_done(s, job, hour):
    rows = s.sql("SELECT status FROM job_runs WHERE job = '%s' AND period_start = %d"
                 % (job, hour))
    return rows and rows[0][0]


def next_hour(s):
    """Moves the clock 30 s into the next hour; returns the hour that ended."""
    ended = s.now - s.now % HOUR
    s.set_clock(ended + HOUR + 30)
    return ended


# ---- tests ----------------------------------------------------------------

def test_catalogue_shows_both_yield_modes_and_admin_validates_them(srv):
    pk = srv.get("/api/packages").json()["packages"]
    assert {p["yield_mode"] for p in pk} == {"pool", "fixed"}
    for p in pk:
        assert isinstance(p["fee_bp"], int) and 0 <= p["fee_bp"] <= 10000
        if p["yield_mode"] == "fixed":
            assert p["fee_bp"] == 0
    own = staff(srv, "owner")
    base = {"name": "Yield %s" % tag(), "hashrate_ths": 1, "price_micros": 1000000,
            "daily_yield_micros": 1000, "duration_days": 10}
    r = own.post(srv.url + "/api/admin/packages", json=base, timeout=10)
    assert r.status_code == 201, r.text
    made = r.json()["package"]
    assert (made["yield_mode"], made["fee_bp"]) == ("pool", 0)  # new packages follow the pool
    for bad, field in [({"yield_mode": "both"}, "yield_mode"), ({"fee_bp": 10001}, "fee_bp"),
                       ({"fee_bp": -1}, "fee_bp"), ({"yield_mode": "fixed", "fee_bp": 100},
                                                    "fee_bp"),
                       ({"yield_mode": 3}, "yield_mode")]:
        r = own.patch(srv.url + "/api/admin/packages/%d" % made["id"], json=bad, timeout=10)
        assert r.status_code == 400 and error_of(r)["field"] == field, (bad, r.text)
    r = own.patch(srv.url + "/api/admin/packages/%d" % made["id"],
                  json={"fee_bp": 750}, timeout=10)
    assert r.status_code == 200 and r.json()["package"]["fee_bp"] == 750
    r = own.patch(srv.url + "/api/admin/packages/%d" % made["id"],
                  json={"active": False}, timeout=10)
    assert r.status_code == 200


def test_fixed_yield_grows_the_wallet_exactly_each_hour(srv):
    uid, email, _ = member(srv)
    c = buy(srv, uid, email, "Starter")
    assert (c["yield_mode"], c["fee_bp"], c["earned_micros"]) == ("fixed", 0, 0)
    start, daily = unix(c["started_at"]), c["daily_yield_micros"]
    expected = 0
    assert wallet(srv, email) == 0
    for _ in range(3):
        h = next_hour(srv)
        wait_for(lambda: hour_done(srv, "accrual", h) == "ok", what="accrual of %s" % rfc3339(h))
        expected += fixed_credit(daily, start, max(start, h), h + HOUR)
        assert wallet(srv, email) == expected
    [c] = [x for x in contracts(srv, email) if x["id"] == c["id"]]
    assert c["earned_micros"] == expected
    # the statement: one day, fixed (no pool share, no fee)
    r = srv.get("/api/contracts/%d/statement" % c["id"], headers=login(srv, email))
    assert r.status_code == 200, r.text
    st = r.json()
    assert st["contract"]["id"] == c["id"] and st["contract"]["yield_mode"] == "fixed"
    assert sum(d["credit_micros"] for d in st["days"]) == expected
    assert all(d["pool_share_micros"] is None and d["fee_micros"] is None for d in st["days"])
    assert st["days"][0]["hashrate_ths"] == c["hashrate_ths"]
    # someone else's contract is not found
    other = member(srv)
    r = srv.get("/api/contracts/%d/statement" % c["id"], headers=login(srv, other[1]))
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    transfers = srv.sql("SELECT COUNT(*) FROM transfers WHERE idempotency_key LIKE 'yield:%%:%d'"
                        % c["id"])
    assert transfers == [(3,)]
    assert_ledger_verifies(srv)


def test_rerunning_a_past_hour_changes_nothing(srv):
    uid, email, _ = member(srv)
    buy(srv, uid, email, "Basic")
    h = next_hour(srv)
    wait_for(lambda: hour_done(srv, "accrual", h) == "ok", what="accrual")
    before = wallet(srv, email)
    count = srv.sql("SELECT COUNT(*) FROM transfers")
    assert before > 0
    r = srv.ctl("jobs", "run", "accrual", "--period", rfc3339(h))
    assert "already_done" in r.stdout
    r = srv.ctl("jobs", "run", "accrual", "--period", rfc3339(h), "--force")
    assert "already_done" in r.stdout
    assert wallet(srv, email) == before
    assert srv.sql("SELECT COUNT(*) FROM transfers") == count
    assert_ledger_verifies(srv)


def pool_split(s, start, end, amount):
    """The expected split of a payout over [start, end), from the contracts
    in the database: {contract id: (gross, fee, credit)}, remainder."""
    rows = s.sql("SELECT id, hashrate_ghs, started_at, expires_at, ended_at, fee_bp "
                 "FROM contracts WHERE yield_mode = 'pool' AND currency = 'USD'")
    hs = {}
    for cid, ghs, st, exp, ended, fee in rows:
        life_end = min(exp, ended) if ended else exp
        a, b = max(st, start), min(life_end, end)
        if b > a:
            hs[cid] = (ghs * (b - a), fee)
    total = sum(v[0] for v in hs.values())
    out = {}
    for cid, (x, fee) in hs.items():
        g = amount * x // total
        f = g * fee // 10000
        out[cid] = (g, f, g - f)
    return out, amount - sum(v[0] for v in out.values())


def test_pool_hour_waits_for_its_payout_and_is_caught_up_exactly(srv):
    uid, email, _ = member(srv)
    c = buy(srv, uid, email, "Standard")
    assert (c["yield_mode"], c["fee_bp"]) == ("pool", 500)
    h = next_hour(srv)
    wait_for(lambda: hour_done(srv, "pool-accrual", h) == "waiting", what="waiting")
    assert wallet(srv, email) == 0
    fin = staff(srv, "finance")
    amount = 7654321
    r = fin.post(srv.url + "/api/admin/pool-payouts", timeout=10, json={
        "period_kind": "hour", "period_start": rfc3339(h), "amount_micros": amount,
        "note": "pool statement 42"})
    assert r.status_code == 201, r.text
    pay = r.json()["payout"]
    assert (pay["status"], pay["reconciliation"], pay["amount_micros"]) == \
        ("pending", None, amount)
    # caught up without moving the clock: the recording asks the daemon
    wait_for(lambda: hour_done(srv, "pool-accrual", h) == "ok", what="distribution")
    split, remainder = pool_split(srv, h, h + HOUR, amount)
    assert wallet(srv, email) == split[c["id"]][2]
    [c2] = [x for x in contracts(srv, email) if x["id"] == c["id"]]
    assert c2["earned_micros"] == split[c["id"]][2]
    body = fin.get(srv.url + "/api/admin/pool-payouts", timeout=10).json()
    [p] = [x for x in body["pool_payouts"] if x["id"] == pay["id"]]
    rec = p["reconciliation"]
    assert p["status"] == "distributed" and rec["balanced"] is True
    assert rec["credits_micros"] == sum(v[2] for v in split.values())
    assert rec["fee_micros"] == sum(v[1] for v in split.values())
    assert rec["remainder_micros"] == remainder
    assert rec["credits_micros"] + rec["fee_micros"] + rec["remainder_micros"] == amount
    assert rec["contracts"] == len(split)
    # the member's statement shows the pool share, the fee and the credit
    r = srv.get("/api/contracts/%d/statement" % c["id"], headers=login(srv, email))
    [day] = r.json()["days"]
    assert (day["pool_share_micros"], day["fee_micros"], day["credit_micros"]) == split[c["id"]]
    # the same hour again, or a day payout over it: 409
    r = fin.post(srv.url + "/api/admin/pool-payouts", timeout=10, json={
        "period_kind": "hour", "period_start": h, "amount_micros": 5})
    assert r.status_code == 409 and error_of(r)["code"] == "conflict"
    fin_id = srv.sql("SELECT id FROM staff WHERE email = '%s'" % srv.logins["finance"][0])[0][0]
    audit = srv.sql("SELECT staff_id, target_type, after_json FROM audit_log WHERE action = "
                    "'pool_payout.record' AND target_id = '%d'" % pay["id"])
    assert [(a, t, json.loads(after)["amount_micros"]) for a, t, after in audit] == \
        [(fin_id, "pool_payout", amount)]
    assert_ledger_verifies(srv)


def test_pool_payout_input_and_roles(srv):
    fin = staff(srv, "finance")
    h = srv.now - srv.now % HOUR - 5 * DAY  # long over, never paid
    for body, field in [
            ({"period_kind": "week", "period_start": rfc3339(h), "amount_micros": 5},
             "period_kind"),
            ({"period_kind": "hour", "period_start": rfc3339(h + 60), "amount_micros": 5},
             "period_start"),
            ({"period_kind": "day", "period_start": rfc3339(h + HOUR), "amount_micros": 5},
             "period_start"),
            ({"period_kind": "hour", "period_start": rfc3339(srv.now), "amount_micros": 5},
             "period_start"),
            ({"period_kind": "hour", "period_start": "yesterday", "amount_micros": 5},
             "period_start"),
            ({"period_kind": "hour", "period_start": rfc3339(h), "amount_micros": 0},
             "amount_micros"),
            ({"period_kind": "hour", "period_start": rfc3339(h), "amount_micros": 5,
              "currency": "EUR"}, "currency"),
            ({"period_start": rfc3339(h), "amount_micros": 5}, "period_kind")]:
        r = fin.post(srv.url + "/api/admin/pool-payouts", json=body, timeout=10)
        assert r.status_code == 400 and error_of(r)["field"] == field, (body, r.text)
    r = staff(srv, "support").post(srv.url + "/api/admin/pool-payouts", timeout=10, json={
        "period_kind": "hour", "period_start": rfc3339(h), "amount_micros": 5})
    assert r.status_code == 403
    uid, email, _ = member(srv)
    r = srv.request("POST", "/api/admin/pool-payouts", headers=login(srv, email), json={})
    assert r.status_code == 401
    r = staff(srv, "support").get(srv.url + "/api/admin/pool-payouts", timeout=10)
    assert r.status_code == 403
    assert srv.sql("SELECT COUNT(*) FROM pool_payouts WHERE period_start = %d" % h) == [(0,)]


def test_yield_commissions_pay_the_upline_when_enabled(srv):
    own = staff(srv, "owner")
    r = own.get(srv.url + "/api/admin/yield-commission-rates", timeout=10)
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["levels"] == []
    plan = {"levels": [{"level": 1, "rates_bp": [1000, 500, 0, 0, 0, 0, 0, 0, 0, 0]}]}
    for bad, field in [({"levels": [{"level": 1, "rates_bp": [6000] + [0] * 9}]},
                        "levels[0].rates_bp"),
                       ({"levels": [{"level": 0, "rates_bp": [0] * 10}]}, "levels[0].level"),
                       ({"levels": [{"level": 1, "rates_bp": [1] * 9}]}, "levels[0].rates_bp"),
                       ({"levels": "none"}, "levels")]:
        r = own.put(srv.url + "/api/admin/yield-commission-rates", json=bad, timeout=10)
        assert r.status_code == 400 and error_of(r)["field"] == field, (bad, r.text)
    r = staff(srv, "finance").put(srv.url + "/api/admin/yield-commission-rates", json=plan,
                                  timeout=10)
    assert r.status_code == 403
    r = own.put(srv.url + "/api/admin/yield-commission-rates", json=plan, timeout=10)
    assert r.status_code == 200 and r.json()["enabled"] is True, r.text
    assert r.json()["levels"][0]["total_bp"] == 1500
    try:
        top, top_email, top_code = member(srv)
        mid, mid_email, mid_code = member(srv, referral_code=top_code)
        buyer, buyer_email, _ = member(srv, referral_code=mid_code)
        c = buy(srv, buyer, buyer_email, "Basic")
        h = next_hour(srv)
        wait_for(lambda: hour_done(srv, "accrual", h) == "ok", what="accrual")
        earned = wallet(srv, buyer_email)
        assert earned == fixed_credit(c["daily_yield_micros"], unix(c["started_at"]),
                                      unix(c["started_at"]), h + HOUR)
        assert wallet(srv, mid_email) == earned * 1000 // 10000
        assert wallet(srv, top_email) == earned * 500 // 10000
        keys = srv.sql("SELECT idempotency_key FROM transfers WHERE kind = 'yield_commission' "
                       "AND reference = 'contract:%d' ORDER BY idempotency_key" % c["id"])
        assert keys == [("ycomm:%d:%d:1" % (c["id"], h),), ("ycomm:%d:%d:2" % (c["id"], h),)]
    finally:
        r = own.put(srv.url + "/api/admin/yield-commission-rates", json={"levels": []},
                    timeout=10)
        assert r.status_code == 200 and r.json()["enabled"] is False
    assert srv.sql("SELECT COUNT(*) FROM audit_log WHERE action = "
                   "'yield_commission_rates.update'") == [(2,)]
    assert_ledger_verifies(srv)


def test_earnings_by_day_and_bad_parameters(srv):
    uid, email, _ = member(srv)
    c = buy(srv, uid, email, "Trial")
    for _ in range(2):
        h = next_hour(srv)
        wait_for(lambda: hour_done(srv, "accrual", h) == "ok", what="accrual")
    day = srv.now - srv.now % DAY
    h_ = login(srv, email)
    r = srv.get("/api/earnings", headers=h_,
                params={"from": rfc3339(day - DAY), "to": rfc3339(day + DAY), "bucket": "day"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["bucket"] == "day" and body["currency"] == "USD"
    assert [d["day"] for d in body["days"]] == [rfc3339(day - DAY), rfc3339(day)]
    got = {d["day"]: d["credit_micros"] for d in body["days"]}
    rows = dict(srv.sql("SELECT day, credit_micros FROM contract_days WHERE contract_id = %d"
                        % c["id"]))
    assert got == {rfc3339(day - DAY): rows.get(day - DAY, 0), rfc3339(day): rows.get(day, 0)}
    assert body["total_micros"] == wallet(srv, email) > 0
    # defaults: the last 30 days up to now
    r = srv.get("/api/earnings", headers=h_)
    assert r.status_code == 200 and len(r.json()["days"]) == 30
    assert r.json()["total_micros"] == body["total_micros"]
    for params, field in [({"bucket": "week"}, "bucket"), ({"from": "soon"}, "from"),
                          ({"to": "x"}, "to"),
                          ({"from": rfc3339(day), "to": rfc3339(day - DAY)}, "to"),
                          ({"from": rfc3339(day - 400 * DAY), "to": rfc3339(day)}, "to")]:
        r = srv.get("/api/earnings", headers=h_, params=params)
        assert r.status_code == 400 and error_of(r)["field"] == field, (params, r.text)
    r = srv.get("/api/earnings")
    assert r.status_code == 401
    assert_ledger_verifies(srv)


def test_a_contract_expires_after_its_last_hour_with_an_email(srv):
    uid, email, _ = member(srv)
    c = buy(srv, uid, email, "Trial")
    expires = unix(c["expires_at"])
    last = expires - 1 - (expires - 1) % HOUR
    # a week later (the daemon catches the hours up in order, oldest first)
    srv.set_clock(last + HOUR + 30)
    wait_for(lambda: hour_done(srv, "accrual", last) == "ok", timeout=120, what="last hour")
    srv.advance(61)  # the next expiry slot
    wait_for(lambda: srv.sql("SELECT status FROM contracts WHERE id = %d" % c["id"])[0][0]
             == "expired", what="expired")
    [c2] = [x for x in contracts(srv, email) if x["id"] == c["id"]]
    assert c2["status"] == "expired"
    assert c2["earned_micros"] == c["daily_yield_micros"] * c["duration_days"]
    assert wallet(srv, email) == c2["earned_micros"]
    mails = srv.sql("SELECT recipient, variables FROM mail_queue WHERE idempotency_key = "
                    "'contract_expired:%d' AND template = 'contract_expired'" % c["id"])
    assert len(mails) == 1 and mails[0][0] == email
    vars_ = json.loads(mails[0][1])
    assert vars_ == {"contract_id": c["id"], "package": c["name"],
                     "expired_at": c["expires_at"], "earned_micros": c2["earned_micros"]}
    # hours are each credited once, in order
    runs = srv.sql("SELECT COUNT(*), COUNT(DISTINCT period_start) FROM job_runs "
                   "WHERE job = 'accrual' AND status = 'ok'")
    assert runs[0][0] == runs[0][1]
    assert_ledger_verifies(srv)
