-- Every node of a workflow with its job's state and times (epoch seconds).
SELECT n.job_id, n.name, n.runs_when, n.inputs, n.waiting, n.failed,
       j.task, j.queue, j.state, j.priority, j.attempt, j.max_attempts,
       j.run_at, j.created_at, j.started_at, j.finished_at
FROM conveyor_workflow_nodes AS n
JOIN conveyor_jobs AS j ON j.id = n.job_id
WHERE n.workflow_id = :workflow_id
ORDER BY n.job_id
