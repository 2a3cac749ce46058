-- The task's breaker, locked to change in this transaction, with the database's now.
SELECT task, state, window_started_at, attempts, failures, prev_attempts, prev_failures,
       cooldown, open_until, probe_holder, probe_expires_at, changed_at,
       extract(epoch FROM now())::float8 AS now
FROM conveyor_breakers WHERE task = %(task)s::text
FOR UPDATE
