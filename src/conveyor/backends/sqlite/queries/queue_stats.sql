SELECT queue, state, count(*) AS jobs,
       min(CASE WHEN state IN ('available', 'scheduled') AND run_at <= :now THEN run_at END)
           AS oldest_due_run_at
FROM conveyor_jobs
GROUP BY queue, state
