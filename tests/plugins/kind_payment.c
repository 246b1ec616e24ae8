/*
 * kind_payment — a minimal payment plugin: loads as `payment`, and is
 * refused when declared as another kind.
 */
#include <deepmine/plugin.h>
#include <stdio.h>

static dm_status create_checkout(dm_call *call, const dm_payment_checkout *in,
                                 dm_payment_checkout_result *out, dm_message *msg)
{
    snprintf(msg->text, sizeof(msg->text), "kind_payment takes no payments");
    return DM_ERR_UNSUPPORTED;
}

static dm_status parse_webhook(dm_call *call, dm_str raw_body, const dm_header *headers,
                               size_t n_headers, dm_payment_event *out, dm_message *msg)
{
    snprintf(msg->text, sizeof(msg->text), "kind_payment receives no webhooks");
    return DM_ERR_UNSUPPORTED;
}

static const dm_payment_ops ops = {
    .size = sizeof(dm_payment_ops),
    .create_checkout = create_checkout,
    .parse_webhook = parse_webhook,
};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_PAYMENT,
    .name = "kind-payment",
    .version = "1.0.0",
    .ops = &ops,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *host)
{
    return &desc;
}
