"""A stand-in for an S3-compatible object store (AWS S3, Cloudflare R2,
MinIO) on a free port of 127.0.0.1, that VERIFIES AWS Signature Version 4 on
every request, as AWS documents header-based authentication
(https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html,
…/sigv4-streaming.html, …/sigv4-streaming-trailers.html) and PROVIDERS.md §9
summarises. Python 3 standard library only. The fake S3 servers on npm
(s3rver among them) accept a wrong secret; this one does not.

What it checks, answering with S3's XML error document
(<Error><Code/><Message/>…</Error>):
  - Authorization: AWS4-HMAC-SHA256 Credential=<akid>/<yyyymmdd>/<region>/s3/
    aws4_request, SignedHeaders=…, Signature=…; none: 403 AccessDenied;
    malformed, or a scope whose date, region or service is wrong: 400
    AuthorizationHeaderMalformed; an unknown key id: 403 InvalidAccessKeyId;
  - x-amz-date (ISO 8601 basic) within 15 minutes of now, else 403
    RequestTimeTooSkewed; x-amz-content-sha256 present (400 InvalidRequest);
    host, x-amz-date and x-amz-content-sha256 among the signed headers;
  - the signature itself, recomputed from the canonical request (method,
    URI-encoded path, sorted and re-encoded query, the signed headers'
    trimmed values, the payload hash): 403 SignatureDoesNotMatch with the
    StringToSign and CanonicalRequest, as S3 answers;
  - the payload: a hex SHA-256 must match the body (400
    XAmzContentSHA256Mismatch); UNSIGNED-PAYLOAD is taken as is;
    STREAMING-AWS4-HMAC-SHA256-PAYLOAD bodies (aws-chunked) have every
    chunk's signature verified; STREAMING-UNSIGNED-PAYLOAD-TRAILER bodies
    are decoded and their x-amz-checksum-crc32/-sha256 trailer checked;
    an x-amz-checksum-crc32 or -sha256 header is checked against the body;
  - the bucket: from the Host header when it is "<bucket>.<vhost base>"
    (virtual-host style), else the first path segment (path style); an
    unknown bucket: 404 NoSuchBucket; an unknown key: 404 NoSuchKey.
Operations: PUT object (stored only when the whole Content-Length body
arrived: a dropped upload leaves nothing), GET and HEAD object, DELETE
object (204 also when absent, as S3), ListObjectsV2 (list-type=2: prefix,
max-keys, continuation-token, start-after), PUT bucket (create), HEAD bucket.

Test controls (not S3's, no signature; path /_standin/…, any Host):
  POST /_standin/reset              forgets objects, requests and modes
                                    (the configured buckets remain, empty);
  POST /_standin/bucket {"name"}    creates a bucket;
  POST /_standin/drop {"method": "PUT"|"GET", "after_bytes": N, "count": 1}
                                    the next matching object request(s) lose
                                    their connection after N body bytes
                                    (read for PUT, sent for GET);
  POST /_standin/fail {"status": 503, "code": "SlowDown", "count": 1}
                                    answers the next authorised request(s) so;
  POST /_standin/page {"max": N}    caps every list page at N keys;
  GET  /_standin/objects            [{"bucket", "key", "size", "sha256",
                                      "content_type"}], sorted;
  GET  /_standin/object?bucket=&key= the stored bytes (raw);
  GET  /_standin/requests           every S3 request as received: method,
                                    path, host, payload hash header, the
                                    answer's status and error code.

Run alone: python3 s3_standin.py --key AKID:SECRET --bucket b [--region r]
prints {"url": …} on one line and serves until interrupted.
"""
import argparse
import base64
import datetime
import hashlib
import hmac
import json
import re
import threading
import urllib.parse
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9\-;]+),\s*Signature=([0-9a-f]{64})$")


def uri_encode(s, keep_slash):
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        if c in UNRESERVED or (keep_slash and c == "/"):
            out.append(c)
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def hmac256(key, msg):
    return hmac.new(key, msg.encode() if isinstance(msg, str) else msg, hashlib.sha256).digest()


def signing_key(secret, date, region, service="s3"):
    k = hmac256(("AWS4" + secret).encode(), date)
    k = hmac256(k, region)
    k = hmac256(k, service)
    return hmac256(k, "aws4_request")


def canonical_query(raw):
    pairs = []
    for part in raw.split("&") if raw else []:
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((uri_encode(urllib.parse.unquote(name), False),
                      uri_encode(urllib.parse.unquote(value), False)))
    pairs.sort()
    return "&".join("%s=%s" % p for p in pairs)


def canonical_uri(raw_path):
    return uri_encode(urllib.parse.unquote(raw_path), True) or "/"


def error_xml(code, message, resource="", extra=None):
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
             % (code, xml_escape(message))]
    for k, v in (extra or {}).items():
        parts.append("<%s>%s</%s>" % (k, xml_escape(v), k))
    parts.append("<Resource>%s</Resource><RequestId>%s</RequestId></Error>"
                 % (xml_escape(resource), uuid.uuid4().hex[:16].upper()))
    return "".join(parts).encode()


def xml_escape(s):
    return (str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


ERRORS = {
    "AccessDenied": (403, "Access Denied"),
    "AuthorizationHeaderMalformed": (400, "The authorization header is malformed."),
    "InvalidAccessKeyId": (403, "The AWS Access Key Id you provided does not exist in our "
                                "records."),
    "SignatureDoesNotMatch": (403, "The request signature we calculated does not match the "
                                   "signature you provided. Check your key and signing method."),
    "RequestTimeTooSkewed": (403, "The difference between the request time and the current "
                                  "time is too large."),
    "InvalidRequest": (400, "Missing required header for this request: x-amz-content-sha256"),
    "XAmzContentSHA256Mismatch": (400, "The provided 'x-amz-content-sha256' header does not "
                                       "match what was computed."),
    "BadDigest": (400, "The checksum you specified did not match what we received."),
    "NoSuchBucket": (404, "The specified bucket does not exist"),
    "NoSuchKey": (404, "The specified key does not exist."),
    "IncompleteBody": (400, "You did not provide the number of bytes specified by the "
                            "Content-Length HTTP header."),
    "MethodNotAllowed": (405, "The specified method is not allowed against this resource."),
    "NotImplemented": (501, "A header you provided implies functionality that is not "
                            "implemented."),
    "InvalidArgument": (400, "Invalid Argument"),
}


class S3Error(Exception):
    def __init__(self, code, message=None, extra=None, status=None):
        super().__init__(code)
        self.code = code
        self.status = status or ERRORS[code][0]
        self.message = message or ERRORS[code][1]
        self.extra = extra or {}


class Dropped(Exception):
    pass


class S3Standin:
    def __init__(self, keys, buckets, region="us-east-1", vhost_base="localhost"):
        """keys: {access key id: secret}; buckets: names that exist."""
        self.keys = dict(keys)
        self.region = region
        self.vhost_base = vhost_base
        self.configured_buckets = list(buckets)
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
            self.buckets = {b: {} for b in self.configured_buckets}
            self.requests = []
            self.drops = []
            self.fails = []
            self.page_max = None

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def objects(self):
        with self.lock:
            out = []
            for b in sorted(self.buckets):
                for k in sorted(self.buckets[b]):
                    o = self.buckets[b][k]
                    out.append({"bucket": b, "key": k, "size": len(o["data"]),
                                "sha256": hashlib.sha256(o["data"]).hexdigest(),
                                "content_type": o["content_type"]})
            return out

    def take(self, queue, method):
        with self.lock:
            for m in queue:
                if m.get("method") in (None, method) and m.get("count", 1) > 0:
                    m["count"] = m.get("count", 1) - 1
                    return dict(m)
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    # -- answers --------------------------------------------------------
    def send(self, status, body=b"", ctype="application/xml", extra=None, head=False):
        self.send_response(status)
        if body or not head:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amz-request-id", uuid.uuid4().hex[:16].upper())
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def send_error_doc(self, e, resource):
        self.record["status"] = e.status
        self.record["error"] = e.code
        self.record["message"] = e.message
        self.send(e.status, b"" if self.command == "HEAD" else
                  error_xml(e.code, e.message, resource, e.extra), head=self.command == "HEAD")

    # -- body -----------------------------------------------------------
    def read_body(self, drop):
        """The raw body of Content-Length bytes; Dropped when the client
        sent fewer (the connection closed) or a test drop applies."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self.read_http_chunked()
        n = int(self.headers.get("Content-Length") or 0)
        data = b""
        limit = drop["after_bytes"] if drop else None
        while len(data) < n:
            want = n - len(data)
            if limit is not None:
                want = min(want, limit - len(data))
                if want <= 0:
                    raise Dropped()
            chunk = self.rfile.read(min(want, 65536))
            if not chunk:
                raise Dropped()
            data += chunk
        if limit is not None and n >= limit:
            raise Dropped()
        return data

    def read_http_chunked(self):
        data = b""
        while True:
            line = self.rfile.readline()
            if not line:
                raise Dropped()
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return data
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise Dropped()
            data += chunk
            self.rfile.readline()

    # -- signature ------------------------------------------------------
    def verify(self, body, raw_path, raw_query):
        s = self.server.standin
        auth = self.headers.get("Authorization")
        if not auth:
            raise S3Error("AccessDenied")
        m = AUTH_RE.match(auth.strip())
        if not m:
            raise S3Error("AuthorizationHeaderMalformed",
                          "The authorization header is malformed; it must be "
                          "AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=….")
        akid, date, region, service, signed, signature = m.groups()
        if akid not in s.keys:
            raise S3Error("InvalidAccessKeyId", extra={"AWSAccessKeyId": akid})
        amz_date = self.headers.get("x-amz-date", "")
        try:
            t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc)
        except ValueError:
            raise S3Error("AccessDenied", "AWS authentication requires a valid Date or "
                                          "x-amz-date header")
        now = datetime.datetime.now(datetime.timezone.utc)
        if abs((now - t).total_seconds()) > 900:
            raise S3Error("RequestTimeTooSkewed")
        if date != amz_date[:8]:
            raise S3Error("AuthorizationHeaderMalformed",
                          "The authorization header is malformed; Invalid credential date. "
                          "Date is not the same as X-Amz-Date: %s." % date)
        if region != s.region:
            raise S3Error("AuthorizationHeaderMalformed",
                          "The authorization header is malformed; the region '%s' is wrong; "
                          "expecting '%s'" % (region, s.region), extra={"Region": s.region})
        if service != "s3":
            raise S3Error("AuthorizationHeaderMalformed",
                          "The authorization header is malformed; incorrect service \"%s\". "
                          "This endpoint belongs to \"s3\"." % service)
        payload = self.headers.get("x-amz-content-sha256")
        if not payload:
            raise S3Error("InvalidRequest")
        names = signed.split(";")
        if names != sorted(names) or not {"host", "x-amz-date", "x-amz-content-sha256"} <= set(
                names):
            raise S3Error("AccessDenied", "There were headers present in the request which "
                                          "were not signed: host, x-amz-date and "
                                          "x-amz-content-sha256 must be")
        for h in self.headers.keys():
            if h.lower().startswith("x-amz-") and h.lower() not in names:
                raise S3Error("AccessDenied", "There were headers present in the request which "
                                              "were not signed", extra={"HeadersNotSigned": h})
        canon_headers = ""
        for n in names:
            values = self.headers.get_all(n)
            if values is None:
                raise S3Error("AccessDenied", "A signed header is missing: %s" % n)
            canon_headers += "%s:%s\n" % (n, ",".join(" ".join(v.split()) for v in values))
        creq = "\n".join([self.command, canonical_uri(raw_path), canonical_query(raw_query),
                          canon_headers, signed, payload])
        scope = "%s/%s/s3/aws4_request" % (date, region)
        sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(creq.encode()).hexdigest()])
        key = signing_key(s.keys[akid], date, region)
        want = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, signature):
            raise S3Error("SignatureDoesNotMatch", extra={
                "AWSAccessKeyId": akid, "StringToSign": sts, "SignatureProvided": signature,
                "CanonicalRequest": creq})
        return self.decode_payload(body, payload, key, amz_date, scope, signature)

    def decode_payload(self, body, payload, key, amz_date, scope, seed):
        if payload == "UNSIGNED-PAYLOAD":
            data = body
        elif re.fullmatch(r"[0-9a-f]{64}", payload):
            if hashlib.sha256(body).hexdigest() != payload:
                raise S3Error("XAmzContentSHA256Mismatch",
                              extra={"ClientComputedContentSHA256": payload,
                                     "S3ComputedContentSHA256":
                                         hashlib.sha256(body).hexdigest()})
            data = body
        elif payload in ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                         "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                         "STREAMING-UNSIGNED-PAYLOAD-TRAILER"):
            data = self.decode_aws_chunked(body, payload, key, amz_date, scope, seed)
        else:
            raise S3Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                                             "STREAMING-… or a hex SHA-256")
        self.check_checksum_headers(self.headers, data)
        return data

    def decode_aws_chunked(self, body, payload, key, amz_date, scope, seed):
        signed = payload.startswith("STREAMING-AWS4")
        prev = seed
        data = b""
        pos = 0
        trailers = {}
        while True:
            eol = body.find(b"\r\n", pos)
            if eol < 0:
                raise S3Error("IncompleteBody")
            head = body[pos:eol].decode("latin-1")
            size_hex, _, ext = head.partition(";")
            size = int(size_hex, 16)
            chunk = body[eol + 2:eol + 2 + size]
            if len(chunk) != size:
                raise S3Error("IncompleteBody")
            if signed:
                m = re.fullmatch(r"chunk-signature=([0-9a-f]{64})", ext.strip())
                if not m:
                    raise S3Error("SignatureDoesNotMatch", "a chunk has no chunk-signature")
                sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev,
                                 EMPTY_SHA256, hashlib.sha256(chunk).hexdigest()])
                want = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
                if not hmac.compare_digest(want, m.group(1)):
                    raise S3Error("SignatureDoesNotMatch",
                                  "a chunk's signature does not match")
                prev = want
            data += chunk
            pos = eol + 2 + size
            if size == 0:
                break
            if body[pos:pos + 2] != b"\r\n":
                raise S3Error("IncompleteBody")
            pos += 2
        # trailers (…-TRAILER): "name:value\r\n" lines, then an empty line
        for line in body[pos:].split(b"\r\n"):
            if b":" in line:
                k, _, v = line.decode("latin-1").partition(":")
                trailers[k.strip().lower()] = v.strip()
        decoded = self.headers.get("x-amz-decoded-content-length")
        if decoded is not None and int(decoded) != len(data):
            raise S3Error("IncompleteBody")
        self.check_checksum_headers(trailers, data)
        return data

    @staticmethod
    def check_checksum_headers(headers, data):
        crc = headers.get("x-amz-checksum-crc32")
        if crc is not None:
            want = base64.b64encode((zlib.crc32(data) & 0xffffffff).to_bytes(4, "big")).decode()
            if crc != want:
                raise S3Error("BadDigest", "The CRC32 you specified did not match the "
                                           "calculated checksum.")
        sha = headers.get("x-amz-checksum-sha256")
        if sha is not None and sha != base64.b64encode(hashlib.sha256(data).digest()).decode():
            raise S3Error("BadDigest", "The SHA256 you specified did not match the calculated "
                                       "checksum.")

    # -- routing --------------------------------------------------------
    def route(self, raw_path):
        """(bucket, key) from the Host header (virtual host) or the path."""
        s = self.server.standin
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        path = urllib.parse.unquote(raw_path)
        suffix = "." + s.vhost_base
        if host.endswith(suffix) and len(host) > len(suffix):
            return host[:-len(suffix)], path[1:]
        bucket, _, key = path[1:].partition("/")
        return bucket, key

    def handle_s3(self):
        s = self.server.standin
        raw_path, _, raw_query = self.path.partition("?")
        self.record = {"method": self.command, "path": self.path,
                       "host": self.headers.get("Host"),
                       "payload": self.headers.get("x-amz-content-sha256"),
                       "status": None, "error": None, "message": None,
                       "authorization": self.headers.get("Authorization"),
                       "signed": sorted(k.lower() for k in self.headers.keys())}
        with s.lock:
            s.requests.append(self.record)
        bucket, key = self.route(raw_path)
        resource = "/%s/%s" % (bucket, key) if key else "/" + bucket
        drop = s.take(s.drops, self.command) if key else None
        try:
            body = self.read_body(drop if self.command == "PUT" else None)
        except Dropped:
            self.record["status"] = "dropped"
            self.close_connection = True
            self.connection.close()
            return
        try:
            data = self.verify(body, raw_path, raw_query)
            forced = s.take(s.fails, self.command)
            if forced:
                raise S3Error(forced.get("code", "InternalError"), forced.get("message", "forced"),
                              status=forced.get("status", 500))
            self.operate(bucket, key, data, raw_query, resource, drop)
        except S3Error as e:
            self.send_error_doc(e, resource)

    def operate(self, bucket, key, data, raw_query, resource, drop):
        s = self.server.standin
        q = dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True))
        with s.lock:
            exists = bucket in s.buckets
        if not key:
            if self.command == "PUT":
                with s.lock:
                    s.buckets.setdefault(bucket, {})
                self.record["status"] = 200
                return self.send(200, b"", extra={"Location": "/" + bucket})
            if not exists:
                raise S3Error("NoSuchBucket", extra={"BucketName": bucket})
            if self.command == "HEAD":
                self.record["status"] = 200
                return self.send(200, head=True)
            if self.command == "GET":
                return self.list_objects(bucket, q)
            raise S3Error("MethodNotAllowed")
        if not exists:
            raise S3Error("NoSuchBucket", extra={"BucketName": bucket})
        objs = s.buckets[bucket]
        if self.command == "PUT":
            now = datetime.datetime.now(datetime.timezone.utc)
            obj = {"data": data, "mtime": now,
                   "content_type": self.headers.get("Content-Type", "binary/octet-stream"),
                   "etag": '"%s"' % hashlib.md5(data).hexdigest()}
            with s.lock:
                objs[key] = obj
            self.record["status"] = 200
            return self.send(200, b"", extra={"ETag": obj["etag"]})
        if self.command in ("GET", "HEAD"):
            with s.lock:
                obj = objs.get(key)
            if obj is None:
                raise S3Error("NoSuchKey", extra={"Key": key})
            self.record["status"] = 200
            extra = {"ETag": obj["etag"],
                     "Last-Modified": obj["mtime"].strftime("%a, %d %b %Y %H:%M:%S GMT")}
            if self.command == "HEAD":
                return self.send(200, obj["data"], obj["content_type"], extra, head=True)
            if drop:
                # the headers and the first after_bytes bytes, then nothing
                self.send_response(200)
                self.send_header("Content-Type", obj["content_type"])
                self.send_header("Content-Length", str(len(obj["data"])))
                self.end_headers()
                self.wfile.write(obj["data"][:drop["after_bytes"]])
                self.wfile.flush()
                self.record["status"] = "dropped"
                self.close_connection = True
                self.connection.close()
                return
            return self.send(200, obj["data"], obj["content_type"], extra)
        if self.command == "DELETE":
            with s.lock:
                objs.pop(key, None)
            self.record["status"] = 204
            return self.send(204, b"")
        raise S3Error("MethodNotAllowed")

    def list_objects(self, bucket, q):
        s = self.server.standin
        if q.get("list-type") != "2":
            raise S3Error("NotImplemented", "only ListObjectsV2 (list-type=2) is implemented")
        prefix = q.get("prefix", "")
        try:
            max_keys = int(q.get("max-keys", "1000"))
        except ValueError:
            raise S3Error("InvalidArgument", "max-keys is not a number")
        max_keys = max(0, min(max_keys, 1000))
        if s.page_max is not None:
            max_keys = min(max_keys, s.page_max)
        after = q.get("start-after", "")
        token = q.get("continuation-token")
        if token is not None:
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except Exception:
                raise S3Error("InvalidArgument", "The continuation token provided is incorrect")
        with s.lock:
            keys = sorted(k for k in s.buckets[bucket]
                          if k.startswith(prefix) and k.encode() > after.encode())
            keys.sort(key=lambda k: k.encode())
            page = [(k, s.buckets[bucket][k]) for k in keys[:max_keys]]
        truncated = len(keys) > max_keys
        parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult '
                 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
                 "<Name>%s</Name><Prefix>%s</Prefix><KeyCount>%d</KeyCount>"
                 "<MaxKeys>%d</MaxKeys><IsTruncated>%s</IsTruncated>"
                 % (xml_escape(bucket), xml_escape(prefix), len(page), max_keys,
                    "true" if truncated else "false")]
        if token is not None:
            parts.append("<ContinuationToken>%s</ContinuationToken>" % xml_escape(token))
        if truncated and page:
            nxt = base64.urlsafe_b64encode(page[-1][0].encode()).decode()
            parts.append("<NextContinuationToken>%s</NextContinuationToken>" % xml_escape(nxt))
        for k, o in page:
            parts.append("<Contents><Key>%s</Key><LastModified>%s</LastModified>"
                         "<ETag>%s</ETag><Size>%d</Size><StorageClass>STANDARD</StorageClass>"
                         "</Contents>"
                         % (xml_escape(k), o["mtime"].strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                            xml_escape(o["etag"]), len(o["data"])))
        parts.append("</ListBucketResult>")
        self.record["status"] = 200
        self.send(200, "".join(parts).encode())

    # -- controls -------------------------------------------------------
    def control(self):
        s = self.server.standin
        path, _, query = self.path.partition("?")
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        spec = json.loads(raw) if raw else {}
        if self.command == "POST" and path == "/_standin/reset":
            s.reset()
        elif self.command == "POST" and path == "/_standin/bucket":
            with s.lock:
                s.buckets.setdefault(spec["name"], {})
        elif self.command == "POST" and path == "/_standin/drop":
            with s.lock:
                s.drops.append({"method": spec.get("method"),
                                "after_bytes": int(spec.get("after_bytes", 0)),
                                "count": int(spec.get("count", 1))})
        elif self.command == "POST" and path == "/_standin/fail":
            with s.lock:
                s.fails.append(dict(spec, count=int(spec.get("count", 1))))
        elif self.command == "POST" and path == "/_standin/page":
            with s.lock:
                s.page_max = spec.get("max")
        elif self.command == "GET" and path == "/_standin/objects":
            return self.send(200, json.dumps(s.objects()).encode(), "application/json")
        elif self.command == "GET" and path == "/_standin/object":
            q = dict(urllib.parse.parse_qsl(query))
            with s.lock:
                o = s.buckets.get(q.get("bucket"), {}).get(q.get("key"))
            if o is None:
                return self.send(404, b"{}", "application/json")
            return self.send(200, o["data"], "application/octet-stream")
        elif self.command == "GET" and path == "/_standin/requests":
            with s.lock:
                return self.send(200, json.dumps(s.requests).encode(), "application/json")
        else:
            return self.send(404, b'{"error": "no such control"}', "application/json")
        self.send(200, b'{"ok": true}', "application/json")

    def dispatch(self):
        if self.path.startswith("/_standin/"):
            return self.control()
        return self.handle_s3()

    do_GET = do_PUT = do_DELETE = do_HEAD = do_POST = dispatch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--key", action="append", required=True, help="AKID:SECRET")
    ap.add_argument("--bucket", action="append", default=[])
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--vhost-base", default="localhost")
    args = ap.parse_args()
    keys = dict(k.split(":", 1) for k in args.key)
    s = S3Standin(keys, args.bucket, args.region, args.vhost_base)
    print(json.dumps({"url": s.url, "port": s.port}), flush=True)
    try:
        s.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
