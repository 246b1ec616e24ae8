/*
 * cmd.c — the engine behind a tool's table (cli.h): the global options,
 * where the database is, apr_getopt_long over each command's options down
 * the sub-commands, usage and `help`, all printed from the table.
 */
#include "cli.h"

#include <apr_general.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/apache_conf.h"
#include "base/clock.h"
#include "base/json.h"
#include "store/migrate.h"

#define DEFAULT_DB "./var/deepmine.db"
/* The module's own default when DeepMineDatabase is not set
 * (docs/configuration.md). */
#define MODULE_DEFAULT_DB "/var/lib/deepmine/deepmine.db"
#define WIDTH 79

enum { G_DB = 256, G_CONFIG, G_CLOCK, G_TEST, G_HELP };

static const apr_getopt_option_t global_opts[] = {
    {"db", G_DB, 1, "PATH the SQLite database"},
    {"config", G_CONFIG, 1, "FILE an Apache configuration: the database is its DeepMineDatabase"},
    {"clock-file", G_CLOCK, 1,
     "PATH (tests) the platform's time is read from that file (RFC 3339)"},
    {"test-mode", G_TEST, 0, "(tests) test-only jobs can be run"},
    {"help", G_HELP, 0, "this text"},
    {NULL, 0, 0, NULL}};

static const apr_getopt_option_t no_opts[] = {{NULL, 0, 0, NULL}};

/* ---- printing from the table ---- */

/* `text` in lines of at most WIDTH columns, each indented by `indent`
 * (the first by `first` columns already used, when it is not 0). */
static void wrap(FILE *f, const char *text, int indent, int first)
{
    int col = first ? first : 0;
    const char *s = text;

    if (!first) {
        fprintf(f, "%*s", indent, "");
        col = indent;
    }
    while (*s) {
        size_t n = strcspn(s, " ");
        if (col > indent && col + 1 + (int)n > WIDTH) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fwrite(s, 1, n, f);
        col += (int)n;
        s += n;
        while (*s == ' ') {
            s++;
        }
    }
    fputc('\n', f);
}

/* "--user ID" from an option row: the value's name is the first word of
 * its description. */
static const char *opt_head(apr_pool_t *p, const apr_getopt_option_t *o)
{
    if (!o->has_arg) {
        return apr_pstrcat(p, "--", o->name, NULL);
    }
    return apr_psprintf(p, "--%s %.*s", o->name, (int)strcspn(o->description, " "), o->description);
}

static const char *opt_text(const apr_getopt_option_t *o)
{
    const char *s = o->description;

    if (o->has_arg) {
        s += strcspn(s, " ");
        while (*s == ' ') {
            s++;
        }
    }
    return s;
}

static void print_opts(FILE *f, apr_pool_t *p, const apr_getopt_option_t *opts, int indent)
{
    for (const apr_getopt_option_t *o = opts; o && o->optch; o++) {
        const char *head = opt_head(p, o);
        int n = indent + (int)strlen(head);
        fprintf(f, "%*s%s", indent, "", head);
        if (n < indent + 20) {
            fprintf(f, "%*s", indent + 20 - n, "");
            wrap(f, opt_text(o), indent + 20, indent + 20);
        } else {
            fputc('\n', f);
            wrap(f, opt_text(o), indent + 20, 0);
        }
    }
}

static const char *line_of(apr_pool_t *p, const char *path, const dm_cli_cmd *cmd)
{
    return apr_pstrcat(p, path, cmd->synopsis && *cmd->synopsis ? " " : "",
                       cmd->synopsis ? cmd->synopsis : "", NULL);
}

/* A command in `help <command>`: each leaf under it with its options. */
static void print_detail(const dm_cli *c, FILE *f, const dm_cli_cmd *cmd, const char *path)
{
    if (cmd->subs) {
        for (const dm_cli_cmd *const *s = cmd->subs; *s; s++) {
            print_detail(c, f, *s, apr_pstrcat(c->pool, path, " ", (*s)->name, NULL));
        }
        return;
    }
    fprintf(f, "%s %s\n", c->tool->name, line_of(c->pool, path, cmd));
    wrap(f, cmd->description, 4, 0);
    print_opts(f, c->pool, cmd->opts, 4);
    fputc('\n', f);
}

static void print_overview(const dm_cli *c, FILE *f)
{
    fprintf(f, "usage: %s [global options] <command> [options] [operands]\n\n", c->tool->name);
    wrap(f, c->tool->about, 0, 0);
    fprintf(f, "\nglobal options (before the command):\n");
    print_opts(f, c->pool, global_opts, 2);
    fputc('\n', f);
    wrap(f,
         apr_psprintf(c->pool,
                      "The database: --db PATH, else $DEEPMINE_DB, else the DeepMineDatabase of "
                      "the Apache configuration named by --config FILE or $DEEPMINE_CONFIG (the "
                      "files it includes read too; the module's default, %s, when it sets "
                      "none), else %s.",
                      MODULE_DEFAULT_DB, DEFAULT_DB),
         0, 0);
    fprintf(f, "\ncommands:\n");
    for (const dm_cli_cmd *const *k = c->tool->cmds; *k; k++) {
        const dm_cli_cmd *cmd = *k;
        if (!cmd->subs) {
            fprintf(f, "  %s\n", line_of(c->pool, cmd->name, cmd));
            wrap(f, cmd->description, 6, 0);
            continue;
        }
        for (const dm_cli_cmd *const *s = cmd->subs; *s; s++) {
            fprintf(f, "  %s\n",
                    line_of(c->pool, apr_pstrcat(c->pool, cmd->name, " ", (*s)->name, NULL), *s));
            wrap(f, (*s)->description, 6, 0);
        }
    }
    fprintf(f,
            "\n`%s help <command>` shows a command with its options.\n"
            "Exit codes: 0 ok, 1 failed, 2 usage.\n",
            c->tool->name);
}

int dm_cli_usage(const dm_cli *c)
{
    const dm_cli_cmd *cmd = c->cmd;

    if (cmd->subs) {
        const char *lead = "usage:";
        for (const dm_cli_cmd *const *s = cmd->subs; *s; s++) {
            fprintf(stderr, "%s %s %s\n", lead, c->tool->name,
                    line_of(c->pool, apr_pstrcat(c->pool, c->path, " ", (*s)->name, NULL), *s));
            lead = "      ";
        }
    } else {
        fprintf(stderr, "usage: %s %s\n", c->tool->name, line_of(c->pool, c->path, cmd));
        print_opts(stderr, c->pool, cmd->opts, 2);
    }
    return DM_CLI_USAGE;
}

/* ---- helpers for the commands ---- */

int dm_cli_fail(const dm_cli *c, const dm_err *e)
{
    fprintf(stderr, "%s: %s\n", c->tool->name, e->message);
    return DM_CLI_FAIL;
}

const char *dm_cli_opt(const dm_cli *c, const char *name)
{
    return apr_table_get(c->opts, name);
}

int dm_cli_flag(const dm_cli *c, const char *name)
{
    return apr_table_get(c->opts, name) != NULL;
}

int dm_cli_int64(const char *s, int64_t *out)
{
    char *end = NULL;
    apr_int64_t v;

    errno = 0;
    v = apr_strtoi64(s, &end, 10);
    if (errno || !end || *end || end == s) {
        return 0;
    }
    *out = (int64_t)v;
    return 1;
}

int dm_cli_opt_int64(const dm_cli *c, const char *name, int64_t min, int64_t *out)
{
    const char *v = dm_cli_opt(c, name);

    if (!v) {
        return 0;
    }
    return dm_cli_int64(v, out) && *out >= min ? 1 : -1;
}

int dm_cli_opt_time(const dm_cli *c, const char *name, int64_t *out)
{
    const char *v = dm_cli_opt(c, name);

    if (!v) {
        return 0;
    }
    return dm_json_parse_time(c->pool, name, v, out) ? -1 : 1;
}

const char *dm_cli_amount(apr_pool_t *p, int64_t micros)
{
    uint64_t a = micros < 0 ? 0 - (uint64_t)micros : (uint64_t)micros;

    return apr_psprintf(p, "%s%" APR_UINT64_T_FMT ".%06" APR_UINT64_T_FMT, micros < 0 ? "-" : "",
                        (apr_uint64_t)(a / 1000000), (apr_uint64_t)(a % 1000000));
}

int dm_cli_db_path(dm_cli *c)
{
    dm_apache_directive d;
    int found = 0;
    dm_err *e;

    if (c->db_path) {
        return DM_CLI_OK;
    }
    if (!c->config) {
        c->db_path = DEFAULT_DB;
        c->db_from = "the default";
        return DM_CLI_OK;
    }
    e = dm_apache_conf_find(c->pool, c->config, "DeepMineDatabase", 1, &d, &found);
    if (e) {
        return dm_cli_fail(c, e);
    }
    c->db_named = 1;
    if (found) {
        c->db_path = d.value;
        c->db_from = apr_psprintf(c->pool, "DeepMineDatabase at %s:%d", d.file, d.line);
    } else {
        c->db_path = MODULE_DEFAULT_DB;
        c->db_from =
            apr_psprintf(c->pool, "the module's default: no DeepMineDatabase in %s", c->config);
    }
    return DM_CLI_OK;
}

int dm_cli_open(dm_cli *c, int migrate)
{
    int applied = 0, version = 0, rc = dm_cli_db_path(c);
    dm_err *e;

    if (rc != DM_CLI_OK) {
        return rc;
    }
    if (!c->db_named && !(c->cmd->flags & DM_CLI_CREATES) && !dm_db_is_postgres(c->db_path) &&
        access(c->db_path, F_OK) != 0) {
        fprintf(stderr,
                "%s: no database at %s (%s). Name one with --db PATH or $DEEPMINE_DB, or the "
                "server's configuration with --config FILE or $DEEPMINE_CONFIG (`make run` "
                "prints the line to use).\n",
                c->tool->name, c->db_path, c->db_from);
        return DM_CLI_FAIL;
    }
    e = dm_db_open(c->pool, c->db_path, NULL, &c->db);
    if (!e && migrate) {
        e = dm_migrate(c->db, c->pool, dm_migrations, dm_migrations_count, &applied, &version);
    }
    return e ? dm_cli_fail(c, e) : DM_CLI_OK;
}

/* ---- running a command ---- */

static const dm_cli_cmd *find(const dm_cli_cmd *const *cmds, const char *name)
{
    for (; cmds && *cmds; cmds++) {
        if (strcmp((*cmds)->name, name) == 0) {
            return *cmds;
        }
    }
    return NULL;
}

/* argv[0] is the command's own name; its options are parsed, then its
 * sub-command runs, or its function with the operands left. */
static int run(dm_cli *c, const dm_cli_cmd *cmd, int argc, const char *const *argv,
               const char *path)
{
    const apr_getopt_option_t *opts = cmd->opts ? cmd->opts : no_opts;
    const char **args = apr_pcalloc(c->pool, sizeof(const char *) * ((apr_size_t)argc + 1));
    apr_getopt_t *os;
    apr_status_t rv;
    const char *arg;
    int ch;

    c->cmd = cmd;
    c->path = path;
    /* getopt's messages then begin "deepminectl ledger adjust: " */
    args[0] = apr_pstrcat(c->pool, c->tool->name, " ", path, NULL);
    for (int i = 1; i < argc; i++) {
        args[i] = argv[i];
    }
    apr_getopt_init(&os, c->pool, argc, args);
    /* a leaf's options may follow its operands (jobs run <job> --force);
     * a group's end at its sub-command's name */
    os->interleave = cmd->subs == NULL;
    while ((rv = apr_getopt_long(os, opts, &ch, &arg)) == APR_SUCCESS) {
        const apr_getopt_option_t *o = opts;
        while (o->optch && o->optch != ch) {
            o++;
        }
        apr_table_setn(c->opts, o->name, o->has_arg ? arg : "1");
    }
    if (rv != APR_EOF) {
        return dm_cli_usage(c);
    }
    argc = os->argc - os->ind;
    argv = os->argv + os->ind;
    if (cmd->subs) {
        const dm_cli_cmd *sub = argc > 0 ? find(cmd->subs, argv[0]) : NULL;
        if (!sub) {
            if (argc > 0) {
                fprintf(stderr, "%s: %s has no command %s\n", c->tool->name, path, argv[0]);
            }
            return dm_cli_usage(c);
        }
        return run(c, sub, argc, argv, apr_pstrcat(c->pool, path, " ", sub->name, NULL));
    }
    if (argc < cmd->min_args || argc > cmd->max_args) {
        return dm_cli_usage(c);
    }
    c->argc = argc;
    c->argv = argv;
    return cmd->fn(c);
}

static int cmd_help(dm_cli *c)
{
    const dm_cli_cmd *cmd = NULL;
    const char *path = NULL;

    if (c->argc == 0) {
        print_overview(c, stdout);
        return DM_CLI_OK;
    }
    cmd = find(c->tool->cmds, c->argv[0]);
    path = c->argv[0];
    if (cmd && c->argc == 2) {
        cmd = find(cmd->subs, c->argv[1]);
        path = apr_pstrcat(c->pool, path, " ", c->argv[1], NULL);
    }
    if (!cmd) {
        fprintf(stderr, "%s: no command %s (see `%s help`)\n", c->tool->name, path, c->tool->name);
        return DM_CLI_USAGE;
    }
    print_detail(c, stdout, cmd, path);
    return DM_CLI_OK;
}

const dm_cli_cmd dm_cli_help_cmd = {
    .name = "help",
    .max_args = 2,
    .fn = cmd_help,
    .synopsis = "[<command> [<sub-command>]]",
    .description = "every command, or one command with its options",
};

int dm_cli_main(const dm_cli_tool *tool, int argc, const char *const *argv)
{
    dm_cli c;
    apr_getopt_t *os;
    apr_status_t rv;
    const char **args;
    const char *arg, *env, *db = NULL;
    const dm_cli_cmd *cmd;
    int ch;

    dm_db_global_init();
    if (apr_app_initialize(&argc, &argv, NULL) != APR_SUCCESS || sodium_init() < 0) {
        fprintf(stderr, "%s: cannot initialise APR or libsodium\n", tool->name);
        return DM_CLI_FAIL;
    }
    atexit(apr_terminate);
    memset(&c, 0, sizeof(c));
    apr_pool_create(&c.pool, NULL);
    c.tool = tool;
    c.opts = apr_table_make(c.pool, 8);

    args = apr_pcalloc(c.pool, sizeof(const char *) * ((apr_size_t)argc + 1));
    args[0] = tool->name;
    for (int i = 1; i < argc; i++) {
        args[i] = argv[i];
    }
    apr_getopt_init(&os, c.pool, argc, args);
    while ((rv = apr_getopt_long(os, global_opts, &ch, &arg)) == APR_SUCCESS) {
        switch (ch) {
        case G_DB:
            db = arg;
            break;
        case G_CONFIG:
            c.config = arg;
            break;
        case G_CLOCK:
            /* tests: the platform's time from a file (see clock.h) */
            if (dm_clock_use_file(arg) != 0) {
                fprintf(stderr, "%s: --clock-file path too long\n", tool->name);
                return DM_CLI_USAGE;
            }
            break;
        case G_TEST:
            c.test_mode = 1;
            break;
        default: /* G_HELP */
            print_overview(&c, stdout);
            return DM_CLI_OK;
        }
    }
    if (rv != APR_EOF) {
        fprintf(stderr, "%s: see `%s help`\n", tool->name, tool->name);
        return DM_CLI_USAGE;
    }
    env = getenv("DEEPMINE_DB");
    if (db) {
        c.db_path = db;
        c.db_from = "--db";
    } else if (env && *env) {
        c.db_path = env;
        c.db_from = "$DEEPMINE_DB";
    }
    c.db_named = c.db_path != NULL;
    env = getenv("DEEPMINE_CONFIG");
    if (!c.config && env && *env) {
        c.config = env;
    }
    if (os->ind >= os->argc) {
        print_overview(&c, stdout);
        return DM_CLI_USAGE;
    }
    cmd = find(tool->cmds, os->argv[os->ind]);
    for (const dm_cli_moved *m = tool->moved; !cmd && m && m->name; m++) {
        if (strcmp(m->name, os->argv[os->ind]) == 0) {
            fprintf(stderr, "%s: %s is now %s\n", tool->name, m->name, m->now);
            return DM_CLI_USAGE;
        }
    }
    if (!cmd) {
        fprintf(stderr, "%s: unknown command %s (see `%s help`)\n", tool->name, os->argv[os->ind],
                tool->name);
        return DM_CLI_USAGE;
    }
    return run(&c, cmd, os->argc - os->ind, os->argv + os->ind, cmd->name);
}
