DELETE FROM conveyor_sessions WHERE session_hash = %(session_hash)s::text
