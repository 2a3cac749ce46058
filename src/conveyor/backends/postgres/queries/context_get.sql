-- What a job reported about itself, and whether an operator asked to cancel it.
SELECT progress, progress_message, metadata::text AS metadata,
       extract(epoch FROM updated_at)::float8 AS updated_at,
       extract(epoch FROM cancel_requested_at)::float8 AS cancel_requested_at, cancel_grace
FROM conveyor_job_context
WHERE job_id = %(job_id)s::bigint
