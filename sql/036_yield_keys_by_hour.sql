-- 036: an hour's yield credits are keyed yield:<hour>:<contract>, hour
-- first, not earn:<contract>:<hour> (issue 16, docs/decisions.md "The
-- accrual's keys, hour first"). Under the old key every hour's million
-- keys went in beside each contract's earlier hours, so each run rewrote
-- and split every leaf page of the keys already there, and an hour took
-- longer with every hour credited before it. Hour first, a run's keys
-- fill pages of their own at the index's end.
--
-- Exactly once across the change: the key is the only thing that stops a
-- re-run from crediting an hour again, so an hour must keep the form it
-- was first credited under. The old form was used for every hour up to
-- the last one credited before this migration, and for no later hour;
-- that hour is recorded here (no row: no credit under the old key, as on
-- a new database) and core/shop/accrual.c keys an hour up to it the old
-- way, every later hour the new way. No row rather than a NULL, so that
-- deepminectl migrate-to-postgres, which keeps a row the target's own
-- migrations made (ON CONFLICT DO NOTHING), copies this one. Read
-- from the keys themselves (earn:<contract>:<hour>, the hour after the
-- second colon), not from the clock or the jobs' history: a run of any
-- period (deepminectl jobs run accrual --period) is counted.
CREATE TABLE accrual_key_cutover (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    earn_keys_through BIGINT NOT NULL        -- Unix seconds
);
INSERT INTO accrual_key_cutover (id, earn_keys_through)
    SELECT 1, MAX(CAST(substr(idempotency_key, instr(substr(idempotency_key, 6), ':') + 6)
                       AS INTEGER))
    FROM transfers WHERE idempotency_key >= 'earn:' AND idempotency_key < 'earn;'
        AND idempotency_key GLOB 'earn:[0-9]*:[0-9]*'
    HAVING COUNT(*) > 0;
