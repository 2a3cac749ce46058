-- Waiting nodes among :ids that can no longer run as their runs_when says: cancelled.
-- (A waiting node is 'scheduled' at the end of time, 253402128000 = 9999-12-30.)
UPDATE conveyor_jobs
SET state = 'cancelled',
    finished_at = :now,
    idempotency_expires_at = CASE WHEN idempotency_key IS NULL THEN NULL
                                  ELSE :now + idempotency_window END
WHERE id IN (
    SELECT job_id FROM conveyor_workflow_nodes
    WHERE job_id IN (SELECT value FROM json_each(:ids))
      AND ((runs_when = 'succeeded' AND failed > 0)
           OR (runs_when = 'failed' AND waiting = 0 AND failed = 0))
)
  AND state = 'scheduled' AND run_at >= 253402128000
RETURNING id, queue
