"""Directive validation: a bad value makes `apache2 -t` fail, naming the
file, the line and what is wrong."""
import os
import subprocess
import time

import pytest

from conftest import configtest_error


def local_line_error(s, directive_line, *needles):
    """`apache2 -t` fails naming local.conf, the directive's line and each needle."""
    return configtest_error(s, directive_line, *needles, at_line=1)


@pytest.mark.parametrize("line,needle", [
    ("DeepMinePool 5 2", "0 <= min <= max"),
    ("DeepMinePool x 2", "DeepMinePool takes two whole numbers"),
    ("DeepMinePool 1 5000", "1 <= max <= 1024"),
    ("DeepMineMaxBody abc", "DeepMineMaxBody takes a size in bytes"),
    ("DeepMineMaxBody 0", "between 1 and 1073741824"),
    ("DeepMineMaxBody 10M", "DeepMineMaxBody takes a size in bytes"),
    ("DeepMinePublicURL ftp://mine.example.com", "must use http or https"),
    ("DeepMinePublicURL mine.example.com", "not an absolute http(s) URL"),
    ("DeepMineAllowedOrigin https://ok.example.com https://x.example.com/path",
     "not an origin"),
    ("DeepMineAllowedOrigin https://x.example.com?q=1", "must not carry a query"),
    ("DeepMinePlugin courier spool /nonexistent.so", "unknown kind"),
    ("DeepMineBatchScheduling maybe", "must be On or Off"),
    ("<VirtualHost *:80>\nDeepMineDatabase /tmp/x.db\n</VirtualHost>",
     "cannot occur within"),
])
def test_bad_directive_values_fail_configtest(new_server, line, needle):
    s = new_server(seed=False)
    if line.startswith("<VirtualHost"):
        s.write_local_conf("# local overrides\n" + line + "\n")
        r = s.configtest()
        out = r.stdout + r.stderr
        assert r.returncode != 0 and needle in out and "local.conf" in out, out
        return
    local_line_error(s, line, needle)


def test_good_values_pass_configtest(new_server):
    s = new_server(seed=False)
    s.write_local_conf("DeepMinePool 0 8\nDeepMineMaxBody 2048\n"
                       "DeepMinePublicURL https://mine.example.com/\n"
                       "DeepMineAllowedOrigin https://a.example.com http://127.0.0.1:9\n")
    r = s.configtest()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Syntax OK" in r.stdout + r.stderr


def write_key(path, data, mode):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def test_world_readable_secret_key_is_refused(new_server):
    s = new_server(seed=False)
    key = os.path.join(s.var, "weak.key")
    write_key(key, os.urandom(32), 0o644)
    local_line_error(s, "DeepMineSecretKeyFile " + key, "readable by everyone")


def test_secret_key_of_wrong_size_is_refused(new_server):
    s = new_server(seed=False)
    key = os.path.join(s.var, "short.key")
    write_key(key, os.urandom(16), 0o600)
    local_line_error(s, "DeepMineSecretKeyFile " + key, "exactly 32 random bytes")


def test_missing_secret_key_file_is_refused(new_server):
    s = new_server(seed=False)
    local_line_error(s, "DeepMineSecretKeyFile /nonexistent/secret.key",
                     "cannot be read", "deepminectl keygen")


def test_max_body_directive_sets_the_413_limit(new_server):
    s = new_server()
    s.write_local_conf("DeepMineMaxBody 100\n")
    s.start()
    r = s.request("POST", "/api/packages", data=b"x" * 101)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"
    r = s.request("POST", "/api/packages", data=b"x" * 100)
    assert r.status_code == 405


def test_two_servers_starting_at_once_migrate_once(new_server):
    a = new_server(seed=False)
    b = new_server(seed=False)
    # b serves a's database: both migrate the same fresh file at start-up
    b.write_local_conf('DeepMineDatabase "%s"\n' % a.db)
    a.start(wait=False)
    b.start(wait=False)
    import time
    import requests
    for s in (a, b):
        deadline = time.time() + 15
        while True:
            try:
                assert s.get("/api/health").json()["status"] == "ok"
                break
            except (requests.RequestException, ValueError):
                assert time.time() < deadline, s.log_text()
                time.sleep(0.1)
    rows = a.sql("SELECT version, COUNT(*) FROM schema_migrations GROUP BY version")
    assert rows and all(n == 1 for _, n in rows)
    versions = [v for v, _ in rows]
    assert versions == sorted(set(versions))
    logs = a.log_text() + b.log_text()
    assert logs.count("DM00001") == 1, logs  # exactly one of them applied them


def test_deepminectl_exit_codes(new_server):
    s = new_server(seed=False)
    from conftest import CTL
    r = subprocess.run([CTL, "--db", s.db, "status"], capture_output=True, text=True)
    assert r.returncode == 1  # no database yet
    assert subprocess.run([CTL, "--db", s.db, "migrate"]).returncode == 0
    r = subprocess.run([CTL, "--db", s.db, "status"], capture_output=True, text=True)
    assert r.returncode == 0 and "schema version" in r.stdout
    assert subprocess.run([CTL, "frobnicate"], capture_output=True).returncode == 2
    assert subprocess.run([CTL, "--bogus", "status"], capture_output=True).returncode == 2
    r = subprocess.run([CTL, "help"], capture_output=True, text=True)
    assert r.returncode == 0 and "migrate" in r.stdout and "status" in r.stdout


def test_deepminectl_finds_the_database_the_configuration_serves(new_server, tmp_path):
    """--db, else $DEEPMINE_DB, else the DeepMineDatabase of --config or
    $DEEPMINE_CONFIG (local.conf followed: the last one wins, as for
    Apache), else ./var/deepmine.db, which must exist."""
    s = new_server(seed=False)
    from conftest import CTL

    def ctl(*args, env=None, cwd=None):
        e = dict(os.environ)
        for k in ("DEEPMINE_DB", "DEEPMINE_CONFIG"):
            e.pop(k, None)
        e.update(env or {})
        return subprocess.run([CTL] + list(args), capture_output=True, text=True, env=e,
                              cwd=cwd or str(tmp_path))

    r = ctl("--config", s.conf, "seed-demo")
    assert r.returncode == 0, r.stderr
    assert os.path.exists(s.db)  # the generated configuration's DeepMineDatabase
    r = ctl("status", env={"DEEPMINE_CONFIG": s.conf})
    assert r.returncode == 0 and ("database:       %s\n" % s.db) in r.stdout, r.stdout
    # a DeepMineDatabase in local.conf (included last) wins, as it does for Apache
    other = str(tmp_path / "other.db")
    s.write_local_conf('DeepMineDatabase "%s"\n' % other)
    r = ctl("--config", s.conf, "migrate")
    assert r.returncode == 0 and os.path.exists(other), r.stderr
    # --db and $DEEPMINE_DB come before the configuration
    r = ctl("--db", s.db, "--config", s.conf, "status")
    assert ("database:       %s\n" % s.db) in r.stdout
    r = ctl("status", env={"DEEPMINE_DB": s.db, "DEEPMINE_CONFIG": s.conf})
    assert ("database:       %s\n" % s.db) in r.stdout
    # an unreadable configuration is a failure naming it
    r = ctl("--config", str(tmp_path / "nope.conf"), "status")
    assert r.returncode == 1 and "nope.conf" in r.stderr
    # nothing named and no ./var/deepmine.db: exit 1 with the way out, no new file
    r = ctl("jobs", "list")
    assert r.returncode == 1 and "--config" in r.stderr, r.stderr
    assert not (tmp_path / "var").exists()
    # help lists every command; help <command> shows its options
    r = ctl("help", "jobs")
    assert r.returncode == 0 and "--period P" in r.stdout and "--force" in r.stdout
    assert ctl("help", "nonsense").returncode == 2


def sched_policies(pid):
    """The scheduling policy of each thread of pid (/proc/<pid>/task/*/stat
    field 41: 0 SCHED_OTHER, 3 SCHED_BATCH)."""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        out.append(int(fields[41 - 3]))
    return out


def worker_child(s):
    """The event MPM's worker process: the child of Apache's parent with
    more than one thread (the cron daemon has one)."""
    for _ in range(100):
        kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(s.proc.pid)],
                              capture_output=True, text=True).stdout.split()
        for k in kids:
            if len(os.listdir("/proc/%s/task" % k)) > 1:
                return int(k)
        time.sleep(0.1)
    raise AssertionError("no worker child under %d" % s.proc.pid)


@pytest.mark.parametrize("setting,policy", [("", 3), ("DeepMineBatchScheduling off\n", 0)])
def test_batch_scheduling_of_the_worker_threads(new_server, setting, policy):
    # DeepMineBatchScheduling (default on): every thread of the worker child
    # runs as SCHED_BATCH; the parent keeps the default policy.
    s = new_server(local_conf=setting)
    s.start()
    assert s.get("/api/health").status_code == 200
    w = worker_child(s)
    threads = sched_policies(w)
    assert len(threads) > 1 and set(threads) == {policy}, threads
    assert set(sched_policies(s.proc.pid)) == {0}


def test_batch_scheduling_leaves_prefork_children_alone(new_server):
    # prefork's children answer one request each: under SCHED_BATCH the one
    # that just answered would keep winning the next accept
    s = new_server(mpm="prefork")
    s.start()
    assert s.get("/api/health").status_code == 200
    kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(s.proc.pid)],
                          capture_output=True, text=True).stdout.split()
    assert kids
    for k in kids:
        assert set(sched_policies(int(k))) == {0}, k
