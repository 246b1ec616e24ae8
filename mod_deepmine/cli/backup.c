/*
 * backup.c — deepminectl backup create|list|verify|restore (ops/backup.h):
 * through the storage plugin the server's configuration chooses (loaded as
 * `deepminectl storage` loads it), under keys derived from
 * DeepMineSecretKeyFile (--key-file, else the configuration's).
 *
 * restore fetches and checks the backup into a new file beside the
 * database, then swaps it in only when no other process holds the
 * database open (a running server does), and over an existing database
 * only with --force. On PostgreSQL (--to URL, or a PostgreSQL
 * DeepMineDatabase) it restores into the empty database --to names.
 */
#include <apr_strings.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/apache_conf.h"
#include "base/clock.h"
#include "commands.h"
#include "ops/backup.h"
#include "plugins/plugin_host.h"

/* The storage plugin and the keys. */
static int setup(dm_cli *c, dm_backup_store *s, dm_backup_keys *k)
{
    const char *path = dm_cli_opt(c, "key-file");
    unsigned char secret[32];
    dm_cli_storage l;
    int rc;

    if (!path && c->config) {
        dm_apache_directive d;
        int found = 0;
        dm_err *e = dm_apache_conf_find(c->pool, c->config, "DeepMineSecretKeyFile", 1, &d, &found);
        if (e) {
            return dm_cli_fail(c, e);
        }
        path = found ? d.value : NULL;
    }
    if (!path) {
        fprintf(stderr,
                "%s: backups are encrypted under DeepMineSecretKeyFile: give --config FILE "
                "(or $DEEPMINE_CONFIG), or --key-file\n",
                c->tool->name);
        return DM_CLI_USAGE;
    }
    if (!dm_cli_read_key(c, path, secret)) {
        return DM_CLI_FAIL;
    }
    dm_backup_keys_derive(secret, k);
    sodium_memzero(secret, sizeof(secret));
    rc = dm_cli_storage_load(c, &l);
    if (rc != DM_CLI_OK) {
        return rc;
    }
    s->host = l.host;
    s->pl = l.pl;
    return dm_cli_db_path(c);
}

static const char *when(dm_cli *c, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    char b[32];

    gmtime_r(&tt, &tm);
    strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return apr_pstrdup(c->pool, b);
}

static void describe(const char *what, const dm_backup_info *b)
{
    printf("%s %s: %" APR_INT64_T_FMT " rows, schema %" APR_INT64_T_FMT
           ", database %" APR_INT64_T_FMT " bytes, stored %" APR_INT64_T_FMT " bytes, sha256 %s\n",
           what, b->id, (apr_int64_t)b->total_rows, (apr_int64_t)b->schema_version,
           (apr_int64_t)b->db_bytes, (apr_int64_t)b->object_bytes, b->sha256);
}

int dm_cmd_backup_create(dm_cli *c)
{
    dm_backup_store s;
    dm_backup_keys k;
    dm_backup_info b;
    int rc = setup(c, &s, &k);
    dm_err *e;

    if (rc != DM_CLI_OK) {
        return rc;
    }
    if (!dm_db_is_postgres(c->db_path) && access(c->db_path, F_OK) != 0) {
        fprintf(stderr, "%s: there is no database at %s (%s)\n", c->tool->name, c->db_path,
                c->db_from);
        return DM_CLI_FAIL;
    }
    e = dm_backup_create(c->pool, &s, &k, c->db_path, dm_now(), &b);
    sodium_memzero(&k, sizeof(k));
    if (e) {
        return dm_cli_fail(c, e);
    }
    describe("backup created", &b);
    return DM_CLI_OK;
}

int dm_cmd_backup_list(dm_cli *c)
{
    dm_backup_store s;
    dm_backup_keys k;
    apr_array_header_t *all;
    int rc = setup(c, &s, &k);
    dm_err *e;

    if (rc != DM_CLI_OK) {
        return rc;
    }
    e = dm_backup_list(c->pool, &s, &k, &all);
    sodium_memzero(&k, sizeof(k));
    if (e) {
        return dm_cli_fail(c, e);
    }
    for (int i = 0; i < all->nelts; i++) {
        const dm_backup_info *b = &APR_ARRAY_IDX(all, i, dm_backup_info);
        if (!b->created) {
            printf("%s  unusable: %s\n", b->id, b->manifest_json);
            continue;
        }
        printf("%s  %s  %" APR_INT64_T_FMT " rows  %" APR_INT64_T_FMT " bytes  %" APR_INT64_T_FMT
               " stored\n",
               b->id, when(c, b->created), (apr_int64_t)b->total_rows, (apr_int64_t)b->db_bytes,
               (apr_int64_t)b->object_bytes);
    }
    return DM_CLI_OK;
}

int dm_cmd_backup_verify(dm_cli *c)
{
    dm_backup_store s;
    dm_backup_keys k;
    dm_backup_info b;
    int rc = setup(c, &s, &k);
    dm_err *e;

    if (rc != DM_CLI_OK) {
        return rc;
    }
    e = dm_backup_verify(c->pool, &s, &k, c->argc ? c->argv[0] : NULL, c->db_path, &b);
    sodium_memzero(&k, sizeof(k));
    if (e) {
        fprintf(stderr, "backup verify: FAILED: %s\n", e->message);
        return DM_CLI_FAIL;
    }
    describe("backup verify: ok:", &b);
    return DM_CLI_OK;
}

/* PostgreSQL: into the empty database --to names. There is no server
 * lock to check here: the nodes must be stopped, or pointed at the new
 * database afterwards. */
static int restore_pg(dm_cli *c, const dm_backup_store *s, const dm_backup_keys *k, const char *to)
{
    dm_backup_info b;
    dm_err *e;

    if (!to || !dm_db_is_postgres(to)) {
        fprintf(stderr,
                "%s: on PostgreSQL a backup is restored into a new, empty database: give "
                "--to postgresql://… (create it first; the live database is never "
                "overwritten)\n",
                c->tool->name);
        return DM_CLI_USAGE;
    }
    e = dm_backup_restore_pg(c->pool, s, k, c->argc ? c->argv[0] : NULL, to, &b);
    if (e) {
        fprintf(stderr, "backup restore: refused: %s\n", e->message);
        return DM_CLI_FAIL;
    }
    describe("backup restored:", &b);
    printf("backup restore: %s now holds backup %s (checked: hash, pg_restore, ledger, row "
           "counts). Stop the nodes (and their cron daemons) or point their DeepMineDatabase "
           "at it: a running server keeps using the database it was started on\n",
           dm_db_display_name(c->pool, to), b.id);
    return DM_CLI_OK;
}

int dm_cmd_backup_restore(dm_cli *c)
{
    dm_backup_store s;
    dm_backup_keys k;
    dm_backup_info b;
    unsigned char r[4];
    char rh[9];
    const char *tmp;
    const char *to = dm_cli_opt(c, "to");
    int held = 0, rc = setup(c, &s, &k);
    dm_err *e;

    if (rc != DM_CLI_OK) {
        return rc;
    }
    if (to || dm_db_is_postgres(c->db_path)) {
        rc = restore_pg(c, &s, &k, to);
        sodium_memzero(&k, sizeof(k));
        return rc;
    }
    /* refuse early (and again at the swap) while a server holds it */
    e = dm_db_held_elsewhere(c->pool, c->db_path, &held);
    if (!e && held) {
        e = dm_err_make(c->pool, DM_E_CONFLICT, NULL,
                        "the database %s is open in another process (a running server): stop "
                        "Apache first, then restore",
                        c->db_path);
    }
    if (!e && !dm_cli_flag(c, "force") && access(c->db_path, F_OK) == 0) {
        e = dm_err_make(c->pool, DM_E_CONFLICT, NULL,
                        "the database %s exists: restore replaces it only with --force (the "
                        "server stopped; the old file is kept as %s.pre-restore)",
                        c->db_path, c->db_path);
    }
    if (e) {
        sodium_memzero(&k, sizeof(k));
        fprintf(stderr, "backup restore: refused: %s\n", e->message);
        return DM_CLI_FAIL;
    }
    randombytes_buf(r, sizeof(r));
    sodium_bin2hex(rh, sizeof(rh), r, sizeof(r));
    tmp = apr_pstrcat(c->pool, c->db_path, ".restore-", rh, NULL);
    e = dm_backup_fetch(c->pool, &s, &k, c->argc ? c->argv[0] : NULL, tmp, &b);
    sodium_memzero(&k, sizeof(k));
    if (!e) {
        e = dm_backup_swap_in(c->pool, tmp, c->db_path, dm_cli_flag(c, "force"));
        if (e) {
            unlink(tmp);
        }
    }
    if (e) {
        fprintf(stderr, "backup restore: refused: %s\n", e->message);
        return DM_CLI_FAIL;
    }
    describe("backup restored:", &b);
    printf("backup restore: %s now holds backup %s (checked: hash, integrity, ledger, row "
           "counts)\n",
           c->db_path, b.id);
    return DM_CLI_OK;
}
