/*
 * staff.c — deepminectl staff create | list | ensure-owner: staff
 * accounts, made at the console (never over HTTP). A new account's
 * password is printed once. And deepminectl twofa reset.
 */
#include <apr_strings.h>
#include <apr_time.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "members/members.h"
#include "members/twofa.h"
#include "staff/staff.h"

static void print_credentials(const dm_staff *st, const char *password)
{
    printf("  email:    %s\n"
           "  role:     %s\n"
           "  password: %s\n"
           "  (a one-time password: it is shown only now and stored only as a hash)\n",
           st->email, st->role, password);
}

int dm_cmd_staff_create(dm_cli *c)
{
    const char *email = dm_cli_opt(c, "email"), *role = dm_cli_opt(c, "role"), *password = NULL;
    dm_services svc;
    dm_staff st;
    int rc;
    dm_err *e;

    if (!email || !role) {
        return dm_cli_usage(c);
    }
    rc = dm_cli_open(c, 1);
    if (rc != DM_CLI_OK) {
        return rc;
    }
    memset(&svc, 0, sizeof(svc));
    e = dm_staff_create(c->db, c->pool, &svc, 0, NULL, email, role, &st, &password);
    if (e) {
        return dm_cli_fail(c, e);
    }
    printf("staff account %" APR_INT64_T_FMT " created:\n", (apr_int64_t)st.id);
    print_credentials(&st, password);
    return DM_CLI_OK;
}

/* scripts/run.sh: the first owner of a fresh database; silent when one
 * exists. */
int dm_cmd_staff_ensure_owner(dm_cli *c)
{
    const char *email = dm_cli_opt(c, "email"), *password = NULL;
    dm_services svc;
    dm_staff st;
    int created = 0, rc;
    dm_err *e;

    if (!email) {
        return dm_cli_usage(c);
    }
    rc = dm_cli_open(c, 1);
    if (rc != DM_CLI_OK) {
        return rc;
    }
    memset(&svc, 0, sizeof(svc));
    e = dm_staff_ensure_owner(c->db, c->pool, &svc, email, &created, &st, &password);
    if (e) {
        return dm_cli_fail(c, e);
    }
    if (created) {
        printf("no staff owner existed; created one:\n");
        print_credentials(&st, password);
    }
    return DM_CLI_OK;
}

int dm_cmd_staff_list(dm_cli *c)
{
    apr_array_header_t *rows = NULL;
    int rc = dm_cli_open(c, 1);
    dm_err *e;

    if (rc != DM_CLI_OK) {
        return rc;
    }
    e = dm_staff_list(c->db, c->pool, &rows);
    if (e) {
        return dm_cli_fail(c, e);
    }
    printf("%-6s %-8s %-9s %-21s %s\n", "id", "role", "status", "created", "email");
    for (int i = 0; i < rows->nelts; i++) {
        const dm_staff *s = &APR_ARRAY_IDX(rows, i, dm_staff);
        char when[APR_RFC822_DATE_LEN + 1];
        apr_time_exp_t tm;
        apr_size_t n = 0;
        apr_time_exp_gmt(&tm, apr_time_from_sec(s->created_at));
        apr_strftime(when, &n, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf("%-6" APR_INT64_T_FMT " %-8s %-9s %-21s %s\n", (apr_int64_t)s->id, s->role,
               s->status, when, s->email);
    }
    return DM_CLI_OK;
}

/* deepminectl twofa reset --member ID | --staff ID */
int dm_cmd_twofa_reset(dm_cli *c)
{
    int64_t member = 0, staff_id = 0;
    int rc;
    dm_err *e;

    if (dm_cli_opt_int64(c, "member", 1, &member) < 0 ||
        dm_cli_opt_int64(c, "staff", 1, &staff_id) < 0 || (!member) == (!staff_id)) {
        return dm_cli_usage(c);
    }
    rc = dm_cli_open(c, 1);
    if (rc != DM_CLI_OK) {
        return rc;
    }
    e = dm_2fa_console_reset(c->db, c->pool, member ? DM_2FA_MEMBER : DM_2FA_STAFF,
                             member ? member : staff_id);
    if (e) {
        return dm_cli_fail(c, e);
    }
    printf("two-factor sign-in removed from %s %" APR_INT64_T_FMT "\n",
           member ? "member" : "staff account", (apr_int64_t)(member ? member : staff_id));
    return DM_CLI_OK;
}
