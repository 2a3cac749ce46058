-- Graceful shutdown (delay 0: available now) or an open circuit breaker (scheduled
-- after the delay): the attempt was stopped by us, not failed, so it is not counted.
WITH given AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[]) AS held(id, lease_token)
),
held AS MATERIALIZED (
    SELECT job.id FROM conveyor_jobs AS job JOIN given ON given.id = job.id
    WHERE job.state = 'running'
      AND job.lease_owner = %(worker_id)s::text
      AND job.lease_token = given.lease_token
    ORDER BY job.id
    FOR UPDATE OF job
)
-- A job given back to wait whose signal came while it was still running is due at once.
UPDATE conveyor_jobs AS job
SET state = CASE WHEN %(delay)s::float8 > 0 AND NOT EXISTS (
                     SELECT 1 FROM conveyor_job_steps AS s
                     WHERE s.job_id = job.id AND s.status = 'signalled')
                 THEN 'scheduled' ELSE 'available' END,
    attempt = job.attempt - 1,
    run_at = now() + CASE WHEN EXISTS (
                          SELECT 1 FROM conveyor_job_steps AS s
                          WHERE s.job_id = job.id AND s.status = 'signalled')
                     THEN interval '0' ELSE make_interval(secs => %(delay)s::float8) END,
    lease_owner = NULL,
    lease_expires_at = NULL
FROM held
WHERE job.id = held.id AND job.state = 'running' AND job.lease_owner = %(worker_id)s::text
RETURNING job.id, job.queue
