INSERT INTO conveyor_api_tokens (name, token_hash, role, tasks, queues)
VALUES (%(name)s::text, %(token_hash)s::text, %(role)s::text, %(tasks)s::text[],
        %(queues)s::text[])
RETURNING id
