-- 031: nothing to change on SQLite. On PostgreSQL (sql/pg/031_…) the
-- trigger that adds commissions to stats_daily runs once per INSERT
-- statement instead of once per row (docs/decisions.md, "PostgreSQL write
-- path"); SQLite keeps its per-row trigger from 024.
SELECT 1;
