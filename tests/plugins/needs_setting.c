/*
 * needs_setting — a mailer with a required setting, api_key. Its init()
 * accepts only the value the tests give ("sk_test_4242", whether literal,
 * from env: or from file:), and checks that an unset key reads as NULL.
 * Its fini() counts its calls in the environment (DM_TEST_FINI_COUNT), so a
 * test can see that fini ran exactly once.
 */
#include <deepmine/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPECTED_KEY "sk_test_4242"

static const char *const required[] = {"api_key", NULL};

static dm_status init(const dm_host *host, dm_call *call, dm_message *msg)
{
    const char *key = host->setting(call, "api_key");

    if (!key || strcmp(key, EXPECTED_KEY) != 0) {
        snprintf(msg->text, sizeof(msg->text), "api_key is \"%s\", expected \"%s\"",
                 key ? key : "(null)", EXPECTED_KEY);
        return DM_ERR_CONFIG;
    }
    if (host->setting(call, "no_such_key") != NULL) {
        snprintf(msg->text, sizeof(msg->text), "an unset key did not read as NULL");
        return DM_ERR_INTERNAL;
    }
    return DM_OK;
}

static void fini(void)
{
    const char *n = getenv("DM_TEST_FINI_COUNT");
    char buf[16];

    snprintf(buf, sizeof(buf), "%d", n ? atoi(n) + 1 : 1);
    setenv("DM_TEST_FINI_COUNT", buf, 1);
}

static dm_status send_mail(dm_call *call, const dm_mail *mail, dm_str *message_id, dm_message *msg)
{
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
    .name = "needs-setting",
    .version = "1.0.0",
    .required_settings = required,
    .init = init,
    .fini = fini,
    .ops = &ops,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *host)
{
    return &desc;
}
