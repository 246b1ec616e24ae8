"""The hourly accrual survives its daemon being killed: kill -9 the cron
daemon twenty times at random points while it catches up six hours of
30,000 contracts in small batches. Apache restarts it each time, the new
daemon takes the dead one's lease at once and redoes the interrupted
hour; in the end every contract has exactly one credit per hour, each
credit and each contract's total are what the fixed-yield rule gives
for its six hours, earned_micros and every wallet match them, and
`deepminectl ledger verify` passes."""
import os
import random
import re
import time

from conftest import rfc3339

T0 = 1795600800  # 2026-11-25T10:00:00Z
HOUR = 3600
CONTRACTS = 30000
HOURS = 6
KILLS = 20


def daemon_pids(s):
    pids = [int(p) for p in re.findall(r"DM00041: cron daemon started \(pid (\d+)", s.log_text())]
    alive = []
    for p in pids:
        try:
            os.kill(p, 0)
        except ProcessLookupError:
            continue
        try:
            with open("/proc/%d/stat" % p) as f:
                if f.read().split(") ")[1].split()[0] != "Z":
                    alive.append(p)
        except (FileNotFoundError, ProcessLookupError):  # reaped between the two looks, or
            # between opening /proc/<pid>/stat and reading it (ESRCH)
            continue
    return alive


def wait_for(cond, timeout=60, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def test_kill_9_during_accrual_never_double_credits(new_server):
    s = new_server(clock=T0 - HOUR + 60,
                   local_conf="DeepMineAccrualDelay 0\nDeepMineJobBatch 100\n")
    s.expect_log(r"DM00045: cron daemon \(pid \d+\) died")
    s.benchgen("members", "--count", "500", "--shape", "random")
    s.benchgen("contracts", "--count", str(CONTRACTS), "--mode", "fixed",
               "--started", rfc3339(T0 - HOUR))
    s.start()
    wait_for(lambda: daemon_pids(s), what="daemon")
    wait_for(lambda: s.sql("SELECT cursor FROM job_state WHERE job = 'accrual'"), what="cursor")
    # six hours (09:00 … 14:00) become due at once
    s.advance(HOURS * HOUR)
    rng = random.Random(5)
    mid_run = 0
    seen = set()
    for _ in range(KILLS):
        pid = wait_for(lambda: [p for p in daemon_pids(s) if p not in seen], what="a daemon")[0]
        seen.add(pid)
        time.sleep(rng.uniform(0.05, 0.5))
        running = s.sql("SELECT period FROM job_runs WHERE job = 'accrual' AND status = 'running'")
        os.kill(pid, 9)
        if running:
            mid_run += 1
    # let the last daemon finish every hour
    wait_for(lambda: s.sql("SELECT count(*) FROM job_runs WHERE job = 'accrual' AND "
                           "status = 'ok'")[0][0] == HOURS, timeout=300, what="all hours")
    runs = s.sql("SELECT period, status, failures FROM job_runs WHERE job = 'accrual' "
                 "ORDER BY period_start")
    assert runs == [(rfc3339(T0 - HOUR + i * HOUR), "ok", 0) for i in range(HOURS)]
    assert mid_run >= 5, "only %d of %d kills hit a run in progress" % (mid_run, KILLS)
    restarts = s.sql("SELECT max(attempts) FROM job_runs WHERE job = 'accrual'")[0][0]
    assert restarts >= 2, "no hour was ever redone"
    # the credits, keyed yield:<hour>:<contract> (split here, not in SQL:
    # the suite runs on both engines)
    credits = {}
    for key, amount in s.sql("SELECT idempotency_key, amount_micros FROM transfers "
                             "WHERE idempotency_key LIKE 'yield:%'"):
        hour, cid = key[len("yield:"):].split(":")
        assert (int(cid), int(hour)) not in credits, key
        credits[(int(cid), int(hour))] = amount
    # exactly one credit per contract and hour
    hours = [T0 - HOUR + i * HOUR for i in range(HOURS)]
    per_hour_count = {}
    for (_, hour) in credits:
        per_hour_count[hour] = per_hour_count.get(hour, 0) + 1
    assert sorted(per_hour_count.items()) == [(h, CONTRACTS) for h in hours]
    # earned_micros moved with the credits, never twice
    totals = {}
    for (cid, _), amount in credits.items():
        totals[cid] = totals.get(cid, 0) + amount
    bad = [cid for cid, earned in s.sql("SELECT id, earned_micros FROM contracts")
           if earned != totals.get(cid, 0)]
    assert bad == []
    # and each contract got exactly its six hours: the ARCHITECTURE rule
    # floor(D(h+1)/24) - floor(Dh/24) for hours 0-5 of its start
    [(daily,)] = s.sql("SELECT DISTINCT daily_yield_micros FROM contracts")
    per_hour = [daily * (k + 1) // 24 - daily * k // 24 for k in range(HOURS)]
    assert s.sql("SELECT earned_micros, COUNT(*) FROM contracts GROUP BY earned_micros") == \
        [(sum(per_hour), CONTRACTS)]
    amounts = {}
    for (_, hour), amount in credits.items():
        amounts[(hour, amount)] = amounts.get((hour, amount), 0) + 1
    assert sorted(amounts.items()) == [((hours[k], per_hour[k]), CONTRACTS) for k in range(HOURS)]
    # every member's wallet holds exactly its contracts' totals
    wrong = s.sql("SELECT a.user_id FROM accounts a JOIN (SELECT user_id, COUNT(*) AS n "
                  "FROM contracts GROUP BY user_id) c ON c.user_id = a.user_id "
                  "WHERE a.kind = 'wallet' AND a.balance_micros != c.n * %d LIMIT 5"
                  % sum(per_hour))
    assert wrong == []
    assert s.sql("SELECT SUM(balance_micros) FROM accounts WHERE kind = 'wallet'") == \
        [(CONTRACTS * sum(per_hour),)]
    r = s.ctl("ledger", "verify")
    assert "ok" in r.stdout
