-- 002_members.sql: members, the referral tree, sessions and tokens, the
-- mail queue, staff accounts and the audit log.

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,                  -- normalised: trimmed, domain lower-cased
    email_key TEXT NOT NULL UNIQUE,       -- the whole address lower-cased: one account per address
    name TEXT,
    password_hash TEXT NOT NULL,          -- $argon2id$… (or $2b$/$2y$ imported, upgraded at login)
    referral_code TEXT NOT NULL UNIQUE,
    referrer_id INTEGER REFERENCES users (id),
    depth INTEGER NOT NULL DEFAULT 0,     -- distance from the root of its tree
    vip_level INTEGER NOT NULL DEFAULT 1 CHECK (vip_level BETWEEN 1 AND 10),
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    token_version INTEGER NOT NULL DEFAULT 0, -- bumped to kill live access tokens
    email_verified_at INTEGER,
    kyc_status TEXT NOT NULL DEFAULT 'none',
    marketing_opt_in INTEGER NOT NULL DEFAULT 0,
    terms_version TEXT NOT NULL,
    terms_accepted_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX users_referrer ON users (referrer_id, id);
CREATE INDEX users_status ON users (status, id);

-- Every acceptance of a legal document: the legal record (who, which
-- version and text hash, when, from which address).
CREATE TABLE legal_acceptances (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    document TEXT NOT NULL CHECK (document IN ('terms', 'privacy')),
    version TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    ip TEXT NOT NULL,
    accepted_at INTEGER NOT NULL
);
CREATE INDEX legal_acceptances_user ON legal_acceptances (user_id, document, accepted_at);

-- The upline of each member to 10 levels, written once at registration, so
-- a commission split or "members at level k below me" is one indexed read.
CREATE TABLE user_ancestors (
    user_id INTEGER NOT NULL REFERENCES users (id),
    depth INTEGER NOT NULL CHECK (depth BETWEEN 1 AND 10),
    ancestor_id INTEGER NOT NULL REFERENCES users (id),
    PRIMARY KEY (user_id, depth)
);
CREATE INDEX user_ancestors_down ON user_ancestors (ancestor_id, depth, user_id);

-- Downline counters, kept in the registration transaction: members at each
-- of the 10 levels below, and the whole downline (all depths).
CREATE TABLE referral_counts (
    user_id INTEGER PRIMARY KEY REFERENCES users (id),
    l1 INTEGER NOT NULL DEFAULT 0, l2 INTEGER NOT NULL DEFAULT 0,
    l3 INTEGER NOT NULL DEFAULT 0, l4 INTEGER NOT NULL DEFAULT 0,
    l5 INTEGER NOT NULL DEFAULT 0, l6 INTEGER NOT NULL DEFAULT 0,
    l7 INTEGER NOT NULL DEFAULT 0, l8 INTEGER NOT NULL DEFAULT 0,
    l9 INTEGER NOT NULL DEFAULT 0, l10 INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0
);

-- Member refresh tokens: opaque, stored hashed, rotated on every use. A
-- family is one login; presenting a rotated token revokes the family.
CREATE TABLE refresh_tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    family_id TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    rotated_at INTEGER,
    revoked_at INTEGER
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

-- Single-use e-mail tokens (verification, password reset), stored hashed.
CREATE TABLE email_tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    purpose TEXT NOT NULL CHECK (purpose IN ('verify', 'reset')),
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX email_tokens_user ON email_tokens (user_id, purpose);

-- Outgoing mail, written in the transaction of the event that causes it;
-- delivered later by the mailer job.
CREATE TABLE mail_queue (
    id INTEGER PRIMARY KEY,
    recipient TEXT NOT NULL,
    template TEXT NOT NULL,
    variables TEXT NOT NULL,              -- JSON object
    idempotency_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'suppressed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    provider_message_id TEXT,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX mail_queue_due ON mail_queue (status, next_attempt_at);
CREATE INDEX mail_queue_recipient ON mail_queue (recipient, id);

CREATE TABLE staff (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'finance', 'support', 'kyc')),
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Staff sessions: opaque tokens in the dm_admin cookie, stored hashed.
CREATE TABLE staff_sessions (
    id INTEGER PRIMARY KEY,
    staff_id INTEGER NOT NULL REFERENCES staff (id),
    token_hash TEXT NOT NULL UNIQUE,
    ip TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX staff_sessions_staff ON staff_sessions (staff_id);

-- Every staff action, written in the same transaction as the action.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    staff_id INTEGER REFERENCES staff (id),  -- NULL: deepminectl (operator at the console)
    action TEXT NOT NULL,
    target_type TEXT,
    target_id TEXT,
    before_json TEXT,
    after_json TEXT,
    ip TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (created_at, id);
CREATE INDEX audit_log_target ON audit_log (target_type, target_id, id);

-- Staff search over members: full text on e-mail, name and referral code.
-- (FTS5 DDL is SQLite's; a PostgreSQL driver would use a tsvector index.)
CREATE VIRTUAL TABLE users_fts USING fts5 (
    email, name, referral_code,
    content = 'users', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);
CREATE TRIGGER users_fts_ai AFTER INSERT ON users BEGIN
    INSERT INTO users_fts (rowid, email, name, referral_code)
    VALUES (new.id, new.email, new.name, new.referral_code);
END;
CREATE TRIGGER users_fts_ad AFTER DELETE ON users BEGIN
    INSERT INTO users_fts (users_fts, rowid, email, name, referral_code)
    VALUES ('delete', old.id, old.email, old.name, old.referral_code);
END;
CREATE TRIGGER users_fts_au AFTER UPDATE OF email, name, referral_code ON users BEGIN
    INSERT INTO users_fts (users_fts, rowid, email, name, referral_code)
    VALUES ('delete', old.id, old.email, old.name, old.referral_code);
    INSERT INTO users_fts (rowid, email, name, referral_code)
    VALUES (new.id, new.email, new.name, new.referral_code);
END;
