/*
 * mail_templates.c — see mail_templates.h.
 */
#include "mail/mail_templates.h"

#include <apr_strings.h>
#include <string.h>

#include "store/audit.h"
#include "base/clock.h"
#include "base/json.h"
#include "base/template.h"
#include "base/validate.h"

static const char *id_str(apr_pool_t *p, const char *key, const char *locale)
{
    return apr_pstrcat(p, key, "/", locale, NULL);
}

static int all_in(const char *s, size_t n, char lo, char hi)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < lo || s[i] > hi) {
            return 0;
        }
    }
    return 1;
}

/* A locale tag as stored: "en", "haw", "pt-BR". */
static dm_err *check_locale(apr_pool_t *p, const char *locale)
{
    size_t n = locale ? strlen(locale) : 0;
    size_t lang = n > 3 ? n - 3 : n;
    int ok = (lang == 2 || lang == 3) && all_in(locale, lang, 'a', 'z') &&
             (n == lang || (locale[lang] == '-' && all_in(locale + lang + 1, 2, 'A', 'Z')));

    if (!ok) {
        return dm_err_make(p, DM_E_INVALID, "locale", "locale must look like \"en\" or \"pt-BR\"");
    }
    return NULL;
}

/* ---- reading ---- */

#define DEF_COLS "key, class, category, description, variables, sample"

static dm_err *read_def(dm_stmt *st, apr_pool_t *p, dm_mail_def *d)
{
    json_t *vars, *sample;
    const char *vtext = dm_stmt_dup_text(st, p, 4), *stext = dm_stmt_dup_text(st, p, 5);

    memset(d, 0, sizeof(*d));
    d->key = dm_stmt_dup_text(st, p, 0);
    d->marketing = strcmp(dm_stmt_text(st, 1, NULL), "marketing") == 0;
    d->category = dm_stmt_dup_text(st, p, 2);
    d->description = dm_stmt_dup_text(st, p, 3);
    vars = dm_json_own(p, json_loads(vtext ? vtext : "", 0, NULL));
    sample = dm_json_own(p, json_loads(stext ? stext : "", 0, NULL));
    if (!json_is_array(vars) || !json_is_object(sample)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "the definition of template %s has malformed variables or sample",
                           d->key);
    }
    d->variables = apr_array_make(p, (int)json_array_size(vars) + 1, sizeof(const char *));
    for (size_t i = 0; i < json_array_size(vars); i++) {
        const char *name = json_string_value(json_array_get(vars, i));
        if (name) {
            APR_ARRAY_PUSH(d->variables, const char *) = apr_pstrdup(p, name);
        }
    }
    d->sample = sample;
    return NULL;
}

dm_err *dm_mail_def_get(dm_db *db, apr_pool_t *p, const char *key, dm_mail_def *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e =
        dm_db_prepare(db, p, "SELECT " DEF_COLS " FROM email_template_defs WHERE key = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, key);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        e = read_def(st, p, out);
    }
    dm_stmt_done(st);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "no e-mail template named %s", key);
    }
    return e;
}

#define TMPL_COLS "key, locale, subject, text_body, html_body, version, updated_by, updated_at"

static void read_tmpl(dm_stmt *st, apr_pool_t *p, int c, dm_mail_tmpl *t)
{
    memset(t, 0, sizeof(*t));
    t->key = dm_stmt_dup_text(st, p, c);
    t->locale = dm_stmt_dup_text(st, p, c + 1);
    t->subject = dm_stmt_dup_text(st, p, c + 2);
    t->text = dm_stmt_dup_text(st, p, c + 3);
    t->html = dm_stmt_dup_text(st, p, c + 4);
    t->version = dm_stmt_int64(st, c + 5);
    t->updated_by = dm_stmt_is_null(st, c + 6) ? 0 : dm_stmt_int64(st, c + 6);
    t->updated_at = dm_stmt_int64(st, c + 7);
}

dm_err *dm_mail_tmpl_get(dm_db *db, apr_pool_t *p, const char *key, const char *locale,
                         dm_mail_tmpl *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(
        db, p, "SELECT " TMPL_COLS " FROM email_templates WHERE key = ? AND locale = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, key);
    dm_stmt_bind_str(st, 2, locale);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        read_tmpl(st, p, 0, out);
    }
    dm_stmt_done(st);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "template %s has no text in locale %s", key,
                        locale);
    }
    return e;
}

dm_err *dm_mail_tmpl_list(dm_db *db, apr_pool_t *p, apr_array_header_t **defs,
                          apr_array_header_t **tmpls)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT d.key, d.class, d.category, d.description, d.variables, "
                              "d.sample, t.key, t.locale, t.subject, t.text_body, t.html_body, "
                              "t.version, t.updated_by, t.updated_at FROM email_template_defs d "
                              "JOIN email_templates t ON t.key = d.key AND t.locale = ? "
                              "ORDER BY d.key",
                              &st);

    *defs = apr_array_make(p, 16, sizeof(dm_mail_def));
    *tmpls = apr_array_make(p, 16, sizeof(dm_mail_tmpl));
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, DM_MAIL_LOCALE);
    while (!e && !(e = dm_stmt_step(st, p, &row)) && row) {
        e = read_def(st, p, apr_array_push(*defs));
        read_tmpl(st, p, 6, apr_array_push(*tmpls));
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_mail_tmpl_versions(dm_db *db, apr_pool_t *p, const char *key, const char *locale,
                              apr_array_header_t **rows)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT key, locale, subject, text_body, html_body, version, "
                              "updated_by, created_at, restored_from FROM email_template_versions "
                              "WHERE key = ? AND locale = ? ORDER BY version DESC",
                              &st);

    *rows = apr_array_make(p, 8, sizeof(dm_mail_tmpl));
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, key);
    dm_stmt_bind_str(st, 2, locale);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        dm_mail_tmpl *t = apr_array_push(*rows);
        read_tmpl(st, p, 0, t);
        t->restored_from = dm_stmt_is_null(st, 8) ? 0 : dm_stmt_int64(st, 8);
    }
    dm_stmt_done(st);
    return e;
}

/* ---- checking and rendering ---- */

static dm_err *check_part(apr_pool_t *p, const dm_mail_def *def, const char *field, const char *src,
                          dm_tmpl_mode mode)
{
    size_t n = src ? strlen(src) : 0;

    if (!src) {
        return dm_err_make(p, DM_E_INVALID, field, "%s is missing", field);
    }
    if (!dm_utf8_valid(src, n)) {
        return dm_err_make(p, DM_E_INVALID, field, "%s is not valid UTF-8", field);
    }
    return dm_tmpl_check(p, field, src, n, mode, def->variables);
}

dm_err *dm_mail_tmpl_validate(apr_pool_t *p, const dm_mail_def *def, const char *subject,
                              const char *text, const char *html)
{
    dm_err *e = check_part(p, def, "subject", subject, DM_TMPL_HEADER);

    if (!e && strspn(subject, " \t") == strlen(subject)) {
        e = dm_err_make(p, DM_E_INVALID, "subject", "subject is empty");
    }
    if (!e) {
        e = check_part(p, def, "text", text, DM_TMPL_TEXT);
    }
    if (!e) {
        e = check_part(p, def, "html", html, DM_TMPL_HTML);
    }
    if (!e && !*text && !*html) {
        e = dm_err_make(p, DM_E_INVALID, "text", "a message needs a text or an HTML body");
    }
    return e;
}

dm_err *dm_mail_tmpl_render(apr_pool_t *p, const dm_mail_def *def, const dm_mail_tmpl *t,
                            const json_t *vars, dm_mail_rendered *out)
{
    static const struct {
        const char *field;
        dm_tmpl_mode mode;
    } parts[] = {{"subject", DM_TMPL_HEADER}, {"text", DM_TMPL_TEXT}, {"html", DM_TMPL_HTML}};
    const char *src[3] = {t->subject, t->text, t->html};
    const char *res[3] = {"", "", ""};

    for (int i = 0; i < 3; i++) {
        dm_tmpl *parsed;
        dm_err *e =
            dm_tmpl_parse(p, parts[i].field, src[i], strlen(src[i]), parts[i].mode, &parsed);
        if (!e) {
            e = dm_tmpl_render(p, parsed, vars, &res[i], NULL);
        }
        if (e) {
            return e;
        }
    }
    out->subject = res[0];
    out->text = res[1];
    out->html = res[2];
    return NULL;
}

/* ---- saving ---- */

static json_t *audit_json(apr_pool_t *p, const dm_mail_tmpl *t)
{
    return dm_json_own(
        p, json_pack("{s:I,s:s}", "version", (json_int_t)t->version, "subject", t->subject));
}

/* The new version `t` (key, locale, texts, updated_by set) in the open
 * transaction: current row, version row, audit row. */
static dm_err *write_version(dm_db *db, apr_pool_t *p, const dm_mail_tmpl *before, dm_mail_tmpl *t,
                             const char *action, const char *ip)
{
    dm_stmt *st;
    int row = 0;
    int64_t now = dm_now();
    dm_err *e;

    t->version = before ? before->version + 1 : 1;
    t->updated_at = now;
    e = dm_db_prepare(db, p,
                      "INSERT INTO email_templates (key, locale, subject, text_body, html_body, "
                      "version, updated_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                      "ON CONFLICT (key, locale) DO UPDATE SET subject = excluded.subject, "
                      "text_body = excluded.text_body, html_body = excluded.html_body, "
                      "version = excluded.version, updated_by = excluded.updated_by, "
                      "updated_at = excluded.updated_at",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, t->key);
    dm_stmt_bind_str(st, 2, t->locale);
    dm_stmt_bind_str(st, 3, t->subject);
    dm_stmt_bind_str(st, 4, t->text);
    dm_stmt_bind_str(st, 5, t->html);
    dm_stmt_bind_int64(st, 6, t->version);
    if (t->updated_by) {
        dm_stmt_bind_int64(st, 7, t->updated_by);
    } else {
        dm_stmt_bind_null(st, 7);
    }
    dm_stmt_bind_int64(st, 8, now);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e) {
        e = dm_db_prepare(db, p,
                          "INSERT INTO email_template_versions (key, locale, version, subject, "
                          "text_body, html_body, updated_by, restored_from, created_at) VALUES "
                          "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          &st);
    }
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, t->key);
    dm_stmt_bind_str(st, 2, t->locale);
    dm_stmt_bind_int64(st, 3, t->version);
    dm_stmt_bind_str(st, 4, t->subject);
    dm_stmt_bind_str(st, 5, t->text);
    dm_stmt_bind_str(st, 6, t->html);
    if (t->updated_by) {
        dm_stmt_bind_int64(st, 7, t->updated_by);
    } else {
        dm_stmt_bind_null(st, 7);
    }
    if (t->restored_from) {
        dm_stmt_bind_int64(st, 8, t->restored_from);
    } else {
        dm_stmt_bind_null(st, 8);
    }
    dm_stmt_bind_int64(st, 9, now);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e) {
        json_t *after = audit_json(p, t);
        if (t->restored_from) {
            json_object_set_new(after, "restored_from", json_integer(t->restored_from));
        }
        e = dm_audit_write(db, p, t->updated_by, action, "email_template",
                           id_str(p, t->key, t->locale), before ? audit_json(p, before) : NULL,
                           after, ip);
    }
    return e;
}

/* The current text, or *found 0. */
static dm_err *current(dm_db *db, apr_pool_t *p, const char *key, const char *locale,
                       dm_mail_tmpl *t, int *found)
{
    dm_err *e = dm_mail_tmpl_get(db, p, key, locale, t);

    *found = e == NULL;
    return e && e->code == DM_E_NOT_FOUND ? NULL : e;
}

dm_err *dm_mail_tmpl_save(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                          const char *key, const char *locale, const char *subject,
                          const char *text, const char *html, int64_t if_version, dm_mail_tmpl *out)
{
    dm_mail_def def;
    dm_mail_tmpl before;
    int found = 0;
    dm_err *e = check_locale(p, locale);

    if (!e) {
        e = dm_mail_def_get(db, p, key, &def);
    }
    if (!e) {
        e = dm_mail_tmpl_validate(p, &def, subject, text, html);
    }
    if (!e) {
        e = dm_db_begin(db, p);
    }
    if (e) {
        return e;
    }
    e = current(db, p, key, locale, &before, &found);
    if (!e && if_version > 0 && (!found || before.version != if_version)) {
        e = dm_err_make(p, DM_E_CONFLICT, "version",
                        "template %s/%s is at version %" APR_INT64_T_FMT ", not %" APR_INT64_T_FMT
                        ": reload it and edit again",
                        key, locale, (apr_int64_t)(found ? before.version : 0),
                        (apr_int64_t)if_version);
    }
    if (!e) {
        memset(out, 0, sizeof(*out));
        out->key = apr_pstrdup(p, key);
        out->locale = apr_pstrdup(p, locale);
        out->subject = subject;
        out->text = text;
        out->html = html;
        out->updated_by = staff_id;
        e = write_version(db, p, found ? &before : NULL, out, "email_template.update", ip);
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
    }
    return e;
}

dm_err *dm_mail_tmpl_restore(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                             const char *key, const char *locale, int64_t version,
                             dm_mail_tmpl *out)
{
    dm_mail_def def;
    dm_mail_tmpl before, old;
    dm_stmt *st;
    int found = 0, row = 0;
    dm_err *e = check_locale(p, locale);

    memset(&old, 0, sizeof(old));
    if (!e) {
        e = dm_mail_def_get(db, p, key, &def);
    }
    if (!e) {
        e = dm_db_begin(db, p);
    }
    if (e) {
        return e;
    }
    e = current(db, p, key, locale, &before, &found);
    if (!e) {
        e = dm_db_prepare(db, p,
                          "SELECT key, locale, subject, text_body, html_body, version, "
                          "updated_by, created_at FROM email_template_versions WHERE key = ? "
                          "AND locale = ? AND version = ?",
                          &st);
    }
    if (!e) {
        dm_stmt_bind_str(st, 1, key);
        dm_stmt_bind_str(st, 2, locale);
        dm_stmt_bind_int64(st, 3, version);
        e = dm_stmt_step(st, p, &row);
        if (!e && row) {
            read_tmpl(st, p, 0, &old);
        }
        dm_stmt_done(st);
    }
    if (!e && (!row || !found)) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "template %s/%s has no version %" APR_INT64_T_FMT,
                        key, locale, (apr_int64_t)version);
    }
    if (!e) {
        e = dm_mail_tmpl_validate(p, &def, old.subject, old.text, old.html);
    }
    if (!e) {
        memset(out, 0, sizeof(*out));
        out->key = old.key;
        out->locale = old.locale;
        out->subject = old.subject;
        out->text = old.text;
        out->html = old.html;
        out->updated_by = staff_id;
        out->restored_from = version;
        e = write_version(db, p, &before, out, "email_template.restore", ip);
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
    }
    return e;
}

json_t *dm_mail_tmpl_json(apr_pool_t *p, const dm_mail_def *def, const dm_mail_tmpl *t,
                          int with_bodies)
{
    json_t *o = json_object(), *vars = json_array();

    for (int i = 0; i < def->variables->nelts; i++) {
        json_array_append_new(vars, json_string(APR_ARRAY_IDX(def->variables, i, const char *)));
    }
    json_object_set_new(o, "key", json_string(def->key));
    json_object_set_new(o, "class", json_string(def->marketing ? "marketing" : "transactional"));
    json_object_set_new(o, "category", def->category ? json_string(def->category) : json_null());
    json_object_set_new(o, "description", json_string(def->description));
    json_object_set_new(o, "variables", vars);
    json_object_set_new(o, "locale", json_string(t->locale));
    json_object_set_new(o, "version", json_integer(t->version));
    json_object_set_new(o, "subject", json_string(t->subject));
    if (with_bodies) {
        json_object_set_new(o, "text", json_string(t->text));
        json_object_set_new(o, "html", json_string(t->html));
        json_object_set_new(o, "sample", json_deep_copy(def->sample));
    }
    json_object_set_new(o, "updated_by", t->updated_by ? json_integer(t->updated_by) : json_null());
    json_object_set_new(o, "updated_at", dm_json_time_or_null(p, t->updated_at));
    return o;
}
