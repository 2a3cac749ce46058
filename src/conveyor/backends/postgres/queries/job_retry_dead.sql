-- An operator's retry: a dead job gets a fresh set of attempts; its history stays,
-- and a row in conveyor_job_retries marks where in it the fresh attempts begin.
WITH retried AS (
    UPDATE conveyor_jobs
    SET state = 'available',
        attempt = 0,
        uncounted_rescues = 0,
        run_at = now(),
        finished_at = NULL,
        idempotency_expires_at = NULL
    WHERE state = 'dead'
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
      AND (%(task)s::text IS NULL OR task = %(task)s::text)
      AND (%(ids)s::bigint[] IS NULL OR id = ANY (%(ids)s::bigint[]))
    RETURNING id, queue, jsonb_array_length(errors) AS after_errors
),
marked AS (
    INSERT INTO conveyor_job_retries (job_id, actor, after_errors)
    SELECT id, %(actor)s::text, after_errors FROM retried
)
SELECT id, queue FROM retried
