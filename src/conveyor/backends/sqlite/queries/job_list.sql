SELECT * FROM conveyor_jobs
WHERE (:states IS NULL OR state IN (SELECT value FROM json_each(:states)))
  AND (:queue IS NULL OR queue = :queue)
  AND (:task IS NULL OR task = :task)
  AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
  AND (:before_id IS NULL OR id < :before_id)
  AND (:created_after IS NULL OR created_at >= :created_after)
  AND (:created_before IS NULL OR created_at < :created_before)
  AND (:error_text IS NULL OR instr(lower(errors), lower(:error_text)) > 0)
ORDER BY id DESC
LIMIT :limit
