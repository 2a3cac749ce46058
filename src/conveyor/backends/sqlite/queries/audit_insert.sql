-- One audit entry, in the transaction of the action it records.
INSERT INTO conveyor_audit (at, actor, source, action, target, count, params)
VALUES (:now, :actor, :source, :action, :target, :count, :params)
RETURNING id
