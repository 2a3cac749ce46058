-- The per-minute aggregates of a batch of completions, written in the batch's own
-- transaction just before the jobs change: the rows counted are exactly the rows the
-- batch then updates (still running, same lease token), so a fenced-out completion
-- counts nothing and a count can never be lost or doubled.
INSERT INTO conveyor_job_stats (
    minute, queue, task, shard, succeeded, retried, dead, attempts,
    wait_le_0_1, wait_le_0_5, wait_le_1, wait_le_5, wait_le_10, wait_le_30, wait_le_60, wait_le_300, wait_le_900, wait_le_3600, run_seconds,
    run_le_0_01, run_le_0_025, run_le_0_05, run_le_0_1, run_le_0_25, run_le_0_5, run_le_1, run_le_5, run_le_30, run_le_300
)
SELECT :minute, job.queue, job.task, 0,
       sum(done.outcome = 'succeeded'), sum(done.outcome = 'retry'),
       sum(done.outcome = 'dead'), count(*),
       sum(job.started_at - job.run_at <= 0.1),
       sum(job.started_at - job.run_at <= 0.5),
       sum(job.started_at - job.run_at <= 1),
       sum(job.started_at - job.run_at <= 5),
       sum(job.started_at - job.run_at <= 10),
       sum(job.started_at - job.run_at <= 30),
       sum(job.started_at - job.run_at <= 60),
       sum(job.started_at - job.run_at <= 300),
       sum(job.started_at - job.run_at <= 900),
       sum(job.started_at - job.run_at <= 3600),
       sum(max(0.0, :now - job.started_at)),
       sum(:now - job.started_at <= 0.01),
       sum(:now - job.started_at <= 0.025),
       sum(:now - job.started_at <= 0.05),
       sum(:now - job.started_at <= 0.1),
       sum(:now - job.started_at <= 0.25),
       sum(:now - job.started_at <= 0.5),
       sum(:now - job.started_at <= 1),
       sum(:now - job.started_at <= 5),
       sum(:now - job.started_at <= 30),
       sum(:now - job.started_at <= 300)
FROM (
    SELECT json_extract(value, '$[0]') AS job_id, json_extract(value, '$[1]') AS lease_token,
           json_extract(value, '$[2]') AS outcome
    FROM json_each(:done)
) AS done
JOIN conveyor_jobs AS job ON job.id = done.job_id AND job.lease_token = done.lease_token
WHERE job.state = 'running'
GROUP BY job.queue, job.task
ORDER BY job.queue, job.task
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
