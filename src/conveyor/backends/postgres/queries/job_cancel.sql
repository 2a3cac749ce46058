UPDATE conveyor_jobs
SET state = 'cancelled',
    finished_at = now(),
    idempotency_expires_at = CASE WHEN idempotency_key IS NULL THEN NULL
                                  ELSE now() + make_interval(secs => idempotency_window) END
WHERE id = %(job_id)s::bigint AND state IN ('scheduled', 'available')
RETURNING id
