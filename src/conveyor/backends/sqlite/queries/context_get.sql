-- What a job reported about itself, and whether an operator asked to cancel it.
SELECT progress, progress_message, metadata, updated_at, cancel_requested_at, cancel_grace
FROM conveyor_job_context
WHERE job_id = :job_id
