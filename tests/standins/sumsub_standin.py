"""A stand-in for Sumsub (the applicant API and its webhooks, as
PROVIDERS.md section 5 and plugins/kyc-sumsub/README.md document them), on
a free port of 127.0.0.1. Python 3 standard library only.

What it checks of every API request, answering as Sumsub does
({"description", "code", "errorCode"} on errors):
  - X-App-Token: the configured app token (401 otherwise);
  - X-App-Access-Ts: Unix seconds within 60 s of this machine's clock
    (Sumsub allows one minute; 401 otherwise);
  - X-App-Access-Sig: lower-case hex HMAC-SHA256(secret key, ts + METHOD +
    path with its query + raw body) (401 otherwise);
  - Content-Type: application/json (400 otherwise: Sumsub asks clients to
    send it even without a body).
POST /resources/applicants?levelName=<level>: the level must be one of
  `levels` (404 otherwise); a JSON object body whose externalUserId is a
  string; an externalUserId already used is 409 ("Applicant with external
  user id '…' already exists"). 201 with the applicant {id, createdAt,
  externalUserId, levelName, email?, review{reviewStatus: init}}.
GET /resources/applicants/-;externalUserId=<id>/one: the applicant or 404.
POST /resources/accessTokens/sdk: {"userId" (string), "levelName" (a
  known level), "ttlInSecs" (number)} → {"token": "_act-sbx-…", "userId"}.
GET /resources/applicants/<id>/status: {"createDate", "reviewDate"?,
  "reviewStatus", "reviewResult"?, "levelName", "attemptCnt"} or 404.

Webhooks: POST <webhook_url> with Content-Type: application/json,
X-Payload-Digest = hex HMAC(webhook secret, raw body) with the algorithm
named in X-Payload-Digest-Alg (HMAC_SHA256_HEX, HMAC_SHA512_HEX or the
legacy HMAC_SHA1_HEX), bodies {applicantId, inspectionId, correlationId,
levelName, externalUserId, type, sandboxMode, reviewStatus, createdAtMs
("yyyy-MM-dd HH:mm:ss.fff" UTC), applicantType, reviewResult?}.

Test controls (Python methods):
  review(ext, answer, reject_type=None, comment=None, at_ms=None,
         alg="HMAC_SHA256_HEX", send=True)
      the applicant of our member `ext` (made when missing) is reviewed:
      GREEN, or RED with RETRY / FINAL; its status endpoint shows it; the
      applicantReviewed webhook is sent (send=False: held, returned).
  pending(ext, at_ms=None, send=True)   applicantPending.
  deliver(hook)   sends a prepared webhook (again: a replay); returns
                  {"status", "answer"}.
  forged(hook)    the same body with a digest under a wrong secret.
  requests        what arrived: (method, path, body, verdict).
"""
import datetime
import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ALGS = {"HMAC_SHA1_HEX": hashlib.sha1, "HMAC_SHA256_HEX": hashlib.sha256,
        "HMAC_SHA512_HEX": hashlib.sha512}


def digest(secret, body, alg="HMAC_SHA256_HEX"):
    """X-Payload-Digest: hex HMAC of the raw body, algorithm per the header."""
    return hmac.new(secret.encode(), body, ALGS[alg]).hexdigest()


def request_signature(secret, ts, method, path, body):
    """X-App-Access-Sig: hex HMAC-SHA256 of ts + METHOD + path?query + body."""
    return hmac.new(secret.encode(), str(ts).encode() + method.encode() + path.encode() + body,
                    hashlib.sha256).hexdigest()


def created_at(ms):
    t = datetime.datetime.fromtimestamp(ms / 1000.0, datetime.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + "%03d" % (ms % 1000)


class SumsubStandin:
    def __init__(self, app_token, secret_key, webhook_secret, webhook_url=None,
                 levels=("basic-kyc-level",)):
        self.app_token = app_token
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.levels = set(levels)
        self.lock = threading.Lock()
        self.applicants = {}  # id -> applicant
        self.requests = []
        self.clock_ms = int(time.time() * 1000)
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

    # -- applicants ------------------------------------------------------------
    def by_external(self, ext):
        for a in self.applicants.values():
            if a["externalUserId"] == ext:
                return a
        return None

    def applicant(self, ext, level="basic-kyc-level", email=None):
        with self.lock:
            a = self.by_external(ext)
            if a is None:
                a = {"id": uuid.uuid4().hex[:24], "createdAt": created_at(self.tick()),
                     "externalUserId": ext, "levelName": level,
                     "review": {"reviewStatus": "init", "attemptCnt": 0}}
                if email:
                    a["email"] = email
                self.applicants[a["id"]] = a
            return a

    def tick(self):
        """Provider time, strictly increasing (ms)."""
        self.clock_ms = max(self.clock_ms + 1, int(time.time() * 1000))
        return self.clock_ms

    # -- webhooks --------------------------------------------------------------
    def hook(self, a, type_, review_status, result=None, at_ms=None, alg="HMAC_SHA256_HEX"):
        body = {"applicantId": a["id"], "inspectionId": a["id"][::-1],
                "correlationId": "req-" + uuid.uuid4().hex, "levelName": a["levelName"],
                "externalUserId": a["externalUserId"], "type": type_, "sandboxMode": True,
                "reviewStatus": review_status,
                "createdAtMs": created_at(at_ms if at_ms is not None else self.tick()),
                "applicantType": "individual"}
        if result is not None:
            body["reviewResult"] = result
        raw = json.dumps(body, separators=(",", ":")).encode()
        return {"body": raw, "headers": {"Content-Type": "application/json",
                                         "X-Payload-Digest": digest(self.webhook_secret, raw, alg),
                                         "X-Payload-Digest-Alg": alg}}

    def review(self, ext, answer, reject_type=None, comment=None, at_ms=None,
               alg="HMAC_SHA256_HEX", send=True):
        a = self.applicant(ext)
        result = {"reviewAnswer": answer}
        if answer == "RED":
            result.update({"rejectLabels": ["BAD_PROOF_OF_IDENTITY"],
                           "reviewRejectType": reject_type or "FINAL",
                           "moderationComment": comment or "The document could not be read.",
                           "clientComment": "internal: not for the member"})
        at = at_ms if at_ms is not None else self.tick()
        with self.lock:
            a["review"] = {"reviewStatus": "completed", "reviewResult": result,
                           "reviewDate": created_at(at)[:19],
                           "attemptCnt": a["review"].get("attemptCnt", 0) + 1}
        h = self.hook(a, "applicantReviewed", "completed", result, at, alg)
        return self.deliver(h) if send else h

    def pending(self, ext, at_ms=None, send=True):
        a = self.applicant(ext)
        with self.lock:
            a["review"] = {"reviewStatus": "pending", "attemptCnt": 0}
        h = self.hook(a, "applicantPending", "pending", None, at_ms)
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
        headers["X-Payload-Digest"] = digest(self.webhook_secret + "-wrong", h["body"],
                                             headers["X-Payload-Digest-Alg"])
        return self.deliver(h, headers)

    # -- the API ---------------------------------------------------------------
    def check(self, method, path, headers, body):
        """None when the request is signed as documented, else (status, error)."""
        if headers.get("X-App-Token") != self.app_token:
            return 401, "App token is missing or wrong"
        ts = headers.get("X-App-Access-Ts") or ""
        if not ts.isdigit() or abs(int(ts) - time.time()) > 60:
            return 401, "Request timestamp is missing or more than a minute off"
        sig = headers.get("X-App-Access-Sig") or ""
        if not hmac.compare_digest(sig, request_signature(self.secret_key, ts, method, path,
                                                          body)):
            return 401, "Request signature mismatch"
        if (headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            return 400, "Content-Type must be application/json"
        return None

    def api(self, method, path, headers, body):
        bad = self.check(method, path, headers, body)
        with self.lock:
            self.requests.append((method, path, body.decode(errors="replace"),
                                  "ok" if bad is None else bad[1]))
        if bad:
            return bad[0], {"description": bad[1], "code": bad[0], "errorCode": 4000}
        url = urllib.parse.urlsplit(path)
        q = urllib.parse.parse_qs(url.query)
        if method == "POST" and url.path == "/resources/applicants":
            level = (q.get("levelName") or [""])[0]
            if level not in self.levels:
                return 404, {"description": "Level '%s' not found" % level, "code": 404}
            try:
                doc = json.loads(body)
            except ValueError:
                return 400, {"description": "Invalid JSON", "code": 400}
            if not isinstance(doc, dict) or not isinstance(doc.get("externalUserId"), str):
                return 400, {"description": "externalUserId must be a string", "code": 400}
            with self.lock:
                old = self.by_external(doc["externalUserId"])
            if old:
                return 409, {"description": "Applicant with external user id '%s' already "
                                            "exists: %s" % (old["externalUserId"], old["id"]),
                             "code": 409}
            return 201, self.applicant(doc["externalUserId"], level, doc.get("email"))
        if method == "GET" and url.path.startswith("/resources/applicants/-;externalUserId=") \
                and url.path.endswith("/one"):
            ext = urllib.parse.unquote(url.path[len("/resources/applicants/-;externalUserId="):-4])
            with self.lock:
                a = self.by_external(ext)
            return (200, a) if a else (404, {"description": "Applicant not found", "code": 404})
        if method == "POST" and url.path == "/resources/accessTokens/sdk":
            try:
                doc = json.loads(body)
            except ValueError:
                return 400, {"description": "Invalid JSON", "code": 400}
            if not isinstance(doc, dict) or not isinstance(doc.get("userId"), str) or \
                    doc.get("levelName") not in self.levels or \
                    not isinstance(doc.get("ttlInSecs"), int):
                return 400, {"description": "userId, levelName and ttlInSecs are required",
                             "code": 400}
            return 200, {"token": "_act-sbx-" + uuid.uuid4().hex, "userId": doc["userId"]}
        if method == "GET" and url.path.startswith("/resources/applicants/") and \
                url.path.endswith("/status"):
            aid = url.path[len("/resources/applicants/"):-len("/status")]
            with self.lock:
                a = self.applicants.get(aid)
                if not a:
                    return 404, {"description": "Applicant not found", "code": 404}
                out = {"createDate": a["createdAt"][:19], "levelName": a["levelName"]}
                out.update(a["review"])
            return 200, out
        return 404, {"description": "Not found", "code": 404}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self, method):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        status, doc = self.server.standin.api(method, self.path, self.headers, body)
        out = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")
