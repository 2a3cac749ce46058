-- Counts by queue and state, and how long the longest-waiting due job has waited.
SELECT queue, state, count(*) AS jobs,
       extract(epoch FROM now() - min(run_at) FILTER (
           WHERE state IN ('available', 'scheduled') AND run_at <= now()
       ))::float8 AS oldest_due_age
FROM conveyor_jobs
GROUP BY queue, state
