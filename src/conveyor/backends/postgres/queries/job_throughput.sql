-- Jobs finished per queue, outcome and time bucket since :since (for charts).
SELECT queue, state,
       floor((extract(epoch FROM finished_at) - %(since)s::float8) / %(bucket)s::float8)::integer
           AS bucket,
       count(*) AS jobs
FROM conveyor_jobs
WHERE state IN ('succeeded', 'dead') AND finished_at >= to_timestamp(%(since)s::float8)
GROUP BY queue, state, bucket
