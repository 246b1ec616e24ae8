/*
 * packages_admin.h — the owner manages the catalogue (GET/POST/PATCH
 * /api/admin/packages): validated fields, every change audited with the
 * package before and after, in the transaction of the change. The
 * rendered public catalogue picks changes up by itself (the generation
 * trigger of 001_init.sql).
 *
 * There is no deletion: a package is taken off sale by `active: false`.
 * A package once sold stays referenced by its orders and contracts (which
 * keep a copy of the terms they were sold with), so it must never go;
 * one never sold could, but one rule is simpler (docs/decisions.md).
 */
#ifndef DM_PACKAGES_ADMIN_H
#define DM_PACKAGES_ADMIN_H

#include <apr_pools.h>
#include <jansson.h>
#include <stdint.h>

#include "shop/catalogue.h"
#include "store/db.h"
#include "base/err.h"

#define DM_PACKAGE_NAME_MAX 120
#define DM_PACKAGE_DAYS_MAX 3650

/* "hashrate_ths" of a JSON body (an integer or a number with at most 3
 * decimals, > 0) as whole GH/s; DM_E_INVALID naming the field otherwise. */
dm_err *dm_package_ths_to_ghs(apr_pool_t *p, const json_t *v, int64_t *ghs);

/* Creates a package from `fields` (name, hashrate_ths, price_micros,
 * daily_yield_micros, duration_days required; active default true,
 * sort_order default 0, yield_mode "pool" (default) or "fixed", fee_bp
 * 0..10000 default 0 and 0 for fixed yield), audited "package.create". */
dm_err *dm_packages_admin_create(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                                 json_t *fields, dm_package *out);

/* Changes any subset of those fields of package `id`, audited
 * "package.update" with before/after. DM_E_NOT_FOUND for an unknown id. */
dm_err *dm_packages_admin_patch(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                                int64_t id, json_t *fields, dm_package *out);

/* The public fields (yield_mode and fee_bp among them) plus "hashrate_ghs",
 * "active", "sort_order". */
json_t *dm_package_admin_json(const dm_package *pkg);

#endif
