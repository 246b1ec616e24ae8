"""A stand-in for BTCPay Server's Greenfield API and its webhooks, as the
plugin's README documents them (sources: docs.btcpayserver.org and the
Greenfield swagger in btcpayserver/btcpayserver), on a free port of
127.0.0.1. Python 3 standard library only.

Endpoints, each checking `Authorization: token <api key>` (none or
another key: 401), the store id in the path (another: 404), and for a
body `Content-Type: application/json` with a JSON object (else 415/400):

  POST /api/v1/stores/{storeId}/invoices
      `amount` a decimal string (a number is refused: 400), `currency` a
      string, `metadata.orderId` a string, `checkout.redirectURL` a string
      when present, `checkout.expirationMinutes` a number when present; an
      unknown top-level or checkout field is 400 (the swagger's
      additionalProperties false). Answers 200 with the InvoiceData
      (id, storeId, amount, currency, type, checkoutLink, createdTime,
      expirationTime, monitoringExpiration, status New, additionalStatus
      None, metadata, checkout, receipt, archived).
  GET  /api/v1/stores/{storeId}/invoices/{invoiceId}
      200 the InvoiceData as it is now; 404 unknown.
  POST /api/v1/stores/{storeId}/invoices/{invoiceId}/refund
      403 unless the key may refund (can_refund); body fields limited to
      name, description, paymentMethod, refundVariant, subtractPercentage,
      customAmount, customCurrency; refundVariant one of RateThen,
      CurrentRate, OverpaidAmount, Fiat, Custom; Custom needs customAmount
      (decimal string) and customCurrency; the invoice must be Settled
      (else 400). Answers 200 with the PullPaymentData (id, name,
      description, currency, amount, viewLink, archived …).
  GET  /i/{invoiceId}            the checkout page, with one form per way
                                 to pay (a test hook: no wallet needed)
  POST /i/{invoiceId}/pay        form field how = full | partial | over |
                                 after_expiry: pays as BTCPay would see it
                                 and delivers the webhooks

Webhooks (deliver()): JSON as BTCPay sends it (deliveryId, webhookId,
originalDeliveryId, isRedelivery, type, timestamp, storeId, invoiceId and
the type's own fields: overPaid, manuallyMarked, partiallyPaid,
afterExpiration, paymentMethod, payment), signed
`BTCPay-Sig: sha256=<hex HMAC-SHA-256(UTF-8 secret, body bytes)>`. Only the
subscribed events are sent (`events`, None: every event, as a BTCPay
webhook with "everything" ticked). Test controls, as attributes and
methods of BTCPayStandin:
  drop_next / duplicate_next   drop, or send twice, the next n deliveries;
  hold = True                  queue deliveries; flush(order) sends them
                               (reordered when asked);
  redeliver(delivery_id)       a redelivery: new deliveryId, isRedelivery
                               true, originalDeliveryId the first one's;
  fail(status|"timeout"|"garbage", count, path_prefix)
                               answers the next API calls so;
  pay / expire / invalidate / settle   move an invoice;
  requests, deliveries         what came in, what went out.

Run alone: python3 btcpay_standin.py --api-key K --store-id S --secret W
prints {"url": …} and serves until interrupted.
"""
import argparse
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
CREATE_FIELDS = {"amount", "currency", "metadata", "checkout", "receipt",
                 "additionalSearchTerms"}
CHECKOUT_FIELDS = {"speedPolicy", "paymentMethods", "defaultPaymentMethod",
                   "lazyPaymentMethods", "expirationMinutes", "monitoringMinutes",
                   "paymentTolerance", "redirectURL", "redirectAutomatically",
                   "requiresRefundEmail", "checkoutType", "defaultLanguage"}
REFUND_FIELDS = {"name", "description", "paymentMethod", "refundVariant",
                 "subtractPercentage", "customAmount", "customCurrency"}
REFUND_VARIANTS = {"RateThen", "CurrentRate", "OverpaidAmount", "Fiat", "Custom"}


def new_id(n=22):
    return "".join(secrets.choice(B58) for _ in range(n))


def signature(secret, body):
    """BTCPay-Sig for body (bytes): sha256=<lower-case hex HMAC-SHA-256>."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def decimal_string(v):
    """A Greenfield decimal: a JSON string holding a plain decimal."""
    if not isinstance(v, str):
        return None
    try:
        d = Decimal(v)
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


class BTCPayStandin:
    def __init__(self, api_key, store_id, secret, webhook_url=None, can_refund=True):
        self.api_key = api_key
        self.store_id = store_id
        self.secret = secret
        self.webhook_url = webhook_url
        self.webhook_id = new_id()
        self.can_refund = can_refund
        self.events = None
        self.lock = threading.RLock()
        self.reset()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                standin._handle(self, "GET")

            def do_POST(self):
                standin._handle(self, "POST")

            def do_PUT(self):
                standin._handle(self, "PUT")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def reset(self):
        with self.lock:
            self.invoices = {}
            self.pull_payments = {}
            self.requests = []
            self.deliveries = []
            self.queue = []
            self.failures = []
            self.drop_next = 0
            self.duplicate_next = 0
            self.hold = False
            self.events = None
            self.can_refund = True

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---- test controls -------------------------------------------------

    def fail(self, how, count=1, path_prefix="/api/"):
        """The next `count` API calls under path_prefix answer `how`: an
        HTTP status, "timeout" (no answer for 30 s) or "garbage" (200 with
        a body that is not JSON)."""
        with self.lock:
            self.failures.append([how, count, path_prefix])

    def invoice_data(self, inv):
        keys = ["id", "storeId", "amount", "currency", "type", "checkoutLink", "createdTime",
                "expirationTime", "monitoringExpiration", "status", "additionalStatus",
                "availableStatusesForManualMarking", "archived", "metadata", "checkout",
                "receipt"]
        return {k: inv[k] for k in keys}

    def _event(self, inv, type_, **extra):
        ev = {"deliveryId": new_id(), "webhookId": self.webhook_id,
              "originalDeliveryId": None, "isRedelivery": False, "type": type_,
              "timestamp": int(time.time()), "storeId": self.store_id, "invoiceId": inv["id"],
              "metadata": inv["metadata"]}
        ev["originalDeliveryId"] = ev["deliveryId"]
        ev.update(extra)
        return ev

    def _payment(self, inv, value):
        return {"id": new_id(40) + "-0", "receivedDate": int(time.time()),
                "value": str(value), "fee": "0.0", "status": "Settled",
                "destination": "bcrt1q" + new_id(38).lower()}

    def _step(self, invoice_id, type_, status=None, additional=None, **extra):
        """Moves the invoice (under the lock), then sends one event (not
        under it: the plugin reads the invoice back while it is delivered)."""
        with self.lock:
            inv = self.invoices[invoice_id]
            if status:
                inv["status"] = status
            if additional:
                inv["additionalStatus"] = additional
            ev = self._event(inv, type_, **extra)
        return self._send(ev)

    def pay(self, invoice_id, how="full", confirm=True):
        """Pays an invoice as BTCPay sees it, and sends the webhooks:
        full:         InvoiceReceivedPayment, InvoiceProcessing, then (confirm)
                      InvoiceSettled;
        over:         the same with overPaid true and additionalStatus PaidOver;
        partial:      InvoiceReceivedPayment only; additionalStatus PaidPartial
                      (expire() then sends InvoiceExpired with partiallyPaid);
        after_expiry: the invoice expires first (InvoiceExpired), then
                      InvoiceReceivedPayment with afterExpiration true;
                      status Expired, additionalStatus PaidLate.
        Returns the events sent (or queued, dropped)."""
        with self.lock:
            inv = self.invoices[invoice_id]
            amount = Decimal(inv["amount"])
            expired = inv["status"] == "Expired"
        sent = []
        if how == "after_expiry":
            if not expired:
                sent += self.expire(invoice_id)
            with self.lock:
                payment = self._payment(inv, amount)
            sent.append(self._step(invoice_id, "InvoiceReceivedPayment", additional="PaidLate",
                                   afterExpiration=True, paymentMethod="BTC-CHAIN",
                                   payment=payment))
            return sent
        value = amount / 2 if how == "partial" else amount * 2 if how == "over" else amount
        with self.lock:
            payment = self._payment(inv, value)
        sent.append(self._step(invoice_id, "InvoiceReceivedPayment",
                               additional="PaidPartial" if how == "partial" else None,
                               afterExpiration=False, paymentMethod="BTC-CHAIN",
                               payment=payment))
        if how == "partial":
            return sent
        sent.append(self._step(invoice_id, "InvoiceProcessing", status="Processing",
                               additional="PaidOver" if how == "over" else "None",
                               overPaid=how == "over"))
        if confirm:
            sent += self.settle(invoice_id)
        return sent

    def settle(self, invoice_id, manually=False):
        with self.lock:
            over = self.invoices[invoice_id]["additionalStatus"] == "PaidOver"
        return [self._step(invoice_id, "InvoiceSettled", status="Settled",
                           additional="Marked" if manually else None,
                           manuallyMarked=manually, overPaid=over)]

    def expire(self, invoice_id):
        with self.lock:
            partly = self.invoices[invoice_id]["additionalStatus"] == "PaidPartial"
        return [self._step(invoice_id, "InvoiceExpired", status="Expired",
                           partiallyPaid=partly)]

    def invalidate(self, invoice_id, manually=False):
        return [self._step(invoice_id, "InvoiceInvalid", status="Invalid",
                           additional="Marked" if manually else "Invalid",
                           manuallyMarked=manually)]

    def redeliver(self, delivery_id):
        """BTCPay's "Redeliver": the same event under a new deliveryId,
        isRedelivery true, originalDeliveryId the first delivery's."""
        with self.lock:
            first = next(d for d in self.deliveries if d["event"]["deliveryId"] == delivery_id)
            ev = dict(first["event"])
            ev["deliveryId"] = new_id()
            ev["isRedelivery"] = True
            ev["originalDeliveryId"] = first["event"]["originalDeliveryId"]
            ev["timestamp"] = int(time.time())
        return self._post(ev)

    def flush(self, reverse=False):
        """Sends the held deliveries (newest first when reverse)."""
        with self.lock:
            held, self.queue = self.queue, []
        return [self._post(ev) for ev in (held[::-1] if reverse else held)]

    # ---- delivery ------------------------------------------------------

    def _send(self, ev):
        """Delivers (or drops, duplicates, queues) one event; returns it."""
        with self.lock:
            if self.events is not None and ev["type"] not in self.events:
                return ev
            if self.drop_next:
                self.drop_next -= 1
                self.deliveries.append({"event": ev, "status": None, "dropped": True})
                return ev
            if self.hold:
                self.queue.append(ev)
                return ev
            twice = self.duplicate_next > 0
            if twice:
                self.duplicate_next -= 1
        self._post(ev)
        if twice:
            self._post(ev)
        return ev

    def body_of(self, ev):
        return json.dumps(ev, indent=2).encode("utf-8")

    def _post(self, ev):
        body = self.body_of(ev)
        sig = signature(self.secret, body)
        rec = {"event": ev, "body": body, "signature": sig, "status": None, "answer": None}
        with self.lock:
            self.deliveries.append(rec)
        if not self.webhook_url:
            return rec
        req = urllib.request.Request(self.webhook_url, data=body, method="POST", headers={
            "Content-Type": "application/json", "BTCPay-Sig": sig,
            "User-Agent": "BTCPayServer"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                rec["status"], rec["answer"] = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            rec["status"], rec["answer"] = e.code, e.read().decode()
        return rec

    # ---- HTTP ----------------------------------------------------------

    def _reply(self, h, status, obj=None, raw=None, ctype="application/json"):
        data = raw if raw is not None else (b"" if obj is None else json.dumps(obj).encode())
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _problem(self, h, status, code, message):
        self._reply(h, status, {"code": code, "message": message})

    def _validation(self, h, path, message):
        self._reply(h, 400, [{"path": path, "message": message}])

    def _handle(self, h, method):
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        path = urllib.parse.urlsplit(h.path).path
        with self.lock:
            self.requests.append({"method": method, "path": path,
                                  "headers": dict(h.headers.items()), "body": body})
        if path.startswith("/i/"):
            return self._checkout(h, method, path, body)
        if not path.startswith("/api/v1/"):
            return self._problem(h, 404, "not-found", "not found")
        how = None
        with self.lock:
            for f in self.failures:
                if f[1] > 0 and path.startswith(f[2]):
                    f[1] -= 1
                    how = f[0]
                    break
        if how == "timeout":
            time.sleep(30)
            return self._problem(h, 503, "timeout", "too late")
        if how == "garbage":
            return self._reply(h, 200, raw=b"<html>502 Bad Gateway</html>", ctype="text/html")
        if how is not None:
            return self._problem(h, int(how), "server-error", "stand-in told to fail")
        auth = h.headers.get("Authorization")
        if auth is None:
            return self._problem(h, 401, "unauthenticated", "Authentication is required")
        if auth != "token " + self.api_key:
            return self._problem(h, 401, "unauthenticated", "Invalid API key")
        parts = path.split("/")  # ['', 'api', 'v1', 'stores', sid, 'invoices', …]
        if len(parts) < 6 or parts[3] != "stores" or parts[5] != "invoices":
            return self._problem(h, 404, "not-found", "not found")
        if parts[4] != self.store_id:
            return self._problem(h, 404, "store-not-found", "The store was not found")
        data = None
        if method in ("POST", "PUT"):
            if (h.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
                return self._problem(h, 415, "unsupported-media-type",
                                     "Content-Type must be application/json")
            try:
                data = json.loads(body)
            except ValueError:
                return self._problem(h, 400, "invalid-json", "the body is not JSON")
            if not isinstance(data, dict):
                return self._problem(h, 400, "invalid-json", "the body must be an object")
        if len(parts) == 6 and method == "POST":
            return self._create(h, data)
        inv = self.invoices.get(parts[6]) if len(parts) >= 7 else None
        if inv is None:
            return self._problem(h, 404, "invoice-not-found", "The invoice was not found")
        if len(parts) == 7 and method == "GET":
            with self.lock:
                return self._reply(h, 200, self.invoice_data(inv))
        if len(parts) == 8 and parts[7] == "refund" and method == "POST":
            return self._refund(h, inv, data)
        return self._problem(h, 405, "method-not-allowed", "method not allowed")

    def _create(self, h, data):
        extra = set(data) - CREATE_FIELDS
        if extra:
            return self._validation(h, sorted(extra)[0], "unknown field")
        amount = decimal_string(data.get("amount"))
        if amount is None or amount <= 0:
            return self._validation(h, "amount", "amount must be a positive decimal string")
        if not isinstance(data.get("currency"), str) or not data["currency"]:
            return self._validation(h, "currency", "currency is required")
        meta = data.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("orderId"), str):
            return self._validation(h, "metadata.orderId", "orderId must be a string")
        checkout = data.get("checkout") or {}
        if not isinstance(checkout, dict) or set(checkout) - CHECKOUT_FIELDS:
            return self._validation(h, "checkout", "unknown checkout field")
        if "redirectURL" in checkout and not isinstance(checkout["redirectURL"], str):
            return self._validation(h, "checkout.redirectURL", "must be a string")
        minutes = checkout.get("expirationMinutes", 15)
        if not isinstance(minutes, (int, float)) or minutes <= 0:
            return self._validation(h, "checkout.expirationMinutes", "must be positive")
        now = int(time.time())
        iid = new_id()
        inv = {"id": iid, "storeId": self.store_id, "amount": data["amount"],
               "currency": data["currency"].upper(), "type": "Standard",
               "checkoutLink": "%s/i/%s" % (self.url, iid), "createdTime": now,
               "expirationTime": now + int(minutes * 60),
               "monitoringExpiration": now + int(minutes * 60) + 86400,
               "status": "New", "additionalStatus": "None",
               "availableStatusesForManualMarking": ["Settled", "Invalid"],
               "archived": False, "metadata": meta, "checkout": checkout,
               "receipt": {"enabled": True, "showQR": None, "showPayments": None}}
        with self.lock:
            self.invoices[iid] = inv
            return self._reply(h, 200, self.invoice_data(inv))

    def _refund(self, h, inv, data):
        if not self.can_refund:
            return self._problem(h, 403, "missing-permission",
                                 "Missing permission btcpay.store.canmodifystoresettings")
        extra = set(data) - REFUND_FIELDS
        if extra:
            return self._validation(h, sorted(extra)[0], "unknown field")
        variant = data.get("refundVariant")
        if variant not in REFUND_VARIANTS:
            return self._validation(h, "refundVariant", "refundVariant is required")
        if not isinstance(data.get("paymentMethod"), str) or not data["paymentMethod"]:
            return self._validation(h, "paymentMethod", "Please select a payment method")
        if inv["status"] != "Settled":
            return self._validation(h, "invoiceId", "Cannot refund this invoice")
        amount = inv["amount"]
        currency = inv["currency"]
        if variant == "Custom":
            d = decimal_string(data.get("customAmount"))
            if d is None or d <= 0:
                return self._validation(h, "customAmount", "Amount must be greater than 0")
            if not isinstance(data.get("customCurrency"), str):
                return self._validation(h, "customCurrency", "Invalid currency")
            amount, currency = data["customAmount"], data["customCurrency"]
        pid = new_id(28)
        pp = {"id": pid, "name": data.get("name") or "Refund " + inv["id"],
              "description": data.get("description") or "", "currency": currency,
              "amount": amount, "period": None, "BOLT11Expiration": "30",
              "autoApproveClaims": False, "archived": False,
              "viewLink": "%s/pull-payments/%s" % (self.url, pid), "invoiceId": inv["id"]}
        with self.lock:
            self.pull_payments[pid] = pp
        return self._reply(h, 200, {k: v for k, v in pp.items() if k != "invoiceId"})

    def _checkout(self, h, method, path, body):
        parts = path.split("/")  # ['', 'i', id] or ['', 'i', id, 'pay']
        inv = self.invoices.get(parts[2]) if len(parts) >= 3 else None
        if inv is None:
            return self._reply(h, 404, raw=b"invoice not found", ctype="text/plain")
        if method == "GET" and len(parts) == 3:
            forms = "".join(
                '<form method="post" action="/i/%s/pay"><input type="hidden" name="how" '
                'value="%s"><button>Pay (%s)</button></form>' % (inv["id"], how, how)
                for how in ("full", "partial", "over", "after_expiry"))
            page = ("<!doctype html><title>Invoice %s</title><h1>Pay %s %s</h1><p>Order %s</p>%s"
                    % (inv["id"], html.escape(inv["amount"]), html.escape(inv["currency"]),
                       html.escape(inv["metadata"].get("orderId", "")), forms))
            return self._reply(h, 200, raw=page.encode(), ctype="text/html; charset=utf-8")
        if method == "POST" and len(parts) == 4 and parts[3] == "pay":
            how = urllib.parse.parse_qs(body.decode()).get("how", ["full"])[0]
            if how not in ("full", "partial", "over", "after_expiry"):
                return self._reply(h, 400, raw=b"how?", ctype="text/plain")
            sent = self.pay(inv["id"], how)
            return self._reply(h, 200, {"invoice": self.invoice_data(inv),
                                        "events": [e["type"] for e in sent]})
        return self._reply(h, 405, raw=b"method not allowed", ctype="text/plain")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--store-id", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--webhook-url")
    a = ap.parse_args()
    s = BTCPayStandin(a.api_key, a.store_id, a.secret, a.webhook_url)
    print(json.dumps({"url": s.url}), flush=True)
    try:
        s.thread.join()
    except KeyboardInterrupt:
        s.close()


if __name__ == "__main__":
    main()
