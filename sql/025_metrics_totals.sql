-- 025: running totals for the metrics scrape (docs/operations.md, "Metrics").
--
-- A scrape must take milliseconds on a database of a million members, but
-- summing every wallet or counting every order takes most of a second
-- there. These tables hold the figures, kept exact by triggers in the
-- same transaction as the rows they sum, so the scrape reads a handful of
-- rows. A migration that rebuilds accounts, orders or contracts (create
-- new, copy, rename) drops these triggers: it must create them again and
-- recompute the totals (as below).

-- Sum of balances of the members' accounts, per kind and currency.
CREATE TABLE metrics_balances (
    kind TEXT NOT NULL,
    currency CHAR(3) NOT NULL,
    balance_micros BIGINT NOT NULL,
    PRIMARY KEY (kind, currency)
);

-- Rows per status (orders, contracts), and the hash rate of active
-- contracts (what of it a partial refund released subtracted).
CREATE TABLE metrics_counts (
    tbl TEXT NOT NULL,
    status TEXT NOT NULL,
    n BIGINT NOT NULL,
    hashrate_ghs BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tbl, status)
);

INSERT INTO metrics_balances (kind, currency, balance_micros)
    SELECT kind, currency, SUM(balance_micros) FROM accounts
    WHERE kind IN ('wallet', 'held') GROUP BY kind, currency;
INSERT INTO metrics_counts (tbl, status, n, hashrate_ghs)
    SELECT 'orders', status, COUNT(*), 0 FROM orders GROUP BY status;
INSERT INTO metrics_counts (tbl, status, n, hashrate_ghs)
    SELECT 'contracts', status, COUNT(*), SUM(hashrate_ghs - released_ghs) FROM contracts
    GROUP BY status;

CREATE TRIGGER metrics_accounts_ai AFTER INSERT ON accounts
WHEN NEW.kind IN ('wallet', 'held') BEGIN
    INSERT INTO metrics_balances (kind, currency, balance_micros)
        VALUES (NEW.kind, NEW.currency, NEW.balance_micros)
        ON CONFLICT (kind, currency) DO UPDATE SET balance_micros = balance_micros + excluded.balance_micros;
END;
CREATE TRIGGER metrics_accounts_au AFTER UPDATE OF balance_micros ON accounts
WHEN NEW.kind IN ('wallet', 'held') AND NEW.balance_micros != OLD.balance_micros BEGIN
    INSERT INTO metrics_balances (kind, currency, balance_micros)
        VALUES (NEW.kind, NEW.currency, NEW.balance_micros - OLD.balance_micros)
        ON CONFLICT (kind, currency) DO UPDATE SET balance_micros = balance_micros + excluded.balance_micros;
END;
CREATE TRIGGER metrics_accounts_ad AFTER DELETE ON accounts
WHEN OLD.kind IN ('wallet', 'held') BEGIN
    UPDATE metrics_balances SET balance_micros = balance_micros - OLD.balance_micros
        WHERE kind = OLD.kind AND currency = OLD.currency;
END;

CREATE TRIGGER metrics_orders_ai AFTER INSERT ON orders BEGIN
    INSERT INTO metrics_counts (tbl, status, n) VALUES ('orders', NEW.status, 1)
        ON CONFLICT (tbl, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER metrics_orders_au AFTER UPDATE OF status ON orders
WHEN NEW.status != OLD.status BEGIN
    UPDATE metrics_counts SET n = n - 1 WHERE tbl = 'orders' AND status = OLD.status;
    INSERT INTO metrics_counts (tbl, status, n) VALUES ('orders', NEW.status, 1)
        ON CONFLICT (tbl, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER metrics_orders_ad AFTER DELETE ON orders BEGIN
    UPDATE metrics_counts SET n = n - 1 WHERE tbl = 'orders' AND status = OLD.status;
END;

CREATE TRIGGER metrics_contracts_ai AFTER INSERT ON contracts BEGIN
    INSERT INTO metrics_counts (tbl, status, n, hashrate_ghs)
        VALUES ('contracts', NEW.status, 1, NEW.hashrate_ghs - NEW.released_ghs)
        ON CONFLICT (tbl, status) DO UPDATE
        SET n = n + 1, hashrate_ghs = hashrate_ghs + excluded.hashrate_ghs;
END;
CREATE TRIGGER metrics_contracts_au AFTER UPDATE OF status, hashrate_ghs, released_ghs ON contracts
WHEN NEW.status != OLD.status OR NEW.hashrate_ghs != OLD.hashrate_ghs
     OR NEW.released_ghs != OLD.released_ghs BEGIN
    UPDATE metrics_counts SET n = n - 1, hashrate_ghs = hashrate_ghs - (OLD.hashrate_ghs - OLD.released_ghs)
        WHERE tbl = 'contracts' AND status = OLD.status;
    INSERT INTO metrics_counts (tbl, status, n, hashrate_ghs)
        VALUES ('contracts', NEW.status, 1, NEW.hashrate_ghs - NEW.released_ghs)
        ON CONFLICT (tbl, status) DO UPDATE
        SET n = n + 1, hashrate_ghs = hashrate_ghs + excluded.hashrate_ghs;
END;
CREATE TRIGGER metrics_contracts_ad AFTER DELETE ON contracts BEGIN
    UPDATE metrics_counts SET n = n - 1, hashrate_ghs = hashrate_ghs - (OLD.hashrate_ghs - OLD.released_ghs)
        WHERE tbl = 'contracts' AND status = OLD.status;
END;
