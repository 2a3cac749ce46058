-- What a node receives from its parents: its inputs mode, and each parent's state
-- and result (JSON text), in the order the parents were given.
SELECT n.inputs, p.state, p.result
FROM conveyor_workflow_nodes AS n
LEFT JOIN conveyor_workflow_edges AS e ON e.child_id = n.job_id
LEFT JOIN conveyor_jobs AS p ON p.id = e.parent_id
WHERE n.job_id = :job_id
ORDER BY e.position
