INSERT INTO conveyor_queue_pauses (queue, paused_by) VALUES (%(queue)s::text, %(by)s::text)
ON CONFLICT (queue) DO NOTHING
RETURNING queue
