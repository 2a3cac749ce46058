-- The nodes of a workflow just inserted as jobs: one JSON array of objects.
INSERT INTO conveyor_workflow_nodes (job_id, workflow_id, name, runs_when, inputs, waiting)
SELECT given.job_id, %(workflow_id)s::text, given.name, given.runs_when, given.inputs,
       given.waiting
FROM jsonb_to_recordset(%(nodes)s::jsonb) AS given(
    job_id bigint, name text, runs_when text, inputs text, waiting integer)
