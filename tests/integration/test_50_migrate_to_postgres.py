"""deepminectl migrate-to-postgres: a stopped SQLite deployment with rows
of every kind the API makes (members in a referral chain, e-mail tokens and
queued mail, KYC, staff sessions and the audit log, ledger credits, a paid
order with its contract and commissions, an hour of accrual, a withdrawal
address and a withdrawal) is copied into an empty PostgreSQL database and
checked; the copy then serves the same members and money. The command
refuses a running source and a non-empty target. (Runs on SQLite whatever
DM_ENGINE says: the source is a SQLite file by definition.)"""
import re
import time

import requests

from conftest import (PASSWORD, PgCluster, Server, assert_clean_log, bearer, book_address,
                      queued_mail, register_member, rfc3339, staff)

FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit verify-email 10000/1m ip\n"
        "DeepMineRateLimit confirm-address 10000/1m ip\n"
        "DeepMineWithdrawalLimits 1000 50000000 80000000\n"
        "DeepMineWithdrawalAddressDelay 60\n")
TRX = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
HOUR = 3600


def populate(s):
    """Members (a chain of three), verified, KYC-approved, funded; the last
    buys the cheapest package from its balance (order, contract,
    commissions to its uplines), an hour of accrual runs, and it asks for a
    withdrawal. Returns the last member's (user, headers)."""
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.staff = {}
    s.address_delay = 60
    users = []
    for i in range(3):
        extra = {"referral_code": users[-1][0]["referral_code"]} if users else {}
        body = register_member(s, "mig", **extra)
        user, h = body["user"], bearer(body)
        [variables] = queued_mail(s, user["email"], "email_verification")
        r = requests.post(s.url + "/api/auth/verify-email", timeout=10,
                          json={"token": variables["token"]})
        assert r.status_code == 200, r.text
        r = staff(s, "kyc").patch(s.url + "/api/admin/users/%d/kyc" % user["id"],
                                  json={"status": "approved"}, timeout=10)
        assert r.status_code == 200, r.text
        users.append((user, h))
    user, h = users[-1]
    pkg = min(s.get("/api/packages").json()["packages"], key=lambda p: p["price_micros"])
    s.ctl("ledger", "adjust", "--user", str(user["id"]), "--amount",
          str(pkg["price_micros"] + 5000000), "--reason", "test credit")
    r = requests.post(s.url + "/api/orders", headers=h, timeout=10,
                      json={"package_id": pkg["id"], "pay_from_balance": True})
    assert r.status_code == 201, r.text
    book_address(s, h, TRX, "trc20")
    r = requests.post(s.url + "/api/withdrawals", headers=h, timeout=10, json={
        "amount_micros": 2000000, "destination": TRX, "network": "trc20"})
    assert r.status_code == 201, r.text
    s.advance(2 * HOUR)
    hour = s.now - s.now % HOUR - HOUR
    s.ctl("jobs", "run", "accrual", "--period", rfc3339(hour))
    return user, login(s, user)


def login(s, user):
    r = requests.post(s.url + "/api/auth/login", timeout=10, json={
        "email": user["email"], "password": PASSWORD, "return_tokens": True})
    assert r.status_code == 200, r.text
    return bearer(r.json())


def me(s, h):
    r = requests.get(s.url + "/api/me", headers=h, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["user"]


def test_a_stopped_deployment_moves_to_an_empty_postgresql_database_checked():
    # no cron daemons: what the copy holds is what the source held, to the micro
    src = Server(mpm="event", local_conf=FAST + "DeepMineCron off\n", clock=int(time.time()),
                 engine="sqlite").start()
    pg = PgCluster.get()
    target = pg.create_db()
    copy = None
    try:
        user, h = populate(src)
        before = me(src, h)
        # the hour up to which credits are keyed earn:<contract>:<hour>, as
        # migration 036 records it on a ledger credited before it
        old_keys = src.now - src.now % HOUR - 5 * HOUR
        src.sql("INSERT INTO accrual_key_cutover (id, earn_keys_through) VALUES (1, %d)"
                % old_keys)
        # a running server holds the file: refused, nothing copied
        r = src.ctl("migrate-to-postgres", "--from", src.db, "--to", pg.url(target),
                    check=False)
        assert r.returncode == 1 and "is open in another process" in r.stderr, r.stderr
        src.stop()
        r = src.ctl("migrate-to-postgres", "--from", src.db, "--to", pg.url(target),
                    check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        counts = dict((m.group(1), (int(m.group(2)), int(m.group(3)))) for m in re.finditer(
            r"^(\w+)\s+(\d+) -> +(\d+)", r.stdout, re.M))
        assert all(a == b for a, b in counts.values()), r.stdout
        # the rows of every kind the population made are there
        for table in ("users", "user_ancestors", "referral_counts", "legal_acceptances",
                      "email_tokens", "mail_queue", "kyc_cases", "staff", "staff_sessions",
                      "audit_log", "accounts", "transfers", "orders", "contracts",
                      "commissions", "commission_orders", "member_volumes", "job_runs",
                      "withdrawal_addresses", "withdrawals", "stats_daily", "metrics_counts",
                      "metrics_balances", "packages", "capacity", "email_templates",
                      "accrual_key_cutover"):
            assert counts[table][0] > 0, (table, r.stdout)
        assert re.search(r"^balances: \d+ accounts, 0 differ$", r.stdout, re.M), r.stdout
        assert "ledger verify (SQLite): ok" in r.stdout
        assert "ledger verify (PostgreSQL): ok" in r.stdout
        assert "migrate-to-postgres: ok:" in r.stdout
        # a second run finds the target no longer empty
        r = src.ctl("migrate-to-postgres", "--from", src.db, "--to", pg.url(target),
                    check=False)
        assert r.returncode == 1 and "is not empty" in r.stderr, r.stderr
        # the copy serves the same member and money
        copy = Server(mpm="event", local_conf=FAST + "DeepMineCron off\n", seed=False, engine="postgresql",
                      pg_database=target, clock=src.now)
        copy.start()
        after = me(copy, login(copy, user))
        assert (after["id"], after["balance_micros"], after["held_micros"]) == \
            (before["id"], before["balance_micros"], before["held_micros"])
        r = copy.ctl("ledger", "verify", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        # the copy keys the same hours the old way (the accrual reads it)
        assert copy.sql("SELECT earn_keys_through FROM accrual_key_cutover") == [(old_keys,)]
    finally:
        src.stop()
        try:
            assert_clean_log(src)
            if copy:
                copy.stop()
                assert_clean_log(copy)
        finally:
            src.cleanup()
            if copy:
                copy.cleanup()
            else:
                pg.drop_db(target)
