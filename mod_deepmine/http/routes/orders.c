/*
 * routes/orders.c — buying packages over HTTP: a member's orders and
 * contracts (/api/orders, /api/contracts), and the staff's view of them
 * with the refund action (/api/admin/orders, /api/admin/contracts; roles
 * in routes_admin.c's table). Thin: core/orders.c does the work.
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "base/confparse.h"
#include "base/json.h"
#include "plugins/payment.h"
#include "shop/orders.h"

#define MAX_GATEWAY_FIELD 64
#define MAX_STATUS_FIELD 32
#define MAX_REASON_FIELD 2000 /* bytes; core/orders.c allows 500 characters */

static json_t *order_row(apr_pool_t *p, const void *row, int staff_view)
{
    return dm_order_json(p, row, staff_view);
}

static json_t *contract_row(apr_pool_t *p, const void *row, int staff_view)
{
    return dm_contract_json(p, row, staff_view);
}

/* ---- member ---- */

static int order_create(request_rec *r, const dm_route_match *rm)
{
    dm_db *db;
    dm_member m;
    dm_order o;
    json_t *b = NULL, *out;
    const char *gateway = NULL, *return_url = NULL;
    int64_t package_id = 0;
    int from_balance = 0, has_gateway = 0, has_balance = 0;
    dm_err *e = dm_http_member_db(r, &db, &m);

    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_int64(r->pool, b, "package_id", 1, 1, INT64_MAX, &package_id, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "gateway", 0, MAX_GATEWAY_FIELD, &gateway, &has_gateway);
    }
    if (!e) {
        e = dm_json_get_bool(r->pool, b, "pay_from_balance", 0, &from_balance, &has_balance);
    }
    if (!e && (has_gateway == (has_balance && from_balance))) {
        e = dm_err_make(r->pool, DM_E_INVALID, "gateway",
                        "send either gateway or pay_from_balance: true (exactly one)");
    }
    if (e) {
        return dm_http_error(r, e);
    }
    if (from_balance) {
        e = dm_order_pay_from_balance(db, r->pool, m.id, package_id, &o);
    } else {
        if (dm_g.svc.public_url) {
            return_url = apr_pstrcat(r->pool, dm_g.svc.public_url, "/", NULL);
        }
        e = dm_order_create_checkout(db, r->pool, dm_g.plugins, m.id, m.email, package_id, gateway,
                                     return_url, &o);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    out = json_pack("{s:o}", "order", dm_order_json(r->pool, &o, 0));
    if (o.checkout_url) {
        json_object_set_new(out, "checkout_url", json_string(o.checkout_url));
    }
    return dm_http_send_json(r, HTTP_CREATED, out);
}

static int orders_mine(request_rec *r, const dm_route_match *rm)
{
    dm_http_page pg;
    dm_err *e = dm_http_page_begin(r, rm, DM_HTTP_MEMBER, NULL, &pg);

    if (!e) {
        e = dm_orders_list(pg.db, r->pool, pg.member.id, NULL, pg.cursor, pg.limit, &pg.rows,
                           &pg.next);
    }
    return dm_http_page_send(r, e, &pg, "orders", order_row);
}

static int order_mine(request_rec *r, const dm_route_match *rm)
{
    dm_db *db;
    dm_member m;
    dm_order o;
    int64_t id = 0;
    dm_err *e = dm_http_member_db(r, &db, &m);

    if (!e && dm_http_id_param(r, rm, "order", &id)) {
        /* Not a number: no such order (a path, not a field). */
        e = dm_err_make(r->pool, DM_E_NOT_FOUND, NULL, "no such order");
    }
    if (!e) {
        e = dm_order_get(db, r->pool, id, m.id, &o);
    }
    return e ? dm_http_error(r, e)
             : dm_http_send_json(r, HTTP_OK,
                                 json_pack("{s:o}", "order", dm_order_json(r->pool, &o, 0)));
}

static int contracts_mine(request_rec *r, const dm_route_match *rm)
{
    dm_http_page pg;
    dm_err *e = dm_http_page_begin(r, rm, DM_HTTP_MEMBER, NULL, &pg);

    if (!e) {
        e = dm_contracts_list(pg.db, r->pool, pg.member.id, NULL, pg.cursor, pg.limit, &pg.rows,
                              &pg.next);
    }
    return dm_http_page_send(r, e, &pg, "contracts", contract_row);
}

/* ---- anyone ---- */

/* The method's currencies as a JSON array ("*": empty, any_currency). */
static json_t *currency_list(const char *s)
{
    json_t *a = json_array();

    while (s && *s && strcmp(s, "*") != 0) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        while (len && *s == ' ') {
            s++;
            len--;
        }
        while (len && s[len - 1] == ' ') {
            len--;
        }
        if (len) {
            json_array_append_new(a, json_stringn(s, len));
        }
        s = comma ? comma + 1 : NULL;
    }
    return a;
}

/* GET /api/payment-methods: the gateways a member can pay through, in
 * configuration order (public: the pages show them before a login). */
static int payment_methods(request_rec *r, const dm_route_match *rm)
{
    const apr_array_header_t *all = dm_plugins_all(dm_g.plugins);
    json_t *list = json_array(), *out;

    for (int i = 0; all && i < all->nelts; i++) {
        const dm_loaded_plugin *pl = APR_ARRAY_IDX(all, i, const dm_loaded_plugin *);
        dm_payment_method m;
        if (!dm_payment_can_checkout(pl) || !dm_payment_method_info(pl, r->pool, &m)) {
            continue;
        }
        json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:o,s:b,s:b}", "name", m.name,
                                              "display_name", m.display_name, "kind", m.kind,
                                              "currencies", currency_list(m.currencies),
                                              "any_currency", strcmp(m.currencies, "*") == 0,
                                              "sandbox", dm_payment_is_sandbox(pl)));
    }
    out = json_pack("{s:o}", "methods", list);
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    return dm_http_send_json(r, HTTP_OK, out);
}

/* ---- staff ---- */

/* ?user_id= as a member id (0 when absent or empty). */
static dm_err *user_id_arg(request_rec *r, int64_t *out)
{
    const char *v = dm_http_arg(r, "user_id");
    long long id = 0;

    *out = 0;
    if (v && *v && dm_parse_int(r->pool, v, 1, INT64_MAX, &id)) {
        return dm_err_make(r->pool, DM_E_INVALID, "user_id",
                           "user_id must be a member id (a positive number)");
    }
    *out = (int64_t)id;
    return NULL;
}

static int admin_orders(request_rec *r, const dm_route_match *rm)
{
    dm_http_page pg;
    const char *status = dm_http_arg(r, "status");
    int64_t user_id = 0;
    dm_err *e = dm_http_page_begin(r, rm, DM_HTTP_STAFF, "status user_id", &pg);

    if (!e && status && strlen(status) > MAX_STATUS_FIELD) {
        e = dm_err_make(r->pool, DM_E_INVALID, "status", "unknown status");
    }
    if (!e) {
        e = user_id_arg(r, &user_id);
    }
    if (!e) {
        e = dm_orders_list(pg.db, r->pool, user_id, (status && *status) ? status : NULL, pg.cursor,
                           pg.limit, &pg.rows, &pg.next);
    }
    return dm_http_page_send(r, e, &pg, "orders", order_row);
}

static int admin_contracts(request_rec *r, const dm_route_match *rm)
{
    dm_http_page pg;
    const char *status = NULL;
    int64_t user_id = 0;
    dm_err *e = dm_http_page_begin(r, rm, DM_HTTP_STAFF, "user_id status", &pg);

    if (!e) {
        e = user_id_arg(r, &user_id);
    }
    if (!e) {
        e = dm_http_arg_max(r, "status", MAX_STATUS_FIELD, &status);
    }
    if (!e) {
        e = dm_contracts_list(pg.db, r->pool, user_id, status, pg.cursor, pg.limit, &pg.rows,
                              &pg.next);
    }
    return dm_http_page_send(r, e, &pg, "contracts", contract_row);
}

/* Body {"amount_micros"?, "reason", "manual"?, "provider_refund_ref"?}:
 * without an amount, what is left to refund. manual: true records a refund
 * staff made at the provider themselves (posted at once, 200). 200 when the refund is posted on
 * return (a balance order, or a gateway that delivered its refund webhook at once), 202 when the
 * gateway accepted it and its webhook is still to come. */
static int admin_refund(request_rec *r, const dm_route_match *rm)
{
    dm_db *db;
    dm_staff st;
    dm_order o;
    json_t *b = NULL;
    const char *reason = NULL, *ref = NULL;
    int64_t id = 0, amount = 0;
    int refunded = 0, manual = 0;
    dm_err *e = dm_http_staff_db(r, rm, &db, &st);

    if (!e && dm_http_id_param(r, rm, "order", &id)) {
        /* Not a number: no such order (a path, not a field). */
        e = dm_err_make(r->pool, DM_E_NOT_FOUND, NULL, "no such order");
    }
    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_int64(r->pool, b, "amount_micros", 0, 1, INT64_MAX, &amount, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "reason", 1, MAX_REASON_FIELD, &reason, NULL);
    }
    if (!e) {
        e = dm_json_get_bool(r->pool, b, "manual", 0, &manual, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "provider_refund_ref", 0, MAX_REASON_FIELD, &ref, NULL);
    }
    if (!e && ref && !manual) {
        e = dm_err_make(r->pool, DM_E_INVALID, "provider_refund_ref",
                        "provider_refund_ref goes with manual: true");
    }
    if (!e && manual) {
        e = dm_order_refund_manual(db, r->pool, st.id, r->useragent_ip, id, amount, reason, ref,
                                   &o);
        refunded = 1;
    } else if (!e) {
        e = dm_order_refund(db, r->pool, dm_g.plugins, st.id, r->useragent_ip, id, amount, reason,
                            &o, &refunded);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    return dm_http_send_json(
        r, refunded ? HTTP_OK : HTTP_ACCEPTED,
        json_pack("{s:o,s:b}", "order", dm_order_json(r->pool, &o, 1), "refunded", refunded));
}

const dm_route_def dm_routes_orders[] = {
    {"GET", "/api/payment-methods", payment_methods},
    {"POST", "/api/orders", order_create},
    {"GET", "/api/orders", orders_mine},
    {"GET", "/api/orders/{id}", order_mine},
    {"GET", "/api/contracts", contracts_mine},
    {"GET", "/api/admin/orders", admin_orders},
    {"GET", "/api/admin/contracts", admin_contracts},
    {"POST", "/api/admin/orders/{id}/refund", admin_refund},
    {NULL, NULL, NULL},
};
