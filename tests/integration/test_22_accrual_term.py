"""Money goes only where it should (issue 11, sequences 8 and 9), through
the real Apache and its cron daemon under the fake clock: an hour of the
accrual selects the contracts whose paid term covers it, whatever their
status now, and a contract expires only when every hour of its term is
credited.

- A one-day fixed contract at 2,400/day whose 05:00 hour dies (its
  accrual fails until it is parked dead, and the daemon goes on with
  06:00-23:00): it stays active; staff re-run 05:00 and it gets its 100;
  then it expires with 2,400 earned.
- One-day pool contracts whose payouts are recorded out of order (23:00
  first, then 22:00, then the rest scrambled), one of them expired after
  23:00 the way the earlier rule did: every payout is split exactly over
  both, nothing but the floors' remainder goes to `rounding`.

`deepminectl ledger verify` runs at the end of each."""
import re
import time

import pytest
import requests

from conftest import bearer, error_of, register_member, rfc3339, tag

# 2026-11-25T00:00:00Z: contracts bought at this second start on the hour
DAY0 = 1795564800
HOUR = 3600
DAY = 86400
FAST = ("DeepMineAccrualDelay 0\n"
        "DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n")
# The job runner's lines when the accrual of an hour fails, then dies.
JOB_FAILED = r"DM00902: job accrual "
JOB_DEAD = r"DM00903: job accrual "


@pytest.fixture
def srv(new_server):
    s = new_server(mpm="event", local_conf=FAST, clock=DAY0)
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    return s


def staff(s, role):
    """A freshly logged-in staff browser of `role` (the fake clock moves by
    days, past any session's life); one account per role and server."""
    if not hasattr(s, "logins"):
        s.logins = {}
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


def wait_for(cond, timeout=60, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def run_status(s, job, hour):
    rows = s.sql("SELECT status FROM job_runs WHERE job = '%s' AND period_start = %d"
                 % (job, hour))
    return rows[0][0] if rows else None


def package(s, **terms):
    """A package made by the owner through the admin API; its id."""
    body = dict({"name": "Day %s" % terms.get("yield_mode"), "price_micros": 1000000,
                 "duration_days": 1}, **terms)
    r = staff(s, "owner").post(s.url + "/api/admin/packages", json=body, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["package"]["id"]


def buyer(s, package_id):
    """A new member who buys the package from the balance now: (member id,
    Bearer headers, contract)."""
    body = register_member(s, "t")
    uid, h = body["user"]["id"], bearer(body)
    s.ctl("ledger", "adjust", "--user", str(uid), "--amount", "1000000", "--reason", "test")
    r = requests.post(s.url + "/api/orders", headers=h, timeout=10,
                      json={"package_id": package_id, "pay_from_balance": True})
    assert r.status_code == 201, r.text
    oid = r.json()["order"]["id"]
    [c] = [c for c in requests.get(s.url + "/api/contracts", headers=h, timeout=10)
           .json()["contracts"] if c["order_id"] == oid]
    return uid, h, c


def contract_row(s, cid):
    return s.sql("SELECT status, earned_micros, ended_at FROM contracts "
                 "WHERE id = %d" % cid)[0]


def balance(s, uid):
    rows = s.sql("SELECT balance_micros FROM accounts WHERE user_id = %d AND kind = 'wallet'"
                 % uid)
    return rows[0][0] if rows else 0


def system_balance(s, code):
    rows = s.sql("SELECT balance_micros FROM accounts WHERE code = '%s'" % code)
    return rows[0][0] if rows else 0


def run_expiry(s):
    """The contract-expiry job, now, by hand (the daemon's runs of it record
    nothing when they expire nothing, so there is no state to wait on)."""
    for _ in range(100):  # the daemon may hold the job's lease a moment
        r = s.ctl("jobs", "run", "contract-expiry", "--force", check=False)
        if ": busy," not in r.stdout:
            break
        time.sleep(0.1)
    assert "job contract-expiry" in r.stdout and ": ok," in r.stdout, r.stdout + r.stderr


def assert_ledger_verifies(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_dead_hour_keeps_the_contract_active_until_it_is_credited(srv):
    srv.expect_log(JOB_FAILED)
    srv.expect_log(JOB_DEAD)
    pid = package(srv, yield_mode="fixed", fee_bp=0, hashrate_ths=1, daily_yield_micros=2400)
    uid, _, c = buyer(srv, pid)
    assert (c["started_at"], c["expires_at"]) == (rfc3339(DAY0), rfc3339(DAY0 + DAY))
    # the 05:00 hour's credit cannot be written, whoever tries
    five = DAY0 + 5 * HOUR
    if srv.engine == "postgresql":
        srv.sql("CREATE FUNCTION test_fail_0500() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'test: the 05:00 credit fails'; END $$")
        srv.sql("CREATE TRIGGER test_fail_0500 BEFORE INSERT ON transfers FOR EACH ROW "
                "WHEN (NEW.idempotency_key = 'yield:%d:%d') "
                "EXECUTE FUNCTION test_fail_0500()" % (five, c["id"]))
    else:
        srv.sql("CREATE TRIGGER test_fail_0500 BEFORE INSERT ON transfers "
                "WHEN NEW.idempotency_key = 'yield:%d:%d' "
                "BEGIN SELECT RAISE(ABORT, 'test: the 05:00 credit fails'); END" % (five, c["id"]))
    srv.set_clock(DAY0 + DAY + 30)  # the whole day is due
    wait_for(lambda: run_status(srv, "accrual", five) == "failed", what="05:00 failed")
    # its retries fail too, until the runner parks it dead (max_attempts 10)
    for _ in range(20):
        if run_status(srv, "accrual", five) == "dead":
            break
        srv.ctl("jobs", "run", "accrual", "--period", rfc3339(five), "--force", check=False)
    assert srv.sql("SELECT failures FROM job_runs WHERE job = 'accrual' AND period_start = %d"
                   % five) == [(10,)]
    # a dead hour does not block the later ones
    wait_for(lambda: run_status(srv, "accrual", DAY0 + 23 * HOUR) == "ok", what="23:00")
    assert contract_row(srv, c["id"]) == ("active", 2300, None)
    assert balance(srv, uid) == 2300
    run_expiry(srv)
    assert contract_row(srv, c["id"]) == ("active", 2300, None), "expired with 05:00 unpaid"
    # the cause is mended; staff run the dead hour again
    srv.sql("DROP TRIGGER test_fail_0500" +
            (" ON transfers" if srv.engine == "postgresql" else ""))
    r = staff(srv, "owner").post(srv.url + "/api/admin/jobs/accrual/run",
                                 json={"period": rfc3339(five)}, timeout=10)
    assert r.status_code == 202, r.text
    wait_for(lambda: run_status(srv, "accrual", five) == "ok", what="05:00 re-run")
    assert contract_row(srv, c["id"]) == ("active", 2400, None)
    assert balance(srv, uid) == 2400
    run_expiry(srv)
    assert contract_row(srv, c["id"]) == ("expired", 2400, DAY0 + DAY)
    assert srv.sql("SELECT json_extract(variables, '$.earned_micros') FROM mail_queue WHERE "
                   "idempotency_key = 'contract_expired:%d'" % c["id"]) == [(2400,)]
    assert srv.sql("SELECT COUNT(*), SUM(amount_micros) FROM transfers WHERE "
                   "idempotency_key LIKE 'yield:%%:%d'" % c["id"]) == [(24, 2400)]
    assert_ledger_verifies(srv)


def record(s, hour, amount):
    r = staff(s, "finance").post(s.url + "/api/admin/pool-payouts", timeout=10, json={
        "period_kind": "hour", "period_start": rfc3339(hour), "amount_micros": amount})
    assert r.status_code == 201, r.text
    return r.json()["payout"]["id"]


def test_late_pool_payouts_in_any_order_reach_their_contracts(srv):
    quarter = package(srv, yield_mode="pool", fee_bp=0, hashrate_ths=1, daily_yield_micros=1)
    rest = package(srv, yield_mode="pool", fee_bp=500, hashrate_ths=3, daily_yield_micros=1)
    u1, _, a = buyer(srv, quarter)
    u2, _, b = buyer(srv, rest)
    srv.set_clock(DAY0 + DAY + 30)
    wait_for(lambda: run_status(srv, "pool-accrual", DAY0 + 23 * HOUR) == "waiting",
             what="the day's hours waiting for their payouts")
    earned = {a["id"]: 0, b["id"]: 0}
    remainders = 0
    # 23:00, 22:00, then 00:00-21:00 scrambled (7k mod 22 visits each once)
    for k, h in enumerate([23, 22] + [(7 * i) % 22 for i in range(22)]):
        hour = DAY0 + h * HOUR
        amount = 1000000 if h >= 22 else 1000003 + h
        pay = record(srv, hour, amount)
        wait_for(lambda: run_status(srv, "pool-accrual", hour) == "ok",
                 what="payout of %s" % rfc3339(hour))
        # a quarter of the hash-rate-seconds to a (no fee), three quarters
        # to b (5 % fee)
        ga, gb = amount // 4, amount * 3 // 4
        earned[a["id"]] += ga
        earned[b["id"]] += gb - gb * 500 // 10000
        remainders += amount - ga - gb
        assert srv.sql("SELECT contracts, credits_micros + fee_micros, remainder_micros FROM "
                       "pool_payouts WHERE id = %d" % pay) == \
            [(2, ga + gb, amount - ga - gb)], rfc3339(hour)
        assert contract_row(srv, a["id"])[1] == earned[a["id"]], rfc3339(hour)
        assert contract_row(srv, b["id"])[1] == earned[b["id"]], rfc3339(hour)
        if k == 0:
            # the 1,000,000 micros: 250,000 and 712,500
            assert earned == {a["id"]: 250000, b["id"]: 712500}
            # the last hour is paid, not the term: nobody expires
            run_expiry(srv)
            assert contract_row(srv, a["id"])[0] == "active"
            assert contract_row(srv, b["id"])[0] == "active"
            # a, as the earlier rule expired it after its last hour
            srv.sql("UPDATE contracts SET status = 'expired', ended_at = expires_at "
                    "WHERE id = %d" % a["id"])
        elif k < 23:
            run_expiry(srv)
            assert contract_row(srv, b["id"])[0] == "active", rfc3339(hour)
    assert earned == {a["id"]: 6000066, b["id"]: 17100215}
    assert remainders == 16
    assert system_balance(srv, "rounding") == 16
    assert system_balance(srv, "maintenance_fees") == 900000
    assert (balance(srv, u1), balance(srv, u2)) == (6000066, 17100215)
    run_expiry(srv)
    assert contract_row(srv, b["id"]) == ("expired", 17100215, DAY0 + DAY)
    assert contract_row(srv, a["id"]) == ("expired", 6000066, DAY0 + DAY)
    # a payout for an hour already paid is refused, as before
    r = staff(srv, "finance").post(srv.url + "/api/admin/pool-payouts", timeout=10, json={
        "period_kind": "hour", "period_start": rfc3339(DAY0 + 3 * HOUR), "amount_micros": 5})
    assert r.status_code == 409 and error_of(r)["code"] == "conflict"
    assert_ledger_verifies(srv)
