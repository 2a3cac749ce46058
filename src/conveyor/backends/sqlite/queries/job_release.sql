-- Graceful shutdown: the attempt was interrupted by us, not failed, so it is not counted.
UPDATE conveyor_jobs
SET state = 'available',
    attempt = attempt - 1,
    run_at = :now,
    lease_owner = NULL,
    lease_expires_at = NULL
WHERE state = 'running'
  AND lease_owner = :worker_id
  AND (id, lease_token) IN (
      SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:held)
  )
RETURNING id
