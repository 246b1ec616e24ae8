/*
 * migrate_pg.c — deepminectl migrate-to-postgres --from <sqlite> --to <url>:
 * a stopped SQLite deployment copied into an empty PostgreSQL database,
 * then checked (docs/scaling.md): every table's row count, every
 * account's balance, and ledger verify on both sides.
 */
#include <apr_hash.h>
#include <apr_strings.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "ledger/ledger.h"
#include "store/db_copy.h"
#include "store/migrate.h"

/* Every account's balance on both sides: the number that differ (or are
 * missing on one side), in *differ. */
static dm_err *compare_balances(dm_db *a, dm_db *b, apr_pool_t *p, int64_t *accounts,
                                int64_t *differ)
{
    const char *sql = "SELECT id, balance_micros FROM accounts ORDER BY id";
    apr_hash_t *seen = apr_hash_make(p);
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(a, p, sql, &st);

    *accounts = 0;
    *differ = 0;
    while (!e && !(e = dm_stmt_step(st, p, &row)) && row) {
        int64_t *v = apr_palloc(p, sizeof(int64_t) * 2);
        v[0] = dm_stmt_int64(st, 0);
        v[1] = dm_stmt_int64(st, 1);
        apr_hash_set(seen, v, sizeof(int64_t), v);
        (*accounts)++;
    }
    if (st) {
        dm_stmt_done(st);
    }
    if (e || (e = dm_db_prepare(b, p, sql, &st))) {
        return e;
    }
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        int64_t id = dm_stmt_int64(st, 0);
        int64_t *v = apr_hash_get(seen, &id, sizeof(id));
        if (!v || v[1] != dm_stmt_int64(st, 1)) {
            (*differ)++;
        }
        if (v) {
            apr_hash_set(seen, v, sizeof(int64_t), NULL);
        }
    }
    dm_stmt_done(st);
    *differ += (int64_t)apr_hash_count(seen);
    return e;
}

static int verify_ledger(dm_cli *c, dm_db *db, const char *which)
{
    dm_ledger_report rep;
    dm_err *e = dm_ledger_verify(db, c->pool, &rep);

    if (e) {
        return dm_cli_fail(c, e);
    }
    if (!rep.ok) {
        fprintf(stderr, "migrate-to-postgres: ledger verify FAILED on the %s database: %s\n", which,
                rep.problem ? rep.problem : "");
        return DM_CLI_FAIL;
    }
    printf("ledger verify (%s): ok: %" APR_INT64_T_FMT " accounts, %" APR_INT64_T_FMT
           " transfers\n",
           which, (apr_int64_t)rep.accounts, (apr_int64_t)rep.transfers);
    return DM_CLI_OK;
}

int dm_cmd_migrate_to_postgres(dm_cli *c)
{
    const char *from = dm_cli_opt(c, "from"), *to = dm_cli_opt(c, "to");
    dm_db_options ro = {.readonly = 1};
    dm_db *src = NULL, *dst = NULL;
    apr_array_header_t *tables = NULL;
    int held = 0, empty = 0, version = 0, applied = 0, bad = 0, rc;
    int64_t rows = 0, accounts = 0, differ = 0;
    dm_err *e;

    if (!from || !to) {
        return dm_cli_usage(c);
    }
    if (dm_db_is_postgres(from) || !dm_db_is_postgres(to)) {
        fprintf(stderr, "%s: --from names the SQLite file, --to the PostgreSQL database\n",
                c->tool->name);
        return DM_CLI_USAGE;
    }
    if (access(from, F_OK) != 0) {
        fprintf(stderr, "%s: no database at %s\n", c->tool->name, from);
        return DM_CLI_FAIL;
    }
    e = dm_db_held_elsewhere(c->pool, from, &held);
    if (!e && held) {
        fprintf(stderr,
                "%s: %s is open in another process: stop the server (and its cron daemon) "
                "first, so nothing changes while it is copied\n",
                c->tool->name, from);
        return DM_CLI_FAIL;
    }
    if (!e) {
        e = dm_db_open(c->pool, from, &ro, &src);
    }
    if (!e) {
        e = dm_migrate_version(src, c->pool, &version);
    }
    if (!e && version != dm_migrate_latest()) {
        fprintf(stderr,
                "%s: %s is at schema version %d, this build at %d: run `deepminectl --db %s "
                "migrate` first\n",
                c->tool->name, from, version, dm_migrate_latest(), from);
        return DM_CLI_FAIL;
    }
    if (!e) {
        e = dm_db_open(c->pool, to, NULL, &dst);
    }
    if (!e) {
        e = dm_db_pg_is_empty(dst, c->pool, &empty);
    }
    if (!e && !empty) {
        fprintf(stderr,
                "%s: the PostgreSQL database %s is not empty: migrate-to-postgres copies only "
                "into a new, empty database\n",
                c->tool->name, dm_db_path(dst));
        return DM_CLI_FAIL;
    }
    if (!e) {
        e = dm_migrate(dst, c->pool, dm_migrations, dm_migrations_count, &applied, &version);
    }
    if (!e) {
        e = dm_db_copy_to_postgres(src, dst, c->pool, &tables);
    }
    /* Statistics for the planner from the first request on (autovacuum
     * would gather them only later), and for the checks below. */
    if (!e) {
        e = dm_db_exec(dst, c->pool, "ANALYZE");
    }
    if (e) {
        return dm_cli_fail(c, e);
    }
    for (int i = 0; i < tables->nelts; i++) {
        const dm_db_copied *t = &APR_ARRAY_IDX(tables, i, dm_db_copied);
        int same = t->source_rows == t->target_rows;
        printf("%-28s %10" APR_INT64_T_FMT " -> %10" APR_INT64_T_FMT "%s\n", t->table,
               (apr_int64_t)t->source_rows, (apr_int64_t)t->target_rows, same ? "" : "  DIFFERS");
        bad += !same;
        rows += t->target_rows;
    }
    e = compare_balances(src, dst, c->pool, &accounts, &differ);
    if (e) {
        return dm_cli_fail(c, e);
    }
    printf("balances: %" APR_INT64_T_FMT " accounts, %" APR_INT64_T_FMT " differ\n",
           (apr_int64_t)accounts, (apr_int64_t)differ);
    if ((rc = verify_ledger(c, src, "SQLite")) != DM_CLI_OK ||
        (rc = verify_ledger(c, dst, "PostgreSQL")) != DM_CLI_OK) {
        return rc;
    }
    if (bad || differ) {
        fprintf(stderr,
                "migrate-to-postgres: FAILED: %d table(s) with other row counts, %" APR_INT64_T_FMT
                " balance(s) differ; do not switch to %s\n",
                bad, (apr_int64_t)differ, dm_db_path(dst));
        return DM_CLI_FAIL;
    }
    printf("migrate-to-postgres: ok: %d tables, %" APR_INT64_T_FMT
           " rows copied; row counts, every balance and ledger verify agree. Point "
           "DeepMineDatabase at the PostgreSQL database and start the server.\n",
           tables->nelts, (apr_int64_t)rows);
    return DM_CLI_OK;
}
