"""A stand-in for Sentry's ingestion endpoint, as PROVIDERS.md §8 documents
it (https://develop.sentry.dev/sdk/foundations/transport/), on a free port
of 127.0.0.1. Python 3 standard library only.

What it checks of POST /api/<project>/envelope/ (Sentry's answers):
  - authentication: the X-Sentry-Auth header "Sentry sentry_version=7,
    sentry_key=<key>, …" (or the same as query parameters, or the
    envelope header "dsn"); sentry_version must be 7 and sentry_key the
    configured public key, else 403 {"detail": …};
  - the project id in the path must be the configured one, else 404;
  - Content-Encoding gzip / deflate bodies are inflated (the SDKs may
    compress);
  - the envelope grammar: a first line of envelope headers (a JSON object),
    then items, each a line of item headers (a JSON object with "type") and
    a payload of "length" bytes (or up to the next newline when no length
    is given), LF only; any violation: 400 {"detail": "invalid envelope: …"};
  - an item of type "event": a JSON object with event_id (32 lower-case hex
    digits, equal to the envelope's when both are there), timestamp (a
    number or an RFC 3339 string), platform; level, when present, one of
    fatal, error, warning, info, debug; 1 MiB at most. Else 400.
Accepted: 200 {"id": "<event_id>"}.

Test controls (not Sentry's):
  POST /_standin/mode   {"status": 429|500|403|413, "count": N,
                         "retry_after": S, "rate_limits": "60:error:key"}
                        answers the next N envelopes so (the headers only
                        when given); {"rate_limits": …, "status": 200}
                        announces limits on a success;
  GET  /_standin/events the accepted envelopes: {"headers", "items":[{"headers",
                        "payload"}], "auth", "user_agent", "content_type"}
  GET  /_standin/requests how many envelopes arrived (accepted or not)
  POST /_standin/reset  forgets everything.
"""
import argparse
import gzip
import json
import re
import threading
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEX32 = re.compile(r"^[0-9a-f]{32}$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
LEVELS = {"fatal", "error", "warning", "info", "debug"}
MAX_EVENT = 1024 * 1024


class EnvelopeError(Exception):
    pass


def parse_auth(value):
    """'Sentry sentry_version=7, sentry_key=abc' -> dict."""
    if not value or not value.startswith("Sentry "):
        return {}
    out = {}
    for part in value[len("Sentry "):].split(","):
        k, _, v = part.strip().partition("=")
        if k:
            out[k] = v
    return out


def parse_envelope(body):
    """Sentry's envelope grammar: Headers { "\\n" Item } [ "\\n" ]."""
    nl = body.find(b"\n")
    head = body if nl < 0 else body[:nl]
    try:
        headers = json.loads(head)
    except ValueError as e:
        raise EnvelopeError("envelope headers are not JSON: %s" % e)
    if not isinstance(headers, dict):
        raise EnvelopeError("envelope headers are not an object")
    items = []
    pos = len(body) if nl < 0 else nl + 1
    while pos < len(body):
        nl = body.find(b"\n", pos)
        line = body[pos:] if nl < 0 else body[pos:nl]
        if line == b"" and nl < 0:
            break
        try:
            ih = json.loads(line)
        except ValueError as e:
            raise EnvelopeError("item headers are not JSON: %s" % e)
        if not isinstance(ih, dict) or not isinstance(ih.get("type"), str):
            raise EnvelopeError("item headers without a type")
        pos = len(body) if nl < 0 else nl + 1
        if "length" in ih:
            n = ih["length"]
            if not isinstance(n, int) or n < 0 or pos + n > len(body):
                raise EnvelopeError("item length %r runs past the envelope" % (n,))
            payload = body[pos:pos + n]
            pos += n
            if pos < len(body):
                if body[pos:pos + 1] != b"\n":
                    raise EnvelopeError("no newline after an item of %d bytes" % n)
                pos += 1
        else:
            nl = body.find(b"\n", pos)
            payload = body[pos:] if nl < 0 else body[pos:nl]
            pos = len(body) if nl < 0 else nl + 1
        items.append({"headers": ih, "payload": payload})
    return headers, items


def check_event(envelope_headers, payload):
    if len(payload) > MAX_EVENT:
        raise EnvelopeError("event over 1 MiB")
    try:
        ev = json.loads(payload)
    except ValueError as e:
        raise EnvelopeError("event is not JSON: %s" % e)
    if not isinstance(ev, dict):
        raise EnvelopeError("event is not an object")
    eid = ev.get("event_id")
    if not isinstance(eid, str) or not HEX32.match(eid):
        raise EnvelopeError("event_id must be 32 lower-case hex digits")
    if "event_id" in envelope_headers and envelope_headers["event_id"].replace("-", "") != eid:
        raise EnvelopeError("event_id differs from the envelope's")
    ts = ev.get("timestamp")
    if not (isinstance(ts, (int, float)) and not isinstance(ts, bool)) and \
            not (isinstance(ts, str) and RFC3339.match(ts)):
        raise EnvelopeError("timestamp must be a number or RFC 3339")
    if not isinstance(ev.get("platform"), str):
        raise EnvelopeError("platform is required")
    if "level" in ev and ev["level"] not in LEVELS:
        raise EnvelopeError("unknown level %r" % ev["level"])
    return ev


class SentryStandin:
    def __init__(self, public_key, project="1"):
        self.public_key = public_key
        self.project = project
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.standin = self
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = None
        self.reset()

    def dsn(self, key=None, path=""):
        return "http://%s@127.0.0.1:%d%s/%s" % (key or self.public_key, self.port, path,
                                               self.project)

    def reset(self):
        with self.lock:
            self.events = []
            self.requests = 0
            self.modes = []

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_mode(self):
        with self.lock:
            if self.modes and self.modes[0]["count"] > 0:
                m = self.modes[0]
                m["count"] -= 1
                if m["count"] == 0:
                    self.modes.pop(0)
                return m
        return None

    def envelope(self, path, query, headers, body):
        with self.lock:
            self.requests += 1
        m = re.match(r"^(/.*)?/api/([^/]+)/envelope/$", path)
        if not m or m.group(2) != self.project:
            return 404, {"detail": "unknown project"}, {}
        enc = (headers.get("Content-Encoding") or "").lower()
        try:
            if enc == "gzip":
                body = gzip.decompress(body)
            elif enc == "deflate":
                body = zlib.decompress(body)
        except Exception:
            return 400, {"detail": "cannot inflate the body"}, {}
        try:
            env_headers, items = parse_envelope(body)
        except EnvelopeError as e:
            return 400, {"detail": "invalid envelope: %s" % e}, {}
        auth = parse_auth(headers.get("X-Sentry-Auth"))
        if not auth:
            q = urllib.parse.parse_qs(query)
            auth = {k: v[0] for k, v in q.items() if k.startswith("sentry_")}
        if not auth and isinstance(env_headers.get("dsn"), str):
            u = urllib.parse.urlsplit(env_headers["dsn"])
            auth = {"sentry_version": "7", "sentry_key": u.username or ""}
        if auth.get("sentry_version") != "7" or auth.get("sentry_key") != self.public_key:
            return 403, {"detail": "invalid api key"}, {}
        event_id = env_headers.get("event_id")
        for it in items:
            if it["headers"]["type"] == "event":
                try:
                    ev = check_event(env_headers, it["payload"])
                except EnvelopeError as e:
                    return 400, {"detail": "invalid event: %s" % e}, {}
                event_id = ev["event_id"]
        mode = self.next_mode()
        extra = {}
        if mode:
            if mode.get("rate_limits"):
                extra["X-Sentry-Rate-Limits"] = mode["rate_limits"]
            if mode.get("retry_after") is not None:
                extra["Retry-After"] = str(mode["retry_after"])
            if mode.get("status", 200) != 200:
                return mode["status"], {"detail": "forced by the test"}, extra
        with self.lock:
            self.events.append({
                "headers": env_headers,
                "items": [{"headers": it["headers"],
                           "payload": it["payload"].decode("utf-8", "replace")}
                          for it in items],
                "auth": auth,
                "user_agent": headers.get("User-Agent"),
                "content_type": headers.get("Content-Type"),
            })
        return 200, {"id": event_id}, extra


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body, extra=None):
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def raw_body(self):
        # The Node SDK streams its envelopes: Transfer-Encoding: chunked.
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()  # the CRLF after each chunk
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        s = self.server.standin
        if self.path == "/_standin/events":
            with s.lock:
                return self.answer(200, list(s.events))
        if self.path == "/_standin/requests":
            with s.lock:
                return self.answer(200, {"requests": s.requests})
        return self.answer(404, {"detail": "not found"})

    def do_POST(self):
        s = self.server.standin
        body = self.raw_body()
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/_standin/reset":
            s.reset()
            return self.answer(200, {})
        if u.path == "/_standin/mode":
            mode = json.loads(body or b"{}")
            mode.setdefault("count", 1)
            with s.lock:
                s.modes.append(mode)
            return self.answer(200, {})
        status, out, extra = s.envelope(u.path, u.query, self.headers, body)
        return self.answer(status, out, extra)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--key", default="publickey")
    ap.add_argument("--project", default="1")
    a = ap.parse_args()
    s = SentryStandin(a.key, a.project)
    print(json.dumps({"url": s.url, "dsn": s.dsn()}), flush=True)
    s.httpd.serve_forever()


if __name__ == "__main__":
    main()
