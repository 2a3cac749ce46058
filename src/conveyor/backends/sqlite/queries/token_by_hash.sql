SELECT id, name, token_hash, role, tasks, queues, created_at, last_used_at, revoked_at
FROM conveyor_api_tokens WHERE token_hash = :token_hash
