/*
 * deepminectl — the operator CLI. It uses core/ directly (no Apache), on the
 * same database the module serves.
 *
 * Exit codes: 0 ok, 1 a check or an operation failed, 2 usage.
 */
#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_strings.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalogue.h"
#include "db.h"
#include "migrate.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

typedef struct cli {
    apr_pool_t *pool;
    const char *db_path;
    int argc;
    const char *const *argv;
} cli;

typedef int command_fn(cli *c);

static int fail(const dm_err *e)
{
    fprintf(stderr, "deepminectl: %s\n", e->message);
    return EXIT_FAIL;
}

static dm_err *open_db(cli *c, dm_db **db)
{
    return dm_db_open(c->pool, c->db_path, NULL, db);
}

static int cmd_migrate(cli *c)
{
    dm_db *db;
    int applied = 0, version = 0;
    dm_err *e = open_db(c, &db);

    if (!e) {
        e = dm_migrate(db, c->pool, dm_migrations, dm_migrations_count, &applied, &version);
    }
    if (e) {
        return fail(e);
    }
    printf("schema version %d (%d migration(s) applied)\n", version, applied);
    return EXIT_OK;
}

static int cmd_status(cli *c)
{
    dm_db *db;
    int version = 0, found;
    int64_t total = 0, active = 0;
    dm_err *e;

    if (access(c->db_path, F_OK) != 0) {
        fprintf(stderr, "deepminectl: no database at %s\n", c->db_path);
        return EXIT_FAIL;
    }
    e = open_db(c, &db);
    if (!e) {
        e = dm_migrate_version(db, c->pool, &version);
    }
    if (e) {
        return fail(e);
    }
    printf("database:       %s\n", c->db_path);
    printf("schema version: %d (this build: %d)%s\n", version, dm_migrate_latest(),
           version < dm_migrate_latest() ? " — run `deepminectl migrate`" : "");
    if (version > 0) {
        e = dm_db_query_int64(db, c->pool, "SELECT COUNT(*) FROM packages", &total, &found);
        if (!e) {
            e = dm_db_query_int64(db, c->pool, "SELECT COUNT(*) FROM packages WHERE active = 1",
                                  &active, &found);
        }
        if (e) {
            return fail(e);
        }
        printf("packages:       %lld (%lld active)\n", (long long)total, (long long)active);
    }
    return version == dm_migrate_latest() ? EXIT_OK : EXIT_FAIL;
}

static int cmd_seed_demo(cli *c)
{
    dm_db *db;
    int applied, version, inserted = 0;
    dm_err *e = open_db(c, &db);

    if (!e) {
        e = dm_migrate(db, c->pool, dm_migrations, dm_migrations_count, &applied, &version);
    }
    if (!e) {
        e = dm_catalogue_seed_demo(db, c->pool, &inserted);
    }
    if (e) {
        return fail(e);
    }
    printf(inserted ? "demo catalogue: %d packages added\n"
                    : "demo catalogue: the catalogue is not empty, nothing added\n",
           inserted);
    return EXIT_OK;
}

static int cmd_keygen(cli *c)
{
    unsigned char key[32];
    const char *path;
    int fd;
    ssize_t n;

    if (c->argc != 1) {
        fprintf(stderr, "usage: deepminectl keygen <path>\n");
        return EXIT_USAGE;
    }
    path = c->argv[0];
    /* O_EXCL: never overwrite a key (every session would die with it). */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        fprintf(stderr, "deepminectl: cannot create %s: %s\n", path, strerror(errno));
        return EXIT_FAIL;
    }
    randombytes_buf(key, sizeof(key));
    n = write(fd, key, sizeof(key));
    sodium_memzero(key, sizeof(key));
    if (n != (ssize_t)sizeof(key) || fsync(fd) != 0 || close(fd) != 0) {
        fprintf(stderr, "deepminectl: cannot write %s: %s\n", path, strerror(errno));
        unlink(path);
        return EXIT_FAIL;
    }
    printf("wrote a new 32-byte secret key to %s (mode 0600)\n", path);
    return EXIT_OK;
}

static int cmd_help(cli *c);

static const struct command {
    const char *name;
    const char *args;
    const char *help;
    command_fn *fn;
} commands[] = {
    {"migrate", "", "apply the pending schema migrations", cmd_migrate},
    {"status", "", "schema version and counts; exit 1 if migrations are pending", cmd_status},
    {"seed-demo", "", "migrate, then add the 6-package demo catalogue if there is none",
     cmd_seed_demo},
    {"keygen", "<path>", "create a new secret key file (32 random bytes, mode 0600)",
     cmd_keygen},
    {"help", "", "this text", cmd_help},
};

static int cmd_help(cli *c)
{
    (void)c;
    printf("usage: deepminectl [--db PATH] <command> [args]\n\n"
           "The database is --db, else $DEEPMINE_DB, else ./var/deepmine.db.\n\n"
           "commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        printf("  %-10s %-8s %s\n", commands[i].name, commands[i].args, commands[i].help);
    }
    printf("\nexit codes: 0 ok, 1 failed, 2 usage\n");
    return EXIT_OK;
}

int main(int argc, const char *const *argv)
{
    cli c;
    int i = 1;
    const char *env = getenv("DEEPMINE_DB");

    if (apr_app_initialize(&argc, &argv, NULL) != APR_SUCCESS || sodium_init() < 0) {
        fprintf(stderr, "deepminectl: cannot initialise APR or libsodium\n");
        return EXIT_FAIL;
    }
    atexit(apr_terminate);
    memset(&c, 0, sizeof(c));
    apr_pool_create(&c.pool, NULL);
    c.db_path = (env && *env) ? env : "./var/deepmine.db";
    while (i < argc && strncmp(argv[i], "--", 2) == 0) {
        if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            c.db_path = argv[i + 1];
            i += 2;
        } else if (strncmp(argv[i], "--db=", 5) == 0) {
            c.db_path = argv[i] + 5;
            i++;
        } else if (strcmp(argv[i], "--help") == 0) {
            return cmd_help(&c);
        } else {
            fprintf(stderr, "deepminectl: unknown option %s (see `deepminectl help`)\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        cmd_help(&c);
        return EXIT_USAGE;
    }
    for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++) {
        if (strcmp(argv[i], commands[k].name) == 0) {
            c.argc = argc - i - 1;
            c.argv = argv + i + 1;
            if (commands[k].fn != cmd_keygen && c.argc != 0) {
                fprintf(stderr, "deepminectl: %s takes no arguments\n", commands[k].name);
                return EXIT_USAGE;
            }
            return commands[k].fn(&c);
        }
    }
    fprintf(stderr, "deepminectl: unknown command %s (see `deepminectl help`)\n", argv[i]);
    return EXIT_USAGE;
}
