SELECT id, state FROM conveyor_jobs WHERE task = :task AND idempotency_key = :idempotency_key
