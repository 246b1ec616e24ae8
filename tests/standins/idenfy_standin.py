"""A stand-in for iDenfy (token generation, the status call and the
identification webhooks, as PROVIDERS.md section 6 and
plugins/kyc-idenfy/README.md document them), on a free port of 127.0.0.1.
Python 3 standard library only.

What it checks of every API request, answering as iDenfy does
({"message", "identifier"} on errors):
  - Authorization: HTTP Basic with the API key as user and the API secret
    as password (401 otherwise);
  - Content-Type: application/json and a JSON object body (400).
POST /api/v2/token: clientId required, a string of 1 to 100 ASCII
  characters (400 otherwise) → 201 {"message": "Token created
  successfully", "authToken", "scanRef", "clientId", "redirectUrl",
  "expiryTime", "sessionLength", "tokenType": "IDENTIFICATION", ...}.
POST /api/v2/status: {"scanRef"} of a known verification (404 otherwise)
  → 200 {"status": <overall>, "scanRef", "clientId", "autoDocument",
  "autoFace", "manualDocument", "manualFace", "fraudTags",
  "mismatchTags"}; `status_calls` counts them per scanRef (iDenfy asks
  not to be polled regularly).

Webhooks: POST <webhook_url>, Content-Type: application/json,
Idenfy-Signature = lower-case hex HMAC-SHA256(signing key, raw body), body
{"final", "platform", "status": {"overall", "autoDocument", "autoFace",
"manualDocument", "manualFace", "fraudTags", "mismatchTags", ...}, "data":
{...}, "fileUrls": {}, "scanRef", "clientId", "startTime", "finishTime"}.

Test controls (Python methods):
  verification(client_id)  a scan for our member (as a token would make).
  finish(client_id, overall, final=True, send=True, type_=None)
      the scan's status becomes `overall` (APPROVED, DENIED, SUSPECTED,
      EXPIRED, REVIEWING); the webhook is sent (send=False: held).
  set_status(scan_ref, overall)  the status call's answer, no webhook.
  deliver(hook) (again: a replay), forged(hook).
"""
import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def signature(key, body):
    """Idenfy-Signature: lower-case hex HMAC-SHA256 of the raw body."""
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


class IdenfyStandin:
    def __init__(self, api_key, api_secret, signing_key, webhook_url=None):
        self.api_key = api_key
        self.api_secret = api_secret
        self.signing_key = signing_key
        self.webhook_url = webhook_url
        self.lock = threading.Lock()
        self.scans = {}  # scanRef -> {"clientId", "overall"}
        self.status_calls = {}
        self.requests = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.standin = self
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]

    def start(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def verification(self, client_id):
        with self.lock:
            ref = str(uuid.uuid4())
            self.scans[ref] = {"clientId": client_id, "overall": "ACTIVE"}
            return ref

    def scan_of(self, client_id):
        with self.lock:
            for ref, s in self.scans.items():
                if s["clientId"] == client_id:
                    return ref
        return self.verification(client_id)

    def set_status(self, scan_ref, overall):
        with self.lock:
            self.scans[scan_ref]["overall"] = overall

    def finish(self, client_id, overall, final=True, send=True, type_=None):
        ref = self.scan_of(client_id)
        if final:
            self.set_status(ref, overall)
        now = int(time.time())
        body = {"final": final, "platform": "PC",
                "status": {"overall": overall, "suspicionReasons": [], "mismatchTags": [],
                           "fraudTags": [], "autoDocument": "DOC_VALIDATED",
                           "autoFace": "FACE_MATCH", "manualDocument": None, "manualFace": None,
                           "additionalSteps": None},
                "data": {"docFirstName": "ADA", "docLastName": "LOVELACE",
                         "docNumber": "X1234567", "docType": "ID_CARD"},
                "fileUrls": {}, "scanRef": ref, "clientId": client_id,
                "startTime": now - 120, "finishTime": now}
        if type_:
            body["type"] = type_
        raw = json.dumps(body, separators=(",", ":")).encode()
        h = {"body": raw, "headers": {"Content-Type": "application/json",
                                      "Idenfy-Signature": signature(self.signing_key, raw)}}
        return self.deliver(h) if send else h

    def deliver(self, h, headers=None):
        req = urllib.request.Request(self.webhook_url, data=h["body"], method="POST",
                                     headers=headers or h["headers"])
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return {"status": r.status, "answer": json.loads(r.read() or b"null")}
        except urllib.error.HTTPError as e:
            return {"status": e.code, "answer": json.loads(e.read() or b"null")}

    def forged(self, h):
        headers = dict(h["headers"])
        headers["Idenfy-Signature"] = signature(self.signing_key + "-wrong", h["body"])
        return self.deliver(h, headers)

    # -- the API ---------------------------------------------------------------
    def api(self, method, path, headers, body):
        want = "Basic " + base64.b64encode(
            ("%s:%s" % (self.api_key, self.api_secret)).encode()).decode()
        ok = hmac.compare_digest(headers.get("Authorization") or "", want)
        with self.lock:
            self.requests.append((method, path, body.decode(errors="replace"),
                                  "ok" if ok else "unauthorised"))
        if not ok:
            return 401, {"message": "Invalid credentials", "identifier": "UNAUTHORIZED"}
        if method != "POST" or path not in ("/api/v2/token", "/api/v2/status"):
            return 404, {"message": "Not found", "identifier": "NOT_FOUND"}
        if (headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            return 400, {"message": "Content-Type must be application/json",
                         "identifier": "INVALID_CONTENT_TYPE"}
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return 400, {"message": "Invalid JSON", "identifier": "INVALID_BODY"}
        if path == "/api/v2/token":
            cid = doc.get("clientId")
            if not isinstance(cid, str) or not 1 <= len(cid) <= 100 or not cid.isascii():
                return 400, {"message": "clientId is required", "identifier": "MISSING_PARAMETER"}
            ref = self.verification(cid)
            tok = uuid.uuid4().hex
            return 201, {"message": "Token created successfully", "authToken": tok,
                         "scanRef": ref, "clientId": cid,
                         "redirectUrl": "%s/api/v2/redirect?authToken=%s" % (self.url, tok),
                         "expiryTime": 3600, "sessionLength": 600,
                         "tokenType": "IDENTIFICATION"}
        ref = doc.get("scanRef")
        with self.lock:
            s = self.scans.get(ref) if isinstance(ref, str) else None
            if s:
                self.status_calls[ref] = self.status_calls.get(ref, 0) + 1
        if not s:
            return 404, {"message": "Verification not found", "identifier": "NOT_FOUND"}
        return 200, {"status": s["overall"], "scanRef": ref, "clientId": s["clientId"],
                     "autoDocument": "DOC_VALIDATED", "autoFace": "FACE_MATCH",
                     "manualDocument": None, "manualFace": None, "fraudTags": [],
                     "mismatchTags": []}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        status, doc = self.server.standin.api("POST", self.path, self.headers, body)
        out = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self):
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()
