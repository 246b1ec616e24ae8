/*
 * routes/catalogue_admin.c — the owner's side of what is for sale: the
 * hash-power capacity (GET/PUT /api/admin/capacity, with its history) and
 * the packages (GET/POST/PATCH /api/admin/packages). No DELETE: a package
 * is taken off sale with active:false (core/packages_admin.h says why).
 * Roles are in routes_admin.c's table.
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "shop/capacity.h"
#include "base/json.h"
#include "shop/packages_admin.h"

#define HISTORY_ROWS 50

/* {"capacity":{…}|null,"sold_ths","available_ths","history":[…]} */
static int capacity_answer(request_rec *r, dm_db *db)
{
    dm_capacity_row cur;
    int found = 0;
    int64_t sold = 0, available = 0;
    apr_array_header_t *rows = NULL;
    json_t *hist;
    dm_err *e = dm_capacity_current(db, r->pool, &cur, &found);

    if (!e) {
        e = dm_capacity_sold(db, r->pool, &sold);
    }
    if (!e) {
        e = dm_capacity_available(db, r->pool, &available);
    }
    if (!e) {
        e = dm_capacity_history(db, r->pool, HISTORY_ROWS, &rows);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    hist = json_array();
    for (int i = 0; i < rows->nelts; i++) {
        json_array_append_new(
            hist, dm_capacity_row_json(r->pool, &APR_ARRAY_IDX(rows, i, dm_capacity_row)));
    }
    return dm_http_send_json(r, HTTP_OK,
                             json_pack("{s:o,s:o,s:o,s:o}", "capacity",
                                       found ? dm_capacity_row_json(r->pool, &cur) : json_null(),
                                       "sold_ths", dm_json_ths(sold), "available_ths",
                                       dm_json_ths(available), "history", hist));
}

static int capacity_get(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    return e ? dm_http_error(r, e) : capacity_answer(r, db);
}

static int capacity_put(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    json_t *b, *ths;
    const char *note = NULL;
    int64_t ghs = 0;
    dm_capacity_row row;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        ths = json_object_get(b, "hashrate_ths");
        /* 0 is a capacity (stop selling); the package parser wants > 0 */
        if (json_is_integer(ths) && json_integer_value(ths) == 0) {
            ghs = 0;
        } else if (!ths) {
            e = dm_err_make(r->pool, DM_E_INVALID, "hashrate_ths", "hashrate_ths is required");
        } else {
            e = dm_package_ths_to_ghs(r->pool, ths, &ghs);
        }
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "note", 0, 4 * DM_CAPACITY_NOTE_MAX, &note, NULL);
    }
    if (!e) {
        e = dm_capacity_set(db, r->pool, st.id, r->useragent_ip, ghs, note, &row);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    dm_catalogue_cache_invalidate(dm_g.catalogue);
    return capacity_answer(r, db);
}

static int packages_list(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    apr_array_header_t *pkgs = NULL;
    json_t *arr;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_catalogue_list(db, r->pool, 0, &pkgs);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    arr = json_array();
    for (int i = 0; i < pkgs->nelts; i++) {
        json_array_append_new(arr, dm_package_admin_json(&APR_ARRAY_IDX(pkgs, i, dm_package)));
    }
    return dm_http_send_json(r, HTTP_OK, json_pack("{s:o}", "packages", arr));
}

static int packages_create(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    json_t *b;
    dm_package pkg;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_packages_admin_create(db, r->pool, st.id, r->useragent_ip, b, &pkg);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    dm_catalogue_cache_invalidate(dm_g.catalogue);
    return dm_http_send_json(r, HTTP_CREATED,
                             json_pack("{s:o}", "package", dm_package_admin_json(&pkg)));
}

static int packages_patch(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    json_t *b;
    dm_package pkg;
    int64_t id = 0;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (!e) {
        e = dm_http_id_param(r, m, "package", &id);
    }
    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_packages_admin_patch(db, r->pool, st.id, r->useragent_ip, id, b, &pkg);
    }
    if (e) {
        return dm_http_error(r, e);
    }
    dm_catalogue_cache_invalidate(dm_g.catalogue);
    return dm_http_send_json(r, HTTP_OK,
                             json_pack("{s:o}", "package", dm_package_admin_json(&pkg)));
}

const dm_route_def dm_routes_catalogue_admin[] = {
    {"GET", "/api/admin/capacity", capacity_get},
    {"PUT", "/api/admin/capacity", capacity_put},
    {"GET", "/api/admin/packages", packages_list},
    {"POST", "/api/admin/packages", packages_create},
    {"PATCH", "/api/admin/packages/{id}", packages_patch},
    {NULL, NULL, NULL},
};
