-- 011_accrual.sql: hourly yield accrual (core/accrual.c), pool payouts
-- (core/pool_payouts.c), the per-contract daily statement and the yield
-- commission plan (docs/decisions.md, "Yield accrual").
--
-- Two yield modes, chosen per package and copied to each contract at the
-- sale: 'fixed' (the operator's declared daily_yield_micros, split by the
-- second) and 'pool' (the mining pool's recorded payout, split by
-- hash-rate-seconds, less the package's maintenance fee fee_bp). Packages
-- that existed before this migration were sold as fixed yield: they stay so.

ALTER TABLE packages ADD COLUMN yield_mode TEXT NOT NULL DEFAULT 'fixed'
    CHECK (yield_mode IN ('pool', 'fixed'));
ALTER TABLE packages ADD COLUMN fee_bp INTEGER NOT NULL DEFAULT 0
    CHECK (fee_bp BETWEEN 0 AND 10000);

-- contracts: status gains 'expired' (set by the contract-expiry job once
-- the last hour is credited), and three columns. SQLite cannot alter a
-- CHECK, so the table is rebuilt: nothing references contracts by foreign
-- key, and its indexes and the two catalogue triggers of 009 are made
-- again below, unchanged. Columns keep their order; new ones go last.
CREATE TABLE contracts_new (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL UNIQUE REFERENCES orders (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    package_id INTEGER NOT NULL REFERENCES packages (id),
    -- the package's terms as sold
    name TEXT NOT NULL,
    hashrate_ghs BIGINT NOT NULL CHECK (hashrate_ghs > 0),
    price_micros BIGINT NOT NULL CHECK (price_micros > 0),
    daily_yield_micros BIGINT NOT NULL CHECK (daily_yield_micros >= 0),
    duration_days INTEGER NOT NULL CHECK (duration_days > 0),
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    started_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'ended', 'expired', 'refunded')),
    ended_at BIGINT,
    -- the yield terms as sold
    yield_mode TEXT NOT NULL DEFAULT 'fixed' CHECK (yield_mode IN ('pool', 'fixed')),
    fee_bp INTEGER NOT NULL DEFAULT 0 CHECK (fee_bp BETWEEN 0 AND 10000),
    -- the sum of the contract's yield credits (earn:<contract>:<hour>),
    -- kept in the transaction of each new credit
    earned_micros BIGINT NOT NULL DEFAULT 0,
    CHECK (expires_at > started_at)
);
INSERT INTO contracts_new (id, order_id, user_id, package_id, name, hashrate_ghs, price_micros,
                           daily_yield_micros, duration_days, currency, started_at, expires_at,
                           status, ended_at, yield_mode, fee_bp, earned_micros)
    SELECT id, order_id, user_id, package_id, name, hashrate_ghs, price_micros,
           daily_yield_micros, duration_days, currency, started_at, expires_at, status, ended_at,
           'fixed', 0, 0
    FROM contracts;
DROP TABLE contracts;
ALTER TABLE contracts_new RENAME TO contracts;

-- as 005
CREATE INDEX contracts_user ON contracts (user_id, id);
CREATE INDEX contracts_status ON contracts (status, id);
-- as 009
CREATE TRIGGER contracts_ai_catalogue AFTER INSERT ON contracts BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER contracts_au_catalogue AFTER UPDATE OF status ON contracts BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
END;
-- The accrual's scan: the active contracts of one mode in id order (keyset
-- batches). Refunded contracts still owed an earlier hour (a catch-up
-- after downtime) are found by ended_at; the expiry job by expires_at.
CREATE INDEX contracts_accrual ON contracts (yield_mode, status, id);
CREATE INDEX contracts_ended ON contracts (status, ended_at);
CREATE INDEX contracts_expiry ON contracts (status, expires_at);

-- The mining pool's actual output, recorded by an operator
-- (POST /api/admin/pool-payouts) or imported, for one hour or one UTC day.
-- An hour payout and a day payout never overlap (refused at recording).
-- When the pool-accrual job has split it, the reconciliation is kept:
-- amount_micros = credits_micros + fee_micros + remainder_micros, exactly.
CREATE TABLE pool_payouts (
    id INTEGER PRIMARY KEY,
    period_kind TEXT NOT NULL CHECK (period_kind IN ('hour', 'day')),
    period_start BIGINT NOT NULL,            -- the hour's or the day's first second
    period_end BIGINT NOT NULL,
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    note TEXT,
    recorded_by INTEGER,                     -- staff id; NULL: the console or an import
    created_at BIGINT NOT NULL,
    -- filled by the job, in the transaction that ends the distribution
    distributed_at BIGINT,
    contracts INTEGER,                       -- contracts that shared it
    hash_seconds BIGINT,                     -- their GH/s x seconds in the period
    credits_micros BIGINT,                   -- to the members' wallets
    fee_micros BIGINT,                       -- maintenance fees (system account)
    remainder_micros BIGINT,                 -- floors' remainder (system account rounding)
    UNIQUE (period_kind, period_start),
    CHECK (period_end > period_start)
);
CREATE INDEX pool_payouts_start ON pool_payouts (period_start);

-- A member's statement: per contract and UTC day, what accrued. Written
-- in the transaction of each new credit (never for a replayed one), so it
-- always matches the ledger. hash_seconds: GH/s x seconds credited;
-- share_micros: the contract's gross share of the pool's output (fixed
-- mode: equal to the credit); fee_micros: the maintenance fee taken from
-- it. The contract id is a plain integer (no foreign key: a later rebuild
-- of contracts need not touch this table). Clustered on its key.
CREATE TABLE contract_days (
    contract_id INTEGER NOT NULL,
    day BIGINT NOT NULL,                     -- Unix seconds of 00:00 UTC
    hashrate_ghs BIGINT NOT NULL,
    hash_seconds BIGINT NOT NULL DEFAULT 0,
    share_micros BIGINT NOT NULL DEFAULT 0,
    fee_micros BIGINT NOT NULL DEFAULT 0,
    credit_micros BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (contract_id, day)
) WITHOUT ROWID;

-- Commissions on yield: the rate an ancestor of a VIP level earns on each
-- yield credit `depth` levels below it. Empty (the default): none paid.
CREATE TABLE yield_commission_rates (
    level INTEGER NOT NULL CHECK (level BETWEEN 1 AND 10),
    depth INTEGER NOT NULL CHECK (depth BETWEEN 1 AND 10),
    rate_bp INTEGER NOT NULL CHECK (rate_bp BETWEEN 0 AND 10000),
    PRIMARY KEY (level, depth)
);
