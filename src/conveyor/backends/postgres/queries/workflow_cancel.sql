-- Cancel every node of a workflow that has not started (waiting, scheduled or
-- available); running nodes finish (or are cancelled one by one).
UPDATE conveyor_jobs
SET state = 'cancelled',
    finished_at = now(),
    idempotency_expires_at = CASE WHEN idempotency_key IS NULL THEN NULL
                                  ELSE now() + make_interval(secs => idempotency_window) END
WHERE id IN (SELECT job_id FROM conveyor_workflow_nodes WHERE workflow_id = %(workflow_id)s::text)
  AND state IN ('scheduled', 'available')
RETURNING id, queue
