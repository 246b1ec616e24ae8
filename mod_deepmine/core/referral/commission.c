/*
 * commission.c — see commission.h. A split is one indexed read (the
 * buyer's stored upline joined with each ancestor's level, status and rate
 * for its depth), then per credited depth one ledger transfer and one
 * commissions row (all levels' transfers in one dm_ledger_post_many, all
 * rows in one INSERT). commission_orders remembers each order counted, so a
 * replayed payment and a clawback both know what was done.
 */
#include "referral/commission.h"

#include <apr_strings.h>
#include <apr_time.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/validate.h"
#include "ledger/ledger.h"
#include "store/audit.h"
#include "referral/referral.h"
#include "referral/vip.h"

#define PAGE_MAX 200
#define RELEASE_BATCH 500

/* Set by the host before it forks; read-only afterwards. */
static int64_t hold_seconds = (int64_t)DM_COMMISSION_DEFAULT_HOLD_DAYS * 86400;
static struct gateway_hold {
    char gateway[DM_COMMISSION_GATEWAY_MAX + 1];
    int64_t seconds;
} gateway_holds[DM_COMMISSION_HOLD_GATEWAYS];
static int gateway_hold_count;

void dm_commission_set_hold(int64_t seconds)
{
    hold_seconds = seconds >= 0 ? seconds : 0;
    gateway_hold_count = 0;
}

int64_t dm_commission_hold(void)
{
    return hold_seconds;
}

int dm_commission_set_hold_for(const char *gateway, int64_t seconds)
{
    size_t n = gateway ? strlen(gateway) : 0;
    int i = 0;

    if (n < 1 || n > DM_COMMISSION_GATEWAY_MAX) {
        return -1;
    }
    while (i < gateway_hold_count && strcmp(gateway_holds[i].gateway, gateway) != 0) {
        i++;
    }
    if (i == DM_COMMISSION_HOLD_GATEWAYS) {
        return -1;
    }
    memcpy(gateway_holds[i].gateway, gateway, n + 1);
    gateway_holds[i].seconds = seconds >= 0 ? seconds : 0;
    if (i == gateway_hold_count) {
        gateway_hold_count++;
    }
    return 0;
}

int64_t dm_commission_hold_for(const char *gateway)
{
    for (int i = 0; gateway && i < gateway_hold_count; i++) {
        if (strcmp(gateway_holds[i].gateway, gateway) == 0) {
            return gateway_holds[i].seconds;
        }
    }
    return hold_seconds;
}

static dm_err *need_txn(dm_db *db, apr_pool_t *p, const char *what)
{
    return dm_db_in_transaction(db)
               ? NULL
               : dm_err_make(p, DM_E_INTERNAL, NULL,
                             "commission: %s must run inside the caller's transaction", what);
}

/* Records the order once. *fresh 1: first time (split and count it); 0:
 * already recorded as paid (nothing to do). A refunded order, or one
 * recorded with another buyer, amount or currency, is DM_E_CONFLICT. */
static dm_err *record_order(dm_db *db, apr_pool_t *p, int64_t order_id, int64_t buyer_id,
                            int64_t amount, const char *currency, int *fresh)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO commission_orders (order_id, buyer_id, amount_micros, "
                              "currency, status, created_at) VALUES (?, ?, ?, ?, 'paid', ?) "
                              "ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
                              &st);

    *fresh = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, order_id);
    dm_stmt_bind_int64(st, 2, buyer_id);
    dm_stmt_bind_int64(st, 3, amount);
    dm_stmt_bind_str(st, 4, currency);
    dm_stmt_bind_int64(st, 5, dm_now());
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (e || row) {
        *fresh = row;
        return e;
    }
    e = dm_db_prepare(db, p,
                      "SELECT buyer_id, amount_micros, currency, status FROM commission_orders "
                      "WHERE order_id = ?",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, order_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row &&
        (dm_stmt_int64(st, 0) != buyer_id || dm_stmt_int64(st, 1) != amount ||
         strcmp(dm_stmt_text(st, 2, NULL), currency) != 0)) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL,
                        "order %" APR_INT64_T_FMT " was already split for another buyer, amount "
                        "or currency",
                        (apr_int64_t)order_id);
    } else if (!e && row && strcmp(dm_stmt_text(st, 3, NULL), "refunded") == 0) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL,
                        "order %" APR_INT64_T_FMT " was refunded; its commissions are not paid "
                        "again",
                        (apr_int64_t)order_id);
    }
    dm_stmt_done(st);
    return e;
}

typedef struct credit {
    int64_t ancestor;
    int64_t held; /* the ancestor's held account in the order's currency; 0: none yet */
    int depth;
    int vip_level;
    int suspended;
    int rate_bp;
} credit;

/* The stored upline with level, status and rate of each ancestor, and its
 * held account in `currency` if it has one (read here, in the same index
 * walk, rather than one look-up per beneficiary). */
static dm_err *read_upline(dm_db *db, apr_pool_t *p, int64_t buyer_id, const char *currency,
                           credit *out, int *n)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e =
        dm_db_prepare(db, p,
                      "SELECT a.depth, u.id, u.vip_level, u.status, COALESCE(r.rate_bp, 0), "
                      "COALESCE(h.id, 0) "
                      "FROM user_ancestors a JOIN users u ON u.id = a.ancestor_id "
                      "LEFT JOIN commission_rates r ON r.level = u.vip_level AND r.depth = a.depth "
                      "LEFT JOIN accounts h ON h.user_id = u.id AND h.kind = 'held' "
                      "AND h.currency = ? "
                      "WHERE a.user_id = ? ORDER BY a.depth",
                      &st);

    *n = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, currency);
    dm_stmt_bind_int64(st, 2, buyer_id);
    while (!(e = dm_stmt_step(st, p, &row)) && row && *n < DM_REFERRAL_LEVELS) {
        credit *c = &out[(*n)++];
        c->depth = (int)dm_stmt_int64(st, 0);
        c->ancestor = dm_stmt_int64(st, 1);
        c->vip_level = (int)dm_stmt_int64(st, 2);
        c->suspended = strcmp(dm_stmt_text(st, 3, NULL), "active") != 0;
        c->rate_bp = (int)dm_stmt_int64(st, 4);
        c->held = dm_stmt_int64(st, 5);
    }
    dm_stmt_done(st);
    return e;
}

/* The depths of order_id's commissions rows already there (bit d set):
 * none unless an order counted before commission_orders existed is paid
 * again. Those rows are skipped by the INSERT, so they are not counted. */
static dm_err *depths_there(dm_db *db, apr_pool_t *p, int64_t order_id, uint32_t *mask)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, "SELECT depth FROM commissions WHERE order_id = ?", &st);

    *mask = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, order_id);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        int64_t d = dm_stmt_int64(st, 0);
        if (d >= 0 && d < 32) {
            *mask |= (uint32_t)1 << d;
        }
    }
    dm_stmt_done(st);
    return e;
}

/* The day's commissions total in stats_daily (sql/024_stats_daily.sql): the
 * rows this split inserted, all created now in one currency, added by one
 * upsert (sql/035_…: it replaced a trigger that ran once per row). */
static dm_err *count_in_stats(dm_db *db, apr_pool_t *p, int64_t now, const char *currency,
                              int64_t sum)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO stats_daily (day, currency, commissions_micros) "
                              "VALUES (?, ?, ?) ON CONFLICT (currency, day) DO UPDATE SET "
                              "commissions_micros = stats_daily.commissions_micros + "
                              "excluded.commissions_micros",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, now - now % 86400);
    dm_stmt_bind_str(st, 2, currency);
    dm_stmt_bind_int64(st, 3, sum);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

/* The commissions rows of one split, one multi-row INSERT (rows <=
 * DM_REFERRAL_LEVELS, so at most that many statement texts are cached),
 * and their total in stats_daily. */
static dm_err *insert_credits(dm_db *db, apr_pool_t *p, int64_t order_id, int64_t buyer_id,
                              const credit *const *c, const int64_t *amounts,
                              const int64_t *transfer_ids, int rows, const char *currency,
                              int64_t hold)
{
    static const char head[] = "INSERT INTO commissions (order_id, depth, beneficiary_id, "
                               "source_user_id, amount_micros, currency, rate_bp, vip_level, "
                               "status, release_at, transfer_id, created_at) VALUES ";
    static const char one[] = "(?, ?, ?, ?, ?, ?, ?, ?, 'held', ?, ?, ?)";
    static const char tail[] = " ON CONFLICT (order_id, depth) DO NOTHING";
    const char *sql = head;
    int64_t now = dm_now(), sum = 0;
    uint32_t there = 0;
    int row = 0;
    dm_stmt *st;
    dm_err *e = depths_there(db, p, order_id, &there);

    if (e) {
        return e;
    }
    for (int i = 0; i < rows; i++) {
        sql = apr_pstrcat(p, sql, i ? ", " : "", one, NULL);
        if (c[i]->depth >= 0 && c[i]->depth < 32 && (there >> c[i]->depth) & 1) {
            continue;
        }
        if (__builtin_add_overflow(sum, amounts[i], &sum)) {
            return dm_err_make(p, DM_E_INVALID, "amount_micros",
                               "the commissions of order %" APR_INT64_T_FMT " are too large",
                               (apr_int64_t)order_id);
        }
    }
    e = dm_db_prepare(db, p, apr_pstrcat(p, sql, tail, NULL), &st);
    if (e) {
        return e;
    }
    for (int i = 0; i < rows; i++) {
        int b = i * 11;
        dm_stmt_bind_int64(st, b + 1, order_id);
        dm_stmt_bind_int64(st, b + 2, c[i]->depth);
        dm_stmt_bind_int64(st, b + 3, c[i]->ancestor);
        dm_stmt_bind_int64(st, b + 4, buyer_id);
        dm_stmt_bind_int64(st, b + 5, amounts[i]);
        dm_stmt_bind_str(st, b + 6, currency);
        dm_stmt_bind_int64(st, b + 7, c[i]->rate_bp);
        dm_stmt_bind_int64(st, b + 8, c[i]->vip_level);
        dm_stmt_bind_int64(st, b + 9, now + hold);
        dm_stmt_bind_int64(st, b + 10, transfer_ids[i]);
        dm_stmt_bind_int64(st, b + 11, now);
    }
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e && sum > 0) {
        e = count_in_stats(db, p, now, currency, sum);
    }
    return e;
}

/* The credits of one split: the beneficiaries' held accounts (read with
 * the upline; the missing ones created in depth order, as one transfer at a
 * time did), then every transfer in one
 * dm_ledger_post_many — the commissions account is debited once, not once
 * per level — then the rows. Same keys, ids, amounts and balances as a
 * transfer per level, at a third of the statements. */
static dm_err *credit_all(dm_db *db, apr_pool_t *p, int64_t order_id, int64_t buyer_id,
                          const credit *const *c, const int64_t *amounts, int rows,
                          const char *currency, int64_t source, int64_t hold)
{
    dm_transfer_req reqs[DM_REFERRAL_LEVELS];
    int created[DM_REFERRAL_LEVELS];
    int64_t ids[DM_REFERRAL_LEVELS], held[DM_REFERRAL_LEVELS];
    const char *reference = apr_psprintf(p, "order:%" APR_INT64_T_FMT, (apr_int64_t)order_id);
    dm_err *e = NULL;

    memset(reqs, 0, sizeof(reqs));
    for (int i = 0; !e && i < rows; i++) {
        held[i] = c[i]->held;
        if (!held[i]) {
            e = dm_ledger_member_account(db, p, c[i]->ancestor, DM_ACCOUNT_HELD, currency,
                                         &held[i]);
        }
        reqs[i].idempotency_key =
            apr_psprintf(p, "comm:%" APR_INT64_T_FMT ":%d", (apr_int64_t)order_id, c[i]->depth);
        reqs[i].debit_account_id = source;
        reqs[i].credit_account_id = held[i];
        reqs[i].amount_micros = amounts[i];
        reqs[i].currency = currency;
        reqs[i].kind = DM_KIND_COMMISSION;
        reqs[i].reference = reference;
    }
    if (!e) {
        e = dm_ledger_post_many(db, p, reqs, rows, created, ids);
    }
    return e ? e : insert_credits(db, p, order_id, buyer_id, c, amounts, ids, rows, currency, hold);
}

dm_err *dm_commission_pay(dm_db *db, apr_pool_t *p, int64_t order_id, int64_t buyer_id,
                          int64_t amount_micros, const char *currency)
{
    return dm_commission_pay_via(db, p, order_id, buyer_id, amount_micros, currency, NULL);
}

dm_err *dm_commission_pay_via(dm_db *db, apr_pool_t *p, int64_t order_id, int64_t buyer_id,
                              int64_t amount_micros, const char *currency, const char *gateway)
{
    int64_t hold = dm_commission_hold_for(gateway);
    credit up[DM_REFERRAL_LEVELS];
    const credit *paid[DM_REFERRAL_LEVELS];
    int64_t ids[DM_REFERRAL_LEVELS], amounts[DM_REFERRAL_LEVELS], source = 0;
    int n = 0, fresh = 0, rows = 0;
    dm_err *e = need_txn(db, p, "paying commissions");

    if (e) {
        return e;
    }
    if (order_id <= 0 || buyer_id <= 0) {
        return dm_err_make(p, DM_E_INVALID, "order_id", "an order and a buyer are positive ids");
    }
    if (amount_micros <= 0) {
        return dm_err_make(p, DM_E_INVALID, "amount_micros", "an order amount is more than zero");
    }
    if (!currency || strlen(currency) != 3) {
        return dm_err_make(p, DM_E_INVALID, "currency", "currency is three capital letters");
    }
    e = record_order(db, p, order_id, buyer_id, amount_micros, currency, &fresh);
    if (e || !fresh) {
        return e;
    }
    e = read_upline(db, p, buyer_id, currency, up, &n);
    if (!e) {
        e = dm_ledger_system_account(db, p, DM_SYS_COMMISSIONS, currency, &source);
    }
    for (int i = 0; !e && i < n; i++) {
        int64_t product = 0, amount;
        ids[i] = up[i].ancestor;
        if (up[i].suspended || up[i].rate_bp <= 0) {
            continue;
        }
        if (__builtin_mul_overflow(amount_micros, (int64_t)up[i].rate_bp, &product)) {
            e = dm_err_make(p, DM_E_INVALID, "amount_micros",
                            "order amount %" APR_INT64_T_FMT " is too large to split",
                            (apr_int64_t)amount_micros);
            break;
        }
        amount = product / 10000; /* both >= 0: division rounds down */
        if (amount > 0) {
            paid[rows] = &up[i];
            amounts[rows++] = amount;
        }
    }
    if (!e && rows) {
        e = credit_all(db, p, order_id, buyer_id, paid, amounts, rows, currency, source, hold);
    }
    /* Volumes are in the platform currency (docs/commissions.md). */
    if (!e && strcmp(currency, DM_LEDGER_CURRENCY) == 0) {
        e = dm_vip_count_order(db, p, buyer_id, ids, n, amount_micros, 1);
    }
    return e;
}

typedef struct held_row {
    int64_t id;
    int64_t beneficiary;
    int64_t kept; /* amount_micros - clawed_micros */
    const char *currency;
    int depth;
    int held;
} held_row;

/* floor(kept x part / left), in 128 bits; all of it when part == left. */
static int64_t share_of(int64_t kept, int64_t part, int64_t left)
{
    if (part >= left) {
        return kept;
    }
    return (int64_t)(((__int128)kept * part) / left);
}

static dm_err *claw_one(dm_db *db, apr_pool_t *p, int64_t order_id, const held_row *h,
                        int64_t amount, int last, const char *key, int64_t sink)
{
    int64_t from = 0;
    dm_transfer_req req;
    dm_transfer t;
    dm_stmt *st;
    int created = 0, row = 0;
    dm_err *e = dm_ledger_member_account(
        db, p, h->beneficiary, h->held ? DM_ACCOUNT_HELD : DM_ACCOUNT_WALLET, h->currency, &from);

    memset(&t, 0, sizeof(t));
    if (!e && amount > 0) {
        memset(&req, 0, sizeof(req));
        req.idempotency_key = key;
        req.debit_account_id = from;
        req.credit_account_id = sink;
        req.amount_micros = amount;
        req.currency = h->currency;
        req.kind = DM_KIND_COMMISSION_CLAWBACK;
        req.reference = apr_psprintf(p, "order:%" APR_INT64_T_FMT, (apr_int64_t)order_id);
        e = dm_ledger_transfer(db, p, &req, &t, &created);
        if (!e && !created) {
            return NULL; /* this step was taken before: the row says so already */
        }
    }
    if (!e && last) {
        e = dm_db_prepare(db, p,
                          "UPDATE commissions SET clawed_micros = clawed_micros + ?, "
                          "status = 'clawed_back', clawback_transfer_id = ? WHERE id = ?",
                          &st);
        if (!e) {
            dm_stmt_bind_int64(st, 1, amount);
            if (t.id) {
                dm_stmt_bind_int64(st, 2, t.id);
            } else {
                dm_stmt_bind_null(st, 2);
            }
            dm_stmt_bind_int64(st, 3, h->id);
        }
    } else if (!e) {
        e = dm_db_prepare(
            db, p, "UPDATE commissions SET clawed_micros = clawed_micros + ? WHERE id = ?", &st);
        if (!e) {
            dm_stmt_bind_int64(st, 1, amount);
            dm_stmt_bind_int64(st, 2, h->id);
        }
    }
    if (!e) {
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    return e;
}

dm_err *dm_commission_refund(dm_db *db, apr_pool_t *p, int64_t order_id, int64_t part_micros,
                             const char *why)
{
    apr_array_header_t *rows = apr_array_make(p, DM_REFERRAL_LEVELS, sizeof(held_row));
    int64_t buyer = 0, amount = 0, refunded = 0, left, sink = 0;
    const char *currency = NULL, *suffix;
    int64_t ids[DM_REFERRAL_LEVELS];
    int row = 0, paid = 0, n = 0, last;
    dm_stmt *st;
    dm_err *e = need_txn(db, p, "a clawback");

    if (e) {
        return e;
    }
    e = dm_db_prepare(db, p,
                      "SELECT buyer_id, amount_micros, currency, status, refunded_micros "
                      "FROM commission_orders WHERE order_id = ?",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, order_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        buyer = dm_stmt_int64(st, 0);
        amount = dm_stmt_int64(st, 1);
        currency = apr_pstrdup(p, dm_stmt_text(st, 2, NULL));
        paid = strcmp(dm_stmt_text(st, 3, NULL), "paid") == 0;
        refunded = dm_stmt_int64(st, 4);
    }
    dm_stmt_done(st);
    if (e || !row || !paid) {
        return e; /* never paid, or refunded already: nothing to take back */
    }
    left = amount - refunded;
    if (part_micros <= 0 || part_micros > left) {
        return dm_err_make(p, DM_E_INVALID, "amount_micros",
                           "order %" APR_INT64_T_FMT " has %" APR_INT64_T_FMT
                           " left to refund, not %" APR_INT64_T_FMT,
                           (apr_int64_t)order_id, (apr_int64_t)left, (apr_int64_t)part_micros);
    }
    last = part_micros == left;
    /* The whole order at once keeps the key it always had; a part is named
     * by the order's refunded total after it (which only grows). */
    suffix = (last && refunded == 0)
                 ? ""
                 : apr_psprintf(p, ":%" APR_INT64_T_FMT, (apr_int64_t)(refunded + part_micros));
    e = dm_db_prepare(
        db, p,
        "SELECT id, depth, beneficiary_id, amount_micros - clawed_micros, currency, "
        "status FROM commissions WHERE order_id = ? AND status IN ('held', 'available') "
        "ORDER BY depth",
        &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, order_id);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        held_row *h = apr_array_push(rows);
        h->id = dm_stmt_int64(st, 0);
        h->depth = (int)dm_stmt_int64(st, 1);
        h->beneficiary = dm_stmt_int64(st, 2);
        h->kept = dm_stmt_int64(st, 3);
        h->currency = apr_pstrdup(p, dm_stmt_text(st, 4, NULL));
        h->held = strcmp(dm_stmt_text(st, 5, NULL), "held") == 0;
    }
    dm_stmt_done(st);
    if (!e && rows->nelts) {
        e = dm_ledger_system_account(db, p, DM_SYS_COMMISSIONS, currency, &sink);
    }
    for (int i = 0; !e && i < rows->nelts; i++) {
        const held_row *h = &APR_ARRAY_IDX(rows, i, held_row);
        e = claw_one(db, p, order_id, h, share_of(h->kept, part_micros, left), last,
                     apr_psprintf(p, "clawback:%" APR_INT64_T_FMT ":%d%s", (apr_int64_t)order_id,
                                  h->depth, suffix),
                     sink);
    }
    if (e) {
        return e;
    }
    e = dm_db_prepare(db, p,
                      "UPDATE commission_orders SET refunded_micros = refunded_micros + ?, "
                      "status = CASE WHEN refunded_micros + ? >= amount_micros THEN 'refunded' "
                      "ELSE status END, refunded_at = CASE WHEN refunded_micros + ? >= "
                      "amount_micros THEN ? ELSE refunded_at END WHERE order_id = ?",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, part_micros);
    dm_stmt_bind_int64(st, 2, part_micros);
    dm_stmt_bind_int64(st, 3, part_micros);
    dm_stmt_bind_int64(st, 4, dm_now());
    dm_stmt_bind_int64(st, 5, order_id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e) {
        e = dm_referral_upline(db, p, buyer, ids, &n);
    }
    /* Volumes are in the platform currency (docs/commissions.md). */
    if (!e && strcmp(currency, DM_LEDGER_CURRENCY) == 0) {
        e = dm_vip_refund_order(db, p, order_id, buyer, ids, n, part_micros, last, why);
    }
    return e;
}

dm_err *dm_commission_clawback(dm_db *db, apr_pool_t *p, int64_t order_id)
{
    int64_t left = 0;
    int found = 0;
    dm_stmt *st;
    dm_err *e = need_txn(db, p, "a clawback");

    if (!e) {
        e = dm_db_prepare(db, p,
                          "SELECT amount_micros - refunded_micros FROM commission_orders "
                          "WHERE order_id = ? AND status = 'paid'",
                          &st);
    }
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, order_id);
    e = dm_stmt_step(st, p, &found);
    if (!e && found) {
        left = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    if (e || !found || left <= 0) {
        return e; /* never paid, or refunded already */
    }
    return dm_commission_refund(db, p, order_id, left, NULL);
}

/* ---- release ---- */

typedef struct due_row {
    int64_t id;
    int64_t beneficiary;
    int64_t amount;
    const char *currency;
} due_row;

/* Due, held, its beneficiary active (a suspended member's commissions stay
 * held), and the buyer named by no open or confirmed flag, on either side:
 * a flagged member's purchase holds what it paid at every depth, not only
 * the pair's (each NOT EXISTS is one probe of member_flags_user or
 * member_flags_related). */
#define DUE_SQL                                                                                    \
    "SELECT c.id, c.beneficiary_id, c.amount_micros - c.clawed_micros, c.currency "                \
    "FROM commissions c JOIN users b ON b.id = c.beneficiary_id AND b.status = 'active' "          \
    "WHERE c.status = 'held' AND c.release_at <= ? AND c.id > ? "                                  \
    "AND NOT EXISTS (SELECT 1 FROM member_flags f WHERE f.user_id = c.source_user_id "             \
    "AND f.status IN ('open', 'confirmed')) "                                                      \
    "AND NOT EXISTS (SELECT 1 FROM member_flags f WHERE f.related_user_id = c.source_user_id "     \
    "AND f.status IN ('open', 'confirmed')) "                                                      \
    "AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = c.order_id AND o.dispute = 'open') "      \
    "ORDER BY c.id LIMIT ?"

static dm_err *release_one(dm_db *db, apr_pool_t *p, const due_row *d)
{
    int64_t held = 0, wallet = 0;
    dm_transfer_req req;
    dm_transfer t;
    dm_stmt *st;
    int created = 0, row;
    dm_err *e =
        dm_ledger_member_account(db, p, d->beneficiary, DM_ACCOUNT_HELD, d->currency, &held);

    if (!e) {
        e = dm_ledger_member_account(db, p, d->beneficiary, DM_ACCOUNT_WALLET, d->currency,
                                     &wallet);
    }
    if (e) {
        return e;
    }
    memset(&req, 0, sizeof(req));
    req.idempotency_key = apr_psprintf(p, "release:%" APR_INT64_T_FMT, (apr_int64_t)d->id);
    req.debit_account_id = held;
    req.credit_account_id = wallet;
    req.amount_micros = d->amount;
    req.currency = d->currency;
    req.kind = DM_KIND_COMMISSION_RELEASE;
    req.reference = apr_psprintf(p, "commission:%" APR_INT64_T_FMT, (apr_int64_t)d->id);
    e = dm_ledger_transfer(db, p, &req, &t, &created);
    if (!e) {
        e = dm_db_prepare(db, p,
                          "UPDATE commissions SET status = 'available', released_transfer_id = ? "
                          "WHERE id = ? AND status = 'held'",
                          &st);
    }
    if (!e) {
        dm_stmt_bind_int64(st, 1, t.id);
        dm_stmt_bind_int64(st, 2, d->id);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    return e;
}

static dm_err *release_batch(dm_db *db, apr_pool_t *p, int64_t now, int64_t *after, int *count)
{
    apr_array_header_t *due = apr_array_make(p, 64, sizeof(due_row));
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, DUE_SQL, &st);

    *count = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, now);
    dm_stmt_bind_int64(st, 2, *after);
    dm_stmt_bind_int64(st, 3, RELEASE_BATCH);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        due_row *d = apr_array_push(due);
        d->id = dm_stmt_int64(st, 0);
        d->beneficiary = dm_stmt_int64(st, 1);
        d->amount = dm_stmt_int64(st, 2);
        d->currency = apr_pstrdup(p, dm_stmt_text(st, 3, NULL));
    }
    dm_stmt_done(st);
    for (int i = 0; !e && i < due->nelts; i++) {
        const due_row *d = &APR_ARRAY_IDX(due, i, due_row);
        e = release_one(db, p, d);
        *after = d->id;
    }
    if (!e) {
        *count = due->nelts;
    }
    return e;
}

dm_err *dm_commission_release_due(dm_db *db, apr_pool_t *p, int64_t now, int64_t *released)
{
    int own = !dm_db_in_transaction(db), count = 0;
    int64_t after = 0;
    dm_err *e = NULL;

    *released = 0;
    /* Batches, each in its own transaction when the caller has none, so a
     * large backlog does not hold the write lock for long. */
    do {
        apr_pool_t *sub;
        apr_pool_create(&sub, p);
        if (own) {
            e = dm_db_begin(db, sub);
        }
        if (!e) {
            e = release_batch(db, sub, now, &after, &count);
        }
        if (own && e) {
            dm_db_rollback(db);
        } else if (own) {
            e = dm_db_commit(db, sub);
        }
        if (e) {
            e = dm_err_make(p, e->code, e->field, "%s", e->message);
        } else {
            *released += count;
        }
        apr_pool_destroy(sub);
    } while (!e && count == RELEASE_BATCH);
    return e;
}

/* ---- forfeits ---- */

#define FORFEIT_REASON_MAX 500

typedef struct forfeit_row {
    int64_t id;
    int64_t beneficiary;
    int64_t amount;
    const char *currency;
    const char *status;
    const char *beneficiary_status;
    int buyer_confirmed; /* a confirmed flag names the buyer */
} forfeit_row;

#define FORFEIT_SQL                                                                                \
    "SELECT c.id, c.beneficiary_id, c.amount_micros, c.currency, c.status, b.status, "             \
    "EXISTS (SELECT 1 FROM member_flags f WHERE f.status = 'confirmed' AND "                       \
    "(f.user_id = c.source_user_id OR f.related_user_id = c.source_user_id)) "                     \
    "FROM commissions c JOIN users b ON b.id = c.beneficiary_id "

static void read_forfeit_row(dm_stmt *st, apr_pool_t *p, forfeit_row *r)
{
    r->id = dm_stmt_int64(st, 0);
    r->beneficiary = dm_stmt_int64(st, 1);
    r->amount = dm_stmt_int64(st, 2);
    r->currency = dm_stmt_dup_text(st, p, 3);
    r->status = dm_stmt_dup_text(st, p, 4);
    r->beneficiary_status = dm_stmt_dup_text(st, p, 5);
    r->buyer_confirmed = dm_stmt_int64(st, 6) != 0;
}

/* Only a held commission, and only for what a forfeit is for: its
 * beneficiary is suspended, or a confirmed flag names its buyer. */
static dm_err *forfeitable(apr_pool_t *p, const forfeit_row *r)
{
    if (strcmp(r->status, "held") != 0) {
        return dm_err_make(p, DM_E_CONFLICT, NULL,
                           "commission %" APR_INT64_T_FMT " is %s: only a held commission can be "
                           "forfeited",
                           (apr_int64_t)r->id, r->status);
    }
    if (strcmp(r->beneficiary_status, "active") == 0 && !r->buyer_confirmed) {
        return dm_err_make(p, DM_E_CONFLICT, NULL,
                           "commission %" APR_INT64_T_FMT " is held only for its hold period: its "
                           "beneficiary (member %" APR_INT64_T_FMT ") is active and no confirmed "
                           "flag names its buyer; suspend the member or confirm the flag first",
                           (apr_int64_t)r->id, (apr_int64_t)r->beneficiary);
    }
    return NULL;
}

/* held -> forfeited_commissions, the row marked, the audit entry. */
static dm_err *forfeit_one(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                           const forfeit_row *r, const char *reason)
{
    int64_t held = 0, sink = 0;
    dm_transfer_req req;
    dm_transfer t;
    dm_stmt *st;
    int created = 0, row = 0;
    const char *id = apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)r->id);
    dm_err *e =
        dm_ledger_member_account(db, p, r->beneficiary, DM_ACCOUNT_HELD, r->currency, &held);

    if (!e) {
        e = dm_ledger_system_account(db, p, DM_SYS_FORFEITED_COMMISSIONS, r->currency, &sink);
    }
    if (e) {
        return e;
    }
    memset(&req, 0, sizeof(req));
    req.idempotency_key = apr_pstrcat(p, "forfeit:", id, NULL);
    req.debit_account_id = held;
    req.credit_account_id = sink;
    req.amount_micros = r->amount;
    req.currency = r->currency;
    req.kind = DM_KIND_COMMISSION_FORFEIT;
    req.reference = apr_pstrcat(p, "commission:", id, NULL);
    e = dm_ledger_transfer(db, p, &req, &t, &created);
    if (!e) {
        e = dm_db_prepare(db, p,
                          "UPDATE commissions SET status = 'forfeited', forfeit_transfer_id = ? "
                          "WHERE id = ? AND status = 'held'",
                          &st);
    }
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, t.id);
    dm_stmt_bind_int64(st, 2, r->id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e && dm_db_changes(db) != 1) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL,
                        "commission %s is no longer held: only a held commission can be forfeited",
                        id);
    }
    if (e) {
        return e;
    }
    return dm_audit_write(
        db, p, staff_id, "commission.forfeit", "commission", id,
        dm_json_own(p, json_pack("{s:s,s:I}", "status", "held", "beneficiary_id",
                                 (json_int_t)r->beneficiary)),
        dm_json_own(p, json_pack("{s:s,s:I,s:I,s:s,s:s}", "status", "forfeited", "transfer_id",
                                 (json_int_t)t.id, "amount_micros", (json_int_t)r->amount,
                                 "currency", r->currency, "reason", reason)),
        ip);
}

static dm_err *check_reason(apr_pool_t *p, const char *reason)
{
    if (!reason || !*reason) {
        return dm_err_make(p, DM_E_INVALID, "reason", "a forfeit needs a reason");
    }
    return dm_validate_text(p, "reason", reason, FORFEIT_REASON_MAX, 1);
}

static dm_err *commission_row_get(dm_db *db, apr_pool_t *p, int64_t id, dm_commission_row *out);

static dm_err *forfeit_txn(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                           int64_t commission_id, const char *reason)
{
    forfeit_row r;
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, FORFEIT_SQL "WHERE c.id = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, commission_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        read_forfeit_row(st, p, &r);
    }
    dm_stmt_done(st);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "no commission %" APR_INT64_T_FMT,
                        (apr_int64_t)commission_id);
    }
    if (!e) {
        e = forfeitable(p, &r);
    }
    return e ? e : forfeit_one(db, p, staff_id, ip, &r, reason);
}

dm_err *dm_commission_forfeit(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                              int64_t commission_id, const char *reason, dm_commission_row *out)
{
    dm_err *e = check_reason(p, reason);

    if (!e) {
        e = dm_db_begin(db, p);
    }
    if (e) {
        return e;
    }
    e = forfeit_txn(db, p, staff_id, ip, commission_id, reason);
    if (!e) {
        e = commission_row_get(db, p, commission_id, out);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

static dm_err *forfeit_member_txn(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                                  int64_t user_id, const char *reason, int64_t *count,
                                  int64_t *amount)
{
    apr_array_header_t *rows = apr_array_make(p, 16, sizeof(forfeit_row));
    const char *status = NULL;
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, "SELECT status FROM users WHERE id = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        status = dm_stmt_dup_text(st, p, 0);
    }
    dm_stmt_done(st);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "no member %" APR_INT64_T_FMT,
                        (apr_int64_t)user_id);
    } else if (!e && strcmp(status, "suspended") != 0) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL,
                        "member %" APR_INT64_T_FMT " is %s: all of a member's held commissions "
                        "are forfeited only when the account is suspended (forfeit one "
                        "commission at a time otherwise)",
                        (apr_int64_t)user_id, status);
    }
    if (!e) {
        e = dm_db_prepare(db, p,
                          FORFEIT_SQL "WHERE c.beneficiary_id = ? AND c.status = 'held' "
                                      "ORDER BY c.id",
                          &st);
    }
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        read_forfeit_row(st, p, apr_array_push(rows));
    }
    dm_stmt_done(st);
    for (int i = 0; !e && i < rows->nelts; i++) {
        const forfeit_row *r = &APR_ARRAY_IDX(rows, i, forfeit_row);
        e = forfeit_one(db, p, staff_id, ip, r, reason);
        /* the total is in the platform currency (orders in another are rare) */
        if (!e && strcmp(r->currency, DM_LEDGER_CURRENCY) == 0 &&
            __builtin_add_overflow(*amount, r->amount, amount)) {
            e = dm_err_make(p, DM_E_INTERNAL, NULL, "forfeit: the total overflows");
        }
        if (!e) {
            (*count)++;
        }
    }
    return e;
}

dm_err *dm_commission_forfeit_member(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                                     int64_t user_id, const char *reason, int64_t *count,
                                     int64_t *amount_micros)
{
    dm_err *e = check_reason(p, reason);

    *count = 0;
    *amount_micros = 0;
    if (!e) {
        e = dm_db_begin(db, p);
    }
    if (e) {
        return e;
    }
    e = forfeit_member_txn(db, p, staff_id, ip, user_id, reason, count, amount_micros);
    if (e) {
        dm_db_rollback(db);
        *count = 0;
        *amount_micros = 0;
        return e;
    }
    return dm_db_commit(db, p);
}

/* ---- lists ---- */

#define ROW_SQL                                                                                    \
    "SELECT c.id, c.order_id, c.depth, c.beneficiary_id, c.source_user_id, u.email, "              \
    "c.amount_micros, c.currency, c.rate_bp, c.vip_level, c.status, c.release_at, c.created_at, "  \
    "c.clawed_micros FROM commissions c JOIN users u ON u.id = c.source_user_id "

static void read_row(dm_stmt *st, apr_pool_t *p, dm_commission_row *c)
{
    c->id = dm_stmt_int64(st, 0);
    c->order_id = dm_stmt_int64(st, 1);
    c->depth = (int)dm_stmt_int64(st, 2);
    c->beneficiary_id = dm_stmt_int64(st, 3);
    c->source_user_id = dm_stmt_int64(st, 4);
    c->source_masked_email = dm_mask_email(p, dm_stmt_text(st, 5, NULL));
    c->amount_micros = dm_stmt_int64(st, 6);
    c->currency = dm_stmt_dup_text(st, p, 7);
    c->rate_bp = (int)dm_stmt_int64(st, 8);
    c->vip_level = (int)dm_stmt_int64(st, 9);
    c->status = dm_stmt_dup_text(st, p, 10);
    c->release_at = dm_stmt_int64(st, 11);
    c->created_at = dm_stmt_int64(st, 12);
    c->clawed_micros = dm_stmt_int64(st, 13);
}

static dm_err *commission_row_get(dm_db *db, apr_pool_t *p, int64_t id, dm_commission_row *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, ROW_SQL "WHERE c.id = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        read_row(st, p, out);
    }
    dm_stmt_done(st);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "no commission %" APR_INT64_T_FMT,
                        (apr_int64_t)id);
    }
    return e;
}

/* Steps a prepared list statement: up to limit rows, *next_cursor the last
 * id shown when there is more. */
static dm_err *collect(dm_stmt *st, apr_pool_t *p, int limit, apr_array_header_t *rows,
                       int64_t *next_cursor)
{
    int row = 0;
    dm_err *e;

    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        if (rows->nelts == limit) {
            *next_cursor = APR_ARRAY_IDX(rows, rows->nelts - 1, dm_commission_row).id;
            break;
        }
        read_row(st, p, apr_array_push(rows));
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_commission_list(dm_db *db, apr_pool_t *p, int64_t beneficiary_id, int64_t cursor,
                           int limit, apr_array_header_t **rows, int64_t *next_cursor)
{
    dm_stmt *st;
    dm_err *e;

    *next_cursor = 0;
    *rows = apr_array_make(p, limit > 0 ? limit : 1, sizeof(dm_commission_row));
    if (limit < 1 || limit > PAGE_MAX) {
        return dm_err_make(p, DM_E_INVALID, "limit", "limit must be from 1 to %d", PAGE_MAX);
    }
    e = dm_db_prepare(
        db, p, ROW_SQL "WHERE c.beneficiary_id = ? AND c.id < ? ORDER BY c.id DESC LIMIT ?", &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, beneficiary_id);
    dm_stmt_bind_int64(st, 2, cursor > 0 ? cursor : INT64_MAX);
    dm_stmt_bind_int64(st, 3, (int64_t)limit + 1);
    return collect(st, p, limit, *rows, next_cursor);
}

static int status_known(const char *s)
{
    return strcmp(s, "held") == 0 || strcmp(s, "available") == 0 || strcmp(s, "clawed_back") == 0 ||
           strcmp(s, "forfeited") == 0;
}

dm_err *dm_commission_admin_list(dm_db *db, apr_pool_t *p, const dm_commission_filter *f,
                                 int64_t cursor, int limit, apr_array_header_t **rows,
                                 int64_t *next_cursor)
{
    dm_stmt *st;
    int i = 1;
    dm_err *e;

    *next_cursor = 0;
    *rows = apr_array_make(p, limit > 0 ? limit : 1, sizeof(dm_commission_row));
    if (limit < 1 || limit > PAGE_MAX) {
        return dm_err_make(p, DM_E_INVALID, "limit", "limit must be from 1 to %d", PAGE_MAX);
    }
    if (f->status && !status_known(f->status)) {
        return dm_err_make(p, DM_E_INVALID, "status",
                           "status is held, available, clawed_back or forfeited");
    }
    /* One text per index: the beneficiary's, the buyer's, or the ids. */
    e = dm_db_prepare(db, p,
                      f->beneficiary_id ? ROW_SQL "WHERE c.beneficiary_id = ? AND (? = 0 OR "
                                                  "c.source_user_id = ?) AND (? IS NULL OR "
                                                  "c.status = ?) AND c.id < ? "
                                                  "ORDER BY c.id DESC LIMIT ?"
                      : f->buyer_id     ? ROW_SQL "WHERE c.source_user_id = ? AND (? IS NULL OR "
                                                  "c.status = ?) AND c.id < ? "
                                                  "ORDER BY c.id DESC LIMIT ?"
                                        : ROW_SQL "WHERE (? IS NULL OR c.status = ?) AND c.id < ? "
                                                  "ORDER BY c.id DESC LIMIT ?",
                      &st);
    if (e) {
        return e;
    }
    if (f->beneficiary_id) {
        dm_stmt_bind_int64(st, i++, f->beneficiary_id);
        dm_stmt_bind_int64(st, i++, f->buyer_id);
        dm_stmt_bind_int64(st, i++, f->buyer_id);
    } else if (f->buyer_id) {
        dm_stmt_bind_int64(st, i++, f->buyer_id);
    }
    dm_stmt_bind_str(st, i++, f->status);
    dm_stmt_bind_str(st, i++, f->status);
    dm_stmt_bind_int64(st, i++, cursor > 0 ? cursor : INT64_MAX);
    dm_stmt_bind_int64(st, i, (int64_t)limit + 1);
    return collect(st, p, limit, *rows, next_cursor);
}

json_t *dm_commission_staff_json(apr_pool_t *p, const dm_commission_row *c)
{
    json_t *o = dm_commission_row_json(p, c);

    json_object_set_new(o, "beneficiary_id", json_integer(c->beneficiary_id));
    json_object_set_new(o, "buyer_id", json_integer(c->source_user_id));
    return o;
}

json_t *dm_commission_row_json(apr_pool_t *p, const dm_commission_row *c)
{
    return json_pack("{s:I,s:I,s:i,s:I,s:s,s:i,s:i,s:s,s:s,s:s,s:s,s:I}", "id", (json_int_t)c->id,
                     "order_id", (json_int_t)c->order_id, "depth", c->depth, "amount_micros",
                     (json_int_t)c->amount_micros, "currency", c->currency, "rate_bp", c->rate_bp,
                     "vip_level", c->vip_level, "status", c->status, "source_email",
                     c->source_masked_email, "release_at", dm_json_time(p, c->release_at),
                     "created_at", dm_json_time(p, c->created_at), "clawed_micros",
                     (json_int_t)c->clawed_micros);
}
