-- 004_payment_events.sql: every verified payment webhook, once.
-- A provider retries a delivery until it gets a 2xx, and may deliver an
-- event twice: the (plugin, event_id) pair is UNIQUE, the insert is
-- ON CONFLICT DO NOTHING, so a replay changes nothing. Only events whose
-- signature the plugin verified are written; raw_body keeps the exact
-- bytes that were verified. processed_at and outcome are set by the code
-- that acts on the event (orders), in the transaction that records it.

CREATE TABLE payment_events (
    id INTEGER PRIMARY KEY,
    plugin TEXT NOT NULL,                 -- DeepMinePlugin's <name>, e.g. 'sandbox'
    event_id TEXT NOT NULL CHECK (length(event_id) BETWEEN 1 AND 255),
    status TEXT NOT NULL
        CHECK (status IN ('paid', 'failed', 'refunded', 'expired', 'ignored')),
    order_ref TEXT,                       -- our order id as the provider echoes it; NULL if none
    provider_ref TEXT,                    -- the provider's checkout/charge reference; NULL if none
    amount_micros INTEGER NOT NULL CHECK (amount_micros >= 0),
    currency TEXT CHECK (currency IS NULL OR length(currency) = 3),
    raw_body TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    processed_at INTEGER,
    outcome TEXT,
    UNIQUE (plugin, event_id)
);
CREATE INDEX payment_events_order ON payment_events (order_ref, received_at);
CREATE INDEX payment_events_provider_ref ON payment_events (plugin, provider_ref);
