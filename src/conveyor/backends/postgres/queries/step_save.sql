-- Record a step (finished, or a durable wait starting), fenced by the lease token:
-- nothing is written unless the caller still runs the job. A finished step is never
-- overwritten, and a wait already signalled is not turned back into a plain wait.
INSERT INTO conveyor_job_steps AS step
    (job_id, name, args_digest, status, result, wake_at, attempt, tries, started_at,
     finished_at)
SELECT id, %(name)s::text, %(args_digest)s::text, %(status)s::text, %(result)s::jsonb,
       now() + make_interval(secs => %(wake_in)s::float8),
       attempt, %(tries)s::integer, now() - make_interval(secs => %(took)s::float8),
       CASE WHEN %(status)s::text = 'done' THEN now() END
FROM conveyor_jobs
WHERE id = %(job_id)s::bigint AND lease_token = %(lease_token)s::bigint AND state = 'running'
ON CONFLICT (job_id, name) DO UPDATE
SET status = excluded.status, result = excluded.result,
    wake_at = coalesce(excluded.wake_at, step.wake_at),
    tries = excluded.tries, finished_at = excluded.finished_at,
    args_digest = excluded.args_digest
WHERE step.status <> 'done' AND NOT (step.status = 'signalled' AND excluded.status = 'waiting')
RETURNING name
