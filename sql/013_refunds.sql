-- 013_refunds.sql: refunds in part or in full (core/shop/refunds.c,
-- core/referral/commission.c, core/referral/vip.c; docs/commissions.md
-- "Refunds").
--
-- A refund undoes the purchase in proportion: each refund of `part` out of
-- what was still unrefunded (`left`) takes back floor(kept x part / left)
-- of everything the order brought that is still kept — the purchase
-- commissions, the yield credited on its contract, the yield commissions
-- paid on that yield — and the refund that reaches the price takes back
-- all that is left. The counters below say what is kept.

-- What has been refunded of the order so far (0 <= refunded <= amount):
-- the refundable remainder is amount_micros - refunded_micros.
ALTER TABLE orders ADD COLUMN refunded_micros BIGINT NOT NULL DEFAULT 0
    CHECK (refunded_micros >= 0);

-- One row per refund posted, whatever its source: a gateway's refund event
-- (`event` = '<plugin>:<event id>') or a staff refund of an order paid
-- from the balance (`staff_id`, NULL for the console, and `reason`).
-- refunded_after_micros is the order's refunded total after it; the
-- accrual reads created_at to know the share a contract ran on in an hour
-- (refunds made before the hour ended count).
CREATE TABLE order_refunds (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders (id),
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    refunded_after_micros BIGINT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('event', 'staff')),
    event TEXT,
    staff_id INTEGER REFERENCES staff (id),
    reason TEXT,
    transfer_id INTEGER NOT NULL REFERENCES transfers (id),
    created_at BIGINT NOT NULL,
    UNIQUE (order_id, refunded_after_micros)
);
CREATE INDEX order_refunds_order ON order_refunds (order_id, created_at);

-- The contract's share: it runs on (price - refunded) / price of its terms
-- (DeepMinePartialRefund prorate) for every hour that ends after the
-- refund; released_ghs is the hash rate given back to capacity
-- (hashrate_ghs - floor(hashrate_ghs x (price - refunded) / price));
-- yield_clawed_micros what refunds took back of earned_micros.
ALTER TABLE contracts ADD COLUMN refunded_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE contracts ADD COLUMN released_ghs BIGINT NOT NULL DEFAULT 0;
ALTER TABLE contracts ADD COLUMN yield_clawed_micros BIGINT NOT NULL DEFAULT 0;

-- A purchase commission taken back in part stays held or available with
-- amount_micros - clawed_micros left (what its release moves).
ALTER TABLE commissions ADD COLUMN clawed_micros BIGINT NOT NULL DEFAULT 0;
-- The commission plan's own view of the order's refunds (its volumes).
ALTER TABLE commission_orders ADD COLUMN refunded_micros BIGINT NOT NULL DEFAULT 0;

-- Hash rate given back by a partial refund is for sale again: 009's
-- trigger on a contract's status now follows released_ghs too (same name,
-- so a contract keeps its two catalogue triggers).
DROP TRIGGER contracts_au_catalogue;
CREATE TRIGGER contracts_au_catalogue AFTER UPDATE OF status, released_ghs ON contracts BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
END;
