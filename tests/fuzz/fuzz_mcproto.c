/* libFuzzer: the memcached reply parser (core/base/mcproto.c), which reads
 * what another machine sends. The input is a reply, cut at every length
 * (as it may arrive in pieces): a parse never reads past the bytes given,
 * a prefix of a reply it accepted is never refused, an accepted `gets`
 * reply holds a value no longer than announced and a cas unique, and a
 * `gets` written for the input as a key is refused or is exactly one line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/mcproto.h"

static void check_gets(const char *buf, size_t n)
{
    dm_mc_item it;
    dm_mc_parse full = dm_mc_parse_gets(buf, n, "dmrl:login:127.0.0.1", &it);

    if (full == DM_MC_DONE) {
        if (it.found && (it.len > DM_MC_VALUE_MAX || strlen(it.value) > it.len || it.cas == 0)) {
            abort();
        }
        /* every shorter prefix of an accepted reply asks for more */
        for (size_t k = 0; k < n; k++) {
            dm_mc_item part;
            if (dm_mc_parse_gets(buf, k, "dmrl:login:127.0.0.1", &part) != DM_MC_MORE) {
                abort();
            }
        }
    }
}

static void check_store(const char *buf, size_t n)
{
    dm_mc_stored st;

    if (dm_mc_parse_store(buf, n, &st) == DM_MC_DONE) {
        if (st < DM_MC_STORED || st > DM_MC_NOT_FOUND) {
            abort();
        }
        for (size_t k = 0; k < n; k++) {
            if (dm_mc_parse_store(buf, k, &st) != DM_MC_MORE) {
                abort();
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy of exactly `size` bytes, so ASan sees any read past them */
    char *buf = malloc(size ? size : 1);
    char cmd[512];

    if (!buf) {
        return 0;
    }
    memcpy(buf, data, size);
    check_gets(buf, size);
    check_store(buf, size);
    /* the formatter on the input as a key: refused, or one line */
    if (size < 300) {
        char key[301];
        size_t n;
        memcpy(key, data, size);
        key[size] = '\0';
        n = dm_mc_format_gets(cmd, sizeof(cmd), key);
        if (n && (n != strlen(cmd) || memchr(cmd, '\n', n) != cmd + n - 1)) {
            abort();
        }
    }
    free(buf);
    return 0;
}
