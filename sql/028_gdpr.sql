-- 028_gdpr.sql: members' data (issue 15): erasure requests, and the
-- e-mails of the erasure confirmation and the owners' daily digest.
-- core/staff/gdpr.c; docs/operations.md "Members' data".

-- One row per erasure request. The confirmation link's token is stored
-- hashed (core/base/token), single use: confirmed_at set once.
-- status: unconfirmed (link sent) -> scheduled (confirmed; due_at is the
-- end of DeepMineErasureDelay) -> done (the erasure job or an owner ran
-- it), or cancelled (by the member or an owner) at any point before done.
CREATE TABLE erasure_requests (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    status TEXT NOT NULL CHECK (status IN ('unconfirmed', 'scheduled', 'done', 'cancelled')),
    token_hash TEXT NOT NULL UNIQUE,
    token_expires_at BIGINT NOT NULL,
    requested_at BIGINT NOT NULL,
    confirmed_at BIGINT,
    due_at BIGINT,
    finished_at BIGINT,               -- done or cancelled
    finished_by TEXT                  -- 'member', 'job:erasure', 'staff:<id>'
);
CREATE INDEX erasure_requests_user ON erasure_requests (user_id, id);
CREATE INDEX erasure_requests_due ON erasure_requests (status, due_at);

INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES
('erasure_confirm', 'transactional', NULL,
 'Sent when a member asks for the erasure of the account: the link that confirms it.',
 '["email","url","token","expires_in_hours","delay_days","site_url","recipient"]',
 '{"email":"ada@example.com","url":"https://deepmine.example/confirm-erasure?token=abc","token":"abc","expires_in_hours":24,"delay_days":14}'),
('staff_digest', 'transactional', NULL,
 'To owners, daily when DeepMineStaffDigest is on: the day before in figures.',
 '["day","signups","revenue_micros","currency","orders_review","kyc_waiting","withdrawals_waiting","jobs_dead","errors","site_url","recipient"]',
 '{"day":"2026-12-05","signups":12,"revenue_micros":2500000000,"currency":"USD","orders_review":1,"kyc_waiting":3,"withdrawals_waiting":2,"jobs_dead":0,"errors":4}');

INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES
('erasure_confirm', 'en', 'Confirm the erasure of your account',
'Hello,

someone (we hope you) asked to erase the DeepMine account {{email}}. Confirm it here:

{{url}}

The link works for {{expires_in_hours}} hour(s) and only once. Once confirmed, the account is erased after {{delay_days}} day(s); until then you can cancel it from your account. If you did not ask, ignore this message: nothing happens.

DeepMine
',
'<p>Hello,</p>
<p>someone (we hope you) asked to erase the DeepMine account <b>{{email}}</b>.</p>
<p><a href="{{url}}">Confirm the erasure</a></p>
<p>The link works for {{expires_in_hours}} hour(s) and only once. Once confirmed, the account is erased after {{delay_days}} day(s); until then you can cancel it from your account. If you did not ask, ignore this message: nothing happens.</p>
<p>DeepMine</p>
', 1, NULL, 0),
('staff_digest', 'en', '[DeepMine] digest for {{day}}',
'DeepMine, {{day}} (UTC)

Sign-ups: {{signups}}
Revenue: {{revenue_micros}} {{currency}}
Orders needing review: {{orders_review}}
KYC cases waiting: {{kyc_waiting}}
Withdrawals waiting: {{withdrawals_waiting}}
Dead jobs: {{jobs_dead}}
Errors: {{errors}}

{{site_url}}
',
'<p>DeepMine, {{day}} (UTC)</p>
<ul><li>Sign-ups: {{signups}}</li><li>Revenue: {{revenue_micros}} {{currency}}</li>
<li>Orders needing review: {{orders_review}}</li><li>KYC cases waiting: {{kyc_waiting}}</li>
<li>Withdrawals waiting: {{withdrawals_waiting}}</li><li>Dead jobs: {{jobs_dead}}</li>
<li>Errors: {{errors}}</li></ul>
<p><a href="{{site_url}}">{{site_url}}</a></p>
', 1, NULL, 0);

INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body,
                                     updated_by, restored_from, created_at)
SELECT key, locale, version, subject, text_body, html_body, updated_by, NULL, updated_at
FROM email_templates WHERE key IN ('erasure_confirm', 'staff_digest');
