"""Backups on PostgreSQL (issue 17, ops/backup.h): the same `deepminectl
backup create|list|verify|restore`, encryption, storage and manifest as on
SQLite, the database part made by pg_dump --format=custom of one exported
snapshot. Runs on its own throwaway cluster (conftest's PgCluster) whatever
DM_ENGINE says.

The restore drill: a server on PostgreSQL with money in it is backed up,
the backup verified (restored into a temporary database dm_verify_… on the
same server, checked, dropped), then restored into a new, empty database;
the server pointed at it sees every row and every balance, and `ledger
verify` passes. A tampered backup is refused; a non-empty target is
refused; a PostgreSQL backup is never restored into a SQLite file, nor a
SQLite backup into PostgreSQL.
"""
import os
import re
import subprocess

import pytest

from conftest import CTL, PgCluster, Server, assert_clean_log
from test_48_backup import (CRON_TABLES, FAST, T0, created_id, listed, object_path, populate,
                            stamp, tampered_backup_refused_by_verify, wait_for)

LOCAL_STORAGE_WARNING = r"DM01754: DeepMineStorage \S+ is storage-local with a PostgreSQL database"


def backup(s, *args, check=True):
    """deepminectl backup … on the server's configuration (its PostgreSQL
    database)."""
    r = subprocess.run([CTL, "--config", s.conf, "--db", s.db, "backup"] + list(args),
                       capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError("backup %s failed: %s" % (args, r.stderr))
    return r


def state(s):
    """Every table's row count (but the cron daemon's bookkeeping) and every
    account's balance."""
    tables = [t for (t,) in s.sql("SELECT tablename FROM pg_catalog.pg_tables WHERE "
                                  "schemaname = current_schema() ORDER BY tablename")
              if t not in CRON_TABLES]
    counts = {t: s.sql('SELECT count(*) FROM "%s"' % t)[0][0] for t in tables}
    balances = s.sql("SELECT id, kind, user_id, code, currency, balance_micros FROM accounts "
                     "ORDER BY id")
    return counts, balances


def verify_databases():
    con = PgCluster.get().connect()
    try:
        cur = con.cursor()
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'dm_verify_%%'")
        return cur.fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def srv():
    s = Server(mpm="event", local_conf=FAST, engine="postgresql")
    s.expected_log.append(re.compile(LOCAL_STORAGE_WARNING))
    s.ctl("capacity", "ensure", "--ghs", "1000000000", "--note", "test_52")
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.packages = s.get("/api/packages").json()["packages"]
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def test_restore_drill_on_postgresql_brings_back_every_row_and_every_balance(srv):
    members = populate(srv)
    assert srv.sql("SELECT count(*) FROM contracts WHERE status = 'active'")[0][0] == 4
    assert srv.sql("SELECT count(*) FROM commissions")[0][0] > 0
    assert "ledger verify: ok" in srv.ctl("ledger", "verify").stdout
    wallets = [srv.get("/api/me", headers=h).json()["user"]["balance_micros"]
               for _, h in members]

    srv.stop()  # nothing moves between the backup and the comparison
    before = state(srv)
    r = backup(srv, "create")
    bid = created_id(r)
    assert "manifest" not in r.stderr
    rows = int(re.search(r"backup created \S+: (\d+) rows", r.stdout).group(1))
    assert rows == sum(srv.sql('SELECT count(*) FROM "%s"' % t)[0][0]
                       for (t,) in srv.sql("SELECT tablename FROM pg_catalog.pg_tables WHERE "
                                           "schemaname = current_schema()"))
    with open(os.path.join(srv.var, "storage", "backups", bid + ".json")) as f:
        assert '"engine": "postgresql"' in f.read()

    assert "backup verify: ok: %s:" % bid in backup(srv, "verify", bid).stdout
    assert verify_databases() == []

    target = PgCluster.get().create_db()
    url = PgCluster.get().url(target)
    r = backup(srv, "restore", bid, "--to", url)
    assert "backup restore: " in r.stdout and ("now holds backup %s" % bid) in r.stdout
    assert "point their DeepMineDatabase at it" in r.stdout

    # the server pointed at the restored database
    old = srv.pg_name
    srv.extra_conf = srv.extra_conf.replace(srv.db, url)
    srv.db, srv.pg_name = url, target
    srv.write_local_conf(FAST)
    PgCluster.get().drop_db(old)
    assert state(srv) == before
    srv.start()
    assert [srv.get("/api/me", headers=h).json()["user"]["balance_micros"]
            for _, h in members] == wallets
    assert srv.get("/api/health").json()["database"] == "ok"
    assert "ledger verify: ok" in srv.ctl("ledger", "verify").stdout


def test_restore_into_a_non_empty_database_is_refused(srv):
    bid = created_id(backup(srv, "create"))
    before = state(srv)
    r = backup(srv, "restore", bid, "--to", srv.db, check=False)
    assert r.returncode == 1
    assert re.search(r"backup restore: refused: the PostgreSQL database .*dbname=%s.* is not "
                     r"empty: a backup is restored only into a new, empty database"
                     % srv.pg_name, r.stderr), r.stderr
    assert "password" not in r.stderr
    assert state(srv) == before
    # on PostgreSQL, restore needs --to
    r = backup(srv, "restore", bid, check=False)
    assert r.returncode == 2
    assert "on PostgreSQL a backup is restored into a new, empty database: give --to" in r.stderr


def test_a_tampered_postgresql_backup_is_refused_by_verify_and_restore(srv):
    bid = tampered_backup_refused_by_verify(srv, backup)
    target = PgCluster.get().create_db()
    try:
        r = backup(srv, "restore", bid, "--to", PgCluster.get().url(target), check=False)
        assert r.returncode == 1
        assert "backup restore: refused: backup %s is refused: a chunk fails" % bid in r.stderr
        con = PgCluster.get().connect(target)
        try:
            cur = con.cursor()
            cur.execute("SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'public'")
            assert cur.fetchone()[0] == 0
        finally:
            con.close()
    finally:
        PgCluster.get().drop_db(target)
    assert verify_databases() == []
    subprocess.run([CTL, "--config", srv.conf, "storage", "rm", "backups/%s.json" % bid],
                   check=True, capture_output=True)


def test_a_backup_of_one_engine_is_refused_by_the_other(srv, tmp_path):
    # PostgreSQL backup → SQLite file
    bid = created_id(backup(srv, "create"))
    sqlite_db = str(tmp_path / "restored.db")
    r = subprocess.run([CTL, "--config", srv.conf, "--db", sqlite_db, "backup", "restore", bid],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert ("backup restore: refused: backup %s is refused: it holds a PostgreSQL database "
            "(pg_dump); it restores only into PostgreSQL (deepminectl backup restore --to URL), "
            "never into a SQLite file" % bid) in r.stderr
    assert not os.path.exists(sqlite_db)

    # SQLite backup → PostgreSQL
    lite = str(tmp_path / "lite.db")
    subprocess.run([CTL, "--db", lite, "migrate"], check=True, capture_output=True)
    r = subprocess.run([CTL, "--config", srv.conf, "--db", lite, "backup", "create"],
                       capture_output=True, text=True, check=True)
    lid = created_id(r)
    target = PgCluster.get().create_db()
    try:
        r = backup(srv, "restore", lid, "--to", PgCluster.get().url(target), check=False)
        assert r.returncode == 1
        assert ("backup restore: refused: backup %s is refused: it holds a SQLite database; it "
                "restores only into a SQLite DeepMineDatabase" % lid) in r.stderr
        r = backup(srv, "verify", lid, check=False)
        assert r.returncode == 1
        assert "backup %s is refused: it holds a SQLite database" % lid in r.stderr
    finally:
        PgCluster.get().drop_db(target)
    subprocess.run([CTL, "--config", srv.conf, "storage", "rm", "backups/%s.json" % lid],
                   check=True, capture_output=True)


def test_the_backup_job_on_postgresql_takes_a_backup_that_verifies():
    s = Server(mpm="event", local_conf=FAST + "DeepMineBackupEvery 1h\n", clock=T0,
               engine="postgresql")
    s.expected_log.append(re.compile(LOCAL_STORAGE_WARNING))
    try:
        s.start()
        # at start: the window of T0 has no backup yet
        wait_for(lambda: [c for _, c in listed(s)] == [stamp(T0)], what="the first backup")
        wait_for(lambda: s.sql("SELECT status, items FROM job_runs WHERE job = 'backup'"),
                 what="the job's run")
        assert s.sql("SELECT status, items FROM job_runs WHERE job = 'backup'") == [("ok", 1)]
        newest = listed(s)[-1][0]
        assert "backup verify: ok: %s:" % newest in backup(s, "verify").stdout
        # the cron daemon's backup-verify job may be verifying too, in a
        # dm_verify_ database of its own for the moment: none may stay
        wait_for(lambda: verify_databases() == [], what="no dm_verify_ database left")
        s.stop()
        assert_clean_log(s)
    finally:
        s.cleanup()


def test_backup_and_restore_as_a_database_owner_that_gives_a_password(tmp_path, monkeypatch):
    """The production shape: DeepMineDatabase names a login role that owns
    its database, is no superuser and must give a password (scram-sha-256,
    not trust), through `password=env:` (the server, backup create and
    verify) and `password=file:` (restore --to). The whole drill runs as
    that role: pg_dump, the dm_verify_ database (CREATEDB), pg_restore into
    a new database it owns."""
    cluster = PgCluster.get()
    role, password = cluster.password_role()
    monkeypatch.setenv("DM_TEST_PGPASSWORD", password)
    pwfile = tmp_path / "pg.pass"
    pwfile.write_text(password + "\n")
    os.chmod(pwfile, 0o600)

    def url(db, secret):
        return "postgresql://%s@/%s?host=%s&password=%s" % (role, db, cluster.dir, secret)

    s = Server(mpm="event", seed=False, engine="postgresql",
               pg_database=cluster.create_db(owner=role))
    target = None
    try:
        s.db = url(s.pg_name, "env:DM_TEST_PGPASSWORD")
        s.extra_conf = 'DeepMineDatabase "%s"\n' % s.db
        s.write_local_conf(FAST)
        s.expected_log.append(re.compile(LOCAL_STORAGE_WARNING))
        # no password, a wrong one: refused (the role is not trusted)
        for secret in ("", "wrong"):
            r = subprocess.run([CTL, "--db", url(s.pg_name, secret).replace("&password=", "")
                                if not secret else url(s.pg_name, secret), "migrate"],
                               capture_output=True, text=True)
            assert r.returncode != 0 and "password" in r.stderr, r.stderr
            assert password not in r.stderr
        s.ctl("seed-demo")
        s.ctl("capacity", "ensure", "--ghs", "1000000000", "--note", "test_52 owner")
        assert s.sql("SELECT tableowner FROM pg_catalog.pg_tables WHERE tablename = 'users'") \
            == [(role,)]
        s.start()
        s.terms = s.get("/api/legal/terms").json()["version"]
        s.packages = s.get("/api/packages").json()["packages"]
        members = populate(s)
        wallets = [s.get("/api/me", headers=h).json()["user"]["balance_micros"]
                   for _, h in members]
        assert "ledger verify: ok" in s.ctl("ledger", "verify").stdout
        s.stop()
        before = state(s)

        bid = created_id(backup(s, "create"))
        assert "backup verify: ok: %s:" % bid in backup(s, "verify", bid).stdout
        assert verify_databases() == []

        target = cluster.create_db(owner=role)
        r = backup(s, "restore", bid, "--to", url(target, "file:%s" % pwfile))
        assert ("now holds backup %s" % bid) in r.stdout
        assert password not in r.stdout + r.stderr
        con = cluster.connect(target)
        try:
            cur = con.cursor()
            cur.execute("SELECT DISTINCT tableowner FROM pg_catalog.pg_tables "
                        "WHERE schemaname = 'public'")
            assert cur.fetchall() == [(role,)]  # the restored tables are the role's
        finally:
            con.close()

        # the server pointed at the restored database, as that role
        old = s.pg_name
        s.db, s.pg_name = url(target, "env:DM_TEST_PGPASSWORD"), target
        target = None
        s.extra_conf = 'DeepMineDatabase "%s"\n' % s.db
        s.write_local_conf(FAST)
        cluster.drop_db(old)
        assert state(s) == before
        s.start()
        assert [s.get("/api/me", headers=h).json()["user"]["balance_micros"]
                for _, h in members] == wallets
        assert "ledger verify: ok" in s.ctl("ledger", "verify").stdout
        s.stop()
        assert_clean_log(s)
    finally:
        s.cleanup()
        if target:
            cluster.drop_db(target)


def test_verify_without_createdb_says_the_role_needs_it(monkeypatch):
    """verify restores into a temporary database it creates: a role without
    CREATEDB gets a refusal that names the privilege; create works."""
    cluster = PgCluster.get()
    role, password = cluster.password_role(createdb=False)
    monkeypatch.setenv("DM_TEST_PGPASSWORD", password)
    s = Server(mpm="event", seed=False, engine="postgresql",
               pg_database=cluster.create_db(owner=role))
    try:
        s.db = "postgresql://%s@/%s?host=%s&password=env:DM_TEST_PGPASSWORD" % (
            role, s.pg_name, cluster.dir)
        s.ctl("migrate")
        bid = created_id(backup(s, "create"))
        r = backup(s, "verify", bid, check=False)
        assert r.returncode == 1
        assert ("backup verify: FAILED: backup: cannot create the verify database (verify "
                "restores into a temporary database: the role needs CREATEDB): ") in r.stderr
        assert "permission denied to create database" in r.stderr
        assert password not in r.stderr
        assert verify_databases() == []
    finally:
        s.cleanup()
