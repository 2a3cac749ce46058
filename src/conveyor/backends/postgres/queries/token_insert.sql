INSERT INTO conveyor_api_tokens (name, token_hash, role, tasks, queues, expires_at)
VALUES (%(name)s::text, %(token_hash)s::text, %(role)s::text, %(tasks)s::text[],
        %(queues)s::text[],
        now() + make_interval(secs => %(expires_in)s::float8))
RETURNING id
