-- Store the breaker as the transaction decided (after breaker_lock).
UPDATE conveyor_breakers
SET state = :state, window_started_at = :window_started_at, attempts = :attempts,
    failures = :failures, prev_attempts = :prev_attempts, prev_failures = :prev_failures,
    cooldown = :cooldown, open_until = :open_until, probe_holder = :probe_holder,
    probe_expires_at = :probe_expires_at, changed_at = :changed_at
WHERE task = :task
