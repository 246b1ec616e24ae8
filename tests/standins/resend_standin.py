"""A stand-in for Resend (https://resend.com): its email API and its
Svix-signed webhooks, as PROVIDERS.md §7 documents them, on a free port of
127.0.0.1. Python 3 standard library only.

What it checks of POST /emails, answering as Resend does
({"statusCode", "message", "name"} on errors):
  - Authorization: Bearer <the configured key>; none: 401
    missing_api_key, another key: 403 invalid_api_key;
  - Content-Type: application/json and a JSON object body, else 400
    validation_error;
  - from, to (a string or an array of at most 50), subject: 422
    missing_required_field when absent, 422 validation_error when of the
    wrong type; html or text must be present; headers, when present, an
    object of strings;
  - Idempotency-Key of 1 to 256 characters (400 invalid_idempotency_key
    otherwise). Resend does not require the header; this stand-in does,
    since our plugin must send it every time. A key seen before with the
    same body gets the first answer again (same id) and the email is not
    counted twice; with another body: 409 invalid_idempotent_request.
Accepted: 200 {"id": "<uuid>"}.

Test controls (not Resend's):
  POST /_standin/mode     {"status": 429|500|422|…, "count": N,
                           "name": "rate_limit_exceeded", "retry_after": 7}
                          answers the next N authorised POST /emails so;
  GET  /_standin/emails   the accepted emails, in order;
  GET  /_standin/requests every POST /emails as received (headers, body);
  POST /_standin/reset    forgets everything;
  POST /_standin/webhook  {"url", "type", "email_id", "to", "timestamp"?,
                           "secret"?, "extra_signatures"?} posts a Resend
                          event to url, signed as Svix signs, and returns
                          what it sent and what came back.

Run alone: python3 resend_standin.py --api-key re_x --webhook-secret whsec_…
prints {"url": …} on one line and serves until interrupted.
"""
import argparse
import base64
import datetime
import hashlib
import hmac
import json
import secrets
import threading
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MESSAGES = {
    "missing_api_key": (401, "Missing API key in the authorization header. Include the "
                             "following header Authorization: Bearer YOUR_API_KEY in the "
                             "request."),
    "invalid_api_key": (403, "API key is invalid"),
    "validation_error": (400, "We found an error with one or more fields in the request."),
    "invalid_idempotency_key": (400, "The key must be between 1-256 chars."),
    "invalid_idempotent_request": (409, "Same idempotency key used with a different request "
                                        "payload."),
    "missing_required_field": (422, "The request body is missing one or more required "
                                    "fields."),
    "rate_limit_exceeded": (429, "Too many requests. Please limit the number of requests per "
                                 "second. Or contact support to increase rate limit."),
    "daily_quota_exceeded": (429, "You have reached your daily email sending quota."),
    "monthly_quota_exceeded": (429, "You have reached your monthly email sending quota."),
    "internal_server_error": (500, "An unexpected error occurred."),
}


def svix_signature(secret, msg_id, timestamp, body):
    """Svix's v1 signature: base64(HMAC-SHA256(base64-decoded secret after
    "whsec_", "<id>.<timestamp>.<body>"))."""
    if secret.startswith("whsec_"):
        secret = secret[len("whsec_"):]
    key = base64.b64decode(secret)
    if isinstance(body, str):
        body = body.encode()
    signed = b"%s.%s.%s" % (msg_id.encode(), str(timestamp).encode(), body)
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def error_body(name, message=None, status=None):
    default_status, default_message = MESSAGES.get(name, (400, "error"))
    return status or default_status, {"statusCode": status or default_status,
                                      "message": message or default_message, "name": name}


class ResendStandin:
    def __init__(self, api_key, webhook_secret=None):
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.lock = threading.Lock()
        self.reset()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.standin = self
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = None

    def reset(self):
        with self.lock:
            self.emails = []
            self.requests = []
            self.by_key = {}
            self.modes = []

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the API ------------------------------------------------------------
    def send_email(self, headers, raw):
        """(status, body dict, extra headers) for one POST /emails."""
        with self.lock:
            self.requests.append({"headers": dict(headers), "body": raw.decode("utf-8", "replace")})
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:]:
            return error_body("missing_api_key") + ({},)
        if auth[7:] != self.api_key:
            return error_body("invalid_api_key") + ({},)
        with self.lock:
            mode = self.modes[0] if self.modes else None
            if mode:
                mode["count"] -= 1
                if mode["count"] <= 0:
                    self.modes.pop(0)
        if mode:
            return self.forced(mode)
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return error_body("validation_error", "Content-Type must be application/json") + ({},)
        try:
            body = json.loads(raw)
        except ValueError:
            return error_body("validation_error", "The body is not valid JSON") + ({},)
        if not isinstance(body, dict):
            return error_body("validation_error", "The body must be a JSON object") + ({},)
        for field in ("from", "to", "subject"):
            if field not in body:
                return error_body("missing_required_field", "Missing `%s` field." % field) + ({},)
        to = body["to"]
        if isinstance(to, str):
            to = [to]
        if (not isinstance(body["from"], str) or not isinstance(body["subject"], str) or
                not isinstance(to, list) or not to or len(to) > 50 or
                not all(isinstance(t, str) and "@" in t for t in to)):
            return error_body("validation_error", "Invalid `from`, `to` or `subject`.",
                              422) + ({},)
        if not isinstance(body.get("html", body.get("text")), str):
            return error_body("validation_error", "Either `html` or `text` is required.",
                              422) + ({},)
        hdrs = body.get("headers", {})
        if not isinstance(hdrs, dict) or not all(isinstance(v, str) for v in hdrs.values()):
            return error_body("validation_error", "`headers` must map names to strings.",
                              422) + ({},)
        key = headers.get("idempotency-key")
        if key is None:
            return error_body("validation_error",
                              "This stand-in requires an Idempotency-Key header") + ({},)
        if not 1 <= len(key) <= 256:
            return error_body("invalid_idempotency_key") + ({},)
        digest = hashlib.sha256(raw).hexdigest()
        with self.lock:
            seen = self.by_key.get(key)
            if seen:
                if seen[0] != digest:
                    return error_body("invalid_idempotent_request") + ({},)
                return 200, seen[1], {}
            answer = {"id": str(uuid.uuid4())}
            self.by_key[key] = (digest, answer)
            self.emails.append({"id": answer["id"], "idempotency_key": key, "body": body})
        return 200, answer, {}

    def forced(self, mode):
        status = int(mode.get("status", 500))
        name = mode.get("name") or {429: "rate_limit_exceeded", 500: "internal_server_error",
                                    422: "validation_error"}.get(status, "application_error")
        code, body = error_body(name, mode.get("message"), status)
        extra = {}
        if status == 429:
            extra = {"ratelimit-limit": "2", "ratelimit-remaining": "0",
                     "ratelimit-reset": str(mode.get("retry_after", 1))}
            if mode.get("retry_after") is not None:
                extra["retry-after"] = str(mode["retry_after"])
        return code, body, extra

    # -- webhooks -----------------------------------------------------------
    def post_webhook(self, spec):
        secret = spec.get("secret") or self.webhook_secret
        now = datetime.datetime.now(datetime.timezone.utc)
        timestamp = int(spec.get("timestamp") or now.timestamp())
        event = {
            "type": spec["type"],
            "created_at": now.isoformat().replace("+00:00", "Z"),
            "data": {
                "created_at": now.isoformat().replace("+00:00", "Z"),
                "email_id": spec.get("email_id", str(uuid.uuid4())),
                "from": spec.get("from", "DeepMine <noreply@deepmine.example>"),
                "to": [spec.get("to", "zoe@example.com")],
                "subject": spec.get("subject", "Welcome"),
            },
        }
        body = json.dumps(event).encode()
        msg_id = spec.get("msg_id") or "msg_" + secrets.token_hex(12)
        sigs = ["v1," + svix_signature(secret, msg_id, timestamp, body)]
        sigs = spec.get("extra_signatures", []) + sigs
        headers = {"content-type": "application/json", "svix-id": msg_id,
                   "svix-timestamp": str(timestamp), "svix-signature": " ".join(sigs)}
        req = urllib.request.Request(spec["url"], data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, answer = r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            status, answer = e.code, e.read().decode("utf-8", "replace")
        return {"status": status, "response": answer,
                "sent": {"headers": headers, "body": body.decode()}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body, extra=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def raw_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        s = self.server.standin
        with s.lock:
            if self.path == "/_standin/emails":
                return self.answer(200, s.emails)
            if self.path == "/_standin/requests":
                return self.answer(200, s.requests)
        self.answer(*error_body("not_found", "The requested endpoint does not exist.", 404))

    def do_POST(self):
        s = self.server.standin
        raw = self.raw_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.path == "/emails":
            return self.answer(*s.send_email(headers, raw))
        if self.path == "/_standin/mode":
            with s.lock:
                s.modes.append(json.loads(raw))
            return self.answer(200, {"ok": True})
        if self.path == "/_standin/reset":
            s.reset()
            return self.answer(200, {"ok": True})
        if self.path == "/_standin/webhook":
            return self.answer(200, s.post_webhook(json.loads(raw)))
        self.answer(*error_body("not_found", "The requested endpoint does not exist.", 404))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--webhook-secret")
    args = ap.parse_args()
    s = ResendStandin(args.api_key, args.webhook_secret)
    print(json.dumps({"url": s.url}), flush=True)
    try:
        s.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
