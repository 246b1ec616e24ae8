/*
 * referral.c — the referral tree (see referral.h and ARCHITECTURE §3).
 *
 * Invariants kept here, all in the caller's registration transaction:
 * - users.depth is the referrer's depth + 1 (0 for a root);
 * - user_ancestors holds the member's upline to DM_REFERRAL_LEVELS levels:
 *   the referrer at depth 1, then the referrer's own rows shifted by one;
 * - referral_counts of every member: l<d> is the number of members whose
 *   ancestor at depth d it is, total the size of its whole downline.
 *
 * The levels cost at most 10 row updates; `total` is bumped on every
 * ancestor up to the root, found by one recursive CTE that hops 10 levels
 * at a time through user_ancestors, so a registration under a member at
 * depth D updates D counter rows in one statement. Reads (network, upline,
 * a page of a level) never walk the tree.
 *
 * Bulk loading (dm_referral_bulk_* + dm_referral_rebuild_counts) writes
 * the same depth, ancestor and counts rows in batches, without the
 * per-member counter updates, then recomputes every counter from
 * users.referrer_id in memory in one pass and writes only the rows that
 * differ.
 */
#include "referral/referral.h"

#include <apr_strings.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static const char code_alphabet[] = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";
#define CODE_ALPHABET_LEN (sizeof(code_alphabet) - 1)

/* The largest page a caller may ask for (API.md: ?limit= 1..200). */
#define LIST_LIMIT_MAX 200

/* Four characters per randombytes_uniform call: a number uniform below
 * 31^4 is four independent uniform base-31 digits. Each call can be a
 * getrandom() system call, so this is 2 calls a code instead of 8. */
#define CODE_CHARS_PER_DRAW 4
#define CODE_DRAW_BOUND                                                                            \
    ((uint32_t)(CODE_ALPHABET_LEN * CODE_ALPHABET_LEN * CODE_ALPHABET_LEN * CODE_ALPHABET_LEN))

_Static_assert(DM_REFERRAL_CODE_LEN % CODE_CHARS_PER_DRAW == 0, "whole draws per code");

const char *dm_referral_code_new(apr_pool_t *p)
{
    char *code = apr_palloc(p, DM_REFERRAL_CODE_LEN + 1);

    for (int i = 0; i < DM_REFERRAL_CODE_LEN; i += CODE_CHARS_PER_DRAW) {
        uint32_t v = randombytes_uniform(CODE_DRAW_BOUND);
        for (int k = 0; k < CODE_CHARS_PER_DRAW; k++) {
            code[i + k] = code_alphabet[v % CODE_ALPHABET_LEN];
            v /= CODE_ALPHABET_LEN;
        }
    }
    code[DM_REFERRAL_CODE_LEN] = '\0';
    return code;
}

int dm_referral_code_parse(apr_pool_t *p, const char *code, const char **canon)
{
    char out[DM_REFERRAL_CODE_LEN + 1];

    if (!code || strlen(code) != DM_REFERRAL_CODE_LEN) {
        return 0;
    }
    for (int i = 0; i < DM_REFERRAL_CODE_LEN; i++) {
        char c = code[i];
        if (c >= 'a' && c <= 'z') {
            c = (char)(c - 'a' + 'A');
        }
        if (!memchr(code_alphabet, c, CODE_ALPHABET_LEN)) {
            return 0;
        }
        out[i] = c;
    }
    out[DM_REFERRAL_CODE_LEN] = '\0';
    if (canon) {
        *canon = apr_pstrdup(p, out);
    }
    return 1;
}

/* ---- placing a member ---- */

/* The referrer's depth and its own upline (nearest first) in one read:
 * up[0] is the referrer, up[d] its ancestor at depth d; *n how many. */
static dm_err *read_referrer(dm_db *db, apr_pool_t *p, int64_t referrer_id, int64_t *depth,
                             int64_t up[DM_REFERRAL_LEVELS], int *n)
{
    dm_stmt *st;
    dm_err *e;
    int row = 0, found = 0;

    e = dm_db_prepare(db, p,
                      "SELECT u.depth, a.depth, a.ancestor_id FROM users u "
                      "LEFT JOIN user_ancestors a ON a.user_id = u.id AND a.depth < 10 "
                      "WHERE u.id = ? ORDER BY a.depth",
                      &st);
    if (e) {
        return e;
    }
    up[0] = referrer_id;
    *n = 1;
    dm_stmt_bind_int64(st, 1, referrer_id);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        int64_t d = dm_stmt_is_null(st, 1) ? 0 : dm_stmt_int64(st, 1);
        found = 1;
        *depth = dm_stmt_int64(st, 0) + 1;
        /* dense 1..9 by construction; the check keeps a damaged table
         * from writing past up[] */
        if (d == *n && d < DM_REFERRAL_LEVELS) {
            up[(*n)++] = dm_stmt_int64(st, 2);
        }
    }
    dm_stmt_done(st);
    if (!e && !found) {
        return dm_err_make(p, DM_E_NOT_FOUND, NULL, "referrer %" APR_INT64_T_FMT " does not exist",
                           (apr_int64_t)referrer_id);
    }
    return e;
}

static dm_err *check_placement(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t referrer_id)
{
    if (user_id <= 0 || referrer_id < 0 || referrer_id == user_id) {
        return dm_err_make(p, DM_E_INVALID, "referrer_id",
                           "cannot place member %" APR_INT64_T_FMT " under %" APR_INT64_T_FMT,
                           (apr_int64_t)user_id, (apr_int64_t)referrer_id);
    }
    if (!dm_db_in_transaction(db)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "the referral tree is written only inside a transaction");
    }
    return NULL;
}

/* No RETURNING here (it would make SQLite journal the statement): a member
 * that does not exist fails the foreign key of its counts row instead. */
static dm_err *write_depth(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t depth)
{
    dm_stmt *st;
    dm_err *e;
    int row = 0;

    e = dm_db_prepare(db, p, "UPDATE users SET depth = ? WHERE id = ?", &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, depth);
    dm_stmt_bind_int64(st, 2, user_id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

/* One row per statement: a multi-row INSERT needs a statement journal (it
 * could fail half-way), which costs more than the extra steps. */
static dm_err *write_ancestor(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t depth,
                              int64_t ancestor_id)
{
    dm_stmt *st;
    dm_err *e;
    int row = 0;

    e = dm_db_prepare(
        db, p, "INSERT INTO user_ancestors (user_id, depth, ancestor_id) VALUES (?, ?, ?)", &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_int64(st, 2, depth);
    dm_stmt_bind_int64(st, 3, ancestor_id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

static dm_err *write_zero_counts(dm_db *db, apr_pool_t *p, int64_t user_id)
{
    dm_stmt *st;
    dm_err *e;
    int row = 0;

    e = dm_db_prepare(db, p, "INSERT INTO referral_counts (user_id) VALUES (?)", &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

/* Depth, ancestor rows and a zero counts row: everything a member's own
 * rows need, O(1) whatever the depth. */
static dm_err *place(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t referrer_id)
{
    int64_t up[DM_REFERRAL_LEVELS];
    int64_t depth = 0;
    int n = 0;
    dm_err *e = check_placement(db, p, user_id, referrer_id);

    if (!e && referrer_id > 0) {
        e = read_referrer(db, p, referrer_id, &depth, up, &n);
    }
    if (!e) {
        e = write_depth(db, p, user_id, depth);
    }
    for (int d = 0; !e && d < n; d++) {
        e = write_ancestor(db, p, user_id, d + 1, up[d]);
    }
    return e ? e : write_zero_counts(db, p, user_id);
}

dm_err *dm_referral_attach(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t referrer_id)
{
    dm_stmt *st;
    dm_err *e = place(db, p, user_id, referrer_id);
    int row = 0;

    if (e || referrer_id == 0) {
        return e;
    }
    /* The 10 level counters: one row per ancestor, the level picked by a
     * CASE on the ancestor's depth (no SQL built at run time). */
    e = dm_db_prepare(db, p,
                      "UPDATE referral_counts SET "
                      "l1 = l1 + CASE a.depth WHEN 1 THEN 1 ELSE 0 END, "
                      "l2 = l2 + CASE a.depth WHEN 2 THEN 1 ELSE 0 END, "
                      "l3 = l3 + CASE a.depth WHEN 3 THEN 1 ELSE 0 END, "
                      "l4 = l4 + CASE a.depth WHEN 4 THEN 1 ELSE 0 END, "
                      "l5 = l5 + CASE a.depth WHEN 5 THEN 1 ELSE 0 END, "
                      "l6 = l6 + CASE a.depth WHEN 6 THEN 1 ELSE 0 END, "
                      "l7 = l7 + CASE a.depth WHEN 7 THEN 1 ELSE 0 END, "
                      "l8 = l8 + CASE a.depth WHEN 8 THEN 1 ELSE 0 END, "
                      "l9 = l9 + CASE a.depth WHEN 9 THEN 1 ELSE 0 END, "
                      "l10 = l10 + CASE a.depth WHEN 10 THEN 1 ELSE 0 END "
                      "FROM user_ancestors a "
                      "WHERE a.user_id = ? AND referral_counts.user_id = a.ancestor_id",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    /* `total` on every ancestor up to the root, in one statement. The
     * upline beyond 10 levels is found by hopping 10 levels at a time
     * through user_ancestors (the new member, its ancestor at depth 10,
     * that one's, ...), and each hop's 10 rows are its ancestors: half the
     * reads of walking users.referrer_id one level at a time, on rows a
     * tenth the size. The counters are then updated by primary key. This
     * is the O(depth) part of a registration (~10 ms at depth 10,000). */
    e = dm_db_prepare(db, p,
                      "WITH RECURSIVE hop (id) AS ("
                      "SELECT id FROM users WHERE id = ? "
                      "UNION ALL "
                      "SELECT a.ancestor_id FROM user_ancestors a JOIN hop "
                      "ON a.user_id = hop.id AND a.depth = 10) "
                      "UPDATE referral_counts SET total = total + 1 "
                      "WHERE user_id IN (SELECT a.ancestor_id FROM user_ancestors a "
                      "WHERE a.user_id IN (SELECT id FROM hop))",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

/* ---- reads ---- */

dm_err *dm_referral_network(dm_db *db, apr_pool_t *p, int64_t user_id, dm_network *out)
{
    dm_stmt *st;
    dm_err *e;
    int row = 0;

    memset(out, 0, sizeof(*out));
    e = dm_db_prepare(db, p,
                      "SELECT l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, total "
                      "FROM referral_counts WHERE user_id = ?",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        dm_referral_network_read(st, 0, out);
    }
    dm_stmt_done(st);
    return e;
}

/* NULL (no counts row, through the join) reads as 0. */
void dm_referral_network_read(dm_stmt *st, int col, dm_network *out)
{
    for (int i = 0; i < DM_REFERRAL_LEVELS; i++) {
        out->levels[i] = dm_stmt_int64(st, col + i);
    }
    out->total = dm_stmt_int64(st, col + DM_REFERRAL_LEVELS);
}

void dm_referral_network_write(dm_jbuf *b, const dm_network *n)
{
    dm_jbuf_lit(b, "{\"direct\":");
    dm_jbuf_int(b, n->levels[0]);
    dm_jbuf_lit(b, ",\"total\":");
    dm_jbuf_int(b, n->total);
    dm_jbuf_lit(b, ",\"levels\":[");
    for (int i = 0; i < DM_REFERRAL_LEVELS; i++) {
        if (i) {
            dm_jbuf_lit(b, ",");
        }
        dm_jbuf_int(b, n->levels[i]);
    }
    dm_jbuf_lit(b, "]}");
}

dm_err *dm_referral_upline(dm_db *db, apr_pool_t *p, int64_t user_id,
                           int64_t ids[DM_REFERRAL_LEVELS], int *n)
{
    dm_stmt *st;
    dm_err *e;
    int row = 0;

    *n = 0;
    e = dm_db_prepare(db, p,
                      "SELECT depth, ancestor_id FROM user_ancestors WHERE user_id = ? "
                      "ORDER BY depth",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        int64_t depth = dm_stmt_int64(st, 0);
        /* Rows are 1..10 by the table's CHECK and dense by construction;
         * the bound keeps a damaged table from writing past ids[]. */
        if (depth == *n + 1 && depth <= DM_REFERRAL_LEVELS) {
            ids[*n] = dm_stmt_int64(st, 1);
            (*n)++;
        }
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_referral_list_level(dm_db *db, apr_pool_t *p, int64_t user_id, int level, int64_t cursor,
                               int limit, apr_array_header_t **rows, int64_t *next_cursor)
{
    dm_stmt *st;
    dm_err *e;
    apr_array_header_t *list;
    int row = 0, seen = 0;

    *next_cursor = 0;
    if (level < 1 || level > DM_REFERRAL_LEVELS) {
        return dm_err_make(p, DM_E_INVALID, "level", "level must be 1 to %d", DM_REFERRAL_LEVELS);
    }
    if (limit < 1 || limit > LIST_LIMIT_MAX) {
        return dm_err_make(p, DM_E_INVALID, "limit", "limit must be 1 to %d", LIST_LIMIT_MAX);
    }
    if (cursor < 0) {
        return dm_err_make(p, DM_E_INVALID, "cursor", "invalid cursor");
    }
    list = apr_array_make(p, limit, sizeof(dm_referral_row));
    /* The (ancestor_id, depth, user_id) index read backwards from the
     * cursor; one row more than the page tells whether there is a next. */
    e = dm_db_prepare(db, p,
                      "SELECT u.id, u.email, u.created_at, u.vip_level "
                      "FROM user_ancestors a JOIN users u ON u.id = a.user_id "
                      "WHERE a.ancestor_id = ? AND a.depth = ? AND a.user_id < ? "
                      "ORDER BY a.user_id DESC LIMIT ?",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_int64(st, 2, level);
    dm_stmt_bind_int64(st, 3, cursor > 0 ? cursor : INT64_MAX);
    dm_stmt_bind_int64(st, 4, (int64_t)limit + 1);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        dm_referral_row *r;
        if (++seen > limit) {
            *next_cursor = APR_ARRAY_IDX(list, list->nelts - 1, dm_referral_row).id;
            break;
        }
        r = apr_array_push(list);
        r->id = dm_stmt_int64(st, 0);
        r->masked_email = dm_mask_email(p, dm_stmt_text(st, 1, NULL));
        r->joined_at = dm_stmt_int64(st, 2);
        r->vip_level = (int)dm_stmt_int64(st, 3);
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    *rows = list;
    return NULL;
}

/* Bytes of the UTF-8 sequence starting at s (at most `avail`). */
static size_t utf8_seq_len(const char *s, size_t avail)
{
    unsigned char c = (unsigned char)s[0];
    size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    return n < avail ? n : avail;
}

/* The first character of the local part, "***", then "@domain". A local
 * part of one character is shown as "***" alone, so no mask ever reveals a
 * whole local part; the fixed "***" hides its length. Split at the last
 * '@' (a quoted local part may hold one). */
const char *dm_mask_email(apr_pool_t *p, const char *email)
{
    const char *at = email ? strrchr(email, '@') : NULL;
    size_t local, first;

    if (!at) {
        return "***";
    }
    local = (size_t)(at - email);
    first = local ? utf8_seq_len(email, local) : 0;
    if (first == 0 || first == local) {
        return apr_pstrcat(p, "***", at, NULL);
    }
    return apr_pstrcat(p, apr_pstrndup(p, email, first), "***", at, NULL);
}

/* ---- bulk loading ---- */

/* Members buffered before their rows are written. Written as a batch, the
 * ancestor rows can go in (ancestor_id, depth, user_id) order: inserts
 * into user_ancestors_down and the foreign-key lookups of ancestor_id then
 * walk their b-trees in order instead of at random. */
#define BULK_FLUSH 10000

/* A member added to this bulk, remembered so that members placed under it
 * later read no rows: its upline is its referrer's (`parent`, an index in
 * `known`), up to a member whose referrer was read from the database,
 * whose upline is kept whole (`ext`, an index in `ext_up`). */
typedef struct known_member {
    int64_t id;
    int64_t depth;
    int32_t parent; /* -1: a root, or a referrer that was not added here */
    int32_t ext;    /* -1: none */
} known_member;

typedef struct upline {
    int64_t up[DM_REFERRAL_LEVELS];
    int n;
} upline;

typedef struct bulk_member {
    int64_t id;
    int64_t depth;
    upline u;
} bulk_member;

typedef struct ancestor_row {
    int64_t ancestor_id;
    int64_t depth;
    int64_t user_id;
} ancestor_row;

struct dm_referral_bulk {
    dm_db *db;
    apr_pool_t *pool;           /* errors, and everything below */
    apr_array_header_t *known;  /* known_member, ids ascending */
    apr_array_header_t *ext_up; /* upline */
    bulk_member *members;       /* the buffer: BULK_FLUSH */
    ancestor_row *rows;         /* BULK_FLUSH * DM_REFERRAL_LEVELS */
    int nmembers;
};

dm_err *dm_referral_bulk_begin(dm_db *db, apr_pool_t *p, dm_referral_bulk **out)
{
    dm_referral_bulk *b = apr_pcalloc(p, sizeof(*b));

    b->db = db;
    b->pool = p;
    b->known = apr_array_make(p, 4096, sizeof(known_member));
    b->ext_up = apr_array_make(p, 64, sizeof(upline));
    b->members = apr_palloc(p, sizeof(bulk_member) * BULK_FLUSH);
    b->rows = apr_palloc(p, sizeof(ancestor_row) * BULK_FLUSH * DM_REFERRAL_LEVELS);
    *out = b;
    return NULL;
}

/* Index of `id` in b->known, or -1. */
static int32_t known_index(const dm_referral_bulk *b, int64_t id)
{
    const known_member *k = (const known_member *)b->known->elts;
    int32_t lo = 0, hi = b->known->nelts - 1;

    while (lo <= hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (k[mid].id == id) {
            return mid;
        }
        if (k[mid].id < id) {
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return -1;
}

/* The upline of a member placed under known member `r`: r, then r's own
 * upline, which is the rule read_referrer applies to stored rows. */
static void known_upline(const dm_referral_bulk *b, int32_t r, upline *u)
{
    const known_member *k = (const known_member *)b->known->elts;
    int32_t x = r;

    u->up[0] = k[r].id;
    u->n = 1;
    while (u->n < DM_REFERRAL_LEVELS) {
        if (k[x].parent >= 0) {
            x = k[x].parent;
            u->up[u->n++] = k[x].id;
        } else {
            if (k[x].ext >= 0) {
                const upline *e = &APR_ARRAY_IDX(b->ext_up, k[x].ext, upline);
                for (int d = 0; d < e->n && u->n < DM_REFERRAL_LEVELS; d++) {
                    u->up[u->n++] = e->up[d];
                }
            }
            break;
        }
    }
}

dm_err *dm_referral_bulk_add(dm_referral_bulk *b, int64_t user_id, int64_t referrer_id)
{
    bulk_member *m = &b->members[b->nmembers];
    known_member *k;
    int32_t r = -1;
    dm_err *e = check_placement(b->db, b->pool, user_id, referrer_id);

    if (e) {
        return e;
    }
    if (b->known->nelts > 0 &&
        APR_ARRAY_IDX(b->known, b->known->nelts - 1, known_member).id >= user_id) {
        return dm_err_make(b->pool, DM_E_INVALID, "user_id",
                           "bulk members must come in increasing id order");
    }
    if (b->known->nelts >= INT32_MAX - 1) {
        return dm_err_make(b->pool, DM_E_INTERNAL, NULL, "too many members in one bulk");
    }
    m->id = user_id;
    m->depth = 0;
    m->u.n = 0;
    if (referrer_id > 0) {
        r = known_index(b, referrer_id);
        if (r >= 0) {
            m->depth = APR_ARRAY_IDX(b->known, r, known_member).depth + 1;
            known_upline(b, r, &m->u);
        } else {
            e = read_referrer(b->db, b->pool, referrer_id, &m->depth, m->u.up, &m->u.n);
            if (e) {
                return e;
            }
        }
    }
    k = apr_array_push(b->known);
    k->id = user_id;
    k->depth = m->depth;
    k->parent = r;
    k->ext = -1;
    if (referrer_id > 0 && r < 0) {
        k->ext = b->ext_up->nelts;
        *(upline *)apr_array_push(b->ext_up) = m->u;
    }
    if (++b->nmembers == BULK_FLUSH) {
        return dm_referral_bulk_flush(b);
    }
    return NULL;
}

static int ancestor_row_cmp(const void *x, const void *y)
{
    const ancestor_row *a = x, *b = y;

    if (a->ancestor_id != b->ancestor_id) {
        return a->ancestor_id < b->ancestor_id ? -1 : 1;
    }
    if (a->depth != b->depth) {
        return a->depth < b->depth ? -1 : 1;
    }
    return (a->user_id > b->user_id) - (a->user_id < b->user_id);
}

dm_err *dm_referral_bulk_flush(dm_referral_bulk *b)
{
    apr_pool_t *p = b->pool;
    size_t nrows = 0;
    dm_err *e = NULL;

    if (b->nmembers > 0 && !dm_db_in_transaction(b->db)) {
        e = dm_err_make(p, DM_E_INTERNAL, NULL,
                        "the referral tree is written only inside a transaction");
    }
    for (int i = 0; !e && i < b->nmembers; i++) {
        const bulk_member *m = &b->members[i];
        e = write_depth(b->db, p, m->id, m->depth);
        for (int d = 0; d < m->u.n; d++) {
            b->rows[nrows++] = (ancestor_row){m->u.up[d], d + 1, m->id};
        }
    }
    if (!e) {
        qsort(b->rows, nrows, sizeof(ancestor_row), ancestor_row_cmp);
    }
    for (size_t k = 0; !e && k < nrows; k++) {
        e = write_ancestor(b->db, p, b->rows[k].user_id, b->rows[k].depth, b->rows[k].ancestor_id);
    }
    for (int i = 0; !e && i < b->nmembers; i++) {
        e = write_zero_counts(b->db, p, b->members[i].id);
    }
    /* emptied even after an error: the caller rolls its transaction back */
    b->nmembers = 0;
    return e;
}

/* The whole tree in memory, by position in id order: ~70 bytes a member. */
typedef struct tree {
    int32_t n;
    int64_t *id;     /* ascending */
    int32_t *parent; /* position of the referrer, -1 for a root */
    int64_t *total;
    int32_t *levels; /* n * DM_REFERRAL_LEVELS */
} tree;

static int32_t position_of(const tree *t, int64_t id)
{
    int32_t lo = 0, hi = t->n - 1;

    while (lo <= hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (t->id[mid] == id) {
            return mid;
        }
        if (t->id[mid] < id) {
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return -1;
}

static dm_err *load_tree(dm_db *db, apr_pool_t *p, apr_pool_t *mem, tree *t)
{
    dm_stmt *st;
    dm_err *e;
    int64_t count = 0;
    int64_t *ref;
    int found = 0, row = 0;
    int32_t i = 0;

    e = dm_db_query_int64(db, p, "SELECT COUNT(*) FROM users", &count, &found);
    if (e) {
        return e;
    }
    if (count >= INT32_MAX) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "too many members to rebuild in memory");
    }
    t->n = (int32_t)count;
    t->id = apr_palloc(mem, sizeof(int64_t) * (size_t)(t->n + 1));
    t->parent = apr_palloc(mem, sizeof(int32_t) * (size_t)(t->n + 1));
    t->total = apr_pcalloc(mem, sizeof(int64_t) * (size_t)(t->n + 1));
    t->levels = apr_pcalloc(mem, sizeof(int32_t) * (size_t)(t->n + 1) * DM_REFERRAL_LEVELS);
    ref = apr_palloc(mem, sizeof(int64_t) * (size_t)(t->n + 1));

    e = dm_db_prepare(db, p, "SELECT id, referrer_id FROM users ORDER BY id", &st);
    if (e) {
        return e;
    }
    while (!(e = dm_stmt_step(st, p, &row)) && row && i < t->n) {
        t->id[i] = dm_stmt_int64(st, 0);
        ref[i] = dm_stmt_is_null(st, 1) ? 0 : dm_stmt_int64(st, 1);
        i++;
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    t->n = i; /* in a transaction the count cannot change; be safe anyway */
    for (i = 0; i < t->n; i++) {
        t->parent[i] = ref[i] ? position_of(t, ref[i]) : -1;
        if (ref[i] && t->parent[i] < 0) {
            return dm_err_make(p, DM_E_INTERNAL, NULL,
                               "member %" APR_INT64_T_FMT " has a referrer that does not exist",
                               (apr_int64_t)t->id[i]);
        }
    }
    return NULL;
}

/* Levels: each member counts once at each of its 10 nearest ancestors.
 * Totals: members are folded into their referrer leaves first (Kahn's
 * order), so a member's total is complete before it is added upwards;
 * anything left unvisited is a cycle. */
static dm_err *count_tree(apr_pool_t *p, apr_pool_t *mem, tree *t)
{
    int32_t *pending = apr_pcalloc(mem, sizeof(int32_t) * (size_t)(t->n + 1));
    int32_t *queue = apr_palloc(mem, sizeof(int32_t) * (size_t)(t->n + 1));
    int32_t head = 0, tail = 0;

    for (int32_t i = 0; i < t->n; i++) {
        int32_t a = t->parent[i];
        for (int d = 0; d < DM_REFERRAL_LEVELS && a >= 0; d++) {
            t->levels[(size_t)a * DM_REFERRAL_LEVELS + (size_t)d]++;
            a = t->parent[a];
        }
        if (t->parent[i] >= 0) {
            pending[t->parent[i]]++;
        }
    }
    for (int32_t i = 0; i < t->n; i++) {
        if (pending[i] == 0) {
            queue[tail++] = i;
        }
    }
    while (head < tail) {
        int32_t i = queue[head++];
        int32_t up = t->parent[i];
        if (up >= 0) {
            t->total[up] += 1 + t->total[i];
            if (--pending[up] == 0) {
                queue[tail++] = up;
            }
        }
    }
    if (tail != t->n) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "the referral tree has a cycle");
    }
    return NULL;
}

/* Positions whose stored counters differ from the computed ones (or that
 * have no counts row), collected before any write so no statement reads a
 * table while it is being changed. */
static dm_err *find_stale(dm_db *db, apr_pool_t *p, apr_pool_t *mem, const tree *t,
                          apr_array_header_t **stale)
{
    dm_stmt *st;
    dm_err *e;
    unsigned char *seen = apr_pcalloc(mem, (size_t)t->n + 1);
    apr_array_header_t *out = apr_array_make(mem, 1024, sizeof(int32_t));
    int row = 0;

    e = dm_db_prepare(db, p,
                      "SELECT user_id, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, total "
                      "FROM referral_counts ORDER BY user_id",
                      &st);
    if (e) {
        return e;
    }
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        int32_t i = position_of(t, dm_stmt_int64(st, 0));
        int differs;
        if (i < 0) {
            continue;
        }
        seen[i] = 1;
        differs = dm_stmt_int64(st, 1 + DM_REFERRAL_LEVELS) != t->total[i];
        for (int d = 0; d < DM_REFERRAL_LEVELS && !differs; d++) {
            differs = dm_stmt_int64(st, 1 + d) != t->levels[(size_t)i * DM_REFERRAL_LEVELS + d];
        }
        if (differs) {
            *(int32_t *)apr_array_push(out) = i;
        }
    }
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    for (int32_t i = 0; i < t->n; i++) {
        if (!seen[i]) {
            *(int32_t *)apr_array_push(out) = i;
        }
    }
    *stale = out;
    return NULL;
}

static dm_err *write_counts(dm_db *db, apr_pool_t *p, const tree *t,
                            const apr_array_header_t *stale)
{
    dm_stmt *st;
    dm_err *e;
    int row = 0;

    e = dm_db_prepare(db, p,
                      "INSERT INTO referral_counts "
                      "(user_id, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, total) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                      "ON CONFLICT (user_id) DO UPDATE SET "
                      "l1 = excluded.l1, l2 = excluded.l2, l3 = excluded.l3, "
                      "l4 = excluded.l4, l5 = excluded.l5, l6 = excluded.l6, "
                      "l7 = excluded.l7, l8 = excluded.l8, l9 = excluded.l9, "
                      "l10 = excluded.l10, total = excluded.total",
                      &st);
    if (e) {
        return e;
    }
    for (int k = 0; k < stale->nelts && !e; k++) {
        int32_t i = APR_ARRAY_IDX(stale, k, int32_t);
        dm_stmt_bind_int64(st, 1, t->id[i]);
        for (int d = 0; d < DM_REFERRAL_LEVELS; d++) {
            dm_stmt_bind_int64(st, 2 + d, t->levels[(size_t)i * DM_REFERRAL_LEVELS + d]);
        }
        dm_stmt_bind_int64(st, 2 + DM_REFERRAL_LEVELS, t->total[i]);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    return e;
}

dm_err *dm_referral_rebuild_counts(dm_db *db, apr_pool_t *p, int64_t *changed)
{
    apr_pool_t *mem = NULL;
    apr_array_header_t *stale = NULL;
    tree t;
    dm_err *e;

    *changed = 0;
    if (!dm_db_in_transaction(db)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "the referral counters are rebuilt only inside a transaction");
    }
    memset(&t, 0, sizeof(t));
    /* Its own allocator: the arrays (tens of MB for a million members) go
     * back to the system when the rebuild ends, not to p's free list. */
    if (apr_pool_create_unmanaged_ex(&mem, NULL, NULL) != APR_SUCCESS) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "out of memory");
    }
    e = load_tree(db, p, mem, &t);
    if (!e) {
        e = count_tree(p, mem, &t);
    }
    if (!e) {
        e = find_stale(db, p, mem, &t, &stale);
    }
    if (!e) {
        e = write_counts(db, p, &t, stale);
    }
    if (!e) {
        *changed = stale->nelts;
    }
    apr_pool_destroy(mem);
    return e;
}
