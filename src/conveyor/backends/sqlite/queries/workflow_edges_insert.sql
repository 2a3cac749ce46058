-- The dependencies of a workflow: a JSON array of [parent_id, child_id, position].
INSERT INTO conveyor_workflow_edges (parent_id, child_id, position)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]')
FROM json_each(:edges)
