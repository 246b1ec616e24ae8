/*
 * routes/email.c — e-mail over HTTP, thin over core/mail*.c:
 *
 *   staff (roles in routes_admin.c's table: owner and support)
 *     GET  /api/admin/email                        the queue and its history
 *     POST /api/admin/email/{id}/resend            a failed message again
 *     GET  /api/admin/email-templates              every template
 *     GET  /api/admin/email-templates/{key}        one, with its versions
 *     PUT  /api/admin/email-templates/{key}        save a new version
 *     POST /api/admin/email-templates/{key}/preview   render with samples
 *     POST /api/admin/email-templates/{key}/restore   an old version again
 *     GET  /api/admin/email-suppressions           the suppression list
 *     DELETE /api/admin/email-suppressions/{email} take an address off it
 *   members
 *     GET|PUT /api/me/email-preferences            marketing categories
 *   anyone (RFC 8058: no cookie, no CSRF token, never a redirect)
 *     GET  /api/email/unsubscribe?token=           a page asking to confirm;
 *                                                  changes nothing
 *     POST /api/email/unsubscribe?token=           one-click unsubscribe
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "base/json.h"
#include "mail/mail.h"
#include "mail/mail_oneclick.h"
#include "mail/mail_prefs.h"
#include "mail/mail_templates.h"
#include "base/template.h"

#define MAX_FILTER_FIELD 320
#define MAX_KEY_FIELD 64
#define MAX_PART_FIELD (4 * DM_TMPL_MAX_BYTES)

static dm_err *locale_arg(request_rec *r, const char **out)
{
    dm_err *e = dm_http_arg_max(r, "locale", 16, out);
    if (!e && !*out) {
        *out = DM_MAIL_LOCALE;
    }
    return e;
}

static dm_mail_site site(request_rec *r)
{
    dm_mail_site s;

    s.unsubscribe_key = dm_g.keys.unsubscribe;
    s.public_url = dm_conf_get(r->server)->public_url;
    s.from = dm_conf_get(r->server)->mail_from;
    return s;
}

/* ---- the queue ---- */

static json_t *mail_row(apr_pool_t *p, const void *row, int staff_view)
{
    return dm_mail_row_json(p, row);
}

static int email_list(request_rec *r, const dm_route_match *m)
{
    dm_http_page pg;
    const char *status = NULL, *recipient = NULL;
    dm_err *e = dm_http_page_begin(r, m, DM_HTTP_STAFF, "status recipient", &pg);

    if (!e) {
        e = dm_http_arg_max(r, "status", 16, &status);
    }
    if (!e) {
        e = dm_http_arg_max(r, "recipient", MAX_FILTER_FIELD, &recipient);
    }
    if (!e) {
        e = dm_mail_list(pg.db, r->pool, status, recipient, pg.cursor, pg.limit, &pg.rows,
                         &pg.next);
    }
    return dm_http_page_send(r, e, &pg, "messages", mail_row);
}

static int email_resend(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    dm_mail_row row;
    int64_t id = 0;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e && dm_http_id_param(r, m, "message", &id)) {
        /* Not a number: no such message (a path, not a field). */
        e = dm_err_make(r->pool, DM_E_NOT_FOUND, NULL, "no such message");
    }
    if (!e) {
        e = dm_mail_resend(db, r->pool, st.id, r->useragent_ip, id, &row);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK,
                                 json_pack("{s:o}", "message", dm_mail_row_json(r->pool, &row)));
}

/* ---- templates ---- */

static int templates_list(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    apr_array_header_t *defs = NULL, *tmpls = NULL;
    json_t *arr;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_mail_tmpl_list(db, r->pool, &defs, &tmpls);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    arr = json_array();
    for (int i = 0; i < defs->nelts; i++) {
        json_array_append_new(arr, dm_mail_tmpl_json(r->pool, &APR_ARRAY_IDX(defs, i, dm_mail_def),
                                                     &APR_ARRAY_IDX(tmpls, i, dm_mail_tmpl), 0));
    }
    return dm_http_send_json(r, HTTP_OK, json_pack("{s:o,s:n}", "templates", arr, "next_cursor"));
}

/* One template as GET and PUT answer it: the text and every version. */
static int send_template(request_rec *r, dm_db *db, const char *key, const char *locale, int status)
{
    dm_mail_def def;
    dm_mail_tmpl t;
    apr_array_header_t *versions = NULL;
    json_t *arr;
    dm_err *e = dm_mail_def_get(db, r->pool, key, &def);

    if (!e) {
        e = dm_mail_tmpl_get(db, r->pool, key, locale, &t);
    }
    if (!e) {
        e = dm_mail_tmpl_versions(db, r->pool, key, locale, &versions);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    arr = json_array();
    for (int i = 0; i < versions->nelts; i++) {
        const dm_mail_tmpl *v = &APR_ARRAY_IDX(versions, i, dm_mail_tmpl);
        json_array_append_new(
            arr, json_pack("{s:I,s:s,s:o,s:o,s:o}", "version", (json_int_t)v->version, "subject",
                           v->subject, "updated_by",
                           v->updated_by ? json_integer(v->updated_by) : json_null(), "created_at",
                           dm_json_time_or_null(r->pool, v->updated_at), "restored_from",
                           v->restored_from ? json_integer(v->restored_from) : json_null()));
    }
    return dm_http_send_json(r, status,
                             json_pack("{s:o,s:o}", "template",
                                       dm_mail_tmpl_json(r->pool, &def, &t, 1), "versions", arr));
}

static int template_get(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    const char *locale = NULL;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = locale_arg(r, &locale);
    }
    return e ? dm_http_error(r, e)
             : send_template(r, db, apr_table_get(m->params, "key"), locale, HTTP_OK);
}

/* The optional "locale" of a body, else DM_MAIL_LOCALE. */
static dm_err *body_locale(request_rec *r, json_t *b, const char **locale)
{
    *locale = DM_MAIL_LOCALE;
    return dm_json_get_string(r->pool, b, "locale", 0, 16, locale, NULL);
}

static int template_put(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    json_t *b;
    const char *key = apr_table_get(m->params, "key"), *locale = NULL;
    const char *subject = NULL, *text = NULL, *html = NULL;
    int64_t version = 0;
    dm_mail_tmpl saved;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = body_locale(r, b, &locale);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "subject", 1, MAX_PART_FIELD, &subject, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "text", 1, MAX_PART_FIELD, &text, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "html", 1, MAX_PART_FIELD, &html, NULL);
    }
    if (!e) {
        e = dm_json_get_int64(r->pool, b, "version", 0, 1, INT64_MAX, &version, NULL);
    }
    if (!e) {
        e = dm_mail_tmpl_save(db, r->pool, st.id, r->useragent_ip, key, locale, subject, text, html,
                              version, &saved);
    }
    return e ? dm_http_error(r, e) : send_template(r, db, key, locale, HTTP_OK);
}

static int template_preview(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    json_t *b, *headers;
    dm_mail_preview_in in;
    dm_mail_preview_out out;
    dm_mail_site s = site(r);
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    memset(&in, 0, sizeof(in));
    in.key = apr_table_get(m->params, "key");
    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = body_locale(r, b, &in.locale);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "subject", 0, MAX_PART_FIELD, &in.subject, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "text", 0, MAX_PART_FIELD, &in.text, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "html", 0, MAX_PART_FIELD, &in.html, NULL);
    }
    if (!e) {
        json_t *v = json_object_get(b, "variables");
        in.variables = json_is_null(v) ? NULL : v; /* json_is_null(NULL) is 0 */
        e = dm_mail_preview(db, r->pool, &s, &in, &out);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    headers = json_object();
    if (out.marketing) {
        json_object_set_new(headers, "List-Unsubscribe", json_string(out.list_unsubscribe));
        json_object_set_new(headers, "List-Unsubscribe-Post",
                            json_string("List-Unsubscribe=One-Click"));
    }
    return dm_http_send_json(r, HTTP_OK,
                             json_pack("{s:s,s:s,s:s,s:o}", "subject", out.subject, "text",
                                       out.text, "html", out.html, "headers", headers));
}

static int template_restore(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    json_t *b;
    const char *key = apr_table_get(m->params, "key"), *locale = NULL;
    int64_t version = 0;
    dm_mail_tmpl saved;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = body_locale(r, b, &locale);
    }
    if (!e) {
        e = dm_json_get_int64(r->pool, b, "version", 1, 1, INT64_MAX, &version, NULL);
    }
    if (!e) {
        e = dm_mail_tmpl_restore(db, r->pool, st.id, r->useragent_ip, key, locale, version, &saved);
    }
    return e ? dm_http_error(r, e) : send_template(r, db, key, locale, HTTP_OK);
}

/* ---- suppressions ---- */

static json_t *suppression_row(apr_pool_t *p, const void *row, int staff_view)
{
    return dm_suppression_json(p, row);
}

static int suppressions_list(request_rec *r, const dm_route_match *m)
{
    dm_http_page pg;
    dm_err *e = dm_http_page_begin(r, m, DM_HTTP_STAFF, NULL, &pg);

    if (!e) {
        e = dm_suppression_list(pg.db, r->pool, pg.cursor, pg.limit, &pg.rows, &pg.next);
    }
    return dm_http_page_send(r, e, &pg, "suppressions", suppression_row);
}

static int suppression_delete(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    const char *email = apr_table_get(m->params, "email");
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e && strlen(email) > MAX_FILTER_FIELD) {
        e = dm_err_make(r->pool, DM_E_NOT_FOUND, NULL, "that address is not on the list");
    }
    if (!e) {
        e = dm_suppression_remove(db, r->pool, st.id, r->useragent_ip, email);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK, json_pack("{s:b,s:s}", "removed", 1, "email", email));
}

/* ---- members ---- */

static int prefs_get(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member mem = {0};
    json_t *prefs = NULL;
    dm_err *e = dm_http_member_db(r, &db, &mem);

    if (!e) {
        e = dm_mail_prefs_get(db, r->pool, mem.id, &prefs);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK, json_pack("{s:o}", "email_preferences", prefs));
}

static int prefs_put(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member mem = {0};
    json_t *b, *prefs = NULL;
    dm_err *e = dm_http_member_db(r, &db, &mem);

    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_mail_prefs_set(db, r->pool, mem.id, b, &prefs);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK, json_pack("{s:o}", "email_preferences", prefs));
}

/* ---- one-click unsubscribe (RFC 8058) ---- */

static const char page_head[] =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width\">"
    "<meta name=\"robots\" content=\"noindex\"><title>Unsubscribe</title></head><body>\n";

static int page(request_rec *r, int status, const char *inner)
{
    const char *body = apr_pstrcat(r->pool, page_head, inner, "\n</body></html>\n", NULL);
    return dm_http_html(r, status, body, strlen(body));
}

/* A browser that posted the page's form wants a page back; a mail
 * provider's one-click POST gets JSON. */
static int wants_html(request_rec *r)
{
    const char *accept = apr_table_get(r->headers_in, "Accept");
    return accept && strstr(accept, "text/html") != NULL;
}

static dm_err *unsub_token(request_rec *r, int64_t *user, const char **category, const char **token)
{
    *token = dm_http_arg(r, "token");
    return dm_unsub_verify(r->pool, dm_g.keys.unsubscribe, *token, user, category);
}

static int unsubscribe_page(request_rec *r, const dm_route_match *m)
{
    int64_t user = 0;
    const char *category = NULL, *token = NULL;
    dm_err *e = dm_http_rate_limit(r, "webhook", r->useragent_ip);

    if (e) {
        return dm_http_error(r, e);
    }
    e = unsub_token(r, &user, &category, &token);
    if (e) {
        return page(r, HTTP_BAD_REQUEST,
                    "<h1>This link does not work</h1><p>It may have been cut short. Open it "
                    "again from the e-mail, or change your e-mail preferences in your "
                    "account.</p>");
    }
    /* Mail scanners open links: this page only asks. */
    return page(
        r, HTTP_OK,
        apr_psprintf(r->pool,
                     "<h1>Unsubscribe</h1><p>Stop sending you <b>%s</b> e-mails? Messages about "
                     "your account, orders and withdrawals still reach you.</p>"
                     "<form method=\"post\" action=\"/api/email/unsubscribe?token=%s\">"
                     "<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">"
                     "<button type=\"submit\">Unsubscribe</button></form>",
                     ap_escape_html(r->pool, category), ap_escape_html(r->pool, token)));
}

static int unsubscribe_post(request_rec *r, const dm_route_match *m)
{
    int64_t user = 0;
    const char *category = NULL, *token = NULL, *body = NULL;
    apr_size_t len = 0;
    dm_db *db;
    dm_err *e = dm_http_rate_limit(r, "webhook", r->useragent_ip);

    if (!e) {
        e = dm_http_read_body(r, &body, &len);
    }
    if (!e) {
        e = unsub_token(r, &user, &category, &token);
    }
    if (!e && !dm_unsub_body_ok(apr_table_get(r->headers_in, "Content-Type"), body, len)) {
        e = dm_err_make(r->pool, DM_E_INVALID, "List-Unsubscribe",
                        "the body must be List-Unsubscribe=One-Click (RFC 8058)");
    }
    if (!e) {
        e = dm_db_pool_acquire(dm_g.db, r->pool, &db);
    }
    if (!e) {
        e = dm_unsub_apply(db, r->pool, user, category);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "member %" APR_INT64_T_FMT " unsubscribed from %s",
                  (apr_int64_t)user, category);
    if (wants_html(r)) {
        return page(r, HTTP_OK,
                    apr_psprintf(r->pool,
                                 "<h1>Unsubscribed</h1><p>You will not get <b>%s</b> e-mails "
                                 "any more. You can change this in your account's e-mail "
                                 "preferences.</p>",
                                 ap_escape_html(r->pool, category)));
    }
    return dm_http_send_json(r, HTTP_OK,
                             json_pack("{s:b,s:s}", "unsubscribed", 1, "category", category));
}

const dm_route_def dm_routes_email[] = {
    {"GET", "/api/admin/email", email_list},
    {"POST", "/api/admin/email/{id}/resend", email_resend},
    {"GET", "/api/admin/email-templates", templates_list},
    {"GET", "/api/admin/email-templates/{key}", template_get},
    {"PUT", "/api/admin/email-templates/{key}", template_put},
    {"POST", "/api/admin/email-templates/{key}/preview", template_preview},
    {"POST", "/api/admin/email-templates/{key}/restore", template_restore},
    {"GET", "/api/admin/email-suppressions", suppressions_list},
    {"DELETE", "/api/admin/email-suppressions/{email}", suppression_delete},
    {"GET", "/api/me/email-preferences", prefs_get},
    {"PUT", "/api/me/email-preferences", prefs_put},
    {"GET", "/api/email/unsubscribe", unsubscribe_page},
    {"POST", "/api/email/unsubscribe", unsubscribe_post},
    {NULL, NULL, NULL},
};
