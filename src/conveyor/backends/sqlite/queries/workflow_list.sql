-- Newest first.
SELECT id, name, created_at, cancelled_at FROM conveyor_workflows
ORDER BY created_at DESC, id
LIMIT :limit
