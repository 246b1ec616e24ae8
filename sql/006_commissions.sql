-- 006_commissions.sql: the commission plan (VIP levels and their rates per
-- depth), the per-member volumes that qualify for a level, every
-- commission credit, and fraud flags (core/commission.c, core/vip.c,
-- core/flags.c; docs/commissions.md).
--
-- Money is BIGINT micro-units, rates integer basis points, times BIGINT
-- Unix seconds. Order ids are plain integers (no foreign key): the orders
-- table is another migration, and commissions only need the id as a key.

-- What a member must reach to hold a level: all three thresholds (any may
-- be 0). Levels only go up automatically; staff may set one by hand.
CREATE TABLE vip_levels (
    level INTEGER PRIMARY KEY CHECK (level BETWEEN 1 AND 10),
    min_personal_volume_micros BIGINT NOT NULL DEFAULT 0 CHECK (min_personal_volume_micros >= 0),
    min_direct_paid_referrals INTEGER NOT NULL DEFAULT 0 CHECK (min_direct_paid_referrals >= 0),
    min_team_volume_micros BIGINT NOT NULL DEFAULT 0 CHECK (min_team_volume_micros >= 0),
    updated_at BIGINT NOT NULL DEFAULT 0
);

-- The rate an ancestor of a given level earns on a purchase `depth` levels
-- below it. The total over the 10 depths of a level is kept under
-- DeepMineCommissionCap by the code that writes the plan.
CREATE TABLE commission_rates (
    level INTEGER NOT NULL REFERENCES vip_levels (level),
    depth INTEGER NOT NULL CHECK (depth BETWEEN 1 AND 10),
    rate_bp INTEGER NOT NULL CHECK (rate_bp BETWEEN 0 AND 10000),
    PRIMARY KEY (level, depth)
);

-- Qualification counters, kept in the transaction that pays or claws back
-- an order: refunded volume never counts. paid_orders is the member's own
-- paid, unrefunded orders (so "a direct referral with a paid order" is
-- counted once, when it goes from 0 to 1, and uncounted at 1 to 0).
CREATE TABLE member_volumes (
    user_id INTEGER PRIMARY KEY REFERENCES users (id),
    personal_volume_micros BIGINT NOT NULL DEFAULT 0,
    paid_orders INTEGER NOT NULL DEFAULT 0,
    direct_paid_referrals INTEGER NOT NULL DEFAULT 0,
    team_volume_micros BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);

-- Every order the plan has counted, once: makes paying an order twice a
-- no-op and lets a clawback find the buyer and amount to take back.
CREATE TABLE commission_orders (
    order_id INTEGER PRIMARY KEY,
    buyer_id INTEGER NOT NULL REFERENCES users (id),
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    status TEXT NOT NULL CHECK (status IN ('paid', 'refunded')),
    created_at BIGINT NOT NULL,
    refunded_at BIGINT
);

-- One row per credited (order, depth): what was paid, at which rate and
-- VIP level, and where it is now.
CREATE TABLE commissions (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL,
    depth INTEGER NOT NULL CHECK (depth BETWEEN 1 AND 10),
    beneficiary_id INTEGER NOT NULL REFERENCES users (id),
    source_user_id INTEGER NOT NULL REFERENCES users (id),
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    currency CHAR(3) NOT NULL CHECK (length(currency) = 3),
    rate_bp INTEGER NOT NULL,
    vip_level INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('held', 'available', 'clawed_back')),
    release_at BIGINT NOT NULL,
    transfer_id INTEGER NOT NULL REFERENCES transfers (id),
    released_transfer_id INTEGER REFERENCES transfers (id),
    clawback_transfer_id INTEGER REFERENCES transfers (id),
    created_at BIGINT NOT NULL,
    UNIQUE (order_id, depth)
);
CREATE INDEX commissions_beneficiary ON commissions (beneficiary_id, id);
CREATE INDEX commissions_due ON commissions (status, release_at, id);

-- Fraud flags on a pair of members. While a flag is open (or confirmed),
-- commissions between the two stay held.
CREATE TABLE member_flags (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    related_user_id INTEGER REFERENCES users (id),
    reason TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'cleared', 'confirmed')),
    created_at BIGINT NOT NULL,
    resolved_by INTEGER REFERENCES staff (id),
    resolved_at BIGINT
);
CREATE INDEX member_flags_user ON member_flags (user_id, related_user_id, status);
CREATE INDEX member_flags_related ON member_flags (related_user_id, user_id, status);
CREATE INDEX member_flags_status ON member_flags (status, id);

-- The default plan (docs/commissions.md): thresholds in micro-units.
INSERT INTO vip_levels (level, min_personal_volume_micros, min_direct_paid_referrals,
                        min_team_volume_micros) VALUES
    (1, 0, 0, 0),
    (2, 500000000, 1, 2000000000),
    (3, 1000000000, 2, 5000000000),
    (4, 2000000000, 3, 10000000000),
    (5, 3000000000, 5, 25000000000),
    (6, 5000000000, 8, 50000000000),
    (7, 7500000000, 12, 100000000000),
    (8, 10000000000, 16, 250000000000),
    (9, 15000000000, 20, 500000000000),
    (10, 25000000000, 30, 1000000000000);

INSERT INTO commission_rates (level, depth, rate_bp) VALUES
    (1, 1, 500), (1, 2, 200), (1, 3, 100), (1, 4, 50), (1, 5, 50),
    (1, 6, 25), (1, 7, 25), (1, 8, 25), (1, 9, 25), (1, 10, 25),
    (2, 1, 550), (2, 2, 220), (2, 3, 110), (2, 4, 60), (2, 5, 60),
    (2, 6, 30), (2, 7, 30), (2, 8, 30), (2, 9, 30), (2, 10, 30),
    (3, 1, 600), (3, 2, 250), (3, 3, 125), (3, 4, 75), (3, 5, 75),
    (3, 6, 40), (3, 7, 40), (3, 8, 40), (3, 9, 40), (3, 10, 40),
    (4, 1, 650), (4, 2, 275), (4, 3, 150), (4, 4, 90), (4, 5, 90),
    (4, 6, 50), (4, 7, 50), (4, 8, 50), (4, 9, 50), (4, 10, 50),
    (5, 1, 700), (5, 2, 300), (5, 3, 175), (5, 4, 100), (5, 5, 100),
    (5, 6, 60), (5, 7, 60), (5, 8, 60), (5, 9, 60), (5, 10, 60),
    (6, 1, 750), (6, 2, 325), (6, 3, 200), (6, 4, 125), (6, 5, 125),
    (6, 6, 75), (6, 7, 75), (6, 8, 75), (6, 9, 75), (6, 10, 75),
    (7, 1, 800), (7, 2, 350), (7, 3, 225), (7, 4, 150), (7, 5, 150),
    (7, 6, 90), (7, 7, 90), (7, 8, 90), (7, 9, 90), (7, 10, 90),
    (8, 1, 850), (8, 2, 375), (8, 3, 250), (8, 4, 175), (8, 5, 175),
    (8, 6, 100), (8, 7, 100), (8, 8, 100), (8, 9, 100), (8, 10, 100),
    (9, 1, 900), (9, 2, 400), (9, 3, 275), (9, 4, 200), (9, 5, 200),
    (9, 6, 125), (9, 7, 125), (9, 8, 125), (9, 9, 125), (9, 10, 125),
    (10, 1, 1000), (10, 2, 450), (10, 3, 300), (10, 4, 225), (10, 5, 225),
    (10, 6, 150), (10, 7, 150), (10, 8, 150), (10, 9, 150), (10, 10, 150);
