/*
 * addresses.h — the withdrawal address book and the protected withdrawal
 * request (docs/security.md).
 *
 * A member adds an address (network + address, as withdrawals take them);
 * it is confirmed through a single-use link e-mailed to the member
 * ("withdrawal_address_added", DM_WD_ADDRESS_LINK_TTL), and becomes usable
 * the protection delay after confirmation (DeepMineWithdrawalAddressDelay,
 * members/twofa.h; "withdrawal_address_confirmed" says from when). Removal
 * is soft, so past withdrawals keep naming their entry.
 *
 * POST /api/withdrawals goes through dm_wd_request_protected only: the
 * destination must be a confirmed, matured entry of the member's book
 * (DM_E_ADDRESS_NOT_USABLE otherwise, the message naming the address-book
 * flow), withdrawals must not be locked by a recent security change
 * (DM_E_WITHDRAWALS_LOCKED), and with 2FA on a current TOTP code is needed
 * (DM_E_TWO_FACTOR_REQUIRED without one, DM_E_INVALID_CODE for a wrong or
 * replayed one; recovery codes do not move money). All checked inside the
 * request's transaction: a refusal writes nothing.
 */
#ifndef DM_WD_ADDRESSES_H
#define DM_WD_ADDRESSES_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "base/err.h"
#include "members/members.h"
#include "store/db.h"
#include "withdrawals/withdrawals.h"

#define DM_WD_ADDRESS_LINK_TTL (48 * 3600)
#define DM_WD_ADDRESS_MAX 50 /* live entries per member */
#define DM_WD_LABEL_MAX 64

typedef struct dm_wd_address {
    int64_t id;
    int64_t user_id;
    const char *currency;
    const char *network;
    const char *address;
    const char *label; /* may be NULL */
    int64_t created_at;
    int64_t confirmed_at; /* 0: waiting for the e-mailed link */
    int64_t usable_at;    /* 0: not confirmed */
} dm_wd_address;

/* Adds `address` on `network` (NULL: from the address's shape) to member
 * m's book and e-mails the confirmation link, in one transaction.
 * DM_E_INVALID naming "network", "address" or "label"; DM_E_CONFLICT when
 * the address is already in the book or the book is full. */
dm_err *dm_wd_address_add(dm_db *db, apr_pool_t *p, const dm_services *s, const dm_member *m,
                          const char *network, const char *address, const char *label,
                          dm_wd_address *out);

/* Confirms the entry of an e-mailed link (single use); usable from now +
 * the protection delay. DM_E_INVALID naming "token" for a wrong, used or
 * expired link. */
dm_err *dm_wd_address_confirm(dm_db *db, apr_pool_t *p, const dm_services *s, const char *token,
                              dm_wd_address *out);

/* The member's live entries, newest first (dm_wd_address). */
dm_err *dm_wd_address_list(dm_db *db, apr_pool_t *p, int64_t user_id, apr_array_header_t **rows);

/* Removes entry `id` of the member; DM_E_NOT_FOUND when not theirs or
 * already removed. */
dm_err *dm_wd_address_remove(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t id);

/* {"id","currency","network","address","label","status":"pending"|
 * "confirmed","created_at","confirmed_at","usable_at","usable"} at `now`. */
json_t *dm_wd_address_json(apr_pool_t *p, const dm_wd_address *a, int64_t now);

/* A member's withdrawal request as the API takes it: to book entry
 * address_id, or (address_id 0) to `destination` on `network` (NULL: from
 * its shape), which must then be a book entry; `code` the current 2FA
 * code (NULL when none was sent). */
typedef struct dm_wd_protected_req {
    int64_t amount_micros;
    int64_t address_id;
    const char *network;
    const char *destination;
    const char *code;
} dm_wd_protected_req;

dm_err *dm_wd_request_protected(dm_db *db, apr_pool_t *p, const dm_services *s,
                                const dm_wd_limits *lim, int64_t user_id,
                                const dm_wd_protected_req *req, dm_withdrawal *out);

#endif
