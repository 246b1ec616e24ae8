/*
 * kyc_sniff.c — see kyc_sniff.h.
 */
#include "kyc/kyc_sniff.h"

#include <string.h>
#include <strings.h>

static const unsigned char jpeg_magic[] = {0xFF, 0xD8, 0xFF};
static const unsigned char png_magic[] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
static const unsigned char pdf_magic[] = {'%', 'P', 'D', 'F', '-'};

static const struct {
    const unsigned char *magic;
    size_t len;
    const char *type;
} known[] = {
    {jpeg_magic, sizeof(jpeg_magic), "image/jpeg"},
    {png_magic, sizeof(png_magic), "image/png"},
    {pdf_magic, sizeof(pdf_magic), "application/pdf"},
};

const char *dm_kyc_sniff(const void *data, size_t len)
{
    for (size_t i = 0; data && i < sizeof(known) / sizeof(known[0]); i++) {
        if (len >= known[i].len && memcmp(data, known[i].magic, known[i].len) == 0) {
            return known[i].type;
        }
    }
    return NULL;
}

const char *dm_kyc_declared_type(const char *ct)
{
    size_t n;

    if (!ct) {
        return NULL;
    }
    while (*ct == ' ' || *ct == '\t') {
        ct++;
    }
    n = strcspn(ct, "; \t");
    for (const char *rest = ct + n; *rest && *rest != ';'; rest++) {
        if (*rest != ' ' && *rest != '\t') {
            return NULL;
        }
    }
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strlen(known[i].type) == n && strncasecmp(ct, known[i].type, n) == 0) {
            return known[i].type;
        }
    }
    return NULL;
}
