"""Identity checks over HTTP, through the real Apache and the storage-local
plugin: the whole manual flow (upload -> details -> submit -> the staff
queue -> an audited document view -> bulk approval -> the member
withdraws, ledger verify after), documents encrypted at rest (the stored
object is not the plaintext; a flipped byte is a clean error, never a 200
with part of a document), `deepminectl kyc rekey` keeping every document
readable under the new secret, the retention job, and every kind of bad
input (wrong magic bytes, empty body, a 50 MiB body refused before it is
read, a PDF with a script served only as an attachment, path-like
document names, a hand-in without documents)."""
import glob
import json
import os
import shutil
import socket
import subprocess
import time

import pytest
import requests

from conftest import (CTL, Server, assert_clean_log, bearer, book_address, error_of,
                      queued_mail, register_member, staff)

FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n"
        "DeepMineRateLimit password-reset 10000/1m ip\n"
        "DeepMineRateLimit verify-email 10000/1m ip\n"
        "DeepMineWithdrawalLimits 1000 50000000 80000000\n"
        "DeepMineCron off\n"
        "DeepMineKycRequired id_front selfie\n"
        "DeepMineWithdrawalAddressDelay 0\n")
TRX = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 40
PNG = b"\x89PNG\r\n\x1a\n" + b"IHDR-distinctive-plaintext-" * 5000  # > 2 secretstream chunks
PDF_SCRIPT = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /OpenAction 2 0 R >> endobj\n"
              b"2 0 obj << /S /JavaScript /JS (app.alert('owned')) >> endobj\n%%EOF\n")


@pytest.fixture(scope="module")
def srv():
    s = Server(mpm="event", local_conf=FAST).start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.staff = {}
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def member(s, verified=True):
    body = register_member(s, "k")
    email = body["user"]["email"]
    uid, h = body["user"]["id"], bearer(body)
    if verified:
        [variables] = queued_mail(s, email, "email_verification")
        r = requests.post(s.url + "/api/auth/verify-email", timeout=10,
                          json={"token": variables["token"]})
        assert r.status_code == 200, r.text
    return uid, h


def put_doc(s, h, name, body, ctype):
    return requests.put(s.url + "/api/kyc/documents/" + name, data=body, timeout=30,
                        headers=dict(h, **{"Content-Type": ctype}))


def details(s, h, **over):
    body = {"legal_name": "Ada Lovelace", "date_of_birth": "1990-12-10", "country": "gb",
            "address_line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH"}
    body.update(over)
    return requests.put(s.url + "/api/kyc/details", json=body, headers=h, timeout=10)


def handed_in(s, with_pdf=False):
    """A member whose documents and details are handed in (pending)."""
    uid, h = member(s)
    assert put_doc(s, h, "id_front", JPEG, "image/jpeg").status_code == 200
    assert put_doc(s, h, "selfie", PNG, "image/png").status_code == 200
    if with_pdf:
        assert put_doc(s, h, "proof_of_address", PDF_SCRIPT, "application/pdf").status_code == 200
    assert details(s, h).status_code == 200
    r = requests.post(s.url + "/api/kyc/submit", headers=h, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "pending", r.text
    return uid, h


def stored_object(s, uid, kind):
    [(key,)] = s.sql("SELECT storage_key FROM kyc_documents WHERE user_id = %d AND kind = '%s'"
                     % (uid, kind))
    return os.path.join(s.var, "storage", key)


def verify_ledger(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stderr


def audit_rows(s, action, target):
    r = staff(s, "owner").get(s.url + "/api/admin/audit", timeout=10,
                              params={"action": action, "target_type": "user",
                                      "target_id": str(target)})
    assert r.status_code == 200, r.text
    return r.json()["entries"]


# ---- the whole manual flow ----

def test_manual_flow_upload_submit_queue_view_approve_withdraw(srv):
    uid, h = member(srv)
    r = requests.get(srv.url + "/api/kyc", headers=h, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "none" and body["provider"] == "manual"
    assert body["documents"] == [] and body["missing"] == ["id_front", "selfie"]
    assert body["can_upload"] is True and body["can_submit"] is False
    assert body["resubmission_allowed"] is True and body["reason"] is None

    r = put_doc(srv, h, "id_front", JPEG, "image/jpeg")
    assert r.status_code == 200, r.text
    assert r.json()["document"]["name"] == "id_front"
    assert r.json()["document"]["content_type"] == "image/jpeg"
    assert r.json()["document"]["size"] == len(JPEG)
    assert put_doc(srv, h, "selfie", PNG, "image/png").status_code == 200
    r = details(srv, h)
    assert r.status_code == 200, r.text
    assert r.json()["details"]["country"] == "GB" and r.json()["can_submit"] is True
    docs = r.json()["documents"]
    assert [(d["name"], d["size"]) for d in docs] == [("id_front", len(JPEG)),
                                                      ("selfie", len(PNG))]
    assert all(set(d) == {"name", "content_type", "size", "uploaded_at"} for d in docs)

    # an earlier hand-in of another member: the queue is oldest first
    older, _ = handed_in(srv)
    srv.sql("UPDATE kyc_cases SET submitted_at = submitted_at - 3600 WHERE user_id = %d" % older)
    r = requests.post(srv.url + "/api/kyc/submit", headers=h, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "pending", r.text

    kyc = staff(srv, "kyc")
    r = kyc.get(srv.url + "/api/admin/kyc", params={"status": "pending"}, timeout=10)
    assert r.status_code == 200, r.text
    cases = [c for c in r.json()["cases"] if c["user_id"] in (uid, older)]
    assert [c["user_id"] for c in cases] == [older, uid]
    assert cases[0]["age_seconds"] >= 3600 and cases[0]["documents"] == 2
    assert cases[1]["legal_name"] == "Ada Lovelace" and cases[1]["country"] == "GB"
    assert staff(srv, "finance").get(srv.url + "/api/admin/kyc", timeout=10).status_code == 403

    # a document view: the bytes, the headers, and one audit row
    r = kyc.get(srv.url + "/api/admin/kyc/%d/documents/selfie" % uid, timeout=10)
    assert r.status_code == 200, r.text
    assert r.content == PNG
    assert r.headers["Content-Type"] == "image/png"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Disposition"] == \
        'attachment; filename="member-%d-selfie.png"' % uid
    views = audit_rows(srv, "kyc.document.view", uid)
    assert len(views) == 1
    assert views[0]["after"]["kind"] == "selfie" and views[0]["after"]["size"] == len(PNG)
    assert views[0]["after"]["by"] == "staff" and views[0]["staff"] is not None

    # bulk: one approved, one not under review — each its own result
    none_uid, _ = member(srv)
    r = kyc.post(srv.url + "/api/admin/kyc/decisions", timeout=10,
                 json={"ids": [uid, none_uid], "decision": "approve"})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert res[0] == {"id": uid, "ok": True, "kyc_status": "approved"}
    assert res[1]["id"] == none_uid and res[1]["ok"] is False
    assert res[1]["error"]["code"] == "conflict"
    assert srv.sql("SELECT COUNT(*) FROM mail_queue WHERE template = 'kyc_approved' AND "
                   "recipient = (SELECT email FROM users WHERE id = %d)" % uid) == [(1,)]
    assert len(audit_rows(srv, "user.kyc", uid)) == 2  # submitted, approved

    r = requests.get(srv.url + "/api/kyc", headers=h, timeout=10)
    assert r.json()["status"] == "approved" and r.json()["can_upload"] is False
    assert put_doc(srv, h, "selfie", PNG, "image/png").status_code == 409

    # the member may now withdraw
    srv.ctl("ledger", "adjust", "--user", str(uid), "--amount", "20000000",
            "--reason", "test funds")
    book_address(srv, h, TRX, mature=False)  # usable at once: DeepMineWithdrawalAddressDelay 0
    r = requests.post(srv.url + "/api/withdrawals", headers=h, timeout=10,
                      json={"amount_micros": 5000000, "destination": TRX, "network": "trc20"})
    assert r.status_code == 201, r.text
    verify_ledger(srv)


def test_documents_are_encrypted_at_rest(srv):
    uid, _ = handed_in(srv)
    path = stored_object(srv, uid, "selfie")
    with open(path, "rb") as f:
        stored = f.read()
    assert len(stored) == 24 + len(PNG) + 3 * 17  # header + 3 chunks of overhead
    assert b"IHDR-distinctive-plaintext" not in stored and b"PNG" not in stored[:64]
    with open(stored_object(srv, uid, "id_front"), "rb") as f:
        assert JPEG[:64] not in f.read()
    # nothing of the document in the database either
    [(wrapped, key_id)] = srv.sql("SELECT wrapped_key, key_id FROM kyc_documents WHERE "
                                  "user_id = %d AND kind = 'selfie'" % uid)
    assert len(wrapped) == 96 and len(key_id) == 16


def test_a_flipped_byte_is_an_error_never_a_partial_document(srv):
    uid, _ = handed_in(srv)
    path = stored_object(srv, uid, "selfie")
    with open(path, "r+b") as f:
        f.seek(24 + 65536 + 17 + 100)  # inside the second chunk
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x01]))
    srv.expect_log(r"DM01252: kyc: member %d selfie: .* failed its integrity check" % uid)
    srv.expect_log(r"DM00020: GET /api/admin/kyc/%d/documents/selfie failed: .* integrity" % uid)
    r = staff(srv, "kyc").get(srv.url + "/api/admin/kyc/%d/documents/selfie" % uid, timeout=10)
    assert r.status_code == 500
    assert error_of(r)["code"] == "internal"
    assert b"IHDR" not in r.content
    assert audit_rows(srv, "kyc.document.view", uid) == []  # a failed view is no view


def test_pdf_with_a_script_is_stored_and_served_only_as_an_attachment(srv):
    uid, _ = handed_in(srv, with_pdf=True)
    r = staff(srv, "kyc").get(srv.url + "/api/admin/kyc/%d/documents/proof_of_address" % uid,
                              timeout=10)
    assert r.status_code == 200 and r.content == PDF_SCRIPT
    assert r.headers["Content-Type"] == "application/pdf"
    assert r.headers["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"


# ---- bad input ----

def test_wrong_magic_bytes_empty_body_and_unknown_types_are_refused(srv):
    uid, h = member(srv)
    r = put_doc(srv, h, "selfie", JPEG, "image/png")
    assert r.status_code == 400 and error_of(r)["field"] == "content_type"
    r = put_doc(srv, h, "selfie", b"GIF89a" + b"\0" * 100, "image/gif")
    assert r.status_code == 400 and error_of(r)["field"] == "content_type"
    r = put_doc(srv, h, "selfie", b"<html><script>alert(1)</script>", "application/pdf")
    assert r.status_code == 400 and error_of(r)["field"] == "content_type"
    r = put_doc(srv, h, "selfie", b"", "image/png")
    assert r.status_code == 400 and error_of(r)["field"] == "body"
    assert srv.sql("SELECT COUNT(*) FROM kyc_documents WHERE user_id = %d" % uid) == [(0,)]
    assert glob.glob(os.path.join(srv.var, "storage", "kyc", str(uid), "*")) == []


def raw_put(s, token, headers, first_bytes):
    """Sends a PUT's headers and first_bytes only; the server's answer."""
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=20)
    try:
        req = ("PUT /api/kyc/documents/selfie HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Authorization: Bearer %s\r\nContent-Type: image/png\r\n%s\r\n"
               % (token, "".join("%s: %s\r\n" % kv for kv in headers)))
        sock.sendall(req.encode() + first_bytes)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        sock.close()


def test_a_50_mib_body_is_refused_before_it_is_read(srv):
    uid, h = member(srv)
    token = h["Authorization"].split(" ", 1)[1]
    # the declared length alone: only 8 bytes of 50 MiB are ever sent
    answer = raw_put(srv, token, [("Content-Length", str(50 * 1024 * 1024))], PNG[:8])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # chunked, no length: counted while read, refused past 10 MiB
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    sent = 0
    try:
        sock.sendall(("PUT /api/kyc/documents/selfie HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Authorization: Bearer %s\r\nContent-Type: image/png\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n" % token).encode())
        block = PNG[:8] + b"\0" * (1024 * 1024 - 8)
        try:
            for _ in range(50):
                sock.sendall(b"%x\r\n" % len(block) + block + b"\r\n")
                sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = sock.recv(65536)
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 413"), data[:200]
    assert sent < 50 * 1024 * 1024 or data.startswith(b"HTTP/1.1 413")
    assert srv.sql("SELECT COUNT(*) FROM kyc_documents WHERE user_id = %d" % uid) == [(0,)]


def test_path_like_and_unknown_document_names_are_404(srv):
    uid, h = member(srv)
    for name in ("passport", "selfie.png", "SELFIE", "selfie;x", "id_front%20"):
        r = put_doc(srv, h, name, JPEG, "image/jpeg")
        assert r.status_code == 404, (name, r.status_code)
        assert error_of(r)["code"] == "not_found"
    # dot segments are resolved before routing: never a document route
    for name in ("..", "%2e%2e"):
        r = put_doc(srv, h, name, JPEG, "image/jpeg")
        assert r.status_code in (404, 405), (name, r.status_code)
        assert error_of(r)["code"] in ("not_found", "method_not_allowed")
    # a NUL never reaches the module either
    assert put_doc(srv, h, "selfie%00", JPEG, "image/jpeg").status_code == 404
    # an encoded slash never reaches the module: Apache answers 404 itself
    # (AllowEncodedSlashes off)
    r = put_doc(srv, h, "..%2F..%2Fetc%2Fpasswd", JPEG, "image/jpeg")
    assert r.status_code == 404
    r = staff(srv, "kyc").get(srv.url + "/api/admin/kyc/1/documents/..%2Fsecret.key", timeout=10)
    assert r.status_code == 404
    r = staff(srv, "kyc").get(srv.url + "/api/admin/kyc/1/documents/secret.key", timeout=10)
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    assert srv.sql("SELECT COUNT(*) FROM kyc_documents WHERE user_id = %d" % uid) == [(0,)]
    r = staff(srv, "kyc").get(srv.url + "/api/admin/kyc/abc/documents/selfie", timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "user"


def test_submit_without_documents_or_details_is_refused(srv):
    _, h = member(srv)
    r = requests.post(srv.url + "/api/kyc/submit", headers=h, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "id_front"
    assert put_doc(srv, h, "id_front", JPEG, "image/jpeg").status_code == 200
    assert put_doc(srv, h, "selfie", PNG, "image/png").status_code == 200
    r = requests.post(srv.url + "/api/kyc/submit", headers=h, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "details"
    r = details(srv, h, date_of_birth="2015-01-01")
    assert r.status_code == 400 and error_of(r)["field"] == "date_of_birth"
    r = details(srv, h, legal_name="<script>")
    assert r.status_code == 400 and error_of(r)["field"] == "legal_name"
    r = details(srv, h, address_line1="a\r\nb")
    assert r.status_code == 400 and error_of(r)["field"] == "address_line1"
    r = requests.get(srv.url + "/api/kyc", headers=h, timeout=10)
    assert r.json()["status"] == "none" and r.json()["details"]["legal_name"] is None


def test_start_without_a_provider_says_manual_review(srv):
    _, h = member(srv)
    r = requests.post(srv.url + "/api/kyc/start", headers=h, timeout=10)
    assert r.status_code == 409
    assert "reviewed by staff" in error_of(r)["message"]


def test_decisions_need_a_reason_to_refuse_and_resubmission_reopens(srv):
    uid, h = handed_in(srv)
    kyc = staff(srv, "kyc")
    r = kyc.post(srv.url + "/api/admin/kyc/decisions", timeout=10,
                 json={"ids": [uid], "decision": "reject"})
    assert r.status_code == 400 and error_of(r)["field"] == "reason"
    r = kyc.post(srv.url + "/api/admin/kyc/decisions", timeout=10,
                 json={"ids": [uid], "decision": "bless", "reason": "x"})
    assert r.status_code == 400 and error_of(r)["field"] == "decision"
    r = kyc.post(srv.url + "/api/admin/kyc/decisions", timeout=10,
                 json={"ids": [uid], "decision": "request_resubmission",
                       "reason": "The selfie is blurred."})
    assert r.json()["results"] == [{"id": uid, "ok": True, "kyc_status": "resubmission"}]
    [(variables,)] = srv.sql("SELECT variables FROM mail_queue WHERE template = "
                             "'kyc_resubmission' AND recipient = (SELECT email FROM users "
                             "WHERE id = %d)" % uid)
    assert json.loads(variables)["reason"] == "The selfie is blurred."
    body = requests.get(srv.url + "/api/kyc", headers=h, timeout=10).json()
    assert body["status"] == "resubmission" and body["reason"] == "The selfie is blurred."
    assert body["can_upload"] is True and body["resubmission_allowed"] is True
    assert put_doc(srv, h, "selfie", PNG[:5000], "image/png").status_code == 200
    r = requests.post(srv.url + "/api/kyc/submit", headers=h, timeout=10)
    assert r.json()["status"] == "pending"
    # final rejection: no way back for the member
    r = kyc.post(srv.url + "/api/admin/kyc/decisions", timeout=10,
                 json={"ids": [uid], "decision": "reject", "reason": "Forged document."})
    assert r.json()["results"][0]["kyc_status"] == "rejected"
    body = requests.get(srv.url + "/api/kyc", headers=h, timeout=10).json()
    assert body["resubmission_allowed"] is False and body["can_upload"] is False
    assert requests.post(srv.url + "/api/kyc/submit", headers=h, timeout=10).status_code == 409


def test_the_old_patch_route_still_sets_the_status(srv):
    uid, _ = member(srv)
    r = staff(srv, "kyc").patch(srv.url + "/api/admin/users/%d/kyc" % uid,
                                json={"status": "approved"}, timeout=10)
    assert r.status_code == 200 and r.json()["user"]["kyc_status"] == "approved"
    r = staff(srv, "kyc").patch(srv.url + "/api/admin/users/%d/kyc" % uid,
                                json={"status": "maybe"}, timeout=10)
    assert r.status_code == 400 and error_of(r)["field"] == "status"


def test_retention_job_deletes_expired_documents_and_audits(srv):
    uid, h = handed_in(srv)
    keep, _ = handed_in(srv)
    r = staff(srv, "kyc").post(srv.url + "/api/admin/kyc/decisions", timeout=10,
                               json={"ids": [uid], "decision": "reject", "reason": "Forged."})
    assert r.json()["results"][0]["ok"] is True
    paths = [stored_object(srv, uid, k) for k in ("id_front", "selfie")]
    srv.sql("UPDATE kyc_cases SET decided_at = decided_at - 91 * 86400, "
            "updated_at = updated_at - 91 * 86400 WHERE user_id = %d" % uid)
    r = staff(srv, "owner").post(srv.url + "/api/admin/jobs/kyc-retention/run", json={},
                                 timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    assert srv.sql("SELECT COUNT(*) FROM kyc_documents WHERE user_id = %d" % uid) == [(0,)]
    assert all(not os.path.exists(p) for p in paths)
    assert srv.sql("SELECT COUNT(*) FROM kyc_documents WHERE user_id = %d" % keep) == [(2,)]
    [row] = audit_rows(srv, "kyc.documents.expired", uid)
    assert sorted(d["kind"] for d in row["after"]["documents"]) == ["id_front", "selfie"]
    # the decision stays in the audit log
    assert len(audit_rows(srv, "user.kyc", uid)) == 2


# ---- rotation (last: restarts the server under a new secret) ----

def test_rekey_keeps_every_document_readable_under_the_new_secret(srv):
    uid, _ = handed_in(srv, with_pdf=True)
    new_key = os.path.join(srv.var, "secret-2.key")
    srv.ctl("keygen", new_key)
    old_key = os.path.join(srv.var, "secret.key")
    total = srv.sql("SELECT COUNT(*) FROM kyc_documents")[0][0]
    r = srv.ctl("kyc", "rekey", "--key-file", old_key, "--new-key-file", new_key, "--batch", "2")
    assert "%d re-wrapped" % total in r.stdout, r.stdout
    # again: nothing left to do (resumable)
    r = srv.ctl("kyc", "rekey", "--key-file", old_key, "--new-key-file", new_key)
    assert "0 re-wrapped, %d already under the new secret" % total in r.stdout, r.stdout
    # the running server still has the old secret: a clear 503, not garbage
    srv.expect_log(r"DM01253: kyc: member %d selfie: .* wrapped under secret key id" % uid)
    srv.expect_log(r"DM00020: GET /api/admin/kyc/%d/documents/selfie failed: .* wrapped under"
                   % uid)
    # the document flipped on purpose earlier stays unreadable after the restart
    srv.expect_log(r"DM01252: kyc: member \d+ selfie: .* failed its integrity check")
    srv.expect_log(r"DM00020: GET /api/admin/kyc/\d+/documents/selfie failed: .* integrity")
    r = staff(srv, "kyc").get(srv.url + "/api/admin/kyc/%d/documents/selfie" % uid, timeout=10)
    assert r.status_code == 503 and "rekey" in error_of(r)["message"]
    # the new secret in the configuration, a restart: every document reads
    srv.stop()
    srv.write_local_conf(FAST + "DeepMineSecretKeyFile %s\n" % new_key)
    srv.start()
    srv.staff = {}
    kyc = staff(srv, "kyc")
    for (user, kind) in srv.sql("SELECT user_id, kind FROM kyc_documents ORDER BY id"):
        r = kyc.get(srv.url + "/api/admin/kyc/%d/documents/%s" % (user, kind), timeout=10)
        if user == uid:
            assert r.status_code == 200
            assert r.content == {"id_front": JPEG, "selfie": PNG,
                                 "proof_of_address": PDF_SCRIPT}[kind]
        else:
            # the one flipped on purpose above stays broken; every other opens
            assert r.status_code in (200, 500), r.text
    verify_ledger(srv)
