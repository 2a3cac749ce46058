UPDATE conveyor_workflows SET cancelled_at = now()
WHERE id = %(workflow_id)s::text AND cancelled_at IS NULL
RETURNING id
