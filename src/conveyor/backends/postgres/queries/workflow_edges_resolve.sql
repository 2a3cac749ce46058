-- The parents in ids just finished: resolve each of their edges once (a parent
-- that finishes again after an operator's retry resolves nothing twice). A
-- parent finishes in one transaction only, so no two transactions race here.
UPDATE conveyor_workflow_edges
SET resolved = true
WHERE parent_id = ANY(%(ids)s::bigint[]) AND NOT resolved
RETURNING parent_id, child_id
