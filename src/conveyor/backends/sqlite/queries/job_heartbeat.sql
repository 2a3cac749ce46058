UPDATE conveyor_jobs
SET lease_expires_at = :now + :lease_seconds
WHERE state = 'running'
  AND lease_owner = :worker_id
  AND (id, lease_token) IN (
      SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:held)
  )
RETURNING id
