/*
 * routes/ledger.c — the ledger over HTTP: a member's statement
 * (GET /api/ledger) and every transfer for staff (GET /api/admin/transfers,
 * whose roles are in routes_admin.c's table). Read-only: transfers are
 * posted by the domain code that causes them, never by a route of their
 * own.
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "base/confparse.h"
#include "base/json.h"
#include "ledger/ledger.h"

#define MAX_KIND_FIELD 64
#define MAX_TIME_FIELD 64

static int statement(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_member mem = {0};
    apr_array_header_t *lines = NULL;
    int64_t cursor = 0, next = 0;
    int limit = 50;
    char *body;
    size_t len;
    dm_err *e = dm_db_pool_acquire(dm_g.db, r->pool, &db);

    if (!e) {
        e = dm_http_member(r, db, &mem);
    }
    if (!e) {
        e = dm_http_check_args(r, "limit cursor");
    }
    if (!e) {
        e = dm_http_paging(r, &limit, &cursor);
    }
    if (!e) {
        e = dm_ledger_statement(db, r->pool, mem.id, cursor, limit, &lines, &next);
    }
    /* The lines are copies in r->pool: the answer is written without the
     * connection (others wait for it), so a page of 50 lines (7.7 KiB) is
     * sent from the handler (respond.c, write_body) and the request's pool
     * does not wait for the MPM's write completion. */
    dm_db_pool_release_scope(dm_g.db, r->pool);
    if (e) {
        return dm_http_error(r, e);
    }
    body = (char *)dm_statement_page_json(NULL, lines, next, &len);
    if (!body) {
        return dm_http_error(
            r, dm_err_make(r->pool, DM_E_INTERNAL, NULL, "out of memory for the statement"));
    }
    return dm_http_json_owned(r, HTTP_OK, body, len);
}

/* ?kind=&account=&from=&to= into a filter. */
static dm_err *transfer_filter(request_rec *r, dm_transfer_filter *f)
{
    const char *account = NULL, *from = NULL, *to = NULL;
    long long id = 0;
    dm_err *e = dm_http_arg_max(r, "kind", MAX_KIND_FIELD, &f->kind);

    if (!e) {
        e = dm_http_arg_max(r, "account", MAX_KIND_FIELD, &account);
    }
    if (!e && account) {
        if (dm_parse_int(r->pool, account, 1, INT64_MAX, &id)) {
            return dm_err_make(r->pool, DM_E_INVALID, "account",
                               "account must be an account id (a positive number)");
        }
        f->account_id = (int64_t)id;
    }
    if (!e) {
        e = dm_http_arg_max(r, "from", MAX_TIME_FIELD, &from);
    }
    if (!e && from) {
        e = dm_json_parse_time(r->pool, "from", from, &f->from);
        f->has_from = 1;
    }
    if (!e) {
        e = dm_http_arg_max(r, "to", MAX_TIME_FIELD, &to);
    }
    if (!e && to) {
        e = dm_json_parse_time(r->pool, "to", to, &f->to);
        f->has_to = 1;
    }
    if (!e && f->has_from && f->has_to && f->to <= f->from) {
        e = dm_err_make(r->pool, DM_E_INVALID, "to", "to must be later than from");
    }
    return e;
}

static json_t *transfer_row(apr_pool_t *p, const void *row, int staff_view)
{
    return dm_transfer_row_json(p, row);
}

static int admin_transfers(request_rec *r, const dm_route_match *m)
{
    dm_http_page pg;
    dm_transfer_filter f;
    dm_err *e = dm_http_page_begin(r, m, DM_HTTP_STAFF, "kind account from to", &pg);

    memset(&f, 0, sizeof(f));
    if (!e) {
        e = transfer_filter(r, &f);
    }
    if (!e) {
        e = dm_ledger_transfers_list(pg.db, r->pool, &f, pg.cursor, pg.limit, &pg.rows, &pg.next);
    }
    return dm_http_page_send(r, e, &pg, "transfers", transfer_row);
}

const dm_route_def dm_routes_ledger[] = {
    {"GET", "/api/ledger", statement},
    {"GET", "/api/admin/transfers", admin_transfers},
    {NULL, NULL, NULL},
};
