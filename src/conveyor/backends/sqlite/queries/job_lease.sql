UPDATE conveyor_jobs
SET state = 'running',
    attempt = attempt + 1,
    lease_owner = :worker_id,
    lease_expires_at = :now + :lease_seconds,
    lease_token = lease_token + 1,
    started_at = :now
WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'available'
RETURNING *
