/*
 * audit.h — the staff action log. Every staff action writes one audit_log
 * row (who, what, which target, the state before and after as JSON, from
 * which address, when) in the same transaction as the action itself, so
 * the log can never miss a committed action nor record one that rolled
 * back. Actions from deepminectl are written with staff_id 0 (NULL in the
 * table: the operator at the console).
 */
#ifndef DM_AUDIT_H
#define DM_AUDIT_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include <stdint.h>

#include "store/db.h"
#include "base/err.h"

/* The address recorded for deepminectl actions. */
#define DM_AUDIT_CONSOLE_IP "console"

/* Writes one row. Must run inside the caller's open transaction (the one
 * that makes the change): outside one it writes nothing and returns
 * DM_E_INTERNAL. staff_id 0 is the console; target_type, target_id, before
 * and after may be NULL; ip NULL is recorded as DM_AUDIT_CONSOLE_IP. */
dm_err *dm_audit_write(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *action,
                       const char *target_type, const char *target_id, const json_t *before,
                       const json_t *after, const char *ip);

typedef struct dm_audit_entry {
    int64_t id;
    int64_t staff_id;        /* 0: the console */
    const char *staff_email; /* NULL for the console */
    const char *action;
    const char *target_type; /* may be NULL */
    const char *target_id;   /* may be NULL */
    const char *before_json; /* JSON text or NULL */
    const char *after_json;  /* JSON text or NULL */
    const char *ip;
    int64_t created_at;
} dm_audit_entry;

/* Optional filters; NULL fields do not filter. target_id needs
 * target_type. */
typedef struct dm_audit_filter {
    const char *action;
    const char *target_type;
    const char *target_id;
} dm_audit_filter;

/* Entries newest first, keyset paginated on id: `cursor` 0 for the first
 * page, else the previous page's *next_cursor (0 when there is no more).
 * limit 1..200. Rows are dm_audit_entry. */
dm_err *dm_audit_list(dm_db *db, apr_pool_t *p, const dm_audit_filter *f, int64_t cursor, int limit,
                      apr_array_header_t **rows, int64_t *next_cursor);

/* One entry as the JSON of GET /api/admin/audit (caller owns it). */
json_t *dm_audit_entry_json(apr_pool_t *p, const dm_audit_entry *a);

#endif
