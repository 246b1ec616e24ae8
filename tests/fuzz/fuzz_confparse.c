/* libFuzzer: directive values through the configuration parsers. */
#include <apr_general.h>
#include <apr_strings.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/confparse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    apr_pool_t *p;
    const char *out;
    long long v;
    char *s;

    if (!ready) {
        apr_initialize();
        ready = 1;
    }
    apr_pool_create(&p, NULL);
    s = apr_pstrndup(p, (const char *)data, size);
    if (!dm_parse_int(p, s, 1, 1024, &v) && (v < 1 || v > 1024)) {
        abort();
    }
    dm_parse_origin(p, s, &out);
    dm_parse_public_url(p, s, &out);
    apr_pool_destroy(p);
    return 0;
}
