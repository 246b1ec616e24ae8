/*
 * withdrawals.h — members taking money out: a request moves the amount
 * from the wallet to the `withdrawals_pending` system account in the
 * transaction that records it (so it cannot be spent twice); finance then
 * pays it (withdrawals_pending -> withdrawals_paid, with the payout's
 * transaction id) or rejects it (the request transfer reversed: the money
 * is back in the wallet). Each step is a ledger transfer keyed
 * "wd:<id>:request|paid|rejected", each decision audited, each step
 * queues an e-mail (withdrawal_requested, withdrawal_approved,
 * withdrawal_rejected).
 */
#ifndef DM_WITHDRAWALS_H
#define DM_WITHDRAWALS_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "base/err.h"
#include "ledger/ledger.h"
#include "store/db.h"

#define DM_WD_DEFAULT_MIN_MICROS 10000000LL      /* 10 USD */
#define DM_WD_DEFAULT_MAX_MICROS 10000000000LL   /* 10,000 USD */
#define DM_WD_DEFAULT_DAILY_MICROS 20000000000LL /* 20,000 USD per member per 24 h */
#define DM_WD_TXID_MAX 200
#define DM_WD_REASON_MAX 500
#define DM_WD_DESTINATION_MAX 100
#define DM_WD_PAGE_MAX 200
/* The fraud flag raised on two members who used one destination. */
#define DM_WD_FLAG_SHARED_DESTINATION "same_withdrawal_destination"

typedef struct dm_wd_limits {
    int64_t min_micros;
    int64_t max_micros;
    int64_t daily_micros; /* per member over the last 24 hours, rejected ones not counted */
} dm_wd_limits;

/* Checks `destination` for `network` ("trc20", "erc20", "btc"): shape
 * only (alphabet, length, prefix), no checksum — see docs/decisions.md.
 * DM_E_INVALID naming "network" or "destination" otherwise. *key gets the
 * form destinations are compared by (an erc20 address lower-cased). */
dm_err *dm_wd_validate_destination(apr_pool_t *p, const char *network, const char *destination,
                                   const char **key);

/* The network whose address shape `destination` has (the shapes do not
 * overlap: T… base58, 0x… hex, bc1…/1…/3…), or NULL. Lets a request that
 * names no network (API.md's {amount_micros, destination}) be served. */
const char *dm_wd_network_of(apr_pool_t *p, const char *destination);

typedef struct dm_withdrawal {
    int64_t id;
    int64_t user_id;
    int64_t amount_micros;
    const char *currency;
    const char *network;
    const char *destination;
    const char *status; /* "pending" | "paid" | "rejected" */
    const char *txid;   /* may be NULL */
    const char *reason; /* may be NULL */
    int64_t requested_at;
    int64_t decided_at; /* 0: pending */
    int64_t decided_by; /* 0: none / the console */
    int64_t request_transfer_id;
    int64_t decision_transfer_id; /* 0: none */
    const char *email;            /* the member's, filled by the staff list only */
    int64_t held_at;              /* 0: never held for review */
    const char *held_reason;      /* NULL: never held */
    /* What staff weigh before paying (filled by dm_wd_get and dm_wd_list):
     * the member's KYC status and 2FA state, the book entry the
     * withdrawal went to (0: none, requested before the address book),
     * and the member's open or confirmed fraud flags ("reason,reason"). */
    const char *kyc_status;
    int two_factor;
    int64_t address_id;
    int64_t address_created_at;
    int64_t address_confirmed_at;
    const char *flags; /* NULL: none */
} dm_withdrawal;

/* Member `user_id` asks to withdraw `amount_micros` of the platform
 * currency to `destination` on `network`. One transaction. Refusals,
 * which write nothing: DM_E_FORBIDDEN (e-mail not verified; "identity
 * check required" when kyc_status is not approved), DM_E_INVALID (amount
 * outside min/max, bad network or destination), DM_E_CONFLICT (daily
 * limit; "insufficient balance"). When another member has used the same
 * destination, both are flagged (fraud flags) in the same transaction;
 * *shared_with (may be NULL) gets the other member's id or 0. */
dm_err *dm_wd_request(dm_db *db, apr_pool_t *p, const dm_wd_limits *lim, int64_t user_id,
                      int64_t amount_micros, const char *network, const char *destination,
                      dm_withdrawal *out, int64_t *shared_with);

/* dm_wd_request with two additions for the protected path
 * (withdrawals/addresses.h): `guard`, when not NULL, runs inside the
 * request's transaction after the member checks and before anything is
 * written (an error from it aborts the request, nothing written); and the
 * withdrawal records `address_id` (0: none). */
typedef dm_err *dm_wd_guard_fn(dm_db *db, apr_pool_t *p, void *baton);
dm_err *dm_wd_request_guarded(dm_db *db, apr_pool_t *p, const dm_wd_limits *lim, int64_t user_id,
                              int64_t amount_micros, const char *network, const char *destination,
                              int64_t address_id, dm_wd_guard_fn *guard, void *baton,
                              dm_withdrawal *out, int64_t *shared_with);

/* Finance's decision on a pending withdrawal, by staff `staff_id` (0:
 * console) from `ip`: approve (txid 1..DM_WD_TXID_MAX, required) or reject
 * (reason 1..DM_WD_REASON_MAX characters, required). One transaction:
 * ledger transfer, status, audit row ("withdrawal.approve" /
 * "withdrawal.reject", before/after), e-mail. DM_E_NOT_FOUND for an
 * unknown id, DM_E_CONFLICT when it is already decided, and when approving
 * while the member's wallet is in debt (the message says so and how much:
 * a withdrawal is never paid out of a debt; rejecting returns the amount
 * to the wallet, which pays the debt first). */
dm_err *dm_wd_decide(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip, int64_t id,
                     int approve, const char *txid, const char *reason, dm_withdrawal *out);

/* The ledger's debt hook (dm_ledger_set_debt_hook; the host registers it):
 * a clawback (transfer t) left member user_id's wallet at wallet_micros <
 * 0, so each of the member's pending withdrawals in that currency not yet
 * held is marked held for review (held_at, held_reason naming the debt and
 * the transfer), in the clawback's transaction; when any is, a warning
 * (DM01100) is logged and a staff_alert e-mail queued for owners and
 * finance (key wd-debt:<transfer id>). */
dm_err *dm_wd_hold_for_debt(dm_db *db, apr_pool_t *p, int64_t user_id, const dm_transfer *t,
                            int64_t wallet_micros);

/* One withdrawal by id; DM_E_NOT_FOUND when absent. */
dm_err *dm_wd_get(dm_db *db, apr_pool_t *p, int64_t id, dm_withdrawal *out);

/* Newest first, keyset paginated on id (cursor 0: first page; *next 0: no
 * more); user_id 0: every member's; status NULL: any, else one of the
 * three (DM_E_INVALID naming "status"). Rows are dm_withdrawal. */
dm_err *dm_wd_list(dm_db *db, apr_pool_t *p, int64_t user_id, const char *status, int64_t cursor,
                   int limit, apr_array_header_t **rows, int64_t *next_cursor);

/* {"id","amount_micros","currency","network","destination","status",
 * "txid","reason","requested_at","decided_at"}; staff also get
 * "user_id","email","decided_by","request_transfer_id",
 * "decision_transfer_id","held_for_review","held_at","held_reason", and
 * "member_checks": {"kyc_status","two_factor","address_id",
 * "address_added_at","address_confirmed_at","address_age_seconds" (age of
 * the confirmation when requested; null without a book entry),
 * "fraud_flags":[reason…]}.
 * Caller owns it. */
json_t *dm_wd_json(apr_pool_t *p, const dm_withdrawal *w, int for_staff);

#endif
