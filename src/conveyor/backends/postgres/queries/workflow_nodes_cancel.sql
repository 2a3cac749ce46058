-- Waiting nodes among ids that can no longer run as their runs_when says: cancelled.
-- (A waiting node is 'scheduled' at the end of time, 253402128000 = 9999-12-30.)
UPDATE conveyor_jobs
SET state = 'cancelled',
    finished_at = now(),
    idempotency_expires_at = CASE WHEN idempotency_key IS NULL THEN NULL
                                  ELSE now() + make_interval(secs => idempotency_window) END
-- id = ANY(ARRAY(...)): the few ids drive the update through the primary key,
-- whatever the statistics say of the pending nodes at the end of time (stale
-- statistics once made the planner walk every pending node per completion).
WHERE id = ANY(ARRAY(
    SELECT job_id FROM conveyor_workflow_nodes
    WHERE job_id = ANY(%(ids)s::bigint[])
      AND ((runs_when = 'succeeded' AND failed > 0)
           OR (runs_when = 'failed' AND waiting = 0 AND failed = 0))
))
  -- IS TRUE: neither an index condition nor a partial index's predicate, so the
  -- staging index (every pending node) is never the way in: the ids are
  AND (state = 'scheduled' AND run_at >= to_timestamp(253402128000)) IS TRUE
RETURNING id, queue
