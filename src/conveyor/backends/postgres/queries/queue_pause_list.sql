SELECT queue, extract(epoch FROM paused_at)::float8 AS paused_at, paused_by
FROM conveyor_queue_pauses ORDER BY queue
