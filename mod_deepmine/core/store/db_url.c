/*
 * db_url.c — see db_url.h.
 */
#include "store/db_url.h"

#include <string.h>
#include <strings.h>

/* `word` at the start of s or right after a space or tab. */
static int has_keyword(const char *s, const char *word)
{
    for (const char *p = s; (p = strstr(p, word)) != NULL; p++) {
        if (p == s || p[-1] == ' ' || p[-1] == '\t') {
            return 1;
        }
    }
    return 0;
}

int dm_db_url_is_postgres(const char *value)
{
    if (!value) {
        return 0;
    }
    if (strncasecmp(value, "postgresql://", 13) == 0 ||
        strncasecmp(value, "postgres://", 11) == 0) {
        return 1;
    }
    return has_keyword(value, "host=") || has_keyword(value, "dbname=");
}
