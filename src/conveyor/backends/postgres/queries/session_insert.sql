WITH pruned AS (
    DELETE FROM conveyor_sessions
    WHERE expires_at <= now()
       OR token_id IN (SELECT id FROM conveyor_api_tokens
                       WHERE revoked_at IS NOT NULL OR expires_at <= now())
)
INSERT INTO conveyor_sessions (session_hash, token_id, expires_at)
VALUES (%(session_hash)s::text, %(token_id)s::bigint,
        now() + make_interval(secs => %(lifetime)s::float8))
