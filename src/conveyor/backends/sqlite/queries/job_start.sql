-- The worker started these attempts (fenced: same lease token, still running):
-- from now on a rescue of their lease counts the attempt as failed.
UPDATE conveyor_jobs
SET start_token = lease_token
WHERE state = 'running'
  AND (id, lease_token) IN (
      SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:held)
  )
  AND start_token <> lease_token
