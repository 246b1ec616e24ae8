/*
 * kyc.c — deepminectl kyc rekey: every document key re-wrapped under a new
 * secret key file (kyc_docs.h dm_kyc_rekey). The current secret is
 * --key-file, else the DeepMineSecretKeyFile of --config /
 * $DEEPMINE_CONFIG. Resumable: rows carry the id of the secret that
 * wrapped them, so a second run finishes what an interrupted one began.
 */
#include <apr_file_io.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "base/apache_conf.h"
#include "commands.h"
#include "kyc/kyc_docs.h"

/* 32 bytes from path, refusing a file others may read (commands.h). */
int dm_cli_read_key(dm_cli *c, const char *path, unsigned char key[32])
{
    apr_finfo_t fi;
    apr_file_t *f;
    apr_size_t n = 32;
    apr_status_t rv =
        apr_stat(&fi, path, APR_FINFO_PROT | APR_FINFO_SIZE | APR_FINFO_TYPE, c->pool);

    if (rv != APR_SUCCESS || fi.filetype != APR_REG) {
        fprintf(stderr, "%s: %s cannot be read\n", c->tool->name, path);
        return 0;
    }
    if (fi.protection & APR_FPROT_WREAD) {
        fprintf(stderr, "%s: %s is readable by everyone; refusing it (chmod 600)\n", c->tool->name,
                path);
        return 0;
    }
    if (fi.size != 32) {
        fprintf(stderr, "%s: %s must hold exactly 32 bytes (deepminectl keygen makes one)\n",
                c->tool->name, path);
        return 0;
    }
    rv = apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, c->pool);
    if (rv == APR_SUCCESS) {
        rv = apr_file_read_full(f, key, 32, &n);
        apr_file_close(f);
    }
    if (rv != APR_SUCCESS || n != 32) {
        fprintf(stderr, "%s: %s could not be read\n", c->tool->name, path);
        return 0;
    }
    return 1;
}

int dm_cmd_kyc_rekey(dm_cli *c)
{
    const char *old_path = dm_cli_opt(c, "key-file"), *new_path = dm_cli_opt(c, "new-key-file");
    unsigned char oldk[32], newk[32];
    dm_kyc_master from, to;
    dm_kyc_rekey_stats st;
    int64_t batch = 100;
    int rc;
    dm_err *e;

    if (!new_path || dm_cli_opt_int64(c, "batch", 1, &batch) < 0) {
        return dm_cli_usage(c);
    }
    if (!old_path && c->config) {
        dm_apache_directive d;
        int found = 0;
        e = dm_apache_conf_find(c->pool, c->config, "DeepMineSecretKeyFile", 1, &d, &found);
        if (e) {
            return dm_cli_fail(c, e);
        }
        old_path = found ? d.value : NULL;
    }
    if (!old_path) {
        fprintf(stderr, "%s: name the current secret with --key-file (or --config)\n",
                c->tool->name);
        return DM_CLI_USAGE;
    }
    if (!dm_cli_read_key(c, old_path, oldk) || !dm_cli_read_key(c, new_path, newk)) {
        return DM_CLI_FAIL;
    }
    dm_kyc_master_derive(oldk, &from);
    dm_kyc_master_derive(newk, &to);
    sodium_memzero(oldk, sizeof(oldk));
    sodium_memzero(newk, sizeof(newk));
    rc = dm_cli_open(c, 1);
    if (rc != DM_CLI_OK) {
        return rc;
    }
    e = dm_kyc_rekey(c->db, c->pool, &from, &to, (int)batch, &st);
    printf("kyc rekey: key id %s -> %s: %" APR_INT64_T_FMT " re-wrapped, %" APR_INT64_T_FMT
           " already under the new secret, %" APR_INT64_T_FMT " under neither\n",
           from.key_id, to.key_id, (apr_int64_t)st.rewrapped, (apr_int64_t)st.already,
           (apr_int64_t)st.other);
    sodium_memzero(&from, sizeof(from));
    sodium_memzero(&to, sizeof(to));
    if (e) {
        return dm_cli_fail(c, e);
    }
    if (st.other) {
        fprintf(stderr,
                "%s: %" APR_INT64_T_FMT " document key(s) are wrapped under neither secret\n",
                c->tool->name, (apr_int64_t)st.other);
        return DM_CLI_FAIL;
    }
    return DM_CLI_OK;
}
