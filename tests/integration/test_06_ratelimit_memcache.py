"""Rate limits shared by several nodes (issue 17): DeepMineRateLimitStore
memcache, with two Apache nodes (one event, one prefork) on one throwaway
memcached; DeepMineRateLimitUnreachable open and closed with memcached
stopped mid-test; the shared-memory store stays the default. Also the
storage-local warning on a PostgreSQL database."""
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import Memcached, configtest_error, error_of

CLOSE = {"Connection": "close"}  # a new connection, so possibly another child
FAST_HASH = "DeepMinePasswordHash 1 8\n"
TOKEN = "memcache-store-metrics-token-0123"


@pytest.mark.parametrize("line,needle", [
    ("DeepMineRateLimitStore redis 127.0.0.1:6379",
     "DeepMineRateLimitStore takes shm, or memcache and one or more host:port"),
    ("DeepMineRateLimitStore shm 127.0.0.1:11211",
     "DeepMineRateLimitStore takes shm, or memcache and one or more host:port"),
    ("DeepMineRateLimitStore memcache",
     "DeepMineRateLimitStore memcache needs one or more host:port"),
    ("DeepMineRateLimitStore memcache 127.0.0.1",
     "DeepMineRateLimitStore: '127.0.0.1' is not host:port"),
    ("DeepMineRateLimitStore memcache 127.0.0.1:0",
     "DeepMineRateLimitStore: the port in '127.0.0.1:0' must be a number from 1 to 65535"),
    ("DeepMineRateLimitStore memcache 127.0.0.1:11211 127.0.0.1:70000",
     "the port in '127.0.0.1:70000' must be a number from 1 to 65535"),
    ("DeepMineRateLimitStore memcache ::1:11211",
     "'::1:11211': write an IPv6 address in brackets, [::1]:11211"),
    ("DeepMineRateLimitUnreachable maybe",
     "DeepMineRateLimitUnreachable takes open (admit the request) or closed (503)"),
    ("DeepMineRateLimitStoreTimeout 0",
     "DeepMineRateLimitStoreTimeout takes milliseconds: '0' is not a whole number between 1 "
     "and 5000"),
    ("DeepMineRateLimitStoreTimeout 50ms", "DeepMineRateLimitStoreTimeout takes milliseconds"),
])
def test_bad_store_lines_fail_configtest_naming_file_and_line(new_server, line, needle):
    s = new_server(seed=False)
    configtest_error(s, line, needle, at_line=1)


def test_store_directives_are_global_only(new_server):
    s = new_server(seed=False)
    configtest_error(s, "<VirtualHost *:80>\nDeepMineRateLimitStore memcache 127.0.0.1:11211\n"
                     "</VirtualHost>", "DeepMineRateLimitStore cannot occur within")


def test_good_store_lines_pass_configtest(new_server):
    s = new_server(seed=False)
    s.write_local_conf("DeepMineRateLimitStore memcache 127.0.0.1:11211 [::1]:11212 cache:11213\n"
                       "DeepMineRateLimitStore shm\n"
                       "DeepMineRateLimitUnreachable closed\n"
                       "DeepMineRateLimitUnreachable open\n"
                       "DeepMineRateLimitStoreTimeout 5000\n")
    r = s.configtest()
    assert r.returncode == 0, r.stdout + r.stderr


def test_shared_memory_stays_the_default_store(new_server):
    s = new_server(seed=False)
    s.write_local_conf("DeepMineRateLimit webhook 1/1h ip\n")
    s.start()
    assert s.get("/api/webhooks/x", headers=CLOSE).status_code == 404
    assert s.get("/api/webhooks/x", headers=CLOSE).status_code == 429
    log = s.log_text()
    assert "rate-limit table created" in log
    assert "memcached" not in log


def two_nodes(new_server, mc, extra="", **kw):
    """Two servers (event and prefork) keeping rate limits in mc."""
    conf = "DeepMineRateLimitStore memcache %s\n" % mc.address + FAST_HASH + extra
    nodes = []
    for mpm in ("event", "prefork"):
        s = new_server(mpm=mpm, seed=False, **kw)
        s.write_local_conf(conf)
        nodes.append(s.start())
    for s in nodes:
        assert "rate limits kept in memcached %s" % mc.address in s.log_text()
    return nodes


def login(s):
    body = {"email": "nobody@example.com", "password": "Wrong-Password-1"}
    return s.request("POST", "/api/auth/login", json=body, headers=CLOSE)


def test_sixth_login_in_a_minute_is_refused_whichever_node_it_reaches(new_server, memcached):
    a, b = two_nodes(new_server, memcached, "DeepMineRateLimit login 5/1m ip\n")
    for i, node in enumerate([a, b, a, b, a]):
        r = login(node)
        assert r.status_code == 401, r.text
        assert r.headers["RateLimit-Policy"] == '"login";q=5;w=60'
        assert r.headers["RateLimit"].startswith('"login";r=%d;t=' % (4 - i)), r.headers
    for node in (b, a):
        r = login(node)
        assert r.status_code == 429, r.text
        assert error_of(r)["code"] == "rate_limited"
        assert 1 <= int(r.headers["Retry-After"]) <= 12  # 5 a minute: one back every 12 s
    # the TAT is in memcached under the rule and the client address
    tat = memcached.get("dmrl:login:127.0.0.1")
    assert tat is not None and tat.isdigit(), tat


def test_concurrent_hits_on_both_nodes_admit_exactly_the_limit(new_server, memcached):
    """40 requests at once, spread over both nodes and many connections,
    against 7 an hour: exactly 7 pass the limiter (404: no such webhook),
    the other 33 are 429, none is anything else."""
    a, b = two_nodes(new_server, memcached,
                     "DeepMineRateLimit webhook 7/1h ip\n"
                     # closed and a long timeout: a slow answer on a busy
                     # machine is a 503 here, never an extra admission
                     "DeepMineRateLimitUnreachable closed\n"
                     "DeepMineRateLimitStoreTimeout 5000\n")

    def hit(i):
        node = (a, b)[i % 2]
        return node.get("/api/webhooks/race-%d" % i, headers=CLOSE).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(hit, range(40)))
    assert sorted(codes) == [404] * 7 + [429] * 33, codes
    for node in (a, b):
        assert node.get("/api/webhooks/after", headers=CLOSE).status_code == 429


def metrics(s):
    r = s.get("/api/admin/metrics", headers={"Authorization": "Bearer " + TOKEN})
    assert r.status_code == 200, r.text
    return r.text


def metric(text, name):
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    assert m, text
    return int(m.group(1))


UNREACHABLE = r"DM01752: the rate-limit store memcached 127\.0\.0\.1:\d+ cannot be reached"


def test_memcached_stopped_under_open_admits_and_logs_once_a_minute(new_server, memcached):
    a, b = two_nodes(new_server, memcached,
                     "DeepMineRateLimit webhook 2/1h ip\n"
                     "DeepMineRateLimitUnreachable open\n"
                     "DeepMineMetricsToken %s\n" % TOKEN, clock=1_800_000_000)
    assert a.get("/api/webhooks/x", headers=CLOSE).status_code == 404
    assert b.get("/api/webhooks/x", headers=CLOSE).status_code == 404
    assert a.get("/api/webhooks/x", headers=CLOSE).status_code == 429
    for node in (a, b):
        node.expect_log(UNREACHABLE + r".*requests are admitted unchecked "
                        r"\(DeepMineRateLimitUnreachable open\); logged at most once a minute")
        assert metric(metrics(node), "deepmine_rate_limit_store_errors_total") == 0
    memcached.stop()
    for node in (a, b):
        for i in range(4):
            r = node.get("/api/webhooks/x", headers=CLOSE)
            assert r.status_code == 404, r.text  # admitted, unchecked
            assert "RateLimit" not in r.headers and "Retry-After" not in r.headers
        assert len(re.findall(UNREACHABLE, node.log_text())) == 1
        assert metric(metrics(node), "deepmine_rate_limit_store_errors_total") == 4
    # a minute later (the fake clock) the node says it again, once
    for node in (a, b):
        node.advance(61)
        assert node.get("/api/webhooks/x", headers=CLOSE).status_code == 404
        assert node.get("/api/webhooks/x", headers=CLOSE).status_code == 404
        assert len(re.findall(UNREACHABLE, node.log_text())) == 2


def test_memcached_stopped_under_closed_is_503_unavailable_logged_once_a_minute(new_server,
                                                                               memcached):
    """A dead memcached under closed: every limited request is a 503, but
    the error log says so once a minute (DM01752), not once per answer
    (no DM00020 line for these 503s: the fixture fails on any)."""
    a, b = two_nodes(new_server, memcached,
                     "DeepMineRateLimit webhook 2/1h ip\n"
                     "DeepMineRateLimitUnreachable closed\n"
                     "DeepMineMetricsToken %s\n" % TOKEN, clock=1_800_000_000)
    assert a.get("/api/webhooks/x", headers=CLOSE).status_code == 404
    memcached.stop()
    for node in (a, b):
        node.expect_log(UNREACHABLE + r".*requests are refused with 503 "
                        r"\(DeepMineRateLimitUnreachable closed\)")
        for _ in range(3):
            r = node.get("/api/webhooks/x", headers=CLOSE)
            assert r.status_code == 503, r.text
            err = error_of(r)
            assert err["code"] == "unavailable"
            assert err["message"] == "rate limits cannot be checked right now; try again in 5 " \
                                     "seconds"
            assert r.headers["Retry-After"] == "5"
            assert r.headers["Cache-Control"] == "no-store"
        # a route without a rate limit is served as before
        assert node.get("/api/health").status_code == 200
        log = node.log_text()
        assert len(re.findall(UNREACHABLE, log)) == 1
        assert len(re.findall(r"DM00020:", log)) == 0
        assert len(re.findall(r"\[deepmine:error\]", log)) == 1  # DM01752 alone
        assert metric(metrics(node), "deepmine_rate_limit_store_errors_total") == 3
    # a minute later (the fake clock) the node says it again, once
    for node in (a, b):
        node.advance(61)
        for _ in range(2):
            assert node.get("/api/webhooks/x", headers=CLOSE).status_code == 503
        log = node.log_text()
        assert len(re.findall(UNREACHABLE, log)) == 2
        assert len(re.findall(r"DM00020:", log)) == 0
        assert len(re.findall(r"\[deepmine:error\]", log)) == 2
        assert metric(metrics(node), "deepmine_rate_limit_store_errors_total") == 5


def test_memcached_back_is_used_again_and_logged(new_server, memcached):
    import time
    a, = two_nodes(new_server, memcached, "DeepMineRateLimit webhook 2/1h ip\n")[:1]
    memcached.stop()
    a.expect_log(UNREACHABLE)
    assert a.get("/api/webhooks/x", headers=CLOSE).status_code == 404
    again = Memcached()
    again.port, again.address = memcached.port, memcached.address
    again.start()
    try:
        time.sleep(1.2)  # a failed server is left alone for a second (DM_MC_DOWN_FOR)
        r = a.get("/api/webhooks/x", headers=CLOSE)
        assert r.status_code == 404
        assert r.headers["RateLimit"].startswith('"webhook";r=1;'), r.headers  # a fresh memcached
        assert "DM01753: the rate-limit store memcached answers again" in a.log_text()
    finally:
        again.stop()


def test_storage_local_with_a_postgresql_database_warns_at_start(new_server):
    """Nothing listens at the URL (and this build has no PostgreSQL driver):
    the start then fails on the database, after the warning."""
    s = new_server(seed=False)
    s.write_local_conf("DeepMineDatabase postgresql://deepmine@127.0.0.1:1/deepmine\n")
    s.expect_log(r"DM01754: DeepMineStorage local is storage-local with a PostgreSQL database: "
                 r"KYC documents and backups stay on this node's disk and other nodes do not "
                 r"see them")
    # whatever the database's failure says (DM00015 today)
    s.expect_log(r"\[deepmine:(crit|error|alert|emerg)\]|AH00016: Configuration Failed")
    s.start(wait=False)
    assert s.proc.wait(timeout=30) != 0
    s.proc = None
    log = s.log_text()
    assert "DM01754" in log, log
    assert "DM00016" not in log  # never "ready"


def test_storage_local_with_sqlite_does_not_warn(new_server):
    s = new_server(seed=False, engine="sqlite").start()  # whichever engine the suite runs on
    assert s.get("/api/health").status_code == 200
    assert "DM01754" not in s.log_text()
