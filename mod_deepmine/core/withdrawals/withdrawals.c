/*
 * withdrawals.c — see withdrawals.h. The only writer of `withdrawals`.
 *
 * Exactly-once: a request's transfer is posted in the transaction that
 * inserts the row (BEGIN IMMEDIATE: two requests of one member are
 * serialised, and the ledger's guarded UPDATE refuses the one the wallet
 * cannot pay); a decision is a guarded UPDATE (... WHERE status =
 * 'pending') in the transaction of its transfer, so a second decision
 * changes nothing and answers DM_E_CONFLICT. An approval is refused while
 * the member's wallet is in debt; a clawback that makes the debt marks the
 * member's pending requests held for review (dm_wd_hold_for_debt, the
 * ledger's debt hook).
 */
#include "withdrawals/withdrawals.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/template.h"
#include "store/audit.h"
#include "store/db_group.h"
#include "referral/flags.h"
#include "base/json.h"
#include "base/template.h"
#include "ledger/ledger.h"
#include "mail/mailq.h"
#include "members/members.h"
#include "base/validate.h"

#define DAY_SECONDS (24 * 3600)

#define WD_COLUMNS                                                                                 \
    "w.id, w.user_id, w.amount_micros, w.currency, w.network, w.destination, w.status, w.txid, "   \
    "w.reason, w.requested_at, w.decided_at, w.decided_by, w.request_transfer_id, "                \
    "w.decision_transfer_id, u.email, w.held_at, w.held_reason, u.kyc_status, "                    \
    "EXISTS (SELECT 1 FROM twofa t WHERE t.subject = 'member' AND t.owner_id = w.user_id AND "     \
    "t.secret_enc IS NOT NULL), w.address_id, a.created_at, a.confirmed_at, "                      \
    "(SELECT group_concat(DISTINCT f.reason) FROM member_flags f WHERE f.user_id = w.user_id "     \
    "AND f.status IN ('open', 'confirmed'))"

/* The joins WD_COLUMNS reads from. */
#define WD_FROM                                                                                    \
    " FROM withdrawals w JOIN users u ON u.id = w.user_id LEFT JOIN withdrawal_addresses a ON "    \
    "a.id = w.address_id "

static const char BASE58[] = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
static const char BECH32[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
static const char HEX[] = "0123456789abcdefABCDEF";

static const char *id_str(apr_pool_t *p, int64_t id)
{
    return apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)id);
}

/* ---- destinations ---- */

static int only(const char *s, const char *alphabet)
{
    return strspn(s, alphabet) == strlen(s);
}

/* TRON: 'T' + 33 base58 characters (a base58check of 0x41 + 20 bytes). */
static int trc20_ok(const char *s)
{
    return strlen(s) == 34 && s[0] == 'T' && only(s, BASE58);
}

/* Ethereum: 0x + 40 hex digits, any case (no EIP-55 checksum check). */
static int erc20_ok(const char *s)
{
    return strlen(s) == 42 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && only(s + 2, HEX);
}

/* Bitcoin mainnet: bech32/bech32m "bc1" + 11..71 data characters in one
 * case (BIP 173: 14..74 in all), or legacy base58 P2PKH ('1') / P2SH
 * ('3'), 26..35 characters. */
static int btc_ok(apr_pool_t *p, const char *s)
{
    size_t n = strlen(s);

    if (n >= 14 && n <= 74 && strncasecmp(s, "bc1", 3) == 0) {
        char *lower = apr_pstrdup(p, s);
        int has_lower = 0, has_upper = 0;
        for (char *c = lower; *c; c++) {
            has_lower |= (*c >= 'a' && *c <= 'z');
            has_upper |= (*c >= 'A' && *c <= 'Z');
            *c = (char)apr_tolower(*c);
        }
        return !(has_lower && has_upper) && only(lower + 3, BECH32);
    }
    return n >= 26 && n <= 35 && (s[0] == '1' || s[0] == '3') && only(s, BASE58);
}

dm_err *dm_wd_validate_destination(apr_pool_t *p, const char *network, const char *destination,
                                   const char **key)
{
    int ok;

    if (!network || (strcmp(network, "trc20") != 0 && strcmp(network, "erc20") != 0 &&
                     strcmp(network, "btc") != 0)) {
        return dm_err_make(p, DM_E_INVALID, "network",
                           "network must be \"trc20\", \"erc20\" or \"btc\"");
    }
    if (!destination || !*destination || strlen(destination) > DM_WD_DESTINATION_MAX) {
        return dm_err_make(p, DM_E_INVALID, "destination", "destination is required");
    }
    if (strcmp(network, "trc20") == 0) {
        ok = trc20_ok(destination);
    } else if (strcmp(network, "erc20") == 0) {
        ok = erc20_ok(destination);
    } else {
        ok = btc_ok(p, destination);
    }
    if (!ok) {
        return dm_err_make(p, DM_E_INVALID, "destination", "destination is not a %s address",
                           network);
    }
    if (key) {
        /* erc20 and bech32 addresses are case-insensitive; base58 is not */
        int fold = strcmp(network, "erc20") == 0 || strncasecmp(destination, "bc1", 3) == 0;
        char *k = apr_pstrdup(p, destination);
        for (char *c = k; fold && *c; c++) {
            *c = (char)apr_tolower(*c);
        }
        *key = k;
    }
    return NULL;
}

const char *dm_wd_network_of(apr_pool_t *p, const char *destination)
{
    static const char *const networks[] = {"trc20", "erc20", "btc"};

    for (size_t i = 0; destination && i < sizeof(networks) / sizeof(networks[0]); i++) {
        if (!dm_wd_validate_destination(p, networks[i], destination, NULL)) {
            return networks[i];
        }
    }
    return NULL;
}

/* ---- rows ---- */

static int64_t opt_int(dm_stmt *st, int col)
{
    return dm_stmt_is_null(st, col) ? 0 : dm_stmt_int64(st, col);
}

static void read_row(dm_stmt *st, apr_pool_t *p, dm_withdrawal *w)
{
    w->id = dm_stmt_int64(st, 0);
    w->user_id = dm_stmt_int64(st, 1);
    w->amount_micros = dm_stmt_int64(st, 2);
    w->currency = apr_pstrdup(p, dm_stmt_text(st, 3, NULL));
    w->network = apr_pstrdup(p, dm_stmt_text(st, 4, NULL));
    w->destination = apr_pstrdup(p, dm_stmt_text(st, 5, NULL));
    w->status = apr_pstrdup(p, dm_stmt_text(st, 6, NULL));
    w->txid = dm_stmt_dup_text(st, p, 7);
    w->reason = dm_stmt_dup_text(st, p, 8);
    w->requested_at = dm_stmt_int64(st, 9);
    w->decided_at = opt_int(st, 10);
    w->decided_by = opt_int(st, 11);
    w->request_transfer_id = opt_int(st, 12);
    w->decision_transfer_id = opt_int(st, 13);
    w->email = apr_pstrdup(p, dm_stmt_text(st, 14, NULL));
    w->held_at = opt_int(st, 15);
    w->held_reason = dm_stmt_dup_text(st, p, 16);
    w->kyc_status = apr_pstrdup(p, dm_stmt_text(st, 17, NULL));
    w->two_factor = (int)dm_stmt_int64(st, 18);
    w->address_id = opt_int(st, 19);
    w->address_created_at = opt_int(st, 20);
    w->address_confirmed_at = opt_int(st, 21);
    w->flags = dm_stmt_dup_text(st, p, 22);
}

dm_err *dm_wd_get(dm_db *db, apr_pool_t *p, int64_t id, dm_withdrawal *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p, "SELECT " WD_COLUMNS WD_FROM "WHERE w.id = ?", &st);

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
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "no withdrawal %" APR_INT64_T_FMT,
                        (apr_int64_t)id);
    }
    return e;
}

static int status_ok(const char *s)
{
    return strcmp(s, "pending") == 0 || strcmp(s, "paid") == 0 || strcmp(s, "rejected") == 0;
}

dm_err *dm_wd_list(dm_db *db, apr_pool_t *p, int64_t user_id, const char *status, int64_t cursor,
                   int limit, apr_array_header_t **rows, int64_t *next_cursor)
{
    dm_stmt *st;
    int row = 0;
    apr_array_header_t *list = apr_array_make(p, limit > 0 ? limit : 1, sizeof(dm_withdrawal));
    dm_err *e;

    *next_cursor = 0;
    if (status && !status_ok(status)) {
        return dm_err_make(p, DM_E_INVALID, "status",
                           "status must be \"pending\", \"paid\" or \"rejected\"");
    }
    if (limit < 1 || limit > DM_WD_PAGE_MAX) {
        return dm_err_make(p, DM_E_INVALID, "limit", "limit must be 1 to %d", DM_WD_PAGE_MAX);
    }
    /* One statement for the four filter combinations: a 0 / NULL
     * parameter switches its condition off. */
    e = dm_db_prepare(db, p,
                      "SELECT " WD_COLUMNS WD_FROM
                      "WHERE (? = 0 OR w.user_id = ?) AND (? IS NULL OR w.status = ?) "
                      "AND (? = 0 OR w.id < ?) ORDER BY w.id DESC LIMIT ?",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_int64(st, 2, user_id);
    for (int i = 3; i <= 4; i++) {
        if (status) {
            dm_stmt_bind_text(st, i, status, strlen(status));
        } else {
            dm_stmt_bind_null(st, i);
        }
    }
    dm_stmt_bind_int64(st, 5, cursor);
    dm_stmt_bind_int64(st, 6, cursor);
    dm_stmt_bind_int64(st, 7, (int64_t)limit + 1);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        if (list->nelts == limit) {
            *next_cursor = APR_ARRAY_IDX(list, list->nelts - 1, dm_withdrawal).id;
            break;
        }
        read_row(st, p, apr_array_push(list));
    }
    dm_stmt_done(st);
    if (!e) {
        *rows = list;
    }
    return e;
}

/* What staff weigh before paying (withdrawals.h). */
static json_t *member_checks(apr_pool_t *p, const dm_withdrawal *w)
{
    json_t *o = json_object(), *flags = json_array();
    char *list = w->flags ? apr_pstrdup(p, w->flags) : NULL, *last = NULL;

    for (char *f = list ? apr_strtok(list, ",", &last) : NULL; f;
         f = apr_strtok(NULL, ",", &last)) {
        json_array_append_new(flags, json_string(f));
    }
    json_object_set_new(o, "kyc_status", json_string(w->kyc_status ? w->kyc_status : "none"));
    json_object_set_new(o, "two_factor", json_boolean(w->two_factor));
    json_object_set_new(o, "address_id", w->address_id ? json_integer(w->address_id) : json_null());
    json_object_set_new(o, "address_added_at", dm_json_time_or_null(p, w->address_created_at));
    json_object_set_new(o, "address_confirmed_at",
                        dm_json_time_or_null(p, w->address_confirmed_at));
    json_object_set_new(o, "address_age_seconds",
                        w->address_confirmed_at
                            ? json_integer(w->requested_at - w->address_confirmed_at)
                            : json_null());
    json_object_set_new(o, "fraud_flags", flags);
    return o;
}

json_t *dm_wd_json(apr_pool_t *p, const dm_withdrawal *w, int for_staff)
{
    json_t *o = json_object();

    json_object_set_new(o, "id", json_integer(w->id));
    json_object_set_new(o, "amount_micros", json_integer(w->amount_micros));
    json_object_set_new(o, "currency", json_string(w->currency));
    json_object_set_new(o, "network", json_string(w->network));
    json_object_set_new(o, "destination", json_string(w->destination));
    json_object_set_new(o, "status", json_string(w->status));
    json_object_set_new(o, "txid", w->txid ? json_string(w->txid) : json_null());
    json_object_set_new(o, "reason", w->reason ? json_string(w->reason) : json_null());
    json_object_set_new(o, "requested_at", json_string(dm_json_time(p, w->requested_at)));
    json_object_set_new(o, "decided_at", dm_json_time_or_null(p, w->decided_at));
    if (for_staff) {
        json_object_set_new(o, "user_id", json_integer(w->user_id));
        json_object_set_new(o, "email", json_string(w->email ? w->email : ""));
        json_object_set_new(o, "decided_by",
                            w->decided_by ? json_integer(w->decided_by) : json_null());
        json_object_set_new(o, "request_transfer_id", json_integer(w->request_transfer_id));
        json_object_set_new(o, "decision_transfer_id",
                            w->decision_transfer_id ? json_integer(w->decision_transfer_id)
                                                    : json_null());
        json_object_set_new(o, "held_for_review", json_boolean(w->held_at != 0));
        json_object_set_new(o, "held_at", dm_json_time_or_null(p, w->held_at));
        json_object_set_new(o, "held_reason",
                            w->held_reason ? json_string(w->held_reason) : json_null());
        json_object_set_new(o, "member_checks", member_checks(p, w));
    }
    return o;
}

/* ---- the e-mails ---- */

static dm_err *mail(dm_db *db, apr_pool_t *p, const dm_withdrawal *w, const char *tmpl,
                    const char *step)
{
    json_t *vars = dm_json_own(p, dm_wd_json(p, w, 0));

    return dm_mail_enqueue(db, p, w->email, tmpl, vars,
                           apr_psprintf(p, "wd:%" APR_INT64_T_FMT ":%s", (apr_int64_t)w->id, step));
}

/* ---- requests ---- */

static dm_err *check_member(apr_pool_t *p, const dm_member *m)
{
    if (!m->email_verified_at) {
        return dm_err_make(p, DM_E_FORBIDDEN, NULL,
                           "verify your e-mail address before withdrawing");
    }
    if (!m->kyc_status || strcmp(m->kyc_status, "approved") != 0) {
        return dm_err_make(p, DM_E_FORBIDDEN, NULL, "identity check required");
    }
    return NULL;
}

/* The member's requests in the last 24 h, rejected ones not counted. */
static dm_err *requested_today(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t *sum)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT COALESCE(SUM(amount_micros), 0) FROM withdrawals "
                              "WHERE user_id = ? AND requested_at > ? AND status <> 'rejected'",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_int64(st, 2, dm_now() - DAY_SECONDS);
    e = dm_stmt_step(st, p, &row);
    *sum = (!e && row) ? dm_stmt_int64(st, 0) : 0;
    dm_stmt_done(st);
    return e;
}

/* Another member who has used this destination (the lowest id), or 0. */
static dm_err *destination_shared(dm_db *db, apr_pool_t *p, int64_t user_id, const char *network,
                                  const char *key, int64_t *other)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT user_id FROM withdrawals WHERE network = ? AND "
                              "destination_key = ? AND user_id <> ? ORDER BY user_id LIMIT 1",
                              &st);

    *other = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_text(st, 1, network, strlen(network));
    dm_stmt_bind_text(st, 2, key, strlen(key));
    dm_stmt_bind_int64(st, 3, user_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        *other = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *insert_request(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t amount,
                              const char *network, const char *destination, const char *key,
                              int64_t *id)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO withdrawals (user_id, amount_micros, currency, network, "
                              "destination, destination_key, status, requested_at) "
                              "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?) RETURNING id",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_int64(st, 2, amount);
    dm_stmt_bind_text(st, 3, DM_LEDGER_CURRENCY, strlen(DM_LEDGER_CURRENCY));
    dm_stmt_bind_text(st, 4, network, strlen(network));
    dm_stmt_bind_text(st, 5, destination, strlen(destination));
    dm_stmt_bind_text(st, 6, key, strlen(key));
    dm_stmt_bind_int64(st, 7, dm_now());
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        *id = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *set_transfer(dm_db *db, apr_pool_t *p, int64_t id, int64_t transfer_id,
                            int64_t address_id)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(
        db, p, "UPDATE withdrawals SET request_transfer_id = ?, address_id = ? WHERE id = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, transfer_id);
    if (address_id) {
        dm_stmt_bind_int64(st, 2, address_id);
    } else {
        dm_stmt_bind_null(st, 2);
    }
    dm_stmt_bind_int64(st, 3, id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

typedef struct guard_call {
    dm_wd_guard_fn *fn;
    void *baton;
    int64_t address_id;
} guard_call;

static dm_err *request_txn(dm_db *db, apr_pool_t *p, const dm_wd_limits *lim, int64_t user_id,
                           int64_t amount, const char *network, const char *destination,
                           const char *key, const guard_call *g, dm_withdrawal *out,
                           int64_t *shared_with)
{
    dm_member m;
    int64_t today = 0, id = 0, wallet = 0, pending = 0;
    dm_transfer_req req;
    dm_transfer t;
    int created = 0;
    dm_err *e;

    memset(&t, 0, sizeof(t));
    e = dm_member_get(db, p, user_id, &m);

    if (!e) {
        e = check_member(p, &m);
    }
    if (!e && g->fn) {
        e = g->fn(db, p, g->baton);
    }
    if (!e) {
        e = requested_today(db, p, user_id, &today);
    }
    if (!e && today > lim->daily_micros - amount) {
        e = dm_err_make(p, DM_E_CONFLICT, "amount_micros",
                        "daily withdrawal limit: %" APR_INT64_T_FMT " of %" APR_INT64_T_FMT
                        " micro-units already requested in the last 24 hours",
                        (apr_int64_t)today, (apr_int64_t)lim->daily_micros);
    }
    if (!e) {
        e = destination_shared(db, p, user_id, network, key, shared_with);
    }
    /* Two members paid out to one address: flag both (flags.h). */
    if (!e && *shared_with) {
        e = dm_flags_raise(db, p, user_id, *shared_with, DM_WD_FLAG_SHARED_DESTINATION);
    }
    if (!e && *shared_with) {
        e = dm_flags_raise(db, p, *shared_with, user_id, DM_WD_FLAG_SHARED_DESTINATION);
    }
    if (!e) {
        e = insert_request(db, p, user_id, amount, network, destination, key, &id);
    }
    if (!e) {
        e = dm_ledger_member_account(db, p, user_id, DM_ACCOUNT_WALLET, DM_LEDGER_CURRENCY,
                                     &wallet);
    }
    if (!e) {
        e = dm_ledger_system_account(db, p, DM_SYS_WITHDRAWALS_PENDING, DM_LEDGER_CURRENCY,
                                     &pending);
    }
    if (!e) {
        memset(&req, 0, sizeof(req));
        req.idempotency_key = apr_psprintf(p, "wd:%" APR_INT64_T_FMT ":request", (apr_int64_t)id);
        req.debit_account_id = wallet;
        req.credit_account_id = pending;
        req.amount_micros = amount;
        req.currency = DM_LEDGER_CURRENCY;
        req.kind = DM_KIND_WITHDRAWAL;
        req.reference = apr_pstrcat(p, "withdrawal:", id_str(p, id), NULL);
        e = dm_ledger_transfer(db, p, &req, &t, &created);
        /* The member reads this: their balance and the amount, in money. */
        if (e && e->code == DM_E_CONFLICT && strstr(e->message, "insufficient")) {
            dm_account a = {0};
            int64_t have = dm_ledger_account_get(db, p, wallet, &a) ? 0 : a.balance_micros;
            e = dm_err_make(p, DM_E_CONFLICT, NULL,
                            "insufficient balance: your balance is %s; you asked to withdraw %s",
                            dm_tmpl_money(p, have, DM_LEDGER_CURRENCY),
                            dm_tmpl_money(p, amount, DM_LEDGER_CURRENCY));
        }
    }
    if (!e) {
        e = set_transfer(db, p, id, t.id, g->address_id);
    }
    if (!e) {
        e = dm_wd_get(db, p, id, out);
    }
    return e ? e : mail(db, p, out, "withdrawal_requested", "requested");
}

/* request_txn's arguments, for dm_db_write_txn. */
typedef struct request_args {
    const dm_wd_limits *lim;
    int64_t user_id;
    int64_t amount_micros;
    const char *network;
    const char *destination;
    const char *key;
    const guard_call *g;
    dm_withdrawal *out;
    int64_t *other;
} request_args;

static dm_err *request_fn(dm_db *db, apr_pool_t *p, void *arg)
{
    request_args *a = arg;
    return request_txn(db, p, a->lim, a->user_id, a->amount_micros, a->network, a->destination,
                       a->key, a->g, a->out, a->other);
}

dm_err *dm_wd_request(dm_db *db, apr_pool_t *p, const dm_wd_limits *lim, int64_t user_id,
                      int64_t amount_micros, const char *network, const char *destination,
                      dm_withdrawal *out, int64_t *shared_with)
{
    return dm_wd_request_guarded(db, p, lim, user_id, amount_micros, network, destination, 0, NULL,
                                 NULL, out, shared_with);
}

dm_err *dm_wd_request_guarded(dm_db *db, apr_pool_t *p, const dm_wd_limits *lim, int64_t user_id,
                              int64_t amount_micros, const char *network, const char *destination,
                              int64_t address_id, dm_wd_guard_fn *guard, void *baton,
                              dm_withdrawal *out, int64_t *shared_with)
{
    guard_call g;
    request_args a;
    const char *key = NULL;
    int64_t other = 0;
    dm_err *e;

    if (amount_micros < lim->min_micros || amount_micros > lim->max_micros) {
        return dm_err_make(p, DM_E_INVALID, "amount_micros",
                           "amount_micros must be between %" APR_INT64_T_FMT
                           " and %" APR_INT64_T_FMT,
                           (apr_int64_t)lim->min_micros, (apr_int64_t)lim->max_micros);
    }
    e = dm_wd_validate_destination(p, network, destination, &key);
    if (e) {
        return e;
    }
    g.fn = guard;
    g.baton = baton;
    g.address_id = address_id;
    a.lim = lim;
    a.user_id = user_id;
    a.amount_micros = amount_micros;
    a.network = network;
    a.destination = destination;
    a.key = key;
    a.g = &g;
    a.out = out;
    a.other = &other;
    /* other requests' writes may share its commit (store/db_group.h) */
    e = dm_db_write_txn(db, p, request_fn, &a);
    if (!e && shared_with) {
        *shared_with = other;
    }
    return e;
}

/* ---- decisions ---- */

static dm_err *mark_decided(dm_db *db, apr_pool_t *p, int64_t id, const char *status,
                            const char *txid, const char *reason, int64_t staff_id,
                            int64_t transfer_id)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "UPDATE withdrawals SET status = ?, txid = ?, reason = ?, "
                              "decided_at = ?, decided_by = ?, decision_transfer_id = ? "
                              "WHERE id = ? AND status = 'pending'",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_text(st, 1, status, strlen(status));
    if (txid) {
        dm_stmt_bind_text(st, 2, txid, strlen(txid));
    } else {
        dm_stmt_bind_null(st, 2);
    }
    if (reason) {
        dm_stmt_bind_text(st, 3, reason, strlen(reason));
    } else {
        dm_stmt_bind_null(st, 3);
    }
    dm_stmt_bind_int64(st, 4, dm_now());
    if (staff_id) {
        dm_stmt_bind_int64(st, 5, staff_id);
    } else {
        dm_stmt_bind_null(st, 5);
    }
    dm_stmt_bind_int64(st, 6, transfer_id);
    dm_stmt_bind_int64(st, 7, id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (!e && dm_db_changes(db) != 1) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL,
                        "withdrawal %" APR_INT64_T_FMT " is already decided", (apr_int64_t)id);
    }
    return e;
}

static dm_err *pay(dm_db *db, apr_pool_t *p, const dm_withdrawal *w, dm_transfer *t)
{
    int64_t pending = 0, paid = 0;
    int created = 0;
    dm_transfer_req req;
    dm_err *e = dm_ledger_system_account(db, p, DM_SYS_WITHDRAWALS_PENDING, w->currency, &pending);

    if (!e) {
        e = dm_ledger_system_account(db, p, DM_SYS_WITHDRAWALS_PAID, w->currency, &paid);
    }
    if (e) {
        return e;
    }
    memset(&req, 0, sizeof(req));
    req.idempotency_key = apr_psprintf(p, "wd:%" APR_INT64_T_FMT ":paid", (apr_int64_t)w->id);
    req.debit_account_id = pending;
    req.credit_account_id = paid;
    req.amount_micros = w->amount_micros;
    req.currency = w->currency;
    req.kind = DM_KIND_WITHDRAWAL_PAID;
    req.reference = apr_pstrcat(p, "withdrawal:", id_str(p, w->id), NULL);
    return dm_ledger_transfer(db, p, &req, t, &created);
}

/* A withdrawal is never paid out of a debt: while the member's wallet is
 * below zero (a clawback after the request), approval is refused with the
 * reason finance needs. Read in the decision's transaction (BEGIN
 * IMMEDIATE), so no clawback can come between the check and the payout. */
static dm_err *check_not_in_debt(dm_db *db, apr_pool_t *p, const dm_withdrawal *w)
{
    dm_balances b;
    dm_err *e = dm_ledger_member_balances(db, p, w->user_id, w->currency, &b);

    if (e || b.wallet_micros >= 0) {
        return e;
    }
    return dm_err_make(p, DM_E_CONFLICT, NULL,
                       "member %" APR_INT64_T_FMT "'s wallet is in debt (%s): withdrawal "
                       "%" APR_INT64_T_FMT " cannot be paid out of a debt. Reject it (its amount "
                       "goes back to the wallet and pays the debt first) or approve it once the "
                       "debt is repaid",
                       (apr_int64_t)w->user_id, dm_tmpl_money(p, b.wallet_micros, w->currency),
                       (apr_int64_t)w->id);
}

static dm_err *decide_txn(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip, int64_t id,
                          int approve, const char *txid, const char *reason, dm_withdrawal *out)
{
    dm_withdrawal before;
    dm_transfer t;
    int created = 0;
    json_t *b, *a;
    dm_err *e;

    memset(&t, 0, sizeof(t));
    e = dm_wd_get(db, p, id, &before);

    if (!e && strcmp(before.status, "pending") != 0) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL, "withdrawal %" APR_INT64_T_FMT " is already %s",
                        (apr_int64_t)id, before.status);
    }
    if (!e && approve) {
        e = check_not_in_debt(db, p, &before);
    }
    if (!e) {
        e = approve ? pay(db, p, &before, &t)
                    : dm_ledger_reverse(
                          db, p, before.request_transfer_id,
                          apr_psprintf(p, "wd:%" APR_INT64_T_FMT ":rejected", (apr_int64_t)id),
                          DM_KIND_WITHDRAWAL_REJECTED, NULL, &t, &created);
    }
    if (!e) {
        e = mark_decided(db, p, id, approve ? "paid" : "rejected", approve ? txid : NULL,
                         approve ? NULL : reason, staff_id, t.id);
    }
    if (!e) {
        e = dm_wd_get(db, p, id, out);
    }
    if (e) {
        return e;
    }
    b = dm_json_own(p, dm_wd_json(p, &before, 1));
    a = dm_json_own(p, dm_wd_json(p, out, 1));
    e = dm_audit_write(db, p, staff_id, approve ? "withdrawal.approve" : "withdrawal.reject",
                       "withdrawal", id_str(p, id), b, a, ip);
    return e ? e
             : mail(db, p, out, approve ? "withdrawal_approved" : "withdrawal_rejected",
                    approve ? "paid" : "rejected");
}

/* ---- debts ---- */

dm_err *dm_wd_hold_for_debt(dm_db *db, apr_pool_t *p, int64_t user_id, const dm_transfer *t,
                            int64_t wallet_micros)
{
    const char *debt = dm_tmpl_money(p, wallet_micros, t->currency);
    const char *why =
        apr_psprintf(p, "wallet in debt (%s) after %s %s (transfer %" APR_INT64_T_FMT ")", debt,
                     t->kind, t->reference ? t->reference : "", (apr_int64_t)t->id);
    json_t *vars;
    dm_stmt *st;
    int row = 0;
    int64_t held;
    dm_err *e = dm_db_prepare(db, p,
                              "UPDATE withdrawals SET held_at = ?, held_reason = ? "
                              "WHERE user_id = ? AND currency = ? AND status = 'pending' "
                              "AND held_at IS NULL",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, dm_now());
    dm_stmt_bind_str(st, 2, why);
    dm_stmt_bind_int64(st, 3, user_id);
    dm_stmt_bind_str(st, 4, t->currency);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    held = e ? 0 : dm_db_changes(db);
    if (e || held == 0) {
        return e;
    }
    dm_log(DM_L_WARN,
           "DM01100: member %" APR_INT64_T_FMT
           "'s wallet is in debt (%s) after %s %s; %" APR_INT64_T_FMT
           " pending withdrawal(s) held for review",
           (apr_int64_t)user_id, debt, t->kind, t->reference ? t->reference : "",
           (apr_int64_t)held);
    vars = dm_json_own(p, json_object());
    json_object_set_new(vars, "reason", json_string("withdrawal_held"));
    json_object_set_new(
        vars, "detail",
        json_string(apr_psprintf(p,
                                 "Member %" APR_INT64_T_FMT ": %s. %" APR_INT64_T_FMT
                                 " pending withdrawal(s) held for review; they cannot be approved "
                                 "while the wallet is in debt.",
                                 (apr_int64_t)user_id, why, (apr_int64_t)held)));
    return dm_mail_staff_alert(db, p, 1, vars,
                               apr_psprintf(p, "wd-debt:%" APR_INT64_T_FMT, (apr_int64_t)t->id));
}

dm_err *dm_wd_decide(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip, int64_t id,
                     int approve, const char *txid, const char *reason, dm_withdrawal *out)
{
    dm_err *e = NULL;

    if (approve && (!txid || !*txid || strlen(txid) > DM_WD_TXID_MAX)) {
        return dm_err_make(p, DM_E_INVALID, "txid",
                           "txid (the payout transaction id) is required, 1 to %d bytes",
                           DM_WD_TXID_MAX);
    }
    if (approve) {
        e = dm_validate_text(p, "txid", txid, DM_WD_TXID_MAX, 0);
    } else if (!reason || !*reason) {
        e = dm_err_make(p, DM_E_INVALID, "reason", "a reason is required to reject");
    } else {
        e = dm_validate_text(p, "reason", reason, DM_WD_REASON_MAX, 1);
    }
    if (!e) {
        e = dm_db_begin(db, p);
    }
    if (e) {
        return e;
    }
    e = decide_txn(db, p, staff_id, ip, id, approve, txid, reason, out);
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}
