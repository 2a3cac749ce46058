DELETE FROM conveyor_workers WHERE last_heartbeat_at < :now - :older_than
