/*
 * members.c — deepminectl import-users <file.csv>: members from the old
 * platform, all or nothing (staff/member_admin.h does the work).
 */
#include <apr_file_io.h>
#include <apr_strings.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "staff/member_admin.h"

#define IMPORT_MAX_BYTES ((apr_size_t)1 << 30)

int dm_cmd_import_users(dm_cli *c)
{
    const char *path = c->argv[0];
    apr_file_t *f;
    apr_finfo_t fi;
    apr_size_t got = 0;
    char *buf = NULL;
    dm_import_report rep;
    apr_status_t rv;
    int rc;
    dm_err *e;

    memset(&rep, 0, sizeof(rep));
    rv = apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, c->pool);
    if (rv == APR_SUCCESS) {
        rv = apr_file_info_get(&fi, APR_FINFO_SIZE, f);
    }
    if (rv == APR_SUCCESS && (fi.size < 0 || (apr_size_t)fi.size > IMPORT_MAX_BYTES)) {
        rv = APR_EINVAL;
    }
    if (rv == APR_SUCCESS) {
        buf = apr_palloc(c->pool, (apr_size_t)fi.size + 1);
        rv = fi.size ? apr_file_read_full(f, buf, (apr_size_t)fi.size, &got) : APR_SUCCESS;
        buf[got] = '\0';
    }
    if (rv != APR_SUCCESS) {
        char msg[256];
        fprintf(stderr, "%s: cannot read %s: %s\n", c->tool->name, path,
                apr_strerror(rv, msg, sizeof(msg)));
        return DM_CLI_FAIL;
    }
    rc = dm_cli_open(c, 1);
    if (rc != DM_CLI_OK) {
        return rc;
    }
    e = dm_admin_import_users(c->db, c->pool, buf, got, path, &rep);
    if (e) {
        fprintf(stderr, "%s: import-users: %s\n", c->tool->name, e->message);
        fprintf(stderr, "import-users: nothing imported (%" APR_INT64_T_FMT " row(s) read)\n",
                (apr_int64_t)rep.rows);
        return DM_CLI_FAIL;
    }
    printf("import-users: %" APR_INT64_T_FMT " member(s) imported from %s\n",
           (apr_int64_t)rep.imported, path);
    return DM_CLI_OK;
}
