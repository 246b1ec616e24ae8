/*
 * host_probe — hands the host table to the unit test, so the test can call
 * host functions exactly as a plugin does. The test passes the address of
 * a `const dm_host *` variable as the setting "slot" (printf's %p); init()
 * stores the host table's address there. Test-only: a real plugin never
 * writes through a pointer it was given as text.
 *
 * Since 1.3 it also gives its setting "probe_default" a default in init
 * (and tries to default "slot" and "_name", which must not change), and its
 * send answers as the setting "send" says, for the tests of
 * dm_mailer_send: "ok" (message id "<probe-id>"), "temporary"
 * (retry_after 7), "huge_retry" (retry_after 4000000000), "temporary_silent"
 * (no retry_after), "no_id", "crlf_id", "bad_status", "build" (returns what
 * host->mime_message says about the mail).
 */
#include <deepmine/plugin.h>
#include <stdio.h>
#include <string.h>

static const dm_host *host;

static const char *const required[] = {"slot", NULL};

static dm_status init(const dm_host *h, dm_call *call, dm_message *msg)
{
    void *slot = NULL;

    if (sscanf(h->setting(call, "slot"), "%p", &slot) != 1 || !slot) {
        snprintf(msg->text, sizeof(msg->text), "slot is not an address");
        return DM_ERR_CONFIG;
    }
    *(const dm_host **)slot = h;
    host = h;
    if (DM_HAS_FIELD(h, dm_host, setting_default)) {
        h->setting_default(call, "probe_default", "from-init");
        h->setting_default(call, "slot", "overwritten");
        h->setting_default(call, "_name", "overwritten");
    }
    return DM_OK;
}

static int is(const char *a, const char *b)
{
    return a && !strcmp(a, b);
}

static dm_status send_mail(dm_call *call, const dm_mail *mail, dm_str *message_id, dm_message *msg)
{
    const char *mode = host->setting(call, "send");

    if (is(mode, "ok")) {
        message_id->ptr = "<probe-id>";
        message_id->len = 10;
        return DM_OK;
    }
    if (is(mode, "temporary") || is(mode, "huge_retry")) {
        host->retry_after(call, is(mode, "temporary") ? 7u : 4000000000u);
        snprintf(msg->text, sizeof(msg->text), "slow down");
        return DM_ERR_TEMPORARY;
    }
    if (is(mode, "temporary_silent")) {
        return DM_ERR_TEMPORARY;
    }
    if (is(mode, "no_id")) {
        return DM_OK;
    }
    if (is(mode, "crlf_id")) {
        message_id->ptr = "<a>\r\nX: y";
        message_id->len = 10;
        return DM_OK;
    }
    if (is(mode, "bad_status")) {
        return (dm_status)42;
    }
    if (is(mode, "build")) {
        size_t len = 0;
        if (!host->mime_message(call, mail, "probe@deepmine.example", 0, &len)) {
            snprintf(msg->text, sizeof(msg->text), "cannot build it");
            return DM_ERR_INVALID;
        }
        message_id->ptr = "<built>";
        message_id->len = 7;
        return DM_OK;
    }
    return DM_ERR_UNSUPPORTED;
}

static const dm_mailer_ops ops = {
    .size = sizeof(dm_mailer_ops),
    .send = send_mail,
};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_MAILER,
    .name = "host-probe",
    .version = "1.0.0",
    .required_settings = required,
    .init = init,
    .ops = &ops,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *h)
{
    return &desc;
}
