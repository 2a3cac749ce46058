-- A lease that expired means the worker died, hung or was cut off. An attempt
-- whose start was recorded (start_token = lease_token) counts as failed, with a
-- LeaseExpired error, and the job runs again at once (or is dead if none are
-- left). A job whose start was never recorded (fetched and perhaps never
-- started) gets its attempt back, once, with a LeaseExpired entry that says so: a job found so again (uncounted_rescues > 0) is counted, so a
-- task that kills its worker before its start is recorded cannot loop forever.
-- "counted" below is: start_token = lease_token OR uncounted_rescues > 0.
UPDATE conveyor_jobs
SET state = CASE WHEN (start_token = lease_token OR uncounted_rescues > 0)
                      AND attempt >= max_attempts THEN 'dead' ELSE 'available' END,
    finished_at = CASE WHEN (start_token = lease_token OR uncounted_rescues > 0)
                            AND attempt >= max_attempts THEN :now ELSE NULL END,
    idempotency_expires_at = CASE WHEN (start_token = lease_token OR uncounted_rescues > 0)
                                       AND attempt >= max_attempts
                                       AND idempotency_key IS NOT NULL
                                  THEN :now + idempotency_window ELSE NULL END,
    run_at = :now,
    attempt = CASE WHEN (start_token = lease_token OR uncounted_rescues > 0)
                   THEN attempt ELSE attempt - 1 END,
    uncounted_rescues = CASE WHEN (start_token = lease_token OR uncounted_rescues > 0)
                             THEN uncounted_rescues ELSE uncounted_rescues + 1 END,
    errors = json_insert(errors, '$[#]', json_object(
        'attempt', attempt,
        'type', 'conveyor.errors.LeaseExpired',
        'message', 'worker ' || lease_owner || ' stopped renewing its lease (crashed, '
                   || 'killed, paused or cut off from the database); '
                   || CASE WHEN (start_token = lease_token OR uncounted_rescues > 0)
                           THEN 'the attempt counts as failed'
                           ELSE 'its start was never recorded, so the attempt is not counted '
                                || '(this once: it may not have started)' END,
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
RETURNING id, state
