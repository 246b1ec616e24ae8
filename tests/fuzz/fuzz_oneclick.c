/* libFuzzer: the body of an RFC 8058 one-click unsubscribe POST, as mail
 * providers send it. The first line (up to '\n') is the Content-Type, the
 * rest the body, copied to a buffer of exactly its size so ASan sees any
 * read past it. Must never crash; the answer is 0 or 1. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mail/mail_oneclick.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t ct_len = nl ? (size_t)(nl - data) : 0;
    size_t body_len = nl ? size - ct_len - 1 : size;
    char *ct = malloc(ct_len + 1);
    char *body = malloc(body_len ? body_len : 1);
    int ok;

    memcpy(ct, data, ct_len);
    ct[ct_len] = '\0';
    if (body_len) {
        memcpy(body, nl ? nl + 1 : data, body_len);
    }
    ok = dm_unsub_body_ok(nl ? ct : NULL, body, body_len);
    free(ct);
    free(body);
    if (ok != 0 && ok != 1) {
        abort();
    }
    return 0;
}
