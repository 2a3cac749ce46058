SELECT t.id, t.name, t.token_hash, t.role, t.tasks, t.queues, t.created_at, t.last_used_at,
       t.revoked_at, t.expires_at, 0 AS expired
FROM conveyor_sessions s JOIN conveyor_api_tokens t ON t.id = s.token_id
WHERE s.session_hash = :session_hash AND s.expires_at > :now
  AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > :now)
