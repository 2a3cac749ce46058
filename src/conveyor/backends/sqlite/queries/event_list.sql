-- Newest first; `kind` matches that kind or, as a prefix, its family ("worker" matches
-- "worker.started"); `before_id` is the page cursor.
SELECT id, at, kind, subject, actor, details
FROM conveyor_events
WHERE (:since IS NULL OR at >= :since)
  AND (:until IS NULL OR at < :until)
  AND (:kind IS NULL OR kind = :kind OR substr(kind, 1, length(:kind) + 1) = :kind || '.')
  AND (:before_id IS NULL OR id < :before_id)
ORDER BY at DESC, id DESC
LIMIT :limit
