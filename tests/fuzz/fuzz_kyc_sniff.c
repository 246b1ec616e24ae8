/* libFuzzer: the identity-document sniffer and the declared-type parser
 * (core/kyc/kyc_sniff.c) on any bytes. Invariants: a type is only ever
 * one of the three known, the sniffer agrees with the magic bytes it
 * names, and the declared type, when known, is a prefix (case folded) of
 * the input after white space. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kyc/kyc_sniff.h"

static int known(const char *t)
{
    return !t || strcmp(t, "image/jpeg") == 0 || strcmp(t, "image/png") == 0 ||
           strcmp(t, "application/pdf") == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = dm_kyc_sniff(data, size);
    char *str;
    const char *d;

    if (!known(s)) {
        abort();
    }
    if (s && strcmp(s, "image/jpeg") == 0 && (size < 3 || data[0] != 0xFF)) {
        abort();
    }
    if (s && strcmp(s, "application/pdf") == 0 && (size < 5 || data[0] != '%')) {
        abort();
    }
    str = malloc(size + 1);
    if (!str) {
        return 0;
    }
    memcpy(str, data, size);
    str[size] = '\0';
    d = dm_kyc_declared_type(str);
    if (!known(d)) {
        abort();
    }
    if (d) {
        const char *p = str + strspn(str, " \t");
        if (strncasecmp(p, d, strlen(d)) != 0) {
            abort();
        }
    }
    free(str);
    return 0;
}
