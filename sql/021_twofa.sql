-- 021_twofa.sql: two-factor sign-in (members and staff), the sessions a
-- member can list and end, and the withdrawal protections: an address
-- book confirmed by e-mail, and a lock after security changes
-- (core/members/twofa.c, core/members/members.c, core/staff/staff.c,
-- core/withdrawals/addresses.c; docs/security.md).

-- One TOTP enrolment per member or staff account. secret_enc is the
-- secret encrypted under a key derived from DeepMineSecretKeyFile
-- (never the key itself); NULL while only a setup is pending
-- (pending_enc). last_step is the newest 30-second step a code was
-- accepted for: a code is good once (replay).
CREATE TABLE twofa (
    subject TEXT NOT NULL CHECK (subject IN ('member', 'staff')),
    owner_id INTEGER NOT NULL,
    secret_enc TEXT,
    pending_enc TEXT,
    pending_at BIGINT,
    enabled_at BIGINT,
    last_step BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, owner_id)
);

-- Single-use recovery codes, shown once at enrolment, stored hashed.
CREATE TABLE twofa_recovery (
    id INTEGER PRIMARY KEY,
    subject TEXT NOT NULL CHECK (subject IN ('member', 'staff')),
    owner_id INTEGER NOT NULL,
    code_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX twofa_recovery_owner ON twofa_recovery (subject, owner_id);

-- The short-lived answer of a password step when 2FA is on: an opaque
-- token (stored hashed) that POST .../login/2fa exchanges, with a code,
-- for a session. Dies after its TTL, its use, or too many wrong codes.
CREATE TABLE twofa_challenges (
    id INTEGER PRIMARY KEY,
    subject TEXT NOT NULL CHECK (subject IN ('member', 'staff')),
    owner_id INTEGER NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    ip TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    failures INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX twofa_challenges_expiry ON twofa_challenges (expires_at);

-- Where and with what a login (refresh family) was made or last used,
-- for GET /api/me/sessions.
ALTER TABLE refresh_tokens ADD COLUMN ip TEXT;
ALTER TABLE refresh_tokens ADD COLUMN user_agent TEXT;

-- Withdrawals are refused until this time (Unix seconds; 0: never locked)
-- after a password change or reset or a 2FA change.
ALTER TABLE users ADD COLUMN withdrawals_locked_until BIGINT NOT NULL DEFAULT 0;

-- A staff session that may only enrol in 2FA (owner and finance under
-- DeepMineStaff2FA required, before their first enrolment).
ALTER TABLE staff_sessions ADD COLUMN enrol_only INTEGER NOT NULL DEFAULT 0;

-- A member's withdrawal address book. A new address waits for the
-- e-mailed link (token_hash, single use, until token_expires_at); once
-- confirmed it is usable from usable_at (confirmation +
-- DeepMineWithdrawalAddressDelay). Removal is soft (deleted_at), so a
-- withdrawal keeps the address it went to.
CREATE TABLE withdrawal_addresses (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    network TEXT NOT NULL CHECK (network IN ('trc20', 'erc20', 'btc')),
    address TEXT NOT NULL CHECK (length(address) BETWEEN 1 AND 100),
    address_key TEXT NOT NULL,
    label TEXT,
    token_hash TEXT UNIQUE,
    token_expires_at BIGINT,
    created_at BIGINT NOT NULL,
    confirmed_at BIGINT,
    usable_at BIGINT,
    deleted_at BIGINT
);
CREATE UNIQUE INDEX withdrawal_addresses_live
    ON withdrawal_addresses (user_id, network, address_key) WHERE deleted_at IS NULL;
CREATE INDEX withdrawal_addresses_user ON withdrawal_addresses (user_id, id);

-- The book entry a withdrawal went to (NULL: requested before the book).
ALTER TABLE withdrawals ADD COLUMN address_id INTEGER REFERENCES withdrawal_addresses (id);

-- ---- the e-mails of these events ----

INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES
('withdrawal_address_added', 'transactional', NULL,
 'Sent when a member adds a withdrawal address: the link that confirms it.',
 '["email","address","network","url","token","expires_in_hours","delay_hours","site_url","recipient"]',
 '{"email":"ada@example.com","address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t","network":"trc20","url":"https://deepmine.example/confirm-address?token=abc","token":"abc","expires_in_hours":48,"delay_hours":24}'),
('withdrawal_address_confirmed', 'transactional', NULL,
 'Sent when a withdrawal address is confirmed: from when it can be used.',
 '["email","address","network","usable_at","site_url","recipient"]',
 '{"email":"ada@example.com","address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t","network":"trc20","usable_at":"2026-11-26T07:00:00Z"}'),
('password_changed', 'transactional', NULL,
 'Sent when a member''s password is changed or reset.',
 '["email","ip","site_url","recipient"]',
 '{"email":"ada@example.com","ip":"203.0.113.7"}'),
('twofa_enabled', 'transactional', NULL,
 'Sent when a member turns two-factor sign-in on.',
 '["email","site_url","recipient"]',
 '{"email":"ada@example.com"}'),
('twofa_disabled', 'transactional', NULL,
 'Sent when a member turns two-factor sign-in off.',
 '["email","site_url","recipient"]',
 '{"email":"ada@example.com"}'),
('withdrawals_locked', 'transactional', NULL,
 'Sent when a security change locks a member''s withdrawals for a while.',
 '["email","reason","until","site_url","recipient"]',
 '{"email":"ada@example.com","reason":"your password was changed","until":"2026-11-26T07:00:00Z"}');

INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES
('withdrawal_address_added', 'en', 'Confirm your new withdrawal address',
'Hello,

the address {{address}} ({{network}}) was added to the withdrawal address book of {{email}}. If this was you, confirm it here:

{{url}}

The link works for {{expires_in_hours}} hours and only once. Once confirmed, the address can be used after {{delay_hours}} hours. If you did not add it, do not click the link: change your password and turn on two-factor sign-in.

DeepMine
',
'<p>Hello,</p>
<p>the address <code>{{address}}</code> ({{network}}) was added to the withdrawal address book of <b>{{email}}</b>.</p>
<p><a href="{{url}}">Confirm this address</a></p>
<p>The link works for {{expires_in_hours}} hours and only once. Once confirmed, the address can be used after {{delay_hours}} hours. If you did not add it, do not click the link: change your password and turn on two-factor sign-in.</p>
<p>DeepMine</p>
', 1, NULL, 0),
('withdrawal_address_confirmed', 'en', 'Withdrawal address confirmed',
'Hello,

the withdrawal address {{address}} ({{network}}) is confirmed. It can be used from {{usable_at}}.

If you did not confirm it, contact us now.

DeepMine
',
'<p>Hello,</p>
<p>the withdrawal address <code>{{address}}</code> ({{network}}) is confirmed. It can be used from {{usable_at}}.</p>
<p>If you did not confirm it, contact us now.</p>
<p>DeepMine</p>
', 1, NULL, 0),
('password_changed', 'en', 'Your password was changed',
'Hello,

the password of {{email}} was changed{{#if ip}} (from {{ip}}){{/if}}. Every other session was signed out.

If this was not you, reset your password now and contact us.

DeepMine
',
'<p>Hello,</p>
<p>the password of <b>{{email}}</b> was changed{{#if ip}} (from {{ip}}){{/if}}. Every other session was signed out.</p>
<p>If this was not you, reset your password now and contact us.</p>
<p>DeepMine</p>
', 1, NULL, 0),
('twofa_enabled', 'en', 'Two-factor sign-in is on',
'Hello,

two-factor sign-in is now on for {{email}}. Keep your recovery codes somewhere safe.

If this was not you, contact us now.

DeepMine
',
'<p>Hello,</p>
<p>two-factor sign-in is now on for <b>{{email}}</b>. Keep your recovery codes somewhere safe.</p>
<p>If this was not you, contact us now.</p>
<p>DeepMine</p>
', 1, NULL, 0),
('twofa_disabled', 'en', 'Two-factor sign-in is off',
'Hello,

two-factor sign-in was turned off for {{email}}.

If this was not you, change your password and contact us now.

DeepMine
',
'<p>Hello,</p>
<p>two-factor sign-in was turned off for <b>{{email}}</b>.</p>
<p>If this was not you, change your password and contact us now.</p>
<p>DeepMine</p>
', 1, NULL, 0),
('withdrawals_locked', 'en', 'Withdrawals paused after a security change',
'Hello,

because {{reason}}, withdrawals from {{email}} are paused until {{until}}. This protects your balance if someone else made the change.

If this was not you, contact us now.

DeepMine
',
'<p>Hello,</p>
<p>because {{reason}}, withdrawals from <b>{{email}}</b> are paused until {{until}}. This protects your balance if someone else made the change.</p>
<p>If this was not you, contact us now.</p>
<p>DeepMine</p>
', 1, NULL, 0);

INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body,
                                     updated_by, restored_from, created_at)
SELECT key, locale, version, subject, text_body, html_body, updated_by, NULL, updated_at
FROM email_templates
WHERE key IN ('withdrawal_address_added', 'withdrawal_address_confirmed', 'password_changed',
              'twofa_enabled', 'twofa_disabled', 'withdrawals_locked');
