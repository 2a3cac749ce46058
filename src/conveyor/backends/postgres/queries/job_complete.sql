-- The end of a batch of attempts, each written only if the worker still holds
-- the lease it was given (state running, same token): a worker that lost its
-- lease changes nothing. Rows are locked in id order so two batches touching
-- the same jobs (completer and heartbeat) cannot deadlock.
--
-- The same statement adds the batch to the per-minute aggregates (stats), so
-- the counts behind SLIs are exactly the transitions that happened: a fenced-out
-- completion counts nothing, and no count is lost or doubled. Stats rows are
-- taken after the job rows and in (queue, task) order, so this cannot deadlock.
--
-- Entries with outcome 'started' record that an attempt started (start_token =
-- lease_token, so a rescue of its lease counts it): locked with the others, in id
-- order, and written by their own update; they are not completions.
--
-- The batch drives every step, one primary-key lookup per entry: each row is
-- looked up and locked in a LATERAL subquery (FOR UPDATE keeps it from being
-- flattened, so the entries, in id order, are the outer side), and the state is
-- checked `IS TRUE`, which matches no partial index's predicate. With statistics
-- taken while few jobs were running, the planner otherwise walked the leases
-- index (every running job of every worker) and compared each with every entry
-- of the batch, in each step: a cost of running jobs x batch size, which grew
-- with the fleet and with the batches of a slow database.
WITH done AS MATERIALIZED (
    SELECT * FROM jsonb_to_recordset(%(completions)s::jsonb) AS given(
        job_id bigint, lease_token bigint, outcome text, result text, error text,
        retry_delay float8
    )
    WHERE outcome IN ('succeeded', 'retry', 'dead', 'started')
    ORDER BY job_id
),
held AS MATERIALIZED (
    SELECT job.id, job.lease_token, job.queue, job.task, job.run_at, job.started_at,
           done.outcome, done.result, done.error, done.retry_delay
    FROM done CROSS JOIN LATERAL (
        SELECT id, lease_token, queue, task, run_at, started_at
        FROM conveyor_jobs
        WHERE id = done.job_id AND lease_token = done.lease_token
          AND (state = 'running') IS TRUE
        FOR UPDATE
    ) AS job
),
marked AS (
UPDATE conveyor_jobs AS job
SET start_token = job.lease_token
FROM held
WHERE held.outcome = 'started'
  AND job.id = held.id AND (job.state = 'running') IS TRUE AND job.lease_token = held.lease_token
),
updated AS (
UPDATE conveyor_jobs AS job
SET state = CASE
                WHEN held.outcome <> 'retry' THEN held.outcome
                WHEN held.retry_delay > 0 THEN 'scheduled'
                ELSE 'available'
            END,
    result = CASE WHEN held.outcome = 'succeeded' THEN held.result::json ELSE job.result END,
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
WHERE held.outcome <> 'started'
  AND job.id = held.id AND (job.state = 'running') IS TRUE AND job.lease_token = held.lease_token
RETURNING job.id, held.queue, held.task, held.outcome,
          extract(epoch FROM held.started_at - held.run_at)::float8 AS wait,
          extract(epoch FROM now() - held.started_at)::float8 AS run
),
stats AS (
    INSERT INTO conveyor_job_stats AS s (
        minute, queue, task, shard, succeeded, retried, dead, attempts,
        wait_le_0_1, wait_le_0_5, wait_le_1, wait_le_5, wait_le_10, wait_le_30, wait_le_60, wait_le_300, wait_le_900, wait_le_3600, run_seconds,
        run_le_0_01, run_le_0_025, run_le_0_05, run_le_0_1, run_le_0_25, run_le_0_5, run_le_1, run_le_5, run_le_30, run_le_300
    )
    SELECT date_trunc('minute', now()), queue, task, mod(pg_backend_pid(), 8)::smallint,
           count(*) FILTER (WHERE outcome = 'succeeded'), count(*) FILTER (WHERE outcome = 'retry'),
           count(*) FILTER (WHERE outcome = 'dead'), count(*),
           count(*) FILTER (WHERE wait <= 0.1),
           count(*) FILTER (WHERE wait <= 0.5),
           count(*) FILTER (WHERE wait <= 1),
           count(*) FILTER (WHERE wait <= 5),
           count(*) FILTER (WHERE wait <= 10),
           count(*) FILTER (WHERE wait <= 30),
           count(*) FILTER (WHERE wait <= 60),
           count(*) FILTER (WHERE wait <= 300),
           count(*) FILTER (WHERE wait <= 900),
           count(*) FILTER (WHERE wait <= 3600),
           sum(greatest(0.0, run)),
           count(*) FILTER (WHERE run <= 0.01),
           count(*) FILTER (WHERE run <= 0.025),
           count(*) FILTER (WHERE run <= 0.05),
           count(*) FILTER (WHERE run <= 0.1),
           count(*) FILTER (WHERE run <= 0.25),
           count(*) FILTER (WHERE run <= 0.5),
           count(*) FILTER (WHERE run <= 1),
           count(*) FILTER (WHERE run <= 5),
           count(*) FILTER (WHERE run <= 30),
           count(*) FILTER (WHERE run <= 300)
    FROM updated
    GROUP BY queue, task
    ORDER BY queue, task
    ON CONFLICT (minute, queue, task, shard) DO UPDATE SET
        succeeded = s.succeeded + excluded.succeeded,
        retried = s.retried + excluded.retried,
        dead = s.dead + excluded.dead,
        attempts = s.attempts + excluded.attempts,
        wait_le_0_1 = s.wait_le_0_1 + excluded.wait_le_0_1,
        wait_le_0_5 = s.wait_le_0_5 + excluded.wait_le_0_5,
        wait_le_1 = s.wait_le_1 + excluded.wait_le_1,
        wait_le_5 = s.wait_le_5 + excluded.wait_le_5,
        wait_le_10 = s.wait_le_10 + excluded.wait_le_10,
        wait_le_30 = s.wait_le_30 + excluded.wait_le_30,
        wait_le_60 = s.wait_le_60 + excluded.wait_le_60,
        wait_le_300 = s.wait_le_300 + excluded.wait_le_300,
        wait_le_900 = s.wait_le_900 + excluded.wait_le_900,
        wait_le_3600 = s.wait_le_3600 + excluded.wait_le_3600,
        run_seconds = s.run_seconds + excluded.run_seconds,
        run_le_0_01 = s.run_le_0_01 + excluded.run_le_0_01,
        run_le_0_025 = s.run_le_0_025 + excluded.run_le_0_025,
        run_le_0_05 = s.run_le_0_05 + excluded.run_le_0_05,
        run_le_0_1 = s.run_le_0_1 + excluded.run_le_0_1,
        run_le_0_25 = s.run_le_0_25 + excluded.run_le_0_25,
        run_le_0_5 = s.run_le_0_5 + excluded.run_le_0_5,
        run_le_1 = s.run_le_1 + excluded.run_le_1,
        run_le_5 = s.run_le_5 + excluded.run_le_5,
        run_le_30 = s.run_le_30 + excluded.run_le_30,
        run_le_300 = s.run_le_300 + excluded.run_le_300
)
SELECT id FROM updated
