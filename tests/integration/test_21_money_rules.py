"""Money that goes only where it should (issue 11, sequences 4-7 and the
per-gateway hold), through the real Apache: the commission cap holds for a
whole order whatever its upline's levels (PUT /api/admin/vip-levels); a
flagged member's purchase keeps every commission it made held until the
flag is cleared; a suspended member's commissions stay held and staff
forfeit them; a withdrawal is never paid out of a debt; each gateway has
its own hold. Every test registers from 127.0.0.1, so each member and its
referrer are flagged `same_registration_ip` at registration: tests that
want releases clear those flags first. `deepminectl ledger verify` runs
after every money scenario."""
import json
import re
import time

import pytest
import requests

from conftest import (Server, assert_clean_log, bearer, book_address, error_of, queued_mail,
                      register_member, staff)

FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit webhook 100000/1m ip\n"
        "DeepMineWithdrawalLimits 1000 500000000 800000000\n"
        # this suite runs on the system clock: a confirmed withdrawal address
        # is usable at once here (test_43 checks the delay on the fake clock)
        "DeepMineWithdrawalAddressDelay 0\n")
USD = 1000000
TRX = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


@pytest.fixture(scope="module")
def srv():
    s = Server(mpm="event", local_conf=FAST)
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.staff = {}
    s.packages = s.get("/api/packages").json()["packages"]
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def member(s, referral_code=None):
    """A new member: (user, Bearer headers)."""
    extra = {"referral_code": referral_code} if referral_code else {}
    b = register_member(s, "r", **extra)
    return b["user"], bearer(b)


def chain(s, n):
    """n members, each referred by the previous one; [0] is the root."""
    out = [member(s)]
    for _ in range(n - 1):
        out.append(member(s, out[-1][0]["referral_code"]))
    return out


def verify(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def buy(s, user, headers, package=None):
    """Pays the cheapest package from the balance (credited first by
    `deepminectl ledger adjust`): (order, price)."""
    pkg = package or min(s.packages, key=lambda p: p["price_micros"])
    s.ctl("ledger", "adjust", "--user", str(user["id"]), "--amount", str(pkg["price_micros"]),
          "--reason", "test credit")
    r = requests.post(s.url + "/api/orders", headers=headers, timeout=10,
                      json={"package_id": pkg["id"], "pay_from_balance": True})
    assert r.status_code == 201, r.text
    return r.json()["order"], pkg["price_micros"]


def commissions(s, headers):
    r = requests.get(s.url + "/api/referrals/commissions", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["commissions"]


def me(s, headers):
    r = requests.get(s.url + "/api/me", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["user"]


def plan(s):
    r = staff(s, "owner").get(s.url + "/api/admin/vip-levels", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def audited(s, action):
    r = staff(s, "owner").get(s.url + "/api/admin/audit", params={"action": action},
                              timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["entries"]


# ---- 4. the commission cap caps an order ----

def test_put_refuses_a_plan_whose_highest_rates_per_depth_pay_an_order_over_the_cap(srv):
    owner = staff(srv, "owner")
    before = plan(srv)
    assert before["cap_bp"] == 5000
    # the audit's plan: level L pays 5000 bp at depth L only. Every level
    # is exactly at the cap, but one order over an upline of levels 1..10
    # would pay 10 x 5000 bp: 500 % of the order.
    bad = {"levels": []}
    for l in before["levels"]:
        rates = [0] * 10
        rates[l["level"] - 1] = 5000
        bad["levels"].append({k: v for k, v in l.items() if k != "total_bp"})
        bad["levels"][-1]["rates_bp"] = rates
    r = owner.put(srv.url + "/api/admin/vip-levels", json=bad, timeout=10)
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["code"] == "invalid" and err["field"] == "levels"
    assert "one order could pay 50000 bp, more than the cap of 5000 bp" in err["message"]
    for d in range(1, 11):
        assert "depth %d at level %d (5000 bp)" % (d, d) in err["message"]
    assert plan(srv) == before
    assert audited(srv, "vip_levels.update") == []
    # at the cap exactly is accepted: 500 bp at depth L for level L
    for l in bad["levels"]:
        l["rates_bp"] = [500 if d == l["level"] - 1 else 0 for d in range(10)]
    r = owner.put(srv.url + "/api/admin/vip-levels", json=bad, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["max_order_bp"] == 5000
    # and an order over an upline at levels 1..10 pays exactly the cap
    c = chain(srv, 11)
    for d in range(1, 11):
        user, _ = c[10 - d]
        r = owner.patch(srv.url + "/api/admin/users/%d/vip" % user["id"], json={"vip_level": d},
                        timeout=10)
        assert r.status_code == 200, r.text
    order, price = buy(srv, *c[10])
    for d in range(1, 11):
        [row] = commissions(srv, c[10 - d][1])
        assert (row["order_id"], row["depth"], row["vip_level"], row["rate_bp"]) == \
            (order["id"], d, d, 500)
        assert row["amount_micros"] == price * 500 // 10000
    assert sum(r[0] for r in srv.sql("SELECT amount_micros FROM commissions WHERE order_id = %d"
                                     % order["id"])) == price * 5000 // 10000
    r = owner.put(srv.url + "/api/admin/vip-levels",
                  json={"levels": before["levels"]}, timeout=10)
    assert r.status_code == 200, r.text
    assert plan(srv) == before and before["max_order_bp"] == 2950
    verify(srv)


def test_put_refuses_a_yield_commission_plan_that_pays_one_credit_over_the_cap(srv):
    owner = staff(srv, "owner")
    url = srv.url + "/api/admin/yield-commission-rates"
    before = owner.get(url, timeout=10).json()
    bad = {"levels": [{"level": l, "rates_bp": [5000 if d == l else 0 for d in range(1, 11)]}
                      for l in range(1, 11)]}
    r = owner.put(url, json=bad, timeout=10)
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["field"] == "levels"
    assert "one yield credit could pay 50000 bp, more than the cap of 5000 bp" in err["message"]
    assert "depth 3 at level 3 (5000 bp)" in err["message"]
    assert owner.get(url, timeout=10).json() == before
    assert audited(srv, "yield_commission_rates.update") == []


# ---- 5. a flagged member's purchase holds every depth ----

LATER = 15 * 86400


def release(s):
    """`deepminectl commissions release` 15 days from now: how many."""
    out = s.ctl("commissions", "release", "--now", str(int(time.time()) + LATER)).stdout
    return int(re.search(r"(\d+) commission\(s\) released", out).group(1))


def open_flag(s, user, related):
    flags = staff(s, "support").get(s.url + "/api/admin/flags",
                                    params={"status": "open", "limit": 200},
                                    timeout=10).json()["flags"]
    [f] = [f for f in flags if f["user_id"] == user["id"] and f["related_user_id"] == related["id"]]
    return f


def resolve(s, flag, how):
    r = staff(s, "support").post(s.url + "/api/admin/flags/%d/%s" % (flag["id"], how), timeout=10)
    assert r.status_code == 200, r.text


def test_a_flagged_buyer_keeps_every_depth_held_until_its_flag_is_cleared(srv):
    # A -> B -> C, all from 127.0.0.1: flags (B, A) and (C, B) are raised
    (a, ah), (b, bh), (c, ch) = chain(srv, 3)
    fb, fc = open_flag(srv, b, a), open_flag(srv, c, b)
    order, price = buy(srv, c, ch)
    release(srv)
    [rb] = commissions(srv, bh)
    [ra] = commissions(srv, ah)
    assert (rb["order_id"], rb["depth"], rb["amount_micros"]) == (order["id"], 1, price * 500 // 10000)
    assert (ra["order_id"], ra["depth"], ra["amount_micros"]) == (order["id"], 2, price * 200 // 10000)
    # A's depth-2 credit is not between the pair (C, B), but C is flagged
    assert ra["status"] == "held" and rb["status"] == "held"
    assert me(srv, ah)["balance_micros"] == 0 and me(srv, ah)["held_micros"] == ra["amount_micros"]
    verify(srv)
    # confirming (B, A) changes nothing for C's order; clearing (C, B) frees it all
    resolve(srv, fb, "confirm")
    release(srv)
    assert commissions(srv, ah)[0]["status"] == "held"
    resolve(srv, fc, "clear")
    release(srv)
    assert [r["status"] for r in commissions(srv, bh) + commissions(srv, ah)] == ["available"] * 2
    assert me(srv, bh)["balance_micros"] == price * 500 // 10000
    assert me(srv, ah)["balance_micros"] == price * 200 // 10000
    assert me(srv, ah)["held_micros"] == 0
    verify(srv)


# ---- 6. suspended members and forfeits ----

def admin_user(s, user):
    r = staff(s, "finance").get(s.url + "/api/admin/users/%d" % user["id"], timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["user"]


def set_status(s, user, status):
    r = staff(s, "support").patch(s.url + "/api/admin/users/%d" % user["id"],
                                  json={"status": status}, timeout=10)
    assert r.status_code == 200, r.text


def staff_commissions(s, role="finance", **params):
    r = staff(s, role).get(s.url + "/api/admin/commissions", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["commissions"]


def test_a_suspended_members_commission_stays_held_and_finance_forfeits_it(srv):
    (a, ah), (b, bh) = chain(srv, 2)
    resolve(srv, open_flag(srv, b, a), "clear")  # B's purchases are not held by a flag
    order, price = buy(srv, b, bh)
    want = price * 500 // 10000
    set_status(srv, a, "suspended")
    release(srv)
    got = admin_user(srv, a)
    assert (got["balance_micros"], got["held_micros"]) == (0, want)
    [row] = staff_commissions(srv, beneficiary_id=a["id"])
    assert (row["order_id"], row["buyer_id"], row["amount_micros"], row["status"]) == \
        (order["id"], b["id"], want, "held")
    verify(srv)
    # support may look but not forfeit; a reason is required
    assert staff(srv, "support").post(
        srv.url + "/api/admin/users/%d/commissions/forfeit" % a["id"],
        json={"reason": "x"}, timeout=10).status_code == 403
    r = staff(srv, "finance").post(srv.url + "/api/admin/users/%d/commissions/forfeit" % a["id"],
                                   json={}, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "reason"
    r = staff(srv, "finance").post(srv.url + "/api/admin/users/%d/commissions/forfeit" % a["id"],
                                   json={"reason": "account closed: confirmed fraud"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"user_id": a["id"], "forfeited": 1, "amount_micros": want,
                        "currency": "USD"}
    [row] = staff_commissions(srv, beneficiary_id=a["id"])
    assert row["status"] == "forfeited"
    got = admin_user(srv, a)
    assert (got["balance_micros"], got["held_micros"]) == (0, 0)
    [t] = staff(srv, "finance").get(srv.url + "/api/admin/transfers",
                                    params={"kind": "commission_forfeit"},
                                    timeout=10).json()["transfers"]
    assert t["amount_micros"] == want and t["idempotency_key"] == "forfeit:%d" % row["id"]
    assert t["credit"]["code"] == "forfeited_commissions"
    [entry] = audited(srv, "commission.forfeit")
    assert entry["target_id"] == str(row["id"])
    assert entry["after"]["reason"] == "account closed: confirmed fraud"
    assert entry["after"]["amount_micros"] == want
    # unsuspended, nothing comes back; a second forfeit has nothing to do
    set_status(srv, a, "active")
    release(srv)
    assert admin_user(srv, a)["balance_micros"] == 0
    r = staff(srv, "finance").post(srv.url + "/api/admin/commissions/%d/forfeit" % row["id"],
                                   json={"reason": "again"}, timeout=10)
    assert r.status_code == 409, r.text
    # an active member's held commissions cannot be forfeited wholesale
    r = staff(srv, "finance").post(srv.url + "/api/admin/users/%d/commissions/forfeit" % a["id"],
                                   json={"reason": "no"}, timeout=10)
    assert r.status_code == 409 and "suspended" in error_of(r)["message"]
    verify(srv)


def test_the_console_forfeits_a_suspended_members_held_commission(srv):
    (a, ah), (b, bh) = chain(srv, 2)
    resolve(srv, open_flag(srv, b, a), "clear")
    order, price = buy(srv, b, bh)
    want = price * 500 // 10000
    # an active member's: refused, nothing moves
    r = srv.ctl("commissions", "forfeit", "--user", str(a["id"]), "--reason", "no", check=False)
    assert r.returncode != 0 and "suspended" in r.stderr
    # neither or both of --user and --commission: a usage error
    assert srv.ctl("commissions", "forfeit", "--reason", "x", check=False).returncode == 2
    set_status(srv, a, "suspended")
    r = srv.ctl("commissions", "forfeit", "--user", str(a["id"]), "--reason", "closed by the console")
    assert r.stdout.strip() == ("commissions forfeit: member %d: 1 commission(s), %d micros "
                                "forfeited" % (a["id"], want))
    [row] = staff_commissions(srv, beneficiary_id=a["id"])
    assert (row["order_id"], row["status"]) == (order["id"], "forfeited")
    assert admin_user(srv, a)["held_micros"] == 0
    [entry] = [x for x in audited(srv, "commission.forfeit") if x["target_id"] == str(row["id"])]
    assert (entry["staff"], entry["ip"]) == (None, "console")
    assert entry["after"]["reason"] == "closed by the console"
    verify(srv)


def test_commissions_held_by_a_confirmed_flag_are_forfeited_one_by_one(srv):
    (x, xh), (y, yh) = chain(srv, 2)  # flag (Y, X) open
    order, price = buy(srv, y, yh)
    [row] = staff_commissions(srv, role="support", buyer_id=y["id"], status="held")
    assert (row["beneficiary_id"], row["amount_micros"]) == (x["id"], price * 500 // 10000)
    fin = staff(srv, "finance")
    url = srv.url + "/api/admin/commissions/%d/forfeit" % row["id"]
    # open: decide the flag first
    r = fin.post(url, json={"reason": "fake account"}, timeout=10)
    assert r.status_code == 409 and "confirm" in error_of(r)["message"]
    resolve(srv, open_flag(srv, y, x), "confirm")
    release(srv)
    assert me(srv, xh)["held_micros"] == row["amount_micros"]
    r = fin.post(url, json={"reason": "fake account"}, timeout=10)
    assert r.status_code == 200, r.text
    c = r.json()["commission"]
    assert (c["id"], c["status"], c["buyer_id"]) == (row["id"], "forfeited", y["id"])
    assert commissions(srv, xh)[0]["status"] == "forfeited"
    assert (me(srv, xh)["held_micros"], me(srv, xh)["balance_micros"]) == (0, 0)
    assert fin.post(srv.url + "/api/admin/commissions/999999/forfeit",
                    json={"reason": "x"}, timeout=10).status_code == 404
    r = fin.get(srv.url + "/api/admin/commissions", params={"status": "paid"}, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "status"
    verify(srv)


# ---- 7. no withdrawal out of a debt ----

def verified(s, user):
    """Verifies the member's e-mail (token from the queue) and approves KYC."""
    [variables] = queued_mail(s, user["email"], "email_verification")
    r = requests.post(s.url + "/api/auth/verify-email", timeout=10,
                      json={"token": variables["token"]})
    assert r.status_code == 200, r.text
    r = staff(s, "kyc").patch(s.url + "/api/admin/users/%d/kyc" % user["id"],
                              json={"status": "approved"}, timeout=10)
    assert r.status_code == 200, r.text


def test_a_withdrawal_is_not_paid_out_of_a_debt_and_rejecting_it_pays_the_debt(srv):
    (a, ah), (b, bh) = chain(srv, 2)
    verified(srv, a)
    resolve(srv, open_flag(srv, b, a), "clear")
    order, price = buy(srv, b, bh)
    want = price * 500 // 10000
    release(srv)
    assert me(srv, ah)["balance_micros"] == want
    book_address(srv, ah, TRX, "trc20", mature=False)
    r = requests.post(srv.url + "/api/withdrawals", headers=ah, timeout=10,
                      json={"amount_micros": want, "destination": TRX, "network": "trc20"})
    assert r.status_code == 201, r.text
    wd = r.json()["withdrawal"]
    assert wd["status"] == "pending" and me(srv, ah)["balance_micros"] == 0
    # the order is refunded: A's released commission is clawed back from
    # the wallet, which goes into debt; A's pending withdrawal is held
    srv.expect_log(r"DM01100: member %d's wallet is in debt \(-%s USD\) after "
                   r"commission_clawback order:%d; 1 pending withdrawal\(s\) held for review"
                   % (a["id"], re.escape("%d.%02d" % (want // USD, want % USD // 10000)),
                      order["id"]))
    fin = staff(srv, "finance")
    r = fin.post(srv.url + "/api/admin/orders/%d/refund" % order["id"],
                 json={"reason": "customer refund"}, timeout=10)
    assert r.status_code == 200, r.text
    assert me(srv, ah)["balance_micros"] == -want
    # finance cannot pay it, alone or in bulk, and is told why
    r = fin.post(srv.url + "/api/admin/withdrawals/%d/approve" % wd["id"],
                 json={"txid": "0xpaid"}, timeout=10)
    assert r.status_code == 409, r.text
    err = error_of(r)
    assert err["code"] == "conflict" and "in debt" in err["message"]
    assert "member %d" % a["id"] in err["message"]
    r = fin.post(srv.url + "/api/admin/withdrawals/decisions", timeout=10,
                 json={"ids": [wd["id"]], "decision": "approve", "txids": ["0xpaid"]})
    [res] = r.json()["results"]
    assert res["ok"] is False and res["error"]["code"] == "conflict"
    [got] = [w for w in fin.get(srv.url + "/api/admin/withdrawals",
                                params={"status": "pending", "limit": 200},
                                timeout=10).json()["withdrawals"] if w["id"] == wd["id"]]
    assert got["held_for_review"] is True and got["held_at"]
    assert "wallet in debt" in got["held_reason"] and "order:%d" % order["id"] in got["held_reason"]
    assert srv.sql("SELECT COUNT(*) FROM mail_queue WHERE template = 'staff_alert' AND "
                   "idempotency_key LIKE 'staff_alert:wd-debt:%'")[0][0] >= 1
    assert srv.sql("SELECT COUNT(*) FROM transfers WHERE kind = 'withdrawal_paid' AND "
                   "reference = 'withdrawal:%d'" % wd["id"]) == [(0,)]
    verify(srv)
    # rejecting returns the amount to the wallet, which pays the debt
    r = fin.post(srv.url + "/api/admin/withdrawals/%d/reject" % wd["id"],
                 json={"reason": "the commission was refunded"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["withdrawal"]["status"] == "rejected"
    assert me(srv, ah)["balance_micros"] == 0 and me(srv, ah)["held_micros"] == 0
    verify(srv)


# ---- the hold is the order's gateway's ----

def seconds(rfc):
    return int(time.mktime(time.strptime(rfc, "%Y-%m-%dT%H:%M:%SZ")))


@pytest.mark.parametrize("line,needle", [
    ("DeepMineCommissionHold 120 nosuch", "DM01101"),
    ("DeepMineCommissionHold 120 spool", "spool is not a declared payment plugin"),
    ("DeepMineCommissionHold 120 balance", "orders paid from the balance take the one-argument"),
    ("DeepMineCommissionHold 366 sandbox", "a whole number from 0 to 365"),
    ("DeepMineCommissionHold 120 sandbox extra", "takes 1-2 arguments"),
])
def test_a_gateway_hold_must_name_a_payment_plugin(new_server, line, needle):
    s = new_server(seed=False)
    s.expect_log("DM01101")
    s.write_local_conf(line + "\n")
    r = s.configtest()
    out = r.stdout + r.stderr + s.log_text()
    assert r.returncode != 0, out
    assert needle in out, out


def test_each_gateway_holds_its_commissions_for_its_own_days(new_server):
    s = new_server(local_conf=FAST + "DeepMineCommissionHold 30\n"
                                     "DeepMineCommissionHold 120 sandbox\n"
                                     "DeepMineCommissionHold 90 sandbox\n"
                                     "DeepMineCommissionHold 120 sandbox\n")
    s.expect_log(r"DM00101: plugin sandbox")
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.packages = s.get("/api/packages").json()["packages"]
    (a, ah), (b, bh) = chain(s, 2)
    resolve(s, open_flag(s, b, a), "clear")
    # B pays once by card (the sandbox gateway), once from the balance
    pkg = min(s.packages, key=lambda p: p["price_micros"])
    r = requests.post(s.url + "/api/orders", headers=bh, timeout=10,
                      json={"package_id": pkg["id"], "gateway": "sandbox"})
    assert r.status_code == 201, r.text
    card, url = r.json()["order"], r.json()["checkout_url"]
    r = requests.post(url + "/pay", timeout=15)
    assert r.status_code == 200 and "Payment accepted" in r.text, r.text
    balance, price = buy(s, b, bh, pkg)
    rows = {c["order_id"]: c for c in commissions(s, ah)}
    assert set(rows) == {card["id"], balance["id"]}
    for oid, days in ((card["id"], 120), (balance["id"], 30)):
        c = rows[oid]
        assert c["amount_micros"] == price * 500 // 10000 and c["status"] == "held"
        assert seconds(c["release_at"]) - seconds(c["created_at"]) == days * 86400, (oid, c)
    now = int(time.time())
    for offset, want in ((29, []), (31, [balance["id"]]), (121, [balance["id"], card["id"]])):
        s.ctl("commissions", "release", "--now", str(now + offset * 86400))
        assert sorted(c["order_id"] for c in commissions(s, ah)
                      if c["status"] == "available") == sorted(want), offset
    assert me(s, ah)["balance_micros"] == 2 * (price * 500 // 10000)
    verify(s)
