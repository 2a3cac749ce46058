-- The jobs in :started go to a free slot at once: their start is recorded here
-- (start_token = the new lease token); the others wait in the worker (prefetch)
-- until it records their start (job_start).
UPDATE conveyor_jobs
SET state = 'running',
    attempt = attempt + 1,
    lease_owner = :worker_id,
    lease_expires_at = :now + :lease_seconds,
    lease_token = lease_token + 1,
    start_token = CASE WHEN id IN (SELECT value FROM json_each(:started))
                       THEN lease_token + 1 ELSE start_token END,
    started_at = :now
WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'available'
RETURNING *
