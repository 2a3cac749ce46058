-- Extend the leases this worker still holds (same owner, same token); a job
-- missing from the result was lost (rescued, or fetched again by another worker).
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
UPDATE conveyor_jobs AS job
SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s::float8)
FROM held
WHERE job.id = held.id AND job.state = 'running' AND job.lease_owner = %(worker_id)s::text
RETURNING job.id
