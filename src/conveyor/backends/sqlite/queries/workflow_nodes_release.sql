-- Waiting nodes among :ids whose parents all finished as their runs_when asks:
-- available now, fetched like any job (priority, queue, limits).
UPDATE conveyor_jobs
SET state = 'available',
    run_at = :now
WHERE id IN (
    SELECT job_id FROM conveyor_workflow_nodes
    WHERE job_id IN (SELECT value FROM json_each(:ids))
      AND waiting = 0
      AND NOT (runs_when = 'succeeded' AND failed > 0)
      AND NOT (runs_when = 'failed' AND failed = 0)
)
  AND state = 'scheduled' AND run_at >= 253402128000
RETURNING id, queue
