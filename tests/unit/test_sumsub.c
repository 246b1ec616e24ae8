/*
 * The Sumsub KYC plugin (plugins/kyc-sumsub) through the real plugin host
 * and its typed calls (plugins/kyc.h), with a fake HTTP client under the
 * host's http():
 * - X-Payload-Digest under HMAC_SHA256_HEX (also the default when the
 *   algorithm header is absent) and HMAC_SHA512_HEX, against digests
 *   computed here by OpenSSL; HMAC_SHA1_HEX refused, even correctly
 *   signed, with the sentence telling the operator to switch; unknown
 *   algorithms, missing, upper-case, short and forged digests refused;
 * - applicantReviewed GREEN / RED+RETRY / RED+FINAL, the event id
 *   (correlationId/type), createdAtMs as Unix ms, the applicant id;
 * - start: the signed applicant creation and access-token calls (the
 *   signature recomputed here from the recorded request), 409 → lookup by
 *   externalUserId; query through the status endpoint.
 *
 * Needs $DM_PLUGINS (kyc-sumsub.so).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "plugins/http_client.h"
#include "plugins/kyc.h"
#include "plugins/plugin_host.h"

#define APP_TOKEN "sbx:unit-app-token-5d41402abc4b2a76"
#define SECRET_KEY "unit-secret-key-7e2f"
#define HOOK_SECRET "unit-webhook-secret-0a9b"
#define BASE "http://127.0.0.1:9"
#define APPLICANT "5cb56e8e0a975a35f333cb83"

static apr_pool_t *pool;
static dm_plugin_host *host;

/* ---- a fake HTTP client ---- */

typedef struct answer {
    int status;
    const char *body;
} answer;

typedef struct seen_req {
    char method[16], url[512], body[2048];
    char token[128], ts[32], sig[128], ctype[64];
} seen_req;

static answer answers[8];
static seen_req seen[8];
static int n_answers, next_answer, performed;

static void copy_header(const dm_http_client_request *req, const char *name, char *out, size_t n)
{
    out[0] = '\0';
    for (size_t i = 0; i < req->n_headers; i++) {
        if (req->headers[i].name.len == strlen(name) &&
            strncmp(req->headers[i].name.ptr, name, strlen(name)) == 0) {
            snprintf(out, n, "%.*s", (int)req->headers[i].value.len, req->headers[i].value.ptr);
        }
    }
}

static dm_err *fake_perform(apr_pool_t *p, const dm_http_client_request *req,
                            dm_http_client_response *resp)
{
    answer a = {0, NULL};
    seen_req *s = &seen[performed < 8 ? performed : 7];

    performed++;
    snprintf(s->method, sizeof(s->method), "%s", req->method);
    snprintf(s->url, sizeof(s->url), "%s", req->url);
    snprintf(s->body, sizeof(s->body), "%.*s", (int)req->body.len,
             req->body.ptr ? req->body.ptr : "");
    copy_header(req, "X-App-Token", s->token, sizeof(s->token));
    copy_header(req, "X-App-Access-Ts", s->ts, sizeof(s->ts));
    copy_header(req, "X-App-Access-Sig", s->sig, sizeof(s->sig));
    copy_header(req, "Content-Type", s->ctype, sizeof(s->ctype));
    if (next_answer < n_answers) {
        a = answers[next_answer++];
    }
    if (a.status == 0) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "%s %s: connection refused", req->method,
                           req->url);
    }
    resp->status = a.status;
    resp->body.ptr = a.body ? a.body : "";
    resp->body.len = strlen(resp->body.ptr);
    resp->headers = NULL;
    resp->n_headers = 0;
    return NULL;
}

static const dm_http_client_impl fake = {
    .name = "fake",
    .init = NULL,
    .perform = fake_perform,
};

static void answer_with(int status, const char *body)
{
    answers[n_answers].status = status;
    answers[n_answers].body = body;
    n_answers++;
}

/* ---- helpers ---- */

static dm_str S(const char *s)
{
    dm_str out = {s, strlen(s)};
    return out;
}

static const char *str(dm_str s)
{
    return s.ptr ? apr_pstrmemdup(pool, s.ptr, s.len) : "";
}

static void quiet(void *baton, dm_level level, const char *msg)
{
    (void)baton;
    (void)level;
    (void)msg;
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    assert_null(dm_plugins_create(pool, &host));
    dm_http_client_use(&fake);
    n_answers = next_answer = performed = 0;
    memset(seen, 0, sizeof(seen));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dm_http_client_use(NULL);
    apr_pool_destroy(pool);
    return 0;
}

static dm_err *load(const char *key, ...)
{
    const char *dir = getenv("DM_PLUGINS");
    va_list ap;

    if (!dir) {
        fail_msg("DM_PLUGINS is not set: point it at the built plugins");
    }
    assert_null(
        dm_plugins_declare(host, "kyc", "sumsub", apr_psprintf(pool, "%s/kyc-sumsub.so", dir)));
    assert_null(dm_plugins_set(host, "sumsub", "app_token", APP_TOKEN));
    assert_null(dm_plugins_set(host, "sumsub", "secret_key", SECRET_KEY));
    assert_null(dm_plugins_set(host, "sumsub", "webhook_secret", HOOK_SECRET));
    assert_null(dm_plugins_set(host, "sumsub", "api_base", BASE));
    va_start(ap, key);
    for (const char *k = key; k; k = va_arg(ap, const char *)) {
        assert_null(dm_plugins_set(host, "sumsub", k, va_arg(ap, const char *)));
    }
    va_end(ap);
    return dm_plugins_init_all(host);
}

/* start, called as the host calls it (the typed call comes with the
 * member's routes). */
static dm_status start(const char *member, const char *email, dm_kyc_start_result *out,
                       dm_message *msg)
{
    const dm_loaded_plugin *pl = dm_plugins_get(host, "sumsub");
    const dm_kyc_ops *o;

    assert_non_null(pl);
    o = pl->desc->ops;
    memset(out, 0, sizeof(*out));
    memset(msg, 0, sizeof(*msg));
    out->size = sizeof(*out);
    return o->start(dm_plugins_call(host, pl, pool), S(member), S(email ? email : ""), out, msg);
}

static const dm_loaded_plugin *plugin(void)
{
    const dm_loaded_plugin *pl = dm_plugins_get(host, "sumsub");
    assert_non_null(pl);
    return pl;
}

/* Lower-case hex HMAC by OpenSSL (not the host's libsodium). */
static const char *openssl_hmac(const EVP_MD *md, const char *key, const char *data)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    char *hex = apr_palloc(pool, 2 * EVP_MAX_MD_SIZE + 1);

    assert_non_null(
        HMAC(md, key, (int)strlen(key), (const unsigned char *)data, strlen(data), mac, &n));
    for (unsigned int i = 0; i < n; i++) {
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    }
    return hex;
}

/* alg NULL: no X-Payload-Digest-Alg header; digest NULL: no digest. */
static dm_status webhook(const char *body, const char *alg, const char *digest, dm_kyc_event *ev,
                         dm_message *msg)
{
    dm_header hs[3];
    size_t n = 0;

    hs[n].name = S("Content-Type");
    hs[n++].value = S("application/json");
    if (alg) {
        hs[n].name = S("x-payload-digest-alg");
        hs[n++].value = S(alg);
    }
    if (digest) {
        hs[n].name = S("X-Payload-Digest");
        hs[n++].value = S(digest);
    }
    return dm_kyc_parse_webhook(host, plugin(), pool, S(body), hs, n, ev, msg);
}

/* An applicantReviewed body; reject_type NULL: none. */
static const char *reviewed(const char *corr, const char *answer_, const char *reject_type)
{
    return apr_psprintf(
        pool,
        "{\"applicantId\":\"" APPLICANT "\",\"inspectionId\":\"5cb56e8e0a975a35f333cb84\","
        "\"correlationId\":\"%s\",\"levelName\":\"basic-kyc-level\",\"externalUserId\":\"42\","
        "\"type\":\"applicantReviewed\",\"sandboxMode\":true,\"reviewStatus\":\"completed\","
        "\"createdAtMs\":\"2026-05-01 10:00:00.123\",\"applicantType\":\"individual\","
        "\"reviewResult\":{\"moderationComment\":\"The photo is blurred.\","
        "\"clientComment\":\"internal only\",\"reviewAnswer\":\"%s\"%s%s%s}}",
        corr, answer_,
        reject_type ? ",\"rejectLabels\":[\"BAD_PROOF_OF_IDENTITY\"],"
                      "\"reviewRejectType\":\""
                    : "",
        reject_type ? reject_type : "", reject_type ? "\"" : "");
}

/* ---- webhook signatures ---- */

static void test_sha256_digest_verifies_and_green_approves(void **state)
{
    const char *body = reviewed("req-a1b2", "GREEN", NULL);
    dm_kyc_event ev;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));

    assert_int_equal(
        webhook(body, "HMAC_SHA256_HEX", openssl_hmac(EVP_sha256(), HOOK_SECRET, body), &ev, &msg),
        DM_OK);
    assert_int_equal(ev.status, DM_KYC_APPROVED);
    assert_string_equal(str(ev.event_id), "req-a1b2/applicantReviewed");
    assert_string_equal(str(ev.member_id), "42");
    assert_string_equal(str(ev.provider_ref), APPLICANT);
    assert_string_equal(str(ev.reason), "");
    assert_true(ev.occurred_at_ms == 1777629600123LL);
    assert_int_equal(performed, 0);
}

static void test_sha256_is_the_default_without_an_algorithm_header(void **state)
{
    const char *body = reviewed("req-default", "GREEN", NULL);
    dm_kyc_event ev;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));

    assert_int_equal(webhook(body, NULL, openssl_hmac(EVP_sha256(), HOOK_SECRET, body), &ev, &msg),
                     DM_OK);
    assert_int_equal(ev.status, DM_KYC_APPROVED);
    /* a SHA-512 digest does not pass for SHA-256 */
    assert_int_equal(webhook(body, NULL, openssl_hmac(EVP_sha512(), HOOK_SECRET, body), &ev, &msg),
                     DM_ERR_INVALID);
}

static void test_sha512_digest_verifies(void **state)
{
    const char *body = reviewed("req-512", "RED", "RETRY");
    const char *d512 = openssl_hmac(EVP_sha512(), HOOK_SECRET, body);
    dm_kyc_event ev;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));

    assert_int_equal(strlen(d512), 128);
    assert_int_equal(webhook(body, "HMAC_SHA512_HEX", d512, &ev, &msg), DM_OK);
    assert_int_equal(ev.status, DM_KYC_RESUBMISSION);
    assert_string_equal(str(ev.reason), "The photo is blurred.");
    /* the SHA-256 digest of the same body is not a SHA-512 one */
    assert_int_equal(
        webhook(body, "HMAC_SHA512_HEX", openssl_hmac(EVP_sha256(), HOOK_SECRET, body), &ev, &msg),
        DM_ERR_INVALID);
}

static void test_sha1_webhook_is_refused_with_the_sentence_to_switch(void **state)
{
    const char *body = reviewed("req-sha1", "GREEN", NULL);
    dm_kyc_event ev;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));

    /* correctly signed with HMAC-SHA1, and still refused */
    assert_int_equal(
        webhook(body, "HMAC_SHA1_HEX", openssl_hmac(EVP_sha1(), HOOK_SECRET, body), &ev, &msg),
        DM_ERR_INVALID);
    assert_string_equal(msg.text,
                        "this Sumsub webhook is signed with HMAC-SHA1 (X-Payload-Digest-Alg "
                        "HMAC_SHA1_HEX), which DeepMine does not accept: in Sumsub's dashboard "
                        "(Dev space, Webhooks) set the webhook's signature algorithm to SHA256 "
                        "(or SHA512)");
}

static void test_forged_missing_and_unknown_digests_are_refused(void **state)
{
    const char *body = reviewed("req-forged", "GREEN", NULL);
    const char *good = openssl_hmac(EVP_sha256(), HOOK_SECRET, body);
    char *upper = apr_pstrdup(pool, good), *tampered = apr_pstrdup(pool, body);
    dm_kyc_event ev;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));
    for (char *c = upper; *c; c++) {
        if (*c >= 'a' && *c <= 'f') {
            *c = (char)(*c - 'a' + 'A');
        }
    }
    tampered[10] = 'X';

    assert_int_equal(webhook(body, "HMAC_SHA256_HEX", NULL, &ev, &msg), DM_ERR_INVALID);
    assert_string_equal(msg.text, "no X-Payload-Digest header");
    assert_int_equal(webhook(body, "HMAC_SHA256_HEX",
                             openssl_hmac(EVP_sha256(), HOOK_SECRET "x", body), &ev, &msg),
                     DM_ERR_INVALID);
    assert_string_equal(msg.text, "the X-Payload-Digest does not match the body (wrong "
                                  "webhook_secret, or the body was altered)");
    /* the app's secret key is not the webhook's */
    assert_int_equal(
        webhook(body, "HMAC_SHA256_HEX", openssl_hmac(EVP_sha256(), SECRET_KEY, body), &ev, &msg),
        DM_ERR_INVALID);
    assert_int_equal(webhook(tampered, "HMAC_SHA256_HEX", good, &ev, &msg), DM_ERR_INVALID);
    assert_int_equal(webhook(body, "HMAC_SHA256_HEX", upper, &ev, &msg), DM_ERR_INVALID);
    assert_int_equal(webhook(body, "HMAC_SHA256_HEX", apr_pstrndup(pool, good, 63), &ev, &msg),
                     DM_ERR_INVALID);
    assert_int_equal(webhook(body, "HMAC_MD5_HEX", good, &ev, &msg), DM_ERR_INVALID);
    assert_string_equal(msg.text, "unknown X-Payload-Digest-Alg (expected HMAC_SHA256_HEX or "
                                  "HMAC_SHA512_HEX)");
    assert_null(strstr(msg.text, HOOK_SECRET));
}

/* ---- the events ---- */

static void test_review_answers_map_to_statuses(void **state)
{
    struct {
        const char *answer, *type;
        dm_kyc_status want;
        const char *reason;
    } cases[] = {
        {"GREEN", NULL, DM_KYC_APPROVED, ""},
        {"RED", "RETRY", DM_KYC_RESUBMISSION, "The photo is blurred."},
        {"RED", "FINAL", DM_KYC_REJECTED, "The photo is blurred."},
        {"RED", NULL, DM_KYC_REJECTED, "The photo is blurred."},
    };
    (void)state;
    assert_null(load(NULL));

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *body =
            reviewed(apr_psprintf(pool, "req-%d", (int)i), cases[i].answer, cases[i].type);
        dm_kyc_event ev;
        dm_message msg;
        assert_int_equal(webhook(body, "HMAC_SHA256_HEX",
                                 openssl_hmac(EVP_sha256(), HOOK_SECRET, body), &ev, &msg),
                         DM_OK);
        assert_int_equal(ev.status, cases[i].want);
        assert_string_equal(str(ev.reason), cases[i].reason);
    }
}

static void test_other_types_pending_on_hold_and_ignored(void **state)
{
    const char *types[] = {"applicantPending", "applicantOnHold", "applicantCreated",
                           "applicantPersonalInfoChanged"};
    dm_kyc_status want[] = {DM_KYC_PENDING, DM_KYC_NEEDS_REVIEW, DM_KYC_IGNORED, DM_KYC_IGNORED};
    (void)state;
    assert_null(load(NULL));

    for (size_t i = 0; i < 4; i++) {
        const char *body = apr_psprintf(
            pool,
            "{\"applicantId\":\"" APPLICANT "\",\"correlationId\":\"c-%d\",\"externalUserId\":"
            "\"42\",\"type\":\"%s\",\"reviewStatus\":\"pending\",\"createdAtMs\":"
            "\"2026-05-01 09:59:58\"}",
            (int)i, types[i]);
        dm_kyc_event ev;
        dm_message msg;
        assert_int_equal(webhook(body, "HMAC_SHA256_HEX",
                                 openssl_hmac(EVP_sha256(), HOOK_SECRET, body), &ev, &msg),
                         DM_OK);
        assert_int_equal(ev.status, want[i]);
        assert_string_equal(str(ev.event_id), apr_psprintf(pool, "c-%d/%s", (int)i, types[i]));
        assert_true(ev.occurred_at_ms == 1777629598000LL);
    }
}

static void test_decision_for_someone_else_is_refused(void **state)
{
    const char *body = "{\"applicantId\":\"" APPLICANT "\",\"correlationId\":\"c-x\","
                       "\"externalUserId\":\"user-from-another-app\",\"type\":"
                       "\"applicantReviewed\",\"reviewResult\":{\"reviewAnswer\":\"GREEN\"}}";
    dm_kyc_event ev;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));

    assert_int_equal(
        webhook(body, "HMAC_SHA256_HEX", openssl_hmac(EVP_sha256(), HOOK_SECRET, body), &ev, &msg),
        DM_ERR_INVALID);
    assert_string_equal(msg.text, "the applicantReviewed webhook's externalUserId is not one of "
                                  "our member ids");
}

/* ---- outbound calls ---- */

/* The signature of a recorded request, recomputed: ts + METHOD + path with
 * query + body. */
static void assert_signed(const seen_req *s)
{
    const char *path = s->url + strlen(BASE);
    const char *msg = apr_pstrcat(pool, s->ts, s->method, path, s->body, NULL);

    assert_string_equal(s->token, APP_TOKEN);
    assert_true(strlen(s->ts) >= 10);
    assert_string_equal(s->sig, openssl_hmac(EVP_sha256(), SECRET_KEY, msg));
    assert_string_equal(s->ctype, "application/json");
}

static void test_start_creates_the_applicant_and_mints_a_token(void **state)
{
    dm_kyc_start_result out;
    dm_message msg;
    (void)state;
    assert_null(load("level_name", "basic kyc&level", NULL));
    answer_with(201, "{\"id\":\"" APPLICANT "\",\"externalUserId\":\"42\"}");
    answer_with(200, "{\"token\":\"_act-sbx-abc\",\"userId\":\"42\"}");

    assert_int_equal(start("42", "ada@example.com", &out, &msg), DM_OK);
    assert_string_equal(str(out.token), "_act-sbx-abc");
    assert_string_equal(str(out.url), "");
    assert_string_equal(str(out.provider_ref), APPLICANT);
    assert_int_equal(performed, 2);
    assert_string_equal(seen[0].method, "POST");
    /* the level name is URL-encoded before signing */
    assert_string_equal(seen[0].url, BASE "/resources/applicants?levelName=basic%20kyc%26level");
    assert_string_equal(seen[0].body, "{\"externalUserId\":\"42\",\"email\":\"ada@example.com\"}");
    assert_signed(&seen[0]);
    assert_string_equal(seen[1].url, BASE "/resources/accessTokens/sdk");
    assert_string_equal(seen[1].body,
                        "{\"userId\":\"42\",\"levelName\":\"basic kyc&level\",\"ttlInSecs\":1800}");
    assert_signed(&seen[1]);
}

static void test_start_finds_an_existing_applicant(void **state)
{
    dm_kyc_start_result out;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));
    answer_with(409, "{\"description\":\"Applicant with external user id '42' already exists\"}");
    answer_with(200, "{\"id\":\"" APPLICANT "\",\"externalUserId\":\"42\"}");
    answer_with(200, "{\"token\":\"_act-2\",\"userId\":\"42\"}");

    assert_int_equal(start("42", NULL, &out, &msg), DM_OK);
    assert_string_equal(str(out.provider_ref), APPLICANT);
    assert_string_equal(seen[0].body, "{\"externalUserId\":\"42\"}");
    assert_string_equal(seen[1].method, "GET");
    assert_string_equal(seen[1].url, BASE "/resources/applicants/-;externalUserId=42/one");
    assert_string_equal(seen[1].body, "");
    assert_signed(&seen[1]);
}

static void test_start_when_sumsub_refuses_or_is_down(void **state)
{
    dm_kyc_start_result out;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));
    answer_with(401, "{\"description\":\"Invalid signature\"}");
    assert_int_equal(start("42", NULL, &out, &msg), DM_ERR_CONFIG);
    assert_non_null(strstr(msg.text, "check app_token and secret_key"));
    assert_null(strstr(msg.text, SECRET_KEY));
    assert_int_equal(start("42", NULL, &out, &msg), DM_ERR_TEMPORARY);
}

static void test_query_reads_the_status_endpoint(void **state)
{
    dm_kyc_event ev;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));
    answer_with(200, "{\"reviewStatus\":\"pending\",\"createDate\":\"2026-05-01 09:00:00\"}");
    answer_with(200, "{\"reviewStatus\":\"completed\",\"reviewDate\":\"2026-05-01 10:00:00\","
                     "\"reviewResult\":{\"reviewAnswer\":\"RED\",\"reviewRejectType\":\"FINAL\","
                     "\"moderationComment\":\"Forged document.\"}}");

    assert_int_equal(dm_kyc_query(host, plugin(), pool, "42", APPLICANT, &ev, &msg), DM_OK);
    assert_int_equal(ev.status, DM_KYC_PENDING);
    assert_string_equal(seen[0].method, "GET");
    assert_string_equal(seen[0].url, BASE "/resources/applicants/" APPLICANT "/status");
    assert_signed(&seen[0]);
    assert_int_equal(dm_kyc_query(host, plugin(), pool, "42", APPLICANT, &ev, &msg), DM_OK);
    assert_int_equal(ev.status, DM_KYC_REJECTED);
    assert_string_equal(str(ev.reason), "Forged document.");
    assert_string_equal(str(ev.member_id), "42");
    assert_true(ev.occurred_at_ms == 1777629600999LL);
    assert_string_equal(str(ev.event_id), "status/" APPLICANT "/2/1777629600000");
}

static void test_settings_are_checked(void **state)
{
    dm_err *e;
    (void)state;
    e = load("level_name", "", NULL);
    assert_non_null(e);
    assert_non_null(strstr(e->message, "level_name must be 1 to 128 characters"));
    teardown(NULL);
    setup(NULL);
    e = load("api_base", "http://example.com", NULL);
    assert_non_null(e);
    assert_non_null(strstr(e->message, "api_base must be an https:// URL"));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_sha256_digest_verifies_and_green_approves),
        T(test_sha256_is_the_default_without_an_algorithm_header),
        T(test_sha512_digest_verifies),
        T(test_sha1_webhook_is_refused_with_the_sentence_to_switch),
        T(test_forged_missing_and_unknown_digests_are_refused),
        T(test_review_answers_map_to_statuses),
        T(test_other_types_pending_on_hold_and_ignored),
        T(test_decision_for_someone_else_is_refused),
        T(test_start_creates_the_applicant_and_mints_a_token),
        T(test_start_finds_an_existing_applicant),
        T(test_start_when_sumsub_refuses_or_is_down),
        T(test_query_reads_the_status_endpoint),
        T(test_settings_are_checked),
    };
    int rc;

    apr_initialize();
    dm_log_set_sink(quiet, NULL);
    rc = cmocka_run_group_tests_name("sumsub", tests, NULL, NULL);
    apr_terminate();
    return rc;
}
