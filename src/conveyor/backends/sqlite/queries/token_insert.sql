INSERT INTO conveyor_api_tokens (name, token_hash, role, tasks, queues, created_at)
VALUES (:name, :token_hash, :role, :tasks, :queues, :now)
RETURNING id
