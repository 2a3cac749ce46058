SELECT key, firing, extract(epoch FROM changed_at)::float8 AS changed_at, details
FROM conveyor_alerts ORDER BY key
