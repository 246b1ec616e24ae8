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

/* "INSERT … VALUES (?, …), … ON CONFLICT DO NOTHING" of `rows` rows: no
 * savepoint per row (db_pg.c); a row it left out would show in the counts
 * compared afterwards. */
static const char *insert_sql(apr_pool_t *p, const char *table, const char *cols, int n, int rows)
{
    char *one = apr_palloc(p, (size_t)n * 3 + 3), *w = one;
    char *all, *a;

    *w++ = '(';
    for (int i = 0; i < n; i++) {
        if (i) {
            *w++ = ',';
        }
        *w++ = '?';
    }
    *w++ = ')';
    *w = '\0';
    all = apr_palloc(p, (size_t)rows * (size_t)(w - one + 1) + 1);
    a = all;
    for (int r = 0; r < rows; r++) {
        if (r) {
            *a++ = ',';
        }
        memcpy(a, one, (size_t)(w - one));
        a += w - one;
    }
    *a = '\0';
    return apr_psprintf(p, "INSERT INTO \"%s\" (%s) VALUES %s ON CONFLICT DO NOTHING", table, cols,
                        all);
}

/* Rows per INSERT: one round trip for many rows, under PostgreSQL's 65,535
 * parameters a statement. */
#define COPY_BATCH_ROWS 500
#define COPY_MAX_PARAMS 65535

/* One value read from SQLite, held until its batch is written. */
typedef struct {
    int kind; /* dm_stmt_column_kind: 0 NULL, 1 integer, else text */
    int64_t v;
    const char *t;
    size_t len;
} cell;

static void read_row(apr_pool_t *p, dm_stmt *from, int n, cell *out)
{
    for (int i = 0; i < n; i++) {
        out[i].kind = dm_stmt_column_kind(from, i);
        if (out[i].kind == 1) {
            out[i].v = dm_stmt_int64(from, i);
        } else if (out[i].kind != 0) {
            const char *t = dm_stmt_text(from, i, &out[i].len);
            out[i].t = apr_pstrmemdup(p, t, out[i].len);
        }
    }
}

/* INSERTs the `rows` rows held in cells (a statement of that many rows). */
static dm_err *write_rows(dm_db *dst, apr_pool_t *p, const char *sql, const cell *cells, int ncells)
{
    dm_stmt *to;
    int wrote = 0;
    dm_err *e = dm_db_prepare(dst, p, sql, &to);

    if (e) {
        return e;
    }
    for (int i = 0; i < ncells; i++) {
        if (cells[i].kind == 0) {
            dm_stmt_bind_null(to, i + 1);
        } else if (cells[i].kind == 1) {
            dm_stmt_bind_int64(to, i + 1, cells[i].v);
        } else {
            dm_stmt_bind_text(to, i + 1, cells[i].t, cells[i].len);
        }
    }
    e = dm_stmt_step(to, p, &wrote);
    dm_stmt_done(to);
    return e;
}

static dm_err *copy_table(dm_db *src, dm_db *dst, apr_pool_t *p, const char *table)
{
    const char *cols, *full_sql;
    dm_stmt *from = NULL;
    apr_pool_t *bp = NULL;
    cell *cells;
    int n = 0, row = 0, batch, k = 0;
    dm_err *e = columns_of(dst, p, table, &cols, &n);

    if (e) {
        return e;
    }
    if (n == 0) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "table %s has no columns", table);
    }
    batch = COPY_MAX_PARAMS / n < COPY_BATCH_ROWS ? COPY_MAX_PARAMS / n : COPY_BATCH_ROWS;
    e = dm_db_prepare(src, p, apr_psprintf(p, "SELECT %s FROM \"%s\" ORDER BY 1", cols, table),
                      &from);
    if (e) {
        return dm_err_make(p, e->code, NULL,
                           "the SQLite database has no table %s like "
                           "PostgreSQL's: %s",
                           table, e->message);
    }
    if (apr_pool_create(&bp, p) != APR_SUCCESS) {
        dm_stmt_done(from);
        return dm_err_make(p, DM_E_INTERNAL, NULL, "out of memory");
    }
    full_sql = insert_sql(p, table, cols, n, batch);
    cells = apr_palloc(p, sizeof(*cells) * (size_t)batch * (size_t)n);
    /* rows by the first column, `batch` of them an INSERT (one round trip) */
    while (!(e = dm_stmt_step(from, p, &row)) && row) {
        read_row(bp, from, n, cells + (size_t)k * (size_t)n);
        if (++k == batch) {
            e = write_rows(dst, p, full_sql, cells, k * n);
            apr_pool_clear(bp);
            k = 0;
            if (e) {
                break;
            }
        }
    }
    dm_stmt_done(from);
    if (!e && k > 0) {
        e = write_rows(dst, p, insert_sql(bp, table, cols, n, k), cells, k * n);
    }
    apr_pool_destroy(bp);
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
