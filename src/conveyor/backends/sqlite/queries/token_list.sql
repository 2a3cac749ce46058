SELECT id, name, token_hash, role, tasks, queues, created_at, last_used_at, revoked_at,
       expires_at, (expires_at IS NOT NULL AND expires_at <= :now) AS expired
FROM conveyor_api_tokens ORDER BY id
