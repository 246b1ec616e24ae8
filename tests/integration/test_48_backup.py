"""Backups (issue 15, ops/backup.h): `deepminectl backup create|list|verify|
restore` through the configuration's storage plugin (storage-local, the
generated default) and the cron daemon's `backup` job.

The restore drill: a server with money in it (members in a referral chain,
orders paid from the balance and through the sandbox's checkout, the
commissions they earn) is backed up, stopped, its database destroyed,
restored; the server starts on it, every table has its rows, every account
its balance, and `deepminectl ledger verify` passes. A restore while Apache
holds the database is refused with a sentence; a corrupted backup, or one
made under another secret key, is refused by verify and restore and leaves
no file. The job runs under the fake clock, once per DeepMineBackupEvery
window, and retention (DeepMineBackupKeep) deletes what falls outside.
"""
import os
import re
import subprocess
import time

import pytest
import requests

from conftest import CTL, Server, assert_clean_log, bearer, register_member

FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit webhook 100000/1m ip\n"
        "DeepMinePendingOrders 100\n")
# 2026-11-25T10:00:00Z, a whole hour (a Wednesday)
T0 = 1795600800


def wait_for(cond, timeout=60, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def backup(s, *args, db=None, check=True):
    """deepminectl backup … on the server's configuration (and database)."""
    r = subprocess.run([CTL, "--config", s.conf, "--db", db or s.db, "backup"] + list(args),
                       capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError("backup %s failed: %s" % (args, r.stderr))
    if os.geteuid() == 0:
        subprocess.run("chown www-data: %s* 2>/dev/null" % s.db, shell=True)
    return r


def created_id(r):
    m = re.search(r"^backup created (\S+):", r.stdout, re.M)
    assert m, r.stdout
    return m.group(1)


def listed(s):
    """[(id, created)] of the usable backups, oldest first."""
    out = []
    for line in backup(s, "list").stdout.splitlines():
        parts = line.split()
        if len(parts) > 1 and parts[1] != "unusable:":
            out.append((parts[0], parts[1]))
    return out


def object_path(s, bid):
    return os.path.join(s.var, "storage", "backups", bid + ".dmb")


def verify_ledger(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


# The cron daemon's own bookkeeping (heartbeats, leases, runs) moves on its
# own while the server runs, before the backup and after the restart.
CRON_TABLES = {"cron_heartbeat", "job_leases", "job_runs", "job_state"}


def state(s):
    """Every table's row count (but the cron daemon's bookkeeping) and every
    account's balance."""
    tables = [t for (t,) in s.sql("SELECT name FROM sqlite_master WHERE type = 'table' "
                                  "AND name NOT LIKE 'sqlite_%' ORDER BY name")
              if t not in CRON_TABLES]
    counts = {t: s.sql('SELECT count(*) FROM "%s"' % t)[0][0] for t in tables}
    balances = s.sql("SELECT id, kind, user_id, code, currency, balance_micros FROM accounts "
                     "ORDER BY id")
    return counts, balances


@pytest.fixture(scope="module")
def srv():
    # the job off (as in the generated configuration): the drill takes its
    # backups by hand
    s = Server(mpm="event", local_conf=FAST)
    s.ctl("capacity", "ensure", "--ghs", "1000000000", "--note", "test_48")
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.packages = s.get("/api/packages").json()["packages"]
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def populate(s):
    """A referral chain of 4 members; each buys the cheapest package, the
    first two from their balance, the last two through the sandbox's
    checkout (paid webhooks): commissions flow up the chain. The members'
    (id, headers)."""
    pkg = min(s.packages, key=lambda p: p["price_micros"])
    members, code = [], None
    for i in range(4):
        extra = {"referral_code": code} if code else {}
        b = register_member(s, "bk", **extra)
        code = b["user"]["referral_code"]
        uid, h = b["user"]["id"], bearer(b)
        members.append((uid, h))
        if i < 2:
            s.ctl("ledger", "adjust", "--user", str(uid), "--amount",
                  str(pkg["price_micros"] * 3), "--reason", "test credit")
            r = s.request("POST", "/api/orders", headers=h,
                          json={"package_id": pkg["id"], "pay_from_balance": True})
            assert r.status_code == 201, r.text
        else:
            r = s.request("POST", "/api/orders", headers=h,
                          json={"package_id": pkg["id"], "gateway": "sandbox"})
            assert r.status_code == 201, r.text
            url = r.json()["checkout_url"]
            assert requests.post(url + "/pay", timeout=15).status_code == 200
    return members


def test_restore_drill_brings_back_every_row_and_every_balance(srv):
    members = populate(srv)
    assert srv.sql("SELECT count(*) FROM commissions")[0][0] > 0
    assert srv.sql("SELECT count(*) FROM contracts WHERE status = 'active'")[0][0] == 4
    verify_ledger(srv)
    before = state(srv)
    wallets = [srv.get("/api/me", headers=h).json()["user"]["balance_micros"]
               for _, h in members]
    bid = created_id(backup(srv, "create"))
    assert "backup verify: ok: %s:" % bid in backup(srv, "verify", bid).stdout

    srv.stop()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(srv.db + suffix):
            os.remove(srv.db + suffix)
    r = backup(srv, "restore", bid)
    assert "backup restore: %s now holds backup %s" % (srv.db, bid) in r.stdout
    srv.start()
    assert state(srv) == before
    assert [srv.get("/api/me", headers=h).json()["user"]["balance_micros"]
            for _, h in members] == wallets
    assert srv.get("/api/health").json()["database"] == "ok"
    assert "ledger verify: ok" in verify_ledger(srv)


def test_restore_is_refused_while_the_server_holds_the_database(srv):
    bid = created_id(backup(srv, "create"))
    before = state(srv)
    r = backup(srv, "restore", bid, "--force", check=False)
    assert r.returncode == 1
    assert ("backup restore: refused: the database %s is open in another process (a running "
            "server): stop Apache first, then restore" % srv.db) in r.stderr
    assert state(srv) == before
    assert not os.path.exists(srv.db + ".pre-restore")


def test_restore_over_an_existing_database_needs_force(srv):
    bid = created_id(backup(srv, "create"))
    srv.stop()
    try:
        r = backup(srv, "restore", bid, check=False)
        assert r.returncode == 1
        assert "restore replaces it only with --force" in r.stderr
        r = backup(srv, "restore", bid, "--force")
        assert "now holds backup %s" % bid in r.stdout
        assert os.path.exists(srv.db + ".pre-restore")
    finally:
        srv.start()
    verify_ledger(srv)


def tampered_backup_refused_by_verify(srv, backup):
    """Creates a backup with `backup` (this file's or test_52's), flips one
    bit of its stored object, and checks that verify refuses it by name.
    Returns the backup's id."""
    bid = created_id(backup(srv, "create"))
    path = object_path(srv, bid)
    with open(path, "r+b") as f:
        f.seek(100)
        c = f.read(1)
        f.seek(100)
        f.write(bytes([c[0] ^ 0x40]))
    r = backup(srv, "verify", bid, check=False)
    assert r.returncode == 1
    assert ("backup verify: FAILED: backup %s is refused: a chunk fails its authentication "
            "(altered, truncated or under another key)" % bid) in r.stderr
    return bid


def test_a_corrupted_backup_is_refused_by_verify_and_restore(srv, tmp_path):
    bid = tampered_backup_refused_by_verify(srv, backup)
    target = str(tmp_path / "restored.db")
    r = backup(srv, "restore", bid, db=target, check=False)
    assert r.returncode == 1
    assert "backup restore: refused: backup %s is refused: a chunk fails" % bid in r.stderr
    assert not [n for n in os.listdir(tmp_path) if n.startswith("restored.db")]


def test_a_backup_under_another_secret_key_is_refused(srv, tmp_path):
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    os.chmod(other, 0o600)
    r = backup(srv, "create", "--key-file", str(other))
    bid = created_id(r)
    r = backup(srv, "verify", bid, check=False)
    assert r.returncode == 1
    assert re.search(r"backup %s is refused: it was made under another secret key \(key id "
                     r"[0-9a-f]{16}, this server's is [0-9a-f]{16}\)" % re.escape(bid), r.stderr)
    # listed as unusable, with the reason
    assert re.search(r"^%s  unusable: .*another secret key" % re.escape(bid),
                     backup(srv, "list").stdout, re.M)
    r = backup(srv, "restore", bid, db=str(tmp_path / "x.db"), check=False)
    assert r.returncode == 1 and "made under another secret key" in r.stderr
    subprocess.run([CTL, "--config", srv.conf, "storage", "rm", "backups/%s.json" % bid],
                   check=True, capture_output=True)


def test_a_backup_taken_while_paid_webhooks_arrive_holds_each_order_wholly_or_not_at_all(
        srv, tmp_path):
    import concurrent.futures
    import sqlite3
    pkg = min(srv.packages, key=lambda p: p["price_micros"])
    urls = {}
    for i in range(200):
        if i % 100 == 0:  # DeepMinePendingOrders 100
            h = bearer(register_member(srv, "bkw"))
        r = srv.request("POST", "/api/orders", headers=h,
                        json={"package_id": pkg["id"], "gateway": "sandbox"})
        assert r.status_code == 201, r.text
        urls[r.json()["order"]["id"]] = r.json()["checkout_url"]

    def pay(url):
        return requests.post(url + "/pay", timeout=60).status_code
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        paid = [ex.submit(pay, u) for u in urls.values()]
        bid = created_id(backup(srv, "create"))
        assert [f.result() for f in paid] == [200] * 200
    target = str(tmp_path / "inflight.db")
    backup(srv, "restore", bid, db=target)
    con = sqlite3.connect(target)
    try:
        whole = {}
        for oid in urls:
            status = con.execute("SELECT status FROM orders WHERE id = ?", (oid,)).fetchone()[0]
            n_contracts = con.execute("SELECT count(*) FROM contracts WHERE order_id = ?",
                                      (oid,)).fetchone()[0]
            n_transfers = con.execute("SELECT count(*) FROM transfers WHERE reference = ?",
                                      ("order:%d" % oid,)).fetchone()[0]
            whole[oid] = (status == "pending" and n_contracts == 0 and n_transfers == 0) or \
                (status != "pending" and n_contracts == 1 and n_transfers >= 1)
    finally:
        con.close()
    assert [oid for oid, ok in whole.items() if not ok] == []
    r = subprocess.run([CTL, "--db", target, "ledger", "verify"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    verify_ledger(srv)


# ---- the job -------------------------------------------------------------

@pytest.fixture
def clocked():
    s = Server(mpm="event", local_conf=FAST + "DeepMineBackupEvery 1h\nDeepMineBackupKeep 2 1 1\n",
               clock=T0)
    s.start()
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def stamp(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def test_the_backup_job_takes_one_per_hour_and_retention_deletes_the_oldest(clocked):
    s = clocked
    # at start: the window of T0 has no backup yet
    wait_for(lambda: [c for _, c in listed(s)] == [stamp(T0)], what="the first backup")
    s.advance(3600)
    wait_for(lambda: [c for _, c in listed(s)] == [stamp(T0), stamp(T0 + 3600)],
             what="the second backup")
    s.advance(3600)
    # the third; DeepMineBackupKeep 2 1 1 keeps the two newest hours only
    wait_for(lambda: [c for _, c in listed(s)] == [stamp(T0 + 3600), stamp(T0 + 7200)],
             what="the third backup and retention")
    s.expect_log(r"DM01652: backup retention deleted 1 backup\(s\)")
    runs = s.sql("SELECT status, items FROM job_runs WHERE job = 'backup' ORDER BY id")
    assert runs == [("ok", 1), ("ok", 1), ("ok", 1)]
    # the newest verifies
    newest = listed(s)[-1][0]
    assert "backup verify: ok: %s:" % newest in backup(s, "verify").stdout


def test_a_backup_to_an_unreachable_store_is_a_failed_run_that_leaves_nothing(tmp_path):
    from conftest import PLUGINS, free_port
    port = free_port()  # nobody listens there
    conf = (FAST + "DeepMineBackupEvery 1h\n"
            'DeepMinePlugin storage s3 "%s"\n' % os.path.join(PLUGINS, "storage-s3.so")
            + "".join('DeepMinePluginSet s3 %s "%s"\n' % kv for kv in [
                ("endpoint", "http://127.0.0.1:%d" % port), ("region", "auto"),
                ("bucket", "nowhere"), ("access_key_id", "AKIAIOSFODNN7EXAMPLE"),
                ("secret_access_key", "not-a-secret"), ("path_style", "yes")])
            + "DeepMineStorage s3\n")
    s = Server(mpm="event", local_conf=conf, clock=T0)
    try:
        s.expect_log(r"DM00902: job backup(-verify)? \S+ failed: backup: listing backups/: list: "
                     r"the connection to 127\.0\.0\.1:\d+ failed")
        s.start()
        run = wait_for(lambda: s.sql("SELECT status, error FROM job_runs WHERE job = 'backup' "
                                     "AND status != 'running'"),
                       what="the failed backup run")
        assert run[0][0] == "failed"
        assert run[0][1].startswith("backup: listing backups/: list: the connection to "
                                    "127.0.0.1:%d failed" % port)
        # nothing half-written beside the database
        assert [n for n in os.listdir(s.var) if ".backup-" in n] == []
    finally:
        s.stop()
        bad = s.end_of_test()
        s.cleanup()
    assert not bad, "unexpected error-log lines:\n" + "".join(bad)

