-- 024_stats_daily.sql: the daily rollup behind GET /api/admin/stats
-- (core/staff/stats.c; docs/decisions.md "Staff statistics").
--
-- One row per UTC day (Unix seconds of its midnight) and currency: the
-- money flows of that day in that currency, and in the row of currency ''
-- the counts. Triggers keep it in the transaction of each write, so the
-- statistics of any range read at most a row per day and currency however
-- many members, orders or contracts there are. Each row's day is the day
-- of the event's own timestamp (never the database's clock), so the fake
-- clock of the tests and imported history land on their days.
--
-- Active contracts and hash power sold are levels, not flows: the rows
-- hold their daily changes (contracts_started - contracts_ended,
-- ghs_started - ghs_ended) and the level at the end of a day is the sum of
-- every change up to it. A contract's hash power counts as sold from its
-- start to its end (status leaving 'active'); a partial refund that gives
-- hash rate back while the contract runs shows on the day it ends.
CREATE TABLE stats_daily (
    day BIGINT NOT NULL,
    currency TEXT NOT NULL,
    signups INTEGER NOT NULL DEFAULT 0,
    orders_paid INTEGER NOT NULL DEFAULT 0,
    revenue_micros BIGINT NOT NULL DEFAULT 0,
    commissions_micros BIGINT NOT NULL DEFAULT 0,
    withdrawals_requested INTEGER NOT NULL DEFAULT 0,
    withdrawals_requested_micros BIGINT NOT NULL DEFAULT 0,
    withdrawals_paid_micros BIGINT NOT NULL DEFAULT 0,
    contracts_started INTEGER NOT NULL DEFAULT 0,
    contracts_ended INTEGER NOT NULL DEFAULT 0,
    ghs_started BIGINT NOT NULL DEFAULT 0,
    ghs_ended BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (currency, day)
) WITHOUT ROWID;

CREATE TRIGGER stats_users_ai AFTER INSERT ON users BEGIN
    INSERT INTO stats_daily (day, currency, signups)
        VALUES (NEW.created_at - NEW.created_at % 86400, '', 1)
        ON CONFLICT (currency, day) DO UPDATE SET signups = signups + 1;
END;

-- An order counts on the day it is paid (gross: a later refund does not
-- take it back), whether it is inserted paid (balance) or becomes paid.
CREATE TRIGGER stats_orders_ai AFTER INSERT ON orders WHEN NEW.status = 'paid' BEGIN
    INSERT INTO stats_daily (day, currency, orders_paid, revenue_micros)
        VALUES (COALESCE(NEW.paid_at, NEW.updated_at) - COALESCE(NEW.paid_at, NEW.updated_at) % 86400,
                NEW.currency, 1, NEW.amount_micros)
        ON CONFLICT (currency, day) DO UPDATE SET orders_paid = orders_paid + 1,
            revenue_micros = revenue_micros + excluded.revenue_micros;
END;
CREATE TRIGGER stats_orders_au AFTER UPDATE OF status ON orders
    WHEN NEW.status = 'paid' AND OLD.status <> 'paid' BEGIN
    INSERT INTO stats_daily (day, currency, orders_paid, revenue_micros)
        VALUES (COALESCE(NEW.paid_at, NEW.updated_at) - COALESCE(NEW.paid_at, NEW.updated_at) % 86400,
                NEW.currency, 1, NEW.amount_micros)
        ON CONFLICT (currency, day) DO UPDATE SET orders_paid = orders_paid + 1,
            revenue_micros = revenue_micros + excluded.revenue_micros;
END;

CREATE TRIGGER stats_commissions_ai AFTER INSERT ON commissions BEGIN
    INSERT INTO stats_daily (day, currency, commissions_micros)
        VALUES (NEW.created_at - NEW.created_at % 86400, NEW.currency, NEW.amount_micros)
        ON CONFLICT (currency, day) DO UPDATE SET
            commissions_micros = commissions_micros + excluded.commissions_micros;
END;

CREATE TRIGGER stats_withdrawals_ai AFTER INSERT ON withdrawals BEGIN
    INSERT INTO stats_daily (day, currency, withdrawals_requested, withdrawals_requested_micros)
        VALUES (NEW.requested_at - NEW.requested_at % 86400, NEW.currency, 1, NEW.amount_micros)
        ON CONFLICT (currency, day) DO UPDATE SET
            withdrawals_requested = withdrawals_requested + 1,
            withdrawals_requested_micros =
                withdrawals_requested_micros + excluded.withdrawals_requested_micros;
END;
CREATE TRIGGER stats_withdrawals_au AFTER UPDATE OF status ON withdrawals
    WHEN NEW.status = 'paid' AND OLD.status <> 'paid' BEGIN
    INSERT INTO stats_daily (day, currency, withdrawals_paid_micros)
        VALUES (NEW.decided_at - NEW.decided_at % 86400, NEW.currency, NEW.amount_micros)
        ON CONFLICT (currency, day) DO UPDATE SET
            withdrawals_paid_micros = withdrawals_paid_micros + excluded.withdrawals_paid_micros;
END;

CREATE TRIGGER stats_contracts_ai AFTER INSERT ON contracts WHEN NEW.status = 'active' BEGIN
    INSERT INTO stats_daily (day, currency, contracts_started, ghs_started)
        VALUES (NEW.started_at - NEW.started_at % 86400, '', 1, NEW.hashrate_ghs)
        ON CONFLICT (currency, day) DO UPDATE SET contracts_started = contracts_started + 1,
            ghs_started = ghs_started + excluded.ghs_started;
END;
CREATE TRIGGER stats_contracts_au AFTER UPDATE OF status ON contracts
    WHEN OLD.status = 'active' AND NEW.status <> 'active' BEGIN
    INSERT INTO stats_daily (day, currency, contracts_ended, ghs_ended)
        VALUES (COALESCE(NEW.ended_at, NEW.expires_at) - COALESCE(NEW.ended_at, NEW.expires_at) % 86400,
                '', 1, OLD.hashrate_ghs)
        ON CONFLICT (currency, day) DO UPDATE SET contracts_ended = contracts_ended + 1,
            ghs_ended = ghs_ended + excluded.ghs_ended;
END;

-- What happened before this migration, from the tables themselves.
INSERT INTO stats_daily (day, currency, signups)
    SELECT created_at - created_at % 86400 AS d, '', COUNT(*) FROM users WHERE true GROUP BY d
    ON CONFLICT (currency, day) DO UPDATE SET signups = signups + excluded.signups;
INSERT INTO stats_daily (day, currency, orders_paid, revenue_micros)
    SELECT COALESCE(paid_at, updated_at) - COALESCE(paid_at, updated_at) % 86400 AS d, currency,
           COUNT(*), SUM(amount_micros)
    FROM orders WHERE status IN ('paid', 'refunded') AND paid_at IS NOT NULL GROUP BY d, currency
    ON CONFLICT (currency, day) DO UPDATE SET orders_paid = orders_paid + excluded.orders_paid,
        revenue_micros = revenue_micros + excluded.revenue_micros;
INSERT INTO stats_daily (day, currency, commissions_micros)
    SELECT created_at - created_at % 86400 AS d, currency, SUM(amount_micros)
    FROM commissions WHERE true GROUP BY d, currency
    ON CONFLICT (currency, day) DO UPDATE SET
        commissions_micros = commissions_micros + excluded.commissions_micros;
INSERT INTO stats_daily (day, currency, withdrawals_requested, withdrawals_requested_micros)
    SELECT requested_at - requested_at % 86400 AS d, currency, COUNT(*), SUM(amount_micros)
    FROM withdrawals WHERE true GROUP BY d, currency
    ON CONFLICT (currency, day) DO UPDATE SET
        withdrawals_requested = withdrawals_requested + excluded.withdrawals_requested,
        withdrawals_requested_micros =
            withdrawals_requested_micros + excluded.withdrawals_requested_micros;
INSERT INTO stats_daily (day, currency, withdrawals_paid_micros)
    SELECT decided_at - decided_at % 86400 AS d, currency, SUM(amount_micros)
    FROM withdrawals WHERE status = 'paid' GROUP BY d, currency
    ON CONFLICT (currency, day) DO UPDATE SET
        withdrawals_paid_micros = withdrawals_paid_micros + excluded.withdrawals_paid_micros;
INSERT INTO stats_daily (day, currency, contracts_started, ghs_started)
    SELECT started_at - started_at % 86400 AS d, '', COUNT(*), SUM(hashrate_ghs)
    FROM contracts WHERE true GROUP BY d
    ON CONFLICT (currency, day) DO UPDATE SET
        contracts_started = contracts_started + excluded.contracts_started,
        ghs_started = ghs_started + excluded.ghs_started;
INSERT INTO stats_daily (day, currency, contracts_ended, ghs_ended)
    SELECT COALESCE(ended_at, expires_at) - COALESCE(ended_at, expires_at) % 86400 AS d, '',
           COUNT(*), SUM(hashrate_ghs)
    FROM contracts WHERE status <> 'active' GROUP BY d
    ON CONFLICT (currency, day) DO UPDATE SET
        contracts_ended = contracts_ended + excluded.contracts_ended,
        ghs_ended = ghs_ended + excluded.ghs_ended;
