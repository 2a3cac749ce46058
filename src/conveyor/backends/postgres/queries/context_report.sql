-- A running job's progress and/or metadata, fenced by the lease token. Returns
-- whether a cancel was asked for, so a job reporting progress learns it for free.
INSERT INTO conveyor_job_context AS ctx
    (job_id, progress, progress_message, metadata, updated_at)
SELECT id, %(progress)s::float8, %(message)s::text,
       coalesce(%(metadata)s::jsonb, '{}'::jsonb), now()
FROM conveyor_jobs
WHERE id = %(job_id)s::bigint AND lease_token = %(lease_token)s::bigint AND state = 'running'
ON CONFLICT (job_id) DO UPDATE
SET progress = CASE WHEN %(set_progress)s::boolean THEN excluded.progress ELSE ctx.progress END,
    progress_message = CASE WHEN %(set_progress)s::boolean THEN excluded.progress_message
                            ELSE ctx.progress_message END,
    metadata = CASE WHEN %(metadata)s::jsonb IS NULL THEN ctx.metadata ELSE excluded.metadata END,
    updated_at = excluded.updated_at
RETURNING cancel_requested_at IS NOT NULL AS cancel_requested
