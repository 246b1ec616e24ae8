/*
 * json.c — see json.h.
 */
#include "json.h"

#include <apr_strings.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static apr_status_t json_cleanup(void *data)
{
    json_decref((json_t *)data);
    return APR_SUCCESS;
}

json_t *dm_json_own(apr_pool_t *p, json_t *v)
{
    if (v) {
        apr_pool_cleanup_register(p, v, json_cleanup, apr_pool_cleanup_null);
    }
    return v;
}

dm_err *dm_json_parse_object(apr_pool_t *p, const char *buf, size_t len, json_t **out)
{
    json_error_t jerr;
    json_t *v;

    if (len == 0) {
        return dm_err_make(p, DM_E_BAD_JSON, NULL, "the request body must be a JSON object");
    }
    /* REJECT_DUPLICATES: {"a":1,"a":2} is ambiguous, so refuse it. */
    v = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v) {
        return dm_err_make(p, DM_E_BAD_JSON, NULL, "malformed JSON at line %d column %d: %s",
                           jerr.line, jerr.column, jerr.text);
    }
    dm_json_own(p, v);
    if (!json_is_object(v)) {
        return dm_err_make(p, DM_E_BAD_JSON, NULL, "the request body must be a JSON object");
    }
    *out = v;
    return NULL;
}

static json_t *field_of(json_t *obj, const char *field, int *present)
{
    json_t *v = json_object_get(obj, field);
    if (json_is_null(v)) {
        v = NULL;
    }
    if (present) {
        *present = v != NULL;
    }
    return v;
}

dm_err *dm_json_get_string(apr_pool_t *p, json_t *obj, const char *field, int required,
                           size_t max_len, const char **out, int *present)
{
    json_t *v = field_of(obj, field, present);

    if (!v) {
        return required ? dm_err_make(p, DM_E_INVALID, field, "%s is required", field) : NULL;
    }
    if (!json_is_string(v)) {
        return dm_err_make(p, DM_E_INVALID, field, "%s must be a string", field);
    }
    if (json_string_length(v) > max_len) {
        return dm_err_make(p, DM_E_INVALID, field, "%s is longer than %" APR_SIZE_T_FMT " bytes", field,
                           (apr_size_t)max_len);
    }
    *out = apr_pstrmemdup(p, json_string_value(v), json_string_length(v));
    return NULL;
}

dm_err *dm_json_get_int64(apr_pool_t *p, json_t *obj, const char *field, int required,
                          int64_t min, int64_t max, int64_t *out, int *present)
{
    json_t *v = field_of(obj, field, present);
    json_int_t i;

    if (!v) {
        return required ? dm_err_make(p, DM_E_INVALID, field, "%s is required", field) : NULL;
    }
    if (!json_is_integer(v)) {
        return dm_err_make(p, DM_E_INVALID, field, "%s must be an integer", field);
    }
    i = json_integer_value(v);
    if (i < min || i > max) {
        return dm_err_make(p, DM_E_INVALID, field, "%s must be between %" APR_INT64_T_FMT " and %" APR_INT64_T_FMT, field,
                           (apr_int64_t)min, (apr_int64_t)max);
    }
    *out = (int64_t)i;
    return NULL;
}

dm_err *dm_json_get_bool(apr_pool_t *p, json_t *obj, const char *field, int required, int *out,
                         int *present)
{
    json_t *v = field_of(obj, field, present);

    if (!v) {
        return required ? dm_err_make(p, DM_E_INVALID, field, "%s is required", field) : NULL;
    }
    if (!json_is_boolean(v)) {
        return dm_err_make(p, DM_E_INVALID, field, "%s must be true or false", field);
    }
    *out = json_is_true(v);
    return NULL;
}

char *dm_json_dump(apr_pool_t *p, const json_t *v, size_t *len)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15));
    char *out;

    if (!text) {
        if (len) {
            *len = 4;
        }
        return apr_pstrdup(p, "null");
    }
    out = apr_pstrdup(p, text);
    if (len) {
        *len = strlen(out);
    }
    free(text);
    return out;
}

const char *dm_json_time(apr_pool_t *p, int64_t unix_sec)
{
    time_t t = (time_t)unix_sec;
    struct tm tm;
    char buf[32];

    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return apr_pstrdup(p, buf);
}
