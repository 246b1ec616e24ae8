/* libFuzzer: the e-mail builder (core/mime.c) with sender, recipient,
 * subject, one extra header and the bodies taken from the input (fields
 * separated by 0xFF bytes). Whatever it accepts must keep the invariant
 * that stops header injection: only 7-bit text, every line ended by CRLF,
 * no bare CR or LF, no line over 998 characters, and the header section
 * holds exactly one From, To and Subject. */
#include <apr_general.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/mime.h"

static void check(const char *m, size_t n)
{
    size_t col = 0, from = 0, to = 0, subject = 0;
    int in_headers = 1;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)m[i];
        if (c >= 0x80 || c == '\0' || (c == '\n' && (i == 0 || m[i - 1] != '\r')) ||
            (c == '\r' && (i + 1 == n || m[i + 1] != '\n'))) {
            abort();
        }
        if (c == '\n') {
            if (col == 1) {
                in_headers = 0; /* the empty line (col counts the CR) */
            }
            col = 0;
            continue;
        }
        if (col == 0 && in_headers) {
            from += !strncasecmp(m + i, "From:", 5);
            to += !strncasecmp(m + i, "To:", 3);
            subject += !strncasecmp(m + i, "Subject:", 8);
        }
        if (++col > 999) {
            abort();
        }
    }
    if (n < 2 || m[n - 2] != '\r' || m[n - 1] != '\n' || from != 1 || to != 1 || subject != 1) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    dm_str f[7] = {{"", 0}};
    dm_header h[1];
    dm_mail m;
    apr_pool_t *p;
    char *out = NULL;
    size_t len = 0, k = 0, start = 0;

    if (!ready) {
        apr_initialize();
        if (sodium_init() < 0) {
            abort();
        }
        ready = 1;
    }
    for (size_t i = 0; i <= size && k < 7; i++) {
        if (i == size || data[i] == 0xFF) {
            f[k].ptr = (const char *)data + start;
            f[k].len = i - start;
            k++;
            start = i + 1;
        }
    }
    memset(&m, 0, sizeof(m));
    m.size = sizeof(m);
    m.from = f[0];
    m.to = f[1];
    m.subject = f[2];
    h[0].name = f[3];
    h[0].value = f[4];
    m.headers = h;
    m.n_headers = f[3].len ? 1 : 0;
    m.text = f[5];
    m.html = f[6];
    apr_pool_create(&p, NULL);
    if (!dm_mime_build(p, &m, "0123@fuzz.example", 1700000000, &out, &len)) {
        if (!out || strlen(out) != len) {
            abort();
        }
        check(out, len);
    }
    apr_pool_destroy(p);
    return 0;
}
