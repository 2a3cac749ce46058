-- A key served by a fetch: its bucket (already refilled, :tokens) less :used, and a
-- new turn, behind every key served before it.
INSERT INTO conveyor_limit_keys AS k (limit_name, key, tokens, refreshed_at, turn)
VALUES (:limit_name, :key, :tokens, :now,
        (SELECT coalesce(max(turn), 0) + 1 FROM conveyor_limit_keys WHERE limit_name = :limit_name))
ON CONFLICT (limit_name, key) DO UPDATE
SET tokens = excluded.tokens, refreshed_at = excluded.refreshed_at, turn = excluded.turn
