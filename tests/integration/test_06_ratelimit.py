"""The edge rate limiter: DeepMineRateLimit* validation, and the limit
shared by every child (prefork with several processes), through the
webhook rule that guards /api/webhooks/."""
import os
import re
import signal
import time

import pytest
import requests

from conftest import configtest_error, error_of

CLOSE = {"Connection": "close"}  # a new connection, so possibly another child


@pytest.mark.parametrize("line,needle", [
    ("DeepMineRateLimit login 0/1m ip",
     "DeepMineRateLimit: the count in '0/1m' must be between 1 and 1000000"),
    ("DeepMineRateLimit login 1000001/1m ip", "between 1 and 1000000"),
    ("DeepMineRateLimit login 5/1w ip",
     "DeepMineRateLimit: the period '1w' must be a whole number followed by s, m, h or d"),
    ("DeepMineRateLimit login 5/m ip", "the period 'm' must be a whole number"),
    ("DeepMineRateLimit login 5/0s ip", "must be at least 1s"),
    ("DeepMineRateLimit login 5/400d ip", "longer than 366 days"),
    ("DeepMineRateLimit login five ip", "DeepMineRateLimit: 'five' is not a rate"),
    ("DeepMineRateLimit login 5/1m user", "DeepMineRateLimit: the scope 'user' must be ip or member"),
    ("DeepMineRateLimit Login 5/1m ip", "may hold only lower-case letters a-z, digits and '-'"),
    ("DeepMineRateLimit login 5/1m", "DeepMineRateLimit takes three arguments"),
    ("DeepMineRateLimitTable 100", "DeepMineRateLimitTable takes the number of keys to track: "
     "'100' is not a whole number between 1024 and 16777216"),
    ("DeepMineRateLimitTable lots", "DeepMineRateLimitTable takes the number of keys to track"),
])
def test_bad_rate_limit_lines_fail_configtest_naming_file_and_line(new_server, line, needle):
    s = new_server(seed=False)
    configtest_error(s, line, needle, at_line=1)


def test_rate_limits_are_global_only(new_server):
    s = new_server(seed=False)
    configtest_error(s, "<VirtualHost *:80>\nDeepMineRateLimit login 5/1m ip\n</VirtualHost>",
                     "DeepMineRateLimit cannot occur within")


def test_good_rate_limit_lines_pass_configtest(new_server):
    s = new_server(seed=False)
    s.write_local_conf(
        "DeepMineRateLimit login 10/1m ip\n"
        "DeepMineRateLimit login 20/30s ip\n"  # a later line replaces the earlier one
        "DeepMineRateLimit register 3/1h ip\n"
        "DeepMineRateLimit api 1000000/1d member\n"
        "DeepMineRateLimit password-reset 1/366d ip\n"
        "DeepMineRateLimit my-rule-2 7/45s member\n"
        "DeepMineRateLimitTable 1024\n")
    r = s.configtest()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Syntax OK" in r.stdout + r.stderr


def start_limited(new_server, mpm, extra=""):
    """A server whose webhook rule is 5 a minute (overriding an earlier
    line), logging the serving child's pid for each request."""
    s = new_server(mpm=mpm)
    pids = os.path.join(s.var, "logs", "pids.log")
    s.write_local_conf(
        "DeepMineRateLimit webhook 50/1s ip\n"
        "DeepMineRateLimit webhook 5/1m ip\n"
        'CustomLog "%s" "%%P %%U %%>s"\n' % pids + extra)
    s.start()
    return s, pids


def hit(s, path="/api/webhooks/x"):
    return s.get(path, headers=CLOSE)


def assert_counted(resp, remaining):
    assert resp.status_code == 404, (resp.status_code, resp.text)
    assert error_of(resp)["code"] == "not_found"
    assert resp.headers["RateLimit-Policy"] == '"webhook";q=5;w=60'
    m = re.fullmatch(r'"webhook";r=(\d+);t=(\d+)', resp.headers["RateLimit"])
    assert m, resp.headers["RateLimit"]
    assert int(m.group(1)) == remaining
    assert 1 <= int(m.group(2)) <= 60
    assert "Retry-After" not in resp.headers


def assert_refused(resp):
    assert resp.status_code == 429, (resp.status_code, resp.text)
    err = error_of(resp)
    assert err["code"] == "rate_limited"
    assert "try again in" in err["message"]
    retry = int(resp.headers["Retry-After"])
    assert 1 <= retry <= 12  # 5 a minute: one comes back every 12 s
    assert resp.headers["RateLimit-Policy"] == '"webhook";q=5;w=60'
    m = re.fullmatch(r'"webhook";r=0;t=(\d+)', resp.headers["RateLimit"])
    assert m and 48 <= int(m.group(1)) <= 60, resp.headers["RateLimit"]
    assert resp.headers["Cache-Control"] == "no-store"


def served_by(s, pids_log):
    """The pids that answered /api/webhooks/ requests (after stop: the
    access log is buffered per child)."""
    s.stop()
    with open(pids_log) as f:
        return {line.split()[0] for line in f if "/api/webhooks/" in line}


@pytest.mark.parametrize("mpm", ["prefork", "event"])
def test_sixth_webhook_in_a_minute_is_429_across_children(new_server, mpm):
    s, pids = start_limited(new_server, mpm)
    for i in range(5):
        assert_counted(hit(s), 4 - i)
    assert_refused(hit(s))
    # the key is the client address, whatever the path under /api/webhooks/
    assert_refused(hit(s, "/api/webhooks/stripe"))
    # other endpoints are not limited by this rule
    r = s.get("/api/packages", headers=CLOSE)
    assert r.status_code == 200 and "RateLimit" not in r.headers
    if mpm == "prefork":
        # prefork serves one connection per process: several processes
        # answered, and still the sixth was refused
        assert len(served_by(s, pids)) >= 2


def test_prefork_children_share_one_table_with_connections_held_open(new_server):
    """Five keep-alive connections held open at once are served by five
    different prefork processes; the sixth request, on a sixth one, is
    refused."""
    import http.client
    s, pids = start_limited(new_server, "prefork")
    conns = []
    for i in range(5):
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        c.request("GET", "/api/webhooks/held")
        r = c.getresponse()
        body = r.read()
        assert r.status == 404, body
        assert r.getheader("RateLimit") == '"webhook";r=%d;t=%s' % (
            4 - i, r.getheader("RateLimit").split("t=")[1])
        conns.append(c)  # kept open: its process stays busy with it
    assert_refused(hit(s))
    for c in conns:
        c.close()
    assert len(served_by(s, pids)) >= 5


def wait_for_generation(s, n, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if s.log_text().count("resuming normal operations") >= n:
            try:
                if s.get("/api/health").status_code == 200:
                    return
            except requests.RequestException:
                pass
        time.sleep(0.05)
    raise AssertionError("no generation %d:\n%s" % (n, s.log_text()))


def test_limits_survive_a_graceful_restart(new_server):
    s, _ = start_limited(new_server, "prefork")
    for i in range(5):
        assert_counted(hit(s), 4 - i)
    s.proc.send_signal(signal.SIGUSR1)  # apachectl graceful
    wait_for_generation(s, 2)
    assert "rate-limit table kept" in s.log_text()
    assert_refused(hit(s))


def test_a_new_table_size_starts_afresh_on_restart(new_server):
    s, pids = start_limited(new_server, "prefork")
    for i in range(5):
        assert_counted(hit(s), 4 - i)
    assert_refused(hit(s))
    with open(os.path.join(s.var, "local.conf"), "a") as f:
        f.write("DeepMineRateLimitTable 2048\n")
    s.proc.send_signal(signal.SIGUSR1)
    wait_for_generation(s, 2)
    assert "DM00201" in s.log_text()
    assert_counted(hit(s), 4)


def test_sixth_login_in_a_minute_is_429_on_prefork_children(new_server):
    """The issue's case: the default `login 5/1m ip`, six logins, each on a
    new connection so prefork spreads them over its children."""
    s = new_server(mpm="prefork")
    pids = os.path.join(s.var, "logs", "pids.log")
    s.write_local_conf("DeepMinePasswordHash 1 8\n"
                       'CustomLog "%s" "%%P %%U %%>s"\n' % pids)
    s.start()
    body = {"email": "nobody@example.com", "password": "Wrong-Password-1"}
    for _ in range(5):
        r = s.request("POST", "/api/auth/login", json=body, headers=CLOSE)
        assert r.status_code == 401, r.text
        assert r.headers["RateLimit-Policy"] == '"login";q=5;w=60'
    r = s.request("POST", "/api/auth/login", json=body, headers=CLOSE)
    assert r.status_code == 429
    assert error_of(r)["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1
    s.stop()
    with open(pids) as f:
        served = {line.split()[0] for line in f if "/api/auth/login" in line}
    assert len(served) >= 2, served
