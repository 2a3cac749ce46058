SELECT id, opened_at, closed_at, title, alert_key, opened_by, closed_by, details, close_details
FROM conveyor_incidents
WHERE id = :id
