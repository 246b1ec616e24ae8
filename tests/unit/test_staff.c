/* Staff accounts and sessions (staff.h), the audit log (audit.h), and the
 * staff view of members (admin_users.h): FTS5 search, detail, suspension
 * and the import from the old platform. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "staff/member_admin.h"
#include "store/audit.h"
#include "store/db.h"
#include "store/migrate.h"
#include "referral/referral.h"
#include "staff/staff.h"
#include "fixture.h"

static apr_pool_t *pool;
static dm_keys keys;
static dm_services svc;

/* A known $2b$ vector (cost 4) and its password; see test_password.c. */
#define BCRYPT_2B "$2b$04$NcDy7M2LAZvHHVxiy5oWJO3dSbermf0Goel2u7G8IZ1k0rm7SH7QO"
#define BCRYPT_2B_PASSWORD "correct horse"

#define CSV_HEADER "email,bcrypt_hash,referral_code,referrer_code,created_at\n"

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

/* A member as registration writes it (users row + referral placement). */
static int64_t add_member(dm_db *db, const char *email, const char *name, const char *code,
                          int64_t referrer)
{
    dm_stmt *st;
    int row = 0;
    int64_t id = 0;
    char *key = apr_pstrdup(pool, email);

    for (char *c = key; *c; c++) {
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    }
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_db_prepare(db, pool,
                              "INSERT INTO users (email, email_key, name, password_hash, "
                              "referral_code, referrer_id, terms_version, terms_accepted_at, "
                              "created_at, updated_at) VALUES (?, ?, ?, 'x', ?, ?, 'v1', 1, 1, 1) "
                              "RETURNING id",
                              &st));
    dm_stmt_bind_text(st, 1, email, strlen(email));
    dm_stmt_bind_text(st, 2, key, strlen(key));
    if (name) {
        dm_stmt_bind_text(st, 3, name, strlen(name));
    } else {
        dm_stmt_bind_null(st, 3);
    }
    code = code ? code : dm_referral_code_new(pool);
    dm_stmt_bind_text(st, 4, code, strlen(code));
    if (referrer) {
        dm_stmt_bind_int64(st, 5, referrer);
    } else {
        dm_stmt_bind_null(st, 5);
    }
    assert_null(dm_stmt_step(st, pool, &row));
    assert_true(row);
    id = dm_stmt_int64(st, 0);
    dm_stmt_done(st);
    assert_null(dm_referral_attach(db, pool, id, referrer));
    assert_null(dm_db_commit(db, pool));
    return id;
}

static apr_array_header_t *search(dm_db *db, const char *q, const char *status, int64_t cursor,
                                  int limit, int64_t *next)
{
    apr_array_header_t *rows = NULL;
    int64_t n = 0;

    assert_null(dm_admin_users_search(db, pool, q, status, cursor, limit, &rows, &n));
    if (next) {
        *next = n;
    }
    return rows;
}

static int64_t row_id(apr_array_header_t *rows, int i)
{
    return APR_ARRAY_IDX(rows, i, dm_admin_user_row).id;
}

/* ---- staff accounts and sessions ---- */

static void test_create_login_authenticate_logout(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_staff st, who, logged;
    dm_staff_session sess;
    const char *pw = NULL;
    dm_err *e;

    (void)state;
    assert_null(dm_staff_create(db, pool, &svc, 0, NULL, "Boss@Example.COM", "owner", &st, &pw));
    assert_string_equal(st.email, "Boss@example.com");
    assert_string_equal(st.role, "owner");
    assert_int_equal(strlen(pw), DM_STAFF_PASSWORD_LEN);
    assert_int_equal(strcspn(pw, "0O1IiLlo"), DM_STAFF_PASSWORD_LEN);
    /* only a hash is stored */
    assert_int_equal(count(db, "SELECT COUNT(*) FROM staff WHERE password_hash LIKE '$argon2id$%'"),
                     1);

    assert_null(dm_staff_login(db, pool, &svc, "boss@example.com", pw, "10.0.0.1", &logged, &sess));
    assert_int_equal(logged.id, st.id);
    assert_int_equal(strlen(sess.token), 43);
    assert_true(sess.expires - (int64_t)apr_time_sec(apr_time_now()) > DM_STAFF_SESSION_TTL - 5);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM staff_sessions WHERE ip = '10.0.0.1'"), 1);

    assert_null(dm_staff_authenticate(db, pool, &svc, sess.token, &who));
    assert_int_equal(who.id, st.id);
    assert_string_equal(who.role, "owner");
    assert_string_equal(who.email, "Boss@example.com");

    assert_null(dm_staff_logout(db, pool, &svc, sess.token, "10.0.0.1"));
    e = dm_staff_authenticate(db, pool, &svc, sess.token, &who);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_UNAUTHORIZED);
    /* a second logout, or an unknown token, is not an error */
    assert_null(dm_staff_logout(db, pool, &svc, sess.token, "10.0.0.1"));
    assert_null(dm_staff_logout(db, pool, &svc, "nonsense", "10.0.0.1"));

    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'staff.create' "
                               "AND staff_id IS NULL AND ip = 'console'"),
                     1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'staff.login' "
                               "AND staff_id IS NOT NULL AND ip = '10.0.0.1'"),
                     1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'staff.logout'"), 1);
}

static void test_wrong_password_and_unknown_email_answer_alike(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_staff st;
    dm_staff_session sess;
    const char *pw = NULL;
    dm_err *wrong, *unknown, *e;

    (void)state;
    assert_null(dm_staff_create(db, pool, &svc, 0, NULL, "kim@example.com", "kyc", &st, &pw));
    wrong = dm_staff_login(db, pool, &svc, "kim@example.com", "not-the-password", "ip", &st, &sess);
    unknown = dm_staff_login(db, pool, &svc, "who@example.com", pw, "ip", &st, &sess);
    assert_non_null(wrong);
    assert_non_null(unknown);
    assert_int_equal(wrong->code, DM_E_UNAUTHORIZED);
    assert_int_equal(unknown->code, DM_E_UNAUTHORIZED);
    assert_string_equal(wrong->message, unknown->message);
    e = dm_staff_login(db, pool, &svc, "not an address", pw, "ip", &st, &sess);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM staff_sessions"), 0);

    /* disabled: the right password gets 403, a wrong one still 401 */
    exec(db, "UPDATE staff SET status = 'disabled'");
    e = dm_staff_login(db, pool, &svc, "kim@example.com", pw, "ip", &st, &sess);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_FORBIDDEN);
    e = dm_staff_login(db, pool, &svc, "kim@example.com", "nope", "ip", &st, &sess);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_UNAUTHORIZED);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM staff_sessions"), 0);
}

static void test_disabled_or_expired_session_is_refused(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_staff st, who;
    dm_staff_session sess;
    const char *pw = NULL;
    dm_err *e;

    (void)state;
    assert_null(dm_staff_create(db, pool, &svc, 0, NULL, "sue@example.com", "support", &st, &pw));
    assert_null(dm_staff_login(db, pool, &svc, "sue@example.com", pw, "ip", &st, &sess));
    exec(db, "UPDATE staff SET status = 'disabled'");
    e = dm_staff_authenticate(db, pool, &svc, sess.token, &who);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_FORBIDDEN);
    exec(db, "UPDATE staff SET status = 'active'");
    assert_null(dm_staff_authenticate(db, pool, &svc, sess.token, &who));
    exec(db, "UPDATE staff_sessions SET expires_at = 1");
    e = dm_staff_authenticate(db, pool, &svc, sess.token, &who);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_UNAUTHORIZED);
    e = dm_staff_authenticate(db, pool, &svc, "", &who);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_UNAUTHORIZED);
    e = dm_staff_authenticate(db, pool, &svc, NULL, &who);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_UNAUTHORIZED);
}

static void test_create_validates_role_and_email(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_staff st;
    const char *pw = NULL;
    const char *roles[] = {"boss", "", "Owner", "member", NULL};
    dm_err *e;

    (void)state;
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
        e = dm_staff_create(db, pool, &svc, 0, NULL, "a@example.com", roles[i], &st, &pw);
        assert_non_null(e);
        assert_int_equal(e->code, DM_E_INVALID);
        assert_string_equal(e->field, "role");
    }
    e = dm_staff_create(db, pool, &svc, 0, NULL, "no-at-sign", "owner", &st, &pw);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "email");
    assert_int_equal(count(db, "SELECT COUNT(*) FROM staff"), 0);

    assert_int_equal(dm_staff_role_bit("owner"), DM_ROLE_OWNER);
    assert_int_equal(dm_staff_role_bit("finance"), DM_ROLE_FINANCE);
    assert_int_equal(dm_staff_role_bit("support"), DM_ROLE_SUPPORT);
    assert_int_equal(dm_staff_role_bit("kyc"), DM_ROLE_KYC);
    assert_int_equal(dm_staff_role_bit("root"), 0);
    assert_int_equal(dm_staff_role_bit(NULL), 0);

    assert_null(dm_staff_create(db, pool, &svc, 0, NULL, "a@example.com", "finance", &st, &pw));
    e = dm_staff_create(db, pool, &svc, 0, NULL, "A@EXAMPLE.com", "kyc", &st, &pw);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_string_equal(e->field, "email");
    assert_int_equal(count(db, "SELECT COUNT(*) FROM staff"), 1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log"), 1);
}

static void test_ensure_owner_creates_only_when_there_is_none(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_staff st;
    const char *pw = NULL;
    int created = -1;
    apr_array_header_t *rows = NULL;

    (void)state;
    assert_null(dm_staff_create(db, pool, &svc, 0, NULL, "f@example.com", "finance", &st, &pw));
    assert_null(dm_staff_ensure_owner(db, pool, &svc, "owner@deepmine.local", &created, &st, &pw));
    assert_int_equal(created, 1);
    assert_string_equal(st.role, "owner");
    pw = NULL;
    assert_null(dm_staff_ensure_owner(db, pool, &svc, "other@deepmine.local", &created, &st, &pw));
    assert_int_equal(created, 0);
    assert_null(pw);
    assert_null(dm_staff_list(db, pool, &rows));
    assert_int_equal(rows->nelts, 2);
    assert_string_equal(APR_ARRAY_IDX(rows, 1, dm_staff).email, "owner@deepmine.local");
}

/* ---- audit ---- */

static void test_audit_is_refused_outside_a_transaction(void **state)
{
    dm_db *db = dm_fx_db(pool);
    json_t *before = json_pack("{s:s}", "status", "active");
    json_t *after = json_pack("{s:s}", "status", "suspended");
    dm_err *e;

    (void)state;
    e = dm_audit_write(db, pool, 0, "user.suspend", "user", "1", before, after, "1.2.3.4");
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INTERNAL);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log"), 0);

    /* inside: it goes with the transaction, rolled back or committed */
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_audit_write(db, pool, 0, "user.suspend", "user", "1", before, after, "1.2.3.4"));
    dm_db_rollback(db);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log"), 0);
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_audit_write(db, pool, 0, "user.suspend", "user", "1", before, after, "1.2.3.4"));
    assert_null(dm_db_commit(db, pool));
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE staff_id IS NULL AND "
                               "before_json = '{\"status\":\"active\"}' AND "
                               "after_json = '{\"status\":\"suspended\"}' AND ip = '1.2.3.4'"),
                     1);
    json_decref(before);
    json_decref(after);
}

static void test_audit_lists_newest_first_with_cursor_and_filters(void **state)
{
    dm_db *db = dm_fx_db(pool);
    apr_array_header_t *rows = NULL;
    int64_t next = 0;
    dm_audit_filter by_target = {NULL, "user", "7"};
    dm_audit_filter by_action = {"user.unsuspend", NULL, NULL};
    const dm_audit_entry *a;
    json_t *j;
    dm_err *e;

    (void)state;
    assert_null(dm_db_begin(db, pool));
    for (int i = 0; i < 5; i++) {
        assert_null(dm_audit_write(db, pool, 0, i % 2 ? "user.unsuspend" : "user.suspend", "user",
                                   i < 3 ? "7" : "8", NULL, NULL, NULL));
    }
    assert_null(dm_db_commit(db, pool));

    assert_null(dm_audit_list(db, pool, NULL, 0, 2, &rows, &next));
    assert_int_equal(rows->nelts, 2);
    assert_int_equal(APR_ARRAY_IDX(rows, 0, dm_audit_entry).id, 5);
    assert_int_equal(next, 4);
    assert_null(dm_audit_list(db, pool, NULL, next, 2, &rows, &next));
    assert_int_equal(APR_ARRAY_IDX(rows, 0, dm_audit_entry).id, 3);
    assert_null(dm_audit_list(db, pool, NULL, next, 2, &rows, &next));
    assert_int_equal(rows->nelts, 1);
    assert_int_equal(next, 0);

    assert_null(dm_audit_list(db, pool, &by_target, 0, 50, &rows, &next));
    assert_int_equal(rows->nelts, 3);
    assert_null(dm_audit_list(db, pool, &by_action, 0, 50, &rows, &next));
    assert_int_equal(rows->nelts, 2);
    a = &APR_ARRAY_IDX(rows, 0, dm_audit_entry);
    assert_string_equal(a->action, "user.unsuspend");
    assert_string_equal(a->ip, "console");
    assert_null(a->staff_email);
    j = dm_audit_entry_json(pool, a);
    assert_true(json_is_null(json_object_get(j, "staff")));
    assert_true(json_is_null(json_object_get(j, "before")));
    json_decref(j);

    e = dm_audit_list(db, pool, NULL, 0, 0, &rows, &next);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
}

/* ---- search ---- */

static void test_fts_query_quotes_every_word(void **state)
{
    (void)state;
    assert_null(dm_admin_fts_query(pool, NULL));
    assert_null(dm_admin_fts_query(pool, ""));
    assert_null(dm_admin_fts_query(pool, " \t\n "));
    assert_string_equal(dm_admin_fts_query(pool, "john"), "\"john\"*");
    assert_string_equal(dm_admin_fts_query(pool, "  john  doe "), "\"john\"* \"doe\"*");
    assert_string_equal(dm_admin_fts_query(pool, "a\"b"), "\"a\"\"b\"*");
    assert_string_equal(dm_admin_fts_query(pool, "\""), "\"\"\"\"*");
    assert_string_equal(dm_admin_fts_query(pool, "NEAR(a* -b"), "\"NEAR(a*\"* \"-b\"*");
}

static void test_search_by_email_prefix_referral_code_and_name(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t john = add_member(db, "john.smith@example.com", NULL, "ABCD2345", 0);
    int64_t mary = add_member(db, "mary@example.org", "Mary Jönes", "WXYZ6789", john);
    int64_t zed = add_member(db, "zed@sample.net", NULL, "QRST2345", 0);
    apr_array_header_t *rows;
    dm_admin_user_row *u;

    (void)state;
    rows = search(db, "joh", NULL, 0, 50, NULL);
    assert_int_equal(rows->nelts, 1);
    assert_int_equal(row_id(rows, 0), john);
    rows = search(db, "john.smi", NULL, 0, 50, NULL);
    assert_int_equal(rows->nelts, 1);
    rows = search(db, "example", NULL, 0, 50, NULL);
    assert_int_equal(rows->nelts, 2);
    assert_int_equal(row_id(rows, 0), mary); /* newest first */
    assert_int_equal(row_id(rows, 1), john);
    rows = search(db, "wxyz6789", NULL, 0, 50, NULL);
    assert_int_equal(rows->nelts, 1);
    assert_int_equal(row_id(rows, 0), mary);
    rows = search(db, "QRST", NULL, 0, 50, NULL);
    assert_int_equal(rows->nelts, 1);
    assert_int_equal(row_id(rows, 0), zed);
    rows = search(db, "jones", NULL, 0, 50, NULL); /* diacritics folded */
    assert_int_equal(rows->nelts, 1);
    u = &APR_ARRAY_IDX(rows, 0, dm_admin_user_row);
    assert_int_equal(u->id, mary);
    assert_string_equal(u->name, "Mary Jönes");
    assert_int_equal(u->referrer_id, john);
    assert_string_equal(u->status, "active");
    rows = search(db, "mary example", NULL, 0, 50, NULL); /* words ANDed */
    assert_int_equal(rows->nelts, 1);
    rows = search(db, "mary sample", NULL, 0, 50, NULL);
    assert_int_equal(rows->nelts, 0);
    /* a renamed member is found by the new name only (the FTS triggers) */
    exec(db, "UPDATE users SET name = 'Zacharias' WHERE email = 'zed@sample.net'");
    assert_int_equal(search(db, "zachar", NULL, 0, 50, NULL)->nelts, 1);
    exec(db, "UPDATE users SET name = 'Other' WHERE email = 'zed@sample.net'");
    assert_int_equal(search(db, "zachar", NULL, 0, 50, NULL)->nelts, 0);
    /* empty q lists everyone */
    assert_int_equal(search(db, NULL, NULL, 0, 50, NULL)->nelts, 3);
    assert_int_equal(search(db, "   ", NULL, 0, 50, NULL)->nelts, 3);
}

static void test_search_metacharacters_never_error(void **state)
{
    dm_db *db = dm_fx_db(pool);
    const char *queries[] = {"\"",
                             "\"\"",
                             "*",
                             "\"abc",
                             "NEAR(",
                             "NEAR(a b)",
                             "-",
                             "-abc",
                             "a OR b",
                             "AND",
                             "NOT x",
                             "email:foo",
                             "^abc",
                             "(",
                             ")",
                             "{email}: x",
                             "'; DROP TABLE users; --",
                             "a\"b*c",
                             "é",
                             "+",
                             "john\" OR \"x",
                             "\xF0\x9F\x98\x80"};

    (void)state;
    add_member(db, "john@example.com", NULL, NULL, 0);
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        apr_array_header_t *rows = NULL;
        int64_t next = 0;
        dm_err *e = dm_admin_users_search(db, pool, queries[i], NULL, 0, 50, &rows, &next);
        if (e) {
            fail_msg("q=%s: %s", queries[i], e->message);
        }
        assert_non_null(rows);
    }
    /* the injection attempt matched nothing and hurt nothing */
    assert_int_equal(count(db, "SELECT COUNT(*) FROM users"), 1);
}

static void test_search_rejects_bad_input(void **state)
{
    dm_db *db = dm_fx_db(pool);
    apr_array_header_t *rows = NULL;
    int64_t next = 0;
    char long_q[DM_ADMIN_Q_MAX_CHARS + 2];
    dm_err *e;

    (void)state;
    memset(long_q, 'a', sizeof(long_q) - 1);
    long_q[sizeof(long_q) - 1] = '\0';
    e = dm_admin_users_search(db, pool, NULL, "banned", 0, 50, &rows, &next);
    assert_non_null(e);
    assert_string_equal(e->field, "status");
    e = dm_admin_users_search(db, pool, long_q, NULL, 0, 50, &rows, &next);
    assert_non_null(e);
    assert_string_equal(e->field, "q");
    e = dm_admin_users_search(db, pool, "a\x01", NULL, 0, 50, &rows, &next);
    assert_non_null(e);
    assert_string_equal(e->field, "q");
    e = dm_admin_users_search(db, pool, "\xff\xfe", NULL, 0, 50, &rows, &next);
    assert_non_null(e);
    assert_string_equal(e->field, "q");
    e = dm_admin_users_search(db, pool, "a b c d e f g h i j k l m n o p q", NULL, 0, 50, &rows,
                              &next);
    assert_non_null(e);
    assert_string_equal(e->field, "q");
    e = dm_admin_users_search(db, pool, NULL, NULL, 0, 201, &rows, &next);
    assert_non_null(e);
    assert_string_equal(e->field, "limit");
}

static void test_search_pages_by_keyset_and_filters_status(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t ids[7], next = 0, cursor = 0;
    apr_array_header_t *rows;
    int seen = 0;

    (void)state;
    for (int i = 0; i < 7; i++) {
        ids[i] = add_member(db, apr_psprintf(pool, "page%d@example.com", i), NULL, NULL, 0);
    }
    add_member(db, "other@elsewhere.org", NULL, NULL, 0);
    do {
        rows = search(db, "page", NULL, cursor, 3, &next);
        for (int i = 0; i < rows->nelts; i++) {
            assert_int_equal(row_id(rows, i), ids[6 - seen]);
            seen++;
        }
        assert_true(rows->nelts == 3 || next == 0);
        cursor = next;
    } while (next);
    assert_int_equal(seen, 7);
    /* exactly a full last page: no next cursor */
    rows = search(db, "page", NULL, ids[1], 1, &next);
    assert_int_equal(row_id(rows, 0), ids[0]);
    assert_int_equal(next, 0);
    /* without q, on status */
    exec(db, "UPDATE users SET status = 'suspended' WHERE email IN ('page2@example.com', "
             "'page5@example.com')");
    rows = search(db, NULL, "suspended", 0, 1, &next);
    assert_int_equal(row_id(rows, 0), ids[5]);
    assert_int_equal(next, ids[5]);
    rows = search(db, NULL, "suspended", next, 1, &next);
    assert_int_equal(row_id(rows, 0), ids[2]);
    assert_int_equal(next, 0);
    rows = search(db, "page", "active", 0, 50, &next);
    assert_int_equal(rows->nelts, 5);
    rows = search(db, "page", "suspended", 0, 50, &next);
    assert_int_equal(rows->nelts, 2);
    assert_int_equal(search(db, NULL, NULL, 0, 50, &next)->nelts, 8);
}

/* ---- detail and suspension ---- */

static void test_detail_has_upline_emails_and_network_counts(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t chain[12];
    dm_admin_user_detail d;
    json_t *j;
    dm_err *e;

    (void)state;
    for (int i = 0; i < 12; i++) {
        chain[i] = add_member(db, apr_psprintf(pool, "c%d@example.com", i), NULL, NULL,
                              i ? chain[i - 1] : 0);
    }
    assert_null(dm_admin_user_get(db, pool, chain[11], &d));
    assert_int_equal(d.upline_n, 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(d.upline[i].id, chain[10 - i]);
        assert_string_equal(d.upline[i].email, apr_psprintf(pool, "c%d@example.com", 10 - i));
    }
    assert_null(dm_admin_user_get(db, pool, chain[0], &d));
    assert_int_equal(d.upline_n, 0);
    assert_int_equal(d.network.total, 11);
    for (int i = 0; i < DM_REFERRAL_LEVELS; i++) {
        assert_int_equal(d.network.levels[i], 1);
    }
    j = dm_admin_user_detail_json(pool, &svc, &d);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "network"), "direct")),
                     1);
    assert_true(json_is_null(json_object_get(json_object_get(j, "user"), "referrer_id")));
    json_decref(j);
    e = dm_admin_user_get(db, pool, 424242, &d);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_NOT_FOUND);
}

static void test_suspend_bumps_token_version_with_audit_in_one_transaction(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t id = add_member(db, "sus@example.com", NULL, NULL, 0);
    dm_member m;
    dm_err *e;

    (void)state;
    exec(db, apr_psprintf(pool,
                          "INSERT INTO refresh_tokens (user_id, family_id, token_hash, created_at, "
                          "expires_at) VALUES (%" APR_INT64_T_FMT ", 'f', 'h', 1, 9999999999)",
                          (apr_int64_t)id));
    assert_null(dm_admin_user_set_status(db, pool, 0, "9.9.9.9", id, "suspended", &m));
    assert_string_equal(m.status, "suspended");
    assert_int_equal(m.token_version, 1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM refresh_tokens WHERE revoked_at IS NULL"), 0);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'user.suspend' AND "
                               "target_type = 'user' AND before_json = '{\"status\":\"active\"}' "
                               "AND after_json = '{\"status\":\"suspended\"}' AND ip = '9.9.9.9'"),
                     1);
    assert_false(dm_db_in_transaction(db));

    /* the same status again: nothing changes, nothing is recorded */
    assert_null(dm_admin_user_set_status(db, pool, 0, "9.9.9.9", id, "suspended", &m));
    assert_int_equal(m.token_version, 1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log"), 1);

    assert_null(dm_admin_user_set_status(db, pool, 0, "9.9.9.9", id, "active", &m));
    assert_string_equal(m.status, "active");
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'user.unsuspend'"),
                     1);

    e = dm_admin_user_set_status(db, pool, 0, "9.9.9.9", 999, "suspended", &m);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_NOT_FOUND);
    e = dm_admin_user_set_status(db, pool, 0, "9.9.9.9", id, "banned", &m);
    assert_non_null(e);
    assert_string_equal(e->field, "status");
    e = dm_admin_user_set_status(db, pool, 0, "9.9.9.9", id, NULL, &m);
    assert_non_null(e);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log"), 2);
    assert_false(dm_db_in_transaction(db));
}

/* ---- import ---- */

static dm_err *import(dm_db *db, const char *csv, dm_import_report *rep)
{
    return dm_admin_import_users(db, pool, csv, strlen(csv), "test.csv", rep);
}

static void test_import_orders_referrers_and_keeps_bcrypt_hashes(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_import_report rep;
    dm_admin_user_detail d;
    apr_array_header_t *rows;
    int ok = 0, rehash = 0;
    dm_stmt *st;
    int row = 0;
    const char *stored;
    int64_t parent = add_member(db, "existing@example.com", NULL, "EXST2345", 0);
    /* grandchild first, then child, then a root: order is the import's job */
    const char *csv = "\xEF\xBB\xBF" CSV_HEADER "gc@old.example.com," BCRYPT_2B
                      ",gcgc2345,CHKD2345,2020-01-02T03:04:05Z\r\n"
                      "\"child@old.example.com\"," BCRYPT_2B ",CHKD2345,EXST2345,1577836800\r\n"
                      "\r\n"
                      "root@old.example.com," BCRYPT_2B ",RRRT2345,,2019-06-01T12:00:00+02:00\n";

    (void)state;
    assert_null(import(db, csv, &rep));
    assert_int_equal(rep.rows, 3);
    assert_int_equal(rep.imported, 3);
    assert_int_equal(rep.bad_line, 0);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM users WHERE terms_version = 'imported' AND "
                               "terms_accepted_at = created_at"),
                     3);
    assert_int_equal(count(db, "SELECT created_at FROM users WHERE referral_code = 'GCGC2345'"),
                     1577934245);
    assert_int_equal(count(db, "SELECT created_at FROM users WHERE referral_code = 'RRRT2345'"),
                     1559383200);
    rows = search(db, "gcgc2345", NULL, 0, 50, NULL);
    assert_int_equal(rows->nelts, 1);
    assert_null(dm_admin_user_get(db, pool, row_id(rows, 0), &d));
    assert_int_equal(d.upline_n, 2);
    assert_string_equal(d.upline[0].email, "child@old.example.com");
    assert_int_equal(d.upline[1].id, parent);
    assert_null(dm_admin_user_get(db, pool, parent, &d));
    assert_int_equal(d.network.total, 2);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'users.import' AND "
                               "after_json = '{\"members\":3,\"source\":\"test.csv\"}'"),
                     1);

    /* the stored bcrypt hash verifies and asks to be rehashed */
    assert_null(dm_db_prepare(
        db, pool, "SELECT password_hash FROM users WHERE email = 'gc@old.example.com'", &st));
    assert_null(dm_stmt_step(st, pool, &row));
    stored = apr_pstrdup(pool, dm_stmt_text(st, 0, NULL));
    dm_stmt_done(st);
    assert_string_equal(stored, BCRYPT_2B);
    assert_null(dm_pw_verify(pool, NULL, &svc.pw_params, stored, BCRYPT_2B_PASSWORD, &ok, &rehash));
    assert_true(ok);
    assert_true(rehash);
}

static void expect_bad(dm_db *db, const char *csv, int64_t line, const char *words)
{
    dm_import_report rep;
    int64_t users = count(db, "SELECT COUNT(*) FROM users");
    dm_err *e = import(db, csv, &rep);

    if (!e) {
        fail_msg("accepted: %s", csv);
    }
    assert_int_equal(e->code, DM_E_INVALID);
    if (rep.bad_line != line || !strstr(e->message, words)) {
        fail_msg("%s: want line %d with '%s', got %s", csv, (int)line, words, e->message);
    }
    assert_int_equal(rep.imported, 0);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM users"), users);
    assert_false(dm_db_in_transaction(db));
}

static void test_import_is_all_or_nothing_and_names_the_first_bad_line(void **state)
{
    dm_db *db = dm_fx_db(pool);
    const char *ok = "ok@x.example.com," BCRYPT_2B ",KKKK2345,,1577836800\n";

    (void)state;
    add_member(db, "taken@example.com", NULL, "TAKN2345", 0);
    expect_bad(db, "", 1, "header");
    expect_bad(db, "mail,hash\n", 1, "header");
    expect_bad(db, CSV_HEADER "bad,x\n", 2, "5 fields");
    expect_bad(db, CSV_HEADER "nobody," BCRYPT_2B ",AAAA2345,,1577836800\n", 2, "email");
    expect_bad(db, CSV_HEADER "a@x.example.com,$1$abc,AAAA2345,,1577836800\n", 2, "bcrypt_hash");
    expect_bad(db, CSV_HEADER "a@x.example.com,$2b$04$short,AAAA2345,,1577836800\n", 2,
               "bcrypt_hash");
    expect_bad(db, CSV_HEADER "a@x.example.com," BCRYPT_2B ",AAAA0000,,1577836800\n", 2,
               "referral_code");
    expect_bad(db, CSV_HEADER "a@x.example.com," BCRYPT_2B ",AAAA2345,AAAA2345,1577836800\n", 2,
               "itself");
    expect_bad(db, CSV_HEADER "a@x.example.com," BCRYPT_2B ",AAAA2345,NQNE2345,1577836800\n", 2,
               "neither");
    expect_bad(db, CSV_HEADER "a@x.example.com," BCRYPT_2B ",AAAA2345,,2019-13-01T00:00:00Z\n", 2,
               "created_at");
    expect_bad(db, CSV_HEADER "a@x.example.com," BCRYPT_2B ",AAAA2345,,2019-01-01T00:00:00\n", 2,
               "created_at");
    expect_bad(db, CSV_HEADER "a@x.example.com," BCRYPT_2B ",AAAA2345,,0\n", 2, "created_at");
    expect_bad(db, CSV_HEADER "a@x.example.com," BCRYPT_2B ",AAAA2345,,99999999999\n", 2,
               "created_at");
    expect_bad(db, CSV_HEADER "taken@example.com," BCRYPT_2B ",AAAA2345,,1577836800\n", 2,
               "exists");
    expect_bad(db, CSV_HEADER "a@x.example.com," BCRYPT_2B ",TAKN2345,,1577836800\n", 2,
               "referral code");
    /* the first bad line is named, whatever comes after it */
    expect_bad(db,
               CSV_HEADER "a@x.example.com," BCRYPT_2B ",AAAA2345,BBBB2345,1577836800\n"
                          "b@x.example.com," BCRYPT_2B ",BBBB2345,CCCC2345,1577836800\n"
                          "c@x.example.com," BCRYPT_2B ",CCCC2345,AAAA2345,1577836800\n",
               2, "cycle");
    expect_bad(db,
               apr_pstrcat(pool, CSV_HEADER, ok,
                           "a@x.example.com," BCRYPT_2B ",AAAA2345,,1577836800\n"
                           "A@X.EXAMPLE.COM," BCRYPT_2B ",FFFF2345,,1577836800\n",
                           NULL),
               4, "repeats line 3");
    expect_bad(db, apr_pstrcat(pool, CSV_HEADER, ok, "\"unclosed," BCRYPT_2B "\n", NULL), 3,
               "quoted");
    expect_bad(
        db,
        apr_pstrcat(pool, CSV_HEADER, "bad," BCRYPT_2B ",AAAA2345,,1\n", ok, "\"x\"y,,,,\n", NULL),
        2, "email");
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_login_authenticate_logout),
        cmocka_unit_test(test_wrong_password_and_unknown_email_answer_alike),
        cmocka_unit_test(test_disabled_or_expired_session_is_refused),
        cmocka_unit_test(test_create_validates_role_and_email),
        cmocka_unit_test(test_ensure_owner_creates_only_when_there_is_none),
        cmocka_unit_test(test_audit_is_refused_outside_a_transaction),
        cmocka_unit_test(test_audit_lists_newest_first_with_cursor_and_filters),
        cmocka_unit_test(test_fts_query_quotes_every_word),
        cmocka_unit_test(test_search_by_email_prefix_referral_code_and_name),
        cmocka_unit_test(test_search_metacharacters_never_error),
        cmocka_unit_test(test_search_rejects_bad_input),
        cmocka_unit_test(test_search_pages_by_keyset_and_filters_status),
        cmocka_unit_test(test_detail_has_upline_emails_and_network_counts),
        cmocka_unit_test(test_suspend_bumps_token_version_with_audit_in_one_transaction),
        cmocka_unit_test(test_import_orders_referrers_and_keeps_bcrypt_hashes),
        cmocka_unit_test(test_import_is_all_or_nothing_and_names_the_first_bad_line),
    };
    unsigned char master[DM_KEY_BYTES];
    int rc;

    apr_initialize();
    if (sodium_init() < 0) {
        return 1;
    }
    apr_pool_create(&pool, NULL);
    if (dm_fx_init("staff") != 0) {
        return 1;
    }
    randombytes_buf(master, sizeof(master));
    dm_keys_derive(master, &keys);
    memset(&svc, 0, sizeof(svc));
    svc.keys = &keys;
    /* the cheapest argon2id: these tests are about behaviour, not cost */
    svc.pw_params.opslimit = crypto_pwhash_OPSLIMIT_MIN;
    svc.pw_params.memlimit = crypto_pwhash_MEMLIMIT_MIN;
    rc = cmocka_run_group_tests_name("staff", tests, NULL, NULL);
    apr_pool_destroy(pool);
    if (dm_fx_done() != 0) {
        rc = 1;
    }
    apr_terminate();
    return rc;
}
