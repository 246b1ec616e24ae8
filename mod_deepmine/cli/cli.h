/*
 * cli.h — what the command-line tools share (deepminectl, and dm-benchgen
 * in bench/): a tool is a table of commands, as mod_md's a2md is
 * (md_cmd_t). A row names the command, its apr_getopt options, its
 * operands, its sub-commands or its function, and the words `help`
 * prints. cmd.c parses (apr_getopt_long: no command parses by hand) and
 * calls the function; the function checks its options, opens the
 * database (dm_cli_open) and calls core — no SQL in a command.
 *
 * Exit codes: 0 ok, 1 a check or an operation failed, 2 usage.
 */
#ifndef DM_CLI_H
#define DM_CLI_H

#include <apr_getopt.h>
#include <apr_pools.h>
#include <apr_tables.h>
#include <stdint.h>

#include "base/err.h"
#include "store/db.h"

#define DM_CLI_OK 0
#define DM_CLI_FAIL 1
#define DM_CLI_USAGE 2

/* dm_cli_cmd.flags: the command may create the database. Without it, a
 * database missing at the default path (when nothing named one) is an
 * error with a hint, not a new empty file in ./var. */
#define DM_CLI_CREATES 0x01

typedef struct dm_cli dm_cli;
typedef struct dm_cli_cmd dm_cli_cmd;
typedef int dm_cli_fn(dm_cli *c);

/* One row of a tool's table. Options are long only: optch values above
 * 255, distinct within the row; the first word of an option's
 * description names its value in `help` ("ID the member"). */
struct dm_cli_cmd {
    const char *name;
    int flags;                       /* DM_CLI_CREATES */
    const apr_getopt_option_t *opts; /* ends with an optch of 0; NULL: none */
    int min_args, max_args;          /* operands after the options */
    const dm_cli_cmd *const *subs;   /* sub-commands (NULL-terminated), or NULL */
    dm_cli_fn *fn;                   /* NULL when subs */
    const char *synopsis;            /* after the command's name: "--user ID" */
    const char *description;
};

/* A command that left a tool, and where it went. */
typedef struct dm_cli_moved {
    const char *name;
    const char *now; /* where to look instead */
} dm_cli_moved;

/* A tool: its name, its table, one paragraph about it for `help`. */
typedef struct dm_cli_tool {
    const char *name;
    const dm_cli_cmd *const *cmds; /* NULL-terminated */
    const char *about;
    const dm_cli_moved *moved; /* NULL, or ends with a NULL name */
} dm_cli_tool;

struct dm_cli {
    apr_pool_t *pool;
    const dm_cli_tool *tool;
    const char *db_path;
    const char *db_from; /* where db_path came from, for messages */
    int db_named;        /* 0: the default path, nothing named a database */
    const char *config;  /* --config, else $DEEPMINE_CONFIG, else NULL */
    int test_mode;       /* --test-mode: test-only jobs visible */
    dm_db *db;           /* once dm_cli_open succeeded */
    apr_table_t *opts;   /* the command's options by long name; "1" for a flag */
    int argc;            /* the operands */
    const char *const *argv;
    const dm_cli_cmd *cmd; /* the command running, and its words */
    const char *path;      /* "ledger adjust" */
};

/* main() of a tool. */
int dm_cli_main(const dm_cli_tool *tool, int argc, const char *const *argv);

/* The `help [command [sub-command]]` row every tool lists. */
extern const dm_cli_cmd dm_cli_help_cmd;

/* Prints "<tool>: <message>" on stderr; DM_CLI_FAIL. */
int dm_cli_fail(const dm_cli *c, const dm_err *e);

/* Prints the running command's usage on stderr; DM_CLI_USAGE. */
int dm_cli_usage(const dm_cli *c);

/* An option's value, NULL when not given; 1 when a flag was given. */
const char *dm_cli_opt(const dm_cli *c, const char *name);
int dm_cli_flag(const dm_cli *c, const char *name);

/* A whole decimal number (sign allowed); 0 when `s` is not one. */
int dm_cli_int64(const char *s, int64_t *out);

/* Option `name` as a number >= min: 1 when given and good, 0 when not
 * given, -1 when malformed or below min. */
int dm_cli_opt_int64(const dm_cli *c, const char *name, int64_t min, int64_t *out);

/* Option `name` as an RFC 3339 time or Unix seconds: as above. */
int dm_cli_opt_time(const dm_cli *c, const char *name, int64_t *out);

/* Finds the database's path (c->db_path): --db, else $DEEPMINE_DB, else
 * the DeepMineDatabase of the configuration named by --config or
 * $DEEPMINE_CONFIG (the module's default when it has none), else
 * ./var/deepmine.db. Prints the error and returns DM_CLI_FAIL, or
 * DM_CLI_OK. */
int dm_cli_db_path(dm_cli *c);

/* Opens c->db there (migrated when asked); errors as above. */
int dm_cli_open(dm_cli *c, int migrate);

/* "-1.500000" for -1500000 micro-units: integer arithmetic only. */
const char *dm_cli_amount(apr_pool_t *p, int64_t micros);

#endif
