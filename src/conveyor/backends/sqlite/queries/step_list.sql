-- The recorded steps of one job, in the order they started.
SELECT name, args_digest, status, result, wake_at, attempt, tries, started_at, finished_at
FROM conveyor_job_steps
WHERE job_id = :job_id
ORDER BY started_at, name
