-- The breakers of these tasks, with the database's now.
SELECT task, state, window_started_at, attempts, failures, prev_attempts, prev_failures,
       cooldown, open_until, probe_holder, probe_expires_at, changed_at,
       extract(epoch FROM clock_timestamp())::float8 AS now
FROM conveyor_breakers WHERE task = ANY(%(tasks)s::text[])
