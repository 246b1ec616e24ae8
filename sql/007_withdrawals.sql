-- 007_withdrawals.sql: members' withdrawal requests (core/withdrawals.c)
-- and the operator's recorded hash-power capacity (core/capacity.c).

-- A withdrawal moves money wallet -> withdrawals_pending when requested
-- (request_transfer_id), then withdrawals_pending -> withdrawals_paid when
-- finance pays it (decision_transfer_id), or back to the wallet when
-- finance rejects it (decision_transfer_id, a reversal). A decided
-- withdrawal is never decided again.
CREATE TABLE withdrawals (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    network TEXT NOT NULL CHECK (network IN ('trc20', 'erc20', 'btc')),
    destination TEXT NOT NULL CHECK (length(destination) BETWEEN 1 AND 100),
    -- the destination as compared between members (lower-cased for erc20)
    destination_key TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid', 'rejected')),
    txid TEXT,                                  -- the payout transaction, when paid
    reason TEXT,                                -- why, when rejected
    requested_at BIGINT NOT NULL,
    decided_at BIGINT,
    decided_by INTEGER REFERENCES staff (id),   -- NULL while pending (or decided at the console)
    request_transfer_id INTEGER REFERENCES transfers (id),
    decision_transfer_id INTEGER REFERENCES transfers (id),
    CHECK ((status = 'pending') = (decided_at IS NULL))
);
-- a member's list, newest first; the daily limit sums a member's last 24 h
CREATE INDEX withdrawals_user ON withdrawals (user_id, id);
CREATE INDEX withdrawals_user_time ON withdrawals (user_id, requested_at);
-- finance's queue by status
CREATE INDEX withdrawals_status ON withdrawals (status, id);
-- the same destination used by another member
CREATE INDEX withdrawals_destination ON withdrawals (network, destination_key, user_id);

-- The hash power the operator owns or leases, as a history: the current
-- capacity is the newest row. No row at all means nothing can be sold.
CREATE TABLE capacity (
    id INTEGER PRIMARY KEY,
    hashrate_ghs BIGINT NOT NULL CHECK (hashrate_ghs >= 0),
    note TEXT,
    set_by INTEGER REFERENCES staff (id),       -- NULL: the console
    created_at BIGINT NOT NULL
);

-- What is still available is part of the rendered catalogue, so a new
-- capacity must re-render it (see 001_init.sql's catalogue_state).
CREATE TRIGGER capacity_ai AFTER INSERT ON capacity BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
END;
