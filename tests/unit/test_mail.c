/* The mail queue: the seeded templates, saving and restoring templates,
 * the back-off schedule, unsubscribe tokens and one-click bodies,
 * preferences and suppressions, delivery reports, and the mail job
 * against the test mailer tests/plugins/mail_recorder.c (sent once,
 * retried with back-off, failed at once, suppressed, marketing headers,
 * a dead sender's message claimed again, a mailer's rate, a long queue
 * drained each message once; its speed is the bench's, scripts/
 * bench_mail.py, not a test's), the commission
 * digest, and the messages other modules queue (welcome, KYC).
 *
 * Needs $DM_TESTPLUGINS (the built tests/plugins). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "store/db.h"
#include "cron/cron.h"
#include "base/json.h"
#include "kyc/kyc_manual.h"
#include "mail/mail.h"
#include "mail/mail_oneclick.h"
#include "mail/mail_prefs.h"
#include "mail/mail_templates.h"
#include "mail/mailq.h"
#include "members/members.h"
#include "store/migrate.h"
#include "plugins/plugin_host.h"
#include "base/template.h"
#include "base/token.h"
#include "fixture.h"

static apr_pool_t *pool;
static int serial;
static dm_plugin_host *host;
static dm_keys keys;
static dm_job_env env;         /* mailer "rec": no rate limit */
static dm_job_env slow_env;    /* mailer "slow": 20 a second, 2 attempts */
static dm_job_env trickle_env; /* mailer "trickle": one every 100 s */
static const char *log_path, *mode_path, *clock_path;
/* 2026-11-25T07:00:00Z */
static const int64_t T0 = 1795590000;

/* ---- helpers ---- */

static void set_clock(int64_t t)
{
    FILE *f = fopen(clock_path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", dm_json_time(pool, t));
    fclose(f);
    assert_int_equal(dm_now(), t);
}

static void set_mode(const char *mode)
{
    FILE *f = fopen(mode_path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", mode);
    fclose(f);
}

static dm_db *fresh(void)
{
    dm_db *db = dm_fx_db(pool);

    /* a clean log and mailer for every test */
    unlink(log_path);
    set_mode("ok");
    set_clock(T0);
    return db;
}

static int64_t count(dm_db *db, const char *sql)
{
    int64_t v = -1;
    int found = 0;
    assert_null(dm_db_query_int64(db, pool, sql, &v, &found));
    return v;
}

static void exec_ok(dm_db *db, const char *sql)
{
    dm_err *e = dm_db_exec(db, pool, sql);
    if (e) {
        fail_msg("%s: %s", sql, e->message);
    }
}

static const char *text_of(dm_db *db, const char *sql)
{
    dm_stmt *st;
    int row = 0;
    const char *out = NULL;
    assert_null(dm_db_prepare(db, pool, sql, &st));
    assert_null(dm_stmt_step(st, pool, &row));
    if (row && !dm_stmt_is_null(st, 0)) {
        out = apr_pstrdup(pool, dm_stmt_text(st, 0, NULL));
    }
    dm_stmt_done(st);
    return out;
}

static int64_t member(dm_db *db, const char *email)
{
    dm_stmt *st = NULL;
    int row = 0;
    int64_t id;
    const char *code = apr_psprintf(pool, "M%07d", ++serial);
    const char *key = dm_mail_address_key(pool, email);

    assert_null(dm_db_prepare(db, pool,
                              "INSERT INTO users (email, email_key, password_hash, referral_code, "
                              "terms_version, terms_accepted_at, created_at, updated_at) VALUES "
                              "(?, ?, 'x', ?, 'v1', 0, 0, 0) RETURNING id",
                              &st));
    dm_stmt_bind_text(st, 1, email, strlen(email));
    dm_stmt_bind_text(st, 2, key, strlen(key));
    dm_stmt_bind_text(st, 3, code, strlen(code));
    assert_null(dm_stmt_step(st, pool, &row));
    id = dm_stmt_int64(st, 0);
    dm_stmt_done(st);
    return id;
}

static void enqueue(dm_db *db, const char *to, const char *tmpl, const char *vars_json,
                    const char *key)
{
    json_t *v = dm_json_own(pool, json_loads(vars_json, 0, NULL));
    assert_non_null(v);
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_mail_enqueue(db, pool, to, tmpl, v, key));
    assert_null(dm_db_commit(db, pool));
}

/* Runs the mail job once, as the runner would (no transaction open). */
static int64_t run_job_with(dm_db *db, const dm_job_env *with)
{
    dm_job_ctx ctx;
    dm_job_result res = DM_JOB_WAITING;

    memset(&ctx, 0, sizeof(ctx));
    ctx.db = db;
    ctx.pool = pool;
    ctx.env = with;
    ctx.job = "mail";
    ctx.period = "test";
    ctx.holder = "test";
    ctx.renewed = (int64_t)time(NULL);
    assert_null(dm_mail_job(&ctx, &res));
    assert_int_equal(res, DM_JOB_OK);
    assert_false(dm_db_in_transaction(db));
    return ctx.items;
}

static int64_t run_mail_job(dm_db *db)
{
    return run_job_with(db, &env);
}

/* The recorder's log: one JSON object per message sent. */
static json_t *sent_log(void)
{
    json_t *arr = dm_json_own(pool, json_array());
    FILE *f = fopen(log_path, "r");
    char *line = NULL;
    size_t cap = 0;

    if (!f) {
        return arr;
    }
    while (getline(&line, &cap, f) > 0) {
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        if (!o) {
            fail_msg("recorder line is not JSON: %s (%s)", line, err.text);
        }
        json_array_append_new(arr, o);
    }
    free(line);
    fclose(f);
    return arr;
}

static const char *sent_field(size_t i, const char *k)
{
    json_t *arr = sent_log();
    assert_true(i < json_array_size(arr));
    return apr_pstrdup(pool, json_string_value(json_object_get(json_array_get(arr, i), k)));
}

static const char *status_of(dm_db *db, int64_t id)
{
    return text_of(db, apr_psprintf(pool, "SELECT status FROM mail_queue WHERE id = %d", (int)id));
}

/* ---- the seeded templates ---- */

static void test_every_template_the_code_queues_is_seeded_and_valid(void **state)
{
    static const char *const keys_used[] = {"email_verification",
                                            "password_reset",
                                            "welcome",
                                            "order_paid",
                                            "contract_started",
                                            "contract_expired",
                                            "commission_digest",
                                            "withdrawal_requested",
                                            "withdrawal_approved",
                                            "withdrawal_rejected",
                                            "kyc_approved",
                                            "kyc_rejected",
                                            "kyc_resubmission",
                                            "staff_alert",
                                            "order_refunded",
                                            "dispute_alert",
                                            "withdrawal_address_added",
                                            "withdrawal_address_confirmed",
                                            "password_changed",
                                            "twofa_enabled",
                                            "twofa_disabled",
                                            "withdrawals_locked",
                                            "erasure_confirm",
                                            "staff_digest",
                                            NULL};
    dm_db *db = fresh();
    apr_array_header_t *defs, *tmpls;
    (void)state;

    for (const char *const *k = keys_used; *k; k++) {
        dm_mail_def d;
        dm_mail_tmpl t;
        if (dm_mail_def_get(db, pool, *k, &d) || dm_mail_tmpl_get(db, pool, *k, "en", &t)) {
            fail_msg("template %s is not seeded", *k);
        }
    }
    assert_null(dm_mail_tmpl_list(db, pool, &defs, &tmpls));
    assert_int_equal(defs->nelts, 24);
    for (int i = 0; i < defs->nelts; i++) {
        const dm_mail_def *d = &APR_ARRAY_IDX(defs, i, dm_mail_def);
        const dm_mail_tmpl *t = &APR_ARRAY_IDX(tmpls, i, dm_mail_tmpl);
        dm_mail_rendered r;
        json_t *vars = json_deep_copy(d->sample);
        dm_err *e = dm_mail_tmpl_validate(pool, d, t->subject, t->text, t->html);
        if (e) {
            fail_msg("seeded template %s does not validate: %s", d->key, e->message);
        }
        json_object_set_new(vars, "site_url", json_string("https://deepmine.example"));
        json_object_set_new(vars, "recipient", json_string("ada@example.com"));
        json_object_set_new(vars, "unsubscribe_url", json_string("https://deepmine.example/u"));
        assert_null(dm_mail_tmpl_render(pool, d, t, vars, &r));
        json_decref(vars);
        assert_true(strlen(r.subject) > 0);
        assert_null(strstr(r.text, "{{"));
        assert_null(strstr(r.html, "{{"));
        /* marketing is exactly the digest, and it links its unsubscribe */
        assert_int_equal(d->marketing, strcmp(d->key, "commission_digest") == 0);
        if (d->marketing) {
            assert_non_null(strstr(r.text, "https://deepmine.example/u"));
        }
    }
}

static void test_saving_checks_and_versions_and_audits(void **state)
{
    dm_db *db = fresh();
    dm_mail_tmpl t, r;
    apr_array_header_t *versions;
    dm_err *e;
    (void)state;

    e = dm_mail_tmpl_save(db, pool, 0, NULL, "welcome", "en", "Hi {{email}}", "Dear {{emial}}",
                          "<p>x</p>", 0, &t);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "text");
    assert_non_null(strstr(e->message, "unknown variable \"emial\" at line 1, column 6 (byte 5)"));
    e = dm_mail_tmpl_save(db, pool, 0, NULL, "welcome", "en", "Hi", "ok", "<p>\n{{#if email}}x</p>",
                          0, &t);
    assert_non_null(e);
    assert_string_equal(e->field, "html");
    assert_non_null(strstr(e->message, "line 2, column 1"));
    e = dm_mail_tmpl_save(db, pool, 0, NULL, "welcome", "en", "Hi\nthere", "ok", "", 0, &t);
    assert_string_equal(e->field, "subject");
    e = dm_mail_tmpl_save(db, pool, 0, NULL, "welcome", "en", "  ", "ok", "", 0, &t);
    assert_string_equal(e->field, "subject");
    e = dm_mail_tmpl_save(db, pool, 0, NULL, "welcome", "en", "Hi", "", "", 0, &t);
    assert_string_equal(e->field, "text");
    e = dm_mail_tmpl_save(db, pool, 0, NULL, "welcome", "en", "Hi", "\xff", "", 0, &t);
    assert_string_equal(e->field, "text");
    e = dm_mail_tmpl_save(db, pool, 0, NULL, "nope", "en", "Hi", "x", "", 0, &t);
    assert_int_equal(e->code, DM_E_NOT_FOUND);
    e = dm_mail_tmpl_save(db, pool, 0, NULL, "welcome", "english", "Hi", "x", "", 0, &t);
    assert_string_equal(e->field, "locale");
    assert_int_equal(count(db, "SELECT version FROM email_templates WHERE key = 'welcome'"), 1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log"), 0);

    assert_null(dm_mail_tmpl_save(db, pool, 0, "1.2.3.4", "welcome", "en", "Welcome {{email}}",
                                  "Hello {{email}}", "<p>Hello {{email}}</p>", 1, &t));
    assert_int_equal(t.version, 2);
    /* someone saving over version 1 now is told */
    e = dm_mail_tmpl_save(db, pool, 0, NULL, "welcome", "en", "x", "x", "", 1, &t);
    assert_int_equal(e->code, DM_E_CONFLICT);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM email_template_versions WHERE key = "
                               "'welcome'"),
                     2);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE action = "
                               "'email_template.update' AND target_id = 'welcome/en'"),
                     1);
    /* restore version 1: a new version 3 with version 1's text */
    assert_null(dm_mail_tmpl_restore(db, pool, 0, NULL, "welcome", "en", 1, &r));
    assert_int_equal(r.version, 3);
    assert_string_equal(text_of(db, "SELECT subject FROM email_templates WHERE key = 'welcome'"),
                        "Welcome to DeepMine");
    assert_null(dm_mail_tmpl_versions(db, pool, "welcome", "en", &versions));
    assert_int_equal(versions->nelts, 3);
    assert_int_equal(APR_ARRAY_IDX(versions, 0, dm_mail_tmpl).restored_from, 1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE action = "
                               "'email_template.restore'"),
                     1);
    e = dm_mail_tmpl_restore(db, pool, 0, NULL, "welcome", "en", 9, &r);
    assert_int_equal(e->code, DM_E_NOT_FOUND);
    /* a new locale starts at version 1 */
    assert_null(
        dm_mail_tmpl_save(db, pool, 0, NULL, "welcome", "pt-BR", "Bem-vindo", "Olá", "", 0, &t));
    assert_int_equal(t.version, 1);
}

/* ---- back-off ---- */

static void test_backoff_doubles_with_jitter_and_a_cap(void **state)
{
    int64_t d = DM_MAIL_BACKOFF_BASE;
    (void)state;

    for (int n = 1; n <= 15; n++) {
        int64_t lo = dm_mail_backoff(n, 0, 0), hi = dm_mail_backoff(n, 0, UINT32_MAX);
        assert_int_equal(lo, d / 2);
        assert_true(hi >= d / 2 && hi <= d);
        for (int k = 0; k < 200; k++) {
            int64_t x = dm_mail_backoff(n, 0, randombytes_random());
            assert_true(x >= d / 2 && x <= d);
        }
        d = d * 2 > DM_MAIL_BACKOFF_MAX ? DM_MAIL_BACKOFF_MAX : d * 2;
    }
    assert_int_equal(dm_mail_backoff(1, 0, 0), 30);
    assert_int_equal(dm_mail_backoff(1, 0, 30), 60);
    assert_int_equal(dm_mail_backoff(3, 0, 0), 120);
    assert_int_equal(dm_mail_backoff(100, 0, 0), DM_MAIL_BACKOFF_MAX / 2);
    assert_int_equal(dm_mail_backoff(100, 0, UINT32_MAX) <= DM_MAIL_BACKOFF_MAX, 1);
}

static void test_backoff_honours_retry_after(void **state)
{
    (void)state;
    /* never sooner than the provider asked, however early the attempt */
    assert_int_equal(dm_mail_backoff(1, 600, 0), 600);
    assert_int_equal(dm_mail_backoff(1, 600, UINT32_MAX), 600);
    assert_int_equal(dm_mail_backoff(1, 86400, 7), 86400);
    /* a short Retry-After does not cut the back-off short */
    assert_true(dm_mail_backoff(4, 2, 0) >= 240);
}

/* ---- unsubscribe ---- */

static void test_unsubscribe_token_round_trip_and_tampering(void **state)
{
    const char *tok = dm_unsub_token(pool, keys.unsubscribe, 4242, "commission_digest");
    int64_t user = 0;
    const char *cat = NULL;
    unsigned char other[DM_KEY_BYTES];
    (void)state;

    assert_null(dm_unsub_verify(pool, keys.unsubscribe, tok, &user, &cat));
    assert_int_equal(user, 4242);
    assert_string_equal(cat, "commission_digest");
    /* opaque: neither the id nor the category in clear */
    assert_null(strstr(tok, "4242"));
    assert_null(strstr(tok, "commission"));
    /* every character changed is refused */
    for (size_t i = 0; i < strlen(tok); i++) {
        char *t = apr_pstrdup(pool, tok);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        dm_err *e = dm_unsub_verify(pool, keys.unsubscribe, t, &user, &cat);
        if (!e) {
            /* the last character may carry unused bits; the decoded bytes
             * must then be the same */
            assert_int_equal(i, strlen(tok) - 1);
            continue;
        }
        assert_int_equal(e->code, DM_E_INVALID);
        assert_string_equal(e->field, "token");
    }
    assert_non_null(
        dm_unsub_verify(pool, keys.unsubscribe, apr_pstrndup(pool, tok, 20), &user, &cat));
    assert_non_null(dm_unsub_verify(pool, keys.unsubscribe, "", &user, &cat));
    assert_non_null(dm_unsub_verify(pool, keys.unsubscribe, "!!!", &user, &cat));
    assert_non_null(dm_unsub_verify(pool, keys.unsubscribe, NULL, &user, &cat));
    memset(other, 7, sizeof(other));
    assert_non_null(dm_unsub_verify(pool, other, tok, &user, &cat));
    /* another member's or category's token is another token */
    assert_string_not_equal(tok, dm_unsub_token(pool, keys.unsubscribe, 4243, "commission_digest"));
    assert_string_not_equal(tok, dm_unsub_token(pool, keys.unsubscribe, 4242, "announcements"));
}

static void test_one_click_bodies(void **state)
{
    static const char mp[] = "--XyZ\r\nContent-Disposition: form-data; "
                             "name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--XyZ--\r\n";
    static const char mp_other[] = "--XyZ\r\nContent-Disposition: form-data; "
                                   "name=\"List-Unsubscribe\"\r\n\r\nTwo-Click\r\n--XyZ--\r\n";
    (void)state;
    assert_true(
        dm_unsub_body_ok("application/x-www-form-urlencoded", "List-Unsubscribe=One-Click", 26));
    assert_true(dm_unsub_body_ok(NULL, "a=b&List-Unsubscribe=One-Click", 30));
    assert_true(dm_unsub_body_ok("application/x-www-form-urlencoded",
                                 "List%2DUnsubscribe=One%2DClick", 30));
    assert_false(dm_unsub_body_ok("application/x-www-form-urlencoded", "", 0));
    assert_false(dm_unsub_body_ok("application/x-www-form-urlencoded", "List-Unsubscribe=yes", 20));
    assert_false(dm_unsub_body_ok("application/x-www-form-urlencoded", "%zz=%", 5));
    assert_true(dm_unsub_body_ok("multipart/form-data; boundary=XyZ", mp, sizeof(mp) - 1));
    assert_true(dm_unsub_body_ok("multipart/form-data; boundary=\"XyZ\"", mp, sizeof(mp) - 1));
    assert_false(
        dm_unsub_body_ok("multipart/form-data; boundary=XyZ", mp_other, sizeof(mp_other) - 1));
    assert_false(dm_unsub_body_ok("multipart/form-data; boundary=Other", mp, sizeof(mp) - 1));
    assert_false(dm_unsub_body_ok("multipart/form-data", mp, sizeof(mp) - 1));
    assert_false(dm_unsub_body_ok("multipart/form-data; boundary=XyZ", "--XyZ", 5));
}

static void test_preferences_default_to_subscribed(void **state)
{
    dm_db *db = fresh();
    int64_t u = member(db, "p@example.com");
    json_t *prefs = NULL, *change;
    dm_err *e;
    int yes = 0;
    (void)state;

    assert_null(dm_mail_prefs_get(db, pool, u, &prefs));
    assert_true(json_is_true(json_object_get(prefs, "commission_digest")));
    json_decref(prefs);
    change = dm_json_own(pool, json_pack("{s:b}", "commission_digest", 0));
    assert_null(dm_mail_prefs_set(db, pool, u, change, &prefs));
    assert_true(json_is_false(json_object_get(prefs, "commission_digest")));
    json_decref(prefs);
    assert_null(dm_mail_subscribed(db, pool, u, "commission_digest", &yes));
    assert_false(yes);
    e = dm_mail_prefs_set(db, pool, u, dm_json_own(pool, json_pack("{s:b}", "spam", 1)), &prefs);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "spam");
    e = dm_mail_prefs_set(
        db, pool, u, dm_json_own(pool, json_pack("{s:s}", "commission_digest", "yes")), &prefs);
    assert_int_equal(e->code, DM_E_INVALID);
    /* the link: idempotent, and harmless for a member who is gone */
    change = dm_json_own(pool, json_pack("{s:b}", "commission_digest", 1));
    assert_null(dm_mail_prefs_set(db, pool, u, change, &prefs));
    json_decref(prefs);
    assert_null(dm_unsub_apply(db, pool, u, "commission_digest"));
    assert_null(dm_unsub_apply(db, pool, u, "commission_digest"));
    assert_null(dm_mail_subscribed(db, pool, u, "commission_digest", &yes));
    assert_false(yes);
    assert_string_equal(text_of(db, "SELECT source FROM email_preferences"), "unsubscribe_link");
    assert_null(dm_unsub_apply(db, pool, 999999, "commission_digest"));
    assert_int_equal(count(db, "SELECT COUNT(*) FROM email_preferences"), 1);
}

static void test_suppression_list(void **state)
{
    dm_db *db = fresh();
    dm_suppression s;
    apr_array_header_t *rows;
    int64_t next = 0;
    int found = 0, added = 0;
    dm_err *e;
    (void)state;

    assert_null(dm_db_begin(db, pool));
    assert_null(
        dm_suppression_add(db, pool, "Bounce@Example.com", "bounced", "rec", "ev1", &added));
    assert_true(added);
    assert_null(
        dm_suppression_add(db, pool, "bounce@example.COM", "complained", "rec", "ev2", &added));
    assert_false(added);
    assert_null(dm_db_commit(db, pool));
    assert_null(dm_suppression_get(db, pool, "BOUNCE@example.com", &s, &found));
    assert_true(found);
    assert_string_equal(s.reason, "bounced");
    assert_null(dm_suppression_list(db, pool, 0, 10, &rows, &next));
    assert_int_equal(rows->nelts, 1);
    e = dm_suppression_remove(db, pool, 0, NULL, "nobody@example.com");
    assert_int_equal(e->code, DM_E_NOT_FOUND);
    assert_null(dm_suppression_remove(db, pool, 0, "10.0.0.1", "bounce@EXAMPLE.com"));
    assert_null(dm_suppression_get(db, pool, "bounce@example.com", &s, &found));
    assert_false(found);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE action = "
                               "'email_suppression.remove' AND ip = '10.0.0.1'"),
                     1);
}

/* ---- delivery reports ---- */

static dm_mail_event event(const char *id, dm_mail_event_type type, const char *message_id,
                           const char *recipient)
{
    dm_mail_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.size = sizeof(ev);
    ev.event_id.ptr = id;
    ev.event_id.len = strlen(id);
    ev.type = type;
    if (message_id) {
        ev.message_id.ptr = message_id;
        ev.message_id.len = strlen(message_id);
    }
    if (recipient) {
        ev.recipient.ptr = recipient;
        ev.recipient.len = strlen(recipient);
    }
    return ev;
}

static void test_bounce_report_suppresses_once_and_replay_changes_nothing(void **state)
{
    dm_db *db = fresh();
    dm_mail_event ev;
    dm_mail_event_result res;
    dm_err *e;
    (void)state;

    enqueue(db, "gone@example.com", "kyc_approved", "{\"email\":\"gone@example.com\"}", "k1");
    assert_int_equal(run_mail_job(db), 1);
    exec_ok(db, "UPDATE mail_queue SET provider_message_id = 'pm-1'");
    /* delivered, then a bounce naming only the message */
    ev = event("e1", DM_MAIL_DELIVERED, "pm-1", NULL);
    assert_null(dm_mail_event_record(db, pool, "rec", &ev, &res));
    assert_false(res.duplicate);
    assert_string_equal(text_of(db, "SELECT delivery FROM mail_queue"), "delivered");
    ev = event("e2", DM_MAIL_BOUNCED, "pm-1", NULL);
    assert_null(dm_mail_event_record(db, pool, "rec", &ev, &res));
    assert_true(res.suppressed);
    assert_int_equal(res.mail_id, 1);
    assert_string_equal(text_of(db, "SELECT email_key FROM email_suppressions"),
                        "gone@example.com");
    assert_string_equal(text_of(db, "SELECT delivery FROM mail_queue"), "bounced");
    /* the same event again: nothing */
    exec_ok(db, "DELETE FROM email_suppressions");
    assert_null(dm_mail_event_record(db, pool, "rec", &ev, &res));
    assert_true(res.duplicate);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM email_suppressions"), 0);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_events"), 2);
    /* the same id from another plugin is another event */
    ev = event("e2", DM_MAIL_COMPLAINED, NULL, "Spam@Example.com");
    assert_null(dm_mail_event_record(db, pool, "other", &ev, &res));
    assert_false(res.duplicate);
    assert_string_equal(text_of(db, "SELECT reason FROM email_suppressions"), "complained");
    /* a bounce about nobody is refused, nothing written */
    ev = event("e3", DM_MAIL_BOUNCED, "unknown", NULL);
    e = dm_mail_event_record(db, pool, "rec", &ev, &res);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_events"), 3);
}

/* ---- the mail job ---- */

static void test_job_sends_once_with_the_key_and_records_it(void **state)
{
    dm_db *db = fresh();
    json_t *log;
    (void)state;

    enqueue(db, "Ada@Example.COM", "email_verification",
            "{\"email\":\"Ada@example.com\",\"url\":\"https://x/verify?token=t\",\"token\":\"t\","
            "\"expires_in_hours\":48}",
            "verify:1");
    assert_int_equal(run_mail_job(db), 1);
    log = sent_log();
    assert_int_equal(json_array_size(log), 1);
    assert_string_equal(sent_field(0, "key"), "verify:1");
    assert_string_equal(sent_field(0, "to"), "Ada@example.com");
    assert_string_equal(sent_field(0, "subject"), "Confirm your e-mail address");
    assert_non_null(strstr(sent_field(0, "text"), "https://x/verify?token=t"));
    assert_non_null(strstr(sent_field(0, "html"), "href=\"https://x/verify?token=t\""));
    assert_string_equal(sent_field(0, "from"), "DeepMine <noreply@deepmine.test>");
    /* transactional: no unsubscribe headers */
    assert_int_equal(json_object_size(json_object_get(json_array_get(log, 0), "headers")), 0);
    assert_string_equal(status_of(db, 1), "sent");
    assert_int_equal(count(db, "SELECT attempts FROM mail_queue"), 1);
    assert_int_equal(count(db, "SELECT sent_at FROM mail_queue"), T0);
    assert_non_null(strstr(text_of(db, "SELECT provider_message_id FROM mail_queue"), "@recorder"));
    assert_null(text_of(db, "SELECT last_error FROM mail_queue"));
    /* nothing is sent twice */
    assert_int_equal(run_mail_job(db), 0);
    assert_int_equal(json_array_size(sent_log()), 1);
    /* the same key queued again is the same message */
    enqueue(db, "ada@example.com", "email_verification", "{}", "verify:1");
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue"), 1);
}

static void test_temporary_failure_backs_off_then_succeeds(void **state)
{
    dm_db *db = fresh();
    int64_t next;
    (void)state;

    enqueue(db, "t@example.com", "kyc_approved", "{\"email\":\"t@example.com\"}", "k");
    set_mode("temporary");
    assert_int_equal(run_mail_job(db), 1);
    assert_string_equal(status_of(db, 1), "queued");
    assert_int_equal(count(db, "SELECT attempts FROM mail_queue"), 1);
    next = count(db, "SELECT next_attempt_at FROM mail_queue");
    assert_true(next >= T0 + 30 && next <= T0 + 60);
    assert_non_null(strstr(text_of(db, "SELECT last_error FROM mail_queue"), "fail for now"));
    /* not due yet: not tried */
    set_mode("ok");
    set_clock(next - 1);
    assert_int_equal(run_mail_job(db), 0);
    assert_int_equal(json_array_size(sent_log()), 0);
    set_clock(next);
    assert_int_equal(run_mail_job(db), 1);
    assert_string_equal(status_of(db, 1), "sent");
    assert_int_equal(count(db, "SELECT attempts FROM mail_queue"), 2);
    assert_int_equal(json_array_size(sent_log()), 1);
}

static void test_temporary_failures_give_up_after_the_maximum(void **state)
{
    dm_db *db = fresh();
    (void)state;

    enqueue(db, "t@example.com", "kyc_approved", "{\"email\":\"t@example.com\"}", "k");
    set_mode("temporary");
    for (int i = 1; i <= DM_MAIL_MAX_ATTEMPTS; i++) {
        set_clock(count(db, "SELECT next_attempt_at FROM mail_queue"));
        assert_int_equal(run_mail_job(db), 1);
        assert_int_equal(count(db, "SELECT attempts FROM mail_queue"), i);
    }
    assert_string_equal(status_of(db, 1), "failed");
    assert_non_null(strstr(text_of(db, "SELECT last_error FROM mail_queue"), "gave up after 10"));
    set_clock(T0 + 30 * 86400);
    assert_int_equal(run_mail_job(db), 0);
}

static void test_retry_after_is_honoured_and_stops_the_run(void **state)
{
    dm_db *db = fresh();
    (void)state;

    for (int i = 0; i < 4; i++) {
        enqueue(db, apr_psprintf(pool, "ra%d@example.com", i), "kyc_approved", "{}",
                apr_psprintf(pool, "ra%d", i));
    }
    /* the provider says 429, retry in 10 minutes: the first message waits
     * that long (not the 30-60 s of its back-off), the rest of the batch
     * goes back unattempted with the same wait */
    set_mode("temporary 600");
    assert_int_equal(run_mail_job(db), 1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE status = 'queued' AND "
                               "next_attempt_at = 1795590600"),
                     4);
    assert_int_equal(count(db, "SELECT SUM(attempts) FROM mail_queue"), 1);
    set_mode("ok");
    set_clock(T0 + 599);
    assert_int_equal(run_mail_job(db), 0);
    set_clock(T0 + 600);
    assert_int_equal(run_mail_job(db), 4);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE status = 'sent'"), 4);
}

static void enqueue_many(dm_db *db, int n, const char *prefix)
{
    assert_null(dm_db_begin(db, pool));
    for (int i = 0; i < n; i++) {
        json_t *v = dm_json_own(pool, json_object());
        assert_null(dm_mail_enqueue(db, pool, apr_psprintf(pool, "%s%d@example.com", prefix, i),
                                    "kyc_approved", v, apr_psprintf(pool, "%s:%d", prefix, i)));
    }
    assert_null(dm_db_commit(db, pool));
}

static void test_the_mailers_rate_and_attempts_settings_are_respected(void **state)
{
    dm_db *db = fresh();
    (void)state;

    /* 20 a second, a bucket of 20: past the bucket the run waits for
     * tokens, it neither drops nor fails a message */
    enqueue_many(db, 50, "rate");
    assert_int_equal(run_job_with(db, &slow_env), 50);
    assert_int_equal(json_array_size(sent_log()), 50);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE status = 'sent' AND "
                               "attempts = 1"),
                     50);
    /* one every 100 s, a bucket of 1: a run sends the one token it has and
     * stops rather than wait past its end (DM_MAIL_RUN_SECONDS); the rest
     * go back unattempted, due at once for the next run */
    db = fresh();
    enqueue_many(db, 5, "trickle");
    assert_int_equal(run_job_with(db, &trickle_env), 1);
    assert_int_equal(json_array_size(sent_log()), 1);
    assert_string_equal(status_of(db, 1), "sent");
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE status = 'queued' AND "
                               "attempts = 0 AND next_attempt_at <= updated_at"),
                     4);
    assert_int_equal(run_job_with(db, &trickle_env), 1);
    assert_string_equal(status_of(db, 2), "sent");
    /* max_attempts 2: the second temporary failure is the last */
    db = fresh();
    enqueue(db, "twice@example.com", "kyc_approved", "{}", "twice");
    set_mode("temporary");
    assert_int_equal(run_job_with(db, &slow_env), 1);
    assert_string_equal(status_of(db, 1), "queued");
    set_clock(count(db, "SELECT next_attempt_at FROM mail_queue"));
    assert_int_equal(run_job_with(db, &slow_env), 1);
    assert_string_equal(status_of(db, 1), "failed");
    assert_non_null(strstr(text_of(db, "SELECT last_error FROM mail_queue"), "gave up after 2"));
}

static void test_permanent_failures_fail_at_once(void **state)
{
    static const char *const modes[] = {"permanent", "invalid", "config", NULL};
    (void)state;

    for (const char *const *m = modes; *m; m++) {
        dm_db *db = fresh();
        enqueue(db, "p@example.com", "kyc_approved", "{\"email\":\"p@example.com\"}", "k");
        set_mode(*m);
        assert_int_equal(run_mail_job(db), 1);
        assert_string_equal(status_of(db, 1), "failed");
        assert_int_equal(count(db, "SELECT attempts FROM mail_queue"), 1);
    }
}

static void test_bad_messages_fail_without_reaching_the_mailer(void **state)
{
    dm_db *db = fresh();
    (void)state;

    enqueue(db, "not an address", "kyc_approved", "{}", "k1");
    enqueue(db, "x@example.com", "no_such_template", "{}", "k2");
    enqueue(db, "x@example.com", "commission_digest", "{\"day\":\"2026-11-24\"}", "k3");
    assert_int_equal(run_mail_job(db), 3);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE status = 'failed'"), 3);
    assert_non_null(strstr(status_of(db, 1), "failed"));
    assert_non_null(
        strstr(text_of(db, "SELECT last_error FROM mail_queue WHERE id = 1"), "not valid"));
    assert_non_null(
        strstr(text_of(db, "SELECT last_error FROM mail_queue WHERE id = 2"), "no_such_template"));
    assert_non_null(
        strstr(text_of(db, "SELECT last_error FROM mail_queue WHERE id = 3"), "members only"));
    assert_int_equal(json_array_size(sent_log()), 0);
}

static void test_subject_injection_never_reaches_the_wire(void **state)
{
    dm_db *db = fresh();
    const char *subject;
    (void)state;

    /* staff_alert's subject carries {{reason}} */
    enqueue(db, "owner@example.com", "staff_alert",
            "{\"reason\":\"x\\r\\nBcc: victim@example.com\",\"detail\":\"d\"}", "k");
    assert_int_equal(run_mail_job(db), 1);
    assert_string_equal(status_of(db, 1), "sent");
    subject = sent_field(0, "subject");
    assert_null(strchr(subject, '\r'));
    assert_null(strchr(subject, '\n'));
    assert_string_equal(subject, "[DeepMine] staff alert: x  Bcc: victim@example.com");
}

static void test_suppressed_address_is_skipped(void **state)
{
    dm_db *db = fresh();
    int added = 0;
    (void)state;

    assert_null(dm_db_begin(db, pool));
    assert_null(dm_suppression_add(db, pool, "gone@example.com", "bounced", "rec", "e", &added));
    assert_null(dm_db_commit(db, pool));
    enqueue(db, "GONE@example.com", "password_reset", "{}", "k");
    assert_int_equal(run_mail_job(db), 1);
    assert_string_equal(status_of(db, 1), "suppressed");
    assert_non_null(strstr(text_of(db, "SELECT last_error FROM mail_queue"), "bounced"));
    assert_int_equal(json_array_size(sent_log()), 0);
}

static void test_marketing_carries_one_click_unsubscribe_and_respects_it(void **state)
{
    dm_db *db = fresh();
    int64_t u = member(db, "digest@example.com");
    json_t *headers;
    const char *lu, *text, *url, *token;
    int64_t who = 0;
    const char *cat = NULL;
    (void)state;

    enqueue(db, "digest@example.com", "commission_digest",
            "{\"day\":\"2026-11-24\",\"count\":2,\"total_micros\":1500000,\"currency\":\"USD\"}",
            "d1");
    assert_int_equal(run_mail_job(db), 1);
    assert_string_equal(status_of(db, 1), "sent");
    headers = json_object_get(json_array_get(sent_log(), 0), "headers");
    lu = json_string_value(json_object_get(headers, "List-Unsubscribe"));
    assert_non_null(lu);
    assert_string_equal(json_string_value(json_object_get(headers, "List-Unsubscribe-Post")),
                        "List-Unsubscribe=One-Click");
    assert_true(strncmp(lu, "<https://deepmine.test/api/email/unsubscribe?token=", 51) == 0);
    assert_non_null(strstr(lu, ">, <mailto:unsubscribe@deepmine.test?subject=unsubscribe%20"));
    text = sent_field(0, "text");
    assert_non_null(strstr(text, "1.50 USD"));
    url = strstr(text, "https://deepmine.test/api/email/unsubscribe?token=");
    assert_non_null(url);
    token = apr_pstrndup(pool, url + 50, strcspn(url + 50, "\n "));
    assert_null(dm_unsub_verify(pool, keys.unsubscribe, token, &who, &cat));
    assert_int_equal(who, u);
    assert_string_equal(cat, "commission_digest");

    /* after the one click, the next digest is skipped */
    assert_null(dm_unsub_apply(db, pool, who, cat));
    enqueue(db, "digest@example.com", "commission_digest", "{\"day\":\"2026-11-25\"}", "d2");
    assert_int_equal(run_mail_job(db), 1);
    assert_string_equal(status_of(db, 2), "suppressed");
    assert_non_null(strstr(text_of(db, "SELECT last_error FROM mail_queue WHERE id = 2"),
                           "unsubscribed from commission_digest"));
    /* transactional messages still go */
    enqueue(db, "digest@example.com", "password_reset", "{}", "r1");
    assert_int_equal(run_mail_job(db), 1);
    assert_string_equal(status_of(db, 3), "sent");
}

static void test_a_dead_senders_message_is_sent_again_with_the_same_key(void **state)
{
    dm_db *db = fresh();
    (void)state;

    enqueue(db, "a@example.com", "kyc_approved", "{}", "kyc:a");
    enqueue(db, "b@example.com", "kyc_approved", "{}", "kyc:b");
    /* a: claimed by a sender that died long ago; b: by one still working */
    exec_ok(db, apr_psprintf(pool,
                             "UPDATE mail_queue SET status = 'sending', attempts = 1, "
                             "updated_at = %d WHERE id = 1",
                             (int)(T0 - DM_MAIL_SENDING_STALE)));
    exec_ok(db, apr_psprintf(pool,
                             "UPDATE mail_queue SET status = 'sending', attempts = 1, "
                             "updated_at = %d WHERE id = 2",
                             (int)(T0 - 60)));
    assert_int_equal(run_mail_job(db), 1);
    assert_string_equal(status_of(db, 1), "sent");
    assert_int_equal(count(db, "SELECT attempts FROM mail_queue WHERE id = 1"), 2);
    assert_string_equal(sent_field(0, "key"), "kyc:a");
    assert_string_equal(status_of(db, 2), "sending");
    /* a message whose every sender died with it is given up, not looped */
    exec_ok(db, apr_psprintf(pool,
                             "UPDATE mail_queue SET status = 'sending', attempts = %d, "
                             "updated_at = %d WHERE id = 2",
                             DM_MAIL_MAX_ATTEMPTS, (int)(T0 - DM_MAIL_SENDING_STALE)));
    assert_int_equal(run_mail_job(db), 1);
    assert_string_equal(status_of(db, 2), "failed");
    assert_non_null(strstr(text_of(db, "SELECT last_error FROM mail_queue WHERE id = 2"),
                           "10 claims without an outcome"));
    assert_int_equal(json_array_size(sent_log()), 1);
}

/* A batch is the DM_MAIL_BATCH first of the due messages and the dead
 * senders' claims together, by next_attempt_at then id, whichever kind
 * each is; a message not yet due waits. */
static void test_a_batch_is_the_first_due_of_both_kinds(void **state)
{
    dm_db *db = fresh();
    json_t *log;
    (void)state;

    for (int i = 0; i < DM_MAIL_BATCH + 1; i++) {
        enqueue(db, apr_psprintf(pool, "o%d@example.com", i), "kyc_approved", "{}",
                apr_psprintf(pool, "o%d", i));
    }
    /* ids 1..33, due one second apart, the oldest first */
    exec_ok(db,
            apr_psprintf(pool, "UPDATE mail_queue SET next_attempt_at = %d + id", (int)(T0 - 100)));
    /* id 34: a dead sender's, due before all of them */
    enqueue(db, "dead@example.com", "kyc_approved", "{}", "dead");
    exec_ok(db, apr_psprintf(pool,
                             "UPDATE mail_queue SET status = 'sending', attempts = 1, "
                             "next_attempt_at = %d, updated_at = %d WHERE id = 34",
                             (int)(T0 - 1000), (int)(T0 - DM_MAIL_SENDING_STALE)));
    /* id 35: due in a minute */
    enqueue(db, "later@example.com", "kyc_approved", "{}", "later");
    exec_ok(db, apr_psprintf(pool, "UPDATE mail_queue SET next_attempt_at = %d WHERE id = 35",
                             (int)(T0 + 60)));
    assert_int_equal(run_mail_job(db), DM_MAIL_BATCH + 2);
    log = sent_log();
    assert_int_equal(json_array_size(log), DM_MAIL_BATCH + 2);
    /* the first batch (sent in id order): o0..o30 and the dead sender's;
     * then o31 and o32 */
    for (int i = 0; i < DM_MAIL_BATCH - 1; i++) {
        assert_string_equal(sent_field((size_t)i, "key"), apr_psprintf(pool, "o%d", i));
    }
    assert_string_equal(sent_field(DM_MAIL_BATCH - 1, "key"), "dead");
    assert_string_equal(sent_field(DM_MAIL_BATCH, "key"),
                        apr_psprintf(pool, "o%d", DM_MAIL_BATCH - 1));
    assert_string_equal(sent_field(DM_MAIL_BATCH + 1, "key"),
                        apr_psprintf(pool, "o%d", DM_MAIL_BATCH));
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE status = 'sent'"),
                     DM_MAIL_BATCH + 2);
    assert_string_equal(status_of(db, 35), "queued");
}

static void test_a_stop_gives_claimed_messages_back(void **state)
{
    dm_db *db = fresh();
    (void)state;

    for (int i = 0; i < 5; i++) {
        enqueue(db, apr_psprintf(pool, "s%d@example.com", i), "kyc_approved", "{}",
                apr_psprintf(pool, "s%d", i));
    }
    /* three temporary failures in a row stop the run; the rest go back
     * unattempted */
    set_mode("temporary");
    assert_int_equal(run_mail_job(db), 3);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE status = 'queued' AND "
                               "attempts = 1"),
                     3);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE status = 'queued' AND "
                               "attempts = 0 AND next_attempt_at = updated_at"),
                     2);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE status = 'sending'"), 0);
}

/* How fast is the bench's question (scripts/bench_mail.py, `make bench`,
 * target 50 messages a second); this test's is that a long queue drains
 * with every message sent exactly once. */
static void test_a_long_queue_drains_with_each_message_sent_once(void **state)
{
    dm_db *db = fresh();
    int64_t n = 0;
    (void)state;

    assert_null(dm_db_begin(db, pool));
    for (int i = 0; i < 600; i++) {
        json_t *v = dm_json_own(pool, json_pack("{s:s}", "email", "x@example.com"));
        assert_null(dm_mail_enqueue(db, pool, apr_psprintf(pool, "bulk%d@example.com", i),
                                    "kyc_approved", v, apr_psprintf(pool, "bulk:%d", i)));
    }
    assert_null(dm_db_commit(db, pool));
    while (count(db, "SELECT COUNT(*) FROM mail_queue WHERE status = 'queued'") > 0) {
        n += run_mail_job(db);
    }
    assert_int_equal(n, 600);
    assert_int_equal(json_array_size(sent_log()), 600);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE status = 'sent' AND "
                               "attempts = 1 AND provider_message_id IS NOT NULL"),
                     600);
    {
        /* each recipient once in what the mailer got */
        json_t *log = sent_log(), *m;
        apr_hash_t *seen = apr_hash_make(pool);
        size_t i;
        json_array_foreach(log, i, m)
        {
            const char *to = json_string_value(json_object_get(m, "to"));
            assert_non_null(to);
            assert_null(apr_hash_get(seen, to, APR_HASH_KEY_STRING));
            apr_hash_set(seen, to, APR_HASH_KEY_STRING, "");
        }
        assert_int_equal(apr_hash_count(seen), 600);
    }
}

static void test_job_table_has_the_mail_jobs(void **state)
{
    const dm_job_def *mail = dm_job_find("mail", 0), *digest = dm_job_find("commission-digest", 0);
    dm_db *db = fresh();
    dm_job_outcome outcome;
    dm_job_run_opts opts = {.holder = dm_job_holder(pool)};
    (void)state;

    assert_non_null(mail);
    assert_int_equal(mail->sched, DM_SCHED_INTERVAL);
    assert_int_equal(mail->interval_s, 5);
    assert_true(mail->quiet);
    assert_true(mail->timeout_s > DM_MAIL_RUN_SECONDS);
    assert_non_null(digest);
    assert_int_equal(digest->interval_s, 86400);
    /* through the runner, as the daemon runs it */
    enqueue(db, "r@example.com", "kyc_approved", "{}", "k");
    assert_null(dm_job_run(db, pool, &env, mail, T0, &opts, &outcome));
    assert_int_equal(outcome, DM_JOB_RAN_OK);
    assert_string_equal(status_of(db, 1), "sent");
}

/* ---- the digest ---- */

static void commission(dm_db *db, int64_t to, int64_t amount, int64_t at, const char *status)
{
    static int order;
    exec_ok(db, apr_psprintf(pool,
                             "INSERT INTO commissions (order_id, depth, beneficiary_id, "
                             "source_user_id, amount_micros, currency, rate_bp, vip_level, status, "
                             "release_at, transfer_id, created_at) VALUES (%d, 1, %d, %d, %d, "
                             "'USD', 100, 1, '%s', 0, 1, %d)",
                             ++order, (int)to, (int)to, (int)amount, status, (int)at));
}

static void test_commission_digest_sums_each_members_day(void **state)
{
    dm_db *db = fresh();
    int64_t a = member(db, "a@example.com"), b = member(db, "b@example.com");
    int64_t c = member(db, "c@example.com"), d = member(db, "d@example.com");
    int64_t day = dm_day_floor(T0); /* the digest runs for the day before */
    dm_job_ctx ctx;
    dm_job_result res;
    json_t *v;
    (void)state;

    exec_ok(db, "PRAGMA foreign_keys = OFF");
    commission(db, a, 1000000, day - 86400, "held");
    commission(db, a, 2500000, day - 1, "available");
    commission(db, a, 9000000, day - 10, "clawed_back");
    commission(db, a, 7000000, day, "held"); /* today: tomorrow's digest */
    commission(db, b, 500000, day - 3600, "held");
    commission(db, c, 500000, day - 86401, "held"); /* the day before */
    commission(db, d, 800000, day - 7200, "held");
    exec_ok(db, apr_psprintf(pool,
                             "INSERT INTO email_preferences VALUES (%d, 'commission_digest', 0, "
                             "'member', 0)",
                             (int)d));
    memset(&ctx, 0, sizeof(ctx));
    ctx.db = db;
    ctx.pool = pool;
    ctx.env = &env;
    ctx.period_start = day;
    ctx.renewed = (int64_t)time(NULL);
    assert_null(dm_mail_job_commission_digest(&ctx, &res));
    assert_int_equal(ctx.items, 2);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue"), 2);
    v = dm_json_own(pool,
                    json_loads(text_of(db, "SELECT variables FROM mail_queue WHERE "
                                           "idempotency_key = 'commission_digest:1:2026-11-24'"),
                               0, NULL));
    assert_non_null(v);
    assert_int_equal(json_integer_value(json_object_get(v, "count")), 2);
    assert_int_equal(json_integer_value(json_object_get(v, "total_micros")), 3500000);
    assert_string_equal(json_string_value(json_object_get(v, "day")), "2026-11-24");
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE recipient = "
                               "'b@example.com'"),
                     1);
    /* a second run of the same day queues nothing new */
    assert_null(dm_mail_job_commission_digest(&ctx, &res));
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue"), 2);
    /* and the digests go out with their unsubscribe link */
    assert_int_equal(run_mail_job(db), 2);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE status = 'sent'"), 2);
}

/* ---- staff: resend and statistics ---- */

static void test_resend_puts_a_failed_message_back_and_is_audited(void **state)
{
    dm_db *db = fresh();
    dm_mail_row row;
    dm_mail_stats stats;
    dm_err *e;
    (void)state;

    enqueue(db, "r@example.com", "kyc_approved", "{}", "k1");
    enqueue(db, "s@example.com", "kyc_approved", "{}", "k2");
    set_mode("permanent");
    assert_int_equal(run_mail_job(db), 2);
    set_mode("ok");
    exec_ok(db, "UPDATE mail_queue SET status = 'sent' WHERE id = 2");
    e = dm_mail_resend(db, pool, 0, NULL, 2, &row);
    assert_int_equal(e->code, DM_E_CONFLICT);
    e = dm_mail_resend(db, pool, 0, NULL, 99, &row);
    assert_int_equal(e->code, DM_E_NOT_FOUND);
    assert_null(dm_mail_resend(db, pool, 0, "10.1.1.1", 1, &row));
    assert_string_equal(row.status, "queued");
    assert_int_equal(row.attempts, 0);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'email.resend' "
                               "AND target_id = '1'"),
                     1);
    assert_int_equal(run_mail_job(db), 1);
    assert_string_equal(status_of(db, 1), "sent");
    assert_string_equal(sent_field(0, "key"), "k1");
    assert_null(dm_mail_stats_get(db, pool, 86400, &stats));
    assert_int_equal(stats.sent, 1);
    assert_int_equal(stats.failed, 0);
    assert_int_equal(stats.queued, 0);
}

static void test_list_filters_and_hides_variables(void **state)
{
    dm_db *db = fresh();
    apr_array_header_t *rows;
    int64_t next = 0;
    json_t *o;
    dm_err *e;
    (void)state;

    for (int i = 0; i < 5; i++) {
        enqueue(db, i % 2 ? "odd@example.com" : "even@example.com", "password_reset",
                "{\"token\":\"SECRET\"}", apr_psprintf(pool, "k%d", i));
    }
    assert_null(dm_mail_list(db, pool, NULL, NULL, 0, 2, &rows, &next));
    assert_int_equal(rows->nelts, 2);
    assert_int_equal(APR_ARRAY_IDX(rows, 0, dm_mail_row).id, 5);
    assert_int_equal(next, 4);
    assert_null(dm_mail_list(db, pool, NULL, NULL, next, 10, &rows, &next));
    assert_int_equal(rows->nelts, 3);
    assert_int_equal(next, 0);
    assert_null(dm_mail_list(db, pool, "queued", "odd@example.com", 0, 10, &rows, &next));
    assert_int_equal(rows->nelts, 2);
    assert_null(dm_mail_list(db, pool, "sent", NULL, 0, 10, &rows, &next));
    assert_int_equal(rows->nelts, 0);
    e = dm_mail_list(db, pool, "lost", NULL, 0, 10, &rows, &next);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_null(dm_mail_list(db, pool, NULL, NULL, 0, 1, &rows, &next));
    o = dm_json_own(pool, dm_mail_row_json(pool, &APR_ARRAY_IDX(rows, 0, dm_mail_row)));
    assert_null(strstr(dm_json_dump(pool, o, NULL), "SECRET"));
}

/* ---- what other modules queue ---- */

static void test_kyc_decisions_queue_their_messages(void **state)
{
    dm_db *db = fresh();
    int64_t u = member(db, "k@example.com");
    dm_member m;
    (void)state;

    assert_null(dm_kyc_set_status(db, pool, 0, NULL, u, "rejected", &m));
    assert_null(dm_kyc_set_status(db, pool, 0, NULL, u, "rejected", &m)); /* no change */
    assert_null(dm_kyc_set_status(db, pool, 0, NULL, u, "approved", &m));
    assert_null(dm_kyc_set_status(db, pool, 0, NULL, u, "pending", &m));
    assert_null(dm_kyc_set_status(db, pool, 0, NULL, u, "approved", &m));
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE template = 'kyc_rejected'"),
                     1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE template = 'kyc_approved'"),
                     2);
    assert_int_equal(run_mail_job(db), 3);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE status = 'sent'"), 3);
}

static void test_verifying_the_address_queues_one_welcome(void **state)
{
    dm_db *db = fresh();
    int64_t u = member(db, "w@example.com");
    dm_services svc;
    json_t *v;
    (void)state;

    memset(&svc, 0, sizeof(svc));
    svc.keys = &keys;
    /* two verification links (a resend), both used */
    for (int i = 0; i < 2; i++) {
        const char *token = apr_psprintf(pool, "token-%d", i);
        exec_ok(db, apr_psprintf(pool,
                                 "INSERT INTO email_tokens (user_id, purpose, token_hash, "
                                 "created_at, expires_at) VALUES (%d, 'verify', '%s', %d, %d)",
                                 (int)u, dm_token_hash(pool, keys.token_hash, token), (int)T0,
                                 (int)(T0 + 3600)));
        assert_null(dm_member_verify_email(db, pool, &svc, token));
    }
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE template = 'welcome'"), 1);
    v = dm_json_own(pool, json_loads(text_of(db, "SELECT variables FROM mail_queue"), 0, NULL));
    assert_string_equal(json_string_value(json_object_get(v, "email")), "w@example.com");
    assert_non_null(json_string_value(json_object_get(v, "referral_code")));
    assert_int_equal(run_mail_job(db), 1);
    assert_non_null(
        strstr(sent_field(0, "text"), json_string_value(json_object_get(v, "referral_code"))));
}

/* A reset token waits in the queue encrypted, reaches the mailer in clear,
 * and is gone from the row once the message is sent; a row whose sealed
 * secrets were tampered with (or moved to another recipient) fails without
 * reaching the mailer. */
static void test_queued_tokens_are_sealed_and_scrubbed_once_sent(void **state)
{
    dm_db *db = fresh();
    json_t *vars = dm_json_own(
        pool, json_pack("{s:s,s:i}", "email", "seal@example.com", "expires_in_hours", 1));
    json_t *secrets = dm_json_own(pool, json_pack("{s:s,s:s}", "token", "SECRET-TOKEN-1", "url",
                                                  "https://x/reset-password?token=SECRET-TOKEN-1"));
    const char *row;
    (void)state;

    assert_null(dm_db_begin(db, pool));
    assert_null(dm_mail_enqueue_sealed(db, pool, keys.mail_seal, "seal@example.com",
                                       "password_reset", vars, secrets, "reset:1"));
    assert_null(dm_mail_enqueue_sealed(db, pool, keys.mail_seal, "seal@example.com",
                                       "password_reset", vars, secrets, "reset:2"));
    assert_null(dm_db_commit(db, pool));
    /* in the database: no token, no link, a sealed value */
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE variables LIKE "
                               "'%SECRET-TOKEN%' OR variables LIKE '%reset-password%'"),
                     0);
    row = text_of(db, "SELECT variables FROM mail_queue WHERE idempotency_key = 'reset:1'");
    assert_non_null(strstr(row, "\"sealed\":\"v1."));
    /* the second row's sealed value moved to another recipient: refused */
    exec_ok(db, "UPDATE mail_queue SET recipient = 'thief@example.com' WHERE idempotency_key = "
                "'reset:2'");
    assert_int_equal(run_mail_job(db), 2);
    assert_int_equal(json_array_size(sent_log()), 1);
    assert_non_null(strstr(sent_field(0, "text"), "https://x/reset-password?token=SECRET-TOKEN-1"));
    assert_string_equal(status_of(db, 1), "sent");
    assert_string_equal(status_of(db, 2), "failed");
    assert_non_null(
        strstr(text_of(db, "SELECT last_error FROM mail_queue WHERE id = 2"), "cannot be opened"));
    /* sent: the sealed secrets are scrubbed, the rest stays */
    row = text_of(db, "SELECT variables FROM mail_queue WHERE id = 1");
    assert_null(strstr(row, "sealed"));
    assert_non_null(strstr(row, "seal@example.com"));
    /* a clear token queued before sealing existed is scrubbed at send too */
    enqueue(db, "old@example.com", "email_verification",
            "{\"email\":\"old@example.com\",\"url\":\"https://x/verify?token=OLD\","
            "\"token\":\"OLD\",\"expires_in_hours\":48}",
            "verify:old");
    assert_int_equal(run_mail_job(db), 1);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM mail_queue WHERE variables GLOB '*token=OLD*' "
                               "OR variables GLOB '*\"OLD\"*'"),
                     0);
    assert_non_null(strstr(text_of(db, "SELECT variables FROM mail_queue WHERE idempotency_key = "
                                       "'verify:old'"),
                           "old@example.com"));
}

static int setup(void **state)
{
    const char *tp = getenv("DM_TESTPLUGINS");
    unsigned char master[DM_KEY_BYTES];
    (void)state;

    if (!tp) {
        fprintf(stderr, "DM_TESTPLUGINS is not set: point it at the built test plugins\n");
        return -1;
    }
    if (dm_fx_init("mail") != 0) {
        return -1;
    }
    log_path = apr_pstrcat(pool, dm_fx_dir(), "/sent.jsonl", NULL);
    mode_path = apr_pstrcat(pool, dm_fx_dir(), "/mode", NULL);
    clock_path = apr_pstrcat(pool, dm_fx_dir(), "/clock", NULL);
    if (dm_clock_use_file(clock_path) != 0) {
        return -1;
    }
    memset(master, 3, sizeof(master));
    dm_keys_derive(master, &keys);
    if (dm_plugins_create(pool, &host) ||
        dm_plugins_declare(host, "mailer", "rec",
                           apr_pstrcat(pool, tp, "/mail_recorder.so", NULL)) ||
        dm_plugins_set(host, "rec", "log", log_path) ||
        dm_plugins_set(host, "rec", "mode", mode_path) ||
        dm_plugins_set(host, "rec", "webhook_secret", "s3cret") ||
        dm_plugins_declare(host, "mailer", "slow",
                           apr_pstrcat(pool, tp, "/mail_recorder.so", NULL)) ||
        dm_plugins_set(host, "slow", "log", log_path) ||
        dm_plugins_set(host, "slow", "mode", mode_path) ||
        dm_plugins_set(host, "slow", "rate_per_second", "20") ||
        dm_plugins_set(host, "slow", "max_attempts", "2") ||
        dm_plugins_declare(host, "mailer", "trickle",
                           apr_pstrcat(pool, tp, "/mail_recorder.so", NULL)) ||
        dm_plugins_set(host, "trickle", "log", log_path) ||
        dm_plugins_set(host, "trickle", "mode", mode_path) ||
        dm_plugins_set(host, "trickle", "rate_per_second", "0.01") || dm_plugins_init_all(host)) {
        fprintf(stderr, "cannot load the recorder plugin from %s\n", tp);
        return -1;
    }
    memset(&env, 0, sizeof(env));
    env.plugins = host;
    env.keys = &keys;
    env.public_url = "https://deepmine.test";
    env.mail_from = "DeepMine <noreply@deepmine.test>";
    env.mailer = "rec";
    slow_env = env;
    slow_env.mailer = "slow";
    trickle_env = env;
    trickle_env.mailer = "trickle";
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dm_clock_use_file(NULL);
    /* the databases stay in /tmp/dm-mail-* for a look after a failure,
     * like the other unit tests' */
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_template_the_code_queues_is_seeded_and_valid),
        cmocka_unit_test(test_saving_checks_and_versions_and_audits),
        cmocka_unit_test(test_backoff_doubles_with_jitter_and_a_cap),
        cmocka_unit_test(test_backoff_honours_retry_after),
        cmocka_unit_test(test_unsubscribe_token_round_trip_and_tampering),
        cmocka_unit_test(test_one_click_bodies),
        cmocka_unit_test(test_preferences_default_to_subscribed),
        cmocka_unit_test(test_suppression_list),
        cmocka_unit_test(test_bounce_report_suppresses_once_and_replay_changes_nothing),
        cmocka_unit_test(test_job_sends_once_with_the_key_and_records_it),
        cmocka_unit_test(test_temporary_failure_backs_off_then_succeeds),
        cmocka_unit_test(test_temporary_failures_give_up_after_the_maximum),
        cmocka_unit_test(test_retry_after_is_honoured_and_stops_the_run),
        cmocka_unit_test(test_the_mailers_rate_and_attempts_settings_are_respected),
        cmocka_unit_test(test_permanent_failures_fail_at_once),
        cmocka_unit_test(test_bad_messages_fail_without_reaching_the_mailer),
        cmocka_unit_test(test_subject_injection_never_reaches_the_wire),
        cmocka_unit_test(test_suppressed_address_is_skipped),
        cmocka_unit_test(test_marketing_carries_one_click_unsubscribe_and_respects_it),
        cmocka_unit_test(test_a_dead_senders_message_is_sent_again_with_the_same_key),
        cmocka_unit_test(test_a_batch_is_the_first_due_of_both_kinds),
        cmocka_unit_test(test_a_stop_gives_claimed_messages_back),
        cmocka_unit_test(test_a_long_queue_drains_with_each_message_sent_once),
        cmocka_unit_test(test_job_table_has_the_mail_jobs),
        cmocka_unit_test(test_commission_digest_sums_each_members_day),
        cmocka_unit_test(test_resend_puts_a_failed_message_back_and_is_audited),
        cmocka_unit_test(test_list_filters_and_hides_variables),
        cmocka_unit_test(test_kyc_decisions_queue_their_messages),
        cmocka_unit_test(test_verifying_the_address_queues_one_welcome),
        cmocka_unit_test(test_queued_tokens_are_sealed_and_scrubbed_once_sent),
    };
    int rc;

    apr_initialize();
    if (sodium_init() < 0) {
        return 1;
    }
    apr_pool_create(&pool, NULL);
    rc = cmocka_run_group_tests(tests, setup, teardown);
    apr_pool_destroy(pool);
    apr_terminate();
    return rc;
}
