-- 017_payments_core.sql: the core of the payment gateways (issue 12;
-- core/shop/orders.c, core/shop/payments.c, core/shop/janitor.c;
-- docs/payments.md).
--
-- 1. payment_events takes the statuses of plugin ABI 1.4 and keeps the
--    provider's payment identity, the review reason and the detail a plugin
--    gives. SQLite cannot change a CHECK in place: the table is rebuilt
--    (nothing references it).
CREATE TABLE payment_events_14 (
    id INTEGER PRIMARY KEY,
    plugin TEXT NOT NULL,
    event_id TEXT NOT NULL CHECK (length(event_id) BETWEEN 1 AND 255),
    status TEXT NOT NULL
        CHECK (status IN ('paid', 'failed', 'refunded', 'expired', 'ignored', 'dispute_opened',
                          'dispute_won', 'dispute_lost', 'needs_review', 'pending')),
    order_ref TEXT,
    provider_ref TEXT,
    amount_micros INTEGER NOT NULL CHECK (amount_micros >= 0),
    currency TEXT CHECK (currency IS NULL OR length(currency) = 3),
    raw_body TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    processed_at INTEGER,
    outcome TEXT,
    payment_id TEXT,          -- the provider's identity of the money (ABI 1.4); NULL: none given
    review_reason TEXT,       -- with needs_review: underpaid, overpaid, paid_after_expiry, ...
    detail TEXT,              -- the plugin's words for staff
    source TEXT NOT NULL DEFAULT 'webhook' CHECK (source IN ('webhook', 'janitor', 'return')),
    UNIQUE (plugin, event_id)
);
INSERT INTO payment_events_14 (id, plugin, event_id, status, order_ref, provider_ref,
                               amount_micros, currency, raw_body, received_at, processed_at,
                               outcome)
SELECT id, plugin, event_id, status, order_ref, provider_ref, amount_micros, currency, raw_body,
       received_at, processed_at, outcome FROM payment_events;
DROP TABLE payment_events;
ALTER TABLE payment_events_14 RENAME TO payment_events;
CREATE INDEX payment_events_order ON payment_events (order_ref, received_at);
CREATE INDEX payment_events_provider_ref ON payment_events (plugin, provider_ref);

-- 2. One payment identity credits once. payment_id is the identity of the
--    money that credited the order (the event's payment_id, else its
--    provider reference), set in the transaction that credits it: UNIQUE per
--    gateway, so a webhook, its redelivery, the return page and the janitor
--    reporting the same payment for two orders cannot credit twice.
ALTER TABLE orders ADD COLUMN payment_id TEXT;
CREATE UNIQUE INDEX orders_payment_identity ON orders (gateway, payment_id)
    WHERE payment_id IS NOT NULL;

-- 3. Disputes. The order's status stays 'paid' while its money is ours; the
--    dispute is its own column (the API shows an open one as status
--    'disputed'; see docs/decisions.md): open -> won | lost. While open, the
--    order's held commissions are not released.
ALTER TABLE orders ADD COLUMN dispute TEXT
    CHECK (dispute IS NULL OR dispute IN ('open', 'won', 'lost'));
CREATE INDEX orders_dispute ON orders (dispute, id) WHERE dispute IS NOT NULL;

-- 4. Why an order needs review (a payment's review reason, 'sold_out',
--    'over_refund', ...), for staff.
ALTER TABLE orders ADD COLUMN review_reason TEXT;

-- 5. Capacity holds: a pending order holds its package's hash rate until
--    hold_until (its checkout's lifetime), then releases it. NULL: no hold
--    (orders from before this migration, and every settled order).
ALTER TABLE orders ADD COLUMN hold_until BIGINT;
CREATE INDEX orders_pending_hold ON orders (status, hold_until) WHERE status = 'pending';

-- 6. The order's history: every state change a payment event, the janitor
--    or staff made, with its source (webhook, janitor, return, staff, ...).
CREATE TABLE order_events (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders (id),
    kind TEXT NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    source TEXT NOT NULL CHECK (length(source) BETWEEN 1 AND 32),
    detail TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX order_events_order ON order_events (order_id, id);
