SELECT id, state, client_id FROM conveyor_jobs
WHERE client_id = ANY(%(client_ids)s::text[])
