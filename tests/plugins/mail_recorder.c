/*
 * mail_recorder — a test mailer for the mail queue's tests. Each send
 * appends one JSON line to the file named by the setting `log`:
 *   {"key","from","to","subject","text","html","headers":{name:value}}
 * and answers as the file named by the optional setting `mode` says (read
 * on every send, so a test can change it between runs; missing or empty
 * means "ok"):
 *   ok                   DM_OK, message id "<rec-N@recorder.test>"
 *   temporary            DM_ERR_TEMPORARY (nothing recorded)
 *   temporary <seconds>  the same, asking to be retried after <seconds>
 *                        (through host->retry_after when the host has it)
 *   permanent | invalid | config | internal   that status (nothing recorded)
 * A message whose subject or recipient holds a CR or LF is refused with
 * DM_ERR_INVALID, like a real mailer.
 *
 * Webhooks: a JSON body {"id","type","message_id","recipient"} signed with
 * the header X-Test-Signature: hex(HMAC-SHA-256(setting webhook_secret,
 * body)); type delivered|bounced|complained|other. A bad or missing
 * signature is DM_ERR_INVALID.
 */
#include <deepmine/plugin.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const dm_host *host;
static const char *const required[] = {"log", NULL};
static unsigned long counter;

static void say(dm_message *msg, const char *s)
{
    snprintf(msg->text, sizeof(msg->text), "%s", s);
}

static int has_crlf(dm_str s)
{
    return memchr(s.ptr, '\r', s.len) || memchr(s.ptr, '\n', s.len);
}

static const char *q(dm_call *call, dm_str s)
{
    return host->json_quote(call, s);
}

static dm_str cstr(const char *s)
{
    dm_str d = {s, strlen(s)};
    return d;
}

/* The mode file's first line, or "ok". */
static void read_mode(dm_call *call, char *out, size_t cap)
{
    const char *path = host->setting(call, "mode");
    FILE *f = path ? fopen(path, "r") : NULL;

    snprintf(out, cap, "ok");
    if (!f) {
        return;
    }
    if (!fgets(out, (int)cap, f) || !out[0] || out[0] == '\n') {
        snprintf(out, cap, "ok");
    }
    out[strcspn(out, "\r\n")] = '\0';
    fclose(f);
}

static dm_status send_mail(dm_call *call, const dm_mail *mail, dm_str *message_id, dm_message *msg)
{
    char mode[64], *line, *id;
    size_t len = 0, cap = 1024;
    int fd;

    if (has_crlf(mail->subject) || has_crlf(mail->to) || has_crlf(mail->from)) {
        say(msg, "header injection refused");
        return DM_ERR_INVALID;
    }
    read_mode(call, mode, sizeof(mode));
    if (strncmp(mode, "temporary", 9) == 0) {
        long secs = atol(mode + 9);
#ifdef DM_HOST_SIZE_1_2 /* ABI 1.3 */
        if (secs > 0 && DM_HAS_FIELD(host, dm_host, retry_after) && host->retry_after) {
            host->retry_after(call, (uint32_t)secs);
        }
#endif
        snprintf(msg->text, sizeof(msg->text), "the recorder is told to fail for now (%ld)", secs);
        return DM_ERR_TEMPORARY;
    }
    if (strcmp(mode, "permanent") == 0) {
        say(msg, "the recorder is told to refuse");
        return DM_ERR_PERMANENT;
    }
    if (strcmp(mode, "invalid") == 0) {
        say(msg, "the recorder is told the input is invalid");
        return DM_ERR_INVALID;
    }
    if (strcmp(mode, "config") == 0) {
        say(msg, "the recorder is told it is misconfigured");
        return DM_ERR_CONFIG;
    }
    if (strcmp(mode, "internal") == 0) {
        say(msg, "the recorder is told to break");
        return DM_ERR_INTERNAL;
    }
    /* the line: every part quoted by the host */
    for (size_t i = 0; i < mail->n_headers; i++) {
        cap += 16 + 6 * (mail->headers[i].name.len + mail->headers[i].value.len);
    }
    cap += 6 * (mail->idempotency_key.len + mail->from.len + mail->to.len + mail->subject.len +
                mail->text.len + mail->html.len);
    line = host->alloc(call, cap);
    len += (size_t)snprintf(line + len, cap - len,
                            "{\"key\":%s,\"from\":%s,\"to\":%s,\"subject\":%s,\"text\":%s,"
                            "\"html\":%s,\"headers\":{",
                            q(call, mail->idempotency_key), q(call, mail->from), q(call, mail->to),
                            q(call, mail->subject), q(call, mail->text), q(call, mail->html));
    for (size_t i = 0; i < mail->n_headers; i++) {
        len += (size_t)snprintf(line + len, cap - len, "%s%s:%s", i ? "," : "",
                                q(call, mail->headers[i].name), q(call, mail->headers[i].value));
    }
    len += (size_t)snprintf(line + len, cap - len, "}}\n");
    fd = open(host->setting(call, "log"), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0 || write(fd, line, len) != (ssize_t)len) {
        if (fd >= 0) {
            close(fd);
        }
        say(msg, "cannot write the log");
        return DM_ERR_TEMPORARY;
    }
    close(fd);
    id = host->alloc(call, 64);
    snprintf(id, 64, "<rec-%lu-%d@recorder.test>", ++counter, (int)getpid());
    *message_id = cstr(id);
    return DM_OK;
}

static const char *header(const dm_header *hs, size_t n, const char *name, size_t *len)
{
    for (size_t i = 0; i < n; i++) {
        if (hs[i].name.len == strlen(name) &&
            strncasecmp(hs[i].name.ptr, name, hs[i].name.len) == 0) {
            *len = hs[i].value.len;
            return hs[i].value.ptr;
        }
    }
    return NULL;
}

static dm_str field(dm_call *call, dm_str body, const char *path)
{
    size_t n = 0;
    const char *v = host->json_get(call, body, path, &n);
    dm_str s = {v ? v : "", v ? n : 0};
    return s;
}

static dm_status parse_webhook(dm_call *call, dm_str raw_body, const dm_header *headers,
                               size_t n_headers, dm_mail_event *out, dm_message *msg)
{
    const char *secret = host->setting(call, "webhook_secret");
    size_t slen = 0;
    const char *sig = header(headers, n_headers, "X-Test-Signature", &slen);
    unsigned char mac[32];
    char *want;
    dm_str type;

    if (!secret) {
        say(msg, "no webhook_secret");
        return DM_ERR_CONFIG;
    }
    host->hmac_sha256(secret, strlen(secret), raw_body.ptr, raw_body.len, mac);
    want = host->hex_encode(call, mac, sizeof(mac));
    if (!sig || slen != 64 || !host->equal_ct(sig, want, 64)) {
        say(msg, "bad signature");
        return DM_ERR_INVALID;
    }
    out->event_id = field(call, raw_body, "id");
    out->message_id = field(call, raw_body, "message_id");
    out->recipient = field(call, raw_body, "recipient");
    type = field(call, raw_body, "type");
    if (type.len == 9 && memcmp(type.ptr, "delivered", 9) == 0) {
        out->type = DM_MAIL_DELIVERED;
    } else if (type.len == 7 && memcmp(type.ptr, "bounced", 7) == 0) {
        out->type = DM_MAIL_BOUNCED;
    } else if (type.len == 10 && memcmp(type.ptr, "complained", 10) == 0) {
        out->type = DM_MAIL_COMPLAINED;
    } else {
        out->type = DM_MAIL_OTHER;
    }
    if (!out->event_id.len) {
        say(msg, "no id");
        return DM_ERR_INVALID;
    }
    return DM_OK;
}

static dm_status init(const dm_host *h, dm_call *call, dm_message *msg)
{
    host = h;
    return DM_OK;
}

static const dm_mailer_ops ops = {
    .size = sizeof(dm_mailer_ops),
    .send = send_mail,
    .parse_webhook = parse_webhook,
};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_MAILER,
    .name = "mail-recorder",
    .version = "1.0.0",
    .required_settings = required,
    .init = init,
    .ops = &ops,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *h)
{
    return &desc;
}
