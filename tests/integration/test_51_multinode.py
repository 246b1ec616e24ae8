"""Several nodes (issue 17): two Apache nodes, each with its own ServerRoot
and port, on ONE throwaway PostgreSQL database and ONE throwaway memcached
(DeepMineRateLimitStore memcache), sharing the secret key file (and the
sandbox gateway's webhook secret) as every node of a deployment must.
Proves across nodes: a token issued by one node works on the other and a
logout or password change on one ends it on the other (the token version);
the 6th login in a minute is refused whichever node it reaches; the same
paid webhook delivered to both nodes at once makes one contract and one
set of commissions; 20 concurrent withdrawals spread over both nodes pay
exactly the affordable ones; with both cron daemons running each hour is
accrued once and each job period runs on one node; a package changed
through one node's admin API is served by the other; `kill -9` of one
node's whole process group mid-traffic leaves the other serving and the
money verifying. Always PostgreSQL, whatever DM_ENGINE says (one SQLite
file cannot be shared by two machines)."""
import calendar
import concurrent.futures
import hashlib
import hmac
import json
import os
import re
import signal
import threading
import time
import uuid

import pytest
import requests

from conftest import (PASSWORD, Memcached, Server, assert_clean_log, bearer, book_address,
                      error_of, queued_mail, register_member, rfc3339, staff)

# 2026-11-25T10:00:00Z, a whole hour
T0 = 1795600800
HOUR = 3600
FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit webhook 100000/1m ip\n"
        "DeepMineRateLimit verify-email 10000/1m ip\n"
        "DeepMineRateLimit confirm-address 10000/1m ip\n"
        "DeepMineWithdrawalLimits 1000 50000000 80000000\n"
        "DeepMineWithdrawalAddressDelay 60\n"
        "DeepMineAccrualDelay 0\n"
        # a slow answer on this busy machine is a 503, never an admission
        "DeepMineRateLimitUnreachable closed\n"
        "DeepMineRateLimitStoreTimeout 5000\n")
TRX = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
CLOSE = {"Connection": "close"}  # a new connection each time
DAEMON_STARTED = r"DM00041: cron daemon started \(pid (\d+)"


def wait_for(cond, timeout=60, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def share_file(a, b, name):
    """b's copy of a file of a's VAR (the secret key...), replaced in place
    so b's file keeps the owner and mode gen-conf.sh gave it."""
    with open(os.path.join(a.var, name), "rb") as f:
        data = f.read()
    with open(os.path.join(b.var, name), "wb") as f:
        f.write(data)


class Cluster:
    """Nodes a (event MPM) and b (prefork) on one database, one memcached,
    one secret key, one fake clock (a's clock file, read by both)."""

    def __init__(self, mc, conf, clock=None):
        conf = "DeepMineRateLimitStore memcache %s\n" % mc.address + conf
        self.a = Server(mpm="event", engine="postgresql", clock=clock)
        self.b = Server(mpm="prefork", engine="postgresql", seed=False, clock=clock,
                        pg_database=self.a.pg_name)
        a, b = self.a, self.b
        b.pg_name = None  # a drops the database at cleanup
        share_file(a, b, "secret.key")
        share_file(a, b, "sandbox-webhook.secret")
        if clock is not None:
            b.extra_conf = b.extra_conf.replace(b.clock_file, a.clock_file)
            b.clock_file = a.clock_file
        for s in (a, b):
            # the generated configuration keeps documents on local disk:
            # true of these two nodes, and what the warning says
            s.expected_log.append(re.compile(r"DM01754: DeepMineStorage local is storage-local"))
            s.write_local_conf(conf)
        a.start()
        b.start()
        for s in (a, b):
            assert "rate limits kept in memcached %s" % mc.address in s.log_text()
            s.terms = s.get("/api/legal/terms").json()["version"]
            s.staff = {}
            s.address_delay = 60
        self.nodes = (a, b)

    def set_clock(self, t):
        self.a.set_clock(t)
        self.b.now = self.a.now

    def close(self):
        for s in (self.b, self.a):
            s.stop()
        try:
            for s in (self.b, self.a):
                assert_clean_log(s)
        finally:
            self.b.cleanup()
            self.a.cleanup()


@pytest.fixture(scope="module")
def mc():
    m = Memcached().start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def two(mc):
    c = Cluster(mc, FAST, clock=T0 + 60)
    yield c
    c.close()


def ledger_verifies(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def me(s, h):
    return s.get("/api/me", headers=h)


# ---- sessions: one secret key, one token version --------------------------

def test_a_token_issued_by_one_node_works_on_the_other(two):
    a, b = two.nodes
    body = register_member(a, "t")
    h = bearer(body)
    for s in (a, b, a):
        r = me(s, h)
        assert r.status_code == 200, r.text
        assert r.json()["user"]["id"] == body["user"]["id"]
    # and one issued by b works on a: the login of the same member through b
    r = b.request("POST", "/api/auth/login", json={
        "email": body["user"]["email"], "password": PASSWORD, "return_tokens": True})
    assert r.status_code == 200, r.text
    assert me(a, bearer(r.json())).json()["user"]["id"] == body["user"]["id"]


def test_a_password_change_on_one_node_ends_the_token_on_the_other(two):
    a, b = two.nodes
    body = register_member(a, "p")
    old = bearer(body)
    assert me(b, old).status_code == 200
    r = a.request("POST", "/api/me/password", headers=old, json={
        "current_password": PASSWORD, "new_password": "Walnut-Compass-Harbor-77",
        "return_tokens": True})
    assert r.status_code == 200, r.text
    new = bearer(r.json())
    for s in (b, a):
        r = me(s, old)
        assert r.status_code == 401, r.text
        assert error_of(r)["code"] == "unauthorized"
    # the caller's fresh session works on the other node
    assert me(b, new).status_code == 200
    fresh = a.request("POST", "/api/auth/login", json={
        "email": body["user"]["email"], "password": "Walnut-Compass-Harbor-77",
        "return_tokens": True})
    assert fresh.status_code == 200, fresh.text
    assert me(b, bearer(fresh.json())).status_code == 200


def test_a_logout_on_one_node_ends_the_token_on_the_other(two):
    a, b = two.nodes
    body = register_member(a, "l")
    h = bearer(body)
    assert me(b, h).status_code == 200
    r = b.request("POST", "/api/auth/logout", headers=h,
                  json={"refresh_token": body["tokens"]["refresh_token"]})
    assert r.status_code == 200 and r.json() == {"logged_out": True}, r.text
    for s in (a, b):
        assert me(s, h).status_code == 401


# ---- the catalogue cache --------------------------------------------------

def test_a_package_changed_through_one_node_is_served_by_the_other(two):
    """b's cache revalidates against catalogue_state.generation (bumped by
    the database's triggers) at most once a second (catalogue.h): the
    change made through a's admin API is served by b within that interval."""
    a, b = two.nodes
    [pkg] = [p for p in b.get("/api/packages").json()["packages"] if p["id"] == 2]
    etag = b.get("/api/packages").headers["ETag"]
    price = pkg["price_micros"] + 1000000
    r = staff(a, "owner").patch(a.url + "/api/admin/packages/2",
                                json={"price_micros": price}, timeout=10)
    assert r.status_code == 200 and r.json()["package"]["price_micros"] == price, r.text
    # a's own cache is invalidated at once
    [p] = [p for p in a.get("/api/packages").json()["packages"] if p["id"] == 2]
    assert p["price_micros"] == price

    def b_serves_it():
        r = b.get("/api/packages", headers=CLOSE)
        return r.headers["ETag"] != etag and r.json()
    body = wait_for(b_serves_it, timeout=10, what="node b's catalogue")
    [p] = [p for p in body["packages"] if p["id"] == 2]
    assert p["price_micros"] == price
    assert b.get("/api/packages/2").json()["package"]["price_micros"] == price
    r = staff(b, "owner").patch(b.url + "/api/admin/packages/2",
                                json={"price_micros": pkg["price_micros"]}, timeout=10)
    assert r.status_code == 200, r.text


# ---- one paid webhook, both nodes, five times at once ---------------------

def sign(s, body):
    with open(os.path.join(s.var, "sandbox-webhook.secret")) as f:
        secret = f.read().rstrip("\n")
    t = int(time.time())
    mac = hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    return "t=%d,v1=%s" % (t, mac)


def deliver(s, body):
    return requests.post(s.url + "/api/webhooks/sandbox", data=body, timeout=30, headers={
        "Content-Type": "application/json", "Connection": "close",
        "Sandbox-Signature": sign(s, body)})


def chain(s, n):
    """n members, each referred by the previous one; [0] is the root."""
    out = [register_member(s, "c")]
    for _ in range(n - 1):
        out.append(register_member(s, "c", referral_code=out[-1]["user"]["referral_code"]))
    return out


def test_the_same_paid_webhook_on_both_nodes_at_once_makes_one_contract(two):
    a, b = two.nodes
    c = chain(a, 11)
    buyer = c[-1]
    pkg = min(a.get("/api/packages").json()["packages"], key=lambda p: p["price_micros"])
    r = b.request("POST", "/api/orders", headers=bearer(buyer),
                  json={"package_id": pkg["id"], "gateway": "sandbox"})
    assert r.status_code == 201, r.text
    order = r.json()["order"]
    [(ref,)] = a.sql("SELECT provider_ref FROM orders WHERE id = %d" % order["id"])
    body = json.dumps({
        "id": "evt_it51_%s" % uuid.uuid4().hex, "type": "checkout.paid",
        "created": int(time.time()),
        "data": {"object": {"id": ref, "order_id": str(order["id"]),
                            "amount_micros": pkg["price_micros"], "currency": "USD"}}},
        separators=(",", ":")).encode()
    barrier = threading.Barrier(10)

    def one(i):
        barrier.wait()
        return deliver((a, b)[i % 2], body)
    with concurrent.futures.ThreadPoolExecutor(10) as ex:
        answers = list(ex.map(one, range(10)))
    assert [x.status_code for x in answers] == [200] * 10, [x.text for x in answers]
    assert sorted(x.json()["duplicate"] for x in answers) == [False] + [True] * 9
    assert a.sql("SELECT status FROM contracts WHERE order_id = %d" % order["id"]) == \
        [("active",)]
    assert a.sql("SELECT COUNT(*) FROM payment_events WHERE order_ref = '%d'"
                 % order["id"]) == [(1,)]
    # the payment and the ten commissions, each once
    kinds = a.sql("SELECT kind, COUNT(*) FROM transfers WHERE reference = 'order:%d' "
                  "GROUP BY kind ORDER BY kind" % order["id"])
    assert len(kinds) == 2 and sorted(n for _, n in kinds) == [1, 10], kinds
    # one set of commissions: depths 1 to 10, once each, to the ten uplines
    rows = a.sql("SELECT depth, beneficiary_id FROM commissions WHERE order_id = %d ORDER BY depth"
                 % order["id"])
    assert rows == [(d, c[-1 - d]["user"]["id"]) for d in range(1, 11)]
    for s in (a, b):
        r = s.get("/api/orders/%d" % order["id"], headers=bearer(buyer))
        assert r.json()["order"]["status"] == "paid", r.text
    ledger_verifies(a)


# ---- 20 withdrawals at once over both nodes --------------------------------

def funded_member(a, funds):
    body = register_member(a, "w")
    uid, h = body["user"]["id"], bearer(body)
    [v] = queued_mail(a, body["user"]["email"], "email_verification")
    r = requests.post(a.url + "/api/auth/verify-email", timeout=10, json={"token": v["token"]})
    assert r.status_code == 200, r.text
    r = staff(a, "kyc").patch(a.url + "/api/admin/users/%d/kyc" % uid,
                              json={"status": "approved"}, timeout=10)
    assert r.status_code == 200, r.text
    a.ctl("ledger", "adjust", "--user", str(uid), "--amount", str(funds), "--reason", "it51")
    book_address(a, h, TRX, "trc20")  # moves the shared clock past the delay
    return uid, h


def test_twenty_concurrent_withdrawals_over_both_nodes_pay_exactly_the_affordable(two):
    a, b = two.nodes
    uid, h = funded_member(a, 100000)
    b.now = a.now
    barrier = threading.Barrier(20)

    def one(i):
        barrier.wait()
        s = (a, b)[i % 2]
        return requests.post(s.url + "/api/withdrawals", headers=dict(h, **CLOSE), timeout=30,
                             json={"amount_micros": 15000, "destination": TRX,
                                   "network": "trc20"})
    with concurrent.futures.ThreadPoolExecutor(20) as ex:
        answers = list(ex.map(one, range(20)))
    codes = sorted(x.status_code for x in answers)
    assert codes == [201] * 6 + [409] * 14, [x.text for x in answers]
    for x in answers:
        if x.status_code == 409:
            assert error_of(x)["code"] == "conflict", x.text
    for s in (a, b):
        assert me(s, h).json()["user"]["balance_micros"] == 10000
    assert a.sql("SELECT COUNT(*), SUM(amount_micros) FROM withdrawals WHERE user_id = %d"
                 % uid) == [(6, 90000)]
    assert a.sql("SELECT MIN(balance_micros) FROM accounts WHERE kind = 'wallet'")[0][0] >= 0
    ledger_verifies(a)


# ---- both cron daemons: each hour once, each job period on one node -------

def daemon_pids(s):
    """The pids of s's cron daemons still alive, from their start lines."""
    alive = []
    for p in map(int, re.findall(DAEMON_STARTED, s.log_text())):
        try:
            os.kill(p, 0)
            alive.append(p)
        except ProcessLookupError:
            pass
    return alive


def unix(text):
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def test_both_cron_daemons_accrue_each_hour_once_and_run_each_period_on_one_node(two):
    a, b = two.nodes
    wait_for(lambda: len(daemon_pids(a)) == 1 and len(daemon_pids(b)) == 1, what="daemons")
    pids = {daemon_pids(a)[0]: "a", daemon_pids(b)[0]: "b"}
    pkg = max((p for p in a.get("/api/packages").json()["packages"]
               if p["yield_mode"] == "fixed"), key=lambda p: p["daily_yield_micros"])
    buyers = []
    for s in (a, b, a):
        body = register_member(s, "y")
        s.ctl("ledger", "adjust", "--user", str(body["user"]["id"]), "--amount",
              str(pkg["price_micros"]), "--reason", "it51")
        r = s.request("POST", "/api/orders", headers=bearer(body),
                      json={"package_id": pkg["id"], "pay_from_balance": True})
        assert r.status_code == 201, r.text
        [c] = [c for c in s.get("/api/contracts", headers=bearer(body)).json()["contracts"]
               if c["order_id"] == r.json()["order"]["id"]]
        buyers.append((body, c))
    first = a.now - a.now % HOUR
    n = 3
    for i in range(1, n + 1):
        two.set_clock(first + i * HOUR + 30)
        hour = first + (i - 1) * HOUR
        wait_for(lambda: a.sql("SELECT status FROM job_runs WHERE job = 'accrual' AND "
                               "period_start = %d" % hour) == [("ok",)],
                 what="accrual of %s" % rfc3339(hour))
        wait_for(lambda: a.sql("SELECT cursor FROM job_state WHERE job = 'test-tick'")
                 == [(first + i * HOUR,)], what="test-tick of %s" % rfc3339(hour))
    for body, c in buyers:
        start, daily = unix(c["started_at"]), c["daily_yield_micros"]
        want = sum(daily * (h + HOUR - start) // 86400 - daily * (max(start, h) - start) // 86400
                   for h in range(first, first + n * HOUR, HOUR))
        assert a.sql("SELECT COUNT(*), COUNT(DISTINCT idempotency_key), SUM(amount_micros) "
                     "FROM transfers WHERE idempotency_key LIKE 'yield:%%:%d'"
                     % c["id"]) == [(n, n, want)]
        for s in (a, b):
            r = s.get("/api/me", headers=bearer(s.request("POST", "/api/auth/login", json={
                "email": body["user"]["email"], "password": PASSWORD,
                "return_tokens": True}).json()))
            assert r.json()["user"]["balance_micros"] == want
    # every period of these jobs ran once (one attempt, ok); test-tick
    # writes the pid of the daemon that ran it: one of the two
    runs = a.sql("SELECT job, period, attempts, status FROM job_runs WHERE period_start >= %d "
                 "AND period_start < %d AND job IN ('accrual', 'test-tick')"
                 % (first, first + n * HOUR))
    assert sorted((j, p) for j, p, _, _ in runs) == sorted(
        (j, rfc3339(first + k * HOUR)) for j in ("accrual", "test-tick") for k in range(n))
    for job, period, attempts, status in runs:
        assert (attempts, status) == (1, "ok"), (job, period)
    with open(a.sidecar(".ticks")) as f:
        ticks = [line.split() for line in f.read().splitlines()]
    assert sorted(t for t, _ in ticks) == sorted(rfc3339(first + k * HOUR) for k in range(n))
    assert {int(p) for _, p in ticks} <= set(pids)
    ledger_verifies(a)


# ---- the 6th login in a minute, whichever node ----------------------------

def test_the_sixth_login_in_a_minute_is_refused_whichever_node_it_reaches(mc):
    conf = FAST.replace("DeepMineRateLimit login 10000/1m ip\n",
                        "DeepMineRateLimit login 5/1m ip\n")
    mc.command("delete dmrl:login:127.0.0.1")  # the earlier tests logged in
    c = Cluster(mc, conf)
    try:
        a, b = c.nodes
        body = register_member(a, "r")
        good = {"email": body["user"]["email"], "password": PASSWORD}
        bad = {"email": body["user"]["email"], "password": "Wrong-Password-1"}
        for i, (s, creds) in enumerate([(a, good), (b, bad), (a, bad), (b, good), (a, bad)]):
            r = s.request("POST", "/api/auth/login", json=creds, headers=CLOSE)
            assert r.status_code == (200 if creds is good else 401), r.text
            assert r.headers["RateLimit"].startswith('"login";r=%d;t=' % (4 - i)), r.headers
        for s, creds in [(b, good), (a, good), (b, bad)]:
            r = s.request("POST", "/api/auth/login", json=creds, headers=CLOSE)
            assert r.status_code == 429, r.text
            assert error_of(r)["code"] == "rate_limited"
    finally:
        c.close()


# ---- kill -9 of one node mid-traffic --------------------------------------

def test_kill_9_of_one_node_mid_traffic_leaves_the_other_serving_and_the_money_whole(two):
    a, b = two.nodes
    pkg = min(a.get("/api/packages").json()["packages"], key=lambda p: p["price_micros"])
    members = []
    for _ in range(6):
        body = register_member(a, "k")
        a.ctl("ledger", "adjust", "--user", str(body["user"]["id"]), "--amount",
              str(pkg["price_micros"] * 40), "--reason", "it51")
        members.append(body)
    killed = threading.Event()
    stop = threading.Event()
    after_kill = []  # (node, what, status or exception) of b's answers after the kill
    lock = threading.Lock()

    def hammer(i):
        body = members[i % len(members)]
        h = dict(bearer(body), **CLOSE)
        n = 0
        while not stop.is_set():
            for s in (a, b):
                if s is a and killed.is_set():
                    continue
                was_killed = killed.is_set()
                try:
                    if n % 3 == 2:
                        r = s.request("POST", "/api/orders", headers=h, timeout=30,
                                      json={"package_id": pkg["id"], "pay_from_balance": True})
                        ok = r.status_code in (201, 409)
                    else:
                        r = s.get(("/api/packages", "/api/me")[n % 2], headers=h, timeout=30)
                        ok = r.status_code == 200
                    outcome = r.status_code
                except requests.RequestException as exc:
                    ok, outcome = False, repr(exc)
                if s is b and was_killed:
                    with lock:
                        after_kill.append((ok, outcome))
                n += 1

    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        futures = [ex.submit(hammer, i) for i in range(6)]
        wait_for(lambda: a.sql("SELECT COUNT(*) FROM orders WHERE status = 'paid' AND "
                               "user_id IN (%s)" % ",".join(str(m["user"]["id"])
                                                            for m in members))[0][0] >= 6,
                 what="traffic")
        os.killpg(a.proc.pid, signal.SIGKILL)  # the parent, its children and its daemon
        a.proc.wait()
        killed.set()
        wait_for(lambda: len(after_kill) >= 60, what="b's answers after the kill")
        stop.set()
        for f in futures:
            f.result()
    assert [o for ok, o in after_kill if not ok] == []
    # b still serves a member and takes an order
    body = members[0]
    r = b.request("POST", "/api/orders", headers=bearer(body),
                  json={"package_id": pkg["id"], "pay_from_balance": True})
    assert r.status_code in (201, 409), r.text
    # the money: every paid order is one contract and one payment, every
    # wallet is its funds less what it bought, never negative, the ledger balanced
    for m in members:
        uid = m["user"]["id"]
        [(paid,)] = a.sql("SELECT COUNT(*) FROM orders WHERE user_id = %d AND status = 'paid'"
                          % uid)
        assert a.sql("SELECT COUNT(*) FROM contracts c JOIN orders o ON o.id = c.order_id "
                     "WHERE o.user_id = %d" % uid) == [(paid,)]
        assert a.sql("SELECT COUNT(*) FROM orders WHERE user_id = %d AND status NOT IN "
                     "('paid')" % uid) == [(0,)]
        balance = me(b, bearer(m)).json()["user"]["balance_micros"]
        assert balance == pkg["price_micros"] * (40 - paid) and balance >= 0
    r = subprocess_ledger_verify(b)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok" in r.stdout


def subprocess_ledger_verify(s):
    """deepminectl --db <the PostgreSQL URL> ledger verify."""
    return s.ctl("ledger", "verify", check=False)
