"""The KYC provider plugins in a real Apache against their stand-ins
(tests/standins/sumsub_standin.py, idenfy_standin.py), which check our
requests and sign their webhooks exactly as PROVIDERS.md documents:

Sumsub: applicantReviewed GREEN approves the member once (a replay is a 200
that changes nothing), RED+RETRY asks for resubmission, RED+FINAL rejects,
a later RED after a GREEN revokes the approval, an older verdict delivered
after a newer one is stale, SHA-512 digests verify, a forged digest is 400
and changes nothing, a webhook configured for SHA-1 is refused with the
sentence telling the operator to switch it.
iDenfy: a non-final event is ignored and the final one acts, SUSPECTED goes
to staff review, EXPIRED lets the member start again, DENIED rejects, a
replay and a forged signature change nothing.
Polling (kyc-poll, under the fake clock): a case pending longer than
DeepMineKycPollAfter whose webhook was lost is settled through the signed
status call; iDenfy is asked at most once per poll_every_s."""
import os
import re
import sys

import pytest

import requests

from conftest import PLUGINS, ROOT, Server, assert_clean_log, bearer, register_member, staff

sys.path.insert(0, os.path.join(ROOT, "tests", "standins"))
from idenfy_standin import IdenfyStandin  # noqa: E402
from sumsub_standin import SumsubStandin, request_signature  # noqa: E402

T0 = 1800000000  # the fake clock's start (2027-01-15)
APP_TOKEN = "sbx:it-app-token-4f1c2e"
SECRET_KEY = "it-sumsub-secret-key-9b8a"
SUMSUB_HOOK = "it-sumsub-webhook-secret-77c3"
IDENFY_KEY = "it-idenfy-key"
IDENFY_SECRET = "it-idenfy-secret-3c9d"
IDENFY_HOOK = "it-idenfy-signing-key-5e2a"
SHA1_SENTENCE = ("this Sumsub webhook is signed with HMAC-SHA1 (X-Payload-Digest-Alg "
                 "HMAC_SHA1_HEX), which DeepMine does not accept: in Sumsub's dashboard "
                 "(Dev space, Webhooks) set the webhook's signature algorithm to SHA256 "
                 "(or SHA512)")
FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit webhook 100000/1m ip\n"
        "DeepMineCron off\n"
        "DeepMineKycPollAfter 3600\n"
        "DeepMineKycProvider sumsub\n")


def secret_file(s, name, value):
    path = os.path.join(s.var, name)
    with open(path, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)
    return path


@pytest.fixture(scope="module")
def kyc():
    sumsub = SumsubStandin(APP_TOKEN, SECRET_KEY, SUMSUB_HOOK).start()
    idenfy = IdenfyStandin(IDENFY_KEY, IDENFY_SECRET, IDENFY_HOOK).start()
    s = Server(clock=T0, local_conf=FAST)
    s.expected_log.append(re.compile(r"DM00048"))  # DeepMineCron off
    conf = FAST
    conf += ("DeepMinePlugin kyc sumsub \"%s/kyc-sumsub.so\"\n"
             "DeepMinePluginSet sumsub app_token \"file:%s\"\n"
             "DeepMinePluginSet sumsub secret_key \"file:%s\"\n"
             "DeepMinePluginSet sumsub webhook_secret \"file:%s\"\n"
             "DeepMinePluginSet sumsub api_base %s\n"
             "DeepMinePluginSet sumsub timeout_ms 5000\n"
             % (PLUGINS, secret_file(s, "sumsub-token", APP_TOKEN),
                secret_file(s, "sumsub-secret", SECRET_KEY),
                secret_file(s, "sumsub-hook", SUMSUB_HOOK), sumsub.url))
    conf += ("DeepMinePlugin kyc idenfy \"%s/kyc-idenfy.so\"\n"
             "DeepMinePluginSet idenfy api_key %s\n"
             "DeepMinePluginSet idenfy api_secret \"file:%s\"\n"
             "DeepMinePluginSet idenfy webhook_secret \"file:%s\"\n"
             "DeepMinePluginSet idenfy api_base %s\n"
             "DeepMinePluginSet idenfy timeout_ms 5000\n"
             % (PLUGINS, IDENFY_KEY, secret_file(s, "idenfy-secret", IDENFY_SECRET),
                secret_file(s, "idenfy-hook", IDENFY_HOOK), idenfy.url))
    s.write_local_conf(conf)
    s.start()
    sumsub.webhook_url = s.url + "/api/webhooks/sumsub"
    idenfy.webhook_url = s.url + "/api/webhooks/idenfy"
    s.sumsub, s.idenfy = sumsub, idenfy
    s.terms = s.get("/api/legal/terms").json()["version"]
    yield s
    s.stop()
    sumsub.stop()
    idenfy.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def member(s):
    return str(register_member(s, "kyc")["user"]["id"])


def kyc_status(s, uid):
    return s.sql("SELECT kyc_status FROM users WHERE id = %s" % uid)[0][0]


def audits(s, uid):
    return s.sql("SELECT count(*) FROM audit_log WHERE action = 'user.kyc' AND target_id = '%s'"
                 % uid)[0][0]


def events(s, uid):
    return s.sql("SELECT plugin, status, outcome, source FROM kyc_events WHERE user_id = %s "
                 "ORDER BY id" % uid)


def verdict(s, uid):
    return s.sql("SELECT plugin, verdict FROM kyc_provider_state WHERE user_id = %s" % uid)[0]


def ok(delivery, outcome, duplicate=False):
    assert delivery["status"] == 200, delivery
    assert delivery["answer"] == {"received": True, "duplicate": duplicate, "outcome": outcome}


def run_poll(s):
    """Runs kyc-poll now (DeepMineCron off) as a freshly logged-in owner:
    the fake clock's jumps end staff sessions."""
    s.staff = {}
    r = staff(s, "owner").post(s.url + "/api/admin/jobs/kyc-poll/run", json={}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


# ---- Sumsub ----


def test_sumsub_start_creates_the_applicant_and_hands_out_a_websdk_token(kyc):
    b = register_member(kyc, "kyc")
    uid = str(b["user"]["id"])
    before = len(kyc.sumsub.requests)
    r = requests.post(kyc.url + "/api/kyc/start", headers=bearer(b), timeout=15)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["provider"] == "sumsub" and body["token"].startswith("_act-sbx-")
    assert "url" not in body
    sent = kyc.sumsub.requests[before:]
    # the stand-in checked token, timestamp, signature and content type
    assert [(m, p.split("?")[0], v) for m, p, _, v in sent] == [
        ("POST", "/resources/applicants", "ok"), ("POST", "/resources/accessTokens/sdk", "ok")]
    assert sent[0][1] == "/resources/applicants?levelName=basic-kyc-level"
    assert '"externalUserId":"%s"' % uid in sent[0][2]
    app = kyc.sumsub.by_external(uid)["id"]
    assert kyc.sql("SELECT plugin, provider_ref, verdict FROM kyc_provider_state WHERE "
                   "user_id = %s" % uid) == [("sumsub", app, "pending")]
    assert kyc_status(kyc, uid) == "pending"
    # a second start finds the applicant (409 → lookup by externalUserId)
    r = requests.post(kyc.url + "/api/kyc/start", headers=bearer(b), timeout=15)
    assert r.status_code == 200, r.text
    assert [v for _, _, _, v in kyc.sumsub.requests[before:]] == ["ok"] * 5
    assert len(kyc.sumsub.applicants) == len({a["externalUserId"]
                                              for a in kyc.sumsub.applicants.values()})
    ok(kyc.sumsub.review(uid, "GREEN"), "applied")
    assert kyc_status(kyc, uid) == "approved"


def test_sumsub_green_approves_once_and_a_replay_changes_nothing(kyc):
    uid = member(kyc)
    hook = kyc.sumsub.review(uid, "GREEN", send=False)
    ok(kyc.sumsub.deliver(hook), "applied")
    assert kyc_status(kyc, uid) == "approved"
    ok(kyc.sumsub.deliver(hook), "applied", duplicate=True)
    assert events(kyc, uid) == [("sumsub", "approved", "applied", "webhook")]
    assert audits(kyc, uid) == 1
    assert kyc.sql("SELECT count(*) FROM mail_queue WHERE template = 'kyc_approved' AND "
                   "recipient = (SELECT email FROM users WHERE id = %s)" % uid) == [(1,)]
    [(ref,)] = kyc.sql("SELECT provider_ref FROM kyc_provider_state WHERE user_id = %s" % uid)
    assert ref == kyc.sumsub.by_external(uid)["id"]


def test_sumsub_red_retry_asks_for_resubmission_with_sha512(kyc):
    uid = member(kyc)
    d = kyc.sumsub.review(uid, "RED", "RETRY", "The photo is blurred.", alg="HMAC_SHA512_HEX")
    ok(d, "applied")
    assert kyc_status(kyc, uid) == "resubmission"
    [(reason,)] = kyc.sql("SELECT reason FROM kyc_cases WHERE user_id = %s" % uid)
    assert reason == "The photo is blurred."
    assert verdict(kyc, uid) == ("sumsub", "resubmission")
    # the member tries again: applicantPending reopens the case
    ok(kyc.sumsub.pending(uid), "applied")
    assert kyc_status(kyc, uid) == "pending"


def test_sumsub_red_final_rejects_for_good(kyc):
    uid = member(kyc)
    ok(kyc.sumsub.review(uid, "RED", "FINAL", "Forged document."), "applied")
    assert kyc_status(kyc, uid) == "rejected"
    assert verdict(kyc, uid) == ("sumsub", "rejected")
    # a pending after a final rejection does not reopen it
    ok(kyc.sumsub.pending(uid), "recorded")
    assert kyc_status(kyc, uid) == "rejected"


def test_sumsub_a_late_red_after_green_revokes_the_approval(kyc):
    uid = member(kyc)
    ok(kyc.sumsub.review(uid, "GREEN"), "applied")
    assert kyc_status(kyc, uid) == "approved"
    ok(kyc.sumsub.review(uid, "RED", "FINAL", "Fraud found after the review."), "applied")
    assert kyc_status(kyc, uid) == "rejected"
    assert [e[1:3] for e in events(kyc, uid)] == [("approved", "applied"),
                                                   ("rejected", "applied")]


def test_sumsub_out_of_order_delivery_keeps_the_newest_verdict(kyc):
    uid = member(kyc)
    t = kyc.sumsub.tick()
    green = kyc.sumsub.review(uid, "GREEN", at_ms=t, send=False)
    red = kyc.sumsub.review(uid, "RED", "FINAL", at_ms=t + 5000, send=False)
    ok(kyc.sumsub.deliver(red), "applied")
    ok(kyc.sumsub.deliver(green), "stale")
    assert kyc_status(kyc, uid) == "rejected"
    assert audits(kyc, uid) == 1


def test_sumsub_forged_digest_is_refused_and_changes_nothing(kyc):
    kyc.expect_log(r"DM00650: webhook for plugin sumsub refused: the X-Payload-Digest does not")
    uid = member(kyc)
    hook = kyc.sumsub.review(uid, "GREEN", send=False)
    d = kyc.sumsub.forged(hook)
    assert d["status"] == 400
    assert d["answer"]["error"]["code"] == "invalid"
    assert "X-Payload-Digest does not match the body" in d["answer"]["error"]["message"]
    assert kyc_status(kyc, uid) == "none"
    assert events(kyc, uid) == [] and audits(kyc, uid) == 0


def test_sumsub_sha1_webhook_is_refused_with_the_sentence_to_switch(kyc):
    kyc.expect_log(r"DM00650: webhook for plugin sumsub refused: this Sumsub webhook is signed "
                   r"with HMAC-SHA1")
    uid = member(kyc)
    d = kyc.sumsub.review(uid, "GREEN", alg="HMAC_SHA1_HEX")
    assert d["status"] == 400
    assert d["answer"]["error"]["message"] == SHA1_SENTENCE
    assert kyc_status(kyc, uid) == "none"
    assert SHA1_SENTENCE in kyc.log_text()
    assert re.search(r"DM00650: webhook for plugin sumsub refused: this Sumsub webhook is "
                     r"signed with HMAC-SHA1", kyc.log_text())


def test_sumsub_standin_refuses_a_request_signed_with_another_secret(kyc):
    # the stand-in's check is real: the same request under a wrong secret
    import time
    import requests
    ts = str(int(time.time()))
    path = "/resources/applicants/nope/status"
    for secret, want in ((SECRET_KEY, 404), (SECRET_KEY + "x", 401)):
        r = requests.get(kyc.sumsub.url + path, timeout=5, headers={
            "X-App-Token": APP_TOKEN, "X-App-Access-Ts": ts, "Content-Type": "application/json",
            "X-App-Access-Sig": request_signature(secret, ts, "GET", path, b"")})
        assert r.status_code == want, r.text


# ---- iDenfy ----


def test_idenfy_non_final_is_ignored_then_final_approves(kyc):
    uid = member(kyc)
    ok(kyc.idenfy.finish(uid, "APPROVED", final=False), "ignored")
    assert kyc_status(kyc, uid) == "none"
    ok(kyc.idenfy.finish(uid, "APPROVED"), "applied")
    assert kyc_status(kyc, uid) == "approved"
    assert verdict(kyc, uid) == ("idenfy", "approved")


def test_idenfy_suspected_goes_to_staff_review(kyc):
    uid = member(kyc)
    ok(kyc.idenfy.finish(uid, "SUSPECTED"), "applied")
    assert kyc_status(kyc, uid) == "review"
    assert verdict(kyc, uid) == ("idenfy", "needs_review")
    # staff review is not a provider case to poll
    assert kyc.sql("SELECT pending_since FROM kyc_provider_state WHERE user_id = %s"
                   % uid) == [(None,)]


def test_idenfy_expired_lets_the_member_start_again(kyc):
    uid = member(kyc)
    ok(kyc.idenfy.finish(uid, "EXPIRED", type_="identificationExpired"), "applied")
    assert kyc_status(kyc, uid) == "none"
    assert verdict(kyc, uid) == ("idenfy", "expired")


def test_idenfy_denied_rejects_and_replay_and_forgery_change_nothing(kyc):
    kyc.expect_log(r"DM00650: webhook for plugin idenfy refused: the Idenfy-Signature does not")
    uid = member(kyc)
    hook = kyc.idenfy.finish(uid, "DENIED", send=False)
    d = kyc.idenfy.forged(hook)
    assert d["status"] == 400
    assert "Idenfy-Signature does not match the body" in d["answer"]["error"]["message"]
    assert kyc_status(kyc, uid) == "none"
    ok(kyc.idenfy.deliver(hook), "applied")
    assert kyc_status(kyc, uid) == "rejected"
    ok(kyc.idenfy.deliver(hook), "applied", duplicate=True)
    assert len(events(kyc, uid)) == 1 and audits(kyc, uid) == 1


# ---- polling ----


def test_poll_settles_a_sumsub_case_whose_webhook_was_lost(kyc):
    uid = member(kyc)
    ok(kyc.sumsub.pending(uid), "applied")
    assert kyc_status(kyc, uid) == "pending"
    app = kyc.sumsub.by_external(uid)["id"]
    kyc.sumsub.review(uid, "GREEN", send=False)  # the webhook is lost
    status_path = "/resources/applicants/%s/status" % app
    asked = lambda: [r for r in kyc.sumsub.requests if r[1] == status_path]  # noqa: E731
    kyc.advance(600)
    run_poll(kyc)
    assert asked() == [] and kyc_status(kyc, uid) == "pending"  # not due yet
    kyc.advance(3601)
    run_poll(kyc)
    assert [(m, v) for m, _, _, v in asked()] == [("GET", "ok")]
    assert kyc_status(kyc, uid) == "approved"
    assert events(kyc, uid)[-1] == ("sumsub", "approved", "applied", "poll")
    # decided: never asked again
    kyc.advance(3601)
    run_poll(kyc)
    assert len(asked()) == 1


def test_poll_asks_idenfy_at_most_once_per_six_hours(kyc):
    uid = member(kyc)
    ref = kyc.idenfy.verification(uid)
    # what POST /api/kyc/start records (dm_kyc_provider_started)
    kyc.sql("INSERT INTO kyc_provider_state (user_id, plugin, provider_ref, verdict, newest_ms, "
            "pending_since, updated_at) VALUES (%s, 'idenfy', '%s', 'pending', %d, %d, %d)"
            % (uid, ref, kyc.now * 1000, kyc.now, kyc.now))
    kyc.sql("UPDATE users SET kyc_status = 'pending' WHERE id = %s" % uid)
    kyc.advance(3601)
    run_poll(kyc)
    assert kyc.idenfy.status_calls.get(ref) == 1
    assert kyc_status(kyc, uid) == "pending"  # still ACTIVE at iDenfy
    kyc.idenfy.set_status(ref, "APPROVED")
    for _ in range(5):  # five hours: not asked again
        kyc.advance(3600)
        run_poll(kyc)
    assert kyc.idenfy.status_calls.get(ref) == 1
    kyc.advance(3601)
    run_poll(kyc)
    assert kyc.idenfy.status_calls.get(ref) == 2
    assert kyc_status(kyc, uid) == "approved"
    assert events(kyc, uid) == [("idenfy", "approved", "applied", "poll")]
    assert all(v == "ok" for _, _, _, v in kyc.idenfy.requests)
