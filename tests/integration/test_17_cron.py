"""The cron daemon: started, restarted and stopped by Apache, its heartbeat on
/api/health, leases that keep two daemons from running one period twice,
catch-up of missed hours in order, retries and dead letters, and the staff
endpoints. Uses the fake clock (DeepMineTestMode + DeepMineClockFile) and
the test-only jobs test-tick (hourly; appends each period it runs to
<database>.ticks) and test-fail (always fails)."""
import os
import pwd
import re
import signal
import subprocess
import time

import pytest

from conftest import error_of, register_member, rfc3339, staff

# 2026-11-25T10:00:00Z, a whole hour
T0 = 1795600800
DAEMON_DIED = r"DM00045: cron daemon \(pid \d+\) died"


def wait_for(cond, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def daemon_pids(s):
    """Pids of cron daemons of this server, from their start lines, still alive."""
    pids = [int(p) for p in re.findall(r"DM00041: cron daemon started \(pid (\d+)", s.log_text())]
    alive = []
    for p in pids:
        try:
            os.kill(p, 0)
            alive.append(p)
        except ProcessLookupError:
            pass
    return alive


def uid_of(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))


def children_of(pid):
    """Pids of the live processes whose parent is pid."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(d))
    return out


def run_user_uid(s):
    """The uid Apache's children run as: the configuration's User when
    started as root (gen-conf.sh writes one), else whoever started it."""
    m = re.search(r"^User\s+(\S+)", open(s.conf).read(), re.M)
    return pwd.getpwnam(m.group(1)).pw_uid if m else os.geteuid()


def caught_up(s, job, cursor):
    """Every due period of `job` has run: its cursor stands at `cursor`,
    the first hour not over yet (the cursor moves after a period's run)."""
    return s.sql("SELECT cursor FROM job_state WHERE job = '%s'" % job) == [(cursor,)]


def ticks(s):
    try:
        with open(s.sidecar(".ticks")) as f:
            return [line.split()[0] for line in f.read().splitlines()]
    except FileNotFoundError:
        return []


def hours(start, n):
    return [rfc3339(start + 3600 * i) for i in range(n)]


@pytest.fixture
def cron_server(new_server):
    def make(**kw):
        kw.setdefault("clock", T0 + 60)
        kw.setdefault("local_conf", "DeepMineAccrualDelay 0\n")
        return new_server(**kw).start()
    return make


def test_health_reports_the_daemon_heartbeat_and_test_mode(cron_server):
    s = cron_server()
    body = wait_for(lambda: s.get("/api/health").json().get("cron", {}).get(
        "heartbeat_age_s") is not None and s.get("/api/health").json(), what="heartbeat")
    assert body["status"] == "ok"
    assert body["cron"]["enabled"] is True and body["cron"]["status"] == "ok"
    assert body["test_mode"] is True and body["clock"] == rfc3339(s.now)


def test_stale_heartbeat_makes_the_server_degraded(cron_server):
    s = cron_server()
    wait_for(lambda: daemon_pids(s), what="daemon")
    pid = daemon_pids(s)[0]
    wait_for(lambda: s.get("/api/health").json()["cron"]["heartbeat_age_s"] is not None)
    os.kill(pid, signal.SIGSTOP)  # alive (not restarted) but silent
    try:
        s.advance(120)
        r = s.get("/api/health")
        assert r.status_code == 503, r.text
        assert r.json()["status"] == "degraded" and r.json()["cron"]["status"] == "stale"
        assert r.json()["cron"]["heartbeat_age_s"] >= 60
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: s.get("/api/health").status_code == 200, what="recovery")


def test_cron_off_runs_no_daemon(new_server):
    s = new_server(local_conf="DeepMineCron off\n").start()
    s.expect_log(r"DM00048")
    r = s.get("/api/health")
    assert r.status_code == 200
    assert r.json()["cron"] == {"enabled": False, "heartbeat_age_s": None, "last_heartbeat": None,
                                "status": "off"}
    assert "DM00041" not in s.log_text()


def test_clock_file_needs_test_mode(new_server):
    s = new_server(local_conf="DeepMineClockFile /tmp/nope\n")
    r = s.configtest()
    assert r.returncode != 0
    assert "DeepMineClockFile is for tests only" in r.stdout + r.stderr


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_apache_restarts_a_killed_daemon_and_stops_it_with_itself(cron_server, mpm):
    s = cron_server(mpm=mpm)
    s.expect_log(DAEMON_DIED)
    first = wait_for(lambda: daemon_pids(s), what="daemon")[0]
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: [p for p in daemon_pids(s) if p != first], timeout=30,
                      what="restart")[0]
    assert second != first
    # it runs as Apache's user, like the children (as root: not root)
    children = [p for p in children_of(s.proc.pid) if p != second]
    assert children, "no Apache children"
    assert {uid_of(p) for p in children + [second]} == {run_user_uid(s)}
    s.stop()
    assert not daemon_pids(s), "the daemon outlived Apache"
    assert "DM00043: cron daemon (pid %d) stopped" % second in s.log_text()


def test_graceful_restart_replaces_the_daemon(cron_server):
    s = cron_server()
    first = wait_for(lambda: daemon_pids(s), what="daemon")[0]
    os.kill(s.proc.pid, signal.SIGUSR1)
    wait_for(lambda: [p for p in daemon_pids(s) if p != first], timeout=30, what="new daemon")
    wait_for(lambda: first not in daemon_pids(s), what="old daemon gone")


def test_missed_hours_are_caught_up_in_order_each_once(cron_server):
    s = cron_server()
    pid = wait_for(lambda: daemon_pids(s), what="daemon")[0]
    # the daemon has taken the current hour (10:00) as test-tick's start
    wait_for(lambda: s.sql("SELECT cursor FROM job_state WHERE job = 'test-tick'"),
             what="cursor")
    os.kill(pid, signal.SIGSTOP)  # "down" for five hours
    s.advance(5 * 3600)
    os.kill(pid, signal.SIGCONT)
    wait_for(lambda: caught_up(s, "test-tick", T0 + 5 * 3600), what="catch-up")
    assert ticks(s) == hours(T0, 5)
    runs = s.sql("SELECT period, status, attempts FROM job_runs WHERE job = 'test-tick' "
                 "ORDER BY period_start")
    assert runs == [(h, "ok", 1) for h in hours(T0, 5)]


def test_two_apaches_on_one_database_run_each_hour_once(cron_server, new_server):
    a = cron_server()
    b = new_server(clock=T0 + 60, seed=False,
                   local_conf='DeepMineAccrualDelay 0\nDeepMineDatabase "%s"\n' % a.db)
    b.clock_file and b.set_clock(a.now)
    b.start()
    wait_for(lambda: len(daemon_pids(a)) == 1 and len(daemon_pids(b)) == 1, what="daemons")
    wait_for(lambda: a.sql("SELECT cursor FROM job_state WHERE job = 'test-tick'"))
    for i in range(1, 7):
        a.set_clock(T0 + 60 + 3600 * i)
        b.set_clock(a.now)
        wait_for(lambda: caught_up(a, "test-tick", T0 + 3600 * i), what="hour %d" % i)
        assert ticks(a) == hours(T0, i)
    assert ticks(a) == hours(T0, 6)
    pids = set()
    with open(a.sidecar(".ticks")) as f:
        for line in f:
            pids.add(int(line.split()[1]))
    assert pids <= set(daemon_pids(a)) | set(daemon_pids(b))


def test_a_failing_job_retries_then_is_dead_with_one_email(cron_server):
    s = cron_server()
    owner = staff(s, "owner")
    # by hand, through the same lease: attempt 1 fails, attempt 2 is not due yet
    r = s.ctl("jobs", "run", "test-fail", "--period", rfc3339(T0), check=False)
    assert r.returncode == 1 and "failed" in r.stdout
    r = s.ctl("jobs", "run", "test-fail", "--period", rfc3339(T0), check=False)
    assert "not_due" in r.stdout
    row = s.sql("SELECT status, failures, next_attempt_at FROM job_runs WHERE job = 'test-fail'")
    assert row[0][:2] == ("failed", 1) and row[0][2] == s.now + 30  # back-off 30 s
    # staff ask the daemon twice more: failed, then dead
    for want in ("failed", "dead"):
        r = owner.post(s.url + "/api/admin/jobs/test-fail/run", json={"period": rfc3339(T0)})
        assert r.status_code == 202, r.text
        assert r.json() == {"job": "test-fail", "period": rfc3339(T0), "status": "queued"}
        wait_for(lambda: s.sql("SELECT status FROM job_runs WHERE job = 'test-fail'")[0][0]
                 == want and not s.sql("SELECT requested_at FROM job_state "
                                       "WHERE job = 'test-fail'")[0][0], what=want)
    mails = s.sql("SELECT recipient, template, variables FROM mail_queue "
                  "WHERE template = 'staff_alert'")
    assert len(mails) == 1 and '"job_dead"' in mails[0][2] and "test-fail" in mails[0][2]
    body = owner.get(s.url + "/api/admin/jobs", params={"status": "dead"}).json()
    assert [(x["job"], x["status"], x["failures"]) for x in body["runs"]] == \
        [("test-fail", "dead", 3)]
    job = [j for j in body["jobs"] if j["name"] == "test-fail"][0]
    assert job["dead_periods"] == 1 and job["schedule"] == "manual"
    assert job["last_run"]["error"].startswith("test-fail always fails")
    # a forced retry of the dead period runs again but mails no second time
    r = owner.post(s.url + "/api/admin/jobs/test-fail/run", json={"period": rfc3339(T0)})
    assert r.status_code == 202
    wait_for(lambda: s.sql("SELECT attempts FROM job_runs WHERE job = 'test-fail'")[0][0] == 4)
    # a retried dead period starts its failure count afresh
    assert s.sql("SELECT status, failures FROM job_runs WHERE job = 'test-fail'") == \
        [("failed", 1)]
    assert len(s.sql("SELECT 1 FROM mail_queue WHERE template = 'staff_alert'")) == 1
    audit = s.sql("SELECT count(*) FROM audit_log WHERE action = 'job.run'")
    assert audit == [(3,)]
    s.expect_log(r"DM00903: job test-fail")
    s.expect_log(r"DM00902: job test-fail")


def test_jobs_endpoints_refuse_bad_input_and_other_roles(cron_server):
    s = cron_server()
    owner = staff(s, "owner")
    r = owner.post(s.url + "/api/admin/jobs/nope/run", json={})
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = owner.post(s.url + "/api/admin/jobs/cleanup/run", json={"period": "yesterday"})
    assert r.status_code == 400 and error_of(r)["field"] == "period"
    r = owner.post(s.url + "/api/admin/jobs/cleanup/run", json={"period": rfc3339(s.now + 7200)})
    assert r.status_code == 400 and error_of(r)["field"] == "period"
    r = owner.get(s.url + "/api/admin/jobs", params={"status": "weird"})
    assert r.status_code == 400 and error_of(r)["field"] == "status"
    r = staff(s, "finance").get(s.url + "/api/admin/jobs")
    assert r.status_code == 403
    assert s.sql("SELECT count(*) FROM audit_log WHERE action = 'job.run'") == [(0,)]
    body = owner.get(s.url + "/api/admin/jobs").json()
    names = {j["name"] for j in body["jobs"]}
    assert {"cleanup", "commission-release", "test-tick", "test-fail"} <= names
    assert body["cron_enabled"] is True


def test_run_in_the_request_when_cron_is_off(new_server):
    s = new_server(clock=T0 + 60, local_conf="DeepMineCron off\n").start()
    s.expect_log(r"DM00048")
    owner = staff(s, "owner")
    r = owner.post(s.url + "/api/admin/jobs/test-tick/run", json={"period": rfc3339(T0 - 3600)})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok"
    assert ticks(s) == [rfc3339(T0 - 3600)]
    # again: already done, nothing runs twice
    r = owner.post(s.url + "/api/admin/jobs/test-tick/run", json={"period": rfc3339(T0 - 3600)})
    assert r.json()["status"] == "already_done" and ticks(s) == [rfc3339(T0 - 3600)]


def test_cleanup_expires_old_tokens_and_unpaid_orders(cron_server):
    s = cron_server(local_conf="DeepMineAccrualDelay 0\nDeepMineCron off\n")
    s.expect_log(r"DM00048")
    s.terms = s.get("/api/legal/terms").json()["version"]
    m = register_member(s)
    uid = m["user"]["id"]
    # registration made a refresh token and a verification token
    assert s.sql("SELECT count(*) FROM refresh_tokens WHERE user_id = %d" % uid) == [(1,)]
    assert s.sql("SELECT count(*) FROM email_tokens WHERE user_id = %d" % uid) == [(1,)]
    pkg = s.sql("SELECT id, price_micros FROM packages LIMIT 1")[0]
    for age in (2 * 86400, 3600):
        s.sql("INSERT INTO orders (user_id, package_id, amount_micros, currency, status, gateway, "
              "created_at, updated_at) VALUES (%d, %d, %d, 'USD', 'pending', 'sandbox', %d, %d)"
              % (uid, pkg[0], pkg[1], s.now - age, s.now - age))
    # 31 days later: both tokens have expired; the old order is past 24 h
    s.advance(31 * 86400)
    s.sql("UPDATE orders SET created_at = created_at + %d" % (31 * 86400 - 1))
    r = s.ctl("jobs", "run", "cleanup")
    assert ": ok" in r.stdout, r.stdout
    assert s.sql("SELECT count(*) FROM refresh_tokens WHERE user_id = %d" % uid) == [(0,)]
    assert s.sql("SELECT count(*) FROM email_tokens WHERE user_id = %d" % uid) == [(0,)]
    assert s.sql("SELECT status FROM orders WHERE user_id = %d ORDER BY created_at" % uid) == \
        [("expired",), ("pending",)]
    assert s.sql("SELECT items FROM job_runs WHERE job = 'cleanup'") == [(3,)]
