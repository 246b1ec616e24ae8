-- 031 on PostgreSQL: stats_daily's commissions total once per INSERT
-- statement, not once per row. A paid order inserts its ten commissions in
-- one statement; per row, the day's one stats_daily row was updated ten
-- times in every webhook's transaction, and under MVCC each update of that
-- hot row walks the versions left before it (docs/decisions.md,
-- "PostgreSQL write path"). The sums are the same: one row per day and
-- currency, each statement's amounts added once.
DROP TRIGGER stats_commissions_ai ON commissions;
CREATE OR REPLACE FUNCTION stats_commissions_ai_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO stats_daily (day, currency, commissions_micros)
        SELECT created_at - created_at % 86400, currency, SUM(amount_micros)
          FROM dm_new_commissions GROUP BY 1, 2
        ON CONFLICT (currency, day) DO UPDATE SET
            commissions_micros = stats_daily.commissions_micros + excluded.commissions_micros;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER stats_commissions_ai AFTER INSERT ON commissions
    REFERENCING NEW TABLE AS dm_new_commissions
    FOR EACH STATEMENT EXECUTE FUNCTION stats_commissions_ai_fn();
