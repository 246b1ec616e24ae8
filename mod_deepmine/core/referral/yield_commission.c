/*
 * yield_commission.c — see yield_commission.h.
 */
#include "referral/yield_commission.h"

#include <apr_strings.h>
#include <string.h>

#include "store/audit.h"
#include "base/json.h"
#include "referral/vip.h"

dm_err *dm_yc_plan_load(dm_db *db, apr_pool_t *p, dm_yc_plan *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e =
        dm_db_prepare(db, p, "SELECT level, depth, rate_bp FROM yield_commission_rates", &st);

    memset(out, 0, sizeof(*out));
    if (e) {
        return e;
    }
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        int64_t level = dm_stmt_int64(st, 0), depth = dm_stmt_int64(st, 1);
        int rate = (int)dm_stmt_int64(st, 2);
        if (level < 1 || level > DM_YC_LEVELS || depth < 1 || depth > DM_YC_DEPTHS) {
            continue; /* the table's CHECKs make this impossible */
        }
        out->present[level - 1] = 1;
        out->rates_bp[level - 1][depth - 1] = rate;
        if (rate > 0) {
            out->enabled = 1;
        }
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *parse_level(apr_pool_t *p, json_t *o, size_t i, int cap_bp, dm_yc_plan *out)
{
    const char *at = apr_psprintf(p, "levels[%" APR_SIZE_T_FMT "]", i);
    json_t *rates = json_object_get(o, "rates_bp"), *lv = json_object_get(o, "level");
    int64_t level, total = 0;

    if (!json_is_object(o)) {
        return dm_err_make(p, DM_E_INVALID, at, "%s must be an object {level, rates_bp}", at);
    }
    if (!json_is_integer(lv) || json_integer_value(lv) < 1 ||
        json_integer_value(lv) > DM_YC_LEVELS) {
        return dm_err_make(p, DM_E_INVALID, apr_pstrcat(p, at, ".level", NULL),
                           "%s.level must be a VIP level from 1 to %d", at, DM_YC_LEVELS);
    }
    level = json_integer_value(lv);
    if (out->present[level - 1]) {
        return dm_err_make(p, DM_E_INVALID, apr_pstrcat(p, at, ".level", NULL),
                           "level %d is given twice", (int)level);
    }
    if (!json_is_array(rates) || json_array_size(rates) != DM_YC_DEPTHS) {
        return dm_err_make(p, DM_E_INVALID, apr_pstrcat(p, at, ".rates_bp", NULL),
                           "%s.rates_bp must be an array of %d rates (depths 1 to %d)", at,
                           DM_YC_DEPTHS, DM_YC_DEPTHS);
    }
    out->present[level - 1] = 1;
    for (size_t d = 0; d < DM_YC_DEPTHS; d++) {
        json_t *r = json_array_get(rates, d);
        if (!json_is_integer(r) || json_integer_value(r) < 0 || json_integer_value(r) > 10000) {
            return dm_err_make(p, DM_E_INVALID,
                               apr_psprintf(p, "%s.rates_bp[%" APR_SIZE_T_FMT "]", at, d),
                               "a rate is a whole number of basis points from 0 to 10000");
        }
        out->rates_bp[level - 1][d] = (int)json_integer_value(r);
        total += json_integer_value(r);
        if (json_integer_value(r) > 0) {
            out->enabled = 1;
        }
    }
    if (total > cap_bp) {
        return dm_err_make(p, DM_E_INVALID, apr_pstrcat(p, at, ".rates_bp", NULL),
                           "level %d pays %d bp over its %d depths, more than the cap of %d bp",
                           (int)level, (int)total, DM_YC_DEPTHS, cap_bp);
    }
    return NULL;
}

dm_err *dm_yc_plan_parse(apr_pool_t *p, json_t *body, int cap_bp, dm_yc_plan *out)
{
    json_t *levels = json_object_get(body, "levels");
    dm_err *e = NULL;

    memset(out, 0, sizeof(*out));
    if (!json_is_array(levels) || json_array_size(levels) > DM_YC_LEVELS) {
        return dm_err_make(p, DM_E_INVALID, "levels",
                           "levels must be an array of at most %d {level, rates_bp} (empty: no "
                           "commissions on yield)",
                           DM_YC_LEVELS);
    }
    for (size_t i = 0; !e && i < json_array_size(levels); i++) {
        e = parse_level(p, json_array_get(levels, i), i, cap_bp, out);
    }
    /* A credit pays each ancestor at its own level: what one credit can
     * pay is the highest rate of each depth, summed (vip.h). */
    return e ? e : dm_vip_rates_check_order_cap(p, out->rates_bp, cap_bp, "yield credit");
}

static dm_err *store(dm_db *db, apr_pool_t *p, const dm_yc_plan *plan)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_exec(db, p, "DELETE FROM yield_commission_rates");

    for (int l = 0; !e && l < DM_YC_LEVELS; l++) {
        for (int d = 0; !e && plan->present[l] && d < DM_YC_DEPTHS; d++) {
            e = dm_db_prepare(db, p,
                              "INSERT INTO yield_commission_rates (level, depth, rate_bp) "
                              "VALUES (?, ?, ?)",
                              &st);
            if (!e) {
                dm_stmt_bind_int64(st, 1, l + 1);
                dm_stmt_bind_int64(st, 2, d + 1);
                dm_stmt_bind_int64(st, 3, plan->rates_bp[l][d]);
                e = dm_stmt_step(st, p, &row);
                dm_stmt_done(st);
            }
        }
    }
    return e;
}

dm_err *dm_yc_plan_replace(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                           const dm_yc_plan *plan, int cap_bp)
{
    dm_yc_plan before;
    dm_err *e = dm_db_begin(db, p);

    if (e) {
        return e;
    }
    e = dm_yc_plan_load(db, p, &before);
    if (!e) {
        e = store(db, p, plan);
    }
    if (!e) {
        e = dm_audit_write(db, p, staff_id, "yield_commission_rates.update",
                           "yield_commission_rates", NULL,
                           dm_json_own(p, dm_yc_plan_json(&before, cap_bp)),
                           dm_json_own(p, dm_yc_plan_json(plan, cap_bp)), ip);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

json_t *dm_yc_plan_json(const dm_yc_plan *plan, int cap_bp)
{
    json_t *levels = json_array();

    for (int l = 0; l < DM_YC_LEVELS; l++) {
        json_t *rates;
        int total = 0;
        if (!plan->present[l]) {
            continue;
        }
        rates = json_array();
        for (int d = 0; d < DM_YC_DEPTHS; d++) {
            json_array_append_new(rates, json_integer(plan->rates_bp[l][d]));
            total += plan->rates_bp[l][d];
        }
        json_array_append_new(levels, json_pack("{s:i,s:o,s:i}", "level", l + 1, "rates_bp", rates,
                                                "total_bp", total));
    }
    return json_pack("{s:b,s:o,s:i}", "enabled", plan->enabled, "levels", levels, "cap_bp", cap_bp);
}
