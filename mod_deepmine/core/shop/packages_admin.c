/*
 * packages_admin.c — see packages_admin.h.
 */
#include "shop/packages_admin.h"

#include <apr_strings.h>
#include <string.h>

#include "store/audit.h"
#include "base/json.h"
#include "ledger/ledger.h"
#include "base/validate.h"

/* A bound that keeps GH/s far from int64 overflow: 1 EH/s. */
#define MAX_THS 1000000000.0

dm_err *dm_package_ths_to_ghs(apr_pool_t *p, const json_t *v, int64_t *ghs)
{
    double x, scaled;

    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i > 0 && i <= (json_int_t)MAX_THS) {
            *ghs = (int64_t)i * 1000;
            return NULL;
        }
    } else if (json_is_real(v)) {
        /* A JSON number is a double here: it is accepted only when it is
         * within a millionth of whole GH/s, so "0.001" is 1 GH/s exactly
         * and "0.0005" is refused, never rounded. */
        x = json_real_value(v);
        if (x > 0 && x <= MAX_THS) {
            int64_t whole;
            scaled = x * 1000.0;
            whole = (int64_t)(scaled + 0.5);
            if (whole >= 1 && scaled - (double)whole < 1e-6 && (double)whole - scaled < 1e-6) {
                *ghs = whole;
                return NULL;
            }
        }
    }
    return dm_err_make(p, DM_E_INVALID, "hashrate_ths",
                       "hashrate_ths must be a positive number of TH/s with at most 3 decimals");
}

/* yield_mode ("pool" | "fixed") and fee_bp (0..10000); a fixed-yield
 * package has no maintenance fee, so its fee_bp must be 0. */
static dm_err *apply_yield(apr_pool_t *p, json_t *f, dm_package *pkg)
{
    const char *mode = NULL;
    int present = 0;
    dm_err *e = dm_json_get_string(p, f, "yield_mode", 0, 16, &mode, &present);

    if (!e && present) {
        if (strcmp(mode, DM_YIELD_POOL) == 0) {
            pkg->yield_mode = DM_YIELD_POOL;
        } else if (strcmp(mode, DM_YIELD_FIXED) == 0) {
            pkg->yield_mode = DM_YIELD_FIXED;
        } else {
            e = dm_err_make(p, DM_E_INVALID, "yield_mode", "yield_mode is pool or fixed");
        }
    }
    if (!e) {
        e = dm_json_get_int64(p, f, "fee_bp", 0, 0, 10000, &pkg->fee_bp, NULL);
    }
    if (!e && strcmp(pkg->yield_mode, DM_YIELD_FIXED) == 0 && pkg->fee_bp != 0) {
        e = dm_err_make(p, DM_E_INVALID, "fee_bp",
                        "a fixed-yield package has no maintenance fee: fee_bp must be 0");
    }
    return e;
}

/* Applies the fields present in `f` to *pkg; `create` requires the
 * terms. */
static dm_err *apply(apr_pool_t *p, json_t *f, int create, dm_package *pkg)
{
    const char *name = NULL;
    json_t *ths = json_object_get(f, "hashrate_ths");
    int present = 0, active = pkg->active;
    dm_err *e = dm_json_get_string(p, f, "name", create, 4 * DM_PACKAGE_NAME_MAX, &name, &present);

    if (!e && present) {
        e = dm_validate_text(p, "name", name, DM_PACKAGE_NAME_MAX, 0);
        if (!e && !*name) {
            e = dm_err_make(p, DM_E_INVALID, "name", "name must not be empty");
        }
        pkg->name = name;
    }
    if (!e && ths && !json_is_null(ths)) {
        e = dm_package_ths_to_ghs(p, ths, &pkg->hashrate_ghs);
    } else if (!e && create) {
        e = dm_err_make(p, DM_E_INVALID, "hashrate_ths", "hashrate_ths is required");
    }
    if (!e) {
        e = dm_json_get_int64(p, f, "price_micros", create, 1, INT64_MAX, &pkg->price_micros, NULL);
    }
    if (!e) {
        e = dm_json_get_int64(p, f, "daily_yield_micros", create, 0, INT64_MAX,
                              &pkg->daily_yield_micros, NULL);
    }
    if (!e) {
        e = dm_json_get_int64(p, f, "duration_days", create, 1, DM_PACKAGE_DAYS_MAX,
                              &pkg->duration_days, NULL);
    }
    if (!e) {
        e = dm_json_get_bool(p, f, "active", 0, &active, NULL);
        pkg->active = active;
    }
    if (!e) {
        e = dm_json_get_int64(p, f, "sort_order", 0, -1000000, 1000000, &pkg->sort_order, NULL);
    }
    if (!e) {
        e = apply_yield(p, f, pkg);
    }
    return e;
}

static const char *id_str(apr_pool_t *p, int64_t id)
{
    return apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)id);
}

static dm_err *finish(dm_db *db, apr_pool_t *p, dm_err *e)
{
    if (e) {
        if (dm_db_in_transaction(db)) {
            dm_db_rollback(db);
        }
        return e;
    }
    return dm_db_commit(db, p);
}

dm_err *dm_packages_admin_create(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                                 json_t *fields, dm_package *out)
{
    dm_package pkg;
    json_t *a;
    dm_err *e;

    memset(&pkg, 0, sizeof(pkg));
    pkg.active = 1;
    pkg.currency = DM_LEDGER_CURRENCY;
    pkg.yield_mode = DM_YIELD_POOL; /* new packages follow the pool unless told */
    e = apply(p, fields, 1, &pkg);
    if (!e) {
        e = dm_db_begin(db, p);
    }
    if (e) {
        return e;
    }
    e = dm_catalogue_insert(db, p, &pkg);
    if (!e) {
        e = dm_catalogue_get(db, p, pkg.id, out);
    }
    if (!e) {
        a = dm_json_own(p, dm_package_admin_json(out));
        e = dm_audit_write(db, p, staff_id, "package.create", "package", id_str(p, out->id), NULL,
                           a, ip);
    }
    return finish(db, p, e);
}

dm_err *dm_packages_admin_patch(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                                int64_t id, json_t *fields, dm_package *out)
{
    dm_package before, pkg;
    json_t *b, *a;
    dm_err *e = dm_db_begin(db, p);

    if (e) {
        return e;
    }
    e = dm_catalogue_get(db, p, id, &before);
    if (!e) {
        pkg = before;
        e = apply(p, fields, 0, &pkg);
    }
    if (!e) {
        e = dm_catalogue_update(db, p, &pkg);
    }
    if (!e) {
        e = dm_catalogue_get(db, p, id, out);
    }
    if (!e) {
        b = dm_json_own(p, dm_package_admin_json(&before));
        a = dm_json_own(p, dm_package_admin_json(out));
        e = dm_audit_write(db, p, staff_id, "package.update", "package", id_str(p, id), b, a, ip);
    }
    return finish(db, p, e);
}

json_t *dm_package_admin_json(const dm_package *pkg)
{
    json_t *o = dm_package_json(pkg);

    json_object_set_new(o, "hashrate_ghs", json_integer(pkg->hashrate_ghs));
    json_object_set_new(o, "active", json_boolean(pkg->active));
    json_object_set_new(o, "sort_order", json_integer(pkg->sort_order));
    return o;
}
