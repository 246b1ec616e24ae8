/* libFuzzer: e-mail templates as staff could save them, through the parser,
 * the variable check and the renderer in the part the first byte picks.
 * Must never crash or leak; a subject never renders a control character. */
#include <apr_general.h>
#include <apr_tables.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    static json_t *vars;
    apr_pool_t *p;
    apr_array_header_t *declared;
    dm_tmpl *t = NULL;
    dm_tmpl_mode mode;
    const char *out = NULL;
    size_t len = 0;

    if (!ready) {
        apr_initialize();
        vars = json_pack("{s:s,s:s,s:I,s:s,s:I,s:b,s:n,s:[i]}", "name", "Eve\r\nBcc: x@y\t<&>\"'",
                         "url", "https://example.com/?a=1&b=2", "amount_micros",
                         (json_int_t)-12345678, "expires_at", "2026-11-25T07:00:00Z", "paid_at",
                         (json_int_t)1795590000, "flag", 1, "nothing", "list", 1);
        ready = 1;
    }
    if (size == 0) {
        return 0;
    }
    mode = (dm_tmpl_mode)(data[0] % 3);
    apr_pool_create(&p, NULL);
    declared = apr_array_make(p, 8, sizeof(const char *));
    APR_ARRAY_PUSH(declared, const char *) = "name";
    APR_ARRAY_PUSH(declared, const char *) = "url";
    APR_ARRAY_PUSH(declared, const char *) = "amount_micros";
    APR_ARRAY_PUSH(declared, const char *) = "flag";
    if (!dm_tmpl_parse(p, "text", (const char *)data + 1, size - 1, mode, &t)) {
        dm_tmpl_check_vars(p, t, declared);
        dm_tmpl_vars(p, t);
        if (!dm_tmpl_render(p, t, vars, &out, &len)) {
            if (strlen(out) > len) {
                abort();
            }
            for (size_t i = 0; mode == DM_TMPL_HEADER && i < len; i++) {
                if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f) {
                    abort(); /* a header line could be injected */
                }
            }
        }
    }
    apr_pool_destroy(p);
    return 0;
}
