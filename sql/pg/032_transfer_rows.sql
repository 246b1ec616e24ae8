-- 032 on PostgreSQL: "a transfer is reversed at most once" becomes a
-- partial unique index of the reversals alone, as on SQLite (sql/032: the
-- column's UNIQUE indexed a NULL for every other transfer, written by
-- every insert and read by nothing). PostgreSQL drops the constraint in
-- place (its name is the default 001_init gave it); no table is rebuilt.
-- transfers_time stays here: PostgreSQL's planner reads it for a narrow
-- created_at window of the staff list (SQLite's never does, so sql/032
-- drops it there).
ALTER TABLE transfers DROP CONSTRAINT transfers_reverses_transfer_id_key;
CREATE UNIQUE INDEX transfers_reverses ON transfers (reverses_transfer_id)
    WHERE reverses_transfer_id IS NOT NULL;
