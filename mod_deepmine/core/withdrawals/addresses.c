/*
 * addresses.c — see addresses.h. The link token is stored hashed in the
 * entry itself (under the token-hash key, as e-mail tokens are) and
 * cleared on use, so a link works once.
 */
#include "withdrawals/addresses.h"

#include <apr_strings.h>
#include <string.h>

#include "base/clock.h"
#include "base/json.h"
#include "base/validate.h"
#include "mail/mailq.h"
#include "members/twofa.h"

#define ADDR_COLUMNS                                                                               \
    "id, user_id, currency, network, address, label, created_at, confirmed_at, usable_at"

static int64_t opt_int(dm_stmt *st, int col)
{
    return dm_stmt_is_null(st, col) ? 0 : dm_stmt_int64(st, col);
}

static void read_addr(dm_stmt *st, apr_pool_t *p, dm_wd_address *a)
{
    a->id = dm_stmt_int64(st, 0);
    a->user_id = dm_stmt_int64(st, 1);
    a->currency = apr_pstrdup(p, dm_stmt_text(st, 2, NULL));
    a->network = apr_pstrdup(p, dm_stmt_text(st, 3, NULL));
    a->address = apr_pstrdup(p, dm_stmt_text(st, 4, NULL));
    a->label = dm_stmt_dup_text(st, p, 5);
    a->created_at = dm_stmt_int64(st, 6);
    a->confirmed_at = opt_int(st, 7);
    a->usable_at = opt_int(st, 8);
}

static const char *hours_text(apr_pool_t *p, int64_t seconds)
{
    if (seconds % 3600 == 0) {
        return apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)(seconds / 3600));
    }
    return apr_psprintf(p, "%.2f", (double)seconds / 3600.0);
}

json_t *dm_wd_address_json(apr_pool_t *p, const dm_wd_address *a, int64_t now)
{
    json_t *o = json_object();

    json_object_set_new(o, "id", json_integer(a->id));
    json_object_set_new(o, "currency", json_string(a->currency));
    json_object_set_new(o, "network", json_string(a->network));
    json_object_set_new(o, "address", json_string(a->address));
    json_object_set_new(o, "label", a->label ? json_string(a->label) : json_null());
    json_object_set_new(o, "status", json_string(a->confirmed_at ? "confirmed" : "pending"));
    json_object_set_new(o, "created_at", json_string(dm_json_time(p, a->created_at)));
    json_object_set_new(o, "confirmed_at", dm_json_time_or_null(p, a->confirmed_at));
    json_object_set_new(o, "usable_at", dm_json_time_or_null(p, a->usable_at));
    json_object_set_new(o, "usable", json_boolean(a->confirmed_at && a->usable_at <= now));
    return o;
}

static dm_err *get_addr(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t id, dm_wd_address *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT " ADDR_COLUMNS " FROM withdrawal_addresses WHERE id = ? AND "
                              "user_id = ? AND deleted_at IS NULL",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, id);
    dm_stmt_bind_int64(st, 2, user_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        read_addr(st, p, out);
    }
    dm_stmt_done(st);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL,
                        "no address %" APR_INT64_T_FMT " in your address book", (apr_int64_t)id);
    }
    return e;
}

static dm_err *count_live(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t *n)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT COUNT(*) FROM withdrawal_addresses WHERE user_id = ? AND "
                              "deleted_at IS NULL",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    e = dm_stmt_step(st, p, &row);
    *n = (!e && row) ? dm_stmt_int64(st, 0) : 0;
    dm_stmt_done(st);
    return e;
}

static dm_err *add_txn(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_member *m,
                       const char *network, const char *address, const char *key, const char *label,
                       dm_wd_address *out)
{
    dm_stmt *st;
    int row = 0;
    int64_t now = dm_now(), id = 0, n = 0;
    const char *token = dm_token_new(p);
    json_t *vars;
    dm_err *e = count_live(db, p, m->id, &n);

    if (!e && n >= DM_WD_ADDRESS_MAX) {
        e = dm_err_make(p, DM_E_CONFLICT, NULL,
                        "the address book holds at most %d addresses; remove one first",
                        DM_WD_ADDRESS_MAX);
    }
    if (!e) {
        e = dm_db_prepare(db, p,
                          "INSERT INTO withdrawal_addresses (user_id, currency, network, address, "
                          "address_key, label, token_hash, token_expires_at, created_at) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                          &st);
    }
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, m->id);
    dm_stmt_bind_str(st, 2, DM_LEDGER_CURRENCY);
    dm_stmt_bind_str(st, 3, network);
    dm_stmt_bind_str(st, 4, address);
    dm_stmt_bind_str(st, 5, key);
    dm_stmt_bind_str(st, 6, label);
    dm_stmt_bind_str(st, 7, dm_token_hash(p, s->keys->token_hash, token));
    dm_stmt_bind_int64(st, 8, now + DM_WD_ADDRESS_LINK_TTL);
    dm_stmt_bind_int64(st, 9, now);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        id = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    if (e && e->code == DM_E_CONFLICT) {
        return dm_err_make(p, DM_E_CONFLICT, "address", "this address is already in your book");
    }
    if (!e) {
        e = get_addr(db, p, m->id, id, out);
    }
    if (e) {
        return e;
    }
    vars = dm_json_own(p, json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:s}", "email", m->email, "address",
                                    address, "network", network, "url",
                                    apr_pstrcat(p, s->public_url ? s->public_url : "",
                                                "/confirm-address?token=", token, NULL),
                                    "token", token, "expires_in_hours",
                                    (json_int_t)(DM_WD_ADDRESS_LINK_TTL / 3600), "delay_hours",
                                    hours_text(p, dm_protect_delay())));
    return dm_mail_enqueue(
        db, p, m->email, "withdrawal_address_added", vars,
        apr_psprintf(p, "wd-address:%" APR_INT64_T_FMT ":added", (apr_int64_t)id));
}

dm_err *dm_wd_address_add(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_member *m,
                          const char *network, const char *address, const char *label,
                          dm_wd_address *out)
{
    const char *key = NULL;
    dm_err *e = NULL;

    if (!address || !*address) {
        return dm_err_make(p, DM_E_INVALID, "address", "address is required");
    }
    if (!network && !(network = dm_wd_network_of(p, address))) {
        return dm_err_make(p, DM_E_INVALID, "address",
                           "address is not a trc20, erc20 or btc address");
    }
    e = dm_wd_validate_destination(p, network, address, &key);
    if (e && e->field && strcmp(e->field, "destination") == 0) {
        e = dm_err_make(p, DM_E_INVALID, "address", "%s", e->message);
    }
    if (!e && label) {
        e = dm_validate_text(p, "label", label, DM_WD_LABEL_MAX, 1);
    }
    if (!e) {
        e = dm_db_begin(db, p);
    }
    if (e) {
        return e;
    }
    e = add_txn(db, p, s, m, network, address, key, label && *label ? label : NULL, out);
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

static dm_err *confirm_txn(dm_db *db, apr_pool_t *p, const char *hash, dm_wd_address *out)
{
    dm_stmt *st;
    int row = 0;
    int64_t now = dm_now(), id = 0, user = 0;
    dm_member m = {0};
    json_t *vars;
    dm_err *e = dm_db_prepare(db, p,
                              "UPDATE withdrawal_addresses SET confirmed_at = ?, usable_at = ?, "
                              "token_hash = NULL WHERE token_hash = ? AND token_expires_at > ? AND "
                              "confirmed_at IS NULL AND deleted_at IS NULL RETURNING id, user_id",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, now);
    dm_stmt_bind_int64(st, 2, now + dm_protect_delay());
    dm_stmt_bind_str(st, 3, hash);
    dm_stmt_bind_int64(st, 4, now);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        id = dm_stmt_int64(st, 0);
        user = dm_stmt_int64(st, 1);
    }
    dm_stmt_done(st);
    if (!e && !row) {
        e = dm_err_make(p, DM_E_INVALID, "token",
                        "this link is not valid: it was already used, has expired, or is wrong");
    }
    if (!e) {
        e = get_addr(db, p, user, id, out);
    }
    if (!e) {
        e = dm_member_get(db, p, user, &m);
    }
    if (e) {
        return e;
    }
    vars = dm_json_own(p, json_pack("{s:s,s:s,s:s,s:s}", "email", m.email, "address", out->address,
                                    "network", out->network, "usable_at",
                                    dm_json_time(p, out->usable_at)));
    return dm_mail_enqueue(
        db, p, m.email, "withdrawal_address_confirmed", vars,
        apr_psprintf(p, "wd-address:%" APR_INT64_T_FMT ":confirmed", (apr_int64_t)id));
}

dm_err *dm_wd_address_confirm(dm_db *db, apr_pool_t *p, const dm_services *s, const char *token,
                              dm_wd_address *out)
{
    dm_err *e;

    if (!token || !*token || strlen(token) > 128) {
        return dm_err_make(p, DM_E_INVALID, "token", "the token is missing or malformed");
    }
    e = dm_db_begin(db, p);
    if (e) {
        return e;
    }
    e = confirm_txn(db, p, dm_token_hash(p, s->keys->token_hash, token), out);
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

dm_err *dm_wd_address_list(dm_db *db, apr_pool_t *p, int64_t user_id, apr_array_header_t **rows)
{
    dm_stmt *st;
    int row = 0;
    apr_array_header_t *list = apr_array_make(p, 4, sizeof(dm_wd_address));
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT " ADDR_COLUMNS " FROM withdrawal_addresses WHERE user_id = ? "
                              "AND deleted_at IS NULL ORDER BY id DESC",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        read_addr(st, p, apr_array_push(list));
    }
    dm_stmt_done(st);
    if (!e) {
        *rows = list;
    }
    return e;
}

dm_err *dm_wd_address_remove(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t id)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_begin(db, p);

    if (e) {
        return e;
    }
    e = dm_db_prepare(db, p,
                      "UPDATE withdrawal_addresses SET deleted_at = ?, token_hash = NULL WHERE "
                      "id = ? AND user_id = ? AND deleted_at IS NULL",
                      &st);
    if (!e) {
        dm_stmt_bind_int64(st, 1, dm_now());
        dm_stmt_bind_int64(st, 2, id);
        dm_stmt_bind_int64(st, 3, user_id);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    if (!e && dm_db_changes(db) != 1) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL,
                        "no address %" APR_INT64_T_FMT " in your address book", (apr_int64_t)id);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

/* ---- the protected request ---- */

typedef struct guard_ctx {
    const dm_services *s;
    int64_t user_id;
    int64_t address_id;
    const char *code;
} guard_ctx;

static dm_err *not_in_book(apr_pool_t *p, const char *destination)
{
    return dm_err_make(p, DM_E_ADDRESS_NOT_USABLE, "destination",
                       "withdrawals go only to addresses in your address book: add %s with POST "
                       "/api/me/addresses, confirm it through the link we e-mail you, and it can "
                       "be used %s hours after confirmation",
                       destination, hours_text(p, dm_protect_delay()));
}

static dm_err *check_locked(dm_db *db, apr_pool_t *p, int64_t user_id)
{
    dm_stmt *st;
    int row = 0;
    int64_t until = 0;
    dm_err *e =
        dm_db_prepare(db, p, "SELECT withdrawals_locked_until FROM users WHERE id = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        until = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    if (!e && until > dm_now()) {
        e = dm_err_make(p, DM_E_WITHDRAWALS_LOCKED, NULL,
                        "withdrawals are paused until %s after a recent change of your password "
                        "or two-factor sign-in",
                        dm_json_time(p, until));
    }
    return e;
}

/* Runs in the request's transaction (dm_wd_guard_fn). */
static dm_err *guard(dm_db *db, apr_pool_t *p, void *baton)
{
    guard_ctx *g = baton;
    dm_wd_address a;
    dm_2fa_state tf;
    int64_t now = dm_now();
    dm_err *e;

    memset(&a, 0, sizeof(a));
    memset(&tf, 0, sizeof(tf));
    e = check_locked(db, p, g->user_id);

    if (!e) {
        e = get_addr(db, p, g->user_id, g->address_id, &a);
        if (e && e->code == DM_E_NOT_FOUND) {
            e = dm_err_make(p, DM_E_ADDRESS_NOT_USABLE, "address_id", "%s", e->message);
        }
    }
    if (!e && !a.confirmed_at) {
        e = dm_err_make(p, DM_E_ADDRESS_NOT_USABLE, "address_id",
                        "the address %s is not confirmed yet: open the link we e-mailed you",
                        a.address);
    }
    if (!e && a.usable_at > now) {
        e = dm_err_make(p, DM_E_ADDRESS_NOT_USABLE, "address_id",
                        "the address %s was confirmed recently and can be used from %s", a.address,
                        dm_json_time(p, a.usable_at));
    }
    if (!e) {
        e = dm_2fa_state_get(db, p, DM_2FA_MEMBER, g->user_id, &tf);
    }
    if (!e && tf.enabled && (!g->code || !*g->code)) {
        e = dm_err_make(p, DM_E_TWO_FACTOR_REQUIRED, "code",
                        "two-factor sign-in is on: send the current code of your authenticator "
                        "app as \"code\"");
    }
    if (!e && tf.enabled) {
        e = dm_2fa_verify(db, p, g->s->keys, DM_2FA_MEMBER, g->user_id, g->code, 0, NULL);
    }
    return e;
}

/* The live book entry of `destination` on `network`, or 0. */
static dm_err *find_entry(dm_db *db, apr_pool_t *p, int64_t user_id, const char *network,
                          const char *key, int64_t *id)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT id FROM withdrawal_addresses WHERE user_id = ? AND "
                              "network = ? AND address_key = ? AND deleted_at IS NULL",
                              &st);

    *id = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_str(st, 2, network);
    dm_stmt_bind_str(st, 3, key);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        *id = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    return e;
}

dm_err *dm_wd_request_protected(dm_db *db, apr_pool_t *p, const dm_services *s,
                                const dm_wd_limits *lim, int64_t user_id,
                                const dm_wd_protected_req *req, dm_withdrawal *out)
{
    guard_ctx g;
    dm_wd_address a;
    const char *network = req->network, *key = NULL;
    int64_t id = req->address_id;
    dm_err *e = NULL;

    memset(&a, 0, sizeof(a));
    if (!id) {
        if (!network && !(network = dm_wd_network_of(p, req->destination))) {
            return dm_err_make(p, DM_E_INVALID, "destination",
                               "destination is not a trc20, erc20 or btc address");
        }
        e = dm_wd_validate_destination(p, network, req->destination, &key);
        if (!e) {
            e = find_entry(db, p, user_id, network, key, &id);
        }
        if (!e && !id) {
            e = not_in_book(p, req->destination);
        }
    }
    if (!e) {
        e = get_addr(db, p, user_id, id, &a);
        if (e && e->code == DM_E_NOT_FOUND) {
            e = dm_err_make(p, DM_E_ADDRESS_NOT_USABLE, "address_id", "%s", e->message);
        }
    }
    if (e) {
        return e;
    }
    g.s = s;
    g.user_id = user_id;
    g.address_id = id;
    g.code = req->code;
    return dm_wd_request_guarded(db, p, lim, user_id, req->amount_micros, a.network, a.address, id,
                                 guard, &g, out, NULL);
}
