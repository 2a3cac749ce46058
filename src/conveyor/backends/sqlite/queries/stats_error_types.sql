-- The most frequent error types recorded since `since` (failed attempts, dead jobs).
SELECT json_extract(entry.value, '$.type') AS type, count(*) AS attempts
FROM conveyor_jobs AS job, json_each(job.errors) AS entry
WHERE job.errors <> '[]'
  AND (:task IS NULL OR job.task = :task)
  AND json_extract(entry.value, '$.at') >= :since
GROUP BY 1
ORDER BY attempts DESC, type
LIMIT :limit
