-- 001_init.sql on PostgreSQL: the whole schema of sql/001…028 as SQLite has it
-- after 028, translated by scripts/pg-schema-from-sqlite.py (INTEGER -> BIGINT,
-- SQLite's rowid rule for ids, triggers -> PL/pgSQL), plus the member search and
-- the SQLite functions the domain SQL uses. 002…028 are empty on PostgreSQL: no
-- PostgreSQL database existed before this schema (docs/decisions.md).
CREATE TABLE packages (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    hashrate_ghs BIGINT NOT NULL CHECK (hashrate_ghs > 0),
    price_micros BIGINT NOT NULL CHECK (price_micros > 0),
    daily_yield_micros BIGINT NOT NULL CHECK (daily_yield_micros >= 0),
    duration_days BIGINT NOT NULL CHECK (duration_days > 0),
    currency TEXT NOT NULL DEFAULT 'USD' CHECK (length(currency) = 3),
    active BIGINT NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    sort_order BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
, yield_mode TEXT NOT NULL DEFAULT 'fixed'
    CHECK (yield_mode IN ('pool', 'fixed')), fee_bp BIGINT NOT NULL DEFAULT 0
    CHECK (fee_bp BETWEEN 0 AND 10000));
CREATE TABLE catalogue_state (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
CREATE TABLE users (
    id BIGINT PRIMARY KEY,
    email TEXT NOT NULL,                  
    email_key TEXT NOT NULL UNIQUE,       
    name TEXT,
    password_hash TEXT NOT NULL,          
    referral_code TEXT NOT NULL UNIQUE,
    referrer_id BIGINT REFERENCES users (id),
    depth BIGINT NOT NULL DEFAULT 0,     
    vip_level BIGINT NOT NULL DEFAULT 1 CHECK (vip_level BETWEEN 1 AND 10),
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    token_version BIGINT NOT NULL DEFAULT 0, 
    email_verified_at BIGINT,
    kyc_status TEXT NOT NULL DEFAULT 'none',
    marketing_opt_in BIGINT NOT NULL DEFAULT 0,
    terms_version TEXT NOT NULL,
    terms_accepted_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
, withdrawals_locked_until BIGINT NOT NULL DEFAULT 0);
CREATE TABLE legal_acceptances (
    id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    document TEXT NOT NULL CHECK (document IN ('terms', 'privacy')),
    version TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    ip TEXT NOT NULL,
    accepted_at BIGINT NOT NULL
);
CREATE TABLE referral_counts (
    user_id BIGINT PRIMARY KEY REFERENCES users (id),
    l1 BIGINT NOT NULL DEFAULT 0, l2 BIGINT NOT NULL DEFAULT 0,
    l3 BIGINT NOT NULL DEFAULT 0, l4 BIGINT NOT NULL DEFAULT 0,
    l5 BIGINT NOT NULL DEFAULT 0, l6 BIGINT NOT NULL DEFAULT 0,
    l7 BIGINT NOT NULL DEFAULT 0, l8 BIGINT NOT NULL DEFAULT 0,
    l9 BIGINT NOT NULL DEFAULT 0, l10 BIGINT NOT NULL DEFAULT 0,
    total BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE refresh_tokens (
    id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    family_id TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    rotated_at BIGINT,
    revoked_at BIGINT
, ip TEXT, user_agent TEXT);
CREATE TABLE email_tokens (
    id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    purpose TEXT NOT NULL CHECK (purpose IN ('verify', 'reset')),
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE TABLE mail_queue (
    id BIGINT PRIMARY KEY,
    recipient TEXT NOT NULL,
    template TEXT NOT NULL,
    variables TEXT NOT NULL,              
    idempotency_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'suppressed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    provider_message_id TEXT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
, sent_at BIGINT, delivery TEXT, delivery_at BIGINT);
CREATE TABLE staff (
    id BIGINT PRIMARY KEY,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'finance', 'support', 'kyc')),
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE staff_sessions (
    id BIGINT PRIMARY KEY,
    staff_id BIGINT NOT NULL REFERENCES staff (id),
    token_hash TEXT NOT NULL UNIQUE,
    ip TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
, enrol_only BIGINT NOT NULL DEFAULT 0);
CREATE TABLE audit_log (
    id BIGINT PRIMARY KEY,
    staff_id BIGINT REFERENCES staff (id),  
    action TEXT NOT NULL,
    target_type TEXT,
    target_id TEXT,
    before_json TEXT,
    after_json TEXT,
    ip TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE accounts (
    id BIGINT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('wallet', 'held', 'system')),
    user_id BIGINT REFERENCES users (id),   
    code TEXT,                               
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    balance_micros BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    CHECK ((kind = 'system') = (user_id IS NULL)),
    CHECK ((kind = 'system') = (code IS NOT NULL))
);
CREATE TABLE transfers (
    id BIGINT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    debit_account_id BIGINT NOT NULL REFERENCES accounts (id),
    credit_account_id BIGINT NOT NULL REFERENCES accounts (id),
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    kind TEXT NOT NULL,
    reference TEXT,                          
    reverses_transfer_id BIGINT UNIQUE REFERENCES transfers (id),
    created_at BIGINT NOT NULL,
    CHECK (debit_account_id <> credit_account_id)
);
CREATE TABLE orders (
    id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    package_id BIGINT NOT NULL REFERENCES packages (id),
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'paid', 'failed', 'expired', 'needs_review', 'refunded')),
    gateway TEXT NOT NULL CHECK (length(gateway) BETWEEN 1 AND 64),  
    provider_ref TEXT,                     
    checkout_url TEXT,
    payment_transfer_id BIGINT REFERENCES transfers (id),  
    created_at BIGINT NOT NULL,
    paid_at BIGINT,
    updated_at BIGINT NOT NULL
, refunded_micros BIGINT NOT NULL DEFAULT 0
    CHECK (refunded_micros >= 0), payment_id TEXT, dispute TEXT
    CHECK (dispute IS NULL OR dispute IN ('open', 'won', 'lost')), review_reason TEXT, hold_until BIGINT);
CREATE TABLE vip_levels (
    level BIGINT PRIMARY KEY CHECK (level BETWEEN 1 AND 10),
    min_personal_volume_micros BIGINT NOT NULL DEFAULT 0 CHECK (min_personal_volume_micros >= 0),
    min_direct_paid_referrals BIGINT NOT NULL DEFAULT 0 CHECK (min_direct_paid_referrals >= 0),
    min_team_volume_micros BIGINT NOT NULL DEFAULT 0 CHECK (min_team_volume_micros >= 0),
    updated_at BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE commission_rates (
    level BIGINT NOT NULL REFERENCES vip_levels (level),
    depth BIGINT NOT NULL CHECK (depth BETWEEN 1 AND 10),
    rate_bp BIGINT NOT NULL CHECK (rate_bp BETWEEN 0 AND 10000),
    PRIMARY KEY (level, depth)
);
CREATE TABLE member_volumes (
    user_id BIGINT PRIMARY KEY REFERENCES users (id),
    personal_volume_micros BIGINT NOT NULL DEFAULT 0,
    paid_orders BIGINT NOT NULL DEFAULT 0,
    direct_paid_referrals BIGINT NOT NULL DEFAULT 0,
    team_volume_micros BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
CREATE TABLE commission_orders (
    order_id BIGINT PRIMARY KEY,
    buyer_id BIGINT NOT NULL REFERENCES users (id),
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    status TEXT NOT NULL CHECK (status IN ('paid', 'refunded')),
    created_at BIGINT NOT NULL,
    refunded_at BIGINT
, refunded_micros BIGINT NOT NULL DEFAULT 0);
CREATE TABLE member_flags (
    id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    related_user_id BIGINT REFERENCES users (id),
    reason TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'cleared', 'confirmed')),
    created_at BIGINT NOT NULL,
    resolved_by BIGINT REFERENCES staff (id),
    resolved_at BIGINT
);
CREATE TABLE withdrawal_addresses (
    id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
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
CREATE TABLE withdrawals (
    id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    network TEXT NOT NULL CHECK (network IN ('trc20', 'erc20', 'btc')),
    destination TEXT NOT NULL CHECK (length(destination) BETWEEN 1 AND 100),
    destination_key TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid', 'rejected')),
    txid TEXT,                                  
    reason TEXT,                                
    requested_at BIGINT NOT NULL,
    decided_at BIGINT,
    decided_by BIGINT REFERENCES staff (id),   
    request_transfer_id BIGINT REFERENCES transfers (id),
    decision_transfer_id BIGINT REFERENCES transfers (id), held_at BIGINT, held_reason TEXT, address_id BIGINT REFERENCES withdrawal_addresses (id),
    CHECK ((status = 'pending') = (decided_at IS NULL))
);
CREATE TABLE capacity (
    id BIGINT PRIMARY KEY,
    hashrate_ghs BIGINT NOT NULL CHECK (hashrate_ghs >= 0),
    note TEXT,
    set_by BIGINT REFERENCES staff (id),       
    created_at BIGINT NOT NULL
);
CREATE TABLE "user_ancestors" (
    user_id BIGINT NOT NULL REFERENCES users (id),
    depth BIGINT NOT NULL CHECK (depth BETWEEN 1 AND 10),
    ancestor_id BIGINT NOT NULL REFERENCES users (id),
    PRIMARY KEY (user_id, depth)
);
CREATE TABLE job_leases (
    job TEXT PRIMARY KEY,
    period TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE job_runs (
    id BIGINT PRIMARY KEY,
    job TEXT NOT NULL,
    period TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'dead', 'waiting')),
    attempts BIGINT NOT NULL DEFAULT 0,   
    failures BIGINT NOT NULL DEFAULT 0,   
    items BIGINT NOT NULL DEFAULT 0,
    holder TEXT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    next_attempt_at BIGINT,
    error TEXT,
    UNIQUE (job, period)
);
CREATE TABLE job_state (
    job TEXT PRIMARY KEY,
    cursor BIGINT,
    requested_at BIGINT,
    requested_period BIGINT,
    requested_by TEXT
);
CREATE TABLE cron_heartbeat (
    holder TEXT PRIMARY KEY,
    pid BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    beat_at BIGINT NOT NULL
);
CREATE TABLE "contracts" (
    id BIGINT PRIMARY KEY,
    order_id BIGINT NOT NULL UNIQUE REFERENCES orders (id),
    user_id BIGINT NOT NULL REFERENCES users (id),
    package_id BIGINT NOT NULL REFERENCES packages (id),
    name TEXT NOT NULL,
    hashrate_ghs BIGINT NOT NULL CHECK (hashrate_ghs > 0),
    price_micros BIGINT NOT NULL CHECK (price_micros > 0),
    daily_yield_micros BIGINT NOT NULL CHECK (daily_yield_micros >= 0),
    duration_days BIGINT NOT NULL CHECK (duration_days > 0),
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    started_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'ended', 'expired', 'refunded')),
    ended_at BIGINT,
    yield_mode TEXT NOT NULL DEFAULT 'fixed' CHECK (yield_mode IN ('pool', 'fixed')),
    fee_bp BIGINT NOT NULL DEFAULT 0 CHECK (fee_bp BETWEEN 0 AND 10000),
    earned_micros BIGINT NOT NULL DEFAULT 0, refunded_micros BIGINT NOT NULL DEFAULT 0, released_ghs BIGINT NOT NULL DEFAULT 0, yield_clawed_micros BIGINT NOT NULL DEFAULT 0,
    CHECK (expires_at > started_at)
);
CREATE TABLE pool_payouts (
    id BIGINT PRIMARY KEY,
    period_kind TEXT NOT NULL CHECK (period_kind IN ('hour', 'day')),
    period_start BIGINT NOT NULL,            
    period_end BIGINT NOT NULL,
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    note TEXT,
    recorded_by BIGINT,                     
    created_at BIGINT NOT NULL,
    distributed_at BIGINT,
    contracts BIGINT,                       
    hash_seconds BIGINT,                     
    credits_micros BIGINT,                   
    fee_micros BIGINT,                       
    remainder_micros BIGINT,                 
    UNIQUE (period_kind, period_start),
    CHECK (period_end > period_start)
);
CREATE TABLE contract_days (
    contract_id BIGINT NOT NULL,
    day BIGINT NOT NULL,                     
    hashrate_ghs BIGINT NOT NULL,
    hash_seconds BIGINT NOT NULL DEFAULT 0,
    share_micros BIGINT NOT NULL DEFAULT 0,
    fee_micros BIGINT NOT NULL DEFAULT 0,
    credit_micros BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (contract_id, day)
);
CREATE TABLE yield_commission_rates (
    level BIGINT NOT NULL CHECK (level BETWEEN 1 AND 10),
    depth BIGINT NOT NULL CHECK (depth BETWEEN 1 AND 10),
    rate_bp BIGINT NOT NULL CHECK (rate_bp BETWEEN 0 AND 10000),
    PRIMARY KEY (level, depth)
);
CREATE TABLE email_template_defs (
    key TEXT PRIMARY KEY,
    class TEXT NOT NULL CHECK (class IN ('transactional', 'marketing')),
    category TEXT,
    description TEXT NOT NULL,
    variables TEXT NOT NULL,
    sample TEXT NOT NULL,
    CHECK ((class = 'marketing') = (category IS NOT NULL))
);
CREATE TABLE email_templates (
    key TEXT NOT NULL REFERENCES email_template_defs (key),
    locale TEXT NOT NULL,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT NOT NULL,
    version BIGINT NOT NULL CHECK (version >= 1),
    updated_by BIGINT REFERENCES staff (id),
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (key, locale)
);
CREATE TABLE email_template_versions (
    key TEXT NOT NULL REFERENCES email_template_defs (key),
    locale TEXT NOT NULL,
    version BIGINT NOT NULL,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT NOT NULL,
    updated_by BIGINT REFERENCES staff (id),
    restored_from BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (key, locale, version)
);
CREATE TABLE email_suppressions (
    id BIGINT PRIMARY KEY,
    email_key TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('bounced', 'complained', 'manual')),
    source TEXT,
    event_id TEXT,
    created_at BIGINT NOT NULL
);
CREATE TABLE email_preferences (
    user_id BIGINT NOT NULL REFERENCES users (id),
    category TEXT NOT NULL,
    subscribed BIGINT NOT NULL CHECK (subscribed IN (0, 1)),
    source TEXT NOT NULL CHECK (source IN ('member', 'unsubscribe_link')),
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, category)
);
CREATE TABLE mail_events (
    id BIGINT PRIMARY KEY,
    plugin TEXT NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('delivered', 'bounced', 'complained', 'other')),
    message_id TEXT,
    recipient TEXT,
    mail_id BIGINT,
    received_at BIGINT NOT NULL,
    UNIQUE (plugin, event_id)
);
CREATE TABLE order_refunds (
    id BIGINT PRIMARY KEY,
    order_id BIGINT NOT NULL REFERENCES orders (id),
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    refunded_after_micros BIGINT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('event', 'staff')),
    event TEXT,
    staff_id BIGINT REFERENCES staff (id),
    reason TEXT,
    transfer_id BIGINT NOT NULL REFERENCES transfers (id),
    created_at BIGINT NOT NULL,
    UNIQUE (order_id, refunded_after_micros)
);
CREATE TABLE "commissions" (
    id BIGINT PRIMARY KEY,
    order_id BIGINT NOT NULL,
    depth BIGINT NOT NULL CHECK (depth BETWEEN 1 AND 10),
    beneficiary_id BIGINT NOT NULL REFERENCES users (id),
    source_user_id BIGINT NOT NULL REFERENCES users (id),
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    rate_bp BIGINT NOT NULL,
    vip_level BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('held', 'available', 'clawed_back', 'forfeited')),
    release_at BIGINT NOT NULL,
    transfer_id BIGINT NOT NULL REFERENCES transfers (id),
    released_transfer_id BIGINT REFERENCES transfers (id),
    clawback_transfer_id BIGINT REFERENCES transfers (id),
    created_at BIGINT NOT NULL,
    clawed_micros BIGINT NOT NULL DEFAULT 0,
    forfeit_transfer_id BIGINT REFERENCES transfers (id),
    UNIQUE (order_id, depth)
);
CREATE TABLE "payment_events" (
    id BIGINT PRIMARY KEY,
    plugin TEXT NOT NULL,
    event_id TEXT NOT NULL CHECK (length(event_id) BETWEEN 1 AND 255),
    status TEXT NOT NULL
        CHECK (status IN ('paid', 'failed', 'refunded', 'expired', 'ignored', 'dispute_opened',
                          'dispute_won', 'dispute_lost', 'needs_review', 'pending')),
    order_ref TEXT,
    provider_ref TEXT,
    amount_micros BIGINT NOT NULL CHECK (amount_micros >= 0),
    currency TEXT CHECK (currency IS NULL OR length(currency) = 3),
    raw_body TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    processed_at BIGINT,
    outcome TEXT,
    payment_id TEXT,          
    review_reason TEXT,       
    detail TEXT,              
    source TEXT NOT NULL DEFAULT 'webhook' CHECK (source IN ('webhook', 'janitor', 'return')),
    UNIQUE (plugin, event_id)
);
CREATE TABLE order_events (
    id BIGINT PRIMARY KEY,
    order_id BIGINT NOT NULL REFERENCES orders (id),
    kind TEXT NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    source TEXT NOT NULL CHECK (length(source) BETWEEN 1 AND 32),
    detail TEXT,
    created_at BIGINT NOT NULL
);
CREATE TABLE kyc_cases (
    user_id BIGINT PRIMARY KEY REFERENCES users (id),
    legal_name TEXT,
    date_of_birth TEXT,      
    country TEXT,            
    address_line1 TEXT,
    address_line2 TEXT,
    city TEXT,
    postal_code TEXT,
    provider TEXT,           
    provider_ref TEXT,
    reason TEXT,             
    submitted_at BIGINT,     
    decided_at BIGINT,       
    closed_at BIGINT,        
    updated_at BIGINT NOT NULL
);
CREATE TABLE kyc_documents (
    id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL
        CHECK (kind IN ('id_front', 'id_back', 'selfie', 'proof_of_address')),
    content_type TEXT NOT NULL
        CHECK (content_type IN ('image/jpeg', 'image/png', 'application/pdf')),
    size BIGINT NOT NULL CHECK (size > 0),   
    sha256 TEXT NOT NULL,                    
    storage_key TEXT NOT NULL UNIQUE,
    wrapped_key TEXT NOT NULL,               
    wrap_nonce TEXT NOT NULL,                
    key_id TEXT NOT NULL,                    
    created_at BIGINT NOT NULL,
    UNIQUE (user_id, kind)
);
CREATE TABLE kyc_events (
    id BIGINT PRIMARY KEY,
    plugin TEXT NOT NULL,
    event_id TEXT NOT NULL CHECK (length(event_id) BETWEEN 1 AND 255),
    user_id BIGINT,
    status TEXT NOT NULL CHECK (status IN ('approved', 'rejected', 'needs_review', 'pending',
                                           'resubmission', 'expired', 'ignored')),
    provider_ref TEXT,
    occurred_at_ms BIGINT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('webhook', 'poll', 'start')),
    outcome TEXT NOT NULL CHECK (outcome IN ('applied', 'stale', 'recorded', 'ignored',
                                             'unknown_member')),
    received_at BIGINT NOT NULL,
    UNIQUE (plugin, event_id)
);
CREATE TABLE kyc_provider_state (
    user_id BIGINT PRIMARY KEY REFERENCES users (id),
    plugin TEXT NOT NULL,
    provider_ref TEXT,
    verdict TEXT NOT NULL,
    newest_ms BIGINT NOT NULL DEFAULT 0,
    pending_since BIGINT,
    polled_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE TABLE twofa (
    subject TEXT NOT NULL CHECK (subject IN ('member', 'staff')),
    owner_id BIGINT NOT NULL,
    secret_enc TEXT,
    pending_enc TEXT,
    pending_at BIGINT,
    enabled_at BIGINT,
    last_step BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, owner_id)
);
CREATE TABLE twofa_recovery (
    id BIGINT PRIMARY KEY,
    subject TEXT NOT NULL CHECK (subject IN ('member', 'staff')),
    owner_id BIGINT NOT NULL,
    code_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE TABLE twofa_challenges (
    id BIGINT PRIMARY KEY,
    subject TEXT NOT NULL CHECK (subject IN ('member', 'staff')),
    owner_id BIGINT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    ip TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    failures BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE stats_daily (
    day BIGINT NOT NULL,
    currency TEXT NOT NULL,
    signups BIGINT NOT NULL DEFAULT 0,
    orders_paid BIGINT NOT NULL DEFAULT 0,
    revenue_micros BIGINT NOT NULL DEFAULT 0,
    commissions_micros BIGINT NOT NULL DEFAULT 0,
    withdrawals_requested BIGINT NOT NULL DEFAULT 0,
    withdrawals_requested_micros BIGINT NOT NULL DEFAULT 0,
    withdrawals_paid_micros BIGINT NOT NULL DEFAULT 0,
    contracts_started BIGINT NOT NULL DEFAULT 0,
    contracts_ended BIGINT NOT NULL DEFAULT 0,
    ghs_started BIGINT NOT NULL DEFAULT 0,
    ghs_ended BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (currency, day)
);
CREATE TABLE metrics_balances (
    kind TEXT NOT NULL,
    currency CHAR(3) NOT NULL,
    balance_micros BIGINT NOT NULL,
    PRIMARY KEY (kind, currency)
);
CREATE TABLE metrics_counts (
    tbl TEXT NOT NULL,
    status TEXT NOT NULL,
    n BIGINT NOT NULL,
    hashrate_ghs BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tbl, status)
);
CREATE TABLE erasure_requests (
    id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    status TEXT NOT NULL CHECK (status IN ('unconfirmed', 'scheduled', 'done', 'cancelled')),
    token_hash TEXT NOT NULL UNIQUE,
    token_expires_at BIGINT NOT NULL,
    requested_at BIGINT NOT NULL,
    confirmed_at BIGINT,
    due_at BIGINT,
    finished_at BIGINT,               
    finished_by TEXT                  
);
CREATE FUNCTION packages_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM packages);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER packages_rowid BEFORE INSERT ON packages FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION packages_rowid();
CREATE FUNCTION catalogue_state_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM catalogue_state);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER catalogue_state_rowid BEFORE INSERT ON catalogue_state FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION catalogue_state_rowid();
CREATE FUNCTION users_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM users);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER users_rowid BEFORE INSERT ON users FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION users_rowid();
CREATE FUNCTION legal_acceptances_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM legal_acceptances);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER legal_acceptances_rowid BEFORE INSERT ON legal_acceptances FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION legal_acceptances_rowid();
CREATE FUNCTION refresh_tokens_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM refresh_tokens);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER refresh_tokens_rowid BEFORE INSERT ON refresh_tokens FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION refresh_tokens_rowid();
CREATE FUNCTION email_tokens_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM email_tokens);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER email_tokens_rowid BEFORE INSERT ON email_tokens FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION email_tokens_rowid();
CREATE FUNCTION mail_queue_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM mail_queue);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER mail_queue_rowid BEFORE INSERT ON mail_queue FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION mail_queue_rowid();
CREATE FUNCTION staff_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM staff);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER staff_rowid BEFORE INSERT ON staff FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION staff_rowid();
CREATE FUNCTION staff_sessions_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM staff_sessions);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER staff_sessions_rowid BEFORE INSERT ON staff_sessions FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION staff_sessions_rowid();
CREATE FUNCTION audit_log_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM audit_log);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER audit_log_rowid BEFORE INSERT ON audit_log FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION audit_log_rowid();
CREATE FUNCTION accounts_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM accounts);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER accounts_rowid BEFORE INSERT ON accounts FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION accounts_rowid();
CREATE FUNCTION transfers_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM transfers);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER transfers_rowid BEFORE INSERT ON transfers FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION transfers_rowid();
CREATE FUNCTION orders_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM orders);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER orders_rowid BEFORE INSERT ON orders FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION orders_rowid();
CREATE FUNCTION member_flags_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM member_flags);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER member_flags_rowid BEFORE INSERT ON member_flags FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION member_flags_rowid();
CREATE FUNCTION withdrawal_addresses_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM withdrawal_addresses);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER withdrawal_addresses_rowid BEFORE INSERT ON withdrawal_addresses FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION withdrawal_addresses_rowid();
CREATE FUNCTION withdrawals_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM withdrawals);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER withdrawals_rowid BEFORE INSERT ON withdrawals FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION withdrawals_rowid();
CREATE FUNCTION capacity_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM capacity);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER capacity_rowid BEFORE INSERT ON capacity FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION capacity_rowid();
CREATE FUNCTION job_runs_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM job_runs);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER job_runs_rowid BEFORE INSERT ON job_runs FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION job_runs_rowid();
CREATE FUNCTION contracts_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM contracts);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER contracts_rowid BEFORE INSERT ON contracts FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION contracts_rowid();
CREATE FUNCTION pool_payouts_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM pool_payouts);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER pool_payouts_rowid BEFORE INSERT ON pool_payouts FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION pool_payouts_rowid();
CREATE FUNCTION email_suppressions_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM email_suppressions);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER email_suppressions_rowid BEFORE INSERT ON email_suppressions FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION email_suppressions_rowid();
CREATE FUNCTION mail_events_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM mail_events);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER mail_events_rowid BEFORE INSERT ON mail_events FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION mail_events_rowid();
CREATE FUNCTION order_refunds_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM order_refunds);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER order_refunds_rowid BEFORE INSERT ON order_refunds FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION order_refunds_rowid();
CREATE FUNCTION commissions_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM commissions);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER commissions_rowid BEFORE INSERT ON commissions FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION commissions_rowid();
CREATE FUNCTION payment_events_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM payment_events);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER payment_events_rowid BEFORE INSERT ON payment_events FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION payment_events_rowid();
CREATE FUNCTION order_events_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM order_events);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER order_events_rowid BEFORE INSERT ON order_events FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION order_events_rowid();
CREATE FUNCTION kyc_documents_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM kyc_documents);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER kyc_documents_rowid BEFORE INSERT ON kyc_documents FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION kyc_documents_rowid();
CREATE FUNCTION kyc_events_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM kyc_events);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER kyc_events_rowid BEFORE INSERT ON kyc_events FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION kyc_events_rowid();
CREATE FUNCTION twofa_recovery_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM twofa_recovery);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER twofa_recovery_rowid BEFORE INSERT ON twofa_recovery FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION twofa_recovery_rowid();
CREATE FUNCTION twofa_challenges_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM twofa_challenges);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER twofa_challenges_rowid BEFORE INSERT ON twofa_challenges FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION twofa_challenges_rowid();
CREATE FUNCTION erasure_requests_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM erasure_requests);
    RETURN NEW;
END
$fn$;
CREATE TRIGGER erasure_requests_rowid BEFORE INSERT ON erasure_requests FOR EACH ROW WHEN (NEW.id IS NULL) EXECUTE FUNCTION erasure_requests_rowid();
CREATE INDEX packages_active_order ON packages (active, sort_order, id);
CREATE INDEX users_referrer ON users (referrer_id, id);
CREATE INDEX users_status ON users (status, id);
CREATE INDEX legal_acceptances_user ON legal_acceptances (user_id, document, accepted_at);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);
CREATE INDEX email_tokens_user ON email_tokens (user_id, purpose);
CREATE INDEX mail_queue_due ON mail_queue (status, next_attempt_at);
CREATE INDEX mail_queue_recipient ON mail_queue (recipient, id);
CREATE INDEX staff_sessions_staff ON staff_sessions (staff_id);
CREATE INDEX audit_log_time ON audit_log (created_at, id);
CREATE INDEX audit_log_target ON audit_log (target_type, target_id, id);
CREATE UNIQUE INDEX accounts_member ON accounts (user_id, kind, currency);
CREATE UNIQUE INDEX accounts_system ON accounts (code, currency);
CREATE INDEX transfers_debit ON transfers (debit_account_id, id);
CREATE INDEX transfers_credit ON transfers (credit_account_id, id);
CREATE INDEX transfers_kind ON transfers (kind, id);
CREATE INDEX transfers_time ON transfers (created_at, id);
CREATE INDEX orders_user ON orders (user_id, id);
CREATE INDEX orders_status ON orders (status, id);
CREATE INDEX orders_provider_ref ON orders (gateway, provider_ref);
CREATE INDEX member_flags_user ON member_flags (user_id, related_user_id, status);
CREATE INDEX member_flags_related ON member_flags (related_user_id, user_id, status);
CREATE INDEX member_flags_status ON member_flags (status, id);
CREATE INDEX withdrawals_user ON withdrawals (user_id, id);
CREATE INDEX withdrawals_user_time ON withdrawals (user_id, requested_at);
CREATE INDEX withdrawals_status ON withdrawals (status, id);
CREATE INDEX withdrawals_destination ON withdrawals (network, destination_key, user_id);
CREATE INDEX user_ancestors_down ON user_ancestors (ancestor_id, depth, user_id);
CREATE INDEX job_runs_by_job ON job_runs (job, period_start);
CREATE INDEX job_runs_pending ON job_runs (job, status, next_attempt_at);
CREATE INDEX contracts_user ON contracts (user_id, id);
CREATE INDEX contracts_status ON contracts (status, id);
CREATE INDEX contracts_expiry ON contracts (status, expires_at);
CREATE INDEX pool_payouts_start ON pool_payouts (period_start);
CREATE INDEX mail_queue_status_id ON mail_queue (status, id);
CREATE INDEX mail_queue_provider_id ON mail_queue (provider_message_id);
CREATE INDEX mail_queue_updated ON mail_queue (updated_at);
CREATE INDEX order_refunds_order ON order_refunds (order_id, created_at);
CREATE INDEX commissions_beneficiary ON commissions (beneficiary_id, id);
CREATE INDEX commissions_due ON commissions (status, release_at, id);
CREATE INDEX commissions_created ON commissions (created_at);
CREATE INDEX commissions_source ON commissions (source_user_id, id);
CREATE INDEX contracts_term ON contracts (yield_mode, expires_at);
CREATE INDEX job_runs_ok ON job_runs (job, status, period_start);
CREATE INDEX payment_events_order ON payment_events (order_ref, received_at);
CREATE INDEX payment_events_provider_ref ON payment_events (plugin, provider_ref);
CREATE UNIQUE INDEX orders_payment_identity ON orders (gateway, payment_id)
    WHERE payment_id IS NOT NULL;
CREATE INDEX orders_dispute ON orders (dispute, id) WHERE dispute IS NOT NULL;
CREATE INDEX orders_pending_hold ON orders (status, hold_until) WHERE status = 'pending';
CREATE INDEX order_events_order ON order_events (order_id, id);
CREATE INDEX kyc_documents_key_id ON kyc_documents (key_id, id);
CREATE INDEX users_kyc_status ON users (kyc_status, id);
CREATE INDEX kyc_events_user ON kyc_events (user_id, occurred_at_ms);
CREATE INDEX kyc_provider_state_pending ON kyc_provider_state (pending_since)
    WHERE pending_since IS NOT NULL;
CREATE INDEX twofa_recovery_owner ON twofa_recovery (subject, owner_id);
CREATE INDEX twofa_challenges_expiry ON twofa_challenges (expires_at);
CREATE UNIQUE INDEX withdrawal_addresses_live
    ON withdrawal_addresses (user_id, network, address_key) WHERE deleted_at IS NULL;
CREATE INDEX withdrawal_addresses_user ON withdrawal_addresses (user_id, id);
CREATE INDEX refresh_tokens_live_family ON refresh_tokens (family_id)
 WHERE revoked_at IS NULL;
CREATE INDEX erasure_requests_user ON erasure_requests (user_id, id);
CREATE INDEX erasure_requests_due ON erasure_requests (status, due_at);
CREATE FUNCTION packages_ai_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER packages_ai AFTER INSERT ON packages FOR EACH STATEMENT EXECUTE FUNCTION packages_ai_fn();
CREATE FUNCTION packages_au_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER packages_au AFTER UPDATE ON packages FOR EACH STATEMENT EXECUTE FUNCTION packages_au_fn();
CREATE FUNCTION packages_ad_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER packages_ad AFTER DELETE ON packages FOR EACH STATEMENT EXECUTE FUNCTION packages_ad_fn();
CREATE FUNCTION capacity_ai_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER capacity_ai AFTER INSERT ON capacity FOR EACH STATEMENT EXECUTE FUNCTION capacity_ai_fn();
CREATE FUNCTION orders_ai_catalogue_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER orders_ai_catalogue AFTER INSERT ON orders FOR EACH STATEMENT EXECUTE FUNCTION orders_ai_catalogue_fn();
CREATE FUNCTION orders_au_catalogue_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER orders_au_catalogue AFTER UPDATE OF status ON orders FOR EACH STATEMENT EXECUTE FUNCTION orders_au_catalogue_fn();
CREATE FUNCTION contracts_ai_catalogue_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER contracts_ai_catalogue AFTER INSERT ON contracts FOR EACH STATEMENT EXECUTE FUNCTION contracts_ai_catalogue_fn();
CREATE FUNCTION contracts_au_catalogue_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER contracts_au_catalogue AFTER UPDATE OF status, released_ghs ON contracts FOR EACH STATEMENT EXECUTE FUNCTION contracts_au_catalogue_fn();
CREATE FUNCTION stats_users_ai_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO stats_daily (day, currency, signups)
        VALUES (NEW.created_at - NEW.created_at % 86400, '', 1)
        ON CONFLICT (currency, day) DO UPDATE SET signups = stats_daily.signups + 1;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER stats_users_ai AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION stats_users_ai_fn();
CREATE FUNCTION stats_orders_ai_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO stats_daily (day, currency, orders_paid, revenue_micros)
        VALUES (COALESCE(NEW.paid_at, NEW.updated_at) - COALESCE(NEW.paid_at, NEW.updated_at) % 86400,
                NEW.currency, 1, NEW.amount_micros)
        ON CONFLICT (currency, day) DO UPDATE SET orders_paid = stats_daily.orders_paid + 1,
            revenue_micros = stats_daily.revenue_micros + excluded.revenue_micros;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER stats_orders_ai AFTER INSERT ON orders FOR EACH ROW WHEN (NEW.status = 'paid') EXECUTE FUNCTION stats_orders_ai_fn();
CREATE FUNCTION stats_orders_au_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO stats_daily (day, currency, orders_paid, revenue_micros)
        VALUES (COALESCE(NEW.paid_at, NEW.updated_at) - COALESCE(NEW.paid_at, NEW.updated_at) % 86400,
                NEW.currency, 1, NEW.amount_micros)
        ON CONFLICT (currency, day) DO UPDATE SET orders_paid = stats_daily.orders_paid + 1,
            revenue_micros = stats_daily.revenue_micros + excluded.revenue_micros;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER stats_orders_au AFTER UPDATE OF status ON orders FOR EACH ROW WHEN (NEW.status = 'paid' AND OLD.status <> 'paid') EXECUTE FUNCTION stats_orders_au_fn();
CREATE FUNCTION stats_commissions_ai_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO stats_daily (day, currency, commissions_micros)
        VALUES (NEW.created_at - NEW.created_at % 86400, NEW.currency, NEW.amount_micros)
        ON CONFLICT (currency, day) DO UPDATE SET
            commissions_micros = stats_daily.commissions_micros + excluded.commissions_micros;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER stats_commissions_ai AFTER INSERT ON commissions FOR EACH ROW EXECUTE FUNCTION stats_commissions_ai_fn();
CREATE FUNCTION stats_withdrawals_ai_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO stats_daily (day, currency, withdrawals_requested, withdrawals_requested_micros)
        VALUES (NEW.requested_at - NEW.requested_at % 86400, NEW.currency, 1, NEW.amount_micros)
        ON CONFLICT (currency, day) DO UPDATE SET
            withdrawals_requested = stats_daily.withdrawals_requested + 1,
            withdrawals_requested_micros =
                stats_daily.withdrawals_requested_micros + excluded.withdrawals_requested_micros;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER stats_withdrawals_ai AFTER INSERT ON withdrawals FOR EACH ROW EXECUTE FUNCTION stats_withdrawals_ai_fn();
CREATE FUNCTION stats_withdrawals_au_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO stats_daily (day, currency, withdrawals_paid_micros)
        VALUES (NEW.decided_at - NEW.decided_at % 86400, NEW.currency, NEW.amount_micros)
        ON CONFLICT (currency, day) DO UPDATE SET
            withdrawals_paid_micros = stats_daily.withdrawals_paid_micros + excluded.withdrawals_paid_micros;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER stats_withdrawals_au AFTER UPDATE OF status ON withdrawals FOR EACH ROW WHEN (NEW.status = 'paid' AND OLD.status <> 'paid') EXECUTE FUNCTION stats_withdrawals_au_fn();
CREATE FUNCTION stats_contracts_ai_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO stats_daily (day, currency, contracts_started, ghs_started)
        VALUES (NEW.started_at - NEW.started_at % 86400, '', 1, NEW.hashrate_ghs)
        ON CONFLICT (currency, day) DO UPDATE SET contracts_started = stats_daily.contracts_started + 1,
            ghs_started = stats_daily.ghs_started + excluded.ghs_started;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER stats_contracts_ai AFTER INSERT ON contracts FOR EACH ROW WHEN (NEW.status = 'active') EXECUTE FUNCTION stats_contracts_ai_fn();
CREATE FUNCTION stats_contracts_au_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO stats_daily (day, currency, contracts_ended, ghs_ended)
        VALUES (COALESCE(NEW.ended_at, NEW.expires_at) - COALESCE(NEW.ended_at, NEW.expires_at) % 86400,
                '', 1, OLD.hashrate_ghs)
        ON CONFLICT (currency, day) DO UPDATE SET contracts_ended = stats_daily.contracts_ended + 1,
            ghs_ended = stats_daily.ghs_ended + excluded.ghs_ended;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER stats_contracts_au AFTER UPDATE OF status ON contracts FOR EACH ROW WHEN (OLD.status = 'active' AND NEW.status <> 'active') EXECUTE FUNCTION stats_contracts_au_fn();
CREATE FUNCTION metrics_accounts_ai_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO metrics_balances (kind, currency, balance_micros)
        VALUES (NEW.kind, NEW.currency, NEW.balance_micros)
        ON CONFLICT (kind, currency) DO UPDATE SET balance_micros = metrics_balances.balance_micros + excluded.balance_micros;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER metrics_accounts_ai AFTER INSERT ON accounts FOR EACH ROW WHEN (NEW.kind IN ('wallet', 'held')) EXECUTE FUNCTION metrics_accounts_ai_fn();
CREATE FUNCTION metrics_accounts_au_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO metrics_balances (kind, currency, balance_micros)
        VALUES (NEW.kind, NEW.currency, NEW.balance_micros - OLD.balance_micros)
        ON CONFLICT (kind, currency) DO UPDATE SET balance_micros = metrics_balances.balance_micros + excluded.balance_micros;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER metrics_accounts_au AFTER UPDATE OF balance_micros ON accounts FOR EACH ROW WHEN (NEW.kind IN ('wallet', 'held') AND NEW.balance_micros != OLD.balance_micros) EXECUTE FUNCTION metrics_accounts_au_fn();
CREATE FUNCTION metrics_accounts_ad_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE metrics_balances SET balance_micros = balance_micros - OLD.balance_micros
        WHERE kind = OLD.kind AND currency = OLD.currency;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER metrics_accounts_ad AFTER DELETE ON accounts FOR EACH ROW WHEN (OLD.kind IN ('wallet', 'held')) EXECUTE FUNCTION metrics_accounts_ad_fn();
CREATE FUNCTION metrics_orders_ai_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO metrics_counts (tbl, status, n) VALUES ('orders', NEW.status, 1)
        ON CONFLICT (tbl, status) DO UPDATE SET n = metrics_counts.n + 1;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER metrics_orders_ai AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION metrics_orders_ai_fn();
CREATE FUNCTION metrics_orders_au_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE metrics_counts SET n = n - 1 WHERE tbl = 'orders' AND status = OLD.status;
    INSERT INTO metrics_counts (tbl, status, n) VALUES ('orders', NEW.status, 1)
        ON CONFLICT (tbl, status) DO UPDATE SET n = metrics_counts.n + 1;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER metrics_orders_au AFTER UPDATE OF status ON orders FOR EACH ROW WHEN (NEW.status != OLD.status) EXECUTE FUNCTION metrics_orders_au_fn();
CREATE FUNCTION metrics_orders_ad_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE metrics_counts SET n = n - 1 WHERE tbl = 'orders' AND status = OLD.status;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER metrics_orders_ad AFTER DELETE ON orders FOR EACH ROW EXECUTE FUNCTION metrics_orders_ad_fn();
CREATE FUNCTION metrics_contracts_ai_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO metrics_counts (tbl, status, n, hashrate_ghs)
        VALUES ('contracts', NEW.status, 1, NEW.hashrate_ghs - NEW.released_ghs)
        ON CONFLICT (tbl, status) DO UPDATE SET n = metrics_counts.n + 1, hashrate_ghs = metrics_counts.hashrate_ghs + excluded.hashrate_ghs;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER metrics_contracts_ai AFTER INSERT ON contracts FOR EACH ROW EXECUTE FUNCTION metrics_contracts_ai_fn();
CREATE FUNCTION metrics_contracts_au_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE metrics_counts SET n = n - 1, hashrate_ghs = hashrate_ghs - (OLD.hashrate_ghs - OLD.released_ghs)
        WHERE tbl = 'contracts' AND status = OLD.status;
    INSERT INTO metrics_counts (tbl, status, n, hashrate_ghs)
        VALUES ('contracts', NEW.status, 1, NEW.hashrate_ghs - NEW.released_ghs)
        ON CONFLICT (tbl, status) DO UPDATE SET n = metrics_counts.n + 1, hashrate_ghs = metrics_counts.hashrate_ghs + excluded.hashrate_ghs;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER metrics_contracts_au AFTER UPDATE OF status, hashrate_ghs, released_ghs ON contracts FOR EACH ROW WHEN (NEW.status != OLD.status OR NEW.hashrate_ghs != OLD.hashrate_ghs OR NEW.released_ghs != OLD.released_ghs) EXECUTE FUNCTION metrics_contracts_au_fn();
CREATE FUNCTION metrics_contracts_ad_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE metrics_counts SET n = n - 1, hashrate_ghs = hashrate_ghs - (OLD.hashrate_ghs - OLD.released_ghs)
        WHERE tbl = 'contracts' AND status = OLD.status;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER metrics_contracts_ad AFTER DELETE ON contracts FOR EACH ROW EXECUTE FUNCTION metrics_contracts_ad_fn();
INSERT INTO catalogue_state (id, generation) VALUES (1, 1);
INSERT INTO vip_levels (level, min_personal_volume_micros, min_direct_paid_referrals, min_team_volume_micros, updated_at) VALUES (1, 0, 0, 0, 0);
INSERT INTO vip_levels (level, min_personal_volume_micros, min_direct_paid_referrals, min_team_volume_micros, updated_at) VALUES (2, 500000000, 1, 2000000000, 0);
INSERT INTO vip_levels (level, min_personal_volume_micros, min_direct_paid_referrals, min_team_volume_micros, updated_at) VALUES (3, 1000000000, 2, 5000000000, 0);
INSERT INTO vip_levels (level, min_personal_volume_micros, min_direct_paid_referrals, min_team_volume_micros, updated_at) VALUES (4, 2000000000, 3, 10000000000, 0);
INSERT INTO vip_levels (level, min_personal_volume_micros, min_direct_paid_referrals, min_team_volume_micros, updated_at) VALUES (5, 3000000000, 5, 25000000000, 0);
INSERT INTO vip_levels (level, min_personal_volume_micros, min_direct_paid_referrals, min_team_volume_micros, updated_at) VALUES (6, 5000000000, 8, 50000000000, 0);
INSERT INTO vip_levels (level, min_personal_volume_micros, min_direct_paid_referrals, min_team_volume_micros, updated_at) VALUES (7, 7500000000, 12, 100000000000, 0);
INSERT INTO vip_levels (level, min_personal_volume_micros, min_direct_paid_referrals, min_team_volume_micros, updated_at) VALUES (8, 10000000000, 16, 250000000000, 0);
INSERT INTO vip_levels (level, min_personal_volume_micros, min_direct_paid_referrals, min_team_volume_micros, updated_at) VALUES (9, 15000000000, 20, 500000000000, 0);
INSERT INTO vip_levels (level, min_personal_volume_micros, min_direct_paid_referrals, min_team_volume_micros, updated_at) VALUES (10, 25000000000, 30, 1000000000000, 0);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (1, 1, 500);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (1, 2, 200);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (1, 3, 100);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (1, 4, 50);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (1, 5, 50);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (1, 6, 25);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (1, 7, 25);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (1, 8, 25);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (1, 9, 25);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (1, 10, 25);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (2, 1, 550);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (2, 2, 220);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (2, 3, 110);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (2, 4, 60);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (2, 5, 60);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (2, 6, 30);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (2, 7, 30);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (2, 8, 30);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (2, 9, 30);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (2, 10, 30);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (3, 1, 600);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (3, 2, 250);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (3, 3, 125);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (3, 4, 75);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (3, 5, 75);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (3, 6, 40);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (3, 7, 40);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (3, 8, 40);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (3, 9, 40);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (3, 10, 40);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (4, 1, 650);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (4, 2, 275);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (4, 3, 150);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (4, 4, 90);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (4, 5, 90);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (4, 6, 50);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (4, 7, 50);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (4, 8, 50);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (4, 9, 50);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (4, 10, 50);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (5, 1, 700);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (5, 2, 300);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (5, 3, 175);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (5, 4, 100);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (5, 5, 100);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (5, 6, 60);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (5, 7, 60);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (5, 8, 60);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (5, 9, 60);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (5, 10, 60);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (6, 1, 750);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (6, 2, 325);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (6, 3, 200);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (6, 4, 125);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (6, 5, 125);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (6, 6, 75);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (6, 7, 75);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (6, 8, 75);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (6, 9, 75);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (6, 10, 75);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (7, 1, 800);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (7, 2, 350);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (7, 3, 225);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (7, 4, 150);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (7, 5, 150);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (7, 6, 90);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (7, 7, 90);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (7, 8, 90);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (7, 9, 90);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (7, 10, 90);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (8, 1, 850);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (8, 2, 375);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (8, 3, 250);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (8, 4, 175);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (8, 5, 175);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (8, 6, 100);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (8, 7, 100);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (8, 8, 100);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (8, 9, 100);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (8, 10, 100);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (9, 1, 900);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (9, 2, 400);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (9, 3, 275);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (9, 4, 200);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (9, 5, 200);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (9, 6, 125);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (9, 7, 125);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (9, 8, 125);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (9, 9, 125);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (9, 10, 125);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (10, 1, 1000);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (10, 2, 450);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (10, 3, 300);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (10, 4, 225);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (10, 5, 225);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (10, 6, 150);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (10, 7, 150);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (10, 8, 150);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (10, 9, 150);
INSERT INTO commission_rates (level, depth, rate_bp) VALUES (10, 10, 150);
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('email_verification', 'transactional', NULL, 'Sent at registration: the link that verifies the address.', '["email","url","token","expires_in_hours","site_url","recipient"]', '{"email":"ada@example.com","url":"https://deepmine.example/verify-email?token=abc","token":"abc","expires_in_hours":48}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('password_reset', 'transactional', NULL, 'Sent when a member asks to reset the password.', '["email","url","token","expires_in_hours","site_url","recipient"]', '{"email":"ada@example.com","url":"https://deepmine.example/reset-password?token=abc","token":"abc","expires_in_hours":1}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('welcome', 'transactional', NULL, 'Sent once a member has verified the e-mail address.', '["email","referral_code","site_url","recipient"]', '{"email":"ada@example.com","referral_code":"ADA2026X"}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('order_paid', 'transactional', NULL, 'Sent when an order is paid: the receipt.', '["order_id","contract_id","package","amount_micros","currency","expires_at","site_url","recipient"]', '{"order_id":1042,"contract_id":311,"package":"S19 XP 30 days","amount_micros":250000000,"currency":"USD","expires_at":"2026-12-25T07:00:00Z"}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('contract_started', 'transactional', NULL, 'Sent when a paid order starts its mining contract.', '["contract_id","order_id","package","hashrate_ths","daily_yield_micros","currency","duration_days","started_at","expires_at","site_url","recipient"]', '{"contract_id":311,"order_id":1042,"package":"S19 XP 30 days","hashrate_ths":140,"daily_yield_micros":9500000,"currency":"USD","duration_days":30,"started_at":"2026-11-25T07:00:00Z","expires_at":"2026-12-25T07:00:00Z"}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('contract_expired', 'transactional', NULL, 'Sent when a mining contract reaches its end.', '["contract_id","package","expired_at","earned_micros","currency","site_url","recipient"]', '{"contract_id":311,"package":"S19 XP 30 days","expired_at":"2026-12-25T07:00:00Z","earned_micros":285000000,"currency":"USD"}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('commission_digest', 'marketing', 'commission_digest', 'Once a day, to members who received referral commissions that day.', '["day","count","total_micros","currency","site_url","recipient","unsubscribe_url"]', '{"day":"2026-11-25","count":3,"total_micros":12345678,"currency":"USD"}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('withdrawal_requested', 'transactional', NULL, 'Sent when a member asks for a withdrawal.', '["id","amount_micros","currency","network","destination","status","txid","reason","requested_at","decided_at","site_url","recipient"]', '{"id":77,"amount_micros":50000000,"currency":"USD","network":"TRC20","destination":"TXyz","status":"pending","txid":null,"reason":null,"requested_at":"2026-11-25T07:00:00Z","decided_at":null}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('withdrawal_approved', 'transactional', NULL, 'Sent when finance staff pay a withdrawal.', '["id","amount_micros","currency","network","destination","status","txid","reason","requested_at","decided_at","site_url","recipient"]', '{"id":77,"amount_micros":50000000,"currency":"USD","network":"TRC20","destination":"TXyz","status":"paid","txid":"0xabc","reason":null,"requested_at":"2026-11-25T07:00:00Z","decided_at":"2026-11-25T09:00:00Z"}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('withdrawal_rejected', 'transactional', NULL, 'Sent when finance staff reject a withdrawal (the amount goes back to the wallet).', '["id","amount_micros","currency","network","destination","status","txid","reason","requested_at","decided_at","site_url","recipient"]', '{"id":77,"amount_micros":50000000,"currency":"USD","network":"TRC20","destination":"TXyz","status":"rejected","txid":null,"reason":"The destination address is not valid.","requested_at":"2026-11-25T07:00:00Z","decided_at":"2026-11-25T09:00:00Z"}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('kyc_approved', 'transactional', NULL, 'Sent when the identity check is approved.', '["email","site_url","recipient"]', '{"email":"ada@example.com"}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('kyc_rejected', 'transactional', NULL, 'Sent when the identity check is rejected.', '["email","reason","site_url","recipient"]', '{"email":"ada@example.com","reason":"The document photo is not readable."}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('staff_alert', 'transactional', NULL, 'To owners (and finance for money matters): a job is dead, an order needs review.', '["reason","detail","order_id","job","period","error","site_url","recipient"]', '{"reason":"job_dead","detail":"job accrual, period 2026-11-25T06:00:00Z, failed 8 times: database is locked","job":"accrual","period":"2026-11-25T06:00:00Z","error":"database is locked"}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('kyc_resubmission', 'transactional', NULL, 'Sent when the identity check needs new documents (the member may try again).', '["email","reason","site_url","recipient"]', '{"email":"ada@example.com","reason":"The photo of the back of the card is blurred."}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('withdrawal_address_added', 'transactional', NULL, 'Sent when a member adds a withdrawal address: the link that confirms it.', '["email","address","network","url","token","expires_in_hours","delay_hours","site_url","recipient"]', '{"email":"ada@example.com","address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t","network":"trc20","url":"https://deepmine.example/confirm-address?token=abc","token":"abc","expires_in_hours":48,"delay_hours":24}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('withdrawal_address_confirmed', 'transactional', NULL, 'Sent when a withdrawal address is confirmed: from when it can be used.', '["email","address","network","usable_at","site_url","recipient"]', '{"email":"ada@example.com","address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t","network":"trc20","usable_at":"2026-11-26T07:00:00Z"}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('password_changed', 'transactional', NULL, 'Sent when a member''s password is changed or reset.', '["email","ip","site_url","recipient"]', '{"email":"ada@example.com","ip":"203.0.113.7"}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('twofa_enabled', 'transactional', NULL, 'Sent when a member turns two-factor sign-in on.', '["email","site_url","recipient"]', '{"email":"ada@example.com"}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('twofa_disabled', 'transactional', NULL, 'Sent when a member turns two-factor sign-in off.', '["email","site_url","recipient"]', '{"email":"ada@example.com"}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('withdrawals_locked', 'transactional', NULL, 'Sent when a security change locks a member''s withdrawals for a while.', '["email","reason","until","site_url","recipient"]', '{"email":"ada@example.com","reason":"your password was changed","until":"2026-11-26T07:00:00Z"}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('order_refunded', 'transactional', NULL, 'Sent to the member when money of an order goes back (in part or in full).', '["order_id","package","amount_micros","refunded_micros","price_micros","currency","fully_refunded","site_url","recipient"]', '{"order_id":1042,"package":"S19 XP 30 days","amount_micros":50000000,"refunded_micros":50000000,"price_micros":250000000,"currency":"USD","fully_refunded":false}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('dispute_alert', 'transactional', NULL, 'To owners and finance: a buyer opened a dispute (chargeback) on an order, or a dispute was lost.', '["reason","order_id","gateway","amount_micros","currency","detail","site_url","recipient"]', '{"reason":"dispute_opened","order_id":1042,"gateway":"stripe","amount_micros":250000000,"currency":"USD","detail":"event stripe:evt_1: the buyer disputed 250.00 USD of order 1042; its commissions are held until the dispute closes. Answer the dispute at the provider."}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('erasure_confirm', 'transactional', NULL, 'Sent when a member asks for the erasure of the account: the link that confirms it.', '["email","url","token","expires_in_hours","delay_days","site_url","recipient"]', '{"email":"ada@example.com","url":"https://deepmine.example/confirm-erasure?token=abc","token":"abc","expires_in_hours":24,"delay_days":14}');
INSERT INTO email_template_defs (key, class, category, description, variables, sample) VALUES ('staff_digest', 'transactional', NULL, 'To owners, daily when DeepMineStaffDigest is on: the day before in figures.', '["day","signups","revenue_micros","currency","orders_review","kyc_waiting","withdrawals_waiting","jobs_dead","errors","site_url","recipient"]', '{"day":"2026-12-05","signups":12,"revenue_micros":2500000000,"currency":"USD","orders_review":1,"kyc_waiting":3,"withdrawals_waiting":2,"jobs_dead":0,"errors":4}');
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('email_verification', 'en', 'Confirm your e-mail address', 'Hello,

please confirm that {{email}} is your address by opening this link:

{{url}}

The link works for {{expires_in_hours}} hours. If you did not create an account, ignore this message.

DeepMine
', '<p>Hello,</p>
<p>please confirm that <b>{{email}}</b> is your address:</p>
<p><a href="{{url}}">Confirm my address</a></p>
<p>The link works for {{expires_in_hours}} hours. If you did not create an account, ignore this message.</p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('password_reset', 'en', 'Reset your password', 'Hello,

someone (we hope you) asked to reset the password of {{email}}. Choose a new one here:

{{url}}

The link works for {{expires_in_hours}} hour(s) and only once. If you did not ask, ignore this message: your password stays as it is.

DeepMine
', '<p>Hello,</p>
<p>someone (we hope you) asked to reset the password of <b>{{email}}</b>.</p>
<p><a href="{{url}}">Choose a new password</a></p>
<p>The link works for {{expires_in_hours}} hour(s) and only once. If you did not ask, ignore this message: your password stays as it is.</p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('welcome', 'en', 'Welcome to DeepMine', 'Hello,

your address {{email}} is confirmed: welcome to DeepMine.

Your referral code is {{referral_code}}. Members who register with it join your network.

{{site_url}}

DeepMine
', '<p>Hello,</p>
<p>your address <b>{{email}}</b> is confirmed: welcome to DeepMine.</p>
<p>Your referral code is <b>{{referral_code}}</b>. Members who register with it join your network.</p>
<p><a href="{{site_url}}">{{site_url}}</a></p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('order_paid', 'en', 'Payment received for order {{order_id}}', 'Hello,

we received {{amount_micros}} for order {{order_id}} ({{package}}).

Your contract {{contract_id}} runs until {{expires_at}}.

DeepMine
', '<p>Hello,</p>
<p>we received <b>{{amount_micros}}</b> for order {{order_id}} ({{package}}).</p>
<p>Your contract {{contract_id}} runs until {{expires_at}}.</p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('contract_started', 'en', 'Your mining contract {{contract_id}} has started', 'Hello,

your contract {{contract_id}} ({{package}}, {{hashrate_ths}} TH/s) started at {{started_at}}.

It yields about {{daily_yield_micros}} a day for {{duration_days}} days, until {{expires_at}}. Earnings are credited to your balance every hour.

DeepMine
', '<p>Hello,</p>
<p>your contract {{contract_id}} (<b>{{package}}</b>, {{hashrate_ths}} TH/s) started at {{started_at}}.</p>
<p>It yields about <b>{{daily_yield_micros}}</b> a day for {{duration_days}} days, until {{expires_at}}. Earnings are credited to your balance every hour.</p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('contract_expired', 'en', 'Your mining contract {{contract_id}} has ended', 'Hello,

your contract {{contract_id}} ({{package}}) ended at {{expired_at}}. It earned {{earned_micros}} in all.

DeepMine
', '<p>Hello,</p>
<p>your contract {{contract_id}} (<b>{{package}}</b>) ended at {{expired_at}}. It earned <b>{{earned_micros}}</b> in all.</p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('commission_digest', 'en', 'Your referral commissions of {{day}}', 'Hello,

on {{day}} you received {{count}} referral commission(s), {{total_micros}} in all.

You receive this summary because you have referral commissions. Unsubscribe: {{unsubscribe_url}}

DeepMine
', '<p>Hello,</p>
<p>on {{day}} you received {{count}} referral commission(s), <b>{{total_micros}}</b> in all.</p>
<p style="font-size:small">You receive this summary because you have referral commissions. <a href="{{unsubscribe_url}}">Unsubscribe</a></p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('withdrawal_requested', 'en', 'Withdrawal {{id}} requested', 'Hello,

we received your request to withdraw {{amount_micros}} to {{destination}} ({{network}}). Our finance team reviews it shortly.

DeepMine
', '<p>Hello,</p>
<p>we received your request to withdraw <b>{{amount_micros}}</b> to {{destination}} ({{network}}). Our finance team reviews it shortly.</p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('withdrawal_approved', 'en', 'Withdrawal {{id}} paid', 'Hello,

your withdrawal of {{amount_micros}} to {{destination}} ({{network}}) was paid.{{#if txid}} Transaction: {{txid}}{{/if}}

DeepMine
', '<p>Hello,</p>
<p>your withdrawal of <b>{{amount_micros}}</b> to {{destination}} ({{network}}) was paid.</p>
{{#if txid}}<p>Transaction: <code>{{txid}}</code></p>{{/if}}
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('withdrawal_rejected', 'en', 'Withdrawal {{id}} rejected', 'Hello,

your withdrawal of {{amount_micros}} was rejected and the amount is back in your balance.{{#if reason}}

Reason: {{reason}}{{/if}}

DeepMine
', '<p>Hello,</p>
<p>your withdrawal of <b>{{amount_micros}}</b> was rejected and the amount is back in your balance.</p>
{{#if reason}}<p>Reason: {{reason}}</p>{{/if}}
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('kyc_approved', 'en', 'Your identity is verified', 'Hello,

your identity check is approved: you can now request withdrawals.

DeepMine
', '<p>Hello,</p>
<p>your identity check is approved: you can now request withdrawals.</p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('kyc_rejected', 'en', 'Your identity check was not approved', 'Hello,

we could not approve your identity check.{{#if reason}} Reason: {{reason}}{{/if}} You can send new documents from your account page.

DeepMine
', '<p>Hello,</p>
<p>we could not approve your identity check.{{#if reason}} Reason: {{reason}}{{/if}}</p>
<p>You can send new documents from your account page.</p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('staff_alert', 'en', '[DeepMine] staff alert: {{reason}}', '{{detail}}
{{#if order_id}}
Order: {{order_id}}{{/if}}{{#if job}}
Job: {{job}}, period {{period}}
Error: {{error}}{{/if}}

{{site_url}}
', '<p>{{detail}}</p>
{{#if order_id}}<p>Order: {{order_id}}</p>{{/if}}
{{#if job}}<p>Job: {{job}}, period {{period}}</p><p>Error: <code>{{error}}</code></p>{{/if}}
<p><a href="{{site_url}}">{{site_url}}</a></p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('kyc_resubmission', 'en', 'Your identity check needs new documents', 'Hello,

we need new documents to finish your identity check.{{#if reason}} Reason: {{reason}}{{/if}} You can upload them and submit again from your account page.

DeepMine
', '<p>Hello,</p>
<p>we need new documents to finish your identity check.{{#if reason}} Reason: {{reason}}{{/if}}</p>
<p>You can upload them and submit again from your account page.</p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('withdrawal_address_added', 'en', 'Confirm your new withdrawal address', 'Hello,

the address {{address}} ({{network}}) was added to the withdrawal address book of {{email}}. If this was you, confirm it here:

{{url}}

The link works for {{expires_in_hours}} hours and only once. Once confirmed, the address can be used after {{delay_hours}} hours. If you did not add it, do not click the link: change your password and turn on two-factor sign-in.

DeepMine
', '<p>Hello,</p>
<p>the address <code>{{address}}</code> ({{network}}) was added to the withdrawal address book of <b>{{email}}</b>.</p>
<p><a href="{{url}}">Confirm this address</a></p>
<p>The link works for {{expires_in_hours}} hours and only once. Once confirmed, the address can be used after {{delay_hours}} hours. If you did not add it, do not click the link: change your password and turn on two-factor sign-in.</p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('withdrawal_address_confirmed', 'en', 'Withdrawal address confirmed', 'Hello,

the withdrawal address {{address}} ({{network}}) is confirmed. It can be used from {{usable_at}}.

If you did not confirm it, contact us now.

DeepMine
', '<p>Hello,</p>
<p>the withdrawal address <code>{{address}}</code> ({{network}}) is confirmed. It can be used from {{usable_at}}.</p>
<p>If you did not confirm it, contact us now.</p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('password_changed', 'en', 'Your password was changed', 'Hello,

the password of {{email}} was changed{{#if ip}} (from {{ip}}){{/if}}. Every other session was signed out.

If this was not you, reset your password now and contact us.

DeepMine
', '<p>Hello,</p>
<p>the password of <b>{{email}}</b> was changed{{#if ip}} (from {{ip}}){{/if}}. Every other session was signed out.</p>
<p>If this was not you, reset your password now and contact us.</p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('twofa_enabled', 'en', 'Two-factor sign-in is on', 'Hello,

two-factor sign-in is now on for {{email}}. Keep your recovery codes somewhere safe.

If this was not you, contact us now.

DeepMine
', '<p>Hello,</p>
<p>two-factor sign-in is now on for <b>{{email}}</b>. Keep your recovery codes somewhere safe.</p>
<p>If this was not you, contact us now.</p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('twofa_disabled', 'en', 'Two-factor sign-in is off', 'Hello,

two-factor sign-in was turned off for {{email}}.

If this was not you, change your password and contact us now.

DeepMine
', '<p>Hello,</p>
<p>two-factor sign-in was turned off for <b>{{email}}</b>.</p>
<p>If this was not you, change your password and contact us now.</p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('withdrawals_locked', 'en', 'Withdrawals paused after a security change', 'Hello,

because {{reason}}, withdrawals from {{email}} are paused until {{until}}. This protects your balance if someone else made the change.

If this was not you, contact us now.

DeepMine
', '<p>Hello,</p>
<p>because {{reason}}, withdrawals from <b>{{email}}</b> are paused until {{until}}. This protects your balance if someone else made the change.</p>
<p>If this was not you, contact us now.</p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('order_refunded', 'en', 'Refund for order {{order_id}}', 'Hello,

{{amount_micros}} of order {{order_id}} ({{package}}) has been refunded to the way you paid.
{{#if fully_refunded}}
The order is now refunded in full and its contract has ended.{{else}}
Refunded so far: {{refunded_micros}} of {{price_micros}}.{{/if}}

Depending on your bank or wallet, the money can take a few days to show.

DeepMine
', '<p>Hello,</p>
<p><b>{{amount_micros}}</b> of order {{order_id}} ({{package}}) has been refunded to the way you paid.</p>
{{#if fully_refunded}}<p>The order is now refunded in full and its contract has ended.</p>{{else}}<p>Refunded so far: {{refunded_micros}} of {{price_micros}}.</p>{{/if}}
<p>Depending on your bank or wallet, the money can take a few days to show.</p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('dispute_alert', 'en', '[DeepMine] dispute on order {{order_id}}: {{reason}}', '{{detail}}

Order: {{order_id}} ({{gateway}}), {{amount_micros}}

{{site_url}}
', '<p>{{detail}}</p>
<p>Order: {{order_id}} ({{gateway}}), {{amount_micros}}</p>
<p><a href="{{site_url}}">{{site_url}}</a></p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('erasure_confirm', 'en', 'Confirm the erasure of your account', 'Hello,

someone (we hope you) asked to erase the DeepMine account {{email}}. Confirm it here:

{{url}}

The link works for {{expires_in_hours}} hour(s) and only once. Once confirmed, the account is erased after {{delay_days}} day(s); until then you can cancel it from your account. If you did not ask, ignore this message: nothing happens.

DeepMine
', '<p>Hello,</p>
<p>someone (we hope you) asked to erase the DeepMine account <b>{{email}}</b>.</p>
<p><a href="{{url}}">Confirm the erasure</a></p>
<p>The link works for {{expires_in_hours}} hour(s) and only once. Once confirmed, the account is erased after {{delay_days}} day(s); until then you can cancel it from your account. If you did not ask, ignore this message: nothing happens.</p>
<p>DeepMine</p>
', 1, NULL, 0);
INSERT INTO email_templates (key, locale, subject, text_body, html_body, version, updated_by, updated_at) VALUES ('staff_digest', 'en', '[DeepMine] digest for {{day}}', 'DeepMine, {{day}} (UTC)

Sign-ups: {{signups}}
Revenue: {{revenue_micros}} {{currency}}
Orders needing review: {{orders_review}}
KYC cases waiting: {{kyc_waiting}}
Withdrawals waiting: {{withdrawals_waiting}}
Dead jobs: {{jobs_dead}}
Errors: {{errors}}

{{site_url}}
', '<p>DeepMine, {{day}} (UTC)</p>
<ul><li>Sign-ups: {{signups}}</li><li>Revenue: {{revenue_micros}} {{currency}}</li>
<li>Orders needing review: {{orders_review}}</li><li>KYC cases waiting: {{kyc_waiting}}</li>
<li>Withdrawals waiting: {{withdrawals_waiting}}</li><li>Dead jobs: {{jobs_dead}}</li>
<li>Errors: {{errors}}</li></ul>
<p><a href="{{site_url}}">{{site_url}}</a></p>
', 1, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('email_verification', 'en', 1, 'Confirm your e-mail address', 'Hello,

please confirm that {{email}} is your address by opening this link:

{{url}}

The link works for {{expires_in_hours}} hours. If you did not create an account, ignore this message.

DeepMine
', '<p>Hello,</p>
<p>please confirm that <b>{{email}}</b> is your address:</p>
<p><a href="{{url}}">Confirm my address</a></p>
<p>The link works for {{expires_in_hours}} hours. If you did not create an account, ignore this message.</p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('password_reset', 'en', 1, 'Reset your password', 'Hello,

someone (we hope you) asked to reset the password of {{email}}. Choose a new one here:

{{url}}

The link works for {{expires_in_hours}} hour(s) and only once. If you did not ask, ignore this message: your password stays as it is.

DeepMine
', '<p>Hello,</p>
<p>someone (we hope you) asked to reset the password of <b>{{email}}</b>.</p>
<p><a href="{{url}}">Choose a new password</a></p>
<p>The link works for {{expires_in_hours}} hour(s) and only once. If you did not ask, ignore this message: your password stays as it is.</p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('welcome', 'en', 1, 'Welcome to DeepMine', 'Hello,

your address {{email}} is confirmed: welcome to DeepMine.

Your referral code is {{referral_code}}. Members who register with it join your network.

{{site_url}}

DeepMine
', '<p>Hello,</p>
<p>your address <b>{{email}}</b> is confirmed: welcome to DeepMine.</p>
<p>Your referral code is <b>{{referral_code}}</b>. Members who register with it join your network.</p>
<p><a href="{{site_url}}">{{site_url}}</a></p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('order_paid', 'en', 1, 'Payment received for order {{order_id}}', 'Hello,

we received {{amount_micros}} for order {{order_id}} ({{package}}).

Your contract {{contract_id}} runs until {{expires_at}}.

DeepMine
', '<p>Hello,</p>
<p>we received <b>{{amount_micros}}</b> for order {{order_id}} ({{package}}).</p>
<p>Your contract {{contract_id}} runs until {{expires_at}}.</p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('contract_started', 'en', 1, 'Your mining contract {{contract_id}} has started', 'Hello,

your contract {{contract_id}} ({{package}}, {{hashrate_ths}} TH/s) started at {{started_at}}.

It yields about {{daily_yield_micros}} a day for {{duration_days}} days, until {{expires_at}}. Earnings are credited to your balance every hour.

DeepMine
', '<p>Hello,</p>
<p>your contract {{contract_id}} (<b>{{package}}</b>, {{hashrate_ths}} TH/s) started at {{started_at}}.</p>
<p>It yields about <b>{{daily_yield_micros}}</b> a day for {{duration_days}} days, until {{expires_at}}. Earnings are credited to your balance every hour.</p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('contract_expired', 'en', 1, 'Your mining contract {{contract_id}} has ended', 'Hello,

your contract {{contract_id}} ({{package}}) ended at {{expired_at}}. It earned {{earned_micros}} in all.

DeepMine
', '<p>Hello,</p>
<p>your contract {{contract_id}} (<b>{{package}}</b>) ended at {{expired_at}}. It earned <b>{{earned_micros}}</b> in all.</p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('commission_digest', 'en', 1, 'Your referral commissions of {{day}}', 'Hello,

on {{day}} you received {{count}} referral commission(s), {{total_micros}} in all.

You receive this summary because you have referral commissions. Unsubscribe: {{unsubscribe_url}}

DeepMine
', '<p>Hello,</p>
<p>on {{day}} you received {{count}} referral commission(s), <b>{{total_micros}}</b> in all.</p>
<p style="font-size:small">You receive this summary because you have referral commissions. <a href="{{unsubscribe_url}}">Unsubscribe</a></p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('withdrawal_requested', 'en', 1, 'Withdrawal {{id}} requested', 'Hello,

we received your request to withdraw {{amount_micros}} to {{destination}} ({{network}}). Our finance team reviews it shortly.

DeepMine
', '<p>Hello,</p>
<p>we received your request to withdraw <b>{{amount_micros}}</b> to {{destination}} ({{network}}). Our finance team reviews it shortly.</p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('withdrawal_approved', 'en', 1, 'Withdrawal {{id}} paid', 'Hello,

your withdrawal of {{amount_micros}} to {{destination}} ({{network}}) was paid.{{#if txid}} Transaction: {{txid}}{{/if}}

DeepMine
', '<p>Hello,</p>
<p>your withdrawal of <b>{{amount_micros}}</b> to {{destination}} ({{network}}) was paid.</p>
{{#if txid}}<p>Transaction: <code>{{txid}}</code></p>{{/if}}
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('withdrawal_rejected', 'en', 1, 'Withdrawal {{id}} rejected', 'Hello,

your withdrawal of {{amount_micros}} was rejected and the amount is back in your balance.{{#if reason}}

Reason: {{reason}}{{/if}}

DeepMine
', '<p>Hello,</p>
<p>your withdrawal of <b>{{amount_micros}}</b> was rejected and the amount is back in your balance.</p>
{{#if reason}}<p>Reason: {{reason}}</p>{{/if}}
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('kyc_approved', 'en', 1, 'Your identity is verified', 'Hello,

your identity check is approved: you can now request withdrawals.

DeepMine
', '<p>Hello,</p>
<p>your identity check is approved: you can now request withdrawals.</p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('kyc_rejected', 'en', 1, 'Your identity check was not approved', 'Hello,

we could not approve your identity check.{{#if reason}} Reason: {{reason}}{{/if}} You can send new documents from your account page.

DeepMine
', '<p>Hello,</p>
<p>we could not approve your identity check.{{#if reason}} Reason: {{reason}}{{/if}}</p>
<p>You can send new documents from your account page.</p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('staff_alert', 'en', 1, '[DeepMine] staff alert: {{reason}}', '{{detail}}
{{#if order_id}}
Order: {{order_id}}{{/if}}{{#if job}}
Job: {{job}}, period {{period}}
Error: {{error}}{{/if}}

{{site_url}}
', '<p>{{detail}}</p>
{{#if order_id}}<p>Order: {{order_id}}</p>{{/if}}
{{#if job}}<p>Job: {{job}}, period {{period}}</p><p>Error: <code>{{error}}</code></p>{{/if}}
<p><a href="{{site_url}}">{{site_url}}</a></p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('kyc_resubmission', 'en', 1, 'Your identity check needs new documents', 'Hello,

we need new documents to finish your identity check.{{#if reason}} Reason: {{reason}}{{/if}} You can upload them and submit again from your account page.

DeepMine
', '<p>Hello,</p>
<p>we need new documents to finish your identity check.{{#if reason}} Reason: {{reason}}{{/if}}</p>
<p>You can upload them and submit again from your account page.</p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('password_changed', 'en', 1, 'Your password was changed', 'Hello,

the password of {{email}} was changed{{#if ip}} (from {{ip}}){{/if}}. Every other session was signed out.

If this was not you, reset your password now and contact us.

DeepMine
', '<p>Hello,</p>
<p>the password of <b>{{email}}</b> was changed{{#if ip}} (from {{ip}}){{/if}}. Every other session was signed out.</p>
<p>If this was not you, reset your password now and contact us.</p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('twofa_disabled', 'en', 1, 'Two-factor sign-in is off', 'Hello,

two-factor sign-in was turned off for {{email}}.

If this was not you, change your password and contact us now.

DeepMine
', '<p>Hello,</p>
<p>two-factor sign-in was turned off for <b>{{email}}</b>.</p>
<p>If this was not you, change your password and contact us now.</p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('twofa_enabled', 'en', 1, 'Two-factor sign-in is on', 'Hello,

two-factor sign-in is now on for {{email}}. Keep your recovery codes somewhere safe.

If this was not you, contact us now.

DeepMine
', '<p>Hello,</p>
<p>two-factor sign-in is now on for <b>{{email}}</b>. Keep your recovery codes somewhere safe.</p>
<p>If this was not you, contact us now.</p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('withdrawal_address_added', 'en', 1, 'Confirm your new withdrawal address', 'Hello,

the address {{address}} ({{network}}) was added to the withdrawal address book of {{email}}. If this was you, confirm it here:

{{url}}

The link works for {{expires_in_hours}} hours and only once. Once confirmed, the address can be used after {{delay_hours}} hours. If you did not add it, do not click the link: change your password and turn on two-factor sign-in.

DeepMine
', '<p>Hello,</p>
<p>the address <code>{{address}}</code> ({{network}}) was added to the withdrawal address book of <b>{{email}}</b>.</p>
<p><a href="{{url}}">Confirm this address</a></p>
<p>The link works for {{expires_in_hours}} hours and only once. Once confirmed, the address can be used after {{delay_hours}} hours. If you did not add it, do not click the link: change your password and turn on two-factor sign-in.</p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('withdrawal_address_confirmed', 'en', 1, 'Withdrawal address confirmed', 'Hello,

the withdrawal address {{address}} ({{network}}) is confirmed. It can be used from {{usable_at}}.

If you did not confirm it, contact us now.

DeepMine
', '<p>Hello,</p>
<p>the withdrawal address <code>{{address}}</code> ({{network}}) is confirmed. It can be used from {{usable_at}}.</p>
<p>If you did not confirm it, contact us now.</p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('withdrawals_locked', 'en', 1, 'Withdrawals paused after a security change', 'Hello,

because {{reason}}, withdrawals from {{email}} are paused until {{until}}. This protects your balance if someone else made the change.

If this was not you, contact us now.

DeepMine
', '<p>Hello,</p>
<p>because {{reason}}, withdrawals from <b>{{email}}</b> are paused until {{until}}. This protects your balance if someone else made the change.</p>
<p>If this was not you, contact us now.</p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('dispute_alert', 'en', 1, '[DeepMine] dispute on order {{order_id}}: {{reason}}', '{{detail}}

Order: {{order_id}} ({{gateway}}), {{amount_micros}}

{{site_url}}
', '<p>{{detail}}</p>
<p>Order: {{order_id}} ({{gateway}}), {{amount_micros}}</p>
<p><a href="{{site_url}}">{{site_url}}</a></p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('order_refunded', 'en', 1, 'Refund for order {{order_id}}', 'Hello,

{{amount_micros}} of order {{order_id}} ({{package}}) has been refunded to the way you paid.
{{#if fully_refunded}}
The order is now refunded in full and its contract has ended.{{else}}
Refunded so far: {{refunded_micros}} of {{price_micros}}.{{/if}}

Depending on your bank or wallet, the money can take a few days to show.

DeepMine
', '<p>Hello,</p>
<p><b>{{amount_micros}}</b> of order {{order_id}} ({{package}}) has been refunded to the way you paid.</p>
{{#if fully_refunded}}<p>The order is now refunded in full and its contract has ended.</p>{{else}}<p>Refunded so far: {{refunded_micros}} of {{price_micros}}.</p>{{/if}}
<p>Depending on your bank or wallet, the money can take a few days to show.</p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('erasure_confirm', 'en', 1, 'Confirm the erasure of your account', 'Hello,

someone (we hope you) asked to erase the DeepMine account {{email}}. Confirm it here:

{{url}}

The link works for {{expires_in_hours}} hour(s) and only once. Once confirmed, the account is erased after {{delay_days}} day(s); until then you can cancel it from your account. If you did not ask, ignore this message: nothing happens.

DeepMine
', '<p>Hello,</p>
<p>someone (we hope you) asked to erase the DeepMine account <b>{{email}}</b>.</p>
<p><a href="{{url}}">Confirm the erasure</a></p>
<p>The link works for {{expires_in_hours}} hour(s) and only once. Once confirmed, the account is erased after {{delay_days}} day(s); until then you can cancel it from your account. If you did not ask, ignore this message: nothing happens.</p>
<p>DeepMine</p>
', NULL, NULL, 0);
INSERT INTO email_template_versions (key, locale, version, subject, text_body, html_body, updated_by, restored_from, created_at) VALUES ('staff_digest', 'en', 1, '[DeepMine] digest for {{day}}', 'DeepMine, {{day}} (UTC)

Sign-ups: {{signups}}
Revenue: {{revenue_micros}} {{currency}}
Orders needing review: {{orders_review}}
KYC cases waiting: {{kyc_waiting}}
Withdrawals waiting: {{withdrawals_waiting}}
Dead jobs: {{jobs_dead}}
Errors: {{errors}}

{{site_url}}
', '<p>DeepMine, {{day}} (UTC)</p>
<ul><li>Sign-ups: {{signups}}</li><li>Revenue: {{revenue_micros}} {{currency}}</li>
<li>Orders needing review: {{orders_review}}</li><li>KYC cases waiting: {{kyc_waiting}}</li>
<li>Withdrawals waiting: {{withdrawals_waiting}}</li><li>Dead jobs: {{jobs_dead}}</li>
<li>Errors: {{errors}}</li></ul>
<p><a href="{{site_url}}">{{site_url}}</a></p>
', NULL, NULL, 0);
-- SQLite's FTS5 member search, on PostgreSQL: the same names the search
-- SQL uses (users_fts, its rowid), over users; the driver turns
-- "users_fts MATCH ?" into dm_fts_match(...) (core/store/db_pg.c).
CREATE VIEW users_fts AS SELECT id AS rowid, email, name, referral_code FROM users;
-- The query is FTS5's: "term"* words, all of which must start a token
-- (letters and digits) of the e-mail, name or referral code; lower case,
-- the common Latin diacritics folded (unicode61 remove_diacritics 2).
CREATE FUNCTION dm_fts_fold(t TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $fn$
    SELECT trim(regexp_replace(translate(lower(t),
        'àáâãäåāăąçćčďèéêëēĕėęěìíîïĩīĭįıñńňòóôõöøōŏőùúûüũūŭůűųýÿŕřśšţťźżž',
        'aaaaaaaaacccdeeeeeeeeeiiiiiiiiinnnooooooooouuuuuuuuuuyyrrssttzzz'),
        '[^[:alnum:]]+', ' ', 'g'))
$fn$;
CREATE FUNCTION dm_fts_match(email TEXT, name TEXT, code TEXT, q TEXT) RETURNS BOOLEAN
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    hay TEXT := ' ' || dm_fts_fold(coalesce(email, '') || ' ' || coalesce(name, '') || ' '
                || coalesce(code, ''));
    term TEXT;
BEGIN
    FOREACH term IN ARRAY regexp_split_to_array(trim(q), '\s+') LOOP
        term := dm_fts_fold(term);
        IF term <> '' AND position(' ' || term IN hay) = 0 THEN
            RETURN FALSE;
        END IF;
    END LOOP;
    RETURN TRUE;
END
$fn$;
-- SQLite's two-argument MAX and MIN, and group_concat, for the domain SQL.
CREATE FUNCTION max(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE sql IMMUTABLE
    AS 'SELECT CASE WHEN a IS NULL OR b IS NULL THEN NULL WHEN a > b THEN a ELSE b END';
CREATE FUNCTION min(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE sql IMMUTABLE
    AS 'SELECT CASE WHEN a IS NULL OR b IS NULL THEN NULL WHEN a < b THEN a ELSE b END';
CREATE FUNCTION dm_group_concat_step(acc TEXT, v TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE
    AS 'SELECT CASE WHEN v IS NULL THEN acc WHEN acc IS NULL THEN v ELSE acc || '','' || v END';
CREATE AGGREGATE group_concat(TEXT) (SFUNC = dm_group_concat_step, STYPE = TEXT);
-- SQLite's json_valid and json_remove (top-level '$.key' paths) on the
-- JSON text of mail_queue.variables.
CREATE FUNCTION json_valid(v TEXT) RETURNS BOOLEAN LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
    PERFORM v::jsonb;
    RETURN v IS NOT NULL;
EXCEPTION WHEN others THEN
    RETURN FALSE;
END
$fn$;
CREATE FUNCTION json_remove(v TEXT, VARIADIC paths TEXT[]) RETURNS TEXT LANGUAGE sql IMMUTABLE
    AS $fn$ SELECT (v::jsonb - ARRAY(SELECT substr(x, 3) FROM unnest(paths) AS x))::text $fn$;
-- SQLite sums comparisons (true is 1): SUM(status = 'dead').
CREATE FUNCTION dm_sum_bool_step(acc BIGINT, v BOOLEAN) RETURNS BIGINT LANGUAGE sql IMMUTABLE
    AS 'SELECT CASE WHEN v IS NULL THEN acc ELSE COALESCE(acc, 0) + CASE WHEN v THEN 1 ELSE 0 END END';
CREATE AGGREGATE sum(BOOLEAN) (SFUNC = dm_sum_bool_step, STYPE = BIGINT);
CREATE FUNCTION instr(s TEXT, t TEXT) RETURNS BIGINT LANGUAGE sql IMMUTABLE
    AS 'SELECT strpos(s, t)';
