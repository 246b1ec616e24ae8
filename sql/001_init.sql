-- 001_init.sql: the catalogue.
-- Money is integer micro-units; hash rate is integer GH/s (shown as TH/s).

CREATE TABLE packages (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    hashrate_ghs INTEGER NOT NULL CHECK (hashrate_ghs > 0),
    price_micros INTEGER NOT NULL CHECK (price_micros > 0),
    daily_yield_micros INTEGER NOT NULL CHECK (daily_yield_micros >= 0),
    duration_days INTEGER NOT NULL CHECK (duration_days > 0),
    currency TEXT NOT NULL DEFAULT 'USD' CHECK (length(currency) = 3),
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    sort_order INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE INDEX packages_active_order ON packages (active, sort_order, id);

-- A counter bumped on every catalogue change, whoever makes it (the module,
-- deepminectl, or an operator with the sqlite3 shell): each process keeps a
-- rendered catalogue and re-renders when this moves.
CREATE TABLE catalogue_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO catalogue_state (id, generation) VALUES (1, 1);

CREATE TRIGGER packages_ai AFTER INSERT ON packages BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER packages_au AFTER UPDATE ON packages BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER packages_ad AFTER DELETE ON packages BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
END;
