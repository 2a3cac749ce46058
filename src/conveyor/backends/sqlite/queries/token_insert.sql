INSERT INTO conveyor_api_tokens (name, token_hash, role, tasks, queues, created_at, expires_at)
VALUES (:name, :token_hash, :role, :tasks, :queues, :now,
        CASE WHEN :expires_in IS NULL THEN NULL ELSE :now + :expires_in END)
RETURNING id
