-- Newest first; `before_id` is the page cursor, `actor` matches any part of the actor.
SELECT id, at, actor, source, action, target, count, params
FROM conveyor_audit
WHERE (:since IS NULL OR at >= :since)
  AND (:until IS NULL OR at < :until)
  AND (:actor IS NULL OR instr(actor, :actor) > 0)
  AND (:action IS NULL OR action = :action)
  AND (:before_id IS NULL OR id < :before_id)
ORDER BY id DESC
LIMIT :limit
