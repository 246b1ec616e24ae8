/*
 * commands.h — deepminectl's command functions, one file per group
 * (migrate.c, ledger.c, …); main.c wires them into the table with their
 * options and words.
 */
#ifndef DM_CLI_COMMANDS_H
#define DM_CLI_COMMANDS_H

#include "cli.h"

/* migrate.c: the schema */
int dm_cmd_migrate(dm_cli *c);
int dm_cmd_status(dm_cli *c);
int dm_cmd_migrate_to_postgres(dm_cli *c);
/* seed_demo.c */
int dm_cmd_seed_demo(dm_cli *c);
/* kyc.c */
int dm_cmd_kyc_rekey(dm_cli *c);

/* keygen.c */
int dm_cmd_keygen(dm_cli *c);
/* staff.c */
int dm_cmd_staff_create(dm_cli *c);
int dm_cmd_staff_list(dm_cli *c);
int dm_cmd_staff_ensure_owner(dm_cli *c);
int dm_cmd_twofa_reset(dm_cli *c);
/* members.c */
int dm_cmd_import_users(dm_cli *c);
/* ledger.c */
int dm_cmd_ledger_verify(dm_cli *c);
int dm_cmd_ledger_show(dm_cli *c);
int dm_cmd_ledger_adjust(dm_cli *c);
/* commissions.c */
int dm_cmd_commissions_release(dm_cli *c);
int dm_cmd_commissions_forfeit(dm_cli *c);
/* capacity.c */
int dm_cmd_capacity_show(dm_cli *c);
int dm_cmd_capacity_set(dm_cli *c);
int dm_cmd_capacity_ensure(dm_cli *c);
/* pool_payouts.c */
int dm_cmd_pool_payouts_record(dm_cli *c);
int dm_cmd_pool_payouts_list(dm_cli *c);
/* jobs.c */
int dm_cmd_jobs_list(dm_cli *c);
int dm_cmd_jobs_run(dm_cli *c);
/* storage.c: the configuration's storage plugins loaded (DeepMinePlugin
 * storage …, DeepMinePluginSet), the one chosen by --plugin, else
 * DeepMineStorage, else the only one. DM_CLI_OK, or an exit code after a
 * message. */
struct dm_plugin_host;
struct dm_loaded_plugin;
typedef struct dm_cli_storage {
    struct dm_plugin_host *host;
    const struct dm_loaded_plugin *pl;
} dm_cli_storage;
int dm_cli_storage_load(dm_cli *c, dm_cli_storage *out);

/* kyc.c: the 32 bytes of a secret key file, refusing one others may read;
 * 0 after a message. */
int dm_cli_read_key(dm_cli *c, const char *path, unsigned char key[32]);

/* backup.c */
int dm_cmd_backup_create(dm_cli *c);
int dm_cmd_backup_list(dm_cli *c);
int dm_cmd_backup_verify(dm_cli *c);
int dm_cmd_backup_restore(dm_cli *c);

/* storage.c */
int dm_cmd_storage_put(dm_cli *c);
int dm_cmd_storage_get(dm_cli *c);
int dm_cmd_storage_ls(dm_cli *c);
int dm_cmd_storage_rm(dm_cli *c);

#endif
