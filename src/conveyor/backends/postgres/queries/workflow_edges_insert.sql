-- The dependencies of a workflow: a JSON array of [parent_id, child_id, position].
INSERT INTO conveyor_workflow_edges (parent_id, child_id, position)
SELECT (e->>0)::bigint, (e->>1)::bigint, (e->>2)::integer
FROM jsonb_array_elements(%(edges)s::jsonb) AS e
