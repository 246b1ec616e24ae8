-- 023_payment_mail.sql: the e-mails of the payment gateways (issue 12;
-- core/shop/refunds.c, core/shop/orders.c; docs/payments.md): the member's
-- refund notice, sent whenever money of an order goes back (a staff
-- refund, a provider's refund event, a manual refund, a lost dispute), and
-- the staff's dispute alert (opened, lost), to owners and finance.

INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES
('order_refunded', 'transactional', NULL,
 'Sent to the member when money of an order goes back (in part or in full).',
 '["order_id","package","amount_micros","refunded_micros","price_micros","currency","fully_refunded","site_url","recipient"]',
 '{"order_id":1042,"package":"S19 XP 30 days","amount_micros":50000000,"refunded_micros":50000000,"price_micros":250000000,"currency":"USD","fully_refunded":false}'),
('dispute_alert', 'transactional', NULL,
 'To owners and finance: a buyer opened a dispute (chargeback) on an order, or a dispute was lost.',
 '["reason","order_id","gateway","amount_micros","currency","detail","site_url","recipient"]',
 '{"reason":"dispute_opened","order_id":1042,"gateway":"stripe","amount_micros":250000000,"currency":"USD","detail":"event stripe:evt_1: the buyer disputed 250.00 USD of order 1042; its commissions are held until the dispute closes. Answer the dispute at the provider."}');

INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES
('order_refunded', 'en', 'Refund for order {{order_id}}',
'Hello,

{{amount_micros}} of order {{order_id}} ({{package}}) has been refunded to the way you paid.
{{#if fully_refunded}}
The order is now refunded in full and its contract has ended.{{else}}
Refunded so far: {{refunded_micros}} of {{price_micros}}.{{/if}}

Depending on your bank or wallet, the money can take a few days to show.

DeepMine
',
'<p>Hello,</p>
<p><b>{{amount_micros}}</b> of order {{order_id}} ({{package}}) has been refunded to the way you paid.</p>
{{#if fully_refunded}}<p>The order is now refunded in full and its contract has ended.</p>{{else}}<p>Refunded so far: {{refunded_micros}} of {{price_micros}}.</p>{{/if}}
<p>Depending on your bank or wallet, the money can take a few days to show.</p>
<p>DeepMine</p>
', 1, NULL, 0),
('dispute_alert', 'en', '[DeepMine] dispute on order {{order_id}}: {{reason}}',
'{{detail}}

Order: {{order_id}} ({{gateway}}), {{amount_micros}}

{{site_url}}
',
'<p>{{detail}}</p>
<p>Order: {{order_id}} ({{gateway}}), {{amount_micros}}</p>
<p><a href="{{site_url}}">{{site_url}}</a></p>
', 1, NULL, 0);

INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body,
                                     updated_by, restored_from, created_at)
SELECT key, locale, version, subject, text_body, html_body, updated_by, NULL, updated_at
FROM email_templates WHERE key IN ('order_refunded', 'dispute_alert');
