INSERT INTO conveyor_sessions (session_hash, token_id, created_at, expires_at)
VALUES (:session_hash, :token_id, :now, :now + :lifetime)
