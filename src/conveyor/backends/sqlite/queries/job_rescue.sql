-- A lease that expired means the worker died, hung or was cut off: the attempt
-- counts as failed, and the job runs again at once (or is dead if none are left).
UPDATE conveyor_jobs
SET state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'available' END,
    finished_at = CASE WHEN attempt >= max_attempts THEN :now ELSE NULL END,
    idempotency_expires_at = CASE WHEN attempt >= max_attempts AND idempotency_key IS NOT NULL
                                  THEN :now + idempotency_window ELSE NULL END,
    run_at = :now,
    errors = json_insert(errors, '$[#]', json_object(
        'attempt', attempt,
        'type', 'conveyor.errors.LeaseExpired',
        'message', 'worker ' || lease_owner || ' stopped renewing its lease (crashed, killed, '
                   || 'paused or cut off from the database); the attempt counts as failed',
        'traceback', '',
        'worker', lease_owner,
        'at', :now)),
    lease_owner = NULL,
    lease_expires_at = NULL
WHERE id IN (
    SELECT id FROM conveyor_jobs
    WHERE state = 'running' AND lease_expires_at < :now
    ORDER BY lease_expires_at, id
    LIMIT :limit
)
RETURNING id
