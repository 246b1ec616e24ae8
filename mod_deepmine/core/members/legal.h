/*
 * legal.h — the terms of service and privacy policy, as files the operator
 * replaces (conf/legal/terms.md, privacy.md). The first line of each is
 * "Version: <string>"; the version members accept is that string, and the
 * content hash (SHA-256 of the whole file) is recorded with each acceptance.
 * Loaded once at start-up: a new version takes effect at the next (graceful)
 * restart.
 */
#ifndef DM_LEGAL_H
#define DM_LEGAL_H

#include <apr_pools.h>
#include <stdint.h>

#include "base/err.h"
#include "store/db.h"

typedef struct dm_legal_doc {
    const char *name; /* "terms" or "privacy" */
    const char *version;
    const char *hash; /* hex SHA-256 of the file */
    const char *text; /* the document after the version line */
    const char *json; /* the rendered GET /api/legal/<name> answer */
} dm_legal_doc;

typedef struct dm_legal {
    dm_legal_doc terms;
    dm_legal_doc privacy;
} dm_legal;

/* Reads dir/terms.md and dir/privacy.md; refuses a missing file, a missing
 * or empty version line, or invalid UTF-8. */
dm_err *dm_legal_load(apr_pool_t *p, const char *dir, dm_legal **out);

/* Records that member `user_id` accepted `doc` (its name, version and
 * content hash) from `ip`, now: a legal_acceptances row, in the caller's
 * transaction. */
dm_err *dm_legal_record_acceptance(dm_db *db, apr_pool_t *p, int64_t user_id,
                                   const dm_legal_doc *doc, const char *ip);

#endif
