-- A paused queue offers nothing (its jobs stay available for when it resumes).
SELECT id FROM conveyor_jobs
WHERE state = 'available' AND queue = :queue
  AND NOT EXISTS (SELECT 1 FROM conveyor_queue_pauses WHERE queue = :queue)
ORDER BY priority, run_at, id
LIMIT :limit
