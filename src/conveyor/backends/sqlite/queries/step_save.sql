-- Record a step (finished, or a durable wait starting), fenced by the lease token:
-- nothing is written unless the caller still runs the job. A finished step is never
-- overwritten, and a wait already signalled is not turned back into a plain wait.
INSERT INTO conveyor_job_steps
    (job_id, name, args_digest, status, result, wake_at, attempt, tries, started_at,
     finished_at)
SELECT id, :name, :args_digest, :status, :result,
       CASE WHEN :wake_in IS NULL THEN NULL ELSE :now + :wake_in END,
       attempt, :tries, :now - :took, CASE WHEN :status = 'done' THEN :now END
FROM conveyor_jobs
WHERE id = :job_id AND lease_token = :lease_token AND state = 'running'
ON CONFLICT (job_id, name) DO UPDATE
SET status = excluded.status, result = excluded.result,
    wake_at = coalesce(excluded.wake_at, conveyor_job_steps.wake_at),
    tries = excluded.tries, finished_at = excluded.finished_at,
    args_digest = excluded.args_digest
WHERE conveyor_job_steps.status <> 'done'
  AND NOT (conveyor_job_steps.status = 'signalled' AND excluded.status = 'waiting')
RETURNING name
