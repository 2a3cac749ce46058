UPDATE conveyor_jobs
SET state = CASE WHEN :retry_delay > 0 THEN 'scheduled' ELSE 'available' END,
    run_at = :now + :retry_delay,
    errors = json_insert(errors, '$[#]', json(:error)),
    lease_owner = NULL,
    lease_expires_at = NULL
WHERE id = :job_id AND state = 'running' AND lease_token = :lease_token
RETURNING id
