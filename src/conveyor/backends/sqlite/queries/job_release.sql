-- Graceful shutdown (delay 0: available now) or an open circuit breaker (scheduled
-- after the delay): the attempt was stopped by us, not failed, so it is not counted.
UPDATE conveyor_jobs
SET state = CASE WHEN :delay > 0 THEN 'scheduled' ELSE 'available' END,
    attempt = attempt - 1,
    run_at = :now + :delay,
    lease_owner = NULL,
    lease_expires_at = NULL
WHERE state = 'running'
  AND lease_owner = :worker_id
  AND (id, lease_token) IN (
      SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:held)
  )
RETURNING id
