DELETE FROM conveyor_queue_pauses WHERE queue = :queue RETURNING queue
