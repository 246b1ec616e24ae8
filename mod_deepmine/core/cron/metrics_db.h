/*
 * metrics_db.h — the metrics read from the database at scrape time: orders
 * by status, active contracts, hash power sold against capacity, wallet
 * and held totals, pending withdrawals, the mail queue, jobs and the cron
 * heartbeat. Every figure is a few indexed rows (the running totals of
 * sql/025), so a scrape stays in milliseconds on a large database.
 *
 * In cron/ because it reads every domain's tables; the counters counted
 * in shared memory are base/metrics.h's.
 */
#ifndef DM_CRON_METRICS_DB_H
#define DM_CRON_METRICS_DB_H

#include "base/metrics.h"
#include "store/db.h"

/* Appends the database's families to b, as of `now` (dm_now()). */
dm_err *dm_metrics_db_render(dm_db *db, apr_pool_t *p, int64_t now, dm_metrics_buf *b);

#endif
