-- An operator's retry: a dead job gets a fresh set of attempts; its history stays.
UPDATE conveyor_jobs
SET state = 'available',
    attempt = 0,
    uncounted_rescues = 0,
    run_at = :now,
    finished_at = NULL,
    idempotency_expires_at = NULL
WHERE state = 'dead'
  AND (:queue IS NULL OR queue = :queue)
  AND (:task IS NULL OR task = :task)
  AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
RETURNING id
