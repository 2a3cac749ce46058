-- The open incident of one alert, if any.
SELECT id FROM conveyor_incidents WHERE alert_key = %(alert_key)s::text AND closed_at IS NULL
