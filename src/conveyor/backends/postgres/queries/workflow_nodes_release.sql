-- Waiting nodes among ids whose parents all finished as their runs_when asks:
-- available now, fetched like any job (priority, queue, limits).
UPDATE conveyor_jobs
SET state = 'available',
    run_at = now()
-- id = ANY(ARRAY(...)): the few ids drive the update through the primary key,
-- whatever the statistics say of the pending nodes at the end of time (stale
-- statistics once made the planner walk every pending node per completion).
WHERE id = ANY(ARRAY(
    SELECT job_id FROM conveyor_workflow_nodes
    WHERE job_id = ANY(%(ids)s::bigint[])
      AND waiting = 0
      AND NOT (runs_when = 'succeeded' AND failed > 0)
      AND NOT (runs_when = 'failed' AND failed = 0)
))
  -- IS TRUE: neither an index condition nor a partial index's predicate, so the
  -- staging index (every pending node) is never the way in: the ids are
  AND (state = 'scheduled' AND run_at >= to_timestamp(253402128000)) IS TRUE
RETURNING id, queue
