SELECT * FROM conveyor_workers WHERE last_heartbeat_at >= :now - :alive_within ORDER BY started_at
