/* The referral tree: codes, placement (depth, upline), the level and total
 * counters after hand-checked trees, the level listing, the e-mail mask,
 * and the bulk path writing the same rows as per-member attach. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/db.h"
#include "store/migrate.h"
#include "referral/referral.h"
#include "fixture.h"

static apr_pool_t *pool;
static int serial;

/* A users row as registration writes it (referrer_id included), without
 * the placement. */
static int64_t insert_user(dm_db *db, int64_t referrer, const char *email, int64_t created_at)
{
    dm_stmt *st = NULL;
    int row = 0;
    int64_t id = 0;
    const char *code = dm_referral_code_new(pool);

    if (!email) {
        email = apr_psprintf(pool, "m%d@example.com", ++serial);
    }
    assert_null(dm_db_prepare(db, pool,
                              "INSERT INTO users (email, email_key, password_hash, referral_code, "
                              "referrer_id, terms_version, terms_accepted_at, created_at, "
                              "updated_at) VALUES (?, ?, 'x', ?, ?, 'v1', ?, ?, ?) RETURNING id",
                              &st));
    dm_stmt_bind_text(st, 1, email, strlen(email));
    dm_stmt_bind_text(st, 2, email, strlen(email));
    dm_stmt_bind_text(st, 3, code, strlen(code));
    if (referrer) {
        dm_stmt_bind_int64(st, 4, referrer);
    } else {
        dm_stmt_bind_null(st, 4);
    }
    dm_stmt_bind_int64(st, 5, created_at);
    dm_stmt_bind_int64(st, 6, created_at);
    dm_stmt_bind_int64(st, 7, created_at);
    assert_null(dm_stmt_step(st, pool, &row));
    assert_true(row);
    id = dm_stmt_int64(st, 0);
    dm_stmt_done(st);
    return id;
}

/* Registers one member under `referrer` (0: none), as registration does:
 * the users row and the placement in one transaction. */
static int64_t join_as(dm_db *db, int64_t referrer, const char *email, int64_t created_at)
{
    int64_t id;

    assert_null(dm_db_begin(db, pool));
    id = insert_user(db, referrer, email, created_at);
    assert_null(dm_referral_attach(db, pool, id, referrer));
    assert_null(dm_db_commit(db, pool));
    return id;
}

static int64_t join(dm_db *db, int64_t referrer)
{
    return join_as(db, referrer, NULL, 1700000000);
}

static int64_t query1(dm_db *db, const char *sql, int64_t a)
{
    dm_stmt *st = NULL;
    int row = 0;
    int64_t v = -1;

    assert_null(dm_db_prepare(db, pool, sql, &st));
    dm_stmt_bind_int64(st, 1, a);
    assert_null(dm_stmt_step(st, pool, &row));
    if (row) {
        v = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    return v;
}

static int64_t depth_of(dm_db *db, int64_t id)
{
    return query1(db, "SELECT depth FROM users WHERE id = ?", id);
}

/* Levels l1..l10 then total, as stored. */
static void assert_network(dm_db *db, int64_t id, const int64_t levels[DM_REFERRAL_LEVELS],
                           int64_t total)
{
    dm_network n;

    assert_null(dm_referral_network(db, pool, id, &n));
    for (int i = 0; i < DM_REFERRAL_LEVELS; i++) {
        if (n.levels[i] != levels[i]) {
            fail_msg("member %lld: level %d is %lld, expected %lld", (long long)id, i + 1,
                     (long long)n.levels[i], (long long)levels[i]);
        }
    }
    assert_int_equal(n.total, total);
}

/* ---- codes ---- */

static const char alphabet[] = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";

static void test_codes_use_the_unambiguous_alphabet_and_length(void **state)
{
    int seen[256] = {0};
    (void)state;
    for (int i = 0; i < 2000; i++) {
        const char *c = dm_referral_code_new(pool);
        assert_int_equal(strlen(c), DM_REFERRAL_CODE_LEN);
        for (int k = 0; k < DM_REFERRAL_CODE_LEN; k++) {
            assert_non_null(strchr(alphabet, c[k]));
            seen[(unsigned char)c[k]]++;
        }
    }
    for (const char *a = alphabet; *a; a++) {
        /* 16,000 draws over 31 characters: each expected ~516 times */
        assert_in_range(seen[(unsigned char)*a], 350, 700);
    }
    for (const char *bad = "0O1IL"; *bad; bad++) {
        assert_int_equal(seen[(unsigned char)*bad], 0);
    }
}

static void test_code_parse_accepts_lower_case_and_canonicalises(void **state)
{
    const char *canon = NULL;
    (void)state;
    assert_true(dm_referral_code_parse(pool, "abcd2345", &canon));
    assert_string_equal(canon, "ABCD2345");
    assert_true(dm_referral_code_parse(pool, "XyZ9mNpQ", &canon));
    assert_string_equal(canon, "XYZ9MNPQ");
    assert_true(dm_referral_code_parse(pool, "HJKMNPQR", &canon));
    assert_string_equal(canon, "HJKMNPQR");
}

static void test_code_parse_refuses_bad_characters_and_lengths(void **state)
{
    const char *bad[] = {"ABCD234O",
                         "ABCD2341",
                         "ABCDI234",
                         "ABCDL234",
                         "abcd234o",
                         "ABCD0234",
                         "ABCD 234",
                         "ABCD-234",
                         "ABCDEFG",
                         "ABCDEFGHJ",
                         "",
                         ("ABCD\xc3\x89"
                          "23")};
    const char *canon = "untouched";
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (dm_referral_code_parse(pool, bad[i], &canon)) {
            fail_msg("accepted \"%s\"", bad[i]);
        }
    }
    assert_false(dm_referral_code_parse(pool, NULL, &canon));
    assert_string_equal(canon, "untouched");
}

/* ---- placement ---- */

static void test_member_without_referrer_is_a_root_at_depth_0(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t ids[DM_REFERRAL_LEVELS];
    int n = -1;
    static const int64_t zeros[DM_REFERRAL_LEVELS] = {0};
    (void)state;
    int64_t root = join(db, 0);
    assert_int_equal(depth_of(db, root), 0);
    assert_null(dm_referral_upline(db, pool, root, ids, &n));
    assert_int_equal(n, 0);
    assert_int_equal(query1(db, "SELECT COUNT(*) FROM user_ancestors WHERE user_id = ?", root), 0);
    assert_int_equal(query1(db, "SELECT COUNT(*) FROM referral_counts WHERE user_id = ?", root), 1);
    assert_network(db, root, zeros, 0);
}

static void test_attach_writes_the_upline_nearest_first_up_to_10(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t c[12], ids[DM_REFERRAL_LEVELS];
    int n = 0;
    (void)state;
    c[0] = join(db, 0);
    for (int i = 1; i < 12; i++) {
        c[i] = join(db, c[i - 1]);
        assert_int_equal(depth_of(db, c[i]), i);
    }
    /* the tip (depth 11): exactly 10 ancestors, its referrer first */
    assert_null(dm_referral_upline(db, pool, c[11], ids, &n));
    assert_int_equal(n, 10);
    for (int d = 0; d < 10; d++) {
        assert_int_equal(ids[d], c[10 - d]);
    }
    assert_int_equal(query1(db, "SELECT COUNT(*) FROM user_ancestors WHERE user_id = ?", c[11]),
                     10);
    assert_int_equal(query1(db, "SELECT MAX(depth) FROM user_ancestors WHERE user_id = ?", c[11]),
                     10);
    /* a member at depth 4 has 4 */
    assert_null(dm_referral_upline(db, pool, c[4], ids, &n));
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], c[3]);
    assert_int_equal(ids[3], c[0]);
}

static void test_commission_upline_stops_at_level_10(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t c[25], ids[DM_REFERRAL_LEVELS];
    int n = 0;
    static const int64_t ones[DM_REFERRAL_LEVELS] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    (void)state;
    c[0] = join(db, 0);
    for (int i = 1; i < 25; i++) {
        c[i] = join(db, c[i - 1]);
    }
    assert_null(dm_referral_upline(db, pool, c[24], ids, &n));
    assert_int_equal(n, 10);
    assert_int_equal(ids[9], c[14]); /* level 10 */
    for (int d = 0; d < n; d++) {
        assert_true(ids[d] != c[13]); /* level 11 is not paid */
    }
    /* the 11th ancestor sees the tip in its total only */
    assert_network(db, c[13], ones, 11);
    assert_int_equal(query1(db, "SELECT COUNT(*) FROM user_ancestors WHERE ancestor_id = ?", c[13]),
                     10);
}

static void test_counters_after_a_star(void **state)
{
    dm_db *db = dm_fx_db(pool);
    static const int64_t hub_levels[DM_REFERRAL_LEVELS] = {6};
    static const int64_t zeros[DM_REFERRAL_LEVELS] = {0};
    int64_t leaf = 0;
    (void)state;
    int64_t hub = join(db, 0);
    for (int i = 0; i < 6; i++) {
        leaf = join(db, hub);
        assert_int_equal(depth_of(db, leaf), 1);
    }
    assert_network(db, hub, hub_levels, 6);
    assert_network(db, leaf, zeros, 0);
}

static void test_counters_after_a_chain_count_every_level_and_the_whole_depth(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t c[15];
    static const int64_t all[DM_REFERRAL_LEVELS] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    static const int64_t four[DM_REFERRAL_LEVELS] = {1, 1, 1, 1};
    static const int64_t zeros[DM_REFERRAL_LEVELS] = {0};
    (void)state;
    c[0] = join(db, 0);
    for (int i = 1; i < 15; i++) {
        c[i] = join(db, c[i - 1]);
    }
    assert_network(db, c[0], all, 14); /* 10 levels shown, 14 below */
    assert_network(db, c[4], all, 10);
    assert_network(db, c[10], four, 4);
    assert_network(db, c[14], zeros, 0);
}

/*
 *   R                      S
 *   +- A                   +- S1
 *   |  +- A1
 *   |  |  +- A1a
 *   |  +- A2
 *   +- B
 *      +- B1
 *         +- B1a
 *         +- B1b
 */
static void test_counters_after_a_mixed_tree_are_the_hand_counted_ones(void **state)
{
    dm_db *db = dm_fx_db(pool);
    (void)state;
    int64_t R = join(db, 0), S = join(db, 0);
    int64_t A = join(db, R), B = join(db, R);
    int64_t A1 = join(db, A), S1 = join(db, S), A2 = join(db, A);
    int64_t B1 = join(db, B), A1a = join(db, A1);
    int64_t B1a = join(db, B1), B1b = join(db, B1);
    static const int64_t r[DM_REFERRAL_LEVELS] = {2, 3, 3};
    static const int64_t a[DM_REFERRAL_LEVELS] = {2, 1};
    static const int64_t b[DM_REFERRAL_LEVELS] = {1, 2};
    static const int64_t b1[DM_REFERRAL_LEVELS] = {2};
    static const int64_t one[DM_REFERRAL_LEVELS] = {1};
    static const int64_t zeros[DM_REFERRAL_LEVELS] = {0};

    assert_network(db, R, r, 8);
    assert_network(db, A, a, 3);
    assert_network(db, B, b, 3);
    assert_network(db, B1, b1, 2);
    assert_network(db, A1, one, 1);
    assert_network(db, S, one, 1);
    assert_network(db, A2, zeros, 0);
    assert_network(db, A1a, zeros, 0);
    assert_network(db, B1a, zeros, 0);
    assert_network(db, B1b, zeros, 0);
    assert_network(db, S1, zeros, 0);
    assert_int_equal(depth_of(db, B1b), 3);
    assert_int_equal(depth_of(db, S1), 1);
}

static void test_attach_refuses_unknown_referrer_self_and_no_transaction(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_err *e;
    int64_t id;
    (void)state;
    assert_null(dm_db_begin(db, pool));
    id = insert_user(db, 0, NULL, 1);
    e = dm_referral_attach(db, pool, id, 424242);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_NOT_FOUND);
    e = dm_referral_attach(db, pool, id, id);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    dm_db_rollback(db);

    e = dm_referral_attach(db, pool, 1, 0);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INTERNAL);
}

/* ---- the level listing ---- */

static void test_list_level_pages_newest_first_with_masked_emails(void **state)
{
    dm_db *db = dm_fx_db(pool);
    apr_array_header_t *rows = NULL;
    int64_t next = -1, kids[7];
    const dm_referral_row *r;
    (void)state;
    int64_t root = join(db, 0);
    for (int i = 0; i < 7; i++) {
        kids[i] = join_as(db, root, apr_psprintf(pool, "kid%d@example.com", i), 1700000000 + i);
    }
    int64_t grandchild = join_as(db, kids[2], "g@example.org", 1800000000);

    assert_null(dm_referral_list_level(db, pool, root, 1, 0, 3, &rows, &next));
    assert_int_equal(rows->nelts, 3);
    r = &APR_ARRAY_IDX(rows, 0, dm_referral_row);
    assert_int_equal(r->id, kids[6]);
    assert_string_equal(r->masked_email, "k***@example.com");
    assert_int_equal(r->joined_at, 1700000006);
    assert_int_equal(r->vip_level, 1);
    assert_int_equal(APR_ARRAY_IDX(rows, 2, dm_referral_row).id, kids[4]);
    assert_int_equal(next, kids[4]);

    assert_null(dm_referral_list_level(db, pool, root, 1, next, 3, &rows, &next));
    assert_int_equal(rows->nelts, 3);
    assert_int_equal(APR_ARRAY_IDX(rows, 0, dm_referral_row).id, kids[3]);
    assert_int_equal(APR_ARRAY_IDX(rows, 2, dm_referral_row).id, kids[1]);
    assert_int_equal(next, kids[1]);

    assert_null(dm_referral_list_level(db, pool, root, 1, next, 3, &rows, &next));
    assert_int_equal(rows->nelts, 1);
    assert_int_equal(APR_ARRAY_IDX(rows, 0, dm_referral_row).id, kids[0]);
    assert_int_equal(next, 0);

    /* a page that ends exactly at the last row has no next */
    assert_null(dm_referral_list_level(db, pool, root, 1, 0, 7, &rows, &next));
    assert_int_equal(rows->nelts, 7);
    assert_int_equal(next, 0);

    /* level 2 holds the grandchild only, masked by the one-character rule */
    assert_null(dm_referral_list_level(db, pool, root, 2, 0, 50, &rows, &next));
    assert_int_equal(rows->nelts, 1);
    r = &APR_ARRAY_IDX(rows, 0, dm_referral_row);
    assert_int_equal(r->id, grandchild);
    assert_string_equal(r->masked_email, "***@example.org");
    assert_null(dm_referral_list_level(db, pool, root, 3, 0, 50, &rows, &next));
    assert_int_equal(rows->nelts, 0);
    assert_int_equal(next, 0);
}

static void test_list_level_refuses_levels_outside_1_to_10_and_bad_pages(void **state)
{
    dm_db *db = dm_fx_db(pool);
    apr_array_header_t *rows = NULL;
    int64_t next = 0;
    dm_err *e;
    (void)state;
    int64_t root = join(db, 0);
    for (int level = 1; level <= 10; level++) {
        assert_null(dm_referral_list_level(db, pool, root, level, 0, 50, &rows, &next));
    }
    e = dm_referral_list_level(db, pool, root, 0, 0, 50, &rows, &next);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "level");
    e = dm_referral_list_level(db, pool, root, 11, 0, 50, &rows, &next);
    assert_int_equal(e->code, DM_E_INVALID);
    assert_string_equal(e->field, "level");
    e = dm_referral_list_level(db, pool, root, 1, 0, 0, &rows, &next);
    assert_string_equal(e->field, "limit");
    e = dm_referral_list_level(db, pool, root, 1, 0, 201, &rows, &next);
    assert_string_equal(e->field, "limit");
    e = dm_referral_list_level(db, pool, root, 1, -5, 50, &rows, &next);
    assert_string_equal(e->field, "cursor");
}

static void test_mask_shows_the_first_character_and_the_domain(void **state)
{
    (void)state;
    assert_string_equal(dm_mask_email(pool, "john@example.com"), "j***@example.com");
    assert_string_equal(dm_mask_email(pool, "jo@example.com"), "j***@example.com");
    /* one character: nothing of the local part is shown */
    assert_string_equal(dm_mask_email(pool, "j@example.com"), "***@example.com");
    /* a multi-byte first character is kept whole */
    assert_string_equal(dm_mask_email(pool, "\xc3\xa9ric@example.fr"), "\xc3\xa9***@example.fr");
    assert_string_equal(dm_mask_email(pool, "\xc3\xa9@example.fr"), "***@example.fr");
    /* the last '@' splits (a quoted local part may hold one) */
    assert_string_equal(dm_mask_email(pool, "\"a@b\"@example.com"), "\"***@example.com");
    assert_string_equal(dm_mask_email(pool, "@example.com"), "***@example.com");
    assert_string_equal(dm_mask_email(pool, "not-an-address"), "***");
    assert_string_equal(dm_mask_email(pool, NULL), "***");
}

/* ---- the bulk path ---- */

/* The test tree: 2,000 members, each under a uniformly chosen earlier one
 * or (1 in 50) a new root, with a 30-deep chain grown from member 100 so
 * that totals run past 10 levels. Deterministic. */
#define EQ_MEMBERS 2000

static void tree_shape(int64_t parent_of[EQ_MEMBERS])
{
    uint64_t s = 0x2545F4914F6CDD1DULL;

    for (int i = 0; i < EQ_MEMBERS; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        if (i > 500 && i <= 530) {
            parent_of[i] = i == 501 ? 100 : i - 1;
        } else if (i == 0 || s % 50 == 0) {
            parent_of[i] = -1;
        } else {
            parent_of[i] = (int64_t)(s % (uint64_t)i);
        }
    }
}

static void assert_same_rows(dm_db *x, dm_db *y, const char *sql, int cols, int64_t expect_rows)
{
    dm_stmt *a = NULL, *b = NULL;
    int ra = 0, rb = 0;
    int64_t n = 0;

    assert_null(dm_db_prepare(x, pool, sql, &a));
    assert_null(dm_db_prepare(y, pool, sql, &b));
    for (;;) {
        assert_null(dm_stmt_step(a, pool, &ra));
        assert_null(dm_stmt_step(b, pool, &rb));
        if (ra != rb) {
            fail_msg("%s: row %lld exists on one side only", sql, (long long)n);
        }
        if (!ra) {
            break;
        }
        for (int c = 0; c < cols; c++) {
            if (dm_stmt_int64(a, c) != dm_stmt_int64(b, c)) {
                fail_msg("%s: row %lld column %d: %lld (attach) != %lld (bulk)", sql, (long long)n,
                         c, (long long)dm_stmt_int64(a, c), (long long)dm_stmt_int64(b, c));
            }
        }
        n++;
    }
    dm_stmt_done(a);
    dm_stmt_done(b);
    assert_int_equal(n, expect_rows);
}

static void test_bulk_path_writes_the_same_rows_as_attach(void **state)
{
    static int64_t parent_of[EQ_MEMBERS], id_a[EQ_MEMBERS], id_b[EQ_MEMBERS];
    dm_db *per_row = dm_fx_db(pool), *bulk = dm_fx_db(pool);
    dm_referral_bulk *bk = NULL;
    int64_t changed = -1, ancestors;
    (void)state;
    tree_shape(parent_of);

    for (int i = 0; i < EQ_MEMBERS; i++) {
        id_a[i] = join(per_row, parent_of[i] < 0 ? 0 : id_a[parent_of[i]]);
    }

    /* Two bulks, each over several transactions: the second places
     * members under ones it did not add (their rows are read back). */
    for (int half = 0; half < 2; half++) {
        int from = half * EQ_MEMBERS / 2, to = from + EQ_MEMBERS / 2;
        assert_null(dm_referral_bulk_begin(bulk, pool, &bk));
        for (int i = from; i < to; i++) {
            int64_t ref = parent_of[i] < 0 ? 0 : id_b[parent_of[i]];
            if ((i - from) % 300 == 0) {
                assert_null(dm_db_begin(bulk, pool));
            }
            id_b[i] = insert_user(bulk, ref, NULL, 1700000000);
            assert_null(dm_referral_bulk_add(bk, id_b[i], ref));
            if ((i - from) % 300 == 299 || i == to - 1) {
                assert_null(dm_referral_bulk_flush(bk));
                assert_null(dm_db_commit(bulk, pool));
            }
        }
    }
    assert_null(dm_db_begin(bulk, pool));
    assert_null(dm_referral_rebuild_counts(bulk, pool, &changed));
    assert_null(dm_db_commit(bulk, pool));
    assert_true(changed > 0);

    for (int i = 0; i < EQ_MEMBERS; i++) {
        assert_int_equal(id_a[i], id_b[i]);
    }
    /* the tree is what it should be: a chain of 30 below member 100 */
    assert_int_equal(depth_of(per_row, id_a[530]), depth_of(per_row, id_a[100]) + 30);
    assert_true(query1(per_row, "SELECT total FROM referral_counts WHERE user_id = ?", id_a[100]) >=
                30);
    ancestors = query1(per_row, "SELECT COUNT(*) FROM user_ancestors WHERE user_id > ?", 0);
    assert_true(ancestors > 4 * EQ_MEMBERS);
    assert_same_rows(per_row, bulk,
                     "SELECT id, COALESCE(referrer_id, 0), depth FROM users ORDER BY id", 3,
                     EQ_MEMBERS);
    assert_same_rows(per_row, bulk,
                     "SELECT user_id, depth, ancestor_id FROM user_ancestors "
                     "ORDER BY user_id, depth",
                     3, ancestors);
    assert_same_rows(per_row, bulk,
                     "SELECT user_id, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, total "
                     "FROM referral_counts ORDER BY user_id",
                     12, EQ_MEMBERS);

    /* and the counters attach kept are exactly what a rebuild computes */
    assert_null(dm_db_begin(per_row, pool));
    assert_null(dm_referral_rebuild_counts(per_row, pool, &changed));
    assert_null(dm_db_commit(per_row, pool));
    assert_int_equal(changed, 0);
}

static void test_rebuild_repairs_damaged_counters(void **state)
{
    dm_db *db = dm_fx_db(pool);
    int64_t changed = -1;
    static const int64_t r[DM_REFERRAL_LEVELS] = {2, 1};
    static const int64_t a[DM_REFERRAL_LEVELS] = {1};
    (void)state;
    int64_t R = join(db, 0), A = join(db, R);
    join(db, R);
    join(db, A);
    assert_null(dm_db_exec(db, pool,
                           "UPDATE referral_counts SET l1 = 99, total = 7; "
                           "DELETE FROM referral_counts WHERE user_id = 2"));
    assert_null(dm_db_begin(db, pool));
    assert_null(dm_referral_rebuild_counts(db, pool, &changed));
    assert_null(dm_db_commit(db, pool));
    assert_int_equal(changed, 4);
    assert_network(db, R, r, 3);
    assert_network(db, A, a, 1);
}

static void test_bulk_refuses_ids_out_of_order(void **state)
{
    dm_db *db = dm_fx_db(pool);
    dm_referral_bulk *bk = NULL;
    dm_err *e;
    (void)state;
    assert_null(dm_db_begin(db, pool));
    int64_t a = insert_user(db, 0, NULL, 1), b = insert_user(db, 0, NULL, 1);
    assert_null(dm_referral_bulk_begin(db, pool, &bk));
    assert_null(dm_referral_bulk_add(bk, b, 0));
    e = dm_referral_bulk_add(bk, a, 0);
    assert_non_null(e);
    assert_int_equal(e->code, DM_E_INVALID);
    dm_db_rollback(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes_use_the_unambiguous_alphabet_and_length),
        cmocka_unit_test(test_code_parse_accepts_lower_case_and_canonicalises),
        cmocka_unit_test(test_code_parse_refuses_bad_characters_and_lengths),
        cmocka_unit_test(test_member_without_referrer_is_a_root_at_depth_0),
        cmocka_unit_test(test_attach_writes_the_upline_nearest_first_up_to_10),
        cmocka_unit_test(test_commission_upline_stops_at_level_10),
        cmocka_unit_test(test_counters_after_a_star),
        cmocka_unit_test(test_counters_after_a_chain_count_every_level_and_the_whole_depth),
        cmocka_unit_test(test_counters_after_a_mixed_tree_are_the_hand_counted_ones),
        cmocka_unit_test(test_attach_refuses_unknown_referrer_self_and_no_transaction),
        cmocka_unit_test(test_list_level_pages_newest_first_with_masked_emails),
        cmocka_unit_test(test_list_level_refuses_levels_outside_1_to_10_and_bad_pages),
        cmocka_unit_test(test_mask_shows_the_first_character_and_the_domain),
        cmocka_unit_test(test_bulk_path_writes_the_same_rows_as_attach),
        cmocka_unit_test(test_rebuild_repairs_damaged_counters),
        cmocka_unit_test(test_bulk_refuses_ids_out_of_order),
    };
    int rc;
    apr_initialize();
    apr_pool_create(&pool, NULL);
    if (dm_fx_init("referral") != 0) {
        return 1;
    }
    rc = cmocka_run_group_tests_name("referral", tests, NULL, NULL);
    apr_pool_destroy(pool);
    if (dm_fx_done() != 0) {
        return 1;
    }
    return rc;
}
