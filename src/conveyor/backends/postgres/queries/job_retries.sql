-- The operator retries of one job, oldest first.
SELECT extract(epoch FROM at)::float8 AS at, actor, after_errors
FROM conveyor_job_retries WHERE job_id = %(job_id)s::bigint ORDER BY id
