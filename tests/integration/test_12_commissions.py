"""Commissions and VIP levels in a real Apache: the plan for the owner
(GET/PUT /api/admin/vip-levels, validation naming the level, audited), a
level set by hand, a paid order split over a 12-deep chain (levels 1-10
credited held, 11 not), the member's list (auth, paging, masked e-mails),
release with `deepminectl commissions release`, refund clawback, and fraud
flags from registrations at the same IP (every test registers from
127.0.0.1, so a referrer and its referral ARE flagged: flags only keep
commissions held, nothing else). `deepminectl ledger verify` runs after
every money scenario."""
import re
import time
import uuid

import pytest
import requests

from conftest import (PASSWORD, Server, assert_clean_log, bearer, error_of, register_member,
                      staff, tag)

FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n")
LEVEL1 = [500, 200, 100, 50, 50, 25, 25, 25, 25, 25]


@pytest.fixture(scope="module")
def srv():
    s = Server(mpm="event", local_conf=FAST)
    s.ctl("capacity", "ensure", "--ghs", "1000000000", "--note", "test_12")
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
    b = register_member(s, "c", **extra)
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


def buy(s, user, headers):
    pkg = min(s.packages, key=lambda p: p["price_micros"])
    s.ctl("ledger", "adjust", "--user", str(user["id"]), "--amount", str(pkg["price_micros"]),
          "--reason", "test credit")
    r = requests.post(s.url + "/api/orders", headers=headers, timeout=10,
                      json={"package_id": pkg["id"], "pay_from_balance": True})
    assert r.status_code == 201, r.text
    return r.json()["order"], pkg["price_micros"]


def commissions(s, headers, **params):
    r = requests.get(s.url + "/api/referrals/commissions", headers=headers, params=params,
                     timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def me(s, headers):
    return requests.get(s.url + "/api/me", headers=headers, timeout=10).json()["user"]


# ---- the plan ----

def test_owner_reads_the_default_plan(srv):
    r = staff(srv, "owner").get(srv.url + "/api/admin/vip-levels", timeout=10)
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["cap_bp"] == 5000
    assert [l["level"] for l in plan["levels"]] == list(range(1, 11))
    assert plan["levels"][0]["rates_bp"] == LEVEL1
    assert plan["levels"][0]["total_bp"] == 1025
    assert all(l["total_bp"] <= 5000 for l in plan["levels"])


def test_only_the_owner_may_read_or_change_the_plan(srv):
    for role in ("finance", "support", "kyc"):
        assert staff(srv, role).get(srv.url + "/api/admin/vip-levels",
                                    timeout=10).status_code == 403
    assert requests.get(srv.url + "/api/admin/vip-levels", timeout=10).status_code == 401


def test_put_refuses_a_plan_over_the_cap_naming_the_level_and_writes_nothing(srv):
    owner = staff(srv, "owner")
    plan = owner.get(srv.url + "/api/admin/vip-levels", timeout=10).json()
    bad = {"levels": [dict(l) for l in plan["levels"]]}
    bad["levels"][4]["rates_bp"] = [5000, 1] + [0] * 8
    r = owner.put(srv.url + "/api/admin/vip-levels", json=bad, timeout=10)
    assert r.status_code == 400
    err = error_of(r)
    assert err["code"] == "invalid" and "level 5" in err["message"] and "5001" in err["message"]
    for mutate, needle in [
            (lambda b: b["levels"].pop(), "levels"),
            (lambda b: b["levels"][2].update(min_team_volume_micros=0), "level 3"),
            (lambda b: b["levels"][0].update(rates_bp=[10001] + [0] * 9), "level 1"),
            (lambda b: b["levels"][0].update(rates_bp=[1, 2]), "level 1")]:
        b = {"levels": [dict(l) for l in plan["levels"]]}
        mutate(b)
        r = owner.put(srv.url + "/api/admin/vip-levels", json=b, timeout=10)
        assert r.status_code == 400, (needle, r.text)
        assert needle in error_of(r)["message"] or needle in (error_of(r).get("field") or "")
    assert owner.get(srv.url + "/api/admin/vip-levels", timeout=10).json() == plan
    audit = owner.get(srv.url + "/api/admin/audit", params={"action": "vip_levels.update"},
                      timeout=10).json()
    assert audit["entries"] == []


def test_put_replaces_the_plan_and_is_audited_with_before_and_after(srv):
    owner = staff(srv, "owner")
    plan = owner.get(srv.url + "/api/admin/vip-levels", timeout=10).json()
    new = {"levels": [{k: v for k, v in l.items() if k != "total_bp"} for l in plan["levels"]]}
    new["levels"][9]["rates_bp"][0] += 5000 - 2950  # exactly at the cap
    r = owner.put(srv.url + "/api/admin/vip-levels", json=new, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["levels"][9]["total_bp"] == 5000
    [entry] = owner.get(srv.url + "/api/admin/audit", params={"action": "vip_levels.update"},
                        timeout=10).json()["entries"]
    assert entry["before"]["levels"][9]["total_bp"] == 2950
    assert entry["after"]["levels"][9]["total_bp"] == 5000
    # put the default back for the tests below
    r = owner.put(srv.url + "/api/admin/vip-levels",
                  json={"levels": plan["levels"]}, timeout=10)
    assert r.status_code == 200, r.text


def test_owner_sets_a_level_by_hand_audited(srv):
    user, h = member(srv)
    owner = staff(srv, "owner")
    r = owner.patch(srv.url + "/api/admin/users/%d/vip" % user["id"], json={"vip_level": 4},
                    timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["vip_level"] == 4 and me(srv, h)["vip_level"] == 4
    r = owner.patch(srv.url + "/api/admin/users/%d/vip" % user["id"], json={"vip_level": 11},
                    timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "vip_level"
    assert staff(srv, "support").patch(srv.url + "/api/admin/users/%d/vip" % user["id"],
                                       json={"vip_level": 2}, timeout=10).status_code == 403
    [entry] = owner.get(srv.url + "/api/admin/audit",
                        params={"action": "user.vip", "target_type": "user",
                                "target_id": str(user["id"])}, timeout=10).json()["entries"]
    assert entry["before"] == {"vip_level": 1} and entry["after"] == {"vip_level": 4}


# ---- commissions ----

def test_commissions_need_a_member(srv):
    r = requests.get(srv.url + "/api/referrals/commissions", timeout=10)
    assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
    r = staff(srv, "owner").get(srv.url + "/api/referrals/commissions", timeout=10)
    assert r.status_code == 401
    _, h = member(srv)
    assert commissions(srv, h) == {"commissions": [], "next_cursor": None}
    r = requests.get(srv.url + "/api/referrals/commissions?limit=0", headers=h, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "limit"


def test_a_paid_order_credits_exactly_levels_1_to_10_held_then_released(srv):
    c = chain(srv, 13)
    tip_user, tip_h = c[12]
    order, price = buy(srv, tip_user, tip_h)
    for d in range(1, 13):
        user, h = c[12 - d]
        page = commissions(srv, h)
        if d > 10:
            assert page["commissions"] == [], d
            continue
        [row] = page["commissions"]
        want = price * LEVEL1[d - 1] // 10000
        assert row["order_id"] == order["id"] and row["depth"] == d
        assert row["amount_micros"] == want and row["status"] == "held"
        assert row["rate_bp"] == LEVEL1[d - 1] and row["vip_level"] == 1
        assert row["source_email"].startswith(tip_user["email"][0] + "***@")
        assert me(srv, h)["held_micros"] == want
    verify(srv)
    # the hold period has not passed: nothing moves
    assert "0 commission(s) released" in srv.ctl("commissions", "release").stdout
    later = str(int(time.time()) + 15 * 86400)
    out = srv.ctl("commissions", "release", "--now", later).stdout
    assert re.search(r"(\d+) commission\(s\) released", out)
    # the buyer registered from its referrer's IP: flagged, so every depth
    # of its order stays held
    for d in range(1, 11):
        assert commissions(srv, c[12 - d][1])["commissions"][0]["status"] == "held", d
    support = staff(srv, "support")
    [flag] = [f for f in support.get(srv.url + "/api/admin/flags",
                                     params={"status": "open", "limit": 200},
                                     timeout=10).json()["flags"]
              if f["user_id"] == tip_user["id"]]
    assert support.post(srv.url + "/api/admin/flags/%d/clear" % flag["id"],
                        timeout=10).status_code == 200
    out = srv.ctl("commissions", "release", "--now", later).stdout
    assert int(re.search(r"(\d+) commission\(s\) released", out).group(1)) == 10
    for d in range(1, 11):
        user, h = c[12 - d]
        assert commissions(srv, h)["commissions"][0]["status"] == "available", d
        assert me(srv, h)["balance_micros"] == price * LEVEL1[d - 1] // 10000
        assert me(srv, h)["held_micros"] == 0
    verify(srv)


def test_commissions_page_newest_first(srv):
    c = chain(srv, 2)
    (ref, ref_h), (buyer, buyer_h) = c
    ids = [buy(srv, buyer, buyer_h)[0]["id"] for _ in range(3)]
    p1 = commissions(srv, ref_h, limit=2)
    assert [r["order_id"] for r in p1["commissions"]] == ids[::-1][:2]
    assert p1["next_cursor"]
    p2 = commissions(srv, ref_h, limit=2, cursor=p1["next_cursor"])
    assert [r["order_id"] for r in p2["commissions"]] == [ids[0]]
    assert p2["next_cursor"] is None
    verify(srv)


def test_a_refund_claws_back_every_commission_of_the_order(srv):
    c = chain(srv, 4)
    buyer, buyer_h = c[3]
    order, price = buy(srv, buyer, buyer_h)
    r = staff(srv, "finance").post(srv.url + "/api/admin/orders/%d/refund" % order["id"],
                                   json={"reason": "test refund"}, timeout=10)
    # a balance order is refunded at once (docs/api.md)
    assert r.status_code == 200, r.text
    assert r.json()["refunded"] is True and r.json()["order"]["status"] == "refunded"
    wants = [price * LEVEL1[d - 1] // 10000 for d in (1, 2, 3)]
    for d in (1, 2, 3):
        user, h = c[3 - d]
        [row] = commissions(srv, h)["commissions"]
        assert (row["depth"], row["status"], row["amount_micros"]) == \
            (d, "clawed_back", wants[d - 1])
        assert me(srv, h)["held_micros"] == 0 and me(srv, h)["balance_micros"] == 0
    # the price back to the buyer's wallet, each commission back to the pot
    assert me(srv, buyer_h)["balance_micros"] == price
    assert srv.sql("SELECT idempotency_key, amount_micros FROM transfers WHERE kind = "
                   "'commission_clawback' AND reference = 'order:%d' ORDER BY idempotency_key"
                   % order["id"]) == \
        [("clawback:%d:%d" % (order["id"], d), wants[d - 1]) for d in (1, 2, 3)]
    assert srv.sql("SELECT amount_micros FROM transfers WHERE kind = 'refund' AND "
                   "idempotency_key = 'refund:%d'" % order["id"]) == [(price,)]
    verify(srv)


# ---- fraud flags ----

def test_same_ip_registrations_raise_a_flag_that_support_clears(srv):
    (ref, ref_h), (new, new_h) = chain(srv, 2)
    support = staff(srv, "support")
    flags = support.get(srv.url + "/api/admin/flags", params={"status": "open", "limit": 200},
                        timeout=10).json()["flags"]
    [flag] = [f for f in flags if f["user_id"] == new["id"]]
    assert flag["related_user_id"] == ref["id"]
    assert flag["reason"] == "same_registration_ip" and flag["status"] == "open"
    # a flag blocks nothing else: the flagged member logs in and buys
    assert me(srv, new_h)["id"] == new["id"]
    order, price = buy(srv, new, new_h)
    later = str(int(time.time()) + 15 * 86400)
    srv.ctl("commissions", "release", "--now", later)
    assert commissions(srv, ref_h)["commissions"][0]["status"] == "held"
    assert staff(srv, "finance").get(srv.url + "/api/admin/flags",
                                     timeout=10).status_code == 403
    r = support.post(srv.url + "/api/admin/flags/%d/clear" % flag["id"], timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["flag"]["status"] == "cleared"
    r = support.post(srv.url + "/api/admin/flags/%d/confirm" % flag["id"], timeout=10)
    assert r.status_code == 409
    srv.ctl("commissions", "release", "--now", later)
    assert commissions(srv, ref_h)["commissions"][0]["status"] == "available"
    assert me(srv, ref_h)["balance_micros"] == price * LEVEL1[0] // 10000
    [entry] = staff(srv, "owner").get(
        srv.url + "/api/admin/audit",
        params={"action": "flag.clear", "target_type": "flag", "target_id": str(flag["id"])},
        timeout=10).json()["entries"]
    assert entry["before"]["status"] == "open" and entry["after"]["status"] == "cleared"
    assert support.post(srv.url + "/api/admin/flags/999999/clear",
                        timeout=10).status_code == 404
    verify(srv)


# ---- the staff statistics' commissions total (stats_daily; sql/035) ----

def stats_commissions(s):
    return sorted(tuple(int(v) if i != 1 else v for i, v in enumerate(r)) for r in s.sql(
        "SELECT day, currency, commissions_micros FROM stats_daily "
        "WHERE commissions_micros <> 0"))


def commissions_by_day(s):
    return sorted(tuple(int(v) if i != 1 else v for i, v in enumerate(r)) for r in s.sql(
        "SELECT (created_at / 86400) * 86400 AS d, currency, "
        "CAST(SUM(amount_micros) AS BIGINT) FROM commissions GROUP BY 1, 2"))


def test_stats_count_every_commission_once_on_its_day(srv):
    """stats_daily's commissions total is, for every day and currency, the
    sum of that day's commissions rows, before and after splits over a
    3-deep upline (one upsert per split since 035, no trigger per row);
    GET /api/admin/stats shows it."""
    members = chain(srv, 4)
    tip, tip_h = members[-1]
    assert stats_commissions(srv) == commissions_by_day(srv)
    before = sum(m for _, c, m in stats_commissions(srv) if c == "USD")
    buy(srv, tip, tip_h)
    buy(srv, tip, tip_h)
    after = stats_commissions(srv)
    assert after == commissions_by_day(srv)
    added = sum(m for _, c, m in after if c == "USD") - before
    paid = srv.sql("SELECT CAST(SUM(amount_micros) AS BIGINT), COUNT(*) FROM commissions "
                   "WHERE source_user_id = %d" % tip["id"])[0]
    assert paid[1] == 6  # two orders, three ancestors each
    assert added == int(paid[0]) > 0
    r = staff(srv, "finance").get(srv.url + "/api/admin/stats?days=1", timeout=10)
    assert r.status_code == 200, r.text
    today = [m for d, c, m in after if c == "USD"][-1]
    assert r.json()["currencies"]["USD"]["commissions_micros"][-1] == today
    verify(srv)
