"""/api/health and the router's answers: 404, 405 with Allow, 413."""
import os
import socket

import requests

from conftest import ROOT, error_of


def test_health_reports_ok_version_and_schema(server):
    r = server.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["version"] == "0.1.0"
    assert isinstance(body["schema"], int) and body["schema"] >= 1
    # the cron daemon's part (test_17_cron tests it in depth)
    assert body["cron"]["enabled"] is True
    assert body["cron"]["status"] in ("ok", "starting")
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_unknown_api_path_is_json_404(server):
    for path in ["/api/nothing", "/api/packages/1/extra", "/api/", "/api/packages/"]:
        r = server.get(path)
        assert r.status_code == 404, path
        assert error_of(r)["code"] == "not_found"


def test_wrong_method_is_405_with_allow(server):
    r = server.request("DELETE", "/api/packages")
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD"
    assert error_of(r)["code"] == "method_not_allowed"
    r = server.request("POST", "/api/health", json={"a": 1})
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD"


def test_body_over_limit_is_413_without_reading_it(server):
    # 1 MiB + 1 announced, only a few bytes sent: the answer must come at
    # once (nothing waits for the rest of the body), as JSON.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /api/packages HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\n"
                  b"Content-Length: 1048577\r\n\r\n{\"a\":")
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"Connection: close" in head
    assert b'"code":"too_large"' in body


def test_body_at_limit_is_not_413(server):
    r = server.request("POST", "/api/packages", data=b"x" * 1024)
    assert r.status_code == 405  # routed normally: the size was fine


def test_error_answers_do_not_hang_on_unread_body(server):
    # A 405 for a request whose body never arrives must not wait for it.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"PUT /api/health HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n")
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 405"), head


def test_static_pages_are_served_at_root(server):
    # The pages are built by `make web` (make test runs it first); alone,
    # after `make all`, say so instead of failing on a 404.
    assert os.path.exists(os.path.join(ROOT, "build", "web", "index.html")), (
        "build/web/ is missing: run `make web` first (`make test` does)")
    r = server.get("/")
    assert r.status_code == 200
    assert "DeepMine" in r.text


def test_access_log_has_latency_and_route(server):
    server.get("/api/packages/2")
    server.stop()  # flushes BufferedLogs
    with open(server.var + "/logs/access.log") as f:
        lines = [l for l in f if "GET /api/packages/2 " in l]
    server.start()
    assert lines, "request not in the access log"
    fields = lines[-1].split('"')
    # ... "GET /api/packages/2 HTTP/1.1" 200 <bytes> <micros> "/api/packages/{id}"
    status, size, micros = fields[2].split()
    assert status == "200"
    assert int(micros) >= 0
    assert fields[3] == "/api/packages/{id}"


def test_health_is_degraded_when_schema_is_not_this_build(new_server):
    s = new_server().start()
    s.expect_log(r"DM00030")
    # another node (or a newer deepminectl) moved the schema on
    s.sql("INSERT INTO schema_migrations VALUES (999, '999_future.sql', 'x', 0)")
    r = s.get("/api/health")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "degraded"
    assert body["schema"] == 999
    assert body["database"] == "unavailable"
    s.sql("DELETE FROM schema_migrations WHERE version = 999")
    assert s.get("/api/health").status_code == 200
