SELECT id, extract(epoch FROM opened_at)::float8 AS opened_at,
       extract(epoch FROM closed_at)::float8 AS closed_at, title, alert_key, opened_by,
       closed_by, details::text AS details, close_details::text AS close_details
FROM conveyor_incidents
WHERE id = %(id)s::bigint
