"""Error reporting through a monitor plugin (docs/operations.md, "Error
reporting"; issue 15): monitor-sentry against the Sentry stand-in of
tests/standins/, which parses envelopes as PROVIDERS.md §8 documents, and
Sentry's own Node SDK (@sentry/node) proving the stand-in accepts real
envelopes.

Reports are provoked through the real server: the test plugin `pages`
fails on purpose at /api/plugins/pages/fail (an error line of the plugin
itself, DM00653 from the host, and a 500 answer, DM01600)."""
import json
import os
import subprocess
import sys
import time

import pytest
import requests

from conftest import ROOT, BUILD, TESTPLUGINS

sys.path.insert(0, os.path.join(ROOT, "tests", "standins"))
from sentry_standin import SentryStandin  # noqa: E402

SDK = os.path.join(ROOT, "tests", "sdk")
SENTRY_SO = os.path.join(BUILD, "plugins", "monitor-sentry.so")
PAGES_SO = os.path.join(TESTPLUGINS, "pages.so")
KEY = "4f2a9c0de1b34f6a"


@pytest.fixture(scope="module")
def standin_server():
    s = SentryStandin(KEY, project="42").start()
    yield s
    s.stop()


@pytest.fixture
def standin(standin_server):
    standin_server.reset()
    return standin_server


def events(standin):
    return requests.get(standin.url + "/_standin/events", timeout=10).json()


def wait_events(standin, n, timeout=30):
    deadline = time.time() + timeout
    got = []
    while time.time() < deadline:
        got = events(standin)
        if len(got) >= n:
            return got
        time.sleep(0.2)
    raise AssertionError("the stand-in received %d of %d envelopes" % (len(got), n))


def mode(standin, **m):
    requests.post(standin.url + "/_standin/mode", json=m, timeout=10).raise_for_status()


def event_of(envelope):
    items = [it for it in envelope["items"] if it["headers"]["type"] == "event"]
    assert len(items) == 1, envelope
    return json.loads(items[0]["payload"])


def monitored(new_server, dsn, extra=""):
    s = new_server(local_conf=(
        "DeepMinePlugin monitor sentry %s\n"
        "DeepMinePluginSet sentry dsn %s\n"
        "DeepMinePlugin payment pages %s\n"
        "DeepMineEnvironment staging\n%s") % (SENTRY_SO, dsn, PAGES_SO, extra))
    return s


def fail(s):
    r = requests.get(s.url + "/api/plugins/pages/fail", timeout=10)
    assert r.status_code == 500, r.text
    return r


# ---- the stand-in, proved by Sentry's SDK and by refusals ----

def test_sentrys_own_sdk_delivers_envelopes_the_standin_accepts(standin):
    r = subprocess.run(["node", os.path.join(SDK, "sentry_client.js"),
                        json.dumps({"dsn": standin.dsn(), "text": "sdk says hello"})],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, NODE_PATH=os.path.join(SDK, "node_modules")))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["flushed"] is True
    got = wait_events(standin, 2)
    ids = sorted(event_of(e)["event_id"] for e in got)
    assert ids == sorted(out["ids"])
    # Pick each event by the id the SDK returned for it: whether the SDK
    # also attaches an "exception" block to a message event differs
    # between its versions, so the key alone does not tell them apart.
    by_id = {event_of(e)["event_id"]: event_of(e) for e in got}
    exc = by_id[out["ids"][0]]
    assert exc["exception"]["values"][0]["value"] == "sdk says hello"
    msg = by_id[out["ids"][1]]
    assert "sdk says hello (message)" in json.dumps(msg)
    assert all(e["auth"]["sentry_key"] == KEY for e in got)


def test_standin_refuses_a_wrong_key_a_wrong_project_and_a_broken_envelope(standin):
    head = '{"event_id":"%s"}\n' % ("a" * 32)
    ev = json.dumps({"event_id": "a" * 32, "timestamp": 1.5, "platform": "c"})
    good = head + '{"type":"event","length":%d}\n%s\n' % (len(ev), ev)
    url = standin.url + "/api/42/envelope/"

    def post(body, key=KEY, u=url):
        return requests.post(u, data=body.encode(), timeout=10, headers={
            "X-Sentry-Auth": "Sentry sentry_version=7, sentry_key=%s" % key})
    assert post(good).status_code == 200
    assert post(good, key="wrong").status_code == 403
    assert post(good, u=standin.url + "/api/7/envelope/").status_code == 404
    # a length running past the envelope, a bad event id, a bad level
    assert post(head + '{"type":"event","length":999}\n{}\n').status_code == 400
    bad = json.dumps({"event_id": "XYZ", "timestamp": 1, "platform": "c"})
    assert post(head + '{"type":"event"}\n%s\n' % bad).status_code == 400
    lvl = json.dumps({"event_id": "a" * 32, "timestamp": 1, "platform": "c", "level": "loud"})
    assert post(head + '{"type":"event"}\n%s\n' % lvl).status_code == 400
    assert len(events(standin)) == 1


# ---- the server's reports ----

def test_an_error_reaches_sentry_grouped_by_dm_number_with_no_personal_data(standin,
                                                                            new_server):
    s = monitored(new_server, standin.dsn()).start()
    s.expect_log(r"pages: failing on purpose")
    s.expect_log(r"DM00653: plugin pages failed")
    fail(s)
    got = wait_events(standin, 3)
    by_type = {}
    for env in got:
        # what every envelope of ours carries
        assert env["auth"]["sentry_version"] == "7" and env["auth"]["sentry_key"] == KEY
        assert env["auth"]["sentry_client"] == "deepmine.monitor-sentry/1.0.0"
        assert env["content_type"] == "application/x-sentry-envelope"
        assert env["user_agent"] == "deepmine.monitor-sentry/1.0.0"
        item = env["items"][0]
        assert item["headers"]["length"] == len(item["payload"].encode())
        ev = event_of(env)
        assert env["headers"]["event_id"] == ev["event_id"]
        assert ev["platform"] == "c" and ev["logger"] == "mod_deepmine"
        assert ev["release"] == "deepmine@0.1.0" and ev["environment"] == "staging"
        by_type[ev["exception"]["values"][0]["type"]] = ev

    host = by_type["DM00653"]
    assert host["level"] == "error" and host["fingerprint"] == ["DM00653"]
    assert host["tags"]["dm_number"] == "DM00653"
    assert host["tags"]["route"] == "GET /api/plugins/{name}/*" or \
        host["tags"]["route"].startswith("GET /api/plugins/")
    text = host["exception"]["values"][0]["value"]
    assert text.startswith("plugin pages failed on GET /api/plugins/pages/fail")
    # scrubbed: the address and the key never leave the server
    assert "alice@example.com" not in text and "sk_test_4eC39HqLyjWDarjtT1zdp7dc" not in text
    assert "[email]" in text and "[redacted]" in text

    answer = by_type["DM01600"]
    assert answer["exception"]["values"][0]["value"] == "answered 500"
    assert answer["transaction"] == host["transaction"]

    # the plugin's own line (the host numbers every plugin's lines DM00101):
    # it names the plugin it came from, and is grouped per plugin
    own = by_type["DM00101"]
    assert own["exception"]["values"][0]["value"] == "plugin pages: pages: failing on purpose"
    assert own["tags"]["plugin"] == "pages"
    assert own["fingerprint"] == ["DM00101", "pages"]


def test_a_rate_limited_sentry_gets_the_reports_later_and_none_twice(standin, new_server):
    s = monitored(new_server, standin.dsn()).start()
    s.expect_log(r"pages: failing on purpose|DM00653: plugin pages failed")
    s.expect_log(r"DM01601: monitor sentry cannot take reports for now: Sentry is rate "
                 r"limiting \(429\): sending again in 1 s")
    mode(standin, status=429, retry_after=1, count=1)
    fail(s)
    got = wait_events(standin, 3)
    ids = [event_of(e)["event_id"] for e in got]
    assert len(set(ids)) == len(ids) == 3
    requests_seen = requests.get(standin.url + "/_standin/requests", timeout=10).json()
    assert requests_seen["requests"] == 4  # one refused, then each once


def test_limits_announced_on_a_success_pause_the_next_sends(standin, new_server):
    s = monitored(new_server, standin.dsn()).start()
    s.expect_log(r"pages: failing on purpose|DM00653: plugin pages failed")
    # accepted, with "no errors for 2 s" announced: the other two wait
    mode(standin, status=200, rate_limits="2:error;default:organization", count=1)
    fail(s)
    got = wait_events(standin, 3)
    assert len(got) == 3
    t = [json.loads(e["items"][0]["payload"])["timestamp"] for e in got]
    assert len(t) == 3
    # a limit for another category only does not pause errors
    mode(standin, status=200, rate_limits="60:transaction:organization", count=1)
    fail(s)
    assert len(wait_events(standin, 6)) == 6


def test_a_monitor_that_is_down_never_fails_a_request(new_server):
    # nothing listens at this port: every send fails at once
    import socket
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        port = so.getsockname()[1]
    token = "scrape-token-0123456789"
    s = monitored(new_server, "http://%s@127.0.0.1:%d/42" % (KEY, port),
                  "DeepMineMonitorQueue 16\nDeepMineMetricsToken %s\n" % token).start()
    s.expect_log(r"pages: failing on purpose|DM00653: plugin pages failed")
    s.expect_log(r"DM01601: monitor sentry cannot take reports for now")
    for _ in range(30):  # 90 reports into a queue of 16: most are dropped
        fail(s)
    assert requests.get(s.url + "/api/health", timeout=10).status_code == 200
    deadline = time.time() + 20
    while time.time() < deadline and "DM01601" not in s.log_text():
        time.sleep(0.2)
    assert "DM01601: monitor sentry cannot take reports for now" in s.log_text()
    # what was dropped is counted, and the scrape says so
    m = requests.get(s.url + "/api/admin/metrics", timeout=10,
                     headers={"Authorization": "Bearer " + token})
    assert m.status_code == 200
    figures = dict(line.rsplit(" ", 1) for line in m.text.splitlines()
                   if line.startswith("deepmine_monitor_"))
    assert int(figures["deepmine_monitor_reports_queued"]) == 16
    assert int(figures["deepmine_monitor_reports_dropped_total"]) >= 90 - 16 - 1
    assert int(figures["deepmine_monitor_reports_sent_total"]) == 0


@pytest.mark.parametrize("dsn,says", [
    ("not-a-dsn", "dsn must start with https://"),
    ("https://sentry.example.com/42", "dsn has no public key or no project id"),
    ("https://key@sentry.example.com/", "dsn has no project id after its last '/'"),
    ("http://key@sentry.example.com/42", "dsn must use https://"),
])
def test_a_dsn_that_cannot_work_refuses_to_start_with_a_sentence(new_server, dsn, says):
    s = monitored(new_server, dsn)
    r = s.configtest()
    assert r.returncode != 0
    assert says in r.stderr, r.stderr


def test_environment_and_queue_directives_refuse_nonsense(new_server):
    s = new_server(local_conf="DeepMineEnvironment 'two words'\n")
    r = s.configtest()
    assert r.returncode != 0 and "DeepMineEnvironment takes" in r.stderr
    s.write_local_conf("DeepMineMonitorQueue 3\n")
    r = s.configtest()
    assert r.returncode != 0 and "DeepMineMonitorQueue takes" in r.stderr
