"""Refunds through the real Apache, its cron daemon and the sandbox gateway,
under the fake clock (issue 11, sequences 1-3):

1. a refund undoes the purchase: the payment, the purchase commissions,
   the yield credited on the contract and the yield commissions paid on
   it are all taken back (staff refund of a balance order, a gateway
   refund event, an expired contract);
2. partial refunds move money: each refund event or staff refund posts a
   refund transfer and the proportional clawbacks, the contract runs on
   its remaining share (its released hash rate back in capacity), the
   refunds reaching the price refund the order and end the contract, an
   over-refund is parked for staff;
3. a refund lowers a VIP level that only the refunded volume justified,
   audited with the reason, so the next order pays the lower rate.

Every test ends with `deepminectl ledger verify`."""
import hashlib
import hmac
import json
import os
import re
import time
import uuid

import pytest
import requests

from conftest import (PASSWORD, Server, assert_clean_log, error_of, mail_count, register_member,
                      rfc3339, tag)

T0 = 1795600800  # 2026-11-25T10:00:00Z
HOUR = 3600
DAY = 86400
USD = 1000000
FAST = ("DeepMineAccrualDelay 0\n"
        "DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit webhook 100000/1m ip\n")
YIELD_PLAN = {"levels": [{"level": 1, "rates_bp": [1000, 500, 0, 0, 0, 0, 0, 0, 0, 0]}]}


@pytest.fixture(scope="module")
def srv():
    s = Server(mpm="event", local_conf=FAST, clock=T0 + 60)
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.logins = {}
    s.pkg = {}
    own = staff(s, "owner")
    # 1 USD that yields 1.1 USD a day (the audit's package), for 30 days
    # and for one day; whole-dollar packages for the VIP volumes
    for key, price, daily, days in [("one", USD, 1100000, 30), ("day", USD, 1100000, 1),
                                    ("v500", 500 * USD, 1000, 30),
                                    ("v2000", 2000 * USD, 1000, 30),
                                    ("v1000", 1000 * USD, 1000, 30)]:
        r = own.post(s.url + "/api/admin/packages", timeout=10, json={
            "name": "Refund %s %s" % (key, tag()), "hashrate_ths": 1, "price_micros": price,
            "daily_yield_micros": daily, "duration_days": days, "yield_mode": "fixed"})
        assert r.status_code == 201, r.text
        s.pkg[key] = r.json()["package"]
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


# ---- helpers ----------------------------------------------------------------

def wait_for(cond, timeout=60, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def member(s, referral_code=None):
    """A new member: (id, e-mail, referral code)."""
    extra = {"referral_code": referral_code} if referral_code else {}
    body = register_member(s, "r", **extra)
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


def credit(s, user, amount):
    s.ctl("ledger", "adjust", "--user", str(user), "--amount", str(amount),
          "--reason", "test credit")


def assert_ledger_verifies(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def me(s, email):
    r = s.get("/api/me", headers=login(s, email))
    assert r.status_code == 200, r.text
    return r.json()["user"]


def balances(s, email):
    u = me(s, email)
    return u["balance_micros"], u["held_micros"]


def buy_from_balance(s, user, email, key):
    pkg = s.pkg[key]
    credit(s, user, pkg["price_micros"])
    r = s.request("POST", "/api/orders", headers=login(s, email),
                  json={"package_id": pkg["id"], "pay_from_balance": True})
    assert r.status_code == 201, r.text
    return r.json()["order"]


def buy_through_sandbox(s, email, key):
    r = s.request("POST", "/api/orders", headers=login(s, email),
                  json={"package_id": s.pkg[key]["id"], "gateway": "sandbox"})
    assert r.status_code == 201, r.text
    url = r.json()["checkout_url"]
    assert requests.post(url + "/pay", timeout=15).status_code == 200
    return order_of(s, r.json()["order"]["id"])


def order_of(s, oid):
    [(status, ref, refunded)] = s.sql(
        "SELECT status, provider_ref, (SELECT COALESCE(SUM(amount_micros), 0) FROM transfers "
        "WHERE kind = 'refund' AND reference = 'order:%d') FROM orders WHERE id = %d"
        % (oid, oid))
    return {"id": oid, "status": status, "provider_ref": ref, "refund_transfers": refunded}


def contract_of(s, email, oid):
    r = s.get("/api/contracts", headers=login(s, email))
    assert r.status_code == 200, r.text
    [c] = [c for c in r.json()["contracts"] if c["order_id"] == oid]
    return c


def hour_done(s, hour):
    rows = s.sql("SELECT status FROM job_runs WHERE job = 'accrual' AND period_start = %d"
                 % hour)
    return rows and rows[0][0] == "ok"


def start_at_next_hour(s):
    """Moves the clock to the next whole hour; returns it."""
    h = s.now - s.now % HOUR + HOUR
    s.set_clock(h)
    return h


def accrue_until(s, t):
    """Moves the clock to t (30 s into an hour) and waits for the hour
    before it to be credited."""
    s.set_clock(t + 30)
    wait_for(lambda: hour_done(s, t - HOUR), timeout=120, what="accrual to %s" % rfc3339(t))


def hourly(daily, hours, num=1, den=1):
    """The credits of a contract started on a whole hour: hour h gets
    floor(D x (h+1) x num / (24 x den)) - floor(D x h x num / (24 x den))."""
    return [daily * (h + 1) * num // (24 * den) - daily * h * num // (24 * den)
            for h in range(hours)]


def refund(s, oid, role="finance", **body):
    body.setdefault("reason", "customer asked")
    return staff(s, role).post(s.url + "/api/admin/orders/%d/refund" % oid, json=body,
                               timeout=20)


def secret_of(s):
    with open(os.path.join(s.var, "sandbox-webhook.secret")) as f:
        return f.read().rstrip("\n")


def refund_event(s, provider_ref, amount):
    """Delivers a signed charge.refunded event as the sandbox gateway would;
    the event's outcome."""
    evid = "evt_it19_%s" % uuid.uuid4().hex
    body = json.dumps({
        "id": evid, "type": "charge.refunded", "created": int(time.time()),
        "data": {"object": {"id": provider_ref, "amount_micros": amount, "currency": "USD"}}},
        separators=(",", ":")).encode()
    t = int(time.time())
    mac = hmac.new(secret_of(s).encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    r = requests.post(s.url + "/api/webhooks/sandbox", data=body, timeout=15, headers={
        "Content-Type": "application/json", "Sandbox-Signature": "t=%d,v1=%s" % (t, mac)})
    assert r.status_code == 200, r.text
    [(outcome,)] = s.sql("SELECT outcome FROM payment_events WHERE event_id = '%s'" % evid)
    return outcome


def set_yield_plan(s, plan):
    r = staff(s, "owner").put(s.url + "/api/admin/yield-commission-rates", json=plan, timeout=10)
    assert r.status_code == 200, r.text


def sold_ths(s):
    r = staff(s, "owner").get(s.url + "/api/admin/capacity", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["sold_ths"]


# ---- 1. a refund undoes the purchase ----------------------------------------

def test_staff_refund_takes_back_payment_commissions_yield_and_yield_commissions(srv):
    """A 1 USD order paid from the balance accrues 1.1 USD over 24 hours;
    the refund leaves the buyer with the 1 USD paid, not 2.1 USD, and the
    upline with nothing of the order (commissions held, yield commissions
    in the wallet)."""
    top, top_email, top_code = member(srv)
    mid, mid_email, mid_code = member(srv, top_code)
    buyer, buyer_email, _ = member(srv, mid_code)
    set_yield_plan(srv, YIELD_PLAN)
    try:
        start = start_at_next_hour(srv)
        order = buy_from_balance(srv, buyer, buyer_email, "one")
        accrue_until(srv, start + DAY)
    finally:
        set_yield_plan(srv, {"levels": []})
    credits = hourly(1100000, 24)
    assert sum(credits) == 1100000
    assert balances(srv, buyer_email) == (1100000, 0)
    assert balances(srv, mid_email) == (sum(x * 1000 // 10000 for x in credits), 50000)
    assert balances(srv, top_email) == (sum(x * 500 // 10000 for x in credits), 20000)

    r = refund(srv, order["id"])
    assert r.status_code == 200 and r.json()["refunded"] is True, r.text
    assert r.json()["order"]["status"] == "refunded"
    assert balances(srv, buyer_email) == (USD, 0)
    assert balances(srv, mid_email) == (0, 0)
    assert balances(srv, top_email) == (0, 0)
    c = contract_of(srv, buyer_email, order["id"])
    assert c["status"] == "refunded" and c["earned_micros"] == 1100000
    ycomm = sum(x * 1000 // 10000 for x in credits) + sum(x * 500 // 10000 for x in credits)
    kinds = dict(srv.sql("SELECT kind, SUM(amount_micros) FROM transfers WHERE reference = "
                         "'contract:%d' GROUP BY kind" % c["id"]))
    assert kinds == {"yield": 1100000, "yield_clawback": 1100000, "yield_commission": ycomm,
                     "commission_clawback": ycomm}
    assert_ledger_verifies(srv)


def test_gateway_refund_event_takes_back_the_yield_too(srv):
    buyer, buyer_email, _ = member(srv)
    start = start_at_next_hour(srv)
    order = buy_through_sandbox(srv, buyer_email, "one")
    accrue_until(srv, start + 3 * HOUR)
    earned = sum(hourly(1100000, 3))
    assert balances(srv, buyer_email) == (earned, 0)
    assert refund_event(srv, order["provider_ref"], USD) == "refunded"
    assert balances(srv, buyer_email) == (0, 0)
    got = order_of(srv, order["id"])
    assert (got["status"], got["refund_transfers"]) == ("refunded", USD)
    c = contract_of(srv, buyer_email, order["id"])
    assert c["status"] == "refunded" and c["earned_micros"] == earned
    assert_ledger_verifies(srv)


def test_refund_of_an_expired_contract_takes_back_its_whole_yield(srv):
    """The contract ran its whole term (its order stays paid); the member
    spent the yield, so the clawback leaves a debt."""
    buyer, buyer_email, _ = member(srv)
    start = start_at_next_hour(srv)
    order = buy_through_sandbox(srv, buyer_email, "day")
    accrue_until(srv, start + DAY)
    srv.advance(61)  # the next contract-expiry slot
    wait_for(lambda: contract_of(srv, buyer_email, order["id"])["status"] == "expired",
             what="expiry")
    assert order_of(srv, order["id"])["status"] == "paid"
    assert balances(srv, buyer_email) == (1100000, 0)
    # 1 USD of the yield goes on another package
    r = srv.request("POST", "/api/orders", headers=login(srv, buyer_email),
                    json={"package_id": srv.pkg["one"]["id"], "pay_from_balance": True})
    assert r.status_code == 201, r.text
    r = refund(srv, order["id"])
    assert r.status_code == 200 and r.json()["refunded"] is True, r.text
    assert balances(srv, buyer_email) == (100000 - 1100000, 0)
    c = contract_of(srv, buyer_email, order["id"])
    assert c["status"] == "refunded" and c["earned_micros"] == 1100000
    assert order_of(srv, order["id"])["refund_transfers"] == USD
    assert_ledger_verifies(srv)


# ---- 2. partial refunds -----------------------------------------------------

def test_two_half_refund_events_refund_in_proportion_then_end_the_contract(srv):
    ref, ref_email, ref_code = member(srv)
    buyer, buyer_email, _ = member(srv, ref_code)
    start = start_at_next_hour(srv)
    order = buy_through_sandbox(srv, buyer_email, "one")
    gateway = srv.sql("SELECT id FROM accounts WHERE code = 'gateway:sandbox'")[0][0]
    accrue_until(srv, start + 2 * HOUR)
    earned = sum(hourly(1100000, 2))
    assert balances(srv, buyer_email) == (earned, 0)
    assert balances(srv, ref_email) == (0, 50000)
    sold = sold_ths(srv)

    assert refund_event(srv, order["provider_ref"], USD // 2) == "partial_refund"
    got = order_of(srv, order["id"])
    assert (got["status"], got["refund_transfers"]) == ("paid", USD // 2)
    assert srv.sql("SELECT debit_account_id, credit_account_id FROM transfers WHERE kind = "
                   "'refund' AND reference = 'order:%d'" % order["id"]) == \
        [(srv.sql("SELECT id FROM accounts WHERE code = 'sales'")[0][0], gateway)]
    # half of everything taken back: the yield, the held commission
    assert balances(srv, buyer_email) == (earned - earned // 2, 0)
    assert balances(srv, ref_email) == (0, 25000)
    c = contract_of(srv, buyer_email, order["id"])
    assert (c["status"], c["refunded_micros"]) == ("active", USD // 2)
    # prorate (the default): half the hash rate back in capacity, half the yield
    assert sold_ths(srv) == pytest.approx(sold - 0.5)
    r = staff(srv, "finance").get(srv.url + "/api/admin/orders", params={"status": "paid"},
                                  timeout=10)
    [o] = [o for o in r.json()["orders"] if o["id"] == order["id"]]
    assert o["refunded_micros"] == USD // 2
    accrue_until(srv, start + 3 * HOUR)
    third = hourly(1100000, 3, 1, 2)[2]
    assert third == 22917
    assert balances(srv, buyer_email) == (earned - earned // 2 + third, 0)

    assert refund_event(srv, order["provider_ref"], USD // 2) == "refunded"
    got = order_of(srv, order["id"])
    assert (got["status"], got["refund_transfers"]) == ("refunded", USD)
    assert balances(srv, buyer_email) == (0, 0)
    assert balances(srv, ref_email) == (0, 0)
    c = contract_of(srv, buyer_email, order["id"])
    assert (c["status"], c["refunded_micros"]) == ("refunded", USD)
    assert sold_ths(srv) == pytest.approx(sold - 1)
    # the gateway's account shows this order's money returned in full
    assert srv.sql("SELECT SUM(CASE WHEN credit_account_id = %d THEN amount_micros ELSE "
                   "-amount_micros END) FROM transfers WHERE reference = 'order:%d' AND "
                   "%d IN (debit_account_id, credit_account_id)"
                   % (gateway, order["id"], gateway)) == [(0,)]
    assert_ledger_verifies(srv)


def test_staff_partial_refund_asks_the_gateway_for_that_amount_only(srv):
    buyer, buyer_email, _ = member(srv)
    order = buy_through_sandbox(srv, buyer_email, "one")
    for body, field in [({"amount_micros": 0}, "amount_micros"),
                        ({"amount_micros": "half"}, "amount_micros"),
                        ({"reason": ""}, "reason"), ({"reason": None}, "reason")]:
        r = staff(srv, "finance").post(srv.url + "/api/admin/orders/%d/refund" % order["id"],
                                       json=body, timeout=10)
        assert r.status_code == 400 and error_of(r)["field"] == field, (body, r.text)
    r = refund(srv, order["id"], amount_micros=USD + 1)
    assert r.status_code == 409 and error_of(r)["code"] == "conflict", r.text
    assert order_of(srv, order["id"])["refund_transfers"] == 0

    r = refund(srv, order["id"], amount_micros=250000, reason="one quarter back")
    assert r.status_code == 200 and r.json()["refunded"] is True, r.text
    assert (r.json()["order"]["status"], r.json()["order"]["refunded_micros"]) == \
        ("paid", 250000)
    [(amount,)] = srv.sql("SELECT amount_micros FROM payment_events WHERE outcome = "
                          "'partial_refund' AND provider_ref = '%s'" % order["provider_ref"])
    assert amount == 250000
    [(after,)] = srv.sql("SELECT after_json FROM audit_log WHERE action = 'order.refund' AND "
                         "target_id = '%d'" % order["id"])
    assert json.loads(after)["reason"] == "one quarter back"
    # without an amount: what is left
    r = refund(srv, order["id"])
    assert r.status_code == 200 and r.json()["order"]["status"] == "refunded", r.text
    assert order_of(srv, order["id"])["refund_transfers"] == USD
    assert contract_of(srv, buyer_email, order["id"])["status"] == "refunded"
    r = refund(srv, order["id"])
    assert r.status_code == 409
    assert_ledger_verifies(srv)


def test_staff_partial_refund_of_a_balance_order_returns_that_amount_to_the_wallet(srv):
    buyer, buyer_email, _ = member(srv)
    order = buy_from_balance(srv, buyer, buyer_email, "one")
    assert balances(srv, buyer_email) == (0, 0)
    r = refund(srv, order["id"], amount_micros=300000)
    assert r.status_code == 200 and r.json()["refunded"] is True, r.text
    assert balances(srv, buyer_email) == (300000, 0)
    assert contract_of(srv, buyer_email, order["id"])["status"] == "active"
    r = refund(srv, order["id"], amount_micros=700000)
    assert r.status_code == 200 and r.json()["order"]["status"] == "refunded", r.text
    assert balances(srv, buyer_email) == (USD, 0)
    assert_ledger_verifies(srv)


def test_an_over_refund_is_parked_for_staff_and_moves_nothing(srv):
    buyer, buyer_email, _ = member(srv)
    order = buy_through_sandbox(srv, buyer_email, "one")
    assert refund_event(srv, order["provider_ref"], 600000) == "partial_refund"
    srv.expect_log(r"DM00700: order %d needs staff attention \(over_refund\)" % order["id"])
    assert refund_event(srv, order["provider_ref"], 600000) == "needs_review"
    got = order_of(srv, order["id"])
    assert (got["status"], got["refund_transfers"]) == ("needs_review", 600000)
    alerts = mail_count(srv, "staff_alert", "variables LIKE '%over_refund%'",
                        order_id=order["id"])
    assert [(alerts,)] == srv.sql("SELECT COUNT(*) FROM staff WHERE role IN ('owner', 'finance') "
                                  "AND status = 'active'")
    assert_ledger_verifies(srv)


def test_end_contract_mode_ends_a_partly_refunded_contract(new_server):
    s = new_server(local_conf=FAST + "DeepMinePartialRefund end-contract\n")
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.logins = {}
    pkg = s.get("/api/packages").json()["packages"][0]
    buyer, buyer_email, _ = member(s)
    credit(s, buyer, pkg["price_micros"])
    r = s.request("POST", "/api/orders", headers=login(s, buyer_email),
                  json={"package_id": pkg["id"], "pay_from_balance": True})
    assert r.status_code == 201, r.text
    oid = r.json()["order"]["id"]
    sold = sold_ths(s)
    r = refund(s, oid, amount_micros=pkg["price_micros"] // 2)
    assert r.status_code == 200 and r.json()["order"]["status"] == "paid", r.text
    c = contract_of(s, buyer_email, oid)
    assert (c["status"], c["refunded_micros"]) == ("ended", pkg["price_micros"] // 2)
    assert c["ended_at"] is not None
    assert sold_ths(s) == pytest.approx(sold - pkg["hashrate_ths"])
    assert balances(s, buyer_email) == (pkg["price_micros"] // 2, 0)
    assert_ledger_verifies(s)


@pytest.mark.parametrize("value", ["sometimes", "prorate extra"])
def test_partial_refund_directive_is_checked(new_server, value):
    s = new_server(seed=False)
    s.write_local_conf("# local overrides\nDeepMinePartialRefund %s\n" % value)
    r = s.configtest()
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "DeepMinePartialRefund" in out and "local.conf" in out, out
    assert "prorate" in out and "end-contract" in out, out


# ---- 3. VIP levels follow refunds -------------------------------------------

def test_a_refund_lowers_the_level_only_its_volume_justified(srv):
    """R buys 500 USD, R's referral X buys 2,000 USD: R reaches level 2.
    X's order is refunded: R goes back to level 1 (audited, with the
    reason), and a later 1,000 USD order under R pays R 50 USD, not 55."""
    r_id, r_email, r_code = member(srv)
    x_id, x_email, _ = member(srv, r_code)
    z_id, z_email, _ = member(srv, r_code)
    buy_from_balance(srv, r_id, r_email, "v500")
    x_order = buy_from_balance(srv, x_id, x_email, "v2000")
    assert me(srv, r_email)["vip_level"] == 2

    r = refund(srv, x_order["id"])
    assert r.status_code == 200 and r.json()["refunded"] is True, r.text
    assert me(srv, r_email)["vip_level"] == 1
    assert me(srv, x_email)["vip_level"] == 1
    a = staff(srv, "owner").get(srv.url + "/api/admin/audit", timeout=10, params={
        "action": "user.vip_lowered", "target_type": "user", "target_id": str(r_id)})
    assert a.status_code == 200, a.text
    [entry] = a.json()["entries"]
    assert entry["before"] == {"vip_level": 2}
    assert entry["after"]["vip_level"] == 1 and entry["after"]["order_id"] == x_order["id"]
    assert "refund" in entry["after"]["reason"]

    z_order = buy_from_balance(srv, z_id, z_email, "v1000")
    r = srv.get("/api/referrals/commissions", headers=login(srv, r_email))
    [row] = [c for c in r.json()["commissions"] if c["order_id"] == z_order["id"]]
    assert (row["amount_micros"], row["vip_level"], row["rate_bp"]) == (50 * USD, 1, 500)
    assert_ledger_verifies(srv)
