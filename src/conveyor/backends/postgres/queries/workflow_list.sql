-- Newest first.
SELECT id, name, extract(epoch FROM created_at)::float8 AS created_at,
       extract(epoch FROM cancelled_at)::float8 AS cancelled_at
FROM conveyor_workflows
ORDER BY created_at DESC, id
LIMIT %(limit)s::integer
