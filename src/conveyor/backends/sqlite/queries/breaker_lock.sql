-- The task's breaker, to change in this transaction (BEGIN IMMEDIATE already holds
-- the database's one write lock), with the database's now.
SELECT task, state, window_started_at, attempts, failures, prev_attempts, prev_failures,
       cooldown, open_until, probe_holder, probe_expires_at, changed_at, :now AS now
FROM conveyor_breakers WHERE task = :task
