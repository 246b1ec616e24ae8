"""The ledger over HTTP and at the console: a member's statement
(GET /api/ledger), the balances in GET /api/me, every transfer for finance
staff (GET /api/admin/transfers), and `deepminectl ledger` verify / show /
adjust. Money is moved only through core (the operator's audited
adjustment), never by writing ledger rows with SQL; SQL is used here only
to tamper with a balance and watch `ledger verify` catch it."""
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
KEY_RE = re.compile(r"idempotency key: (adj:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-"
                    r"[89ab][0-9a-f]{3}-[0-9a-f]{12})")


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




def member(s):
    """A new member: (id, Bearer headers)."""
    body = register_member(s, "l")
    assert body["user"]["balance_micros"] == 0 and body["user"]["held_micros"] == 0
    return body["user"]["id"], bearer(body)




def adjust(s, user, amount, reason="test credit", *extra, check=True):
    r = s.ctl("ledger", "adjust", "--user", str(user), "--amount", str(amount),
              "--reason", reason, *extra, check=check)
    return r


def adjusted_key(r):
    m = KEY_RE.search(r.stdout)
    assert m, r.stdout
    return m.group(1)


def statement(s, headers, **params):
    r = requests.get(s.url + "/api/ledger", headers=headers, params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def me(s, headers):
    r = requests.get(s.url + "/api/me", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["user"]


def transfers(s, role="finance", **params):
    return staff(s, role).get(s.url + "/api/admin/transfers", params=params, timeout=10)


def verify(s):
    return s.ctl("ledger", "verify", check=False)


# ---- the member's statement ----

def test_new_member_has_an_empty_statement_and_zero_balances(srv):
    _, h = member(srv)
    assert statement(srv, h) == {"transfers": [], "next_cursor": None}
    user = me(srv, h)
    assert user["balance_micros"] == 0 and user["held_micros"] == 0
    assert user["currency"] == "USD"


def test_statement_needs_a_member(srv):
    r = requests.get(srv.url + "/api/ledger", timeout=10)
    assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
    r = requests.get(srv.url + "/api/ledger", headers={"Authorization": "Bearer x.y.z"},
                     timeout=10)
    assert r.status_code == 401
    # a staff session is not a member
    r = staff(srv, "owner").get(srv.url + "/api/ledger", timeout=10)
    assert r.status_code == 401


def test_statement_bad_limit_or_cursor_is_400(srv):
    _, h = member(srv)
    for bad, field in [("limit=0", "limit"), ("limit=201", "limit"), ("limit=x", "limit"),
                       ("cursor=-1", "cursor"), ("cursor=abc", "cursor"),
                       ("cursor=99999999999999999999", "cursor")]:
        r = requests.get(srv.url + "/api/ledger?" + bad, headers=h, timeout=10)
        assert r.status_code == 400, bad
        err = error_of(r)
        assert err["code"] == "invalid" and err["field"] == field, (bad, err)


def test_adjustment_credits_the_wallet_statement_and_me(srv):
    uid, h = member(srv)
    r = adjust(srv, uid, 2500000, "welcome credit")
    key = adjusted_key(r)
    assert "adjustment posted" in r.stdout
    page = statement(srv, h)
    assert page["next_cursor"] is None
    [line] = page["transfers"]
    assert set(line) == {"id", "kind", "amount_micros", "currency", "account", "reference",
                         "created_at"}
    assert line["kind"] == "adjustment" and line["amount_micros"] == 2500000
    assert line["currency"] == "USD" and line["account"] == "wallet"
    assert line["reference"] is None
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", line["created_at"])
    user = me(srv, h)
    assert user["balance_micros"] == 2500000 and user["held_micros"] == 0

    # a debit is signed from the member's side
    adjust(srv, uid, -500000, "correction")
    lines = statement(srv, h)["transfers"]
    assert [l["amount_micros"] for l in lines] == [-500000, 2500000]
    assert lines[0]["id"] > lines[1]["id"]
    assert me(srv, h)["balance_micros"] == 2000000

    # the same key again changes nothing
    r = adjust(srv, uid, 2500000, "welcome credit", "--key", key)
    assert "already posted" in r.stdout and adjusted_key(r) == key
    assert len(statement(srv, h)["transfers"]) == 2
    assert me(srv, h)["balance_micros"] == 2000000

    # a debit below zero is refused and writes nothing
    r = adjust(srv, uid, -2000001, "too much", check=False)
    assert r.returncode == 1 and "insufficient balance" in r.stderr
    assert me(srv, h)["balance_micros"] == 2000000
    assert len(statement(srv, h)["transfers"]) == 2

    # the console's adjustment is in the audit log
    r = staff(srv, "owner").get(srv.url + "/api/admin/audit",
                                params={"action": "ledger.adjust", "target_type": "user",
                                        "target_id": str(uid)}, timeout=10)
    entries = r.json()["entries"]
    assert len(entries) == 2
    assert entries[-1]["staff"] is None and entries[-1]["ip"] == "console"
    assert entries[-1]["after"]["reason"] == "welcome credit"
    assert entries[-1]["after"]["idempotency_key"] == key

    show = srv.ctl("ledger", "show", "--user", str(uid)).stdout
    assert "2.000000 USD" in show and "(2000000 micros)" in show


def test_statement_pages_newest_first(srv):
    uid, h = member(srv)
    for i in range(5):
        adjust(srv, uid, 1000 + i)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = statement(srv, h, **params)
        assert len(page["transfers"]) <= 2
        seen += [l["amount_micros"] for l in page["transfers"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
        assert isinstance(cursor, str)
    assert seen == [1004, 1003, 1002, 1001, 1000] and pages == 3


def test_adjust_usage_and_unknown_member(srv):
    uid, _ = member(srv)
    for args in [["adjust", "--user", str(uid), "--amount", "5"],            # no reason
                 ["adjust", "--user", str(uid), "--reason", "x"],            # no amount
                 ["adjust", "--user", "x", "--amount", "5", "--reason", "x"],
                 ["show"], ["verify", "extra"], ["nonsense"]]:
        r = srv.ctl("ledger", *args, check=False)
        assert r.returncode == 2, args
    r = adjust(srv, 999999, 5, check=False)
    assert r.returncode == 1 and "no member" in r.stderr
    r = adjust(srv, uid, 0, check=False)
    assert r.returncode == 1
    r = adjust(srv, uid, 5, "x", "--key", "pay:1", check=False)
    assert r.returncode == 1 and "adj:" in r.stderr
    # help lists every command (adjust too), and shows one with its options
    assert "ledger adjust --user ID --amount MICROS --reason TEXT" in srv.ctl("help").stdout
    detail = srv.ctl("help", "ledger", "adjust").stdout
    assert "--amount MICROS" in detail and "--key KEY" in detail


# ---- staff ----

def test_admin_transfers_for_finance_with_filters(srv):
    uid, h = member(srv)
    adjust(srv, uid, 7000)
    adjust(srv, uid, -3000)
    r = transfers(srv, "finance", limit=200)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"transfers", "next_cursor"}
    rows = body["transfers"]
    ids = [t["id"] for t in rows]
    assert ids == sorted(ids, reverse=True)
    t = rows[0]
    assert set(t) == {"id", "idempotency_key", "kind", "amount_micros", "currency", "debit",
                      "credit", "reference", "reverses_transfer_id", "created_at"}
    # the newest: 3000 from this member's wallet to the adjustments account
    assert t["amount_micros"] == 3000 and t["kind"] == "adjustment"
    assert t["debit"]["kind"] == "wallet" and t["debit"]["user_id"] == uid
    assert t["debit"]["code"] is None
    assert t["credit"] == {"id": t["credit"]["id"], "kind": "system", "user_id": None,
                           "code": "adjustments"}
    assert t["idempotency_key"].startswith("adj:") and t["reverses_transfer_id"] is None
    wallet = t["debit"]["id"]

    mine = transfers(srv, account=wallet).json()["transfers"]
    assert [x["amount_micros"] for x in mine] == [3000, 7000]
    assert all(wallet in (x["debit"]["id"], x["credit"]["id"]) for x in mine)
    assert len(transfers(srv, account=wallet, limit=1).json()["transfers"]) == 1
    nxt = transfers(srv, account=wallet, limit=1).json()["next_cursor"]
    assert [x["amount_micros"] for x in
            transfers(srv, account=wallet, cursor=nxt).json()["transfers"]] == [7000]

    assert transfers(srv, kind="adjustment", account=wallet).json()["transfers"] == mine
    assert transfers(srv, kind="yield", account=wallet).json()["transfers"] == []
    now = int(time.time())
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    assert transfers(srv, account=wallet, **{"from": iso(now - 3600),
                                            "to": iso(now + 3600)}).json()["transfers"] == mine
    assert transfers(srv, account=wallet, **{"from": str(now + 3600)}).json()["transfers"] == []
    assert transfers(srv, account=wallet, to=iso(now - 3600)).json()["transfers"] == []

    # the owner too; support and kyc may not
    assert transfers(srv, "owner", account=wallet).json()["transfers"] == mine
    for role in ["support", "kyc"]:
        r = transfers(srv, role)
        assert r.status_code == 403 and error_of(r)["code"] == "forbidden", role
    # no staff session, or a member's token: 401
    assert requests.get(srv.url + "/api/admin/transfers", timeout=10).status_code == 401
    assert requests.get(srv.url + "/api/admin/transfers", headers=h,
                        timeout=10).status_code == 401


def test_admin_transfers_bad_filters_are_400(srv):
    for params, field in [({"kind": "nonsense"}, "kind"), ({"account": "x"}, "account"),
                          ({"account": "0"}, "account"), ({"from": "yesterday"}, "from"),
                          ({"to": "2026-13-01T00:00:00Z"}, "to"),
                          ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
                          ({"limit": "0"}, "limit"), ({"cursor": "-3"}, "cursor")]:
        r = transfers(srv, **params)
        assert r.status_code == 400, params
        assert error_of(r)["field"] == field, params


# ---- verification (last: it tampers with the database, then repairs it) ----

def test_ledger_verify_passes_and_catches_a_tampered_balance(srv):
    uid, h = member(srv)
    adjust(srv, uid, 123456)
    r = verify(srv)
    assert r.returncode == 0, r.stderr
    m = re.search(r"ok: (\d+) accounts, (\d+) transfers, total 0", r.stdout)
    assert m and int(m.group(1)) >= 2 and int(m.group(2)) >= 1, r.stdout

    wallet = transfers(srv, kind="adjustment", limit=1).json()["transfers"][0]["credit"]["id"]
    srv.sql("UPDATE accounts SET balance_micros = balance_micros + 1 WHERE id = %d" % wallet)
    try:
        r = verify(srv)
        assert r.returncode == 1
        assert "account %d (wallet of member %d in USD)" % (wallet, uid) in r.stderr, r.stderr
        assert "stored 123457, expected 123456" in r.stderr, r.stderr
    finally:
        srv.sql("UPDATE accounts SET balance_micros = balance_micros - 1 WHERE id = %d" % wallet)
    assert verify(srv).returncode == 0
