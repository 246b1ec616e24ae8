/*
 * refunds.c — see refunds.h. One refund is, in order: the guarded move of
 * the order's refunded total, the refund transfer (so a balance refund
 * reaches the wallet before anything is taken from it), its order_refunds
 * row, the purchase commissions and volumes (commission.c), then the
 * contract's yield and the yield commissions paid on it, and the
 * contract's new share or end.
 *
 * Every clawback is floor(kept x part / left) in 128 bits, `left` being
 * what was unrefunded before this refund; the last refund (part == left)
 * takes what is kept. What a floor leaves stays kept and is taken, in
 * proportion, by the next refund — so refunds that sum to the price take
 * back exactly everything.
 */
#include "shop/refunds.h"

#include <apr_hash.h>
#include <apr_strings.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"
#include "ledger/ledger.h"
#include "mail/mailq.h"
#include "referral/commission.h"
#include "shop/contracts.h"
#include "shop/orders.h"

/* Set by the host before it forks; read-only afterwards. */
static dm_partial_refund_mode partial_mode = DM_PARTIAL_REFUND_PRORATE;

void dm_refund_set_partial_mode(dm_partial_refund_mode mode)
{
    partial_mode = mode == DM_PARTIAL_REFUND_END_CONTRACT ? mode : DM_PARTIAL_REFUND_PRORATE;
}

dm_partial_refund_mode dm_refund_partial_mode(void)
{
    return partial_mode;
}

int dm_refund_mode_parse(const char *s, dm_partial_refund_mode *mode)
{
    if (s && strcmp(s, "prorate") == 0) {
        *mode = DM_PARTIAL_REFUND_PRORATE;
        return 0;
    }
    if (s && strcmp(s, "end-contract") == 0) {
        *mode = DM_PARTIAL_REFUND_END_CONTRACT;
        return 0;
    }
    return -1;
}

/* The refund's part of what is kept: floor(kept x part / left); all of it
 * for the last refund. */
static int64_t share_of(int64_t kept, int64_t part, int64_t left)
{
    if (kept <= 0) {
        return 0;
    }
    if (part >= left) {
        return kept;
    }
    return (int64_t)(((__int128)kept * part) / left);
}

typedef struct refund_run {
    dm_db *db;
    apr_pool_t *p;
    const dm_order *o;
    const dm_refund_req *req;
    int64_t part;   /* this refund */
    int64_t left;   /* unrefunded before it */
    int64_t after;  /* the order's refunded total after it */
    const char *sx; /* key suffix: "" when the whole order goes at once, else ":<after>" */
    int64_t now;
    int last;
} refund_run;

static dm_err *move_refunded_total(refund_run *r, int *applied)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(r->db, r->p,
                              "UPDATE orders SET refunded_micros = ?, status = ?, updated_at = ? "
                              "WHERE id = ? AND status = 'paid' AND refunded_micros = ?",
                              &st);

    *applied = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, r->after);
    dm_stmt_bind_str(st, 2, r->last ? "refunded" : "paid");
    dm_stmt_bind_int64(st, 3, r->now);
    dm_stmt_bind_int64(st, 4, r->o->id);
    dm_stmt_bind_int64(st, 5, r->o->refunded_micros);
    e = dm_stmt_step(st, r->p, &row);
    dm_stmt_done(st);
    if (!e) {
        *applied = dm_db_changes(r->db) == 1;
    }
    return e;
}

/* The money back to whoever paid. The whole order at once reverses the
 * payment (refund:<order>); a part is an ordinary refund transfer. */
static dm_err *refund_transfer(refund_run *r, int64_t *transfer_id)
{
    const dm_order *o = r->o;
    const char *ref = apr_psprintf(r->p, "order:%" APR_INT64_T_FMT, (apr_int64_t)o->id);
    int64_t payer = 0, sales = 0;
    dm_transfer_req req;
    dm_transfer t;
    int created = 0;
    dm_err *e;

    memset(&t, 0, sizeof(t));
    if (!o->payment_transfer_id) {
        return dm_err_make(r->p, DM_E_INTERNAL, NULL,
                           "order %" APR_INT64_T_FMT " is paid but has no payment transfer",
                           (apr_int64_t)o->id);
    }
    if (r->last && o->refunded_micros == 0) {
        e = dm_ledger_reverse(r->db, r->p, o->payment_transfer_id,
                              apr_psprintf(r->p, "refund:%" APR_INT64_T_FMT, (apr_int64_t)o->id),
                              DM_KIND_REFUND, ref, &t, &created);
        *transfer_id = t.id;
        return e;
    }
    if (strcmp(o->gateway, DM_ORDER_GATEWAY_BALANCE) == 0) {
        e = dm_ledger_member_account(r->db, r->p, o->user_id, DM_ACCOUNT_WALLET, o->currency,
                                     &payer);
    } else {
        e = dm_ledger_system_account(r->db, r->p,
                                     apr_pstrcat(r->p, DM_SYS_GATEWAY_PREFIX, o->gateway, NULL),
                                     o->currency, &payer);
    }
    if (!e) {
        e = dm_ledger_system_account(r->db, r->p, DM_SYS_SALES, o->currency, &sales);
    }
    if (e) {
        return e;
    }
    memset(&req, 0, sizeof(req));
    req.idempotency_key = apr_psprintf(r->p, "refund:%" APR_INT64_T_FMT ":%" APR_INT64_T_FMT,
                                       (apr_int64_t)o->id, (apr_int64_t)r->after);
    req.debit_account_id = sales;
    req.credit_account_id = payer;
    req.amount_micros = r->part;
    req.currency = o->currency;
    req.kind = DM_KIND_REFUND;
    req.reference = ref;
    e = dm_ledger_transfer(r->db, r->p, &req, &t, &created);
    *transfer_id = t.id;
    return e;
}

static dm_err *record(refund_run *r, int64_t transfer_id)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(r->db, r->p,
                              "INSERT INTO order_refunds (order_id, amount_micros, "
                              "refunded_after_micros, source, event, staff_id, reason, "
                              "transfer_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, r->o->id);
    dm_stmt_bind_int64(st, 2, r->part);
    dm_stmt_bind_int64(st, 3, r->after);
    dm_stmt_bind_str(st, 4, r->req->event ? "event" : "staff");
    dm_stmt_bind_str(st, 5, r->req->event);
    if (!r->req->event && r->req->staff_id) {
        dm_stmt_bind_int64(st, 6, r->req->staff_id);
    } else {
        dm_stmt_bind_null(st, 6);
    }
    dm_stmt_bind_str(st, 7, r->req->event ? NULL : r->req->reason);
    dm_stmt_bind_int64(st, 8, transfer_id);
    dm_stmt_bind_int64(st, 9, r->now);
    e = dm_stmt_step(st, r->p, &row);
    dm_stmt_done(st);
    return e;
}

/* A clawback from a member's wallet (a debt if it is not enough). */
static dm_err *claw(refund_run *r, int64_t from, const char *to_code, const char *currency,
                    int64_t amount, const char *kind, const char *key, const char *reference)
{
    int64_t to = 0;
    dm_transfer_req req;
    dm_transfer t;
    int created = 0;
    dm_err *e;

    if (amount <= 0) {
        return NULL;
    }
    e = dm_ledger_system_account(r->db, r->p, to_code, currency, &to);
    if (e) {
        return e;
    }
    memset(&req, 0, sizeof(req));
    req.idempotency_key = key;
    req.debit_account_id = from;
    req.credit_account_id = to;
    req.amount_micros = amount;
    req.currency = currency;
    req.kind = kind;
    req.reference = reference;
    return dm_ledger_transfer(r->db, r->p, &req, &t, &created);
}

/* The yield commissions paid on the contract's yield (ycomm:<contract>:…,
 * commissions -> a wallet) less those taken back (ycommback:<contract>:…,
 * the wallet -> commissions), per wallet; each gives back its share. */
static dm_err *claw_yield_commissions(refund_run *r, const dm_contract *c, const char *reference)
{
    apr_array_header_t *paid = NULL, *back = NULL;
    apr_hash_t *kept = apr_hash_make(r->p);
    apr_array_header_t *order = apr_array_make(r->p, 10, sizeof(int64_t));
    dm_err *e = dm_ledger_sums_by_key_prefix(
        r->db, r->p, apr_psprintf(r->p, "ycomm:%" APR_INT64_T_FMT ":", (apr_int64_t)c->id), &paid);

    if (!e) {
        e = dm_ledger_sums_by_key_prefix(
            r->db, r->p, apr_psprintf(r->p, "ycommback:%" APR_INT64_T_FMT ":", (apr_int64_t)c->id),
            &back);
    }
    if (e) {
        return e;
    }
    for (int i = 0; i < paid->nelts; i++) {
        const dm_ledger_pair_sum *s = &APR_ARRAY_IDX(paid, i, dm_ledger_pair_sum);
        int64_t *k = apr_pcalloc(r->p, sizeof(int64_t) * 2);
        k[0] = s->credit_account_id;
        k[1] = s->amount_micros;
        apr_hash_set(kept, &k[0], sizeof(int64_t), k);
        APR_ARRAY_PUSH(order, int64_t) = s->credit_account_id;
    }
    for (int i = 0; i < back->nelts; i++) {
        const dm_ledger_pair_sum *s = &APR_ARRAY_IDX(back, i, dm_ledger_pair_sum);
        int64_t *k = apr_hash_get(kept, &s->debit_account_id, sizeof(int64_t));
        if (k) {
            k[1] -= s->amount_micros;
        }
    }
    for (int i = 0; !e && i < order->nelts; i++) {
        int64_t account = APR_ARRAY_IDX(order, i, int64_t);
        const int64_t *k = apr_hash_get(kept, &account, sizeof(int64_t));
        e = claw(r, account, DM_SYS_COMMISSIONS, c->currency, share_of(k[1], r->part, r->left),
                 DM_KIND_COMMISSION_CLAWBACK,
                 apr_psprintf(r->p, "ycommback:%" APR_INT64_T_FMT ":%" APR_INT64_T_FMT "%s",
                              (apr_int64_t)c->id, (apr_int64_t)account, r->sx),
                 reference);
    }
    return e;
}

/* The contract: its yield and the yield commissions back in proportion,
 * then its new share (prorate), its end (end-contract), or — the last
 * refund — refunded. */
static dm_err *refund_contract(refund_run *r)
{
    dm_contract c;
    int found = 0, row = 0;
    int64_t wallet = 0, yield_back, released;
    const char *reference;
    dm_stmt *st;
    dm_err *e = dm_contract_of_order(r->db, r->p, r->o->id, &c, &found);

    if (e || !found) {
        return e;
    }
    reference = apr_psprintf(r->p, "contract:%" APR_INT64_T_FMT, (apr_int64_t)c.id);
    yield_back = share_of(c.earned_micros - c.yield_clawed_micros, r->part, r->left);
    e = dm_ledger_member_account(r->db, r->p, c.user_id, DM_ACCOUNT_WALLET, c.currency, &wallet);
    if (!e) {
        e = claw(r, wallet, DM_SYS_YIELD, c.currency, yield_back, DM_KIND_YIELD_CLAWBACK,
                 apr_psprintf(r->p, "yieldback:%" APR_INT64_T_FMT "%s", (apr_int64_t)c.id, r->sx),
                 reference);
    }
    if (!e) {
        e = claw_yield_commissions(r, &c, reference);
    }
    if (e) {
        return e;
    }
    if (r->last) {
        /* ended_at keeps an earlier end (an expired contract's expiry) */
        e = dm_db_prepare(r->db, r->p,
                          "UPDATE contracts SET status = 'refunded', refunded_micros = ?, "
                          "yield_clawed_micros = yield_clawed_micros + ?, released_ghs = 0, "
                          "ended_at = CASE WHEN ended_at IS NOT NULL AND ended_at < ? "
                          "THEN ended_at ELSE ? END WHERE id = ?",
                          &st);
        if (!e) {
            dm_stmt_bind_int64(st, 1, r->after);
            dm_stmt_bind_int64(st, 2, yield_back);
            dm_stmt_bind_int64(st, 3, r->now);
            dm_stmt_bind_int64(st, 4, r->now);
            dm_stmt_bind_int64(st, 5, c.id);
        }
    } else if (strcmp(c.status, "active") == 0 &&
               dm_refund_partial_mode() == DM_PARTIAL_REFUND_END_CONTRACT) {
        e = dm_db_prepare(r->db, r->p,
                          "UPDATE contracts SET status = 'ended', refunded_micros = ?, "
                          "yield_clawed_micros = yield_clawed_micros + ?, ended_at = ? "
                          "WHERE id = ?",
                          &st);
        if (!e) {
            dm_stmt_bind_int64(st, 1, r->after);
            dm_stmt_bind_int64(st, 2, yield_back);
            dm_stmt_bind_int64(st, 3, r->now);
            dm_stmt_bind_int64(st, 4, c.id);
        }
    } else {
        /* the hash rate the contract no longer runs on is for sale again */
        released = c.hashrate_ghs -
                   (int64_t)(((__int128)c.hashrate_ghs * (r->o->amount_micros - r->after)) /
                             r->o->amount_micros);
        e = dm_db_prepare(r->db, r->p,
                          "UPDATE contracts SET refunded_micros = ?, "
                          "yield_clawed_micros = yield_clawed_micros + ?, released_ghs = ? "
                          "WHERE id = ?",
                          &st);
        if (!e) {
            dm_stmt_bind_int64(st, 1, r->after);
            dm_stmt_bind_int64(st, 2, yield_back);
            dm_stmt_bind_int64(st, 3, released);
            dm_stmt_bind_int64(st, 4, c.id);
        }
    }
    if (!e) {
        e = dm_stmt_step(st, r->p, &row);
        dm_stmt_done(st);
    }
    return e;
}

/* The member's refund notice (template order_refunded), once per refund
 * (the key is the order and its refunded total after this one). */
static dm_err *refund_mail(const refund_run *r)
{
    dm_stmt *st;
    int row = 0;
    const char *email = NULL, *package = NULL;
    json_t *vars;
    dm_err *e =
        dm_db_prepare(r->db, r->p,
                      "SELECT u.email, k.name FROM users u LEFT JOIN packages k ON k.id = ? "
                      "WHERE u.id = ?",
                      &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, r->o->package_id);
    dm_stmt_bind_int64(st, 2, r->o->user_id);
    e = dm_stmt_step(st, r->p, &row);
    if (!e && row) {
        email = dm_stmt_dup_text(st, r->p, 0);
        package = dm_stmt_dup_text(st, r->p, 1);
    }
    dm_stmt_done(st);
    if (e || !email) {
        return e;
    }
    vars = dm_json_own(r->p, json_object());
    json_object_set_new(vars, "order_id", json_integer(r->o->id));
    json_object_set_new(vars, "package", json_string(package ? package : ""));
    json_object_set_new(vars, "amount_micros", json_integer(r->part));
    json_object_set_new(vars, "refunded_micros", json_integer(r->after));
    json_object_set_new(vars, "price_micros", json_integer(r->o->amount_micros));
    json_object_set_new(vars, "currency", json_string(r->o->currency));
    json_object_set_new(vars, "fully_refunded", json_boolean(r->last));
    return dm_mail_enqueue(r->db, r->p, email, "order_refunded", vars,
                           apr_psprintf(r->p,
                                        "order_refunded:%" APR_INT64_T_FMT ":%" APR_INT64_T_FMT,
                                        (apr_int64_t)r->o->id, (apr_int64_t)r->after));
}

dm_err *dm_refund_post(dm_db *db, apr_pool_t *p, const dm_order *o, const dm_refund_req *req,
                       int *applied, int *complete)
{
    refund_run r;
    int64_t transfer_id = 0;
    dm_err *e;

    *applied = 0;
    *complete = 0;
    if (!dm_db_in_transaction(db)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "refunds: a refund is posted in the caller's transaction");
    }
    memset(&r, 0, sizeof(r));
    r.db = db;
    r.p = p;
    r.o = o;
    r.req = req;
    r.part = req->amount_micros;
    r.left = o->amount_micros - o->refunded_micros;
    if (r.part <= 0 || r.part > r.left) {
        return dm_err_make(p, DM_E_INVALID, "amount_micros",
                           "order %" APR_INT64_T_FMT " has %" APR_INT64_T_FMT
                           " micros left to refund; a refund is 1 to that",
                           (apr_int64_t)o->id, (apr_int64_t)r.left);
    }
    if (strcmp(o->status, "paid") != 0) {
        return NULL;
    }
    r.after = o->refunded_micros + r.part;
    r.last = r.part == r.left;
    r.sx = r.last && o->refunded_micros == 0
               ? ""
               : apr_psprintf(p, ":%" APR_INT64_T_FMT, (apr_int64_t)r.after);
    r.now = dm_now();
    e = move_refunded_total(&r, applied);
    if (e || !*applied) {
        return e;
    }
    e = refund_transfer(&r, &transfer_id);
    if (!e) {
        e = record(&r, transfer_id);
    }
    if (!e) {
        e = dm_commission_refund(
            db, p, o->id, r.part,
            *r.sx ? apr_psprintf(
                        p, "refunded in part (%" APR_INT64_T_FMT " of %" APR_INT64_T_FMT " micros)",
                        (apr_int64_t)r.part, (apr_int64_t)o->amount_micros)
                  : NULL);
    }
    if (!e) {
        e = refund_contract(&r);
    }
    if (!e) {
        e = refund_mail(&r);
    }
    if (!e) {
        *complete = r.last;
    }
    return e;
}
