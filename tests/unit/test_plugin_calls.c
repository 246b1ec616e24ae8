/*
 * The typed calls into plugins (plugins/payment.h, plugins/mailer.h) and
 * the HTTP client under the host table (plugins/http_client.h): what a
 * gateway or a mailer can do is read from its table, refusals name the
 * plugin, the plugin's own status and message come through, and the host's
 * http() runs on whichever client implementation is in use, after the same
 * checks.
 *
 * Needs the built test plugins in $DM_TESTPLUGINS (tests/plugins) and the
 * real plugins in $DM_PLUGINS.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "plugins/http_client.h"
#include "plugins/mailer.h"
#include "plugins/payment.h"
#include "plugins/plugin_host.h"

#define SECRET "whsec_dW5pdC10ZXN0LXdlYmhvb2stc2VjcmV0LTI0Yg=="

static apr_pool_t *pool;
static dm_plugin_host *host;

static const char *plugin_path(const char *env, const char *file)
{
    const char *dir = getenv(env);
    if (!dir) {
        fail_msg("%s is not set: point it at the built plugins", env);
    }
    return apr_psprintf(pool, "%s/%s.so", dir, file);
}

/* A refund of 1 micro-USD of `ref` through the typed call. */
static dm_status refund(const dm_loaded_plugin *pl, const char *ref, dm_message *msg)
{
    dm_payment_refund_in in;

    memset(&in, 0, sizeof(in));
    in.provider_ref = ref;
    in.amount_micros = 1;
    in.currency = "USD";
    in.idempotency_key = "refund:test:1";
    return dm_payment_refund(host, pl, pool, &in, NULL, msg);
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
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dm_http_client_use(NULL);
    apr_pool_destroy(pool);
    return 0;
}

/* kind_payment (no refund), the sandbox gateway (refunds) and a mailer. */
static void load_gateways(void)
{
    assert_null(
        dm_plugins_declare(host, "payment", "pay", plugin_path("DM_TESTPLUGINS", "kind_payment")));
    assert_null(dm_plugins_declare(host, "payment", "sandbox",
                                   plugin_path("DM_PLUGINS", "payment-sandbox")));
    assert_null(dm_plugins_set(host, "sandbox", "enabled", "yes"));
    assert_null(dm_plugins_set(host, "sandbox", "webhook_secret", SECRET));
    assert_null(
        dm_plugins_declare(host, "mailer", "m", plugin_path("DM_TESTPLUGINS", "abi_newer")));
    dm_plugins_set_public_url(host, "http://127.0.0.1:9");
    assert_null(dm_plugins_init_all(host));
}

/* ---- payment.h ---- */

static void test_payment_lookup_finds_only_initialised_payment_plugins(void **state)
{
    (void)state;
    load_gateways();
    assert_ptr_equal(dm_payment_plugin(host, "pay"), dm_plugins_get(host, "pay"));
    assert_ptr_equal(dm_payment_plugin(host, "sandbox"), dm_plugins_get(host, "sandbox"));
    assert_null(dm_payment_plugin(host, "m"));
    assert_null(dm_payment_plugin(host, "nobody"));
    assert_null(dm_payment_plugin(host, NULL));
    assert_null(dm_payment_plugin(NULL, "pay"));
}

static void test_payment_capabilities_follow_the_plugins_table(void **state)
{
    (void)state;
    load_gateways();
    assert_true(dm_payment_can_checkout(dm_plugins_get(host, "pay")));
    assert_false(dm_payment_can_refund(dm_plugins_get(host, "pay")));
    assert_true(dm_payment_can_checkout(dm_plugins_get(host, "sandbox")));
    assert_true(dm_payment_can_refund(dm_plugins_get(host, "sandbox")));
    assert_false(dm_payment_can_checkout(dm_plugins_get(host, "m")));
    assert_false(dm_payment_can_refund(dm_plugins_get(host, "m")));
    assert_false(dm_payment_can_checkout(NULL));
    assert_false(dm_payment_can_refund(NULL));
}

static void test_payment_checkout_returns_c_strings_in_the_pool(void **state)
{
    dm_payment_checkout_in in = {0};
    dm_payment_checkout_out out;
    dm_message msg;
    const char *prefix = "http://127.0.0.1:9/api/plugins/sandbox/checkout/";
    (void)state;
    load_gateways();
    in.order_id = "42";
    in.amount_micros = 12500000;
    in.currency = "USD";
    in.success_url = "https://shop.example/paid";
    assert_int_equal(
        dm_payment_create_checkout(host, dm_plugins_get(host, "sandbox"), pool, &in, &out, &msg),
        DM_OK);
    assert_string_equal(msg.text, "");
    assert_true(strncmp(out.redirect_url, prefix, strlen(prefix)) == 0);
    assert_true(strncmp(out.provider_ref, "cs_sbx_", 7) == 0);
    assert_int_equal(strlen(out.provider_ref), 7 + 32);
}

static void test_payment_calls_pass_the_plugins_refusal_or_name_their_own(void **state)
{
    dm_payment_checkout_in in = {0};
    dm_payment_checkout_out out;
    dm_message msg;
    (void)state;
    load_gateways();
    in.order_id = "42";
    in.amount_micros = 1;
    in.currency = "USD";

    /* The plugin's own status and words. */
    assert_int_equal(
        dm_payment_create_checkout(host, dm_plugins_get(host, "pay"), pool, &in, &out, &msg),
        DM_ERR_UNSUPPORTED);
    assert_string_equal(msg.text, "kind_payment takes no payments");
    assert_null(out.redirect_url);
    assert_null(out.provider_ref);
    assert_int_equal(refund(dm_plugins_get(host, "sandbox"), "", &msg), DM_ERR_INVALID);
    assert_string_equal(msg.text, "the provider reference must be 1 to 255 characters");

    /* The host's, before any plugin function runs. */
    assert_int_equal(refund(dm_plugins_get(host, "pay"), "ref", &msg), DM_ERR_UNSUPPORTED);
    assert_string_equal(msg.text, "plugin pay cannot refund");
    assert_int_equal(
        dm_payment_create_checkout(host, dm_plugins_get(host, "m"), pool, &in, &out, &msg),
        DM_ERR_UNSUPPORTED);
    assert_string_equal(msg.text, "plugin m is not a loaded payment plugin");
    assert_int_equal(refund(NULL, "ref", &msg), DM_ERR_UNSUPPORTED);
    assert_string_equal(msg.text, "plugin (none) is not a loaded payment plugin");
}

/* ---- mailer.h ---- */

static void test_mailer_without_parse_webhook_receives_no_webhooks(void **state)
{
    dm_mail_event ev;
    dm_message msg;
    dm_str body = {"{}", 2};
    (void)state;
    load_gateways();
    assert_false(dm_mailer_has_webhooks(dm_plugins_get(host, "m")));
    assert_false(dm_mailer_has_webhooks(dm_plugins_get(host, "sandbox")));
    assert_false(dm_mailer_has_webhooks(NULL));
    assert_int_equal(
        dm_mailer_parse_webhook(host, dm_plugins_get(host, "m"), pool, body, NULL, 0, &ev, &msg),
        DM_ERR_UNSUPPORTED);
    assert_string_equal(msg.text, "plugin m receives no webhooks");
    assert_int_equal(dm_mailer_parse_webhook(host, dm_plugins_get(host, "sandbox"), pool, body,
                                             NULL, 0, &ev, &msg),
                     DM_ERR_UNSUPPORTED);
    assert_string_equal(msg.text, "plugin sandbox is not a loaded mailer");
}

static void test_mailer_with_parse_webhook_receives_them(void **state)
{
    (void)state;
    assert_null(
        dm_plugins_declare(host, "mailer", "resend", plugin_path("DM_PLUGINS", "mailer-resend")));
    assert_null(dm_plugins_set(host, "resend", "api_key", "re_unit_test_key"));
    assert_null(dm_plugins_set(host, "resend", "from", "DeepMine <noreply@deepmine.example>"));
    assert_null(dm_plugins_set(host, "resend", "webhook_secret", SECRET));
    assert_null(dm_plugins_init_all(host));
    assert_true(dm_mailer_has_webhooks(dm_plugins_get(host, "resend")));
}

/* ---- http_client.h ---- */

static int performed;
static dm_http_client_request seen;

static dm_err *fake_perform(apr_pool_t *p, const dm_http_client_request *req,
                            dm_http_client_response *resp)
{
    static const dm_header answer[] = {{{"X-Fake", 6}, {"yes", 3}}};

    performed++;
    seen = *req;
    if (strcmp(req->url, "http://127.0.0.1:9/down") == 0) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "GET http://127.0.0.1:9/down: refused");
    }
    resp->status = 202;
    resp->body.ptr = "accepted";
    resp->body.len = 8;
    resp->headers = answer;
    resp->n_headers = 1;
    return NULL;
}

static const dm_http_client_impl fake = {
    .name = "fake",
    .init = NULL,
    .perform = fake_perform,
};

static void test_http_client_checks_requests_before_any_implementation(void **state)
{
    dm_header crlf[] = {{{"X-A", 3}, {"1\r\nX-B: 2", 9}}};
    dm_http_client_request req = {.method = "get", .url = "http://127.0.0.1:9/x"};
    dm_http_client_response resp;
    dm_err *e;
    (void)state;
    dm_http_client_use(&fake);
    performed = 0;

    e = dm_http_client_perform(pool, &req, &resp);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->message, "http: \"get\" is not an HTTP method");
    req.method = "POST";
    req.headers = crlf;
    req.n_headers = 1;
    e = dm_http_client_perform(pool, &req, &resp);
    assert_non_null(e);
    assert_string_equal(e->message,
                        "http: request header 0 is malformed (empty name, or CR, LF or NUL)");
    req.n_headers = 0;
    req.body.len = 3;
    e = dm_http_client_perform(pool, &req, &resp);
    assert_non_null(e);
    assert_string_equal(e->message, "http: the request body has a length but no bytes");
    req.body.len = 0;
    req.url = "";
    e = dm_http_client_perform(pool, &req, &resp);
    assert_non_null(e);
    assert_string_equal(e->message, "http: the request has no url");
    assert_int_equal(performed, 0);

    req.url = "http://127.0.0.1:9/x";
    assert_null(dm_http_client_perform(pool, &req, &resp));
    assert_int_equal(performed, 1);
    assert_int_equal(resp.status, 202);
}

static void test_http_client_hides_credentials_and_query_in_messages(void **state)
{
    (void)state;
    assert_string_equal(dm_http_client_url_for_messages(pool, "https://u:pw@h.example:8/a?k=s#f"),
                        "https://h.example:8/a");
    assert_string_equal(dm_http_client_url_for_messages(pool, "http://h.example/a@b"),
                        "http://h.example/a@b");
    assert_string_equal(dm_http_client_url_for_messages(pool, "http://h.example"),
                        "http://h.example");
}

/* The host table's http() reached through the host_probe plugin (which
 * stores the table it is handed at the address in its setting "slot"). */
static const dm_host *probe_slot;

static dm_call *probe(void)
{
    char slot[32];

    snprintf(slot, sizeof(slot), "%p", (void *)&probe_slot);
    assert_null(
        dm_plugins_declare(host, "mailer", "probe", plugin_path("DM_TESTPLUGINS", "host_probe")));
    assert_null(dm_plugins_set(host, "probe", "slot", slot));
    assert_null(dm_plugins_init_all(host));
    assert_non_null(probe_slot);
    return dm_plugins_call(host, dm_plugins_get(host, "probe"), pool);
}

static void test_host_http_runs_on_the_client_in_use(void **state)
{
    dm_http_request req = {.size = sizeof(req), .method = "PUT", .url = "http://127.0.0.1:9/x"};
    dm_http_response resp = {.size = sizeof(resp)};
    dm_message msg = {{0}};
    dm_call *call;
    (void)state;
    call = probe();
    dm_http_client_use(&fake);
    performed = 0;

    req.body.ptr = "x=1";
    req.body.len = 3;
    req.timeout_ms = 250;
    assert_int_equal(probe_slot->http(call, &req, &resp, &msg), DM_OK);
    assert_int_equal(performed, 1);
    assert_string_equal(seen.method, "PUT");
    assert_string_equal(seen.user_agent, "mod_deepmine (plugin probe)");
    assert_int_equal(seen.timeout_ms, 250);
    assert_int_equal(seen.body.len, 3);
    assert_int_equal(resp.status, 202);
    assert_int_equal(resp.body.len, 8);
    assert_int_equal(resp.n_headers, 1);
    assert_memory_equal(resp.headers[0].name.ptr, "X-Fake", 6);

    /* A request of an older plugin: what its size does not cover is not read. */
    req.size = offsetof(dm_http_request, body);
    assert_int_equal(probe_slot->http(call, &req, &resp, &msg), DM_OK);
    assert_int_equal(seen.body.len, 0);
    assert_int_equal(seen.timeout_ms, 0);

    /* The client's error, as a status and a message. */
    req.size = sizeof(req);
    req.url = "http://127.0.0.1:9/down";
    assert_int_equal(probe_slot->http(call, &req, &resp, &msg), DM_ERR_TEMPORARY);
    assert_string_equal(msg.text, "GET http://127.0.0.1:9/down: refused");
    assert_int_equal(resp.status, 0);
    req.method = "p u t";
    assert_int_equal(probe_slot->http(call, &req, &resp, &msg), DM_ERR_INVALID);
    assert_string_equal(msg.text, "http: \"p u t\" is not an HTTP method");
    assert_int_equal(performed, 3);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_payment_lookup_finds_only_initialised_payment_plugins),
        T(test_payment_capabilities_follow_the_plugins_table),
        T(test_payment_checkout_returns_c_strings_in_the_pool),
        T(test_payment_calls_pass_the_plugins_refusal_or_name_their_own),
        T(test_mailer_without_parse_webhook_receives_no_webhooks),
        T(test_mailer_with_parse_webhook_receives_them),
        T(test_http_client_checks_requests_before_any_implementation),
        T(test_http_client_hides_credentials_and_query_in_messages),
        T(test_host_http_runs_on_the_client_in_use),
    };
    int failed;

    apr_initialize();
    dm_log_set_sink(quiet, NULL);
    failed = cmocka_run_group_tests_name("plugin_calls", tests, NULL, NULL);
    apr_terminate();
    return failed ? 1 : 0;
}
