-- A signal for a job waiting on it: the wait step takes the payload, and a job given
-- back to wait becomes available at once, in one statement. A job still inside the
-- attempt that is about to wait gets 'signalled' (its release then makes it available).
WITH job AS (
    SELECT id, state FROM conveyor_jobs
    WHERE id = %(job_id)s::bigint AND state IN ('scheduled', 'available', 'running')
    FOR UPDATE
),
step AS (
    UPDATE conveyor_job_steps AS s
    SET status = CASE WHEN job.state = 'running' THEN 'signalled' ELSE 'done' END,
        result = %(payload)s::jsonb,
        finished_at = now()
    FROM job
    WHERE s.job_id = job.id AND s.name = %(name)s::text AND s.status = 'waiting'
    RETURNING s.job_id, s.status
),
woken AS (
    UPDATE conveyor_jobs AS j
    SET state = 'available', run_at = now()
    FROM step
    WHERE j.id = step.job_id AND j.state = 'scheduled'
    RETURNING j.id, j.queue
)
SELECT step.status, (SELECT queue FROM woken) AS woken_queue FROM step
