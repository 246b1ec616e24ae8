-- dm:foreign-keys-off: transfers orders order_refunds commissions withdrawals
-- 032_transfer_rows.sql: a transfer row costs two indexes fewer (issue 16,
-- docs/decisions.md "Transfer rows, cheaper").
--
-- "A transfer is reversed at most once" was the column's UNIQUE, whose
-- index held a NULL for every transfer that reverses nothing (nearly all
-- of them) and was written by every insert, though nothing reads it. It
-- is now a partial unique index of the reversals alone: the same rule,
-- checked by the same insert (post() in core/ledger/ledger.c names the
-- conflict "already been reversed"), at no cost for other rows.
--
-- transfers_time (created_at, id) is not made again: no query on SQLite
-- reads it. The only filter on created_at (the staff list and its CSV
-- export, core/ledger/ledger.c list_sql) pages newest first on id, and
-- SQLite's planner (the module never runs ANALYZE) walks the rowid down
-- from the cursor for it, with or without this index; every insert wrote
-- it all the same. PostgreSQL's planner does use it for a narrow window,
-- so sql/pg/032 keeps it there.
--
-- SQLite drops a column's UNIQUE only by rebuilding the table: new table,
-- copy, DROP, RENAME, in this one transaction. Other tables reference
-- transfers (orders, order_refunds, commissions, withdrawals) and
-- transfers references itself, so the migration runner
-- turns foreign keys off around this transaction (the marker on the first
-- line) and runs PRAGMA foreign_key_check on transfers and each table
-- referencing it before it commits (every row keeps its id, so every
-- reference stays valid; the check proves it). Columns keep their order;
-- no trigger is on transfers; the other indexes of 003 are made again
-- below, unchanged.
CREATE TABLE transfers_032 (
    id INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    debit_account_id INTEGER NOT NULL REFERENCES accounts (id),
    credit_account_id INTEGER NOT NULL REFERENCES accounts (id),
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    kind TEXT NOT NULL,
    reference TEXT,                          -- order, contract-hour, withdrawal …; may be NULL
    -- a reversal names the transfer it reverses (unique: transfers_reverses)
    reverses_transfer_id INTEGER REFERENCES transfers (id),
    created_at BIGINT NOT NULL,
    CHECK (debit_account_id <> credit_account_id)
);
INSERT INTO transfers_032 (id, idempotency_key, debit_account_id, credit_account_id,
                           amount_micros, currency, kind, reference, reverses_transfer_id,
                           created_at)
    SELECT id, idempotency_key, debit_account_id, credit_account_id, amount_micros, currency,
           kind, reference, reverses_transfer_id, created_at
    FROM transfers ORDER BY id;
DROP TABLE transfers;
ALTER TABLE transfers_032 RENAME TO transfers;

-- a transfer is reversed at most once
CREATE UNIQUE INDEX transfers_reverses ON transfers (reverses_transfer_id)
    WHERE reverses_transfer_id IS NOT NULL;
-- as 003 (but transfers_time)
CREATE INDEX transfers_debit ON transfers (debit_account_id, id);
CREATE INDEX transfers_credit ON transfers (credit_account_id, id);
CREATE INDEX transfers_kind ON transfers (kind, id);
