-- 005_orders.sql: orders and the mining contracts they buy (core/orders.c).
--
-- An order fixes the price of its package at the moment it is made
-- (amount_micros, currency). It is paid either from the member's wallet
-- (gateway 'balance', paid in the transaction that creates it) or through a
-- payment plugin (gateway = the plugin's configured name), whose verified
-- webhook marks it paid in the transaction that records the event.
--
-- Every state change is a guarded UPDATE (… WHERE status = 'pending'), so a
-- replayed or concurrent event changes nothing:
--   pending -> paid | failed | expired | needs_review
--   paid    -> refunded
-- needs_review is for staff: money arrived that does not match the order
-- (amount, currency, or a payment after the order failed); it is never
-- credited automatically.
--
-- A contract is created once per paid order (order_id UNIQUE) and carries
-- a COPY of the package terms at the sale: a later change to the package
-- never changes a contract that was sold.

CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    package_id INTEGER NOT NULL REFERENCES packages (id),
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'paid', 'failed', 'expired', 'needs_review', 'refunded')),
    gateway TEXT NOT NULL CHECK (length(gateway) BETWEEN 1 AND 64),  -- plugin name or 'balance'
    provider_ref TEXT,                     -- the gateway's checkout reference
    checkout_url TEXT,
    payment_transfer_id INTEGER REFERENCES transfers (id),  -- the transfer that paid it
    created_at BIGINT NOT NULL,
    paid_at BIGINT,
    updated_at BIGINT NOT NULL
);
-- "my orders, newest first"
CREATE INDEX orders_user ON orders (user_id, id);
-- admin listing by status, newest first
CREATE INDEX orders_status ON orders (status, id);
-- a refund event carries only the gateway's reference
CREATE INDEX orders_provider_ref ON orders (gateway, provider_ref);

CREATE TABLE contracts (
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
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended', 'refunded')),
    ended_at BIGINT,
    CHECK (expires_at > started_at)
);
-- "my contracts, newest first"
CREATE INDEX contracts_user ON contracts (user_id, id);
-- admin listing and the active set (capacity, accrual)
CREATE INDEX contracts_status ON contracts (status, id);
