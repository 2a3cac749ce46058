-- A running job's progress and/or metadata, fenced by the lease token. Returns
-- whether a cancel was asked for, so a job reporting progress learns it for free.
INSERT INTO conveyor_job_context (job_id, progress, progress_message, metadata, updated_at)
SELECT id, :progress, :message, coalesce(:metadata, '{}'), :now
FROM conveyor_jobs
WHERE id = :job_id AND lease_token = :lease_token AND state = 'running'
ON CONFLICT (job_id) DO UPDATE
SET progress = CASE WHEN :set_progress THEN excluded.progress
                    ELSE conveyor_job_context.progress END,
    progress_message = CASE WHEN :set_progress THEN excluded.progress_message
                            ELSE conveyor_job_context.progress_message END,
    metadata = CASE WHEN :metadata IS NULL THEN conveyor_job_context.metadata
                    ELSE excluded.metadata END,
    updated_at = excluded.updated_at
RETURNING cancel_requested_at IS NOT NULL AS cancel_requested
