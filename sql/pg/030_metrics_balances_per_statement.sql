-- 030 on PostgreSQL: metrics_balances follows the balances of members'
-- accounts once per UPDATE statement (transition tables) instead of once
-- per row. Same sums: the change of each wallet or held account whose
-- balance moved, added to its (kind, currency) row. A statement-level
-- trigger cannot name columns (UPDATE OF balance_micros) when it has
-- transition tables, so it runs after every UPDATE of accounts and finds
-- nothing to add when no balance moved.
DROP TRIGGER metrics_accounts_au ON accounts;
CREATE FUNCTION metrics_accounts_aus_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO metrics_balances (kind, currency, balance_micros)
        SELECT n.kind, n.currency, SUM(n.balance_micros - o.balance_micros)
        FROM dm_new_accounts n JOIN dm_old_accounts o ON o.id = n.id
        WHERE n.kind IN ('wallet', 'held') AND n.balance_micros <> o.balance_micros
        GROUP BY n.kind, n.currency
        ON CONFLICT (kind, currency) DO UPDATE SET balance_micros = metrics_balances.balance_micros + excluded.balance_micros;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER metrics_accounts_aus AFTER UPDATE ON accounts
    REFERENCING OLD TABLE AS dm_old_accounts NEW TABLE AS dm_new_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION metrics_accounts_aus_fn();
