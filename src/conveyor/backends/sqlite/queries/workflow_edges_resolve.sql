-- The parents in :ids just finished: resolve each of their edges once (a parent
-- that finishes again after an operator's retry resolves nothing twice).
UPDATE conveyor_workflow_edges
SET resolved = 1
WHERE parent_id IN (SELECT value FROM json_each(:ids)) AND resolved = 0
RETURNING parent_id, child_id
