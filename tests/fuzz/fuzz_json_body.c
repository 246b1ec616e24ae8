/* libFuzzer: request bodies through the JSON object parser and the field
 * getters every handler uses. Must never crash, leak or accept a non-object. */
#include <apr_general.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    apr_pool_t *p;
    json_t *o = NULL;
    const char *s;
    int64_t i;
    int b;

    if (!ready) {
        apr_initialize();
        ready = 1;
    }
    apr_pool_create(&p, NULL);
    if (!dm_json_parse_object(p, (const char *)data, size, &o)) {
        if (!json_is_object(o)) {
            abort();
        }
        dm_json_get_string(p, o, "email", 1, 254, &s, NULL);
        dm_json_get_int64(p, o, "package_id", 1, 1, INT64_MAX, &i, NULL);
        dm_json_get_bool(p, o, "accept_terms", 0, &b, NULL);
    }
    apr_pool_destroy(p);
    return 0;
}
