/*
 * kyc_docs.c — see kyc_docs.h.
 */
#include "kyc/kyc_docs.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <sodium.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/validate.h"
#include "kyc/kyc_sniff.h"
#include "store/audit.h"

static const char *const kind_names[DM_KYC_KINDS] = {"id_front", "id_back", "selfie",
                                                     "proof_of_address"};

const char *dm_kyc_kind_name(int kind)
{
    return kind >= 0 && kind < DM_KYC_KINDS ? kind_names[kind] : NULL;
}

int dm_kyc_kind_of(const char *name)
{
    for (int i = 0; name && i < DM_KYC_KINDS; i++) {
        if (strcmp(name, kind_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

static int64_t env_max(const dm_kyc_env *env)
{
    return env && env->max_document > 0 ? env->max_document : DM_KYC_DEFAULT_MAX_DOCUMENT;
}

static unsigned env_required(const dm_kyc_env *env)
{
    return env && env->required ? env->required : DM_KYC_DEFAULT_REQUIRED;
}

static int may_upload(const char *status)
{
    return strcmp(status, DM_KYC_S_NONE) == 0 || strcmp(status, DM_KYC_S_RESUBMISSION) == 0;
}

static const char *uid_str(apr_pool_t *p, int64_t id)
{
    return apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)id);
}

static dm_err *current_status(dm_db *db, apr_pool_t *p, int64_t user_id, const char **out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, "SELECT kyc_status FROM users WHERE id = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "no such member");
    }
    if (!e) {
        *out = dm_stmt_dup_text(st, p, 0);
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *upload_allowed(apr_pool_t *p, const char *status)
{
    if (may_upload(status)) {
        return NULL;
    }
    if (strcmp(status, DM_KYC_S_APPROVED) == 0) {
        return dm_err_make(p, DM_E_CONFLICT, NULL, "your identity check is already approved");
    }
    if (strcmp(status, DM_KYC_S_REJECTED) == 0) {
        return dm_err_make(p, DM_E_CONFLICT, NULL,
                           "your identity check was rejected and cannot be resubmitted");
    }
    return dm_err_make(p, DM_E_CONFLICT, NULL,
                       "your identity check is under review; documents cannot change now");
}

/* ---- documents ---- */

#define DOC_COLS                                                                                   \
    "id, user_id, kind, content_type, size, sha256, storage_key, wrapped_key, wrap_nonce, "        \
    "key_id, created_at"

static void doc_read(dm_stmt *st, apr_pool_t *p, dm_kyc_doc *d)
{
    d->id = dm_stmt_int64(st, 0);
    d->user_id = dm_stmt_int64(st, 1);
    d->kind = dm_stmt_dup_text(st, p, 2);
    d->content_type = dm_stmt_dup_text(st, p, 3);
    d->size = dm_stmt_int64(st, 4);
    d->sha256 = dm_stmt_dup_text(st, p, 5);
    d->storage_key = dm_stmt_dup_text(st, p, 6);
    d->wrapped_key = dm_stmt_dup_text(st, p, 7);
    d->wrap_nonce = dm_stmt_dup_text(st, p, 8);
    d->key_id = dm_stmt_dup_text(st, p, 9);
    d->created_at = dm_stmt_int64(st, 10);
}

static dm_err *doc_get(dm_db *db, apr_pool_t *p, int64_t user_id, const char *kind, dm_kyc_doc *d,
                       int *found)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(
        db, p, "SELECT " DOC_COLS " FROM kyc_documents WHERE user_id = ? AND kind = ?", &st);

    *found = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_str(st, 2, kind);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        doc_read(st, p, d);
        *found = 1;
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *docs_of(dm_db *db, apr_pool_t *p, int64_t user_id, apr_array_header_t **out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(
        db, p, "SELECT " DOC_COLS " FROM kyc_documents WHERE user_id = ? ORDER BY id", &st);

    *out = apr_array_make(p, 4, sizeof(dm_kyc_doc));
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        doc_read(st, p, apr_array_push(*out));
    }
    dm_stmt_done(st);
    return e;
}

static const char *hex(apr_pool_t *p, const unsigned char *b, size_t n)
{
    char *s = apr_palloc(p, n * 2 + 1);
    sodium_bin2hex(s, n * 2 + 1, b, n);
    return s;
}

static dm_err *touch_case(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t now)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO kyc_cases (user_id, updated_at) VALUES (?1, ?2) "
                              "ON CONFLICT (user_id) DO UPDATE SET updated_at = ?2",
                              &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_int64(st, 2, now);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

/* The row of a stored object, replacing the member's earlier one of the
 * kind; *old_key gets the earlier object's key (NULL when none). */
static dm_err *doc_row_put(dm_db *db, apr_pool_t *p, int64_t user_id, const char *kind,
                           const char *ct, size_t len, const char *sha, const char *key,
                           const dm_kyc_sealed *s, const char **old_key)
{
    dm_kyc_doc old = {0};
    int found = 0, row = 0;
    int64_t now = dm_now();
    dm_stmt *st;
    const char *cur;
    dm_err *e = dm_db_begin(db, p);

    *old_key = NULL;
    if (!e) {
        /* the status again, inside the transaction: a submit between the
         * check and here must not see its documents change */
        e = current_status(db, p, user_id, &cur);
        if (!e) {
            e = upload_allowed(p, cur);
        }
    }
    if (!e) {
        e = doc_get(db, p, user_id, kind, &old, &found);
    }
    if (!e && found) {
        e = dm_db_prepare(db, p, "DELETE FROM kyc_documents WHERE id = ?", &st);
        if (!e) {
            dm_stmt_bind_int64(st, 1, old.id);
            e = dm_stmt_step(st, p, &row);
            dm_stmt_done(st);
        }
        *old_key = old.storage_key;
    }
    if (!e) {
        e = dm_db_prepare(db, p,
                          "INSERT INTO kyc_documents (user_id, kind, content_type, size, sha256, "
                          "storage_key, wrapped_key, wrap_nonce, key_id, created_at) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          &st);
    }
    if (!e) {
        dm_stmt_bind_int64(st, 1, user_id);
        dm_stmt_bind_str(st, 2, kind);
        dm_stmt_bind_str(st, 3, ct);
        dm_stmt_bind_int64(st, 4, (int64_t)len);
        dm_stmt_bind_str(st, 5, sha);
        dm_stmt_bind_str(st, 6, key);
        dm_stmt_bind_str(st, 7, hex(p, s->wrapped, sizeof(s->wrapped)));
        dm_stmt_bind_str(st, 8, hex(p, s->nonce, sizeof(s->nonce)));
        dm_stmt_bind_str(st, 9, s->key_id);
        dm_stmt_bind_int64(st, 10, now);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    if (!e) {
        e = touch_case(db, p, user_id, now);
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
        *old_key = NULL;
    }
    return e;
}

dm_err *dm_kyc_document_put(dm_db *db, apr_pool_t *p, const dm_kyc_env *env, int64_t user_id,
                            const char *kind, const char *declared_type, const void *data,
                            size_t len, dm_kyc_doc *out)
{
    const char *ct, *sniffed, *status = NULL, *key, *old_key = NULL;
    unsigned char digest[crypto_hash_sha256_BYTES], rnd[8];
    dm_kyc_sealed sealed;
    int found = 0;
    dm_err *e;

    if (dm_kyc_kind_of(kind) < 0) {
        return dm_err_make(p, DM_E_NOT_FOUND, NULL,
                           "no such document: use id_front, id_back, selfie or proof_of_address");
    }
    if ((int64_t)len > env_max(env)) {
        return dm_err_make(p, DM_E_TOO_LARGE, NULL,
                           "a document may have at most %" APR_INT64_T_FMT " bytes",
                           (apr_int64_t)env_max(env));
    }
    ct = dm_kyc_declared_type(declared_type);
    if (!ct) {
        return dm_err_make(p, DM_E_INVALID, "content_type",
                           "send the document as image/jpeg, image/png or application/pdf");
    }
    if (len == 0) {
        return dm_err_make(p, DM_E_INVALID, "body", "the document is empty");
    }
    sniffed = dm_kyc_sniff(data, len);
    if (!sniffed || strcmp(sniffed, ct) != 0) {
        return dm_err_make(
            p, DM_E_INVALID, "content_type", "the file is not %s (its first bytes say %s)", ct,
            sniffed ? sniffed : "it is none of image/jpeg, image/png, application/pdf");
    }
    e = current_status(db, p, user_id, &status);
    if (!e) {
        e = upload_allowed(p, status);
    }
    if (!e && (!env || !env->store || !env->master)) {
        e = dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                        "document storage is not configured on this server");
    }
    if (e) {
        return e;
    }
    randombytes_buf(rnd, sizeof(rnd));
    key = apr_psprintf(p, "kyc/%" APR_INT64_T_FMT "/%s-%s", (apr_int64_t)user_id, kind,
                       hex(p, rnd, sizeof(rnd)));
    crypto_hash_sha256(digest, data, len);
    e = dm_kyc_seal(p, env->master, key, data, len, &sealed);
    if (!e) {
        e = env->store->put(env->store->ctx, p, key, sealed.object, sealed.object_len);
    }
    if (e) {
        return e;
    }
    e = doc_row_put(db, p, user_id, kind, ct, len, hex(p, digest, sizeof(digest)), key, &sealed,
                    &old_key);
    if (e) {
        /* no row: the new object must not stay */
        dm_err *r = env->store->remove(env->store->ctx, p, key);
        if (r) {
            dm_log(DM_L_WARN, "DM01250: kyc: could not remove %s after a failed upload: %s", key,
                   r->message);
        }
        return e;
    }
    if (old_key) {
        dm_err *r = env->store->remove(env->store->ctx, p, old_key);
        if (r) {
            dm_log(DM_L_WARN, "DM01251: kyc: replaced document object %s was not removed: %s",
                   old_key, r->message);
        }
    }
    e = doc_get(db, p, user_id, kind, out, &found);
    return e;
}

static dm_err *unhex(apr_pool_t *p, const char *s, unsigned char *out, size_t cap, size_t *n)
{
    if (!s || sodium_hex2bin(out, cap, s, strlen(s), NULL, n, NULL) != 0) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "a stored document key is malformed");
    }
    return NULL;
}

dm_err *dm_kyc_document_read(dm_db *db, apr_pool_t *p, const dm_kyc_env *env, int64_t user_id,
                             const char *kind, dm_kyc_doc *doc, unsigned char **plain,
                             size_t *plain_len)
{
    unsigned char wrapped[DM_KYC_WRAPPED_BYTES], nonce[DM_KYC_NONCE_BYTES];
    size_t wn = 0, nn = 0, olen = 0;
    void *obj = NULL;
    int found = 0;
    dm_err *e;

    *plain = NULL;
    *plain_len = 0;
    if (dm_kyc_kind_of(kind) < 0) {
        return dm_err_make(p, DM_E_NOT_FOUND, NULL, "no such document");
    }
    e = doc_get(db, p, user_id, kind, doc, &found);
    if (!e && !found) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "no %s document on file", kind);
    }
    if (!e && (!env || !env->store || !env->master)) {
        e = dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                        "document storage is not configured on this server");
    }
    if (!e) {
        e = unhex(p, doc->wrapped_key, wrapped, sizeof(wrapped), &wn);
    }
    if (!e) {
        e = unhex(p, doc->wrap_nonce, nonce, sizeof(nonce), &nn);
    }
    if (!e) {
        e = env->store->get(env->store->ctx, p, doc->storage_key,
                            dm_kyc_sealed_size((size_t)doc->size), &obj, &olen);
        if (e && e->code == DM_E_NOT_FOUND) {
            e = dm_err_make(p, DM_E_INTERNAL, NULL, "the object of document %s is missing",
                            doc->storage_key);
        }
    }
    if (!e) {
        e = dm_kyc_open(p, env->master, doc->storage_key, doc->key_id, wrapped, wn, nonce, nn, obj,
                        olen, plain, plain_len);
    }
    if (!e && (int64_t)*plain_len != doc->size) {
        *plain = NULL;
        e = dm_err_make(p, DM_E_INTERNAL, NULL,
                        "the stored document %s failed its integrity check (size)",
                        doc->storage_key);
    }
    if (e && e->code == DM_E_INTERNAL) {
        dm_log(DM_L_ERR, "DM01252: kyc: member %" APR_INT64_T_FMT " %s: %s", (apr_int64_t)user_id,
               kind, e->message);
    } else if (e && e->code == DM_E_UNAVAILABLE) {
        dm_log(DM_L_ERR, "DM01253: kyc: member %" APR_INT64_T_FMT " %s: %s", (apr_int64_t)user_id,
               kind, e->message);
    }
    return e;
}

dm_err *dm_kyc_document_view(dm_db *db, apr_pool_t *p, const dm_kyc_env *env,
                             const dm_kyc_actor *who, int64_t user_id, const char *kind,
                             dm_kyc_doc *doc, unsigned char **plain, size_t *plain_len)
{
    json_t *after;
    dm_err *e = dm_kyc_document_read(db, p, env, user_id, kind, doc, plain, plain_len);

    if (e) {
        return e;
    }
    after = dm_json_own(p, json_pack("{s:s,s:I,s:s,s:I,s:s,s:s}", "kind", doc->kind, "document",
                                     (json_int_t)doc->id, "content_type", doc->content_type, "size",
                                     (json_int_t)doc->size, "sha256", doc->sha256, "by",
                                     who && who->source ? who->source : "staff"));
    e = dm_db_begin(db, p);
    if (!e) {
        e = dm_audit_write(db, p, who ? who->staff_id : 0, "kyc.document.view", "user",
                           uid_str(p, user_id), NULL, after, who ? who->ip : NULL);
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
        *plain = NULL;
        *plain_len = 0;
    }
    return e;
}

/* ---- details ---- */

static dm_err *valid_date_of_birth(apr_pool_t *p, const char *s, int64_t now)
{
    int y, m, d;
    struct tm tm, today;
    time_t t;

    for (int i = 0; s && i < 10; i++) {
        if ((i == 4 || i == 7) ? s[i] != '-' : !apr_isdigit(s[i])) {
            s = NULL;
        }
    }
    if (!s || s[10] != '\0') {
        return dm_err_make(p, DM_E_INVALID, "date_of_birth",
                           "date_of_birth must be a date YYYY-MM-DD");
    }
    y = (int)strtol(s, NULL, 10);
    m = (int)strtol(s + 5, NULL, 10);
    d = (int)strtol(s + 8, NULL, 10);
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    tm.tm_hour = 12;
    t = timegm(&tm);
    gmtime_r(&t, &tm);
    if (y < 1900 || tm.tm_year != y - 1900 || tm.tm_mon != m - 1 || tm.tm_mday != d) {
        return dm_err_make(p, DM_E_INVALID, "date_of_birth", "date_of_birth is not a real date");
    }
    t = (time_t)now;
    gmtime_r(&t, &today);
    if (today.tm_year - tm.tm_year < 18 ||
        (today.tm_year - tm.tm_year == 18 &&
         (today.tm_mon < tm.tm_mon || (today.tm_mon == tm.tm_mon && today.tm_mday < tm.tm_mday)))) {
        return dm_err_make(p, DM_E_INVALID, "date_of_birth", "members must be 18 or older");
    }
    return NULL;
}

static dm_err *valid_country(apr_pool_t *p, const char *in, const char **out)
{
    if (!in || strlen(in) != 2 || !apr_isalpha(in[0]) || !apr_isalpha(in[1])) {
        return dm_err_make(p, DM_E_INVALID, "country",
                           "country must be a two-letter ISO 3166-1 code such as DE");
    }
    *out = apr_psprintf(p, "%c%c", apr_toupper(in[0]), apr_toupper(in[1]));
    return NULL;
}

static dm_err *opt_line(apr_pool_t *p, const char *field, const char *in, const char **out)
{
    *out = NULL;
    return in ? dm_validate_address_line(p, field, in, out) : NULL;
}

dm_err *dm_kyc_details_put(dm_db *db, apr_pool_t *p, int64_t user_id, const dm_kyc_details *in)
{
    dm_kyc_details v = {0};
    const char *status = NULL;
    dm_stmt *st;
    int row = 0;
    int64_t now = dm_now();
    dm_err *e =
        dm_validate_name(p, "legal_name", in->legal_name ? in->legal_name : "", &v.legal_name);

    if (!e) {
        e = valid_date_of_birth(p, in->date_of_birth, now);
        v.date_of_birth = in->date_of_birth;
    }
    if (!e) {
        e = valid_country(p, in->country, &v.country);
    }
    if (!e) {
        e = dm_validate_address_line(p, "address_line1", in->address_line1 ? in->address_line1 : "",
                                     &v.address_line1);
    }
    if (!e) {
        e = opt_line(p, "address_line2", in->address_line2, &v.address_line2);
    }
    if (!e) {
        e = dm_validate_address_line(p, "city", in->city ? in->city : "", &v.city);
    }
    if (!e) {
        e = opt_line(p, "postal_code", in->postal_code, &v.postal_code);
    }
    if (!e && v.postal_code && strlen(v.postal_code) > 20) {
        e = dm_err_make(p, DM_E_INVALID, "postal_code", "postal_code has at most 20 characters");
    }
    if (!e) {
        e = dm_db_begin(db, p);
        if (e) {
            return e;
        }
        e = current_status(db, p, user_id, &status);
        if (!e) {
            e = upload_allowed(p, status);
        }
        if (!e) {
            e = touch_case(db, p, user_id, now);
        }
        if (!e) {
            e = dm_db_prepare(
                db, p,
                "UPDATE kyc_cases SET legal_name = ?, date_of_birth = ?, country = ?, "
                "address_line1 = ?, address_line2 = ?, city = ?, postal_code = ?, "
                "updated_at = ? WHERE user_id = ?",
                &st);
        }
        if (!e) {
            dm_stmt_bind_str(st, 1, v.legal_name);
            dm_stmt_bind_str(st, 2, v.date_of_birth);
            dm_stmt_bind_str(st, 3, v.country);
            dm_stmt_bind_str(st, 4, v.address_line1);
            dm_stmt_bind_str(st, 5, v.address_line2);
            dm_stmt_bind_str(st, 6, v.city);
            dm_stmt_bind_str(st, 7, v.postal_code);
            dm_stmt_bind_int64(st, 8, now);
            dm_stmt_bind_int64(st, 9, user_id);
            e = dm_stmt_step(st, p, &row);
            dm_stmt_done(st);
        }
        if (!e) {
            e = dm_db_commit(db, p);
        }
        if (e) {
            dm_db_rollback(db);
        }
    }
    return e;
}

/* ---- overview ---- */

dm_err *dm_kyc_overview_get(dm_db *db, apr_pool_t *p, const dm_kyc_env *env, int64_t user_id,
                            dm_kyc_overview *o)
{
    dm_stmt *st;
    int row = 0;
    unsigned have = 0;
    dm_err *e;

    memset(o, 0, sizeof(*o));
    e = current_status(db, p, user_id, &o->status);
    if (!e) {
        e = dm_db_prepare(db, p,
                          "SELECT legal_name, date_of_birth, country, address_line1, "
                          "address_line2, city, postal_code, provider, reason, submitted_at, "
                          "decided_at, updated_at FROM kyc_cases WHERE user_id = ?",
                          &st);
    }
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        o->details.legal_name = dm_stmt_dup_text(st, p, 0);
        o->details.date_of_birth = dm_stmt_dup_text(st, p, 1);
        o->details.country = dm_stmt_dup_text(st, p, 2);
        o->details.address_line1 = dm_stmt_dup_text(st, p, 3);
        o->details.address_line2 = dm_stmt_dup_text(st, p, 4);
        o->details.city = dm_stmt_dup_text(st, p, 5);
        o->details.postal_code = dm_stmt_dup_text(st, p, 6);
        o->provider = dm_stmt_dup_text(st, p, 7);
        o->reason = dm_stmt_dup_text(st, p, 8);
        o->submitted_at = dm_stmt_int64(st, 9);
        o->decided_at = dm_stmt_int64(st, 10);
        o->updated_at = dm_stmt_int64(st, 11);
    }
    dm_stmt_done(st);
    if (!e) {
        e = docs_of(db, p, user_id, &o->documents);
    }
    if (e) {
        return e;
    }
    for (int i = 0; i < o->documents->nelts; i++) {
        int k = dm_kyc_kind_of(APR_ARRAY_IDX(o->documents, i, dm_kyc_doc).kind);
        if (k >= 0) {
            have |= 1u << k;
        }
    }
    o->missing = env_required(env) & ~have;
    o->can_upload = may_upload(o->status);
    o->resubmission_allowed =
        strcmp(o->status, DM_KYC_S_REJECTED) != 0 && strcmp(o->status, DM_KYC_S_APPROVED) != 0;
    o->can_submit = o->can_upload && !o->missing && o->details.legal_name != NULL;
    return NULL;
}

json_t *dm_kyc_doc_json(apr_pool_t *p, const dm_kyc_doc *d)
{
    return json_pack("{s:s,s:s,s:I,s:s}", "name", d->kind, "content_type", d->content_type, "size",
                     (json_int_t)d->size, "uploaded_at", dm_json_time(p, d->created_at));
}

static json_t *opt_str(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *dm_kyc_overview_json(apr_pool_t *p, const dm_kyc_overview *o)
{
    json_t *docs = json_array(), *req = json_array(), *missing = json_array(), *det;

    for (int i = 0; i < o->documents->nelts; i++) {
        json_array_append_new(docs,
                              dm_kyc_doc_json(p, &APR_ARRAY_IDX(o->documents, i, dm_kyc_doc)));
    }
    for (int k = 0; k < DM_KYC_KINDS; k++) {
        if (o->missing & (1u << k)) {
            json_array_append_new(missing, json_string(kind_names[k]));
        }
    }
    (void)req;
    json_decref(req);
    det = json_object();
    json_object_set_new(det, "legal_name", opt_str(o->details.legal_name));
    json_object_set_new(det, "date_of_birth", opt_str(o->details.date_of_birth));
    json_object_set_new(det, "country", opt_str(o->details.country));
    json_object_set_new(det, "address_line1", opt_str(o->details.address_line1));
    json_object_set_new(det, "address_line2", opt_str(o->details.address_line2));
    json_object_set_new(det, "city", opt_str(o->details.city));
    json_object_set_new(det, "postal_code", opt_str(o->details.postal_code));
    return json_pack("{s:s,s:o,s:o,s:o,s:o,s:o,s:b,s:b,s:b,s:o,s:o}", "status", o->status,
                     "provider", o->provider ? json_string(o->provider) : json_string("manual"),
                     "reason", opt_str(o->reason), "documents", docs, "missing", missing, "details",
                     det, "can_upload", o->can_upload, "can_submit", o->can_submit,
                     "resubmission_allowed", o->resubmission_allowed, "submitted_at",
                     dm_json_time_or_null(p, o->submitted_at), "decided_at",
                     dm_json_time_or_null(p, o->decided_at));
}

/* ---- hand-in and decisions ---- */

dm_err *dm_kyc_submit(dm_db *db, apr_pool_t *p, const dm_kyc_env *env, const dm_kyc_actor *who,
                      int64_t user_id, dm_member *out)
{
    dm_kyc_overview o;
    dm_err *e = dm_db_begin(db, p);

    if (e) {
        return e;
    }
    e = dm_kyc_overview_get(db, p, env, user_id, &o);
    if (!e && !o.can_upload) {
        e = upload_allowed(p, o.status);
    }
    for (int k = 0; !e && k < DM_KYC_KINDS; k++) {
        if (o.missing & (1u << k)) {
            e = dm_err_make(p, DM_E_INVALID, kind_names[k],
                            "upload your %s document before submitting", kind_names[k]);
        }
    }
    if (!e && !o.details.legal_name) {
        e = dm_err_make(p, DM_E_INVALID, "details",
                        "give your legal name, date of birth and address before submitting");
    }
    if (!e) {
        e = dm_kyc_apply_status(db, p, who, user_id, DM_KYC_S_PENDING, NULL, out, NULL);
    }
    if (!e) {
        return dm_db_commit(db, p);
    }
    dm_db_rollback(db);
    return e;
}

dm_err *dm_kyc_decide(dm_db *db, apr_pool_t *p, const dm_kyc_actor *who, int64_t user_id,
                      const char *decision, const char *reason, dm_member *out)
{
    const char *to, *status = NULL;
    dm_err *e;

    if (decision && strcmp(decision, "approve") == 0) {
        to = DM_KYC_S_APPROVED;
    } else if (decision && strcmp(decision, "reject") == 0) {
        to = DM_KYC_S_REJECTED;
    } else if (decision && strcmp(decision, "request_resubmission") == 0) {
        to = DM_KYC_S_RESUBMISSION;
    } else {
        return dm_err_make(p, DM_E_INVALID, "decision",
                           "decision must be approve, reject or request_resubmission");
    }
    if (strcmp(to, DM_KYC_S_APPROVED) != 0 && (!reason || !*reason)) {
        return dm_err_make(p, DM_E_INVALID, "reason",
                           "give the member a reason (it is e-mailed and shown to them)");
    }
    e = dm_db_begin(db, p);
    if (e) {
        return e;
    }
    e = current_status(db, p, user_id, &status);
    if (!e && strcmp(status, DM_KYC_S_PENDING) != 0 && strcmp(status, DM_KYC_S_REVIEW) != 0) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL,
                        "member %" APR_INT64_T_FMT "'s identity check is %s, not under review",
                        (apr_int64_t)user_id, status);
    }
    if (!e) {
        e = dm_kyc_apply_status(db, p, who, user_id, to, reason, out, NULL);
    }
    if (!e) {
        return dm_db_commit(db, p);
    }
    dm_db_rollback(db);
    return e;
}

/* ---- the staff queue ---- */

dm_err *dm_kyc_queue(dm_db *db, apr_pool_t *p, const char *status, int64_t now, int64_t cursor,
                     int limit, apr_array_header_t **rows, int64_t *next)
{
    dm_stmt *st;
    int row = 0, n = 0;
    dm_err *e;

    *rows = apr_array_make(p, limit > 0 ? limit : 1, sizeof(dm_kyc_queue_row));
    *next = 0;
    if (status && !dm_kyc_status_known(status)) {
        return dm_err_make(p, DM_E_INVALID, "status",
                           "status must be one of none, pending, review, approved, rejected, "
                           "resubmission");
    }
    e = dm_db_prepare(
        db, p,
        "SELECT u.id, u.email, u.kyc_status, c.legal_name, c.country, c.provider, "
        "COALESCE(c.submitted_at, 0) AS sub, "
        "(SELECT COUNT(*) FROM kyc_documents d WHERE d.user_id = u.id) "
        "FROM users u LEFT JOIN kyc_cases c ON c.user_id = u.id "
        "WHERE (u.kyc_status = ?1 OR (?1 IS NULL AND u.kyc_status IN ('pending', 'review'))) "
        "AND (?2 = 0 OR (COALESCE(c.submitted_at, 0), u.id) > "
        "((SELECT COALESCE(submitted_at, 0) FROM kyc_cases WHERE user_id = ?2), ?2)) "
        "ORDER BY sub, u.id LIMIT ?3",
        &st);
    if (e) {
        return e;
    }
    if (status) {
        dm_stmt_bind_str(st, 1, status);
    } else {
        dm_stmt_bind_null(st, 1);
    }
    dm_stmt_bind_int64(st, 2, cursor);
    dm_stmt_bind_int64(st, 3, (int64_t)limit + 1);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        dm_kyc_queue_row *r;
        if (++n > limit) {
            *next = APR_ARRAY_IDX(*rows, (*rows)->nelts - 1, dm_kyc_queue_row).user_id;
            break;
        }
        r = apr_array_push(*rows);
        r->user_id = dm_stmt_int64(st, 0);
        r->email = dm_stmt_dup_text(st, p, 1);
        r->status = dm_stmt_dup_text(st, p, 2);
        r->legal_name = dm_stmt_dup_text(st, p, 3);
        r->country = dm_stmt_dup_text(st, p, 4);
        r->provider = dm_stmt_dup_text(st, p, 5);
        r->submitted_at = dm_stmt_int64(st, 6);
        r->age_s = r->submitted_at && now > r->submitted_at ? now - r->submitted_at : 0;
        r->documents = (int)dm_stmt_int64(st, 7);
    }
    dm_stmt_done(st);
    return e;
}

json_t *dm_kyc_queue_row_json(apr_pool_t *p, const dm_kyc_queue_row *r)
{
    return json_pack("{s:I,s:s,s:s,s:o,s:o,s:s,s:o,s:I,s:i}", "user_id", (json_int_t)r->user_id,
                     "email", r->email, "status", r->status, "legal_name", opt_str(r->legal_name),
                     "country", opt_str(r->country), "provider",
                     r->provider ? r->provider : "manual", "submitted_at",
                     dm_json_time_or_null(p, r->submitted_at), "age_seconds", (json_int_t)r->age_s,
                     "documents", r->documents);
}

/* ---- retention ---- */

dm_err *dm_kyc_retention_run(dm_db *db, apr_pool_t *p, const dm_kyc_env *env, int64_t now,
                             int64_t retention, int64_t abandoned, int64_t *deleted)
{
    dm_stmt *st;
    int row = 0;
    apr_array_header_t *users = apr_array_make(p, 16, sizeof(int64_t));
    dm_kyc_actor job = {0, "job:kyc-retention", NULL};
    dm_err *e;

    *deleted = 0;
    if (!env || !env->store) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                           "no storage plugin: KYC documents cannot be deleted");
    }
    e = dm_db_prepare(
        db, p,
        "SELECT DISTINCT d.user_id FROM kyc_documents d "
        "JOIN users u ON u.id = d.user_id "
        "LEFT JOIN kyc_cases c ON c.user_id = d.user_id "
        "WHERE (u.kyc_status = 'approved' AND c.closed_at IS NOT NULL "
        "       AND c.closed_at < ?1) "
        "OR (u.kyc_status = 'rejected' AND COALESCE(c.decided_at, c.updated_at) < ?2) "
        "OR (u.kyc_status IN ('none', 'resubmission') "
        "    AND COALESCE(c.updated_at, d.created_at) < ?2) "
        "ORDER BY d.user_id LIMIT 500",
        &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, now - retention);
    dm_stmt_bind_int64(st, 2, now - abandoned);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        APR_ARRAY_PUSH(users, int64_t) = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    for (int i = 0; !e && i < users->nelts; i++) {
        int64_t uid = APR_ARRAY_IDX(users, i, int64_t);
        apr_array_header_t *docs;
        json_t *gone = dm_json_own(p, json_array());
        e = dm_db_begin(db, p);
        if (!e) {
            e = docs_of(db, p, uid, &docs);
        }
        if (!e) {
            e = dm_db_prepare(db, p, "DELETE FROM kyc_documents WHERE user_id = ?", &st);
        }
        if (!e) {
            dm_stmt_bind_int64(st, 1, uid);
            e = dm_stmt_step(st, p, &row);
            dm_stmt_done(st);
        }
        for (int j = 0; !e && j < docs->nelts; j++) {
            const dm_kyc_doc *d = &APR_ARRAY_IDX(docs, j, dm_kyc_doc);
            json_array_append_new(gone, json_pack("{s:s,s:I,s:s}", "kind", d->kind, "size",
                                                  (json_int_t)d->size, "sha256", d->sha256));
        }
        if (!e) {
            e = dm_audit_write(
                db, p, 0, "kyc.documents.expired", "user", uid_str(p, uid), NULL,
                dm_json_own(p, json_pack("{s:O,s:s}", "documents", gone, "by", job.source)), NULL);
        }
        if (!e) {
            e = dm_db_commit(db, p);
        }
        if (e) {
            dm_db_rollback(db);
            break;
        }
        /* the rows are gone: now the objects (an orphan is harmless: its
         * key is wrapped in no row any more) */
        for (int j = 0; j < docs->nelts; j++) {
            const dm_kyc_doc *d = &APR_ARRAY_IDX(docs, j, dm_kyc_doc);
            dm_err *r = env->store->remove(env->store->ctx, p, d->storage_key);
            if (r) {
                dm_log(DM_L_WARN, "DM01254: kyc retention: object %s not removed: %s",
                       d->storage_key, r->message);
            }
            (*deleted)++;
        }
    }
    return e;
}

/* ---- rekey ---- */

dm_err *dm_kyc_rekey(dm_db *db, apr_pool_t *p, const dm_kyc_master *from, const dm_kyc_master *to,
                     int batch, dm_kyc_rekey_stats *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = NULL;

    memset(out, 0, sizeof(*out));
    if (batch <= 0) {
        batch = 100;
    }
    e = dm_db_prepare(db, p, "SELECT COUNT(*) FROM kyc_documents WHERE key_id = ?", &st);
    if (!e) {
        dm_stmt_bind_str(st, 1, to->key_id);
        e = dm_stmt_step(st, p, &row);
        out->already = row ? dm_stmt_int64(st, 0) : 0;
        dm_stmt_done(st);
    }
    if (!e) {
        e = dm_db_prepare(db, p, "SELECT COUNT(*) FROM kyc_documents WHERE key_id NOT IN (?, ?)",
                          &st);
    }
    if (!e) {
        dm_stmt_bind_str(st, 1, to->key_id);
        dm_stmt_bind_str(st, 2, from->key_id);
        e = dm_stmt_step(st, p, &row);
        out->other = row ? dm_stmt_int64(st, 0) : 0;
        dm_stmt_done(st);
    }
    while (!e && strcmp(from->key_id, to->key_id) != 0) {
        apr_array_header_t *docs = apr_array_make(p, batch, sizeof(dm_kyc_doc));
        apr_pool_t *sub = NULL;
        e = dm_db_begin(db, p);
        if (!e) {
            e = dm_db_prepare(
                db, p,
                "SELECT " DOC_COLS " FROM kyc_documents WHERE key_id = ? ORDER BY id LIMIT ?", &st);
        }
        if (!e) {
            dm_stmt_bind_str(st, 1, from->key_id);
            dm_stmt_bind_int64(st, 2, batch);
            while (!(e = dm_stmt_step(st, p, &row)) && row) {
                doc_read(st, p, apr_array_push(docs));
            }
            dm_stmt_done(st);
        }
        apr_pool_create(&sub, p);
        for (int i = 0; !e && i < docs->nelts; i++) {
            const dm_kyc_doc *d = &APR_ARRAY_IDX(docs, i, dm_kyc_doc);
            unsigned char wrapped[DM_KYC_WRAPPED_BYTES], nonce[DM_KYC_NONCE_BYTES];
            size_t wn = 0, nn = 0;
            dm_kyc_sealed s;
            e = unhex(p, d->wrapped_key, wrapped, sizeof(wrapped), &wn);
            if (!e) {
                e = unhex(p, d->wrap_nonce, nonce, sizeof(nonce), &nn);
            }
            if (!e) {
                e = dm_kyc_rewrap(p, from, to, d->storage_key, wrapped, wn, nonce, nn, &s);
            }
            if (!e) {
                e = dm_db_prepare(db, p,
                                  "UPDATE kyc_documents SET wrapped_key = ?, wrap_nonce = ?, "
                                  "key_id = ? WHERE id = ? AND key_id = ?",
                                  &st);
            }
            if (!e) {
                dm_stmt_bind_str(st, 1, hex(sub, s.wrapped, sizeof(s.wrapped)));
                dm_stmt_bind_str(st, 2, hex(sub, s.nonce, sizeof(s.nonce)));
                dm_stmt_bind_str(st, 3, to->key_id);
                dm_stmt_bind_int64(st, 4, d->id);
                dm_stmt_bind_str(st, 5, from->key_id);
                e = dm_stmt_step(st, p, &row);
                dm_stmt_done(st);
                out->rewrapped += dm_db_changes(db);
            }
        }
        apr_pool_destroy(sub);
        if (!e) {
            e = dm_db_commit(db, p);
        }
        if (e) {
            dm_db_rollback(db);
        }
        if (!e && docs->nelts < batch) {
            break;
        }
    }
    return e;
}
