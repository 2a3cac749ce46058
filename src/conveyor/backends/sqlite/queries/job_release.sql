-- Graceful shutdown (delay 0: available now) or an open circuit breaker (scheduled
-- after the delay): the attempt was stopped by us, not failed, so it is not counted.
-- A job given back to wait whose signal came while it was still running is due at once.
UPDATE conveyor_jobs
SET state = CASE WHEN :delay > 0 AND NOT EXISTS (
                     SELECT 1 FROM conveyor_job_steps AS s
                     WHERE s.job_id = conveyor_jobs.id AND s.status = 'signalled')
                 THEN 'scheduled' ELSE 'available' END,
    attempt = attempt - 1,
    run_at = :now + CASE WHEN EXISTS (
                          SELECT 1 FROM conveyor_job_steps AS s
                          WHERE s.job_id = conveyor_jobs.id AND s.status = 'signalled')
                     THEN 0 ELSE :delay END,
    lease_owner = NULL,
    lease_expires_at = NULL
WHERE state = 'running'
  AND lease_owner = :worker_id
  AND (id, lease_token) IN (
      SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:held)
  )
RETURNING id
