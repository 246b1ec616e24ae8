-- 014_commission_forfeits.sql: staff may forfeit a held commission (a
-- suspended account, confirmed fraud) to the forfeited_commissions system
-- account (core/commission.c, docs/commissions.md "Forfeits").
--
-- commissions: status gains 'forfeited', and forfeit_transfer_id names the
-- transfer (held -> forfeited_commissions, key forfeit:<id>). SQLite cannot
-- alter a CHECK, so the table is rebuilt as 011 rebuilt contracts: nothing
-- references commissions by foreign key; its indexes (006, 012) are made
-- again below, unchanged. Columns keep their order (013's clawed_micros
-- included); the new one goes last.
CREATE TABLE commissions_new (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL,
    depth INTEGER NOT NULL CHECK (depth BETWEEN 1 AND 10),
    beneficiary_id INTEGER NOT NULL REFERENCES users (id),
    source_user_id INTEGER NOT NULL REFERENCES users (id),
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    rate_bp INTEGER NOT NULL,
    vip_level INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('held', 'available', 'clawed_back', 'forfeited')),
    release_at BIGINT NOT NULL,
    transfer_id INTEGER NOT NULL REFERENCES transfers (id),
    released_transfer_id INTEGER REFERENCES transfers (id),
    clawback_transfer_id INTEGER REFERENCES transfers (id),
    created_at BIGINT NOT NULL,
    clawed_micros BIGINT NOT NULL DEFAULT 0,
    forfeit_transfer_id INTEGER REFERENCES transfers (id),
    UNIQUE (order_id, depth)
);
INSERT INTO commissions_new (id, order_id, depth, beneficiary_id, source_user_id, amount_micros,
                             currency, rate_bp, vip_level, status, release_at, transfer_id,
                             released_transfer_id, clawback_transfer_id, created_at,
                             clawed_micros, forfeit_transfer_id)
    SELECT id, order_id, depth, beneficiary_id, source_user_id, amount_micros, currency, rate_bp,
           vip_level, status, release_at, transfer_id, released_transfer_id,
           clawback_transfer_id, created_at, clawed_micros, NULL
    FROM commissions;
DROP TABLE commissions;
ALTER TABLE commissions_new RENAME TO commissions;

-- as 006
CREATE INDEX commissions_beneficiary ON commissions (beneficiary_id, id);
CREATE INDEX commissions_due ON commissions (status, release_at, id);
-- as 012
CREATE INDEX commissions_created ON commissions (created_at);
-- staff's list of the commissions a buyer's purchases made (a flagged or
-- suspended member), newest first
CREATE INDEX commissions_source ON commissions (source_user_id, id);
