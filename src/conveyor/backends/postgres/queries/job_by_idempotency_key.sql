SELECT id, state FROM conveyor_jobs
WHERE task = %(task)s::text AND idempotency_key = %(idempotency_key)s::text
