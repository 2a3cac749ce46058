-- The nodes of a workflow just inserted as jobs: one JSON array of objects.
INSERT INTO conveyor_workflow_nodes (job_id, workflow_id, name, runs_when, inputs, waiting)
SELECT json_extract(value, '$.job_id'), :workflow_id, json_extract(value, '$.name'),
       json_extract(value, '$.runs_when'), json_extract(value, '$.inputs'),
       json_extract(value, '$.waiting')
FROM json_each(:nodes)
