/*
 * accrual.c — see accrual.h. One engine serves both yield modes:
 *
 *   a run shares out a window [ws, we) of time — the period's hour, or the
 *   whole day for a pool day payout (distributed in the day's 23:00
 *   period) — over the contracts alive in it, in batches of contracts in
 *   id order. Each batch is one transaction: read the next contracts,
 *   compute each one's credit, post the credits (dm_ledger_post_many),
 *   and for the transfers that were new add to earned_micros and the
 *   day's statement row and pay yield commissions. Between batches
 *   dm_job_keep_going() may stop the run; the next run redoes the period
 *   and the ledger keys skip what was done.
 *
 * Which contracts: those whose paid term meets the window, whatever their
 * status now (docs/decisions.md, "Money goes only where it should"). A
 * contract's life is [started_at, min(expires_at, ended_at)) — a refund
 * sets ended_at, expiry sets it to expires_at — so an hour rerun after
 * its contract expired, or a pool payout recorded late, still reaches it,
 * and a refunded contract is owed nothing after its refund. A run first
 * reads the candidates' ids from the index contracts_term (yield_mode,
 * expires_at) — never a contract whose term was over before the window,
 * however many pile up — and then their rows by id, in id order, batch by
 * batch (see candidates() and fetch_chunk()). Nothing a run can meet
 * moves a contract into or out of an ended window, so a contract refunded
 * or expired while the run goes on is met exactly once.
 *
 * Pool mode needs the total hash-rate-seconds before any share: a first,
 * read-only pass sums them; the second credits. Both meet the same
 * contracts (lives never change inside an ended window), and a re-run
 * recomputes the same shares — a replayed key that named another amount
 * would be refused by the ledger (DM_E_CONFLICT), never silently doubled.
 * The payout's fee and remainder transfers and its reconciliation are
 * written last, in one transaction, once every share is credited.
 */
#include "shop/accrual.h"

#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>
#include <apr_time.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "shop/catalogue.h"
#include "base/clock.h"
#include "base/json.h"
#include "ledger/ledger.h"
#include "base/log.h"
#include "mail/mailq.h"
#include "shop/pool_payouts.h"
#include "referral/yield_commission.h"

#define HOUR 3600
#define DAY 86400
#define EXPIRY_BATCH 500
/* Pool pass 1 only reads (no write lock held): bigger batches. */
#define SUM_BATCH 50000
/* Candidates read by one statement (c.id IN (…)); well under SQLite's
 * limit on bound parameters. */
#define IN_CHUNK 500

/* Rows per statement of add_to_contracts; unused places are NULL rows
 * (they meet no contract and insert nothing). earned_micros: ADD_ROWS per
 * UPDATE … FROM (VALUES …), one text (a join: with 1,024 rows PostgreSQL's
 * planner may scan the whole table, see ledger.c's MOVE_ROWS). The day's
 * statement rows: an INSERT … SELECT with no join, up to DAYS_ROWS per
 * statement, padded to the next power of two from ADD_ROWS up (a few
 * texts): on PostgreSQL each statement is a round trip of its own. */
#define ADD_ROWS 128
#define DAYS_ROWS 1024
#define DAYS_TEXTS 4 /* ADD_ROWS x 2^k up to DAYS_ROWS */

/* WAL pages after which a crediting run checkpoints, between batches:
 * store/db.c's DM_DB_WAL_RESTART_PAGES, so that checkpoint also starts the
 * WAL over. A connection's own threshold, 1,000 pages, made a checkpoint
 * (two fsyncs, and every page copied back) after nearly every batch; the
 * pages the next batches write again (the yield account, the right edges
 * of the indexes, contract_days) are now copied once (docs/decisions.md,
 * "The accrual's checkpoints, ninth round"). */
#define CKPT_PAGES 16384
/* The loop's page cache while it credits, in KiB: a batch of 5,000
 * contracts of the bench's 1,000,000 changes about 1,200 pages (the
 * transfers and their four indexes, the wallets, the contracts, their day
 * rows), more than twice the connection's 512 KiB, so the cache spilled
 * dirty pages into the WAL before the commit (212,000 of 234,000 pages in
 * an hour) and read back pages it had just given up (239,000 misses
 * against 199,000). 8 MiB holds one batch's pages; it is taken only as
 * pages are needed and given back when the run ends (docs/decisions.md,
 * "The accrual, twelfth round"). */
#define BATCH_CACHE_KIB 8192
/* The thread beside the batches (ckpt_side): at most CKPT_PASSES passes,
 * the last one when a pass copied fewer than CKPT_LEFT pages. */
#define CKPT_PASSES 4
#define CKPT_LEFT 1000

/* ---- the arithmetic ---- */

/* floor(D x t / 86400) for t >= 0 and D >= 0, exact in 128 bits:
 * |D| < 2^63 and t < 2^63 give a product below 2^126. */
static __int128 fixed_total(int64_t daily, int64_t t)
{
    return ((__int128)daily * (__int128)t) / DAY;
}

int64_t dm_accrual_fixed_credit(int64_t daily_micros, int64_t started_at, int64_t a, int64_t b)
{
    __int128 d;

    if (daily_micros <= 0 || a < started_at || b <= a) {
        return 0;
    }
    d = fixed_total(daily_micros, b - started_at) - fixed_total(daily_micros, a - started_at);
    /* one span's credit is at most D x span / 86400 + 1: within int64 for
     * any span the caller can pass (an hour, a day) */
    return d > INT64_MAX ? INT64_MAX : (int64_t)d;
}

int64_t dm_accrual_fixed_credit_share(int64_t daily_micros, int64_t started_at, int64_t a,
                                      int64_t b, int64_t num, int64_t den)
{
    int64_t fa, fb;

    if (num >= den || den <= 0) {
        return dm_accrual_fixed_credit(daily_micros, started_at, a, b);
    }
    if (num <= 0 || daily_micros <= 0 || a < started_at || b <= a) {
        return 0;
    }
    /* G(t) = floor(F(t) x num / den), F the full contract's total: both
     * within 128 bits (F < 2^63, num < 2^63), and G telescopes like F. */
    fa = dm_accrual_fixed_credit(daily_micros, started_at, started_at, a);
    fb = dm_accrual_fixed_credit(daily_micros, started_at, started_at, b);
    return (int64_t)(((__int128)fb * num) / den - ((__int128)fa * num) / den);
}

void dm_accrual_pool_split(int64_t payout_micros, int64_t hash_seconds, int64_t total_hash_seconds,
                           int64_t fee_bp, dm_pool_split *out)
{
    memset(out, 0, sizeof(*out));
    if (payout_micros <= 0 || hash_seconds <= 0 || total_hash_seconds <= 0) {
        return;
    }
    if (fee_bp < 0) {
        fee_bp = 0;
    } else if (fee_bp > 10000) {
        fee_bp = 10000;
    }
    out->gross = (int64_t)(((unsigned __int128)payout_micros * (unsigned __int128)hash_seconds) /
                           (unsigned __int128)total_hash_seconds);
    out->fee = (int64_t)(((__int128)out->gross * fee_bp) / 10000);
    out->credit = out->gross - out->fee;
}

/* ---- a run ---- */

typedef struct acc_row {
    int64_t id;
    int64_t user_id;
    int64_t hashrate_ghs;
    int64_t daily;
    int64_t started;
    int64_t end; /* min(expires_at, ended_at) */
    int64_t fee_bp;
    int64_t wallet;   /* 0: the member has no wallet in this currency yet */
    int64_t price;    /* the share it runs on in the window is  */
    int64_t refunded; /* (price - refunded) / price (shop/refunds.h) */
    const char *currency;
    int64_t hs; /* GH/s x seconds inside the window */
    dm_pool_split s;
} acc_row;

typedef struct acc_run {
    dm_job_ctx *ctx;
    const char *mode;             /* DM_YIELD_FIXED | DM_YIELD_POOL */
    int64_t ws, we;               /* the window shared out */
    int64_t hour;                 /* the period: H of yield:<H>:<contract> */
    int64_t earn_through;         /* hours up to it keyed earn:<contract>:<H> (036) */
    int64_t day;                  /* the statement's day */
    const dm_pool_payout *payout; /* pool mode */
    int64_t total_hs;             /* pool mode: pass 1's sum */
    int batch;
    int crediting;           /* 0: pool pass 1 (sums only) */
    apr_array_header_t *ids; /* the candidates (int64_t), in id order */
    const char *chunk_sql;
    const char *add_sql, *days_sql[DAYS_TEXTS]; /* add_chunk's and days_chunk's, made once */
    dm_yc_plan plan;
    apr_hash_t *sys; /* "code/currency" -> int64_t account id */
    /* what the run met (pass 2 / the fixed run) */
    int64_t contracts;
    int64_t hs_sum;
    int64_t gross;
    int64_t fees;
    int64_t credits;     /* all credits of the window, new or replayed */
    int64_t new_credits; /* transfers made by this run */
    int64_t new_micros;
} acc_run;

/* The system account code/currency, cached for the run. Asked once per
 * credit: the key is made on the stack, and copied into the run's pool
 * only when it is new (it was an allocation from the run's pool per credit,
 * 16 MB over an hour of 1,000,000 contracts). */
static dm_err *sys_account(acc_run *r, apr_pool_t *p, const char *code, const char *currency,
                           int64_t *id)
{
    char buf[64];
    size_t lc = strlen(code), lu = strlen(currency);
    const char *k = buf;
    int64_t *cached;
    dm_err *e;

    if (lc + lu + 2 > sizeof(buf)) {
        k = apr_pstrcat(p, code, "/", currency, NULL);
    } else {
        memcpy(buf, code, lc + 1);
        buf[lc] = '/'; /* over code's NUL */
        memcpy(buf + lc + 1, currency, lu + 1);
    }
    cached = apr_hash_get(r->sys, k, (apr_ssize_t)(lc + 1 + lu));
    if (cached) {
        *id = *cached;
        return NULL;
    }
    e = dm_ledger_system_account(r->ctx->db, p, code, currency, id);
    if (!e) {
        cached = apr_pmemdup(r->ctx->pool, id, sizeof(*id));
        apr_hash_set(r->sys, apr_pstrmemdup(r->ctx->pool, k, lc + 1 + lu),
                     (apr_ssize_t)(lc + 1 + lu), cached);
    }
    return e;
}

/* Its one parameter (?1) is the window's end: a contract runs in a window
 * on the share left by the refunds made before the window ended (read only
 * for a contract refunded in part), so a re-run after a later refund
 * computes the same credits. */
#define ROW_SELECT                                                                                 \
    "SELECT c.id, c.user_id, c.hashrate_ghs, c.daily_yield_micros, c.started_at, c.expires_at, "   \
    "c.ended_at, c.fee_bp, c.currency, w.id, c.price_micros, CASE WHEN c.refunded_micros > 0 "     \
    "THEN (SELECT COALESCE(SUM(r.amount_micros), 0) FROM order_refunds r "                         \
    "WHERE r.order_id = c.order_id AND r.created_at < ?) ELSE 0 END FROM contracts c "             \
    "LEFT JOIN accounts w ON w.user_id = c.user_id AND w.kind = 'wallet' "                         \
    "AND w.currency = c.currency "

static void read_row(dm_stmt *st, apr_pool_t *p, acc_row *x)
{
    memset(x, 0, sizeof(*x));
    x->id = dm_stmt_int64(st, 0);
    x->user_id = dm_stmt_int64(st, 1);
    x->hashrate_ghs = dm_stmt_int64(st, 2);
    x->daily = dm_stmt_int64(st, 3);
    x->started = dm_stmt_int64(st, 4);
    x->end = dm_stmt_int64(st, 5);
    if (!dm_stmt_is_null(st, 6) && dm_stmt_int64(st, 6) < x->end) {
        x->end = dm_stmt_int64(st, 6);
    }
    x->fee_bp = dm_stmt_int64(st, 7);
    x->currency = apr_pstrdup(p, dm_stmt_text(st, 8, NULL));
    x->wallet = dm_stmt_is_null(st, 9) ? 0 : dm_stmt_int64(st, 9);
    x->price = dm_stmt_int64(st, 10);
    x->refunded = dm_stmt_int64(st, 11);
}

/* ---- which contracts ---- */

/* The run's candidates: the ids of the mode's contracts whose term ends
 * after the window's start, read from the index contracts_term alone
 * (yield_mode, expires_at, and the rowid every index entry carries), then
 * sorted. Read once per run; no transaction needed: the window is over,
 * so no change a run can meet (a refund or an expiry sets ended_at, a new
 * contract starts now) moves a contract into or out of it. Contracts that
 * started after the window or ended before it are left to the row reads,
 * which test the whole term. */
static int by_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static dm_err *candidates(acc_run *r)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e =
        dm_db_prepare(r->ctx->db, r->ctx->pool,
                      "SELECT id FROM contracts WHERE yield_mode = ? AND expires_at > ?", &st);

    r->ids = apr_array_make(r->ctx->pool, 1024, sizeof(int64_t));
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, r->mode);
    dm_stmt_bind_int64(st, 2, r->ws);
    while (!(e = dm_stmt_step(st, r->ctx->pool, &row)) && row) {
        APR_ARRAY_PUSH(r->ids, int64_t) = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    qsort(r->ids->elts, (size_t)r->ids->nelts, sizeof(int64_t), by_id);
    return e;
}

/* The rows of up to IN_CHUNK candidates (ids[from..to), in id order) whose
 * term meets the window. By id, in id order, because each batch's writes
 * (earned_micros, the statement rows) then fall on neighbouring pages:
 * the same batch in expires_at order dirtied a page per contract, and one
 * hour over a million contracts sold over time took 6 to 9 times as long
 * (docs/decisions.md). Unused places of the list are NULL (never equal). */
static dm_err *fetch_chunk(acc_run *r, apr_pool_t *p, int from, int to, apr_array_header_t *rows)
{
    dm_stmt *st;
    int row = 0, i = 1;
    dm_err *e = dm_db_prepare(r->ctx->db, p, r->chunk_sql, &st);

    if (e) {
        return e;
    }
    /* ROW_SELECT's refund share: the refunds made before the window ended */
    dm_stmt_bind_int64(st, i++, r->we);
    for (int k = from; k < from + IN_CHUNK; k++, i++) {
        if (k < to) {
            dm_stmt_bind_int64(st, i, APR_ARRAY_IDX(r->ids, k, int64_t));
        } else {
            dm_stmt_bind_null(st, i);
        }
    }
    dm_stmt_bind_int64(st, i++, r->we);
    dm_stmt_bind_int64(st, i, r->ws);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        read_row(st, p, apr_array_push(rows));
    }
    dm_stmt_done(st);
    return e;
}

/* The next r->batch candidates from *pos on: the rows of those whose term
 * meets the window. *more is 0 when the candidates are done. */
static dm_err *fetch(acc_run *r, apr_pool_t *p, int *pos, apr_array_header_t **rows, int *more)
{
    int end = r->ids->nelts - *pos > r->batch ? *pos + r->batch : r->ids->nelts;
    apr_array_header_t *all = apr_array_make(p, end - *pos + 1, sizeof(acc_row));
    dm_err *e = NULL;

    for (int k = *pos; !e && k < end; k += IN_CHUNK) {
        e = fetch_chunk(r, p, k, end - k > IN_CHUNK ? k + IN_CHUNK : end, all);
    }
    if (e) {
        return e;
    }
    *pos = end;
    *more = end < r->ids->nelts;
    *rows = all;
    return NULL;
}

/* The statement of fetch_chunk: "c.id IN (?, ?, …)" with IN_CHUNK places. */
static const char *chunk_sql(apr_pool_t *p)
{
    char *places = apr_palloc(p, 3 * IN_CHUNK);
    char *w = places;

    for (int i = 0; i < IN_CHUNK; i++) {
        if (i) {
            *w++ = ',';
            *w++ = ' ';
        }
        *w++ = '?';
    }
    *w = '\0';
    return apr_pstrcat(p, ROW_SELECT "WHERE c.id IN (", places,
                       ") AND c.started_at < ? AND (c.ended_at IS NULL OR c.ended_at > ?) "
                       "ORDER BY c.id",
                       NULL);
}

/* The contract's part of the window; 0 when it has none (hs 0). */
static dm_err *compute(acc_run *r, apr_pool_t *p, acc_row *x)
{
    int64_t a = x->started > r->ws ? x->started : r->ws;
    int64_t b = x->end < r->we ? x->end : r->we;
    int64_t den = x->price > 0 ? x->price : 1, num = den;

    memset(&x->s, 0, sizeof(x->s));
    x->hs = 0;
    if (b <= a) {
        return NULL;
    }
    if (__builtin_mul_overflow(x->hashrate_ghs, b - a, &x->hs)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "contract %" APR_INT64_T_FMT ": hash-rate-seconds overflow",
                           (apr_int64_t)x->id);
    }
    if (x->refunded > 0) {
        /* a partly refunded contract runs on (price - refunded) / price */
        num = x->refunded < x->price ? x->price - x->refunded : 0;
        x->hs = (int64_t)(((__int128)x->hs * num) / den);
        if (x->hs == 0) {
            return NULL;
        }
    }
    if (strcmp(r->mode, DM_YIELD_FIXED) == 0) {
        x->s.credit = x->s.gross =
            dm_accrual_fixed_credit_share(x->daily, x->started, a, b, num, den);
    } else if (r->crediting) {
        if (strcmp(x->currency, r->payout->currency) != 0) {
            x->hs = 0; /* shares only what is paid in its currency */
            return NULL;
        }
        dm_accrual_pool_split(r->payout->amount_micros, x->hs, r->total_hs, x->fee_bp, &x->s);
    } else if (strcmp(x->currency, r->payout->currency) != 0) {
        x->hs = 0;
    }
    return NULL;
}

/* ---- what a new credit brings with it ---- */

/* "(CAST(? AS BIGINT), …), (?, …), …": rows rows of n places, the first
 * row typed (PostgreSQL types a VALUES column by its first row). */
static const char *values_sql(apr_pool_t *p, int n, int rows)
{
    apr_array_header_t *parts = apr_array_make(p, rows * (n + 2), sizeof(const char *));

    for (int i = 0; i < rows; i++) {
        *(const char **)apr_array_push(parts) = i ? ", (" : "(";
        for (int k = 0; k < n; k++) {
            *(const char **)apr_array_push(parts) =
                i ? (k ? ", ?" : "?") : (k ? ", CAST(? AS BIGINT)" : "CAST(? AS BIGINT)");
        }
        *(const char **)apr_array_push(parts) = ")";
    }
    return apr_array_pstrcat(p, parts, 0);
}

/* credited[from, from + rows), rows <= ADD_ROWS: each one's credit added
 * to earned_micros. */
static dm_err *add_chunk(acc_run *r, apr_pool_t *p, const apr_array_header_t *credited, int from,
                         int rows)
{
    dm_db *db = r->ctx->db;
    dm_stmt *st;
    int row = 0;
    dm_err *e;

    if (!r->add_sql) {
        r->add_sql = apr_pstrcat(r->ctx->pool,
                                 "UPDATE contracts SET earned_micros = contracts.earned_micros + "
                                 "v.column2 FROM (VALUES ",
                                 values_sql(r->ctx->pool, 2, ADD_ROWS),
                                 ") AS v WHERE contracts.id = v.column1", NULL);
    }
    if ((e = dm_db_prepare(db, p, r->add_sql, &st))) {
        return e;
    }
    for (int j = 0; j < ADD_ROWS; j++) {
        const acc_row *x = j < rows ? APR_ARRAY_IDX(credited, from + j, const acc_row *) : NULL;
        if (x) {
            dm_stmt_bind_int64(st, 2 * j + 1, x->id);
            dm_stmt_bind_int64(st, 2 * j + 2, x->s.credit);
        } else {
            dm_stmt_bind_null(st, 2 * j + 1);
            dm_stmt_bind_null(st, 2 * j + 2);
        }
    }
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e && dm_db_changes(db) != rows) {
        e = dm_err_make(p, DM_E_INTERNAL, NULL,
                        "%s: earned_micros of %" APR_INT64_T_FMT " of %d contracts updated",
                        r->ctx->period, (apr_int64_t)dm_db_changes(db), rows);
    }
    return e;
}

/* credited[from, from + rows), rows <= DAYS_ROWS: each one's credit added
 * to the day's statement row (contract_days). */
static dm_err *days_chunk(acc_run *r, apr_pool_t *p, const apr_array_header_t *credited, int from,
                          int rows)
{
    dm_stmt *st;
    int row = 0, size = ADD_ROWS, t = 0;
    dm_err *e;

    while (size < rows) {
        size *= 2;
        t++;
    }
    if (!r->days_sql[t]) {
        r->days_sql[t] = apr_pstrcat(
            r->ctx->pool,
            "INSERT INTO contract_days (contract_id, day, hashrate_ghs, hash_seconds, "
            "share_micros, fee_micros, credit_micros) SELECT v.column1, v.column2, v.column3, "
            "v.column4, v.column5, v.column6, v.column7 FROM (VALUES ",
            values_sql(r->ctx->pool, 7, size),
            ") AS v WHERE v.column1 IS NOT NULL ON CONFLICT (contract_id, day) DO UPDATE SET "
            "hash_seconds = contract_days.hash_seconds + excluded.hash_seconds, "
            "share_micros = contract_days.share_micros + excluded.share_micros, "
            "fee_micros = contract_days.fee_micros + excluded.fee_micros, "
            "credit_micros = contract_days.credit_micros + excluded.credit_micros",
            NULL);
    }
    if ((e = dm_db_prepare(r->ctx->db, p, r->days_sql[t], &st))) {
        return e;
    }
    for (int j = 0; j < size; j++) {
        const acc_row *x = j < rows ? APR_ARRAY_IDX(credited, from + j, const acc_row *) : NULL;
        int b = 7 * j;
        if (x) {
            dm_stmt_bind_int64(st, b + 1, x->id);
            dm_stmt_bind_int64(st, b + 2, r->day);
            dm_stmt_bind_int64(st, b + 3, x->hashrate_ghs);
            dm_stmt_bind_int64(st, b + 4, x->hs);
            dm_stmt_bind_int64(st, b + 5, x->s.gross);
            dm_stmt_bind_int64(st, b + 6, x->s.fee);
            dm_stmt_bind_int64(st, b + 7, x->s.credit);
        } else {
            for (int k = 1; k <= 7; k++) {
                dm_stmt_bind_null(st, b + k);
            }
        }
    }
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

/* What the batch's new credits bring: earned_micros, ADD_ROWS contracts
 * per statement, and the statement rows, DAYS_ROWS per statement (one
 * statement each was most of a batch's round trips on PostgreSQL). */
static dm_err *add_to_contracts(acc_run *r, apr_pool_t *p, const apr_array_header_t *credited)
{
    dm_err *e = NULL;

    for (int i = 0; !e && i < credited->nelts; i += ADD_ROWS) {
        e = add_chunk(r, p, credited, i,
                      credited->nelts - i < ADD_ROWS ? credited->nelts - i : ADD_ROWS);
    }
    for (int i = 0; !e && i < credited->nelts; i += DAYS_ROWS) {
        e = days_chunk(r, p, credited, i,
                       credited->nelts - i < DAYS_ROWS ? credited->nelts - i : DAYS_ROWS);
    }
    return e;
}

/* Yield commissions on the new credits of a batch: the member's stored
 * upline (10 at most) with each ancestor's level and status, the plan's
 * rate for (level, depth); floor(credit x rate / 10000) to the ancestor's
 * wallet, key ycomm:<contract>:<hour>:<depth>. Suspended ancestors, rates
 * of 0 and amounts that floor to 0 are skipped. */
static dm_err *yield_commissions(acc_run *r, apr_pool_t *p, const apr_array_header_t *credited)
{
    dm_db *db = r->ctx->db;
    apr_array_header_t *reqs = apr_array_make(p, 16, sizeof(dm_transfer_req));
    dm_err *e = NULL;

    for (int i = 0; !e && i < credited->nelts; i++) {
        const acc_row *x = APR_ARRAY_IDX(credited, i, const acc_row *);
        int64_t source = 0;
        dm_stmt *st;
        int row = 0;

        e = sys_account(r, p, DM_SYS_COMMISSIONS, x->currency, &source);
        if (!e) {
            e = dm_db_prepare(db, p,
                              "SELECT a.depth, u.id, u.vip_level, u.status FROM user_ancestors a "
                              "JOIN users u ON u.id = a.ancestor_id WHERE a.user_id = ? "
                              "ORDER BY a.depth",
                              &st);
        }
        if (e) {
            break;
        }
        dm_stmt_bind_int64(st, 1, x->user_id);
        while (!(e = dm_stmt_step(st, p, &row)) && row) {
            int64_t depth = dm_stmt_int64(st, 0), level = dm_stmt_int64(st, 2);
            int rate;
            dm_transfer_req *q;
            if (depth < 1 || depth > DM_YC_DEPTHS || level < 1 || level > DM_YC_LEVELS ||
                strcmp(dm_stmt_text(st, 3, NULL), "active") != 0) {
                continue;
            }
            rate = r->plan.rates_bp[level - 1][depth - 1];
            if (rate <= 0 || ((__int128)x->s.credit * rate) / 10000 <= 0) {
                continue;
            }
            q = apr_array_push(reqs);
            memset(q, 0, sizeof(*q));
            q->idempotency_key =
                apr_psprintf(p, "ycomm:%" APR_INT64_T_FMT ":%" APR_INT64_T_FMT ":%d",
                             (apr_int64_t)x->id, (apr_int64_t)r->hour, (int)depth);
            q->debit_account_id = source;
            q->credit_account_id = dm_stmt_int64(st, 1); /* the ancestor; a wallet id below */
            q->amount_micros = (int64_t)(((__int128)x->s.credit * rate) / 10000);
            q->currency = x->currency;
            q->kind = DM_KIND_YIELD_COMMISSION;
            q->reference = apr_psprintf(p, "contract:%" APR_INT64_T_FMT, (apr_int64_t)x->id);
        }
        dm_stmt_done(st);
    }
    for (int i = 0; !e && i < reqs->nelts; i++) {
        dm_transfer_req *q = &APR_ARRAY_IDX(reqs, i, dm_transfer_req);
        e = dm_ledger_member_account(db, p, q->credit_account_id, DM_ACCOUNT_WALLET, q->currency,
                                     &q->credit_account_id);
    }
    if (!e && reqs->nelts) {
        int *created = apr_pcalloc(p, sizeof(int) * (size_t)reqs->nelts);
        e = dm_ledger_post_many(db, p, (const dm_transfer_req *)reqs->elts, reqs->nelts, created,
                                NULL);
    }
    return e;
}

/* The decimal digits of v at w, as printf's "%" PRId64 writes them;
 * returns the end. */
static char *put_int64(char *w, int64_t v)
{
    char d[24];
    int n = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        d[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        *w++ = '-';
    }
    while (n) {
        *w++ = d[--n];
    }
    return w;
}

/* "<prefix><a>:<b>" (the ledger keys earn:<contract>:<hour> and
 * yield:<hour>:<contract>) and "contract:<contract>", the texts
 * apr_psprintf made before, without its format parsing (two a contract). */
static const char *pair_key(apr_pool_t *p, const char *prefix, int64_t a, int64_t b)
{
    size_t n = strlen(prefix);
    char *k = apr_palloc(p, n + 2 * 20 + 2), *w = k;

    memcpy(w, prefix, n);
    w = put_int64(w + n, a);
    *w++ = ':';
    w = put_int64(w, b);
    *w = '\0';
    return k;
}

/* A contract's credit for the run's hour: yield:<hour>:<contract>, hour
 * first, so that an hour's keys fill pages of their own at the end of the
 * key's index; an hour up to the cutover of migration 036 keeps the key
 * it was first credited under, earn:<contract>:<hour> (sql/036_…). */
static const char *credit_key(const acc_run *r, apr_pool_t *p, int64_t contract)
{
    return r->hour <= r->earn_through ? pair_key(p, "earn:", contract, r->hour)
                                      : pair_key(p, "yield:", r->hour, contract);
}

static const char *contract_ref(apr_pool_t *p, int64_t contract)
{
    char *k = apr_palloc(p, sizeof("contract:") + 20), *w = k;

    memcpy(w, "contract:", 9);
    w = put_int64(w + 9, contract);
    *w = '\0';
    return k;
}

/* Credits one batch's rows (in the batch's transaction). */
static dm_err *credit_rows(acc_run *r, apr_pool_t *p, apr_array_header_t *rows)
{
    dm_db *db = r->ctx->db;
    apr_array_header_t *reqs = apr_array_make(p, rows->nelts + 1, sizeof(dm_transfer_req));
    apr_array_header_t *of = apr_array_make(p, rows->nelts + 1, sizeof(acc_row *));
    apr_array_header_t *credited = apr_array_make(p, rows->nelts + 1, sizeof(acc_row *));
    int *created;
    dm_err *e = NULL;

    for (int i = 0; !e && i < rows->nelts; i++) {
        acc_row *x = &APR_ARRAY_IDX(rows, i, acc_row);
        dm_transfer_req *q;
        int64_t yield = 0;

        e = compute(r, p, x);
        if (e || x->hs == 0) {
            continue;
        }
        r->contracts++;
        r->hs_sum += x->hs;
        r->gross += x->s.gross;
        r->fees += x->s.fee;
        r->credits += x->s.credit;
        if (x->s.credit <= 0) {
            continue;
        }
        e = sys_account(r, p, DM_SYS_YIELD, x->currency, &yield);
        if (!e && !x->wallet) {
            e = dm_ledger_member_account(db, p, x->user_id, DM_ACCOUNT_WALLET, x->currency,
                                         &x->wallet);
        }
        if (e) {
            break;
        }
        q = apr_array_push(reqs);
        memset(q, 0, sizeof(*q));
        q->idempotency_key = credit_key(r, p, x->id);
        q->debit_account_id = yield;
        q->credit_account_id = x->wallet;
        q->amount_micros = x->s.credit;
        q->currency = x->currency;
        q->kind = DM_KIND_YIELD;
        q->reference = contract_ref(p, x->id);
        APR_ARRAY_PUSH(of, acc_row *) = x;
    }
    if (e || reqs->nelts == 0) {
        return e;
    }
    created = apr_pcalloc(p, sizeof(int) * (size_t)reqs->nelts);
    e = dm_ledger_post_many(db, p, (const dm_transfer_req *)reqs->elts, reqs->nelts, created, NULL);
    for (int i = 0; !e && i < reqs->nelts; i++) {
        acc_row *x = APR_ARRAY_IDX(of, i, acc_row *);
        if (!created[i]) {
            continue; /* done by an earlier run: nothing else to do either */
        }
        APR_ARRAY_PUSH(credited, acc_row *) = x;
        r->new_credits++;
        r->new_micros += x->s.credit;
    }
    if (!e) {
        e = add_to_contracts(r, p, credited);
    }
    if (!e && r->plan.enabled && credited->nelts) {
        e = yield_commissions(r, p, credited);
    }
    return e;
}

static dm_err *stopped(acc_run *r)
{
    return dm_err_make(r->ctx->pool, DM_E_UNAVAILABLE, NULL,
                       "%s %s stopped between batches (lease lost or timed out); the next run "
                       "finishes the period",
                       r->ctx->job, r->ctx->period);
}

/* Pool pass 1: the window's total hash-rate-seconds, read in batches. */
static dm_err *sum_hash_seconds(acc_run *r)
{
    apr_pool_t *bp;
    int pos = 0, more = 1, batch = r->batch, first = 1;
    dm_err *e = NULL;

    if (!r->ids && (e = candidates(r))) {
        return e;
    }
    apr_pool_create(&bp, r->ctx->pool);
    r->total_hs = 0;
    r->batch = r->batch > SUM_BATCH ? r->batch : SUM_BATCH;
    while (!e && more) {
        apr_array_header_t *rows = NULL;
        if (!first && !dm_job_keep_going(r->ctx)) {
            e = stopped(r);
            break;
        }
        first = 0;
        e = fetch(r, bp, &pos, &rows, &more);
        for (int i = 0; !e && i < rows->nelts; i++) {
            acc_row *x = &APR_ARRAY_IDX(rows, i, acc_row);
            e = compute(r, bp, x);
            if (!e && __builtin_add_overflow(r->total_hs, x->hs, &r->total_hs)) {
                e = dm_err_make(r->ctx->pool, DM_E_INTERNAL, NULL,
                                "the hash-rate-seconds of %s overflow 64 bits", r->ctx->period);
            }
        }
        apr_pool_clear(bp);
    }
    apr_pool_destroy(bp);
    r->batch = batch;
    return e;
}

/* ---- the checkpoint beside the batches ---- */

/* A crediting run's checkpoint copies a WAL of CKPT_PAGES pages back into
 * the database and syncs it: about a fifth of a 1,000,000-contract run,
 * and nothing the batches need to wait for. A thread of the run's own, on
 * a connection of its own, makes that copy (a PASSIVE checkpoint: it takes
 * no write lock, so the batches go on meanwhile); once it is done, the loop
 * runs the checkpoint it ran before (dm_db_checkpoint_run: what the
 * batches wrote since, then the RESTART that starts the WAL over) between
 * two batches, with most of the pages already copied. Started the first
 * time a checkpoint is due, so never on PostgreSQL (no checkpoint there);
 * when the thread or its connection cannot be had, the loop checkpoints
 * itself, as before. Checkpoints change no row: the transactions and the
 * exactly-once keys are the batches' own. */
typedef struct ckpt_side {
    apr_pool_t *pool;
    dm_db *db; /* the thread's connection, opened on the run's database */
    apr_thread_t *thread;
    apr_thread_mutex_t *mu;
    apr_thread_cond_t *cv;
    int asked;  /* a copy asked for, not yet started */
    int busy;   /* asked for or running */
    int copied; /* a copy done since the loop's last checkpoint */
    int quit;
    int failed; /* no thread: the loop checkpoints itself */
} ckpt_side;

static void *APR_THREAD_FUNC ckpt_main(apr_thread_t *t, void *arg)
{
    ckpt_side *c = arg;
    sigset_t all;

    /* the process's signals (the cron daemon's stop) go to the loop's thread */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    apr_thread_mutex_lock(c->mu);
    for (;;) {
        while (!c->asked && !c->quit) {
            apr_thread_cond_wait(c->cv, c->mu);
        }
        if (!c->asked) {
            break;
        }
        c->asked = 0;
        apr_thread_mutex_unlock(c->mu);
        /* again while a pass found many pages the batches wrote during the
         * one before, so that the loop's own pass has few left */
        for (int pass = 0, at = 0, n; pass < CKPT_PASSES; pass++, at = n) {
            n = dm_db_checkpoint_copy(c->db);
            if (n - at < CKPT_LEFT) {
                break;
            }
        }
        apr_thread_mutex_lock(c->mu);
        c->busy = 0;
        c->copied = 1;
    }
    apr_thread_mutex_unlock(c->mu);
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

static int ckpt_side_start(ckpt_side *c, dm_db *db, apr_pool_t *parent)
{
    dm_err *e;

    memset(c, 0, sizeof(*c));
    if (apr_pool_create(&c->pool, parent) != APR_SUCCESS) {
        c->failed = 1;
        return 0;
    }
    e = dm_db_open(c->pool, dm_db_path(db), NULL, &c->db);
    if (e || apr_thread_mutex_create(&c->mu, APR_THREAD_MUTEX_DEFAULT, c->pool) != APR_SUCCESS ||
        apr_thread_cond_create(&c->cv, c->pool) != APR_SUCCESS ||
        apr_thread_create(&c->thread, NULL, ckpt_main, c, c->pool) != APR_SUCCESS) {
        dm_log(DM_L_WARN,
               "DM02060: accrual: no checkpoint thread (%s); the batches checkpoint "
               "themselves",
               e ? e->message : "no thread");
        apr_pool_destroy(c->pool); /* closes the connection */
        c->thread = NULL;
        c->pool = NULL;
        c->failed = 1;
        return 0;
    }
    return 1;
}

static void ckpt_side_stop(ckpt_side *c)
{
    apr_status_t rv;

    if (!c->thread) {
        return;
    }
    apr_thread_mutex_lock(c->mu);
    c->quit = 1;
    apr_thread_cond_signal(c->cv);
    apr_thread_mutex_unlock(c->mu);
    apr_thread_join(&rv, c->thread);
    apr_pool_destroy(c->pool);
    c->thread = NULL;
}

/* After a batch, the WAL at wal pages (CKPT_PAGES or more): 1 when the
 * loop is to checkpoint now (the thread's copy is done, or there is no
 * thread), 0 when the thread copies (or was just asked to). */
static int ckpt_side_due(ckpt_side *c, dm_db *db, apr_pool_t *parent)
{
    int now = 0;

    if (c->failed || (!c->thread && !ckpt_side_start(c, db, parent))) {
        return 1;
    }
    apr_thread_mutex_lock(c->mu);
    if (c->copied) {
        c->copied = 0;
        now = 1;
    } else if (!c->busy) {
        c->busy = c->asked = 1;
        apr_thread_cond_signal(c->cv);
    }
    apr_thread_mutex_unlock(c->mu);
    return now;
}

/* The batches that credit. */
static dm_err *credit_all(acc_run *r)
{
    dm_db *db = r->ctx->db;
    apr_pool_t *bp;
    int pos = 0, more = 1, first = 1, wal = 0, taken;
    ckpt_side side;
    dm_err *e = NULL;

    memset(&side, 0, sizeof(side));
    if (!r->ids && (e = candidates(r))) {
        return e;
    }
    apr_pool_create(&bp, r->ctx->pool);
    r->crediting = 1;
    /* a batch's multi-row statements: their statement journal in memory
     * (store/db.h); only a speed-up, so a refusal changes nothing */
    (void)dm_db_scratch_in_memory(db, bp, 1);
    (void)dm_db_cache_kib(db, bp, BATCH_CACHE_KIB); /* as well */
    /* the batches' commits leave their checkpoint to the loop below */
    dm_db_checkpoint_later(db, 1);
    while (!e && more) {
        apr_array_header_t *rows = NULL;
        int64_t before = r->new_credits;
        if (!first && !dm_job_keep_going(r->ctx)) {
            e = stopped(r);
            break;
        }
        first = 0;
        e = dm_db_begin(db, bp);
        if (!e) {
            e = fetch(r, bp, &pos, &rows, &more);
        }
        if (!e) {
            e = credit_rows(r, bp, rows);
        }
        if (!e) {
            e = dm_db_commit(db, bp);
        }
        if (e) {
            dm_db_rollback(db);
            e = dm_err_make(r->ctx->pool, e->code, e->field, "%s", e->message);
        } else {
            r->ctx->items += r->new_credits - before;
        }
        /* the WAL's length after this commit, when 1,000 pages or more
         * (0 on PostgreSQL) */
        taken = dm_db_checkpoint_take(db);
        wal = taken ? taken : wal;
        if (wal >= CKPT_PAGES && ckpt_side_due(&side, db, r->ctx->pool)) {
            dm_db_checkpoint_run(db, wal);
            wal = 0;
        }
        apr_pool_clear(bp);
    }
    ckpt_side_stop(&side);
    dm_db_checkpoint_later(db, 0);
    if (wal) {
        dm_db_checkpoint_run(db, wal); /* what is left, as a commit would */
    }
    (void)dm_db_scratch_in_memory(db, bp, 0);
    (void)dm_db_cache_kib(db, bp, 0);
    apr_pool_destroy(bp);
    return e;
}

static void report(acc_run *r, apr_time_t t0)
{
    struct rusage ru;
    double secs = (double)(apr_time_now() - t0) / APR_USEC_PER_SEC;
    long rss_kb = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;

    if (r->contracts == 0) {
        return;
    }
    dm_log(DM_L_NOTICE,
           "DM00950: %s %s: %" APR_INT64_T_FMT " contracts, %" APR_INT64_T_FMT
           " new credits of %" APR_INT64_T_FMT " micros in %.2f s (%.0f contracts/s), peak RSS "
           "%ld MB",
           r->ctx->job, r->ctx->period, (apr_int64_t)r->contracts, (apr_int64_t)r->new_credits,
           (apr_int64_t)r->new_micros, secs, secs > 0 ? (double)r->contracts / secs : 0.0,
           rss_kb / 1024);
}

static dm_err *run_init(acc_run *r, dm_job_ctx *ctx, const char *mode)
{
    dm_err *e;
    int found = 0;

    memset(r, 0, sizeof(*r));
    r->ctx = ctx;
    r->mode = mode;
    r->hour = ctx->period_start;
    r->ws = ctx->period_start;
    r->we = ctx->period_start + HOUR;
    r->day = dm_day_floor(ctx->period_start);
    r->batch = ctx->env && ctx->env->batch_size > 0 ? ctx->env->batch_size : DM_ACCRUAL_BATCH;
    r->sys = apr_hash_make(ctx->pool);
    r->chunk_sql = chunk_sql(ctx->pool);
    e = dm_db_query_int64(ctx->db, ctx->pool, "SELECT earn_keys_through FROM accrual_key_cutover",
                          &r->earn_through, &found);
    if (!e && !found) {
        r->earn_through = INT64_MIN; /* no row: no hour was keyed the old way */
    }
    return e ? e : dm_yc_plan_load(ctx->db, ctx->pool, &r->plan);
}

/* An hourly period can only be shared out once it is over: *res
 * WAITING until then. A period that is not an hour is a caller's error. */
static dm_err *check_period(dm_job_ctx *ctx, dm_job_result *res)
{
    *res = DM_JOB_OK;
    if (ctx->period_start % HOUR != 0 || ctx->period_end != ctx->period_start + HOUR) {
        return dm_err_make(ctx->pool, DM_E_INVALID, "period", "%s runs for whole UTC hours, not %s",
                           ctx->job, ctx->period);
    }
    if (ctx->period_end > dm_now()) {
        *res = DM_JOB_WAITING;
    }
    return NULL;
}

dm_err *dm_accrual_job_fixed(dm_job_ctx *ctx, dm_job_result *res)
{
    acc_run r;
    apr_time_t t0 = apr_time_now();
    dm_err *e;

    e = check_period(ctx, res);
    if (e || *res == DM_JOB_WAITING) {
        return e;
    }
    e = run_init(&r, ctx, DM_YIELD_FIXED);
    if (!e) {
        e = credit_all(&r);
    }
    if (!e) {
        report(&r, t0);
    }
    return e;
}

/* The payout's own transfers (fee to maintenance_fees, the floors'
 * remainder to rounding) and its reconciliation, in one transaction. */
static dm_err *close_payout(acc_run *r, const dm_pool_payout *pay)
{
    dm_db *db = r->ctx->db;
    apr_pool_t *p = r->ctx->pool;
    dm_pool_payout done = *pay;
    int64_t yield = 0, to = 0;
    dm_transfer t;
    dm_transfer_req q;
    int created = 0;
    const char *ref = apr_psprintf(p, "pool_payout:%" APR_INT64_T_FMT, (apr_int64_t)pay->id);
    dm_err *e;

    if (r->hs_sum != r->total_hs || r->gross > pay->amount_micros) {
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "%s: the contracts met while crediting (%" APR_INT64_T_FMT
                           " GH/s x s) are not those summed first (%" APR_INT64_T_FMT ")",
                           r->ctx->period, (apr_int64_t)r->hs_sum, (apr_int64_t)r->total_hs);
    }
    done.distributed_at = dm_now();
    done.contracts = r->contracts;
    done.hash_seconds = r->total_hs;
    done.credits_micros = r->credits;
    done.fee_micros = r->fees;
    done.remainder_micros = pay->amount_micros - r->gross;
    if ((e = dm_db_begin(db, p))) {
        return e;
    }
    e = sys_account(r, p, DM_SYS_YIELD, pay->currency, &yield);
    memset(&q, 0, sizeof(q));
    q.debit_account_id = yield;
    q.currency = pay->currency;
    q.reference = ref;
    if (!e && done.fee_micros > 0) {
        e = sys_account(r, p, DM_SYS_MAINTENANCE_FEES, pay->currency, &to);
        q.idempotency_key = apr_psprintf(p, "poolfee:%" APR_INT64_T_FMT, (apr_int64_t)pay->id);
        q.credit_account_id = to;
        q.amount_micros = done.fee_micros;
        q.kind = DM_KIND_MAINTENANCE_FEE;
        if (!e) {
            e = dm_ledger_transfer(db, p, &q, &t, &created);
        }
    }
    if (!e && done.remainder_micros > 0) {
        e = sys_account(r, p, DM_SYS_ROUNDING, pay->currency, &to);
        q.idempotency_key = apr_psprintf(p, "poolrem:%" APR_INT64_T_FMT, (apr_int64_t)pay->id);
        q.credit_account_id = to;
        q.amount_micros = done.remainder_micros;
        q.kind = DM_KIND_ROUNDING;
        if (!e) {
            e = dm_ledger_transfer(db, p, &q, &t, &created);
        }
    }
    if (!e) {
        e = dm_pool_payout_mark_distributed(db, p, &done);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    e = dm_db_commit(db, p);
    if (!e) {
        dm_log(DM_L_NOTICE,
               "DM00951: pool payout %" APR_INT64_T_FMT " (%s %s) distributed: %" APR_INT64_T_FMT
               " = credits %" APR_INT64_T_FMT " + fee %" APR_INT64_T_FMT
               " + remainder %" APR_INT64_T_FMT " micros over %" APR_INT64_T_FMT " contracts",
               (apr_int64_t)pay->id, pay->period_kind, dm_json_time(p, pay->period_start),
               (apr_int64_t)pay->amount_micros, (apr_int64_t)done.credits_micros,
               (apr_int64_t)done.fee_micros, (apr_int64_t)done.remainder_micros,
               (apr_int64_t)done.contracts);
    }
    return e;
}

/* Pool-mode contracts that ran at some time during the UTC day holding
 * ctx->period_start (refunded ones until they ended). */
static dm_err *pool_contracts_in_day(dm_job_ctx *ctx, int64_t *n)
{
    dm_stmt *st;
    int row = 0;
    int64_t day = dm_day_floor(ctx->period_start);
    dm_err *e = dm_db_prepare(ctx->db, ctx->pool,
                              "SELECT count(*) FROM contracts WHERE yield_mode = ? AND "
                              "started_at < ? AND expires_at > ? AND "
                              "(ended_at IS NULL OR ended_at > ?)",
                              &st);

    *n = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_text(st, 1, DM_YIELD_POOL, strlen(DM_YIELD_POOL));
    dm_stmt_bind_int64(st, 2, day + 86400);
    dm_stmt_bind_int64(st, 3, day);
    dm_stmt_bind_int64(st, 4, day);
    e = dm_stmt_step(st, ctx->pool, &row);
    if (!e && row) {
        *n = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_accrual_job_pool(dm_job_ctx *ctx, dm_job_result *res)
{
    acc_run r;
    dm_pool_payout pay;
    apr_time_t t0 = apr_time_now();
    int found = 0;
    dm_err *e;

    e = check_period(ctx, res);
    if (e || *res == DM_JOB_WAITING) {
        return e;
    }
    e = dm_pool_payout_covering(ctx->db, ctx->pool, ctx->period_start, &pay, &found);
    if (e) {
        return e;
    }
    if (!found) {
        /* Wait for the payout only when a pool contract ran during the
         * hour's day (a day payout distributes at 23:00 over the whole
         * day); with none, there is nobody to pay and the hour is done. */
        int64_t active = 0;
        e = pool_contracts_in_day(ctx, &active);
        if (!e && active > 0) {
            *res = DM_JOB_WAITING; /* caught up when the payout is recorded */
        }
        return e;
    }
    if (pay.distributed_at || ctx->period_start != pay.period_end - HOUR) {
        /* done before, or an hour of a day payout that its last hour
         * (23:00) distributes over the whole day */
        return NULL;
    }
    e = run_init(&r, ctx, DM_YIELD_POOL);
    if (e) {
        return e;
    }
    r.payout = &pay;
    r.ws = pay.period_start;
    r.we = pay.period_end;
    r.day = dm_day_floor(pay.period_start);
    e = sum_hash_seconds(&r);
    if (!e) {
        e = credit_all(&r);
    }
    if (!e) {
        e = close_payout(&r, &pay);
    }
    if (!e) {
        report(&r, t0);
    }
    return e;
}

/* ---- first periods ---- */

static dm_err *first_of(dm_db *db, apr_pool_t *p, const char *mode, int64_t *out)
{
    dm_stmt *st;
    int row = 0;
    /* any status: a contract refunded before the job's first run is still
     * owed the hours before its refund (read once, when the job's cursor
     * is set up) */
    dm_err *e =
        dm_db_prepare(db, p, "SELECT MIN(started_at) FROM contracts WHERE yield_mode = ?", &st);

    *out = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, mode);
    e = dm_stmt_step(st, p, &row);
    if (!e && row && !dm_stmt_is_null(st, 0)) {
        *out = dm_hour_floor(dm_stmt_int64(st, 0));
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_accrual_first_fixed(dm_db *db, apr_pool_t *p, int64_t now, int64_t *out)
{
    (void)now;
    return first_of(db, p, DM_YIELD_FIXED, out);
}

dm_err *dm_accrual_first_pool(dm_db *db, apr_pool_t *p, int64_t now, int64_t *out)
{
    (void)now;
    return first_of(db, p, DM_YIELD_POOL, out);
}

/* ---- expiry ---- */

/* Whether every hour of a term, the hours starting at first ... last, is
 * credited: for fixed yield, the accrual job finished each of those
 * periods (`ok`; failed, waiting or dead ones are still owed; the clean-up
 * keeps the accrual's `ok` runs for this), counted from the index
 * job_runs_ok alone; for pool yield, distributed payouts cover each of
 * them (hour and day payouts never overlap, so their hours add up without
 * double counting).
 * Cached per mode and term for one run: contracts bought in the same
 * hour for the same duration share the answer. */
static dm_err *term_credited(dm_db *db, apr_pool_t *p, apr_hash_t *seen, const char *mode,
                             int64_t first, int64_t last, int *credited)
{
    const char *k = apr_psprintf(p, "%s/%" APR_INT64_T_FMT "/%" APR_INT64_T_FMT, mode,
                                 (apr_int64_t)first, (apr_int64_t)last);
    const int *cached = apr_hash_get(seen, k, APR_HASH_KEY_STRING);
    int64_t hours = (last - first) / HOUR + 1, done = 0;
    dm_stmt *st;
    int row = 0, fixed = strcmp(mode, DM_YIELD_FIXED) == 0;
    dm_err *e;

    if (cached) {
        *credited = *cached;
        return NULL;
    }
    *credited = 0;
    if (fixed) {
        e = dm_db_prepare(db, p,
                          "SELECT COUNT(*) FROM job_runs WHERE job = 'accrual' AND status = 'ok' "
                          "AND period_start >= ? AND period_start <= ?",
                          &st);
        if (e) {
            return e;
        }
        dm_stmt_bind_int64(st, 1, first);
        dm_stmt_bind_int64(st, 2, last);
        e = dm_stmt_step(st, p, &row);
        done = !e && row ? dm_stmt_int64(st, 0) : 0;
        dm_stmt_done(st);
        if (e) {
            return e;
        }
    } else {
        /* a day payout starts at the midnight before `first`, at the
         * latest */
        e = dm_db_prepare(db, p,
                          "SELECT period_start, period_end FROM pool_payouts WHERE "
                          "period_start > ? AND period_start <= ? AND distributed_at IS NOT NULL",
                          &st);
        if (e) {
            return e;
        }
        dm_stmt_bind_int64(st, 1, first - DAY);
        dm_stmt_bind_int64(st, 2, last);
        while (!(e = dm_stmt_step(st, p, &row)) && row) {
            int64_t a = dm_stmt_int64(st, 0), b = dm_stmt_int64(st, 1);
            a = a > first ? a : first;
            b = b < last + HOUR ? b : last + HOUR;
            if (b > a) {
                done += (b - a) / HOUR;
            }
        }
        dm_stmt_done(st);
        if (e) {
            return e;
        }
    }
    *credited = done == hours;
    apr_hash_set(seen, k, APR_HASH_KEY_STRING, apr_pmemdup(p, credited, sizeof(int)));
    return NULL;
}

typedef struct exp_row {
    int64_t id;
    int64_t started_at;
    int64_t expires_at;
    int64_t earned;
    const char *mode;
    const char *name;
    const char *email;
} exp_row;

static dm_err *expire_one(dm_db *db, apr_pool_t *p, const exp_row *x, int *done)
{
    dm_stmt *st;
    int row = 0;
    json_t *vars;
    dm_err *e = dm_db_prepare(db, p,
                              "UPDATE contracts SET status = 'expired', ended_at = expires_at "
                              "WHERE id = ? AND status = 'active'",
                              &st);

    *done = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, x->id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (e || dm_db_changes(db) != 1) {
        return e;
    }
    *done = 1;
    vars = dm_json_own(p, json_object());
    json_object_set_new(vars, "contract_id", json_integer(x->id));
    json_object_set_new(vars, "package", json_string(x->name));
    json_object_set_new(vars, "expired_at", json_string(dm_json_time(p, x->expires_at)));
    json_object_set_new(vars, "earned_micros", json_integer(x->earned));
    return dm_mail_enqueue(
        db, p, x->email, "contract_expired", vars,
        apr_psprintf(p, "contract_expired:%" APR_INT64_T_FMT, (apr_int64_t)x->id));
}

/* One batch of contracts past expires_at after (after_at, after_id). */
static dm_err *expiry_batch(dm_job_ctx *ctx, apr_pool_t *p, apr_hash_t *seen, int64_t now,
                            int64_t *after_at, int64_t *after_id, int *more)
{
    dm_db *db = ctx->db;
    dm_stmt *st;
    int row = 0, n = 0;
    apr_array_header_t *rows = apr_array_make(p, EXPIRY_BATCH, sizeof(exp_row));
    dm_err *e = dm_db_begin(db, p);

    *more = 0;
    if (!e) {
        e = dm_db_prepare(db, p,
                          "SELECT c.id, c.expires_at, c.earned_micros, c.yield_mode, c.name, "
                          "u.email, c.started_at FROM contracts c JOIN users u ON u.id = c.user_id "
                          "WHERE c.status = 'active' AND c.expires_at <= ? "
                          "AND (c.expires_at > ? OR (c.expires_at = ? AND c.id > ?)) "
                          "ORDER BY c.expires_at, c.id LIMIT ?",
                          &st);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    dm_stmt_bind_int64(st, 1, now);
    dm_stmt_bind_int64(st, 2, *after_at);
    dm_stmt_bind_int64(st, 3, *after_at);
    dm_stmt_bind_int64(st, 4, *after_id);
    dm_stmt_bind_int64(st, 5, EXPIRY_BATCH);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        exp_row *x = apr_array_push(rows);
        x->id = dm_stmt_int64(st, 0);
        x->expires_at = dm_stmt_int64(st, 1);
        x->earned = dm_stmt_int64(st, 2);
        x->mode =
            strcmp(dm_stmt_text(st, 3, NULL), DM_YIELD_POOL) == 0 ? DM_YIELD_POOL : DM_YIELD_FIXED;
        x->name = dm_stmt_dup_text(st, p, 4);
        x->email = dm_stmt_dup_text(st, p, 5);
        x->started_at = dm_stmt_int64(st, 6);
    }
    dm_stmt_done(st);
    for (int i = 0; !e && i < rows->nelts; i++) {
        const exp_row *x = &APR_ARRAY_IDX(rows, i, exp_row);
        int credited = 0, done = 0;
        e = term_credited(db, ctx->pool, seen, x->mode, dm_hour_floor(x->started_at),
                          dm_hour_floor(x->expires_at - 1), &credited);
        if (!e && credited) {
            e = expire_one(db, p, x, &done);
            n += done;
        }
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    ctx->items += n;
    if (rows->nelts == EXPIRY_BATCH) {
        const exp_row *last = &APR_ARRAY_IDX(rows, rows->nelts - 1, exp_row);
        *after_at = last->expires_at;
        *after_id = last->id;
        *more = 1;
    }
    return NULL;
}

dm_err *dm_accrual_job_expiry(dm_job_ctx *ctx, dm_job_result *res)
{
    apr_hash_t *seen = apr_hash_make(ctx->pool);
    apr_pool_t *bp;
    int64_t now = dm_now(), after_at = 0, after_id = 0;
    int more = 1;
    dm_err *e = NULL;

    *res = DM_JOB_OK;
    apr_pool_create(&bp, ctx->pool);
    while (!e && more) {
        if ((after_at || after_id) && !dm_job_keep_going(ctx)) {
            e = dm_err_make(ctx->pool, DM_E_UNAVAILABLE, NULL,
                            "contract expiry stopped between batches");
            break;
        }
        e = expiry_batch(ctx, bp, seen, now, &after_at, &after_id, &more);
        if (e) {
            e = dm_err_make(ctx->pool, e->code, e->field, "%s", e->message);
        }
        apr_pool_clear(bp);
    }
    apr_pool_destroy(bp);
    if (!e && ctx->items) {
        dm_log(DM_L_NOTICE, "DM00952: contract-expiry: %" APR_INT64_T_FMT " contract(s) expired",
               (apr_int64_t)ctx->items);
    }
    return e;
}
