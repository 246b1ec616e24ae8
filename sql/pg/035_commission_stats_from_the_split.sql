-- 035 on PostgreSQL: as on SQLite (sql/035_…), stats_daily's commissions
-- total is added by the split itself (core/referral/commission.c, one
-- upsert per split), so the per-statement trigger of 031 goes.
DROP TRIGGER stats_commissions_ai ON commissions;
DROP FUNCTION stats_commissions_ai_fn();
