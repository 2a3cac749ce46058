UPDATE conveyor_jobs
SET state = 'succeeded',
    result = :result,
    finished_at = :now,
    lease_owner = NULL,
    lease_expires_at = NULL,
    idempotency_expires_at = CASE WHEN idempotency_key IS NULL THEN NULL
                                  ELSE :now + idempotency_window END
WHERE id = :job_id AND state = 'running' AND lease_token = :lease_token
RETURNING id
