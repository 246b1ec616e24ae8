/* A KYC provider's verdicts applied to a member (core/kyc/kyc_events.c):
 * once per (plugin, event id); in the provider's time order, an older
 * event than the newest applied being stale; a later RED after a GREEN
 * revokes the approval; pending only opens a case; needs review never
 * undoes an approval; the provider reference kept for polling; an event
 * for no member of ours recorded and answered. The polling job's own
 * path is covered by tests/integration/test_42_kyc_providers.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "kyc/kyc_events.h"
#include "members/members.h"
#include "store/db.h"
#include "fixture.h"

static apr_pool_t *pool;
static dm_db *db;
static int serial;

static void quiet(void *baton, dm_level level, const char *msg)
{
    (void)baton;
    (void)level;
    (void)msg;
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(apr_pool_create(&pool, NULL), APR_SUCCESS);
    db = dm_fx_db(pool);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool);
    return 0;
}

static int64_t member(void)
{
    dm_stmt *st = NULL;
    int row = 0;
    int64_t id;
    const char *email = apr_psprintf(pool, "k%d@example.com", ++serial);
    const char *code = apr_psprintf(pool, "K%07d", serial);

    assert_null(dm_db_prepare(db, pool,
                              "INSERT INTO users (email, email_key, password_hash, referral_code, "
                              "terms_version, terms_accepted_at, created_at, updated_at) "
                              "VALUES (?, ?, 'x', ?, 'v1', 0, 0, 0) RETURNING id",
                              &st));
    dm_stmt_bind_str(st, 1, email);
    dm_stmt_bind_str(st, 2, email);
    dm_stmt_bind_str(st, 3, code);
    assert_null(dm_stmt_step(st, pool, &row));
    id = dm_stmt_int64(st, 0);
    dm_stmt_done(st);
    return id;
}

static const char *kyc_status(int64_t id)
{
    dm_member m;
    assert_null(dm_member_get(db, pool, id, &m));
    return m.kyc_status;
}

static int64_t count(const char *sql)
{
    int64_t v = -1;
    int found = 0;
    assert_null(dm_db_query_int64(db, pool, sql, &v, &found));
    return v;
}

static dm_str S(const char *s)
{
    dm_str out = {s, strlen(s)};
    return out;
}

/* Applies one webhook event; returns its outcome ("dup:<outcome>" for a
 * duplicate). */
static const char *apply(const char *plugin, const char *event_id, int64_t user,
                         dm_kyc_status status, int64_t at_ms, const char *ref)
{
    dm_kyc_event ev;
    dm_kyc_applied res;
    dm_err *e;

    memset(&ev, 0, sizeof(ev));
    ev.size = sizeof(ev);
    ev.event_id = S(event_id);
    ev.member_id = S(apr_psprintf(pool, "%" APR_INT64_T_FMT, (apr_int64_t)user));
    ev.status = status;
    ev.reason = S("");
    ev.occurred_at_ms = at_ms;
    ev.provider_ref = S(ref ? ref : "");
    e = dm_kyc_event_apply(db, pool, plugin, &ev, "webhook", 1800000000, &res);
    if (e) {
        fail_msg("%s: %s", event_id, e->message);
    }
    return res.duplicate ? apr_pstrcat(pool, "dup:", res.outcome, NULL) : res.outcome;
}

static void test_green_approves_once_and_a_replay_changes_nothing(void **state)
{
    int64_t u = member();
    (void)state;

    assert_string_equal(apply("sumsub", "c1/applicantReviewed", u, DM_KYC_APPROVED, 1000, "app1"),
                        "applied");
    assert_string_equal(kyc_status(u), "approved");
    assert_string_equal(apply("sumsub", "c1/applicantReviewed", u, DM_KYC_APPROVED, 1000, "app1"),
                        "dup:applied");
    assert_int_equal(count("SELECT COUNT(*) FROM kyc_events"), 1);
    assert_int_equal(count("SELECT COUNT(*) FROM audit_log WHERE action = 'user.kyc' AND "
                           "after_json LIKE '%provider:sumsub%'"),
                     1);
    assert_int_equal(count("SELECT COUNT(*) FROM mail_queue WHERE template = 'kyc_approved'"), 1);
}

static void test_a_later_red_after_green_revokes_the_approval(void **state)
{
    int64_t u = member();
    (void)state;

    assert_string_equal(apply("sumsub", "c1/r", u, DM_KYC_APPROVED, 1000, "app1"), "applied");
    assert_string_equal(apply("sumsub", "c2/r", u, DM_KYC_REJECTED, 2000, "app1"), "applied");
    assert_string_equal(kyc_status(u), "rejected");
}

static void test_an_older_event_than_the_newest_applied_is_stale(void **state)
{
    int64_t u = member();
    (void)state;

    /* out of order: the RED (t=2000) arrives before the GREEN (t=1000) */
    assert_string_equal(apply("sumsub", "c2/r", u, DM_KYC_REJECTED, 2000, "app1"), "applied");
    assert_string_equal(apply("sumsub", "c1/r", u, DM_KYC_APPROVED, 1000, "app1"), "stale");
    assert_string_equal(kyc_status(u), "rejected");
    assert_int_equal(count("SELECT newest_ms FROM kyc_provider_state"), 2000);
    assert_int_equal(count("SELECT COUNT(*) FROM kyc_events WHERE outcome = 'stale'"), 1);
}

static void test_pending_opens_a_case_but_never_undoes_a_decision(void **state)
{
    int64_t u = member();
    (void)state;

    assert_string_equal(apply("sumsub", "c1/p", u, DM_KYC_PENDING, 1000, "app1"), "applied");
    assert_string_equal(kyc_status(u), "pending");
    assert_int_equal(count("SELECT pending_since FROM kyc_provider_state"), 1800000000);
    assert_string_equal(apply("sumsub", "c2/r", u, DM_KYC_APPROVED, 2000, "app1"), "applied");
    assert_int_equal(count("SELECT COUNT(*) FROM kyc_provider_state WHERE pending_since IS NULL"),
                     1);
    assert_string_equal(apply("sumsub", "c3/p", u, DM_KYC_PENDING, 3000, "app1"), "recorded");
    assert_string_equal(apply("sumsub", "c4/h", u, DM_KYC_NEEDS_REVIEW, 4000, "app1"), "recorded");
    assert_string_equal(kyc_status(u), "approved");
}

static void test_resubmission_lets_a_new_attempt_open_again(void **state)
{
    int64_t u = member();
    (void)state;

    assert_string_equal(apply("sumsub", "c1/r", u, DM_KYC_RESUBMISSION, 1000, "app1"), "applied");
    assert_string_equal(kyc_status(u), "resubmission");
    assert_int_equal(count("SELECT COUNT(*) FROM mail_queue WHERE template = 'kyc_resubmission'"),
                     1);
    assert_string_equal(apply("sumsub", "c2/p", u, DM_KYC_PENDING, 2000, "app1"), "applied");
    assert_string_equal(kyc_status(u), "pending");
}

static void test_expired_and_suspected(void **state)
{
    int64_t a = member(), b = member();
    (void)state;

    assert_string_equal(apply("idenfy", "s1/I/EXPIRED/final", a, DM_KYC_EXPIRED, 0, "s1"),
                        "applied");
    assert_string_equal(kyc_status(a), "none");
    assert_string_equal(apply("idenfy", "s2/I/SUSPECTED/final", b, DM_KYC_NEEDS_REVIEW, 0, "s2"),
                        "applied");
    assert_string_equal(kyc_status(b), "review");
}

static void test_ignored_and_unknown_members_are_recorded(void **state)
{
    dm_kyc_event ev;
    dm_kyc_applied res;
    (void)state;

    memset(&ev, 0, sizeof(ev));
    ev.size = sizeof(ev);
    ev.event_id = S("x/interim");
    ev.member_id = S("");
    ev.status = DM_KYC_IGNORED;
    assert_null(dm_kyc_event_apply(db, pool, "idenfy", &ev, "webhook", 1800000000, &res));
    assert_string_equal(res.outcome, "ignored");
    ev.event_id = S("y/final");
    ev.member_id = S("999999");
    ev.status = DM_KYC_APPROVED;
    assert_null(dm_kyc_event_apply(db, pool, "idenfy", &ev, "webhook", 1800000000, &res));
    assert_string_equal(res.outcome, "unknown_member");
    assert_int_equal(count("SELECT COUNT(*) FROM kyc_events"), 2);
    ev.event_id = S("z/final");
    ev.member_id = S("12abc");
    assert_int_equal(dm_kyc_event_apply(db, pool, "idenfy", &ev, "webhook", 1800000000, &res)->code,
                     DM_E_INVALID);
}

static void test_start_records_the_reference_for_polling(void **state)
{
    int64_t u = member();
    (void)state;

    assert_null(dm_kyc_provider_started(db, pool, "idenfy", u, "scan-1", 1800000000));
    assert_string_equal(kyc_status(u), "pending");
    assert_int_equal(
        count("SELECT COUNT(*) FROM kyc_provider_state WHERE provider_ref = 'scan-1' AND "
              "plugin = 'idenfy' AND pending_since = 1800000000"),
        1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_green_approves_once_and_a_replay_changes_nothing),
        T(test_a_later_red_after_green_revokes_the_approval),
        T(test_an_older_event_than_the_newest_applied_is_stale),
        T(test_pending_opens_a_case_but_never_undoes_a_decision),
        T(test_resubmission_lets_a_new_attempt_open_again),
        T(test_expired_and_suspected),
        T(test_ignored_and_unknown_members_are_recorded),
        T(test_start_records_the_reference_for_polling),
    };
    int rc;

    apr_initialize();
    dm_log_set_sink(quiet, NULL);
    if (dm_fx_init("kyc-events") != 0) {
        return 1;
    }
    rc = cmocka_run_group_tests_name("kyc_events", tests, NULL, NULL);
    dm_fx_done();
    apr_terminate();
    return rc;
}
