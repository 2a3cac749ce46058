DELETE FROM conveyor_queue_pauses WHERE queue = %(queue)s::text RETURNING queue
