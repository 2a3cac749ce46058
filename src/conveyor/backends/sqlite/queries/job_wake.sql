-- A job given back to wait for a signal that has now come: available at once.
UPDATE conveyor_jobs
SET state = 'available', run_at = :now
WHERE id = :job_id AND state = 'scheduled'
RETURNING id, queue
