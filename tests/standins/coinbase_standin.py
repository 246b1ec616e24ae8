"""A stand-in for Coinbase Commerce (the Charges API and its webhooks, as
PROVIDERS.md section 3 and plugins/payment-coinbase/README.md document
them), on a free port of 127.0.0.1. Python 3 standard library only.

What it checks of every API request, answering as Commerce does
({"error": {"type", "message"}} on errors):
  - X-CC-Api-Key: the configured key (401 authorization_error otherwise);
  - X-CC-Version: 2018-03-22 (400 invalid_request otherwise: Commerce
    would fall back to an old version, our plugin must pin it);
POST /charges, in addition:
  - Content-Type: application/json and a JSON object body (400);
  - name (string, 1-100), description (string, at most 200, optional),
    pricing_type fixed_price | no_price, local_price {amount: decimal
    string, currency: three capitals} for fixed_price, metadata (an object
    of strings), redirect_url and cancel_url (http(s) strings, optional);
    anything else: 400 invalid_request naming the field.
  Accepted: 201 {"data": <charge>, "warnings": []}; the charge has id
  (UUID), code (8 characters), hosted_url, pricing.local, timeline
  [{status: NEW, time}], payments [], metadata, expires_at (+60 min).
GET /charges/{code or id}: 200 {"data": <charge>} or 404 not_found.

Test controls (Python methods; the same over HTTP under /_standin/):
  move(code, to, webhook="deliver", type=None)
      to: pending | confirmed | failed | expired | delayed | underpaid |
      overpaid | resolved. Changes the charge's timeline and payments as
      Commerce shows them, then sends the event (charge:pending,
      charge:confirmed, charge:failed, charge:failed, charge:delayed,
      charge:failed, charge:confirmed, charge:resolved; the types sent for
      under- and overpayment are UNCONFIRMED, `type` overrides) according to
      `webhook`: deliver | drop | twice | hold (kept for flush()).
  fake(code, type="charge:confirmed")
      sends a correctly signed webhook whose event data claims the charge
      COMPLETED, without changing the charge: re-reading it shows the truth.
  flush(reverse=True)  delivers the held webhooks, newest first by default.
  redeliver()          delivers again every webhook whose last answer was
                       not 2xx, attempt_number + 1 (Commerce retries).
  fail_next(op, how, count=1)
      op: create | get | any; how: an HTTP status (500, 503, 429, 401),
      "timeout" (answers nothing for `hang_s` seconds, then closes) or
      "garbage" (200/201 with a body that is not a charge).
  requests, deliveries   what arrived and what was sent.
Webhooks: POST <webhook_url>, Content-Type: application/json,
X-CC-Webhook-Signature: lower-case hex HMAC-SHA256(webhook secret, raw
body), body {"attempt_number", "event": {"api_version", "created_at",
"data": <charge>, "id", "resource": "event", "type"}, "id",
"scheduled_for"}.

Run alone: python3 coinbase_standin.py --api-key K --webhook-secret S
--webhook-url URL prints {"url": …} on one line and serves until
interrupted.
"""
import argparse
import copy
import datetime
import hashlib
import hmac
import json
import random
import re
import string
import threading
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_VERSION = "2018-03-22"
AMOUNT = re.compile(r"^[0-9]+(\.[0-9]+)?$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
EVENT_TYPES = {
    "pending": "charge:pending", "confirmed": "charge:confirmed", "failed": "charge:failed",
    "expired": "charge:failed", "delayed": "charge:delayed", "underpaid": "charge:failed",
    "overpaid": "charge:confirmed", "resolved": "charge:resolved",
}


def now_iso(delta_s=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=delta_s)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def signature(secret, body):
    """Commerce's X-CC-Webhook-Signature: hex HMAC-SHA256 of the raw body."""
    if isinstance(secret, str):
        secret = secret.encode()
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def error(status, kind, message):
    return status, {"error": {"type": kind, "message": message}}


def scaled(amount, factor_num, factor_den):
    """amount (a decimal string with 2 decimals) * num / den, 2 decimals."""
    cents = round(float(amount) * 100) * factor_num // factor_den
    return "%d.%02d" % (cents // 100, cents % 100)


class CoinbaseStandin:
    def __init__(self, api_key, webhook_secret, webhook_url=None, hang_s=3.0):
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.hang_s = hang_s
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.reset()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.standin = self
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = None

    def reset(self):
        with self.lock:
            self.charges = {}  # code -> charge
            self.requests = []
            self.deliveries = []
            self.held = []
            self.failed = []
            self.modes = []

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the API --------------------------------------------------------------
    def forced(self, op):
        with self.lock:
            for m in self.modes:
                if m["op"] in (op, "any"):
                    m["count"] -= 1
                    if m["count"] <= 0:
                        self.modes.remove(m)
                    return m["how"]
        return None

    def check_headers(self, headers):
        if headers.get("x-cc-api-key") != self.api_key:
            return error(401, "authorization_error", "No such API key.")
        if headers.get("x-cc-version") != API_VERSION:
            return error(400, "invalid_request",
                         "X-CC-Version must be %s (this stand-in requires it)" % API_VERSION)
        return None

    def record(self, method, path, headers, raw):
        with self.lock:
            self.requests.append({"method": method, "path": path, "headers": dict(headers),
                                  "body": raw.decode("utf-8", "replace")})

    def create_charge(self, headers, raw):
        refused = self.check_headers(headers)
        if refused:
            return refused
        how = self.forced("create")
        if how is not None:
            return how
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return error(400, "invalid_request", "Content-Type must be application/json")
        try:
            body = json.loads(raw)
        except ValueError:
            return error(400, "invalid_request", "The body is not valid JSON")
        if not isinstance(body, dict):
            return error(400, "invalid_request", "The body must be a JSON object")
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            return error(400, "invalid_request", "name is required (1 to 100 characters)")
        desc = body.get("description", "")
        if not isinstance(desc, str) or len(desc) > 200:
            return error(400, "invalid_request", "description must be at most 200 characters")
        ptype = body.get("pricing_type")
        if ptype not in ("fixed_price", "no_price"):
            return error(400, "invalid_request", "pricing_type must be fixed_price or no_price")
        local = body.get("local_price")
        if ptype == "fixed_price":
            if (not isinstance(local, dict) or not isinstance(local.get("amount"), str) or
                    not AMOUNT.match(local["amount"]) or
                    not isinstance(local.get("currency"), str) or
                    not CURRENCY.match(local["currency"])):
                return error(400, "invalid_request",
                             "local_price must be {amount: a decimal string, currency: ISO 4217}")
        meta = body.get("metadata", {})
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            return error(400, "invalid_request", "metadata must map names to strings")
        for f in ("redirect_url", "cancel_url"):
            v = body.get(f)
            if v is not None and (not isinstance(v, str) or
                                  not re.match(r"^https?://[^\s]+$", v)):
                return error(400, "invalid_request", "%s must be a URL" % f)
        code = "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(8))
        charge = {
            "id": str(uuid.uuid4()), "resource": "charge", "code": code,
            "name": name, "description": desc,
            "hosted_url": "%s/pay/%s" % (self.url, code),
            "created_at": now_iso(), "expires_at": now_iso(3600),
            "timeline": [{"status": "NEW", "time": now_iso()}],
            "metadata": meta, "pricing_type": ptype,
            "pricing": {"local": dict(local)} if local else {},
            "payments": [], "addresses": {"ethereum": "0x" + uuid.uuid4().hex[:40]},
            "redirect_url": body.get("redirect_url"), "cancel_url": body.get("cancel_url"),
        }
        with self.lock:
            self.charges[code] = charge
        return 201, {"data": copy.deepcopy(charge), "warnings": []}

    def find(self, ref):
        with self.lock:
            if ref in self.charges:
                return self.charges[ref]
            for c in self.charges.values():
                if c["id"] == ref:
                    return c
        return None

    def get_charge(self, headers, ref):
        refused = self.check_headers(headers)
        if refused:
            return refused
        how = self.forced("get")
        if how is not None:
            return how
        c = self.find(ref)
        if c is None:
            return error(404, "not_found", "Not found")
        with self.lock:
            return 200, {"data": copy.deepcopy(c)}

    def answer_forced(self, how, op):
        """(status, body) for a forced answer, or None for a time-out."""
        if how == "timeout":
            self.stopping.wait(self.hang_s)
            return None
        if how == "garbage":
            return (201 if op == "create" else 200), "<html><body>Bad gateway</body></html>"
        return error(int(how), "internal_server_error" if int(how) >= 500 else "error",
                     "forced by the test")

    # -- moving a charge -------------------------------------------------------
    def _pay(self, c, amount, status):
        cur = c["pricing"]["local"]["currency"]
        c["payments"].append({
            "network": "ethereum", "transaction_id": "0x" + uuid.uuid4().hex,
            "status": status, "detected_at": now_iso(),
            "value": {"local": {"amount": amount, "currency": cur},
                      "crypto": {"amount": "0.0040", "currency": "ETH"}},
            "block": {"height": 100, "hash": "0x" + uuid.uuid4().hex, "confirmations": 12},
        })

    def _status(self, c, status, context=None):
        entry = {"status": status, "time": now_iso()}
        if context:
            entry["context"] = context
        c["timeline"].append(entry)

    def move(self, code, to, webhook="deliver", type=None):
        with self.lock:
            c = self.charges[code]
            price = c["pricing"]["local"]["amount"]
            last = c["timeline"][-1]["status"]
            if to == "pending":
                self._pay(c, price, "PENDING")
                self._status(c, "PENDING")
            elif to == "confirmed":
                if not c["payments"]:
                    self._pay(c, price, "PENDING")
                if last != "PENDING":
                    self._status(c, "PENDING")
                for p in c["payments"]:
                    p["status"] = "CONFIRMED"
                self._status(c, "COMPLETED")
                c["confirmed_at"] = now_iso()
            elif to == "failed":
                self._status(c, "FAILED")
            elif to == "expired":
                self._status(c, "EXPIRED")
            elif to == "delayed":
                if last != "EXPIRED":
                    self._status(c, "EXPIRED")
                self._pay(c, price, "CONFIRMED")
                self._status(c, "UNRESOLVED", "DELAYED")
            elif to in ("underpaid", "overpaid"):
                amount = scaled(price, 19, 20) if to == "underpaid" else scaled(price, 11, 10)
                self._pay(c, amount, "CONFIRMED")
                if last != "PENDING":
                    self._status(c, "PENDING")
                self._status(c, "UNRESOLVED", to.upper())
            elif to == "resolved":
                self._status(c, "RESOLVED")
            else:
                raise ValueError("unknown move %r" % to)
            snapshot = copy.deepcopy(c)
        return self.send(type or EVENT_TYPES[to], snapshot, webhook)

    def fake(self, code, type="charge:confirmed", webhook="deliver"):
        """A signed webhook claiming more than the charge shows."""
        with self.lock:
            claimed = copy.deepcopy(self.charges[code])
        claimed["timeline"].append({"status": "COMPLETED", "time": now_iso()})
        claimed["confirmed_at"] = now_iso()
        return self.send(type, claimed, webhook)

    # -- webhooks ------------------------------------------------------------
    def make_event(self, type, data):
        body = json.dumps({
            "attempt_number": 1,
            "event": {"api_version": API_VERSION, "created_at": now_iso(), "data": data,
                      "id": str(uuid.uuid4()), "resource": "event", "type": type},
            "id": str(uuid.uuid4()), "scheduled_for": now_iso(),
        }).encode()
        return body

    def send(self, type, data, webhook="deliver"):
        body = self.make_event(type, data)
        if webhook == "drop":
            with self.lock:
                self.deliveries.append({"body": body.decode(), "status": None, "dropped": True})
            return []
        if webhook == "hold":
            with self.lock:
                self.held.append(body)
            return []
        times = 2 if webhook == "twice" else 1
        return [self.deliver(body) for _ in range(times)]

    def deliver(self, body):
        sig = signature(self.webhook_secret, body)
        headers = {"Content-Type": "application/json", "X-CC-Webhook-Signature": sig,
                   "User-Agent": "weipay-webhooks"}
        req = urllib.request.Request(self.webhook_url, data=body, headers=headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, answer = r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            status, answer = e.code, e.read().decode("utf-8", "replace")
        record = {"body": body.decode(), "signature": sig, "status": status, "answer": answer}
        with self.lock:
            self.deliveries.append(record)
            if not 200 <= status <= 299:
                self.failed.append(body)
        return record

    def flush(self, reverse=True):
        with self.lock:
            held, self.held = self.held, []
        if reverse:
            held.reverse()
        return [self.deliver(b) for b in held]

    def redeliver(self):
        with self.lock:
            failed, self.failed = self.failed, []
        out = []
        for b in failed:
            d = json.loads(b)
            d["attempt_number"] += 1
            out.append(self.deliver(json.dumps(d).encode()))
        return out

    def fail_next(self, op, how, count=1):
        with self.lock:
            self.modes.append({"op": op, "how": how, "count": count})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def raw_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def api(self, op, result):
        if not isinstance(result, tuple):  # forced: a status, "timeout" or "garbage"
            result = self.server.standin.answer_forced(result, op)
            if result is None:
                self.close_connection = True
                return None
        return self.answer(*result)

    def do_GET(self):
        s = self.server.standin
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.path.startswith("/charges/"):
            s.record("GET", self.path, headers, b"")
            return self.api("get", s.get_charge(headers, self.path[len("/charges/"):]))
        with s.lock:
            if self.path == "/_standin/requests":
                return self.answer(200, s.requests)
            if self.path == "/_standin/deliveries":
                return self.answer(200, s.deliveries)
        self.answer(*error(404, "not_found", "Not found"))

    def do_POST(self):
        s = self.server.standin
        raw = self.raw_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.path == "/charges":
            s.record("POST", self.path, headers, raw)
            return self.api("create", s.create_charge(headers, raw))
        args = json.loads(raw or b"{}")
        if self.path == "/_standin/move":
            return self.answer(200, s.move(**args))
        if self.path == "/_standin/fake":
            return self.answer(200, s.fake(**args))
        if self.path == "/_standin/flush":
            return self.answer(200, s.flush(**args))
        if self.path == "/_standin/redeliver":
            return self.answer(200, s.redeliver())
        if self.path == "/_standin/mode":
            s.fail_next(**args)
            return self.answer(200, {"ok": True})
        if self.path == "/_standin/reset":
            s.reset()
            return self.answer(200, {"ok": True})
        self.answer(*error(404, "not_found", "Not found"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--webhook-secret", required=True)
    ap.add_argument("--webhook-url")
    args = ap.parse_args()
    s = CoinbaseStandin(args.api_key, args.webhook_secret, args.webhook_url)
    print(json.dumps({"url": s.url}), flush=True)
    try:
        s.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
