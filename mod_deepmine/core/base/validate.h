/*
 * validate.h — validators for outside input, in one place, used by every
 * endpoint that takes these values. Each returns NULL when the value is
 * acceptable (and writes the normalised form), else DM_E_INVALID naming
 * `field`.
 */
#ifndef DM_VALIDATE_H
#define DM_VALIDATE_H

#include <apr_pools.h>
#include <stddef.h>

#include "base/err.h"

/* 1 when s[0..len) is valid UTF-8 (no overlong forms, no surrogates, no
 * code point above U+10FFFF). */
int dm_utf8_valid(const char *s, size_t len);

/* Code points in valid UTF-8 text. */
size_t dm_utf8_length(const char *s, size_t len);

/* 1 when s[0..len) holds a C0 control byte (0x00-0x1f) or DEL (0x7f): the
 * check for bytes that need not be UTF-8 (provider references, header
 * values, template text). */
int dm_has_control_bytes(const char *s, size_t len);

/* 1 when the valid UTF-8 text s[0..len) holds a control character: C0,
 * DEL or C1 (U+0080-U+009F). The same rule as the text validators below. */
int dm_utf8_has_control(const char *s, size_t len);

/* E-mail: trimmed of surrounding white space, the domain lower-cased (the
 * local part kept as typed); RFC 5321 lengths (local part <= 64 octets,
 * domain <= 255, whole <= 254); one '@'; a dot-atom or quoted local part;
 * a domain of LDH labels (1-63 each) with at least one dot; no control
 * characters. *normalised gets the address, *key the whole address
 * lower-cased (the uniqueness key: one account per address). */
dm_err *dm_validate_email(apr_pool_t *p, const char *field, const char *in, const char **normalised,
                          const char **key);

/* E.164: '+' then 8 to 15 digits, the first not 0; spaces, dots, dashes
 * and parentheses in the input are dropped. */
dm_err *dm_validate_phone(apr_pool_t *p, const char *field, const char *in, const char **out);

/* A person's name: trimmed, 1-100 code points, valid UTF-8, letters
 * (any script), marks, spaces, apostrophes, hyphens and dots only. */
dm_err *dm_validate_name(apr_pool_t *p, const char *field, const char *in, const char **out);

/* A postal address line: trimmed, 1-200 code points, valid UTF-8, no
 * control characters (newlines included). */
dm_err *dm_validate_address_line(apr_pool_t *p, const char *field, const char *in,
                                 const char **out);

/* Generic text: valid UTF-8, no control characters except (when
 * allow_newlines) \n and \t, at most max_chars code points. */
dm_err *dm_validate_text(apr_pool_t *p, const char *field, const char *in, size_t max_chars,
                         int allow_newlines);

#endif
