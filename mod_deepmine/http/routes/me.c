/*
 * routes/me.c — the calling member: /api/me, terms acceptance, and the
 * referral network (/api/referrals*).
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "base/confparse.h"
#include "base/json.h"
#include "referral/referral.h"

/* {"user":{...}}, written straight into the request pool. */
static int send_user(request_rec *r, const dm_member *m)
{
    dm_jbuf b;

    dm_jbuf_init(&b, r->pool, 512);
    dm_jbuf_lit(&b, "{\"user\":");
    dm_member_write(&b, &dm_g.svc, m);
    dm_jbuf_lit(&b, "}");
    return dm_http_json(r, HTTP_OK, b.p, b.len);
}

static dm_err *read_whole(dm_db *db, apr_pool_t *p, const dm_claims *c, dm_member *m, void *baton)
{
    (void)baton;
    return dm_member_authenticate_claims(db, p, c, m);
}

/* The answer is written without the connection: others wait for it. */
static int me(request_rec *r, const dm_route_match *rm)
{
    dm_member m;
    dm_err *e = dm_http_member_read(r, read_whole, NULL, &m);

    return e ? dm_http_error(r, e) : send_user(r, &m);
}

static int me_accept_terms(request_rec *r, const dm_route_match *rm)
{
    dm_db *db;
    dm_member m;
    json_t *b;
    const char *version = NULL;
    dm_err *e = dm_http_member_db(r, &db, &m);

    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "terms_version", 1, 64, &version, NULL);
    }
    if (!e) {
        e = dm_member_accept_terms(db, r->pool, &dm_g.svc, m.id, version, r->useragent_ip);
    }
    if (!e) {
        e = dm_member_get(db, r->pool, m.id, &m);
    }
    return e ? dm_http_error(r, e) : send_user(r, &m);
}

static dm_err *read_network(dm_db *db, apr_pool_t *p, const dm_claims *c, dm_member *m, void *net)
{
    return dm_member_authenticate_network(db, p, c, m, net);
}

/* One statement: the member's authentication and its counters. */
static int referral_network(request_rec *r, const dm_route_match *rm)
{
    dm_member m;
    dm_network n;
    dm_jbuf b;
    dm_err *e = dm_http_member_read(r, read_network, &n, &m);

    if (e) {
        return dm_http_error(r, e);
    }
    dm_jbuf_init(&b, r->pool, 256);
    dm_referral_network_write(&b, &n);
    return dm_http_json(r, HTTP_OK, b.p, b.len);
}

static int referral_list(request_rec *r, const dm_route_match *rm)
{
    dm_db *db;
    dm_member m;
    apr_array_header_t *rows = NULL;
    int64_t cursor = 0, next = 0;
    int limit = 50;
    long long level = 1;
    const char *lv = dm_http_arg(r, "level");
    json_t *arr, *o;
    size_t len;
    const char *body;
    dm_err *e = dm_http_member_db(r, &db, &m);

    if (!e) {
        e = dm_http_check_args(r, "level limit cursor");
    }
    if (!e && lv && dm_parse_int(r->pool, lv, 1, DM_REFERRAL_LEVELS, &level)) {
        e = dm_err_make(r->pool, DM_E_INVALID, "level",
                        "level must be a whole number from 1 to 10");
    }
    if (!e) {
        e = dm_http_paging(r, &limit, &cursor);
    }
    if (!e) {
        e = dm_referral_list_level(db, r->pool, m.id, (int)level, cursor, limit, &rows, &next);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    arr = json_array();
    for (int i = 0; i < rows->nelts; i++) {
        const dm_referral_row *row = &APR_ARRAY_IDX(rows, i, dm_referral_row);
        json_array_append_new(arr, json_pack("{s:I,s:s,s:s,s:i}", "id", (json_int_t)row->id,
                                             "email", row->masked_email, "joined_at",
                                             dm_json_time(r->pool, row->joined_at), "vip_level",
                                             row->vip_level));
    }
    o = dm_json_own(r->pool, json_pack("{s:o,s:i}", "referrals", arr, "level", (int)level));
    json_object_set_new(o, "next_cursor", dm_http_cursor_json(r->pool, next));
    body = dm_json_dump(r->pool, o, &len);
    return dm_http_json(r, HTTP_OK, body, len);
}

const dm_route_def dm_routes_me[] = {
    {"GET", "/api/me", me},
    {"POST", "/api/me/accept-terms", me_accept_terms},
    {"GET", "/api/referrals/network", referral_network},
    {"GET", "/api/referrals", referral_list},
    {NULL, NULL, NULL},
};
