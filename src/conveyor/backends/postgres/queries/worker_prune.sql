DELETE FROM conveyor_workers
WHERE last_heartbeat_at < now() - make_interval(secs => %(older_than)s::float8)
