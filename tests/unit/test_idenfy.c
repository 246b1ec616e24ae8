/*
 * The iDenfy KYC plugin (plugins/kyc-idenfy) through the real plugin host
 * and its typed calls (plugins/kyc.h), with a fake HTTP client under the
 * host's http():
 * - Idenfy-Signature: lower-case hex HMAC-SHA256 of the raw body, against
 *   digests computed here by OpenSSL; forged, missing, upper-case and
 *   short signatures refused;
 * - only final events act: a verified non-final one is ignored;
 *   APPROVED / DENIED / SUSPECTED / EXPIRED; the event id
 *   (scanRef/kind/overall/final); finishTime as Unix ms;
 * - start: POST /api/v2/token with HTTP Basic and {"clientId"}, the
 *   redirect URL; query: POST /api/v2/status {"scanRef"}; the polling
 *   interval the plugin asks for (poll_every_s, 6 h by default).
 *
 * Needs $DM_PLUGINS (kyc-idenfy.so).
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

#define API_KEY "unit-idenfy-key"
#define API_SECRET "unit-idenfy-secret-93c1"
#define HOOK_SECRET "unit-idenfy-signing-key-0a9b"
#define BASE "http://127.0.0.1:9"
#define SCAN "2f1e6c4e-6c1b-11ee-b962-0242ac120002"

static apr_pool_t *pool;
static dm_plugin_host *host;

/* ---- a fake HTTP client ---- */

typedef struct answer {
    int status;
    const char *body;
} answer;

typedef struct seen_req {
    char method[16], url[512], body[2048];
    char auth[256], ctype[64];
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
    copy_header(req, "Authorization", s->auth, sizeof(s->auth));
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
        dm_plugins_declare(host, "kyc", "idenfy", apr_psprintf(pool, "%s/kyc-idenfy.so", dir)));
    assert_null(dm_plugins_set(host, "idenfy", "api_key", API_KEY));
    assert_null(dm_plugins_set(host, "idenfy", "api_secret", API_SECRET));
    assert_null(dm_plugins_set(host, "idenfy", "webhook_secret", HOOK_SECRET));
    assert_null(dm_plugins_set(host, "idenfy", "api_base", BASE));
    va_start(ap, key);
    for (const char *k = key; k; k = va_arg(ap, const char *)) {
        assert_null(dm_plugins_set(host, "idenfy", k, va_arg(ap, const char *)));
    }
    va_end(ap);
    return dm_plugins_init_all(host);
}

/* start, called as the host calls it (the typed call comes with the
 * member's routes). */
static dm_status start(const char *member, const char *email, dm_kyc_start_result *out,
                       dm_message *msg)
{
    const dm_loaded_plugin *pl = dm_plugins_get(host, "idenfy");
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
    const dm_loaded_plugin *pl = dm_plugins_get(host, "idenfy");
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

static const char *sig(const char *body)
{
    return openssl_hmac(EVP_sha256(), HOOK_SECRET, body);
}

/* signature NULL: no Idenfy-Signature header. */
static dm_status webhook(const char *body, const char *signature, dm_kyc_event *ev, dm_message *msg)
{
    dm_header hs[2];
    size_t n = 0;

    hs[n].name = S("Content-Type");
    hs[n++].value = S("application/json");
    if (signature) {
        hs[n].name = S("idenfy-signature");
        hs[n++].value = S(signature);
    }
    return dm_kyc_parse_webhook(host, plugin(), pool, S(body), hs, n, ev, msg);
}

/* An identification webhook body (the shape of PROVIDERS.md §6). */
static const char *event_body(const char *final, const char *overall)
{
    return apr_psprintf(
        pool,
        "{\"final\":%s,\"platform\":\"PC\",\"status\":{\"overall\":\"%s\",\"suspicionReasons\":[],"
        "\"mismatchTags\":[],\"fraudTags\":[],\"autoDocument\":\"DOC_VALIDATED\",\"autoFace\":"
        "\"FACE_MATCH\",\"manualDocument\":null,\"manualFace\":null,\"additionalSteps\":null},"
        "\"data\":{\"docFirstName\":\"ADA\",\"docLastName\":\"LOVELACE\"},\"fileUrls\":{},"
        "\"scanRef\":\"" SCAN "\",\"clientId\":\"42\",\"startTime\":1777629000,"
        "\"finishTime\":1777629600}",
        final, overall);
}

static void test_signature_verifies_and_approved_final_approves(void **state)
{
    const char *body = event_body("true", "APPROVED");
    dm_kyc_event ev;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));

    assert_int_equal(webhook(body, sig(body), &ev, &msg), DM_OK);
    assert_int_equal(ev.status, DM_KYC_APPROVED);
    assert_string_equal(str(ev.event_id), SCAN "/IDENTIFICATION/APPROVED/final");
    assert_string_equal(str(ev.member_id), "42");
    assert_string_equal(str(ev.provider_ref), SCAN);
    assert_true(ev.occurred_at_ms == 1777629600000LL);
    assert_int_equal(performed, 0);
}

static void test_forged_and_missing_signatures_are_refused(void **state)
{
    const char *body = event_body("true", "APPROVED");
    const char *good = sig(body);
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
    tampered[9] = 'X';

    assert_int_equal(webhook(body, NULL, &ev, &msg), DM_ERR_INVALID);
    assert_string_equal(msg.text, "no Idenfy-Signature header");
    assert_int_equal(webhook(body, openssl_hmac(EVP_sha256(), API_SECRET, body), &ev, &msg),
                     DM_ERR_INVALID);
    assert_string_equal(msg.text, "the Idenfy-Signature does not match the body (wrong "
                                  "webhook_secret, or the body was altered)");
    assert_int_equal(webhook(tampered, good, &ev, &msg), DM_ERR_INVALID);
    assert_int_equal(webhook(body, upper, &ev, &msg), DM_ERR_INVALID);
    assert_int_equal(webhook(body, apr_pstrndup(pool, good, 63), &ev, &msg), DM_ERR_INVALID);
    assert_int_equal(webhook(body, openssl_hmac(EVP_sha512(), HOOK_SECRET, body), &ev, &msg),
                     DM_ERR_INVALID);
    assert_null(strstr(msg.text, HOOK_SECRET));
}

static void test_only_final_events_act(void **state)
{
    struct {
        const char *final, *overall;
        dm_kyc_status want;
        const char *id;
    } cases[] = {
        {"false", "APPROVED", DM_KYC_IGNORED, SCAN "/IDENTIFICATION/APPROVED/interim"},
        {"false", "REVIEWING", DM_KYC_IGNORED, SCAN "/IDENTIFICATION/REVIEWING/interim"},
        {"true", "DENIED", DM_KYC_REJECTED, SCAN "/IDENTIFICATION/DENIED/final"},
        {"true", "SUSPECTED", DM_KYC_NEEDS_REVIEW, SCAN "/IDENTIFICATION/SUSPECTED/final"},
        {"true", "EXPIRED", DM_KYC_EXPIRED, SCAN "/IDENTIFICATION/EXPIRED/final"},
        {"true", "ACTIVE", DM_KYC_IGNORED, SCAN "/IDENTIFICATION/ACTIVE/final"},
    };
    (void)state;
    assert_null(load(NULL));

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *body = event_body(cases[i].final, cases[i].overall);
        dm_kyc_event ev;
        dm_message msg;
        assert_int_equal(webhook(body, sig(body), &ev, &msg), DM_OK);
        assert_int_equal(ev.status, cases[i].want);
        assert_string_equal(str(ev.event_id), cases[i].id);
    }
}

static void test_expired_event_type_is_part_of_the_id(void **state)
{
    const char *body = "{\"type\":\"identificationExpired\",\"final\":true,\"status\":{\"overall\":"
                       "\"EXPIRED\"},\"scanRef\":\"" SCAN "\",\"clientId\":\"42\"}";
    dm_kyc_event ev;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));

    assert_int_equal(webhook(body, sig(body), &ev, &msg), DM_OK);
    assert_int_equal(ev.status, DM_KYC_EXPIRED);
    assert_string_equal(str(ev.event_id), SCAN "/identificationExpired/EXPIRED/final");
    assert_true(ev.occurred_at_ms == 0);
}

static void test_malformed_verified_bodies_are_refused(void **state)
{
    const char *no_final = "{\"status\":{\"overall\":\"APPROVED\"},\"scanRef\":\"" SCAN "\","
                           "\"clientId\":\"42\"}";
    const char *other_client = "{\"final\":true,\"status\":{\"overall\":\"APPROVED\"},"
                               "\"scanRef\":\"" SCAN "\",\"clientId\":\"someone-else\"}";
    dm_kyc_event ev;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));

    assert_int_equal(webhook(no_final, sig(no_final), &ev, &msg), DM_ERR_INVALID);
    assert_string_equal(msg.text, "the webhook has no scanRef, final or status.overall");
    assert_int_equal(webhook(other_client, sig(other_client), &ev, &msg), DM_ERR_INVALID);
    assert_string_equal(msg.text, "the webhook's clientId is not one of our member ids");
}

static void test_start_generates_a_token_with_basic_auth(void **state)
{
    dm_kyc_start_result out;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));
    answer_with(201, "{\"message\":\"Token created successfully\",\"authToken\":\"tok-1\","
                     "\"scanRef\":\"" SCAN "\",\"clientId\":\"42\",\"redirectUrl\":"
                     "\"https://ivs.idenfy.com/api/v2/redirect?authToken=tok-1\"}");

    assert_int_equal(start("42", "ada@example.com", &out, &msg), DM_OK);
    assert_string_equal(str(out.url), "https://ivs.idenfy.com/api/v2/redirect?authToken=tok-1");
    assert_string_equal(str(out.token), "");
    assert_string_equal(str(out.provider_ref), SCAN);
    assert_int_equal(performed, 1);
    assert_string_equal(seen[0].method, "POST");
    assert_string_equal(seen[0].url, BASE "/api/v2/token");
    assert_string_equal(seen[0].body, "{\"clientId\":\"42\"}");
    /* base64("unit-idenfy-key:unit-idenfy-secret-93c1") */
    assert_string_equal(seen[0].auth, "Basic dW5pdC1pZGVuZnkta2V5OnVuaXQtaWRlbmZ5LXNlY3JldC05M2Mx");
    assert_string_equal(seen[0].ctype, "application/json");
}

static void test_start_when_idenfy_refuses_or_is_down(void **state)
{
    dm_kyc_start_result out;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));
    answer_with(401, "{\"message\":\"Invalid credentials\"}");
    assert_int_equal(start("42", NULL, &out, &msg), DM_ERR_CONFIG);
    assert_non_null(strstr(msg.text, "check api_key and api_secret"));
    assert_null(strstr(msg.text, API_SECRET));
    assert_int_equal(start("42", NULL, &out, &msg), DM_ERR_TEMPORARY);
}

static void test_query_asks_the_status_call(void **state)
{
    dm_kyc_event ev;
    dm_message msg;
    (void)state;
    assert_null(load(NULL));
    answer_with(200, "{\"status\":\"ACTIVE\",\"scanRef\":\"" SCAN "\"}");
    answer_with(200, "{\"status\":{\"overall\":\"SUSPECTED\"},\"scanRef\":\"" SCAN "\"}");

    assert_int_equal(dm_kyc_query(host, plugin(), pool, "42", SCAN, &ev, &msg), DM_OK);
    assert_int_equal(ev.status, DM_KYC_PENDING);
    assert_string_equal(seen[0].url, BASE "/api/v2/status");
    assert_string_equal(seen[0].body, "{\"scanRef\":\"" SCAN "\"}");
    assert_string_equal(seen[0].auth, "Basic dW5pdC1pZGVuZnkta2V5OnVuaXQtaWRlbmZ5LXNlY3JldC05M2Mx");
    assert_int_equal(dm_kyc_query(host, plugin(), pool, "42", SCAN, &ev, &msg), DM_OK);
    assert_int_equal(ev.status, DM_KYC_NEEDS_REVIEW);
    assert_string_equal(str(ev.event_id), "status/" SCAN "/SUSPECTED");
}

static void test_polling_interval_defaults_to_six_hours(void **state)
{
    dm_err *e;
    (void)state;
    assert_null(load(NULL));
    assert_string_equal(dm_plugins_setting(plugin(), "poll_every_s"), "21600");
    teardown(NULL);
    setup(NULL);
    assert_null(load("poll_every_s", "86400", NULL));
    assert_string_equal(dm_plugins_setting(plugin(), "poll_every_s"), "86400");
    teardown(NULL);
    setup(NULL);
    e = load("poll_every_s", "60", NULL);
    assert_non_null(e);
    assert_non_null(strstr(e->message, "poll_every_s must be a number of seconds"));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_signature_verifies_and_approved_final_approves),
        T(test_forged_and_missing_signatures_are_refused),
        T(test_only_final_events_act),
        T(test_expired_event_type_is_part_of_the_id),
        T(test_malformed_verified_bodies_are_refused),
        T(test_start_generates_a_token_with_basic_auth),
        T(test_start_when_idenfy_refuses_or_is_down),
        T(test_query_asks_the_status_call),
        T(test_polling_interval_defaults_to_six_hours),
    };
    int rc;

    apr_initialize();
    dm_log_set_sink(quiet, NULL);
    rc = cmocka_run_group_tests_name("idenfy", tests, NULL, NULL);
    apr_terminate();
    return rc;
}
