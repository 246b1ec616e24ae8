/* The error-report queue (core/base/monitor_queue.h): bounded, in order,
 * dropped and counted when full, put back at the front; the log line's
 * number split off; addresses and secrets scrubbed from the text. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/monitor_queue.h"

static dm_mq_event ev_of(const char *line)
{
    dm_mq_event ev;

    memset(&ev, 0, sizeof(ev));
    dm_mq_set_message(&ev, line);
    return ev;
}

static void test_queue_is_fifo_bounded_and_counts_what_it_drops(void **state)
{
    void *q = malloc(dm_mq_size(3));
    dm_mq_event out;
    dm_mq_stats st;
    (void)state;

    dm_mq_init(q, 3);
    for (int i = 0; i < 5; i++) {
        char line[32];
        dm_mq_event ev;
        snprintf(line, sizeof(line), "DM0000%d: report %d", i, i);
        ev = ev_of(line);
        assert_int_equal(dm_mq_push(q, &ev), i < 3);
    }
    dm_mq_stats_get(q, &st);
    assert_int_equal(st.queued, 3);
    assert_int_equal(st.pushed, 3);
    assert_int_equal(st.dropped, 2);

    assert_true(dm_mq_pop(q, &out));
    assert_string_equal(out.dm_number, "DM00000");
    assert_string_equal(out.message, "report 0");
    /* put back: it is the next one out again, before report 1 */
    assert_true(dm_mq_unpop(q, &out));
    assert_true(dm_mq_pop(q, &out));
    assert_string_equal(out.message, "report 0");
    assert_true(dm_mq_pop(q, &out));
    assert_string_equal(out.message, "report 1");
    assert_true(dm_mq_pop(q, &out));
    assert_string_equal(out.message, "report 2");
    assert_false(dm_mq_pop(q, &out));
    /* wraps around the ring */
    for (int i = 0; i < 3; i++) {
        dm_mq_event ev = ev_of("DM01234: again");
        assert_true(dm_mq_push(q, &ev));
    }
    dm_mq_stats_get(q, &st);
    assert_int_equal(st.queued, 3);
    free(q);
}

static void test_unpop_into_a_full_queue_drops_and_counts(void **state)
{
    void *q = malloc(dm_mq_size(1));
    dm_mq_event a = ev_of("a"), out;
    dm_mq_stats st;
    (void)state;

    dm_mq_init(q, 1);
    assert_true(dm_mq_push(q, &a));
    assert_false(dm_mq_unpop(q, &a));
    dm_mq_stats_get(q, &st);
    assert_int_equal(st.dropped, 1);
    assert_true(dm_mq_pop(q, &out));
    dm_mq_count_sent(q);
    dm_mq_count_failed(q);
    dm_mq_stats_get(q, &st);
    assert_int_equal(st.sent, 1);
    assert_int_equal(st.failed, 1);
    free(q);
}

static void test_the_number_is_split_off_only_when_it_is_one(void **state)
{
    (void)state;
    dm_mq_event a = ev_of("DM00653: plugin x failed");
    assert_string_equal(a.dm_number, "DM00653");
    assert_string_equal(a.message, "plugin x failed");
    dm_mq_event b = ev_of("DM0065: short");
    assert_string_equal(b.dm_number, "");
    assert_string_equal(b.message, "DM0065: short");
    dm_mq_event c = ev_of("no number here");
    assert_string_equal(c.dm_number, "");
    dm_mq_event d = ev_of("");
    assert_string_equal(d.message, "");
    /* a long line is cut to the slot, NUL-terminated */
    char big[2000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    dm_mq_event e = ev_of(big);
    assert_int_equal(strlen(e.message), sizeof(e.message) - 1);
}

static void scrubbed(const char *in, const char *want)
{
    char buf[512];

    snprintf(buf, sizeof(buf), "%s", in);
    dm_mq_scrub(buf);
    assert_string_equal(buf, want);
}

static void test_scrub_blanks_addresses_and_secrets_and_keeps_the_rest(void **state)
{
    (void)state;
    scrubbed("failed for alice@example.com now", "failed for [email] now");
    scrubbed("to <bob.smith+x@mail.example.org>", "to <[email]>");
    scrubbed("a@b.c", "[e]");
    scrubbed("key sk_test_4eC39HqLyjWDarjtT1zdp7dc end", "key [redacted] end");
    scrubbed("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.sig123456", "token [redacted]");
    /* ordinary words, ids, amounts and paths stay */
    scrubbed("order 1234 needs staff attention (underpaid): paid 9.50 of 10.00",
             "order 1234 needs staff attention (underpaid): paid 9.50 of 10.00");
    scrubbed("GET /api/plugins/pages/fail", "GET /api/plugins/pages/fail");
    scrubbed("job accrual-hourly is dead after 5 attempts",
             "job accrual-hourly is dead after 5 attempts");
    scrubbed("user@ alone", "user@ alone");
    scrubbed("", "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_is_fifo_bounded_and_counts_what_it_drops),
        cmocka_unit_test(test_unpop_into_a_full_queue_drops_and_counts),
        cmocka_unit_test(test_the_number_is_split_off_only_when_it_is_one),
        cmocka_unit_test(test_scrub_blanks_addresses_and_secrets_and_keeps_the_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
