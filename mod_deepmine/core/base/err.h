/*
 * err.h — domain errors that must reach a client.
 *
 * Core functions return `dm_err *`: NULL on success, else an error allocated
 * in a pool the caller gave, with a code (which fixes the HTTP status and the
 * "code" string of API.md), a human sentence and, for `invalid`, the field.
 */
#ifndef DM_ERR_H
#define DM_ERR_H

#include <apr_pools.h>
#include <stdlib.h>

typedef enum dm_code {
    DM_E_BAD_JSON = 1,
    DM_E_INVALID,
    DM_E_UNAUTHORIZED,
    DM_E_FORBIDDEN,
    DM_E_CSRF,
    DM_E_NOT_FOUND,
    DM_E_METHOD_NOT_ALLOWED,
    DM_E_CONFLICT,
    DM_E_TOO_LARGE,
    DM_E_RATE_LIMITED,
    DM_E_UNAVAILABLE,
    DM_E_INTERNAL,
    /* Two-factor sign-in and withdrawal protections (docs/security.md). */
    DM_E_TWO_FACTOR_REQUIRED, /* 403: the action needs a current code */
    DM_E_INVALID_CODE,        /* 400: a wrong, used or malformed code */
    DM_E_ENROL_REQUIRED,      /* 403: a staff session that may only enrol */
    DM_E_ADDRESS_NOT_USABLE,  /* 409: not a confirmed, matured book address */
    DM_E_WITHDRAWALS_LOCKED   /* 409: a recent security change locks them */
} dm_code;

typedef struct dm_err {
    dm_code code;
    const char *message;
    const char *field; /* NULL unless code is DM_E_INVALID (or a field is meaningful) */
} dm_err;

dm_err *dm_err_new(apr_pool_t *p, dm_code code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), returns_nonnull));

/* The way to make an error. The check tells static analysers what
 * returns_nonnull says (clang-tidy 14 ignores that attribute), so callers'
 * "if (e) return e;" paths analyse cleanly. */
static inline dm_err *dm_err_checked(dm_err *e)
{
    if (!e) {
        abort();
    }
    return e;
}
#define dm_err_make(p, code, field, ...) dm_err_checked(dm_err_new(p, code, field, __VA_ARGS__))

/* A copy of e in p (NULL for NULL): for an error made in a scratch pool
 * that is about to be cleared. */
dm_err *dm_err_copy(apr_pool_t *p, const dm_err *e);

/* The "code" string of API.md, e.g. "bad_json". */
const char *dm_err_code_name(dm_code code);

/* The HTTP status for a code, e.g. 400. */
int dm_err_http_status(dm_code code);

/* The JSON error body {"error":{"code","message","field"?}}, in pool p. */
char *dm_err_to_json(apr_pool_t *p, const dm_err *e);

#endif
