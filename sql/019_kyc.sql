-- 019_kyc.sql — identity checks: one case per member (personal details,
-- the provider in use, the reason shown, the times the retention job
-- reads) and the documents on file. A document's bytes are never here:
-- they are in the storage plugin, encrypted (secretstream) under a key of
-- their own; this table keeps that key wrapped under a key derived from
-- DeepMineSecretKeyFile, with the id of the secret that wrapped it
-- (key_id, so `deepminectl kyc rekey` can resume where it stopped).

CREATE TABLE kyc_cases (
    user_id INTEGER PRIMARY KEY REFERENCES users (id),
    legal_name TEXT,
    date_of_birth TEXT,      -- YYYY-MM-DD
    country TEXT,            -- ISO 3166-1 alpha-2
    address_line1 TEXT,
    address_line2 TEXT,
    city TEXT,
    postal_code TEXT,
    provider TEXT,           -- the KYC plugin's name; NULL: manual review
    provider_ref TEXT,
    reason TEXT,             -- the last decision's reason, safe to show
    submitted_at BIGINT,     -- the last hand-in (pending since)
    decided_at BIGINT,       -- the last approve / reject / resubmission
    closed_at BIGINT,        -- the account's closure (retention counts from it)
    updated_at BIGINT NOT NULL
);

CREATE TABLE kyc_documents (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL
        CHECK (kind IN ('id_front', 'id_back', 'selfie', 'proof_of_address')),
    content_type TEXT NOT NULL
        CHECK (content_type IN ('image/jpeg', 'image/png', 'application/pdf')),
    size BIGINT NOT NULL CHECK (size > 0),   -- plaintext bytes
    sha256 TEXT NOT NULL,                    -- of the plaintext, hex
    storage_key TEXT NOT NULL UNIQUE,
    wrapped_key TEXT NOT NULL,               -- the document key, wrapped (aead), hex
    wrap_nonce TEXT NOT NULL,                -- hex
    key_id TEXT NOT NULL,                    -- which secret wrapped it (16 hex)
    created_at BIGINT NOT NULL,
    UNIQUE (user_id, kind)
);
CREATE INDEX kyc_documents_key_id ON kyc_documents (key_id, id);

CREATE INDEX users_kyc_status ON users (kyc_status, id);

INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES
('kyc_resubmission', 'transactional', NULL,
 'Sent when the identity check needs new documents (the member may try again).',
 '["email","reason","site_url","recipient"]',
 '{"email":"ada@example.com","reason":"The photo of the back of the card is blurred."}');

INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES
('kyc_resubmission', 'en', 'Your identity check needs new documents',
'Hello,

we need new documents to finish your identity check.{{#if reason}} Reason: {{reason}}{{/if}} You can upload them and submit again from your account page.

DeepMine
',
'<p>Hello,</p>
<p>we need new documents to finish your identity check.{{#if reason}} Reason: {{reason}}{{/if}}</p>
<p>You can upload them and submit again from your account page.</p>
<p>DeepMine</p>
', 1, NULL, 0);

INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body,
                                     updated_by, restored_from, created_at)
SELECT key, locale, version, subject, text_body, html_body, updated_by, NULL, updated_at
FROM email_templates WHERE key = 'kyc_resubmission';
