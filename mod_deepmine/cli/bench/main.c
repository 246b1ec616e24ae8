/*
 * main.c — dm-benchgen: generated members and contracts for the benchmark
 * (scripts/bench.sh) and for tests that need a population, kept out of the
 * operator's deepminectl. The same engine and global options as
 * deepminectl (../cmd.c); the rows are written through core's bulk paths
 * (members/member_bulk.h, shop/contract_bulk.h), which a unit test holds
 * equal to the rows of registration and of a sale.
 */
#include "bench.h"

static const apr_getopt_option_t members_opts[] = {
    {"count", 256, 1, "N how many members to add"},
    {"shape", 257, 1,
     "S random (each under a uniformly chosen existing member, 1% under the root), chain "
     "(each under the previous one) or star (all under one)"},
    {"seed", 258, 1, "S fixes the tree's shape (the referral codes stay random)"},
    {"under", 259, 1, "ID the population's root: an existing member (default: none, new roots)"},
    {"per-row", 260, 0, "registration's insert per member instead of the bulk path, to compare"},
    {"password-mib", 261, 1,
     "M the shared password hash with 1 pass and M MiB (8-4096) instead of the server's "
     "default (2 passes, 64 MiB): a login holds M MiB (the bench's DeepMinePasswordHash 1 8)"},
    {NULL, 0, 0, NULL},
};
static const dm_cli_cmd members = {
    .name = "members",
    .flags = DM_CLI_CREATES,
    .opts = members_opts,
    .fn = dm_bench_members,
    .synopsis = "--count N --shape random|chain|star [--seed S] [--under ID] [--per-row] "
                "[--password-mib M]",
    .description = "add N members gen<id>@example.test (password generated-member-password), "
                   "appended to what the database holds, with the rows registration writes "
                   "(docs/operations.md)",
};

static const apr_getopt_option_t contracts_opts[] = {
    {"count", 256, 1, "N how many contracts to add"},
    {"mode", 257, 1, "M fixed (default) or pool: the yield mode of the package used"},
    {"started", 258, 1, "T when they started: RFC 3339 or Unix seconds (default: a day ago)"},
    {NULL, 0, 0, NULL},
};
static const dm_cli_cmd contracts = {
    .name = "contracts",
    .opts = contracts_opts,
    .fn = dm_bench_contracts,
    .synopsis = "--count N [--mode fixed|pool] [--started T]",
    .description = "add N active contracts of the first active package of the mode, spread over "
                   "the active members round-robin, each with its paid order and a wallet for "
                   "its member (no payment transfer: granted, not sold)",
};

static const dm_cli_cmd *const commands[] = {&members, &contracts, &dm_cli_help_cmd, NULL};

static const dm_cli_tool benchgen = {
    .name = "dm-benchgen",
    .cmds = commands,
    .about = "Bench and test data for DeepMine: generated members and contracts. It turns "
             "SQLite's synchronous off on its own connection (a crash loses generated rows): "
             "run it against a test database, never a serving one.",
};

int main(int argc, const char *const *argv)
{
    return dm_cli_main(&benchgen, argc, argv);
}
