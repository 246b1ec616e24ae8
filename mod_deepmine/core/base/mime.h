/*
 * mime.h — building the RFC 5322 / MIME text of one e-mail, for every mailer
 * plugin (the host table's mime_message and message_id_for, ABI 1.3), so
 * that header encoding and the refusal of header injection live in one
 * place.
 *
 * Invariant: a message is either built whole from values that passed every
 * check, or not at all. No CR, LF or other control character of a sender,
 * recipient, subject or extra header ever reaches the output; bodies are
 * always transfer-encoded (quoted-printable or base64), so no body line can
 * be read as a header or a MIME boundary.
 */
#ifndef DM_MIME_H
#define DM_MIME_H

#include <apr_pools.h>
#include <stdint.h>

#include "deepmine/plugin.h"
#include "base/err.h"

/* Largest text or HTML body accepted, each. */
#define DM_MIME_BODY_MAX ((size_t)4 * 1024 * 1024)

/* Builds the complete message, CRLF line ends, NUL-terminated, in p:
 *   Date (date, Unix seconds, as UTC), From, To, Subject,
 *   Message-ID (<message_id>; message_id is given without brackets),
 *   MIME-Version, the extra headers in their order, then the body:
 *   multipart/alternative (text/plain, then text/html) when both bodies are
 *   given, else one text/plain or text/html part (text/plain when neither).
 * Each part is quoted-printable when its bytes are mostly ASCII, else base64.
 * Non-ASCII subjects, display names and extra header values become RFC 2047
 * encoded-words; header lines are folded to at most 78 characters where
 * their words allow.
 * mail must be a whole dm_mail of this build (callers copy what a plugin's
 * size covers into a zeroed one); its idempotency_key is not used.
 * DM_E_INVALID, with a sentence naming the field, for: a missing sender or
 * recipient, a CR, LF or other control character (or bytes that are not
 * UTF-8) in the sender, recipient, subject, a header name or value; an
 * address whose addr-spec is not plain ASCII; an extra header the builder
 * writes itself; a malformed message_id or date; a body over
 * DM_MIME_BODY_MAX. */
dm_err *dm_mime_build(apr_pool_t *p, const dm_mail *mail, const char *message_id, int64_t date,
                      char **out, size_t *out_len);

/* The stable Message-ID, without brackets, for an idempotency key:
 * the first 32 hex digits of SHA-256(key) "@" the sender's domain
 * ("deepmine.invalid" when `from` holds no plain domain). An empty key gives
 * a random id instead (then nothing is stable). In p. */
const char *dm_mime_message_id(apr_pool_t *p, dm_str idempotency_key, dm_str from);

/* Splits an address as a mailer is given it, "addr@example.com" or
 * "Display Name <addr@example.com>" (the name may be a quoted string).
 * *name is the display name as written, quotes included (may be empty);
 * *addr the addr-spec between the brackets. 1 when the address has that
 * shape and its addr-spec is a plain ASCII local@domain; 0 otherwise. */
int dm_mime_split_address(dm_str a, dm_str *name, dm_str *addr);

/* The RFC 5322 date-time of t (Unix seconds) in UTC, e.g.
 * "Thu, 01 Jan 1970 00:00:00 +0000"; 0 when t cannot be shown (negative,
 * or past year 9999). out must hold 32 bytes. */
int dm_mime_date(int64_t t, char out[32]);

#endif
