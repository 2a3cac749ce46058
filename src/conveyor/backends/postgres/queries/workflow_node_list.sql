-- Every node of a workflow with its job's state and times (epoch seconds).
SELECT n.job_id, n.name, n.runs_when, n.inputs, n.waiting, n.failed,
       j.task, j.queue, j.state, j.priority, j.attempt, j.max_attempts,
       extract(epoch FROM j.run_at)::float8 AS run_at,
       extract(epoch FROM j.created_at)::float8 AS created_at,
       extract(epoch FROM j.started_at)::float8 AS started_at,
       extract(epoch FROM j.finished_at)::float8 AS finished_at
FROM conveyor_workflow_nodes AS n
JOIN conveyor_jobs AS j ON j.id = n.job_id
WHERE n.workflow_id = %(workflow_id)s::text
ORDER BY n.job_id
