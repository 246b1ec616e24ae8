/*
 * ledger.h — the double-entry ledger (ARCHITECTURE §3): accounts and the
 * transfers between them. Every movement of value (payments, purchases,
 * commissions, yield, withdrawals, adjustments) is posted here, in the
 * transaction of the change that causes it.
 *
 * Invariants, kept by this file alone (nothing else writes `accounts` or
 * `transfers`):
 * - a transfer moves amount_micros > 0 between two different accounts of
 *   its currency: the debit account's balance goes down, the credit
 *   account's up, so the balances of all accounts sum to zero;
 * - each stored balance equals its account's credits minus its debits;
 * - a transfer's idempotency key is unique: posting a key again returns the
 *   transfer first posted under it and changes nothing, so every caller is
 *   safely retryable;
 * - a member's held account never goes below zero, nor does the wallet,
 *   except through a transfer of a clawback kind (see below);
 * - transfers are never edited or deleted: a reversal is a new transfer.
 *
 * Debt: a clawback (a commission refunded after it was released, a
 * chargeback of money already spent) may take a wallet below zero; the
 * negative balance is the member's debt. Every later credit to the wallet
 * pays the debt first simply by being added to it, and no other debit can
 * take a wallet that is (or would become) negative any lower. There is no
 * separate debt account (docs/decisions.md says why). A clawback that
 * leaves a wallet in debt calls the debt hook (dm_ledger_set_debt_hook).
 */
#ifndef DM_LEDGER_H
#define DM_LEDGER_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "store/db.h"
#include "base/err.h"

/* The platform currency: members' balances in GET /api/me, adjustments. */
#define DM_LEDGER_CURRENCY "USD"

#define DM_LEDGER_KEY_MAX 200
#define DM_LEDGER_REFERENCE_MAX 200
#define DM_LEDGER_PAGE_MAX 200

/* System account codes (a gateway's is "gateway:<plugin name>"). */
#define DM_SYS_SALES "sales"
#define DM_SYS_COMMISSIONS "commissions"
#define DM_SYS_YIELD "yield"
#define DM_SYS_WITHDRAWALS_PENDING "withdrawals_pending"
#define DM_SYS_WITHDRAWALS_PAID "withdrawals_paid"
#define DM_SYS_ROUNDING "rounding"
#define DM_SYS_ADJUSTMENTS "adjustments"
#define DM_SYS_MAINTENANCE_FEES "maintenance_fees" /* pool mode: the published fee */
/* held commissions staff forfeited (a suspended account, confirmed fraud) */
#define DM_SYS_FORFEITED_COMMISSIONS "forfeited_commissions"
#define DM_SYS_GATEWAY_PREFIX "gateway:"

/* Transfer kinds. The list is closed (ledger.c's kind table): an unknown
 * kind is DM_E_INVALID, so a typo cannot post. The clawback kinds
 * (commission_clawback, yield_clawback, chargeback) are the only ones that
 * may take a wallet below zero. */
#define DM_KIND_ADJUSTMENT "adjustment"
#define DM_KIND_DEPOSIT "deposit"
#define DM_KIND_PURCHASE "purchase"
#define DM_KIND_COMMISSION "commission"
#define DM_KIND_COMMISSION_RELEASE "commission_release"
#define DM_KIND_COMMISSION_CLAWBACK "commission_clawback"
#define DM_KIND_YIELD "yield"
#define DM_KIND_WITHDRAWAL "withdrawal"
#define DM_KIND_WITHDRAWAL_PAID "withdrawal_paid"
#define DM_KIND_WITHDRAWAL_REJECTED "withdrawal_rejected"
#define DM_KIND_REFUND "refund"
#define DM_KIND_CHARGEBACK "chargeback"
#define DM_KIND_ROUNDING "rounding"
#define DM_KIND_REVERSAL "reversal"
#define DM_KIND_MAINTENANCE_FEE "maintenance_fee"       /* yield -> maintenance_fees */
#define DM_KIND_YIELD_COMMISSION "yield_commission"     /* commissions -> an upline's wallet */
#define DM_KIND_YIELD_CLAWBACK "yield_clawback"         /* a refund: a wallet -> yield */
#define DM_KIND_COMMISSION_FORFEIT "commission_forfeit" /* held -> forfeited_commissions */

typedef enum dm_account_kind {
    DM_ACCOUNT_WALLET = 1, /* available money */
    DM_ACCOUNT_HELD        /* commissions held for the refund window */
} dm_account_kind;

typedef struct dm_account {
    int64_t id;
    const char *kind; /* "wallet" | "held" | "system" */
    int64_t user_id;  /* 0 for system accounts */
    const char *code; /* NULL for member accounts */
    const char *currency;
    int64_t balance_micros;
    int64_t created_at;
} dm_account;

/* The id of member `user_id`'s wallet or held account in `currency`,
 * created (balance 0) on first use. DM_E_NOT_FOUND for an unknown member,
 * DM_E_INVALID for a bad currency (three letters A-Z). */
dm_err *dm_ledger_member_account(dm_db *db, apr_pool_t *p, int64_t user_id, dm_account_kind kind,
                                 const char *currency, int64_t *account_id);

/* The id of system account `code` in `currency`, created on first use.
 * `code` is one of the DM_SYS_* codes or "gateway:<name>" (name: 1-64 of
 * a-z 0-9 _ - .); anything else is DM_E_INVALID. */
dm_err *dm_ledger_system_account(dm_db *db, apr_pool_t *p, const char *code, const char *currency,
                                 int64_t *account_id);

/* One account; DM_E_NOT_FOUND when there is none. */
dm_err *dm_ledger_account_get(dm_db *db, apr_pool_t *p, int64_t account_id, dm_account *out);

typedef struct dm_transfer_req {
    const char *idempotency_key; /* 1..DM_LEDGER_KEY_MAX bytes, e.g. "comm:<order>:<level>" */
    int64_t debit_account_id;
    int64_t credit_account_id;
    int64_t amount_micros; /* > 0 */
    const char *currency;  /* both accounts must hold it */
    const char *kind;      /* DM_KIND_* */
    const char *reference; /* NULL or up to DM_LEDGER_REFERENCE_MAX bytes */
} dm_transfer_req;

typedef struct dm_transfer {
    int64_t id;
    const char *idempotency_key;
    int64_t debit_account_id;
    int64_t credit_account_id;
    int64_t amount_micros;
    const char *currency;
    const char *kind;
    const char *reference;        /* may be NULL */
    int64_t reverses_transfer_id; /* 0: not a reversal */
    int64_t created_at;
} dm_transfer;

/* Posts a transfer. MUST run inside the caller's open transaction (the
 * one making the change the transfer pays for); outside one it writes
 * nothing and returns DM_E_INTERNAL.
 *
 * When the key is new: *created = 1, *out the new transfer, both balances
 * moved. When the key exists: *created = 0, *out the transfer first posted
 * under it, and nothing changes — unless that transfer differs from `req`
 * (accounts, amount, currency, kind or reference), a bug in the caller:
 * DM_E_CONFLICT naming the key.
 *
 * Refusals, which write nothing (the caller's transaction may go on):
 * DM_E_INVALID (bad key, amount <= 0, unknown kind, same account twice,
 * currency not that of an account, a balance would overflow int64);
 * DM_E_NOT_FOUND (no such account); DM_E_CONFLICT "insufficient balance"
 * (a member's wallet or held account would go below zero; a wallet may
 * only through a clawback kind). Any other error (database): roll back. */
dm_err *dm_ledger_transfer(dm_db *db, apr_pool_t *p, const dm_transfer_req *req, dm_transfer *out,
                           int *created);

/* Posts many transfers at once, for batch jobs (the hourly accrual): the
 * same rows, keys and invariants as dm_ledger_transfer, at a fraction of
 * the statements. MUST run inside the caller's open transaction.
 *
 * Each request whose key is new is inserted (created[i] = 1); a key that
 * exists is a replay (created[i] = 0) and must name the same transfer
 * (else DM_E_CONFLICT, as dm_ledger_transfer). Then each account's balance
 * moves once, by the sum of its inserted transfers: a system account (the
 * yield account of a million credits) is updated once per batch, not once
 * per transfer.
 *
 * The batch debits system accounts only: a request whose debit account is
 * a member's is refused (DM_E_INVALID), so no member balance can go below
 * zero through it. Requests are checked (as dm_ledger_transfer) before
 * anything is written. A refusal found while writing (an unknown account,
 * a currency that is not the account's, a balance that would overflow)
 * is returned AFTER rows were inserted: the caller must roll back. `ids`
 * (may be NULL) receives each transfer's id, new or replayed. */
dm_err *dm_ledger_post_many(dm_db *db, apr_pool_t *p, const dm_transfer_req *reqs, int n,
                            int *created, int64_t *ids);

/* Called, inside the transaction, when a transfer of a clawback kind has
 * left member `user_id`'s wallet below zero (wallet_micros: the balance
 * now, < 0; t: the new transfer). Its error fails the transfer (the
 * caller rolls back). Higher layers that must react to a new debt (the
 * withdrawals: pending requests held for review) register here, so the
 * ledger needs to know nothing of them. */
typedef dm_err *dm_ledger_debt_fn(dm_db *db, apr_pool_t *p, int64_t user_id, const dm_transfer *t,
                                  int64_t wallet_micros);

/* Sets the one debt hook (NULL: none). Process-wide, set by the host
 * before serving (mod_deepmine's post_config, before the fork), as
 * dm_commission_set_hold. */
void dm_ledger_set_debt_hook(dm_ledger_debt_fn *fn);

/* Reverses transfer `transfer_id` by a new transfer of the same amount the
 * other way, of `kind` (e.g. refund, withdrawal_rejected, reversal), with
 * `reference` (NULL: the original's), under `key`. Same rules as
 * dm_ledger_transfer (transaction, idempotency, balances). A transfer is
 * reversed at most once: reversing it again under another key is
 * DM_E_CONFLICT; an unknown transfer is DM_E_NOT_FOUND. */
dm_err *dm_ledger_reverse(dm_db *db, apr_pool_t *p, int64_t transfer_id, const char *key,
                          const char *kind, const char *reference, dm_transfer *out, int *created);

/* The sums of the transfers whose idempotency key starts with `prefix`
 * (non-empty), one row per (debit, credit) account pair, in account id
 * order: what a family of keys (ycomm:<contract>:…) moved, read from the
 * key's unique index. Rows are dm_ledger_pair_sum. */
typedef struct dm_ledger_pair_sum {
    int64_t debit_account_id;
    int64_t credit_account_id;
    int64_t amount_micros;
} dm_ledger_pair_sum;

dm_err *dm_ledger_sums_by_key_prefix(dm_db *db, apr_pool_t *p, const char *prefix,
                                     apr_array_header_t **rows);

/* A member's wallet and held balances in `currency` (0 for an account not
 * made yet), in one indexed read. A negative wallet is a debt. */
typedef struct dm_balances {
    int64_t wallet_micros;
    int64_t held_micros;
    int64_t wallet_account_id; /* 0: none yet */
    int64_t held_account_id;   /* 0: none yet */
} dm_balances;

dm_err *dm_ledger_member_balances(dm_db *db, apr_pool_t *p, int64_t user_id, const char *currency,
                                  dm_balances *out);

/* A line of a member's statement: one per transfer and member account it
 * touches (a transfer between the member's own held and wallet accounts is
 * two lines with the same transfer id). */
typedef struct dm_statement_line {
    int64_t transfer_id;
    const char *kind;
    int64_t amount_micros; /* signed: < 0 when it left the member's account */
    const char *currency;
    const char *account; /* "wallet" | "held" | "gateway" (paid or refunded at a payment
                            gateway: no account of the member moved) */
    const char *reference;
    int64_t created_at;
    int64_t position; /* where the line sorts: a cursor for the lines after it */
} dm_statement_line;

/* A member's statement, newest first, every currency, keyset paginated:
 * `cursor` 0 for the first page, else the previous page's *next_cursor (0
 * when there is no more). The cursor is a line's position (2 * transfer id,
 * + 1 for a wallet line), so a page never splits or repeats a line. limit
 * 1..DM_LEDGER_PAGE_MAX. Rows are dm_statement_line. */
dm_err *dm_ledger_statement(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t cursor, int limit,
                            apr_array_header_t **lines, int64_t *next_cursor);

/* The whole answer of GET /api/ledger for a page of lines and its next
 * cursor (0: none): {"transfers":[{id, kind, amount_micros, currency,
 * account, created_at, reference}…],"next_cursor":"…"|null}. Written
 * straight into p (no jansson tree: this list is hot); p NULL: into
 * malloc's memory, the caller's to free (NULL when memory ran out). */
const char *dm_statement_page_json(apr_pool_t *p, const apr_array_header_t *lines, int64_t next,
                                   size_t *len);

/* The admin filters; zero/NULL fields do not filter. Times are Unix
 * seconds, `from` inclusive, `to` exclusive. */
typedef struct dm_transfer_filter {
    const char *kind;
    int64_t account_id;
    int64_t from; /* has_from: set */
    int64_t to;   /* has_to: set */
    int has_from;
    int has_to;
} dm_transfer_filter;

/* A transfer with its two accounts, as staff see it. */
typedef struct dm_transfer_row {
    dm_transfer t;
    dm_account debit;  /* balance_micros and created_at not filled */
    dm_account credit; /* likewise */
} dm_transfer_row;

/* Transfers matching `f`, newest (highest id) first, keyset paginated on
 * id like dm_ledger_statement. An unknown kind is DM_E_INVALID (field
 * "kind"). Rows are dm_transfer_row. */
dm_err *dm_ledger_transfers_list(dm_db *db, apr_pool_t *p, const dm_transfer_filter *f,
                                 int64_t cursor, int limit, apr_array_header_t **rows,
                                 int64_t *next_cursor);

/* One row as GET /api/admin/transfers' JSON (caller owns it). */
json_t *dm_transfer_row_json(apr_pool_t *p, const dm_transfer_row *r);

/* What `deepminectl ledger verify` reports. */
typedef struct dm_ledger_report {
    int64_t accounts;
    int64_t transfers;
    int64_t total_micros; /* the sum of all stored balances: 0 when sound */
    int ok;
    /* when !ok: the first offending account (by id; 0 when the fault is
     * not one account's), and what is wrong with it */
    int64_t account_id;
    const char *account_name;
    int64_t stored_micros;
    int64_t expected_micros; /* from the transfers */
    const char *problem;
} dm_ledger_report;

/* Recomputes every balance from the transfers and checks it against the
 * stored one, that no held account is negative, that every transfer's
 * currency is its accounts', and that the balances of each currency sum
 * to zero. Read-only; one read transaction, so a consistent snapshot even
 * while the server writes. A database error is returned; findings go in
 * *report (report->ok). */
dm_err *dm_ledger_verify(dm_db *db, apr_pool_t *p, dm_ledger_report *report);

/* An operator's manual adjustment of member `user_id`'s wallet (platform
 * currency) against the `adjustments` system account: amount > 0
 * credits the wallet, < 0 debits it (refused, like any debit, if the
 * wallet would go below zero). Runs its own transaction, with an audit
 * entry "ledger.adjust" (target the member; after: transfer id, key,
 * amount, reason) by `staff_id` (0: the console) from `ip` (NULL:
 * console). `key` NULL makes a new key "adj:<uuid>"; given, it must start
 * with "adj:" (re-running with the printed key is safe: *created = 0).
 * reason: 1-500 characters of text, required. */
dm_err *dm_ledger_adjust(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                         int64_t user_id, int64_t amount_micros, const char *reason,
                         const char *key, dm_transfer *out, int *created);

#endif
