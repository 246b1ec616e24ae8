"""Metrics (issue 15): the Prometheus text at GET /api/admin/metrics (the
owner, or a scraper's DeepMineMetricsToken) and through the deepmine-metrics
handler an operator mounts behind `Require ip`; figures for the whole
server — counted in shared memory by every child and the cron daemon —
checked with `promtool check metrics` and parsed back. Also GET
/api/admin/plugins, /api/health's cron.last_heartbeat, and a full disk: 503
unavailable with Retry-After, "database":"full" on /api/health, counted,
and over by itself once space returns (a real tmpfs)."""
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import (PASSWORD, assert_clean_log, bearer, error_of, register_member,
                      staff, tag)

TOKEN = "scrape-token-" + "0123456789abcdef"
AUTHZ_HOST = "/usr/lib/apache2/modules/mod_authz_host.so"
CLOSE = {"Connection": "close"}


def local_conf(s, extra=""):
    pids = os.path.join(s.var, "logs", "pids.log")
    return (
        "LoadModule authz_host_module %s\n" % AUTHZ_HOST
        + "DeepMineMetricsToken %s\n" % TOKEN
        + 'CustomLog "%s" "%%P %%U %%>s"\n' % pids
        + "<Location /metrics>\n    SetHandler deepmine-metrics\n"
          "    Require ip 127.0.0.1\n</Location>\n"
        + "<Location /metrics-elsewhere>\n    SetHandler deepmine-metrics\n"
          "    Require ip 192.0.2.1\n</Location>\n"
        + extra)


def started(new_server, mpm="event", extra=""):
    s = new_server(mpm=mpm)
    s.write_local_conf(local_conf(s, extra))
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    return s


@pytest.fixture(scope="module", params=["event", "prefork"])
def srv(request):
    from conftest import Server
    s = Server(mpm=request.param)
    s.write_local_conf(local_conf(s))
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


# ---- reading the text format back ----

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def promtool(text):
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def parse(text):
    """{(name, frozenset(labels)): value}, and {family: type}."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, line
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        key = (m.group(1), labels)
        assert key not in samples, "duplicate series: " + line
        samples[key] = float(m.group(3))
    return samples, types


def scrape(s, path="/api/admin/metrics", check=True):
    r = s.get(path, headers={"Authorization": "Bearer " + TOKEN})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-store"
    if check:
        promtool(r.text)
    return parse(r.text)[0]


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_of(samples, route, method="GET", cls="2xx"):
    return value(samples, "deepmine_http_requests_total", route=route, method=method, **{"class": cls})


# ---- format, names, auth, the handler ----

def test_scrape_passes_promtool_and_lists_every_family(srv):
    r = srv.get("/api/admin/metrics", headers={"Authorization": "Bearer " + TOKEN})
    promtool(r.text)
    samples, types = parse(r.text)
    want = {
        "deepmine_http_requests_total": "counter",
        "deepmine_http_request_duration_seconds": "histogram",
        "deepmine_db_pool_connections_in_use": "gauge",
        "deepmine_db_pool_waits_total": "counter",
        "deepmine_db_pool_timeouts_total": "counter",
        "deepmine_db_write_lock_wait_seconds": "histogram",
        "deepmine_db_write_lock_timeouts_total": "counter",
        "deepmine_db_storage_errors_total": "counter",
        "deepmine_db_storage_refusing_writes": "gauge",
        "deepmine_plugin_call_duration_seconds": "histogram",
        "deepmine_plugin_call_errors_total": "counter",
        "deepmine_webhooks_received_total": "counter",
        "deepmine_webhooks_accepted_total": "counter",
        "deepmine_webhooks_refused_total": "counter",
        "deepmine_rate_limit_refusals_total": "counter",
        "deepmine_login_failures_total": "counter",
        "deepmine_twofa_failures_total": "counter",
        "deepmine_job_runs_total": "counter",
        "deepmine_job_duration_seconds": "histogram",
        "deepmine_job_last_success_timestamp_seconds": "gauge",
        "deepmine_job_dead_periods": "gauge",
        "deepmine_job_failing_periods": "gauge",
        "deepmine_mail_sent_total": "counter",
        "deepmine_mail_failed_total": "counter",
        "deepmine_mail_suppressed_total": "counter",
        "deepmine_mail_queue_depth": "gauge",
        "deepmine_mail_queue_oldest_age_seconds": "gauge",
        "deepmine_orders": "gauge",
        "deepmine_contracts_active": "gauge",
        "deepmine_hashrate_sold_hashes_per_second": "gauge",
        "deepmine_hashrate_capacity_hashes_per_second": "gauge",
        "deepmine_ledger_member_balance": "gauge",
        "deepmine_withdrawals_pending": "gauge",
        "deepmine_withdrawals_pending_amount": "gauge",
        "deepmine_cron_heartbeat_age_seconds": "gauge",
        "deepmine_metrics_series_dropped_total": "counter",
        "deepmine_metrics_database_up": "gauge",
        "deepmine_metrics_scrape_duration_seconds": "gauge",
        "deepmine_build_info": "gauge",
    }
    for name, kind in want.items():
        assert types.get(name) == kind, (name, types.get(name))
    for name in types:
        assert name.startswith("deepmine_"), name
    # the 2FA counter exists before 2FA does anything; nothing was dropped
    assert value(samples, "deepmine_twofa_failures_total") == 0
    assert value(samples, "deepmine_metrics_series_dropped_total") == 0
    assert value(samples, "deepmine_metrics_database_up") == 1
    assert value(samples, "deepmine_build_info", version="0.1.0") == 1
    # the capacity the fixture recorded (1e9 GH/s), in hashes per second
    assert value(samples, "deepmine_hashrate_capacity_hashes_per_second") == 1e18


def test_metrics_need_the_owner_or_the_scrape_token(srv):
    path = "/api/admin/metrics"
    r = srv.get(path)
    assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
    r = srv.get(path, headers={"Authorization": "Bearer " + TOKEN + "x"})
    assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
    r = srv.get(path, headers={"Authorization": "Bearer " + TOKEN[:-1]})
    assert r.status_code == 401
    member = register_member(srv)
    r = srv.get(path, headers=bearer(member))
    assert r.status_code == 401, r.text
    for role in ("finance", "support", "kyc"):
        r = staff(srv, role).get(srv.url + path, timeout=10)
        assert r.status_code == 403, (role, r.text)
        assert error_of(r)["code"] == "forbidden"
    r = staff(srv, "owner").get(srv.url + path, timeout=10)
    assert r.status_code == 200
    promtool(r.text)
    # the token opens the metrics only
    r = srv.get("/api/admin/plugins", headers={"Authorization": "Bearer " + TOKEN})
    assert r.status_code == 401


def test_metrics_refuse_other_methods(srv):
    r = srv.request("POST", "/api/admin/metrics", headers={"Authorization": "Bearer " + TOKEN})
    assert r.status_code == 405 and error_of(r)["code"] == "method_not_allowed"
    r = srv.request("POST", "/metrics", data=b"x")
    assert r.status_code == 405 and error_of(r)["code"] == "method_not_allowed"
    assert r.headers["Allow"] == "GET, HEAD"
    r = srv.request("HEAD", "/metrics")
    assert r.status_code == 200 and r.text == ""
    # query parameters change nothing
    r = srv.get("/metrics?name[]=x&%ff=1")
    assert r.status_code == 200
    promtool(r.text)


def test_the_handler_serves_where_apache_lets_through(srv):
    r = srv.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    promtool(r.text)
    samples, _ = parse(r.text)
    assert value(samples, "deepmine_metrics_database_up") == 1
    # a mount whose Require ip does not match this client: Apache says 403
    srv.expect_log(r"AH01630: client denied by server configuration: .*/metrics-elsewhere")
    r = srv.get("/metrics-elsewhere")
    assert r.status_code == 403
    # the handler's own requests are counted under its own name
    before = scrape(srv)
    srv.get("/metrics")
    # counted in log_transaction, just after the answer went out: a scrape
    # on another connection may come first, so look again for a while
    for _ in range(50):
        after = scrape(srv)
        if requests_of(after, "(deepmine-metrics)") != requests_of(before, "(deepmine-metrics)"):
            break
        time.sleep(0.05)
    assert (requests_of(after, "(deepmine-metrics)") -
            requests_of(before, "(deepmine-metrics)")) == 1


def test_a_short_token_fails_configtest(new_server):
    s = new_server()
    s.write_local_conf("DeepMineMetricsToken short\n")
    r = s.configtest()
    assert r.returncode != 0
    assert "DeepMineMetricsToken needs a token of at least 16 characters" in r.stdout + r.stderr


# ---- counting across children ----

@pytest.mark.parametrize("mpm", ["prefork", "event"])
def test_requests_are_counted_for_the_whole_server(new_server, mpm):
    """Requests on connections held open at once are served by several
    prefork processes (event: its threads and children); every one is in
    the one count, by route pattern and status class."""
    s = started(new_server, mpm)
    before = scrape(s)
    conns = []
    for i in range(6):
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        c.request("GET", "/api/packages/%d" % (i + 1))
        r = c.getresponse()
        r.read()
        assert r.status == 200
        conns.append(c)  # kept open: its process stays busy with it
    for i in range(3):
        assert s.get("/api/packages/999999", headers=CLOSE).status_code == 404
    assert s.get("/api/no-such-route", headers=CLOSE).status_code == 404
    after = scrape(s)
    for c in conns:
        c.close()
    assert requests_of(after, "/api/packages/{id}") - requests_of(before, "/api/packages/{id}") == 6
    assert (requests_of(after, "/api/packages/{id}", cls="4xx") -
            requests_of(before, "/api/packages/{id}", cls="4xx")) == 3
    assert (requests_of(after, "(unmatched)", cls="4xx") -
            requests_of(before, "(unmatched)", cls="4xx")) == 1
    hist = lambda smp, suffix, **l: value(  # noqa: E731
        smp, "deepmine_http_request_duration_seconds" + suffix,
        route="/api/packages/{id}", method="GET", **{"class": "2xx"}, **l)
    assert hist(after, "_count") - hist(before, "_count") == 6
    assert hist(after, "_bucket", le="+Inf") - hist(before, "_bucket", le="+Inf") == 6
    s.stop()
    with open(os.path.join(s.var, "logs", "pids.log")) as f:
        pids = {line.split()[0] for line in f if "/api/packages/" in line}
    if mpm == "prefork":
        assert len(pids) >= 6  # six connections held open: six processes


def test_login_failures_and_rate_limit_refusals_are_counted(new_server):
    s = started(new_server, "prefork", "DeepMineRateLimit login 3/1m ip\n")
    member = register_member(s)
    before = scrape(s)
    for _ in range(2):
        r = s.request("POST", "/api/auth/login", headers=CLOSE,
                      json={"email": member["user"]["email"], "password": "wrong-" + PASSWORD})
        assert r.status_code == 401
    r = s.request("POST", "/api/admin/auth/login", headers=CLOSE,
                  json={"email": "nobody-%s@staff.example.com" % tag(), "password": "x" * 12})
    assert r.status_code == 401
    r = s.request("POST", "/api/auth/login", headers=CLOSE,
                  json={"email": member["user"]["email"], "password": PASSWORD})
    assert r.status_code == 429  # the fourth login from this address in a minute
    after = scrape(s)
    diff = lambda name, **l: value(after, name, **l) - value(before, name, **l)  # noqa: E731
    assert diff("deepmine_login_failures_total", realm="member") == 2
    assert diff("deepmine_login_failures_total", realm="staff") == 1
    assert diff("deepmine_rate_limit_refusals_total", rule="login") == 1
    assert diff("deepmine_twofa_failures_total") == 0


def sandbox_sign(s, body):
    with open(os.path.join(s.var, "sandbox-webhook.secret")) as f:
        secret = f.read().rstrip("\n")
    t = int(time.time())
    mac = hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    return "t=%d,v1=%s" % (t, mac)


def test_webhooks_and_plugin_calls_are_counted_by_plugin(srv):
    srv.expect_log(r"DM00650: webhook for plugin sandbox refused")
    srv.expect_log(r"DM00703: payment event sandbox/evt_m_\w+ names no order of ours")
    before = scrape(srv)
    body = json.dumps({"id": "evt_m_" + tag(), "type": "checkout.paid",
                       "created": int(time.time()),
                       "data": {"object": {"id": "cs_sbx_m", "order_id": "ord-metrics",
                                           "amount_micros": 5000000, "currency": "USD"}}},
                      separators=(",", ":")).encode()
    ok = srv.request("POST", "/api/webhooks/sandbox", data=body,
                     headers={"Content-Type": "application/json",
                              "Sandbox-Signature": sandbox_sign(srv, body)})
    assert ok.status_code == 200, ok.text
    bad = srv.request("POST", "/api/webhooks/sandbox", data=body,
                      headers={"Content-Type": "application/json",
                               "Sandbox-Signature": "t=1,v1=" + "0" * 64})
    assert bad.status_code == 400
    nobody = srv.request("POST", "/api/webhooks/no-such-plugin-" + tag(), data=b"{}")
    assert nobody.status_code == 404
    after = scrape(srv)
    diff = lambda name, **l: value(after, name, **l) - value(before, name, **l)  # noqa: E731
    assert diff("deepmine_webhooks_received_total", plugin="sandbox") == 2
    assert diff("deepmine_webhooks_accepted_total", plugin="sandbox") == 1
    assert diff("deepmine_webhooks_refused_total", plugin="sandbox") == 1
    # any name can be posted to: unknown ones share one series
    assert diff("deepmine_webhooks_received_total", plugin="unknown") == 1
    assert diff("deepmine_webhooks_refused_total", plugin="unknown") == 1
    assert diff("deepmine_plugin_call_duration_seconds_count", plugin="sandbox",
                function="parse_webhook") == 2
    assert diff("deepmine_plugin_call_errors_total", plugin="sandbox",
                function="parse_webhook", status="invalid") == 1


def test_database_figures_follow_orders_contracts_and_wallets(new_server):
    s = started(new_server, "event")
    s.benchgen("members", "--count", "3", "--shape", "random", "--seed", "5")
    s.benchgen("contracts", "--count", "3")
    ghs = s.sql("SELECT hashrate_ghs FROM packages WHERE id = "
                "(SELECT package_id FROM contracts LIMIT 1)")[0][0]
    users = [row[0] for row in s.sql("SELECT id FROM users ORDER BY id LIMIT 2")]
    s.ctl("ledger", "adjust", "--user", str(users[0]), "--amount", "2500000",
          "--reason", "metrics test")
    s.ctl("ledger", "adjust", "--user", str(users[1]), "--amount", "1000001",
          "--reason", "metrics test")
    samples = scrape(s)
    assert value(samples, "deepmine_contracts_active") == 3
    assert value(samples, "deepmine_orders", status="paid") == 3
    assert value(samples, "deepmine_hashrate_sold_hashes_per_second") == 3 * ghs * 1e9
    wallets = s.sql("SELECT SUM(balance_micros) FROM accounts WHERE kind = 'wallet'")[0][0]
    assert wallets == 3500001
    assert value(samples, "deepmine_ledger_member_balance", kind="wallet",
                 currency="USD") == 3.500001
    assert value(samples, "deepmine_mail_queue_depth") == s.sql(
        "SELECT COUNT(*) FROM mail_queue WHERE status IN ('queued', 'sending')")[0][0]
    # the running totals agree with the tables they sum
    assert s.sql("SELECT n FROM metrics_counts WHERE tbl = 'contracts' AND status = 'active'") \
        == [(3,)]
    s.sql("UPDATE contracts SET status = 'ended' WHERE id = (SELECT MIN(id) FROM contracts)")
    samples = scrape(s)
    assert value(samples, "deepmine_contracts_active") == 2
    assert value(samples, "deepmine_hashrate_sold_hashes_per_second") == 2 * ghs * 1e9
    out = s.ctl("ledger", "verify").stdout
    assert "ok" in out.lower(), out


def test_plugins_endpoint_lists_kind_version_abi_and_health(srv):
    r = staff(srv, "owner").get(srv.url + "/api/admin/plugins", timeout=10)
    assert r.status_code == 200, r.text
    plugins = {p["name"]: p for p in r.json()["plugins"]}
    # the generated configuration's three: mailer, payment sandbox, storage
    assert set(plugins) == {"spool", "sandbox", "local"}
    spool = plugins["spool"]
    assert spool["kind"] == "mailer" and spool["plugin"] == "mailer-spool"
    assert re.fullmatch(r"\d+\.\d+\.\d+", spool["version"])
    assert spool["abi"] == "1.5"
    assert spool["health"]["status"] == "ok"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", spool["health"]["checked_at"])
    assert plugins["sandbox"]["kind"] == "payment"
    assert plugins["local"]["kind"] == "storage" and plugins["local"]["plugin"] == "storage-local"
    r = staff(srv, "finance").get(srv.url + "/api/admin/plugins", timeout=10)
    assert r.status_code == 403
    assert srv.get("/api/admin/plugins").status_code == 401


def test_health_carries_the_cron_heartbeat_time(srv):
    body = srv.get("/api/health").json()
    assert body["database"] == "ok"
    beat = body["cron"]["last_heartbeat"]
    assert beat is None or re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", beat), beat
    for _ in range(100):  # the daemon beats as it starts
        beat = srv.get("/api/health").json()["cron"]["last_heartbeat"]
        if beat:
            break
        time.sleep(0.1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", beat), beat
    samples = scrape(srv)
    assert ("deepmine_cron_heartbeat_age_seconds", frozenset()) in samples


# ---- a full disk ----

# What a full disk logs: the transition both ways, each 503, health's
# warning; the cron daemon may meet the full disk too (heartbeat, a job).
FULL_LOG = (r"DM01550|DM01551|DM00020: .* failed: the database's storage|"
            r"DM00030: health: database unwell|DM00042: cron daemon: heartbeat failed|"
            r"DM0090[0-9]: job|DM01553|disk is full|database or disk is full|"
            r"DM00703: payment event sandbox/evt_full_")


def fill(path):
    """Writes a file until the filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def test_a_full_disk_answers_503_and_recovers_when_space_returns(new_server):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    s = new_server(mpm="event", seed=False)
    fs = os.path.join(s.var, "dbfs")
    os.makedirs(fs)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", fs], check=True)
    try:
        s.db = os.path.join(fs, "deepmine.db")
        s.ctl("seed-demo")
        s.ctl("capacity", "ensure", "--ghs", "1000000000")
        shutil.chown(fs, "www-data", "www-data")
        s.write_local_conf(local_conf(s, "DeepMineDatabase %s\n" % s.db))
        s.start()
        s.terms = s.get("/api/legal/terms").json()["version"]
        s.expect_log(FULL_LOG)
        register_member(s)
        before = scrape(s)
        assert value(before, "deepmine_db_storage_refusing_writes") == 0

        filler = os.path.join(fs, "filler")
        fill(filler)
        answers = []
        for i in range(30):  # the first write that needs a new page fails
            body = {"email": "full%s@example.com" % tag(), "password": PASSWORD,
                    "accept_terms": True, "terms_version": s.terms}
            r = s.request("POST", "/api/auth/register", json=body, headers=CLOSE)
            answers.append(r.status_code)
            if r.status_code == 503:
                break
        assert answers[-1] == 503, answers
        assert 500 not in answers, answers
        err = error_of(r)
        assert err["code"] == "unavailable"
        assert err["message"] == "the database's storage is full; try again later"
        assert r.headers["Retry-After"] == "60"

        h = s.get("/api/health")
        assert h.status_code == 503
        assert h.json()["status"] == "degraded"
        assert h.json()["database"] == "full"
        assert h.headers["Retry-After"] == "60"
        # a webhook provider is told to come back too
        body = json.dumps({"id": "evt_full_" + tag(), "type": "checkout.paid",
                           "created": int(time.time()),
                           "data": {"object": {"id": "cs_sbx_full", "order_id": "ord-full",
                                               "amount_micros": 5000000, "currency": "USD"}}},
                          separators=(",", ":")).encode()
        w = s.request("POST", "/api/webhooks/sandbox", data=body,
                      headers={"Content-Type": "application/json",
                               "Sandbox-Signature": sandbox_sign(s, body)})
        assert w.status_code == 503, w.text
        assert error_of(w)["code"] == "unavailable" and w.headers["Retry-After"] == "60"
        # reads still work
        assert s.get("/api/packages").status_code == 200
        during = scrape(s)
        assert value(during, "deepmine_db_storage_refusing_writes") == 1
        assert value(during, "deepmine_db_storage_errors_total", kind="full") >= 2

        os.unlink(filler)
        member = register_member(s)  # the first write after space returns
        assert member["user"]["email"]
        h = s.get("/api/health")
        assert h.status_code == 200, h.text
        assert h.json()["database"] == "ok"
        after = scrape(s)
        assert value(after, "deepmine_db_storage_refusing_writes") == 0
        out = s.ctl("ledger", "verify").stdout
        assert "ok" in out.lower(), out
    finally:
        s.stop()
        subprocess.run(["umount", "-l", fs], check=False)


def test_a_job_that_dies_shows_as_failing_then_dead(new_server):
    t0 = int(time.time()) // 3600 * 3600
    s = new_server(mpm="event", clock=t0)
    s.write_local_conf(local_conf(s, "DeepMineCron off\n"))
    s.start()
    period = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))
    samples = scrape(s)
    # a test-only job appears once it did something
    assert ("deepmine_job_dead_periods", frozenset({("job", "test-fail")})) not in samples
    assert value(samples, "deepmine_job_dead_periods", job="accrual") == 0
    r = s.ctl("jobs", "run", "test-fail", "--period", period, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    samples = scrape(s)
    assert value(samples, "deepmine_job_failing_periods", job="test-fail") == 1
    assert value(samples, "deepmine_job_dead_periods", job="test-fail") == 0
    for _ in range(2):
        s.advance(3600)
        s.ctl("jobs", "run", "test-fail", "--period", period, check=False)
    assert s.sql("SELECT status FROM job_runs WHERE job = 'test-fail'") == [("dead",)]
    samples = scrape(s)
    assert value(samples, "deepmine_job_failing_periods", job="test-fail") == 0
    assert value(samples, "deepmine_job_dead_periods", job="test-fail") == 1
