"""Withdrawals, capacity and the package admin over HTTP: the e-mail and
KYC gates, pending -> paid, reject -> balance restored, two concurrent
requests the wallet cannot both pay, finance/support roles, bulk
decisions; the owner's capacity and packages (audited, the public
catalogue follows within 2 s). Members are funded with `deepminectl ledger
adjust`; SQL only reads (the verification token from the mail queue), and
`deepminectl ledger verify` runs after every money scenario."""
import json
import re
import threading
import time
import uuid

import pytest
import requests

from conftest import (PASSWORD, Server, assert_clean_log, bearer, book_address, error_of,
                      queued_mail, register_member, staff, tag)

FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit password-reset 10000/1m ip\n"
        "DeepMineRateLimit verify-email 10000/1m ip\n"
        "DeepMineWithdrawalLimits 1000 50000000 80000000\n"
        "DeepMineWithdrawalAddressDelay 60\n")
TRX = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


@pytest.fixture(scope="module")
def srv():
    # the fake clock: a confirmed withdrawal address is usable a minute
    # later (DeepMineWithdrawalAddressDelay 60), which the tests step over
    s = Server(mpm="event", local_conf=FAST, clock=int(time.time())).start()
    s.address_delay = 60
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.staff = {}
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()






def member(s, verified=True, kyc=True, funds=0):
    """A new member with TRX in its withdrawal address book (confirmed and
    usable): (id, Bearer headers)."""
    body = register_member(s, "w")
    email = body["user"]["email"]
    uid, h = body["user"]["id"], bearer(body)
    if verified:
        [variables] = queued_mail(s, email, "email_verification")
        r = requests.post(s.url + "/api/auth/verify-email", timeout=10,
                          json={"token": variables["token"]})
        assert r.status_code == 200, r.text
    if kyc:
        r = staff(s, "kyc").patch(s.url + "/api/admin/users/%d/kyc" % uid,
                                  json={"status": "approved"}, timeout=10)
        assert r.status_code == 200 and r.json()["user"]["kyc_status"] == "approved", r.text
    if funds:
        s.ctl("ledger", "adjust", "--user", str(uid), "--amount", str(funds),
              "--reason", "test funds")
    book_address(s, h, TRX, "trc20")
    return uid, h


def balance(s, h):
    r = requests.get(s.url + "/api/me", headers=h, timeout=10)
    assert r.status_code == 200
    return r.json()["user"]["balance_micros"]


def withdraw(s, h, amount, destination=TRX, network="trc20"):
    return requests.post(s.url + "/api/withdrawals", headers=h, timeout=10, json={
        "amount_micros": amount, "destination": destination, "network": network})


def verify_ledger(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stderr


def audit(s, action, target_type, target_id):
    r = staff(s, "owner").get(s.url + "/api/admin/audit", timeout=10, params={
        "action": action, "target_type": target_type, "target_id": str(target_id)})
    assert r.status_code == 200, r.text
    return r.json()["entries"]


# ---- withdrawals ----

def test_without_verified_email_403(srv):
    _, h = member(srv, verified=False, kyc=True, funds=100000)
    r = withdraw(srv, h, 5000)
    assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
    assert balance(srv, h) == 100000


def test_without_kyc_403_identity_check(srv):
    _, h = member(srv, kyc=False, funds=100000)
    r = withdraw(srv, h, 5000)
    assert r.status_code == 403
    assert error_of(r)["message"] == "identity check required"
    assert balance(srv, h) == 100000
    verify_ledger(srv)


def test_with_kyc_pending_then_paid(srv):
    uid, h = member(srv, funds=100000)
    r = withdraw(srv, h, 40000)
    assert r.status_code == 201, r.text
    w = r.json()["withdrawal"]
    assert w["status"] == "pending" and w["amount_micros"] == 40000 and w["txid"] is None
    assert balance(srv, h) == 60000
    mine = requests.get(srv.url + "/api/withdrawals", headers=h, timeout=10).json()
    assert [x["id"] for x in mine["withdrawals"]] == [w["id"]] and mine["next_cursor"] is None
    verify_ledger(srv)

    fin = staff(srv, "finance")
    queue = fin.get(srv.url + "/api/admin/withdrawals", params={"status": "pending"},
                    timeout=10).json()["withdrawals"]
    assert w["id"] in [x["id"] for x in queue]
    r = fin.post(srv.url + "/api/admin/withdrawals/%d/approve" % w["id"], json={"txid": "abc123"},
                 timeout=10)
    assert r.status_code == 200, r.text
    paid = r.json()["withdrawal"]
    assert paid["status"] == "paid" and paid["txid"] == "abc123" and paid["user_id"] == uid
    assert balance(srv, h) == 60000
    # decided once
    r = fin.post(srv.url + "/api/admin/withdrawals/%d/reject" % w["id"], json={"reason": "x"},
                 timeout=10)
    assert r.status_code == 409 and error_of(r)["code"] == "conflict"
    [entry] = audit(srv, "withdrawal.approve", "withdrawal", w["id"])
    assert entry["before"]["status"] == "pending" and entry["after"]["status"] == "paid"
    assert srv.sql("SELECT COUNT(*) FROM mail_queue WHERE template = 'withdrawal_approved' AND "
                   "idempotency_key = 'wd:%d:paid'" % w["id"]) == [(1,)]
    verify_ledger(srv)


def test_reject_restores_the_balance(srv):
    _, h = member(srv, funds=100000)
    w = withdraw(srv, h, 100000).json()["withdrawal"]
    assert balance(srv, h) == 0
    fin = staff(srv, "finance")
    r = fin.post(srv.url + "/api/admin/withdrawals/%d/reject" % w["id"], json={}, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "reason"
    r = fin.post(srv.url + "/api/admin/withdrawals/%d/reject" % w["id"],
                 json={"reason": "destination looks wrong"}, timeout=10)
    assert r.status_code == 200 and r.json()["withdrawal"]["status"] == "rejected"
    assert balance(srv, h) == 100000
    verify_ledger(srv)


def test_insufficient_limits_and_bad_destinations(srv):
    _, h = member(srv, funds=10000)
    r = withdraw(srv, h, 10001)
    # the member reads money, not micro-units and account names
    assert r.status_code == 409 and error_of(r)["message"] == \
        "insufficient balance: your balance is 0.01 USD; you asked to withdraw 0.010001 USD"
    assert withdraw(srv, h, 999).status_code == 400            # under the configured min
    assert withdraw(srv, h, 50000001).status_code == 400       # over the max
    for dest, net in [("0x123", "erc20"), (TRX[:-1], "trc20"), ("bc1qb", "btc")]:
        r = withdraw(srv, h, 5000, dest, net)
        assert r.status_code == 400 and error_of(r)["field"] == "destination", dest
    r = withdraw(srv, h, 5000, TRX, "solana")
    assert r.status_code == 400 and error_of(r)["field"] == "network"
    # API.md's request names no network: it follows from the address shape
    r = requests.post(srv.url + "/api/withdrawals", headers=h, timeout=10,
                      json={"amount_micros": 5000, "destination": "not-an-address"})
    assert r.status_code == 400 and error_of(r)["field"] == "destination"
    assert balance(srv, h) == 10000
    verify_ledger(srv)


def test_two_concurrent_withdrawals_exceeding_the_balance_one_wins(srv):
    _, h = member(srv, funds=100000)
    results = []
    start = threading.Barrier(2)

    def go():
        start.wait()
        results.append(withdraw(srv, h, 60000).status_code)
    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201, 409], results
    assert balance(srv, h) == 40000
    verify_ledger(srv)


def test_roles_and_bulk_decisions(srv):
    _, h = member(srv, funds=300000)
    ids = [withdraw(srv, h, 50000).json()["withdrawal"]["id"] for _ in range(3)]
    for role in ["support", "kyc"]:
        r = staff(srv, role).get(srv.url + "/api/admin/withdrawals", timeout=10)
        assert r.status_code == 403, role
        r = staff(srv, role).post(srv.url + "/api/admin/withdrawals/%d/approve" % ids[0],
                                  json={"txid": "t"}, timeout=10)
        assert r.status_code == 403, role
    assert requests.get(srv.url + "/api/admin/withdrawals", headers=h,
                        timeout=10).status_code == 401
    fin = staff(srv, "finance")
    r = fin.post(srv.url + "/api/admin/withdrawals/decisions", timeout=10,
                 json={"ids": ids[:2], "decision": "approve", "txids": ["t1"]})
    assert r.status_code == 400 and error_of(r)["field"] == "txids"
    r = fin.post(srv.url + "/api/admin/withdrawals/decisions", timeout=10,
                 json={"ids": ids[:2], "decision": "approve", "txids": ["t1", "t2"]})
    assert r.status_code == 200, r.text
    assert [x["ok"] for x in r.json()["results"]] == [True, True]
    r = fin.post(srv.url + "/api/admin/withdrawals/decisions", timeout=10,
                 json={"ids": ids[1:], "decision": "reject", "reason": "duplicate"})
    out = r.json()["results"]
    assert out[0]["ok"] is False and out[0]["error"]["code"] == "conflict"
    assert out[1]["ok"] is True and out[1]["withdrawal"]["status"] == "rejected"
    assert balance(srv, h) == 300000 - 100000
    verify_ledger(srv)


# ---- capacity and packages (owner) ----

def test_capacity_put_get_history_audited_and_roles(srv):
    own = staff(srv, "owner")
    r = own.get(srv.url + "/api/admin/capacity", timeout=10)
    assert r.status_code == 200 and r.json()["capacity"]["hashrate_ths"] == 1000000
    r = own.put(srv.url + "/api/admin/capacity", json={"hashrate_ths": 2000000.5,
                                                        "note": "new racks"}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["capacity"]["hashrate_ghs"] == 2000000500
    assert [h["note"] for h in body["history"]][:1] == ["new racks"]
    assert len(audit(srv, "capacity.set", "capacity", body["capacity"]["id"])) == 1
    r = own.put(srv.url + "/api/admin/capacity", json={"hashrate_ths": -1}, timeout=10)
    assert r.status_code == 400
    assert staff(srv, "finance").put(srv.url + "/api/admin/capacity", json={
        "hashrate_ths": 1}, timeout=10).status_code == 403
    assert staff(srv, "support").get(srv.url + "/api/admin/capacity",
                                     timeout=10).status_code == 403


def wait_catalogue(s, pred):
    deadline = time.time() + 2
    while True:
        body = s.get("/api/packages").json()
        if pred(body) or time.time() > deadline:
            return body
        time.sleep(0.1)


def test_packages_create_patch_deactivate_audited_and_public(srv):
    own = staff(srv, "owner")
    r = own.post(srv.url + "/api/admin/packages", timeout=10, json={
        "name": "Test %s" % tag(), "hashrate_ths": 12.345, "price_micros": 7000000,
        "daily_yield_micros": 10000, "duration_days": 30, "sort_order": 99})
    assert r.status_code == 201, r.text
    pkg = r.json()["package"]
    assert pkg["hashrate_ghs"] == 12345 and pkg["active"] is True
    body = wait_catalogue(srv, lambda b: pkg["id"] in [p["id"] for p in b["packages"]])
    [pub] = [p for p in body["packages"] if p["id"] == pkg["id"]]
    assert pub["hashrate_ths"] == 12.345 and pub["sold_out"] is False

    for bad, field in [({"hashrate_ths": 0.0001}, "hashrate_ths"), ({"price_micros": 0},
                       "price_micros"), ({"name": "a\u0007b"}, "name"),
                       ({"duration_days": 0}, "duration_days")]:
        r = own.patch(srv.url + "/api/admin/packages/%d" % pkg["id"], json=bad, timeout=10)
        assert r.status_code == 400 and error_of(r)["field"] == field, bad

    r = own.patch(srv.url + "/api/admin/packages/%d" % pkg["id"],
                  json={"price_micros": 8000000}, timeout=10)
    assert r.status_code == 200 and r.json()["package"]["price_micros"] == 8000000
    [entry] = audit(srv, "package.update", "package", pkg["id"])
    assert entry["before"]["price_micros"] == 7000000
    assert entry["after"]["price_micros"] == 8000000

    # a sold demo package (1) may be deactivated; there is no DELETE
    r = own.patch(srv.url + "/api/admin/packages/1", json={"active": False}, timeout=10)
    assert r.status_code == 200 and r.json()["package"]["active"] is False
    body = wait_catalogue(srv, lambda b: 1 not in [p["id"] for p in b["packages"]])
    assert 1 not in [p["id"] for p in body["packages"]]
    assert own.delete(srv.url + "/api/admin/packages/1", timeout=10).status_code == 405
    own.patch(srv.url + "/api/admin/packages/1", json={"active": True}, timeout=10)

    assert staff(srv, "finance").post(srv.url + "/api/admin/packages", json={},
                                      timeout=10).status_code == 403
    assert staff(srv, "support").get(srv.url + "/api/admin/packages",
                                     timeout=10).status_code == 200


def test_capacity_zero_makes_the_catalogue_sold_out(srv):
    own = staff(srv, "owner")
    assert own.put(srv.url + "/api/admin/capacity", json={"hashrate_ths": 0},
                   timeout=10).status_code == 200
    try:
        body = wait_catalogue(srv, lambda b: all(p["sold_out"] for p in b["packages"]))
        assert body["available_ths"] == 0
        assert all(p["sold_out"] for p in body["packages"])
    finally:
        own.put(srv.url + "/api/admin/capacity", json={"hashrate_ths": 1000000}, timeout=10)


def test_network_follows_from_the_destination_when_not_named(srv):
    _, h = member(srv, funds=100000)
    r = requests.post(srv.url + "/api/withdrawals", headers=h, timeout=10,
                      json={"amount_micros": 20000, "destination": TRX})
    assert r.status_code == 201, r.text
    assert r.json()["withdrawal"]["network"] == "trc20"
    assert balance(srv, h) == 80000
    verify_ledger(srv)
