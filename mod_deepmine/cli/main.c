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

/* ---- staff ---- */

static const apr_getopt_option_t staff_create_opts[] = {
    {"email", 256, 1, "E the account's e-mail address"},
    {"role", 257, 1, "R owner, finance, support or kyc"},
    {NULL, 0, 0, NULL}};
static const apr_getopt_option_t staff_owner_opts[] = {
    {"email", 256, 1, "E the owner's e-mail address"}, {NULL, 0, 0, NULL}};

static const dm_cli_cmd staff_create = {"create",
                                        0,
                                        staff_create_opts,
                                        0,
                                        0,
                                        NULL,
                                        dm_cmd_staff_create,
                                        "--email E --role R",
                                        "create a staff account and print its one-time password"};
static const dm_cli_cmd staff_list = {
    "list", 0, NULL, 0, 0, NULL, dm_cmd_staff_list, "", "the staff accounts"};
static const dm_cli_cmd staff_owner = {
    "ensure-owner",
    0,
    staff_owner_opts,
    0,
    0,
    NULL,
    dm_cmd_staff_ensure_owner,
    "--email E",
    "create an owner account (printing its one-time password) only when there is none; "
    "silent otherwise"};
static const dm_cli_cmd *const staff_subs[] = {&staff_create, &staff_list, &staff_owner, NULL};
static const dm_cli_cmd staff = {"staff", 0, NULL, 0, 0, staff_subs, NULL, NULL, NULL};

/* ---- ledger ---- */

static const apr_getopt_option_t ledger_show_opts[] = {{"user", 256, 1, "ID the member"},
                                                       {NULL, 0, 0, NULL}};
static const apr_getopt_option_t ledger_adjust_opts[] = {
    {"user", 256, 1, "ID the member"},
    {"amount", 257, 1, "MICROS signed micro-units: credit (> 0) or debit (< 0) of the wallet"},
    {"reason", 258, 1, "TEXT why, for the audit log and the member's statement"},
    {"key", 259, 1,
     "KEY idempotency key adj:…; the same key posts once (default: a new one each run)"},
    {NULL, 0, 0, NULL}};

static const dm_cli_cmd ledger_verify = {
    "verify",
    0,
    NULL,
    0,
    0,
    NULL,
    dm_cmd_ledger_verify,
    "",
    "recompute every balance from the transfers; exit 1 names the first bad account"};
static const dm_cli_cmd ledger_show = {"show",
                                       0,
                                       ledger_show_opts,
                                       0,
                                       0,
                                       NULL,
                                       dm_cmd_ledger_show,
                                       "--user ID",
                                       "a member's wallet and held balances"};
static const dm_cli_cmd ledger_adjust = {
    "adjust",
    0,
    ledger_adjust_opts,
    0,
    0,
    NULL,
    dm_cmd_ledger_adjust,
    "--user ID --amount MICROS --reason TEXT [--key adj:…]",
    "an operator's correction of a member's wallet against the adjustments account, "
    "audited as the console's (docs/operations.md); then run ledger verify"};
static const dm_cli_cmd *const ledger_subs[] = {&ledger_verify, &ledger_show, &ledger_adjust, NULL};
static const dm_cli_cmd ledger = {"ledger", 0, NULL, 0, 0, ledger_subs, NULL, NULL, NULL};

/* ---- commissions ---- */

static const apr_getopt_option_t release_opts[] = {
    {"now", 256, 1, "UNIX-SECONDS as if the clock said so (tests, catching up)"},
    {NULL, 0, 0, NULL}};

static const dm_cli_cmd commissions_release = {
    "release",
    0,
    release_opts,
    0,
    0,
    NULL,
    dm_cmd_commissions_release,
    "[--now UNIX-SECONDS]",
    "move held commissions whose hold period is over to the wallets (skips flagged pairs)"};
static const dm_cli_cmd *const commissions_subs[] = {&commissions_release, NULL};
static const dm_cli_cmd commissions = {"commissions",    0,    NULL, 0,   0,
                                       commissions_subs, NULL, NULL, NULL};

/* ---- capacity ---- */

static const apr_getopt_option_t capacity_opts[] = {
    {"ghs", 256, 1, "N the hash power owned or leased, in GH/s"},
    {"note", 257, 1, "TEXT where it is, for the history"},
    {NULL, 0, 0, NULL}};

static const dm_cli_cmd capacity_show = {
    "show",
    0,
    NULL,
    0,
    0,
    NULL,
    dm_cmd_capacity_show,
    "",
    "the current capacity and what is sold, in GH/s (nothing can be sold without one)"};
static const dm_cli_cmd capacity_set = {"set",
                                        0,
                                        capacity_opts,
                                        0,
                                        0,
                                        NULL,
                                        dm_cmd_capacity_set,
                                        "--ghs N [--note TEXT]",
                                        "record a new capacity (audited as the console's)"};
static const dm_cli_cmd capacity_ensure = {
    "ensure",
    0,
    capacity_opts,
    0,
    0,
    NULL,
    dm_cmd_capacity_ensure,
    "--ghs N [--note TEXT]",
    "record it only when none is recorded (make run's demo figure)"};
static const dm_cli_cmd *const capacity_subs[] = {&capacity_show, &capacity_set, &capacity_ensure,
                                                  NULL};
static const dm_cli_cmd capacity = {"capacity", 0, NULL, 0, 0, capacity_subs, NULL, NULL, NULL};

/* ---- pool payouts ---- */

static const apr_getopt_option_t payout_opts[] = {
    {"kind", 256, 1, "K hour or day"},
    {"period", 257, 1, "P its start: RFC 3339 or Unix seconds"},
    {"amount", 258, 1, "MICROS what the pool paid, in micro-units"},
    {"note", 259, 1, "TEXT for the history"},
    {NULL, 0, 0, NULL}};

static const dm_cli_cmd payouts_record = {
    "record",
    0,
    payout_opts,
    0,
    0,
    NULL,
    dm_cmd_pool_payouts_record,
    "--kind hour|day --period RFC3339|UNIX --amount MICROS [--note TEXT]",
    "the mining pool's payout for an hour or a day (audited); the pool-accrual job shares it "
    "out"};
static const dm_cli_cmd payouts_list = {"list",
                                        0,
                                        NULL,
                                        0,
                                        0,
                                        NULL,
                                        dm_cmd_pool_payouts_list,
                                        "",
                                        "the payouts, newest first, with their reconciliation"};
static const dm_cli_cmd *const payouts_subs[] = {&payouts_record, &payouts_list, NULL};
static const dm_cli_cmd pool_payouts = {"pool-payouts", 0,    NULL, 0,   0,
                                        payouts_subs,   NULL, NULL, NULL};

/* ---- jobs ---- */

static const apr_getopt_option_t jobs_run_opts[] = {
    {"period", 256, 1, "P the period: RFC 3339 or Unix seconds (default: the last one due)"},
    {"force", 257, 0, "run a dead period again, or one whose retry is not due yet"},
    {NULL, 0, 0, NULL}};

static const dm_cli_cmd jobs_list = {"list",
                                     0,
                                     NULL,
                                     0,
                                     0,
                                     NULL,
                                     dm_cmd_jobs_list,
                                     "",
                                     "each scheduled job with its schedule, next run and last run"};
static const dm_cli_cmd jobs_run = {
    "run",
    0,
    jobs_run_opts,
    1,
    1,
    NULL,
    dm_cmd_jobs_run,
    "<job> [--period P] [--force]",
    "run one period of a job now, through the same lease as the cron daemon"};
static const dm_cli_cmd *const jobs_subs[] = {&jobs_list, &jobs_run, NULL};
static const dm_cli_cmd jobs = {"jobs", 0, NULL, 0, 0, jobs_subs, NULL, NULL, NULL};

/* ---- the schema, the install ---- */

static const dm_cli_cmd migrate = {"migrate",
                                   DM_CLI_CREATES,
                                   NULL,
                                   0,
                                   0,
                                   NULL,
                                   dm_cmd_migrate,
                                   "",
                                   "apply the pending schema migrations"};
static const dm_cli_cmd status = {
    "status",
    0,
    NULL,
    0,
    0,
    NULL,
    dm_cmd_status,
    "",
    "the database, its schema version and counts; exit 1 if migrations are pending"};
static const dm_cli_cmd seed_demo = {
    "seed-demo",
    DM_CLI_CREATES,
    NULL,
    0,
    0,
    NULL,
    dm_cmd_seed_demo,
    "",
    "migrate, then add the 6-package demo catalogue if there is none"};
static const dm_cli_cmd keygen = {
    "keygen",
    0,
    NULL,
    1,
    1,
    NULL,
    dm_cmd_keygen,
    "<path>",
    "create a new secret key file (32 random bytes, mode 0600); never overwrites one"};
static const dm_cli_cmd import_users = {
    "import-users",
    0,
    NULL,
    1,
    1,
    NULL,
    dm_cmd_import_users,
    "<file.csv>",
    "import members from the old platform (email,bcrypt_hash,referral_code,referrer_code,"
    "created_at); all or nothing"};

static const dm_cli_cmd *const commands[] = {
    &migrate,     &status,   &seed_demo,    &keygen, &staff,           &import_users, &ledger,
    &commissions, &capacity, &pool_payouts, &jobs,   &dm_cli_help_cmd, NULL};

static const dm_cli_tool deepminectl = {
    "deepminectl", commands,
    "The operator's console for DeepMine: it works on the database the module serves, through "
    "the same core, without Apache."};

int main(int argc, const char *const *argv)
{
    return dm_cli_main(&deepminectl, argc, argv);
}
