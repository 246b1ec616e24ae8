/* Members' data (staff/gdpr.h): what blocks an erasure (one sentence per
 * item), the erasure's tombstone (personal data gone, ids and money rows
 * kept, KYC objects removed through the store unless the AML retention
 * holds them) and the export's sections. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <sodium.h>
#include <string.h>

#include "base/clock.h"
#include "staff/gdpr.h"
#include "store/db.h"
#include "fixture.h"

static apr_pool_t *pool;

static int64_t count(dm_db *db, const char *sql)
{
    int64_t v = -1;
    int found = 0;

    assert_null(dm_db_query_int64(db, pool, sql, &v, &found));
    return v;
}

static void exec(dm_db *db, const char *sql)
{
    assert_null(dm_db_exec(db, pool, sql));
}

/* A store that records what it was asked to remove. */
static const char *removed[8];
static int n_removed;

static dm_err *fake_remove(void *ctx, apr_pool_t *p, const char *key)
{
    removed[n_removed++] = apr_pstrdup(pool, key);
    return NULL;
}

static dm_db *population(void)
{
    dm_db *db = dm_fx_db(pool);

    exec(db, "INSERT INTO users (id, email, email_key, name, password_hash, referral_code, "
             "terms_version, terms_accepted_at, created_at, updated_at) VALUES "
             "(7, 'ada@example.com', 'ada@example.com', 'Ada', '$argon2id$x', 'ADA00001', "
             "'1', 1, 1, 1)");
    exec(db, "INSERT INTO legal_acceptances (user_id, document, version, content_hash, ip, "
             "accepted_at) VALUES (7, 'terms', '1', 'h', '192.0.2.1', 1)");
    exec(db, "INSERT INTO accounts (kind, user_id, currency, balance_micros, created_at) "
             "VALUES ('wallet', 7, 'USD', 0, 1)");
    exec(db, "INSERT INTO refresh_tokens (user_id, family_id, token_hash, created_at, "
             "expires_at) VALUES (7, 'f1', 'th1', 1, 9999999999)");
    exec(db, "INSERT INTO mail_queue (recipient, template, variables, idempotency_key, "
             "next_attempt_at, created_at, updated_at) VALUES ('ada@example.com', 'welcome', "
             "'{\"email\":\"ada@example.com\"}', 'welcome:7', 1, 1, 1)");
    exec(db, "INSERT INTO kyc_documents (user_id, kind, content_type, size, sha256, "
             "storage_key, wrapped_key, wrap_nonce, key_id, created_at) VALUES (7, 'selfie', "
             "'image/png', 10, 'ab', 'kyc/7/selfie', 'w', 'n', 'k', 1)");
    exec(db, "INSERT INTO erasure_requests (id, user_id, status, token_hash, token_expires_at, "
             "requested_at, confirmed_at, due_at) VALUES (3, 7, 'scheduled', 'x', 1, 1, 1, 1)");
    return db;
}

static void test_blockers_name_each_thing_to_do_first(void **state)
{
    dm_db *db = population();
    apr_array_header_t *b;

    assert_null(dm_gdpr_blockers(db, pool, 7, &b));
    assert_int_equal(b->nelts, 0);
    exec(db, "UPDATE accounts SET balance_micros = 1500001 WHERE user_id = 7");
    exec(db, "INSERT INTO accounts (kind, user_id, currency, balance_micros, created_at) "
             "VALUES ('held', 7, 'USD', 250000, 1)");
    assert_null(dm_gdpr_blockers(db, pool, 7, &b));
    assert_int_equal(b->nelts, 2);
    assert_string_equal(APR_ARRAY_IDX(b, 0, const char *),
                        "the wallet holds 1.500001 USD: withdraw it first");
    assert_string_equal(APR_ARRAY_IDX(b, 1, const char *),
                        "0.250000 USD of commissions are still held: wait for their release "
                        "and withdraw them");
    exec(db, "UPDATE accounts SET balance_micros = -42 WHERE user_id = 7 AND kind = 'wallet'");
    exec(db, "UPDATE accounts SET balance_micros = 0 WHERE user_id = 7 AND kind = 'held'");
    assert_null(dm_gdpr_blockers(db, pool, 7, &b));
    assert_string_equal(APR_ARRAY_IDX(b, 0, const char *),
                        "the wallet owes -0.000042 USD: settle the debt first");
    dm_db_close(db);
}

static void test_erase_tombstones_and_removes_documents_through_the_store(void **state)
{
    dm_db *db = population();
    dm_kyc_store store = {NULL, NULL, NULL, fake_remove};
    dm_erasure x;

    n_removed = 0;
    assert_null(dm_gdpr_erase(db, pool, &store, 3, "job:erasure", 0, NULL, &x));
    assert_string_equal(x.status, "done");
    assert_string_equal(x.email, "erased-7@invalid");
    assert_int_equal(count(db, "SELECT COUNT(*) FROM users WHERE id = 7 AND name IS NULL AND "
                               "email = 'erased-7@invalid' AND password_hash = '!erased'"),
                     1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM refresh_tokens"), 0);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM kyc_documents"), 0);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM legal_acceptances WHERE ip = ''"), 1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE recipient = "
                               "'erased-7@invalid' AND variables = '{}'"),
                     1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM accounts WHERE user_id = 7"), 1);
    assert_int_equal(n_removed, 1);
    assert_string_equal(removed[0], "kyc/7/selfie");
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'member.erased' "
                               "AND target_id = '7'"),
                     1);
    /* done is done */
    assert_non_null(dm_gdpr_erase(db, pool, &store, 3, "job:erasure", 0, NULL, &x));
    dm_db_close(db);
}

static void test_erase_keeps_documents_the_aml_retention_holds(void **state)
{
    dm_db *db = population();
    dm_kyc_store store = {NULL, NULL, NULL, fake_remove};
    dm_erasure x;

    exec(db, "UPDATE users SET kyc_status = 'approved' WHERE id = 7");
    exec(db, "INSERT INTO kyc_cases (user_id, legal_name, updated_at) VALUES (7, 'Ada', 1)");
    n_removed = 0;
    assert_null(dm_gdpr_erase(db, pool, &store, 3, "job:erasure", 0, NULL, &x));
    assert_int_equal(n_removed, 0);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM kyc_documents"), 1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM kyc_cases WHERE closed_at IS NOT NULL"), 1);
    dm_db_close(db);
}

static void test_erase_refused_while_money_remains_writes_nothing(void **state)
{
    dm_db *db = population();
    dm_erasure x;
    dm_err *e;

    exec(db, "UPDATE accounts SET balance_micros = 1 WHERE user_id = 7");
    e = dm_gdpr_erase(db, pool, NULL, 3, "job:erasure", 0, NULL, &x);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM users WHERE email = 'ada@example.com'"), 1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM erasure_requests WHERE status = "
                               "'scheduled'"),
                     1);
    dm_db_close(db);
}

static void test_export_has_every_section(void **state)
{
    dm_db *db = population();
    json_t *o = NULL;
    static const char *const keys[] = {"profile",
                                       "legal_acceptances",
                                       "email_preferences",
                                       "accounts",
                                       "orders",
                                       "contracts",
                                       "statement",
                                       "commissions",
                                       "withdrawals",
                                       "kyc",
                                       "kyc_documents",
                                       "emails",
                                       "sessions",
                                       "erasure_requests",
                                       "referrals"};

    assert_null(dm_gdpr_export(db, pool, 7, &o));
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        assert_non_null(json_object_get(o, keys[i]));
    }
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "profile"), "email")),
                        "ada@example.com");
    assert_null(json_object_get(json_object_get(o, "profile"), "password_hash"));
    assert_int_equal(json_array_size(json_object_get(o, "sessions")), 1);
    assert_int_equal(json_array_size(json_object_get(o, "emails")), 1);
    dm_db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blockers_name_each_thing_to_do_first),
        cmocka_unit_test(test_erase_tombstones_and_removes_documents_through_the_store),
        cmocka_unit_test(test_erase_keeps_documents_the_aml_retention_holds),
        cmocka_unit_test(test_erase_refused_while_money_remains_writes_nothing),
        cmocka_unit_test(test_export_has_every_section),
    };
    int rc;

    apr_initialize();
    if (sodium_init() < 0) {
        return 1;
    }
    apr_pool_create(&pool, NULL);
    if (dm_fx_init("gdpr") != 0) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    dm_fx_done();
    apr_pool_destroy(pool);
    apr_terminate();
    return rc;
}
