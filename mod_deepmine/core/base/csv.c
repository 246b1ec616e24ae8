/*
 * csv.c — RFC 4180 cells with the formula-injection prefix (csv.h).
 */
#include "base/csv.h"

#include <apr_strings.h>
#include <string.h>

const char *dm_csv_text(apr_pool_t *p, const char *s)
{
    int formula, quote;
    apr_size_t n = 0, len;
    char *out, *o;

    if (!s || !*s) {
        return "";
    }
    formula = strchr("=+-@\t\r", s[0]) != NULL;
    quote = strpbrk(s, ",\"\r\n") != NULL;
    if (!formula && !quote) {
        return s;
    }
    len = strlen(s);
    for (const char *c = s; *c; c++) {
        n += *c == '"';
    }
    out = o = apr_palloc(p, len + n + 4);
    if (quote) {
        *o++ = '"';
    }
    if (formula) {
        *o++ = '\'';
    }
    for (const char *c = s; *c; c++) {
        if (*c == '"') {
            *o++ = '"';
        }
        *o++ = *c;
    }
    if (quote) {
        *o++ = '"';
    }
    *o = '\0';
    return out;
}
