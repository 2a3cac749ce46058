-- Store the breaker as the transaction decided (after breaker_lock).
UPDATE conveyor_breakers
SET state = %(state)s::text, window_started_at = %(window_started_at)s::float8,
    attempts = %(attempts)s::bigint, failures = %(failures)s::bigint,
    prev_attempts = %(prev_attempts)s::bigint, prev_failures = %(prev_failures)s::bigint,
    cooldown = %(cooldown)s::float8, open_until = %(open_until)s::float8,
    probe_holder = %(probe_holder)s::text, probe_expires_at = %(probe_expires_at)s::float8,
    changed_at = %(changed_at)s::float8
WHERE task = %(task)s::text
