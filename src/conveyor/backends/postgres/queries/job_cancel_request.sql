-- Ask a running job to stop: it sees `ctx.cancelled`; its worker cancels it hard
-- once `grace` seconds have passed. A repeated request keeps the first time.
INSERT INTO conveyor_job_context AS ctx (job_id, cancel_requested_at, cancel_grace)
SELECT id, now(), %(grace)s::float8 FROM conveyor_jobs
WHERE id = %(job_id)s::bigint AND state = 'running'
ON CONFLICT (job_id) DO UPDATE
SET cancel_requested_at = coalesce(ctx.cancel_requested_at, excluded.cancel_requested_at),
    cancel_grace = least(ctx.cancel_grace, excluded.cancel_grace)
RETURNING job_id
