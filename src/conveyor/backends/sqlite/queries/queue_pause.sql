INSERT INTO conveyor_queue_pauses (queue, paused_at, paused_by) VALUES (:queue, :now, :by)
ON CONFLICT (queue) DO NOTHING
RETURNING queue
