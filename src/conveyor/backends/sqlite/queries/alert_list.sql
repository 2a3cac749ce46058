SELECT key, firing, changed_at, details FROM conveyor_alerts ORDER BY key
