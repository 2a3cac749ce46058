SELECT id, state, client_id FROM conveyor_jobs
WHERE client_id IN (SELECT value FROM json_each(:client_ids))
