/*
 * migrate.c — see migrate.h. The checksum of every applied file is kept so
 * that an edited migration (forbidden: add a new file instead) is caught at
 * start-up rather than leaving two databases with different schemas.
 */
#include "store/migrate.h"

#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <sodium.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"

static const char *checksum(apr_pool_t *p, const char *sql)
{
    unsigned char h[crypto_hash_sha256_BYTES];
    char *hex = apr_palloc(p, sizeof(h) * 2 + 1);

    crypto_hash_sha256(h, (const unsigned char *)sql, strlen(sql));
    sodium_bin2hex(hex, sizeof(h) * 2 + 1, h, sizeof(h));
    return hex;
}

int dm_migrate_latest(void)
{
    return dm_migrations_count ? dm_migrations[dm_migrations_count - 1].version : 0;
}

dm_err *dm_migrate_version(dm_db *db, apr_pool_t *p, int *version)
{
    int64_t v = 0;
    int found = 0;
    dm_err *e;

    *version = 0;
    if (strcmp(dm_db_engine(db), "postgresql") == 0) {
        e = dm_db_query_int64(db, p,
                              "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema "
                              "= current_schema() AND table_name = 'schema_migrations'",
                              &v, &found);
    } else {
        e = dm_db_query_int64(db, p,
                              "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = "
                              "'schema_migrations'",
                              &v, &found);
    }
    if (e || v == 0) {
        return e;
    }
    e = dm_db_query_int64(db, p, "SELECT MAX(version) FROM schema_migrations", &v, &found);
    if (!e && found) {
        *version = (int)v;
    }
    return e;
}

dm_err *dm_migrate_version_fast(dm_db *db, apr_pool_t *p, int *version)
{
    int64_t v = 0;
    int found = 0;

    if (dm_db_query_int64(db, p, "SELECT MAX(version) FROM schema_migrations", &v, &found)) {
        return dm_migrate_version(db, p, version); /* no such table, or worse */
    }
    *version = found ? (int)v : 0;
    return NULL;
}

static dm_err *apply_pending(dm_db *db, apr_pool_t *p, const dm_migration *list, int n,
                             int *applied)
{
    dm_stmt *sel, *ins;
    dm_err *e;
    int known_max = n ? list[n - 1].version : 0;
    int row = 0;
    int pg = strcmp(dm_db_engine(db), "postgresql") == 0;

    e = dm_db_exec(db, p,
                   "CREATE TABLE IF NOT EXISTS schema_migrations ("
                   " version INTEGER PRIMARY KEY,"
                   " name TEXT NOT NULL,"
                   " checksum TEXT NOT NULL,"
                   " applied_at INTEGER NOT NULL)");
    if (e) {
        return e;
    }
    e = dm_db_prepare(db, p, "SELECT version, checksum FROM schema_migrations ORDER BY version",
                      &sel);
    if (e) {
        return e;
    }
    /* Check what is recorded against what this build knows. */
    apr_hash_t *seen = apr_hash_make(p);
    while (!(e = dm_stmt_step(sel, p, &row)) && row) {
        int v = (int)dm_stmt_int64(sel, 0);
        if (v > known_max) {
            dm_stmt_done(sel);
            return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                               "database schema version %d is newer than this build knows (%d); "
                               "upgrade mod_deepmine",
                               v, known_max);
        }
        int *key = apr_pmemdup(p, &v, sizeof(v));
        apr_hash_set(seen, key, sizeof(*key), apr_pstrdup(p, dm_stmt_text(sel, 1, NULL)));
    }
    dm_stmt_done(sel);
    if (e) {
        return e;
    }
    e = dm_db_prepare(db, p,
                      "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
                      "VALUES (?, ?, ?, ?)",
                      &ins);
    if (e) {
        return e;
    }
    for (int i = 0; i < n; i++) {
        /* one numbering; PostgreSQL runs sql/pg/<name> where there is one */
        const char *text = pg && list[i].pg_sql ? list[i].pg_sql : list[i].sql;
        const char *sum = checksum(p, text);
        const char *have = apr_hash_get(seen, &list[i].version, sizeof(int));
        if (have) {
            if (strcmp(have, sum) != 0) {
                return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                                   "migration %s was changed after it was applied; add a new "
                                   "migration instead",
                                   list[i].name);
            }
            continue;
        }
        e = dm_db_exec(db, p, text);
        if (e) {
            return dm_err_make(p, e->code, NULL, "migration %s failed: %s", list[i].name,
                               e->message);
        }
        dm_stmt_bind_int64(ins, 1, list[i].version);
        dm_stmt_bind_text(ins, 2, list[i].name, strlen(list[i].name));
        dm_stmt_bind_text(ins, 3, sum, strlen(sum));
        dm_stmt_bind_int64(ins, 4, dm_now());
        e = dm_stmt_step(ins, p, &row);
        dm_stmt_done(ins);
        if (e) {
            return e;
        }
        (*applied)++;
    }
    return NULL;
}

/* A SQLite migration that rebuilds a table other tables reference (new
 * table, copy, DROP, RENAME: the only way SQLite drops a column's UNIQUE)
 * starts with this line naming the rebuilt tables. With foreign keys on,
 * the DROP would delete every row first and check each child against it;
 * SQLite's own procedure for such a change (ALTER TABLE, "other kinds of
 * table schema changes") is foreign keys off around the transaction and
 * PRAGMA foreign_key_check before it commits: every table named here is
 * checked, and one broken reference rolls the whole run back. The pragma
 * is per connection and a no-op inside a transaction, so it is set before
 * BEGIN and set back after, whatever happened. */
#define FK_OFF_MARK "-- dm:foreign-keys-off:"

/* The tables a pending migration's marker names, space-separated; NULL
 * when no pending one has the marker. */
static const char *fk_off_tables(apr_pool_t *p, const dm_migration *list, int n, int version)
{
    const char *tables = NULL;

    for (int i = 0; i < n; i++) {
        const char *at = list[i].version > version ? strstr(list[i].sql, FK_OFF_MARK) : NULL;
        if (at) {
            at += sizeof(FK_OFF_MARK) - 1;
            tables = apr_pstrcat(p, tables ? tables : "", " ",
                                 apr_pstrndup(p, at, strcspn(at, "\n")), NULL);
        }
    }
    return tables;
}

/* PRAGMA foreign_key_check of each table of `tables`: the first broken
 * reference is an error naming it. */
static dm_err *fk_check(dm_db *db, apr_pool_t *p, const char *tables)
{
    char *list = apr_pstrdup(p, tables), *last = NULL;
    dm_err *e = NULL;

    for (char *t = apr_strtok(list, " ", &last); t && !e; t = apr_strtok(NULL, " ", &last)) {
        dm_stmt *st;
        int row = 0;
        for (const char *c = t; *c && !e; c++) {
            if (!(*c == '_' || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9'))) {
                e = dm_err_make(p, DM_E_INTERNAL, NULL, "migration marker names table \"%s\"", t);
            }
        }
        if (e ||
            (e = dm_db_prepare(db, p, apr_psprintf(p, "PRAGMA foreign_key_check(%s)", t), &st))) {
            break;
        }
        e = dm_stmt_step(st, p, &row);
        if (!e && row) {
            e = dm_err_make(p, DM_E_INTERNAL, NULL,
                            "migration left table %s row %" APR_INT64_T_FMT
                            " referencing a missing row of %s",
                            dm_stmt_text(st, 0, NULL), (apr_int64_t)dm_stmt_int64(st, 1),
                            dm_stmt_text(st, 2, NULL));
        }
        dm_stmt_done(st);
    }
    return e;
}

dm_err *dm_migrate(dm_db *db, apr_pool_t *p, const dm_migration *list, int n, int *applied,
                   int *version)
{
    const char *fk_off = NULL;
    int before = 0;
    dm_err *e = NULL;

    *applied = 0;
    if (strcmp(dm_db_engine(db), "postgresql") != 0 && !(e = dm_migrate_version(db, p, &before))) {
        fk_off = fk_off_tables(p, list, n, before);
    }
    if (!e && fk_off) {
        e = dm_db_exec(db, p, "PRAGMA foreign_keys=OFF");
    }
    /* Another process may hold the lock while it migrates: wait for it. */
    dm_db_set_busy_timeout(db, 60000);
    if (!e) {
        e = dm_db_begin(db, p);
        if (!e) {
            e = apply_pending(db, p, list, n, applied);
            if (!e && fk_off && *applied) {
                e = fk_check(db, p, fk_off);
            }
            if (e) {
                dm_db_rollback(db);
                *applied = 0;
            } else {
                e = dm_db_commit(db, p);
            }
        }
    }
    if (fk_off) {
        dm_err *on = dm_db_exec(db, p, "PRAGMA foreign_keys=ON");
        e = e ? e : on;
    }
    dm_db_set_busy_timeout(db, 5000);
    if (!e) {
        e = dm_migrate_version(db, p, version);
    }
    if (!e && *applied) {
        dm_log(DM_L_NOTICE, "DM00001: applied %d migration(s) to %s, schema version now %d",
               *applied, dm_db_path(db), *version);
    }
    return e;
}
