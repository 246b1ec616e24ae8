/* Identity checks: magic-byte sniffing, documents encrypted at rest (a
 * flipped byte anywhere fails cleanly, rekey keeps every document
 * readable and resumes), the status function, the hand-in rules, the
 * staff decisions and retention — over an in-memory object store. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <sodium.h>
#include <string.h>

#include "fixture.h"
#include "kyc/kyc.h"
#include "kyc/kyc_crypt.h"
#include "kyc/kyc_docs.h"
#include "kyc/kyc_manual.h"
#include "kyc/kyc_sniff.h"
#include "store/db.h"

static apr_pool_t *pool;
static int serial;

/* ---- an object store in memory ---- */

typedef struct mem_obj {
    unsigned char *buf;
    size_t len;
} mem_obj;

static apr_hash_t *objects;
static int fail_puts;

static dm_err *mem_put(void *ctx, apr_pool_t *p, const char *key, const void *buf, size_t len)
{
    mem_obj *o = apr_palloc(pool, sizeof(*o));
    if (fail_puts) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "store down");
    }
    o->buf = apr_pmemdup(pool, buf, len);
    o->len = len;
    apr_hash_set(objects, apr_pstrdup(pool, key), APR_HASH_KEY_STRING, o);
    return NULL;
}

static dm_err *mem_get(void *ctx, apr_pool_t *p, const char *key, size_t max, void **buf,
                       size_t *len)
{
    mem_obj *o = apr_hash_get(objects, key, APR_HASH_KEY_STRING);
    if (!o) {
        return dm_err_make(p, DM_E_NOT_FOUND, NULL, "none");
    }
    if (o->len > max) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "too large");
    }
    *buf = apr_pmemdup(p, o->buf, o->len);
    *len = o->len;
    return NULL;
}

static dm_err *mem_remove(void *ctx, apr_pool_t *p, const char *key)
{
    apr_hash_set(objects, key, APR_HASH_KEY_STRING, NULL);
    return NULL;
}

static const dm_kyc_store mem_store = {NULL, mem_put, mem_get, mem_remove};

static dm_kyc_master master_of(unsigned char fill)
{
    unsigned char secret[32];
    dm_kyc_master m;
    memset(secret, fill, sizeof(secret));
    dm_kyc_master_derive(secret, &m);
    return m;
}

static int64_t member(dm_db *db)
{
    dm_stmt *st = NULL;
    int row = 0;
    int64_t id;
    const char *email = apr_psprintf(pool, "k%d@example.com", ++serial);
    const char *code = apr_psprintf(pool, "K%07d", serial);

    assert_null(dm_db_prepare(db, pool,
                              "INSERT INTO users (email, email_key, password_hash, referral_code, "
                              "terms_version, terms_accepted_at, created_at, updated_at, "
                              "email_verified_at) VALUES (?, ?, 'x', ?, 'v1', 0, 0, 0, 1) "
                              "RETURNING id",
                              &st));
    dm_stmt_bind_str(st, 1, email);
    dm_stmt_bind_str(st, 2, email);
    dm_stmt_bind_str(st, 3, code);
    assert_null(dm_stmt_step(st, pool, &row));
    id = dm_stmt_int64(st, 0);
    dm_stmt_done(st);
    return id;
}

static int64_t count(dm_db *db, const char *sql)
{
    int64_t v = -1;
    int found = 0;
    assert_null(dm_db_query_int64(db, pool, sql, &v, &found));
    return v;
}

/* A PNG of n bytes (the signature, then a pattern). */
static unsigned char *png(size_t n)
{
    static const unsigned char sig[] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    unsigned char *b = apr_palloc(pool, n);
    for (size_t i = 0; i < n; i++) {
        b[i] = (unsigned char)(i * 7 + 3);
    }
    memcpy(b, sig, sizeof(sig));
    return b;
}

static const unsigned char jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F'};
static const char pdf[] = "%PDF-1.4\n1 0 obj <</S /JavaScript /JS (app.alert(1))>> endobj\n%%EOF\n";

/* ---- sniffing ---- */

static void test_sniff_knows_jpeg_png_pdf_by_their_first_bytes(void **state)
{
    (void)state;
    assert_string_equal(dm_kyc_sniff(jpeg, sizeof(jpeg)), "image/jpeg");
    assert_string_equal(dm_kyc_sniff(png(16), 16), "image/png");
    assert_string_equal(dm_kyc_sniff(pdf, strlen(pdf)), "application/pdf");
    assert_null(dm_kyc_sniff("GIF89a", 6));
    assert_null(dm_kyc_sniff("", 0));
    assert_null(dm_kyc_sniff(png(16), 7)); /* a cut signature */
    assert_null(dm_kyc_sniff(" %PDF-", 6));
    assert_null(dm_kyc_sniff("<html>", 6));
}

static void test_declared_type_ignores_parameters_and_case_only(void **state)
{
    (void)state;
    assert_string_equal(dm_kyc_declared_type("image/PNG"), "image/png");
    assert_string_equal(dm_kyc_declared_type(" application/pdf; name=x"), "application/pdf");
    assert_string_equal(dm_kyc_declared_type("image/jpeg ;q=1"), "image/jpeg");
    assert_null(dm_kyc_declared_type("image/pngx"));
    assert_null(dm_kyc_declared_type("image/png x"));
    assert_null(dm_kyc_declared_type("image/gif"));
    assert_null(dm_kyc_declared_type("text/html"));
    assert_null(dm_kyc_declared_type(NULL));
}

/* ---- encryption ---- */

static void test_sealed_object_is_not_the_plaintext_and_opens_whole(void **state)
{
    dm_kyc_master m = master_of(1);
    size_t n = 3 * DM_KYC_CHUNK + 5;
    unsigned char *doc = png(n), *out = NULL;
    size_t out_len = 0;
    dm_kyc_sealed s;
    (void)state;

    assert_null(dm_kyc_seal(pool, &m, "kyc/1/selfie-a", doc, n, &s));
    assert_int_equal(s.object_len, dm_kyc_sealed_size(n));
    assert_int_equal(s.object_len, 24 + n + 4 * 17);
    assert_null(memmem(s.object, s.object_len, doc, 64)); /* no plaintext run */
    assert_string_equal(s.key_id, m.key_id);
    assert_null(dm_kyc_open(pool, &m, "kyc/1/selfie-a", s.key_id, s.wrapped, sizeof(s.wrapped),
                            s.nonce, sizeof(s.nonce), s.object, s.object_len, &out, &out_len));
    assert_int_equal(out_len, n);
    assert_memory_equal(out, doc, n);
}

static void test_a_flipped_byte_anywhere_fails_cleanly(void **state)
{
    dm_kyc_master m = master_of(2);
    size_t n = DM_KYC_CHUNK + 100;
    unsigned char *doc = png(n), *out = (unsigned char *)"x";
    size_t out_len = 1;
    dm_kyc_sealed s;
    /* the header, the first chunk, the last chunk's tag, the last byte */
    size_t where[] = {3, 24 + 10, 24 + DM_KYC_CHUNK + 17 + 5, 0};
    (void)state;

    assert_null(dm_kyc_seal(pool, &m, "kyc/1/id_front-b", doc, n, &s));
    where[3] = s.object_len - 1;
    for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
        unsigned char *copy = apr_pmemdup(pool, s.object, s.object_len);
        dm_err *e;
        copy[where[i]] ^= 0x01;
        e = dm_kyc_open(pool, &m, "kyc/1/id_front-b", s.key_id, s.wrapped, sizeof(s.wrapped),
                        s.nonce, sizeof(s.nonce), copy, s.object_len, &out, &out_len);
        assert_non_null(e);
        assert_int_equal(e->code, DM_E_INTERNAL);
        assert_non_null(strstr(e->message, "integrity check"));
        assert_null(out);
        assert_int_equal(out_len, 0);
    }
    /* truncated by a whole chunk: the FINAL tag is missing */
    assert_non_null(dm_kyc_open(pool, &m, "kyc/1/id_front-b", s.key_id, s.wrapped,
                                sizeof(s.wrapped), s.nonce, sizeof(s.nonce), s.object,
                                24 + DM_KYC_CHUNK + 17, &out, &out_len));
    assert_null(out);
    /* a flipped wrapped key, and the wrapped key of another object */
    {
        unsigned char w[DM_KYC_WRAPPED_BYTES];
        memcpy(w, s.wrapped, sizeof(w));
        w[0] ^= 1;
        assert_non_null(dm_kyc_open(pool, &m, "kyc/1/id_front-b", s.key_id, w, sizeof(w), s.nonce,
                                    sizeof(s.nonce), s.object, s.object_len, &out, &out_len));
        assert_non_null(dm_kyc_open(pool, &m, "kyc/2/id_front-b", s.key_id, s.wrapped,
                                    sizeof(s.wrapped), s.nonce, sizeof(s.nonce), s.object,
                                    s.object_len, &out, &out_len));
    }
}

static void test_another_secret_is_refused_naming_both_key_ids(void **state)
{
    dm_kyc_master a = master_of(3), b = master_of(4);
    unsigned char *out = NULL;
    size_t out_len = 0;
    dm_kyc_sealed s;
    dm_err *e;
    (void)state;

    assert_string_not_equal(a.key_id, b.key_id);
    assert_int_equal(strlen(a.key_id), 16);
    assert_null(dm_kyc_seal(pool, &a, "k", jpeg, sizeof(jpeg), &s));
    e = dm_kyc_open(pool, &b, "k", s.key_id, s.wrapped, sizeof(s.wrapped), s.nonce, sizeof(s.nonce),
                    s.object, s.object_len, &out, &out_len);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_UNAVAILABLE);
    assert_non_null(strstr(e->message, a.key_id));
    assert_non_null(strstr(e->message, b.key_id));
    /* rewrapped for b, it opens under b */
    {
        dm_kyc_sealed r;
        assert_null(dm_kyc_rewrap(pool, &a, &b, "k", s.wrapped, sizeof(s.wrapped), s.nonce,
                                  sizeof(s.nonce), &r));
        assert_null(dm_kyc_open(pool, &b, "k", r.key_id, r.wrapped, sizeof(r.wrapped), r.nonce,
                                sizeof(r.nonce), s.object, s.object_len, &out, &out_len));
        assert_memory_equal(out, jpeg, sizeof(jpeg));
    }
}

/* ---- the domain ---- */

static dm_kyc_env env_with(const dm_kyc_master *m)
{
    dm_kyc_env env = {&mem_store, m, 0, 0};
    return env;
}

static void details(dm_db *db, int64_t uid)
{
    dm_kyc_details d = {"Ada Lovelace", "1990-12-10", "gb",      "12 St James's Square",
                        NULL,           "London",     "SW1Y 4JH"};
    assert_null(dm_kyc_details_put(db, pool, uid, &d));
}

static void test_upload_refuses_wrong_magic_empty_too_large_and_bad_names(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_kyc_master m = master_of(5);
    dm_kyc_env env = env_with(&m);
    int64_t uid = member(db);
    dm_kyc_doc d;
    dm_err *e;
    (void)state;

    env.max_document = 4096;
    e = dm_kyc_document_put(db, pool, &env, uid, "selfie", "image/png", jpeg, sizeof(jpeg), &d);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "content_type");
    e = dm_kyc_document_put(db, pool, &env, uid, "selfie", "image/gif", jpeg, sizeof(jpeg), &d);
    assert_int_equal(e->code, DM_E_INVALID);
    e = dm_kyc_document_put(db, pool, &env, uid, "selfie", "image/jpeg", jpeg, 0, &d);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "body");
    e = dm_kyc_document_put(db, pool, &env, uid, "selfie", "image/png", png(4097), 4097, &d);
    assert_int_equal(e->code, DM_E_TOO_LARGE);
    e = dm_kyc_document_put(db, pool, &env, uid, "../etc/passwd", "image/jpeg", jpeg, sizeof(jpeg),
                            &d);
    assert_int_equal(e->code, DM_E_NOT_FOUND);
    fail_puts = 1;
    e = dm_kyc_document_put(db, pool, &env, uid, "selfie", "image/jpeg", jpeg, sizeof(jpeg), &d);
    fail_puts = 0;
    assert_int_equal(e->code, DM_E_UNAVAILABLE);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM kyc_documents"), 0);
}

static void test_replacing_a_document_removes_the_old_object(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_kyc_master m = master_of(6);
    dm_kyc_env env = env_with(&m);
    int64_t uid = member(db);
    dm_kyc_doc a, b;
    unsigned char *out;
    size_t len;
    (void)state;

    assert_null(
        dm_kyc_document_put(db, pool, &env, uid, "id_front", "image/jpeg", jpeg, sizeof(jpeg), &a));
    assert_non_null(apr_hash_get(objects, a.storage_key, APR_HASH_KEY_STRING));
    assert_null(dm_kyc_document_put(db, pool, &env, uid, "id_front", "application/pdf", pdf,
                                    strlen(pdf), &b));
    assert_null(apr_hash_get(objects, a.storage_key, APR_HASH_KEY_STRING));
    assert_string_equal(b.content_type, "application/pdf");
    assert_int_equal(b.size, strlen(pdf));
    assert_null(dm_kyc_document_read(db, pool, &env, uid, "id_front", &b, &out, &len));
    assert_memory_equal(out, pdf, strlen(pdf));
}

static void test_submit_needs_every_required_document_and_details(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_kyc_master m = master_of(7);
    dm_kyc_env env = env_with(&m);
    dm_kyc_actor who = {0, "member", "127.0.0.1"};
    int64_t uid = member(db);
    dm_kyc_doc d;
    dm_member mem;
    dm_err *e;
    (void)state;

    e = dm_kyc_submit(db, pool, &env, &who, uid, &mem);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "id_front");
    assert_null(
        dm_kyc_document_put(db, pool, &env, uid, "id_front", "image/jpeg", jpeg, sizeof(jpeg), &d));
    e = dm_kyc_submit(db, pool, &env, &who, uid, &mem);
    assert_string_equal(e->field, "selfie");
    assert_null(dm_kyc_document_put(db, pool, &env, uid, "selfie", "image/png", png(100), 100, &d));
    e = dm_kyc_submit(db, pool, &env, &who, uid, &mem);
    assert_string_equal(e->field, "details");
    details(db, uid);
    assert_null(dm_kyc_submit(db, pool, &env, &who, uid, &mem));
    assert_string_equal(mem.kyc_status, "pending");
    /* under review: no more changes, no second hand-in */
    e = dm_kyc_document_put(db, pool, &env, uid, "selfie", "image/png", png(100), 100, &d);
    assert_int_equal(e->code, DM_E_CONFLICT);
    e = dm_kyc_submit(db, pool, &env, &who, uid, &mem);
    assert_int_equal(e->code, DM_E_CONFLICT);
}

static void test_details_go_through_the_validators(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t uid = member(db);
    dm_kyc_details d = {"Ada Lovelace", "1990-02-30", "GB", "1 Road", NULL, "London", NULL};
    dm_err *e;
    (void)state;

    e = dm_kyc_details_put(db, pool, uid, &d);
    assert_string_equal(e->field, "date_of_birth");
    d.date_of_birth = "2020-01-01";
    e = dm_kyc_details_put(db, pool, uid, &d);
    assert_string_equal(e->field, "date_of_birth");
    d.date_of_birth = "1990-01-01";
    d.country = "GBR";
    e = dm_kyc_details_put(db, pool, uid, &d);
    assert_string_equal(e->field, "country");
    d.country = "GB";
    d.legal_name = "Robert'); DROP TABLE users;--";
    e = dm_kyc_details_put(db, pool, uid, &d);
    assert_string_equal(e->field, "legal_name");
    d.legal_name = "Ada Lovelace";
    d.address_line1 = "1 Road\nX-Injected: yes";
    e = dm_kyc_details_put(db, pool, uid, &d);
    assert_string_equal(e->field, "address_line1");
    assert_int_equal(count(db, "SELECT COUNT(*) FROM kyc_cases WHERE legal_name IS NOT NULL"), 0);
}

static void test_decisions_audit_email_and_need_a_case_under_review(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_kyc_actor staff = {0, "staff", "127.0.0.1"};
    int64_t a = member(db), b = member(db);
    dm_member mem;
    dm_err *e;
    (void)state;

    e = dm_kyc_decide(db, pool, &staff, a, "approve", NULL, &mem);
    assert_int_equal(e->code, DM_E_CONFLICT); /* nothing handed in */
    assert_null(dm_kyc_change_status(db, pool, &staff, a, "pending", NULL, &mem));
    assert_null(dm_kyc_change_status(db, pool, &staff, b, "review", NULL, &mem));
    e = dm_kyc_decide(db, pool, &staff, a, "reject", "", &mem);
    assert_string_equal(e->field, "reason");
    e = dm_kyc_decide(db, pool, &staff, a, "maybe", "x", &mem);
    assert_string_equal(e->field, "decision");
    assert_null(dm_kyc_decide(db, pool, &staff, a, "request_resubmission", "Blurred photo", &mem));
    assert_string_equal(mem.kyc_status, "resubmission");
    assert_null(dm_kyc_decide(db, pool, &staff, b, "approve", NULL, &mem));
    assert_string_equal(mem.kyc_status, "approved");
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE template = "
                               "'kyc_resubmission' AND variables LIKE '%Blurred photo%'"),
                     1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE template = 'kyc_approved'"),
                     1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'user.kyc' AND "
                               "after_json LIKE '%\"by\":\"staff\"%'"),
                     4);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM kyc_cases WHERE reason = 'Blurred photo' AND "
                               "decided_at IS NOT NULL"),
                     1);
}

static void test_staff_view_is_audited_and_a_tampered_object_is_not_served(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_kyc_master m = master_of(8);
    dm_kyc_env env = env_with(&m);
    dm_kyc_actor staff = {0, "staff", "127.0.0.1"};
    int64_t uid = member(db);
    dm_kyc_doc d;
    unsigned char *out = NULL;
    size_t len = 0;
    mem_obj *o;
    dm_err *e;
    (void)state;

    assert_null(
        dm_kyc_document_put(db, pool, &env, uid, "selfie", "image/png", png(5000), 5000, &d));
    assert_null(dm_kyc_document_view(db, pool, &env, &staff, uid, "selfie", &d, &out, &len));
    assert_int_equal(len, 5000);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'kyc.document.view'"),
                     1);
    o = apr_hash_get(objects, d.storage_key, APR_HASH_KEY_STRING);
    o->buf[o->len / 2] ^= 0x80;
    e = dm_kyc_document_view(db, pool, &env, &staff, uid, "selfie", &d, &out, &len);
    assert_int_equal(e->code, DM_E_INTERNAL);
    assert_null(out);
    /* a failed view is not recorded as a view */
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'kyc.document.view'"),
                     1);
}

static void test_rekey_keeps_documents_readable_and_resumes(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_kyc_master old = master_of(9), neu = master_of(10);
    dm_kyc_env env = env_with(&old);
    dm_kyc_rekey_stats st;
    int64_t users[3];
    unsigned char *out;
    size_t len;
    dm_kyc_doc d;
    (void)state;

    for (int i = 0; i < 3; i++) {
        users[i] = member(db);
        assert_null(dm_kyc_document_put(db, pool, &env, users[i], "id_front", "image/jpeg", jpeg,
                                        sizeof(jpeg), &d));
        assert_null(dm_kyc_document_put(db, pool, &env, users[i], "selfie", "image/png",
                                        png(300 + i), 300 + i, &d));
    }
    /* the first run, in batches of 2 (each its own transaction) */
    assert_null(dm_kyc_rekey(db, pool, &old, &neu, 2, &st));
    assert_int_equal(st.rewrapped, 6);
    assert_int_equal(st.already, 0);
    /* a document uploaded under the old secret meanwhile, then the rerun:
     * only that one is re-wrapped, the 6 are left alone */
    env.master = &old;
    users[0] = member(db);
    assert_null(
        dm_kyc_document_put(db, pool, &env, users[0], "selfie", "image/png", png(300), 300, &d));
    assert_null(dm_kyc_rekey(db, pool, &old, &neu, 2, &st));
    assert_int_equal(st.rewrapped, 1);
    assert_int_equal(st.already, 6);
    assert_null(dm_kyc_rekey(db, pool, &old, &neu, 2, &st)); /* again: nothing left */
    assert_int_equal(st.rewrapped, 0);
    assert_int_equal(st.already, 7);
    assert_int_equal(count(db, apr_psprintf(pool,
                                            "SELECT COUNT(*) FROM kyc_documents WHERE key_id = "
                                            "'%s'",
                                            neu.key_id)),
                     7);
    env.master = &neu;
    for (int i = 0; i < 3; i++) {
        assert_null(dm_kyc_document_read(db, pool, &env, users[i], "selfie", &d, &out, &len));
        assert_int_equal(len, 300 + i);
        assert_memory_equal(out, png(300 + i), len);
    }
    /* under the old secret the server now refuses, naming the key ids */
    env.master = &old;
    assert_int_equal(dm_kyc_document_read(db, pool, &env, users[0], "selfie", &d, &out, &len)->code,
                     DM_E_UNAVAILABLE);
}

static void test_rekey_stops_at_a_key_it_cannot_open_keeping_earlier_batches(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_kyc_master old = master_of(11), neu = master_of(12);
    dm_kyc_env env = env_with(&old);
    dm_kyc_rekey_stats st;
    dm_kyc_doc d;
    dm_stmt *s;
    int row = 0;
    (void)state;

    for (int i = 0; i < 4; i++) {
        assert_null(dm_kyc_document_put(db, pool, &env, member(db), "selfie", "image/jpeg", jpeg,
                                        sizeof(jpeg), &d));
    }
    /* one row left under a secret neither run knows: the run stops there,
     * the rows before it stay re-wrapped */
    assert_null(dm_db_prepare(db, pool,
                              "UPDATE kyc_documents SET wrapped_key = '00' || substr(wrapped_key, "
                              "3) WHERE id = (SELECT MAX(id) FROM kyc_documents)",
                              &s));
    assert_null(dm_stmt_step(s, pool, &row));
    dm_stmt_done(s);
    assert_non_null(dm_kyc_rekey(db, pool, &old, &neu, 1, &st));
    assert_int_equal(st.rewrapped, 3);
    assert_int_equal(count(db, apr_psprintf(pool,
                                            "SELECT COUNT(*) FROM kyc_documents WHERE key_id = "
                                            "'%s'",
                                            neu.key_id)),
                     3);
}

static void test_retention_deletes_expired_documents_and_audits(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_kyc_master m = master_of(13);
    dm_kyc_env env = env_with(&m);
    dm_kyc_actor staff = {0, "staff", NULL};
    int64_t approved = member(db), rejected = member(db), fresh = member(db), deleted = 0;
    int64_t now = 2000000000;
    dm_kyc_doc da, dr, df;
    dm_member mem;
    dm_stmt *s;
    int row = 0;
    (void)state;

    assert_null(dm_kyc_document_put(db, pool, &env, approved, "selfie", "image/jpeg", jpeg,
                                    sizeof(jpeg), &da));
    assert_null(dm_kyc_document_put(db, pool, &env, rejected, "selfie", "image/jpeg", jpeg,
                                    sizeof(jpeg), &dr));
    assert_null(dm_kyc_document_put(db, pool, &env, fresh, "selfie", "image/jpeg", jpeg,
                                    sizeof(jpeg), &df));
    assert_null(dm_kyc_change_status(db, pool, &staff, approved, "approved", NULL, &mem));
    assert_null(dm_kyc_change_status(db, pool, &staff, rejected, "rejected", "fake", &mem));
    /* approved: kept while the account is open; rejected: 90 days after
     * the decision; the fresh case was touched just now */
    assert_null(dm_db_prepare(db, pool,
                              "UPDATE kyc_cases SET decided_at = ?1 - 91 * 86400, updated_at = ?1 "
                              "- 91 * 86400 WHERE user_id = ?2",
                              &s));
    dm_stmt_bind_int64(s, 1, now);
    dm_stmt_bind_int64(s, 2, rejected);
    assert_null(dm_stmt_step(s, pool, &row));
    dm_stmt_done(s);
    assert_null(
        dm_db_prepare(db, pool, "UPDATE kyc_cases SET updated_at = ? WHERE user_id = ?", &s));
    dm_stmt_bind_int64(s, 1, now);
    dm_stmt_bind_int64(s, 2, fresh);
    assert_null(dm_stmt_step(s, pool, &row));
    dm_stmt_done(s);
    assert_null(dm_kyc_retention_run(db, pool, &env, now, DM_KYC_DEFAULT_RETENTION,
                                     DM_KYC_DEFAULT_ABANDONED, &deleted));
    assert_int_equal(deleted, 1);
    assert_null(apr_hash_get(objects, dr.storage_key, APR_HASH_KEY_STRING));
    assert_non_null(apr_hash_get(objects, da.storage_key, APR_HASH_KEY_STRING));
    assert_non_null(apr_hash_get(objects, df.storage_key, APR_HASH_KEY_STRING));
    /* the approved member's account closed 5 years and a day ago */
    assert_null(
        dm_db_prepare(db, pool, "UPDATE kyc_cases SET closed_at = ? WHERE user_id = ?", &s));
    dm_stmt_bind_int64(s, 1, now - DM_KYC_DEFAULT_RETENTION - 86400);
    dm_stmt_bind_int64(s, 2, approved);
    assert_null(dm_stmt_step(s, pool, &row));
    dm_stmt_done(s);
    assert_null(dm_kyc_retention_run(db, pool, &env, now, DM_KYC_DEFAULT_RETENTION,
                                     DM_KYC_DEFAULT_ABANDONED, &deleted));
    assert_int_equal(deleted, 1);
    assert_null(apr_hash_get(objects, da.storage_key, APR_HASH_KEY_STRING));
    assert_int_equal(count(db, "SELECT COUNT(*) FROM kyc_documents"), 1);
    assert_int_equal(
        count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'kyc.documents.expired'"), 2);
}

static void test_legacy_patch_accepts_the_new_statuses_through_one_function(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t uid = member(db);
    dm_member mem;
    dm_err *e;
    (void)state;

    assert_null(dm_kyc_set_status(db, pool, 0, NULL, uid, "resubmission", &mem));
    assert_string_equal(mem.kyc_status, "resubmission");
    e = dm_kyc_set_status(db, pool, 0, NULL, uid, "bogus", &mem);
    assert_string_equal(e->field, "status");
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE template = "
                               "'kyc_resubmission'"),
                     1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sniff_knows_jpeg_png_pdf_by_their_first_bytes),
        cmocka_unit_test(test_declared_type_ignores_parameters_and_case_only),
        cmocka_unit_test(test_sealed_object_is_not_the_plaintext_and_opens_whole),
        cmocka_unit_test(test_a_flipped_byte_anywhere_fails_cleanly),
        cmocka_unit_test(test_another_secret_is_refused_naming_both_key_ids),
        cmocka_unit_test(test_upload_refuses_wrong_magic_empty_too_large_and_bad_names),
        cmocka_unit_test(test_replacing_a_document_removes_the_old_object),
        cmocka_unit_test(test_submit_needs_every_required_document_and_details),
        cmocka_unit_test(test_details_go_through_the_validators),
        cmocka_unit_test(test_decisions_audit_email_and_need_a_case_under_review),
        cmocka_unit_test(test_staff_view_is_audited_and_a_tampered_object_is_not_served),
        cmocka_unit_test(test_rekey_keeps_documents_readable_and_resumes),
        cmocka_unit_test(test_rekey_stops_at_a_key_it_cannot_open_keeping_earlier_batches),
        cmocka_unit_test(test_retention_deletes_expired_documents_and_audits),
        cmocka_unit_test(test_legacy_patch_accepts_the_new_statuses_through_one_function),
    };
    int rc;
    apr_initialize();
    if (sodium_init() < 0) {
        return 1;
    }
    apr_pool_create(&pool, NULL);
    objects = apr_hash_make(pool);
    if (dm_fx_init("kyc") != 0) {
        return 1;
    }
    rc = cmocka_run_group_tests_name("kyc", tests, NULL, NULL);
    apr_pool_destroy(pool);
    if (dm_fx_done() != 0) {
        return 1;
    }
    return rc;
}
