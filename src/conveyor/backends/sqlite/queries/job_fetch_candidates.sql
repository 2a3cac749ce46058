SELECT id FROM conveyor_jobs
WHERE state = 'available' AND queue = :queue
ORDER BY priority, run_at, id
LIMIT :limit
