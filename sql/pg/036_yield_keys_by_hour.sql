-- 036 on PostgreSQL: as on SQLite (sql/036_…), the last hour credited
-- under earn:<contract>:<hour> (no row: none); later hours are keyed
-- yield:<hour>:<contract>.
CREATE TABLE accrual_key_cutover (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    earn_keys_through BIGINT NOT NULL
);
INSERT INTO accrual_key_cutover (id, earn_keys_through)
    SELECT 1, MAX(split_part(idempotency_key, ':', 3)::BIGINT)
    FROM transfers WHERE idempotency_key ~ '^earn:[0-9]+:[0-9]+$'
    HAVING COUNT(*) > 0;
