"""A stand-in for Stripe: the part of its API the payment-stripe plugin uses
(Checkout Sessions, Refunds) and its signed webhooks, as PROVIDERS.md §1
and plugins/payment-stripe/README.md document them, on a free port of
127.0.0.1. Python 3 standard library only.

What it checks of every /v1 request, answering as Stripe does
({"error": {"type", "code"?, "message", "param"?}}):
  - the secret key, as `Authorization: Bearer <key>` (or HTTP Basic with
    the key as user name, which Stripe also takes); none: 401, another key:
    401 "Invalid API Key provided";
  - POST bodies are application/x-www-form-urlencoded with Stripe's bracket
    notation (metadata[order_id]=…, line_items[0][price_data][currency]=…),
    else 400;
  - every POST carries an Idempotency-Key of 1 to 255 characters. Stripe
    does not require the header; this stand-in does, since our plugin must
    send it every time. A key seen before with the same parameters gets the
    first answer again (the same object, header Idempotent-Replayed: true)
    and nothing is done twice; with other parameters: 400 idempotency_error;
  - POST /v1/checkout/sessions: mode=payment, line_items[0] with
    price_data[currency] (lower case), price_data[unit_amount] (a
    non-negative integer; for three-decimal currencies a multiple of 10),
    price_data[product_data][name] and quantity, success_url (http/https),
    expires_at (when given) 30 minutes to 24 hours ahead;
  - GET /v1/checkout/sessions/{id}, GET /v1/checkout/sessions?payment_intent=
    (a list), POST /v1/checkout/sessions/{id}/expire;
  - POST /v1/refunds: payment_intent (or charge) of a paid session, amount
    (optional, at most what is left), metadata[...]; answers the refund and
    then sends charge.refunded (with previous_attributes.amount_refunded).

Webhooks are posted to the configured endpoint with
`Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA-256(whsec_…, "<t>.<body>")>`,
exactly as Stripe signs them.

Test controls (not Stripe's), all POST with a JSON body unless said:
  /_standin/pay/{cs}      {"async": false} pays the session (a payment
                          intent and a charge are made) and sends
                          checkout.session.completed (payment_status "paid",
                          or "unpaid" with async); returns the delivery;
  /_standin/async/{cs}    {"succeeded": true} sends async_payment_succeeded
                          (or _failed);
  /_standin/expire/{cs}   expires the session, sends checkout.session.expired;
  /_standin/dispute       {"payment_intent"} opens a dispute
                          (charge.dispute.created); returns its id;
  /_standin/dispute/{dp}/close {"status": "won"|"lost"};
  /_standin/deliver       {"event": {...}, "t"?, "secret"?, "extra_v1"?}
                          signs and posts one event as given;
  /_standin/delivery      {"mode": "normal"|"drop"|"duplicate"|"hold",
                          "times": 2} how the next webhooks are sent;
  /_standin/release       {"reverse": true} sends the held webhooks;
  /_standin/mode          {"status": 500|…, "timeout": seconds, "garbage":
                          true, "count": N} the next N /v1 requests fail so;
  /_standin/reset         forgets the modes and the request log;
  GET /_standin/requests  every /v1 request as received;
  GET /_standin/deliveries every webhook posted, with the answer;
  GET /_standin/sessions/{cs} the stand-in's session object.
"""
import argparse
import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

THREE_DECIMAL = {"bhd", "jod", "kwd", "omr", "tnd"}
API_VERSION = "2025-01-27.acacia"


def stripe_signature(secret, t, body):
    """Stripe's v1 scheme: hex HMAC-SHA256 keyed with the whole whsec_…
    string over "<t>.<raw body>"."""
    if isinstance(body, str):
        body = body.encode()
    return hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()


def new_id(prefix):
    return prefix + "_test_" + secrets.token_hex(12)


def parse_form(raw):
    """A form body in Stripe's bracket notation as nested dicts (lists stay
    dicts with "0", "1", … keys). ValueError when malformed."""
    out = {}
    for key, value in urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True,
                                             strict_parsing=bool(raw)):
        head, _, rest = key.partition("[")
        parts = [head]
        while rest:
            part, sep, rest = rest.partition("]")
            if not sep:
                raise ValueError("unbalanced brackets in %s" % key)
            parts.append(part)
            if rest.startswith("["):
                rest = rest[1:]
            elif rest:
                raise ValueError("bad key %s" % key)
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError("key %s is both a value and an object" % key)
        if parts[-1] in node:
            raise ValueError("key %s given twice" % key)
        node[parts[-1]] = value
    return out


def error(status, message, type_="invalid_request_error", code=None, param=None):
    err = {"type": type_, "message": message}
    if code:
        err["code"] = code
    if param:
        err["param"] = param
    return status, {"error": err}


class StripeStandin:
    def __init__(self, secret_key, webhook_secret, webhook_url=None):
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.lock = threading.Lock()
        self.sessions = {}
        self.payment_intents = {}
        self.charges = {}
        self.refunds = {}
        self.disputes = {}
        self.by_key = {}
        self.deliveries = []
        self.reset()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.standin = self
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port

    def reset(self):
        with self.lock:
            self.requests = []
            self.modes = []
            self.delivery = {"mode": "normal"}
            self.held = []

    def start(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the API ------------------------------------------------------------
    def api(self, method, path, query, headers, raw):
        """(status, body, extra headers) for one /v1 request."""
        with self.lock:
            self.requests.append({"method": method, "path": path, "query": query,
                                  "headers": dict(headers),
                                  "body": raw.decode("utf-8", "replace")})
        auth = headers.get("authorization", "")
        key = None
        if auth.startswith("Bearer "):
            key = auth[7:]
        elif auth.startswith("Basic "):
            import base64
            try:
                key = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
            except ValueError:
                key = ""
        if not key:
            return error(401, "You did not provide an API key. You need to provide your API "
                              "key in the Authorization header, using Bearer auth.") + ({},)
        if key != self.secret_key:
            return error(401, "Invalid API Key provided: %s" % (key[:8] + "*" * 8)) + ({},)
        with self.lock:
            mode = self.modes[0] if self.modes else None
            if mode:
                mode["count"] = mode.get("count", 1) - 1
                if mode["count"] <= 0:
                    self.modes.pop(0)
        if mode:
            if mode.get("timeout"):
                time.sleep(float(mode["timeout"]))
            if mode.get("garbage"):
                return 200, "<html>not json</html>", {}
            if mode.get("status"):
                return error(int(mode["status"]), "An unknown error occurred", "api_error") + ({},)
        if method == "GET":
            return self.get(path, query) + ({},)
        if method != "POST":
            return error(405, "Unrecognized request URL (%s: %s)." % (method, path)) + ({},)
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return error(400, "Content-Type must be application/x-www-form-urlencoded") + ({},)
        try:
            form = parse_form(raw)
        except ValueError as e:
            return error(400, "Invalid form body: %s" % e) + ({},)
        ikey = headers.get("idempotency-key")
        if ikey is None:
            return error(400, "This stand-in requires an Idempotency-Key header on every "
                              "POST") + ({},)
        if not 1 <= len(ikey) <= 255:
            return error(400, "Idempotency keys can be at most 255 characters long.",
                         "idempotency_error") + ({},)
        digest = hashlib.sha256(method.encode() + path.encode() + b"\n" +
                                json.dumps(form, sort_keys=True).encode()).hexdigest()
        with self.lock:
            seen = self.by_key.get(ikey)
        if seen:
            if seen[0] != digest:
                return error(400, "Keys for idempotent requests can only be used with the same "
                                  "parameters they were first used with. Try using a key other "
                                  "than '%s' if you meant to execute a different request." % ikey,
                             "idempotency_error") + ({},)
            return seen[1], seen[2], {"Idempotent-Replayed": "true"}
        status, body = self.post(path, form, ikey)
        if status < 500:
            with self.lock:
                self.by_key.setdefault(ikey, (digest, status, body))
        return status, body, {}

    def get(self, path, query):
        q = dict(urllib.parse.parse_qsl(query))
        if path == "/v1/checkout/sessions":
            with self.lock:
                found = [s for s in self.sessions.values()
                         if not q.get("payment_intent") or
                         s["payment_intent"] == q["payment_intent"]]
            found = sorted(found, key=lambda s: -s["created"])[:int(q.get("limit", 10))]
            return 200, {"object": "list", "data": found, "has_more": False,
                         "url": "/v1/checkout/sessions"}
        if path.startswith("/v1/checkout/sessions/"):
            with self.lock:
                s = self.sessions.get(path.rsplit("/", 1)[1])
            if not s:
                return error(404, "No such checkout.session: '%s'" % path.rsplit("/", 1)[1],
                             code="resource_missing", param="session")
            return 200, s
        if path.startswith("/v1/refunds/"):
            with self.lock:
                r = self.refunds.get(path.rsplit("/", 1)[1])
            return (200, r) if r else error(404, "No such refund", code="resource_missing")
        return error(404, "Unrecognized request URL (GET: %s)." % path)

    def post(self, path, form, ikey):
        if path == "/v1/checkout/sessions":
            return self.create_session(form)
        if path == "/v1/refunds":
            return self.create_refund(form, ikey)
        if path.startswith("/v1/checkout/sessions/") and path.endswith("/expire"):
            sid = path.split("/")[4]
            with self.lock:
                s = self.sessions.get(sid)
            if not s:
                return error(404, "No such checkout.session: '%s'" % sid, code="resource_missing")
            if s["status"] != "open":
                return error(400, "Only Checkout Sessions with a status of 'open' can be "
                                  "expired.")
            self.expire(sid)
            return 200, s
        return error(404, "Unrecognized request URL (POST: %s)." % path)

    def create_session(self, f):
        now = int(time.time())
        if f.get("mode") != "payment":
            return error(400, "This stand-in takes mode=payment only", param="mode")
        items = f.get("line_items")
        if not isinstance(items, dict) or set(items) != {"0"}:
            return error(400, "Missing required param: line_items.", code="parameter_missing",
                         param="line_items")
        li = items["0"]
        pd = li.get("price_data") if isinstance(li, dict) else None
        if not isinstance(pd, dict):
            return error(400, "line_items[0] needs price_data", param="line_items[0][price_data]")
        cur = pd.get("currency", "")
        if len(cur) != 3 or not cur.isalpha() or cur != cur.lower():
            return error(400, "Invalid currency: %s. Stripe currently supports these currencies: "
                              "usd, eur, jpy, kwd, …" % cur,
                         param="line_items[0][price_data][currency]")
        ua = pd.get("unit_amount", "")
        if not ua.isdigit():
            return error(400, "Invalid integer: %s" % ua,
                         param="line_items[0][price_data][unit_amount]")
        unit = int(ua)
        if cur in THREE_DECIMAL and unit % 10:
            return error(400, "For three-decimal currencies the amount's last digit must be 0",
                         param="line_items[0][price_data][unit_amount]")
        name = (pd.get("product_data") or {}).get("name") if isinstance(
            pd.get("product_data"), dict) else None
        if not name:
            return error(400, "Missing required param: line_items[0][price_data][product_data]"
                              "[name].", code="parameter_missing")
        qty = li.get("quantity", "")
        if not qty.isdigit() or int(qty) < 1:
            return error(400, "Missing required param: line_items[0][quantity].",
                         code="parameter_missing")
        for p in ("success_url", "cancel_url"):
            u = f.get(p)
            if (u is None and p == "success_url") or \
                    (u is not None and not u.startswith(("http://", "https://"))):
                return error(400, "Not a valid URL" if u else "Missing required param: %s." % p,
                             param=p)
        expires = f.get("expires_at")
        if expires is not None:
            if not expires.isdigit() or not now + 1800 <= int(expires) <= now + 86400:
                return error(400, "The `expires_at` timestamp must be between 30 minutes and 24 "
                                  "hours from Checkout Session creation.", param="expires_at")
        else:
            expires = str(now + 86400)
        for p in ("metadata", "payment_intent_data"):
            if p in f and not isinstance(f[p], dict):
                return error(400, "Invalid object", param=p)
        sid = new_id("cs")
        s = {"id": sid, "object": "checkout.session", "mode": "payment",
             "amount_subtotal": unit * int(qty), "amount_total": unit * int(qty),
             "currency": cur, "client_reference_id": f.get("client_reference_id"),
             "customer_email": f.get("customer_email"), "metadata": f.get("metadata", {}),
             "payment_intent": None, "payment_status": "unpaid", "status": "open",
             "success_url": f.get("success_url"), "cancel_url": f.get("cancel_url"),
             "created": now, "expires_at": int(expires), "livemode": False,
             "url": "%s/c/pay/%s" % (self.url, sid),
             "_pi_metadata": (f.get("payment_intent_data") or {}).get("metadata", {})}
        with self.lock:
            self.sessions[sid] = s
        return 200, self.public(s)

    @staticmethod
    def public(obj):
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def create_refund(self, f, ikey):
        pi = f.get("payment_intent")
        ch_id = f.get("charge")
        if not pi and not ch_id:
            return error(400, "One of the following params should be provided for this "
                              "request: payment_intent or charge.", code="parameter_missing")
        with self.lock:
            if pi:
                intent = self.payment_intents.get(pi)
                if not intent:
                    return error(404, "No such payment_intent: '%s'" % pi,
                                 code="resource_missing", param="payment_intent")
                ch_id = intent["latest_charge"]
            ch = self.charges.get(ch_id)
            if not ch:
                return error(404, "No such charge: '%s'" % ch_id, code="resource_missing")
            left = ch["amount"] - ch["amount_refunded"]
            if left == 0:
                return error(400, "Charge %s has already been refunded." % ch_id,
                             code="charge_already_refunded")
            amount = f.get("amount")
            if amount is not None and (not amount.isdigit() or int(amount) < 1):
                return error(400, "Invalid positive integer", param="amount")
            amount = int(amount) if amount is not None else left
            if amount > left:
                return error(400, "Refund amount (%d) is greater than unrefunded amount on "
                                  "charge (%d)" % (amount, left), code="amount_too_large",
                             param="amount")
            rid = new_id("re")
            refund = {"id": rid, "object": "refund", "amount": amount, "charge": ch_id,
                      "currency": ch["currency"], "payment_intent": ch["payment_intent"],
                      "metadata": f.get("metadata", {}), "reason": f.get("reason"),
                      "status": "succeeded", "created": int(time.time())}
            self.refunds[rid] = refund
            before = ch["amount_refunded"]
            ch["amount_refunded"] += amount
            ch["refunded"] = ch["amount_refunded"] == ch["amount"]
            event = self.event("charge.refunded", dict(ch), {
                "amount_refunded": before, "refunded": before == ch["amount"]},
                request_key=ikey)
        self.send_later(event)
        return 200, refund

    # -- what a buyer (or a bank) does -----------------------------------------
    def pay(self, sid, async_=False):
        with self.lock:
            s = self.sessions[sid]
            if s["status"] != "open":
                raise ValueError("session %s is %s" % (sid, s["status"]))
            pi = new_id("pi")
            ch = new_id("ch")
            self.payment_intents[pi] = {
                "id": pi, "object": "payment_intent", "amount": s["amount_total"],
                "currency": s["currency"], "latest_charge": ch,
                "metadata": s["_pi_metadata"],
                "status": "processing" if async_ else "succeeded"}
            # a charge's own metadata: Stripe copies nothing from the
            # session to it, so the plugin must find the order another way
            self.charges[ch] = {
                "id": ch, "object": "charge", "amount": s["amount_total"],
                "amount_refunded": 0, "currency": s["currency"], "payment_intent": pi,
                "metadata": {}, "refunded": False, "paid": True,
                "status": "pending" if async_ else "succeeded", "disputed": False}
            s["payment_intent"] = pi
            s["status"] = "complete"
            s["payment_status"] = "unpaid" if async_ else "paid"
            event = self.event("checkout.session.completed", self.public(s))
        return self.send(event)

    def async_result(self, sid, succeeded):
        with self.lock:
            s = self.sessions[sid]
            s["payment_status"] = "paid" if succeeded else "unpaid"
            self.payment_intents[s["payment_intent"]]["status"] = \
                "succeeded" if succeeded else "requires_payment_method"
            event = self.event("checkout.session.async_payment_%s" %
                               ("succeeded" if succeeded else "failed"), self.public(s))
        return self.send(event)

    def expire(self, sid):
        with self.lock:
            s = self.sessions[sid]
            s["status"] = "expired"
            event = self.event("checkout.session.expired", self.public(s))
        self.send_later(event)
        return event

    def expire_now(self, sid):
        with self.lock:
            s = self.sessions[sid]
            s["status"] = "expired"
            event = self.event("checkout.session.expired", self.public(s))
        return self.send(event)

    def dispute(self, pi):
        with self.lock:
            intent = self.payment_intents[pi]
            ch = self.charges[intent["latest_charge"]]
            ch["disputed"] = True
            dp = {"id": new_id("dp"), "object": "dispute", "amount": ch["amount"],
                  "charge": ch["id"], "currency": ch["currency"], "payment_intent": pi,
                  "reason": "fraudulent", "status": "needs_response", "metadata": {},
                  "is_charge_refundable": False, "created": int(time.time())}
            self.disputes[dp["id"]] = dp
            event = self.event("charge.dispute.created", dict(dp))
        return dp["id"], self.send(event)

    def close_dispute(self, dp_id, status):
        with self.lock:
            dp = self.disputes[dp_id]
            before = dp["status"]
            dp["status"] = status
            event = self.event("charge.dispute.closed", dict(dp), {"status": before})
        return self.send(event)

    # -- webhooks -------------------------------------------------------------
    def event(self, type_, obj, previous=None, request_key=None):
        data = {"object": obj}
        if previous is not None:
            data["previous_attributes"] = previous
        return {"id": new_id("evt"), "object": "event", "api_version": API_VERSION,
                "created": int(time.time()), "data": data, "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": "req_" + secrets.token_hex(7), "idempotency_key": request_key},
                "type": type_}

    def send_later(self, event):
        """An event of an API call: sent just after the answer, as Stripe
        does (held at once when delivery is on hold)."""
        with self.lock:
            if self.delivery["mode"] == "hold":
                self.held.append(event)
                return
        threading.Timer(0.05, self.send, args=(event,)).start()

    def send(self, event):
        """Delivers one event as the delivery mode says; the last answer."""
        with self.lock:
            mode = dict(self.delivery)
            if mode["mode"] == "hold":
                self.held.append(event)
                return {"held": True, "event": event}
        if mode["mode"] == "drop":
            with self.lock:
                self.deliveries.append({"event": event, "dropped": True})
            return {"dropped": True, "event": event}
        times = int(mode.get("times", 2)) if mode["mode"] == "duplicate" else 1
        result = None
        for _ in range(times):
            result = self.deliver(event)
        return result

    def release(self, reverse=False):
        with self.lock:
            held, self.held = self.held, []
            self.delivery = {"mode": "normal"}
        return [self.deliver(e) for e in (reversed(held) if reverse else held)]

    def deliver(self, event, t=None, secret=None, extra_v1=None, raw=None):
        body = raw if raw is not None else json.dumps(event, indent=2).encode()
        t = int(time.time()) if t is None else int(t)
        sig = "t=%d" % t
        for s in (extra_v1 or []):
            sig += ",v1=" + stripe_signature(s, t, body)
        sig += ",v1=" + stripe_signature(secret or self.webhook_secret, t, body)
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                   "Stripe-Signature": sig}
        req = urllib.request.Request(self.webhook_url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, answer = r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            status, answer = e.code, e.read().decode("utf-8", "replace")
        out = {"status": status, "response": answer, "event": event,
               "signature": sig}
        with self.lock:
            self.deliveries.append(out)
        return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body, extra=None):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", "req_" + secrets.token_hex(7))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def raw_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def route(self, method):
        s = self.server.standin
        raw = self.raw_body()
        path, _, query = self.path.partition("?")
        headers = {k.lower(): v for k, v in self.headers.items()}
        if path.startswith("/v1/"):
            return self.answer(*s.api(method, path, query, headers, raw))
        if path.startswith("/c/pay/") and method == "GET":
            page = ("<!DOCTYPE html><title>Stripe stand-in checkout</title>"
                    "<form method=post action=/_standin/pay/%s><button>Pay</button></form>"
                    % path.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            return self.wfile.write(page.encode())
        if method == "GET":
            with s.lock:
                if path == "/_standin/requests":
                    return self.answer(200, s.requests)
                if path == "/_standin/deliveries":
                    return self.answer(200, s.deliveries)
                if path.startswith("/_standin/sessions/"):
                    return self.answer(200, s.sessions.get(path.rsplit("/", 1)[1]))
            return self.answer(*error(404, "Unrecognized request URL (GET: %s)." % path))
        try:
            body = json.loads(raw) if raw and headers.get("content-type", "").startswith(
                "application/json") else {}
        except ValueError:
            body = {}
        parts = path.split("/")
        try:
            if path.startswith("/_standin/pay/"):
                return self.answer(200, s.pay(parts[3], bool(body.get("async"))))
            if path.startswith("/_standin/async/"):
                return self.answer(200, s.async_result(parts[3], bool(body.get("succeeded"))))
            if path.startswith("/_standin/expire/"):
                return self.answer(200, s.expire_now(parts[3]))
            if path == "/_standin/dispute":
                dp, d = s.dispute(body["payment_intent"])
                return self.answer(200, {"id": dp, "delivery": d})
            if path.startswith("/_standin/dispute/") and path.endswith("/close"):
                return self.answer(200, s.close_dispute(parts[3], body["status"]))
            if path == "/_standin/deliver":
                return self.answer(200, s.deliver(body.get("event"), body.get("t"),
                                                  body.get("secret"), body.get("extra_v1"),
                                                  body["raw"].encode() if "raw" in body else None))
            if path == "/_standin/delivery":
                with s.lock:
                    s.delivery = body
                return self.answer(200, {"ok": True})
            if path == "/_standin/release":
                return self.answer(200, s.release(bool(body.get("reverse"))))
            if path == "/_standin/mode":
                with s.lock:
                    s.modes.append(body)
                return self.answer(200, {"ok": True})
            if path == "/_standin/reset":
                s.reset()
                return self.answer(200, {"ok": True})
        except (KeyError, ValueError) as e:
            return self.answer(*error(400, "stand-in control failed: %s" % e))
        return self.answer(*error(404, "Unrecognized request URL (POST: %s)." % path))

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--secret-key", required=True)
    ap.add_argument("--webhook-secret", required=True)
    ap.add_argument("--webhook-url")
    args = ap.parse_args()
    s = StripeStandin(args.secret_key, args.webhook_secret, args.webhook_url)
    print(json.dumps({"url": s.url}), flush=True)
    try:
        s.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
