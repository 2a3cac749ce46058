-- A running job stops as cancelled (it gave up cooperatively, or its grace ran
-- out), fenced by the lease token.
UPDATE conveyor_jobs
SET state = 'cancelled',
    finished_at = :now,
    lease_owner = NULL,
    lease_expires_at = NULL,
    idempotency_expires_at = CASE WHEN idempotency_key IS NULL THEN NULL
                                  ELSE :now + idempotency_window END
WHERE id = :job_id AND state = 'running' AND lease_token = :lease_token
RETURNING id
