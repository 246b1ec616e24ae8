/*
 * mailer_driver — loads plugins through the plugin host exactly as Apache
 * does (dm_plugins_declare, dm_plugins_set, dm_plugins_init_all), then runs
 * a list of operations on them (dm_mailer_send, dm_plugins_webhook,
 * dm_plugins_setting) and prints one JSON result, for the integration tests
 * of the mailer plugins (tests/integration/test_14_mailers.py) that run
 * without the mail queue. Not a plugin: built by tests/unit/Makefile and
 * linked against libdmcore.a.
 *
 * Input (stdin), one JSON object:
 *   {"plugins": [{"kind": "mailer", "name": "smtp", "path": "/…/x.so",
 *                 "settings": {"url": "smtp://127.0.0.1:2525"}}],
 *    "ops": [{"op": "send", "plugin": "smtp",
 *             "mail": {"from", "to", "subject", "text", "html",
 *                      "headers": [["Name", "value"], …], "idempotency_key"}},
 *            {"op": "webhook", "plugin": "resend", "body": "…",
 *             "headers": [["svix-id", "…"], …]},
 *            {"op": "setting", "plugin": "resend", "key": "rate_per_second"}]}
 * Output (stdout): {"init_error": null or "…", "results": [
 *   send:    {"status", "message_id", "retry_after", "message"},
 *   webhook: {"status", "event_id", "type", "message_id", "recipient",
 *             "message"},
 *   setting: {"value"}]}
 * where status is "ok", "invalid", "temporary", "permanent", "unsupported",
 * "config" or "internal". Log lines go to stderr. Exit 0 unless the input
 * is unusable (2).
 */
#include <apr_general.h>
#include <apr_pools.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "plugins/inbound.h"
#include "plugins/mailer.h"
#include "plugins/plugin_host.h"

static const char *status_word(dm_status st)
{
    static const char *const words[] = {"ok",          "invalid", "temporary", "permanent",
                                        "unsupported", "config",  "internal"};
    return (int)st >= 0 && (size_t)st < sizeof(words) / sizeof(words[0]) ? words[st] : "unknown";
}

static const char *mail_type_word(dm_mail_event_type t)
{
    switch (t) {
    case DM_MAIL_DELIVERED:
        return "delivered";
    case DM_MAIL_BOUNCED:
        return "bounced";
    case DM_MAIL_COMPLAINED:
        return "complained";
    case DM_MAIL_OTHER:
        return "other";
    }
    return "unknown";
}

static void to_stderr(void *baton, dm_level level, const char *msg)
{
    (void)baton;
    fprintf(stderr, "[%d] %s\n", (int)level, msg);
}

/* A string member as a dm_str (NUL bytes allowed); empty when absent. */
static dm_str str_of(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    dm_str s = {"", 0};

    if (json_is_string(v)) {
        s.ptr = json_string_value(v);
        s.len = json_string_length(v);
    }
    return s;
}

/* A message for the output: never lost, even when it is not UTF-8. */
static json_t *text(const char *s)
{
    json_t *v = json_string(s);
    return v ? v : json_string("(a message that is not UTF-8)");
}

static json_t *json_str(dm_str s)
{
    return s.ptr ? json_stringn_nocheck(s.ptr, s.len) : json_null();
}

/* [["Name", "value"], …] as dm_header, in p. */
static dm_header *headers_of(apr_pool_t *p, const json_t *list, size_t *n)
{
    dm_header *hs;
    size_t i;
    json_t *pair;

    *n = json_is_array(list) ? json_array_size(list) : 0;
    hs = apr_pcalloc(p, sizeof(*hs) * (*n ? *n : 1));
    json_array_foreach(list, i, pair)
    {
        const json_t *name = json_array_get(pair, 0), *value = json_array_get(pair, 1);
        hs[i].name.ptr = json_is_string(name) ? json_string_value(name) : "";
        hs[i].name.len = json_is_string(name) ? json_string_length(name) : 0;
        hs[i].value.ptr = json_is_string(value) ? json_string_value(value) : "";
        hs[i].value.len = json_is_string(value) ? json_string_length(value) : 0;
    }
    return hs;
}

static json_t *run_send(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                        const json_t *op)
{
    const json_t *jm = json_object_get(op, "mail");
    dm_mail m;
    const char *id = NULL;
    uint32_t retry = 0;
    dm_message msg;
    dm_status st;

    memset(&m, 0, sizeof(m));
    m.size = sizeof(m);
    m.from = str_of(jm, "from");
    m.to = str_of(jm, "to");
    m.subject = str_of(jm, "subject");
    m.text = str_of(jm, "text");
    m.html = str_of(jm, "html");
    m.idempotency_key = str_of(jm, "idempotency_key");
    m.headers = headers_of(p, json_object_get(jm, "headers"), &m.n_headers);
    st = dm_mailer_send(h, pl, p, &m, &id, &retry, &msg);
    return json_pack("{s:s, s:o, s:I, s:o}", "status", status_word(st), "message_id",
                     id ? text(id) : json_null(), "retry_after", (json_int_t)retry, "message",
                     text(msg.text));
}

static json_t *run_webhook(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                           const json_t *op)
{
    dm_plugin_event ev;
    dm_message msg;
    dm_header *hs;
    size_t n;
    dm_status st;

    hs = headers_of(p, json_object_get(op, "headers"), &n);
    st = dm_plugins_webhook(h, pl, p, str_of(op, "body"), hs, n, &ev, &msg);
    if (st != DM_OK || pl->kind != DM_PLUGIN_MAILER) {
        return json_pack("{s:s, s:o}", "status", status_word(st), "message", text(msg.text));
    }
    return json_pack("{s:s, s:o, s:s, s:o, s:o, s:o}", "status", status_word(st), "event_id",
                     json_str(ev.mail.event_id), "type", mail_type_word(ev.mail.type), "message_id",
                     json_str(ev.mail.message_id), "recipient", json_str(ev.mail.recipient),
                     "message", text(msg.text));
}

int main(void)
{
    apr_pool_t *pool;
    dm_plugin_host *h;
    json_error_t jerr;
    json_t *in, *out, *results, *plugins, *ops, *item;
    dm_err *e = NULL;
    size_t i;

    in = json_loadf(stdin, JSON_ALLOW_NUL, &jerr);
    if (!in) {
        fprintf(stderr, "mailer_driver: the input is not JSON: %s\n", jerr.text);
        return 2;
    }
    apr_initialize();
    apr_pool_create(&pool, NULL);
    dm_log_set_sink(to_stderr, NULL);
    out = json_object();
    results = json_array();
    e = dm_plugins_create(pool, &h);

    plugins = json_object_get(in, "plugins");
    json_array_foreach(plugins, i, item)
    {
        const json_t *settings = json_object_get(item, "settings");
        const char *key;
        json_t *value;
        if (e) {
            break;
        }
        e = dm_plugins_declare(h, json_string_value(json_object_get(item, "kind")),
                               json_string_value(json_object_get(item, "name")),
                               json_string_value(json_object_get(item, "path")));
        json_object_foreach((json_t *)settings, key, value)
        {
            if (!e) {
                e = dm_plugins_set(h, json_string_value(json_object_get(item, "name")), key,
                                   json_string_value(value));
            }
        }
    }
    if (!e) {
        e = dm_plugins_init_all(h);
    }
    json_object_set_new(out, "init_error", e ? json_string(e->message) : json_null());

    ops = json_object_get(in, "ops");
    json_array_foreach(ops, i, item)
    {
        const char *op = json_string_value(json_object_get(item, "op"));
        const dm_loaded_plugin *pl =
            e ? NULL : dm_plugins_get(h, json_string_value(json_object_get(item, "plugin")));
        apr_pool_t *p;
        json_t *r;

        if (!pl || !op) {
            json_array_append_new(results, json_pack("{s:s}", "error", "no such plugin or op"));
            continue;
        }
        apr_pool_create(&p, pool);
        if (!strcmp(op, "send")) {
            r = run_send(h, pl, p, item);
        } else if (!strcmp(op, "webhook")) {
            r = run_webhook(h, pl, p, item);
        } else if (!strcmp(op, "setting")) {
            const char *v = dm_plugins_setting(pl, json_string_value(json_object_get(item, "key")));
            r = json_pack("{s:o}", "value", v ? json_string(v) : json_null());
        } else {
            r = json_pack("{s:s}", "error", "unknown op");
        }
        json_array_append_new(results, r);
        apr_pool_destroy(p);
    }
    json_object_set_new(out, "results", results);
    json_dumpf(out, stdout, JSON_COMPACT | JSON_ENSURE_ASCII);
    fputc('\n', stdout);
    json_decref(out);
    json_decref(in);
    apr_pool_destroy(pool); /* runs every plugin's fini */
    apr_terminate();
    return 0;
}
