-- Extend the leases this worker still holds (same owner, same token); a job
-- missing from the result was lost (rescued, or fetched again by another worker).
-- One primary-key lookup per given job, locked in id order, the state checked
-- `IS TRUE` so the leases index (every running job of every worker) is never the
-- way in, whatever the statistics say (see job_complete.sql).
WITH given AS MATERIALIZED (
    SELECT * FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[]) AS held(id, lease_token)
    ORDER BY id
),
held AS MATERIALIZED (
    SELECT job.id
    FROM given CROSS JOIN LATERAL (
        SELECT id FROM conveyor_jobs
        WHERE id = given.id AND lease_token = given.lease_token
          AND (state = 'running') IS TRUE AND lease_owner = %(worker_id)s::text
        FOR UPDATE
    ) AS job
)
UPDATE conveyor_jobs AS job
SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s::float8)
FROM held
WHERE job.id = held.id AND (job.state = 'running') IS TRUE
  AND job.lease_owner = %(worker_id)s::text
RETURNING job.id
