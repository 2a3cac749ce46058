-- A lease that expired means the worker died, hung or was cut off. An attempt
-- whose start was recorded (start_token = lease_token) counts as failed, with a
-- LeaseExpired error, and the job runs again at once (or is dead if none are
-- left). A job whose start was never recorded (fetched and perhaps never
-- started) gets its attempt back, once, with a LeaseExpired entry that says so: a job found so again (uncounted_rescues > 0) is counted, so a
-- task that kills its worker before its start is recorded cannot loop forever.
-- Expiry is judged by the database's clock; SKIP LOCKED leaves alone a job whose
-- worker is heartbeating at this very moment, and lets rescuers run side by side.
-- The same statement counts the lost attempts in the per-minute aggregates (stats).
WITH expired AS MATERIALIZED (
    SELECT id, queue, task, run_at, started_at,
           CASE WHEN start_token <> lease_token AND uncounted_rescues = 0 THEN 'uncounted'
                WHEN attempt >= max_attempts THEN 'dead'
                ELSE 'retry' END AS outcome
    FROM conveyor_jobs
    WHERE state = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT %(limit)s::integer
    FOR UPDATE SKIP LOCKED
),
rescued AS (
UPDATE conveyor_jobs AS job
SET state = CASE WHEN expired.outcome = 'dead' THEN 'dead' ELSE 'available' END,
    finished_at = CASE WHEN expired.outcome = 'dead' THEN now() END,
    idempotency_expires_at = CASE
        WHEN expired.outcome = 'dead' AND job.idempotency_key IS NOT NULL
        THEN now() + make_interval(secs => job.idempotency_window)
    END,
    run_at = now(),
    attempt = CASE WHEN expired.outcome = 'uncounted' THEN job.attempt - 1 ELSE job.attempt END,
    uncounted_rescues = CASE WHEN expired.outcome = 'uncounted'
                             THEN job.uncounted_rescues + 1 ELSE job.uncounted_rescues END,
    errors = job.errors || jsonb_build_array(jsonb_build_object(
        'attempt', job.attempt,
        'type', 'conveyor.errors.LeaseExpired',
        'message', 'worker ' || job.lease_owner || ' stopped renewing its lease (crashed, '
                   || 'killed, paused or cut off from the database); '
                   || CASE WHEN expired.outcome = 'uncounted'
                           THEN 'its start was never recorded, so the attempt is not counted '
                                || '(this once: it may not have started)'
                           ELSE 'the attempt counts as failed' END,
        'traceback', '',
        'worker', job.lease_owner,
        'at', extract(epoch FROM now())::float8)),
    lease_owner = NULL,
    lease_expires_at = NULL
FROM expired
WHERE job.id = expired.id AND job.state = 'running' AND job.lease_expires_at < now()
RETURNING job.id, expired.queue, expired.task, expired.outcome,
          extract(epoch FROM expired.started_at - expired.run_at)::float8 AS wait,
          extract(epoch FROM now() - expired.started_at)::float8 AS run
),
stats AS (
    INSERT INTO conveyor_job_stats AS s (
        minute, queue, task, shard, succeeded, retried, dead, attempts,
        wait_le_0_1, wait_le_0_5, wait_le_1, wait_le_5, wait_le_10, wait_le_30, wait_le_60, wait_le_300, wait_le_900, wait_le_3600, run_seconds,
        run_le_0_01, run_le_0_025, run_le_0_05, run_le_0_1, run_le_0_25, run_le_0_5, run_le_1, run_le_5, run_le_30, run_le_300
    )
    SELECT date_trunc('minute', now()), queue, task, mod(pg_backend_pid(), 8)::smallint,
           0, count(*) FILTER (WHERE outcome = 'retry'), count(*) FILTER (WHERE outcome = 'dead'),
           count(*),
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
    FROM rescued
    WHERE outcome <> 'uncounted'
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
SELECT id, CASE WHEN outcome = 'dead' THEN 'dead' ELSE 'available' END AS state FROM rescued
