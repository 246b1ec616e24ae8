-- 012_mail.sql: e-mail templates (editable by staff, versioned), what each
-- kind of message may say (its declared variables) and whether it is
-- transactional or marketing, members' preferences, the suppression list,
-- delivery reports from mailer webhooks, and what the mail job records on
-- mail_queue (core/mail.c, core/mail_templates.c, core/mail_prefs.c,
-- core/template.c; docs/operations.md "E-mail").

-- One row per kind of message the platform sends (the `template` of
-- mail_queue). Transactional messages always go; marketing ones belong to
-- a category a member can unsubscribe from. `variables` is the JSON array
-- of names a template may use (checked when staff save it); `sample` a
-- JSON object of example values for previews.
CREATE TABLE email_template_defs (
    key TEXT PRIMARY KEY,
    class TEXT NOT NULL CHECK (class IN ('transactional', 'marketing')),
    category TEXT,
    description TEXT NOT NULL,
    variables TEXT NOT NULL,
    sample TEXT NOT NULL,
    CHECK ((class = 'marketing') = (category IS NOT NULL))
);

-- The current text of each template per locale. updated_by NULL: the
-- migration or the console.
CREATE TABLE email_templates (
    key TEXT NOT NULL REFERENCES email_template_defs (key),
    locale TEXT NOT NULL,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1),
    updated_by INTEGER REFERENCES staff (id),
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (key, locale)
);

-- Every version ever saved, the current one included: a restore copies an
-- old row into a new version (history is never rewritten).
CREATE TABLE email_template_versions (
    key TEXT NOT NULL REFERENCES email_template_defs (key),
    locale TEXT NOT NULL,
    version INTEGER NOT NULL,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT NOT NULL,
    updated_by INTEGER REFERENCES staff (id),
    restored_from INTEGER,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (key, locale, version)
);

-- Addresses nothing is sent to: hard bounces and spam complaints reported
-- by the mailer's webhooks, or added by staff. email_key is the whole
-- address lower-cased (as users.email_key).
CREATE TABLE email_suppressions (
    id INTEGER PRIMARY KEY,
    email_key TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('bounced', 'complained', 'manual')),
    source TEXT,
    event_id TEXT,
    created_at BIGINT NOT NULL
);

-- A member's choice per marketing category; no row means subscribed.
-- (users.marketing_opt_in of 002 is not read: this table is the record.)
CREATE TABLE email_preferences (
    user_id INTEGER NOT NULL REFERENCES users (id),
    category TEXT NOT NULL,
    subscribed INTEGER NOT NULL CHECK (subscribed IN (0, 1)),
    source TEXT NOT NULL CHECK (source IN ('member', 'unsubscribe_link')),
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, category)
);

-- Verified delivery reports from mailer webhooks, once per (plugin, event
-- id): a replayed event changes nothing.
CREATE TABLE mail_events (
    id INTEGER PRIMARY KEY,
    plugin TEXT NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('delivered', 'bounced', 'complained', 'other')),
    message_id TEXT,
    recipient TEXT,
    mail_id INTEGER,
    received_at BIGINT NOT NULL,
    UNIQUE (plugin, event_id)
);

-- What the mail job and the webhooks record on each message.
ALTER TABLE mail_queue ADD COLUMN sent_at BIGINT;
ALTER TABLE mail_queue ADD COLUMN delivery TEXT;
ALTER TABLE mail_queue ADD COLUMN delivery_at BIGINT;
CREATE INDEX mail_queue_status_id ON mail_queue (status, id);
CREATE INDEX mail_queue_provider_id ON mail_queue (provider_message_id);
CREATE INDEX mail_queue_updated ON mail_queue (updated_at);
-- The daily commission digest reads one day of commissions.
CREATE INDEX commissions_created ON commissions (created_at);

-- ---- the definitions ----

INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES
('email_verification', 'transactional', NULL,
 'Sent at registration: the link that verifies the address.',
 '["email","url","token","expires_in_hours","site_url","recipient"]',
 '{"email":"ada@example.com","url":"https://deepmine.example/verify-email?token=abc","token":"abc","expires_in_hours":48}'),
('password_reset', 'transactional', NULL,
 'Sent when a member asks to reset the password.',
 '["email","url","token","expires_in_hours","site_url","recipient"]',
 '{"email":"ada@example.com","url":"https://deepmine.example/reset-password?token=abc","token":"abc","expires_in_hours":1}'),
('welcome', 'transactional', NULL,
 'Sent once a member has verified the e-mail address.',
 '["email","referral_code","site_url","recipient"]',
 '{"email":"ada@example.com","referral_code":"ADA2026X"}'),
('order_paid', 'transactional', NULL,
 'Sent when an order is paid: the receipt.',
 '["order_id","contract_id","package","amount_micros","currency","expires_at","site_url","recipient"]',
 '{"order_id":1042,"contract_id":311,"package":"S19 XP 30 days","amount_micros":250000000,"currency":"USD","expires_at":"2026-12-25T07:00:00Z"}'),
('contract_started', 'transactional', NULL,
 'Sent when a paid order starts its mining contract.',
 '["contract_id","order_id","package","hashrate_ths","daily_yield_micros","currency","duration_days","started_at","expires_at","site_url","recipient"]',
 '{"contract_id":311,"order_id":1042,"package":"S19 XP 30 days","hashrate_ths":140,"daily_yield_micros":9500000,"currency":"USD","duration_days":30,"started_at":"2026-11-25T07:00:00Z","expires_at":"2026-12-25T07:00:00Z"}'),
('contract_expired', 'transactional', NULL,
 'Sent when a mining contract reaches its end.',
 '["contract_id","package","expired_at","earned_micros","currency","site_url","recipient"]',
 '{"contract_id":311,"package":"S19 XP 30 days","expired_at":"2026-12-25T07:00:00Z","earned_micros":285000000,"currency":"USD"}'),
('commission_digest', 'marketing', 'commission_digest',
 'Once a day, to members who received referral commissions that day.',
 '["day","count","total_micros","currency","site_url","recipient","unsubscribe_url"]',
 '{"day":"2026-11-25","count":3,"total_micros":12345678,"currency":"USD"}'),
('withdrawal_requested', 'transactional', NULL,
 'Sent when a member asks for a withdrawal.',
 '["id","amount_micros","currency","network","destination","status","txid","reason","requested_at","decided_at","site_url","recipient"]',
 '{"id":77,"amount_micros":50000000,"currency":"USD","network":"TRC20","destination":"TXyz","status":"pending","txid":null,"reason":null,"requested_at":"2026-11-25T07:00:00Z","decided_at":null}'),
('withdrawal_approved', 'transactional', NULL,
 'Sent when finance staff pay a withdrawal.',
 '["id","amount_micros","currency","network","destination","status","txid","reason","requested_at","decided_at","site_url","recipient"]',
 '{"id":77,"amount_micros":50000000,"currency":"USD","network":"TRC20","destination":"TXyz","status":"paid","txid":"0xabc","reason":null,"requested_at":"2026-11-25T07:00:00Z","decided_at":"2026-11-25T09:00:00Z"}'),
('withdrawal_rejected', 'transactional', NULL,
 'Sent when finance staff reject a withdrawal (the amount goes back to the wallet).',
 '["id","amount_micros","currency","network","destination","status","txid","reason","requested_at","decided_at","site_url","recipient"]',
 '{"id":77,"amount_micros":50000000,"currency":"USD","network":"TRC20","destination":"TXyz","status":"rejected","txid":null,"reason":"The destination address is not valid.","requested_at":"2026-11-25T07:00:00Z","decided_at":"2026-11-25T09:00:00Z"}'),
('kyc_approved', 'transactional', NULL,
 'Sent when the identity check is approved.',
 '["email","site_url","recipient"]',
 '{"email":"ada@example.com"}'),
('kyc_rejected', 'transactional', NULL,
 'Sent when the identity check is rejected.',
 '["email","reason","site_url","recipient"]',
 '{"email":"ada@example.com","reason":"The document photo is not readable."}'),
('staff_alert', 'transactional', NULL,
 'To owners (and finance for money matters): a job is dead, an order needs review.',
 '["reason","detail","order_id","job","period","error","site_url","recipient"]',
 '{"reason":"job_dead","detail":"job accrual, period 2026-11-25T06:00:00Z, failed 8 times: database is locked","job":"accrual","period":"2026-11-25T06:00:00Z","error":"database is locked"}');

-- ---- the English texts (version 1) ----

INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES
('email_verification', 'en', 'Confirm your e-mail address',
'Hello,

please confirm that {{email}} is your address by opening this link:

{{url}}

The link works for {{expires_in_hours}} hours. If you did not create an account, ignore this message.

DeepMine
',
'<p>Hello,</p>
<p>please confirm that <b>{{email}}</b> is your address:</p>
<p><a href="{{url}}">Confirm my address</a></p>
<p>The link works for {{expires_in_hours}} hours. If you did not create an account, ignore this message.</p>
<p>DeepMine</p>
', 1, NULL, 0),
('password_reset', 'en', 'Reset your password',
'Hello,

someone (we hope you) asked to reset the password of {{email}}. Choose a new one here:

{{url}}

The link works for {{expires_in_hours}} hour(s) and only once. If you did not ask, ignore this message: your password stays as it is.

DeepMine
',
'<p>Hello,</p>
<p>someone (we hope you) asked to reset the password of <b>{{email}}</b>.</p>
<p><a href="{{url}}">Choose a new password</a></p>
<p>The link works for {{expires_in_hours}} hour(s) and only once. If you did not ask, ignore this message: your password stays as it is.</p>
<p>DeepMine</p>
', 1, NULL, 0),
('welcome', 'en', 'Welcome to DeepMine',
'Hello,

your address {{email}} is confirmed: welcome to DeepMine.

Your referral code is {{referral_code}}. Members who register with it join your network.

{{site_url}}

DeepMine
',
'<p>Hello,</p>
<p>your address <b>{{email}}</b> is confirmed: welcome to DeepMine.</p>
<p>Your referral code is <b>{{referral_code}}</b>. Members who register with it join your network.</p>
<p><a href="{{site_url}}">{{site_url}}</a></p>
<p>DeepMine</p>
', 1, NULL, 0),
('order_paid', 'en', 'Payment received for order {{order_id}}',
'Hello,

we received {{amount_micros}} for order {{order_id}} ({{package}}).

Your contract {{contract_id}} runs until {{expires_at}}.

DeepMine
',
'<p>Hello,</p>
<p>we received <b>{{amount_micros}}</b> for order {{order_id}} ({{package}}).</p>
<p>Your contract {{contract_id}} runs until {{expires_at}}.</p>
<p>DeepMine</p>
', 1, NULL, 0),
('contract_started', 'en', 'Your mining contract {{contract_id}} has started',
'Hello,

your contract {{contract_id}} ({{package}}, {{hashrate_ths}} TH/s) started at {{started_at}}.

It yields about {{daily_yield_micros}} a day for {{duration_days}} days, until {{expires_at}}. Earnings are credited to your balance every hour.

DeepMine
',
'<p>Hello,</p>
<p>your contract {{contract_id}} (<b>{{package}}</b>, {{hashrate_ths}} TH/s) started at {{started_at}}.</p>
<p>It yields about <b>{{daily_yield_micros}}</b> a day for {{duration_days}} days, until {{expires_at}}. Earnings are credited to your balance every hour.</p>
<p>DeepMine</p>
', 1, NULL, 0),
('contract_expired', 'en', 'Your mining contract {{contract_id}} has ended',
'Hello,

your contract {{contract_id}} ({{package}}) ended at {{expired_at}}. It earned {{earned_micros}} in all.

DeepMine
',
'<p>Hello,</p>
<p>your contract {{contract_id}} (<b>{{package}}</b>) ended at {{expired_at}}. It earned <b>{{earned_micros}}</b> in all.</p>
<p>DeepMine</p>
', 1, NULL, 0),
('commission_digest', 'en', 'Your referral commissions of {{day}}',
'Hello,

on {{day}} you received {{count}} referral commission(s), {{total_micros}} in all.

You receive this summary because you have referral commissions. Unsubscribe: {{unsubscribe_url}}

DeepMine
',
'<p>Hello,</p>
<p>on {{day}} you received {{count}} referral commission(s), <b>{{total_micros}}</b> in all.</p>
<p style="font-size:small">You receive this summary because you have referral commissions. <a href="{{unsubscribe_url}}">Unsubscribe</a></p>
<p>DeepMine</p>
', 1, NULL, 0),
('withdrawal_requested', 'en', 'Withdrawal {{id}} requested',
'Hello,

we received your request to withdraw {{amount_micros}} to {{destination}} ({{network}}). Our finance team reviews it shortly.

DeepMine
',
'<p>Hello,</p>
<p>we received your request to withdraw <b>{{amount_micros}}</b> to {{destination}} ({{network}}). Our finance team reviews it shortly.</p>
<p>DeepMine</p>
', 1, NULL, 0),
('withdrawal_approved', 'en', 'Withdrawal {{id}} paid',
'Hello,

your withdrawal of {{amount_micros}} to {{destination}} ({{network}}) was paid.{{#if txid}} Transaction: {{txid}}{{/if}}

DeepMine
',
'<p>Hello,</p>
<p>your withdrawal of <b>{{amount_micros}}</b> to {{destination}} ({{network}}) was paid.</p>
{{#if txid}}<p>Transaction: <code>{{txid}}</code></p>{{/if}}
<p>DeepMine</p>
', 1, NULL, 0),
('withdrawal_rejected', 'en', 'Withdrawal {{id}} rejected',
'Hello,

your withdrawal of {{amount_micros}} was rejected and the amount is back in your balance.{{#if reason}}

Reason: {{reason}}{{/if}}

DeepMine
',
'<p>Hello,</p>
<p>your withdrawal of <b>{{amount_micros}}</b> was rejected and the amount is back in your balance.</p>
{{#if reason}}<p>Reason: {{reason}}</p>{{/if}}
<p>DeepMine</p>
', 1, NULL, 0),
('kyc_approved', 'en', 'Your identity is verified',
'Hello,

your identity check is approved: you can now request withdrawals.

DeepMine
',
'<p>Hello,</p>
<p>your identity check is approved: you can now request withdrawals.</p>
<p>DeepMine</p>
', 1, NULL, 0),
('kyc_rejected', 'en', 'Your identity check was not approved',
'Hello,

we could not approve your identity check.{{#if reason}} Reason: {{reason}}{{/if}} You can send new documents from your account page.

DeepMine
',
'<p>Hello,</p>
<p>we could not approve your identity check.{{#if reason}} Reason: {{reason}}{{/if}}</p>
<p>You can send new documents from your account page.</p>
<p>DeepMine</p>
', 1, NULL, 0),
('staff_alert', 'en', '[DeepMine] staff alert: {{reason}}',
'{{detail}}
{{#if order_id}}
Order: {{order_id}}{{/if}}{{#if job}}
Job: {{job}}, period {{period}}
Error: {{error}}{{/if}}

{{site_url}}
',
'<p>{{detail}}</p>
{{#if order_id}}<p>Order: {{order_id}}</p>{{/if}}
{{#if job}}<p>Job: {{job}}, period {{period}}</p><p>Error: <code>{{error}}</code></p>{{/if}}
<p><a href="{{site_url}}">{{site_url}}</a></p>
', 1, NULL, 0);

INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body,
                                     updated_by, restored_from, created_at)
SELECT key, locale, version, subject, text_body, html_body, updated_by, NULL, updated_at
FROM email_templates;
