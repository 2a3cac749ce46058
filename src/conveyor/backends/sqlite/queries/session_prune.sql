DELETE FROM conveyor_sessions
WHERE expires_at <= :now
   OR token_id IN (SELECT id FROM conveyor_api_tokens
                   WHERE revoked_at IS NOT NULL OR expires_at <= :now)
