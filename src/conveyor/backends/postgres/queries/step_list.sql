-- The recorded steps of one job, in the order they started.
SELECT name, args_digest, status, result::text AS result,
       extract(epoch FROM wake_at)::float8 AS wake_at, attempt, tries,
       extract(epoch FROM started_at)::float8 AS started_at,
       extract(epoch FROM finished_at)::float8 AS finished_at
FROM conveyor_job_steps
WHERE job_id = %(job_id)s::bigint
ORDER BY started_at, name
