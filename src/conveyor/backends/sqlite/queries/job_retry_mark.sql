-- Before an operator's retry, in its transaction: mark where in each dead job's
-- history the fresh set of attempts begins (the same selection as job_retry_dead).
INSERT INTO conveyor_job_retries (job_id, at, actor, after_errors)
SELECT id, :now, :actor, json_array_length(errors)
FROM conveyor_jobs
WHERE state = 'dead'
  AND (:queue IS NULL OR queue = :queue)
  AND (:task IS NULL OR task = :task)
  AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
