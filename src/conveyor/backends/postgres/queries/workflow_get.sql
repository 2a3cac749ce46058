SELECT id, name, extract(epoch FROM created_at)::float8 AS created_at,
       extract(epoch FROM cancelled_at)::float8 AS cancelled_at
FROM conveyor_workflows WHERE id = %(workflow_id)s::text
