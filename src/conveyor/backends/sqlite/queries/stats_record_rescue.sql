-- The per-minute aggregates of a lease rescue, written in its transaction just before
-- the rescue itself, over the same rows (same selection, same order, same limit): a
-- started attempt whose worker vanished counts as failed (retried, or dead if none are
-- left); a never-started one given its attempt back counts nothing.
INSERT INTO conveyor_job_stats (
    minute, queue, task, shard, succeeded, retried, dead, attempts,
    wait_le_0_1, wait_le_0_5, wait_le_1, wait_le_5, wait_le_10, wait_le_30, wait_le_60, wait_le_300, wait_le_900, wait_le_3600, run_seconds,
    run_le_0_01, run_le_0_025, run_le_0_05, run_le_0_1, run_le_0_25, run_le_0_5, run_le_1, run_le_5, run_le_30, run_le_300
)
SELECT :minute, queue, task, 0,
       0, sum(attempt < max_attempts), sum(attempt >= max_attempts), count(*),
       sum(started_at - run_at <= 0.1),
       sum(started_at - run_at <= 0.5),
       sum(started_at - run_at <= 1),
       sum(started_at - run_at <= 5),
       sum(started_at - run_at <= 10),
       sum(started_at - run_at <= 30),
       sum(started_at - run_at <= 60),
       sum(started_at - run_at <= 300),
       sum(started_at - run_at <= 900),
       sum(started_at - run_at <= 3600),
       sum(max(0.0, :now - started_at)),
       sum(:now - started_at <= 0.01),
       sum(:now - started_at <= 0.025),
       sum(:now - started_at <= 0.05),
       sum(:now - started_at <= 0.1),
       sum(:now - started_at <= 0.25),
       sum(:now - started_at <= 0.5),
       sum(:now - started_at <= 1),
       sum(:now - started_at <= 5),
       sum(:now - started_at <= 30),
       sum(:now - started_at <= 300)
FROM conveyor_jobs
WHERE id IN (
    SELECT id FROM conveyor_jobs
    WHERE state = 'running' AND lease_expires_at < :now
    ORDER BY lease_expires_at, id
    LIMIT :limit
)
  -- only the attempts the rescue counts (see job_rescue.sql)
  AND (start_token = lease_token OR uncounted_rescues > 0)
GROUP BY queue, task
ORDER BY queue, task
ON CONFLICT (minute, queue, task, shard) DO UPDATE SET
    succeeded = succeeded + excluded.succeeded,
    retried = retried + excluded.retried,
    dead = dead + excluded.dead,
    attempts = attempts + excluded.attempts,
    wait_le_0_1 = wait_le_0_1 + excluded.wait_le_0_1,
    wait_le_0_5 = wait_le_0_5 + excluded.wait_le_0_5,
    wait_le_1 = wait_le_1 + excluded.wait_le_1,
    wait_le_5 = wait_le_5 + excluded.wait_le_5,
    wait_le_10 = wait_le_10 + excluded.wait_le_10,
    wait_le_30 = wait_le_30 + excluded.wait_le_30,
    wait_le_60 = wait_le_60 + excluded.wait_le_60,
    wait_le_300 = wait_le_300 + excluded.wait_le_300,
    wait_le_900 = wait_le_900 + excluded.wait_le_900,
    wait_le_3600 = wait_le_3600 + excluded.wait_le_3600,
    run_seconds = run_seconds + excluded.run_seconds,
    run_le_0_01 = run_le_0_01 + excluded.run_le_0_01,
    run_le_0_025 = run_le_0_025 + excluded.run_le_0_025,
    run_le_0_05 = run_le_0_05 + excluded.run_le_0_05,
    run_le_0_1 = run_le_0_1 + excluded.run_le_0_1,
    run_le_0_25 = run_le_0_25 + excluded.run_le_0_25,
    run_le_0_5 = run_le_0_5 + excluded.run_le_0_5,
    run_le_1 = run_le_1 + excluded.run_le_1,
    run_le_5 = run_le_5 + excluded.run_le_5,
    run_le_30 = run_le_30 + excluded.run_le_30,
    run_le_300 = run_le_300 + excluded.run_le_300
