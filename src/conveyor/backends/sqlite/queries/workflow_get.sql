SELECT id, name, created_at, cancelled_at FROM conveyor_workflows WHERE id = :workflow_id
