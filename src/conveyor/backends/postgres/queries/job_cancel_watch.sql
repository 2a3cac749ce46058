-- The jobs this worker runs that an operator asked to cancel, with how long ago.
SELECT c.job_id, j.lease_token,
       extract(epoch FROM now() - c.cancel_requested_at)::float8 AS age, c.cancel_grace
FROM conveyor_job_context AS c
JOIN conveyor_jobs AS j ON j.id = c.job_id
WHERE c.job_id = ANY(%(ids)s::bigint[])
  AND c.cancel_requested_at IS NOT NULL
  AND j.state = 'running' AND j.lease_owner = %(worker_id)s::text
