"""A stand-in for Binance Pay's merchant API and its webhooks, as
/work/shared/PROVIDERS.md §4 and plugins/payment-binancepay/README.md
describe them, on a free port of 127.0.0.1. Python 3 standard library and
the `openssl` command only.

Every request is checked as Binance documents it, and refused with
Binance's envelope {"status":"FAIL","code":…,"errorMessage":…}:
  - POST only, Content-Type application/json, a JSON object body;
  - BinancePay-Timestamp: milliseconds within `clock_skew_ms` of now;
  - BinancePay-Nonce: 32 letters; BinancePay-Certificate-SN: the API key;
  - BinancePay-Signature: UPPER(hex(HMAC-SHA512(secret, ts\\nnonce\\nbody\\n)))
    recomputed here with hmac/hashlib over the bytes received.
Endpoints:
  POST /binancepay/openapi/v3/order          create order (env.terminalType,
       merchantTradeNo letters/digits <= 32, unique; orderAmount a JSON number of
       at most 8 decimals; currency; description; goodsDetails) -> prepayId,
       checkoutUrl, universalUrl, …
  POST /binancepay/openapi/v2/order/query    {"prepayId"} or {"merchantTradeNo"}
  POST /binancepay/openapi/order/refund      refundRequestId (<= 64, the
       idempotency key: a repeat answers the first result with
       duplicateRequest "Y"), prepayId, refundAmount (sum <= order amount)
  POST /binancepay/openapi/certificates      [{certSerial, certPublic}]
Webhooks are signed as Binance signs them: SHA256withRSA over
ts\\nnonce\\nbody\\n with the current key (generated with `openssl genpkey`),
base64, BinancePay-Certificate-SN = the certificate's serial (MD5 of the
public key's DER).

Test controls (methods, not HTTP): fail_next(path, how, count) with how
500 / 429 / "timeout" / "garbage" / "fail"; pay(), close(); notify() builds a
signed notification and deliver() posts it (any number of times, or not
at all); forged/tampered/stale variants; rotate() makes a new key pair.
"""
import base64
import hashlib
import hmac
import json
import os
import random
import re
import secrets
import string
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ORDER = "/binancepay/openapi/v3/order"
QUERY = "/binancepay/openapi/v2/order/query"
REFUND = "/binancepay/openapi/order/refund"
CERTS = "/binancepay/openapi/certificates"
TERMINALS = {"APP", "WEB", "WAP", "MINI_PROGRAM", "OTHERS"}


def request_signature(secret, ts, nonce, body):
    """Binance Pay's request signature, computed independently of the
    plugin: upper-case hex HMAC-SHA512 of ts\\nnonce\\nbody\\n."""
    if isinstance(body, str):
        body = body.encode()
    payload = ts.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n"
    return hmac.new(secret.encode(), payload, hashlib.sha512).hexdigest().upper()


class KeyPair:
    """An RSA key pair made by `openssl genpkey`, signing with `openssl dgst`."""

    def __init__(self, workdir):
        fd, self.key_path = tempfile.mkstemp(prefix="bp-key-", suffix=".pem", dir=workdir)
        os.close(fd)
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", self.key_path],
                       check=True, capture_output=True)
        self.public_pem = subprocess.run(
            ["openssl", "pkey", "-in", self.key_path, "-pubout"],
            check=True, capture_output=True).stdout.decode()
        der = subprocess.run(["openssl", "pkey", "-in", self.key_path, "-pubout", "-outform",
                              "DER"], check=True, capture_output=True).stdout
        self.serial = hashlib.md5(der).hexdigest()

    def sign(self, payload):
        out = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key_path],
                             input=payload, check=True, capture_output=True).stdout
        return base64.b64encode(out).decode()


def webhook_payload(ts, nonce, body):
    return ts.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n"


def fail(code, message, http=400):
    return http, {"status": "FAIL", "code": code, "errorMessage": message}


def ok(data):
    return 200, {"status": "SUCCESS", "code": "000000", "data": data, "errorMessage": ""}


class BinancePayStandin:
    def __init__(self, api_key, secret_key, webhook_url=None, clock_skew_ms=30000):
        self.api_key = api_key
        self.secret_key = secret_key
        self.webhook_url = webhook_url
        self.clock_skew_ms = clock_skew_ms
        self.workdir = tempfile.mkdtemp(prefix="bp-standin-")
        self.lock = threading.Lock()
        self.keys = [KeyPair(self.workdir)]   # served; the last one signs
        self.orders = {}        # prepayId -> order
        self.by_trade_no = {}
        self.refunds = {}       # refundRequestId -> result
        self.requests = []      # every API request: path, headers, body, verdict
        self.modes = []         # forced answers
        self.outbox = []        # notifications made by refunds, not sent yet
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.standin = self
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        subprocess.run(["rm", "-rf", self.workdir])

    # -- controls ----------------------------------------------------------
    def fail_next(self, path, how, count=1):
        """The next `count` requests to path answer `how`: an HTTP status
        (500, 429), "timeout" (no answer for 30 s), "garbage" (200 with an
        HTML page) or "fail" (a FAIL envelope)."""
        with self.lock:
            self.modes.append({"path": path, "how": how, "count": count})

    def rotate(self, keep_old=False):
        """A new key pair signs from now on; the old one stays listed only
        with keep_old."""
        k = KeyPair(self.workdir)
        with self.lock:
            self.keys = (self.keys if keep_old else []) + [k]
        return k

    @property
    def key(self):
        return self.keys[-1]

    def api_requests(self, path=None):
        with self.lock:
            return [r for r in self.requests if path is None or r["path"] == path]

    # -- the API ------------------------------------------------------------
    def handle(self, path, headers, raw):
        entry = {"path": path, "headers": headers, "body": raw.decode("utf-8", "replace")}
        with self.lock:
            self.requests.append(entry)
        verdict = self.check_headers(headers, raw)
        entry["verdict"] = verdict
        if verdict:
            return fail(*verdict)
        with self.lock:
            mode = next((m for m in self.modes if m["path"] == path), None)
            if mode:
                mode["count"] -= 1
                if mode["count"] <= 0:
                    self.modes.remove(mode)
        if mode:
            return ("forced", mode["how"])
        try:
            body = json.loads(raw, parse_float=Decimal)
        except ValueError:
            return fail("400001", "request body is not JSON")
        if not isinstance(body, dict):
            return fail("400001", "request body must be a JSON object")
        if path == ORDER:
            return self.create_order(body)
        if path == QUERY:
            return self.query(body)
        if path == REFUND:
            return self.refund(body)
        if path == CERTS:
            return ok([{"certSerial": k.serial, "certPublic": k.public_pem} for k in self.keys])
        return fail("404000", "no such API", 404)

    def check_headers(self, h, raw):
        if h.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return ("400001", "Content-Type must be application/json")
        ts, nonce = h.get("binancepay-timestamp", ""), h.get("binancepay-nonce", "")
        sn, sig = h.get("binancepay-certificate-sn", ""), h.get("binancepay-signature", "")
        if not re.fullmatch(r"[0-9]{13}", ts) or \
                abs(int(ts) - int(time.time() * 1000)) > self.clock_skew_ms:
            return ("400004", "BinancePay-Timestamp is not a current time in milliseconds")
        if not re.fullmatch(r"[A-Za-z]{32}", nonce):
            return ("400001", "BinancePay-Nonce must be 32 letters")
        if sn != self.api_key:
            return ("400003", "BinancePay-Certificate-SN is not a known API key", 401)
        if not hmac.compare_digest(sig, request_signature(self.secret_key, ts, nonce, raw)):
            return ("400002", "Signature for this request is not valid.")
        return None

    def create_order(self, b):
        env = b.get("env")
        if not isinstance(env, dict) or env.get("terminalType") not in TERMINALS:
            return fail("400001", "env.terminalType is required")
        tno = b.get("merchantTradeNo")
        if not isinstance(tno, str) or not re.fullmatch(r"[A-Za-z0-9]{1,32}", tno):
            return fail("400001", "merchantTradeNo must be 1 to 32 letters or digits")
        amount, currency = b.get("orderAmount"), b.get("currency")
        if not isinstance(amount, (Decimal, int)) or isinstance(amount, bool) or \
                amount < Decimal("0.00000001") or -Decimal(amount).as_tuple().exponent > 8:
            return fail("400001", "orderAmount must be a number with at most 8 decimals")
        if not isinstance(currency, str) or currency != currency.upper() or not currency:
            return fail("400001", "currency must be upper case")
        if not isinstance(b.get("description"), str) or not b["description"]:
            return fail("400001", "description is required")
        goods = b.get("goodsDetails")
        if not isinstance(goods, list) or not goods or not all(
                isinstance(g, dict) and g.get("goodsType") in ("01", "02") and
                isinstance(g.get("goodsCategory"), str) and
                isinstance(g.get("referenceGoodsId"), str) and isinstance(g.get("goodsName"), str)
                for g in goods):
            return fail("400001", "goodsDetails must list goodsType, goodsCategory, "
                                  "referenceGoodsId and goodsName")
        pti = b.get("passThroughInfo")
        if pti is not None and (not isinstance(pti, str) or len(pti) > 512):
            return fail("400001", "passThroughInfo must be a string of at most 512")
        for u in ("returnUrl", "cancelUrl"):
            if u in b and (not isinstance(b[u], str) or not re.match(r"https?://", b[u])):
                return fail("400001", "%s must be an http(s) URL" % u)
        with self.lock:
            if tno in self.by_trade_no:
                return fail("400201", "merchantTradeNo is duplicated")
            # bizId is a long (Java): below 2**63
            prepay = str(random.randint(10 ** 17, 9 * 10 ** 17)) + str(len(self.orders) % 10)
            order = {"prepayId": prepay, "merchantTradeNo": tno, "orderAmount": Decimal(amount),
                     "currency": currency, "passThroughInfo": pti, "status": "INITIAL",
                     "refunded": Decimal(0), "createTime": int(time.time() * 1000),
                     "body": b}
            self.orders[prepay] = order
            self.by_trade_no[tno] = order
        return ok({"prepayId": prepay, "terminalType": env["terminalType"],
                   "expireTime": order["createTime"] + 3600 * 1000,
                   "qrcodeLink": self.url + "/qr/" + prepay,
                   "qrContent": "https://qrservice.dev.binance.com/en/qr/dplk" + prepay,
                   "checkoutUrl": self.url + "/checkout/" + prepay,
                   "deeplink": "bnc://app.binance.com/payment/secpay?tempToken=" + prepay,
                   "universalUrl": self.url + "/universal/" + prepay,
                   "currency": currency, "totalFee": str(amount)})

    def query(self, b):
        with self.lock:
            o = self.orders.get(b.get("prepayId")) or self.by_trade_no.get(b.get("merchantTradeNo"))
        if not o:
            return fail("400202", "Order not found.")
        return ok({"merchantId": 98765, "prepayId": o["prepayId"],
                   "transactionId": o.get("transactionId"),
                   "merchantTradeNo": o["merchantTradeNo"], "status": o["status"],
                   "currency": o["currency"], "orderAmount": str(o["orderAmount"]),
                   "passThroughInfo": o["passThroughInfo"], "createTime": o["createTime"]})

    def refund(self, b):
        rid, prepay, amount = b.get("refundRequestId"), b.get("prepayId"), b.get("refundAmount")
        if not isinstance(rid, str) or not 1 <= len(rid) <= 64:
            return fail("400001", "refundRequestId must be 1 to 64 characters")
        if not isinstance(amount, (Decimal, int)) or isinstance(amount, bool) or amount <= 0:
            return fail("400001", "refundAmount must be a positive number")
        reason = b.get("refundReason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 256):
            return fail("400001", "refundReason must be at most 256 characters")
        with self.lock:
            if rid in self.refunds:
                return ok(dict(self.refunds[rid], duplicateRequest="Y"))
            o = self.orders.get(prepay)
            if not o or o["status"] not in ("PAID", "REFUNDED"):
                return fail("400607", "The order is not paid or does not exist.")
            if o["refunded"] + amount > o["orderAmount"]:
                return fail("400608", "The refund amount exceeds the order amount.")
            o["refunded"] += Decimal(amount)
            o["status"] = "REFUNDED" if o["refunded"] < o["orderAmount"] else "FULL_REFUNDED"
            result = {"refundId": str(random.randint(10 ** 17, 10 ** 18 - 1)),
                      "refundRequestId": rid, "prepayId": prepay,
                      "orderAmount": str(o["orderAmount"]), "refundedAmount": str(o["refunded"]),
                      "refundAmount": str(amount), "remainingAttempts": 9,
                      "payerOpenId": "2b8f0d6d5c5a4e6f", "duplicateRequest": "N"}
            self.refunds[rid] = result
            info = {k: result[k] for k in ("refundRequestId", "prepayId", "orderAmount",
                                           "refundedAmount", "refundAmount",
                                           "remainingAttempts", "payerOpenId")}
            self.outbox.append(self.notify(o, "PAY_REFUND", "REFUND_SUCCESS",
                                           refund_info=json.dumps(info)))
        return ok(result)

    # -- webhooks -----------------------------------------------------------
    def pay(self, prepay, amount=None, currency=None):
        """Marks the order paid; returns its PAY_SUCCESS notification."""
        with self.lock:
            o = self.orders[prepay]
            o["status"] = "PAID"
            o["transactionId"] = "M" + secrets.token_hex(8)
        return self.notify(o, "PAY", "PAY_SUCCESS", amount=amount, currency=currency)

    def close(self, prepay):
        with self.lock:
            o = self.orders[prepay]
            o["status"] = "EXPIRED"
        return self.notify(o, "PAY", "PAY_CLOSED")

    def notify(self, o, biz_type, biz_status, amount=None, currency=None, refund_info=None):
        """A notification body as Binance sends it: data is a JSON string."""
        inner = {"merchantTradeNo": o["merchantTradeNo"], "productType": "Goods",
                 "productName": o["body"]["description"],
                 "transactTime": int(time.time() * 1000), "tradeType": "WEB",
                 "totalFee": "__TOTAL_FEE__",
                 "currency": currency or o["currency"], "openUserId": "1f2e3d4c5b6a",
                 "passThroughInfo": o["passThroughInfo"]}
        if refund_info is not None:
            inner["refundInfo"] = refund_info
        fee = str(amount if amount is not None else o["orderAmount"])
        # totalFee is a JSON number, written exactly as Binance has it
        data = json.dumps(inner, separators=(",", ":")).replace('"__TOTAL_FEE__"', fee)
        body = {"bizType": biz_type, "bizId": int(o["prepayId"]), "bizIdStr": o["prepayId"],
                "bizStatus": biz_status, "data": data}
        return json.dumps(body, separators=(",", ":")).encode()

    def sign(self, body, ts=None, nonce=None, key=None, serial=None):
        """Headers of a webhook for body, signed as Binance signs them."""
        ts = str(int(time.time() * 1000) if ts is None else ts)
        nonce = nonce or "".join(random.choice(string.ascii_letters) for _ in range(32))
        key = key or self.key
        return {"Content-Type": "application/json", "BinancePay-Timestamp": ts,
                "BinancePay-Nonce": nonce,
                "BinancePay-Certificate-SN": serial or key.serial,
                "BinancePay-Signature": key.sign(webhook_payload(ts, nonce, body))}

    def deliver(self, body, headers=None, url=None):
        """POSTs one notification as Binance does; (status, answer text)."""
        headers = headers or self.sign(body)
        req = urllib.request.Request(url or self.webhook_url, data=body, headers=headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def flush(self):
        """Delivers the notifications refunds made, in order."""
        with self.lock:
            out, self.outbox = self.outbox, []
        return [self.deliver(b) for b in out]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.answer(*fail("404000", "Binance Pay's API takes POST only", 405))

    def do_POST(self):
        s = self.server.standin
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        res = s.handle(self.path, headers, raw)
        if res[0] == "forced":
            how = res[1]
            if how == "timeout":
                time.sleep(30)
                self.close_connection = True
                return
            if how == "garbage":
                return self.answer(200, b"<html><body>502 Bad Gateway</body></html>",
                                   "text/html")
            if how == "fail":
                return self.answer(*fail("400000", "forced failure"))
            return self.answer(int(how), {"status": "FAIL", "code": str(how),
                                          "errorMessage": "forced HTTP %s" % how})
        self.answer(*res)
