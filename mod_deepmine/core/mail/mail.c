/*
 * mail.c — see mail.h. The mail job is the one long piece: claim a batch
 * (one transaction), then for each message compose (template, variables,
 * suppression and preference checks, unsubscribe headers), pace (token
 * bucket), send through the mailer plugin (no transaction open), and
 * record the outcomes (one transaction for the batch's, written at its end,
 * before the run sleeps for its pace, and once the first waited a second:
 * a crash loses at most the records of those sends, which the idempotency
 * key makes harmless).
 */
#include "mail/mail.h"

#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "store/audit.h"
#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/metrics.h"
#include "mail/mail_prefs.h"
#include "mail/mail_templates.h"
#include "mail/mailq.h"
#include "plugins/mailer.h"
#include "plugins/plugin_host.h"
#include "base/template.h"
#include "base/token.h"
#include "base/validate.h"

#define ERROR_MAX 500
/* After this many temporary failures in a row, a run stops sending: the
 * provider is down, and every further message would only wait out a
 * timeout to learn it. */
#define TEMP_FAILURES_STOP 3
/* An outcome waits at most this long for the batch's record (ms). */
#define RECORD_WAIT_MS 1000
/* Rows per transaction when the digest enqueues. */
#define DIGEST_BATCH 200

static int64_t col_int_or_0(dm_stmt *st, int c)
{
    return dm_stmt_is_null(st, c) ? 0 : dm_stmt_int64(st, c);
}

/* At most ERROR_MAX bytes, cut at a UTF-8 character boundary. */
static const char *short_error(apr_pool_t *p, const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n <= ERROR_MAX) {
        return s ? s : "";
    }
    n = ERROR_MAX;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) {
        n--;
    }
    return apr_pstrmemdup(p, s, n);
}

int64_t dm_mail_backoff(int attempts, uint32_t retry_after, uint32_t rnd)
{
    int64_t d = DM_MAIL_BACKOFF_BASE, half;

    for (int i = 1; i < attempts && d < DM_MAIL_BACKOFF_MAX; i++) {
        d *= 2;
    }
    if (d > DM_MAIL_BACKOFF_MAX) {
        d = DM_MAIL_BACKOFF_MAX;
    }
    half = d / 2;
    d = half + (int64_t)(rnd % (uint32_t)(d - half + 1));
    return d < (int64_t)retry_after ? (int64_t)retry_after : d;
}

/* ---- the queue, for staff ---- */

#define ROW_COLS                                                                                   \
    "id, recipient, template, status, attempts, next_attempt_at, provider_message_id, "            \
    "last_error, delivery, delivery_at, sent_at, created_at, updated_at"

static void read_row(dm_stmt *st, apr_pool_t *p, dm_mail_row *m)
{
    m->id = dm_stmt_int64(st, 0);
    m->recipient = dm_stmt_dup_text(st, p, 1);
    m->template_key = dm_stmt_dup_text(st, p, 2);
    m->status = dm_stmt_dup_text(st, p, 3);
    m->attempts = dm_stmt_int64(st, 4);
    m->next_attempt_at = dm_stmt_int64(st, 5);
    m->provider_message_id = dm_stmt_dup_text(st, p, 6);
    m->last_error = dm_stmt_dup_text(st, p, 7);
    m->delivery = dm_stmt_dup_text(st, p, 8);
    m->delivery_at = col_int_or_0(st, 9);
    m->sent_at = col_int_or_0(st, 10);
    m->created_at = dm_stmt_int64(st, 11);
    m->updated_at = dm_stmt_int64(st, 12);
}

static int status_ok(const char *s)
{
    static const char *const all[] = {"queued", "sending", "sent", "failed", "suppressed", NULL};

    for (const char *const *a = all; *a; a++) {
        if (strcmp(*a, s) == 0) {
            return 1;
        }
    }
    return 0;
}

dm_err *dm_mail_list(dm_db *db, apr_pool_t *p, const char *status, const char *recipient,
                     int64_t cursor, int limit, apr_array_header_t **rows, int64_t *next_cursor)
{
    dm_stmt *st;
    int row = 0, n = 1;
    const char *sql;
    dm_err *e;

    *rows = apr_array_make(p, limit > 0 ? limit : 1, sizeof(dm_mail_row));
    *next_cursor = 0;
    if (status && !status_ok(status)) {
        return dm_err_make(p, DM_E_INVALID, "status",
                           "status must be queued, sending, sent, failed or suppressed");
    }
    /* The fixed texts below, never input: each filter has its statement. */
    if (status && recipient) {
        sql = "SELECT " ROW_COLS " FROM mail_queue WHERE id < ? AND status = ? AND "
              "recipient = ? ORDER BY id DESC LIMIT ?";
    } else if (status) {
        sql = "SELECT " ROW_COLS " FROM mail_queue WHERE id < ? AND status = ? "
              "ORDER BY id DESC LIMIT ?";
    } else if (recipient) {
        sql = "SELECT " ROW_COLS " FROM mail_queue WHERE id < ? AND recipient = ? "
              "ORDER BY id DESC LIMIT ?";
    } else {
        sql = "SELECT " ROW_COLS " FROM mail_queue WHERE id < ? ORDER BY id DESC LIMIT ?";
    }
    e = dm_db_prepare(db, p, sql, &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, n++, cursor > 0 ? cursor : INT64_MAX);
    if (status) {
        dm_stmt_bind_str(st, n++, status);
    }
    if (recipient) {
        dm_stmt_bind_str(st, n++, recipient);
    }
    dm_stmt_bind_int64(st, n, (int64_t)limit + 1);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        if ((*rows)->nelts == limit) {
            *next_cursor = APR_ARRAY_IDX(*rows, limit - 1, dm_mail_row).id;
            break;
        }
        read_row(st, p, apr_array_push(*rows));
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *dm_mail_get(dm_db *db, apr_pool_t *p, int64_t id, dm_mail_row *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, "SELECT " ROW_COLS " FROM mail_queue WHERE id = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        read_row(st, p, out);
    }
    dm_stmt_done(st);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "no message %" APR_INT64_T_FMT, (apr_int64_t)id);
    }
    return e;
}

json_t *dm_mail_row_json(apr_pool_t *p, const dm_mail_row *m)
{
    json_t *o = json_object();

    json_object_set_new(o, "id", json_integer(m->id));
    json_object_set_new(o, "recipient", json_string(m->recipient));
    json_object_set_new(o, "template", json_string(m->template_key));
    json_object_set_new(o, "status", json_string(m->status));
    json_object_set_new(o, "attempts", json_integer(m->attempts));
    json_object_set_new(o, "next_attempt_at",
                        strcmp(m->status, "queued") == 0
                            ? json_string(dm_json_time(p, m->next_attempt_at))
                            : json_null());
    json_object_set_new(o, "provider_message_id",
                        m->provider_message_id ? json_string(m->provider_message_id) : json_null());
    json_object_set_new(o, "last_error", m->last_error ? json_string(m->last_error) : json_null());
    json_object_set_new(o, "delivery", m->delivery ? json_string(m->delivery) : json_null());
    json_object_set_new(o, "delivery_at", dm_json_time_or_null(p, m->delivery_at));
    json_object_set_new(o, "sent_at", dm_json_time_or_null(p, m->sent_at));
    json_object_set_new(o, "created_at", json_string(dm_json_time(p, m->created_at)));
    json_object_set_new(o, "updated_at", json_string(dm_json_time(p, m->updated_at)));
    return o;
}

dm_err *dm_mail_resend(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip, int64_t id,
                       dm_mail_row *out)
{
    dm_mail_row before;
    dm_stmt *st;
    int row = 0;
    int64_t now = dm_now();
    dm_err *e = dm_db_begin(db, p);

    if (e) {
        return e;
    }
    e = dm_mail_get(db, p, id, &before);
    if (!e && strcmp(before.status, "failed") != 0) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL,
                        "message %" APR_INT64_T_FMT " is %s: only a failed message is resent",
                        (apr_int64_t)id, before.status);
    }
    if (!e) {
        e = dm_db_prepare(db, p,
                          "UPDATE mail_queue SET status = 'queued', attempts = 0, "
                          "next_attempt_at = ?, updated_at = ? WHERE id = ? AND status = 'failed'",
                          &st);
    }
    if (!e) {
        dm_stmt_bind_int64(st, 1, now);
        dm_stmt_bind_int64(st, 2, now);
        dm_stmt_bind_int64(st, 3, id);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    if (!e) {
        json_t *b =
            dm_json_own(p, json_pack("{s:s,s:I,s:s?}", "status", before.status, "attempts",
                                     (json_int_t)before.attempts, "last_error", before.last_error));
        json_t *a = dm_json_own(p, json_pack("{s:s}", "status", "queued"));
        e = dm_audit_write(db, p, staff_id, "email.resend", "email",
                           apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)id), b, a, ip);
    }
    if (!e) {
        e = dm_mail_get(db, p, id, out);
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
    }
    return e;
}

/* ---- statistics ---- */

static dm_err *count_bind(dm_db *db, apr_pool_t *p, const char *sql, int64_t since, int64_t *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, sql, &st);

    *out = 0;
    if (e) {
        return e;
    }
    if (since >= 0) {
        dm_stmt_bind_int64(st, 1, since);
    }
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        *out = col_int_or_0(st, 0);
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_mail_stats_get(dm_db *db, apr_pool_t *p, int64_t window_s, dm_mail_stats *out)
{
    int64_t since = dm_now() - window_s;
    dm_err *e;

    memset(out, 0, sizeof(*out));
    out->window_s = window_s;
    e = count_bind(db, p, "SELECT COUNT(*) FROM mail_queue WHERE status = 'sent' AND sent_at >= ?",
                   since, &out->sent);
    if (!e) {
        e = count_bind(db, p,
                       "SELECT COUNT(*) FROM mail_queue WHERE status = 'failed' AND "
                       "updated_at >= ?",
                       since, &out->failed);
    }
    if (!e) {
        e = count_bind(db, p,
                       "SELECT COUNT(*) FROM mail_queue WHERE status = 'suppressed' AND "
                       "updated_at >= ?",
                       since, &out->suppressed);
    }
    if (!e) {
        e = count_bind(db, p,
                       "SELECT COUNT(*) FROM mail_events WHERE type = 'delivered' AND "
                       "received_at >= ?",
                       since, &out->delivered);
    }
    if (!e) {
        e = count_bind(db, p,
                       "SELECT COUNT(*) FROM mail_events WHERE type = 'bounced' AND "
                       "received_at >= ?",
                       since, &out->bounced);
    }
    if (!e) {
        e = count_bind(db, p,
                       "SELECT COUNT(*) FROM mail_events WHERE type = 'complained' AND "
                       "received_at >= ?",
                       since, &out->complained);
    }
    if (!e) {
        e = count_bind(db, p, "SELECT COUNT(*) FROM mail_queue WHERE status = 'queued'", -1,
                       &out->queued);
    }
    if (!e) {
        e = count_bind(db, p, "SELECT COUNT(*) FROM mail_queue WHERE status = 'sending'", -1,
                       &out->sending);
    }
    if (!e) {
        e = count_bind(db, p, "SELECT MIN(created_at) FROM mail_queue WHERE status = 'queued'", -1,
                       &out->oldest_queued_at);
    }
    return e;
}

json_t *dm_mail_stats_json(apr_pool_t *p, const dm_mail_stats *s)
{
    json_t *o = json_object();
    int64_t done = s->sent + s->failed;

    json_object_set_new(o, "window_hours", json_integer(s->window_s / 3600));
    json_object_set_new(o, "sent", json_integer(s->sent));
    json_object_set_new(o, "failed", json_integer(s->failed));
    json_object_set_new(o, "suppressed", json_integer(s->suppressed));
    json_object_set_new(o, "delivered", json_integer(s->delivered));
    json_object_set_new(o, "bounced", json_integer(s->bounced));
    json_object_set_new(o, "complained", json_integer(s->complained));
    json_object_set_new(o, "queued", json_integer(s->queued));
    json_object_set_new(o, "sending", json_integer(s->sending));
    json_object_set_new(o, "oldest_queued_at", dm_json_time_or_null(p, s->oldest_queued_at));
    /* a ratio, not money: a double is right here */
    json_object_set_new(o, "delivery_rate",
                        done ? json_real((double)s->sent / (double)done) : json_null());
    return o;
}

/* ---- delivery reports ---- */

static const char *event_type_name(dm_mail_event_type t)
{
    switch (t) {
    case DM_MAIL_DELIVERED:
        return "delivered";
    case DM_MAIL_BOUNCED:
        return "bounced";
    case DM_MAIL_COMPLAINED:
        return "complained";
    case DM_MAIL_OTHER:
        break;
    }
    return "other";
}

static const char *str_dup(apr_pool_t *p, dm_str s)
{
    return s.len && s.ptr ? apr_pstrmemdup(p, s.ptr, s.len) : NULL;
}

/* The message a provider id names: *id and *recipient, 0/NULL when none. */
static dm_err *mail_by_provider_id(dm_db *db, apr_pool_t *p, const char *provider_id, int64_t *id,
                                   const char **recipient)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e;

    *id = 0;
    *recipient = NULL;
    if (!provider_id) {
        return NULL;
    }
    e = dm_db_prepare(db, p,
                      "SELECT id, recipient FROM mail_queue WHERE provider_message_id = ? "
                      "ORDER BY id DESC LIMIT 1",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, provider_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        *id = dm_stmt_int64(st, 0);
        *recipient = dm_stmt_dup_text(st, p, 1);
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *event_txn(dm_db *db, apr_pool_t *p, const char *plugin, const dm_mail_event *ev,
                         dm_mail_event_result *out)
{
    const char *type = event_type_name(ev->type);
    const char *event_id = str_dup(p, ev->event_id);
    const char *provider_id = str_dup(p, ev->message_id);
    const char *recipient = str_dup(p, ev->recipient), *queued_to = NULL;
    int64_t now = dm_now();
    dm_stmt *st;
    int row = 0;
    dm_err *e = mail_by_provider_id(db, p, provider_id, &out->mail_id, &queued_to);

    if (e) {
        return e;
    }
    if (!recipient) {
        recipient = queued_to;
    }
    e = dm_db_prepare(db, p,
                      "INSERT INTO mail_events (plugin, event_id, type, message_id, recipient, "
                      "mail_id, received_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                      "ON CONFLICT (plugin, event_id) DO NOTHING",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, plugin);
    dm_stmt_bind_str(st, 2, event_id ? event_id : "");
    dm_stmt_bind_str(st, 3, type);
    dm_stmt_bind_str(st, 4, provider_id);
    dm_stmt_bind_str(st, 5, recipient);
    if (out->mail_id) {
        dm_stmt_bind_int64(st, 6, out->mail_id);
    } else {
        dm_stmt_bind_null(st, 6);
    }
    dm_stmt_bind_int64(st, 7, now);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    if (dm_db_changes(db) != 1) {
        out->duplicate = 1;
        return NULL;
    }
    if (ev->type == DM_MAIL_BOUNCED || ev->type == DM_MAIL_COMPLAINED) {
        int added = 0;
        if (!recipient) {
            return dm_err_make(p, DM_E_INVALID, NULL,
                               "the %s report names no address and no message we sent", type);
        }
        e = dm_suppression_add(db, p, recipient, type, plugin, event_id, &added);
        out->suppressed = added;
        if (!e && added) {
            dm_log(DM_L_NOTICE, "DM01003: %s is suppressed: the mailer %s reported it %s",
                   recipient, plugin, type);
        }
    }
    if (!e && out->mail_id && ev->type != DM_MAIL_OTHER) {
        e = dm_db_prepare(db, p, "UPDATE mail_queue SET delivery = ?, delivery_at = ? WHERE id = ?",
                          &st);
        if (!e) {
            dm_stmt_bind_str(st, 1, type);
            dm_stmt_bind_int64(st, 2, now);
            dm_stmt_bind_int64(st, 3, out->mail_id);
            e = dm_stmt_step(st, p, &row);
            dm_stmt_done(st);
        }
    }
    return e;
}

dm_err *dm_mail_event_record(dm_db *db, apr_pool_t *p, const char *plugin, const dm_mail_event *ev,
                             dm_mail_event_result *out)
{
    dm_err *e;

    memset(out, 0, sizeof(*out));
    if (!ev->event_id.len || !ev->event_id.ptr) {
        return dm_err_make(p, DM_E_INVALID, NULL, "the mailer event has no id");
    }
    e = dm_db_begin(db, p);
    if (e) {
        return e;
    }
    e = event_txn(db, p, plugin, ev, out);
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
        memset(out, 0, sizeof(*out));
    }
    return e;
}

/* ---- composing ---- */

/* The domain of an address ("Name <a@b.example>" or "a@b.example") or of
 * a URL ("https://b.example:8443/x"), or NULL. */
static const char *domain_of_address(apr_pool_t *p, const char *a)
{
    const char *at = a ? strrchr(a, '@') : NULL;
    size_t n;

    if (!at) {
        return NULL;
    }
    n = strcspn(at + 1, "> \t");
    return n ? apr_pstrmemdup(p, at + 1, n) : NULL;
}

static const char *domain_of_url(apr_pool_t *p, const char *url)
{
    const char *h = url ? strstr(url, "://") : NULL;
    size_t n;

    if (!h) {
        return NULL;
    }
    h += 3;
    n = strcspn(h, ":/?#");
    return n ? apr_pstrmemdup(p, h, n) : NULL;
}

/* The List-Unsubscribe value of a marketing message to user_id in
 * `category`: "<url>, <mailto:…>" (the mailto only when a domain is known,
 * from `from` or the public URL); *url gets the HTTPS (or configured)
 * link alone. */
static const char *dm_mail_list_unsubscribe(apr_pool_t *p, const dm_mail_site *site,
                                            int64_t user_id, const char *category, const char **url)
{
    const char *token = dm_unsub_token(p, site->unsubscribe_key, user_id, category);
    const char *domain = domain_of_address(p, site->from);

    if (!domain) {
        domain = domain_of_url(p, site->public_url);
    }
    *url = apr_pstrcat(p, site->public_url ? site->public_url : "",
                       "/api/email/unsubscribe?token=", token, NULL);
    if (!domain) {
        return apr_pstrcat(p, "<", *url, ">", NULL);
    }
    return apr_pstrcat(p, "<", *url, ">, <mailto:unsubscribe@", domain, "?subject=unsubscribe%20",
                       token, ">", NULL);
}

dm_err *dm_mail_preview(dm_db *db, apr_pool_t *p, const dm_mail_site *site,
                        const dm_mail_preview_in *in, dm_mail_preview_out *out)
{
    dm_mail_def def;
    dm_mail_tmpl t;
    dm_mail_rendered r;
    json_t *vars;
    const char *k;
    json_t *v;
    dm_err *e = dm_mail_def_get(db, p, in->key, &def);

    memset(out, 0, sizeof(*out));
    if (!e) {
        e = dm_mail_tmpl_get(db, p, in->key, in->locale, &t);
    }
    if (e) {
        return e;
    }
    if (in->subject || in->text || in->html) {
        t.subject = in->subject ? in->subject : t.subject;
        t.text = in->text ? in->text : t.text;
        t.html = in->html ? in->html : t.html;
        e = dm_mail_tmpl_validate(p, &def, t.subject, t.text, t.html);
        if (e) {
            return e;
        }
    }
    if (in->variables && !json_is_object(in->variables)) {
        return dm_err_make(p, DM_E_INVALID, "variables", "variables must be an object");
    }
    vars = dm_json_own(p, json_deep_copy(def.sample));
    json_object_set_new(vars, "site_url", json_string(site->public_url ? site->public_url : ""));
    json_object_set_new(vars, "recipient", json_string("member@example.com"));
    if (def.marketing) {
        const char *url = apr_pstrcat(p, site->public_url ? site->public_url : "",
                                      "/api/email/unsubscribe?token=preview", NULL);
        json_object_set_new(vars, "unsubscribe_url", json_string(url));
        out->list_unsubscribe = apr_pstrcat(p, "<", url, ">", NULL);
        out->marketing = 1;
    }
    if (in->variables) {
        json_object_foreach((json_t *)in->variables, k, v)
        {
            json_object_set(vars, k, v);
        }
    }
    e = dm_mail_tmpl_render(p, &def, &t, vars, &r);
    if (!e) {
        out->subject = r.subject;
        out->text = r.text;
        out->html = r.html;
    }
    return e;
}

/* ---- the mail job ---- */

typedef struct claimed {
    int64_t id;
    const char *recipient;
    const char *template_key;
    const char *variables;
    const char *key;
    int64_t attempts; /* after the claim */
    int done;
} claimed;

typedef struct cached_tmpl {
    dm_mail_def def;
    dm_mail_tmpl tmpl;
    dm_err *err;
} cached_tmpl;

typedef enum outcome { O_SENT, O_RETRY, O_FAIL, O_SUPPRESS, O_RELEASE } outcome;

/* An outcome not yet written (flush). */
typedef struct pending {
    const claimed *c;
    outcome o;
    const char *provider_id;
    const char *why; /* shortened */
    int64_t next_at;
    int64_t now;
} pending;

typedef struct run {
    dm_job_ctx *ctx;
    const dm_plugin_host *plugins;
    const dm_loaded_plugin *mailer;
    dm_mail_site site;
    int max_attempts;
    double rate; /* messages per second, 0: no limit */
    double tokens;
    apr_time_t refilled;
    apr_time_t deadline;
    apr_hash_t *templates; /* key -> cached_tmpl */
    int temp_in_a_row;
    int stop;
    int64_t release_until; /* 0: release due now */
    apr_pool_t *bp;        /* the batch's: what pending holds lives there */
    apr_array_header_t *pending;
    apr_time_t pending_since; /* when the first of pending was decided */
    int64_t sent, failed, retried, suppressed;
} run;

/* The mailer to use: env->mailer, else the only one loaded. */
static const dm_loaded_plugin *find_mailer(const dm_job_env *env, const char **why)
{
    const apr_array_header_t *all;
    const dm_loaded_plugin *only = NULL;
    int n = 0;

    *why = NULL;
    if (!env->plugins) {
        *why = "no plugins are loaded";
        return NULL;
    }
    if (env->mailer) {
        const dm_loaded_plugin *pl = dm_plugins_get(env->plugins, env->mailer);
        if (!pl || pl->kind != DM_PLUGIN_MAILER || !pl->initialised) {
            *why = "the configured mailer is not a loaded mailer plugin";
            return NULL;
        }
        return pl;
    }
    all = dm_plugins_all(env->plugins);
    for (int i = 0; i < all->nelts; i++) {
        const dm_loaded_plugin *pl = APR_ARRAY_IDX(all, i, const dm_loaded_plugin *);
        if (pl->kind == DM_PLUGIN_MAILER && pl->initialised) {
            only = pl;
            n++;
        }
    }
    if (n != 1) {
        *why = n ? "several mailer plugins are loaded and none is chosen"
                 : "no mailer plugin is loaded";
        return NULL;
    }
    return only;
}

/* A decimal setting ("2", "0.5"), 0 when unset or malformed. */
static double setting_rate(const dm_loaded_plugin *pl)
{
    const char *v = dm_plugins_setting(pl, "rate_per_second");
    char *end = NULL;
    double r;

    if (!v || !*v) {
        return 0;
    }
    r = strtod(v, &end);
    return (end && !*end && r > 0 && r <= 100000) ? r : 0;
}

static int setting_attempts(const dm_loaded_plugin *pl)
{
    const char *v = dm_plugins_setting(pl, "max_attempts");
    char *end = NULL;
    long n;

    if (!v || !*v) {
        return DM_MAIL_MAX_ATTEMPTS;
    }
    n = strtol(v, &end, 10);
    return (end && !*end && n >= 1 && n <= 100) ? (int)n : DM_MAIL_MAX_ATTEMPTS;
}

static int by_id(const void *a, const void *b)
{
    int64_t x = ((const claimed *)a)->id, y = ((const claimed *)b)->id;
    return x < y ? -1 : x > y;
}

static dm_err *claim(run *r, apr_pool_t *p, apr_array_header_t **out)
{
    dm_db *db = r->ctx->db;
    int64_t now = dm_now();
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_begin(db, p);

    *out = apr_array_make(p, DM_MAIL_BATCH, sizeof(claimed));
    if (e) {
        return e;
    }
    /* The first DM_MAIL_BATCH of the due messages and the stale claims, in
     * (next_attempt_at, id) order. Each kind is taken in that order from
     * mail_queue_due on its own, at most a batch of each, and the two
     * merged: the same rows as one OR over both, which read every due
     * message (tens of thousands behind a burst of orders) and sorted them
     * all while holding the writers' lock. */
    e = dm_db_prepare(db, p,
                      "UPDATE mail_queue SET status = 'sending', attempts = attempts + 1, "
                      "updated_at = ?1 WHERE id IN (SELECT id FROM ("
                      "SELECT * FROM (SELECT id, next_attempt_at FROM mail_queue "
                      "WHERE status = 'queued' AND next_attempt_at <= ?1 "
                      "ORDER BY next_attempt_at, id LIMIT ?3) due UNION ALL "
                      "SELECT * FROM (SELECT id, next_attempt_at FROM mail_queue "
                      "WHERE status = 'sending' AND updated_at <= ?2 "
                      "ORDER BY next_attempt_at, id LIMIT ?3) stale) claimable "
                      "ORDER BY next_attempt_at, id LIMIT ?3) "
                      "RETURNING id, recipient, template, variables, idempotency_key, attempts",
                      &st);
    if (!e) {
        dm_stmt_bind_int64(st, 1, now);
        dm_stmt_bind_int64(st, 2, now - DM_MAIL_SENDING_STALE);
        dm_stmt_bind_int64(st, 3, DM_MAIL_BATCH);
        while (!(e = dm_stmt_step(st, p, &row)) && row) {
            claimed *c = apr_array_push(*out);
            c->id = dm_stmt_int64(st, 0);
            c->recipient = dm_stmt_dup_text(st, p, 1);
            c->template_key = dm_stmt_dup_text(st, p, 2);
            c->variables = dm_stmt_dup_text(st, p, 3);
            c->key = dm_stmt_dup_text(st, p, 4);
            c->attempts = dm_stmt_int64(st, 5);
            c->done = 0;
        }
        dm_stmt_done(st);
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
    }
    /* RETURNING has no order: oldest first within the batch */
    qsort((*out)->elts, (size_t)(*out)->nelts, sizeof(claimed), by_id);
    return e;
}

static cached_tmpl *template_for(run *r, const char *key)
{
    cached_tmpl *c = apr_hash_get(r->templates, key, APR_HASH_KEY_STRING);
    apr_pool_t *p = r->ctx->pool;

    if (!c) {
        c = apr_pcalloc(p, sizeof(*c));
        c->err = dm_mail_def_get(r->ctx->db, p, key, &c->def);
        if (!c->err) {
            c->err = dm_mail_tmpl_get(r->ctx->db, p, key, DM_MAIL_LOCALE, &c->tmpl);
        }
        apr_hash_set(r->templates, apr_pstrdup(p, key), APR_HASH_KEY_STRING, c);
    }
    return c;
}

/* The member an address belongs to, 0 when none. */
static dm_err *member_of(dm_db *db, apr_pool_t *p, const char *email_key, int64_t *id)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, "SELECT id FROM users WHERE email_key = ?", &st);

    *id = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, email_key);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        *id = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    return e;
}

/* Everything before the send. Returns a database error only; *o and *why
 * say what to do with the message when it is not to be sent (*o O_SENT
 * means: go ahead with *mail). */
static dm_err *compose(run *r, apr_pool_t *p, const claimed *c, dm_mail *mail, outcome *o,
                       const char **why)
{
    dm_db *db = r->ctx->db;
    const char *addr = NULL, *addr_key = NULL;
    dm_suppression sup;
    cached_tmpl *t;
    json_t *vars;
    dm_mail_rendered out;
    dm_header *hs;
    int found = 0;
    dm_err *e;

    *o = O_FAIL;
    if (dm_validate_email(p, "recipient", c->recipient, &addr, &addr_key)) {
        *why = apr_psprintf(p, "the recipient address is not valid: %s", c->recipient);
        return NULL;
    }
    e = dm_suppression_get(db, p, addr, &sup, &found);
    if (e) {
        return e;
    }
    if (found) {
        *o = O_SUPPRESS;
        *why = apr_psprintf(p, "the address is on the suppression list (%s)", sup.reason);
        return NULL;
    }
    t = template_for(r, c->template_key);
    if (t->err) {
        if (t->err->code != DM_E_NOT_FOUND) {
            return t->err;
        }
        *why = t->err->message;
        return NULL;
    }
    vars = dm_json_own(p, json_loads(c->variables ? c->variables : "", 0, NULL));
    if (!json_is_object(vars)) {
        *why = "the message's variables are not a JSON object";
        return NULL;
    }
    if (json_object_get(vars, DM_MAIL_SEALED_VAR)) {
        dm_err *se = r->ctx->env->keys ? dm_mail_unseal(p, r->ctx->env->keys->mail_seal,
                                                        c->recipient, c->template_key, c->key, vars)
                                       : dm_err_make(p, DM_E_INVALID, NULL,
                                                     "no secret key to open the message's "
                                                     "sealed variables");
        if (se) {
            *why = se->message;
            return NULL;
        }
    }
    json_object_set_new(vars, "site_url",
                        json_string(r->site.public_url ? r->site.public_url : ""));
    json_object_set_new(vars, "recipient", json_string(addr));
    hs = apr_pcalloc(p, 2 * sizeof(*hs));
    memset(mail, 0, sizeof(*mail));
    if (t->def.marketing) {
        int64_t user = 0;
        int yes = 1;
        const char *url, *lu;
        e = member_of(db, p, addr_key, &user);
        if (!e && user) {
            e = dm_mail_subscribed(db, p, user, t->def.category, &yes);
        }
        if (e) {
            return e;
        }
        if (!user) {
            *why = "a marketing message goes to members only, and no member has this address";
            return NULL;
        }
        if (!yes) {
            *o = O_SUPPRESS;
            *why = apr_psprintf(p, "the member unsubscribed from %s", t->def.category);
            return NULL;
        }
        if (!r->site.public_url) {
            *why = "marketing messages need DeepMinePublicURL for their unsubscribe link";
            return NULL;
        }
        lu = dm_mail_list_unsubscribe(p, &r->site, user, t->def.category, &url);
        json_object_set_new(vars, "unsubscribe_url", json_string(url));
        hs[0].name.ptr = "List-Unsubscribe";
        hs[0].name.len = strlen(hs[0].name.ptr);
        hs[0].value.ptr = lu;
        hs[0].value.len = strlen(lu);
        hs[1].name.ptr = "List-Unsubscribe-Post";
        hs[1].name.len = strlen(hs[1].name.ptr);
        hs[1].value.ptr = "List-Unsubscribe=One-Click";
        hs[1].value.len = strlen(hs[1].value.ptr);
        mail->headers = hs;
        mail->n_headers = 2;
    }
    e = dm_mail_tmpl_render(p, &t->def, &t->tmpl, vars, &out);
    if (e) {
        *why = e->message;
        return NULL;
    }
    mail->size = sizeof(*mail);
    mail->from.ptr = r->site.from ? r->site.from : "";
    mail->from.len = strlen(mail->from.ptr);
    mail->to.ptr = addr;
    mail->to.len = strlen(addr);
    mail->subject.ptr = out.subject;
    mail->subject.len = strlen(out.subject);
    mail->text.ptr = out.text;
    mail->text.len = strlen(out.text);
    mail->html.ptr = out.html;
    mail->html.len = strlen(out.html);
    mail->idempotency_key.ptr = c->key;
    mail->idempotency_key.len = strlen(c->key);
    *o = O_SENT;
    return NULL;
}

/* Writes the outcomes decided since the last call, in one transaction, each
 * only if its row is still as this run claimed it. */
static dm_err *flush(run *r)
{
    dm_db *db = r->ctx->db;
    apr_pool_t *p = r->bp;
    dm_stmt *st;
    int row = 0;
    dm_err *e;
    static const char *const status[] = {"sent", "queued", "failed", "suppressed", "queued"};

    if (!r->pending || r->pending->nelts == 0) {
        return NULL;
    }
    e = dm_db_begin(db, p);
    for (int i = 0; !e && i < r->pending->nelts; i++) {
        const pending *w = &APR_ARRAY_IDX(r->pending, i, pending);
        const claimed *c = w->c;
        e = dm_db_prepare(db, p,
                          "UPDATE mail_queue SET status = ?, attempts = ?, "
                          "provider_message_id = COALESCE(?, provider_message_id), "
                          "last_error = CASE WHEN ? = 1 THEN last_error ELSE ? END, "
                          "next_attempt_at = ?, sent_at = ?, updated_at = ?, "
                          /* Sent or suppressed for good: the sealed secrets (and
                           * the clear token of a row queued before they were
                           * sealed) are no longer needed; a failed message keeps
                           * them for a resend. */
                          "variables = CASE WHEN ?11 = 0 OR NOT json_valid(variables) THEN "
                          "variables WHEN template IN ('email_verification', 'password_reset') "
                          "THEN json_remove(variables, '$.sealed', '$.token', '$.url') "
                          "ELSE json_remove(variables, '$.sealed') END "
                          "WHERE id = ?9 AND status = 'sending' AND attempts = ?10",
                          &st);
        if (e) {
            break;
        }
        dm_stmt_bind_str(st, 1, status[w->o]);
        /* a release gives the claim's attempt back */
        dm_stmt_bind_int64(st, 2, w->o == O_RELEASE ? c->attempts - 1 : c->attempts);
        dm_stmt_bind_str(st, 3, w->provider_id);
        /* a release keeps the error of the attempt before */
        dm_stmt_bind_int64(st, 4, w->o == O_RELEASE);
        dm_stmt_bind_str(st, 5, w->why);
        dm_stmt_bind_int64(st, 6, w->next_at ? w->next_at : w->now);
        if (w->o == O_SENT) {
            dm_stmt_bind_int64(st, 7, w->now);
        } else {
            dm_stmt_bind_null(st, 7);
        }
        dm_stmt_bind_int64(st, 8, w->now);
        dm_stmt_bind_int64(st, 9, c->id);
        dm_stmt_bind_int64(st, 10, c->attempts);
        dm_stmt_bind_int64(st, 11, w->o == O_SENT || w->o == O_SUPPRESS);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
    }
    apr_array_clear(r->pending);
    return e;
}

/* Notes what happened to one claimed message, written by the next flush
 * (the batch's end, a pace's wait, or this one's wait of a second). */
static dm_err *record(run *r, claimed *c, outcome o, const char *provider_id, const char *why,
                      int64_t next_at)
{
    pending *w;

    if (r->pending->nelts == 0) {
        r->pending_since = apr_time_now();
    }
    w = apr_array_push(r->pending);
    w->c = c;
    w->o = o;
    w->provider_id = provider_id ? apr_pstrdup(r->bp, provider_id) : NULL;
    w->why = why ? apr_pstrdup(r->bp, short_error(r->bp, why)) : NULL;
    w->next_at = next_at;
    w->now = dm_now();
    c->done = 1;
    if (apr_time_now() - r->pending_since >= apr_time_from_msec(RECORD_WAIT_MS)) {
        return flush(r);
    }
    return NULL;
}

/* Waits for a token of the bucket (capacity max(1, rate), refilled at
 * `rate` a second, real time), the outcomes decided so far written first.
 * *go 0 when the wait would pass the run's end. */
static dm_err *pace(run *r, int *go)
{
    apr_time_t now = apr_time_now();
    double cap = r->rate > 1 ? r->rate : 1;

    *go = 1;
    if (r->rate <= 0) {
        return NULL;
    }
    r->tokens += (double)(now - r->refilled) / (double)APR_USEC_PER_SEC * r->rate;
    r->refilled = now;
    if (r->tokens > cap) {
        r->tokens = cap;
    }
    if (r->tokens < 1) {
        apr_interval_time_t wait =
            (apr_interval_time_t)((1 - r->tokens) / r->rate * (double)APR_USEC_PER_SEC) + 1;
        dm_err *e;
        if (now + wait > r->deadline) {
            *go = 0;
            return NULL;
        }
        e = flush(r);
        if (e) {
            return e;
        }
        apr_sleep(wait);
        r->tokens = 1;
        r->refilled = apr_time_now();
    }
    r->tokens -= 1;
    return NULL;
}

/* One message: compose, pace, send, record. */
static dm_err *deliver(run *r, apr_pool_t *p, claimed *c)
{
    dm_mail mail;
    outcome o = O_FAIL;
    const char *why = NULL, *provider_id = NULL;
    uint32_t retry_after = 0;
    dm_message msg;
    dm_status st;
    dm_err *e;

    if (c->attempts > r->max_attempts) {
        /* claimed again and again without an outcome: its senders died
         * with it (a message that crashes the sender must not loop) */
        why = apr_psprintf(p, "gave up after %" APR_INT64_T_FMT " claims without an outcome",
                           (apr_int64_t)c->attempts - 1);
        r->failed++;
        dm_log(DM_L_NOTICE, "DM01005: mail %" APR_INT64_T_FMT " (%s) to %s failed: %s",
               (apr_int64_t)c->id, c->template_key, c->recipient, why);
        return record(r, c, O_FAIL, NULL, why, 0);
    }
    e = compose(r, p, c, &mail, &o, &why);
    if (e) {
        return e;
    }
    if (o != O_SENT) {
        if (o == O_SUPPRESS) {
            r->suppressed++;
            dm_log(DM_L_INFO, "mail %" APR_INT64_T_FMT " to %s suppressed: %s", (apr_int64_t)c->id,
                   c->recipient, why);
        } else {
            r->failed++;
            dm_log(DM_L_NOTICE, "DM01001: mail %" APR_INT64_T_FMT " (%s) to %s failed: %s",
                   (apr_int64_t)c->id, c->template_key, c->recipient, why);
        }
        return record(r, c, o, NULL, why, 0);
    }
    {
        int go = 1;
        e = pace(r, &go);
        if (e) {
            return e;
        }
        if (!go) {
            r->stop = 1;
            return NULL; /* released by the caller */
        }
    }
    st = dm_mailer_send(r->plugins, r->mailer, p, &mail, &provider_id, &retry_after, &msg);
    switch (st) {
    case DM_OK:
        r->sent++;
        r->temp_in_a_row = 0;
        return record(r, c, O_SENT, provider_id, NULL, 0);
    case DM_ERR_TEMPORARY:
    case DM_ERR_INTERNAL: /* maybe sent, maybe not: the idempotency key makes a retry safe */
        r->temp_in_a_row++;
        why = msg.text[0] ? msg.text : "temporary failure";
        if (retry_after) {
            /* the provider asked us to wait: this run sends no more */
            r->stop = 1;
            r->release_until = dm_now() + retry_after;
        } else if (r->temp_in_a_row >= TEMP_FAILURES_STOP) {
            r->stop = 1;
        }
        if (c->attempts >= r->max_attempts) {
            r->failed++;
            why = apr_psprintf(p, "gave up after %" APR_INT64_T_FMT " attempts: %s",
                               (apr_int64_t)c->attempts, why);
            dm_log(DM_L_NOTICE, "DM01002: mail %" APR_INT64_T_FMT " (%s) to %s failed: %s",
                   (apr_int64_t)c->id, c->template_key, c->recipient, why);
            return record(r, c, O_FAIL, NULL, why, 0);
        }
        r->retried++;
        dm_log(DM_L_INFO,
               "mail %" APR_INT64_T_FMT " to %s: temporary failure, attempt %" APR_INT64_T_FMT
               ": %s",
               (apr_int64_t)c->id, c->recipient, (apr_int64_t)c->attempts, why);
        return record(r, c, O_RETRY, NULL, why,
                      dm_now() +
                          dm_mail_backoff((int)c->attempts, retry_after, randombytes_random()));
    default:
        /* INVALID (refused input: header injection, a bad address),
         * PERMANENT (the provider refused), CONFIG, UNSUPPORTED */
        r->failed++;
        r->temp_in_a_row = 0;
        why = msg.text[0] ? msg.text : "the mailer refused the message";
        dm_log(DM_L_NOTICE, "DM01004: mail %" APR_INT64_T_FMT " (%s) to %s failed: %s",
               (apr_int64_t)c->id, c->template_key, c->recipient, why);
        return record(r, c, O_FAIL, NULL, why, 0);
    }
}

static int keep_going(run *r)
{
    return !r->stop && apr_time_now() < r->deadline && dm_job_keep_going(r->ctx);
}

dm_err *dm_mail_job(dm_job_ctx *ctx, dm_job_result *res)
{
    static int warned; /* once per process: the job runs every few seconds */
    run r;
    const char *why = NULL;
    dm_err *e = NULL;

    *res = DM_JOB_OK;
    memset(&r, 0, sizeof(r));
    r.ctx = ctx;
    r.plugins = ctx->env->plugins;
    r.mailer = find_mailer(ctx->env, &why);
    if (!r.mailer) {
        if (!warned) {
            warned = 1;
            dm_log(DM_L_WARN, "DM01000: the mail job sends nothing: %s", why);
        }
        return NULL;
    }
    if (!ctx->env->keys) {
        return dm_err_make(ctx->pool, DM_E_INTERNAL, NULL, "the mail job needs the derived keys");
    }
    r.site.unsubscribe_key = ctx->env->keys->unsubscribe;
    r.site.public_url = ctx->env->public_url;
    r.site.from = ctx->env->mail_from;
    r.max_attempts = setting_attempts(r.mailer);
    r.rate = setting_rate(r.mailer);
    r.tokens = r.rate > 1 ? r.rate : 1;
    r.refilled = apr_time_now();
    r.deadline = r.refilled + apr_time_from_sec(DM_MAIL_RUN_SECONDS);
    r.templates = apr_hash_make(ctx->pool);

    while (!e && keep_going(&r)) {
        apr_pool_t *bp;
        apr_array_header_t *batch;

        apr_pool_create(&bp, ctx->pool);
        r.bp = bp;
        r.pending = apr_array_make(bp, DM_MAIL_BATCH, sizeof(pending));
        e = claim(&r, bp, &batch);
        if (!e && batch->nelts == 0) {
            apr_pool_destroy(bp);
            break;
        }
        for (int i = 0; !e && i < batch->nelts; i++) {
            claimed *c = &APR_ARRAY_IDX(batch, i, claimed);
            apr_pool_t *mp;
            if (r.stop || apr_time_now() >= r.deadline) {
                break;
            }
            apr_pool_create(&mp, bp);
            e = deliver(&r, mp, c);
            apr_pool_destroy(mp);
            ctx->items += c->done;
        }
        /* what this run claimed but will not send goes back, its attempt
         * not counted */
        for (int i = 0; !e && i < batch->nelts; i++) {
            claimed *c = &APR_ARRAY_IDX(batch, i, claimed);
            if (!c->done) {
                e = record(&r, c, O_RELEASE, NULL, NULL, r.release_until);
            }
        }
        /* the batch's outcomes, whatever stopped it (those decided before
         * an error are kept, as when each had its own transaction) */
        {
            dm_err *fe = flush(&r);
            if (!e) {
                e = fe;
            }
        }
        r.pending = NULL;
        apr_pool_destroy(bp);
    }
    dm_metrics_add(DM_M_MAIL_SENT, r.sent, DM_ML_END);
    dm_metrics_add(DM_M_MAIL_FAILED, r.failed, DM_ML_END);
    dm_metrics_add(DM_M_MAIL_SUPPRESSED, r.suppressed, DM_ML_END);
    if (r.sent + r.failed + r.retried + r.suppressed > 0) {
        dm_log(DM_L_INFO,
               "mail job: %" APR_INT64_T_FMT " sent, %" APR_INT64_T_FMT
               " retried, %" APR_INT64_T_FMT " failed, %" APR_INT64_T_FMT " suppressed",
               (apr_int64_t)r.sent, (apr_int64_t)r.retried, (apr_int64_t)r.failed,
               (apr_int64_t)r.suppressed);
    }
    return e;
}

/* ---- the commission digest ---- */

typedef struct digest_row {
    int64_t user_id;
    const char *email;
    int64_t count;
    int64_t total_micros;
    const char *currency;
} digest_row;

dm_err *dm_mail_job_commission_digest(dm_job_ctx *ctx, dm_job_result *res)
{
    dm_db *db = ctx->db;
    apr_pool_t *p = ctx->pool;
    int64_t day_end = dm_day_floor(ctx->period_start), day_start = day_end - 86400;
    const char *day = apr_pstrndup(p, dm_json_time(p, day_start), 10);
    apr_array_header_t *rows = apr_array_make(p, 64, sizeof(digest_row));
    dm_stmt *st;
    int row = 0;
    dm_err *e;

    *res = DM_JOB_OK;
    /* Read the whole day first (no transaction), then write in batches:
     * one row per beneficiary, so memory follows the members paid that
     * day, not the commissions. */
    e = dm_db_prepare(db, p,
                      "SELECT c.beneficiary_id, u.email, COUNT(*), SUM(c.amount_micros), "
                      "MIN(c.currency) FROM commissions c JOIN users u ON u.id = c.beneficiary_id "
                      "WHERE c.created_at >= ? AND c.created_at < ? AND c.status <> 'clawed_back' "
                      "AND NOT EXISTS (SELECT 1 FROM email_preferences ep WHERE ep.user_id = "
                      "c.beneficiary_id AND ep.category = 'commission_digest' AND "
                      "ep.subscribed = 0) GROUP BY c.beneficiary_id, u.email "
                      "ORDER BY c.beneficiary_id",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, day_start);
    dm_stmt_bind_int64(st, 2, day_end);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        digest_row *d = apr_array_push(rows);
        d->user_id = dm_stmt_int64(st, 0);
        d->email = dm_stmt_dup_text(st, p, 1);
        d->count = dm_stmt_int64(st, 2);
        d->total_micros = dm_stmt_int64(st, 3);
        d->currency = dm_stmt_dup_text(st, p, 4);
    }
    dm_stmt_done(st);
    for (int i = 0; !e && i < rows->nelts; i += DIGEST_BATCH) {
        apr_pool_t *bp;
        if (i > 0 && !dm_job_keep_going(ctx)) {
            return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                               "the digest of %s stopped after %d members", day, i);
        }
        apr_pool_create(&bp, p);
        e = dm_db_begin(db, bp);
        for (int k = i; !e && k < rows->nelts && k < i + DIGEST_BATCH; k++) {
            const digest_row *d = &APR_ARRAY_IDX(rows, k, digest_row);
            json_t *vars = dm_json_own(
                bp, json_pack("{s:s,s:I,s:I,s:s}", "day", day, "count", (json_int_t)d->count,
                              "total_micros", (json_int_t)d->total_micros, "currency",
                              d->currency ? d->currency : DM_TMPL_DEFAULT_CURRENCY));
            e = dm_mail_enqueue(db, bp, d->email, "commission_digest", vars,
                                apr_psprintf(bp, "commission_digest:%" APR_INT64_T_FMT ":%s",
                                             (apr_int64_t)d->user_id, day));
        }
        if (!e) {
            e = dm_db_commit(db, bp);
        }
        if (e) {
            dm_db_rollback(db);
        } else {
            ctx->items += (rows->nelts - i < DIGEST_BATCH) ? rows->nelts - i : DIGEST_BATCH;
        }
        apr_pool_destroy(bp);
    }
    return e;
}
