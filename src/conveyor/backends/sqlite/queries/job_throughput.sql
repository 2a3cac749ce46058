-- Jobs finished per queue, outcome and time bucket since :since (for charts).
SELECT queue, state, CAST((finished_at - :since) / :bucket AS INTEGER) AS bucket,
       count(*) AS jobs
FROM conveyor_jobs
WHERE state IN ('succeeded', 'dead') AND finished_at >= :since
GROUP BY queue, state, bucket
