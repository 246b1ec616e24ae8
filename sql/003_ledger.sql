-- 003_ledger.sql: the double-entry ledger (ARCHITECTURE §3, core/ledger.c).
--
-- Sign convention: a transfer of amount A (always > 0) lowers the balance
-- of its debit account by A and raises the balance of its credit account
-- by A. A member's wallet balance is what the platform owes the member;
-- system accounts mirror the members' money (a system account that pays
-- out, such as `yield`, goes below zero), so the balances of all accounts
-- always sum to zero.
--
-- Balances are stored for speed and always equal the credits minus the
-- debits of the account's transfers (`deepminectl ledger verify` checks
-- both invariants). Transfers are never edited or deleted: a reversal is a
-- new transfer the other way that names the one it reverses.
--
-- Money and times are BIGINT (64-bit in both SQLite and PostgreSQL).

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('wallet', 'held', 'system')),
    user_id INTEGER REFERENCES users (id),   -- members' accounts; NULL for system ones
    code TEXT,                               -- system accounts: 'sales', 'gateway:sandbox', …
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    balance_micros BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    CHECK ((kind = 'system') = (user_id IS NULL)),
    CHECK ((kind = 'system') = (code IS NOT NULL))
);
-- One account of each kind per member and currency, one per system code
-- and currency. Plain UNIQUE indexes do both jobs: NULLs are distinct in
-- SQLite and PostgreSQL, so member rows (code NULL) never meet in the
-- second index and system rows (user_id NULL) never in the first. The
-- first also serves "the accounts of member N".
CREATE UNIQUE INDEX accounts_member ON accounts (user_id, kind, currency);
CREATE UNIQUE INDEX accounts_system ON accounts (code, currency);

CREATE TABLE transfers (
    id INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    debit_account_id INTEGER NOT NULL REFERENCES accounts (id),
    credit_account_id INTEGER NOT NULL REFERENCES accounts (id),
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    kind TEXT NOT NULL,
    reference TEXT,                          -- order, contract-hour, withdrawal …; may be NULL
    -- a reversal names the transfer it reverses; a transfer is reversed at most once
    reverses_transfer_id INTEGER UNIQUE REFERENCES transfers (id),
    created_at BIGINT NOT NULL,
    CHECK (debit_account_id <> credit_account_id)
);
-- A member statement and the admin account filter: each side of a
-- transfer by account, newest (highest id) first.
CREATE INDEX transfers_debit ON transfers (debit_account_id, id);
CREATE INDEX transfers_credit ON transfers (credit_account_id, id);
-- The admin filters: by kind (paged on id), by time.
CREATE INDEX transfers_kind ON transfers (kind, id);
CREATE INDEX transfers_time ON transfers (created_at, id);
