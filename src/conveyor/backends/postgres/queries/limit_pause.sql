-- Back-pressure (RetryAfter(limit=...)): nothing of the limit (or of one key in it)
-- starts until paused_until. A pause only ever grows: a shorter one arriving later
-- does not cut a longer one short.
INSERT INTO conveyor_limit_keys AS k (limit_name, key, paused_until, paused_reason)
SELECT %(name)s::text, %(key)s::text, now() + make_interval(secs => %(seconds)s::float8),
       %(reason)s::text
WHERE EXISTS (SELECT 1 FROM conveyor_limits WHERE name = %(name)s::text)
ON CONFLICT (limit_name, key) DO UPDATE
SET paused_until = greatest(coalesce(k.paused_until, excluded.paused_until), excluded.paused_until),
    paused_reason = excluded.paused_reason
