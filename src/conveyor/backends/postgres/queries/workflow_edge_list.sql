SELECT e.parent_id, e.child_id, e.position, e.resolved
FROM conveyor_workflow_edges AS e
JOIN conveyor_workflow_nodes AS n ON n.job_id = e.child_id
WHERE n.workflow_id = %(workflow_id)s::text
ORDER BY e.child_id, e.position
