DELETE FROM conveyor_jobs
WHERE state IN (SELECT value FROM json_each(:states))
  AND state IN ('succeeded', 'dead', 'cancelled')
  AND (:queue IS NULL OR queue = :queue)
  AND (:task IS NULL OR task = :task)
  AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
RETURNING id
