SELECT * FROM conveyor_jobs
WHERE (:states IS NULL OR state IN (SELECT value FROM json_each(:states)))
  AND (:queue IS NULL OR queue = :queue)
  AND (:task IS NULL OR task = :task)
  AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
  AND (:before_id IS NULL OR id < :before_id)
ORDER BY id DESC
LIMIT :limit
