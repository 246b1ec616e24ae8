-- 016_accrual_by_term.sql: the accrual of an hour selects the contracts
-- whose paid term covers it, whatever their status now (issue 11; see
-- core/shop/accrual.c and docs/decisions.md, "Which contracts an hour
-- owes"). Its scan is keyset by (expires_at, id) from the hour's start, so
-- contracts whose term ended long ago are never read, however many pile up.
CREATE INDEX contracts_term ON contracts (yield_mode, expires_at);

-- contract-expiry counts the accrual's `ok` hours inside a term (every
-- hour of it must be credited): a range of this index, read alone. (The
-- clean-up keeps the accrual's `ok` runs; other jobs' go after 90 days.)
CREATE INDEX job_runs_ok ON job_runs (job, status, period_start);

-- The two indexes of the scan by status (011) have no reader left; each
-- would only cost writes (contracts_accrual holds the status every refund
-- and expiry changes). IF EXISTS: another branch's migration may rebuild
-- contracts without them.
DROP INDEX IF EXISTS contracts_accrual;
DROP INDEX IF EXISTS contracts_ended;
