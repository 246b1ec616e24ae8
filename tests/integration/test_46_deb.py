"""The Debian package (`make deb`, docs/operations.md): it builds, lintian
reports no error, it installs on this Debian 12 with `apt install ./….deb`,
its postinst makes the data directories and a secret key readable by
Apache's user only, `a2enmod deepmine` enables it, an Apache started on
the installed files answers /api/health, and purge removes what it made.

It changes the machine (it installs a package), so it runs only as root
(CI and `make test` on the project's machines run as root) and purges
what it installed even when an assertion fails."""
import glob
import os
import pwd
import stat
import subprocess
import time

import pytest
import requests

from conftest import ROOT, free_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="installs a Debian package: needs root")

ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive")


def sh(*cmd, check=True):
    return subprocess.run(list(cmd), capture_output=True, text=True, env=ENV, check=check)


def installed():
    r = sh("dpkg-query", "-W", "-f=${Status}", "deepmine", check=False)
    return "install ok installed" in r.stdout


@pytest.fixture(scope="module")
def deb():
    sh("make", "-s", "-C", ROOT, "deb")
    debs = glob.glob(os.path.join(ROOT, "build", "deepmine_*_*.deb"))
    assert len(debs) == 1, debs
    return debs[0]


def test_lintian_reports_no_error(deb):
    r = sh("lintian", "--tag-display-limit", "0", deb, check=False)
    errors = [l for l in r.stdout.splitlines() if l.startswith("E:")]
    assert errors == [], r.stdout
    # the package's files: module, plugins, console, pages, a2enmod files, man page
    listing = sh("dpkg-deb", "-c", deb).stdout
    for path in ["./usr/lib/apache2/modules/mod_deepmine.so",
                 "./usr/lib/deepmine/plugins/mailer-spool.so",
                 "./usr/bin/deepminectl",
                 "./usr/share/deepmine/web/index.html",
                 "./etc/apache2/mods-available/deepmine.load",
                 "./etc/apache2/mods-available/deepmine.conf",
                 "./usr/share/man/man8/deepminectl.8.gz",
                 "./usr/share/doc/deepmine/copyright"]:
        assert path in listing, path


def apache_conf(tmp_path, port):
    conf = tmp_path / "httpd.conf"
    conf.write_text("""
ServerRoot /etc/apache2
ServerName 127.0.0.1
Listen 127.0.0.1:%(port)d
PidFile %(tmp)s/httpd.pid
Mutex file:%(tmp)s
DefaultRuntimeDir %(tmp)s
ErrorLog %(tmp)s/error.log
LogLevel warn
User www-data
Group www-data
IncludeOptional /etc/apache2/mods-enabled/*.load
IncludeOptional /etc/apache2/mods-enabled/*.conf
DocumentRoot /usr/share/deepmine/web
""" % {"port": port, "tmp": tmp_path})
    return conf


def test_installs_enables_serves_and_purges(deb, tmp_path):
    if installed():
        sh("apt-get", "purge", "-y", "-qq", "deepmine")
    os.chmod(tmp_path, 0o755)  # Apache's children (www-data) write nothing here
    proc = None
    try:
        r = sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", deb, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert installed()
        www = pwd.getpwnam("www-data")
        # postinst: the data directory and the key belong to Apache's user alone
        for d in ["/var/lib/deepmine", "/var/spool/deepmine"]:
            st = os.stat(d)
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (www.pw_uid, 0o700), d
        st = os.stat("/etc/deepmine/secret.key")
        assert (st.st_uid, stat.S_IMODE(st.st_mode), st.st_size) == (www.pw_uid, 0o600, 32)
        assert os.path.isfile("/usr/share/man/man8/deepminectl.8.gz")
        assert "deepmine" in sh("dpkg-query", "-W", "-f=${Conffiles}", "deepmine").stdout

        sh("a2enmod", "-q", "deepmine")
        assert os.path.islink("/etc/apache2/mods-enabled/deepmine.load")
        port = free_port()
        conf = apache_conf(tmp_path, port)
        t = sh("apache2", "-t", "-f", str(conf), check=False)
        assert t.returncode == 0, t.stderr
        proc = subprocess.Popen(["apache2", "-f", str(conf), "-DFOREGROUND"], env=ENV)
        body = None
        for _ in range(100):
            try:
                resp = requests.get("http://127.0.0.1:%d/api/health" % port, timeout=2)
                body = (resp.status_code, resp.json())
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert body is not None, open(tmp_path / "error.log").read()
        assert body[0] == 200 and body[1]["database"] == "ok", body
        # the pages are the installed ones, deep links answer the app
        page = requests.get("http://127.0.0.1:%d/dashboard" % port, timeout=5)
        assert page.status_code == 200 and "<html" in page.text.lower()
        # the database the module made belongs to Apache's user
        st = os.stat("/var/lib/deepmine/deepmine.db")
        assert st.st_uid == www.pw_uid
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
        if installed():
            sh("apt-get", "purge", "-y", "-qq", "deepmine", check=False)
    assert not installed()
    for gone in ["/var/lib/deepmine", "/var/spool/deepmine", "/etc/deepmine",
                 "/usr/lib/apache2/modules/mod_deepmine.so",
                 "/etc/apache2/mods-available/deepmine.conf",
                 "/etc/apache2/mods-enabled/deepmine.load"]:
        assert not os.path.lexists(gone), gone
