-- Waiting nodes among ids whose parents all finished as their runs_when asks:
-- available now, fetched like any job (priority, queue, limits).
UPDATE conveyor_jobs
SET state = 'available',
    run_at = now()
WHERE id IN (
    SELECT job_id FROM conveyor_workflow_nodes
    WHERE job_id = ANY(%(ids)s::bigint[])
      AND waiting = 0
      AND NOT (runs_when = 'succeeded' AND failed > 0)
      AND NOT (runs_when = 'failed' AND failed = 0)
)
  AND state = 'scheduled' AND run_at >= to_timestamp(253402128000)
RETURNING id, queue
