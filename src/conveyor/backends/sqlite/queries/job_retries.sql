-- The operator retries of one job, oldest first.
SELECT at, actor, after_errors FROM conveyor_job_retries WHERE job_id = :job_id ORDER BY id
