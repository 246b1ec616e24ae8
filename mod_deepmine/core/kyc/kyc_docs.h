/*
 * kyc_docs.h — the manual identity check: a member's personal details and
 * documents (encrypted at rest, kyc_crypt.h, through a storage plugin),
 * the hand-in, the staff queue, the staff's decisions, the retention of
 * documents and the re-wrapping of their keys under a new secret.
 *
 * Invariants: a document row exists only for an object fully stored; a
 * replaced or expired document's object is removed after its row is gone
 * (a failure there leaves an unreadable orphan, logged, never a row
 * without an object); a document is read back whole or not at all.
 */
#ifndef DM_KYC_DOCS_H
#define DM_KYC_DOCS_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "base/err.h"
#include "kyc/kyc.h"
#include "kyc/kyc_crypt.h"
#include "store/db.h"

/* The document kinds, as bits for "required". */
typedef enum dm_kyc_kind {
    DM_KYC_ID_FRONT = 0,
    DM_KYC_ID_BACK = 1,
    DM_KYC_SELFIE = 2,
    DM_KYC_PROOF_OF_ADDRESS = 3,
    DM_KYC_KINDS = 4
} dm_kyc_kind;

#define DM_KYC_DEFAULT_MAX_DOCUMENT ((int64_t)10 * 1024 * 1024)
/* id_front and selfie */
#define DM_KYC_DEFAULT_REQUIRED ((1u << DM_KYC_ID_FRONT) | (1u << DM_KYC_SELFIE))
#define DM_KYC_DEFAULT_RETENTION ((int64_t)5 * 365 * 86400)
#define DM_KYC_DEFAULT_ABANDONED ((int64_t)90 * 86400)

/* The kind's name ("id_front") or NULL; the kind of a name or -1. */
const char *dm_kyc_kind_name(int kind);
int dm_kyc_kind_of(const char *name);

/* Where objects go: whole objects in and out (documents are at most
 * DeepMineKycMaxDocument). The server fills it over the storage plugin
 * (kyc_store.c); tests may give their own. Every function returns NULL or
 * an error made in p. */
typedef struct dm_kyc_store {
    void *ctx;
    dm_err *(*put)(void *ctx, apr_pool_t *p, const char *key, const void *buf, size_t len);
    /* DM_E_NOT_FOUND when there is none; at most max bytes */
    dm_err *(*get)(void *ctx, apr_pool_t *p, const char *key, size_t max, void **buf, size_t *len);
    dm_err *(*remove)(void *ctx, apr_pool_t *p, const char *key);
} dm_kyc_store;

/* What the document functions need. */
typedef struct dm_kyc_env {
    const dm_kyc_store *store; /* NULL: no storage plugin (uploads 503) */
    const dm_kyc_master *master;
    int64_t max_document; /* bytes; 0: the default */
    unsigned required;    /* bits of dm_kyc_kind; 0: the default */
} dm_kyc_env;

/* One document on file (never its content). */
typedef struct dm_kyc_doc {
    int64_t id;
    int64_t user_id;
    const char *kind;
    const char *content_type;
    int64_t size;
    const char *sha256;
    const char *storage_key;
    const char *wrapped_key; /* hex */
    const char *wrap_nonce;  /* hex */
    const char *key_id;
    int64_t created_at;
} dm_kyc_doc;

/* Personal details; NULL fields are unset. */
typedef struct dm_kyc_details {
    const char *legal_name;
    const char *date_of_birth; /* YYYY-MM-DD */
    const char *country;       /* ISO 3166-1 alpha-2, upper case */
    const char *address_line1;
    const char *address_line2;
    const char *city;
    const char *postal_code;
} dm_kyc_details;

/* A member's case as GET /api/kyc shows it. */
typedef struct dm_kyc_overview {
    const char *status;
    const char *reason;   /* NULL: none */
    const char *provider; /* NULL: manual review */
    int64_t submitted_at, decided_at, updated_at;
    int can_upload; /* none / resubmission */
    int can_submit; /* can_upload and every required document and detail is there */
    int resubmission_allowed;
    dm_kyc_details details;
    apr_array_header_t *documents; /* dm_kyc_doc */
    unsigned missing;              /* required kinds not on file */
} dm_kyc_overview;

dm_err *dm_kyc_overview_get(dm_db *db, apr_pool_t *p, const dm_kyc_env *env, int64_t user_id,
                            dm_kyc_overview *out);
json_t *dm_kyc_overview_json(apr_pool_t *p, const dm_kyc_overview *o);
json_t *dm_kyc_doc_json(apr_pool_t *p, const dm_kyc_doc *d);

/* Stores a document of kind `kind` (a dm_kyc_kind name, else
 * DM_E_NOT_FOUND) for the member: the declared Content-Type must be
 * image/jpeg, image/png or application/pdf and the bytes must be that
 * type (DM_E_INVALID "content_type"); empty: DM_E_INVALID "body"; over
 * max_document: DM_E_TOO_LARGE; only while the member may upload
 * (DM_E_CONFLICT otherwise). Replaces the member's earlier document of the
 * kind. */
dm_err *dm_kyc_document_put(dm_db *db, apr_pool_t *p, const dm_kyc_env *env, int64_t user_id,
                            const char *kind, const char *declared_type, const void *data,
                            size_t len, dm_kyc_doc *out);

/* Reads a document back whole (decrypted into p): the row, the object,
 * kyc_crypt's checks. DM_E_NOT_FOUND for no such document. Staff views
 * go through dm_kyc_document_view (audited). */
dm_err *dm_kyc_document_read(dm_db *db, apr_pool_t *p, const dm_kyc_env *env, int64_t user_id,
                             const char *kind, dm_kyc_doc *doc, unsigned char **plain,
                             size_t *plain_len);

/* dm_kyc_document_read for staff: once the document opened, one audit row
 * "kyc.document.view" (target user, after {kind, document, size, sha256})
 * is committed before the caller may send a byte. */
dm_err *dm_kyc_document_view(dm_db *db, apr_pool_t *p, const dm_kyc_env *env,
                             const dm_kyc_actor *who, int64_t user_id, const char *kind,
                             dm_kyc_doc *doc, unsigned char **plain, size_t *plain_len);

/* Sets the personal details (every field through core/base/validate:
 * legal_name dm_validate_name, address lines dm_validate_address_line,
 * country two letters, date_of_birth a real date, 18 or older). Only
 * while the member may upload. */
dm_err *dm_kyc_details_put(dm_db *db, apr_pool_t *p, int64_t user_id, const dm_kyc_details *in);

/* Hands the case to review: status none or resubmission (else
 * DM_E_CONFLICT), every required document and the details there (else
 * DM_E_INVALID naming the first missing one); → pending. */
dm_err *dm_kyc_submit(dm_db *db, apr_pool_t *p, const dm_kyc_env *env, const dm_kyc_actor *who,
                      int64_t user_id, dm_member *out);

/* One row of the staff queue. */
typedef struct dm_kyc_queue_row {
    int64_t user_id;
    const char *email;
    const char *status;
    const char *legal_name;
    const char *country;
    const char *provider;
    int64_t submitted_at; /* 0: never */
    int64_t age_s;        /* now - submitted_at (0 when never) */
    int documents;
} dm_kyc_queue_row;

/* Cases with users.kyc_status = status (NULL: pending and review), oldest
 * hand-in first, keyset-paginated on (submitted_at, user_id): cursor 0 or
 * the previous page's *next (a user id). */
dm_err *dm_kyc_queue(dm_db *db, apr_pool_t *p, const char *status, int64_t now, int64_t cursor,
                     int limit, apr_array_header_t **rows, int64_t *next);
json_t *dm_kyc_queue_row_json(apr_pool_t *p, const dm_kyc_queue_row *r);

/* A staff decision on one case: "approve", "reject" or
 * "request_resubmission" (else DM_E_INVALID "decision"); the case must be
 * pending or review (DM_E_CONFLICT); reject and request_resubmission need
 * a reason (DM_E_INVALID "reason"). Its own transaction. */
dm_err *dm_kyc_decide(dm_db *db, apr_pool_t *p, const dm_kyc_actor *who, int64_t user_id,
                      const char *decision, const char *reason, dm_member *out);

/* Retention: deletes the documents (objects, then rows) of
 *   - approved members whose account closed (kyc_cases.closed_at) more
 *     than `retention` seconds before now;
 *   - rejected cases decided, and abandoned cases (none / resubmission)
 *     last touched, more than `abandoned` seconds before now;
 * one audit row "kyc.documents.expired" per member (console, by the job).
 * *deleted counts documents. */
dm_err *dm_kyc_retention_run(dm_db *db, apr_pool_t *p, const dm_kyc_env *env, int64_t now,
                             int64_t retention, int64_t abandoned, int64_t *deleted);

/* Re-wraps every document key wrapped under `from` (by key id) for `to`,
 * `batch` rows per transaction; rows already under `to` are skipped, so
 * an interrupted run is finished by running it again. Stops at the first
 * key that does not unwrap (DM_E_INTERNAL naming the document). */
typedef struct dm_kyc_rekey_stats {
    int64_t rewrapped;
    int64_t already; /* under `to` already */
    int64_t other;   /* under neither secret */
} dm_kyc_rekey_stats;

dm_err *dm_kyc_rekey(dm_db *db, apr_pool_t *p, const dm_kyc_master *from, const dm_kyc_master *to,
                     int batch, dm_kyc_rekey_stats *out);

#endif
