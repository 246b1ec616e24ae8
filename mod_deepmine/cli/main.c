/*
 * main.c — deepminectl, the operator CLI: this table is the whole of it.
 * Each row: the command, its options (apr_getopt_long; the first word of
 * an option's text names its value), its operands, and the function in
 * the group's file that calls core. cmd.c parses, prints usage and help
 * from the rows; `deepminectl help` lists every command, `deepminectl
 * help <command>` shows one with its options. Bench data generators are a
 * separate tool (bench/, build/dm-benchgen).
 */
#include "cli.h"
#include "commands.h"

/* ---- the schema, the install ---- */

static const dm_cli_cmd migrate = {
    .name = "migrate",
    .flags = DM_CLI_CREATES,
    .fn = dm_cmd_migrate,
    .description = "apply the pending schema migrations",
};
static const dm_cli_cmd status = {
    .name = "status",
    .fn = dm_cmd_status,
    .description = "the database, its schema version and counts; exit 1 if migrations are pending",
};
static const apr_getopt_option_t migrate_pg_opts[] = {
    {"from", 256, 1, "PATH the SQLite database of the stopped deployment"},
    {"to", 257, 1, "URL an empty PostgreSQL database (URL or key=value string)"},
    {NULL, 0, 0, NULL},
};
static const dm_cli_cmd migrate_pg = {
    .name = "migrate-to-postgres",
    .opts = migrate_pg_opts,
    .fn = dm_cmd_migrate_to_postgres,
    .synopsis = "--from PATH --to URL",
    .description = "copy a stopped SQLite deployment into an empty PostgreSQL database, then "
                   "check row counts, every balance and ledger verify on both (docs/scaling.md)",
};
static const dm_cli_cmd seed_demo = {
    .name = "seed-demo",
    .flags = DM_CLI_CREATES,
    .fn = dm_cmd_seed_demo,
    .description = "migrate, then add the 6-package demo catalogue if there is none",
};
static const dm_cli_cmd keygen = {
    .name = "keygen",
    .min_args = 1,
    .max_args = 1,
    .fn = dm_cmd_keygen,
    .synopsis = "<path>",
    .description =
        "create a new secret key file (32 random bytes, mode 0600); never overwrites one",
};

/* ---- staff and members ---- */

static const apr_getopt_option_t staff_create_opts[] = {
    {"email", 256, 1, "E the account's e-mail address"},
    {"role", 257, 1, "ROLE owner, finance, support or kyc"},
    {NULL, 0, 0, NULL},
};
static const apr_getopt_option_t staff_owner_opts[] = {
    {"email", 256, 1, "E the owner's e-mail address"},
    {NULL, 0, 0, NULL},
};
static const dm_cli_cmd staff_create = {
    .name = "create",
    .opts = staff_create_opts,
    .fn = dm_cmd_staff_create,
    .synopsis = "--email E --role owner|finance|support|kyc",
    .description = "create a staff account and print its one-time password",
};
static const dm_cli_cmd staff_list = {
    .name = "list",
    .fn = dm_cmd_staff_list,
    .description = "the staff accounts",
};
static const dm_cli_cmd staff_owner = {
    .name = "ensure-owner",
    .opts = staff_owner_opts,
    .fn = dm_cmd_staff_ensure_owner,
    .synopsis = "--email E",
    .description = "create an owner account (printing its one-time password) only when there is "
                   "none; silent otherwise",
};
static const dm_cli_cmd *const staff_subs[] = {&staff_create, &staff_list, &staff_owner, NULL};
static const dm_cli_cmd staff = {
    .name = "staff",
    .subs = staff_subs,
};
static const apr_getopt_option_t twofa_reset_opts[] = {
    {"member", 256, 1, "ID the member"},
    {"staff", 257, 1, "ID the staff account"},
    {NULL, 0, 0, NULL},
};
static const dm_cli_cmd twofa_reset = {
    .name = "reset",
    .opts = twofa_reset_opts,
    .fn = dm_cmd_twofa_reset,
    .synopsis = "--member ID | --staff ID",
    .description = "remove an account's two-factor enrolment (lost authenticator and recovery "
                   "codes); audited, the member is e-mailed and withdrawals pause",
};
static const dm_cli_cmd *const twofa_subs[] = {&twofa_reset, NULL};
static const dm_cli_cmd twofa = {
    .name = "twofa",
    .subs = twofa_subs,
};
static const dm_cli_cmd import_users = {
    .name = "import-users",
    .min_args = 1,
    .max_args = 1,
    .fn = dm_cmd_import_users,
    .synopsis = "<file.csv>",
    .description = "import members from the old platform "
                   "(email,bcrypt_hash,referral_code,referrer_code,created_at); all or nothing",
};

/* ---- the ledger ---- */

static const apr_getopt_option_t ledger_show_opts[] = {
    {"user", 256, 1, "ID the member"},
    {NULL, 0, 0, NULL},
};
static const apr_getopt_option_t ledger_adjust_opts[] = {
    {"user", 256, 1, "ID the member"},
    {"amount", 257, 1, "MICROS signed micro-units: credit (> 0) or debit (< 0) of the wallet"},
    {"reason", 258, 1, "TEXT why, for the audit log and the member's statement"},
    {"key", 259, 1,
     "KEY idempotency key adj:…; the same key posts once (default: a new one each run)"},
    {NULL, 0, 0, NULL},
};
static const dm_cli_cmd ledger_verify = {
    .name = "verify",
    .fn = dm_cmd_ledger_verify,
    .description = "recompute every balance from the transfers; exit 1 names the first bad account",
};
static const dm_cli_cmd ledger_show = {
    .name = "show",
    .opts = ledger_show_opts,
    .fn = dm_cmd_ledger_show,
    .synopsis = "--user ID",
    .description = "a member's wallet and held balances",
};
static const dm_cli_cmd ledger_adjust = {
    .name = "adjust",
    .opts = ledger_adjust_opts,
    .fn = dm_cmd_ledger_adjust,
    .synopsis = "--user ID --amount MICROS --reason TEXT [--key adj:…]",
    .description = "an operator's correction of a member's wallet against the adjustments account, "
                   "audited as the console's (docs/operations.md); then run ledger verify",
};
static const dm_cli_cmd *const ledger_subs[] = {&ledger_verify, &ledger_show, &ledger_adjust, NULL};
static const dm_cli_cmd ledger = {
    .name = "ledger",
    .subs = ledger_subs,
};

/* ---- commissions ---- */

static const apr_getopt_option_t release_opts[] = {
    {"now", 256, 1, "UNIX-SECONDS as if the clock said so (tests, catching up)"},
    {NULL, 0, 0, NULL},
};
static const dm_cli_cmd commissions_release = {
    .name = "release",
    .opts = release_opts,
    .fn = dm_cmd_commissions_release,
    .synopsis = "[--now UNIX-SECONDS]",
    .description =
        "move held commissions whose hold period is over to the wallets (skips flagged pairs)",
};
static const apr_getopt_option_t forfeit_opts[] = {
    {"commission", 256, 1,
     "ID one held commission (its beneficiary suspended, or its buyer named "
     "by a confirmed flag)"},
    {"user", 257, 1, "ID every held commission of this suspended member"},
    {"reason", 258, 1, "TEXT why, for the audit log"},
    {NULL, 0, 0, NULL},
};
static const dm_cli_cmd commissions_forfeit = {
    .name = "forfeit",
    .opts = forfeit_opts,
    .fn = dm_cmd_commissions_forfeit,
    .synopsis = "(--commission ID | --user ID) --reason TEXT",
    .description = "move held commissions to the forfeited_commissions system account, audited "
                   "as the console's (docs/commissions.md, Forfeits)",
};
static const dm_cli_cmd *const commissions_subs[] = {&commissions_release, &commissions_forfeit,
                                                     NULL};
static const dm_cli_cmd commissions = {
    .name = "commissions",
    .subs = commissions_subs,
};

/* ---- capacity ---- */

static const apr_getopt_option_t capacity_opts[] = {
    {"ghs", 256, 1, "N the hash power owned or leased, in GH/s"},
    {"note", 257, 1, "TEXT where it is, for the history"},
    {NULL, 0, 0, NULL},
};
static const dm_cli_cmd capacity_show = {
    .name = "show",
    .fn = dm_cmd_capacity_show,
    .description =
        "the current capacity and what is sold, in GH/s (nothing can be sold without one)",
};
static const dm_cli_cmd capacity_set = {
    .name = "set",
    .opts = capacity_opts,
    .fn = dm_cmd_capacity_set,
    .synopsis = "--ghs N [--note TEXT]",
    .description = "record a new capacity (audited as the console's)",
};
static const dm_cli_cmd capacity_ensure = {
    .name = "ensure",
    .opts = capacity_opts,
    .fn = dm_cmd_capacity_ensure,
    .synopsis = "--ghs N [--note TEXT]",
    .description = "record it only when none is recorded (make run's demo figure)",
};
static const dm_cli_cmd *const capacity_subs[] = {&capacity_show, &capacity_set, &capacity_ensure,
                                                  NULL};
static const dm_cli_cmd capacity = {
    .name = "capacity",
    .subs = capacity_subs,
};

/* ---- pool payouts ---- */

static const apr_getopt_option_t payout_opts[] = {
    {"kind", 256, 1, "K hour or day"},
    {"period", 257, 1, "P its start: RFC 3339 or Unix seconds"},
    {"amount", 258, 1, "MICROS what the pool paid, in micro-units"},
    {"note", 259, 1, "TEXT for the history"},
    {NULL, 0, 0, NULL},
};
static const dm_cli_cmd payouts_record = {
    .name = "record",
    .opts = payout_opts,
    .fn = dm_cmd_pool_payouts_record,
    .synopsis = "--kind hour|day --period RFC3339|UNIX --amount MICROS [--note TEXT]",
    .description = "the mining pool's payout for an hour or a day (audited); the pool-accrual job "
                   "shares it out",
};
static const dm_cli_cmd payouts_list = {
    .name = "list",
    .fn = dm_cmd_pool_payouts_list,
    .description = "the payouts, newest first, with their reconciliation",
};
static const dm_cli_cmd *const payouts_subs[] = {&payouts_record, &payouts_list, NULL};
static const dm_cli_cmd pool_payouts = {
    .name = "pool-payouts",
    .subs = payouts_subs,
};

/* ---- jobs ---- */

static const apr_getopt_option_t jobs_run_opts[] = {
    {"period", 256, 1, "P the period: RFC 3339 or Unix seconds (default: the last one due)"},
    {"force", 257, 0, "run a dead period again, or one whose retry is not due yet"},
    {NULL, 0, 0, NULL},
};
static const dm_cli_cmd jobs_list = {
    .name = "list",
    .fn = dm_cmd_jobs_list,
    .description = "each scheduled job with its schedule, next run and last run",
};
static const dm_cli_cmd jobs_run = {
    .name = "run",
    .opts = jobs_run_opts,
    .min_args = 1,
    .max_args = 1,
    .fn = dm_cmd_jobs_run,
    .synopsis = "<job> [--period RFC3339|UNIX] [--force]",
    .description = "run one period of a job now, through the same lease as the cron daemon",
};
static const dm_cli_cmd *const jobs_subs[] = {&jobs_list, &jobs_run, NULL};
static const dm_cli_cmd jobs = {
    .name = "jobs",
    .subs = jobs_subs,
};

/* ---- identity checks ---- */

static const apr_getopt_option_t kyc_rekey_opts[] = {
    {"new-key-file", 256, 1, "F the new secret key file (deepminectl keygen F)"},
    {"key-file", 257, 1, "F the current secret (default: DeepMineSecretKeyFile of --config)"},
    {"batch", 258, 1, "N documents per transaction (default 100)"},
    {NULL, 0, 0, NULL},
};
static const dm_cli_cmd kyc_rekey = {
    .name = "rekey",
    .opts = kyc_rekey_opts,
    .fn = dm_cmd_kyc_rekey,
    .synopsis = "--new-key-file F [--key-file F] [--batch N]",
    .description = "re-wrap every identity document's key under a new secret; safe to interrupt "
                   "and run again (docs/security.md)",
};
static const dm_cli_cmd *const kyc_subs[] = {&kyc_rekey, NULL};
static const dm_cli_cmd kyc = {
    .name = "kyc",
    .subs = kyc_subs,
};

/* ---- backups (ops/backup.h; storage and secret from --config) ---- */

static const apr_getopt_option_t backup_opts[] = {
    {"plugin", 256, 1, "NAME a declared storage plugin other than DeepMineStorage's"},
    {"key-file", 257, 1, "FILE the secret key file (default: DeepMineSecretKeyFile)"},
    {NULL, 0, 0, NULL},
};
static const apr_getopt_option_t backup_restore_opts[] = {
    {"plugin", 256, 1, "NAME a declared storage plugin other than DeepMineStorage's"},
    {"key-file", 257, 1, "FILE the secret key file (default: DeepMineSecretKeyFile)"},
    {"force", 258, 0, "replace an existing database (the server stopped)"},
    {"to", 259, 1, "URL PostgreSQL: the new, empty database to restore into"},
    {NULL, 0, 0, NULL},
};
static const dm_cli_cmd backup_create = {
    .name = "create",
    .opts = backup_opts,
    .fn = dm_cmd_backup_create,
    .synopsis = "[--plugin NAME] [--key-file FILE]",
    .description = "an online, consistent copy of the database, compressed, encrypted, stored "
                   "with a manifest through the storage plugin",
};
static const dm_cli_cmd backup_list = {
    .name = "list",
    .opts = backup_opts,
    .fn = dm_cmd_backup_list,
    .synopsis = "[--plugin NAME] [--key-file FILE]",
    .description = "the backups, oldest first: id, time, rows, sizes",
};
static const dm_cli_cmd backup_verify = {
    .name = "verify",
    .opts = backup_opts,
    .max_args = 1,
    .fn = dm_cmd_backup_verify,
    .synopsis = "[id] [--plugin NAME] [--key-file FILE]",
    .description = "fetch and decrypt a backup (default the newest), check its hash, "
                   "integrity_check, ledger verify and row counts on a temporary copy",
};
static const dm_cli_cmd backup_restore = {
    .name = "restore",
    .flags = DM_CLI_CREATES,
    .opts = backup_restore_opts,
    .max_args = 1,
    .fn = dm_cmd_backup_restore,
    .synopsis = "[id] [--force | --to URL] [--plugin NAME] [--key-file FILE]",
    .description = "check a backup as verify does and swap it in as the database; refused while "
                   "a server holds the database; PostgreSQL: into the empty database --to URL",
};
static const dm_cli_cmd *const backup_subs[] = {&backup_create, &backup_list, &backup_verify,
                                                &backup_restore, NULL};
static const dm_cli_cmd backup = {
    .name = "backup",
    .subs = backup_subs,
};

/* ---- storage (the server's DeepMineStorage plugin, through --config) ---- */

static const apr_getopt_option_t storage_opts[] = {
    {"plugin", 256, 1, "NAME a declared storage plugin other than DeepMineStorage's"},
    {NULL, 0, 0, NULL},
};
static const apr_getopt_option_t storage_put_opts[] = {
    {"plugin", 256, 1, "NAME a declared storage plugin other than DeepMineStorage's"},
    {"type", 257, 1, "TYPE the object's Content-Type (default application/octet-stream)"},
    {"stdin", 258, 0, "read the object from standard input instead of a file"},
    {NULL, 0, 0, NULL},
};
static const dm_cli_cmd storage_put = {
    .name = "put",
    .opts = storage_put_opts,
    .min_args = 1,
    .max_args = 2,
    .fn = dm_cmd_storage_put,
    .synopsis = "<key> <file>|--stdin [--type TYPE] [--plugin NAME]",
    .description = "store a file (or standard input) under key, all or nothing",
};
static const dm_cli_cmd storage_get = {
    .name = "get",
    .opts = storage_opts,
    .min_args = 1,
    .max_args = 2,
    .fn = dm_cmd_storage_get,
    .synopsis = "<key> [file] [--plugin NAME]",
    .description = "write the object to a file (only when it arrived whole), else to stdout",
};
static const dm_cli_cmd storage_ls = {
    .name = "ls",
    .opts = storage_opts,
    .min_args = 0,
    .max_args = 1,
    .fn = dm_cmd_storage_ls,
    .synopsis = "[prefix] [--plugin NAME]",
    .description = "the objects under prefix in key order: size, time (UTC), key",
};
static const dm_cli_cmd storage_rm = {
    .name = "rm",
    .opts = storage_opts,
    .min_args = 1,
    .max_args = 1,
    .fn = dm_cmd_storage_rm,
    .synopsis = "<key> [--plugin NAME]",
    .description = "remove the object (no error when there is none)",
};
static const dm_cli_cmd *const storage_subs[] = {&storage_put, &storage_get, &storage_ls,
                                                 &storage_rm, NULL};
static const dm_cli_cmd storage = {
    .name = "storage",
    .subs = storage_subs,
};

/* The order of `help`. */
static const dm_cli_cmd *const commands[] = {
    &migrate, &migrate_pg,   &status, &seed_demo,   &keygen,          &staff,
    &twofa,   &import_users, &ledger, &commissions, &capacity,        &pool_payouts,
    &jobs,    &storage,      &backup, &kyc,         &dm_cli_help_cmd, NULL,
};

/* Bench data left the operator's console (bench/). */
static const dm_cli_moved moved[] = {
    {"gen-members", "build/dm-benchgen members (docs/operations.md)"},
    {"gen-contracts", "build/dm-benchgen contracts (docs/operations.md)"},
    {NULL, NULL},
};

static const dm_cli_tool deepminectl = {
    .name = "deepminectl",
    .cmds = commands,
    .about = "The operator's console for DeepMine: it works on the database the module serves, "
             "through the same core, without Apache.",
    .moved = moved,
};

int main(int argc, const char *const *argv)
{
    return dm_cli_main(&deepminectl, argc, argv);
}
