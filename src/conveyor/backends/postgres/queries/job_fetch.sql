-- Lease up to `limit` due jobs across the worker's queues in one statement.
--
-- Each queue's candidates are locked with SKIP LOCKED in that queue's order
-- (priority, run_at, id), so concurrent workers never wait on each other. The
-- picks then interleave round-robin: the first job of every queue comes before
-- the second job of any queue, ties going to the queue listed first, so a
-- backlog in one queue cannot starve another. pick_order is that order.
-- A paused queue offers nothing (its jobs stay available for when it resumes).
-- A job of an ordering group waits while its group has a running job or an
-- earlier unfinished one (so a SKIP LOCKED race cannot start two of a group:
-- the second candidate always sees the first as unfinished).
-- The first %(start)s picks go to a free slot at once: their start is recorded
-- here (start_token = the new lease token); the others wait in the worker
-- (prefetch) until it records their start (job_complete, outcome 'started').
-- result as text: the record decoder expects JSON text for it (see job_get).
WITH candidates AS MATERIALIZED (
    SELECT job.id, job.priority, job.run_at, wanted.rank AS queue_rank
    FROM unnest(%(queues)s::text[]) WITH ORDINALITY AS wanted(name, rank)
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at
        FROM conveyor_jobs
        WHERE state = 'available' AND queue = wanted.name AND limit_name IS NULL
          AND NOT EXISTS (SELECT 1 FROM conveyor_queue_pauses AS p WHERE p.queue = wanted.name)
          AND (group_key IS NULL OR NOT EXISTS (
              SELECT 1 FROM conveyor_jobs AS other
              WHERE other.group_key = conveyor_jobs.group_key AND other.id <> conveyor_jobs.id
                AND other.state IN ('scheduled', 'available', 'running')
                AND (other.state = 'running' OR other.id < conveyor_jobs.id)
          ))
        ORDER BY priority, run_at, id
        LIMIT %(limit)s::integer
        FOR UPDATE SKIP LOCKED
    ) AS job
),
picked AS MATERIALIZED (
    SELECT id, row_number() OVER (ORDER BY turn, queue_rank) AS pick_order
    FROM (
        SELECT id, queue_rank,
               row_number() OVER (PARTITION BY queue_rank ORDER BY priority, run_at, id) AS turn
        FROM candidates
    ) AS ranked
    ORDER BY turn, queue_rank
    LIMIT %(limit)s::integer
)
UPDATE conveyor_jobs AS job
SET state = 'running',
    attempt = job.attempt + 1,
    lease_owner = %(worker_id)s::text,
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s::float8),
    lease_token = job.lease_token + 1,
    start_token = CASE WHEN picked.pick_order <= %(start)s::integer
                       THEN job.lease_token + 1 ELSE job.start_token END,
    started_at = now()
FROM picked
WHERE job.id = picked.id AND job.state = 'available'
  -- A job a dead worker held without starting it (given its attempt back, see
  -- job_rescue.sql) goes only to a free slot, never into a prefetch again.
  AND (picked.pick_order <= %(start)s::integer OR job.uncounted_rescues = 0)
RETURNING job.id, job.task, job.queue, job.args, job.state, job.priority, job.run_at,
          job.attempt, job.max_attempts, job.lease_owner, job.lease_expires_at,
          job.lease_token, job.idempotency_key, job.group_key, job.timeout, job.created_at,
          job.started_at, job.finished_at, job.result::text AS result, job.errors, job.tags,
          job.trace_context,
          picked.pick_order
