-- Counts by queue and state, and how long the longest-waiting due job has waited.
SELECT queue, state, count(*) AS jobs,
       :now - min(CASE WHEN state IN ('available', 'scheduled') AND run_at <= :now
                       THEN run_at END) AS oldest_due_age
FROM conveyor_jobs
GROUP BY queue, state
