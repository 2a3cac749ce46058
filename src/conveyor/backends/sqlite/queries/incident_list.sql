-- Newest first; `before_id` is the page cursor; `open_only` keeps the open ones.
SELECT id, opened_at, closed_at, title, alert_key, opened_by, closed_by, details, close_details
FROM conveyor_incidents
WHERE (:before_id IS NULL OR id < :before_id)
  AND (NOT :open_only OR closed_at IS NULL)
ORDER BY id DESC
LIMIT :limit
