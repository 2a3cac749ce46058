-- Newest first; `before_id` is the page cursor; `open_only` keeps the open ones.
SELECT id, extract(epoch FROM opened_at)::float8 AS opened_at,
       extract(epoch FROM closed_at)::float8 AS closed_at, title, alert_key, opened_by,
       closed_by, details::text AS details, close_details::text AS close_details
FROM conveyor_incidents
WHERE (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
  AND (NOT %(open_only)s::boolean OR closed_at IS NULL)
ORDER BY id DESC
LIMIT %(limit)s::integer
