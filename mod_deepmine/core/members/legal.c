/*
 * legal.c — see legal.h.
 */
#include "members/legal.h"

#include <apr_file_io.h>
#include <apr_strings.h>
#include <jansson.h>
#include <sodium.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/validate.h"

#define MAX_LEGAL_BYTES (1024 * 1024)

static dm_err *load_one(apr_pool_t *p, const char *dir, const char *name, dm_legal_doc *d)
{
    const char *path = apr_pstrcat(p, dir, "/", name, ".md", NULL);
    apr_file_t *f;
    apr_finfo_t fi;
    char *buf;
    apr_size_t n;
    unsigned char h[crypto_hash_sha256_BYTES];
    char hex[sizeof(h) * 2 + 1];
    const char *nl, *v;
    json_t *o;

    if (apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, p) != APR_SUCCESS ||
        apr_file_info_get(&fi, APR_FINFO_SIZE, f) != APR_SUCCESS) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "cannot read the legal document %s", path);
    }
    if (fi.size <= 0 || fi.size > MAX_LEGAL_BYTES) {
        apr_file_close(f);
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "%s is empty or larger than 1 MiB", path);
    }
    n = (apr_size_t)fi.size;
    buf = apr_palloc(p, n + 1);
    if (apr_file_read_full(f, buf, n, &n) != APR_SUCCESS) {
        apr_file_close(f);
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "cannot read %s", path);
    }
    apr_file_close(f);
    buf[n] = '\0';
    if (!dm_utf8_valid(buf, n) || memchr(buf, '\0', n)) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "%s is not valid UTF-8 text", path);
    }
    nl = strchr(buf, '\n');
    if (strncmp(buf, "Version:", 8) != 0 || !nl) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                           "%s must start with a line \"Version: <version>\"", path);
    }
    {
        /* the version: the rest of the line, trimmed */
        const char *a = buf + 8, *z = nl;
        while (a < z && (*a == ' ' || *a == '\t')) {
            a++;
        }
        while (z > a && (z[-1] == ' ' || z[-1] == '\t' || z[-1] == '\r')) {
            z--;
        }
        v = apr_pstrmemdup(p, a, (apr_size_t)(z - a));
    }
    if (!*v || strlen(v) > 64) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "%s has an empty or too long version", path);
    }
    crypto_hash_sha256(h, (const unsigned char *)buf, n);
    sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
    d->name = name;
    d->version = v;
    d->hash = apr_pstrdup(p, hex);
    while (*nl == '\n' || *nl == '\r') {
        nl++;
    }
    d->text = nl;
    o = dm_json_own(p, json_pack("{s:s,s:s,s:s,s:s}", "document", name, "version", v,
                                 "content_hash", d->hash, "text", d->text));
    d->json = dm_json_dump(p, o, NULL);
    return NULL;
}

dm_err *dm_legal_load(apr_pool_t *p, const char *dir, dm_legal **out)
{
    dm_legal *l = apr_pcalloc(p, sizeof(*l));
    dm_err *e = load_one(p, dir, "terms", &l->terms);

    if (!e) {
        e = load_one(p, dir, "privacy", &l->privacy);
    }
    if (!e) {
        *out = l;
    }
    return e;
}

dm_err *dm_legal_record_acceptance(dm_db *db, apr_pool_t *p, int64_t user_id,
                                   const dm_legal_doc *doc, const char *ip)
{
    dm_stmt *st;
    int row;
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO legal_acceptances (user_id, document, version, "
                              "content_hash, ip, accepted_at) VALUES (?, ?, ?, ?, ?, ?)",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_str(st, 2, doc->name);
    dm_stmt_bind_str(st, 3, doc->version);
    dm_stmt_bind_str(st, 4, doc->hash);
    dm_stmt_bind_str(st, 5, ip); /* NULL: refused by the NOT NULL column */
    dm_stmt_bind_int64(st, 6, dm_now());
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}
