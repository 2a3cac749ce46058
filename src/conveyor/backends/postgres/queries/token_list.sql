SELECT id, name, token_hash, role, tasks, queues,
       extract(epoch FROM created_at)::float8 AS created_at,
       extract(epoch FROM last_used_at)::float8 AS last_used_at,
       extract(epoch FROM revoked_at)::float8 AS revoked_at,
       extract(epoch FROM expires_at)::float8 AS expires_at,
       (expires_at IS NOT NULL AND expires_at <= now()) AS expired
FROM conveyor_api_tokens ORDER BY id
