"""Storage plugins (ABI 1.5, kind storage) in a real Apache's configuration,
reached through `deepminectl storage put|get|ls|rm`, which loads the
configuration's storage plugins through the same plugin host and typed calls
(core/plugins/storage.c) as the server:

- storage-local, the default of the generated configuration (`make run`);
- storage-s3 against the S3 stand-in (tests/standins/s3_standin.py), which
  verifies AWS Signature V4 on every request; the official AWS SDK
  (`@aws-sdk/client-s3`, tests/sdk/s3_client.js) proves the stand-in right
  and reads back what the plugin stored.

Errors (wrong secret, missing bucket, a dropped connection) must be clear
sentences and must never leave a half-written object.
"""
import base64
import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest
import requests

from conftest import CTL, PLUGINS, ROOT

sys.path.insert(0, os.path.join(ROOT, "tests", "standins"))
from s3_standin import S3Standin  # noqa: E402

SDK = os.path.join(ROOT, "tests", "sdk")
AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
BUCKET = "deepmine-docs"
REGION = "auto"  # as Cloudflare R2


@pytest.fixture(scope="module")
def standin_server():
    s = S3Standin({AKID: SECRET}, [BUCKET], region=REGION, vhost_base="localhost").start()
    yield s
    s.stop()


@pytest.fixture
def standin(standin_server):
    standin_server.reset()
    return standin_server


def s3_conf(standin, name="s3", choose=True, **settings):
    """local.conf lines declaring storage-s3 as `name`."""
    s = {"endpoint": standin.url, "region": REGION, "bucket": BUCKET,
         "access_key_id": AKID, "secret_access_key": SECRET, "path_style": "yes"}
    s.update(settings)
    lines = ['DeepMinePlugin storage %s "%s"' % (name, os.path.join(PLUGINS, "storage-s3.so"))]
    for k, v in s.items():
        if v is not None:
            lines.append('DeepMinePluginSet %s %s "%s"' % (name, k, v))
    if choose:
        lines.append("DeepMineStorage %s" % name)
    return "\n".join(lines) + "\n"


def ctl(srv, *args, stdin=None):
    """deepminectl storage … on the server's configuration."""
    r = subprocess.run([CTL, "--config", srv.conf, "storage"] + list(args),
                       capture_output=True, input=stdin)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


def sdk(standin, ops, secret=SECRET, path_style=True, bucket=BUCKET):
    cmd = {"endpoint": standin.url if path_style else "http://localhost:%d" % standin.port,
           "region": REGION, "accessKeyId": AKID, "secretAccessKey": secret,
           "forcePathStyle": path_style, "bucket": bucket, "ops": ops}
    r = subprocess.run(["node", os.path.join(SDK, "s3_client.js")], input=json.dumps(cmd),
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, NODE_PATH=os.path.join(SDK, "node_modules"),
                                NODE_NO_WARNINGS="1"))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def objects(standin):
    return {o["key"]: o for o in standin.objects()}


def s3_requests(standin):
    return requests.get(standin.url + "/_standin/requests", timeout=10).json()


def control(standin, path, body):
    r = requests.post(standin.url + path, json=body, timeout=10)
    assert r.status_code == 200, r.text


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.fixture(scope="module")
def s3srv(standin_server, tmp_path_factory):
    """One Apache whose configuration declares storage-s3 (path style, the
    chosen storage), a virtual-host instance, one with a small buffer (so
    uploads stream), one with a wrong secret and one naming a missing
    bucket."""
    from conftest import Server
    conf = (s3_conf(standin_server, "s3", prefix="dm/")
            + s3_conf(standin_server, "vhost", choose=False,
                      endpoint="http://localhost:%d" % standin_server.port, path_style="no")
            + s3_conf(standin_server, "stream", choose=False, buffer_bytes="1024")
            + s3_conf(standin_server, "wrongkey", choose=False, secret_access_key="not-it")
            + s3_conf(standin_server, "nobucket", choose=False, bucket="no-such-bucket"))
    s = Server(local_conf=conf, seed=False).start()
    yield s
    s.stop()
    try:
        from conftest import assert_clean_log
        assert_clean_log(s)
    finally:
        s.cleanup()


# ---- the stand-in is right: the AWS SDK's own signatures ----

def test_sdk_signed_requests_are_accepted_and_the_same_under_a_wrong_secret_refused(standin):
    body = base64.b64encode(b"signed by the SDK\n").decode()
    ok = sdk(standin, [{"op": "put", "key": "sdk/one.txt", "body": body,
                        "contentType": "text/plain"},
                       {"op": "get", "key": "sdk/one.txt"},
                       {"op": "head", "key": "sdk/one.txt"},
                       {"op": "list", "prefix": "sdk/"},
                       {"op": "delete", "key": "sdk/one.txt"},
                       {"op": "get", "key": "sdk/one.txt"}])
    assert [o["ok"] for o in ok] == [True, True, True, True, True, False]
    assert ok[1]["body"] == body and ok[1]["contentType"] == "text/plain"
    assert ok[2]["contentLength"] == 18
    assert ok[3]["keys"] == [{"key": "sdk/one.txt", "size": 18}]
    assert (ok[5]["name"], ok[5]["status"]) == ("NoSuchKey", 404)

    bad = sdk(standin, [{"op": "put", "key": "sdk/two.txt", "body": body},
                        {"op": "get", "key": "sdk/one.txt"},
                        {"op": "list"},
                        {"op": "delete", "key": "sdk/one.txt"}], secret=SECRET + "x")
    assert [(o["ok"], o["name"], o["status"]) for o in bad] == \
        [(False, "SignatureDoesNotMatch", 403)] * 4
    assert objects(standin) == {}
    assert [r["error"] for r in s3_requests(standin)[-4:]] == ["SignatureDoesNotMatch"] * 4


def test_sdk_list_follows_the_stand_ins_continuation_tokens(standin):
    body = base64.b64encode(b"x").decode()
    sdk(standin, [{"op": "put", "key": "p/%d" % i, "body": body} for i in range(5)])
    control(standin, "/_standin/page", {"max": 2})
    out = sdk(standin, [{"op": "listAll", "prefix": "p/"}])[0]
    assert [k["key"] for k in out["keys"]] == ["p/0", "p/1", "p/2", "p/3", "p/4"]
    assert out["pages"] == 3


def test_stand_in_refuses_an_unsigned_request_and_names_a_missing_bucket(standin):
    r = requests.get(standin.url + "/" + BUCKET + "/x", timeout=10)
    assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text
    out = sdk(standin, [{"op": "get", "key": "x"}])
    assert (out[0]["name"], out[0]["status"]) == ("NoSuchKey", 404)
    out = sdk(standin, [{"op": "list"}], bucket="no-such-bucket")
    assert (out[0]["name"], out[0]["status"]) == ("NoSuchBucket", 404)


# ---- storage-s3 through the plugin host ----

def test_plugin_put_is_read_back_by_the_sdk_with_its_bytes_and_type(s3srv, standin, tmp_path):
    data = os.urandom(300 * 1024)
    f = write(tmp_path / "doc.pdf", data)
    rc, out, err = ctl(s3srv, "put", "kyc/42/id_front", str(f), "--type", "application/pdf")
    assert rc == 0, err
    assert out.decode() == "stored kyc/42/id_front (307200 bytes) in s3\n"
    got = sdk(standin, [{"op": "get", "key": "dm/kyc/42/id_front"}])[0]
    assert got["ok"] and base64.b64decode(got["body"]) == data
    assert got["contentType"] == "application/pdf"
    # a body within buffer_bytes goes with its real SHA-256, path style
    put = [r for r in s3_requests(standin) if r["method"] == "PUT"][-1]
    assert put["path"] == "/%s/dm/kyc/42/id_front" % BUCKET
    assert put["host"] == "127.0.0.1:%d" % standin.port
    assert put["payload"] == hashlib.sha256(data).hexdigest()


def test_plugin_reads_back_what_the_sdk_stored_streamed_to_a_file(s3srv, standin, tmp_path):
    data = os.urandom(2 * 1024 * 1024 + 3)
    assert sdk(standin, [{"op": "put", "key": "dm/backups/b1.gz",
                          "body": base64.b64encode(data).decode()}])[0]["ok"]
    out_file = tmp_path / "b1.gz"
    rc, out, err = ctl(s3srv, "get", "backups/b1.gz", str(out_file))
    assert rc == 0, err
    assert out.decode() == "wrote backups/b1.gz (2097155 bytes) to %s\n" % out_file
    assert out_file.read_bytes() == data
    rc, out, err = ctl(s3srv, "get", "backups/b1.gz")
    assert rc == 0 and out == data


def test_virtual_host_style_puts_to_the_bucket_host(s3srv, standin):
    rc, out, err = ctl(s3srv, "put", "vh/doc", "--stdin", "--plugin", "vhost", stdin=b"virtual\n")
    assert rc == 0, err
    put = [r for r in s3_requests(standin) if r["method"] == "PUT"][-1]
    assert put["host"] == "%s.localhost:%d" % (BUCKET, standin.port)
    assert put["path"] == "/vh/doc"
    got = sdk(standin, [{"op": "get", "key": "vh/doc"}])[0]
    assert base64.b64decode(got["body"]) == b"virtual\n"
    rc, out, err = ctl(s3srv, "ls", "vh/", "--plugin", "vhost")
    assert rc == 0 and out.decode().split("\t")[2] == "vh/doc\n"


def test_a_body_over_buffer_bytes_streams_as_unsigned_payload(s3srv, standin, tmp_path):
    data = os.urandom(5000)
    f = write(tmp_path / "five", data)
    rc, out, err = ctl(s3srv, "put", "big/five", str(f), "--plugin", "stream")
    assert rc == 0, err
    put = [r for r in s3_requests(standin) if r["method"] == "PUT"][-1]
    assert put["payload"] == "UNSIGNED-PAYLOAD"
    assert objects(standin)["big/five"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_list_follows_continuation_tokens_in_key_order(s3srv, standin):
    for k in ["a/b", "a-c", "a/a/z", "a0", "b"]:
        assert ctl(s3srv, "put", k, "--stdin", stdin=k.encode())[0] == 0
    # another application's objects in the bucket, and one no key can be
    sdk(standin, [{"op": "put", "key": "other/x", "body": "eA=="},
                  {"op": "put", "key": "dm/bad key", "body": "eA=="}])
    control(standin, "/_standin/page", {"max": 2})
    rc, out, err = ctl(s3srv, "ls")
    assert rc == 0, err
    rows = [line.split("\t") for line in out.decode().splitlines()]
    assert [(r[0], r[2]) for r in rows] == [("3", "a-c"), ("5", "a/a/z"), ("3", "a/b"),
                                            ("2", "a0"), ("1", "b")]
    lists = [r for r in s3_requests(standin) if "list-type=2" in r["path"]]
    assert len(lists) == 3  # 6 objects under dm/ ("dm/bad key" then skipped), 2 a page
    assert "continuation-token=" in lists[-1]["path"]
    rc, out, err = ctl(s3srv, "ls", "a/")
    assert [line.split("\t")[2] for line in out.decode().splitlines()] == ["a/a/z", "a/b"]


def test_get_of_a_missing_object_and_rm(s3srv, standin):
    rc, out, err = ctl(s3srv, "get", "nothing/here")
    assert rc == 1
    assert "storage get nothing/here: get nothing/here: no such object" in err
    assert ctl(s3srv, "put", "gone", "--stdin", stdin=b"x")[0] == 0
    rc, out, err = ctl(s3srv, "rm", "gone")
    assert (rc, out) == (0, b"removed gone\n")
    assert "dm/gone" not in objects(standin)
    assert ctl(s3srv, "rm", "gone")[0] == 0  # removing nothing is not an error


def test_a_key_the_host_refuses_never_reaches_the_store(s3srv, standin):
    before = len(s3_requests(standin))
    for key in ["../etc/passwd", "/abs", "a//b", "a b", "caf\u00e9"]:
        rc, out, err = ctl(s3srv, "put", key, "--stdin", stdin=b"x")
        assert rc == 1 and "storage key is not valid" in err, (key, err)
    assert len(s3_requests(standin)) == before


def test_a_wrong_secret_is_a_clear_error_and_stores_nothing(s3srv, standin):
    rc, out, err = ctl(s3srv, "put", "k", "--stdin", "--plugin", "wrongkey", stdin=b"secret doc")
    assert rc == 1
    assert ("put k: the store refused our credentials (SignatureDoesNotMatch): check "
            "access_key_id, secret_access_key and region") in err
    rc, out, err = ctl(s3srv, "ls", "--plugin", "wrongkey")
    assert rc == 1 and "SignatureDoesNotMatch" in err
    assert objects(standin) == {}


def test_a_missing_bucket_is_a_clear_error(s3srv, standin):
    rc, out, err = ctl(s3srv, "put", "k", "--stdin", "--plugin", "nobucket", stdin=b"x")
    assert rc == 1
    assert ("put k: the bucket no-such-bucket does not exist at 127.0.0.1:%d (NoSuchBucket)"
            % standin.port) in err
    rc, out, err = ctl(s3srv, "get", "k", "--plugin", "nobucket")
    assert rc == 1 and "(NoSuchBucket)" in err


@pytest.mark.parametrize("plugin,size,after", [
    ("s3", 100 * 1024, 50 * 1024),        # sent with its hash from memory
    ("stream", 100 * 1024, 50 * 1024),    # streamed, UNSIGNED-PAYLOAD
    ("s3", 10, 0),                        # dropped before any body byte
])
def test_a_dropped_upload_leaves_no_object_and_keeps_the_older_one(
        s3srv, standin, tmp_path, plugin, size, after):
    key, stored = "drop/doc", ("dm/drop/doc" if plugin == "s3" else "drop/doc")
    assert ctl(s3srv, "put", key, "--stdin", "--plugin", plugin, stdin=b"older")[0] == 0
    control(standin, "/_standin/drop", {"method": "PUT", "after_bytes": after})
    f = write(tmp_path / "new", os.urandom(size))
    rc, out, err = ctl(s3srv, "put", key, str(f), "--plugin", plugin)
    assert rc == 1
    assert "put drop/doc: the connection to 127.0.0.1:%d failed:" % standin.port in err, err
    assert objects(standin)[stored]["size"] == 5  # the older object, whole
    rc, out, err = ctl(s3srv, "get", key, "--plugin", plugin)
    assert (rc, out) == (0, b"older")


def test_a_dropped_download_leaves_no_file(s3srv, standin, tmp_path):
    data = os.urandom(200 * 1024)
    assert ctl(s3srv, "put", "dl/doc", str(write(tmp_path / "d", data)))[0] == 0
    control(standin, "/_standin/drop", {"method": "GET", "after_bytes": 64 * 1024})
    out_file = tmp_path / "copy"
    rc, out, err = ctl(s3srv, "get", "dl/doc", str(out_file))
    assert rc == 1
    assert "get dl/doc: the connection to 127.0.0.1:%d failed:" % standin.port in err, err
    assert not out_file.exists() and not (tmp_path / "copy.part").exists()


def test_a_store_answering_503_is_a_temporary_error(s3srv, standin):
    control(standin, "/_standin/fail", {"status": 503, "code": "SlowDown",
                                        "message": "Please reduce your request rate."})
    rc, out, err = ctl(s3srv, "put", "k", "--stdin", stdin=b"x")
    assert rc == 1
    assert "put k: the store answered 503 SlowDown: Please reduce your request rate." in err
    assert objects(standin) == {}


# ---- configuration ----

def test_storage_local_is_the_default_of_the_generated_configuration(new_server):
    s = new_server(seed=False)
    rc, out, err = ctl(s, "put", "kyc/7/selfie", "--stdin", stdin=b"\x89PNG...")
    assert rc == 0, err
    assert out == b"stored kyc/7/selfie (7 bytes) in local\n"
    path = os.path.join(s.var, "storage", "kyc", "7", "selfie")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(s.var, "storage")).st_mode) == 0o700
    rc, out, err = ctl(s, "get", "kyc/7/selfie")
    assert (rc, out) == (0, b"\x89PNG...")
    s.start()  # the server loads it too


def test_DeepMineStorage_must_name_a_declared_storage_plugin(new_server):
    s = new_server(seed=False)
    s.expect_log("DM01200")
    s.write_local_conf("DeepMineStorage spool\n")
    r = s.configtest()
    out = r.stdout + r.stderr + s.log_text()
    assert r.returncode != 0, out
    assert ("DM01200: refusing to start: DeepMineStorage spool: spool is not a declared "
            "storage plugin (DeepMinePlugin storage spool ...)") in out


def test_storage_s3_settings_are_checked_at_start(new_server, standin):
    s = new_server(seed=False)
    s.expect_log("DM00011")
    s.write_local_conf(s3_conf(standin, endpoint="ftp://127.0.0.1:1"))
    r = s.configtest()
    out = r.stdout + r.stderr + s.log_text()
    assert r.returncode != 0, out
    assert "endpoint must start with https:// (or http://)" in out
