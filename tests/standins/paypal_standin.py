"""A stand-in for PayPal's REST API (OAuth2, Orders v2, Payments v2,
Webhooks v1) as /work/shared/PROVIDERS.md §2 documents it, on a free port of
127.0.0.1. Python 3 standard library only.

What it checks and answers, as PayPal does:
  POST /v1/oauth2/token
      HTTP Basic client_id:secret (else 401 invalid_client), Content-Type
      application/x-www-form-urlencoded with grant_type=client_credentials
      (else 400 unsupported_grant_type); answers {scope, access_token,
      token_type: "Bearer", app_id, expires_in, nonce}.
  Every other API call needs "Authorization: Bearer <a live token>" (else
  401 invalid_token) and, with a body, Content-Type application/json.
  POST /v2/checkout/orders
      intent CAPTURE|AUTHORIZE, 1..10 purchase_units, amount {currency_code,
      value} with value a decimal string in the currency's decimals (JPY,
      HUF, TWD none: 422 DECIMAL_PRECISION), custom_id <= 127;
      payment_source.paypal.experience_context.return_url / cancel_url (this
      stand-in requires them, as our plugin must send them). PayPal-Request-Id
      (required here: the plugin always sends it): the same id again answers
      the first answer. 201 with status PAYER_ACTION_REQUIRED and a
      "payer-action" link to this stand-in's /checkoutnow?token=<id>.
  GET  /v2/checkout/orders/{id}            the order (404 RESOURCE_NOT_FOUND).
  POST /v2/checkout/orders/{id}/capture
      PayPal-Request-Id: the same id answers the first capture again; an
      order not approved is 422 ORDER_NOT_APPROVED, one captured already
      422 ORDER_ALREADY_CAPTURED. Queues PAYMENT.CAPTURE.COMPLETED.
  GET  /v2/payments/captures/{id}          the capture, with custom_id and
                                           supplementary_data.related_ids.
  POST /v2/payments/captures/{id}/refund   {} (the rest) or {amount}; more
      than is left: 422 REFUND_AMOUNT_EXCEEDED; PayPal-Request-Id as above.
      Queues PAYMENT.CAPTURE.REFUNDED (a refund resource, "up" link to the
      capture).
  POST /v1/notifications/verify-webhook-signature
      {auth_algo, cert_url, transmission_id, transmission_sig,
      transmission_time, webhook_id, webhook_event}: SUCCESS only for an
      event this stand-in really sent, with the very headers it sent, for
      the webhook id it was configured with, and an unchanged event;
      FAILURE otherwise; 400 VALIDATION_ERROR when a field is missing.

The buyer: GET /checkoutnow?token=<id> is the approval page; POST
/checkoutnow/approve?token=<id> approves the order (queues
CHECKOUT.ORDER.APPROVED) and redirects (302) to its return_url with
token=<id>&PayerID=<payer>.

Webhooks are queued in an outbox, not sent on their own: the test sends
them with deliver() (in order, reversed, twice, or not at all), and can send
any event with its own transmission time, webhook id, signature or body.
Signatures: PAYPAL-TRANSMISSION-SIG is base64 of an HMAC this stand-in keeps
to itself over "<transmission id>|<time>|<webhook id>|<crc32 of the body>"
(PayPal signs that string with RSA; only the postback checks it here).

Test controls (Python methods; not PayPal's): fail(path_prefix, status,
count) answers the next calls under a path with that status (0: hang past
the client's timeout), revoke_tokens(), approve(order_id), open_dispute(),
resolve_dispute(), outbox(), take_outbox(), deliver(), send_event(),
requests (every request as received), token_requests.
"""
import base64
import copy
import datetime
import hashlib
import hmac
import json
import random
import secrets
import string
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DECIMALS = {"HUF": 0, "JPY": 0, "TWD": 0}
CURRENCIES = ("AUD BRL CAD CNY CZK DKK EUR HKD HUF ILS JPY MYR MXN TWD NZD NOK PHP PLN GBP "
              "SGD SEK CHF THB USD").split()


def paypal_id(n=17):
    return "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(n))


def now_rfc3339(t=None):
    t = time.time() if t is None else t
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def to_minor(value, currency):
    """A decimal string as an integer of minor units, or None when it is not
    one in this currency's decimals."""
    d = DECIMALS.get(currency, 2)
    if not isinstance(value, str) or not value or value.startswith(("+", ".")):
        return None
    whole, _, frac = value.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or len(frac) > d or \
            (value.endswith(".")):
        return None
    return int(whole) * 10 ** d + (int(frac.ljust(d, "0")) if d else 0)


def from_minor(minor, currency):
    d = DECIMALS.get(currency, 2)
    if d == 0:
        return str(minor)
    return "%d.%0*d" % (minor // 10 ** d, d, minor % 10 ** d)


def error(status, name, message, issue=None, description=None):
    body = {"name": name, "message": message, "debug_id": secrets.token_hex(6)}
    if issue:
        body["details"] = [{"issue": issue, "description": description or issue}]
    return status, body


class PayPalStandin:
    def __init__(self, client_id, client_secret, webhook_id, token_ttl=32400):
        self.client_id = client_id
        self.client_secret = client_secret
        self.webhook_id = webhook_id
        self.token_ttl = token_ttl
        self.sig_key = secrets.token_bytes(32)
        self.webhook_url = None
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.standin = self
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.reset()

    def reset(self):
        with self.lock:
            self.tokens = {}
            self.token_requests = 0
            self.orders = {}
            self.captures = {}
            self.refunds = {}
            self.by_request_id = {}
            self.sent = {}
            self._outbox = []
            self.requests = []
            self.failures = []
            self.capture_status = "COMPLETED"

    def start(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- test controls -------------------------------------------------------
    def fail(self, path_prefix, status=500, count=1):
        """The next `count` authorised calls under path_prefix answer
        `status` (0: no answer for 30 s, a timeout for the client)."""
        with self.lock:
            self.failures.append({"prefix": path_prefix, "status": status, "count": count})

    def revoke_tokens(self):
        with self.lock:
            self.tokens.clear()

    def outbox(self):
        with self.lock:
            return list(self._outbox)

    def take_outbox(self):
        """The queued events, removed (a dropped delivery when not sent)."""
        with self.lock:
            out, self._outbox = self._outbox, []
            return out

    def deliver(self, order="fifo", times=1):
        """Sends every queued event (reversed with order="lifo"), each
        `times` times; the (status, body) answers."""
        events = self.take_outbox()
        if order == "lifo":
            events.reverse()
        return [self.send_event(e) for e in events for _ in range(times)]

    def approve(self, order_id):
        """The buyer approves on PayPal: the URL PayPal sends them back to."""
        with self.lock:
            o = self.orders[order_id]
            if o["status"] not in ("CREATED", "PAYER_ACTION_REQUIRED"):
                raise AssertionError("order %s is %s" % (order_id, o["status"]))
            o["status"] = "APPROVED"
            o["payer"] = {"payer_id": paypal_id(13), "email_address": "buyer@example.com"}
            self._queue("CHECKOUT.ORDER.APPROVED", "checkout-order", self._order_view(o),
                        "An order has been approved by buyer")
            ret = o["return_url"]
        sep = "&" if "?" in ret else "?"
        return ret + sep + urllib.parse.urlencode({"token": order_id,
                                                    "PayerID": o["payer"]["payer_id"]})

    def open_dispute(self, capture_id, value=None):
        with self.lock:
            cap = self.captures[capture_id]
            did = "PP-D-%d" % random.randint(10000, 99999)
            d = {"dispute_id": did, "create_time": now_rfc3339(), "update_time": now_rfc3339(),
                 "disputed_transactions": [{"seller_transaction_id": capture_id,
                                            "seller": {"merchant_id": "STANDINMERCHANT"},
                                            "seller_protection_eligible": True}],
                 "reason": "MERCHANDISE_OR_SERVICE_NOT_RECEIVED", "status": "OPEN",
                 "dispute_amount": {"currency_code": cap["amount"]["currency_code"],
                                    "value": value or cap["amount"]["value"]},
                 "dispute_life_cycle_stage": "CHARGEBACK",
                 "links": [{"href": self.url + "/v1/customer/disputes/" + did, "rel": "self",
                            "method": "GET"}]}
            self.disputes = getattr(self, "disputes", {})
            self.disputes[did] = d
            self._queue("CUSTOMER.DISPUTE.CREATED", "dispute", d,
                        "A new dispute opened with Case # " + did)
            return did

    def resolve_dispute(self, dispute_id, outcome_code):
        with self.lock:
            d = self.disputes[dispute_id]
            d["status"] = "RESOLVED"
            d["dispute_outcome"] = {"outcome_code": outcome_code}
            if outcome_code in ("RESOLVED_BUYER_FAVOUR", "ACCEPTED"):
                d["dispute_outcome"]["amount_refunded"] = dict(d["dispute_amount"])
            self._queue("CUSTOMER.DISPUTE.RESOLVED", "dispute", d,
                        "A dispute was resolved with case # " + dispute_id)

    def event(self, event_type, resource_type, resource, summary=""):
        """An event as PayPal builds one (not queued)."""
        eid = "WH-%s-%s" % (paypal_id(17), paypal_id(17))
        return {"id": eid, "event_version": "1.0", "create_time": now_rfc3339(),
                "resource_type": resource_type, "resource_version": "2.0",
                "event_type": event_type, "summary": summary,
                "resource": copy.deepcopy(resource),
                "links": [{"href": self.url + "/v1/notifications/webhooks-events/" + eid,
                           "rel": "self", "method": "GET"},
                          {"href": self.url + "/v1/notifications/webhooks-events/" + eid +
                           "/resend", "rel": "resend", "method": "POST"}]}

    def _queue(self, event_type, resource_type, resource, summary):
        self._outbox.append(self.event(event_type, resource_type, resource, summary))

    def signature(self, transmission_id, transmission_time, webhook_id, body):
        signed = "%s|%s|%s|%d" % (transmission_id, transmission_time, webhook_id,
                                  zlib.crc32(body) & 0xffffffff)
        return base64.b64encode(hmac.new(self.sig_key, signed.encode(),
                                         hashlib.sha256).digest()).decode()

    def signed(self, event, transmission_time=None, webhook_id=None):
        """(body bytes, headers) of one transmission of `event`, recorded as
        sent (so the postback answers SUCCESS for exactly these)."""
        body = json.dumps(event, separators=(",", ":")).encode() if isinstance(event, dict) \
            else event
        tid = str(uuid.uuid1())
        when = transmission_time or now_rfc3339()
        whid = webhook_id or self.webhook_id
        cert = self.url + "/v1/notifications/certs/CERT-360caa42-fca2a594-standin"
        sig = self.signature(tid, when, whid, body)
        with self.lock:
            self.sent[tid] = {"transmission_time": when, "transmission_sig": sig,
                              "cert_url": cert, "auth_algo": "SHA256withRSA",
                              "body": body}
        headers = {"Content-Type": "application/json", "User-Agent": "PayPal/AUHD-214.0-58843520",
                   "PAYPAL-TRANSMISSION-ID": tid, "PAYPAL-TRANSMISSION-TIME": when,
                   "PAYPAL-TRANSMISSION-SIG": sig, "PAYPAL-CERT-URL": cert,
                   "PAYPAL-AUTH-ALGO": "SHA256withRSA"}
        return body, headers

    def send_event(self, event, transmission_time=None, webhook_id=None, body=None,
                   headers=None, url=None):
        """Posts one transmission of `event` to the webhook URL; `body` and
        `headers` replace what was signed (a tampered or forged delivery)."""
        signed_body, signed_headers = self.signed(event, transmission_time, webhook_id)
        h = dict(signed_headers)
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        req = urllib.request.Request(url or self.webhook_url, data=body or signed_body,
                                     headers=h, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    # -- views ---------------------------------------------------------------
    def _order_view(self, o):
        v = {"id": o["id"], "intent": o["intent"], "status": o["status"],
             "create_time": o["create_time"],
             "purchase_units": copy.deepcopy(o["purchase_units"]),
             "links": [{"href": self.url + "/v2/checkout/orders/" + o["id"], "rel": "self",
                        "method": "GET"}]}
        if o["status"] in ("CREATED", "PAYER_ACTION_REQUIRED"):
            v["links"].append({"href": self.url + "/checkoutnow?token=" + o["id"],
                               "rel": "payer-action", "method": "GET"})
        if o["status"] == "APPROVED":
            v["links"].append({"href": self.url + "/v2/checkout/orders/%s/capture" % o["id"],
                               "rel": "capture", "method": "POST"})
        if o.get("payer"):
            v["payer"] = dict(o["payer"])
            v["payment_source"] = {"paypal": {"email_address": o["payer"]["email_address"],
                                              "account_id": o["payer"]["payer_id"]}}
        if o.get("capture_id"):
            v["purchase_units"][0]["payments"] = {
                "captures": [self._capture_view(self.captures[o["capture_id"]])]}
        return v

    def _capture_view(self, cap):
        v = {k: copy.deepcopy(cap[k]) for k in ("id", "status", "amount", "final_capture",
                                               "create_time", "update_time")}
        if cap.get("custom_id") is not None:
            v["custom_id"] = cap["custom_id"]
        v["supplementary_data"] = {"related_ids": {"order_id": cap["order_id"]}}
        v["seller_protection"] = {"status": "ELIGIBLE"}
        v["links"] = [
            {"href": self.url + "/v2/payments/captures/" + cap["id"], "rel": "self",
             "method": "GET"},
            {"href": self.url + "/v2/payments/captures/%s/refund" % cap["id"], "rel": "refund",
             "method": "POST"},
            {"href": self.url + "/v2/checkout/orders/" + cap["order_id"], "rel": "up",
             "method": "GET"}]
        return v

    # -- the API ---------------------------------------------------------------
    def token(self, headers, raw):
        auth = headers.get("authorization", "")
        expected = base64.b64encode(("%s:%s" % (self.client_id, self.client_secret))
                                    .encode()).decode()
        with self.lock:
            self.token_requests += 1
        if auth != "Basic " + expected:
            return 401, {"error": "invalid_client",
                         "error_description": "Client Authentication failed"}
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        form = urllib.parse.parse_qs(raw.decode("utf-8", "replace"))
        if ctype != "application/x-www-form-urlencoded" or \
                form.get("grant_type") != ["client_credentials"]:
            return 400, {"error": "unsupported_grant_type",
                         "error_description": "Grant Type is NULL"}
        tok = "A21AA" + secrets.token_urlsafe(60)
        with self.lock:
            self.tokens[tok] = time.time() + self.token_ttl
        return 200, {"scope": "https://uri.paypal.com/services/payments/payment",
                     "access_token": tok, "token_type": "Bearer",
                     "app_id": "APP-80W284485P519543T", "expires_in": self.token_ttl,
                     "nonce": now_rfc3339() + secrets.token_hex(8)}

    def authorised(self, headers):
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return False
        with self.lock:
            exp = self.tokens.get(auth[7:])
        return exp is not None and exp > time.time()

    def forced(self, path):
        with self.lock:
            for f in self.failures:
                if path.startswith(f["prefix"]):
                    f["count"] -= 1
                    if f["count"] <= 0:
                        self.failures.remove(f)
                    return f["status"]
        return None

    def idempotent(self, kind, headers, required, compute):
        """Runs compute() once per PayPal-Request-Id (per kind)."""
        rid = headers.get("paypal-request-id")
        if rid is None:
            if required:
                return error(400, "INVALID_REQUEST", "Request is not well-formed.",
                             "MISSING_REQUIRED_HEADER",
                             "This stand-in requires a PayPal-Request-Id header.")
            return compute()
        if not 1 <= len(rid) <= 108:
            return error(400, "INVALID_REQUEST", "Request is not well-formed.",
                         "INVALID_PARAMETER_VALUE", "PayPal-Request-Id is 1 to 108 characters.")
        key = (kind, rid)
        with self.lock:
            if key in self.by_request_id:
                return copy.deepcopy(self.by_request_id[key])
        answer = compute()
        with self.lock:
            self.by_request_id.setdefault(key, copy.deepcopy(answer))
            return copy.deepcopy(self.by_request_id[key])

    def create_order(self, body):
        if not isinstance(body, dict) or body.get("intent") not in ("CAPTURE", "AUTHORIZE"):
            return error(400, "INVALID_REQUEST", "Request is not well-formed.",
                         "MISSING_REQUIRED_PARAMETER", "intent")
        units = body.get("purchase_units")
        if not isinstance(units, list) or not 1 <= len(units) <= 10:
            return error(400, "INVALID_REQUEST", "Request is not well-formed.",
                         "MISSING_REQUIRED_PARAMETER", "purchase_units")
        for u in units:
            amount = u.get("amount") if isinstance(u, dict) else None
            if not isinstance(amount, dict) or "currency_code" not in amount or \
                    "value" not in amount:
                return error(400, "INVALID_REQUEST", "Request is not well-formed.",
                             "MISSING_REQUIRED_PARAMETER", "amount")
            if amount["currency_code"] not in CURRENCIES:
                return error(422, "UNPROCESSABLE_ENTITY", "The requested action could not be "
                             "performed.", "CURRENCY_NOT_SUPPORTED")
            if to_minor(amount["value"], amount["currency_code"]) is None:
                return error(422, "UNPROCESSABLE_ENTITY", "The requested action could not be "
                             "performed.", "DECIMAL_PRECISION")
            if len(str(u.get("custom_id", ""))) > 127:
                return error(400, "INVALID_REQUEST", "Request is not well-formed.",
                             "INVALID_STRING_LENGTH", "custom_id")
        ctx = body.get("payment_source", {}).get("paypal", {}).get("experience_context", {})
        if not ctx.get("return_url") or not ctx.get("cancel_url"):
            return error(400, "INVALID_REQUEST", "Request is not well-formed.",
                         "MISSING_REQUIRED_PARAMETER", "experience_context.return_url")
        o = {"id": paypal_id(), "intent": body["intent"], "status": "PAYER_ACTION_REQUIRED",
             "create_time": now_rfc3339(), "purchase_units": copy.deepcopy(units),
             "return_url": ctx["return_url"], "cancel_url": ctx["cancel_url"], "body": body}
        for u in o["purchase_units"]:
            u.setdefault("reference_id", "default")
            u["payee"] = {"merchant_id": "STANDINMERCHANT", "email_address":
                          "merchant@example.com"}
        with self.lock:
            self.orders[o["id"]] = o
            return 201, self._order_view(o)

    def get_order(self, oid):
        with self.lock:
            o = self.orders.get(oid)
            if not o:
                return error(404, "RESOURCE_NOT_FOUND", "The specified resource does not "
                             "exist.", "INVALID_RESOURCE_ID")
            return 200, self._order_view(o)

    def capture(self, oid):
        with self.lock:
            o = self.orders.get(oid)
            if not o:
                return error(404, "RESOURCE_NOT_FOUND", "The specified resource does not "
                             "exist.", "INVALID_RESOURCE_ID")
            if o["status"] == "COMPLETED":
                return error(422, "UNPROCESSABLE_ENTITY", "The requested action could not be "
                             "performed, semantically incorrect, or failed business "
                             "validation.", "ORDER_ALREADY_CAPTURED")
            if o["status"] != "APPROVED":
                return error(422, "UNPROCESSABLE_ENTITY", "The requested action could not be "
                             "performed, semantically incorrect, or failed business "
                             "validation.", "ORDER_NOT_APPROVED")
            unit = o["purchase_units"][0]
            cap = {"id": paypal_id(), "status": self.capture_status,
                   "amount": dict(unit["amount"]), "final_capture": True,
                   "custom_id": unit.get("custom_id"), "order_id": oid,
                   "create_time": now_rfc3339(), "update_time": now_rfc3339(),
                   "refunded_minor": 0}
            self.captures[cap["id"]] = cap
            o["capture_id"] = cap["id"]
            o["status"] = "COMPLETED"
            if cap["status"] == "COMPLETED":
                self._queue("PAYMENT.CAPTURE.COMPLETED", "capture", self._capture_view(cap),
                            "Payment completed for %s %s" % (cap["amount"]["value"],
                                                             cap["amount"]["currency_code"]))
            return 201, self._order_view(o)

    def get_capture(self, cid):
        with self.lock:
            cap = self.captures.get(cid)
            if not cap:
                return error(404, "RESOURCE_NOT_FOUND", "The specified resource does not "
                             "exist.", "INVALID_RESOURCE_ID")
            return 200, self._capture_view(cap)

    def refund(self, cid, body):
        with self.lock:
            cap = self.captures.get(cid)
            if not cap:
                return error(404, "RESOURCE_NOT_FOUND", "The specified resource does not "
                             "exist.", "INVALID_RESOURCE_ID")
            cur = cap["amount"]["currency_code"]
            total = to_minor(cap["amount"]["value"], cur)
            left = total - cap["refunded_minor"]
            if left <= 0:
                return error(422, "UNPROCESSABLE_ENTITY", "The requested action could not be "
                             "performed.", "CAPTURE_FULLY_REFUNDED")
            amount = body.get("amount") if isinstance(body, dict) else None
            if amount is None:
                minor = left
            else:
                if not isinstance(amount, dict) or amount.get("currency_code") != cur:
                    return error(422, "UNPROCESSABLE_ENTITY", "The requested action could not "
                                 "be performed.", "REFUND_CURRENCY_MISMATCH")
                minor = to_minor(amount.get("value"), cur)
                if minor is None or minor <= 0:
                    return error(422, "UNPROCESSABLE_ENTITY", "The requested action could not "
                                 "be performed.", "DECIMAL_PRECISION")
                if minor > left:
                    return error(422, "UNPROCESSABLE_ENTITY", "The requested action could not "
                                 "be performed.", "REFUND_AMOUNT_EXCEEDED")
            cap["refunded_minor"] += minor
            cap["status"] = "REFUNDED" if cap["refunded_minor"] == total else \
                "PARTIALLY_REFUNDED"
            r = {"id": paypal_id(), "status": "COMPLETED",
                 "amount": {"currency_code": cur, "value": from_minor(minor, cur)},
                 "create_time": now_rfc3339(), "update_time": now_rfc3339(),
                 "links": [{"href": self.url + "/v2/payments/refunds/%s" % "R", "rel": "self",
                            "method": "GET"},
                           {"href": self.url + "/v2/payments/captures/" + cid, "rel": "up",
                            "method": "GET"}]}
            r["links"][0]["href"] = self.url + "/v2/payments/refunds/" + r["id"]
            self.refunds[r["id"]] = r
            self._queue("PAYMENT.CAPTURE.REFUNDED", "refund", r,
                        "A %s %s capture payment was refunded" % (r["amount"]["value"], cur))
            return 201, {"id": r["id"], "status": "COMPLETED", "links": r["links"]}

    def verify(self, body):
        need = ("auth_algo", "cert_url", "transmission_id", "transmission_sig",
                "transmission_time", "webhook_id", "webhook_event")
        if not isinstance(body, dict) or any(k not in body for k in need):
            return error(400, "VALIDATION_ERROR", "Invalid request - see details",
                         "MISSING_REQUIRED_FIELD")
        with self.lock:
            sent = self.sent.get(body["transmission_id"])
        ok = sent is not None
        if ok:
            ok = all(body[k] == sent[k] for k in ("auth_algo", "cert_url", "transmission_time",
                                                   "transmission_sig"))
            ok = ok and body["webhook_event"] == json.loads(sent["body"])
            expected = self.signature(body["transmission_id"], body["transmission_time"],
                                      body["webhook_id"], sent["body"])
            ok = ok and hmac.compare_digest(expected, body["transmission_sig"])
        return 200, {"verification_status": "SUCCESS" if ok else "FAILURE"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body, extra=None, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Paypal-Debug-Id", secrets.token_hex(6))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self, method):
        s = self.server.standin
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        url = urllib.parse.urlsplit(self.path)
        path, query = url.path, urllib.parse.parse_qs(url.query)
        with s.lock:
            s.requests.append({"method": method, "path": self.path, "headers": headers,
                               "body": raw.decode("utf-8", "replace")})
        if path == "/v1/oauth2/token" and method == "POST":
            return self.answer(*s.token(headers, raw))
        if path == "/checkoutnow" and method == "GET":
            oid = (query.get("token") or [""])[0]
            page = ("<!DOCTYPE html><title>PayPal</title><h1>Pay with PayPal</h1>"
                    "<form method=post action='/checkoutnow/approve?token=%s'>"
                    "<button>Pay Now</button></form>" % urllib.parse.quote(oid))
            return self.answer(200, page.encode(), ctype="text/html; charset=utf-8")
        if path == "/checkoutnow/approve" and method == "POST":
            oid = (query.get("token") or [""])[0]
            if oid not in s.orders:
                return self.answer(404, b"no such order", ctype="text/plain")
            return self.answer(302, b"", {"Location": s.approve(oid)}, ctype="text/plain")
        if not s.authorised(headers):
            return self.answer(401, {"error": "invalid_token",
                                     "error_description": "Token signature verification "
                                                          "failed"})
        forced = s.forced(path)
        if forced == 0:
            time.sleep(30)
            return
        if forced:
            return self.answer(*error(forced, "INTERNAL_SERVER_ERROR",
                                      "An internal server error occurred."))
        body = None
        if method == "POST":
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return self.answer(*error(415, "UNSUPPORTED_MEDIA_TYPE",
                                          "The request payload is not supported."))
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                return self.answer(*error(400, "INVALID_REQUEST", "Request is not "
                                          "well-formed.", "MALFORMED_REQUEST_JSON"))
        parts = path.strip("/").split("/")
        if path == "/v2/checkout/orders" and method == "POST":
            return self.answer(*s.idempotent("order", headers, True,
                                             lambda: s.create_order(body)))
        if parts[:3] == ["v2", "checkout", "orders"] and len(parts) == 4 and method == "GET":
            return self.answer(*s.get_order(parts[3]))
        if parts[:3] == ["v2", "checkout", "orders"] and len(parts) == 5 and \
                parts[4] == "capture" and method == "POST":
            return self.answer(*s.idempotent("capture:" + parts[3], headers, False,
                                             lambda: s.capture(parts[3])))
        if parts[:3] == ["v2", "payments", "captures"] and len(parts) == 4 and method == "GET":
            return self.answer(*s.get_capture(parts[3]))
        if parts[:3] == ["v2", "payments", "captures"] and len(parts) == 5 and \
                parts[4] == "refund" and method == "POST":
            return self.answer(*s.idempotent("refund:" + parts[3], headers, True,
                                             lambda: s.refund(parts[3], body)))
        if path == "/v1/notifications/verify-webhook-signature" and method == "POST":
            return self.answer(*s.verify(body))
        return self.answer(*error(404, "RESOURCE_NOT_FOUND", "The specified resource does not "
                                  "exist."))

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")
