-- The most frequent error types recorded since `since` (failed attempts, dead jobs).
SELECT entry->>'type' AS type, count(*) AS attempts
FROM conveyor_jobs AS job CROSS JOIN LATERAL jsonb_array_elements(job.errors) AS entry
WHERE job.errors <> '[]'::jsonb
  AND (%(task)s::text IS NULL OR job.task = %(task)s::text)
  AND (entry->>'at')::float8 >= %(since)s::float8
GROUP BY 1
ORDER BY attempts DESC, type
LIMIT %(limit)s::integer
