-- 020_kyc_events.sql: what KYC providers (Sumsub, iDenfy) told us, once.
--
-- kyc_events: every verified provider event (webhook or the polling job's
-- answer), UNIQUE (plugin, event_id): a redelivered or replayed event is
-- recorded once and applied once. outcome says what it did: applied (the
-- member's status changed or was confirmed), stale (older than the newest
-- event applied for the member: ignored), recorded (kept, no status
-- change: a pending or needs-review event that may not undo a decision),
-- ignored (a verified event we do not act on), unknown_member.
--
-- kyc_provider_state: per member, the provider case in use: the plugin,
-- the provider's reference (Sumsub applicant id, iDenfy scanRef) the
-- polling job asks about, the verdict last applied, the provider time of
-- the newest applied event (newest_ms: an older event is stale), since
-- when the case is pending (NULL: decided or in staff review) and when the
-- provider was last asked.

CREATE TABLE kyc_events (
    id INTEGER PRIMARY KEY,
    plugin TEXT NOT NULL,
    event_id TEXT NOT NULL CHECK (length(event_id) BETWEEN 1 AND 255),
    user_id INTEGER,
    status TEXT NOT NULL CHECK (status IN ('approved', 'rejected', 'needs_review', 'pending',
                                           'resubmission', 'expired', 'ignored')),
    provider_ref TEXT,
    occurred_at_ms INTEGER NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('webhook', 'poll', 'start')),
    outcome TEXT NOT NULL CHECK (outcome IN ('applied', 'stale', 'recorded', 'ignored',
                                             'unknown_member')),
    received_at INTEGER NOT NULL,
    UNIQUE (plugin, event_id)
);
CREATE INDEX kyc_events_user ON kyc_events (user_id, occurred_at_ms);

CREATE TABLE kyc_provider_state (
    user_id INTEGER PRIMARY KEY REFERENCES users (id),
    plugin TEXT NOT NULL,
    provider_ref TEXT,
    verdict TEXT NOT NULL,
    newest_ms INTEGER NOT NULL DEFAULT 0,
    pending_since INTEGER,
    polled_at INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE INDEX kyc_provider_state_pending ON kyc_provider_state (pending_since)
    WHERE pending_since IS NOT NULL;
