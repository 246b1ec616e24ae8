/*
 * err.c — the one mapping from domain error codes to API.md codes and HTTP
 * statuses, so every layer reports the same error the same way.
 */
#include "base/err.h"

#include <apr_strings.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>

static const struct {
    const char *name;
    dm_code code;
    int status;
} codes[] = {
    {"bad_json", DM_E_BAD_JSON, 400},
    {"invalid", DM_E_INVALID, 400},
    {"unauthorized", DM_E_UNAUTHORIZED, 401},
    {"forbidden", DM_E_FORBIDDEN, 403},
    {"csrf", DM_E_CSRF, 403},
    {"not_found", DM_E_NOT_FOUND, 404},
    {"method_not_allowed", DM_E_METHOD_NOT_ALLOWED, 405},
    {"conflict", DM_E_CONFLICT, 409},
    {"too_large", DM_E_TOO_LARGE, 413},
    {"rate_limited", DM_E_RATE_LIMITED, 429},
    {"unavailable", DM_E_UNAVAILABLE, 503},
    {"internal", DM_E_INTERNAL, 500},
    {"two_factor_required", DM_E_TWO_FACTOR_REQUIRED, 403},
    {"invalid_code", DM_E_INVALID_CODE, 400},
    {"two_factor_enrolment_required", DM_E_ENROL_REQUIRED, 403},
    {"address_not_usable", DM_E_ADDRESS_NOT_USABLE, 409},
    {"withdrawals_locked", DM_E_WITHDRAWALS_LOCKED, 409},
};

dm_err *dm_err_new(apr_pool_t *p, dm_code code, const char *field, const char *fmt, ...)
{
    dm_err *e = apr_pcalloc(p, sizeof(*e));
    va_list ap;

    va_start(ap, fmt);
    e->code = code;
    e->message = apr_pvsprintf(p, fmt, ap);
    e->field = field ? apr_pstrdup(p, field) : NULL;
    va_end(ap);
    return e;
}

dm_err *dm_err_copy(apr_pool_t *p, const dm_err *e)
{
    return e ? dm_err_make(p, e->code, e->field, "%s", e->message) : NULL;
}

const char *dm_err_code_name(dm_code code)
{
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        if (codes[i].code == code) {
            return codes[i].name;
        }
    }
    return "internal";
}

int dm_err_http_status(dm_code code)
{
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        if (codes[i].code == code) {
            return codes[i].status;
        }
    }
    return 500;
}

char *dm_err_to_json(apr_pool_t *p, const dm_err *e)
{
    json_t *inner = json_object();
    json_t *outer = json_object();
    char *text, *out;

    json_object_set_new(inner, "code", json_string(dm_err_code_name(e->code)));
    /* json_string() refuses invalid UTF-8; a message can quote client input,
     * so fall back to a generic sentence rather than drop the member. */
    json_t *msg = json_string(e->message ? e->message : "");
    json_object_set_new(inner, "message", msg ? msg : json_string("invalid request"));
    if (e->field) {
        json_t *f = json_string(e->field);
        if (f) {
            json_object_set_new(inner, "field", f);
        }
    }
    json_object_set_new(outer, "error", inner);
    text = json_dumps(outer, JSON_COMPACT);
    out = apr_pstrdup(p, text ? text : "{\"error\":{\"code\":\"internal\",\"message\":\"\"}}");
    free(text);
    json_decref(outer);
    return out;
}
