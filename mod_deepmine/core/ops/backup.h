/*
 * backup.h — backups of the database through the storage plugin.
 *
 * A backup is two objects under "backups/": <id>.dmb, the database
 * (an online, consistent copy: store/db.h dm_db_snapshot) compressed with
 * zstd and encrypted with libsodium's crypto_secretstream_xchacha20poly1305
 * in chunks of DM_BACKUP_CHUNK compressed bytes (the last one tagged
 * FINAL, so a truncated, reordered or altered object fails), and
 * <id>.json, its manifest: format, schema version, row counts per table,
 * SHA-256 of the plaintext database and of the object, sizes, time, the
 * key id of the secret, and an HMAC-SHA-256 over all of it (the manifest
 * with its keys sorted, compact, without "hmac"). The keys are derived
 * with crypto_kdf from the 32-byte DeepMineSecretKeyFile, context
 * "DMbackup" (1 encryption, 2 manifest HMAC, 3 key id): a backup made
 * under another secret, or an edited manifest, is refused.
 *
 * On PostgreSQL the database part is pg_dump --format=custom of one
 * exported snapshot (the manifest's row counts come from the same
 * snapshot), the manifest says "engine": "postgresql" (absent: "sqlite"),
 * and scratch files go to the temporary directory ($TMPDIR, else /tmp);
 * the password reaches pg_dump/pg_restore in PGPASSWORD only.
 *
 * The object is written first and the manifest last: a backup without a
 * manifest does not exist for list, verify, restore or retention (and a
 * failed create removes what it wrote).
 */
#ifndef DM_OPS_BACKUP_H
#define DM_OPS_BACKUP_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <stdint.h>

#include "base/err.h"
#include "plugins/storage.h"

#define DM_BACKUP_FORMAT 1
#define DM_BACKUP_CHUNK 65536
#define DM_BACKUP_PREFIX "backups/"
#define DM_BACKUP_KEY_ID_CHARS 16

typedef struct dm_backup_keys {
    unsigned char enc[32];
    unsigned char mac[32];
    char key_id[DM_BACKUP_KEY_ID_CHARS + 1];
} dm_backup_keys;

void dm_backup_keys_derive(const unsigned char secret[32], dm_backup_keys *out);

/* Where backups go: a loaded storage plugin of a host. */
typedef struct dm_backup_store {
    const dm_plugin_host *host;
    const dm_loaded_plugin *pl;
} dm_backup_store;

/* One backup's manifest, as read back and checked. */
typedef struct dm_backup_info {
    const char *id;
    int64_t created; /* Unix seconds */
    int64_t schema_version;
    int64_t db_bytes;     /* the plaintext database */
    int64_t object_bytes; /* the stored object */
    int64_t total_rows;
    const char *sha256; /* of the plaintext database, hex */
    const char *manifest_json;
} dm_backup_info;

/* Takes a backup of the database at db_path (a temporary copy is made
 * beside it and removed). now is the creation time (the clock of
 * base/clock.h in the server). *out (may be NULL) describes it. */
dm_err *dm_backup_create(apr_pool_t *p, const dm_backup_store *s, const dm_backup_keys *k,
                         const char *db_path, int64_t now, dm_backup_info *out);

/* Every backup with a manifest, oldest first (dm_backup_info elements).
 * A manifest that fails its checks is listed with created 0 and id only
 * when bad_too, else skipped. */
dm_err *dm_backup_list(apr_pool_t *p, const dm_backup_store *s, const dm_backup_keys *k,
                       apr_array_header_t **out);

/* Fetches backup id (NULL: the newest), decrypts and decompresses it into
 * a new file at dest_path and checks it: the manifest's HMAC and key id,
 * the object's hash and size, the plaintext's SHA-256, PRAGMA
 * integrity_check, ledger verify, the row counts. DM_E_INVALID with a
 * sentence saying why when the backup is refused (dest_path removed);
 * *out (may be NULL) describes it. */
dm_err *dm_backup_fetch(apr_pool_t *p, const dm_backup_store *s, const dm_backup_keys *k,
                        const char *id, const char *dest_path, dm_backup_info *out);

/* dm_backup_fetch into a temporary file beside tmp_dir_file, then removed.
 * When tmp_near is a PostgreSQL connection string (the live database):
 * the backup must be of PostgreSQL; it is restored with pg_restore into
 * a temporary database dm_verify_<random> created on the same server,
 * checked there (ledger verify, row counts) and dropped. */
dm_err *dm_backup_verify(apr_pool_t *p, const dm_backup_store *s, const dm_backup_keys *k,
                         const char *id, const char *tmp_near, dm_backup_info *out);

/* Restores backup id (NULL: the newest) of a PostgreSQL database into
 * the EMPTY PostgreSQL database `target` (DM_E_CONFLICT, a sentence, when
 * it has a table): fetched and checked as dm_backup_fetch does, then
 * pg_restore --no-owner --exit-on-error, then ledger verify and the row
 * counts on the target. A SQLite backup is refused (and
 * dm_backup_fetch refuses a PostgreSQL one): the manifest's "engine". */
dm_err *dm_backup_restore_pg(apr_pool_t *p, const dm_backup_store *s, const dm_backup_keys *k,
                             const char *id, const char *target, dm_backup_info *out);

/* Removes one backup (manifest first, then the object). */
dm_err *dm_backup_remove(apr_pool_t *p, const dm_backup_store *s, const char *id);

/* Retention: keeps the newest backup of each of the last `hourly` hours,
 * `daily` days and `weekly` ISO weeks (UTC) that have one, deletes the
 * rest. *deleted gets how many. */
dm_err *dm_backup_prune(apr_pool_t *p, const dm_backup_store *s, const dm_backup_keys *k,
                        int hourly, int daily, int weekly, int64_t *deleted);

/* Swaps the verified database file new_path in at db_path: refused
 * (DM_E_CONFLICT, a sentence) while another process holds db_path open,
 * and when db_path exists unless force. The old file is kept as
 * <db_path>.pre-restore; its -wal and -shm are removed. */
dm_err *dm_backup_swap_in(apr_pool_t *p, const char *new_path, const char *db_path, int force);

#endif
