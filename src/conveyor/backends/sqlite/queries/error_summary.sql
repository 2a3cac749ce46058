-- Error types recorded in [since, until) (failed attempts, dead jobs), with the
-- first and last time each was seen, one sample message and the tasks it hit.
SELECT json_extract(entry.value, '$.type') AS type, count(*) AS attempts,
       min(json_extract(entry.value, '$.at')) AS first_at,
       max(json_extract(entry.value, '$.at')) AS last_at,
       max(json_extract(entry.value, '$.message')) AS message,
       group_concat(DISTINCT job.task) AS tasks
FROM conveyor_jobs AS job, json_each(job.errors) AS entry
WHERE job.errors <> '[]'
  AND json_extract(entry.value, '$.at') >= :since
  AND json_extract(entry.value, '$.at') < :until
GROUP BY 1
ORDER BY attempts DESC, type
LIMIT :limit
