-- Back-pressure (RetryAfter(limit=...)) for one key: nothing of it starts until
-- paused_until. A pause only ever grows.
INSERT INTO conveyor_limit_keys AS k (limit_name, key, paused_until, paused_reason)
SELECT :name, :key, :now + :seconds, :reason
WHERE EXISTS (SELECT 1 FROM conveyor_limits WHERE name = :name)
ON CONFLICT (limit_name, key) DO UPDATE
SET paused_until = max(coalesce(k.paused_until, excluded.paused_until), excluded.paused_until),
    paused_reason = excluded.paused_reason
