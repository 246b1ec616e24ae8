/*
 * template.h — the e-mail template language: small and safe on purpose.
 *
 *   {{name}}               the variable `name` ([A-Za-z_][A-Za-z0-9_]*,
 *                          spaces inside the braces allowed: {{ name }})
 *   {{#if name}}…{{/if}}   the part in between when `name` is true
 *   {{#if name}}…{{else}}…{{/if}}
 *
 * Nothing else: no loops, no expressions, no partials, no way to reach
 * anything but the variables handed in. A "{{" that does not start one of
 * the tags above is a syntax error (there is no escape for a literal "{{").
 * "}}" on its own is plain text. {{#if}} nests at most DM_TMPL_MAX_DEPTH
 * deep.
 *
 * Checking happens when staff save a template, not when a message is sent:
 * a syntax error, or a variable the template does not declare, is
 * DM_E_INVALID naming the part ("subject", "text", "html") with the byte
 * offset and line:column in the message.
 *
 * Values, whatever the part (formatting belongs to these helpers, never
 * to the templates):
 *   - a name ending in "_micros" with an integer value is money:
 *     dm_tmpl_money() in the message's "currency" (a string variable),
 *     else DM_TMPL_DEFAULT_CURRENCY — 12345678 renders "12.345678 USD";
 *   - a name ending in "_at" with an integer (Unix seconds) or an RFC 3339
 *     string is a time: dm_tmpl_time() — "2026-11-25 07:00 UTC";
 *   - other strings as they are, integers in decimal, true/false as
 *     "yes"/"no", null or absent as nothing, an array or object as its
 *     compact JSON.
 * Truth for {{#if}}: absent, null, false, "", 0 and empty arrays/objects
 * are false; anything else is true.
 *
 * Escaping follows the part: DM_TMPL_HTML escapes & < > " ' in every value
 * (the template's own markup is trusted: staff wrote it); DM_TMPL_TEXT
 * writes values as they are; DM_TMPL_HEADER (the subject) replaces every
 * control character of a value (CR, LF, TAB, NUL, DEL, …) with a space, so
 * no value can add a header line, and refuses a template whose own text
 * holds one.
 *
 * No httpd header here: the unit tests and the fuzzer use it alone.
 */
#ifndef DM_TEMPLATE_H
#define DM_TEMPLATE_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "base/err.h"

/* Largest template part accepted, in bytes (a subject: DM_TMPL_SUBJECT_MAX). */
#define DM_TMPL_MAX_BYTES (64 * 1024)
#define DM_TMPL_SUBJECT_MAX 512
#define DM_TMPL_MAX_DEPTH 8
/* Largest rendered part; a template with huge values fails to render. */
#define DM_TMPL_RENDER_MAX (1024 * 1024)
#define DM_TMPL_DEFAULT_CURRENCY "USD"

typedef enum dm_tmpl_mode { DM_TMPL_TEXT = 0, DM_TMPL_HTML = 1, DM_TMPL_HEADER = 2 } dm_tmpl_mode;

typedef struct dm_tmpl dm_tmpl;

/* Parses one part. field ("subject", "text", "html") names it in errors;
 * in DM_TMPL_HEADER mode a control character in the template's own text
 * is an error too. DM_E_INVALID with the position on a syntax error. */
dm_err *dm_tmpl_parse(apr_pool_t *p, const char *field, const char *src, size_t len,
                      dm_tmpl_mode mode, dm_tmpl **out);

/* DM_E_INVALID (naming the part and the position of the first use) when
 * the template uses a variable that is not in `declared` (const char *). */
dm_err *dm_tmpl_check_vars(apr_pool_t *p, const dm_tmpl *t, const apr_array_header_t *declared);

/* Parse + check in one: what a save does. */
dm_err *dm_tmpl_check(apr_pool_t *p, const char *field, const char *src, size_t len,
                      dm_tmpl_mode mode, const apr_array_header_t *declared);

/* Renders with `vars` (a JSON object; NULL: none) in the template's mode.
 * *out is NUL-terminated, in p. DM_E_INVALID only when the result would
 * exceed DM_TMPL_RENDER_MAX. */
dm_err *dm_tmpl_render(apr_pool_t *p, const dm_tmpl *t, const json_t *vars, const char **out,
                       size_t *out_len);

/* The variables a template uses, each once, in order of first use. */
apr_array_header_t *dm_tmpl_vars(apr_pool_t *p, const dm_tmpl *t);

/* The money helper: micro-units as a decimal with at least two and at most
 * six decimals (trailing zeros past the second dropped) and the currency:
 * 12345678 "USD" -> "12.345678 USD", 100000000 -> "100.00 USD",
 * -1500000 -> "-1.50 USD". */
const char *dm_tmpl_money(apr_pool_t *p, int64_t micros, const char *currency);

/* The time helper: Unix seconds as "2026-11-25 07:00 UTC". */
const char *dm_tmpl_time(apr_pool_t *p, int64_t t);

#endif
