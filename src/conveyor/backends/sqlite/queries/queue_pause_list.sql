SELECT queue, paused_at, paused_by FROM conveyor_queue_pauses ORDER BY queue
