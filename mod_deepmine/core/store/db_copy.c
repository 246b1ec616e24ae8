/*
 * db_copy.c — see db_copy.h. The copy reads each table with the SQLite
 * driver and writes it with the PostgreSQL one through db.h, so both
 * engines' value rules apply (integers stay integers, text stays text).
 */
#include "store/db_copy.h"

#include <apr_hash.h>
#include <apr_strings.h>
#include <string.h>

dm_err *dm_db_pg_is_empty(dm_db *db, apr_pool_t *p, int *empty)
{
    int64_t n = 0;
    int found = 0;
    dm_err *e = dm_db_query_int64(db, p,
                                  "SELECT COUNT(*) FROM information_schema.tables WHERE "
                                  "table_schema = current_schema()",
                                  &n, &found);

    *empty = !e && n == 0;
    return e;
}

/* The tables of dst's schema, each after the tables it references. */
static dm_err *tables_in_order(dm_db *dst, apr_pool_t *p, apr_array_header_t **out)
{
    apr_array_header_t *names = apr_array_make(p, 64, sizeof(const char *));
    apr_array_header_t *edges = apr_array_make(p, 64, sizeof(const char *) * 2);
    apr_array_header_t *order = apr_array_make(p, 64, sizeof(const char *));
    apr_hash_t *placed = apr_hash_make(p);
    dm_stmt *st;
    int row = 0, progress = 1;
    dm_err *e;

    e = dm_db_prepare(dst, p,
                      "SELECT table_name FROM information_schema.tables WHERE table_schema = "
                      "current_schema() AND table_type = 'BASE TABLE' AND table_name <> "
                      "'schema_migrations' ORDER BY table_name",
                      &st);
    while (!e && !(e = dm_stmt_step(st, p, &row)) && row) {
        APR_ARRAY_PUSH(names, const char *) = dm_stmt_dup_text(st, p, 0);
    }
    if (st) {
        dm_stmt_done(st);
    }
    if (e) {
        return e;
    }
    e = dm_db_prepare(dst, p,
                      "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM "
                      "pg_constraint c WHERE c.contype = 'f' AND c.conrelid <> c.confrelid",
                      &st);
    while (!e && !(e = dm_stmt_step(st, p, &row)) && row) {
        const char **edge = apr_array_push(edges);
        edge[0] = dm_stmt_dup_text(st, p, 0);
        edge[1] = dm_stmt_dup_text(st, p, 1);
    }
    if (st) {
        dm_stmt_done(st);
    }
    if (e) {
        return e;
    }
    while (progress && order->nelts < names->nelts) {
        progress = 0;
        for (int i = 0; i < names->nelts; i++) {
            const char *t = APR_ARRAY_IDX(names, i, const char *);
            int ready = !apr_hash_get(placed, t, APR_HASH_KEY_STRING);
            for (int j = 0; ready && j < edges->nelts; j++) {
                const char **edge = (const char **)(edges->elts + (size_t)j * edges->elt_size);
                if (strcmp(edge[0], t) == 0 &&
                    !apr_hash_get(placed, edge[1], APR_HASH_KEY_STRING)) {
                    ready = 0;
                }
            }
            if (ready) {
                apr_hash_set(placed, t, APR_HASH_KEY_STRING, t);
                APR_ARRAY_PUSH(order, const char *) = t;
                progress = 1;
            }
        }
    }
    if (order->nelts < names->nelts) {
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "the PostgreSQL schema's foreign keys form a cycle");
    }
    *out = order;
    return NULL;
}

static dm_err *columns_of(dm_db *dst, apr_pool_t *p, const char *table, const char **list, int *n)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(dst, p,
                              "SELECT column_name FROM information_schema.columns WHERE "
                              "table_schema = current_schema() AND table_name = ? ORDER BY "
                              "ordinal_position",
                              &st);

    *list = "";
    *n = 0;
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, table);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        *list = apr_psprintf(p, "%s%s\"%s\"", *list, *n ? ", " : "", dm_stmt_text(st, 0, NULL));
        (*n)++;
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *count_rows(dm_db *db, apr_pool_t *p, const char *table, int64_t *n)
{
    int found = 0;
    return dm_db_query_int64(db, p, apr_psprintf(p, "SELECT COUNT(*) FROM \"%s\"", table), n,
                             &found);
}

static dm_err *copy_table(dm_db *src, dm_db *dst, apr_pool_t *p, const char *table)
{
    const char *cols, *marks = "";
    dm_stmt *from = NULL, *to = NULL;
    int n = 0, row = 0, wrote = 0;
    dm_err *e = columns_of(dst, p, table, &cols, &n);

    if (e) {
        return e;
    }
    for (int i = 0; i < n; i++) {
        marks = apr_pstrcat(p, marks, i ? ", ?" : "?", NULL);
    }
    e = dm_db_prepare(src, p, apr_psprintf(p, "SELECT %s FROM \"%s\" ORDER BY 1", cols, table),
                      &from);
    if (e) {
        return dm_err_make(p, e->code, NULL,
                           "the SQLite database has no table %s like "
                           "PostgreSQL's: %s",
                           table, e->message);
    }
    /* ON CONFLICT DO NOTHING: no savepoint per row (db_pg.c); a row it
     * left out would show in the counts compared afterwards */
    e = dm_db_prepare(dst, p,
                      apr_psprintf(p, "INSERT INTO \"%s\" (%s) VALUES (%s) ON CONFLICT DO NOTHING",
                                   table, cols, marks),
                      &to);
    while (!e && !(e = dm_stmt_step(from, p, &row)) && row) {
        for (int i = 0; i < n; i++) {
            size_t len = 0;
            const char *t;
            switch (dm_stmt_column_kind(from, i)) {
            case 0:
                dm_stmt_bind_null(to, i + 1);
                break;
            case 1:
                dm_stmt_bind_int64(to, i + 1, dm_stmt_int64(from, i));
                break;
            default:
                t = dm_stmt_text(from, i, &len);
                dm_stmt_bind_text(to, i + 1, t, len);
                break;
            }
        }
        e = dm_stmt_step(to, p, &wrote);
        dm_stmt_done(to);
    }
    dm_stmt_done(from);
    return e;
}

dm_err *dm_db_copy_to_postgres(dm_db *src, dm_db *dst, apr_pool_t *p, apr_array_header_t **tables)
{
    apr_array_header_t *order = NULL;
    dm_err *e = tables_in_order(dst, p, &order);

    if (e) {
        return e;
    }
    *tables = apr_array_make(p, order->nelts, sizeof(dm_db_copied));
    e = dm_db_begin(dst, p);
    if (e) {
        return e;
    }
    for (int i = 0; !e && i < order->nelts; i++) {
        e = dm_db_exec(dst, p,
                       apr_psprintf(p, "ALTER TABLE \"%s\" DISABLE TRIGGER USER",
                                    APR_ARRAY_IDX(order, i, const char *)));
    }
    for (int i = 0; !e && i < order->nelts; i++) {
        e = copy_table(src, dst, p, APR_ARRAY_IDX(order, i, const char *));
    }
    for (int i = 0; !e && i < order->nelts; i++) {
        e = dm_db_exec(dst, p,
                       apr_psprintf(p, "ALTER TABLE \"%s\" ENABLE TRIGGER USER",
                                    APR_ARRAY_IDX(order, i, const char *)));
    }
    if (e) {
        dm_db_rollback(dst);
        return e;
    }
    e = dm_db_commit(dst, p);
    for (int i = 0; !e && i < order->nelts; i++) {
        dm_db_copied *c = apr_array_push(*tables);
        c->table = APR_ARRAY_IDX(order, i, const char *);
        e = count_rows(src, p, c->table, &c->source_rows);
        if (!e) {
            e = count_rows(dst, p, c->table, &c->target_rows);
        }
    }
    return e;
}
