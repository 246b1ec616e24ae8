/*
 * vip.c — see vip.h. The plan is 10 vip_levels rows and 100
 * commission_rates rows; volumes are one member_volumes row per member,
 * moved by dm_vip_count_order in the transaction that pays or claws back
 * an order, so qualification is a read of counters, never a walk of the
 * tree or a sum over orders.
 */
#include "referral/vip.h"

#include <apr_strings.h>
#include <apr_time.h>
#include <string.h>

#include "base/clock.h"
#include "store/audit.h"
#include "base/json.h"

/* The address recorded with a level the platform lowered by itself (a
 * refund, whoever caused it): not a staff member's, not the console's. */
#define AUDIT_SYSTEM_IP "system"

/* The plan's thresholds (the 10 vip_levels rows), rates left at zero:
 * all that qualification reads. */
static dm_err *plan_levels_load(dm_db *db, apr_pool_t *p, dm_vip_plan *out)
{
    dm_stmt *st;
    int row = 0, seen = 0;
    dm_err *e;

    memset(out, 0, sizeof(*out));
    e = dm_db_prepare(db, p,
                      "SELECT level, min_personal_volume_micros, min_direct_paid_referrals, "
                      "min_team_volume_micros FROM vip_levels ORDER BY level",
                      &st);
    if (e) {
        return e;
    }
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        int64_t level = dm_stmt_int64(st, 0);
        if (level >= 1 && level <= DM_VIP_LEVELS) {
            dm_vip_level *l = &out->levels[level - 1];
            l->level = (int)level;
            l->min_personal_volume_micros = dm_stmt_int64(st, 1);
            l->min_direct_paid_referrals = dm_stmt_int64(st, 2);
            l->min_team_volume_micros = dm_stmt_int64(st, 3);
            seen++;
        }
    }
    dm_stmt_done(st);
    if (!e && seen != DM_VIP_LEVELS) {
        e = dm_err_make(p, DM_E_INTERNAL, NULL, "the VIP plan has %d levels, not %d", seen,
                        DM_VIP_LEVELS);
    }
    return e;
}

dm_err *dm_vip_plan_load(dm_db *db, apr_pool_t *p, dm_vip_plan *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = plan_levels_load(db, p, out);

    if (e) {
        return e;
    }
    e = dm_db_prepare(db, p, "SELECT level, depth, rate_bp FROM commission_rates", &st);
    if (e) {
        return e;
    }
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        int64_t level = dm_stmt_int64(st, 0), depth = dm_stmt_int64(st, 1);
        if (level >= 1 && level <= DM_VIP_LEVELS && depth >= 1 && depth <= DM_VIP_DEPTHS) {
            out->levels[level - 1].rates_bp[depth - 1] = (int)dm_stmt_int64(st, 2);
        }
    }
    dm_stmt_done(st);
    return e;
}

static int level_total(const dm_vip_level *l)
{
    int total = 0;

    for (int d = 0; d < DM_VIP_DEPTHS; d++) {
        total += l->rates_bp[d];
    }
    return total;
}

int dm_vip_rates_order_max_bp(const int rates[DM_VIP_LEVELS][DM_VIP_DEPTHS])
{
    int total = 0;

    for (int d = 0; d < DM_VIP_DEPTHS; d++) {
        int top = 0;
        for (int l = 0; l < DM_VIP_LEVELS; l++) {
            top = rates[l][d] > top ? rates[l][d] : top;
        }
        total += top;
    }
    return total;
}

static void plan_rates(const dm_vip_plan *plan, int rates[DM_VIP_LEVELS][DM_VIP_DEPTHS])
{
    for (int l = 0; l < DM_VIP_LEVELS; l++) {
        memcpy(rates[l], plan->levels[l].rates_bp, sizeof(rates[l]));
    }
}

int dm_vip_plan_order_max_bp(const dm_vip_plan *plan)
{
    int rates[DM_VIP_LEVELS][DM_VIP_DEPTHS];

    plan_rates(plan, rates);
    return dm_vip_rates_order_max_bp(rates);
}

/* "level 3" or "levels 5-7, 9": the levels whose bit is set in `mask`. */
static const char *levels_text(apr_pool_t *p, unsigned mask)
{
    const char *out = "";
    int n = 0;

    for (int l = 0; l < DM_VIP_LEVELS; l++) {
        int last = l;
        if (!(mask & (1u << l))) {
            continue;
        }
        while (last + 1 < DM_VIP_LEVELS && (mask & (1u << (last + 1)))) {
            last++;
        }
        out = last > l ? apr_psprintf(p, "%s%s%d-%d", out, n ? ", " : "", l + 1, last + 1)
                       : apr_psprintf(p, "%s%s%d", out, n ? ", " : "", l + 1);
        n += last - l + 1;
        l = last;
    }
    return apr_pstrcat(p, n > 1 ? "levels " : "level ", out, NULL);
}

dm_err *dm_vip_rates_check_order_cap(apr_pool_t *p, const int rates[DM_VIP_LEVELS][DM_VIP_DEPTHS],
                                     int cap_bp, const char *what)
{
    const char *parts = "";
    int total = dm_vip_rates_order_max_bp(rates);

    if (total <= cap_bp) {
        return NULL;
    }
    for (int d = 0; d < DM_VIP_DEPTHS; d++) {
        int top = 0;
        unsigned mask = 0;
        for (int l = 0; l < DM_VIP_LEVELS; l++) {
            int r = rates[l][d];
            if (r > top) {
                top = r;
                mask = 0;
            }
            if (r == top) {
                mask |= 1u << l;
            }
        }
        if (top > 0) {
            parts = apr_psprintf(p, "%s%sdepth %d at %s (%d bp)", parts, *parts ? ", " : "", d + 1,
                                 levels_text(p, mask), top);
        }
    }
    return dm_err_make(p, DM_E_INVALID, "levels",
                       "one %s could pay %d bp, more than the cap of %d bp "
                       "(DeepMineCommissionCap): each ancestor is paid at its own level, so an "
                       "upline with %s takes the highest rate of every depth",
                       what, total, cap_bp, parts);
}

/* An order pays each ancestor at that ancestor's own level, so the most
 * one order can pay is, at every depth, the highest rate any level pays
 * there. */
static dm_err *check_order_cap(apr_pool_t *p, const dm_vip_plan *plan, int cap_bp)
{
    int rates[DM_VIP_LEVELS][DM_VIP_DEPTHS];

    plan_rates(plan, rates);
    return dm_vip_rates_check_order_cap(p, rates, cap_bp, "order");
}

dm_err *dm_vip_plan_validate(apr_pool_t *p, const dm_vip_plan *plan, int cap_bp)
{
    for (int i = 0; i < DM_VIP_LEVELS; i++) {
        const dm_vip_level *l = &plan->levels[i], *prev = i ? &plan->levels[i - 1] : NULL;
        int total;

        if (l->level != i + 1) {
            return dm_err_make(p, DM_E_INVALID, apr_psprintf(p, "levels[%d].level", i),
                               "the plan lists levels 1 to %d in order; entry %d is level %d",
                               DM_VIP_LEVELS, i + 1, l->level);
        }
        if (l->min_personal_volume_micros < 0 || l->min_direct_paid_referrals < 0 ||
            l->min_team_volume_micros < 0) {
            return dm_err_make(p, DM_E_INVALID, apr_psprintf(p, "levels[%d]", i),
                               "level %d: thresholds cannot be negative", i + 1);
        }
        if (prev && (l->min_personal_volume_micros < prev->min_personal_volume_micros ||
                     l->min_direct_paid_referrals < prev->min_direct_paid_referrals ||
                     l->min_team_volume_micros < prev->min_team_volume_micros)) {
            return dm_err_make(p, DM_E_INVALID, apr_psprintf(p, "levels[%d]", i),
                               "level %d: each threshold must be at least that of level %d", i + 1,
                               i);
        }
        for (int d = 0; d < DM_VIP_DEPTHS; d++) {
            if (l->rates_bp[d] < 0 || l->rates_bp[d] > DM_VIP_RATE_MAX_BP) {
                return dm_err_make(p, DM_E_INVALID, apr_psprintf(p, "levels[%d].rates_bp", i),
                                   "level %d, depth %d: a rate is 0 to %d basis points", i + 1,
                                   d + 1, DM_VIP_RATE_MAX_BP);
            }
        }
        total = level_total(l);
        if (total > cap_bp) {
            return dm_err_make(p, DM_E_INVALID, apr_psprintf(p, "levels[%d].rates_bp", i),
                               "level %d pays %d bp over its 10 depths, more than the cap of %d "
                               "bp (DeepMineCommissionCap)",
                               i + 1, total, cap_bp);
        }
    }
    return check_order_cap(p, plan, cap_bp);
}

json_t *dm_vip_plan_json(apr_pool_t *p, const dm_vip_plan *plan, int cap_bp)
{
    json_t *levels = json_array();

    (void)p;
    for (int i = 0; i < DM_VIP_LEVELS; i++) {
        const dm_vip_level *l = &plan->levels[i];
        json_t *rates = json_array();
        for (int d = 0; d < DM_VIP_DEPTHS; d++) {
            json_array_append_new(rates, json_integer(l->rates_bp[d]));
        }
        json_array_append_new(
            levels,
            json_pack("{s:i,s:I,s:I,s:I,s:o,s:i}", "level", l->level, "min_personal_volume_micros",
                      (json_int_t)l->min_personal_volume_micros, "min_direct_paid_referrals",
                      (json_int_t)l->min_direct_paid_referrals, "min_team_volume_micros",
                      (json_int_t)l->min_team_volume_micros, "rates_bp", rates, "total_bp",
                      level_total(l)));
    }
    return json_pack("{s:o,s:i,s:i}", "levels", levels, "cap_bp", cap_bp, "max_order_bp",
                     dm_vip_plan_order_max_bp(plan));
}

dm_err *dm_vip_plan_parse(apr_pool_t *p, json_t *body, dm_vip_plan *out)
{
    json_t *levels = json_object_get(body, "levels");

    memset(out, 0, sizeof(*out));
    if (!json_is_array(levels) || json_array_size(levels) != DM_VIP_LEVELS) {
        return dm_err_make(p, DM_E_INVALID, "levels", "levels must be an array of %d levels",
                           DM_VIP_LEVELS);
    }
    for (int i = 0; i < DM_VIP_LEVELS; i++) {
        json_t *o = json_array_get(levels, (size_t)i), *rates;
        dm_vip_level *l = &out->levels[i];
        int64_t level = 0;
        dm_err *e;

        if (!json_is_object(o)) {
            return dm_err_make(p, DM_E_INVALID, apr_psprintf(p, "levels[%d]", i),
                               "levels[%d] must be an object", i);
        }
        e = dm_json_get_int64(p, o, "level", 1, 1, DM_VIP_LEVELS, &level, NULL);
        if (!e) {
            e = dm_json_get_int64(p, o, "min_personal_volume_micros", 1, 0, INT64_MAX,
                                  &l->min_personal_volume_micros, NULL);
        }
        if (!e) {
            e = dm_json_get_int64(p, o, "min_direct_paid_referrals", 1, 0, 1000000000,
                                  &l->min_direct_paid_referrals, NULL);
        }
        if (!e) {
            e = dm_json_get_int64(p, o, "min_team_volume_micros", 1, 0, INT64_MAX,
                                  &l->min_team_volume_micros, NULL);
        }
        if (e) {
            e->field = apr_psprintf(p, "levels[%d].%s", i, e->field ? e->field : "");
            return e;
        }
        l->level = (int)level;
        rates = json_object_get(o, "rates_bp");
        if (!json_is_array(rates) || json_array_size(rates) != DM_VIP_DEPTHS) {
            return dm_err_make(p, DM_E_INVALID, apr_psprintf(p, "levels[%d].rates_bp", i),
                               "level %d: rates_bp must be an array of %d rates (depth 1 to %d)",
                               (int)level, DM_VIP_DEPTHS, DM_VIP_DEPTHS);
        }
        for (int d = 0; d < DM_VIP_DEPTHS; d++) {
            json_t *v = json_array_get(rates, (size_t)d);
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > DM_VIP_RATE_MAX_BP) {
                return dm_err_make(p, DM_E_INVALID, apr_psprintf(p, "levels[%d].rates_bp", i),
                                   "level %d, depth %d: a rate is a whole number of basis "
                                   "points from 0 to %d",
                                   (int)level, d + 1, DM_VIP_RATE_MAX_BP);
            }
            l->rates_bp[d] = (int)json_integer_value(v);
        }
    }
    return NULL;
}

static dm_err *store_plan(dm_db *db, apr_pool_t *p, const dm_vip_plan *plan)
{
    int64_t now = dm_now();
    dm_err *e = NULL;

    for (int i = 0; !e && i < DM_VIP_LEVELS; i++) {
        const dm_vip_level *l = &plan->levels[i];
        dm_stmt *st;
        int row;

        e = dm_db_prepare(db, p,
                          "UPDATE vip_levels SET min_personal_volume_micros = ?, "
                          "min_direct_paid_referrals = ?, min_team_volume_micros = ?, "
                          "updated_at = ? WHERE level = ?",
                          &st);
        if (e) {
            break;
        }
        dm_stmt_bind_int64(st, 1, l->min_personal_volume_micros);
        dm_stmt_bind_int64(st, 2, l->min_direct_paid_referrals);
        dm_stmt_bind_int64(st, 3, l->min_team_volume_micros);
        dm_stmt_bind_int64(st, 4, now);
        dm_stmt_bind_int64(st, 5, l->level);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
        for (int d = 0; !e && d < DM_VIP_DEPTHS; d++) {
            e = dm_db_prepare(
                db, p,
                "INSERT INTO commission_rates (level, depth, rate_bp) VALUES (?, ?, ?) "
                "ON CONFLICT (level, depth) DO UPDATE SET rate_bp = excluded.rate_bp",
                &st);
            if (e) {
                break;
            }
            dm_stmt_bind_int64(st, 1, l->level);
            dm_stmt_bind_int64(st, 2, d + 1);
            dm_stmt_bind_int64(st, 3, l->rates_bp[d]);
            e = dm_stmt_step(st, p, &row);
            dm_stmt_done(st);
        }
    }
    return e;
}

dm_err *dm_vip_plan_replace(dm_db *db, apr_pool_t *p, int64_t staff_id, const char *ip,
                            const dm_vip_plan *plan, int cap_bp)
{
    dm_vip_plan before;
    dm_err *e = dm_vip_plan_validate(p, plan, cap_bp);

    if (e) {
        return e;
    }
    if ((e = dm_db_begin(db, p))) {
        return e;
    }
    e = dm_vip_plan_load(db, p, &before);
    if (!e) {
        e = store_plan(db, p, plan);
    }
    if (!e) {
        e = dm_audit_write(db, p, staff_id, "vip_levels.update", "vip_levels", NULL,
                           dm_json_own(p, dm_vip_plan_json(p, &before, cap_bp)),
                           dm_json_own(p, dm_vip_plan_json(p, plan, cap_bp)), ip);
    }
    if (e) {
        dm_db_rollback(db);
        return e;
    }
    return dm_db_commit(db, p);
}

int dm_vip_qualify(const dm_vip_plan *plan, const dm_volumes *v)
{
    int best = 1;

    for (int i = 0; i < DM_VIP_LEVELS; i++) {
        const dm_vip_level *l = &plan->levels[i];
        if (v->personal_volume_micros >= l->min_personal_volume_micros &&
            v->direct_paid_referrals >= l->min_direct_paid_referrals &&
            v->team_volume_micros >= l->min_team_volume_micros) {
            best = i + 1;
        }
    }
    return best;
}

/* A member's volumes (zeros when none yet). */
static dm_err *dm_vip_volumes(dm_db *db, apr_pool_t *p, int64_t user_id, dm_volumes *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT personal_volume_micros, paid_orders, direct_paid_referrals, "
                              "team_volume_micros FROM member_volumes WHERE user_id = ?",
                              &st);

    memset(out, 0, sizeof(*out));
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        out->personal_volume_micros = dm_stmt_int64(st, 0);
        out->paid_orders = dm_stmt_int64(st, 1);
        out->direct_paid_referrals = dm_stmt_int64(st, 2);
        out->team_volume_micros = dm_stmt_int64(st, 3);
    }
    dm_stmt_done(st);
    return e;
}

/* member_volumes' insert of one row and the upsert that adds to a row
 * already there (bump: one row; bump_order: one row per member). */
#define VOLUMES_INSERT                                                                             \
    "INSERT INTO member_volumes (user_id, personal_volume_micros, paid_orders, "                   \
    "direct_paid_referrals, team_volume_micros, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
#define VOLUMES_UPSERT                                                                             \
    " ON CONFLICT (user_id) DO UPDATE SET "                                                        \
    "personal_volume_micros = member_volumes.personal_volume_micros + "                            \
    "excluded.personal_volume_micros, "                                                            \
    "paid_orders = member_volumes.paid_orders + excluded.paid_orders, "                            \
    "direct_paid_referrals = member_volumes.direct_paid_referrals + "                              \
    "excluded.direct_paid_referrals, "                                                             \
    "team_volume_micros = member_volumes.team_volume_micros + excluded.team_volume_micros, "       \
    "updated_at = excluded.updated_at"

/* Adds the deltas to one member's counters (creating the row). */
static dm_err *bump(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t personal, int64_t orders,
                    int64_t direct, int64_t team)
{
    dm_stmt *st;
    int row;
    dm_err *e = dm_db_prepare(db, p, VOLUMES_INSERT VOLUMES_UPSERT, &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    dm_stmt_bind_int64(st, 2, personal);
    dm_stmt_bind_int64(st, 3, orders);
    dm_stmt_bind_int64(st, 4, direct);
    dm_stmt_bind_int64(st, 5, team);
    dm_stmt_bind_int64(st, 6, dm_now());
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

/* The counters of one paid order in one multi-row upsert: the buyer's
 * (personal volume, paid orders), then each ancestor's team volume, the
 * referrer's with its direct paid referral when `direct` is not 0. Same
 * rows and sums as one bump per change; the ids are distinct (a member is
 * never its own ancestor), as a multi-row upsert needs on PostgreSQL. At
 * most DM_VIP_DEPTHS + 1 statement texts are cached. */
static dm_err *bump_order(dm_db *db, apr_pool_t *p, int64_t buyer_id, const int64_t *upline, int n,
                          int64_t delta, int64_t orders, int64_t direct)
{
    static const char head[] = VOLUMES_INSERT;
    static const char more[] = ", (?, ?, ?, ?, ?, ?)";
    static const char tail[] = VOLUMES_UPSERT;
    const char *sql = head;
    int64_t now = dm_now();
    dm_stmt *st;
    int row = 0;
    dm_err *e;

    for (int i = 0; i < n; i++) {
        sql = apr_pstrcat(p, sql, more, NULL);
    }
    e = dm_db_prepare(db, p, apr_pstrcat(p, sql, tail, NULL), &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, buyer_id);
    dm_stmt_bind_int64(st, 2, delta);
    dm_stmt_bind_int64(st, 3, orders);
    dm_stmt_bind_int64(st, 4, 0);
    dm_stmt_bind_int64(st, 5, 0);
    dm_stmt_bind_int64(st, 6, now);
    for (int i = 0; i < n; i++) {
        int b = (i + 1) * 6;
        dm_stmt_bind_int64(st, b + 1, upline[i]);
        dm_stmt_bind_int64(st, b + 2, 0);
        dm_stmt_bind_int64(st, b + 3, 0);
        dm_stmt_bind_int64(st, b + 4, i == 0 ? direct : 0);
        dm_stmt_bind_int64(st, b + 5, delta);
        dm_stmt_bind_int64(st, b + 6, now);
    }
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

dm_err *dm_vip_count_order(dm_db *db, apr_pool_t *p, int64_t buyer_id, const int64_t *upline, int n,
                           int64_t amount_micros, int sign)
{
    dm_volumes before;
    int64_t delta = sign < 0 ? -amount_micros : amount_micros;
    int64_t first_or_last;
    dm_err *e;

    if (!dm_db_in_transaction(db)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "vip: volumes change only in a transaction");
    }
    if (n > DM_VIP_DEPTHS) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "vip: an upline has at most %d ancestors",
                           DM_VIP_DEPTHS);
    }
    e = dm_vip_volumes(db, p, buyer_id, &before);
    if (e) {
        return e;
    }
    /* The referrer gains a direct paid referral at the buyer's first paid
     * order, and loses it when the last one is refunded. */
    first_or_last = sign < 0 ? before.paid_orders == 1 : before.paid_orders == 0;
    return bump_order(db, p, buyer_id, upline, n, delta, sign < 0 ? -1 : 1,
                      first_or_last ? (sign < 0 ? -1 : 1) : 0);
}

dm_err *dm_vip_reevaluate(dm_db *db, apr_pool_t *p, int64_t buyer_id)
{
    dm_vip_plan plan;
    dm_stmt *st;
    int row = 0, n = 0;
    int64_t ids[DM_VIP_DEPTHS + 1];
    int levels[DM_VIP_DEPTHS + 1];
    dm_err *e;

    if (!dm_db_in_transaction(db)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "vip: re-evaluation runs in a transaction");
    }
    /* qualification reads the thresholds only: not the 100 rates */
    e = plan_levels_load(db, p, &plan);
    if (e) {
        return e;
    }
    /* The buyer and its stored upline with their counters: one read.
     * "u.id IN (? UNION ALL …)", not "u.id = ? OR u.id IN (…)": PostgreSQL
     * plans the OR as a scan of every member. */
    e = dm_db_prepare(db, p,
                      "SELECT u.id, u.vip_level, COALESCE(v.personal_volume_micros, 0), "
                      "COALESCE(v.direct_paid_referrals, 0), COALESCE(v.team_volume_micros, 0) "
                      "FROM users u LEFT JOIN member_volumes v ON v.user_id = u.id "
                      "WHERE u.id IN (SELECT ? UNION ALL "
                      "SELECT ancestor_id FROM user_ancestors WHERE user_id = ?)",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, buyer_id);
    dm_stmt_bind_int64(st, 2, buyer_id);
    while (!(e = dm_stmt_step(st, p, &row)) && row && n < DM_VIP_DEPTHS + 1) {
        dm_volumes v = {0};
        int current = (int)dm_stmt_int64(st, 1), want;
        v.personal_volume_micros = dm_stmt_int64(st, 2);
        v.direct_paid_referrals = dm_stmt_int64(st, 3);
        v.team_volume_micros = dm_stmt_int64(st, 4);
        want = dm_vip_qualify(&plan, &v);
        if (want > current) {
            ids[n] = dm_stmt_int64(st, 0);
            levels[n] = want;
            n++;
        }
    }
    dm_stmt_done(st);
    for (int i = 0; !e && i < n; i++) {
        e = dm_db_prepare(db, p,
                          "UPDATE users SET vip_level = ?, updated_at = ? "
                          "WHERE id = ? AND vip_level < ?",
                          &st);
        if (e) {
            break;
        }
        dm_stmt_bind_int64(st, 1, levels[i]);
        dm_stmt_bind_int64(st, 2, dm_now());
        dm_stmt_bind_int64(st, 3, ids[i]);
        dm_stmt_bind_int64(st, 4, levels[i]);
        e = dm_stmt_step(st, p, &row);
        dm_stmt_done(st);
    }
    return e;
}

/* One member a refund touches: volumes before and after, and its level. */
typedef struct touched {
    int64_t id;
    dm_volumes before;
    dm_volumes after;
} touched;

static dm_err *lower_level(dm_db *db, apr_pool_t *p, int64_t user_id, int from, int to,
                           int64_t order_id, const char *why)
{
    const char *target = apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)user_id);
    const char *reason =
        apr_psprintf(p,
                     "order %" APR_INT64_T_FMT " %s: without its volume the member qualifies "
                     "for level %d only",
                     (apr_int64_t)order_id, why ? why : "refunded", to);
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(
        db, p, "UPDATE users SET vip_level = ?, updated_at = ? WHERE id = ? AND vip_level = ?",
        &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, to);
    dm_stmt_bind_int64(st, 2, dm_now());
    dm_stmt_bind_int64(st, 3, user_id);
    dm_stmt_bind_int64(st, 4, from);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    if (e || dm_db_changes(db) != 1) {
        return e;
    }
    return dm_audit_write(db, p, 0, "user.vip_lowered", "user", target,
                          dm_json_own(p, json_pack("{s:i}", "vip_level", from)),
                          dm_json_own(p, json_pack("{s:i,s:I,s:s}", "vip_level", to, "order_id",
                                                   (json_int_t)order_id, "reason", reason)),
                          AUDIT_SYSTEM_IP);
}

dm_err *dm_vip_refund_order(dm_db *db, apr_pool_t *p, int64_t order_id, int64_t buyer_id,
                            const int64_t *upline, int n, int64_t part_micros, int last,
                            const char *why)
{
    touched t[DM_VIP_DEPTHS + 1];
    dm_vip_plan plan;
    int m = 0;
    dm_err *e;

    if (!dm_db_in_transaction(db)) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "vip: volumes change only in a transaction");
    }
    if (n > DM_VIP_DEPTHS) {
        n = DM_VIP_DEPTHS;
    }
    memset(t, 0, sizeof(t));
    t[m++].id = buyer_id;
    for (int i = 0; i < n; i++) {
        t[m++].id = upline[i];
    }
    e = dm_vip_plan_load(db, p, &plan);
    for (int i = 0; !e && i < m; i++) {
        e = dm_vip_volumes(db, p, t[i].id, &t[i].before);
    }
    /* The part leaves the buyer's personal volume and every ancestor's team
     * volume; the whole order also leaves the buyer's paid orders, and the
     * referrer's direct paid referrals when it was the buyer's last. */
    if (!e) {
        e = bump(db, p, buyer_id, -part_micros, last ? -1 : 0, 0, 0);
    }
    if (!e && n > 0 && last && t[0].before.paid_orders == 1) {
        e = bump(db, p, upline[0], 0, 0, -1, 0);
    }
    for (int i = 0; !e && i < n; i++) {
        e = bump(db, p, upline[i], 0, 0, 0, -part_micros);
    }
    /* A level goes down only when the volumes before the refund reached it
     * and those after do not: a level set by hand above the volumes, or
     * earned under an easier plan, is left alone (levels never fall with
     * time, only with the volume that earned them). */
    for (int i = 0; !e && i < m; i++) {
        int current = 0, was, now;
        int64_t v = 0;
        int found = 0;
        dm_stmt *st;

        e = dm_vip_volumes(db, p, t[i].id, &t[i].after);
        if (!e) {
            e = dm_db_prepare(db, p, "SELECT vip_level FROM users WHERE id = ?", &st);
        }
        if (e) {
            break;
        }
        dm_stmt_bind_int64(st, 1, t[i].id);
        e = dm_stmt_step(st, p, &found);
        if (!e && found) {
            v = dm_stmt_int64(st, 0);
        }
        dm_stmt_done(st);
        current = (int)v;
        was = dm_vip_qualify(&plan, &t[i].before);
        now = dm_vip_qualify(&plan, &t[i].after);
        if (!e && found && now < current && current <= was) {
            e = lower_level(db, p, t[i].id, current, now, order_id, why);
        }
    }
    return e;
}
