-- A lease that expired means the worker died, hung or was cut off: the attempt
-- counts as failed, and the job runs again at once (or is dead if none are left).
-- Expiry is judged by the database's clock; SKIP LOCKED leaves alone a job whose
-- worker is heartbeating at this very moment, and lets rescuers run side by side.
WITH expired AS MATERIALIZED (
    SELECT id FROM conveyor_jobs
    WHERE state = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT %(limit)s::integer
    FOR UPDATE SKIP LOCKED
)
UPDATE conveyor_jobs AS job
SET state = CASE WHEN job.attempt >= job.max_attempts THEN 'dead' ELSE 'available' END,
    finished_at = CASE WHEN job.attempt >= job.max_attempts THEN now() END,
    idempotency_expires_at = CASE
        WHEN job.attempt >= job.max_attempts AND job.idempotency_key IS NOT NULL
        THEN now() + make_interval(secs => job.idempotency_window)
    END,
    run_at = now(),
    errors = job.errors || jsonb_build_array(jsonb_build_object(
        'attempt', job.attempt,
        'type', 'conveyor.errors.LeaseExpired',
        'message', 'worker ' || job.lease_owner || ' stopped renewing its lease (crashed, '
                   || 'killed, paused or cut off from the database); the attempt counts as failed',
        'traceback', '',
        'worker', job.lease_owner,
        'at', extract(epoch FROM now())::float8)),
    lease_owner = NULL,
    lease_expires_at = NULL
FROM expired
WHERE job.id = expired.id AND job.state = 'running' AND job.lease_expires_at < now()
RETURNING job.id
