-- The end of a batch of attempts, each written only if the worker still holds
-- the lease it was given (state running, same token): a worker that lost its
-- lease changes nothing. Rows are locked in id order so two batches touching
-- the same jobs (completer and heartbeat) cannot deadlock.
WITH done AS (
    SELECT * FROM jsonb_to_recordset(%(completions)s::jsonb) AS given(
        job_id bigint, lease_token bigint, outcome text, result text, error text,
        retry_delay float8
    )
),
held AS MATERIALIZED (
    SELECT job.id, job.lease_token, done.outcome, done.result, done.error, done.retry_delay
    FROM conveyor_jobs AS job
    JOIN done ON done.job_id = job.id AND done.lease_token = job.lease_token
    WHERE job.state = 'running' AND done.outcome IN ('succeeded', 'retry', 'dead')
    ORDER BY job.id
    FOR UPDATE OF job
)
UPDATE conveyor_jobs AS job
SET state = CASE
                WHEN held.outcome <> 'retry' THEN held.outcome
                WHEN held.retry_delay > 0 THEN 'scheduled'
                ELSE 'available'
            END,
    result = CASE WHEN held.outcome = 'succeeded' THEN held.result::jsonb ELSE job.result END,
    errors = CASE WHEN held.outcome = 'succeeded' THEN job.errors
                  ELSE job.errors || jsonb_build_array(held.error::jsonb) END,
    run_at = CASE WHEN held.outcome = 'retry'
                  THEN now() + make_interval(secs => held.retry_delay)
                  ELSE job.run_at END,
    finished_at = CASE WHEN held.outcome = 'retry' THEN NULL ELSE now() END,
    lease_owner = NULL,
    lease_expires_at = NULL,
    idempotency_expires_at = CASE
        WHEN held.outcome <> 'retry' AND job.idempotency_key IS NOT NULL
        THEN now() + make_interval(secs => job.idempotency_window)
        ELSE job.idempotency_expires_at
    END
FROM held
WHERE job.id = held.id AND job.state = 'running' AND job.lease_token = held.lease_token
RETURNING job.id
