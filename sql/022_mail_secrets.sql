-- 022_mail_secrets.sql: no usable token left in clear in mail_queue (issue 13,
-- "Defects found when the platform was attacked"; core/mail/mailq.c,
-- docs/security.md "Hardening").
--
-- From this version on, verification and password-reset messages keep their
-- token and link encrypted ("sealed", under a key derived from
-- DeepMineSecretKeyFile, which SQL cannot reach) and the mail job removes
-- them once the message is sent. Rows written before hold them in clear:
-- - sent or suppressed messages no longer need them: removed here;
-- - failed ones older than the longest token life (48 hours) hold only dead
--   tokens: removed too;
-- - queued, sending and recent failed ones keep them until they are sent (the
--   mail job then removes the clear token and link as well).
UPDATE mail_queue
   SET variables = json_remove(variables, '$.token', '$.url')
 WHERE template IN ('email_verification', 'password_reset')
   AND json_valid(variables)
   AND (status IN ('sent', 'suppressed')
        OR (status = 'failed' AND created_at < CAST(strftime('%s', 'now') AS INTEGER) - 172800));

-- Every member request checks that its access token's login (refresh
-- family) still has a token that was not revoked (core/members/members.c,
-- member_get_live): answered from this index alone, one seek.
CREATE INDEX refresh_tokens_live_family ON refresh_tokens (family_id)
 WHERE revoked_at IS NULL;
