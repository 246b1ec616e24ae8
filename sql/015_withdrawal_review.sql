-- 015_withdrawal_review.sql: a pending withdrawal held for review
-- (core/withdrawals.c, docs/decisions.md). When a clawback takes a
-- member's wallet into debt, that member's pending withdrawals are marked:
-- held_at (when) and held_reason (the debt and the transfer that made it).
-- The status stays 'pending'; finance cannot approve while the wallet is
-- in debt, and sees the mark in the queue. The mark is kept after the
-- decision, as the record of why it was looked at.
ALTER TABLE withdrawals ADD COLUMN held_at BIGINT;
ALTER TABLE withdrawals ADD COLUMN held_reason TEXT;
