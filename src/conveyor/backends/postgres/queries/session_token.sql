SELECT t.id, t.name, t.token_hash, t.role, t.tasks, t.queues,
       extract(epoch FROM t.created_at)::float8 AS created_at,
       extract(epoch FROM t.last_used_at)::float8 AS last_used_at,
       extract(epoch FROM t.revoked_at)::float8 AS revoked_at,
       extract(epoch FROM t.expires_at)::float8 AS expires_at,
       false AS expired
FROM conveyor_sessions s JOIN conveyor_api_tokens t ON t.id = s.token_id
WHERE s.session_hash = %(session_hash)s::text AND s.expires_at > now()
  AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
