/*
 * mail_templates.h — the e-mail templates staff edit: one definition per
 * kind of message (class, marketing category, declared variables, sample
 * values), its text per locale (subject, text body, HTML body), and every
 * version ever saved.
 *
 * Invariants:
 * - a stored template always parses and uses only its declared variables
 *   (checked by dm_mail_tmpl_save; the seeds of sql/012_mail.sql are
 *   checked by the unit tests), so a message never fails to render because
 *   of its template;
 * - a save or restore writes the new current text, a version row and an
 *   audit row in one transaction; versions are never edited or deleted, a
 *   restore copies an old version into a new one.
 *
 * Messages are rendered in DM_MAIL_LOCALE: members have no locale yet, so
 * other locales can be stored but are not sent.
 */
#ifndef DM_MAIL_TEMPLATES_H
#define DM_MAIL_TEMPLATES_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "store/db.h"
#include "base/err.h"

#define DM_MAIL_LOCALE "en"

typedef struct dm_mail_def {
    const char *key;
    int marketing;        /* class: 0 transactional, 1 marketing */
    const char *category; /* marketing: the preference it belongs to; else NULL */
    const char *description;
    apr_array_header_t *variables; /* const char *, the declared names */
    json_t *sample;                /* object; released with the pool */
} dm_mail_def;

typedef struct dm_mail_tmpl {
    const char *key;
    const char *locale;
    const char *subject;
    const char *text;
    const char *html;
    int64_t version;
    int64_t updated_by; /* staff id, 0: migration or console */
    int64_t updated_at;
    int64_t restored_from; /* versions only: the version it copies, or 0 */
} dm_mail_tmpl;

/* One message ready for a mailer: the rendered parts. */
typedef struct dm_mail_rendered {
    const char *subject; /* no control characters */
    const char *text;
    const char *html;
} dm_mail_rendered;

/* DM_E_NOT_FOUND when no such kind of message. */
dm_err *dm_mail_def_get(dm_db *db, apr_pool_t *p, const char *key, dm_mail_def *out);

/* DM_E_NOT_FOUND when the template has no text in that locale. */
dm_err *dm_mail_tmpl_get(dm_db *db, apr_pool_t *p, const char *key, const char *locale,
                         dm_mail_tmpl *out);

/* Every definition with its DM_MAIL_LOCALE text: two parallel arrays of
 * dm_mail_def and dm_mail_tmpl, ordered by key. */
dm_err *dm_mail_tmpl_list(dm_db *db, apr_pool_t *p, apr_array_header_t **defs,
                          apr_array_header_t **tmpls);

/* Versions of a template, newest first (dm_mail_tmpl rows). */
dm_err *dm_mail_tmpl_versions(dm_db *db, apr_pool_t *p, const char *key, const char *locale,
                              apr_array_header_t **rows);

/* The checks of a save: each part valid UTF-8, parsable, using declared
 * variables only; the subject one line, not empty. DM_E_INVALID naming
 * "subject", "text" or "html", with the position. */
dm_err *dm_mail_tmpl_validate(apr_pool_t *p, const dm_mail_def *def, const char *subject,
                              const char *text, const char *html);

/* Saves a new version (the first one when the locale is new) after
 * dm_mail_tmpl_validate, audited "email_template.update" by staff_id from
 * ip. if_version > 0: DM_E_CONFLICT unless that is the current version
 * (someone else saved meanwhile). *out gets the new current text. */
dm_err *dm_mail_tmpl_save(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                          const char *key, const char *locale, const char *subject,
                          const char *text, const char *html, int64_t if_version,
                          dm_mail_tmpl *out);

/* Makes version `version` current again as a new version, audited
 * "email_template.restore". DM_E_NOT_FOUND for an unknown version; the
 * old text is validated again (the declared variables may have changed). */
dm_err *dm_mail_tmpl_restore(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                             const char *key, const char *locale, int64_t version,
                             dm_mail_tmpl *out);

/* Renders the three parts with `vars` (a JSON object). */
dm_err *dm_mail_tmpl_render(apr_pool_t *p, const dm_mail_def *def, const dm_mail_tmpl *t,
                            const json_t *vars, dm_mail_rendered *out);

/* JSON of GET /api/admin/email-templates[/{key}] (caller owns it); the
 * bodies only when with_bodies. */
json_t *dm_mail_tmpl_json(apr_pool_t *p, const dm_mail_def *def, const dm_mail_tmpl *t,
                          int with_bodies);

#endif
