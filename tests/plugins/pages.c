/*
 * pages — a payment plugin of ABI 1.2 whose handle_request answers well or
 * badly depending on the path, so the host's checks of a plugin's answer
 * can be tested; and whose parse_webhook returns an event without an id
 * when the body is "noid".
 *   /ok          200 text/html with an extra header X-Page: 1
 *   /redirect    303 with Location
 *   /set-cookie  a Set-Cookie header (the host refuses it)
 *   /csp         a Content-Security-Policy header (refused)
 *   /crlf        a header value with CR LF (refused)
 *   /badname     a header name with a space (refused)
 *   /status      status 99 (refused)
 *   /nobody      a body length without bytes (refused)
 *   /invalid     DM_ERR_INVALID with a message
 *   anything else  DM_ERR_UNSUPPORTED
 */
#include <deepmine/plugin.h>
#include <stdio.h>
#include <string.h>

static const dm_host *host;

static dm_status init(const dm_host *h, dm_call *call, dm_message *msg)
{
    host = h;
    return DM_OK;
}

static int is(dm_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

static dm_status handle_request(dm_call *call, const dm_plugin_request *req,
                                dm_plugin_response *resp, dm_message *msg)
{
    dm_header *h = host->alloc(call, sizeof(*h));
    static const char page[] = "<p>ok</p>";

    if (is(req->path, "/invalid")) {
        snprintf(msg->text, sizeof(msg->text), "pages: bad request");
        return DM_ERR_INVALID;
    }
    if (is(req->path, "/fail")) {
        /* an internal failure whose words hold what must never reach an
         * error tracker (test_47_monitor.py) */
        host->log(call, DM_LOG_ERROR, "pages: failing on purpose");
        snprintf(msg->text, sizeof(msg->text),
                 "pages: failed for alice@example.com with key sk_test_4eC39HqLyjWDarjtT1zdp7dc");
        return DM_ERR_INTERNAL;
    }
    resp->content_type.ptr = "text/html; charset=utf-8";
    resp->content_type.len = strlen(resp->content_type.ptr);
    resp->body.ptr = page;
    resp->body.len = sizeof(page) - 1;
    resp->headers = h;
    resp->n_headers = 1;
    h->name.ptr = "X-Page";
    h->name.len = 6;
    h->value.ptr = "1";
    h->value.len = 1;
    if (is(req->path, "/ok")) {
        return DM_OK;
    }
    if (is(req->path, "/redirect")) {
        resp->status = 303;
        h->name.ptr = "Location";
        h->name.len = 8;
        h->value.ptr = "https://shop.example/done";
        h->value.len = strlen(h->value.ptr);
        return DM_OK;
    }
    if (is(req->path, "/set-cookie")) {
        h->name.ptr = "set-cookie";
        h->name.len = 10;
        return DM_OK;
    }
    if (is(req->path, "/csp")) {
        h->name.ptr = "Content-Security-Policy";
        h->name.len = 23;
        return DM_OK;
    }
    if (is(req->path, "/crlf")) {
        h->value.ptr = "1\r\nSet-Cookie: x=1";
        h->value.len = strlen(h->value.ptr);
        return DM_OK;
    }
    if (is(req->path, "/badname")) {
        h->name.ptr = "X Page";
        return DM_OK;
    }
    if (is(req->path, "/status")) {
        resp->status = 99;
        return DM_OK;
    }
    if (is(req->path, "/nobody")) {
        resp->body.ptr = NULL;
        return DM_OK;
    }
    return DM_ERR_UNSUPPORTED;
}

static dm_status create_checkout(dm_call *call, const dm_payment_checkout *in,
                                 dm_payment_checkout_result *out, dm_message *msg)
{
    return DM_ERR_UNSUPPORTED;
}

static dm_status parse_webhook(dm_call *call, dm_str raw_body, const dm_header *headers,
                               size_t n_headers, dm_payment_event *out, dm_message *msg)
{
    if (raw_body.len == 4 && memcmp(raw_body.ptr, "noid", 4) == 0) {
        out->status = DM_PAY_PAID;
        return DM_OK;
    }
    if (raw_body.len == 9 && memcmp(raw_body.ptr, "badstatus", 9) == 0) {
        out->event_id.ptr = "evt_1";
        out->event_id.len = 5;
        out->status = (dm_payment_event_status)42;
        return DM_OK;
    }
    snprintf(msg->text, sizeof(msg->text), "pages: unsigned");
    return DM_ERR_INVALID;
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
    .name = "pages",
    .version = "1.0.0",
    .init = init,
    .ops = &ops,
    .handle_request = handle_request,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *h)
{
    return &desc;
}
