/*
 * ledger.c — see ledger.h. The only writer of `accounts` and `transfers`.
 *
 * A new transfer costs three statements: the INSERT (ON CONFLICT on the
 * idempotency key DO NOTHING), then two guarded balance UPDATEs whose
 * WHERE clauses hold the whole rule (currency, the non-negative rule, no
 * int64 overflow), so the hot path reads no balance. A replayed key costs
 * the INSERT and one SELECT of the original. Only when an UPDATE matches no
 * row does the code read the account, to say why (and to undo what it
 * wrote), so a refusal leaves the caller's transaction as it found it.
 *
 * A batch (dm_ledger_post_many, the accrual's million credits an hour)
 * inserts 64 rows per statement (their ids given by the statement: the
 * highest id + the row's rank) and moves each account once by the sum of
 * its inserted rows, 128 accounts per UPDATE … FROM (VALUES …): the yield
 * account's row is written once per batch instead of once per credit,
 * which is what made the one-by-one path slow, and a commission split is
 * one INSERT and one UPDATE.
 */
#include "ledger/ledger.h"

#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <stdlib.h>
#include <sodium.h>
#include <string.h>

#include "base/clock.h"
#include "store/audit.h"
#include "base/json.h"
#include "base/validate.h"

#define REASON_MAX_CHARS 500
#define GATEWAY_NAME_MAX 64

static const struct kind_def {
    const char *name;
    int clawback; /* may take a wallet below zero */
} kinds[] = {
    {DM_KIND_ADJUSTMENT, 0},
    {DM_KIND_DEPOSIT, 0},
    {DM_KIND_PURCHASE, 0},
    {DM_KIND_COMMISSION, 0},
    {DM_KIND_COMMISSION_RELEASE, 0},
    {DM_KIND_COMMISSION_CLAWBACK, 1},
    {DM_KIND_YIELD, 0},
    {DM_KIND_WITHDRAWAL, 0},
    {DM_KIND_WITHDRAWAL_PAID, 0},
    {DM_KIND_WITHDRAWAL_REJECTED, 0},
    {DM_KIND_REFUND, 0},
    {DM_KIND_CHARGEBACK, 1},
    {DM_KIND_ROUNDING, 0},
    {DM_KIND_REVERSAL, 0},
    {DM_KIND_MAINTENANCE_FEE, 0},
    {DM_KIND_YIELD_COMMISSION, 0},
    {DM_KIND_YIELD_CLAWBACK, 1},
    {DM_KIND_COMMISSION_FORFEIT, 0},
};

static const char *const system_codes[] = {
    DM_SYS_SALES,
    DM_SYS_COMMISSIONS,
    DM_SYS_YIELD,
    DM_SYS_WITHDRAWALS_PENDING,
    DM_SYS_WITHDRAWALS_PAID,
    DM_SYS_ROUNDING,
    DM_SYS_ADJUSTMENTS,
    DM_SYS_MAINTENANCE_FEES,
    DM_SYS_FORFEITED_COMMISSIONS,
};

#define TRANSFER_COLUMNS                                                                           \
    "id, idempotency_key, debit_account_id, credit_account_id, amount_micros, currency, kind, "    \
    "reference, reverses_transfer_id, created_at"

/* Set by the host before it forks; read-only afterwards. */
static dm_ledger_debt_fn *debt_hook;

void dm_ledger_set_debt_hook(dm_ledger_debt_fn *fn)
{
    debt_hook = fn;
}

static const char *id_str(apr_pool_t *p, int64_t id)
{
    return apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)id);
}

static const struct kind_def *find_kind(const char *kind)
{
    for (size_t i = 0; kind && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(kinds[i].name, kind) == 0) {
            return &kinds[i];
        }
    }
    return NULL;
}

/* 1 when `kind` is a transfer kind of the list above. */
static int dm_ledger_kind_known(const char *kind)
{
    return find_kind(kind) != NULL;
}

/* 1 when `kind` may take a wallet below zero. */
static int dm_ledger_kind_is_clawback(const char *kind)
{
    const struct kind_def *k = find_kind(kind);
    return k && k->clawback;
}

static int currency_ok(const char *c)
{
    return c && strlen(c) == 3 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z' &&
           c[2] >= 'A' && c[2] <= 'Z';
}

static dm_err *check_currency(apr_pool_t *p, const char *c)
{
    return currency_ok(c) ? NULL
                          : dm_err_make(p, DM_E_INVALID, "currency",
                                        "currency must be three capital letters (ISO 4217)");
}

static int system_code_ok(const char *code)
{
    size_t n;

    if (!code) {
        return 0;
    }
    for (size_t i = 0; i < sizeof(system_codes) / sizeof(system_codes[0]); i++) {
        if (strcmp(system_codes[i], code) == 0) {
            return 1;
        }
    }
    if (strncmp(code, DM_SYS_GATEWAY_PREFIX, strlen(DM_SYS_GATEWAY_PREFIX)) != 0) {
        return 0;
    }
    code += strlen(DM_SYS_GATEWAY_PREFIX);
    n = strlen(code);
    return n >= 1 && n <= GATEWAY_NAME_MAX &&
           strspn(code, "abcdefghijklmnopqrstuvwxyz0123456789_-.") == n;
}

/* ---- accounts ---- */

static void read_account(dm_stmt *st, apr_pool_t *p, int c, dm_account *a)
{
    a->id = dm_stmt_int64(st, c + 0);
    a->kind = apr_pstrdup(p, dm_stmt_text(st, c + 1, NULL));
    a->user_id = dm_stmt_is_null(st, c + 2) ? 0 : dm_stmt_int64(st, c + 2);
    a->code = dm_stmt_dup_text(st, p, c + 3);
    a->currency = apr_pstrdup(p, dm_stmt_text(st, c + 4, NULL));
}

dm_err *dm_ledger_account_get(dm_db *db, apr_pool_t *p, int64_t account_id, dm_account *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT id, kind, user_id, code, currency, balance_micros, "
                              "created_at FROM accounts WHERE id = ?",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, account_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        read_account(st, p, 0, out);
        out->balance_micros = dm_stmt_int64(st, 5);
        out->created_at = dm_stmt_int64(st, 6);
    }
    dm_stmt_done(st);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "no ledger account %" APR_INT64_T_FMT,
                        (apr_int64_t)account_id);
    }
    return e;
}

/* "wallet of member 7 in USD", "system account sales in USD". */
static const char *dm_ledger_account_name(apr_pool_t *p, const dm_account *a)
{
    if (a->code) {
        return apr_psprintf(p, "system account %s in %s", a->code, a->currency);
    }
    return apr_psprintf(p, "%s of member %" APR_INT64_T_FMT " in %s",
                        a->kind && strcmp(a->kind, "held") == 0 ? "held account" : a->kind,
                        (apr_int64_t)a->user_id, a->currency);
}

/* One id from a query with the bindings already made; *found 0: no row. */
static dm_err *step_id(dm_stmt *st, apr_pool_t *p, int64_t *id, int *found)
{
    dm_err *e = dm_stmt_step(st, p, found);

    if (!e && *found) {
        *id = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *find_member_account(dm_db *db, apr_pool_t *p, int64_t user_id, const char *kind,
                                   const char *currency, int64_t *id, int *found)
{
    dm_stmt *st;
    dm_err *e = dm_db_prepare(
        db, p, "SELECT id FROM accounts WHERE user_id = ? AND kind = ? AND currency = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_str(st, 2, kind);
    dm_stmt_bind_str(st, 3, currency);
    return step_id(st, p, id, found);
}

dm_err *dm_ledger_member_account(dm_db *db, apr_pool_t *p, int64_t user_id, dm_account_kind kind,
                                 const char *currency, int64_t *account_id)
{
    const char *k = kind == DM_ACCOUNT_WALLET ? "wallet" : kind == DM_ACCOUNT_HELD ? "held" : NULL;
    dm_stmt *st;
    int found = 0;
    dm_err *e;

    if (!k) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "ledger: unknown member account kind %d",
                           (int)kind);
    }
    if ((e = check_currency(p, currency))) {
        return e;
    }
    e = find_member_account(db, p, user_id, k, currency, account_id, &found);
    if (e || found) {
        return e;
    }
    /* From users, so an unknown member inserts nothing (rather than
     * failing the foreign key); the WHERE also keeps SQLite's parser from
     * reading ON CONFLICT as a join constraint. */
    e = dm_db_prepare(db, p,
                      "INSERT INTO accounts (kind, user_id, code, currency, balance_micros, "
                      "created_at) SELECT ?, id, NULL, ?, 0, ? FROM users WHERE id = ? "
                      "ON CONFLICT (user_id, kind, currency) DO NOTHING RETURNING id",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, k);
    dm_stmt_bind_str(st, 2, currency);
    dm_stmt_bind_int64(st, 3, dm_now());
    dm_stmt_bind_int64(st, 4, user_id);
    e = step_id(st, p, account_id, &found);
    if (!e && !found) {
        /* another writer made it first (PostgreSQL), or no such member */
        e = find_member_account(db, p, user_id, k, currency, account_id, &found);
    }
    if (!e && !found) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "no member %" APR_INT64_T_FMT,
                        (apr_int64_t)user_id);
    }
    return e;
}

static dm_err *find_system_account(dm_db *db, apr_pool_t *p, const char *code, const char *currency,
                                   int64_t *id, int *found)
{
    dm_stmt *st;
    dm_err *e =
        dm_db_prepare(db, p, "SELECT id FROM accounts WHERE code = ? AND currency = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, code);
    dm_stmt_bind_str(st, 2, currency);
    return step_id(st, p, id, found);
}

dm_err *dm_ledger_system_account(dm_db *db, apr_pool_t *p, const char *code, const char *currency,
                                 int64_t *account_id)
{
    dm_stmt *st;
    int found = 0;
    dm_err *e;

    if (!system_code_ok(code)) {
        return dm_err_make(p, DM_E_INVALID, "code", "ledger: %s is not a system account code",
                           code ? code : "(null)");
    }
    if ((e = check_currency(p, currency))) {
        return e;
    }
    e = find_system_account(db, p, code, currency, account_id, &found);
    if (e || found) {
        return e;
    }
    e = dm_db_prepare(db, p,
                      "INSERT INTO accounts (kind, user_id, code, currency, balance_micros, "
                      "created_at) VALUES ('system', NULL, ?, ?, 0, ?) "
                      "ON CONFLICT (code, currency) DO NOTHING RETURNING id",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, code);
    dm_stmt_bind_str(st, 2, currency);
    dm_stmt_bind_int64(st, 3, dm_now());
    e = step_id(st, p, account_id, &found);
    if (!e && !found) {
        e = find_system_account(db, p, code, currency, account_id, &found);
    }
    if (!e && !found) {
        e = dm_err_make(p, DM_E_INTERNAL, NULL, "ledger: cannot create system account %s", code);
    }
    return e;
}

dm_err *dm_ledger_member_balances(dm_db *db, apr_pool_t *p, int64_t user_id, const char *currency,
                                  dm_balances *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT kind, id, balance_micros FROM accounts WHERE user_id = ? "
                              "AND kind IN ('wallet', 'held') AND currency = ?",
                              &st);

    memset(out, 0, sizeof(*out));
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_str(st, 2, currency);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        if (strcmp(dm_stmt_text(st, 0, NULL), "wallet") == 0) {
            out->wallet_account_id = dm_stmt_int64(st, 1);
            out->wallet_micros = dm_stmt_int64(st, 2);
        } else {
            out->held_account_id = dm_stmt_int64(st, 1);
            out->held_micros = dm_stmt_int64(st, 2);
        }
    }
    dm_stmt_done(st);
    return e;
}

/* ---- transfers ---- */

static void read_transfer(dm_stmt *st, apr_pool_t *p, int c, dm_transfer *t)
{
    t->id = dm_stmt_int64(st, c + 0);
    t->idempotency_key = apr_pstrdup(p, dm_stmt_text(st, c + 1, NULL));
    t->debit_account_id = dm_stmt_int64(st, c + 2);
    t->credit_account_id = dm_stmt_int64(st, c + 3);
    t->amount_micros = dm_stmt_int64(st, c + 4);
    t->currency = apr_pstrdup(p, dm_stmt_text(st, c + 5, NULL));
    t->kind = apr_pstrdup(p, dm_stmt_text(st, c + 6, NULL));
    t->reference = dm_stmt_dup_text(st, p, c + 7);
    t->reverses_transfer_id = dm_stmt_is_null(st, c + 8) ? 0 : dm_stmt_int64(st, c + 8);
    t->created_at = dm_stmt_int64(st, c + 9);
}

/* A transfer by id (key NULL) or by idempotency key; *found 0: none. */
static dm_err *load_transfer(dm_db *db, apr_pool_t *p, int64_t id, const char *key,
                             dm_transfer *out, int *found)
{
    dm_stmt *st;
    dm_err *e =
        dm_db_prepare(db, p,
                      key ? "SELECT " TRANSFER_COLUMNS " FROM transfers WHERE idempotency_key = ?"
                          : "SELECT " TRANSFER_COLUMNS " FROM transfers WHERE id = ?",
                      &st);

    if (e) {
        return e;
    }
    if (key) {
        dm_stmt_bind_str(st, 1, key);
    } else {
        dm_stmt_bind_int64(st, 1, id);
    }
    e = dm_stmt_step(st, p, found);
    if (!e && *found) {
        read_transfer(st, p, 0, out);
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *check_req(apr_pool_t *p, const dm_transfer_req *req)
{
    dm_err *e;

    if (!req->idempotency_key || !*req->idempotency_key ||
        strlen(req->idempotency_key) > DM_LEDGER_KEY_MAX) {
        return dm_err_make(p, DM_E_INVALID, "idempotency_key",
                           "a transfer needs an idempotency key of 1 to %d bytes",
                           DM_LEDGER_KEY_MAX);
    }
    if ((e = dm_validate_text(p, "idempotency_key", req->idempotency_key, DM_LEDGER_KEY_MAX, 0))) {
        return e;
    }
    if (req->amount_micros <= 0) {
        return dm_err_make(p, DM_E_INVALID, "amount_micros",
                           "a transfer amount must be more than zero");
    }
    if (!dm_ledger_kind_known(req->kind)) {
        return dm_err_make(p, DM_E_INVALID, "kind", "%s is not a transfer kind",
                           req->kind ? req->kind : "(null)");
    }
    if ((e = check_currency(p, req->currency))) {
        return e;
    }
    if (req->debit_account_id <= 0 || req->credit_account_id <= 0 ||
        req->debit_account_id == req->credit_account_id) {
        return dm_err_make(p, DM_E_INVALID, "account", "a transfer needs two different accounts");
    }
    if (req->reference &&
        (strlen(req->reference) > DM_LEDGER_REFERENCE_MAX ||
         dm_validate_text(p, "reference", req->reference, DM_LEDGER_REFERENCE_MAX, 0))) {
        return dm_err_make(p, DM_E_INVALID, "reference", "a reference is text of at most %d bytes",
                           DM_LEDGER_REFERENCE_MAX);
    }
    return NULL;
}

static int same_text(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The transfer first posted under the key must be the one asked for. */
static dm_err *check_replay(apr_pool_t *p, const dm_transfer_req *req, int64_t reverses,
                            const dm_transfer *t)
{
    if (t->debit_account_id != req->debit_account_id ||
        t->credit_account_id != req->credit_account_id || t->amount_micros != req->amount_micros ||
        strcmp(t->currency, req->currency) != 0 || strcmp(t->kind, req->kind) != 0 ||
        !same_text(t->reference, req->reference) || t->reverses_transfer_id != reverses) {
        return dm_err_make(p, DM_E_CONFLICT, "idempotency_key",
                           "idempotency key %s already names transfer %" APR_INT64_T_FMT
                           " (%s of %" APR_INT64_T_FMT " %s from account %" APR_INT64_T_FMT
                           " to %" APR_INT64_T_FMT "), which differs from this one",
                           t->idempotency_key, (apr_int64_t)t->id, t->kind,
                           (apr_int64_t)t->amount_micros, t->currency,
                           (apr_int64_t)t->debit_account_id, (apr_int64_t)t->credit_account_id);
    }
    return NULL;
}

/* Why a balance UPDATE matched no row: the account is missing, holds
 * another currency, would overflow, or would go below zero. */
static dm_err *refusal(dm_db *db, apr_pool_t *p, const dm_transfer_req *req, int debit)
{
    int64_t id = debit ? req->debit_account_id : req->credit_account_id;
    int64_t after = 0;
    int overflow;
    dm_account a = {0};
    dm_err *e = dm_ledger_account_get(db, p, id, &a);

    if (e) {
        return e;
    }
    if (!a.currency || strcmp(a.currency, req->currency) != 0) {
        return dm_err_make(p, DM_E_INVALID, "currency", "the transfer is in %s but %s holds %s",
                           req->currency, dm_ledger_account_name(p, &a), a.currency);
    }
    overflow = debit ? __builtin_sub_overflow(a.balance_micros, req->amount_micros, &after)
                     : __builtin_add_overflow(a.balance_micros, req->amount_micros, &after);
    if (overflow) {
        return dm_err_make(p, DM_E_INVALID, "amount_micros", "the balance of %s would overflow",
                           dm_ledger_account_name(p, &a));
    }
    if (debit && after < 0 && strcmp(a.kind, "system") != 0) {
        return dm_err_make(p, DM_E_CONFLICT, NULL,
                           "insufficient balance: %s holds %" APR_INT64_T_FMT
                           " micros, the %s needs %" APR_INT64_T_FMT,
                           dm_ledger_account_name(p, &a), (apr_int64_t)a.balance_micros, req->kind,
                           (apr_int64_t)req->amount_micros);
    }
    return dm_err_make(p, DM_E_INTERNAL, NULL, "ledger: could not update %s",
                       dm_ledger_account_name(p, &a));
}

static dm_err *exec_ids(dm_db *db, apr_pool_t *p, const char *sql, int64_t a, int64_t b, int n)
{
    dm_stmt *st;
    int row;
    dm_err *e = dm_db_prepare(db, p, sql, &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, a);
    if (n > 1) {
        dm_stmt_bind_int64(st, 2, b);
    }
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

/* Takes back the transfer row (and the debit, when made) after a refusal:
 * the row was inserted a moment ago in this transaction and nobody else
 * can have seen it. */
static dm_err *undo(dm_db *db, apr_pool_t *p, const dm_transfer_req *req, int64_t id,
                    int debit_done, dm_err *why)
{
    dm_err *e = NULL;

    if (debit_done) {
        e = exec_ids(db, p, "UPDATE accounts SET balance_micros = balance_micros + ? WHERE id = ?",
                     req->amount_micros, req->debit_account_id, 2);
    }
    if (!e) {
        e = exec_ids(db, p, "DELETE FROM transfers WHERE id = ?", id, 0, 1);
    }
    return e ? e : why;
}

/* The guarded balance updates. Each matches its row only when the account
 * holds the transfer's currency and the new balance obeys the rules, so
 * one changed row means it is done. The bounds cannot overflow: amount > 0. */
static dm_err *move_balance(dm_db *db, apr_pool_t *p, const dm_transfer_req *req, int debit,
                            int *done)
{
    dm_stmt *st;
    int row;
    dm_err *e;

    if (debit) {
        /* Lower bound on the balance before: amount (the result stays >=
         * 0) for a held account and for a wallet unless the kind is a
         * clawback; INT64_MIN + amount (no overflow) otherwise. */
        e = dm_db_prepare(db, p,
                          "UPDATE accounts SET balance_micros = balance_micros - ? "
                          "WHERE id = ? AND currency = ? AND balance_micros >= "
                          "CASE WHEN kind = 'system' OR (kind = 'wallet' AND ? = 1) "
                          "THEN ? ELSE ? END",
                          &st);
        if (e) {
            return e;
        }
        dm_stmt_bind_int64(st, 1, req->amount_micros);
        dm_stmt_bind_int64(st, 2, req->debit_account_id);
        dm_stmt_bind_str(st, 3, req->currency);
        dm_stmt_bind_int64(st, 4, dm_ledger_kind_is_clawback(req->kind));
        dm_stmt_bind_int64(st, 5, INT64_MIN + req->amount_micros);
        dm_stmt_bind_int64(st, 6, req->amount_micros);
    } else {
        e = dm_db_prepare(db, p,
                          "UPDATE accounts SET balance_micros = balance_micros + ? "
                          "WHERE id = ? AND currency = ? AND balance_micros <= ?",
                          &st);
        if (e) {
            return e;
        }
        dm_stmt_bind_int64(st, 1, req->amount_micros);
        dm_stmt_bind_int64(st, 2, req->credit_account_id);
        dm_stmt_bind_str(st, 3, req->currency);
        dm_stmt_bind_int64(st, 4, INT64_MAX - req->amount_micros);
    }
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    *done = !e && dm_db_changes(db) == 1;
    return e;
}

/* A clawback may have left a wallet in debt: tell the hook. Only clawback
 * kinds can, so the read costs nothing on the hot paths. */
static dm_err *after_clawback(dm_db *db, apr_pool_t *p, const dm_transfer *t)
{
    dm_account a = {0};
    dm_err *e;

    if (!debt_hook) {
        return NULL;
    }
    e = dm_ledger_account_get(db, p, t->debit_account_id, &a);
    if (e || !a.kind || strcmp(a.kind, "wallet") != 0 || a.balance_micros >= 0) {
        return e;
    }
    return debt_hook(db, p, a.user_id, t, a.balance_micros);
}

static dm_err *post(dm_db *db, apr_pool_t *p, const dm_transfer_req *req, int64_t reverses,
                    dm_transfer *out, int *created)
{
    dm_stmt *st;
    int row = 0, done = 0, found = 0;
    int64_t id = 0, now = dm_now();
    dm_err *e;

    *created = 0;
    if (!dm_db_in_transaction(db)) {
        /* A bug in the caller: the transfer must commit or roll back with
         * the change it pays for. */
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "ledger: transfer %s must be posted inside the caller's transaction",
                           req->idempotency_key ? req->idempotency_key : "(no key)");
    }
    if ((e = check_req(p, req))) {
        return e;
    }
    e = dm_db_prepare(db, p,
                      "INSERT INTO transfers (idempotency_key, debit_account_id, "
                      "credit_account_id, amount_micros, currency, kind, reference, "
                      "reverses_transfer_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                      "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, req->idempotency_key);
    dm_stmt_bind_int64(st, 2, req->debit_account_id);
    dm_stmt_bind_int64(st, 3, req->credit_account_id);
    dm_stmt_bind_int64(st, 4, req->amount_micros);
    dm_stmt_bind_str(st, 5, req->currency);
    dm_stmt_bind_str(st, 6, req->kind);
    dm_stmt_bind_str(st, 7, req->reference);
    if (reverses) {
        dm_stmt_bind_int64(st, 8, reverses);
    } else {
        dm_stmt_bind_null(st, 8);
    }
    dm_stmt_bind_int64(st, 9, now);
    e = step_id(st, p, &id, &row);
    if (e) {
        if (e->code == DM_E_CONFLICT && reverses) {
            return dm_err_make(p, DM_E_CONFLICT, NULL,
                               "transfer %" APR_INT64_T_FMT " has already been reversed",
                               (apr_int64_t)reverses);
        }
        if (e->code == DM_E_INTERNAL) {
            /* most likely a foreign key: say which account is missing */
            dm_account a;
            dm_err *why = dm_ledger_account_get(db, p, req->debit_account_id, &a);
            if (!why) {
                why = dm_ledger_account_get(db, p, req->credit_account_id, &a);
            }
            return why ? why : e;
        }
        return e;
    }
    if (!row) {
        /* The key exists: hand back what was posted under it. */
        e = load_transfer(db, p, 0, req->idempotency_key, out, &found);
        if (!e && !found) {
            e = dm_err_make(p, DM_E_INTERNAL, NULL, "ledger: transfer %s vanished",
                            req->idempotency_key);
        }
        return e ? e : check_replay(p, req, reverses, out);
    }
    e = move_balance(db, p, req, 1, &done);
    if (!e && !done) {
        return undo(db, p, req, id, 0, refusal(db, p, req, 1));
    }
    if (!e) {
        e = move_balance(db, p, req, 0, &done);
        if (!e && !done) {
            return undo(db, p, req, id, 1, refusal(db, p, req, 0));
        }
    }
    if (e) {
        return e;
    }
    out->id = id;
    out->idempotency_key = apr_pstrdup(p, req->idempotency_key);
    out->debit_account_id = req->debit_account_id;
    out->credit_account_id = req->credit_account_id;
    out->amount_micros = req->amount_micros;
    out->currency = apr_pstrdup(p, req->currency);
    out->kind = apr_pstrdup(p, req->kind);
    out->reference = req->reference ? apr_pstrdup(p, req->reference) : NULL;
    out->reverses_transfer_id = reverses;
    out->created_at = now;
    *created = 1;
    return dm_ledger_kind_is_clawback(req->kind) ? after_clawback(db, p, out) : NULL;
}

dm_err *dm_ledger_transfer(dm_db *db, apr_pool_t *p, const dm_transfer_req *req, dm_transfer *out,
                           int *created)
{
    return post(db, p, req, 0, out, created);
}

/* ---- many transfers at once (batch jobs) ---- */

/* Rows per multi-row INSERT: one statement instead of 64 saves most of
 * the per-statement cost; 8 parameters a row stays far below SQLite's
 * limit of 32766. A remainder of up to MANY_SMALL rows (a commission
 * split: 10) is one statement too, a longer one goes through the one-row
 * statement, so at most MANY_SMALL + 1 statement texts are ever cached. */
/* Rows per INSERT of a batch: up to MANY_ROWS (a batch of the accrual is
 * a few statements, not a hundred: on PostgreSQL each is a round trip and a
 * trigger and plan setup of its own), as the largest power of two that
 * fits what is left, or all of it from MANY_SMALL down — so a batch of any
 * size is a handful of statements, and at most MANY_SMALL + log2(MANY_ROWS
 * / MANY_SMALL) texts are ever cached. MANY_ROWS x MANY_PARAMS stays under
 * both engines' limit on bound parameters (SQLite 32,766, PostgreSQL
 * 65,535). */
#define MANY_ROWS 1024
#define MANY_SMALL 16
#define MANY_PARAMS 9

/* APR pools align to 8 bytes, __int128 wants 16: the sum is kept in a type
 * aligned to 8 (GCC and clang allow a typedef to lower alignment), so a
 * move allocated from a pool is never accessed misaligned. */
typedef __int128 wide_sum __attribute__((aligned(8)));

typedef struct acct_move {
    int64_t id;
    const char *currency;
    wide_sum delta;
    int debited; /* a debit account: must be a system account */
} acct_move;

/* The ids of a batch's new rows are given by the batch: the highest id
 * (read once per batch) + 1, + 2, … in the batch's order — exactly the ids
 * one row at a time would get (SQLite's rowid and PostgreSQL's rowid
 * trigger both take MAX(id) + 1 per row, and writers are serialised on both
 * engines, so nobody else inserts meanwhile), but PostgreSQL runs no
 * trigger per row. A replayed key takes no row; should one sit before a new
 * row of its statement (a re-run that finds part of a batch done), that
 * statement's new rows are taken out and inserted again on the ids that
 * follow on, so the ids have no gap. */
static const char *many_sql(apr_pool_t *p, int rows)
{
    static const char head[] = "INSERT INTO transfers (id, idempotency_key, debit_account_id, "
                               "credit_account_id, amount_micros, currency, kind, reference, "
                               "reverses_transfer_id, created_at) VALUES ";
    static const char row[] = "(?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)";
    apr_array_header_t *parts = apr_array_make(p, 2 * rows + 2, sizeof(const char *));

    *(const char **)apr_array_push(parts) = head;
    for (int i = 0; i < rows; i++) {
        *(const char **)apr_array_push(parts) = i ? ", " : "";
        *(const char **)apr_array_push(parts) = row;
    }
    *(const char **)apr_array_push(parts) = " ON CONFLICT (idempotency_key) DO NOTHING";
    return apr_array_pstrcat(p, parts, 0);
}

static int many_rows(int left)
{
    int rows = MANY_ROWS;

    if (left <= MANY_SMALL) {
        return left;
    }
    while (rows > left) {
        rows /= 2;
    }
    return rows;
}

/* Inserts reqs[from, from + rows) in one statement on ids *top + 1, …;
 * marks created[] and ids[] of the rows that were new and moves *top past
 * them. No RETURNING: on SQLite it stages every row in a temporary b-tree
 * before the first comes back (about a fifth of the INSERT's time in an
 * accrual batch). When every row was new (the statement's change count),
 * the ids are the ones bound; otherwise the new rows are the ones above
 * *top (nobody else writes meanwhile, see above), read back by id. */
static dm_err *many_insert(dm_db *db, apr_pool_t *p, const dm_transfer_req *reqs, int from,
                           int rows, apr_hash_t *index, int64_t now, int *created, int64_t *ids,
                           int64_t *top)
{
    dm_stmt *st;
    int row = 0, made = 0;
    int64_t last = *top;
    dm_transfer_req *again;
    dm_err *e = dm_db_prepare(db, p, many_sql(p, rows), &st);

    if (e) {
        return e;
    }
    for (int j = 0; j < rows; j++) {
        const dm_transfer_req *r = &reqs[from + j];
        int b = j * MANY_PARAMS;
        dm_stmt_bind_int64(st, b + 1, *top + 1 + j);
        /* the requests' strings outlive the statement's step and reset */
        dm_stmt_bind_str_kept(st, b + 2, r->idempotency_key);
        dm_stmt_bind_int64(st, b + 3, r->debit_account_id);
        dm_stmt_bind_int64(st, b + 4, r->credit_account_id);
        dm_stmt_bind_int64(st, b + 5, r->amount_micros);
        dm_stmt_bind_str_kept(st, b + 6, r->currency);
        dm_stmt_bind_str_kept(st, b + 7, r->kind);
        dm_stmt_bind_str_kept(st, b + 8, r->reference);
        dm_stmt_bind_int64(st, b + 9, now);
    }
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (e) {
        return e;
    }
    if (dm_db_changes(db) == rows) {
        for (int j = 0; j < rows; j++) {
            const int *i = apr_hash_get(index, reqs[from + j].idempotency_key, APR_HASH_KEY_STRING);
            if (i) {
                created[*i] = 1;
                ids[*i] = *top + 1 + j;
            }
        }
        *top += rows;
        return NULL;
    }
    e = dm_db_prepare(db, p,
                      "SELECT id, idempotency_key FROM transfers WHERE id > ? AND id <= ? "
                      "ORDER BY id",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, *top);
    dm_stmt_bind_int64(st, 2, *top + rows);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        size_t len = 0;
        const char *key = dm_stmt_text(st, 1, &len);
        const int *i = apr_hash_get(index, key, (apr_ssize_t)len);
        if (i) {
            created[*i] = 1;
            ids[*i] = dm_stmt_int64(st, 0);
            last = ids[*i] > last ? ids[*i] : last;
            made++;
        }
    }
    dm_stmt_done(st);
    if (e || last == *top + made) {
        *top += made;
        return e;
    }
    /* a replay before a new row left a gap: the new rows again, closed up */
    again = apr_palloc(p, sizeof(dm_transfer_req) * (size_t)rows);
    made = 0;
    for (int j = 0; !e && j < rows; j++) {
        const int *i = apr_hash_get(index, reqs[from + j].idempotency_key, APR_HASH_KEY_STRING);
        if (i && created[*i]) {
            again[made++] = reqs[from + j];
            created[*i] = 0;
            e = exec_ids(db, p, "DELETE FROM transfers WHERE id = ?", ids[*i], 0, 1);
        }
    }
    return e ? e : many_insert(db, p, again, 0, made, index, now, created, ids, top);
}

/* The account's kind ("system", "wallet", "held"); NULL when there is
 * none. */
static dm_err *account_kind(dm_db *db, apr_pool_t *p, int64_t id, const char **kind)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, "SELECT kind FROM accounts WHERE id = ?", &st);

    *kind = NULL;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        *kind = apr_pstrdup(p, dm_stmt_text(st, 0, NULL));
    }
    dm_stmt_done(st);
    return e;
}

static acct_move *move_of(apr_pool_t *p, apr_hash_t *moves, int64_t id, const char *currency)
{
    acct_move *m = apr_hash_get(moves, &id, sizeof(id));

    if (!m) {
        m = apr_pcalloc(p, sizeof(*m));
        m->id = id;
        m->currency = currency;
        apr_hash_set(moves, &m->id, sizeof(m->id), m);
    }
    return m;
}

static int by_account_id(const void *a, const void *b)
{
    const acct_move *x = *(acct_move *const *)a, *y = *(acct_move *const *)b;
    return (x->id > y->id) - (x->id < y->id);
}

/* Why the guarded UPDATE of m changed nothing, said precisely (the
 * transaction is the caller's to undo). */
static dm_err *move_refused(dm_db *db, apr_pool_t *p, const acct_move *m)
{
    dm_account a = {0};
    dm_err *e = dm_ledger_account_get(db, p, m->id, &a);

    if (!e && (!a.currency || !a.kind)) {
        e = dm_err_make(p, DM_E_INTERNAL, NULL, "ledger: account %" APR_INT64_T_FMT " unread",
                        (apr_int64_t)m->id);
    } else if (!e && strcmp(a.currency, m->currency) != 0) {
        e = dm_err_make(p, DM_E_INVALID, "currency", "the transfer is in %s but %s holds %s",
                        m->currency, dm_ledger_account_name(p, &a), a.currency);
    } else if (!e && m->debited && strcmp(a.kind, "system") != 0) {
        e = dm_err_make(p, DM_E_INVALID, "account",
                        "ledger: a batch debits system accounts only, not %s",
                        dm_ledger_account_name(p, &a));
    } else if (!e) {
        e = dm_err_make(p, DM_E_INVALID, "amount_micros", "the balance of %s would overflow",
                        dm_ledger_account_name(p, &a));
    }
    return e;
}

/* A batch moves its accounts MOVE_ROWS per UPDATE … FROM (VALUES …), each
 * row (id, delta, currency, lowest and highest balance before, debited)
 * guarded as a one-row statement would be: the account holds the currency,
 * the new balance stays within int64, and a debited account is a system
 * account. On PostgreSQL every statement is a round trip, and on both
 * engines a statement costs more than a row: a commission split (the
 * commissions account and 10 held accounts) is one statement, an accrual
 * batch one per 128 accounts. A chunk of up to MOVE_SMALL rows has a text
 * of its own size (so at most MOVE_SMALL + 1 texts are cached); a longer
 * one fills its unused places with NULL rows (they meet no account). Not
 * more than 128: with 1,024 rows PostgreSQL's planner took a hash join over
 * the whole accounts table for 100,000 accounts (the UPDATEs of an accrual
 * hour 5 times slower; docs/decisions.md, "PostgreSQL accrual, fifth
 * round"); an INSERT has no join to plan. Rows go in account id order,
 * the order every batch takes its row locks in on engines that have them. */
#define MOVE_ROWS 128
#define MOVE_SMALL 16
#define MOVE_PARAMS 6

static const char *move_sql(apr_pool_t *p, int rows)
{
    static const char head[] =
        "UPDATE accounts SET balance_micros = accounts.balance_micros + v.column2 FROM (VALUES ";
    static const char first[] = "(CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT), "
                                "CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT))";
    static const char row[] = ", (?, ?, ?, ?, ?, ?)";
    apr_array_header_t *parts = apr_array_make(p, rows + 2, sizeof(const char *));

    *(const char **)apr_array_push(parts) = head;
    for (int i = 0; i < rows; i++) {
        *(const char **)apr_array_push(parts) = i ? row : first;
    }
    *(const char **)apr_array_push(parts) =
        ") AS v WHERE accounts.id = v.column1 AND accounts.currency = v.column3 "
        "AND accounts.balance_micros >= v.column4 AND accounts.balance_micros <= v.column5 "
        "AND (v.column6 = 0 OR accounts.kind = 'system')";
    return apr_array_pstrcat(p, parts, 0);
}

/* list[from, from + rows) in one statement of `size` places (rows <= size);
 * each delta is nonzero and within (-INT64_MAX, INT64_MAX]. */
static dm_err *move_chunk(dm_db *db, apr_pool_t *p, const apr_array_header_t *list, int from,
                          int rows, int size)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, move_sql(p, size), &st);

    if (e) {
        return e;
    }
    for (int j = 0; j < size; j++) {
        int b = j * MOVE_PARAMS;
        if (j < rows) {
            const acct_move *m = APR_ARRAY_IDX(list, from + j, acct_move *);
            int64_t delta = (int64_t)m->delta;
            dm_stmt_bind_int64(st, b + 1, m->id);
            dm_stmt_bind_int64(st, b + 2, delta);
            dm_stmt_bind_str(st, b + 3, m->currency);
            dm_stmt_bind_int64(st, b + 4, delta < 0 ? INT64_MIN - delta : INT64_MIN);
            dm_stmt_bind_int64(st, b + 5, delta > 0 ? INT64_MAX - delta : INT64_MAX);
            dm_stmt_bind_int64(st, b + 6, m->debited);
        } else {
            for (int k = 1; k <= MOVE_PARAMS; k++) {
                dm_stmt_bind_null(st, b + k);
            }
        }
    }
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (e || dm_db_changes(db) == rows) {
        return e;
    }
    /* one of them refused: the first in id order, and why */
    for (int j = 0; j < rows; j++) {
        const acct_move *m = APR_ARRAY_IDX(list, from + j, acct_move *);
        dm_account a = {0};
        if ((e = dm_ledger_account_get(db, p, m->id, &a))) {
            return e;
        }
        if (!a.currency || !a.kind || strcmp(a.currency, m->currency) != 0 ||
            (m->debited && strcmp(a.kind, "system") != 0) ||
            (m->delta > 0 && a.balance_micros > INT64_MAX - m->delta) ||
            (m->delta < 0 && a.balance_micros < INT64_MIN - m->delta)) {
            return move_refused(db, p, m);
        }
    }
    return dm_err_make(p, DM_E_INTERNAL, NULL,
                       "ledger: a batch moved %" APR_INT64_T_FMT " of %d accounts",
                       (apr_int64_t)dm_db_changes(db), rows);
}

/* Every account's move, in id order, MOVE_ROWS per statement. */
static dm_err *many_apply(dm_db *db, apr_pool_t *p, apr_hash_t *moves)
{
    apr_array_header_t *list =
        apr_array_make(p, (int)apr_hash_count(moves) + 1, sizeof(acct_move *));
    apr_array_header_t *moving =
        apr_array_make(p, (int)apr_hash_count(moves) + 1, sizeof(acct_move *));
    dm_err *e = NULL;

    for (apr_hash_index_t *hi = apr_hash_first(p, moves); hi; hi = apr_hash_next(hi)) {
        *(const acct_move **)apr_array_push(list) = apr_hash_this_val(hi);
    }
    qsort(list->elts, (size_t)list->nelts, sizeof(acct_move *), by_account_id);
    for (int i = 0; i < list->nelts; i++) {
        acct_move *m = APR_ARRAY_IDX(list, i, acct_move *);
        if (m->delta == 0) {
            continue;
        }
        if (m->delta > INT64_MAX || m->delta < -(__int128)INT64_MAX) {
            return dm_err_make(p, DM_E_INVALID, "amount_micros",
                               "ledger: a batch moves account %" APR_INT64_T_FMT
                               " by more than a balance can hold",
                               (apr_int64_t)m->id);
        }
        *(acct_move **)apr_array_push(moving) = m;
    }
    for (int i = 0; !e && i < moving->nelts; i += MOVE_ROWS) {
        int rows = moving->nelts - i < MOVE_ROWS ? moving->nelts - i : MOVE_ROWS;
        e = move_chunk(db, p, moving, i, rows, rows <= MOVE_SMALL ? rows : MOVE_ROWS);
    }
    return e;
}

/* Before anything is written: every request as dm_ledger_transfer wants
 * it, no key twice, and every debit account a system account. */
static dm_err *many_check(dm_db *db, apr_pool_t *p, const dm_transfer_req *reqs, int n,
                          apr_hash_t *index)
{
    apr_hash_t *debits = apr_hash_make(p);
    dm_err *e;

    for (int i = 0; i < n; i++) {
        const dm_transfer_req *r = &reqs[i];
        int *slot;
        if ((e = check_req(p, r))) {
            return e;
        }
        if (apr_hash_get(index, r->idempotency_key, APR_HASH_KEY_STRING)) {
            return dm_err_make(p, DM_E_INVALID, "idempotency_key",
                               "ledger: key %s is twice in one batch", r->idempotency_key);
        }
        slot = apr_palloc(p, sizeof(*slot));
        *slot = i;
        apr_hash_set(index, r->idempotency_key, APR_HASH_KEY_STRING, slot);
        if (!apr_hash_get(debits, &r->debit_account_id, sizeof(int64_t))) {
            const char *kind = NULL;
            if ((e = account_kind(db, p, r->debit_account_id, &kind))) {
                return e;
            }
            if (!kind) {
                return dm_err_make(p, DM_E_NOT_FOUND, NULL, "no ledger account %" APR_INT64_T_FMT,
                                   (apr_int64_t)r->debit_account_id);
            }
            if (strcmp(kind, "system") != 0) {
                return dm_err_make(
                    p, DM_E_INVALID, "account",
                    "ledger: a batch debits system accounts only (account %" APR_INT64_T_FMT
                    " is a member's)",
                    (apr_int64_t)r->debit_account_id);
            }
            apr_hash_set(debits, &r->debit_account_id, sizeof(int64_t), kind);
        }
    }
    return NULL;
}

dm_err *dm_ledger_post_many(dm_db *db, apr_pool_t *p, const dm_transfer_req *reqs, int n,
                            int *created, int64_t *ids)
{
    apr_hash_t *index = apr_hash_make(p), *moves = apr_hash_make(p);
    int64_t now = dm_now();
    int64_t *got = ids ? ids : apr_pcalloc(p, sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    int64_t top = 0;
    dm_err *e;
    int i, found = 0;

    if (!dm_db_in_transaction(db)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "ledger: a batch of transfers must be posted inside the caller's "
                           "transaction");
    }
    if (n <= 0) {
        return NULL;
    }
    memset(created, 0, sizeof(int) * (size_t)n);
    memset(got, 0, sizeof(int64_t) * (size_t)n);
    if ((e = many_check(db, p, reqs, n, index)) ||
        (e = dm_db_query_int64(db, p, "SELECT COALESCE(MAX(id), 0) FROM transfers", &top,
                               &found))) {
        return e;
    }
    for (i = 0; i < n && !e;) {
        int rows = many_rows(n - i);
        e = many_insert(db, p, reqs, i, rows, index, now, created, got, &top);
        i += rows;
    }
    /* Replays: the transfer under the key must be this one. */
    for (i = 0; i < n && !e; i++) {
        dm_transfer t;
        int found = 0;
        if (created[i]) {
            continue;
        }
        e = load_transfer(db, p, 0, reqs[i].idempotency_key, &t, &found);
        if (!e && !found) {
            e = dm_err_make(p, DM_E_INTERNAL, NULL, "ledger: transfer %s vanished",
                            reqs[i].idempotency_key);
        }
        if (!e) {
            e = check_replay(p, &reqs[i], 0, &t);
            got[i] = t.id;
        }
    }
    for (i = 0; i < n && !e; i++) {
        acct_move *d, *c;
        if (!created[i]) {
            continue;
        }
        d = move_of(p, moves, reqs[i].debit_account_id, reqs[i].currency);
        c = move_of(p, moves, reqs[i].credit_account_id, reqs[i].currency);
        if (strcmp(d->currency, reqs[i].currency) != 0 ||
            strcmp(c->currency, reqs[i].currency) != 0) {
            e = dm_err_make(p, DM_E_INVALID, "currency",
                            "ledger: one account in two currencies in a batch (%s)",
                            reqs[i].idempotency_key);
            break;
        }
        d->delta -= reqs[i].amount_micros;
        d->debited = 1;
        c->delta += reqs[i].amount_micros;
    }
    return e ? e : many_apply(db, p, moves);
}

dm_err *dm_ledger_reverse(dm_db *db, apr_pool_t *p, int64_t transfer_id, const char *key,
                          const char *kind, const char *reference, dm_transfer *out, int *created)
{
    dm_transfer orig;
    dm_transfer_req req;
    int found = 0;
    dm_err *e;

    *created = 0;
    if (!dm_db_in_transaction(db)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "ledger: a reversal must be posted inside the caller's transaction");
    }
    e = load_transfer(db, p, transfer_id, NULL, &orig, &found);
    if (e) {
        return e;
    }
    if (!found) {
        return dm_err_make(p, DM_E_NOT_FOUND, NULL, "no transfer %" APR_INT64_T_FMT,
                           (apr_int64_t)transfer_id);
    }
    req.idempotency_key = key;
    req.debit_account_id = orig.credit_account_id;
    req.credit_account_id = orig.debit_account_id;
    req.amount_micros = orig.amount_micros;
    req.currency = orig.currency;
    req.kind = kind;
    req.reference = reference ? reference : orig.reference;
    return post(db, p, &req, orig.id, out, created);
}

/* ---- a member's statement ---- */

/* ---- sums by key prefix ---- */

dm_err *dm_ledger_sums_by_key_prefix(dm_db *db, apr_pool_t *p, const char *prefix,
                                     apr_array_header_t **rows)
{
    size_t n = prefix ? strlen(prefix) : 0;
    char *upper;
    dm_stmt *st;
    int row = 0;
    dm_err *e;

    *rows = apr_array_make(p, 8, sizeof(dm_ledger_pair_sum));
    if (n == 0 || (unsigned char)prefix[n - 1] == 0xff) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "ledger: a key prefix must end below 0xff");
    }
    /* The keys from `prefix` up to (not including) the prefix with its last
     * byte raised by one: a range of the idempotency key's unique index. */
    upper = apr_pstrmemdup(p, prefix, n);
    upper[n - 1] = (char)((unsigned char)upper[n - 1] + 1);
    e = dm_db_prepare(db, p,
                      "SELECT debit_account_id, credit_account_id, SUM(amount_micros) "
                      "FROM transfers WHERE idempotency_key >= ? AND idempotency_key < ? "
                      "GROUP BY debit_account_id, credit_account_id "
                      "ORDER BY debit_account_id, credit_account_id",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_text(st, 1, prefix, n);
    dm_stmt_bind_text(st, 2, upper, n);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        dm_ledger_pair_sum *s = apr_array_push(*rows);
        s->debit_account_id = dm_stmt_int64(st, 0);
        s->credit_account_id = dm_stmt_int64(st, 1);
        s->amount_micros = dm_stmt_int64(st, 2);
    }
    dm_stmt_done(st);
    return e;
}

/* A line's position: 2 * transfer id, + 1 on the wallet side, so the two
 * lines of a transfer between the member's own accounts have an order.
 * Per account, both sides of its transfers come from its two (account,
 * id) indexes, walked down from the cursor and merged by SQLite without a
 * sort; the accounts (one wallet and one held per currency: usually two)
 * are merged here. Each query reads at most limit + 1 rows, however long
 * the member's history. */
#define STATEMENT_SIDE(sign, side)                                                                 \
    "SELECT id, kind, " sign "amount_micros, currency, reference, created_at FROM transfers "      \
    "WHERE " side "_account_id = ? AND id <= ? AND 2 * id + ? < ? "

static dm_err *statement_account(dm_db *db, apr_pool_t *p, int64_t account, int wallet,
                                 int64_t cursor, int limit, apr_array_header_t *lines)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              STATEMENT_SIDE("-", "debit") "UNION ALL " STATEMENT_SIDE(
                                  "", "credit") "ORDER BY 1 DESC LIMIT ?",
                              &st);

    if (e) {
        return e;
    }
    for (int side = 0; side < 2; side++) {
        dm_stmt_bind_int64(st, 4 * side + 1, account);
        dm_stmt_bind_int64(st, 4 * side + 2, cursor > 0 ? cursor / 2 : INT64_MAX);
        dm_stmt_bind_int64(st, 4 * side + 3, wallet);
        dm_stmt_bind_int64(st, 4 * side + 4, cursor > 0 ? cursor : INT64_MAX);
    }
    dm_stmt_bind_int64(st, 9, (int64_t)limit + 1);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        dm_statement_line *l = apr_array_push(lines);
        l->transfer_id = dm_stmt_int64(st, 0);
        l->kind = apr_pstrdup(p, dm_stmt_text(st, 1, NULL));
        l->amount_micros = dm_stmt_int64(st, 2);
        l->currency = apr_pstrdup(p, dm_stmt_text(st, 3, NULL));
        l->account = wallet ? "wallet" : "held";
        l->reference = dm_stmt_dup_text(st, p, 4);
        l->created_at = dm_stmt_int64(st, 5);
        l->position = 2 * l->transfer_id + wallet;
    }
    dm_stmt_done(st);
    return e;
}

/* The member's payments and refunds at a gateway: the order's payment
 * transfer (gateway -> sales) and its refunds (sales -> gateway) touch no
 * account of the member, yet they are the member's money; they show as
 * lines of account "gateway" (the wallet did not move), signed from the
 * member's side: the purchase negative, a refund positive. The orders and
 * order_refunds tables (shop/) name them; a gateway line is the only line
 * of its transfer, so its position is 2 * id. */
#define STATEMENT_GATEWAY(sign, join)                                                              \
    "SELECT t.id, t.kind, " sign "t.amount_micros, t.currency, t.reference, t.created_at "         \
    "FROM orders o " join " WHERE o.user_id = ? AND o.gateway <> 'balance' AND t.id <= ? "         \
    "AND 2 * t.id < ? "

static dm_err *statement_gateway(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t cursor,
                                 int limit, apr_array_header_t *lines)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(
        db, p,
        STATEMENT_GATEWAY("-", "JOIN transfers t ON t.id = "
                               "o.payment_transfer_id") "UNION "
                                                        "ALL"
                                                        " " STATEMENT_GATEWAY("", "JOIN "
                                                                                  "order_"
                                                                                  "refunds f "
                                                                                  "ON "
                                                                                  "f.order_id "
                                                                                  "= o.id "
                                                                                  "JOIN "
                                                                                  "transfers t "
                                                                                  "ON t.id = "
                                                                                  "f.transfer_"
                                                                                  "id") "ORDER "
                                                                                        "BY 1 "
                                                                                        "DESC "
                                                                                        "LIMIT "
                                                                                        "?",
        &st);

    if (e) {
        return e;
    }
    for (int side = 0; side < 2; side++) {
        dm_stmt_bind_int64(st, 3 * side + 1, user_id);
        dm_stmt_bind_int64(st, 3 * side + 2, cursor > 0 ? cursor / 2 : INT64_MAX);
        dm_stmt_bind_int64(st, 3 * side + 3, cursor > 0 ? cursor : INT64_MAX);
    }
    dm_stmt_bind_int64(st, 7, (int64_t)limit + 1);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        dm_statement_line *l = apr_array_push(lines);
        l->transfer_id = dm_stmt_int64(st, 0);
        l->kind = apr_pstrdup(p, dm_stmt_text(st, 1, NULL));
        l->amount_micros = dm_stmt_int64(st, 2);
        l->currency = apr_pstrdup(p, dm_stmt_text(st, 3, NULL));
        l->account = "gateway";
        l->reference = dm_stmt_dup_text(st, p, 4);
        l->created_at = dm_stmt_int64(st, 5);
        l->position = 2 * l->transfer_id;
    }
    dm_stmt_done(st);
    return e;
}

typedef struct member_account {
    int64_t id;
    int wallet;
} member_account;

static int newest_first(const void *a, const void *b)
{
    int64_t x = ((const dm_statement_line *)a)->position;
    int64_t y = ((const dm_statement_line *)b)->position;
    return x < y ? 1 : x > y ? -1 : 0;
}

dm_err *dm_ledger_statement(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t cursor, int limit,
                            apr_array_header_t **lines, int64_t *next_cursor)
{
    dm_stmt *st;
    int row = 0;
    apr_array_header_t *accounts = apr_array_make(p, 2, sizeof(member_account));
    apr_array_header_t *all =
        apr_array_make(p, limit > 0 ? limit + 1 : 1, sizeof(dm_statement_line));
    dm_err *e;

    *next_cursor = 0;
    *lines = all;
    if (limit < 1 || limit > DM_LEDGER_PAGE_MAX) {
        return dm_err_make(p, DM_E_INVALID, "limit", "limit must be from 1 to %d",
                           DM_LEDGER_PAGE_MAX);
    }
    e = dm_db_prepare(db, p,
                      "SELECT id, kind FROM accounts WHERE user_id = ? "
                      "AND kind IN ('wallet', 'held') ORDER BY id",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        member_account *a = apr_array_push(accounts);
        a->id = dm_stmt_int64(st, 0);
        a->wallet = strcmp(dm_stmt_text(st, 1, NULL), "wallet") == 0;
    }
    dm_stmt_done(st);
    for (int i = 0; !e && i < accounts->nelts; i++) {
        const member_account *a = &APR_ARRAY_IDX(accounts, i, member_account);
        e = statement_account(db, p, a->id, a->wallet, cursor, limit, all);
    }
    if (!e) {
        e = statement_gateway(db, p, user_id, cursor, limit, all);
    }
    if (e) {
        return e;
    }
    qsort(all->elts, (size_t)all->nelts, sizeof(dm_statement_line), newest_first);
    if (all->nelts > limit) {
        all->nelts = limit; /* the rest is the next page's */
        *next_cursor = APR_ARRAY_IDX(all, limit - 1, dm_statement_line).position;
    }
    return NULL;
}

const char *dm_statement_page_json(apr_pool_t *p, const apr_array_header_t *lines, int64_t next,
                                   size_t *len)
{
    dm_jbuf b;

    dm_jbuf_init(&b, p, 64 + (size_t)lines->nelts * 160);
    dm_jbuf_lit(&b, "{\"transfers\":[");
    for (int i = 0; i < lines->nelts; i++) {
        const dm_statement_line *l = &APR_ARRAY_IDX(lines, i, dm_statement_line);
        dm_jbuf_lit(&b, i ? ",{\"id\":" : "{\"id\":");
        dm_jbuf_int(&b, l->transfer_id);
        dm_jbuf_lit(&b, ",\"kind\":");
        dm_jbuf_str(&b, l->kind);
        dm_jbuf_lit(&b, ",\"amount_micros\":");
        dm_jbuf_int(&b, l->amount_micros);
        dm_jbuf_lit(&b, ",\"currency\":");
        dm_jbuf_str(&b, l->currency);
        dm_jbuf_lit(&b, ",\"account\":");
        dm_jbuf_str(&b, l->account);
        dm_jbuf_lit(&b, ",\"created_at\":");
        dm_jbuf_time(&b, l->created_at);
        dm_jbuf_lit(&b, ",\"reference\":");
        dm_jbuf_str(&b, l->reference);
        dm_jbuf_lit(&b, "}");
    }
    dm_jbuf_lit(&b, "],\"next_cursor\":");
    if (next) {
        dm_jbuf_lit(&b, "\"");
        dm_jbuf_int(&b, next);
        dm_jbuf_lit(&b, "\"");
    } else {
        dm_jbuf_lit(&b, "null");
    }
    dm_jbuf_lit(&b, "}");
    *len = b.len;
    return b.p;
}

/* ---- staff: every transfer ---- */

#define ROW_SELECT                                                                                 \
    "SELECT t.id, t.idempotency_key, t.debit_account_id, t.credit_account_id, t.amount_micros, "   \
    "t.currency, t.kind, t.reference, t.reverses_transfer_id, t.created_at, "                      \
    "d.id, d.kind, d.user_id, d.code, d.currency, c.id, c.kind, c.user_id, c.code, c.currency "    \
    "FROM transfers t JOIN accounts d ON d.id = t.debit_account_id "                               \
    "JOIN accounts c ON c.id = t.credit_account_id "

/* One SQL text per combination of filters present (16 at most, each
 * prepared once and cached), so each can use its index: the account's
 * two (account, id) indexes merged, (kind, id), or the rowid. The text
 * depends only on which filters are set, never on their values. */
static const char *list_sql(apr_pool_t *p, const dm_transfer_filter *f)
{
    const char *rest = apr_pstrcat(p, "t.id < ?", f->kind ? " AND t.kind = ?" : "",
                                   f->has_from ? " AND t.created_at >= ?" : "",
                                   f->has_to ? " AND t.created_at < ?" : "", NULL);

    if (f->account_id) {
        return apr_pstrcat(p, ROW_SELECT "WHERE t.debit_account_id = ? AND ", rest,
                           " UNION ALL " ROW_SELECT "WHERE t.credit_account_id = ? AND ", rest,
                           " ORDER BY 1 DESC LIMIT ?", NULL);
    }
    return apr_pstrcat(p, ROW_SELECT "WHERE ", rest, " ORDER BY t.id DESC LIMIT ?", NULL);
}

static int bind_filters(dm_stmt *st, int i, const dm_transfer_filter *f, int64_t before)
{
    if (f->account_id) {
        dm_stmt_bind_int64(st, i++, f->account_id);
    }
    dm_stmt_bind_int64(st, i++, before);
    if (f->kind) {
        dm_stmt_bind_str(st, i++, f->kind);
    }
    if (f->has_from) {
        dm_stmt_bind_int64(st, i++, f->from);
    }
    if (f->has_to) {
        dm_stmt_bind_int64(st, i++, f->to);
    }
    return i;
}

dm_err *dm_ledger_transfers_list(dm_db *db, apr_pool_t *p, const dm_transfer_filter *f,
                                 int64_t cursor, int limit, apr_array_header_t **rows,
                                 int64_t *next_cursor)
{
    dm_stmt *st;
    int row = 0, n = 0, i = 1;
    int64_t before = cursor > 0 ? cursor : INT64_MAX;
    dm_err *e;

    *next_cursor = 0;
    *rows = apr_array_make(p, limit > 0 ? limit : 1, sizeof(dm_transfer_row));
    if (limit < 1 || limit > DM_LEDGER_PAGE_MAX) {
        return dm_err_make(p, DM_E_INVALID, "limit", "limit must be from 1 to %d",
                           DM_LEDGER_PAGE_MAX);
    }
    if (f->kind && !dm_ledger_kind_known(f->kind)) {
        return dm_err_make(p, DM_E_INVALID, "kind", "kind is not a transfer kind");
    }
    e = dm_db_prepare(db, p, list_sql(p, f), &st);
    if (e) {
        return e;
    }
    i = bind_filters(st, i, f, before);
    if (f->account_id) {
        i = bind_filters(st, i, f, before);
    }
    dm_stmt_bind_int64(st, i, (int64_t)limit + 1);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        dm_transfer_row *r;
        if (n == limit) {
            *next_cursor = APR_ARRAY_IDX(*rows, n - 1, dm_transfer_row).t.id;
            break;
        }
        r = apr_array_push(*rows);
        memset(r, 0, sizeof(*r));
        read_transfer(st, p, 0, &r->t);
        read_account(st, p, 10, &r->debit);
        read_account(st, p, 15, &r->credit);
        n++;
    }
    dm_stmt_done(st);
    return e;
}

static json_t *account_ref_json(const dm_account *a)
{
    json_t *o = json_pack("{s:I,s:s}", "id", (json_int_t)a->id, "kind", a->kind);

    json_object_set_new(o, "user_id", a->user_id ? json_integer(a->user_id) : json_null());
    json_object_set_new(o, "code", a->code ? json_string(a->code) : json_null());
    return o;
}

json_t *dm_transfer_row_json(apr_pool_t *p, const dm_transfer_row *r)
{
    const dm_transfer *t = &r->t;
    json_t *o = json_pack("{s:I,s:s,s:s,s:I,s:s,s:o,s:o,s:s}", "id", (json_int_t)t->id,
                          "idempotency_key", t->idempotency_key, "kind", t->kind, "amount_micros",
                          (json_int_t)t->amount_micros, "currency", t->currency, "debit",
                          account_ref_json(&r->debit), "credit", account_ref_json(&r->credit),
                          "created_at", dm_json_time(p, t->created_at));

    json_object_set_new(o, "reference", t->reference ? json_string(t->reference) : json_null());
    json_object_set_new(o, "reverses_transfer_id",
                        t->reverses_transfer_id ? json_integer(t->reverses_transfer_id)
                                                : json_null());
    return o;
}

/* ---- verification ---- */

static void offend(apr_pool_t *p, dm_ledger_report *r, const dm_account *a, int64_t stored,
                   int64_t expected, const char *problem)
{
    if (!r->ok) {
        return; /* only the first */
    }
    r->ok = 0;
    r->account_id = a ? a->id : 0;
    r->account_name = a ? dm_ledger_account_name(p, a) : NULL;
    r->stored_micros = stored;
    r->expected_micros = expected;
    r->problem = problem;
}

typedef struct currency_sum {
    const char *currency;
    int64_t micros;
} currency_sum;

/* Each account's stored balance against its credits minus debits (the
 * whole transfers table read twice, grouped), and the sums per currency. */
static dm_err *verify_accounts(dm_db *db, apr_pool_t *p, dm_ledger_report *r,
                               apr_array_header_t *sums)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(
        db, p,
        "SELECT a.id, a.kind, a.user_id, a.code, a.currency, a.balance_micros, "
        "COALESCE(m.net, 0) FROM accounts a LEFT JOIN ("
        "SELECT account_id, SUM(delta) AS net FROM ("
        "SELECT credit_account_id AS account_id, amount_micros AS delta FROM transfers "
        "UNION ALL SELECT debit_account_id, -amount_micros FROM transfers) moves "
        "GROUP BY account_id) m ON m.account_id = a.id ORDER BY a.id",
        &st);

    if (e) {
        return e;
    }
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        dm_account a;
        int64_t stored = dm_stmt_int64(st, 5), expected = dm_stmt_int64(st, 6);
        int k;
        currency_sum *sum = NULL;

        read_account(st, p, 0, &a);
        r->accounts++;
        if (__builtin_add_overflow(r->total_micros, stored, &r->total_micros)) {
            offend(p, r, &a, stored, expected, "the sum of all balances overflows");
        }
        for (k = 0; k < sums->nelts && !sum; k++) {
            if (strcmp(APR_ARRAY_IDX(sums, k, currency_sum).currency, a.currency) == 0) {
                sum = &APR_ARRAY_IDX(sums, k, currency_sum);
            }
        }
        if (!sum) {
            sum = apr_array_push(sums);
            sum->currency = a.currency;
            sum->micros = 0;
        }
        if (__builtin_add_overflow(sum->micros, stored, &sum->micros)) {
            offend(p, r, &a, stored, expected, "the sum of the balances overflows");
        }
        if (stored != expected) {
            offend(p, r, &a, stored, expected,
                   "the stored balance differs from the sum of its transfers");
        } else if (strcmp(a.kind, "held") == 0 && stored < 0) {
            offend(p, r, &a, stored, expected, "a held account is below zero");
        }
    }
    dm_stmt_done(st);
    return e;
}

/* A transfer whose currency is not that of both its accounts. */
static dm_err *verify_currencies(dm_db *db, apr_pool_t *p, dm_ledger_report *r)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(
        db, p,
        "SELECT t.id, t.currency, a.id, a.kind, a.user_id, a.code, a.currency, a.balance_micros "
        "FROM transfers t JOIN accounts a ON a.id = t.debit_account_id OR "
        "a.id = t.credit_account_id WHERE a.currency <> t.currency ORDER BY t.id, a.id LIMIT 1",
        &st);

    if (e) {
        return e;
    }
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        dm_account a;
        read_account(st, p, 2, &a);
        offend(p, r, &a, dm_stmt_int64(st, 7), dm_stmt_int64(st, 7),
               apr_psprintf(p, "transfer %" APR_INT64_T_FMT " is in %s but the account holds %s",
                            (apr_int64_t)dm_stmt_int64(st, 0), dm_stmt_text(st, 1, NULL),
                            a.currency));
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_ledger_verify(dm_db *db, apr_pool_t *p, dm_ledger_report *report)
{
    int own = !dm_db_in_transaction(db), found = 0;
    apr_array_header_t *sums = apr_array_make(p, 2, sizeof(currency_sum));
    dm_err *e = NULL;

    memset(report, 0, sizeof(*report));
    report->ok = 1;
    /* A read transaction: one snapshot for every query below. */
    if (own) {
        e = dm_db_exec(db, p, "BEGIN");
    }
    if (!e) {
        e = dm_db_query_int64(db, p, "SELECT COUNT(*) FROM transfers", &report->transfers, &found);
    }
    if (!e) {
        e = verify_accounts(db, p, report, sums);
    }
    if (!e) {
        e = verify_currencies(db, p, report);
    }
    for (int k = 0; !e && k < sums->nelts; k++) {
        const currency_sum *s = &APR_ARRAY_IDX(sums, k, currency_sum);
        if (s->micros != 0) {
            offend(p, report, NULL, s->micros, 0,
                   apr_psprintf(p, "the balances in %s sum to %" APR_INT64_T_FMT ", not zero",
                                s->currency, (apr_int64_t)s->micros));
        }
    }
    if (own) {
        dm_db_rollback(db);
    }
    return e;
}

/* ---- the operator's manual adjustment ---- */

static const char *new_uuid(apr_pool_t *p)
{
    unsigned char b[16];

    randombytes_buf(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    return apr_psprintf(p, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
                        b[12], b[13], b[14], b[15]);
}

typedef struct adjust_ctx {
    int64_t staff_id;
    const char *ip;
    int64_t user_id;
    int64_t amount;
    const char *reason;
    const char *key;
    dm_transfer *out;
    int *created;
} adjust_ctx;

static dm_err *adjust_txn(dm_db *db, apr_pool_t *p, adjust_ctx *c)
{
    int64_t wallet = 0, adjustments = 0;
    dm_transfer_req req;
    json_t *after;
    dm_err *e =
        dm_ledger_member_account(db, p, c->user_id, DM_ACCOUNT_WALLET, DM_LEDGER_CURRENCY, &wallet);

    if (!e) {
        e = dm_ledger_system_account(db, p, DM_SYS_ADJUSTMENTS, DM_LEDGER_CURRENCY, &adjustments);
    }
    if (e) {
        return e;
    }
    memset(&req, 0, sizeof(req));
    req.idempotency_key = c->key;
    req.debit_account_id = c->amount > 0 ? adjustments : wallet;
    req.credit_account_id = c->amount > 0 ? wallet : adjustments;
    req.amount_micros = c->amount > 0 ? c->amount : -c->amount;
    req.currency = DM_LEDGER_CURRENCY;
    req.kind = DM_KIND_ADJUSTMENT;
    e = dm_ledger_transfer(db, p, &req, c->out, c->created);
    if (e || !*c->created) {
        return e;
    }
    after =
        dm_json_own(p, json_pack("{s:I,s:s,s:I,s:s,s:s}", "transfer_id", (json_int_t)c->out->id,
                                 "idempotency_key", c->key, "amount_micros", (json_int_t)c->amount,
                                 "currency", DM_LEDGER_CURRENCY, "reason", c->reason));
    return dm_audit_write(db, p, c->staff_id, "ledger.adjust", "user", id_str(p, c->user_id), NULL,
                          after, c->ip);
}

dm_err *dm_ledger_adjust(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                         int64_t user_id, int64_t amount_micros, const char *reason,
                         const char *key, dm_transfer *out, int *created)
{
    adjust_ctx c;
    dm_err *e;

    *created = 0;
    if (amount_micros == 0 || amount_micros == INT64_MIN) {
        return dm_err_make(p, DM_E_INVALID, "amount_micros",
                           "an adjustment is a non-zero amount of micro-units");
    }
    if (!reason || !*reason) {
        return dm_err_make(p, DM_E_INVALID, "reason", "an adjustment needs a reason");
    }
    if ((e = dm_validate_text(p, "reason", reason, REASON_MAX_CHARS, 0))) {
        return e;
    }
    if (key && strncmp(key, "adj:", 4) != 0) {
        return dm_err_make(p, DM_E_INVALID, "idempotency_key",
                           "an adjustment's idempotency key starts with adj:");
    }
    c.staff_id = staff_id;
    c.ip = ip;
    c.user_id = user_id;
    c.amount = amount_micros;
    c.reason = reason;
    c.key = key ? key : apr_pstrcat(p, "adj:", new_uuid(p), NULL);
    c.out = out;
    c.created = created;
    e = dm_db_begin(db, p);
    if (e) {
        return e;
    }
    e = adjust_txn(db, p, &c);
    if (e) {
        dm_db_rollback(db);
        *created = 0;
        return e;
    }
    return dm_db_commit(db, p);
}
