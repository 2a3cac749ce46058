-- A key with its own rate served by a fetch: its bucket (already refilled,
-- :tokens) less :used.
INSERT INTO conveyor_limit_keys AS k (limit_name, key, tokens, refreshed_at)
VALUES (:limit_name, :key, :tokens, :now)
ON CONFLICT (limit_name, key) DO UPDATE
SET tokens = excluded.tokens, refreshed_at = excluded.refreshed_at
