/*
 * routes/ops.c — what an operator's tools read: GET /api/admin/metrics
 * (Prometheus text; the owner, or a scraper holding DeepMineMetricsToken)
 * and GET /api/admin/plugins (each loaded plugin and its own health check).
 */
#include "dm_http.h"

#include <apr_strings.h>

#include "base/clock.h"
#include "base/json.h"

/* The scrape token first (a scraper has no staff session); else the owner,
 * through the role table (staff.c: owner only). A wrong token is refused
 * there like any other unknown Bearer token: 401. */
static int admin_metrics(request_rec *r, const dm_route_match *m)
{
    dm_db *db;
    dm_staff st;
    dm_err *e;

    if (!dm_http_metrics_token_ok(r)) {
        e = dm_http_staff_db(r, m, &db, &st);
        if (e) {
            return dm_http_error(r, e);
        }
        dm_db_pool_release(dm_g.db, r->pool, db);
    }
    return dm_http_metrics_send(r);
}

static int admin_plugins(request_rec *r, const dm_route_match *m)
{
    const apr_array_header_t *all = dm_plugins_all(dm_g.plugins);
    json_t *list = json_array();
    dm_db *db;
    dm_staff st;
    dm_err *e = dm_http_staff_db(r, m, &db, &st);

    if (e) {
        json_decref(list);
        return dm_http_error(r, e);
    }
    for (int i = 0; i < all->nelts; i++) {
        const dm_loaded_plugin *pl = APR_ARRAY_IDX(all, i, const dm_loaded_plugin *);
        dm_plugin_about about;
        dm_message msg;
        dm_status hs;
        json_t *health = json_object();

        dm_plugins_describe(pl, &about);
        if (about.has_health) {
            hs = dm_plugins_health(dm_g.plugins, pl, r->pool, &msg);
            json_object_set_new(health, "status", json_string(hs == DM_OK ? "ok" : "failing"));
            json_object_set_new(health, "message",
                                msg.text[0] ? json_string(msg.text) : json_null());
        } else {
            json_object_set_new(health, "status", json_string("none"));
            json_object_set_new(health, "message", json_null());
        }
        json_object_set_new(health, "checked_at", json_string(dm_json_time(r->pool, dm_now())));
        json_array_append_new(
            list, json_pack("{s:s,s:s,s:s,s:s,s:s,s:o}", "name", pl->name, "kind",
                            dm_plugin_kind_name(pl->kind), "plugin", about.plugin_name, "version",
                            about.version, "abi",
                            apr_psprintf(r->pool, "%u.%u", about.abi_major, about.abi_minor),
                            "health", health));
    }
    return dm_http_send_json(r, HTTP_OK, json_pack("{s:o}", "plugins", list));
}

const dm_route_def dm_routes_ops[] = {
    {"GET", "/api/admin/metrics", admin_metrics},
    {"GET", "/api/admin/plugins", admin_plugins},
    {NULL, NULL, NULL},
};
