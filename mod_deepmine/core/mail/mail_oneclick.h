/*
 * mail_oneclick.h — the body of an RFC 8058 one-click unsubscribe POST,
 * which mail providers send from outside: a parser of untrusted input, on
 * its own so the fuzzer can take it alone (tests/fuzz/fuzz_oneclick.c).
 */
#ifndef DM_MAIL_ONECLICK_H
#define DM_MAIL_ONECLICK_H

#include <stddef.h>

/* 1 when the body says "List-Unsubscribe=One-Click" (RFC 8058 §3.2), as
 * application/x-www-form-urlencoded (also when content_type is NULL or
 * anything else) or multipart/form-data with its boundary; 0 otherwise.
 * Reads only body[0..len). */
int dm_unsub_body_ok(const char *content_type, const char *body, size_t len);

#endif
