-- Error types recorded in [since, until) (failed attempts, dead jobs), with the
-- first and last time each was seen, one sample message and the tasks it hit.
SELECT entry->>'type' AS type, count(*) AS attempts,
       min((entry->>'at')::float8) AS first_at, max((entry->>'at')::float8) AS last_at,
       max(entry->>'message') AS message, string_agg(DISTINCT job.task, ',') AS tasks
FROM conveyor_jobs AS job CROSS JOIN LATERAL jsonb_array_elements(job.errors) AS entry
WHERE job.errors <> '[]'::jsonb
  AND (entry->>'at')::float8 >= %(since)s::float8
  AND (entry->>'at')::float8 < %(until)s::float8
GROUP BY 1
ORDER BY attempts DESC, type
LIMIT %(limit)s::integer
